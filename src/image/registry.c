/*
 * registry: OCI distribution pulls over libcurl.
 *
 * Every request goes through request(): it adds the Authorization header
 * this session has earned, and on a 401 answers the registry's challenge
 * once (Bearer: fetch a token from the realm with the caller's basic
 * credentials, or anonymously; Basic: send the credentials) before
 * retrying. Network errors, 429 and 5xx are retried with doubling
 * back-off; a transfer that makes no progress for stall_timeout_s is cut.
 * Bodies go to a bounded memory buffer (manifests) or to a file whose
 * sha256 is computed as it streams (blobs), so nothing unverified is ever
 * renamed into the cache.
 */
#include "image/registry.h"
#include "image/challenge.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "image/ref.h"

struct hm_registry {
	char *base; /* "https://registry-1.docker.io/v2/library/alpine" */
	char *host; /* for messages */
	char *repo; /* "library/alpine" */
	char *username, *password;
	struct hm_registry_opts opts;
	pthread_mutex_t lock;
	char *auth; /* "Bearer x" or "Basic y"; under lock */
};

/* ---- response sinks ---- */

struct sink {
	/* memory */
	char *buf;
	size_t len, cap, max;
	bool overflow;
	/* file */
	int fd;
	EVP_MD_CTX *md;
	uint64_t written;
	int write_errno;
	hm_blob_progress_fn *progress;
	void *userdata;
	/* headers of the current response */
	char *www_auth;
	char *content_type;
	char *docker_digest;
	long status;
	CURL *h;
};

static void sink_reset(struct sink *s)
{
	s->len = 0;
	s->overflow = false;
	s->written = 0;
	s->write_errno = 0;
	free(s->www_auth);
	free(s->content_type);
	free(s->docker_digest);
	s->www_auth = s->content_type = s->docker_digest = NULL;
	if (s->fd >= 0) {
		if (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0)
			s->write_errno = errno;
		EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
	}
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;
	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->fd >= 0 && s->status / 100 == 2) {
		int r = hm_write_all(s->fd, ptr, n);
		if (r < 0) {
			s->write_errno = -r;
			return 0;
		}
		EVP_DigestUpdate(s->md, ptr, n);
		s->written += n;
		if (s->progress)
			s->progress(s->userdata, s->written);
		return n;
	}
	/* Manifests and error bodies: bounded in memory. */
	size_t max = s->max ? s->max : 64 * 1024;
	if (s->len + n > max) {
		s->overflow = true;
		return s->fd >= 0 ? n : 0; /* an oversized error body is just dropped */
	}
	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2;
		s->buf = xrealloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static char *header_value(const char *line, size_t n, const char *name)
{
	size_t nl = strlen(name);
	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	return xstrndup(v, (size_t)(end - v));
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;
	/* A new status line (redirect, 100-continue) starts a new header set. */
	if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
		free(s->www_auth);
		free(s->content_type);
		free(s->docker_digest);
		s->www_auth = s->content_type = s->docker_digest = NULL;
		return n;
	}
	char *v;
	if ((v = header_value(line, n, "www-authenticate"))) {
		free(s->www_auth);
		s->www_auth = v;
	} else if ((v = header_value(line, n, "content-type"))) {
		free(s->content_type);
		s->content_type = v;
	} else if ((v = header_value(line, n, "docker-content-digest"))) {
		free(s->docker_digest);
		s->docker_digest = v;
	}
	return n;
}

/* ---- challenges ---- */

static void set_auth(struct hm_registry *r, char *value)
{
	pthread_mutex_lock(&r->lock);
	free(r->auth);
	r->auth = value;
	pthread_mutex_unlock(&r->lock);
}

static char *get_auth(struct hm_registry *r)
{
	pthread_mutex_lock(&r->lock);
	char *a = r->auth ? xstrdup(r->auth) : NULL;
	pthread_mutex_unlock(&r->lock);
	return a;
}

static char *basic_auth(const struct hm_registry *r)
{
	_cleanup_free_ char *up = xasprintf("%s:%s", r->username, r->password ?: "");
	/* Standard base64 with padding. */
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(up);
	char *out = xmalloc(6 + (n + 2) / 3 * 4 + 1);
	char *o = out + sprintf(out, "Basic ");
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)up[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)up[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)up[i + 2];
		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tbl[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	const struct hm_registry *r = ud;
	return r->opts.cancel && *r->opts.cancel ? 1 : 0;
}

static void apply_common(CURL *h, const struct hm_registry *r, char *errbuf)
{
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)r);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, r->opts.connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, r->opts.stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "hypeman/0.1");
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
}

