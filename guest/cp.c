/*
 * Copy sessions (docs/guest.md, "Copying files (cp)"): files and directory
 * trees into and out of the guest, keyed by the host's request id, at most
 * MAX_CP at once.
 *
 * Into the guest (cp_to): a directory is made at once. A file's bytes go to
 * a temporary file next to the target; at cp_end it gets its owner, mode and
 * mtime, is synced and renamed over the target, so the target is always
 * either what it was or the whole new file. Any failure answers cp_result
 * with the error, removes the temporary file and remembers the id for a
 * while, so that the cp_data the host had already sent is dropped quietly.
 *
 * Out of the guest (cp_from): an incremental depth-first walk over a stack
 * of open directories (each opened from its parent's fd, never following a
 * symlink below P) that produces headers, base64 chunks of each file and the
 * end markers only while the agent has room to queue them, the same
 * backpressure as exec output: nothing is ever buffered whole.
 *
 * When the host goes away (or the init is on its way out) every session
 * ends: open files and directories are closed, temporary files removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"

#define MAX_CP     16
#define CP_CHUNK   AGENT_CP_CHUNK /* bytes per cp_data, before base64 */
#define MAX_DEPTH  256            /* directories open at once in one walk */
#define GONE_MAX   32             /* failed or unknown ids whose later cp_data is ignored */
#define WORK_STEPS 64             /* walk steps per session per loop turn */
#define TMP_BASE   200            /* bytes of the target's name in the temporary file's name */

struct frame {
	DIR *d;
	size_t rel_len; /* rel[0..rel_len) is this directory's REL */
};

struct walk {
	char root[PATH_MAX]; /* P */
	bool follow;         /* follow a symlink at P itself */
	bool started;        /* P has been looked at */
	int file_fd;         /* the regular file being sent, or -1 */
	off_t left;          /* bytes of it still to send (its size in the header) */
	int depth;
	struct frame stack[MAX_DEPTH];
	char rel[PATH_MAX]; /* the REL of the current entry */
};

struct cp {
	bool used;
	bool from;
	long long id;
	/* cp_to */
	int fd;       /* the temporary file, -1 when none */
	char *tmp;    /* its path, NULL once renamed */
	char *target; /* where it goes at cp_end */
	mode_t mode;
	uid_t uid; /* (uid_t)-1: leave as is */
	gid_t gid;
	bool has_mtime;
	long long mtime;
	long long written;
	/* cp_from */
	struct walk *w;
};

static struct cp sessions[MAX_CP];
static long long gone[GONE_MAX];
static unsigned gone_next;

/* ---- sessions ------------------------------------------------------------------------------ */

static struct cp *find(long long id)
{
	for (int i = 0; i < MAX_CP; i++)
		if (sessions[i].used && sessions[i].id == id)
			return &sessions[i];
	return NULL;
}

static struct cp *free_slot(void)
{
	for (int i = 0; i < MAX_CP; i++)
		if (!sessions[i].used)
			return &sessions[i];
	return NULL;
}

/* End a session: close what it holds, remove its temporary file. */
static void release(struct cp *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->tmp && unlink(c->tmp) < 0 && errno != ENOENT)
		say("cp %lld: remove %s: %s", c->id, c->tmp, strerror(errno));
	free(c->tmp);
	free(c->target);
	if (c->w) {
		if (c->w->file_fd >= 0)
			close(c->w->file_fd);
		for (int i = 0; i < c->w->depth; i++)
			closedir(c->w->stack[i].d);
		free(c->w);
	}
	*c = (struct cp){ .fd = -1 };
}

static bool is_gone(long long id)
{
	for (int i = 0; i < GONE_MAX; i++)
		if (gone[i] == id)
			return true;
	return false;
}

static void gone_add(long long id)
{
	if (!is_gone(id))
		gone[gone_next++ % GONE_MAX] = id;
}

static void gone_del(long long id)
{
	for (int i = 0; i < GONE_MAX; i++)
		if (gone[i] == id)
			gone[i] = 0;
}

