/*
 * The agent channel's request decoder (request.h): one table of message
 * types, each with whether it needs an id and the function that checks its
 * fields. Every refusal names the request and the field; the handlers see
 * only values that passed. No I/O, no allocation.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "request.h"

struct ctx {
	const struct hm_gjson *doc;
	struct agent_req *r;
	void *buf;
	size_t cap;
	char *why;
	size_t whylen;
};

static int refuse(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (c->whylen > 0)
		vsnprintf(c->why, c->whylen, fmt, ap);
	va_end(ap);
	return AGENT_REQ_BAD_FIELD;
}

/* ---- field readers: 1 given, 0 absent or null, -1 wrong ---- */

static int opt_int(struct ctx *c, const char *key, long long lo, long long hi, long long *out)
{
	long long v = 0;
	int r = hm_gjson_int(c->doc, key, &v);
	if (r <= 0)
		return r;
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 1;
}

/* A string without NUL of 1 to max-1 bytes. */
static int opt_str(struct ctx *c, const char *key, size_t max, const char **out)
{
	const struct hm_gjson_value *v = hm_gjson_get(c->doc, key);
	*out = NULL;
	if (!v || v->type == HM_GJSON_NULL)
		return 0;
	if (v->type != HM_GJSON_STRING || v->len == 0 || v->len >= max || strlen(v->s) != v->len)
		return -1;
	*out = v->s;
	return 1;
}

static int abs_path(struct ctx *c, const char *key, const char **out)
{
	int r = opt_str(c, key, AGENT_PATH_MAX, out);
	return r == 1 && (*out)[0] == '/' ? 0 : -1;
}

/* Base64 data into the caller's buffer: required. */
static int data(struct ctx *c)
{
	const struct hm_gjson_value *v = hm_gjson_get(c->doc, "data");
	size_t cap = c->cap < AGENT_CP_CHUNK ? c->cap : AGENT_CP_CHUNK;
	ssize_t n =
	    v && v->type == HM_GJSON_STRING ? hm_gb64_decode(v->s, v->len, c->buf, cap) : -1;
	if (n < 0)
		return refuse(c, "%s: `data` must be base64 of at most %zu bytes", c->r->type, cap);
	c->r->data.data = c->buf;
	c->r->data.len = (size_t)n;
	return 0;
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9'   ? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
	                                : -1;
}

