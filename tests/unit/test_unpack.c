/*
 * Tests for image/unpack: layers built here with libarchive's writer are
 * applied through the real hypeman-unpack helper (build/san/bin, or
 * $HYPEMAN_UNPACK) onto a fresh root in a temporary directory. Covers
 * files, modes, owners, links, fifos, xattrs, whiteouts and opaque
 * directories, compression, and the refusals: `..` paths, corrupt data,
 * symlinks that try to lead out of the root. Runs as root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"
#include "image/unpack.h"

#define MTIME 1500000000

/*
 * One entry of a test layer. type: f file, d dir, l symlink, h hard link,
 * p fifo, c character device 1:3 (what /dev/null is).
 */
struct ent {
	const char *path;
	char type;
	const char *data;  /* file content, or link target */
	unsigned mode;     /* permission bits; 0 for 0644 / 0755 */
	int uid;           /* also the gid */
	const char *xattr; /* value for user.test, or NULL */
};

struct fx {
	char *dir;    /* the temporary directory; removed at the end */
	char *rootfs; /* dir/root/rootfs: dir/root is the "outside" a layer must not reach */
	int nlayers;
};

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->dir = xstrdup("/tmp/hm-unpack-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	char *outer = xasprintf("%s/root", fx->dir);
	fx->rootfs = xasprintf("%s/rootfs", outer);
	int r = mkdir(outer, 0755) < 0 || mkdir(fx->rootfs, 0755) < 0 ? -1 : 0;
	free(outer);
	*state = fx;
	return r;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	struct hm_err *err = NULL;
	int r = hm_rm_rf(fx->dir, &err);
	hm_err_free(err);
	free(fx->dir);
	free(fx->rootfs);
	free(fx);
	return r;
}

static char *in_root(const struct fx *fx, const char *rel)
{
	return xasprintf("%s/%s", fx->rootfs, rel);
}

/* Write a layer file from `ents`; returns its path (to free). */
static char *make_layer(struct fx *fx, const struct ent *ents, size_t n, bool gzip)
{
	char *path = xasprintf("%s/layer%d.tar%s", fx->dir, ++fx->nlayers, gzip ? ".gz" : "");
	struct archive *a = archive_write_new();
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	/* Names go out as the bytes given, whatever this process's locale. */
	assert_int_equal(archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY"),
	                 ARCHIVE_OK);
	if (gzip)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *x = &ents[i];
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, x->path);
		archive_entry_set_uid(e, x->uid);
		archive_entry_set_gid(e, x->uid);
		archive_entry_set_mtime(e, MTIME, 0);
		size_t len = 0;
		switch (x->type) {
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, x->mode ? x->mode : 0755);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_perm(e, 0777);
			archive_entry_set_symlink(e, x->data);
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_hardlink(e, x->data);
			break;
		case 'p':
			archive_entry_set_filetype(e, AE_IFIFO);
			archive_entry_set_perm(e, x->mode ? x->mode : 0600);
			break;
		case 'c':
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_perm(e, x->mode ? x->mode : 0666);
			archive_entry_set_rdevmajor(e, 1);
			archive_entry_set_rdevminor(e, 3);
			break;
		default:
			len = x->data ? strlen(x->data) : 0;
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, x->mode ? x->mode : 0644);
			archive_entry_set_size(e, (la_int64_t)len);
		}
		if (x->xattr)
			archive_entry_xattr_add_entry(e, "user.test", x->xattr, strlen(x->xattr));
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (len)
			assert_int_equal(archive_write_data(a, x->data, len), (la_ssize_t)len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return path;
}

static const char *helper(void)
{
	const char *h = getenv("HYPEMAN_UNPACK");
	return h && *h ? h : "build/san/bin/hypeman-unpack";
}

static int unpack(const struct fx *fx, char **layers, size_t n, struct hm_unpack_stats *st,
                  struct hm_err **err)
{
	return hm_unpack_layers(helper(), fx->rootfs, (const char *const *)layers, n, st, err);
}

static void free_layers(char **layers, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(layers[i]);
}

