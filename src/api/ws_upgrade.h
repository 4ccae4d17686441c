/*
 * The WebSocket handshake on the API's side, shared by the endpoints that
 * upgrade (exec, cp): check the request's headers, answer 101 with the
 * accept key and hand the socket to a session function (request.h's
 * upgrade fields). Plus the one framing helper they all use.
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
