/*
 * Image references as users write them (`alpine`, `nginx:1.27`,
 * `localhost:5000/app@sha256:...`), parsed and normalized the way Docker
 * does: a first component with a dot, a colon or `localhost` names the
 * registry, otherwise it is docker.io; a one-component docker.io name gets
 * `library/`; no tag and no digest means `:latest`.
 */
#pragma once

#include <stdbool.h>

struct hm_err;

#define HM_REF_MAX_LEN 512 /* whole reference */

struct hm_image_ref {
	char *registry;   /* "docker.io", "localhost:5000", "ghcr.io" (lowercase) */
	char *repository; /* "library/alpine", "org/app" */
	char *tag;        /* "latest"; NULL when only a digest was given */
	char *digest;     /* "sha256:<64 lowercase hex>", or NULL */
};

/*
 * Parse and normalize `s`. Failures are HM_ERR_INVALID with code
 * "invalid_name" and a message that names what is wrong.
 */
int hm_image_ref_parse(const char *s, struct hm_image_ref *ret, struct hm_err **err);
void hm_image_ref_done(struct hm_image_ref *r);

/* "docker.io/library/alpine:latest", "host:5000/a/b@sha256:...", "r/a:t@sha256:..." (owned). */
char *hm_image_ref_string(const struct hm_image_ref *r);
/* "docker.io/library/alpine" (owned). */
char *hm_image_ref_repo(const struct hm_image_ref *r);
/* The host[:port] to connect to: docker.io -> registry-1.docker.io. */
const char *hm_image_ref_endpoint(const struct hm_image_ref *r);
/*
 * Whether to speak plain HTTP to the registry: loopback registries
 * (localhost, 127.0.0.0/8, [::1]) and those listed in the comma-separated
 * `insecure` list (host or host:port) use http, all others https.
 */
bool hm_image_ref_plain_http(const struct hm_image_ref *r, const char *insecure);

/* "sha256:<64 lowercase hex>" exactly. */
bool hm_digest_valid(const char *digest);