/* Unpack and expect success. */
static void unpack_ok(const struct fx *fx, char **layers, size_t n, struct hm_unpack_stats *st)
{
	struct hm_err *err = NULL;
	int r = unpack(fx, layers, n, st, &err);
	if (r < 0)
		fail_msg("unpack failed: %s", err->msg);
	assert_null(err);
}

static bool exists_in(const struct fx *fx, const char *rel)
{
	char *p = in_root(fx, rel);
	struct stat st;
	bool r = lstat(p, &st) == 0;
	free(p);
	return r;
}

static struct stat stat_in(const struct fx *fx, const char *rel)
{
	char *p = in_root(fx, rel);
	struct stat st;
	if (lstat(p, &st) < 0)
		fail_msg("lstat %s: %s", rel, strerror(errno));
	free(p);
	return st;
}

static void assert_content(const struct fx *fx, const char *rel, const char *want)
{
	char *p = in_root(fx, rel);
	char *data = NULL;
	size_t len;
	struct hm_err *err = NULL;
	if (hm_read_file(p, 1 << 20, &data, &len, &err) < 0)
		fail_msg("read %s: %s", rel, err->msg);
	assert_string_equal(data, want);
	free(data);
	free(p);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_files_modes_owners(void **state)
{
	struct fx *fx = *state;
	const struct ent ents[] = {
		{ "./", 'd' },
		{ "etc", 'd' },
		{ "etc/conf", 'f', "hello", 0640, 1000 },
		{ "home/user", 'd', NULL, 0700, 1000 },
		{ "bin/suid", 'f', "#!", 04755 },
		{ "deep/a/b/file", 'f', "x" },
		{ "/abs/file", 'f', "abs" },
		{ "./dot/slash", 'f', "dot" },
		{ "caf\xc3\xa9.txt", 'f', "utf8" },
		{ "run/fifo", 'p', NULL, 0620 },
	};
	char *layers[] = { make_layer(fx, ents, ARRAY_SIZE(ents), false) };
	struct hm_unpack_stats st = { 0 };
	unpack_ok(fx, layers, 1, &st);
	assert_int_equal(st.entries, ARRAY_SIZE(ents) - 1); /* "./" is the root itself */
	assert_int_equal(st.whiteouts, 0);
	assert_int_equal(st.bytes, 5 + 2 + 1 + 3 + 3 + 4);

	assert_content(fx, "etc/conf", "hello");
	struct stat s = stat_in(fx, "etc/conf");
	assert_int_equal(s.st_mode & 07777, 0640);
	assert_int_equal(s.st_uid, 1000);
	assert_int_equal(s.st_gid, 1000);
	assert_int_equal(s.st_mtime, MTIME);
	s = stat_in(fx, "home/user");
	assert_true(S_ISDIR(s.st_mode));
	assert_int_equal(s.st_mode & 07777, 0700);
	assert_int_equal(s.st_uid, 1000);
	assert_int_equal(stat_in(fx, "bin/suid").st_mode & 07777, 04755);
	/* Parents the layer left out are made 0755, not world-writable. */
	assert_int_equal(stat_in(fx, "deep").st_mode & 07777, 0755);
	assert_int_equal(stat_in(fx, "deep/a/b").st_mode & 07777, 0755);
	assert_content(fx, "deep/a/b/file", "x");
	assert_content(fx, "abs/file", "abs");
	assert_content(fx, "dot/slash", "dot");
	assert_content(fx, "caf\xc3\xa9.txt", "utf8");
	s = stat_in(fx, "run/fifo");
	assert_true(S_ISFIFO(s.st_mode));
	assert_int_equal(s.st_mode & 07777, 0620);
	/* The root the caller made keeps its mode. */
	struct stat rs;
	assert_int_equal(stat(fx->rootfs, &rs), 0);
	assert_int_equal(rs.st_mode & 07777, 0755);
	free_layers(layers, 1);
}

static void test_links(void **state)
{
	struct fx *fx = *state;
	const struct ent ents[] = {
		{ "bin/busybox", 'f', "bb", 0755 },
		{ "bin/sh", 'h', "bin/busybox" },
		{ "bin/ls", 'h', "/bin/busybox" }, /* absolute hard link target: inside the root */
		{ "usr/bin", 'l', "../bin" },
		{ "etc/localtime", 'l', "/usr/share/zoneinfo/UTC" }, /* dangling is fine */
	};
	char *layers[] = { make_layer(fx, ents, ARRAY_SIZE(ents), false) };
	unpack_ok(fx, layers, 1, NULL);
	struct stat a = stat_in(fx, "bin/busybox"), b = stat_in(fx, "bin/sh"),
	            c = stat_in(fx, "bin/ls");
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(a.st_ino, c.st_ino);
	assert_int_equal(a.st_nlink, 3);
	assert_true(S_ISLNK(stat_in(fx, "usr/bin").st_mode));
	char *p = in_root(fx, "etc/localtime");
	char buf[256];
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "/usr/share/zoneinfo/UTC");
	free(p);
	free_layers(layers, 1);
}

