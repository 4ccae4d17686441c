/*
 * http: the libmicrohttpd edge. This file is the only includer of
 * <microhttpd.h>.
 *
 * Threading: MHD runs a thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * and a handler runs on its connection's thread. A handler may block that
 * thread: a create, fork or standby does its work in the request, a wait or
 * a log stream waits there, an upgraded socket (exec, cp) is served there.
 * What a handler must not do is hold a lock that other requests need while
 * it waits (see docs/design.md, "Locks").
 *
 * A request passes these gates in order, each answering with the one
 * error shape (api/errors.c):
 *   1. routing          404 unknown path, 405 wrong method (after auth, so
 *                       an anonymous caller learns nothing about routes)
 *   2. authentication   401 without a valid bearer token (public routes skip)
 *   3. authorization    403 when the token lacks the route's scope
 *   4. body limits      413 before reading when Content-Length is too big,
 *                       415 for a non-JSON body, 400 for malformed JSON
 * Gates 1-4 answer before the body is read where they can, so an oversized
 * or unauthorized upload is never buffered.
 *
 * Connection hygiene (issue 20): MAX_CONNECTIONS in all, at most
 * MAX_CONNECTIONS_PER_CLIENT from one address (so one client hoarding
 * sockets leaves room for everyone else), and a connection waiting for a
 * request head (new, or idle between keep-alive requests) is closed after
 * REQUEST_HEAD_TIMEOUT seconds with nothing received. Once a head is in, the
 * request gets REQUEST_TIMEOUT_S of inactivity (a body upload, a response
 * stream); after the response the head timeout applies again.
 *
 * URL unescaping is disabled in MHD (identity callback) so the router can
 * split the raw path before decoding each segment; query values are
 * decoded here.
 */
#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/dialect.h"
#include "api/fields.h"
#include "api/request.h"
#include "api/router.h"
#include "auth/jwt.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"

#define REQUEST_TIMEOUT_S 120 /* inactivity once a request's head is in */

#define MAX_QUERY_ARGS 64

struct hm_api {
	struct MHD_Daemon *mhd;
	struct hm_services *svc;
	uint16_t port;
	atomic_bool stopping; /* ends streamed responses at shutdown */
};

/*
 * One thread per connection: a slow handler (an image import, a VM boot)
 * never stalls another client, and a streamed response (SSE logs; later
 * exec) may block its own thread waiting for data.
 */