/* GET the realm for a bearer token; sets r->auth on success. */
static int fetch_token(struct hm_registry *r, const char *challenge, struct hm_err **err)
{
	_cleanup_free_ char *realm = hm_challenge_param(challenge, "realm");
	_cleanup_free_ char *service = hm_challenge_param(challenge, "service");
	_cleanup_free_ char *scope = hm_challenge_param(challenge, "scope");
	if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_error",
		                  "registry %s sent an unusable auth challenge `%s`", r->host,
		                  challenge);
	if (!scope)
		scope = xasprintf("repository:%s:pull", r->repo);
	_cleanup_free_ char *svc_enc = service ? hm_percent_encode(service) : NULL;
	_cleanup_free_ char *scope_enc = hm_percent_encode(scope);
	_cleanup_free_ char *url =
	    xasprintf("%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?", scope_enc,
	              svc_enc ? "&service=" : "", svc_enc ? svc_enc : "");
	struct sink s = { .fd = -1, .max = 1 << 20 };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *h = curl_easy_init();
	if (!h)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "cannot initialise libcurl");
	s.h = h;
	apply_common(h, r, errbuf);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	struct curl_slist *hdrs = NULL;
	_cleanup_free_ char *basic = r->username ? basic_auth(r) : NULL;
	_cleanup_free_ char *hline = basic ? xasprintf("Authorization: %s", basic) : NULL;
	if (hline)
		hdrs = curl_slist_append(hdrs, hline);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	int ret = 0;
	json_t *j = NULL;
	if (rc != CURLE_OK) {
		ret = hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_unreachable",
		                 "cannot reach token service %s: %s", realm,
		                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (status == 401 || status == 403) {
		ret =
		    hm_err_set(err, HM_ERR_UNAUTHORIZED, "registry_unauthorized",
		               "registry %s refused %s (HTTP %ld from its token service)", r->host,
		               r->username ? "the credentials" : "anonymous access", status);
	} else if (status != 200 || !s.buf || !(j = json_loadb(s.buf, s.len, 0, NULL))) {
		ret = hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_error",
		                 "token service %s answered HTTP %ld", realm, status);
	} else {
		const char *tok = json_string_value(json_object_get(j, "token"));
		if (!tok || !*tok)
			tok = json_string_value(json_object_get(j, "access_token"));
		if (!tok || !*tok)
			ret = hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_error",
			                 "token service %s returned no token", realm);
		else
			set_auth(r, xasprintf("Bearer %s", tok));
	}
	json_decref(j);
	free(s.buf);
	sink_reset(&s);
	return ret;
}

static int answer_challenge(struct hm_registry *r, const char *challenge, struct hm_err **err)
{
	if (!challenge)
		return hm_err_set(err, HM_ERR_UNAUTHORIZED, "registry_unauthorized",
		                  "registry %s requires authentication but sent no challenge",
		                  r->host);
	if (strncasecmp(challenge, "bearer", 6) == 0)
		return fetch_token(r, challenge, err);
	if (strncasecmp(challenge, "basic", 5) == 0) {
		if (!r->username)
			return hm_err_set(err, HM_ERR_UNAUTHORIZED, "registry_unauthorized",
			                  "registry %s requires credentials for %s", r->host,
			                  r->repo);
		set_auth(r, basic_auth(r));
		return 0;
	}
	return hm_err_set(err, HM_ERR_UNAUTHORIZED, "registry_unauthorized",
	                  "registry %s asks for unsupported authentication `%s`", r->host,
	                  challenge);
}

/* ---- requests ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A short reason from a registry's error body ({"errors":[{"code","message"}]}). */
static char *registry_reason(const struct sink *s)
{
	json_t *j = s->buf ? json_loadb(s->buf, s->len, 0, NULL) : NULL;
	json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
	const char *m = json_string_value(json_object_get(e0, "message"));
	char *out = m && *m ? xstrdup(m) : NULL;
	json_decref(j);
	return out;
}

/*
 * GET `url` into `s` with retries and auth. Returns 0 on 2xx. `what` names
 * the object for messages ("manifest alpine:latest").
 */
