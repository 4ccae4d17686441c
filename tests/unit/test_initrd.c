/*
 * Tests for boot/kernel and boot/initrd: a fake kernel directory (vmlinux,
 * VERSION, load.order, modules/NAME.ko) made in a temporary directory, the
 * kernel lookup and its errors, and initrds built from it and read back
 * with libarchive: entries, types, modes, contents, the load.order filter
 * for virtio-mmio (pci false) and PCI machines, reuse of a cached initrd
 * when the inputs are unchanged and a new name when one changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/initrd.h"
#include "boot/kernel.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

static const char *const modules[] = { "virtio_ring.ko", "virtio.ko",
	                               "virtio_mmio.ko", "virtio_pci_modern_dev.ko",
	                               "virtio_pci.ko",  "virtio_blk.ko" };

struct fx {
	char *dir;
	char *kdir;  /* dir/kernel */
	char *cache; /* dir/cache (made by the code under test) */
	char *init;  /* dir/hypeman-init */
};

static void put(const char *dir, const char *name, const char *data)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
	struct hm_err *err = NULL;
	if (hm_write_file_atomic(path, data, strlen(data), 0644, &err) < 0)
		fail_msg("%s", err->msg);
}

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->dir = xstrdup("/tmp/hm-initrd-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	fx->kdir = xasprintf("%s/kernel", fx->dir);
	fx->cache = xasprintf("%s/cache", fx->dir);
	fx->init = xasprintf("%s/hypeman-init", fx->dir);
	_cleanup_free_ char *mdir = xasprintf("%s/modules", fx->kdir);
	struct hm_err *err = NULL;
	if (hm_mkdir_p(mdir, 0755, &err) < 0)
		return -1;
	put(fx->kdir, "vmlinux",
	    "\x7f"
	    "ELF fake kernel");
	put(fx->kdir, "VERSION", "6.1.0-test\n");
	char order[512] = "";
	for (size_t i = 0; i < ARRAY_SIZE(modules); i++) {
		_cleanup_free_ char *data = xasprintf("module %s contents", modules[i]);
		put(mdir, modules[i], data);
		strcat(order, modules[i]);
		strcat(order, "\n");
	}
	put(fx->kdir, "load.order", order);
	put(fx->dir, "hypeman-init",
	    "\x7f"
	    "ELF fake init");
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	struct hm_err *err = NULL;
	int r = hm_rm_rf(fx->dir, &err);
	hm_err_free(err);
	free(fx->dir);
	free(fx->kdir);
	free(fx->cache);
	free(fx->init);
	free(fx);
	return r;
}

static void kernel_find(void **state)
{
	struct fx *fx = *state;
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_kernel k = { 0 };
	assert_int_equal(hm_kernel_find(fx->kdir, "/nonexistent", &k, &err), 0);
	assert_string_equal(k.dir, fx->kdir);
	_cleanup_free_ char *vm = xasprintf("%s/vmlinux", fx->kdir);
	assert_string_equal(k.vmlinux, vm);
	assert_string_equal(k.version, "6.1.0-test");
	hm_kernel_done(&k);
	assert_null(k.dir);

	/* The default place: data_dir/system/kernel/current. */
	_cleanup_free_ char *sys = xasprintf("%s/data/system/kernel", fx->dir);
	assert_int_equal(hm_mkdir_p(sys, 0755, &err), 0);
	_cleanup_free_ char *cur = xasprintf("%s/current", sys);
	assert_int_equal(symlink(fx->kdir, cur), 0);
	_cleanup_free_ char *data = xasprintf("%s/data", fx->dir);
	assert_int_equal(hm_kernel_find(NULL, data, &k, &err), 0);
	assert_string_equal(k.dir, cur);
	hm_kernel_done(&k);

	/* Missing pieces: 503 naming the path and the fix. */
	assert_int_equal(hm_kernel_find(NULL, "/nonexistent", &k, &err), -1);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_non_null(strstr(err->msg, "/nonexistent/system/kernel/current"));
	assert_non_null(strstr(err->msg, "make setup"));
	_cleanup_free_ char *order = xasprintf("%s/load.order", fx->kdir);
	_cleanup_free_ char *moved = xasprintf("%s/load.order.away", fx->kdir);
	assert_int_equal(rename(order, moved), 0);
	assert_int_equal(hm_kernel_find(fx->kdir, NULL, &k, &err), -1);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_non_null(strstr(err->msg, order));
	assert_int_equal(rename(moved, order), 0);
	assert_int_equal(unlink(vm), 0);
	assert_int_equal(hm_kernel_find(fx->kdir, NULL, &k, &err), -1);
	assert_non_null(strstr(err->msg, "vmlinux"));
}

