/*
 * The agent channel's requests, typed (docs/guest.md, "The agent channel").
 * agent_req_decode turns one parsed message into a struct agent_req with
 * every field checked (type, range, length, shape) and every default
 * filled in; the handlers in agent.c, exec.c, cp.c and init.c act on the
 * struct and never look at the JSON. No I/O and no allocation: libc only,
 * shared with the host's fuzz target (tests/fuzz/fuzz_agent_guest.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

#define AGENT_CP_CHUNK  (32u << 10) /* bytes per cp_data (stdin too), before base64 */
#define AGENT_MTIME_MAX (1LL << 40) /* cp_to's mtime: Unix seconds within ±this */
#define AGENT_PATH_MAX  4096        /* paths are shorter than this (PATH_MAX) */
#define AGENT_NAME_MAX  255         /* cp_to's name (NAME_MAX) */
#define AGENT_SEED_MAX  256         /* identity's and attach's seed: bytes, given as hex */
#define AGENT_ADDR_MAX  64          /* identity's ip, gateway, mac and dns: bytes */
#define AGENT_DISKS_MAX 26          /* attach's disk_bytes: vda to vdz */

enum agent_kind {
	AR_HELLO,
	AR_PING,
	AR_SIGNAL,   /* to the program */
	AR_IDENTITY, /* clock, seed, network, names */
	AR_STOP,     /* the program, SIGKILL after timeout_ms */
	AR_STAT,
	AR_EXEC,
	AR_STDIN,
	AR_STDIN_CLOSE,
	AR_RESIZE,
	AR_KILL, /* an exec session */
	AR_CP_TO,
	AR_CP_DATA,
	AR_CP_END,
	AR_CP_ABORT,
	AR_CP_FROM,
	AR_ATTACH, /* base mode only: the disks' real sizes (init.c) */
};

/*
 * A decoded request. Strings point into the parsed message (NUL-terminated,
 * without NUL inside); data points into the caller's buffer.
 */
struct agent_req {
	enum agent_kind kind;
	const char *type; /* the message's type string, as sent */
	long long id; /* 0: none (allowed only for hello, ping, signal, identity, stop, attach) */
	/* identity and attach: the wall clock and fresh randomness. */
	long long unix_ms; /* > 0: set the clock to it; 0: leave the clock */
	unsigned char seed[AGENT_SEED_MAX];
	size_t seed_len; /* 0: no seed */
	union {
		struct {
			int sig; /* 1 to SIGRTMAX */
		} signal;        /* signal and kill (kill's default: SIGKILL) */
		struct {
			long long timeout_ms; /* 0 to a day; default 10 s */
		} stop;
		struct {
			const char *path; /* non-empty */
			bool follow;
		} stat;
		struct {
			const char *const
			    *argv;   /* argc strings (the parsed array; not NULL-terminated) */
			size_t argc; /* at least 1 */
			const char *const
			    *env; /* nenv pairs: env[2k] a name (no '=', non-empty), env[2k+1] */
			size_t nenv;
			const char *cwd, *user; /* NULL: the default (/, the image's user) */
			bool tty;
			int rows, cols; /* 1 to 65535; default 24 x 80 */
		} exec;
		struct {
			const void *data; /* stdin and cp_data: the decoded bytes */
			size_t len;       /* at most AGENT_CP_CHUNK */
		} data;
		struct {
			int rows, cols;
		} resize;
		struct {
			const char *path; /* absolute */
			const char *name; /* a file name (no '/', not . or ..), or NULL */
			bool is_dir;
			int mode;           /* 0 to 07777, or -1: the default */
			long long uid, gid; /* 0 to 4294967294, or -1: unchanged */
			bool has_mtime;
			long long mtime; /* Unix seconds, when has_mtime */
		} cp_to;
		struct {
			const char *path; /* absolute */
			bool follow;
		} cp_from;
		struct {
			const char *hostname;           /* 1 to 63 bytes, or NULL */
			const char *ip, *gateway, *mac; /* as sent (init.c parses them), or NULL */
			const char *dns;                /* NULL also for "" */
			const char *machine_id;         /* 32 hex digits, or NULL */
		} identity;                             /* each under AGENT_ADDR_MAX bytes */
		struct {
			unsigned long long disk_bytes[AGENT_DISKS_MAX];
			size_t ndisks;
		} attach;
	};
};

/*
 * Decode doc into *req, writing decoded base64 data into buf (cap bytes; a
 * stdin or cp_data holding more than min(cap, AGENT_CP_CHUNK) is refused).
 * Returns 0; or, with why filled (a message naming the request and the
 * field, for the host) and req->id set (0 where the message has no usable
 * id):
 *   AGENT_REQ_BAD_MESSAGE: the id, the type or the type's need of an id;
 *   AGENT_REQ_BAD_FIELD: req->kind and type are set, a field is wrong.
 */
#define AGENT_REQ_BAD_MESSAGE (-1)
#define AGENT_REQ_BAD_FIELD   (-2)
int agent_req_decode(const struct hm_gjson *doc, struct agent_req *req, void *buf, size_t cap,
                     char *why, size_t whylen);
