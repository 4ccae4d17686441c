/*
 * The WebSocket side of the API, shared by the endpoints that upgrade
 * (exec, cp): the handshake (check the request's headers, answer 101 with
 * the accept key, hand the socket to a session function through request.h's
 * upgrade fields) and, for endpoints that talk to a guest, everything up
 * to their first message: the instance's agent session opened before the
 * upgrade (so a stopped instance is a plain 409), the socket wrapped, the
 * first message awaited.
 */
#pragma once

#include <jansson.h>

#include "api/request.h"

struct hm_ws;

/* 400 unless the request is a version-13 WebSocket upgrade; *accept: the key to answer. */
int hm_ws_check_upgrade(struct hm_req *req, char **accept, struct hm_err **err);

/* Answer 101 and run `run` on the upgraded socket; `free_cls` releases cls either way. */
void hm_resp_upgrade(struct hm_resp *resp, const char *accept,
                     void (*run)(void *cls, int fd, const char *extra, size_t extra_len),
                     void (*free_cls)(void *cls), void *cls);

/* Send a JSON value (stolen) as one text frame. */
void hm_ws_send_json(struct hm_ws *ws, json_t *o);

struct hm_exec;
struct hm_ws_msg;

/* A guest endpoint: its session, run with the client's first message. */
struct hm_guest_ws {
	const char *what;   /* "exec": names it in close reasons */
	size_t max_message; /* bound on one client message */
	void (*session)(struct hm_ws *ws, struct hm_exec *x, const struct hm_ws_msg *first);
};

/* Bytes to the guest as {"type":type,"data":base64} messages of at most 24 KiB decoded each. */
int hm_guest_send_bytes(struct hm_exec *x, const char *type, const void *p, size_t len);
/*
 * A guest message's base64 "data" to the client as one binary frame; -1 when
 * the client did not take it (gone, or stuck past the send timeout): the
 * session must end then, not go on as if the bytes had arrived.
 */
int hm_ws_relay_data(struct hm_ws *ws, json_t *msg);

/* GET /instances/{id}/<endpoint>: upgrade and run g's session on a Running instance. */
int hm_guest_ws_upgrade(struct hm_req *req, struct hm_resp *resp, const struct hm_guest_ws *g,
                        struct hm_err **err);
