/*
 * File helpers: read a whole (bounded) file, write a file atomically
 * (temp + fsync + rename), make directories. All opens are O_CLOEXEC.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct hm_err;

/* Read `path` into a NUL-terminated buffer; fails if it is larger than `max`. */
int hm_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len,
                 struct hm_err **err);

/* Write `data` to `path` atomically with `mode`: readers see the old or the new file, never half.
 */
int hm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         struct hm_err **err);

/* mkdir -p with `mode` for each created component. */
int hm_mkdir_p(const char *path, mode_t mode, struct hm_err **err);

/* write(2) until done or a real error; returns 0 or -errno. */
int hm_write_all(int fd, const void *data, size_t len);

/* rm -rf: remove `path` and everything under it without following symlinks. Missing is fine. */
int hm_rm_rf(const char *path, struct hm_err **err);

/* Bytes used by regular files under `path` (apparent sizes), or -1. */
long long hm_du(const char *path);

/*
 * Copy the file src to the new file dst (which must not exist), keeping
 * holes: a reflink (FICLONE) where the filesystem can, else only the data
 * extents (SEEK_DATA/SEEK_HOLE and copy_file_range). Never a dense copy. A
 * failure removes dst. *copied (may be NULL) gets the bytes actually copied
 * (0 for a reflink).
 */
int hm_copy_sparse(const char *src, const char *dst, mode_t mode, unsigned long long *copied,
                   struct hm_err **err);

/* Make the new file dst (which must not exist) of `size` bytes, all a hole. */
int hm_presize(const char *dst, off_t size, mode_t mode, struct hm_err **err);

/*
 * hm_copy_sparse into a dst that hm_presize made at src's size, in place:
 * the same inode, so a process that has dst open or mapped already sees the
 * contents once this returns. dst may hold an older copy (its pages then
 * allocated and cached already): where src has a hole and dst has data, the
 * data is punched out, so dst ends equal to src either way. dst is not
 * removed on failure.
 */
int hm_copy_sparse_into(const char *src, const char *dst, unsigned long long *copied,
                        struct hm_err **err);