struct entry {
	char path[256];
	unsigned type, perm, rdev_major, rdev_minor;
	char data[256];
	size_t size;
};

/* Read an initrd back; returns the number of entries put in out. */
static size_t read_initrd(const char *path, struct entry *out, size_t max)
{
	struct archive *a = archive_read_new();
	archive_read_support_format_cpio(a);
	archive_read_support_filter_none(a);
	if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK)
		fail_msg("open %s: %s", path, archive_error_string(a));
	size_t n = 0;
	struct archive_entry *e;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		assert_int_equal(archive_format(a), ARCHIVE_FORMAT_CPIO_SVR4_NOCRC);
		assert_true(n < max);
		struct entry *x = &out[n++];
		memset(x, 0, sizeof(*x));
		snprintf(x->path, sizeof(x->path), "%s", archive_entry_pathname(e));
		x->type = archive_entry_filetype(e);
		x->perm = archive_entry_perm(e);
		x->rdev_major = archive_entry_rdevmajor(e);
		x->rdev_minor = archive_entry_rdevminor(e);
		assert_int_equal(archive_entry_uid(e), 0);
		assert_int_equal(archive_entry_gid(e), 0);
		la_ssize_t got = archive_read_data(a, x->data, sizeof(x->data) - 1);
		assert_true(got >= 0);
		x->size = (size_t)got;
	}
	archive_read_free(a);
	return n;
}

static const struct entry *find(const struct entry *v, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].path, path) == 0)
			return &v[i];
	return NULL;
}

static char *build(struct fx *fx, bool pci)
{
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_kernel k = { 0 };
	assert_int_equal(hm_kernel_find(fx->kdir, NULL, &k, &err), 0);
	char *path = NULL;
	if (hm_initrd_ensure(&k, fx->init, fx->cache, pci, &path, &err) < 0)
		fail_msg("%s", err->msg);
	hm_kernel_done(&k);
	return path;
}

static void contents_mmio(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *path = build(fx, false);
	_cleanup_free_ char *prefix = xasprintf("%s/initrd-", fx->cache);
	assert_memory_equal(path, prefix, strlen(prefix));
	assert_int_equal(strlen(path), strlen(prefix) + 16 + strlen(".cpio"));

	struct entry v[64];
	size_t n = read_initrd(path, v, ARRAY_SIZE(v));
	static const char *const dirs[] = { "dev",     "proc", "sys",        "mnt",
		                            "newroot", "lib",  "lib/modules" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		const struct entry *d = find(v, n, dirs[i]);
		if (!d)
			fail_msg("no %s", dirs[i]);
		assert_int_equal(d->type, AE_IFDIR);
		assert_int_equal(d->perm, 0755);
	}
	const struct entry *con = find(v, n, "dev/console");
	assert_non_null(con);
	assert_int_equal(con->type, AE_IFCHR);
	assert_int_equal(con->rdev_major, 5);
	assert_int_equal(con->rdev_minor, 1);

	const struct entry *init = find(v, n, "init");
	assert_non_null(init);
	assert_int_equal(init->type, AE_IFREG);
	assert_int_equal(init->perm, 0755);
	assert_string_equal(init->data, "\x7f"
	                                "ELF fake init");

	const struct entry *order = find(v, n, "lib/modules/load.order");
	assert_non_null(order);
	assert_int_equal(order->perm, 0644);
	assert_string_equal(order->data,
	                    "virtio_ring.ko\nvirtio.ko\nvirtio_mmio.ko\nvirtio_blk.ko\n");
	for (size_t i = 0; i < ARRAY_SIZE(modules); i++) {
		char p[128];
		snprintf(p, sizeof(p), "lib/modules/%s", modules[i]);
		const struct entry *m = find(v, n, p);
		if (strncmp(modules[i], "virtio_pci", 10) == 0) {
			assert_null(m);
			continue;
		}
		if (!m)
			fail_msg("no %s", p);
		assert_int_equal(m->type, AE_IFREG);
		assert_int_equal(m->perm, 0644);
		char want[128];
		snprintf(want, sizeof(want), "module %s contents", modules[i]);
		assert_string_equal(m->data, want);
	}
	/* Only the finished file is left in the cache: no temp files. */
	DIR *d = opendir(fx->cache);
	assert_non_null(d);
	int files = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' || strncmp(e->d_name, ".initrd", 7) == 0)
			files++;
	closedir(d);
	assert_int_equal(files, 1);
}