/* A symlink to "/" (or far up) in one layer cannot carry a later entry out of the root. */
static void test_symlink_escape(void **state)
{
	struct fx *fx = *state;
	char name[64], up_name[64], evil_path[96], up_path[96];
	snprintf(name, sizeof(name), "hm-unpack-escaped-%d", (int)getpid());
	snprintf(up_name, sizeof(up_name), "hm-unpack-up-%d", (int)getpid());
	snprintf(evil_path, sizeof(evil_path), "evil/%s", name);
	snprintf(up_path, sizeof(up_path), "up/%s", up_name);
	const struct ent l1[] = {
		{ "evil", 'l', "/" },
		{ "up", 'l', "../../../../../.." },
	};
	const struct ent l2[] = {
		{ evil_path, 'f', "caught" },
		{ up_path, 'f', "caught too" },
	};
	char *layers[] = { make_layer(fx, l1, ARRAY_SIZE(l1), false),
		           make_layer(fx, l2, ARRAY_SIZE(l2), false) };
	unpack_ok(fx, layers, 2, NULL);
	assert_content(fx, name, "caught");
	assert_content(fx, up_name, "caught too");
	char *host = xasprintf("/%s", name), *outside = xasprintf("%s/root/%s", fx->dir, up_name);
	assert_int_equal(access(host, F_OK), -1);
	assert_int_equal(access(outside, F_OK), -1);
	free(host);
	free(outside);
	free_layers(layers, 2);
}

static void test_whiteouts(void **state)
{
	struct fx *fx = *state;
	const struct ent l1[] = {
		{ "etc/keep", 'f', "k" }, { "etc/gone", 'f', "g" },    { "dir/sub/x", 'f', "x" },
		{ "dir/y", 'f', "y" },    { "lnk", 'l', "/etc/keep" },
	};
	const struct ent l2[] = {
		{ "etc/.wh.gone", 'f' },
		{ ".wh.dir", 'f' },
		{ ".wh.lnk", 'f' },   /* removes the link, not what it points at */
		{ ".wh.never", 'f' }, /* nothing to remove: fine */
		{ "etc/new", 'f', "n" },
		{ "etc/.wh.new", 'f' }, /* same layer: hides nothing of this layer's */
	};
	char *layers[] = { make_layer(fx, l1, ARRAY_SIZE(l1), false),
		           make_layer(fx, l2, ARRAY_SIZE(l2), false) };
	struct hm_unpack_stats st = { 0 };
	unpack_ok(fx, layers, 2, &st);
	assert_int_equal(st.whiteouts, 5);
	assert_int_equal(st.entries, ARRAY_SIZE(l1) + 1);
	assert_content(fx, "etc/keep", "k");
	assert_content(fx, "etc/new", "n");
	assert_false(exists_in(fx, "etc/gone"));
	assert_false(exists_in(fx, "dir"));
	assert_false(exists_in(fx, "lnk"));
	assert_false(exists_in(fx, "etc/.wh.gone"));
	assert_false(exists_in(fx, ".wh.dir"));
	free_layers(layers, 2);
}

