/*
 * Unit tests for core/fileio's sparse copy (hm_copy_sparse): data and holes
 * come out where they were, on one filesystem and across two (tmpfs to
 * /tmp: copy_file_range refuses, the buffered path takes over), for a file
 * copied by one thread and for one big enough to be copied by several (data
 * across their pieces' edges); an existing target is refused and a missing
 * source named. The same for a copy in place (hm_presize, then
 * hm_copy_sparse_into: the same inode), which refuses a target of another
 * size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fileio.h"

#define SMALL (32 << 20)  /* copied by one thread */
#define BIG   (100 << 20) /* by several (fileio.c: COPY_PARALLEL_AT), in 4 MiB pieces */

static void put(int fd, char c, size_t len, off_t off)
{
	char *buf = malloc(len);
	memset(buf, c, len);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	free(buf);
}

/* A sparse file: 1 MiB of 'a' at 0, 3 bytes at 7 MiB, a run across the 4 MiB
 * piece edges from 11.5 to 17 MiB (BIG only), 1 MiB of 'z' at the end. */
static void make_sparse(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	put(fd, 'a', 1 << 20, 0);
	assert_int_equal(pwrite(fd, "mid", 3, 7 << 20), 3);
	if (size == BIG)
		put(fd, 'r', (11 << 19), (23 << 19));
	put(fd, 'z', 1 << 20, size - (1 << 20));
	close(fd);
}

static void same_content(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	assert_non_null(fa);
	assert_non_null(fb);
	static char ba[1 << 16], bb[1 << 16];
	size_t na, nb;
	do {
		na = fread(ba, 1, sizeof(ba), fa);
		nb = fread(bb, 1, sizeof(bb), fb);
		assert_int_equal(na, nb);
		assert_memory_equal(ba, bb, na);
	} while (na > 0);
	fclose(fa);
	fclose(fb);
}

static void check_copy(const char *src, const char *dst, off_t size, unsigned long long copied)
{
	struct stat st;
	assert_int_equal(stat(dst, &st), 0);
	assert_int_equal(st.st_size, size);
	assert_int_equal(st.st_mode & 0777, 0600);
	same_content(src, dst);
	/* Holes stay holes (a reflink copies nothing and shares the blocks). */
	assert_true((long long)st.st_blocks * 512 < (16 << 20));
	assert_true(copied == 0 || copied < (16u << 20));
}

static void copy_to(const char *src_dir, const char *dst_dir, off_t size)
{
	char src[256], dst[256];
	snprintf(src, sizeof(src), "%s/src.img", src_dir);
	snprintf(dst, sizeof(dst), "%s/dst.img", dst_dir);
	unlink(dst);
	make_sparse(src, size);
	struct hm_err *err = NULL;
	unsigned long long copied = 0;
	if (hm_copy_sparse(src, dst, 0600, &copied, &err) < 0)
		fail_msg("copy: %s", err->msg);
	check_copy(src, dst, size, copied);

	/* never over an existing file */
	assert_true(hm_copy_sparse(src, dst, 0600, NULL, &err) < 0);
	hm_err_free(err);
	err = NULL;
	unlink(dst);

	/* In place: the file presized, then filled; still the same inode. */
	if (hm_presize(dst, size, 0600, &err) < 0)
		fail_msg("presize: %s", err->msg);
	struct stat before, after;
	assert_int_equal(stat(dst, &before), 0);
	assert_true(before.st_blocks == 0);
	copied = 0;
	if (hm_copy_sparse_into(src, dst, &copied, &err) < 0)
		fail_msg("copy in place: %s", err->msg);
	assert_int_equal(stat(dst, &after), 0);
	assert_true(after.st_ino == before.st_ino);
	check_copy(src, dst, size, copied);

	/* In place over an older copy (a spare fork's files, instance/spare.c):
	 * other data where src has data, data where src has holes (at 3 and
	 * 20 MiB, and across the 4 MiB piece edge at 8 MiB). The stale parts are
	 * punched out: the same content, and holes again. */
	int fd = open(dst, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	put(fd, 'x', 1 << 20, 0);
	put(fd, 'q', 2 << 20, 3 << 20);
	put(fd, 'q', 1 << 20, (15 << 19));
	put(fd, 'q', 4 << 20, 20 << 20);
	close(fd);
	copied = 0;
	if (hm_copy_sparse_into(src, dst, &copied, &err) < 0)
		fail_msg("copy over an older copy: %s", err->msg);
	assert_int_equal(stat(dst, &after), 0);
	assert_true(after.st_ino == before.st_ino);
	check_copy(src, dst, size, copied);
	/* presize never over an existing file either */
	assert_true(hm_presize(dst, size, 0600, &err) < 0);
	hm_err_free(err);
	err = NULL;
	/* a target of another size is refused, and left as it was */
	assert_int_equal(truncate(dst, size - 4096), 0);
	assert_true(hm_copy_sparse_into(src, dst, NULL, &err) < 0);
	assert_non_null(strstr(err->msg, "bytes, not the"));
	hm_err_free(err);
	assert_int_equal(stat(dst, &after), 0);
	assert_int_equal(after.st_size, size - 4096);
	unlink(src);
	unlink(dst);
}

static void sparse_copy_same_fs(void **state)
{
	(void)state;
	char dir[] = "/tmp/hm-fileio-XXXXXX";
	assert_non_null(mkdtemp(dir));
	copy_to(dir, dir, SMALL);
	copy_to(dir, dir, BIG);
	rmdir(dir);
}

static void sparse_copy_across_filesystems(void **state)
{
	(void)state;
	char a[] = "/dev/shm/hm-fileio-XXXXXX", b[] = "/tmp/hm-fileio-XXXXXX";
	if (!mkdtemp(a))
		skip(); /* no /dev/shm here */
	assert_non_null(mkdtemp(b));
	copy_to(a, b, SMALL);
	copy_to(a, b, BIG);
	rmdir(a);
	rmdir(b);
}

/* A missing file with err NULL: -1 and nothing else (it used to dereference NULL). */
static void read_missing_without_err(void **state)
{
	(void)state;
	char *data = NULL;
	size_t len = 7;
	assert_int_equal(hm_read_file("/nonexistent/vmm.pid", 64, &data, &len, NULL), -1);
	assert_null(data);
	struct hm_err *err = NULL;
	assert_int_equal(hm_read_file("/nonexistent/vmm.pid", 64, &data, &len, &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	/* a directory: an error too, NULL-safe */
	assert_int_equal(hm_read_file("/", 64, &data, &len, NULL), -1);
}

static void missing_source(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	assert_true(hm_copy_sparse("/nonexistent/src.img", "/tmp/hm-never.img", 0600, NULL, &err) <
	            0);
	assert_non_null(strstr(err->msg, "/nonexistent/src.img"));
	assert_int_equal(access("/tmp/hm-never.img", F_OK), -1);
	hm_err_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sparse_copy_same_fs),
		cmocka_unit_test(sparse_copy_across_filesystems),
		cmocka_unit_test(missing_source),
		cmocka_unit_test(read_missing_without_err),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