/* unix_ms and seed, for identity and attach. */
static int clock_seed(struct ctx *c)
{
	struct agent_req *r = c->r;
	if (opt_int(c, "unix_ms", 0, 1LL << 50, &r->unix_ms) < 0)
		return refuse(c, "%s: `unix_ms` must be milliseconds since 1970", r->type);
	const char *seed;
	if (opt_str(c, "seed", 2 * AGENT_SEED_MAX + 1, &seed) < 0)
		return refuse(c, "%s: `seed` must be 1 to %u bytes in hex", r->type,
		              AGENT_SEED_MAX);
	if (!seed)
		return 0;
	size_t n = strlen(seed);
	if (n % 2)
		return refuse(c, "%s: `seed` must be an even number of hex digits", r->type);
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(seed[i]), lo = hexval(seed[i + 1]);
		if (hi < 0 || lo < 0)
			return refuse(c, "%s: `seed` must be hex digits only", r->type);
		r->seed[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	r->seed_len = n / 2;
	return 0;
}

/* ---- one checker per type ---- */

static int no_fields(struct ctx *c)
{
	(void)c;
	return 0;
}

static int signal_fields(struct ctx *c, bool required, int dflt)
{
	long long sig = dflt;
	int g = opt_int(c, "signal", 1, SIGRTMAX, &sig);
	if (g < 0 || (required && g == 0))
		return refuse(c, "%s: `signal` must be a number between 1 and %d", c->r->type,
		              SIGRTMAX);
	c->r->signal.sig = (int)sig;
	return 0;
}

static int do_signal(struct ctx *c)
{
	return signal_fields(c, true, 0);
}

static int do_kill(struct ctx *c)
{
	return signal_fields(c, false, SIGKILL);
}

static int do_stop(struct ctx *c)
{
	c->r->stop.timeout_ms = 10000;
	if (opt_int(c, "timeout_ms", 0, 24LL * 3600 * 1000, &c->r->stop.timeout_ms) < 0)
		return refuse(c, "stop: `timeout_ms` must be a number of milliseconds up to a day");
	return 0;
}

static int do_stat(struct ctx *c)
{
	if (opt_str(c, "path", AGENT_PATH_MAX, &c->r->stat.path) != 1 ||
	    hm_gjson_bool(c->doc, "follow_links", &c->r->stat.follow) < 0)
		return refuse(c, "stat: needs a `path` string (and a boolean `follow_links`)");
	return 0;
}

static int dimension(struct ctx *c, const char *key, int dflt, int *out)
{
	long long v = dflt;
	int g = opt_int(c, key, 1, 65535, &v);
	if (g < 0 || (dflt < 0 && g == 0))
		return -1;
	*out = (int)v;
	return 0;
}

static int do_exec(struct ctx *c)
{
	const struct hm_gjson *doc = c->doc;
	typeof(c->r->exec) *e = &c->r->exec;
	const struct hm_gjson_value *cmd = hm_gjson_get(doc, "command");
	const struct hm_gjson_value *env = hm_gjson_get(doc, "env");
	if (!cmd || cmd->type != HM_GJSON_ARRAY || cmd->len == 0)
		return refuse(c, "exec: `command` must be a non-empty array of strings");
	if (env && env->type != HM_GJSON_OBJECT && env->type != HM_GJSON_NULL)
		return refuse(c, "exec: `env` must be an object of strings");
	const struct hm_gjson_value *cwd = hm_gjson_get(doc, "cwd"),
	                            *user = hm_gjson_get(doc, "user");
	if ((cwd && cwd->type != HM_GJSON_STRING && cwd->type != HM_GJSON_NULL) ||
	    (user && user->type != HM_GJSON_STRING && user->type != HM_GJSON_NULL))
		return refuse(c, "exec: `cwd` and `user` must be strings");
	if (hm_gjson_bool(doc, "tty", &e->tty) < 0 || dimension(c, "rows", 24, &e->rows) < 0 ||
	    dimension(c, "cols", 80, &e->cols) < 0)
		return refuse(c, "exec: `tty` must be a boolean, `rows` and `cols` 1 to 65535");
	e->argv = cmd->items;
	e->argc = cmd->len;
	e->env = env && env->type == HM_GJSON_OBJECT ? env->items : NULL;
	e->nenv = e->env ? env->len : 0;
	for (size_t i = 0; i < e->nenv; i++) {
		const char *k = e->env[2 * i];
		if (!*k || strchr(k, '='))
			return refuse(c, "exec: bad environment variable name `%.64s`", k);
	}
	e->cwd = cwd && cwd->type == HM_GJSON_STRING && cwd->s[0] ? cwd->s : NULL;
	e->user = user && user->type == HM_GJSON_STRING && user->s[0] ? user->s : NULL;
	return 0;
}

static int do_resize(struct ctx *c)
{
	if (dimension(c, "rows", -1, &c->r->resize.rows) < 0 ||
	    dimension(c, "cols", -1, &c->r->resize.cols) < 0)
		return refuse(c, "resize: `rows` and `cols` must be 1 to 65535");
	return 0;
}

static int do_cp_to(struct ctx *c)
{
	typeof(c->r->cp_to) *t = &c->r->cp_to;
	if (abs_path(c, "path", &t->path) < 0)
		return refuse(c, "cp_to: `path` must be an absolute path");
	const char *name;
	if (opt_str(c, "name", AGENT_NAME_MAX + 1, &name) < 0 ||
	    (name && (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)))
		return refuse(c, "cp_to: `name` must be a file name (no /, not . or ..)");
	t->name = name;
	long long mode = -1;
	t->uid = t->gid = -1;
	int m;
	if (hm_gjson_bool(c->doc, "is_dir", &t->is_dir) < 0 ||
	    opt_int(c, "mode", 0, 07777, &mode) < 0 ||
	    opt_int(c, "uid", 0, (long long)UINT32_MAX - 1, &t->uid) < 0 ||
	    opt_int(c, "gid", 0, (long long)UINT32_MAX - 1, &t->gid) < 0 ||
	    (m = opt_int(c, "mtime", -AGENT_MTIME_MAX, AGENT_MTIME_MAX, &t->mtime)) < 0)
		return refuse(c, "cp_to: `is_dir` must be a boolean, `mode` 0 to 07777, `uid` and "
		                 "`gid` 0 to 4294967294, `mtime` Unix seconds");
	t->mode = (int)mode;
	t->has_mtime = m == 1;
	return 0;
}

static int do_cp_from(struct ctx *c)
{
	if (abs_path(c, "path", &c->r->cp_from.path) < 0)
		return refuse(c, "cp_from: `path` must be an absolute path");
	if (hm_gjson_bool(c->doc, "follow_links", &c->r->cp_from.follow) < 0)
		return refuse(c, "cp_from: `follow_links` must be a boolean");
	return 0;
}

static bool is_hex(const char *s)
{
	for (; *s; s++)
		if (hexval(*s) < 0)
			return false;
	return true;
}

static int do_identity(struct ctx *c)
{
	typeof(c->r->identity) *id = &c->r->identity;
	if (clock_seed(c) < 0)
		return AGENT_REQ_BAD_FIELD;
	if (opt_str(c, "hostname", 64, &id->hostname) < 0)
		return refuse(c, "identity: `hostname` must be 1 to 63 bytes");
	static const struct {
		const char *key;
		size_t off;
	} addrs[] = {
		{ "ip", offsetof(struct agent_req, identity.ip) },
		{ "gateway", offsetof(struct agent_req, identity.gateway) },
		{ "mac", offsetof(struct agent_req, identity.mac) },
		{ "dns", offsetof(struct agent_req, identity.dns) },
	};
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		const char **out = (const char **)((char *)c->r + addrs[i].off);
		const struct hm_gjson_value *v = hm_gjson_get(c->doc, addrs[i].key);
		if (strcmp(addrs[i].key, "dns") == 0 && v && v->type == HM_GJSON_STRING && !v->len)
			continue; /* "": no DNS server to set */
		if (opt_str(c, addrs[i].key, AGENT_ADDR_MAX, out) < 0)
			return refuse(c, "identity: `%s` must be a string of 1 to %u bytes",
			              addrs[i].key, AGENT_ADDR_MAX - 1);
	}
	if (opt_str(c, "machine_id", 33, &id->machine_id) < 0 ||
	    (id->machine_id && (strlen(id->machine_id) != 32 || !is_hex(id->machine_id))))
		return refuse(c, "identity: `machine_id` must be 32 hex digits");
	return 0;
}

