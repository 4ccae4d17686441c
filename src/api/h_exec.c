/*
 * GET /instances/{id}/exec: a command in a running guest, over a WebSocket,
 * as upstream Hypeman speaks it. Before the upgrade, errors are plain HTTP
 * ({code,message}; 409 when the instance is not Running). After it:
 *
 *   client → server  text    {"command":[...],"tty":B,"env":{},"cwd":S,"timeout":secs,
 *                             "rows":R,"cols":C}            (first message, once)
 *   client → server  binary  stdin bytes
 *   client → server  text    {"type":"resize","rows":R,"cols":C} | {"type":"stdin_close"}
 *   server → client  binary  stdout and stderr bytes (one stream, as upstream)
 *   server → client  text    {"exitCode":N}                 (last; then close 1000)
 *
 * A command that cannot start sends "Error: <why>\r\n" as binary before
 * its exit code; a first message that is not a valid request is answered
 * {"error":"..."} and the socket closed (1008). The session is a bridge:
 * this thread waits on both the socket and the agent session's queue
 * (instance/agent.c), turning frames into agent messages and back. The
 * client going away kills the command (SIGKILL to its process group).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/ws_upgrade.h"
#include "core/websocket.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "instance/instances.h"

#define EXEC_MAX_MESSAGE (256u << 10) /* one client message */
#define EXEC_MAX_TIMEOUT (7 * 86400)  /* seconds */
#define EXEC_MAX_ARGS    4096
#define EXEC_MAX_ENV     1024

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_error_text(struct hm_ws *ws, const char *why)
{
	hm_ws_send_json(ws, json_pack("{s:s}", "error", why));
	hm_ws_close(ws, HM_WS_CLOSE_POLICY, "bad exec request");
}

/* Validate the first message and turn it into the agent's exec request. */
static json_t *exec_request(const struct hm_ws_msg *m, long *timeout_s, char *why, size_t whylen)
{
	if (m->opcode != HM_WS_TEXT) {
		snprintf(why, whylen, "the first message must be a JSON text frame");
		return NULL;
	}
	json_error_t jerr;
	json_t *in = json_loadb((const char *)m->data, m->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(in)) {
		snprintf(why, whylen, "the first message is not a JSON object: %s",
		         in ? "wrong type" : jerr.text);
		json_decref(in);
		return NULL;
	}
	json_t *out = json_pack("{s:s}", "type", "exec");
	const char *bad = NULL;
	json_t *cmd = json_object_get(in, "command");
	if (!cmd || json_is_null(cmd) || (json_is_array(cmd) && json_array_size(cmd) == 0)) {
		json_object_set_new(out, "command", json_pack("[s]", "/bin/sh"));
	} else if (!json_is_array(cmd) || json_array_size(cmd) > EXEC_MAX_ARGS) {
		bad = "command must be an array of at most 4096 strings";
	} else {
		size_t i;
		json_t *v;
		json_array_foreach (cmd, i, v) {
			if (!json_is_string(v) || (i == 0 && json_string_length(v) == 0))
				bad = "command must be an array of strings, the first not empty";
		}
		json_object_set(out, "command", cmd);
	}
	json_t *env = json_object_get(in, "env");
	if (!bad && env && !json_is_null(env)) {
		if (!json_is_object(env) || json_object_size(env) > EXEC_MAX_ENV) {
			bad = "env must be an object of at most 1024 string values";
		} else {
			const char *k;
			json_t *v;
			json_object_foreach (env, k, v) {
				if (!json_is_string(v) || !*k || strchr(k, '='))
					bad = "env must map names (no '=') to strings";
			}
			json_object_set(out, "env", env);
		}
	}
	json_t *cwd = json_object_get(in, "cwd");
	if (!bad && cwd && !json_is_null(cwd) &&
	    !(json_is_string(cwd) && json_string_length(cwd) == 0)) {
		if (!json_is_string(cwd) || json_string_value(cwd)[0] != '/' ||
		    json_string_length(cwd) >= PATH_MAX)
			bad = "cwd must be an absolute path";
		else
			json_object_set(out, "cwd", cwd);
	}
	json_t *tty = json_object_get(in, "tty");
	if (!bad && tty && !json_is_null(tty) && !json_is_boolean(tty))
		bad = "tty must be a boolean";
	json_object_set_new(out, "tty", json_boolean(json_is_true(tty)));
	json_int_t rows = 24, cols = 80;
	json_t *r = json_object_get(in, "rows"), *c = json_object_get(in, "cols");
	if (!bad && ((r && !json_is_null(r) && !json_is_integer(r)) ||
	             (c && !json_is_null(c) && !json_is_integer(c))))
		bad = "rows and cols must be integers";
	if (json_is_integer(r))
		rows = json_integer_value(r);
	if (json_is_integer(c))
		cols = json_integer_value(c);
	if (!bad && (rows < 1 || rows > 1000 || cols < 1 || cols > 1000))
		bad = "rows and cols must be between 1 and 1000";
	json_object_set_new(out, "rows", json_integer(rows));
	json_object_set_new(out, "cols", json_integer(cols));
	json_t *user = json_object_get(in, "user");
	if (!bad && user && !json_is_null(user)) {
		if (!json_is_string(user) || json_string_length(user) > 255)
			bad = "user must be a string";
		else if (json_string_length(user) > 0)
			json_object_set(out, "user", user);
	}
	json_t *t = json_object_get(in, "timeout");
	*timeout_s = 0;
	if (!bad && t && !json_is_null(t)) {
		if (!json_is_integer(t) || json_integer_value(t) < 0 ||
		    json_integer_value(t) > EXEC_MAX_TIMEOUT)
			bad = "timeout must be a number of seconds between 0 and 604800";
		else
			*timeout_s = (long)json_integer_value(t);
	}
	json_decref(in);
	if (bad) {
		snprintf(why, whylen, "%s", bad);
		json_decref(out);
		return NULL;
	}
	return out;
}

