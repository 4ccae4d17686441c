/*
 * unpack: applying image layers. The daemon side (hm_unpack_layers) spawns
 * the hypeman-unpack helper, collects its stats line (stdout) and its
 * message (stderr) and turns its exit status into an error; the helper side
 * (hm_unpack_apply_fd) runs inside the helper after it has chrooted into
 * the new root, so every path and every symlink an earlier layer planted
 * resolves inside that root.
 *
 * Entry paths are normalized here (leading "/" and "./" dropped) and any
 * `..` component is refused before libarchive sees the entry; hard link
 * targets get the same treatment. Missing parents are made 0755.
 *
 * OCI whiteouts are applied as the layer streams: `.wh.NAME` removes NAME
 * as lower layers made it; `.wh..wh..opq` empties its directory, at any
 * depth, of everything not written by this same layer (the set `made`
 * remembers this layer's paths and their parents).
 */
#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/paths.h"
#include "core/xalloc.h"

/* Exit statuses of hypeman-unpack that mean something to the daemon. */
#define UNPACK_EXIT_BAD_LAYER 3 /* the layer's content is refused: HM_ERR_INVALID */
#define UNPACK_EXIT_NO_SPACE  4 /* out of disk: HM_ERR_INSUFFICIENT */

/* How much of the helper's stdout and stderr is kept. */
#define UNPACK_OUTPUT_MAX 4096

extern char **environ;

/* ---- daemon side ---- */

/* The first UNPACK_OUTPUT_MAX bytes read from one of the helper's pipes. */
struct capture {
	int fd;
	size_t len;
	char buf[UNPACK_OUTPUT_MAX + 1];
};

/* One read from c->fd; returns 0 at end of file (fd closed), 1 for more, -errno. */
static int capture_read(struct capture *c)
{
	char chunk[4096];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	if (n == 0) {
		close(TAKE_FD(c->fd));
		return 0;
	}
	size_t keep = UNPACK_OUTPUT_MAX - c->len;
	if (keep > (size_t)n)
		keep = (size_t)n;
	memcpy(c->buf + c->len, chunk, keep); /* the rest is drained and dropped */
	c->len += keep;
	c->buf[c->len] = '\0';
	return 1;
}

/* Read both pipes to end of file. Returns 0 or -errno. */
static int capture_all(struct capture *out, struct capture *errc)
{
	struct capture *cs[2] = { out, errc };
	for (;;) {
		struct pollfd pfd[2];
		int open_n = 0;
		for (int i = 0; i < 2; i++) {
			pfd[i] = (struct pollfd){ .fd = cs[i]->fd, .events = POLLIN };
			open_n += cs[i]->fd >= 0;
		}
		if (open_n == 0)
			return 0;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			int r = capture_read(cs[i]);
			if (r < 0)
				return r;
		}
	}
}

/* The last non-empty line of `s`, trimmed, in place. */
static char *last_line(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	char *nl = strrchr(s, '\n');
	return nl ? nl + 1 : s;
}

static int parse_stats(const char *text, struct hm_unpack_stats *stats)
{
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	const char *keys[] = { "entries", "whiteouts", "bytes" };
	uint64_t *vals[] = { &stats->entries, &stats->whiteouts, &stats->bytes };
	int r = json_is_object(j) ? 0 : -1;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(j, keys[i]);
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			r = -1;
		else
			*vals[i] = (uint64_t)json_integer_value(v);
	}
	json_decref(j);
	return r;
}

int hm_unpack_layers(const char *helper, const char *rootfs, const char *const *layers, size_t n,
                     struct hm_unpack_stats *stats, struct hm_err **err)
{
	struct hm_unpack_stats st = { 0 };
	if (n == 0) {
		if (stats)
			*stats = st;
		return 0;
	}
	_cleanup_free_ const char **argv = xcalloc(n + 3, sizeof(char *));
	argv[0] = helper;
	argv[1] = rootfs;
	for (size_t i = 0; i < n; i++)
		argv[i + 2] = layers[i];

	_cleanup_close_ int out_r = -1;
	_cleanup_close_ int out_w = -1;
	_cleanup_close_ int err_r = -1;
	_cleanup_close_ int err_w = -1;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return hm_err_errno(err, errno, "pipe");
	out_r = p[0], out_w = p[1];
	if (pipe2(p, O_CLOEXEC) < 0)
		return hm_err_errno(err, errno, "pipe");
	err_r = p[0], err_w = p[1];