static void test_opaque(void **state)
{
	struct fx *fx = *state;
	const struct ent l1[] = {
		{ "o/a", 'f', "a" },
		{ "o/b/c", 'f', "c" },
		{ "o/b/e/f", 'f', "f" },
		{ "other/z", 'f', "z" },
	};
	const struct ent l2[] = {
		{ "o", 'd', NULL, 0750 },  { "o/new", 'f', "new" },
		{ "o/b/d", 'f', "d" }, /* written before the marker: kept */
		{ "o/.wh..wh..opq", 'f' }, { "o/later", 'f', "later" },
		{ "o/.wh..wh.plnk", 'd' }, /* aufs metadata: skipped */
	};
	char *layers[] = { make_layer(fx, l1, ARRAY_SIZE(l1), false),
		           make_layer(fx, l2, ARRAY_SIZE(l2), true) };
	struct hm_unpack_stats st = { 0 };
	unpack_ok(fx, layers, 2, &st);
	assert_int_equal(st.whiteouts, 1);
	assert_false(exists_in(fx, "o/a"));
	assert_false(exists_in(fx, "o/b/c"));
	assert_false(exists_in(fx, "o/b/e"));
	assert_false(exists_in(fx, "o/.wh..wh..opq"));
	assert_false(exists_in(fx, "o/.wh..wh.plnk"));
	assert_content(fx, "o/new", "new");
	assert_content(fx, "o/b/d", "d");
	assert_content(fx, "o/later", "later");
	assert_content(fx, "other/z", "z");
	assert_int_equal(stat_in(fx, "o").st_mode & 07777, 0750);
	free_layers(layers, 2);
}

/* A file replaces a directory and a directory a file; a directory merges into a directory. */
static void test_replace(void **state)
{
	struct fx *fx = *state;
	const struct ent l1[] = {
		{ "x/child", 'f', "c" },
		{ "y", 'f', "y" },
		{ "m/one", 'f', "1" },
		{ "s", 'l', "m" },
	};
	const struct ent l2[] = {
		{ "x", 'f', "now a file" },
		{ "y/inside", 'f', "i" },
		{ "m", 'd', NULL, 0711 },
		{ "m/two", 'f', "2" },
		{ "s", 'd' },
		{ "s/own", 'f', "o" },
	};
	char *layers[] = { make_layer(fx, l1, ARRAY_SIZE(l1), false),
		           make_layer(fx, l2, ARRAY_SIZE(l2), false) };
	unpack_ok(fx, layers, 2, NULL);
	assert_content(fx, "x", "now a file");
	assert_content(fx, "y/inside", "i");
	assert_content(fx, "m/one", "1");
	assert_content(fx, "m/two", "2");
	assert_int_equal(stat_in(fx, "m").st_mode & 07777, 0711);
	assert_true(S_ISDIR(stat_in(fx, "s").st_mode));
	assert_content(fx, "s/own", "o");
	assert_false(exists_in(fx, "m/own"));
	free_layers(layers, 2);
}

static void expect_invalid(struct fx *fx, const struct ent *ents, size_t n, const char *needle)
{
	char *layers[] = { make_layer(fx, ents, n, false) };
	struct hm_err *err = NULL;
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	assert_non_null(err);
	if (!hm_err_is(err, HM_ERR_INVALID) || !strstr(err->msg, needle))
		fail_msg("want an invalid-layer error naming `%s`, got %s: %s", needle,
		         hm_err_kind_name(err->kind), err->msg);
	assert_non_null(strstr(err->msg, strrchr(layers[0], '/') + 1)); /* names the layer */
	hm_err_free(err);
	free_layers(layers, 1);
}

