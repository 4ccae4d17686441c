/*
 * WebSocket connections from the CLI to hypeman-api (see wsclient.c).
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "client.h"

struct hm_err;
struct hm_ws;

/*
 * Open a WebSocket to `path` (percent-encoded, e.g. /instances/x/exec).
 * Returns the socket (close it after hm_ws_free(*ws)) or -1 with *err: the
 * API's message when the server refused the upgrade.
 */
int cli_ws_open(struct cli *c, const char *path, struct hm_ws **ws, struct hm_err **err);

/* Send a JSON value (stolen) as one text frame. */
void cli_ws_send_json(struct hm_ws *ws, json_t *o);

/* write(2) all of p, retrying on EINTR. */
int cli_write_all(int fd, const char *p, size_t n);
