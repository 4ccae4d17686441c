/*
 * secret: the signing secret kept in the data dir. Created with O_EXCL from
 * 32 bytes of getrandom(2), hex encoded, so two processes racing to create
 * it agree on one secret.
 */
#include "auth/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

static int create_secret(const char *path, struct hm_err **err)
{
	unsigned char raw[32];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return hm_err_errno(err, errno, "getrandom");
	_cleanup_free_ char *hex = hm_hex_encode(raw, sizeof(raw));
	_cleanup_free_ char *tmp = xasprintf("%s.new.%d", path, (int)getpid());
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hm_err_errno(err, errno, "create `%s`", tmp);
	int r = hm_write_all(fd, hex, strlen(hex));
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	/* link(2) fails with EEXIST if another process won the race: keep theirs. */
	if (r == 0 && link(tmp, path) < 0 && errno != EEXIST)
		r = -errno;
	unlink(tmp);
	if (r < 0)
		return hm_err_errno(err, -r, "write `%s`", path);
	return 0;
}

int hm_secret_load(const char *data_dir, int create, char **ret_secret, struct hm_err **err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", data_dir, HM_SECRET_FILE);
	if (create && access(path, F_OK) < 0 && create_secret(path, err) < 0)
		return -1;
	_cleanup_free_ char *data = NULL;
	if (hm_read_file(path, 4096, &data, NULL, err) < 0)
		return hm_err_wrap(err, "read JWT secret (set JWT_SECRET or run hypeman-api once)");
	data[strcspn(data, "\r\n")] = '\0';
	if (strlen(data) < HM_SECRET_MIN_LEN)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "JWT secret in `%s` is shorter than %d characters", path,
		                  HM_SECRET_MIN_LEN);
	*ret_secret = TAKE_PTR(data);
	return 0;
}