static void test_dotdot_refused(void **state)
{
	struct fx *fx = *state;
	const struct ent a[] = { { "ok", 'f', "fine" }, { "../escape", 'f', "out" } };
	expect_invalid(fx, a, ARRAY_SIZE(a), "`../escape`");
	const struct ent b[] = { { "a/../../b", 'f', "out" } };
	expect_invalid(fx, b, ARRAY_SIZE(b), "`a/../../b`");
	const struct ent c[] = { { "ok", 'f', "fine" }, { "hl", 'h', "../root/rootfs/ok" } };
	expect_invalid(fx, c, ARRAY_SIZE(c), "`hl`");
	const struct ent d[] = { { "hl", 'h', "missing" } };
	expect_invalid(fx, d, ARRAY_SIZE(d), "`hl`");
	const struct ent e[] = { { "dir/.wh...", 'f' } };
	expect_invalid(fx, e, ARRAY_SIZE(e), "`dir/.wh...`");
	char *outside = xasprintf("%s/root/escape", fx->dir);
	assert_int_equal(access(outside, F_OK), -1);
	free(outside);
	outside = xasprintf("%s/escape", fx->dir);
	assert_int_equal(access(outside, F_OK), -1);
	free(outside);
	assert_false(exists_in(fx, "escape"));
	assert_false(exists_in(fx, "b"));
}

static void test_empty_path_refused(void **state)
{
	struct fx *fx = *state;
	/* libarchive's writer will not write an empty name: build a ustar header by hand. */
	char *path = xasprintf("%s/layer1.tar", fx->dir);
	unsigned char blk[512 * 3] = { 0 };
	memcpy(blk + 100, "0000644", 8);      /* mode */
	memcpy(blk + 108, "0000000", 8);      /* uid */
	memcpy(blk + 116, "0000000", 8);      /* gid */
	memcpy(blk + 124, "00000000000", 12); /* size */
	memcpy(blk + 136, "00000000000", 12); /* mtime */
	blk[156] = '0';                       /* regular file */
	memcpy(blk + 257,
	       "ustar\0"
	       "00",
	       8); /* magic, version */
	memset(blk + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += blk[i];
	snprintf((char *)blk + 148, 8, "%06o", sum);
	struct hm_err *err = NULL;
	assert_int_equal(hm_write_file_atomic(path, blk, sizeof(blk), 0644, &err), 0);
	char *layers[] = { path };
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	assert_true(hm_err_is(err, HM_ERR_INVALID));
	hm_err_free(err);
	free(path);
}

static void test_compressed_and_corrupt(void **state)
{
	struct fx *fx = *state;
	char big[8192];
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + (i * 7919 % 26));
	big[sizeof(big) - 1] = '\0';
	const struct ent ents[] = { { "data/big", 'f', big }, { "data/small", 'f', "s" } };
	char *gz = make_layer(fx, ents, ARRAY_SIZE(ents), true);
	char *layers[] = { gz };
	struct hm_unpack_stats st = { 0 };
	unpack_ok(fx, layers, 1, &st);
	assert_int_equal(st.bytes, sizeof(big) - 1 + 1);
	assert_content(fx, "data/big", big);

	/* The same layer cut in half. */
	char *data = NULL;
	size_t len;
	struct hm_err *err = NULL;
	assert_int_equal(hm_read_file(gz, 1 << 20, &data, &len, &err), 0);
	char *cut = xasprintf("%s/cut.tar.gz", fx->dir);
	assert_int_equal(hm_write_file_atomic(cut, data, len / 2, 0644, &err), 0);
	layers[0] = cut;
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	if (!hm_err_is(err, HM_ERR_INVALID))
		fail_msg("truncated gzip: %s %s", hm_err_kind_name(err->kind), err->msg);
	hm_err_free(err);
	err = NULL;

	/* A gzip header with an unknown compression method. */
	assert_int_equal((unsigned char)data[2], 8);
	data[2] = 9;
	char *flip = xasprintf("%s/flip.tar.gz", fx->dir);
	assert_int_equal(hm_write_file_atomic(flip, data, len, 0644, &err), 0);
	layers[0] = flip;
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	if (!hm_err_is(err, HM_ERR_INVALID))
		fail_msg("corrupt gzip: %s %s", hm_err_kind_name(err->kind), err->msg);
	hm_err_free(err);
	err = NULL;

	/* Not an archive at all. */
	char *junk = xasprintf("%s/junk.tar", fx->dir);
	assert_int_equal(hm_write_file_atomic(junk, "this is not a tar file\n", 23, 0644, &err), 0);
	layers[0] = junk;
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	assert_true(hm_err_is(err, HM_ERR_INVALID));
	hm_err_free(err);
	free(junk);
	free(flip);
	free(cut);
	free(data);
	free(gz);
}

