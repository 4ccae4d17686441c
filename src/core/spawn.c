/*
 * spawn: posix_spawnp with a pipe for output. The read end is O_CLOEXEC so
 * no other child inherits it; the child's end is dup'd onto 1 and 2 by
 * file actions, so nothing runs between fork and exec in our process.
 */
#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

extern char **environ;

int hm_which(const char *prog)
{
	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = xstrdup(path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
	char *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *p = xasprintf("%s/%s", d, prog);
		if (access(p, X_OK) == 0)
			return 1;
	}
	return 0;
}

/* The last non-empty line of `s`, for one-line error messages. */
static char *last_line(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	size_t start = n;
	while (start > 0 && s[start - 1] != '\n')
		start--;
	return xstrndup(s + start, n - start);
}

int hm_run(const char *const argv[], char **ret_output, int *ret_status, struct hm_err **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return hm_err_errno(err, errno, "pipe");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none); /* the daemon blocks SIGTERM; children must not */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &def);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	if (r != 0) {
		close(p[0]);
		return hm_err_errno(err, r, "run `%s`", argv[0]);
	}
	/* Keep the tail of the output in a ring-ish buffer. */
	size_t cap = HM_SPAWN_OUTPUT_MAX, len = 0;
	_cleanup_free_ char *buf = xmalloc(cap + 1);
	char chunk[4096];
	_Static_assert(sizeof(chunk) < HM_SPAWN_OUTPUT_MAX, "chunk fits the buffer");
	for (;;) {
		ssize_t n = read(p[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		/* n <= sizeof(chunk) < cap: drop the oldest bytes to make room. */
		if (len + (size_t)n > cap) {
			size_t drop = len + (size_t)n - cap;
			memmove(buf, buf + drop, len - drop);
			len -= drop;
		}
		memcpy(buf + len, chunk, (size_t)n);
		len += (size_t)n;
	}
	close(p[0]);
	buf[len] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return hm_err_errno(err, errno, "wait for `%s`", argv[0]);
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (ret_status)
		*ret_status = code;
	int ret = 0;
	if (code != 0) {
		_cleanup_free_ char *line = last_line(buf);
		ret = hm_err_set(err, HM_ERR_INTERNAL, NULL, "%s failed (%s %d)%s%s", argv[0],
		                 WIFEXITED(status) ? "exit" : "signal",
		                 WIFEXITED(status) ? code : WTERMSIG(status), *line ? ": " : "",
		                 line);
	}
	if (ret_output)
		*ret_output = TAKE_PTR(buf);
	return ret;
}
