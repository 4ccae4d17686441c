/*
 * instance/payload: an instance's state files (payload.h), copied sparsely
 * between instance and snapshot folders, and the memory file's optional
 * zstd compression (the `zstd` tool, run as a child).
 */
#include "instance/payload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/xalloc.h"

int hm_payload_opts_check(const struct hm_payload_opts *opts, struct hm_err **err)
{
	if (opts->compress && (opts->level < 1 || opts->level > 19))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_compression",
		                  "compression level %d is not one of zstd's, 1 to 19",
		                  opts->level);
	return 0;
}

/*
 * The files a payload copy makes in dst_dir, in order, each given to fn with
 * its source; an optional one whose source is missing is left out. One list
 * for the copy and for hm_payload_presize, so the two never disagree.
 */
typedef int (*payload_fn)(const char *src, const char *dst, void *ctx, struct hm_err **err);

static int each_file(const char *src_dir, const char *dst_dir, const char *name, bool optional,
                     const char *src_path, payload_fn fn, void *ctx, struct hm_err **err)
{
	_cleanup_free_ char *s = src_path ? xstrdup(src_path) : xasprintf("%s/%s", src_dir, name);
	_cleanup_free_ char *d = xasprintf("%s/%s", dst_dir, name);
	if (optional && access(s, F_OK) < 0 && errno == ENOENT)
		return 0;
	return fn(s, d, ctx, err);
}

static int payload_walk(const char *src_dir, const char *dst_dir, json_t *spec, bool memory,
                        const char *mem_src, payload_fn fn, void *ctx, struct hm_err **err)
{
	if (each_file(src_dir, dst_dir, "overlay.ext4", false, NULL, fn, ctx, err) < 0 ||
	    each_file(src_dir, dst_dir, "config.img", true, NULL, fn, ctx, err) < 0 ||
	    each_file(src_dir, dst_dir, HM_PAYLOAD_SECRETS, true, NULL, fn, ctx, err) < 0)
		return -1;
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(spec, "volumes"), i, v) {
		if (!json_is_true(json_object_get(v, "overlay")))
			continue;
		_cleanup_free_ char *name =
		    xasprintf("vol-%s.ext4", json_string_value(json_object_get(v, "id")));
		if (each_file(src_dir, dst_dir, name, true, NULL, fn, ctx, err) < 0)
			return -1;
	}
	if (memory && mem_src)
		/* A live capture: its device state and accelerator mark are already in
		 * dst_dir (the VMM wrote them there). */
		return each_file(src_dir, dst_dir, HM_PAYLOAD_MEMORY, false, mem_src, fn, ctx, err);
	if (memory) {
		_cleanup_free_ char *plain = xasprintf("%s/%s", src_dir, HM_PAYLOAD_MEMORY);
		bool have_plain = access(plain, F_OK) == 0;
		if (each_file(src_dir, dst_dir,
		              have_plain ? HM_PAYLOAD_MEMORY : HM_PAYLOAD_MEMORY_ZST, false, NULL,
		              fn, ctx, err) < 0 ||
		    each_file(src_dir, dst_dir, HM_PAYLOAD_STATE, true, NULL, fn, ctx, err) < 0 ||
		    each_file(src_dir, dst_dir, HM_PAYLOAD_ACCEL, true, NULL, fn, ctx, err) < 0)
			return -1;
	}
	return 0;
}

struct copy_ctx {
	bool in_place;
	unsigned long long n;
};

static int copy_fn(const char *src, const char *dst, void *ctx, struct hm_err **err)
{
	struct copy_ctx *c = ctx;
	unsigned long long n = 0;
	if ((c->in_place ? hm_copy_sparse_into(src, dst, &n, err)
	                 : hm_copy_sparse(src, dst, 0600, &n, err)) < 0)
		return -1;
	c->n += n;
	return 0;
}

int hm_payload_copy(const char *src_dir, const char *dst_dir, json_t *spec, bool memory,
                    const char *mem_src, unsigned flags, unsigned long long *copied,
                    struct hm_err **err)
{
	struct copy_ctx c = { .in_place = flags & HM_PAYLOAD_IN_PLACE };
	if (hm_mkdir_p(dst_dir, 0700, err) < 0 ||
	    payload_walk(src_dir, dst_dir, spec, memory, mem_src, copy_fn, &c, err) < 0)
		return -1;
	if (copied)
		*copied += c.n;
	return 0;
}

static int presize_fn(const char *src, const char *dst, void *ctx, struct hm_err **err)
{
	(void)ctx;
	struct stat st;
	if (stat(src, &st) < 0)
		return hm_err_errno(err, errno, "`%s`", src);
	return hm_presize(dst, st.st_size, 0600, err);
}

int hm_payload_presize(const char *src_dir, const char *dst_dir, json_t *spec, bool memory,
                       const char *mem_src, struct hm_err **err)
{
	_cleanup_free_ char *zst = xasprintf("%s/%s", src_dir, HM_PAYLOAD_MEMORY_ZST);
	if (memory && !mem_src && access(zst, F_OK) == 0)
		return 0; /* it becomes a new file when it is decompressed */
	if (hm_mkdir_p(dst_dir, 0700, err) < 0 ||
	    payload_walk(src_dir, dst_dir, spec, memory, mem_src, presize_fn, NULL, err) < 0)
		return -1;
	return 1;
}

struct describe {
	char *text;
	bool stamp; /* with each file's device, inode and mtime */
};