static int request(struct hm_registry *r, const char *url, const char *accept, struct sink *s,
                   const char *what, struct hm_err **err)
{
	bool answered = false;
	long delay = r->opts.backoff_ms;
	for (int attempt = 1;; attempt++) {
		CURL *h = curl_easy_init();
		if (!h)
			return hm_err_set(err, HM_ERR_INTERNAL, NULL, "cannot initialise libcurl");
		char errbuf[CURL_ERROR_SIZE] = "";
		sink_reset(s);
		s->h = h;
		apply_common(h, r, errbuf);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
		struct curl_slist *hdrs = NULL;
		_cleanup_free_ char *auth = get_auth(r);
		_cleanup_free_ char *aline = auth ? xasprintf("Authorization: %s", auth) : NULL;
		_cleanup_free_ char *accline = accept ? xasprintf("Accept: %s", accept) : NULL;
		if (aline)
			hdrs = curl_slist_append(hdrs, aline);
		if (accline)
			hdrs = curl_slist_append(hdrs, accline);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		CURLcode rc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		s->h = NULL;
		s->status = status;

		if (s->write_errno)
			return hm_err_set(
			    err, s->write_errno == ENOSPC ? HM_ERR_INSUFFICIENT : HM_ERR_INTERNAL,
			    s->write_errno == ENOSPC ? "insufficient_storage" : NULL,
			    "write %s: %s", what, strerror(s->write_errno));
		if (rc == CURLE_OK && status / 100 == 2)
			return 0;
		if (rc == CURLE_OK && (status == 401 || (status == 403 && !answered)) &&
		    !answered) {
			answered = true;
			if (answer_challenge(r, s->www_auth, err) < 0)
				return -1;
			attempt--; /* answering a challenge is not a failed attempt */
			continue;
		}
		_cleanup_free_ char *reason = rc == CURLE_OK ? registry_reason(s) : NULL;
		if (rc == CURLE_OK && (status == 401 || status == 403))
			return hm_err_set(err, HM_ERR_UNAUTHORIZED, "registry_unauthorized",
			                  "registry %s denied access to %s%s%s", r->host, what,
			                  reason ? ": " : "", reason ? reason : "");
		if (rc == CURLE_OK && status == 404)
			return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
			                  "%s not found in registry %s%s%s%s", what, r->host,
			                  reason ? " (" : "", reason ? reason : "",
			                  reason ? ")" : "");
		if (rc == CURLE_OK && s->overflow && s->fd < 0)
			return hm_err_set(err, HM_ERR_INVALID, "registry_error",
			                  "%s from %s is larger than %zu bytes", what, r->host,
			                  s->max);
		if (rc == CURLE_ABORTED_BY_CALLBACK)
			return hm_err_set(err, HM_ERR_UNAVAILABLE, "cancelled",
			                  "fetch %s from %s: cancelled (shutting down)", what,
			                  r->host);
		bool retry = rc != CURLE_OK || status == 429 || status >= 500;
		if (!retry || attempt >= r->opts.attempts) {
			if (rc != CURLE_OK)
				return hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_unreachable",
				                  "fetch %s from %s failed after %d attempts: %s",
				                  what, r->host, attempt,
				                  errbuf[0] ? errbuf : curl_easy_strerror(rc));
			if (status == 429)
				return hm_err_set(err, HM_ERR_UNAVAILABLE, "rate_limited",
				                  "registry %s rate-limited the pull of %s",
				                  r->host, what);
			return hm_err_set(err, HM_ERR_UNAVAILABLE, "registry_error",
			                  "fetch %s from %s: HTTP %ld%s%s", what, r->host, status,
			                  reason ? ": " : "", reason ? reason : "");
		}
		log_debug("registry", "retrying", "what=\"%s\" attempt=%d status=%ld curl=\"%s\"",
		          what, attempt, status, errbuf);
		sleep_ms(delay);
		delay *= 2;
	}
}

/* ---- public ---- */

int hm_registry_open(const struct hm_image_ref *ref, const struct hm_registry_creds *creds,
                     const struct hm_registry_opts *opts, struct hm_registry **ret,
                     struct hm_err **err)
{
	(void)err;
	struct hm_registry *r = xcalloc(1, sizeof(*r));
	if (opts)
		r->opts = *opts;
	if (r->opts.connect_timeout_s <= 0)
		r->opts.connect_timeout_s = 15;
	if (r->opts.stall_timeout_s <= 0)
		r->opts.stall_timeout_s = 30;
	if (r->opts.attempts <= 0)
		r->opts.attempts = 4;
	if (r->opts.backoff_ms <= 0)
		r->opts.backoff_ms = 250;
	bool plain = hm_image_ref_plain_http(ref, r->opts.insecure);
	r->host = xstrdup(hm_image_ref_endpoint(ref));
	r->repo = xstrdup(ref->repository);
	r->base = xasprintf("%s://%s/v2/%s", plain ? "http" : "https", r->host, r->repo);
	r->opts.insecure = NULL;
	pthread_mutex_init(&r->lock, NULL);
	if (creds && creds->token && *creds->token)
		r->auth = xasprintf("Bearer %s", creds->token);
	if (creds && creds->username && *creds->username) {
		r->username = xstrdup(creds->username);
		r->password = xstrdup(creds->password ? creds->password : "");
	}
	*ret = r;
	return 0;
}

