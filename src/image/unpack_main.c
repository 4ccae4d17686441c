/*
 * hypeman-unpack ROOTFS LAYER...: apply image layers, lowest first, onto
 * ROOTFS. It opens every layer file, then chroots into ROOTFS, so nothing
 * a layer contains (no path, no symlink an earlier layer planted) can reach
 * outside it. The daemon runs it as a child (hm_unpack_layers) and reads
 * one JSON stats line from stdout on success, or one message line from
 * stderr on failure.
 *
 * Exit status: 0 done; 1 failure (I/O, chroot, ...); 2 usage; 3 a layer's
 * content is refused (`..` path, corrupt tar or compression); 4 out of
 * disk space.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/xalloc.h"
#include "image/unpack.h"

#define EXIT_USAGE     2
#define EXIT_BAD_LAYER 3
#define EXIT_NO_SPACE  4

static const char USAGE[] = "Usage: hypeman-unpack ROOTFS LAYER...\n";

/*
 * Leave without running atexit handlers: under ASan the leak check at exit
 * needs /proc, which the chroot hides. Buffered output is flushed first.
 */
static void __attribute__((noreturn)) finish(int code)
{
	if (fflush(stdout) != 0 && code == 0) {
		fprintf(stderr, "write stats: %s\n", strerror(errno));
		code = EXIT_FAILURE;
	}
	_exit(code);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s\n"
		       "Apply OCI image layers (tar; gzip, zstd or xz compressed or not), lowest\n"
		       "first, onto ROOTFS, honouring whiteouts. Runs chrooted into ROOTFS; used\n"
		       "by hypeman-api. Prints {\"entries\":N,\"whiteouts\":N,\"bytes\":N}.\n"
		       "Exit status: 0 done, 1 failure, 2 usage, 3 bad layer content,\n"
		       "4 out of disk space.\n",
		       USAGE);
		finish(EXIT_SUCCESS);
	}
	if (argc < 3 || argv[1][0] == '\0') {
		fputs(USAGE, stderr);
		finish(EXIT_USAGE);
	}
	int nl = argc - 2;
	int *fds = xcalloc((size_t)nl, sizeof(int));
	for (int i = 0; i < nl; i++) {
		fds[i] = open(argv[i + 2], O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			fprintf(stderr, "open layer `%s`: %s\n", argv[i + 2], strerror(errno));
			finish(EXIT_FAILURE);
		}
	}
	if (chroot(argv[1]) < 0 || chdir("/") < 0) {
		fprintf(stderr, "chroot `%s`: %s\n", argv[1], strerror(errno));
		finish(EXIT_FAILURE);
	}
	umask(0);
	struct hm_unpack_stats stats = { 0 };
	for (int i = 0; i < nl; i++) {
		const char *name = strrchr(argv[i + 2], '/');
		name = name ? name + 1 : argv[i + 2];
		struct hm_err *err = NULL;
		if (hm_unpack_apply_fd(fds[i], name, &stats, &err) < 0) {
			fprintf(stderr, "%s\n", err->msg);
			int code = hm_err_is(err, HM_ERR_INVALID)        ? EXIT_BAD_LAYER
			           : hm_err_is(err, HM_ERR_INSUFFICIENT) ? EXIT_NO_SPACE
			                                                 : EXIT_FAILURE;
			hm_err_free(err);
			finish(code);
		}
		close(fds[i]);
	}
	free(fds);
	printf("{\"entries\":%llu,\"whiteouts\":%llu,\"bytes\":%llu}\n",
	       (unsigned long long)stats.entries, (unsigned long long)stats.whiteouts,
	       (unsigned long long)stats.bytes);
	finish(EXIT_SUCCESS);
}