static void test_xattr(void **state)
{
	struct fx *fx = *state;
	char *probe = xasprintf("%s/probe", fx->dir);
	struct hm_err *err = NULL;
	assert_int_equal(hm_write_file_atomic(probe, "", 0, 0644, &err), 0);
	bool supported = setxattr(probe, "user.test", "v", 1, 0) == 0;
	free(probe);
	const struct ent ents[] = { { "x", 'f', "data", 0, 0, "hello" } };
	char *layers[] = { make_layer(fx, ents, 1, false) };
	unpack_ok(fx, layers, 1, NULL);
	assert_content(fx, "x", "data");
	if (supported) {
		char *p = in_root(fx, "x");
		char buf[16];
		ssize_t n = getxattr(p, "user.test", buf, sizeof(buf));
		assert_int_equal(n, 5);
		assert_memory_equal(buf, "hello", 5);
		free(p);
	}
	free_layers(layers, 1);
}

static void test_device(void **state)
{
	struct fx *fx = *state;
	char *probe = xasprintf("%s/probe", fx->dir);
	bool can = mknod(probe, S_IFCHR | 0600, makedev(1, 3)) == 0;
	free(probe);
	if (!can)
		skip(); /* no CAP_MKNOD here (a container): nothing to check */
	const struct ent ents[] = { { "dev/null", 'c', NULL, 0666 } };
	char *layers[] = { make_layer(fx, ents, 1, false) };
	unpack_ok(fx, layers, 1, NULL);
	struct stat s = stat_in(fx, "dev/null");
	assert_true(S_ISCHR(s.st_mode));
	assert_int_equal(major(s.st_rdev), 1);
	assert_int_equal(minor(s.st_rdev), 3);
	assert_int_equal(s.st_mode & 07777, 0666);
	free_layers(layers, 1);
}

static void test_helper_failures(void **state)
{
	struct fx *fx = *state;
	int before = count_fds();
	struct hm_err *err = NULL;

	/* No layers: nothing to do. */
	struct hm_unpack_stats st = { 1, 1, 1 };
	assert_int_equal(hm_unpack_layers(helper(), fx->rootfs, NULL, 0, &st, &err), 0);
	assert_int_equal(st.entries + st.whiteouts + st.bytes, 0);

	/* A layer file that does not exist: a failure, but not the layer's fault. */
	char *missing = xasprintf("%s/nope.tar", fx->dir);
	char *layers[] = { missing };
	assert_int_equal(unpack(fx, layers, 1, NULL, &err), -1);
	assert_false(hm_err_is(err, HM_ERR_INVALID));
	assert_non_null(strstr(err->msg, "nope.tar"));
	hm_err_free(err);
	err = NULL;

	/* No helper. */
	const char *const one[] = { missing };
	assert_int_equal(
	    hm_unpack_layers("/nonexistent/hypeman-unpack", fx->rootfs, one, 1, NULL, &err), -1);
	assert_false(hm_err_is(err, HM_ERR_INVALID));
	hm_err_free(err);
	err = NULL;

	/* A root that is not there. */
	const struct ent ents[] = { { "f", 'f', "f" } };
	layers[0] = make_layer(fx, ents, 1, false);
	assert_int_equal(hm_unpack_layers(helper(), "/nonexistent/rootfs",
	                                  (const char *const *)layers, 1, NULL, &err),
	                 -1);
	assert_true(hm_err_is(err, HM_ERR_INTERNAL));
	hm_err_free(err);
	free(layers[0]);
	free(missing);

	assert_int_equal(count_fds(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_files_modes_owners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whiteouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_opaque, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dotdot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_path_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed_and_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xattr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helper_failures, setup, teardown),
	};
	return cmocka_run_group_tests_name("unpack", tests, NULL, NULL);
}
