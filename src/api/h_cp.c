/*
 * GET /instances/{id}/cp: copy files into or out of a running guest over a
 * WebSocket, as upstream Hypeman speaks it. The first client message is a
 * text frame {direction:"to"|"from", guest_path, is_dir?, mode?, uid?,
 * gid?, mtime?, src_basename?, follow_links?}.
 *
 *   to:   client binary frames are the file's bytes, then text {"type":"end"};
 *         the server answers {"type":"result","success":B,"error":S,"bytes_written":N}.
 *         (is_dir: the directory is made at once and the result follows.)
 *   from: the server sends, per entry, text {"type":"header",path,mode,is_dir,
 *         is_symlink,link_target,size,mtime,uid,gid}, and for a regular file its
 *         bytes as binary frames and {"type":"end","final":B}: final is true on
 *         the last file's end, as upstream frames it (the official SDK resolves
 *         on the first final end once that file is written, so a separate
 *         marker after it would let it resolve mid-write). When no file comes
 *         last (none at all, or a directory or symlink after the last one) a
 *         lone {"type":"end","final":true} closes the stream. Errors:
 *         {"type":"error","message","path"}.
 *
 * The guest init does the file work (docs/guest.md, "Copying files"); this
 * thread bridges frames and agent messages like the exec endpoint does. A
 * client that goes away mid-upload leaves the target as it was.
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
#include "core/cleanup.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"
#include "instance/instances.h"

#define CP_MAX_MESSAGE (1u << 20)

static bool valid_path(json_t *v)
{
	const char *p = json_string_value(v);
	return p && p[0] == '/' && strlen(p) == json_string_length(v) && strlen(p) < PATH_MAX;
}

/* An optional integer field within [lo, hi]; false when present and bad. */
static bool opt_int(json_t *in, const char *key, json_int_t lo, json_int_t hi, json_t *out)
{
	json_t *v = json_object_get(in, key);
	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return false;
	json_object_set(out, key, v);
	return true;
}

/* Validate the request; the agent message (cp_to or cp_from) or NULL with why. */
static json_t *cp_request(const struct hm_ws_msg *m, bool *to, bool *is_dir, char *why,
                          size_t whylen)
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
	const char *dir = json_string_value(json_object_get(in, "direction"));
	json_t *path = json_object_get(in, "guest_path");
	json_t *out = NULL;
	const char *bad = NULL;
	if (!dir || (strcmp(dir, "to") != 0 && strcmp(dir, "from") != 0)) {
		bad = "direction must be \"to\" or \"from\"";
	} else if (!valid_path(path)) {
		bad = "guest_path must be an absolute path";
	} else if (strcmp(dir, "from") == 0) {
		*to = false;
		json_t *fl = json_object_get(in, "follow_links");
		if (fl && !json_is_null(fl) && !json_is_boolean(fl))
			bad = "follow_links must be a boolean";
		out = json_pack("{s:s,s:O,s:b}", "type", "cp_from", "path", path, "follow_links",
		                json_is_true(fl));
	} else {
		*to = true;
		json_t *d = json_object_get(in, "is_dir");
		if (d && !json_is_null(d) && !json_is_boolean(d))
			bad = "is_dir must be a boolean";
		*is_dir = json_is_true(d);
		out = json_pack("{s:s,s:O,s:b}", "type", "cp_to", "path", path, "is_dir", *is_dir);
		json_t *name = json_object_get(in, "src_basename");
		const char *n = json_string_value(name);
		if (name && !json_is_null(name) && n && *n) {
			if (strlen(n) != json_string_length(name) || strchr(n, '/') ||
			    strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strlen(n) > 255)
				bad = "src_basename must be a file name (no '/', not . or ..)";
			else
				json_object_set(out, "name", name);
		} else if (name && !json_is_null(name) && !json_is_string(name)) {
			bad = "src_basename must be a string";
		}
		if (!bad && !opt_int(in, "mode", 0, 07777, out))
			bad = "mode must be a permission value between 0 and 07777";
		if (!bad && (!opt_int(in, "uid", 0, 0xfffffffe, out) ||
		             !opt_int(in, "gid", 0, 0xfffffffe, out)))
			bad = "uid and gid must be between 0 and 4294967294";
		if (!bad && !opt_int(in, "mtime", 0, (json_int_t)1 << 40, out))
			bad = "mtime must be Unix seconds";
	}
	json_decref(in);
	if (bad) {
		snprintf(why, whylen, "%s", bad);
		json_decref(out);
		return NULL;
	}
	return out;
}

