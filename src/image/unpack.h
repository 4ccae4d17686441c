/*
 * Layer unpacking: apply OCI/Docker image layers (tar, optionally gzip or
 * zstd compressed) in order onto a root directory, as a container runtime
 * would: whiteouts (`.wh.name`) delete what lower layers made, opaque
 * markers (`.wh..wh..opq`) hide a directory's lower contents, and hard
 * links, symlinks, devices, modes, owners, mtimes and xattrs are kept.
 *
 * The work happens in a child process (the `hypeman-unpack` helper) that
 * chroots into the root first, so no entry and no symlink made by an
 * earlier layer can reach a file outside it; entries with `..` components
 * are refused outright.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct hm_err;

struct hm_unpack_stats {
	uint64_t entries;   /* tar entries applied */
	uint64_t whiteouts; /* whiteout and opaque markers honoured */
	uint64_t bytes;     /* regular file bytes written */
};

/*
 * Apply the layer files `layers[0..n)` (lowest first) onto `rootfs`, which
 * must exist (normally empty). Spawns the hypeman-unpack helper found at
 * `helper` and waits for it. On failure the message names the layer and
 * the offending entry; `rootfs` is left for the caller to remove.
 */
int hm_unpack_layers(const char *helper, const char *rootfs, const char *const *layers, size_t n,
                     struct hm_unpack_stats *stats, struct hm_err **err);

/*
 * The helper's side, for src/image/unpack_main.c: already chrooted into the
 * root, apply one layer read from `fd`. `layer_name` is used in messages.
 */
int hm_unpack_apply_fd(int fd, const char *layer_name, struct hm_unpack_stats *stats,
                       struct hm_err **err);