static int do_attach(struct ctx *c)
{
	if (clock_seed(c) < 0)
		return AGENT_REQ_BAD_FIELD;
	const struct hm_gjson_value *disks = hm_gjson_get(c->doc, "disk_bytes");
	if (!disks || disks->type != HM_GJSON_ARRAY || disks->len > AGENT_DISKS_MAX)
		return refuse(c, "attach: needs `disk_bytes`, an array of at most %u sizes",
		              AGENT_DISKS_MAX);
	for (size_t i = 0; i < disks->len; i++) {
		const char *s = disks->items[i];
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 10);
		if (*s < '0' || *s > '9' || *end || errno)
			return refuse(c, "attach: disk_bytes[%zu] `%.32s` is not a size", i, s);
		c->r->attach.disk_bytes[i] = v;
	}
	c->r->attach.ndisks = disks->len;
	return 0;
}

static int do_data(struct ctx *c)
{
	return data(c);
}

static const struct {
	const char *type;
	enum agent_kind kind;
	bool needs_id;
	int (*fields)(struct ctx *c);
} types[] = {
	{ "hello", AR_HELLO, false, no_fields },
	{ "ping", AR_PING, false, no_fields },
	{ "signal", AR_SIGNAL, false, do_signal },
	{ "identity", AR_IDENTITY, false, do_identity },
	{ "stop", AR_STOP, false, do_stop },
	{ "attach", AR_ATTACH, false, do_attach },
	{ "stat", AR_STAT, true, do_stat },
	{ "exec", AR_EXEC, true, do_exec },
	{ "stdin", AR_STDIN, true, do_data },
	{ "stdin_close", AR_STDIN_CLOSE, true, no_fields },
	{ "resize", AR_RESIZE, true, do_resize },
	{ "kill", AR_KILL, true, do_kill },
	{ "cp_to", AR_CP_TO, true, do_cp_to },
	{ "cp_data", AR_CP_DATA, true, do_data },
	{ "cp_end", AR_CP_END, true, no_fields },
	{ "cp_abort", AR_CP_ABORT, true, no_fields },
	{ "cp_from", AR_CP_FROM, true, do_cp_from },
};

int agent_req_decode(const struct hm_gjson *doc, struct agent_req *req, void *buf, size_t cap,
                     char *why, size_t whylen)
{
	memset(req, 0, sizeof(*req));
	struct ctx c = { doc, req, buf, cap, why, whylen };
	if (whylen > 0)
		why[0] = '\0';
	long long id = 0;
	if (hm_gjson_int(doc, "id", &id) < 0 || id < 0) {
		refuse(&c, "`id` must be a positive integer");
		return AGENT_REQ_BAD_MESSAGE;
	}
	req->id = id;
	req->type = hm_gjson_str(doc, "type");
	if (!req->type) {
		refuse(&c, "a message needs a `type` string");
		return AGENT_REQ_BAD_MESSAGE;
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(req->type, types[i].type) != 0)
			continue;
		if (types[i].needs_id && id == 0) {
			refuse(&c, "`%.64s` needs a positive integer `id`", req->type);
			return AGENT_REQ_BAD_MESSAGE;
		}
		req->kind = types[i].kind;
		return types[i].fields(&c) < 0 ? AGENT_REQ_BAD_FIELD : 0;
	}
	refuse(&c, "unknown message type `%.64s`", req->type);
	return AGENT_REQ_BAD_MESSAGE;
}
