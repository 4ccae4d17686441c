/*
 * How the init starts processes, the same for the program and for exec
 * sessions (docs/guest.md): the user rule (`user`, `uid`, `user:group`,
 * `uid:gid`, looked up in the image's /etc/passwd and /etc/group), the
 * environment (the config's env with PATH, HOSTNAME and HOME defaulted),
 * execvp's PATH search along that environment, the signal state a child
 * starts with, and the exit code and message of a failed exec.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "guest.h"

#define ACCOUNT_FILE_MAX (4u << 20)

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Split line at ':' into at most max fields (in place); returns how many. */
static int split_fields(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	}
	return n;
}

/* Look a user up in /etc/passwd by name (name != NULL) or uid. Returns 1 found, 0 not. */
static int passwd_lookup(const char *name, long uid, struct ids *ids)
{
	_cleanup_free_ char *data = read_alloc("/etc/passwd", ACCOUNT_FILE_MAX);
	if (!data)
		return 0;
	char *save = NULL;
	for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		/* name:password:uid:gid:gecos:home:shell */
		char *f[7];
		int n = split_fields(l, f, 7);
		if (n < 4 || !all_digits(f[2]) || !all_digits(f[3]) || strlen(f[2]) > 10 ||
		    strlen(f[3]) > 10)
			continue;
		long this_uid = strtol(f[2], NULL, 10);
		if (name ? strcmp(f[0], name) != 0 : this_uid != uid)
			continue;
		ids->uid = (uid_t)this_uid;
		ids->gid = (gid_t)strtol(f[3], NULL, 10);
		snprintf(ids->name, sizeof(ids->name), "%s", f[0]);
		if (n >= 6 && f[5][0])
			snprintf(ids->home, sizeof(ids->home), "%s", f[5]);
		return 1;
	}
	return 0;
}

/*
 * Scan /etc/group: find `group` by name (setting *gid, returns 1), or with
 * group NULL add the groups whose member list names ids->name.
 */
static int group_scan(const char *group, gid_t *gid, struct ids *ids)
{
	_cleanup_free_ char *data = read_alloc("/etc/group", ACCOUNT_FILE_MAX);
	if (!data)
		return 0;
	char *save = NULL;
	for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		/* name:password:gid:member,member */
		char *f[4];
		int n = split_fields(l, f, 4);
		if (n < 3 || !all_digits(f[2]) || strlen(f[2]) > 10)
			continue;
		gid_t this_gid = (gid_t)strtol(f[2], NULL, 10);
		if (group) {
			if (strcmp(f[0], group) == 0) {
				*gid = this_gid;
				return 1;
			}
			continue;
		}
		if (n < 4 || !ids->name[0])
			continue;
		char *msave = NULL;
		for (char *m = strtok_r(f[3], ",", &msave); m; m = strtok_r(NULL, ",", &msave)) {
			if (strcmp(m, ids->name) != 0 || ids->ngroups >= MAX_GROUPS)
				continue;
			ids->groups[ids->ngroups++] = this_gid;
			break;
		}
	}
	return 0;
}

int resolve_user(const char *user, struct ids *ids, char *why, size_t whylen)
{
	memset(ids, 0, sizeof(*ids));
	snprintf(ids->home, sizeof(ids->home), "/");
	char spec[512];
	snprintf(spec, sizeof(spec), "%s", user ? user : "0");
	char *grp = strchr(spec, ':');
	if (grp)
		*grp++ = '\0';
	if (all_digits(spec)) {
		errno = 0;
		long uid = strtol(spec, NULL, 10);
		if (errno || uid > INT32_MAX) {
			snprintf(why, whylen, "user `%s`: uid out of range", user);
			return -1;
		}
		if (!passwd_lookup(NULL, uid, ids)) {
			ids->uid = (uid_t)uid;
			ids->gid = 0;
		}
	} else if (!passwd_lookup(spec, 0, ids)) {
		snprintf(why, whylen, "user `%s`: no such user in /etc/passwd", spec);
		return -1;
	}
	if (grp && *grp) {
		if (all_digits(grp)) {
			errno = 0;
			long gid = strtol(grp, NULL, 10);
			if (errno || gid > INT32_MAX) {
				snprintf(why, whylen, "user `%s`: gid out of range", user);
				return -1;
			}
			ids->gid = (gid_t)gid;
		} else if (!group_scan(grp, &ids->gid, ids)) {
			snprintf(why, whylen, "user `%s`: no such group in /etc/group", user);
			return -1;
		}
		ids->groups[0] = ids->gid;
		ids->ngroups = 1;
	} else {
		ids->groups[0] = ids->gid;
		ids->ngroups = 1;
		group_scan(NULL, NULL, ids);
	}
	return 0;
}