/* A streamed body: the handler's reader, called until it ends or we stop. */
struct stream {
	struct hm_api *api;
	ssize_t (*read)(void *cls, char *buf, size_t max);
	void (*free)(void *cls);
	void *cls;
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream *s = cls;
	for (;;) {
		if (atomic_load(&s->api->stopping))
			return MHD_CONTENT_READER_END_OF_STREAM;
		ssize_t n = s->read(s->cls, buf, max);
		if (n > 0)
			return n;
		if (n < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
}

/* An upgraded connection: the handler's session, then the socket is closed. */
struct upgrade {
	void (*run)(void *cls, int fd, const char *extra, size_t extra_len);
	void (*free)(void *cls);
	void *cls;
};

static void upgrade_cb(void *cls, struct MHD_Connection *connection, void *req_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
	(void)connection;
	(void)req_cls;
	struct upgrade *u = cls;
	int fl = fcntl(sock, F_GETFL);
	if (fl >= 0)
		fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
	u->run(u->cls, sock, extra_in, extra_in_size);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	if (u->free)
		u->free(u->cls);
	free(u);
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	if (s->free)
		s->free(s->cls);
	free(s);
}

struct hm_req {
	struct hm_api *api;
	struct MHD_Connection *conn;
	struct timespec start;
	char *method;
	char *path;
	const struct hm_dialect *dialect; /* picked from the path before routing */
	const struct hm_route *route;
	struct hm_params params;
	struct hm_principal *principal;
	char *body;
	size_t body_len;
	int upload_fd;     /* HM_ROUTE_UPLOAD: the body streams into this file */
	char *upload_path; /* ... at this path, removed after the response */
	size_t discarded;
	bool too_large;
	int upload_write_errno;
	bool responded;
	char *allow; /* for a 405: the methods the path does take */
	json_t *json;
	size_t nquery;
	char *qkeys[MAX_QUERY_ARGS];
	char *qvals[MAX_QUERY_ARGS];
};

/* ---- accessors used by handlers ---- */

const char *hm_req_upload_path(const struct hm_req *req)
{
	return req->upload_path;
}

const char *hm_req_method(const struct hm_req *req)
{
	return req->method;
}

const char *hm_req_path(const struct hm_req *req)
{
	return req->path;
}

const char *hm_req_param(const struct hm_req *req, const char *name)
{
	return hm_params_get(&req->params, name);
}

const char *hm_req_query(const struct hm_req *req, const char *name)
{
	for (size_t i = 0; i < req->nquery; i++)
		if (strcmp(req->qkeys[i], name) == 0)
			return req->qvals[i];
	return NULL;
}

size_t hm_req_query_count(const struct hm_req *req)
{
	return req->nquery;
}

void hm_req_query_at(const struct hm_req *req, size_t i, const char **key, const char **value)
{
	*key = req->qkeys[i];
	*value = req->qvals[i];
}

const char *hm_req_header(const struct hm_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

json_t *hm_req_json(const struct hm_req *req)
{
	return req->json;
}

const struct hm_principal *hm_req_principal(const struct hm_req *req)
{
	return req->principal;
}

struct hm_services *hm_req_services(const struct hm_req *req)
{
	return req->api->svc;
}

/* ---- responses ---- */

int hm_resp_json(struct hm_resp *resp, int status, json_t *body)
{
	json_decref(resp->json);
	resp->status = status;
	resp->json = body;
	return 0;
}

int hm_resp_raw(struct hm_resp *resp, int status, const char *content_type, const void *data,
                size_t len)
{
	resp->status = status;
	resp->content_type = content_type;
	resp->data = data;
	resp->len = len;
	return 0;
}

int hm_resp_text(struct hm_resp *resp, int status, const char *content_type, char *text, size_t len)
{
	free(resp->owned);
	resp->owned = text;
	return hm_resp_raw(resp, status, content_type, text, len);
}

void hm_resp_header(struct hm_resp *resp, const char *name, const char *value)
{
	if (resp->nheaders == HM_RESP_MAX_HEADERS)
		abort(); /* a programming error: raise the limit */
	resp->headers[resp->nheaders].name = name;
	resp->headers[resp->nheaders++].value = xstrdup(value);
}

void hm_resp_done(struct hm_resp *resp)
{
	json_decref(resp->json);
	free(resp->owned);
	if (resp->stream_read && resp->stream_free)
		resp->stream_free(resp->stream_cls); /* never handed to the edge */
	if (resp->upgrade && resp->upgrade_free)
		resp->upgrade_free(resp->upgrade_cls);
	for (size_t i = 0; i < resp->nheaders; i++)
		free(resp->headers[i].value);
	*resp = (struct hm_resp){ 0 };
}

static double elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static enum MHD_Result send_resp(struct hm_req *req, struct hm_resp *resp)
{
	struct MHD_Response *r;
	const char *ctype;
	if (req->dialect && req->dialect->finish)
		req->dialect->finish(resp, elapsed_ms(&req->start) * 1000.0);
	if (resp->json) {
		char *s = json_dumps(resp->json, JSON_COMPACT);
		if (!s)
			abort();
		size_t len = strlen(s);
		s = xrealloc(s, len + 2);
		s[len++] = '\n';
		r = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
		ctype = "application/json";
	} else if (resp->upgrade) {
		struct upgrade *u = xcalloc(1, sizeof(*u));
		*u = (struct upgrade){ resp->upgrade, resp->upgrade_free, resp->upgrade_cls };
		resp->upgrade = NULL;
		r = MHD_create_response_for_upgrade(upgrade_cb, u);
		ctype = NULL;
		if (!r) {
			if (u->free)
				u->free(u->cls);
			free(u);
		}
	} else if (resp->stream_read) {
		struct stream *st = xcalloc(1, sizeof(*st));
		*st = (struct stream){ req->api, resp->stream_read, resp->stream_free,
			               resp->stream_cls };
		resp->stream_read = NULL;
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_cb, st,
		                                      stream_free);
		ctype = resp->content_type ? resp->content_type : "application/octet-stream";
		if (!r)
			stream_free(st);
	} else if (resp->owned) {
		r = MHD_create_response_from_buffer(resp->len, resp->owned, MHD_RESPMEM_MUST_FREE);
		if (r)
			resp->owned = NULL; /* MHD's now */
		ctype = resp->content_type ? resp->content_type : "text/plain";
	} else {
		r = MHD_create_response_from_buffer(resp->len, (void *)resp->data,
		                                    MHD_RESPMEM_PERSISTENT);
		ctype = resp->content_type ? resp->content_type : "text/plain";
	}
	if (!r)
		return MHD_NO;
	if (ctype && (resp->json || resp->len > 0 || resp->content_type))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (size_t i = 0; i < resp->nheaders; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	req->responded = true;
	log_info("http", "request", "method=%s path=\"%s\" status=%d dur_ms=%.2f", req->method,
	         req->path, resp->status, elapsed_ms(&req->start));
	return ret;
}

static enum MHD_Result send_error(struct hm_req *req, struct hm_err *err)
{
	struct hm_resp resp = { 0 };
	(req->dialect ? req->dialect : &hm_dialect_hypeman)->render_error(&resp, err);
	if (req->allow && hm_err_is(err, HM_ERR_METHOD))
		hm_resp_header(&resp, "Allow", req->allow);
	if (hm_err_http_status(err) >= 500)
		log_error("http", "request failed", "method=%s path=\"%s\" error=\"%s\"",
		          req->method, req->path, err->msg);
	enum MHD_Result r = send_resp(req, &resp);
	hm_resp_done(&resp);
	return r;
}

/* ---- the gates ---- */

static int authenticate(struct hm_req *req, struct hm_err **err)
{
	const char *h = hm_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || !*h)
		return hm_err_set(err, HM_ERR_UNAUTHORIZED, NULL, "authorization header required");
	if (strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
		return hm_err_set(err, HM_ERR_UNAUTHORIZED, NULL,
		                  "invalid authorization header format");
	const char *token = h + 7;
	while (*token == ' ')
		token++;
	return hm_jwt_verify(req->api->svc->jwt_secret, token, time(NULL), &req->principal, err);
}

static size_t body_limit(const struct hm_req *req)
{
	return req->route && (req->route->flags & HM_ROUTE_UPLOAD)
	           ? req->api->svc->cfg->max_upload_bytes
	           : req->api->svc->cfg->max_body_bytes;
}

/* Upload routes stream their body to a temporary file in the data dir. */
static int open_upload(struct hm_req *req, struct hm_err **err)
{
	const char *ct = hm_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct && strncasecmp(ct, "application/x-tar", 17) != 0 &&
	    strncasecmp(ct, "application/octet-stream", 24) != 0 &&
	    strncasecmp(ct, "application/gzip", 16) != 0)
		return hm_err_set(err, HM_ERR_MEDIA_TYPE, NULL,
		                  "upload must be application/x-tar, application/gzip or "
		                  "application/octet-stream, got `%s`",
		                  ct);
	_cleanup_free_ char *dir = xasprintf("%s/tmp", req->api->svc->cfg->data_dir);
	if (hm_mkdir_p(dir, 0700, err) < 0)
		return -1;
	req->upload_path = xasprintf("%s/upload.XXXXXX", dir);
	req->upload_fd = mkostemp(req->upload_path, O_CLOEXEC);
	if (req->upload_fd < 0) {
		int e = errno;
		free(req->upload_path);
		req->upload_path = NULL;
		return hm_err_errno(err, e, "create upload file");
	}
	return 0;
}

static int check_body_headers(struct hm_req *req, struct hm_err **err)
{
	size_t max = body_limit(req);
	const char *cl = hm_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno || *end || end == cl || n > max)
			return hm_err_set(err, HM_ERR_TOO_LARGE, NULL,
			                  "request body exceeds the %zu byte limit", max);
		if (n == 0)
			return 0;
	}
	if (req->route->flags & HM_ROUTE_UPLOAD)
		return open_upload(req, err);
	const char *ct = hm_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!(req->route->flags & HM_ROUTE_JSON_BODY)) {
		if (cl && strcmp(cl, "0") != 0)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_request",
			                  "%s %s takes no request body", req->method,
			                  req->route->pattern);
		return 0;
	}
	if (ct && strncasecmp(ct, "application/json", 16) != 0)
		return hm_err_set(err, HM_ERR_MEDIA_TYPE, NULL,
		                  "request body must be application/json, got `%s`", ct);
	return 0;
}

