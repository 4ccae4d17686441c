/*
 * What a request handler sees: a request (method, path parameters, query,
 * parsed JSON body, the authenticated principal, the services) and a
 * response to fill. Handlers return 0 after filling the response, or < 0
 * with *err set; api/errors.c alone turns errors into {code,message}.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct hm_err;
struct hm_principal;
struct hm_req;
struct hm_services;

#define HM_RESP_MAX_HEADERS 8

struct hm_resp {
	int status;
	json_t *json;             /* owned; sent as application/json when set */
	const char *content_type; /* for raw bodies */
	const void *data;         /* raw body (not owned; must outlive the server) */
	size_t len;
	char *owned; /* a raw body the response owns (hm_resp_text), sent instead of data */
	/*
	 * A streamed body (SSE): stream_read fills buf and returns > 0 bytes, 0
	 * for "nothing yet" (it should wait a little, ~250 ms, before returning
	 * 0), or -1 at the end. stream_free releases stream_cls. The edge calls
	 * them from the connection's own thread.
	 */
	ssize_t (*stream_read)(void *cls, char *buf, size_t max);
	void (*stream_free)(void *cls);
	void *stream_cls;
	/*
	 * 101 Switching Protocols (WebSocket): after the response headers go out,
	 * upgrade() runs on the connection's own thread with the raw socket, in
	 * blocking mode, and the bytes the client already sent after its request.
	 * The edge closes the socket when it returns. upgrade_free releases
	 * upgrade_cls whether or not upgrade() ran.
	 */
	void (*upgrade)(void *cls, int fd, const char *extra, size_t extra_len);
	void (*upgrade_free)(void *cls);
	void *upgrade_cls;
	struct {
		const char *name; /* static */
		char *value;      /* owned */
	} headers[HM_RESP_MAX_HEADERS];
	size_t nheaders;
};

typedef int hm_handler_fn(struct hm_req *req, struct hm_resp *resp, struct hm_err **err);

enum hm_route_flags {
	HM_ROUTE_PUBLIC = 1 << 0,    /* no authentication */
	HM_ROUTE_JSON_BODY = 1 << 1, /* accepts an application/json body */
	HM_ROUTE_UPLOAD = 1 << 2,    /* streams a (tar) body to a temp file, MAX_UPLOAD_BYTES */
};

struct hm_route {
	const char *method;
	const char *pattern; /* "/instances/{id}/logs": {name} matches one segment */
	const char *scope;   /* required scope; NULL only with HM_ROUTE_PUBLIC */
	unsigned flags;
	hm_handler_fn *fn;
};

/* The route table (api/routes.c). */
extern const struct hm_route hm_routes[];
extern const size_t hm_routes_count;

/* Request accessors. Returned strings are borrowed for the request's lifetime. */
const char *hm_req_method(const struct hm_req *req);
const char *hm_req_path(const struct hm_req *req);
const char *hm_req_param(const struct hm_req *req, const char *name);
const char *hm_req_query(const struct hm_req *req, const char *name);
size_t hm_req_query_count(const struct hm_req *req);
void hm_req_query_at(const struct hm_req *req, size_t i, const char **key, const char **value);
const char *hm_req_header(const struct hm_req *req, const char *name);
json_t *hm_req_json(const struct hm_req *req); /* borrowed; NULL when there was no body */
/* HM_ROUTE_UPLOAD: the file holding the body (the handler may rename it away). */
const char *hm_req_upload_path(const struct hm_req *req);
const struct hm_principal *hm_req_principal(const struct hm_req *req);
struct hm_services *hm_req_services(const struct hm_req *req);

/* Response builders. */
int hm_resp_json(struct hm_resp *resp, int status, json_t *body /* stolen */);
int hm_resp_raw(struct hm_resp *resp, int status, const char *content_type, const void *data,
                size_t len);
/* A raw body made for this response (taken; freed with it). */
int hm_resp_text(struct hm_resp *resp, int status, const char *content_type, char *text,
                 size_t len);
void hm_resp_header(struct hm_resp *resp, const char *name, const char *value);
void hm_resp_done(struct hm_resp *resp);

/* Fill `resp` with the {code,message} body and status for `err` (api/errors.c). */
void hm_resp_error(struct hm_resp *resp, const struct hm_err *err);
