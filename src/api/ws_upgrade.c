/*
 * api/ws_upgrade: the server half of the WebSocket opening handshake
 * (RFC 6455 §4.2) in terms of the edge's request and response objects.
 */
#include "api/ws_upgrade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"
#include "guest/b64.h"
#include "instance/instances.h"

#define FIRST_MESSAGE_MS 30000       /* how long a client may take to send its request */
#define FINISH_MS        5000        /* for the client to take our last frames and close */
#define DATA_CHUNK       (24u << 10) /* decoded bytes per data message (the guest takes 32 KiB) */

int hm_ws_check_upgrade(struct hm_req *req, char **accept, struct hm_err **err)
{
	const char *up = hm_req_header(req, "Upgrade");
	const char *ver = hm_req_header(req, "Sec-WebSocket-Version");
	if (!up || strcasecmp(up, "websocket") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "bad_request",
		                  "this endpoint speaks WebSocket: send Upgrade: websocket");
	if (!ver || strcmp(ver, "13") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "bad_request",
		                  "unsupported Sec-WebSocket-Version (13 is supported)");
	*accept = hm_ws_accept_key(hm_req_header(req, "Sec-WebSocket-Key"));
	if (!*accept)
		return hm_err_set(err, HM_ERR_INVALID, "bad_request",
		                  "Sec-WebSocket-Key is missing or not the base64 of 16 bytes");
	return 0;
}

void hm_resp_upgrade(struct hm_resp *resp, const char *accept,
                     void (*run)(void *cls, int fd, const char *extra, size_t extra_len),
                     void (*free_cls)(void *cls), void *cls)
{
	resp->status = 101;
	resp->upgrade = run;
	resp->upgrade_free = free_cls;
	resp->upgrade_cls = cls;
	hm_resp_header(resp, "Upgrade", "websocket");
	hm_resp_header(resp, "Sec-WebSocket-Accept", accept);
}

void hm_ws_send_json(struct hm_ws *ws, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s)
		hm_ws_send(ws, HM_WS_TEXT, s, strlen(s), NULL);
	free(s);
}

struct guest_conn {
	struct hm_exec *x;
	const struct hm_guest_ws *g;
};

static void guest_run(void *cls, int fd, const char *extra, size_t extra_len)
{
	struct guest_conn *c = cls;
	struct hm_ws_opts opts = { .max_message = c->g->max_message };
	struct hm_ws *ws = hm_ws_new(fd, &opts);
	struct hm_ws_msg m = { 0 };
	if (extra_len && hm_ws_prime(ws, extra, extra_len) < 0) {
		hm_ws_close(ws, HM_WS_CLOSE_TOO_BIG, "too much data before the request");
	} else if (hm_ws_wait(ws, FIRST_MESSAGE_MS) <= 0) {
		char why[64];
		snprintf(why, sizeof(why), "no %s request", c->g->what);
		hm_ws_close(ws, HM_WS_CLOSE_POLICY, why);
	} else if (hm_ws_read_frame(ws, &m, NULL) > 0) {
		c->g->session(ws, c->x, &m);
		hm_ws_msg_clear(&m);
	}
	hm_ws_finish(ws, FINISH_MS);
	hm_ws_free(ws);
}

static void guest_free(void *cls)
{
	struct guest_conn *c = cls;
	hm_exec_close(c->x);
	free(c);
}

int hm_guest_ws_upgrade(struct hm_req *req, struct hm_resp *resp, const struct hm_guest_ws *g,
                        struct hm_err **err)
{
	char *accept = NULL;
	if (hm_ws_check_upgrade(req, &accept, err) < 0)
		return -1;
	struct hm_exec *x = NULL;
	if (hm_instances_exec_open(hm_req_services(req)->instances, hm_req_param(req, "id"), &x,
	                           err) < 0) {
		free(accept);
		return -1;
	}
	struct guest_conn *c = xcalloc(1, sizeof(*c));
	*c = (struct guest_conn){ x, g };
	hm_resp_upgrade(resp, accept, guest_run, guest_free, c);
	free(accept);
	return 0;
}

int hm_guest_send_bytes(struct hm_exec *x, const char *type, const void *p, size_t len)
{
	char *b64 = xmalloc(HM_GB64_LEN(DATA_CHUNK) + 1);
	int r = 0;
	for (size_t off = 0; off < len && r == 0; off += DATA_CHUNK) {
		size_t n = len - off < DATA_CHUNK ? len - off : DATA_CHUNK;
		hm_gb64_encode((const unsigned char *)p + off, n, b64);
		json_t *msg = json_pack("{s:s,s:s}", "type", type, "data", b64);
		r = hm_exec_send(x, msg, NULL);
		json_decref(msg);
	}
	free(b64);
	return r;
}

int hm_ws_relay_data(struct hm_ws *ws, json_t *msg)
{
	const char *data = json_string_value(json_object_get(msg, "data"));
	size_t n = data ? strlen(data) : 0;
	if (n == 0)
		return 0;
	unsigned char *buf = xmalloc(n);
	ssize_t len = hm_gb64_decode(data, n, buf, n);
	int r = len > 0 ? hm_ws_send(ws, HM_WS_BINARY, buf, (size_t)len, NULL) : 0;
	free(buf);
	return r;
}
