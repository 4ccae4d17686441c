/*
 * The config disk the host writes for each boot (docs/guest.md, "The config
 * disk"): what the guest init runs and how, and the exit record it leaves
 * there when the program ends. The format itself lives in guest/config.h,
 * shared with the init.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "guest/config.h"

struct hm_err;

/*
 * Everything the init needs. Arrays are NULL-terminated; NULL strings are
 * left out of the disk (the init then uses the contract's defaults).
 */
struct hm_guest_config {
	const char *const *argv; /* at least one entry */
	const char *const *env;  /* "KEY=value" */
	const char *workdir;
	const char *user; /* user, uid, user:group or uid:gid */
	const char *hostname;
	const char *root;    /* root disk device, e.g. /dev/vdb */
	const char *rootfs;  /* erofs or ext4 */
	const char *overlay; /* overlay disk device, or "tmpfs" */
	const char *const *dns;
	const char *net_ip; /* A.B.C.D/prefix */
	const char *net_gw;
	const char *net_mac;
	const char *agent; /* virtio-serial port name */
	/* "DEVICE ro|rw /mount/path" each, NULL-terminated (may be NULL) */
	const char *const *volumes;
	/* PEM certificate(s) the init adds to the guest's trust store (the egress
	 * proxy's CA), or NULL */
	const char *egress_ca;
};

/*
 * Validate c and write the HM_GUEST_CFG_SIZE config disk at path atomically
 * (temp + fsync + rename), its exit record area zeroed. HM_ERR_INVALID when
 * the config cannot be expressed (no argv, too many entries, too large, a
 * value the guest would refuse).
 */
int hm_guestcfg_write(const char *path, const struct hm_guest_config *c, struct hm_err **err);

/*
 * Read the exit record of the disk at path: 1 with *ret_code and
 * *ret_message (owned by the caller) when there is one, 0 when the area is
 * empty (the guest never got to write it), < 0 on error (unreadable or
 * malformed record).
 */
int hm_guestcfg_read_exit(const char *path, int *ret_code, char **ret_message, struct hm_err **err);

/* Zero the exit record area (before each boot). */
int hm_guestcfg_clear_exit(const char *path, struct hm_err **err);
