/*
 * core/ext4: sparse ext4 disk images (see ext4.h).
 */
#include "core/ext4.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>

#include "core/err.h"
#include "core/spawn.h"

int hm_ext4_make(const char *path, int64_t bytes, bool journal, const char *from_dir,
                 const char *what, struct hm_err **err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hm_err_errno(err, errno, "create %s `%s`", what, path);
	int r = ftruncate(fd, (off_t)bytes);
	int e = errno;
	close(fd);
	if (r < 0)
		return hm_err_errno(err, e, "size %s `%s`", what, path);
	const char *argv[16] = { "mkfs.ext4",
		                 "-q",
		                 "-F",
		                 "-m",
		                 "0",
		                 "-E",
		                 "lazy_itable_init=1,lazy_journal_init=1,nodiscard" };
	size_t n = 7;
	if (!journal) {
		argv[n++] = "-O";
		argv[n++] = "^has_journal";
	}
	if (from_dir) {
		argv[n++] = "-d";
		argv[n++] = from_dir;
	}
	argv[n++] = path;
	argv[n] = NULL;
	if (hm_run(argv, NULL, NULL, err) < 0)
		return hm_err_wrap(err, "format %s", what);
	return 0;
}