/* Answer id with cp_result and an error; its later cp_data and cp_end are ignored. */
static void result_error(long long id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result_error(long long id, const char *fmt, ...)
{
	static char msg[2 * PATH_MAX + 256], esc[6 * sizeof(msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hm_gjson_escape(esc, sizeof(esc), msg, strlen(msg));
	step("cp %lld: %s", id, msg);
	agent_send("{\"type\":\"cp_result\",\"id\":%lld,\"error\":\"%s\"}", id, esc);
	gone_add(id);
}

void cp_disconnect(void)
{
	for (int i = 0; i < MAX_CP; i++) {
		if (!sessions[i].used)
			continue;
		step("cp %lld: host gone, session ended", sessions[i].id);
		release(&sessions[i]);
	}
	memset(gone, 0, sizeof(gone));
}

/* ---- request fields ------------------------------------------------------------------------ */

/* Create path and its missing parents (0755); an existing one is fine. */
static int make_dirs(const char *path, char *why, size_t whylen)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len >= sizeof(buf)) {
		snprintf(why, whylen, "mkdir %s: %s", path, strerror(ENAMETOOLONG));
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if ((buf[i] != '/' && buf[i] != '\0') || buf[i - 1] == '/')
			continue;
		char ch = buf[i];
		buf[i] = '\0';
		int r = mkdir(buf, 0755);
		int e = errno;
		if (r < 0 && e != EEXIST) {
			snprintf(why, whylen, "mkdir %s: %s", buf, strerror(e));
			return -1;
		}
		buf[i] = ch;
	}
	return 0;
}

/* ---- into the guest ------------------------------------------------------------------------ */

/* cp_to with is_dir: the directory, its owner, mode and mtime, answered at once. */
static void make_dir(long long id, const char *path, mode_t mode, uid_t uid, gid_t gid,
                     bool has_mtime, long long mtime)
{
	char why[PATH_MAX + 128];
	struct stat st;
	if (make_dirs(path, why, sizeof(why)) < 0) {
		result_error(id, "%s", why);
		return;
	}
	int r = stat(path, &st);
	if (r < 0 || !S_ISDIR(st.st_mode)) {
		result_error(id, "mkdir %s: %s", path, strerror(r < 0 ? errno : EEXIST));
		return;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0) {
		result_error(id, "chown %s: %s", path, strerror(errno));
		return;
	}
	if (chmod(path, mode) < 0) {
		result_error(id, "chmod %s: %s", path, strerror(errno));
		return;
	}
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = (time_t)mtime } };
	if (has_mtime && utimensat(AT_FDCWD, path, ts, 0) < 0) {
		result_error(id, "set the mtime of %s: %s", path, strerror(errno));
		return;
	}
	step("cp %lld: directory %s", id, path);
	agent_send("{\"type\":\"cp_result\",\"id\":%lld,\"bytes_written\":0}", id);
}

void cp_to(const struct agent_req *r)
{
	long long id = r->id;
	if (find(id)) {
		agent_error(id, "cp_to: id %lld is in use by a copy session", id);
		return;
	}
	gone_del(id);
	const char *path = r->cp_to.path, *name = r->cp_to.name;
	bool is_dir = r->cp_to.is_dir;
	long long mode = r->cp_to.mode, uid = r->cp_to.uid, gid = r->cp_to.gid;
	long long mtime = r->cp_to.mtime;
	bool has_mtime = r->cp_to.has_mtime;
	if (is_dir) {
		make_dir(id, path, mode < 0 ? 0755 : (mode_t)mode, (uid_t)uid, (gid_t)gid,
		         has_mtime, mtime);
		return;
	}
	struct cp *c = free_slot();
	if (!c) {
		result_error(id, "too many copy sessions");
		return;
	}

	/* The target: P/name when P is a directory and name is given, else P. */
	char target[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX], why[PATH_MAX + 128];
	struct stat st;
	size_t plen = strlen(path);
	int n;
	if (name && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		n = snprintf(target, sizeof(target), "%s%s%s", path,
		             path[plen - 1] == '/' ? "" : "/", name);
	else
		n = snprintf(target, sizeof(target), "%s", path);
	if (n < 0 || (size_t)n >= sizeof(target)) {
		result_error(id, "cp_to %s/%s: %s", path, name, strerror(ENAMETOOLONG));
		return;
	}
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		result_error(id, "cp_to %s: %s", target, strerror(EISDIR));
		return;
	}
	const char *slash = strrchr(target, '/');
	const char *base = slash + 1;
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		result_error(id, "cp_to %s: not a file name", target);
		return;
	}
	if (slash == target)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - target), target);
	n = snprintf(tmp, sizeof(tmp), "%s/.%.*s.hypeman-cp-XXXXXX",
	             strcmp(dir, "/") == 0 ? "" : dir, TMP_BASE, base);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		result_error(id, "cp_to %s: %s", target, strerror(ENAMETOOLONG));
		return;
	}
	if (make_dirs(dir, why, sizeof(why)) < 0) {
		result_error(id, "%s", why);
		return;
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		result_error(id, "create a temporary file in %s: %s", dir, strerror(errno));
		return;
	}
	*c = (struct cp){
		.used = true,
		.id = id,
		.fd = fd,
		.tmp = strdup(tmp),
		.target = strdup(target),
		.mode = mode < 0 ? 0644 : (mode_t)mode,
		.uid = (uid_t)uid,
		.gid = (gid_t)gid,
		.has_mtime = has_mtime,
		.mtime = mtime,
	};
	if (!c->tmp || !c->target) {
		if (!c->tmp)
			unlink(tmp);
		release(c);
		result_error(id, "cp_to %s: %s", target, strerror(ENOMEM));
		return;
	}
	step("cp %lld: to %s", id, target);
	agent_send("{\"type\":\"cp_ready\",\"id\":%lld}", id);
}