	/* dup2 clears O_CLOEXEC on 1 and 2; every other fd of ours stays behind. */
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, def;
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	/* The daemon blocks SIGTERM and may ignore SIGPIPE; the helper must do neither. */
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int r = posix_spawn(&pid, helper, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(TAKE_FD(out_w));
	close(TAKE_FD(err_w));
	if (r != 0)
		return hm_err_errno(err, r, "start `%s`", helper);

	_cleanup_free_ struct capture *out = xcalloc(1, sizeof(*out));
	_cleanup_free_ struct capture *errc = xcalloc(1, sizeof(*errc));
	out->fd = TAKE_FD(out_r);
	errc->fd = TAKE_FD(err_r);
	int rd = capture_all(out, errc);
	if (out->fd >= 0)
		close(TAKE_FD(out->fd));
	if (errc->fd >= 0)
		close(TAKE_FD(errc->fd));
	if (rd < 0)
		kill(pid, SIGKILL); /* cannot read it any more: do not leave it blocked on a pipe */
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return hm_err_errno(err, errno, "wait for `%s`", helper);
	}
	if (rd < 0)
		return hm_err_errno(err, -rd, "read from `%s`", helper);

	const char *msg = last_line(errc->buf);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		if (parse_stats(out->buf, &st) < 0)
			return hm_err_set(err, HM_ERR_INTERNAL, NULL,
			                  "%s printed no stats: `%.200s`", helper, out->buf);
		if (stats)
			*stats = st;
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == UNPACK_EXIT_BAD_LAYER)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "%s",
		                  *msg ? msg : "invalid layer");
	if (WIFEXITED(status) && WEXITSTATUS(status) == UNPACK_EXIT_NO_SPACE) {
		hm_err_set(err, HM_ERR_INSUFFICIENT, NULL, "%s", *msg ? msg : "out of disk space");
		hm_err_set_errnum(err, ENOSPC);
		return -1;
	}
	return hm_err_set(err, HM_ERR_INTERNAL, NULL, "%s failed (%s %d)%s%s", helper,
	                  WIFEXITED(status) ? "exit" : "signal",
	                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
	                  *msg ? ": " : "", msg);
}

/* ---- helper side ---- */

/* A set of paths (open addressing, FNV-1a). */
struct pathset {
	char **slots;
	size_t cap, n;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static bool set_has(const struct pathset *s, const char *p)
{
	if (!s->cap)
		return false;
	for (size_t i = fnv(p) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (!s->slots[i])
			return false;
		if (strcmp(s->slots[i], p) == 0)
			return true;
	}
}

/* Insert `p`, taking ownership of it; it must not be in the set yet. */
static void set_insert(struct pathset *s, char *p)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		struct pathset bigger = { xcalloc(cap, sizeof(char *)), cap, 0 };
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i])
				set_insert(&bigger, s->slots[i]);
		free(s->slots);
		*s = bigger;
	}
	size_t i = fnv(p) & (s->cap - 1);
	while (s->slots[i])
		i = (i + 1) & (s->cap - 1);
	s->slots[i] = p;
	s->n++;
}

static void set_free(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
	*s = (struct pathset){ 0 };
}

/* Record `p` and all its parents as made by this layer. */
static void set_add_with_parents(struct pathset *s, const char *p)
{
	_cleanup_free_ char *c = xstrdup(p);
	for (;;) {
		if (set_has(s, c))
			break; /* its parents were recorded with it */
		set_insert(s, xstrdup(c));
		char *slash = strrchr(c, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
}

static int bad_entry(struct hm_err **err, const char *layer, const char *entry, const char *why)
{
	return hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s: entry `%s` %s", layer,
	                  entry, why);
}

/* An error from the disk side: out of space is its own kind, the rest internal. */
static int disk_error(struct hm_err **err, int errnum, const char *layer, const char *what,
                      const char *path, const char *detail)
{
	bool full = errnum == ENOSPC || errnum == EDQUOT;
	hm_err_set(err, full ? HM_ERR_INSUFFICIENT : HM_ERR_INTERNAL, NULL, "layer %s: %s `%s`: %s",
	           layer, what, path, detail ? detail : strerror(errnum));
	hm_err_set_errnum(err, errnum);
	return -1;
}

/* Names in `dir` ("" is the root), without "." and "..". NULL with errno set on failure. */
static char **list_dir(const char *dir, size_t *ret_n)
{
	DIR *d = opendir(*dir ? dir : ".");
	if (!d)
		return NULL;
	size_t n = 0, cap = 16;
	char **names = xmalloc(cap * sizeof(char *));
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap)
			names = xrealloc(names, (cap *= 2) * sizeof(char *));
		names[n++] = xstrdup(e->d_name);
	}
	int saved = errno;
	closedir(d);
	if (saved) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		errno = saved;
		return NULL;
	}
	*ret_n = n;
	return names;
}