static int describe_fn(const char *src, const char *dst, void *ctx, struct hm_err **err)
{
	struct describe *d = ctx;
	struct stat st;
	if (stat(src, &st) < 0)
		return hm_err_errno(err, errno, "`%s`", src);
	const char *name = strrchr(dst, '/');
	char *more = d->stamp ? xasprintf("%s%s=%lld:%lu:%lu:%lld.%09ld ", d->text,
	                                  name ? name + 1 : dst, (long long)st.st_size,
	                                  (unsigned long)st.st_dev, (unsigned long)st.st_ino,
	                                  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
	                      : xasprintf("%s%s=%lld ", d->text, name ? name + 1 : dst,
	                                  (long long)st.st_size);
	free(d->text);
	d->text = more;
	return 0;
}

static char *describe(const char *src_dir, json_t *spec, bool memory, const char *mem_src,
                      bool stamp)
{
	struct describe d = { xstrdup(""), stamp };
	if (payload_walk(src_dir, src_dir, spec, memory, mem_src, describe_fn, &d, NULL) < 0) {
		free(d.text);
		return NULL;
	}
	return d.text;
}

char *hm_payload_shape(const char *src_dir, json_t *spec, bool memory, const char *mem_src)
{
	return describe(src_dir, spec, memory, mem_src, false);
}

char *hm_payload_stamp(const char *src_dir, json_t *spec, bool memory, const char *mem_src)
{
	return describe(src_dir, spec, memory, mem_src, true);
}

int64_t hm_payload_file_size(const char *dir, const char *name)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
	struct stat st;
	return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

int hm_payload_compress(const char *dir, const struct hm_payload_opts *opts, int64_t *compressed,
                        int64_t *uncompressed)
{
	_cleanup_free_ char *plain = xasprintf("%s/%s", dir, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *zst = xasprintf("%s/%s", dir, HM_PAYLOAD_MEMORY_ZST);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", zst);
	_cleanup_free_ char *lvl = xasprintf("-%d", opts->level);
	int64_t before = hm_payload_file_size(dir, HM_PAYLOAD_MEMORY);
	const char *argv[] = { "zstd", "-q", "-f", "-T0", lvl, "-o", tmp, plain, NULL };
	_cleanup_err_ struct hm_err *err = NULL;
	if (hm_run(argv, NULL, NULL, &err) < 0 || rename(tmp, zst) < 0) {
		log_warn("payload", "memory not compressed", "dir=%s error=\"%s\"", dir,
		         err ? err->msg : strerror(errno));
		unlink(tmp);
		return -1;
	}
	unlink(plain);
	if (compressed)
		*compressed = hm_payload_file_size(dir, HM_PAYLOAD_MEMORY_ZST);
	if (uncompressed)
		*uncompressed = before;
	return 0;
}

int hm_payload_mark_accel(const char *dir, const char *accel, struct hm_err **err)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, HM_PAYLOAD_ACCEL);
	return hm_write_file_atomic(p, accel, strlen(accel), 0600, err);
}

int hm_payload_ready(const char *dir, const char *accel, struct hm_err **err)
{
	_cleanup_free_ char *plain = xasprintf("%s/%s", dir, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *zst = xasprintf("%s/%s", dir, HM_PAYLOAD_MEMORY_ZST);
	_cleanup_free_ char *state = xasprintf("%s/%s", dir, HM_PAYLOAD_STATE);
	_cleanup_free_ char *accel_file = xasprintf("%s/%s", dir, HM_PAYLOAD_ACCEL);
	if (access(state, R_OK) < 0)
		return hm_err_errno(err, errno, "the saved device state `%s`", state);
	/* A device state holds the accelerator's CPU state: KVM's cannot load
	 * under TCG nor the reverse (QEMU would fail or crash on it). */
	_cleanup_free_ char *saved = NULL;
	if (hm_read_file(accel_file, 16, &saved, NULL, NULL) == 0) {
		saved[strcspn(saved, "\n")] = '\0';
		if (strcmp(saved, accel) != 0)
			return hm_err_set(err, HM_ERR_CONFLICT, "accelerator_mismatch",
			                  "this state was saved under %s and this host runs guests "
			                  "under %s (ACCEL); it can only be restored under %s",
			                  saved, accel, saved);
	}
	if (access(plain, F_OK) == 0)
		return 0;
	if (access(zst, R_OK) < 0)
		return hm_err_errno(err, errno, "the saved memory `%s`", plain);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", plain);
	/* --sparse: the zero pages that never were written stay holes. */
	const char *argv[] = { "zstd", "-q", "-d", "-f", "--sparse", "-o", tmp, zst, NULL };
	if (hm_run(argv, NULL, NULL, err) < 0) {
		unlink(tmp);
		return hm_err_wrap(err, "decompress the saved memory");
	}
	if (rename(tmp, plain) < 0) {
		int e = errno;
		unlink(tmp);
		return hm_err_errno(err, e, "decompress the saved memory");
	}
	unlink(zst);
	return 0;
}

void hm_payload_drop_memory(const char *dir)
{
	const char *names[] = { HM_PAYLOAD_MEMORY, HM_PAYLOAD_MEMORY_ZST, HM_PAYLOAD_STATE,
		                HM_PAYLOAD_ACCEL };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, names[i]);
		unlink(p);
	}
}

static void *sync_thread(void *arg)
{
	char *path = arg;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		fdatasync(fd);
		close(fd);
	}
	free(path);
	return NULL;
}

void hm_payload_sync_later(const char *dir)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	char *path = xasprintf("%s/%s", dir, HM_PAYLOAD_MEMORY);
	if (pthread_create(&t, &attr, sync_thread, path) != 0)
		free(path);
	pthread_attr_destroy(&attr);
}

int64_t hm_payload_disk_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int64_t total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] != '.' &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			total += (int64_t)st.st_blocks * 512;
	}
	closedir(d);
	return total;
}
