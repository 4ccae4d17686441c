/*
 * api/ws_upgrade: the server half of the WebSocket opening handshake
 * (RFC 6455 §4.2) in terms of the edge's request and response objects.
 */
#include "api/ws_upgrade.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/websocket.h"

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