static void contents_pci(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *mmio = build(fx, false);
	_cleanup_free_ char *pci = build(fx, true);
	assert_string_not_equal(mmio, pci);
	struct entry v[64];
	size_t n = read_initrd(pci, v, ARRAY_SIZE(v));
	const struct entry *order = find(v, n, "lib/modules/load.order");
	assert_non_null(order);
	assert_string_equal(order->data,
	                    "virtio_ring.ko\nvirtio.ko\nvirtio_mmio.ko\n"
	                    "virtio_pci_modern_dev.ko\nvirtio_pci.ko\nvirtio_blk.ko\n");
	assert_non_null(find(v, n, "lib/modules/virtio_pci.ko"));
	assert_non_null(find(v, n, "lib/modules/virtio_pci_modern_dev.ko"));
}

static void reuse_and_rebuild(void **state)
{
	struct fx *fx = *state;
	_cleanup_free_ char *first = build(fx, false);
	struct stat st1, st2;
	assert_int_equal(stat(first, &st1), 0);
	_cleanup_free_ char *again = build(fx, false);
	assert_string_equal(first, again);
	assert_int_equal(stat(again, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino); /* the same file, not rewritten */

	/* A changed module: a new name, the old file left as it was. */
	_cleanup_free_ char *mdir = xasprintf("%s/modules", fx->kdir);
	put(mdir, "virtio_blk.ko", "module virtio_blk.ko, new build");
	_cleanup_free_ char *mod = build(fx, false);
	assert_string_not_equal(first, mod);
	assert_int_equal(access(first, F_OK), 0);

	/* A changed init: another new name. */
	put(fx->dir, "hypeman-init",
	    "\x7f"
	    "ELF fake init v2");
	_cleanup_free_ char *init = build(fx, false);
	assert_string_not_equal(mod, init);
	assert_string_not_equal(first, init);
	struct entry v[64];
	size_t n = read_initrd(init, v, ARRAY_SIZE(v));
	assert_string_equal(find(v, n, "init")->data, "\x7f"
	                                              "ELF fake init v2");

	/* A module for PCI only changes nothing for a virtio-mmio machine. */
	put(mdir, "virtio_pci.ko", "module virtio_pci.ko, new build");
	_cleanup_free_ char *same = build(fx, false);
	assert_string_equal(init, same);
}

static void errors(void **state)
{
	struct fx *fx = *state;
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_kernel k = { 0 };
	assert_int_equal(hm_kernel_find(fx->kdir, NULL, &k, &err), 0);
	char *path = NULL;

	/* No init binary. */
	_cleanup_free_ char *noinit = xasprintf("%s/missing-init", fx->dir);
	assert_int_equal(hm_initrd_ensure(&k, noinit, fx->cache, false, &path, &err), -1);
	assert_non_null(strstr(err->msg, "missing-init"));
	assert_null(path);

	/* load.order names a module that is not there. */
	put(fx->kdir, "load.order", "virtio.ko\nghost.ko\n");
	assert_int_equal(hm_initrd_ensure(&k, fx->init, fx->cache, false, &path, &err), -1);
	assert_non_null(strstr(err->msg, "ghost.ko"));

	/* A module name that tries to leave the modules directory. */
	put(fx->kdir, "load.order", "../../etc/passwd\n");
	assert_int_equal(hm_initrd_ensure(&k, fx->init, fx->cache, false, &path, &err), -1);
	assert_non_null(strstr(err->msg, "bad module name"));
	assert_null(path);
	hm_kernel_done(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(kernel_find, setup, teardown),
		cmocka_unit_test_setup_teardown(contents_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(contents_pci, setup, teardown),
		cmocka_unit_test_setup_teardown(reuse_and_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(errors, setup, teardown),
	};
	return cmocka_run_group_tests_name("initrd", tests, NULL, NULL);
}
