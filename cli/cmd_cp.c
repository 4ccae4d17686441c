/*
 * hypeman cp: copy files and directories between this machine and a
 * running instance, docker's way (`hypeman cp ./site web:/srv`, `hypeman cp
 * web:/etc/hosts .`), over the cp WebSocket (api/openapi.yaml). Into the
 * guest, a tree is sent one entry per connection (directories first, then
 * their files), after asking the API whether the destination is an
 * existing directory; out of the guest, one connection streams the whole
 * tree and this side writes it as hostile input (see "out of the guest"):
 * nothing it sends can reach outside the destination.
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

/* ---- out of the guest ----
 *
 * The guest is not trusted: a root process in it can write anything on the
 * agent channel, so every header is hostile input. Each entry is resolved
 * from a directory fd of the destination, one component at a time with
 * O_NOFOLLOW (a symlink the stream created, or found there, is never
 * followed), "." and ".." refused; files are written under a temporary name
 * and renamed within their own directory; only directories, regular files
 * and symlinks are made (never device nodes); a file gets no more bytes than
 * its header declared, and paths are bounded in length and depth.
 */

#define MAX_REL 4096

struct out_file {
	int dir_fd; /* the directory it is written in */
	int fd;
	char *tmp, *leaf, *shown; /* tmp and leaf: names in dir_fd; shown: for messages */
	int mode;
	long long mtime;
	long long left; /* bytes its header declared that have not come yet; -1: not declared */
};

struct dir_mode {
	char *rel; /* under the root, "" for the root itself */
	int mode;
	long long mtime;
};

/* Where entries land: root_fd (the destination directory, or the directory holding
 * a destination that does not exist yet) and, without `into`, the name that
 * replaces the stream's first path component. */
struct out_root {
	int fd;
	bool into;
	char *rename_top; /* !into: basename of the destination */
	const char *dest; /* for messages */
};

/* The stream's REL as a path under the root ("" for the root itself), or NULL
 * when it is not a plain relative path: empty components, ".", "..", too long,
 * too deep. */
static char *map_rel(const struct out_root *root, const char *rel)
{
	if (strcmp(rel, ".") == 0)
		rel = "";
	if (strlen(rel) > MAX_REL || rel[0] == '/')
		return NULL;
	int depth = 0;
	for (const char *p = rel; *p;) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
		    ++depth > MAX_DEPTH)
			return NULL;
		p = s ? s + 1 : p + n;
	}
	if (root->into || !*rel)
		return root->into ? xstrdup(rel) : NULL;
	const char *slash = strchr(rel, '/');
	return slash ? xasprintf("%s/%s", root->rename_top, slash + 1) : xstrdup(root->rename_top);
}

/*
 * Open the directory that holds REL's last component, walking from root_fd
 * with O_NOFOLLOW at every step; *leaf points into rel. REL "" is the root
 * itself (*leaf = NULL). Returns an fd, or -1 with errno (ELOOP or ENOTDIR for
 * a symlink or a file on the way).
 */
static int open_parent(int root_fd, const char *rel, const char **leaf)
{
	*leaf = NULL;
	int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 || !*rel)
		return fd;
	const char *p = rel;
	for (;;) {
		const char *s = strchr(p, '/');
		if (!s) {
			*leaf = p;
			return fd;
		}
		char name[NAME_MAX + 1];
		size_t n = (size_t)(s - p);
		if (n > NAME_MAX) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		if (next < 0) {
			errno = e;
			return -1;
		}
		fd = next;
		p = s + 1;
	}
}

static void drop_file(struct out_file *f, bool keep)
{
	if (f->fd >= 0) {
		close(f->fd);
		if (!keep)
			unlinkat(f->dir_fd, f->tmp, 0);
	}
	if (f->dir_fd >= 0)
		close(f->dir_fd);
	free(f->tmp);
	free(f->leaf);
	free(f->shown);
	*f = (struct out_file){ .fd = -1, .dir_fd = -1 };
}

static void finish_file(struct cp *cp, struct out_file *f)
{
	if (f->fd < 0)
		return;
	if (f->left > 0) {
		warn(cp, f->shown, "skipped: the stream ended the file before its declared size");
		drop_file(f, false);
		return;
	}
	fchmod(f->fd, (mode_t)f->mode);
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = f->mtime } };
	futimens(f->fd, ts);
	if (close(f->fd) < 0 || renameat(f->dir_fd, f->tmp, f->dir_fd, f->leaf) < 0) {
		warn(cp, f->shown, strerror(errno));
		unlinkat(f->dir_fd, f->tmp, 0);
	}
	f->fd = -1;
	drop_file(f, true);
}

static void file_data(struct cp *cp, struct out_file *f, const void *data, size_t len)
{
	cp->bytes += (long long)len;
	if (f->fd < 0)
		return;
	if (f->left >= 0 && (long long)len > f->left) {
		warn(cp, f->shown,
		     "skipped: the stream sent more bytes than the file's declared size");
		drop_file(f, false);
		return;
	}
	if (cli_write_all(f->fd, data, len) < 0) {
		warn(cp, f->shown, strerror(errno));
		drop_file(f, false);
		return;
	}
	if (f->left >= 0)
		f->left -= (long long)len;
}