/* The cp_to session of id for a cp_data or cp_end, or NULL (answered or ignored). */
static struct cp *find_to(long long id, const char *what)
{
	struct cp *c = find(id);
	if (c && c->from) {
		agent_error(id, "%s: copy session %lld copies out of the guest", what, id);
		return NULL;
	}
	if (!c && !is_gone(id))
		result_error(id, "%s: no copy session %lld", what, id);
	return c;
}

/* The session failed: remove the temporary file, end it, answer the error. */
static void fail(struct cp *c, const char *what, const char *path, int err)
{
	char msg[PATH_MAX + 128];
	long long id = c->id;
	snprintf(msg, sizeof(msg), "%s %s: %s", what, path, strerror(err));
	release(c);
	result_error(id, "%s", msg);
}

void cp_data(const struct agent_req *r)
{
	struct cp *c = find_to(r->id, "cp_data");
	if (!c)
		return;
	const char *buf = r->data.data;
	ssize_t n = (ssize_t)r->data.len;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(c->fd, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fail(c, "write", c->tmp, w < 0 ? errno : EIO);
			return;
		}
		off += w;
	}
	c->written += n;
}

void cp_end(long long id)
{
	struct cp *c = find_to(id, "cp_end");
	if (!c)
		return;
	/* chown before chmod: a chown clears the set-user-ID and set-group-ID bits. */
	if ((c->uid != (uid_t)-1 || c->gid != (gid_t)-1) && fchown(c->fd, c->uid, c->gid) < 0) {
		fail(c, "chown", c->tmp, errno);
		return;
	}
	if (fchmod(c->fd, c->mode) < 0) {
		fail(c, "chmod", c->tmp, errno);
		return;
	}
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = (time_t)c->mtime } };
	if (c->has_mtime && futimens(c->fd, ts) < 0) {
		fail(c, "set the mtime of", c->tmp, errno);
		return;
	}
	if (fsync(c->fd) < 0) {
		fail(c, "sync", c->tmp, errno);
		return;
	}
	int r = close(c->fd);
	c->fd = -1;
	if (r < 0) {
		fail(c, "close", c->tmp, errno);
		return;
	}
	if (rename(c->tmp, c->target) < 0) {
		fail(c, "rename to", c->target, errno);
		return;
	}
	free(c->tmp);
	c->tmp = NULL;
	step("cp %lld: %lld bytes to %s", id, c->written, c->target);
	agent_send("{\"type\":\"cp_result\",\"id\":%lld,\"bytes_written\":%lld}", id, c->written);
	release(c);
}

void cp_abort(long long id)
{
	struct cp *c = find(id);
	if (c) {
		step("cp %lld: aborted", id);
		release(c);
	}
	gone_add(id);
}

/* ---- out of the guest ---------------------------------------------------------------------- */

/* The REL of P itself: its last name ("." for /; what P resolves to when that is . or ..). */
static void root_rel(const char *p, char *rel, size_t size)
{
	size_t len = strlen(p);
	while (len > 1 && p[len - 1] == '/')
		len--;
	size_t b = len;
	while (b > 0 && p[b - 1] != '/')
		b--;
	const char *base = p + b;
	size_t blen = len - b;
	char real[PATH_MAX];
	if ((blen == 1 && base[0] == '.') || (blen == 2 && base[0] == '.' && base[1] == '.')) {
		if (realpath(p, real)) {
			base = strrchr(real, '/') + 1;
			blen = strlen(base);
		}
	}
	if (blen == 0 || (blen <= 2 && strncmp(base, "..", blen) == 0))
		snprintf(rel, size, ".");
	else
		snprintf(rel, size, "%.*s", (int)blen, base);
}

