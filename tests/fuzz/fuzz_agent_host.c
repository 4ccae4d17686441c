/*
 * Fuzz target: the host's end of the guest agent channel, as the monitor
 * reads it (instance/live.c): a hostile guest's bytes framed into lines
 * (guest/lines.c, the same framing the guest uses for the host's lines),
 * each parsed as JSON and routed by hm_agent_dispatch (instance/agent.c) to
 * the waiting exec/cp sessions, and each session's output or file data
 * relayed to its WebSocket client (hm_ws_relay_data: base64 into a binary
 * frame), read back at the client's end; a copy's file header goes through
 * the filter that makes the client's header of it (hm_cp_guest_header). Input: one byte of options
 * (bit 0: a 64-byte line cap instead of the real 64 KiB, to reach the dropping of long lines often;
 * bits 1-7: the size of each read), then the guest's bytes. Checked: every line is whole and within
 * the cap, every queued message is an object carrying its session's id, every relayed frame arrives
 * as sent, a header carries only a header's fields, each of its type, and losing the channel ends
 * every session.
 */
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/handlers.h"
#include "api/ws_upgrade.h"
#include "core/err.h"
#include "core/websocket.h"
#include "guest/lines.h"
#include "instance/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSIONS      3
#define LINE_MAX_REAL (64u << 10)

struct run {
	struct hm_agent *agent;
	struct hm_agent_session *s[SESSIONS];
	struct hm_ws *server, *client; /* the exec client's WebSocket, both ends */
	size_t cap;
};

static void relay(struct run *r, json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	if (!type || (strcmp(type, "output") != 0 && strcmp(type, "cp_data") != 0))
		return;
	if (hm_ws_relay_data(r->server, msg) < 0)
		abort();
	const char *b64 = json_string_value(json_object_get(msg, "data"));
	/* Nothing is sent for empty or undecodable data: no frame to wait for. */
	struct pollfd p = { .fd = hm_ws_fd(r->client), .events = POLLIN };
	if (!b64 || poll(&p, 1, 0) != 1)
		return;
	/* What went out, if anything, is one binary frame no longer than the base64. */
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	int got = hm_ws_read_frame(r->client, &m, &err);
	hm_err_free(err);
	if (got == 1 && (m.opcode != HM_WS_BINARY || m.len > strlen(b64)))
		abort();
	hm_ws_msg_clear(&m);
}

/* The client's header of a guest's cp_header: type "header" and a header's fields only. */
static void check_header(json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	if (!type || strcmp(type, "cp_header") != 0)
		return;
	json_t *h = hm_cp_guest_header(msg);
	const char *key;
	json_t *v;
	json_object_foreach (h, key, v) {
		bool ok = false;
		if (strcmp(key, "type") == 0)
			ok = json_is_string(v) && strcmp(json_string_value(v), "header") == 0;
		else if (strcmp(key, "path") == 0)
			ok = json_is_string(v);
		else if (strcmp(key, "link_target") == 0)
			ok = json_is_string(v) || json_is_null(v);
		else if (strcmp(key, "is_dir") == 0 || strcmp(key, "is_symlink") == 0)
			ok = json_is_boolean(v);
		else if (strcmp(key, "mtime") == 0)
			ok = json_is_integer(v);
		else if (strcmp(key, "mode") == 0 || strcmp(key, "size") == 0 ||
		         strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0)
			ok = json_is_integer(v) && json_integer_value(v) >= 0;
		if (!ok)
			abort();
	}
	json_decref(h);
}

static bool on_line(void *ctx, char *line, size_t len)
{
	struct run *r = ctx;
	if (len == 0 || len > r->cap || line[len] != '\0' || memchr(line, '\n', len))
		abort();
	json_t *msg = json_loads(line, 0, NULL);
	if (!msg)
		return true;
	hm_agent_dispatch(r->agent, msg);
	json_decref(msg);
	/* Each session's owner takes what came (a full queue would hold the reader). */
	for (int i = 0; i < SESSIONS; i++) {
		bool ended = false;
		json_t *q;
		while ((q = hm_agent_session_take(r->s[i], &ended))) {
			json_t *id = json_object_get(q, "id");
			if (!json_is_object(q) || !json_is_integer(id) ||
			    (uint64_t)json_integer_value(id) != hm_agent_session_id(r->s[i]))
				abort();
			relay(r, q);
			check_header(q);
			json_decref(q);
		}
		if (ended)
			abort(); /* the channel is up */
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct run r = { .cap = data[0] & 1 ? 64 : LINE_MAX_REAL };
	size_t step = 1 + (size_t)(data[0] >> 1) * 97;
	data++;
	size--;
	int chan[2], ws[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ws) < 0)
		abort();
	r.agent = hm_agent_new();
	hm_agent_set_fd(r.agent, chan[0]);
	for (int i = 0; i < SESSIONS; i++)
		if (hm_agent_session_open(r.agent, &r.s[i], NULL) < 0)
			abort();
	struct hm_ws_opts so = { .io_timeout_ms = 100 },
	                  co = { .io_timeout_ms = 100, .client = true };
	r.server = hm_ws_new(ws[0], &so);
	r.client = hm_ws_new(ws[1], &co);

	char *buf = malloc(r.cap + 1);
	struct hm_lines lines;
	hm_lines_init(&lines, buf, r.cap);
	for (size_t off = 0; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		if (!hm_lines_feed(&lines, (const char *)data + off, n, on_line, &r))
			abort(); /* on_line never stops */
	}

	/* The guest goes away: every session ends, with nothing left queued. */
	hm_agent_set_fd(r.agent, -1);
	for (int i = 0; i < SESSIONS; i++) {
		bool ended = false;
		json_t *q = hm_agent_session_take(r.s[i], &ended);
		if (q || !ended)
			abort();
		hm_agent_session_close(r.s[i]);
	}
	hm_agent_free(r.agent);
	hm_ws_free(r.server);
	hm_ws_free(r.client);
	free(buf);
	close(chan[0]);
	close(chan[1]);
	close(ws[0]);
	close(ws[1]);
	return 0;
}
