/*
 * The files that hold an instance's state outside a VMM, its "payload":
 * the same names in an instance's folder and in a snapshot's. Copying them
 * sparsely, compressing and decompressing the memory file, and sizing them.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct hm_err;

#define HM_PAYLOAD_MEMORY     "memory.ram"     /* guest RAM */
#define HM_PAYLOAD_MEMORY_ZST "memory.ram.zst" /* the same, compressed (zstd) */
#define HM_PAYLOAD_STATE      "vm.state"       /* device state (standby only) */
#define HM_PAYLOAD_ACCEL      "vm.accel"       /* the accelerator it was saved under */
#define HM_PAYLOAD_SECRETS    "secrets.json" /* credential values (0600; instance/credentials.c) */

/* How a memory file is kept: plain, or compressed with zstd at a level. */
struct hm_payload_opts {
	bool compress;
	int level; /* zstd 1..19 */
};
/* The domain's rule for opts (a standby's, a snapshot's): a level zstd has. */
int hm_payload_opts_check(const struct hm_payload_opts *opts, struct hm_err **err);

/*
 * Copy the payload in src_dir into dst_dir (created if missing): the
 * overlay, the overlay volumes' upper disks named in spec, the config disk,
 * the credential values (the secrets file, never part of the memory image),
 * and with `memory` the memory file (plain or compressed) and the device
 * state, where src_dir has them. mem_src, when not NULL, is the memory file to
 * copy instead of src_dir's. Sparse; *copied adds up the bytes copied.
 * With HM_PAYLOAD_IN_PLACE the files are filled in place where
 * hm_payload_presize made them (a VMM may have them open already).
 */
#define HM_PAYLOAD_IN_PLACE 1u
int hm_payload_copy(const char *src_dir, const char *dst_dir, json_t *spec, bool memory,
                    const char *mem_src, unsigned flags, unsigned long long *copied,
                    struct hm_err **err);

/*
 * Make each file hm_payload_copy with the same arguments would make, at its
 * final size and empty, so that a VMM can be started on them while they
 * are filled in place. Returns 1 when made, 0 when they cannot be made
 * ahead (a compressed memory file, which becomes a new file when it is
 * decompressed), or -1.
 */
int hm_payload_presize(const char *src_dir, const char *dst_dir, json_t *spec, bool memory,
                       const char *mem_src, struct hm_err **err);

/* The names and sizes of the files hm_payload_copy with these arguments
 * would copy, as one string ("overlay.ext4=SIZE ..."), or NULL if one is
 * missing: what a copy's presized files must match. */
char *hm_payload_shape(const char *src_dir, json_t *spec, bool memory, const char *mem_src);
/* The same with each file's device, inode and modification time: equal
 * stamps mean files no one wrote or replaced in between. */
char *hm_payload_stamp(const char *src_dir, json_t *spec, bool memory, const char *mem_src);
/* Compress dir's memory file (replacing it); sizes may be NULL. */
int hm_payload_compress(const char *dir, const struct hm_payload_opts *opts, int64_t *compressed,
                        int64_t *uncompressed);

/* Record that dir's device state was saved under accelerator `accel` ("kvm", "tcg"). */
int hm_payload_mark_accel(const char *dir, const char *accel, struct hm_err **err);

/* Make dir's saved state loadable under accelerator `accel`: it has a device
 * state saved under that accelerator (a state that records none is taken as
 * compatible; 409 accelerator_mismatch otherwise), and a plain memory file
 * (decompressed here if only the compressed one is there). */
int hm_payload_ready(const char *dir, const char *accel, struct hm_err **err);

/* Remove the memory file(s) and the device state. */
void hm_payload_drop_memory(const char *dir);

/* fdatasync dir's memory file in the background (its pages reach the disk
 * without holding up the request). */
void hm_payload_sync_later(const char *dir);

/* Bytes the payload files take on disk (allocated, so holes count nothing). */
int64_t hm_payload_disk_bytes(const char *dir);
/* The logical size of one of its files, or -1. */
int64_t hm_payload_file_size(const char *dir, const char *name);