static void send_result(struct hm_ws *ws, const char *error, json_int_t written)
{
	hm_ws_send_json(ws, json_pack("{s:s,s:b,s:s,s:I}", "type", "result", "success", !error,
	                              "error", error ? error : "", "bytes_written", written));
	hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
}

static void send_simple(struct hm_exec *x, const char *type)
{
	json_t *m = json_pack("{s:s}", "type", type);
	hm_exec_send(x, m, NULL);
	json_decref(m);
}

static void send_end(struct hm_ws *ws, bool final)
{
	hm_ws_send_json(ws, json_pack("{s:s,s:b}", "type", "end", "final", final));
}

/*
 * After the final end the client closes, once it has written the last file
 * (the official SDK rejects a close that comes before its file is flushed),
 * so the session waits up to 10 s for that close before the connection ends.
 */
#define PEER_CLOSE_MS 10000

/* A copy out so far: a file's end is held back until the next message says whether it was the last.
 */
struct cp_out {
	bool end_pending;
	int files;
	long long bytes, last; /* of every file sent, and of the latest */
};

/*
 * The official SDK resolves once the file of the final end is flushed, not
 * every file: each has its own write stream, and an earlier file's last
 * writes can still be on their way (seen: 65536 of 70000 bytes of a tree's
 * first file). Nothing the SDK sends tells when it is done, so with several
 * files the final end waits for those writes: 150 ms, and 1 ms more per
 * 64 KiB of the earlier files, up to 2 s.
 */
static void settle_earlier_files(const struct cp_out *o)
{
	if (o->files < 2)
		return;
	long long ms = 150 + ((o->bytes - o->last) >> 16);
	if (ms > 2000)
		ms = 2000;
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
	while (nanosleep(&t, &t) < 0 && errno == EINTR) {
	}
}

/*
 * A file's header for the client, from the guest's cp_header: only the
 * fields a header has (docs/guest.md), each of its type, so a guest cannot
 * put anything else into what the client reads. A field missing or of
 * another type is left out.
 */
json_t *hm_cp_guest_header(json_t *msg)
{
	static const char *const strings[] = { "path" };
	static const char *const bools[] = { "is_dir", "is_symlink" };
	static const char *const ints[] = { "mode", "size", "mtime", "uid", "gid" };
	json_t *h = json_pack("{s:s}", "type", "header");
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++) {
		json_t *v = json_object_get(msg, strings[i]);
		if (json_is_string(v))
			json_object_set(h, strings[i], v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
		json_t *v = json_object_get(msg, bools[i]);
		if (json_is_boolean(v))
			json_object_set(h, bools[i], v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(ints); i++) {
		json_t *v = json_object_get(msg, ints[i]);
		if (json_is_integer(v) &&
		    (json_integer_value(v) >= 0 || strcmp(ints[i], "mtime") == 0))
			json_object_set(h, ints[i], v);
	}
	json_t *link = json_object_get(msg, "link_target");
	if (json_is_string(link) || json_is_null(link))
		json_object_set(h, "link_target", link);
	return h;
}

/* One agent message. Returns 1 when the session is over (the last frame went out), 0 to go on. */
static int agent_message(struct hm_ws *ws, json_t *msg, struct cp_out *o)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	if (!type)
		return 0;
	if (o->end_pending && (strcmp(type, "cp_header") == 0 || strcmp(type, "cp_error") == 0 ||
	                       strcmp(type, "error") == 0)) {
		send_end(ws, false); /* another entry (or an error) follows: not the last */
		o->end_pending = false;
	}
	if (strcmp(type, "cp_result") == 0) {
		const char *e = json_string_value(json_object_get(msg, "error"));
		send_result(ws, e, json_integer_value(json_object_get(msg, "bytes_written")));
		return 1;
	}
	if (strcmp(type, "cp_header") == 0) {
		json_t *h = hm_cp_guest_header(msg);
		if (!json_is_true(json_object_get(h, "is_dir")) &&
		    !json_is_true(json_object_get(h, "is_symlink"))) {
			json_int_t size = json_integer_value(json_object_get(h, "size"));
			o->last = size > 0 ? size : 0;
			o->bytes += o->last;
		}
		hm_ws_send_json(ws, h);
		return 0;
	}
	if (strcmp(type, "cp_data") == 0)
		return hm_ws_relay_data(ws, msg) < 0
		           ? 1
		           : 0; /* no final end: the client sees the loss */
	if (strcmp(type, "cp_file_end") == 0) {
		o->end_pending = true;
		o->files++;
		return 0;
	}
	if (strcmp(type, "cp_done") == 0) {
		settle_earlier_files(o);
		send_end(ws, true); /* the last file's end, or a lone one */
		o->end_pending = false;
		hm_ws_await_close(ws, PEER_CLOSE_MS);
		return 1;
	}
	if (strcmp(type, "cp_error") == 0 || strcmp(type, "error") == 0) {
		const char *m = json_string_value(json_object_get(msg, "message"));
		const char *p = json_string_value(json_object_get(msg, "path"));
		hm_ws_send_json(ws, json_pack("{s:s,s:s,s:s}", "type", "error", "message",
		                              m ? m : "copy failed", "path", p ? p : ""));
		if (strcmp(type, "error") == 0 || json_is_true(json_object_get(msg, "final"))) {
			hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
			return 1;
		}
		return 0;
	}
	return 0; /* cp_ready and the like */
}