static int parse_body(struct hm_req *req, struct hm_err **err)
{
	if (req->too_large)
		return hm_err_set(err, HM_ERR_TOO_LARGE, NULL,
		                  "request body exceeds the %zu byte limit", body_limit(req));
	if (req->upload_write_errno)
		return hm_err_errno(err, req->upload_write_errno, "store upload");
	if (req->route->flags & HM_ROUTE_UPLOAD)
		return 0;
	if (req->body_len == 0)
		return 0;
	if (!(req->route->flags & HM_ROUTE_JSON_BODY))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_request",
		                  "%s %s takes no request body", req->method, req->route->pattern);
	json_error_t jerr;
	req->json = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req->json)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "request body is not valid JSON: %s (line %d, column %d)",
		                  jerr.text, jerr.line, jerr.column);
	/* Only fields our document lists get through (api/fields.h). */
	return hm_body_fields_check(req->method, req->route->pattern, req->json, err);
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
	(void)kind;
	struct hm_req *req = cls;
	if (req->nquery == MAX_QUERY_ARGS)
		return MHD_NO;
	char *k = hm_percent_decode(key, strlen(key));
	char *v = value ? hm_percent_decode(value, strlen(value)) : xstrdup("");
	if (!k || !v) {
		free(k);
		free(v);
		return MHD_NO;
	}
	req->qkeys[req->nquery] = k;
	req->qvals[req->nquery++] = v;
	return MHD_YES;
}

