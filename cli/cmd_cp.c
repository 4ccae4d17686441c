/*
 * hypeman cp: copy files and directories between this machine and a
 * running instance, docker's way (`hypeman cp ./site web:/srv`, `hypeman cp
 * web:/etc/hosts .`), over the cp WebSocket (api/openapi.yaml). Into the
 * guest, a tree is sent one entry per connection (directories first, then
 * their files), after asking the API whether the destination is an
 * existing directory; out of the guest, one connection streams the whole
 * tree and this side writes it: every file through a temporary name and a
 * rename, paths from the server checked so they cannot leave the
 * destination.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"
#include "wsclient.h"

#define CHUNK     (32u << 10)
#define MAX_DEPTH 256

struct cp {
	struct cli *c;
	const char *instance;
	char *ws_path; /* /instances/<enc>/cp */
	long long bytes;
	int errors;
};

/* "name:/path" (no '/' before the colon) names a path in an instance. */
static bool split_remote(const char *arg, char **inst, char **path)
{
	const char *colon = strchr(arg, ':');
	const char *slash = strchr(arg, '/');
	if (!colon || colon == arg || (slash && slash < colon))
		return false;
	*inst = strndup(arg, (size_t)(colon - arg));
	const char *p = colon + 1;
	*path = *p == '/' ? xstrdup(p) : xasprintf("/%s", p);
	return true;
}

static char *base_name(const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	size_t n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	return xstrdup(basename(copy));
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	return xasprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

/* Read one text message that carries "type":"result" (upload). */
static int await_result(struct hm_ws *ws, json_int_t *written, struct hm_err **err)
{
	for (;;) {
		struct hm_ws_msg m = { 0 };
		int r = hm_ws_read_frame(ws, &m, err);
		if (r <= 0)
			return r == 0 ? hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
			                           "the connection closed before the copy's result")
			              : -1;
		json_t *j =
		    m.opcode == HM_WS_TEXT ? json_loadb((char *)m.data, m.len, 0, NULL) : NULL;
		hm_ws_msg_clear(&m);
		const char *type = json_string_value(json_object_get(j, "type"));
		if (type && strcmp(type, "result") == 0) {
			int ret = 0;
			if (!json_is_true(json_object_get(j, "success")))
				ret = hm_err_set(err, HM_ERR_INVALID, NULL, "%s",
				                 json_string_value(json_object_get(j, "error"))
				                     ?: "failed");
			*written = json_integer_value(json_object_get(j, "bytes_written"));
			json_decref(j);
			return ret;
		}
		if (type && strcmp(type, "error") == 0) {
			int ret = hm_err_set(err, HM_ERR_INVALID, NULL, "%s",
			                     json_string_value(json_object_get(j, "message"))
			                         ?: "failed");
			json_decref(j);
			return ret;
		}
		json_decref(j);
	}
}

/* One entry into the guest: a directory, or a file's bytes from fd. */
static int upload_one(struct cp *cp, const char *guest_path, const struct stat *st, int fd,
                      struct hm_err **err)
{
	struct hm_ws *ws = NULL;
	int sock = cli_ws_open(cp->c, cp->ws_path, &ws, err);
	if (sock < 0)
		return -1;
	bool dir = S_ISDIR(st->st_mode);
	cli_ws_send_json(ws,
	                 json_pack("{s:s,s:s,s:b,s:i,s:I}", "direction", "to", "guest_path",
	                           guest_path, "is_dir", dir, "mode", (int)(st->st_mode & 07777),
	                           "mtime", (json_int_t)st->st_mtime));
	int r = 0;
	if (!dir) {
		char *buf = xmalloc(CHUNK);
		for (;;) {
			ssize_t n = read(fd, buf, CHUNK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				r = hm_err_errno(err, errno, "read");
				break;
			}
			if (n == 0)
				break;
			if (hm_ws_send(ws, HM_WS_BINARY, buf, (size_t)n, err) < 0) {
				r = -1;
				break;
			}
		}
		free(buf);
		if (r == 0)
			cli_ws_send_json(ws, json_pack("{s:s}", "type", "end"));
	}
	json_int_t written = 0;
	if (r == 0)
		r = await_result(ws, &written, err);
	cp->bytes += written;
	hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
	hm_ws_free(ws);
	close(sock);
	return r;
}

static void warn(struct cp *cp, const char *path, const char *what)
{
	fprintf(stderr, "hypeman cp: %s: %s\n", path, what);
	cp->errors++;
}

