/*
 * The CLI's HTTP client: one libcurl easy handle per request against
 * HYPEMAN_BASE_URL with HYPEMAN_API_KEY as the bearer token. A non-2xx
 * answer becomes an hm_err whose message is the server's {code,message}
 * as one line, so every command reports failures the same way.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct hm_err;

struct cli {
	const char *base_url; /* no trailing slash */
	const char *api_key;  /* may be NULL */
	bool json_output;     /* --json: print raw JSON instead of tables */
};

/* Called with each chunk of a streamed body; return < 0 to stop. */
typedef int cli_stream_fn(const char *data, size_t len, void *userdata);

/*
 * `method` `path` (already percent-encoded) with an optional JSON body
 * (borrowed). On 2xx sets *ret (NULL for an empty body) and *ret_status
 * (if not NULL). Otherwise fails with the API's message.
 */
int cli_call(struct cli *c, const char *method, const char *path, json_t *body, json_t **ret,
             long *ret_status, struct hm_err **err);

/* GET `path` and hand the body to `fn` as it arrives (logs, SSE). */
int cli_stream(struct cli *c, const char *path, cli_stream_fn *fn, void *userdata,
               struct hm_err **err);

/* POST the bytes of `fd` (to EOF) as `content_type`; JSON answer in *ret. */
int cli_upload(struct cli *c, const char *path, int fd, const char *content_type, json_t **ret,
               struct hm_err **err);