/*
 * Opaque `dir`: remove everything under it that this layer did not write.
 * Directories this layer wrote into are kept and cleaned the same way,
 * since the lower layers' view of the whole subtree is hidden.
 */
static int make_opaque(const char *dir, const struct pathset *made, struct hm_err **err)
{
	size_t n = 0;
	char **names = list_dir(dir, &n);
	if (!names) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0; /* nothing below to hide */
		return hm_err_errno(err, errno, "read directory `%s`", *dir ? dir : "/");
	}
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		_cleanup_free_ char *child =
		    *dir ? xasprintf("%s/%s", dir, names[i]) : xstrdup(names[i]);
		struct stat st;
		if (!set_has(made, child))
			r = hm_rm_rf(child, err);
		else if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
			r = make_opaque(child, made, err);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

/*
 * Make the missing parents of `path` as 0755 directories. A parent that is
 * there but is not a directory (nor a symlink to one) is replaced, as the
 * layer's directory would hide it in an overlay.
 */
static int make_parents(const char *path, const char *layer, struct hm_err **err)
{
	_cleanup_free_ char *c = xstrdup(path);
	for (char *s = strchr(c, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		struct stat st;
		if (stat(c, &st) < 0 || !S_ISDIR(st.st_mode)) {
			if (hm_rm_rf(c, err) < 0)
				return hm_err_wrap(err, "layer %s: replace `%s`", layer, c);
			if (mkdir(c, 0755) < 0)
				return disk_error(err, errno, layer, "create directory", c, NULL);
		}
		*s = '/';
	}
	return 0;
}

/* Copy the current entry's data; -1: write failed, -2: the archive is corrupt. */
static int copy_data(struct archive *in, struct archive *out, uint64_t *bytes)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int r;
	while ((r = archive_read_data_block(in, &buf, &size, &off)) == ARCHIVE_OK) {
		if (archive_write_data_block(out, buf, size, off) < ARCHIVE_WARN)
			return -1;
		*bytes += size;
	}
	return r == ARCHIVE_EOF ? 0 : -2;
}

/* Handle `.wh.NAME` / `.wh..wh..opq` entry `path` (base: its last component). */
static int apply_whiteout(const char *layer, const char *raw, const char *path, const char *base,
                          const struct pathset *made, struct hm_unpack_stats *stats,
                          struct hm_err **err)
{
	_cleanup_free_ char *dir =
	    base == path ? xstrdup("") : xstrndup(path, (size_t)(base - path - 1));
	int r;
	if (strcmp(base, ".wh..wh..opq") == 0) {
		r = make_opaque(dir, made, err);
	} else if (strncmp(base, ".wh..wh.", 8) == 0) {
		return 0; /* other aufs metadata (.wh..wh.plnk, ...): not content, skipped */
	} else {
		const char *name = base + 4;
		if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			return bad_entry(err, layer, raw, "is not a valid whiteout");
		_cleanup_free_ char *victim = *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
		/* A whiteout hides lower layers only, not this layer's own files. */
		r = set_has(made, victim) ? 0 : hm_rm_rf(victim, err);
	}
	if (r < 0)
		return hm_err_wrap(err, "layer %s: whiteout `%s`", layer, raw);
	stats->whiteouts++;
	return 0;
}