static void upload_tree(struct cp *cp, const char *local, const char *guest, int depth)
{
	struct stat st;
	if (lstat(local, &st) < 0) {
		warn(cp, local, strerror(errno));
		return;
	}
	_cleanup_err_ struct hm_err *err = NULL;
	if (S_ISLNK(st.st_mode)) {
		warn(cp, local, "skipped: symlinks cannot be copied into a guest yet");
		return;
	}
	if (S_ISREG(st.st_mode)) {
		int fd = open(local, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			warn(cp, local, strerror(errno));
			return;
		}
		if (upload_one(cp, guest, &st, fd, &err) < 0)
			warn(cp, local, err->msg);
		close(fd);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		warn(cp, local, "skipped: not a regular file, directory or symlink");
		return;
	}
	if (depth >= MAX_DEPTH) {
		warn(cp, local, "skipped: directories nested too deep");
		return;
	}
	if (upload_one(cp, guest, &st, -1, &err) < 0) {
		warn(cp, local, err->msg);
		return;
	}
	DIR *d = opendir(local);
	if (!d) {
		warn(cp, local, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *l = join(local, e->d_name);
		_cleanup_free_ char *g = join(guest, e->d_name);
		upload_tree(cp, l, g, depth + 1);
	}
	closedir(d);
}

/* Is guest_path an existing directory (following links)? */
static int guest_is_dir(struct cp *cp, const char *guest_path, bool *is_dir, bool *exists,
                        struct hm_err **err)
{
	_cleanup_free_ char *ip = hm_percent_encode(cp->instance);
	_cleanup_free_ char *pp = hm_percent_encode(guest_path);
	_cleanup_free_ char *path =
	    xasprintf("/instances/%s/stat?path=%s&follow_links=true", ip, pp);
	json_t *info = NULL;
	if (cli_call(cp->c, "GET", path, NULL, &info, NULL, err) < 0)
		return -1;
	*exists = json_is_true(json_object_get(info, "exists"));
	*is_dir = json_is_true(json_object_get(info, "is_dir"));
	json_decref(info);
	return 0;
}

static int upload(struct cp *cp, const char *local, const char *guest)
{
	struct stat st;
	if (lstat(local, &st) < 0) {
		fprintf(stderr, "hypeman cp: %s: %s\n", local, strerror(errno));
		return 1;
	}
	bool is_dir = false, exists = false;
	_cleanup_err_ struct hm_err *err = NULL;
	if (guest_is_dir(cp, guest, &is_dir, &exists, &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *b = base_name(local);
	_cleanup_free_ char *root = is_dir ? join(guest, b) : xstrdup(guest);
	if (exists && !is_dir && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "hypeman cp: cannot copy directory %s onto file %s:%s\n", local,
		        cp->instance, guest);
		return 1;
	}
	upload_tree(cp, local, root, 0);
	return cp->errors ? 1 : 0;
}

/* ---- out of the guest ---- */

struct out_file {
	int fd;
	char *tmp, *final;
	int mode;
	long long mtime;
};

struct dir_mode {
	char *path;
	int mode;
	long long mtime;
};

/* REL from the server, under our destination: no absolute paths, no "..". */
static bool rel_ok(const char *rel)
{
	if (!*rel || rel[0] == '/')
		return false;
	for (const char *p = rel; p && *p;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p = s ? s + 1 : NULL;
	}
	return true;
}

/* Where REL lands: under dest when dest is a directory, else dest replaces REL's first part. */
static char *local_for(const char *dest, bool into, const char *rel)
{
	if (into)
		return join(dest, rel);
	const char *slash = strchr(rel, '/');
	return slash ? join(dest, slash + 1) : xstrdup(dest);
}

static void finish_file(struct cp *cp, struct out_file *f)
{
	if (f->fd < 0)
		return;
	fchmod(f->fd, (mode_t)f->mode);
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = f->mtime } };
	futimens(f->fd, ts);
	if (close(f->fd) < 0 || rename(f->tmp, f->final) < 0) {
		warn(cp, f->final, strerror(errno));
		unlink(f->tmp);
	}
	f->fd = -1;
	free(f->tmp);
	free(f->final);
	f->tmp = f->final = NULL;
}

static void header(struct cp *cp, json_t *h, const char *dest, bool into, struct out_file *f,
                   struct dir_mode **dirs, size_t *ndirs)
{
	finish_file(cp, f);
	const char *rel = json_string_value(json_object_get(h, "path")) ?: "";
	if (strcmp(rel, ".") == 0)
		rel = "";
	if (*rel && !rel_ok(rel)) {
		warn(cp, rel, "skipped: the server sent a path outside the destination");
		return;
	}
	_cleanup_free_ char *path = *rel ? local_for(dest, into, rel) : xstrdup(dest);
	int mode = (int)json_integer_value(json_object_get(h, "mode")) & 07777;
	long long mtime = json_integer_value(json_object_get(h, "mtime"));
	if (json_is_true(json_object_get(h, "is_dir"))) {
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			warn(cp, path, strerror(errno));
			return;
		}
		*dirs = xrealloc(*dirs, (*ndirs + 1) * sizeof(**dirs));
		(*dirs)[(*ndirs)++] = (struct dir_mode){ xstrdup(path), mode, mtime };
	} else if (json_is_true(json_object_get(h, "is_symlink"))) {
		const char *target = json_string_value(json_object_get(h, "link_target")) ?: "";
		unlink(path);
		if (symlink(target, path) < 0)
			warn(cp, path, strerror(errno));
	} else {
		_cleanup_free_ char *dir = xstrdup(path);
		char *sl = strrchr(dir, '/');
		_cleanup_free_ char *b = base_name(path);
		f->tmp = sl ? xasprintf("%.*s/.%s.hypeman-cp", (int)(sl - dir), dir, b)
		            : xasprintf(".%s.hypeman-cp", b);
		f->final = xstrdup(path);
		f->mode = mode;
		f->mtime = mtime;
		f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (f->fd < 0) {
			warn(cp, path, strerror(errno));
			free(f->tmp);
			free(f->final);
			f->tmp = f->final = NULL;
		}
	}
}