/* Gates 1-4 on the first call, before any body byte is read. */
static int admit(struct hm_req *req, struct hm_err **err)
{
	_cleanup_err_ struct hm_err *route_err = NULL;
	req->dialect = hm_dialect_pick(hm_dialects, hm_dialects_count, req->path);
	if (!req->dialect)
		req->dialect = &hm_dialect_hypeman;
	int r = hm_router_match(req->dialect->routes, *req->dialect->nroutes, req->method,
	                        req->path, &req->route, &req->params, &req->allow, &route_err);
	if (r < 0 || !(req->route->flags & HM_ROUTE_PUBLIC)) {
		if (authenticate(req, err) < 0)
			return -1;
	}
	if (r < 0) {
		*err = TAKE_PTR(route_err);
		return -1;
	}
	if (req->route->scope && !hm_principal_has_scope(req->principal, req->route->scope))
		return hm_err_set(err, HM_ERR_FORBIDDEN, NULL, "missing required scope: %s",
		                  req->route->scope);
	int nargs = MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_query, req);
	if (nargs < 0 || (size_t)nargs != req->nquery)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "malformed or too many query parameters (at most %d)",
		                  MAX_QUERY_ARGS);
	return check_body_headers(req, err);
}

static void append_body(struct hm_req *req, const char *data, size_t len)
{
	size_t max = body_limit(req);
	if (req->too_large || req->body_len + len > max) {
		req->too_large = true;
		req->discarded += len;
		return;
	}
	if (req->upload_fd >= 0) {
		int r = req->upload_write_errno ? 0 : hm_write_all(req->upload_fd, data, len);
		if (r < 0)
			req->upload_write_errno = -r;
		req->body_len += len;
		return;
	}
	req->body = xrealloc(req->body, req->body_len + len + 1);
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	req->body[req->body_len] = '\0';
}