static void pump(struct hm_ws *ws, struct hm_exec *x, bool to)
{
	struct cp_out o = { 0 };
	for (;;) {
		bool ended = false;
		json_t *msg;
		while ((msg = hm_exec_take(x, &ended))) {
			int done = agent_message(ws, msg, &o);
			json_decref(msg);
			if (done)
				return;
		}
		if (ended) {
			if (o.end_pending)
				send_end(ws, false); /* that file is whole; the stream is not */
			if (to)
				send_result(ws, "the instance stopped during the copy", 0);
			else
				hm_ws_send_json(
				    ws,
				    json_pack("{s:s,s:s,s:s}", "type", "error", "message",
				              "the instance stopped during the copy", "path", ""));
			hm_ws_close(ws, HM_WS_CLOSE_GOING_AWAY, "instance stopped");
			return;
		}
		struct pollfd p[2] = { { .fd = hm_exec_fd(x), .events = POLLIN },
			               { .fd = hm_ws_fd(ws), .events = POLLIN } };
		if (!hm_ws_buffered(ws)) {
			int r = poll(p, 2, -1);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				break;
			if (!(p[1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		struct hm_ws_msg m = { 0 };
		if (hm_ws_read_frame(ws, &m, NULL) <= 0)
			break; /* the client went away */
		if (to && m.opcode == HM_WS_BINARY) {
			hm_guest_send_bytes(x, "cp_data", m.data, m.len);
		} else if (to && m.opcode == HM_WS_TEXT) {
			json_t *j = json_loadb((const char *)m.data, m.len, 0, NULL);
			const char *type = json_string_value(json_object_get(j, "type"));
			if (type && strcmp(type, "end") == 0)
				send_simple(x, "cp_end");
			json_decref(j);
		}
		hm_ws_msg_clear(&m);
	}
	send_simple(x, "cp_abort"); /* a partial upload is dropped, a walk stops */
}

static void cp_session(struct hm_ws *ws, struct hm_exec *x, const struct hm_ws_msg *m)
{
	char why[256];
	bool to = false, is_dir = false;
	json_t *req = cp_request(m, &to, &is_dir, why, sizeof(why));
	if (!req) {
		hm_ws_send_json(
		    ws, json_pack("{s:s,s:s,s:s}", "type", "error", "message", why, "path", ""));
		hm_ws_close(ws, HM_WS_CLOSE_POLICY, "bad cp request");
		return;
	}
	struct hm_err *err = NULL;
	if (hm_exec_send(x, req, &err) < 0) {
		if (to)
			send_result(ws, err ? err->msg : "agent unavailable", 0);
		else
			hm_ws_send_json(ws, json_pack("{s:s,s:s,s:s}", "type", "error", "message",
			                              err ? err->msg : "agent unavailable", "path",
			                              ""));
		hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
		hm_err_free(err);
	} else {
		pump(ws, x, to);
	}
	json_decref(req);
}

static const struct hm_guest_ws cp_ws = { "cp", CP_MAX_MESSAGE, cp_session };

int hm_h_instances_cp(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return hm_guest_ws_upgrade(req, resp, &cp_ws, err);
}