/* A cp_from refused (its fields, or no room): one final cp_error naming the path. */
static void from_refused(long long id, const char *path, const char *why)
{
	static char rel[PATH_MAX], esc[6 * PATH_MAX + 1], msg[6 * 256 + 1];
	rel[0] = '\0';
	if (path)
		root_rel(path, rel, sizeof(rel));
	hm_gjson_escape(esc, sizeof(esc), rel, strlen(rel));
	hm_gjson_escape(msg, sizeof(msg), why, strnlen(why, 256));
	step("cp %lld: %s", id, why);
	agent_send("{\"type\":\"cp_error\",\"id\":%lld,\"path\":\"%s\",\"message\":\"%s\","
	           "\"final\":true}",
	           id, esc, msg);
}

void cp_refused(const struct agent_req *r, const char *why)
{
	long long id = r->id;
	if (r->kind == AR_CP_DATA) {
		struct cp *c = find_to(id, "cp_data");
		if (!c)
			return;
		release(c);
		result_error(id, "%s", why);
		return;
	}
	if (find(id)) {
		agent_error(id, "%s: id %lld is in use by a copy session", r->type, id);
		return;
	}
	gone_del(id);
	if (r->kind == AR_CP_FROM)
		from_refused(id, NULL, why);
	else
		result_error(id, "%s", why);
}

void cp_from(const struct agent_req *r)
{
	long long id = r->id;
	if (find(id)) {
		agent_error(id, "cp_from: id %lld is in use by a copy session", id);
		return;
	}
	gone_del(id);
	const char *path = r->cp_from.path;
	bool follow = r->cp_from.follow;
	const char *why = NULL;
	struct cp *c = NULL;
	struct walk *w = NULL;
	if (!(c = free_slot()))
		why = "too many copy sessions";
	else if (!(w = malloc(sizeof(*w))))
		why = "out of memory";
	if (why) {
		from_refused(id, path, why);
		return;
	}
	w->follow = follow;
	w->started = false;
	w->file_fd = -1;
	w->left = 0;
	w->depth = 0;
	snprintf(w->root, sizeof(w->root), "%s", path);
	root_rel(path, w->rel, sizeof(w->rel));
	*c = (struct cp){ .used = true, .from = true, .id = id, .fd = -1, .w = w };
	step("cp %lld: from %s", id, path);
}

/* cp_error for the current entry (rel); a final one ends the session. */
static void walk_error(struct cp *c, bool final, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void walk_error(struct cp *c, bool final, const char *fmt, ...)
{
	static char msg[PATH_MAX + 256], esc_msg[6 * sizeof(msg)], esc_path[6 * PATH_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hm_gjson_escape(esc_msg, sizeof(esc_msg), msg, strlen(msg));
	hm_gjson_escape(esc_path, sizeof(esc_path), c->w->rel, strlen(c->w->rel));
	step("cp %lld: %s: %s", c->id, c->w->rel, msg);
	agent_send("{\"type\":\"cp_error\",\"id\":%lld,\"path\":\"%s\",\"message\":\"%s\","
	           "\"final\":%s}",
	           c->id, esc_path, esc_msg, final ? "true" : "false");
	if (final)
		release(c);
}

static void send_header(struct cp *c, const struct stat *st, const char *target, size_t tlen)
{
	static char path[6 * PATH_MAX + 1], link[6 * PATH_MAX + 3];
	hm_gjson_escape(path, sizeof(path), c->w->rel, strlen(c->w->rel));
	if (target) {
		link[0] = '"';
		size_t n = hm_gjson_escape(link + 1, sizeof(link) - 2, target, tlen);
		link[n + 1] = '"';
		link[n + 2] = '\0';
	} else {
		snprintf(link, sizeof(link), "null");
	}
	agent_send("{\"type\":\"cp_header\",\"id\":%lld,\"path\":\"%s\",\"mode\":%u,\"is_dir\":%s,"
	           "\"is_symlink\":%s,\"link_target\":%s,\"size\":%lld,\"mtime\":%lld,\"uid\":%u,"
	           "\"gid\":%u}",
	           c->id, path, (unsigned)(st->st_mode & 07777),
	           S_ISDIR(st->st_mode) ? "true" : "false", S_ISLNK(st->st_mode) ? "true" : "false",
	           link, S_ISREG(st->st_mode) ? (long long)st->st_size : 0LL,
	           (long long)st->st_mtim.tv_sec, (unsigned)st->st_uid, (unsigned)st->st_gid);
}

/*
 * One entry: name in the directory dfd (P itself: AT_FDCWD and its path),
 * whose REL is in w->rel. Sends its header; a directory is pushed on the
 * stack, a regular file becomes the one being sent.
 */
static void walk_entry(struct cp *c, int dfd, const char *name, bool root)
{
	static char target[PATH_MAX + 1];
	struct walk *w = c->w;
	bool nofollow = !root || !w->follow;
	const char *what = nofollow ? "lstat" : "stat";
	struct stat st;
	if (fstatat(dfd, name, &st, nofollow ? AT_SYMLINK_NOFOLLOW : 0) < 0) {
		walk_error(c, root, "%s%s%s: %s", what, root ? " " : "", root ? name : "",
		           strerror(errno));
		return;
	}
	int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY | (nofollow ? O_NOFOLLOW : 0);
	if (S_ISDIR(st.st_mode)) {
		if (w->depth >= MAX_DEPTH) {
			walk_error(c, root, "more than %d directories deep: skipped", MAX_DEPTH);
			return;
		}
		int fd = openat(dfd, name, oflags | O_DIRECTORY);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			walk_error(c, root, "open%s%s: %s", root ? " " : "", root ? name : "",
			           strerror(e));
			return;
		}
		fstat(fd, &st);
		send_header(c, &st, NULL, 0);
		w->stack[w->depth++] = (struct frame){ .d = d, .rel_len = strlen(w->rel) };
	} else if (S_ISREG(st.st_mode)) {
		/* O_NONBLOCK: should it have become a fifo meanwhile, the open does not hang. */
		int fd = openat(dfd, name, oflags | O_NONBLOCK);
		if (fd < 0) {
			walk_error(c, root, "open%s%s: %s", root ? " " : "", root ? name : "",
			           strerror(errno));
			return;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			walk_error(c, root, "changed while being read: skipped");
			return;
		}
		send_header(c, &st, NULL, 0);
		w->file_fd = fd;
		w->left = st.st_size;
	} else if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0) {
			walk_error(c, root, "readlink%s%s: %s", root ? " " : "", root ? name : "",
			           strerror(errno));
			return;
		}
		target[n] = '\0';
		send_header(c, &st, target, (size_t)n);
	} else {
		walk_error(c, root, "not a regular file, directory or symlink: skipped");
	}
}