/* Write one (non-whiteout) entry at normalized `path`. */
static int apply_entry(struct archive *in, struct archive *out, struct archive_entry *e,
                       const char *layer, const char *raw, const char *path, struct pathset *made,
                       struct hm_unpack_stats *stats, struct hm_err **err)
{
	const char *hl = archive_entry_hardlink(e);
	if (hl) {
		_cleanup_free_ char *target = hm_path_clean(hl);
		if (!target)
			return bad_entry(err, layer, raw,
			                 "is a hard link that leaves the root (`..`)");
		struct stat tst;
		if (!*target || strcmp(target, path) == 0)
			return bad_entry(err, layer, raw, "is a hard link to an invalid target");
		if (lstat(target, &tst) < 0 || S_ISDIR(tst.st_mode))
			return bad_entry(err, layer, raw,
			                 "is a hard link to a missing file or a directory");
		archive_entry_set_hardlink(e, target);
	}
	if (make_parents(path, layer, err) < 0)
		return -1;
	/* A directory merges into a directory; anything else replaces what is there. */
	struct stat st;
	bool is_dir = !hl && archive_entry_filetype(e) == AE_IFDIR;
	if (lstat(path, &st) == 0 && !(is_dir && S_ISDIR(st.st_mode)) && hm_rm_rf(path, err) < 0)
		return hm_err_wrap(err, "layer %s: replace `%s`", layer, path);
	archive_entry_set_pathname(e, path);
	set_add_with_parents(made, path);
	if (archive_write_header(out, e) < ARCHIVE_WARN)
		return disk_error(err, archive_errno(out), layer, "write", path,
		                  archive_error_string(out));
	if (archive_entry_size(e) > 0 && archive_entry_size_is_set(e)) {
		int c = copy_data(in, out, &stats->bytes);
		if (c == -2)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_layer",
			                  "layer %s: corrupt data for `%s`: %s", layer, raw,
			                  archive_error_string(in));
		if (c < 0)
			return disk_error(err, archive_errno(out), layer, "write", path,
			                  archive_error_string(out));
	}
	if (archive_write_finish_entry(out) < ARCHIVE_WARN)
		return disk_error(err, archive_errno(out), layer, "finish", path,
		                  archive_error_string(out));
	stats->entries++;
	return 0;
}

int hm_unpack_apply_fd(int fd, const char *layer, struct hm_unpack_stats *stats,
                       struct hm_err **err)
{
	struct archive *in = archive_read_new();
	archive_read_support_filter_all(in);
	archive_read_support_format_tar(in); /* ustar, pax and GNU tar */
	archive_read_support_format_empty(in);
	struct archive *out = archive_write_disk_new();
	archive_write_disk_set_options(
	    out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
	             ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_UNLINK |
	             ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
	struct pathset made = { 0 };
	int ret = 0, r = ARCHIVE_EOF;
	if (archive_read_open_fd(in, fd, 1 << 16) != ARCHIVE_OK) {
		ret = hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s: %s", layer,
		                 archive_error_string(in));
		goto out;
	}
	struct archive_entry *e;
	/* ARCHIVE_WARN: e.g. a name not convertible to the locale; the raw name is kept. */
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *raw = archive_entry_pathname(e);
		if (!raw)
			raw = archive_entry_pathname_utf8(e);
		if (!raw || !*raw) {
			ret = bad_entry(err, layer, raw ? raw : "", "has an empty path");
			break;
		}
		_cleanup_free_ char *path = hm_path_clean(raw);
		if (!path) {
			ret = bad_entry(err, layer, raw, "leaves the root (`..`)");
			break;
		}
		if (!*path)
			continue; /* "./" or "/": the root itself, which the caller made */
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		if (strncmp(base, ".wh.", 4) == 0)
			ret = apply_whiteout(layer, raw, path, base, &made, stats, err);
		else
			ret = apply_entry(in, out, e, layer, raw, path, &made, stats, err);
		if (ret < 0)
			break;
	}
	if (ret == 0 && r != ARCHIVE_EOF)
		ret = hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s is corrupt: %s",
		                 layer, archive_error_string(in));
	/* Closing applies the deferred directory modes and times. */
	if (archive_write_close(out) < ARCHIVE_WARN && ret == 0)
		ret = disk_error(err, archive_errno(out), layer, "finish", "/",
		                 archive_error_string(out));
out:
	archive_write_free(out);
	archive_read_free(in);
	set_free(&made);
	return ret;
}