/* A client text message after the request: resize or stdin_close. */
static void client_control(struct hm_exec *x, const struct hm_ws_msg *m)
{
	json_t *in = json_loadb((const char *)m->data, m->len, 0, NULL);
	const char *type = json_string_value(json_object_get(in, "type"));
	json_t *out = NULL;
	if (type && strcmp(type, "resize") == 0) {
		json_int_t rows = json_integer_value(json_object_get(in, "rows"));
		json_int_t cols = json_integer_value(json_object_get(in, "cols"));
		if (rows >= 1 && rows <= 1000 && cols >= 1 && cols <= 1000)
			out = json_pack("{s:s,s:I,s:I}", "type", "resize", "rows", rows, "cols",
			                cols);
	} else if (type && strcmp(type, "stdin_close") == 0) {
		out = json_pack("{s:s}", "type", "stdin_close");
	}
	if (out)
		hm_exec_send(x, out, NULL);
	json_decref(out);
	json_decref(in);
}

static void kill_session(struct hm_exec *x)
{
	json_t *k = json_pack("{s:s,s:i}", "type", "kill", "signal", 9);
	hm_exec_send(x, k, NULL);
	json_decref(k);
}

/*
 * One agent message for the session. Returns 1 when the session is over
 * (the exit code went out), 0 to go on, -1 when the client stopped taking
 * output (the command is killed).
 */
static int agent_message(struct hm_ws *ws, json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	if (!type)
		return 0;
	if (strcmp(type, "output") == 0)
		return hm_ws_relay_data(ws, msg) < 0 ? -1 : 0;
	if (strcmp(type, "exec_exit") == 0 || strcmp(type, "error") == 0) {
		const char *e = json_string_value(json_object_get(msg, "error"));
		if (!e)
			e = json_string_value(json_object_get(msg, "message"));
		json_t *code = json_object_get(msg, "code");
		if (e) {
			char *line = xasprintf("Error: %s\r\n", e);
			hm_ws_send(ws, HM_WS_BINARY, line, strlen(line), NULL);
			free(line);
		}
		json_int_t c = json_is_integer(code) ? json_integer_value(code) : 127;
		hm_ws_send_json(ws, json_pack("{s:I}", "exitCode", c));
		hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
		return 1;
	}
	return 0; /* exec_started and the like */
}

/* Pump frames and agent messages until the exit code went out or either side went away. */
static void pump(struct hm_ws *ws, struct hm_exec *x, long timeout_s)
{
	long long deadline = timeout_s > 0 ? mono_ms() + timeout_s * 1000LL : 0;
	bool killed = false;
	for (;;) {
		bool ended = false;
		json_t *msg;
		while ((msg = hm_exec_take(x, &ended))) {
			int done = agent_message(ws, msg);
			json_decref(msg);
			if (done < 0) {
				kill_session(x);
				return;
			}
			if (done)
				return;
		}
		if (ended) {
			const char *why =
			    "Error: the instance stopped before the command ended\r\n";
			hm_ws_send(ws, HM_WS_BINARY, why, strlen(why), NULL);
			hm_ws_send_json(ws, json_pack("{s:i}", "exitCode", 255));
			hm_ws_close(ws, HM_WS_CLOSE_GOING_AWAY, "instance stopped");
			return;
		}
		int wait = -1;
		if (deadline && !killed) {
			long long left = deadline - mono_ms();
			if (left <= 0) {
				kill_session(x); /* the exit (137) follows through the queue */
				killed = true;
				continue;
			}
			wait = left > INT_MAX ? INT_MAX : (int)left;
		}
		struct pollfd p[2] = { { .fd = hm_exec_fd(x), .events = POLLIN },
			               { .fd = hm_ws_fd(ws), .events = POLLIN } };
		if (!hm_ws_buffered(ws)) {
			int r = poll(p, 2, wait);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				break;
			if (!(p[1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		struct hm_ws_msg m = { 0 };
		int r = hm_ws_read_frame(ws, &m, NULL);
		if (r <= 0)
			break; /* the client went away */
		if (m.opcode == HM_WS_BINARY) {
			if (hm_guest_send_bytes(x, "stdin", m.data, m.len) < 0) {
				hm_ws_msg_clear(&m);
				continue; /* the queue says why next round */
			}
		} else {
			client_control(x, &m);
		}
		hm_ws_msg_clear(&m);
	}
	kill_session(x);
}

static void exec_session(struct hm_ws *ws, struct hm_exec *x, const struct hm_ws_msg *m)
{
	char why[256];
	long timeout_s = 0;
	json_t *req = exec_request(m, &timeout_s, why, sizeof(why));
	if (!req) {
		send_error_text(ws, why);
		return;
	}
	struct hm_err *err = NULL;
	if (hm_exec_send(x, req, &err) < 0) {
		char *line = xasprintf("Error: %s\r\n", err ? err->msg : "agent unavailable");
		hm_ws_send(ws, HM_WS_BINARY, line, strlen(line), NULL);
		free(line);
		hm_ws_send_json(ws, json_pack("{s:i}", "exitCode", 127));
		hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
		hm_err_free(err);
	} else {
		pump(ws, x, timeout_s);
	}
	json_decref(req);
}

static const struct hm_guest_ws exec_ws = { "exec", EXEC_MAX_MESSAGE, exec_session };

int hm_h_instances_exec(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return hm_guest_ws_upgrade(req, resp, &exec_ws, err);
}
