/*
 * hypeman-unpack ROOTFS LAYER...: apply image layers, lowest first, onto
 * ROOTFS. It opens every layer, then chroots into ROOTFS, so nothing a
 * layer contains can reach outside it; the daemon runs it as a child and
 * reads the one line it prints: JSON stats on success (exit 0), or the
 * reason on failure (exit 3: the layer is bad; 1: anything else).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "image/unpack.h"

/*
 * Under ASan the leak check at exit needs /proc, which the chroot hides;
 * the helper is short-lived, so its sanitizer build checks memory errors
 * only. (Ignored by the release build.)
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("Usage: hypeman-unpack ROOTFS LAYER...\n\n"
		       "Apply OCI image layers (tar, gzip or zstd), lowest first, onto ROOTFS,\n"
		       "honouring whiteouts. Runs chrooted into ROOTFS. Used by hypeman-api.\n");
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: hypeman-unpack ROOTFS LAYER...\n");
		return 2;
	}
	int nl = argc - 2;
	int fds[nl];
	for (int i = 0; i < nl; i++) {
		fds[i] = open(argv[i + 2], O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			fprintf(stderr, "open layer %s: %s\n", argv[i + 2], strerror(errno));
			return 1;
		}
	}
	if (chroot(argv[1]) < 0 || chdir("/") < 0) {
		fprintf(stderr, "chroot %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	umask(0);
	struct hm_unpack_stats stats = { 0 };
	for (int i = 0; i < nl; i++) {
		const char *name = strrchr(argv[i + 2], '/');
		name = name ? name + 1 : argv[i + 2];
		struct hm_err *err = NULL;
		char label[96];
		snprintf(label, sizeof(label), "%d (%.12s)", i + 1, name);
		if (hm_unpack_apply_fd(fds[i], label, &stats, &err) < 0) {
			fprintf(stderr, "%s\n", err->msg);
			int code = err->kind == HM_ERR_INVALID ? 3 : 1;
			if (err->errnum == ENOSPC)
				code = 1;
			hm_err_free(err);
			return code;
		}
		close(fds[i]);
	}
	printf("{\"entries\":%llu,\"whiteouts\":%llu,\"bytes\":%llu}\n",
	       (unsigned long long)stats.entries, (unsigned long long)stats.whiteouts,
	       (unsigned long long)stats.bytes);
	return 0;
}