const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (; *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

int exec_search(char *const argv[], char *const envp[])
{
	const char *file = argv[0];
	if (!*file)
		return ENOENT;
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	const char *path = env_get(envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	bool eacces = false;
	for (const char *p = path;;) {
		const char *e = strchrnul(p, ':');
		char buf[PATH_MAX];
		int n = e == p ? snprintf(buf, sizeof(buf), "%s", file)
		               : snprintf(buf, sizeof(buf), "%.*s/%s", (int)(e - p), p, file);
		if (n > 0 && (size_t)n < sizeof(buf)) {
			execve(buf, argv, envp);
			switch (errno) {
			case EACCES:
				eacces = true;
				break;
			case ENOENT:
			case ENOTDIR:
			case ESTALE:
			case ELOOP:
			case ENAMETOOLONG:
			case ENODEV:
			case ETIMEDOUT:
				break;
			default:
				return errno;
			}
		}
		if (!*e)
			break;
		p = e + 1;
	}
	return eacces ? EACCES : ENOENT;
}

void child_reset_signals(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL); /* fails harmlessly for glibc's reserved ones */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Index of the entry of env[0..n) naming the same key as kv ("KEY=..."), or -1. */
static long env_find(char *const *env, size_t n, const char *kv)
{
	size_t klen = strcspn(kv, "=");
	for (size_t i = 0; i < n; i++)
		if (strncmp(env[i], kv, klen) == 0 && env[i][klen] == '=')
			return (long)i;
	return -1;
}

char **build_env(const struct ids *ids, char *const *extra, size_t nextra, bool tty)
{
	char home[PATH_MAX + 8], host[300];
	snprintf(home, sizeof(home), "HOME=%s", ids->home);
	snprintf(host, sizeof(host), "HOSTNAME=%s", cfg.hostname);
	const char *defaults[] = { "PATH=" DEFAULT_PATH, host, home, tty ? "TERM=xterm" : NULL };

	/* One block: the pointer array, then the strings. */
	size_t max = cfg.envc + nextra + ARRAY_SIZE(defaults) + 1, bytes = 0;
	for (size_t i = 0; i < cfg.envc; i++)
		bytes += strlen(cfg.env[i]) + 1;
	for (size_t i = 0; i < nextra; i++)
		bytes += strlen(extra[i]) + 1;
	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
		bytes += defaults[i] ? strlen(defaults[i]) + 1 : 0;
	char **env = malloc(max * sizeof(char *) + bytes);
	if (!env)
		return NULL;
	char *s = (char *)(env + max);
	size_t n = 0;
	const char *const *lists[] = { (const char *const *)cfg.env, (const char *const *)extra,
		                       defaults };
	const size_t counts[] = { cfg.envc, nextra, ARRAY_SIZE(defaults) };
	for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
		for (size_t i = 0; i < counts[l]; i++) {
			const char *kv = lists[l][i];
			if (!kv)
				continue;
			long at = env_find(env, n, kv);
			if (at >= 0 && l == 2)
				continue; /* a default only fills a gap */
			size_t len = strlen(kv) + 1;
			memcpy(s, kv, len);
			if (at >= 0)
				env[at] = s;
			else
				env[n++] = s;
			s += len;
		}
	}
	env[n] = NULL;
	return env;
}

int exec_failure(int err, const char *argv0, char *msg, size_t len)
{
	if (err == ENOENT || err == ENOTDIR) {
		snprintf(msg, len, "command not found: %s", argv0);
		return 127;
	}
	if (err == EACCES)
		snprintf(msg, len, "permission denied: %s", argv0);
	else
		snprintf(msg, len, "cannot execute %s: %s", argv0, strerror(err));
	return 126;
}