static int download(struct cp *cp, const char *guest, const char *dest, bool follow)
{
	struct stat st;
	bool into = stat(dest, &st) == 0 && S_ISDIR(st.st_mode);
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_ws *ws = NULL;
	int sock = cli_ws_open(cp->c, cp->ws_path, &ws, &err);
	if (sock < 0)
		return cli_fail(err);
	cli_ws_send_json(ws, json_pack("{s:s,s:s,s:b}", "direction", "from", "guest_path", guest,
	                               "follow_links", follow));
	struct out_file f = { .fd = -1 };
	struct dir_mode *dirs = NULL;
	size_t ndirs = 0;
	bool done = false;
	while (!done) {
		struct hm_ws_msg m = { 0 };
		int r = hm_ws_read_frame(ws, &m, &err);
		if (r <= 0) {
			if (r == 0)
				hm_err_set(&err, HM_ERR_UNAVAILABLE, NULL,
				           "the connection closed before the copy completed");
			break;
		}
		if (m.opcode == HM_WS_BINARY) {
			if (f.fd >= 0 && cli_write_all(f.fd, (char *)m.data, m.len) < 0) {
				warn(cp, f.final, strerror(errno));
				close(f.fd);
				unlink(f.tmp);
				f.fd = -1;
			}
			cp->bytes += (long long)m.len;
		} else {
			json_t *j = json_loadb((char *)m.data, m.len, 0, NULL);
			const char *type = json_string_value(json_object_get(j, "type")) ?: "";
			if (strcmp(type, "header") == 0) {
				header(cp, j, dest, into, &f, &dirs, &ndirs);
			} else if (strcmp(type, "end") == 0) {
				finish_file(cp, &f);
				done = json_is_true(json_object_get(j, "final"));
			} else if (strcmp(type, "error") == 0) {
				const char *p = json_string_value(json_object_get(j, "path"));
				char where[PATH_MAX + 64];
				snprintf(where, sizeof(where), "%s:%s", cp->instance,
				         p && *p ? p : guest);
				warn(cp, where,
				     json_string_value(json_object_get(j, "message")) ?: "error");
			}
			json_decref(j);
		}
		hm_ws_msg_clear(&m);
	}
	if (f.fd >= 0) { /* cut off mid-file: keep nothing half-written */
		close(f.fd);
		unlink(f.tmp);
		free(f.tmp);
		free(f.final);
	}
	/* Directory modes and times last, children first, so writing into them worked. */
	for (size_t i = ndirs; i-- > 0;) {
		chmod(dirs[i].path, (mode_t)dirs[i].mode);
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = dirs[i].mtime } };
		utimensat(AT_FDCWD, dirs[i].path, ts, 0);
		free(dirs[i].path);
	}
	free(dirs);
	hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
	hm_ws_free(ws);
	close(sock);
	if (!done && err)
		return cli_fail(err);
	return cp->errors || !done ? 1 : 0;
}

int cmd_cp(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "follow-link", no_argument, NULL, 'L' },
		                              { "quiet", no_argument, NULL, 'q' },
		                              { 0 } };
	bool follow = false, quiet = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "Lq", opts)) != -1) {
		if (ch == 'L')
			follow = true;
		else if (ch == 'q')
			quiet = true;
	}
	if (argc - optind != 2)
		return cli_misuse(cmd, "expected SRC and DEST");
	const char *src = argv[optind], *dst = argv[optind + 1];
	_cleanup_free_ char *si = NULL, *sp = NULL, *di = NULL, *dp = NULL;
	bool src_remote = split_remote(src, &si, &sp);
	bool dst_remote = split_remote(dst, &di, &dp);
	if (src_remote == dst_remote)
		return cli_misuse(cmd, "exactly one of SRC and DEST must be INSTANCE:PATH");
	struct cp cp = { .c = c, .instance = src_remote ? si : di };
	_cleanup_free_ char *enc = hm_percent_encode(cp.instance);
	cp.ws_path = xasprintf("/instances/%s/cp", enc);
	int r = src_remote ? download(&cp, sp, dst, follow) : upload(&cp, src, dp);
	free(cp.ws_path);
	if (r == 0 && !quiet) {
		char size[32];
		cli_human_bytes((double)cp.bytes, size, sizeof(size));
		fprintf(stderr, "Successfully copied %s to %s\n", size, dst);
	}
	return r;
}