/* Send the next chunk of the file being sent; its cp_file_end after the last. */
static void send_chunk(struct cp *c)
{
	static char buf[CP_CHUNK];
	struct walk *w = c->w;
	size_t want = w->left < (off_t)CP_CHUNK ? (size_t)w->left : CP_CHUNK;
	ssize_t n = 0;
	if (want > 0) {
		do
			n = read(w->file_fd, buf, want);
		while (n < 0 && errno == EINTR);
	}
	if (n > 0) {
		agent_data(c->id, "cp_data", buf, (size_t)n);
		w->left -= n;
		if (w->left > 0)
			return;
	}
	int e = n < 0 ? errno : 0;
	close(w->file_fd);
	w->file_fd = -1;
	agent_send("{\"type\":\"cp_file_end\",\"id\":%lld}", c->id);
	if (e)
		walk_error(c, false, "read: %s", strerror(e));
}

/* One step of a walk: about one message. */
static void walk_step(struct cp *c)
{
	struct walk *w = c->w;
	if (w->file_fd >= 0) {
		send_chunk(c);
		return;
	}
	if (!w->started) {
		w->started = true;
		walk_entry(c, AT_FDCWD, w->root, true);
		return;
	}
	if (w->depth == 0) {
		step("cp %lld: done", c->id);
		agent_send("{\"type\":\"cp_done\",\"id\":%lld}", c->id);
		release(c);
		return;
	}
	struct frame *f = &w->stack[w->depth - 1];
	w->rel[f->rel_len] = '\0';
	errno = 0;
	struct dirent *e = readdir(f->d);
	if (!e) {
		if (errno)
			walk_error(c, false, "read the directory: %s", strerror(errno));
		closedir(f->d);
		w->depth--;
		return;
	}
	if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
		return;
	size_t nlen = strlen(e->d_name);
	if (f->rel_len + 1 + nlen >= sizeof(w->rel)) {
		walk_error(c, false, "`%.64s...`: %s", e->d_name, strerror(ENAMETOOLONG));
		return;
	}
	w->rel[f->rel_len] = '/';
	memcpy(w->rel + f->rel_len + 1, e->d_name, nlen + 1);
	walk_entry(c, dirfd(f->d), e->d_name, false);
}

void cp_poll_fill(int *timeout)
{
	if (!agent_room())
		return;
	for (int i = 0; i < MAX_CP; i++)
		if (sessions[i].used && sessions[i].from) {
			*timeout = 0;
			return;
		}
}

void cp_poll_handle(void)
{
	for (int i = 0; i < MAX_CP; i++) {
		struct cp *c = &sessions[i];
		for (int k = 0; k < WORK_STEPS && c->used && c->from && agent_room(); k++)
			walk_step(c);
	}
}
