/*
 * The config disk format (docs/guest.md, "The config disk" and "The exit
 * record"), shared by the guest init and the host: the sizes and magics, the
 * parser of the config area, and the writer and parser of the exit record.
 * libc only, no allocation: the parser works in place on a buffer the caller
 * owns and points into it, so both sides can link it.
 */
#pragma once

#include <stddef.h>

#define HM_GUEST_CFG_SIZE    (1u << 20) /* the whole config disk */
#define HM_GUEST_EXIT_SIZE   4096u      /* the exit record area, at the end of the disk */
#define HM_GUEST_EXIT_OFFSET (HM_GUEST_CFG_SIZE - HM_GUEST_EXIT_SIZE)
#define HM_GUEST_AREA_SIZE   HM_GUEST_EXIT_OFFSET /* the config area, from byte 0 */

#define HM_GUEST_CFG_MAGIC  "HYPEMAN-CONFIG 1\n"
#define HM_GUEST_EXIT_MAGIC "HYPEMAN-EXIT 1\n"

/* Bounds both sides enforce (the writer refuses more, the parser too). */
#define HM_GUEST_MAX_ARGS 4096
#define HM_GUEST_MAX_ENV  4096
#define HM_GUEST_MAX_DNS  8
#define HM_GUEST_MAX_VOLS 8
#define HM_GUEST_MAX_CA   16384 /* bytes of egress_ca PEM */
#define HM_GUEST_MAX_KEY  32    /* longest key name */

/* Room for the exit message after the record's fixed lines. */
#define HM_GUEST_EXIT_MSG_MAX 3968

/*
 * A parsed config area. Every string points into the buffer given to
 * hm_gcfg_parse (NUL-terminated there); unset keys hold their defaults.
 * argv and env are NULL-terminated. About 64 KiB: keep it static or on the
 * heap, not on a small stack.
 */
struct hm_gcfg {
	char *argv[HM_GUEST_MAX_ARGS + 1];
	size_t argc;
	char *env[HM_GUEST_MAX_ENV + 1];
	size_t envc;
	char *dns[HM_GUEST_MAX_DNS + 1];
	size_t ndns;
	const char *workdir;  /* "/" */
	const char *user;     /* NULL: root */
	const char *hostname; /* "hypeman" */
	const char *root;     /* "/dev/vdb" */
	const char *rootfs;   /* "erofs" */
	const char *overlay;  /* "/dev/vdc"; "tmpfs" for a tmpfs upper layer */
	const char *net_ip;   /* NULL: no network */
	const char *net_gw;
	const char *net_mac;
	const char *agent;     /* "hypeman.agent" */
	const char *egress_ca; /* PEM to trust (the host's egress CA), or NULL */
	/* volume records: "DEVICE ro|rw MOUNT_PATH" (the path is the rest of the value) */
	char *volume[HM_GUEST_MAX_VOLS + 1];
	size_t nvolumes;
};

/*
 * Parse the config area in buf[0..len) in place: each value's terminating
 * '\n' becomes a NUL and *cfg points at the values. Any bytes are safe to
 * give it. Returns 0, or -1 with a one-line reason in errbuf (which names the
 * byte offset where it can).
 */
int hm_gcfg_parse(char *buf, size_t len, struct hm_gcfg *cfg, char *errbuf, size_t errlen);

/*
 * Fill out[0..HM_GUEST_EXIT_SIZE) with the exit record for code and message,
 * NUL-padded. A message too long for the area is cut (at a UTF-8 character
 * boundary); a NUL in it ends it.
 */
void hm_gexit_format(char *out, int code, const char *message);

/*
 * Parse an exit record area (len bytes, normally HM_GUEST_EXIT_SIZE).
 * Returns 1 and fills *code and msg (NUL-terminated, cut to msglen) when a
 * record is there, 0 when the area is empty (starts with a NUL byte), -1 with
 * a reason in errbuf when it holds anything else.
 */
int hm_gexit_parse(const char *buf, size_t len, int *code, char *msg, size_t msglen, char *errbuf,
                   size_t errlen);