void hm_registry_close(struct hm_registry *r)
{
	if (!r)
		return;
	free(r->base);
	free(r->host);
	free(r->repo);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->username);
	free(r->password);
	free(r->auth);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static const char MANIFEST_ACCEPT[] = "application/vnd.oci.image.index.v1+json, "
                                      "application/vnd.docker.distribution.manifest.list.v2+json, "
                                      "application/vnd.oci.image.manifest.v1+json, "
                                      "application/vnd.docker.distribution.manifest.v2+json";

static char *sha256_digest(const void *data, size_t len)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	_cleanup_free_ char *hex = hm_hex_encode(md, sizeof(md));
	return xasprintf("sha256:%s", hex);
}

int hm_registry_manifest(struct hm_registry *r, const char *reference, char **body, size_t *len,
                         char **media_type, char **digest, struct hm_err **err)
{
	_cleanup_free_ char *url = xasprintf("%s/manifests/%s", r->base, reference);
	_cleanup_free_ char *what = xasprintf("manifest %s:%s", r->repo, reference);
	struct sink s = { .fd = -1, .max = HM_MANIFEST_MAX };
	int ret = request(r, url, MANIFEST_ACCEPT, &s, what, err);
	if (ret == 0) {
		_cleanup_free_ char *d = sha256_digest(s.buf ? s.buf : "", s.len);
		if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, d) != 0) {
			ret = hm_err_set(err, HM_ERR_INVALID, "digest_mismatch",
			                 "%s from %s has digest %s", what, r->host, d);
		} else if (!s.buf || s.len == 0) {
			ret = hm_err_set(err, HM_ERR_INVALID, "registry_error",
			                 "%s from %s is empty", what, r->host);
		} else {
			*body = TAKE_PTR(s.buf);
			*len = s.len;
			*digest = TAKE_PTR(d);
			/* Media type: the header, minus parameters. */
			char *mt = s.content_type ? xstrdup(s.content_type) : xstrdup("");
			mt[strcspn(mt, "; ")] = '\0';
			*media_type = mt;
		}
	}
	free(s.buf);
	sink_reset(&s);
	return ret;
}

int hm_registry_blob(struct hm_registry *r, const char *digest, int64_t expected_size,
                     const char *dest, hm_blob_progress_fn *progress, void *userdata,
                     struct hm_err **err)
{
	if (!hm_digest_valid(digest))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_digest", "invalid blob digest `%s`",
		                  digest);
	_cleanup_free_ char *url = xasprintf("%s/blobs/%s", r->base, digest);
	_cleanup_free_ char *what = xasprintf("blob %s", digest);
	_cleanup_free_ char *tmp =
	    xasprintf("%s.part.%d.%lx", dest, (int)getpid(), (unsigned long)pthread_self());
	struct sink s = { .progress = progress, .userdata = userdata };
	s.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s.fd < 0)
		return hm_err_errno(err, errno, "create `%s`", tmp);
	s.md = EVP_MD_CTX_new();
	int ret = request(r, url, NULL, &s, what, err);
	if (ret == 0) {
		unsigned char md[32];
		unsigned int mdlen = 0;
		EVP_DigestFinal_ex(s.md, md, &mdlen);
		_cleanup_free_ char *hex = hm_hex_encode(md, sizeof(md));
		_cleanup_free_ char *got = xasprintf("sha256:%s", hex);
		if (strcmp(got, digest) != 0)
			ret = hm_err_set(err, HM_ERR_INVALID, "digest_mismatch",
			                 "blob %s from %s does not match its digest (got %s)",
			                 digest, r->host, got);
		else if (expected_size >= 0 && (int64_t)s.written != expected_size)
			ret = hm_err_set(err, HM_ERR_INVALID, "size_mismatch",
			                 "blob %s from %s is %llu bytes, manifest says %lld",
			                 digest, r->host, (unsigned long long)s.written,
			                 (long long)expected_size);
		else if (fsync(s.fd) < 0)
			ret = hm_err_errno(err, errno, "fsync `%s`", tmp);
		else if (rename(tmp, dest) < 0)
			ret = hm_err_errno(err, errno, "rename `%s`", tmp);
	}
	EVP_MD_CTX_free(s.md);
	close(s.fd);
	s.fd = -1;
	if (ret < 0)
		unlink(tmp);
	free(s.buf);
	sink_reset(&s);
	return ret;
}
