/*
 * unpack: applying image layers. The daemon side (hm_unpack_layers) runs
 * the hypeman-unpack helper and turns its exit status into an error; the
 * helper side (hm_unpack_apply_fd) runs inside the helper after it has
 * chrooted into the new root, so every path and every symlink an earlier
 * layer planted resolves inside that root.
 *
 * OCI whiteouts are applied as the layer streams: `.wh.NAME` removes NAME
 * as lower layers made it; `.wh..wh..opq` empties its directory of
 * everything not already written by this same layer (the set `made`
 * remembers this layer's paths and their parents).
 */
#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/spawn.h"
#include "core/xalloc.h"

#define UNPACK_EXIT_BAD_LAYER 3

/* ---- daemon side ---- */

int hm_unpack_layers(const char *helper, const char *rootfs, const char *const *layers, size_t n,
                     struct hm_unpack_stats *stats, struct hm_err **err)
{
	const char **argv = xcalloc(n + 3, sizeof(char *));
	argv[0] = helper;
	argv[1] = rootfs;
	for (size_t i = 0; i < n; i++)
		argv[i + 2] = layers[i];
	_cleanup_free_ char *out = NULL;
	int status = -1;
	_cleanup_err_ struct hm_err *run_err = NULL;
	int r = hm_run(argv, &out, &status, &run_err);
	free(argv);
	if (r < 0 && status < 0) { /* could not start it at all */
		*err = TAKE_PTR(run_err);
		return -1;
	}
	/* The helper prints one JSON line on success, one message line on failure. */
	char *line = out ? out : (char *)"";
	size_t l = strlen(line);
	while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
		line[--l] = '\0';
	char *last = strrchr(line, '\n');
	last = last ? last + 1 : line;
	if (status == 0) {
		json_t *j = json_loads(last, 0, NULL);
		if (j && stats) {
			stats->entries =
			    (uint64_t)json_integer_value(json_object_get(j, "entries"));
			stats->whiteouts =
			    (uint64_t)json_integer_value(json_object_get(j, "whiteouts"));
			stats->bytes = (uint64_t)json_integer_value(json_object_get(j, "bytes"));
		}
		json_decref(j);
		return 0;
	}
	if (status == UNPACK_EXIT_BAD_LAYER)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "%s", last);
	return hm_err_set(err, HM_ERR_INTERNAL, NULL, "hypeman-unpack failed (status %d): %s",
	                  status, *last ? last : "no message");
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

static void set_add(struct pathset *s, const char *p)
{
	if (set_has(s, p))
		return;
	if ((s->n + 1) * 2 > s->cap) {
		struct pathset bigger = { xcalloc(s->cap ? s->cap * 2 : 1024, sizeof(char *)),
			                  s->cap ? s->cap * 2 : 1024, 0 };
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i])
				set_add(&bigger, s->slots[i]), free(s->slots[i]);
		free(s->slots);
		*s = bigger;
	}
	size_t i = fnv(p) & (s->cap - 1);
	while (s->slots[i])
		i = (i + 1) & (s->cap - 1);
	s->slots[i] = xstrdup(p);
	s->n++;
}

static void set_free(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
}

/* Record `p` and all its parents as made by this layer. */
static void set_add_with_parents(struct pathset *s, const char *p)
{
	_cleanup_free_ char *c = xstrdup(p);
	for (;;) {
		set_add(s, c);
		char *slash = strrchr(c, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
}

/*
 * Normalize an entry path: drop leading "/" and "./", collapse "//" and
 * "/./". Returns NULL (and *escapes = true) for any ".." component; an
 * empty result means the root itself.
 */
static char *clean_path(const char *p, bool *escapes)
{
	*escapes = false;
	char *out = xmalloc(strlen(p) + 1);
	size_t o = 0;
	while (*p) {
		while (*p == '/')
			p++;
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t l = (size_t)(p - seg);
		if (l == 0 || (l == 1 && seg[0] == '.'))
			continue;
		if (l == 2 && seg[0] == '.' && seg[1] == '.') {
			*escapes = true;
			free(out);
			return NULL;
		}
		if (o)
			out[o++] = '/';
		memcpy(out + o, seg, l);
		o += l;
	}
	out[o] = '\0';
	return out;
}

static int bad_entry(struct hm_err **err, const char *layer, const char *entry, const char *why)
{
	return hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s: entry `%s` %s", layer,
	                  entry, why);
}

/* Remove every child of `dir` not made by this layer. */
static int make_opaque(const char *dir, const struct pathset *made, struct hm_err **err)
{
	DIR *d = opendir(*dir ? dir : ".");
	if (!d)
		return errno == ENOENT ? 0 : hm_err_errno(err, errno, "open `%s`", dir);
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *child =
		    *dir ? xasprintf("%s/%s", dir, e->d_name) : xstrdup(e->d_name);
		if (!set_has(made, child))
			r = hm_rm_rf(child, err);
	}
	closedir(d);
	return r;
}

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