static void header(struct cp *cp, json_t *h, const struct out_root *root, struct out_file *f,
                   struct dir_mode **dirs, size_t *ndirs)
{
	finish_file(cp, f);
	const char *srel = json_string_value(json_object_get(h, "path")) ?: "";
	_cleanup_free_ char *rel = map_rel(root, srel);
	bool is_dir = json_is_true(json_object_get(h, "is_dir"));
	bool is_link = json_is_true(json_object_get(h, "is_symlink"));
	if (!rel || (!*rel && !is_dir)) {
		warn(cp, srel, "skipped: the server sent a path outside the destination");
		return;
	}
	_cleanup_free_ char *shown =
	    *rel ? join(root->into ? root->dest : ".", rel) : xstrdup(root->dest);
	int mode = (int)json_integer_value(json_object_get(h, "mode")) & 07777;
	long long mtime = json_integer_value(json_object_get(h, "mtime"));
	const char *leaf = NULL;
	_cleanup_close_ int dir = open_parent(root->fd, rel, &leaf);
	if (dir < 0) {
		warn(cp, shown,
		     errno == ELOOP || errno == ENOTDIR
		         ? "skipped: a symlink or a file stands where its directory should be"
		         : strerror(errno));
		return;
	}
	if (leaf && strlen(leaf) > NAME_MAX) {
		warn(cp, shown, strerror(ENAMETOOLONG));
		return;
	}
	struct stat st;
	bool exists = leaf && fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (is_dir) {
		if (leaf && mkdirat(dir, leaf, 0700) < 0 &&
		    (errno != EEXIST || !exists || !S_ISDIR(st.st_mode))) {
			warn(cp, shown,
			     errno == EEXIST ? "skipped: something else is there"
			                     : strerror(errno));
			return;
		}
		*dirs = xrealloc(*dirs, (*ndirs + 1) * sizeof(**dirs));
		(*dirs)[(*ndirs)++] = (struct dir_mode){ TAKE_PTR(rel), mode, mtime };
		return;
	}
	if (exists && S_ISDIR(st.st_mode)) {
		warn(cp, shown, "skipped: a directory is there");
		return;
	}
	if (is_link) {
		const char *target = json_string_value(json_object_get(h, "link_target")) ?: "";
		if (!*target || strlen(target) > MAX_REL) {
			warn(cp, shown, "skipped: a symlink with an empty or overlong target");
			return;
		}
		if (exists)
			unlinkat(dir, leaf, 0);
		if (symlinkat(target, dir, leaf) < 0)
			warn(cp, shown, strerror(errno));
		return;
	}
	json_t *size = json_object_get(h, "size");
	*f = (struct out_file){
		.dir_fd = TAKE_FD(dir),
		.fd = -1,
		.tmp = xasprintf(".%.200s.hypeman-cp", leaf),
		.leaf = xstrdup(leaf),
		.shown = TAKE_PTR(shown),
		.mode = mode,
		.mtime = mtime,
		.left = json_is_integer(size) && json_integer_value(size) >= 0
		            ? (long long)json_integer_value(size)
		            : -1,
	};
	unlinkat(f->dir_fd, f->tmp, 0);
	f->fd =
	    openat(f->dir_fd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		warn(cp, f->shown, strerror(errno));
		drop_file(f, false);
	}
}

/* Directory modes and times last, children first, so writing into them worked. */
static void apply_dir_modes(const struct out_root *root, struct dir_mode *dirs, size_t ndirs)
{
	for (size_t i = ndirs; i-- > 0;) {
		const char *leaf = NULL;
		_cleanup_close_ int parent = open_parent(root->fd, dirs[i].rel, &leaf);
		_cleanup_close_ int fd =
		    parent < 0 ? -1
		    : leaf ? openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
		           : fcntl(parent, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0) {
			fchmod(fd, (mode_t)dirs[i].mode);
			struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
				                  { .tv_sec = dirs[i].mtime } };
			futimens(fd, ts);
		}
		free(dirs[i].rel);
	}
	free(dirs);
}

static int download(struct cp *cp, const char *guest, const char *dest, bool follow)
{
	struct stat st;
	struct out_root root = { .fd = -1, .dest = dest };
	root.into = stat(dest, &st) == 0 && S_ISDIR(st.st_mode);
	_cleanup_free_ char *parent = NULL;
	if (root.into) {
		root.fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		_cleanup_free_ char *copy = xstrdup(dest);
		parent = xstrdup(dirname(copy));
		root.rename_top = base_name(dest);
		if (strcmp(root.rename_top, "/") == 0 || strcmp(root.rename_top, ".") == 0 ||
		    strcmp(root.rename_top, "..") == 0) {
			fprintf(stderr, "hypeman cp: %s: not a name to copy to\n", dest);
			free(root.rename_top);
			return 1;
		}
		root.fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (root.fd < 0) {
		fprintf(stderr, "hypeman cp: %s: %s\n", root.into ? dest : parent, strerror(errno));
		free(root.rename_top);
		return 1;
	}
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_ws *ws = NULL;
	int sock = cli_ws_open(cp->c, cp->ws_path, &ws, &err);
	if (sock < 0) {
		close(root.fd);
		free(root.rename_top);
		return cli_fail(err);
	}
	cli_ws_send_json(ws, json_pack("{s:s,s:s,s:b}", "direction", "from", "guest_path", guest,
	                               "follow_links", follow));
	struct out_file f = { .fd = -1, .dir_fd = -1 };
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
			file_data(cp, &f, m.data, m.len);
		} else {
			json_t *j = json_loadb((char *)m.data, m.len, 0, NULL);
			const char *type = json_string_value(json_object_get(j, "type")) ?: "";
			if (strcmp(type, "header") == 0) {
				header(cp, j, &root, &f, &dirs, &ndirs);
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
	drop_file(&f, false); /* cut off mid-file: keep nothing half-written */
	apply_dir_modes(&root, dirs, ndirs);
	close(root.fd);
	free(root.rename_top);
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