static enum MHD_Result dispatch(struct hm_req *req)
{
	_cleanup_err_ struct hm_err *err = NULL;
	if (parse_body(req, &err) < 0)
		return send_error(req, err);
	struct hm_resp resp = { .status = 200 };
	if (req->route->fn(req, &resp, &err) < 0) {
		hm_resp_done(&resp);
		if (!err)
			hm_err_set(&err, HM_ERR_INTERNAL, NULL, "handler failed without detail");
		return send_error(req, err);
	}
	enum MHD_Result r = send_resp(req, &resp);
	hm_resp_done(&resp);
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	(void)version;
	struct hm_req *req = *con_cls;
	if (!req) {
		/* The head is in: the request's own timeout from here. */
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
		                          (unsigned)REQUEST_TIMEOUT_S);
		req = xcalloc(1, sizeof(*req));
		req->upload_fd = -1;
		req->api = cls;
		req->conn = conn;
		clock_gettime(CLOCK_MONOTONIC, &req->start);
		req->method = xstrdup(method);
		req->path = xstrdup(url);
		*con_cls = req;
		_cleanup_err_ struct hm_err *err = NULL;
		if (admit(req, &err) < 0)
			return send_error(req, err);
		return MHD_YES;
	}
	if (*upload_size) {
		if (!req->responded)
			append_body(req, upload, *upload_size);
		*upload_size = 0;
		/* Drain a bounded amount of an oversized chunked body, then hang up. */
		if (req->discarded > 16 * req->api->svc->cfg->max_body_bytes)
			return MHD_NO;
		return MHD_YES;
	}
	if (req->responded)
		return MHD_YES;
	return dispatch(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	struct hm_api *api = cls;
	/* Kept alive, the connection waits for its next head. */
	MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
	                          api->svc->cfg->head_timeout_s);
	struct hm_req *req = *con_cls;
	if (!req)
		return;
	hm_params_done(&req->params);
	hm_principal_free(req->principal);
	json_decref(req->json);
	for (size_t i = 0; i < req->nquery; i++) {
		free(req->qkeys[i]);
		free(req->qvals[i]);
	}
	free(req->body);
	if (req->upload_fd >= 0)
		close(req->upload_fd);
	if (req->upload_path)
		unlink(req->upload_path);
	free(req->upload_path);
	free(req->allow);
	free(req->method);
	free(req->path);
	free(req);
	*con_cls = NULL;
}

/* Keep URLs and query strings raw: we decode after splitting. */
static size_t unescape_identity(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

/* A connection opened: until a head arrives it gets the head timeout. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	(void)socket_context;
	struct hm_api *api = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
		                          api->svc->cfg->head_timeout_s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_warn("http", buf);
}

int hm_api_start(struct hm_services *svc, struct hm_api **ret, struct hm_err **err)
{
	const struct hm_config *cfg = svc->cfg;
	struct sockaddr_storage ss = { 0 };
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
	                 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
	if (strchr(cfg->listen_addr, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)cfg->port);
		if (inet_pton(AF_INET6, cfg->listen_addr, &a6->sin6_addr) != 1)
			return hm_err_set(err, HM_ERR_INVALID, NULL, "invalid listen address `%s`",
			                  cfg->listen_addr);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)cfg->port);
		if (inet_pton(AF_INET, cfg->listen_addr, &a4->sin_addr) != 1)
			return hm_err_set(err, HM_ERR_INVALID, NULL, "invalid listen address `%s`",
			                  cfg->listen_addr);
	}

	struct hm_api *api = xcalloc(1, sizeof(*api));
	api->svc = svc;
	api->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
	    api, MHD_OPTION_NOTIFY_CONNECTION, on_connection, api, MHD_OPTION_UNESCAPE_CALLBACK,
	    unescape_identity, NULL, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_client,
	    MHD_OPTION_CONNECTION_TIMEOUT, cfg->head_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)(128 * 1024), MHD_OPTION_END);
	if (!api->mhd) {
		free(api);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "cannot listen on %s:%d (address in use or not available)",
		                  cfg->listen_addr, cfg->port);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	api->port = info ? info->port : (uint16_t)cfg->port;
	*ret = api;
	return 0;
}

uint16_t hm_api_port(const struct hm_api *api)
{
	return api->port;
}

void hm_api_stop(struct hm_api *api)
{
	if (!api)
		return;
	atomic_store(&api->stopping, true);
	MHD_stop_daemon(api->mhd);
	free(api);
}