int hm_unpack_apply_fd(int fd, const char *layer, struct hm_unpack_stats *stats,
                       struct hm_err **err)
{
	struct archive *in = archive_read_new();
	archive_read_support_filter_all(in);
	archive_read_support_format_tar(in);
	struct archive *out = archive_write_disk_new();
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
	                                        ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
	                                        ARCHIVE_EXTRACT_UNLINK |
	                                        ARCHIVE_EXTRACT_SECURE_NODOTDOT);
	struct pathset made = { 0 };
	int ret = 0;
	if (archive_read_open_fd(in, fd, 1 << 16) != ARCHIVE_OK) {
		ret = hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s: %s", layer,
		                 archive_error_string(in));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
		const char *raw = archive_entry_pathname(e);
		bool escapes;
		_cleanup_free_ char *path = clean_path(raw ? raw : "", &escapes);
		if (!path) {
			ret = bad_entry(err, layer, raw ? raw : "", "leaves the root (`..`)");
			break;
		}
		if (!*path)
			continue; /* the root directory itself */
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		_cleanup_free_ char *dir =
		    base == path ? xstrdup("") : xstrndup(path, (size_t)(base - path - 1));
		if (strncmp(base, ".wh.", 4) == 0) {
			stats->whiteouts++;
			if (strcmp(base, ".wh..wh..opq") == 0) {
				ret = make_opaque(dir, &made, err);
			} else {
				_cleanup_free_ char *victim =
				    *dir ? xasprintf("%s/%s", dir, base + 4) : xstrdup(base + 4);
				if (strcmp(base + 4, "") == 0 || strcmp(base + 4, ".") == 0 ||
				    strcmp(base + 4, "..") == 0)
					ret = bad_entry(err, layer, raw, "is not a valid whiteout");
				else
					ret = hm_rm_rf(victim, err);
			}
			if (ret < 0) {
				hm_err_wrap(err, "layer %s: whiteout `%s`", layer, raw);
				break;
			}
			continue;
		}
		const char *hl = archive_entry_hardlink(e);
		if (hl) {
			_cleanup_free_ char *target = clean_path(hl, &escapes);
			if (!target || !*target) {
				ret = bad_entry(err, layer, raw,
				                "is a hard link that leaves the root");
				break;
			}
			archive_entry_set_hardlink(e, target);
		}
		/* A directory replaces a non-directory and vice versa. */
		struct stat st;
		bool is_dir = archive_entry_filetype(e) == AE_IFDIR;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) != is_dir) {
			if (hm_rm_rf(path, err) < 0) {
				ret = -1;
				break;
			}
		}
		archive_entry_set_pathname(e, path);
		set_add_with_parents(&made, path);
		r = archive_write_header(out, e);
		if (r < ARCHIVE_WARN) {
			ret = hm_err_set(err, HM_ERR_INTERNAL, NULL, "layer %s: write `%s`: %s",
			                 layer, path, archive_error_string(out));
			if (archive_errno(out) == ENOSPC) {
				(*err)->kind = HM_ERR_INSUFFICIENT;
				(*err)->errnum = ENOSPC;
			}
			break;
		}
		if (archive_entry_size(e) > 0 && archive_entry_filetype(e) == AE_IFREG) {
			int c = copy_data(in, out, &stats->bytes);
			if (c == -2) {
				ret = hm_err_set(err, HM_ERR_INVALID, "invalid_layer",
				                 "layer %s: corrupt data for `%s`: %s", layer, path,
				                 archive_error_string(in));
				break;
			}
			if (c < 0) {
				ret = hm_err_set(err, HM_ERR_INTERNAL, NULL,
				                 "layer %s: write `%s`: %s", layer, path,
				                 archive_error_string(out));
				if (archive_errno(out) == ENOSPC)
					(*err)->errnum = ENOSPC;
				break;
			}
		}
		if (archive_write_finish_entry(out) < ARCHIVE_WARN) {
			ret = hm_err_set(err, HM_ERR_INTERNAL, NULL, "layer %s: finish `%s`: %s",
			                 layer, path, archive_error_string(out));
			break;
		}
		stats->entries++;
	}
	if (ret == 0 && r != ARCHIVE_EOF)
		ret = hm_err_set(err, HM_ERR_INVALID, "invalid_layer", "layer %s is corrupt: %s",
		                 layer, archive_error_string(in));
out:
	archive_write_free(out);
	archive_read_free(in);
	set_free(&made);
	return ret;
}
