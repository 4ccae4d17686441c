/*
 * client: the CLI's requests to hypeman-api through libcurl. Bodies are
 * JSON in and out; responses are bounded in size; failures name the URL
 * and say what to check (daemon running? token set?).
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

#define CLI_MAX_RESPONSE (64u << 20)

struct buf {
	char *data;
	size_t len;
	size_t cap;
	cli_stream_fn *fn; /* streaming: hand chunks on instead of buffering */
	void *userdata;
	CURL *h;
	bool too_large;
	bool stopped;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(b->h, CURLINFO_RESPONSE_CODE, &status);
	/* An error body is buffered for api_error, never streamed. */
	if (b->fn && status < 400) {
		if (b->fn(ptr, n, b->userdata) < 0) {
			b->stopped = true;
			return 0;
		}
		return n;
	}
	if (b->len + n > CLI_MAX_RESPONSE) {
		b->too_large = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->data = xrealloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static enum hm_err_kind kind_for_status(long status)
{
	switch (status) {
	case 400:
	case 422:
		return HM_ERR_INVALID;
	case 401:
		return HM_ERR_UNAUTHORIZED;
	case 403:
		return HM_ERR_FORBIDDEN;
	case 404:
		return HM_ERR_NOT_FOUND;
	case 405:
		return HM_ERR_METHOD;
	case 409:
		return HM_ERR_CONFLICT;
	case 413:
		return HM_ERR_TOO_LARGE;
	case 415:
		return HM_ERR_MEDIA_TYPE;
	case 501:
		return HM_ERR_NOT_IMPLEMENTED;
	case 503:
		return HM_ERR_UNAVAILABLE;
	case 504:
		return HM_ERR_TIMEOUT;
	default:
		return HM_ERR_INTERNAL;
	}
}

/* Turn an error response into one line: "<message> (<status> <code>)". */
static int api_error(long status, const char *body, size_t len, struct hm_err **err)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	const char *code = j ? json_string_value(json_object_get(j, "code")) : NULL;
	const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
	int r;
	if (msg)
		r = hm_err_set(err, kind_for_status(status), NULL, "%s (%ld %s)", msg, status,
		               code ? code : "error");
	else
		r = hm_err_set(err, kind_for_status(status), NULL,
		               "the server answered HTTP %ld without an error body", status);
	json_decref(j);
	if (status == 401 && msg)
		hm_err_wrap(err, "unauthorized (set HYPEMAN_API_KEY, see hypeman-token)");
	return r;
}

static size_t on_read(char *ptr, size_t size, size_t nmemb, void *ud)
{
	int fd = *(int *)ud;
	ssize_t n;
	do
		n = read(fd, ptr, size * nmemb);
	while (n < 0 && errno == EINTR);
	return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

/* One request; with upload_fd >= 0 the body is streamed from it. */
static int perform_upload(struct cli *c, const char *method, const char *path, json_t *body,
                          int upload_fd, const char *upload_type, struct buf *b, long *ret_status,
                          struct hm_err **err)
{
	CURL *h = curl_easy_init();
	if (!h)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "cannot initialise libcurl");
	_cleanup_free_ char *url = xasprintf("%s%s", c->base_url, path);
	_cleanup_free_ char *auth =
	    c->api_key ? xasprintf("Authorization: Bearer %s", c->api_key) : NULL;
	_cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct curl_slist *hdrs = NULL;
	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (payload)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	_cleanup_free_ char *ctline =
	    upload_type ? xasprintf("Content-Type: %s", upload_type) : NULL;
	if (ctline) {
		hdrs = curl_slist_append(hdrs, ctline);
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	char errbuf[CURL_ERROR_SIZE] = "";

	b->h = h;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "hypeman-cli");
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	if (upload_fd >= 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, &upload_fd);
		struct stat st;
		if (fstat(upload_fd, &st) == 0 && S_ISREG(st.st_mode))
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	}
	if (payload) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	}
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);

	if (b->too_large)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "response from %s is too large", url);
	if (rc != CURLE_OK && !(b->stopped && rc == CURLE_WRITE_ERROR))
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "cannot reach hypeman-api at %s: %s (is it running? set "
		                  "HYPEMAN_BASE_URL)",
		                  c->base_url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	if (ret_status)
		*ret_status = status;
	if (status >= 400)
		return api_error(status, b->data, b->len, err);
	return 0;
}

static int perform(struct cli *c, const char *method, const char *path, json_t *body, struct buf *b,
                   long *ret_status, struct hm_err **err)
{
	return perform_upload(c, method, path, body, -1, NULL, b, ret_status, err);
}

int cli_call(struct cli *c, const char *method, const char *path, json_t *body, json_t **ret,
             long *ret_status, struct hm_err **err)
{
	struct buf b = { 0 };
	int r = perform(c, method, path, body, &b, ret_status, err);
	if (r < 0) {
		free(b.data);
		return r;
	}
	json_t *j = NULL;
	if (b.len > 0) {
		json_error_t jerr;
		j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &jerr);
		if (!j) {
			free(b.data);
			return hm_err_set(err, HM_ERR_INTERNAL, NULL, "invalid JSON from %s %s: %s",
			                  method, path, jerr.text);
		}
	}
	free(b.data);
	if (ret)
		*ret = j;
	else
		json_decref(j);
	return 0;
}

int cli_upload(struct cli *c, const char *path, int fd, const char *content_type, json_t **ret,
               struct hm_err **err)
{
	struct buf b = { 0 };
	int r = perform_upload(c, "POST", path, NULL, fd, content_type, &b, NULL, err);
	if (r == 0 && b.len > 0 && ret) {
		*ret = json_loadb(b.data, b.len, 0, NULL);
		if (!*ret)
			r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "invalid JSON from POST %s",
			               path);
	}
	free(b.data);
	return r;
}

int cli_stream(struct cli *c, const char *path, cli_stream_fn *fn, void *userdata,
               struct hm_err **err)
{
	struct buf b = { .fn = fn, .userdata = userdata };
	int r = perform(c, "GET", path, NULL, &b, NULL, err);
	free(b.data);
	return r;
}
