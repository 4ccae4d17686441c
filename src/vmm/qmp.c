/*
 * qmp: the QMP client. One connection per operation (QEMU serves one QMP
 * client at a time). The socket is non-blocking and every wait is a poll()
 * against a monotonic deadline, so a wedged or busy QEMU costs at most the
 * caller's timeout: even connect() cannot block on a full listen backlog.
 * Messages are JSON objects, one per line ("\r\n" from QEMU); lines are read
 * into a buffer that grows up to HM_QMP_LINE_MAX.
 */
#include "vmm/qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

struct hm_qmp {
	int fd;
	bool broken; /* a timeout or I/O error left the stream in an unknown state */
	char *path;
	char *buf; /* unconsumed input */
	size_t len, cap;
	size_t line_used; /* bytes of the current line, terminator included */
	json_t *greeting;
	json_t *events[HM_QMP_EVENTS]; /* ring: oldest at ev_start */
	size_t ev_start, ev_count;
	hm_qmp_event_fn cb;
	void *cb_data;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left before `deadline` for poll(): -1 for none, 0 when past. */
static int remaining_ms(long long deadline)
{
	if (deadline < 0)
		return -1;
	long long left = deadline - now_ms();
	return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/*
 * Wait for `events` on q->fd until the deadline. Returns 1 when ready, 0 on
 * timeout, -errno on a poll error.
 */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		int left = remaining_ms(deadline);
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, left);
		if (r > 0)
			return 1;
		if (r == 0) {
			if (left == 0 || remaining_ms(deadline) == 0)
				return 0;
			continue; /* the 60 s poll slice ran out, not the deadline */
		}
		if (errno != EINTR)
			return -errno;
	}
}

static int qmp_broken(struct hm_qmp *q, struct hm_err **err, enum hm_err_kind kind,
                      const char *what)
{
	q->broken = true;
	return hm_err_set(err, kind, NULL, "QMP %s: %s", q->path, what);
}

/* sendmsg of data with fd attached (SCM_RIGHTS): QEMU takes the descriptor
 * that comes with a command's bytes for that command (getfd). */
static ssize_t send_fd(int sock, const char *data, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov,
		             .msg_iovlen = 1,
		             .msg_control = u.buf,
		             .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Send all of data; fd, if >= 0, goes with its first bytes. */
static int send_all(struct hm_qmp *q, const char *data, size_t len, int fd, long long deadline,
                    struct hm_err **err)
{
	while (len > 0) {
		ssize_t n = fd >= 0 ? send_fd(q->fd, data, len, fd)
		                    : send(q->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			fd = -1; /* it went with these bytes */
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_fd(q->fd, POLLOUT, deadline);
			if (r == 0)
				return qmp_broken(q, err, HM_ERR_TIMEOUT,
				                  "timed out sending a command");
			if (r < 0) {
				q->broken = true;
				return hm_err_errno(err, -r, "QMP %s: poll", q->path);
			}
			continue;
		}
		q->broken = true;
		hm_err_errno(err, n < 0 ? errno : EPIPE, "QMP %s: send", q->path);
		hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
		return -1;
	}
	return 0;
}

/*
 * Read one line (without its "\r\n") into q->buf; *ret_len is its length.
 * The caller drops it with consume_line(). Empty lines are returned too.
 */
static int read_line(struct hm_qmp *q, long long deadline, size_t *ret_len, struct hm_err **err)
{
	size_t scanned = 0;
	for (;;) {
		char *nl = memchr(q->buf + scanned, '\n', q->len - scanned);
		if (nl) {
			size_t n = (size_t)(nl - q->buf);
			q->line_used = n + 1;
			*nl = '\0';
			if (n > 0 && q->buf[n - 1] == '\r')
				q->buf[--n] = '\0';
			*ret_len = n;
			return 0;
		}
		scanned = q->len;
		if (q->len >= HM_QMP_LINE_MAX)
			return qmp_broken(q, err, HM_ERR_INTERNAL, "reply line longer than 1 MiB");
		if (q->cap - q->len < 4096 && q->cap < HM_QMP_LINE_MAX + 1) {
			size_t cap =
			    q->cap * 2 > HM_QMP_LINE_MAX + 1 ? HM_QMP_LINE_MAX + 1 : q->cap * 2;
			q->buf = xrealloc(q->buf, cap);
			q->cap = cap;
		}
		ssize_t n = recv(q->fd, q->buf + q->len, q->cap - 1 - q->len, MSG_DONTWAIT);
		if (n > 0) {
			q->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return qmp_broken(q, err, HM_ERR_UNAVAILABLE,
			                  q->len ? "connection closed in the middle of a message"
			                         : "connection closed");
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			q->broken = true;
			hm_err_errno(err, errno, "QMP %s: recv", q->path);
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		int r = wait_fd(q->fd, POLLIN, deadline);
		if (r == 0)
			return qmp_broken(q, err, HM_ERR_TIMEOUT, "timed out waiting for a reply");
		if (r < 0) {
			q->broken = true;
			return hm_err_errno(err, -r, "QMP %s: poll", q->path);
		}
	}
}

/* Drop the line read last (and its terminator) from the front of q->buf. */
static void consume_line(struct hm_qmp *q)
{
	memmove(q->buf, q->buf + q->line_used, q->len - q->line_used);
	q->len -= q->line_used;
	q->line_used = 0;
}

/* Read the next JSON object, whatever it is. */
static int read_message(struct hm_qmp *q, long long deadline, json_t **ret, struct hm_err **err)
{
	for (;;) {
		size_t n = 0;
		if (read_line(q, deadline, &n, err) < 0)
			return -1;
		if (n == 0) {
			consume_line(q);
			continue;
		}
		json_error_t jerr;
		json_t *msg = json_loadb(q->buf, n, 0, &jerr);
		consume_line(q);
		if (!msg || !json_is_object(msg)) {
			json_decref(msg);
			q->broken = true;
			return hm_err_set(err, HM_ERR_INTERNAL, NULL,
			                  "QMP %s: malformed message: %s", q->path,
			                  msg ? "not an object" : jerr.text);
		}
		*ret = msg;
		return 0;
	}
}

static void record_event(struct hm_qmp *q, json_t *event)
{
	if (q->cb)
		q->cb(event, q->cb_data);
	if (q->ev_count == HM_QMP_EVENTS) {
		json_decref(q->events[q->ev_start]);
		q->events[q->ev_start] = NULL;
		q->ev_start = (q->ev_start + 1) % HM_QMP_EVENTS;
		q->ev_count--;
	}
	q->events[(q->ev_start + q->ev_count) % HM_QMP_EVENTS] = json_incref(event);
	q->ev_count++;
}

static enum hm_err_kind error_kind(const char *cls)
{
	if (!cls)
		return HM_ERR_INTERNAL;
	if (strcmp(cls, "CommandNotFound") == 0)
		return HM_ERR_NOT_IMPLEMENTED;
	if (strcmp(cls, "DeviceNotFound") == 0)
		return HM_ERR_NOT_FOUND;
	return HM_ERR_INTERNAL;
}

/* Process-wide, for GET /metrics: how often the daemon talks to its VMMs. */
static atomic_ulong n_connects, n_commands;

void hm_qmp_counts(unsigned long *connects, unsigned long *commands)
{
	*connects = atomic_load(&n_connects);
	*commands = atomic_load(&n_commands);
}

static int execute(struct hm_qmp *q, const char *cmd, json_t *args, int fd, json_t **ret_return,
                   int timeout_ms, struct hm_err **err)
{
	atomic_fetch_add(&n_commands, 1);
	json_auto_t *req = json_pack("{s:s}", "execute", cmd);
	if (args)
		json_object_set_new(req, "arguments", args);
	if (q->broken)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "QMP %s: connection unusable after an earlier failure", q->path);
	long long deadline = deadline_after(timeout_ms);
	_cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
	if (!line)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "QMP %s: cannot encode %s", q->path,
		                  cmd);
	size_t len = strlen(line);
	line = xrealloc(line, len + 2);
	line[len++] = '\n';
	line[len] = '\0';
	if (send_all(q, line, len, fd, deadline, err) < 0)
		return hm_err_wrap(err, "%s", cmd);
	for (;;) {
		json_auto_t *msg = NULL;
		if (read_message(q, deadline, &msg, err) < 0)
			return hm_err_wrap(err, "%s", cmd);
		if (json_object_get(msg, "event")) {
			record_event(q, msg);
			continue;
		}
		json_t *e = json_object_get(msg, "error");
		if (e) {
			const char *cls = json_string_value(json_object_get(e, "class"));
			const char *desc = json_string_value(json_object_get(e, "desc"));
			return hm_err_set(err, error_kind(cls), NULL, "QMP %s: %s", cmd,
			                  desc  ? desc
			                  : cls ? cls
			                        : "unknown error");
		}
		json_t *r = json_object_get(msg, "return");
		if (!r)
			continue; /* neither event nor reply (a second greeting?): skip */
		if (ret_return)
			*ret_return = json_incref(r);
		return 0;
	}
}

int hm_qmp_execute(struct hm_qmp *q, const char *cmd, json_t *args, json_t **ret_return,
                   int timeout_ms, struct hm_err **err)
{
	return execute(q, cmd, args, -1, ret_return, timeout_ms, err);
}

int hm_qmp_give_fd(struct hm_qmp *q, const char *name, int fd, int timeout_ms, struct hm_err **err)
{
	return execute(q, "getfd", json_pack("{s:s}", "fdname", name), fd, NULL, timeout_ms, err);
}

static int connect_once(const struct sockaddr_un *sa, long long deadline, int *ret_fd)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		if (errno != EINPROGRESS)
			return -errno;
		int r = wait_fd(fd, POLLOUT, deadline);
		if (r <= 0)
			return r == 0 ? -ETIMEDOUT : r;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int hm_qmp_connect(const char *path, int timeout_ms, int abort_fd, struct hm_qmp **ret,
                   struct hm_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return hm_err_set(err, HM_ERR_INVALID, NULL, "QMP socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	long long deadline = deadline_after(timeout_ms);
	int fd = -1;
	for (;;) {
		int r = connect_once(&sa, deadline, &fd);
		if (r == 0)
			break;
		if (r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN && r != -EINTR) {
			hm_err_errno(err, -r, "connect to QMP socket %s", path);
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		int left = remaining_ms(deadline);
		if (left == 0) {
			hm_err_errno(err, -r, "connect to QMP socket %s (gave up after %d ms)",
			             path, timeout_ms);
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		/* QEMU is still starting: wait a little, or less if its process exits. */
		int slice = left < 0 || left > 5 ? 5 : left;
		if (abort_fd >= 0) {
			if (wait_fd(abort_fd, POLLIN, now_ms() + slice) > 0)
				return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
				                  "QMP %s: the VMM process exited", path);
		} else {
			struct timespec ts = { 0, (long)slice * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	struct hm_qmp *q = xcalloc(1, sizeof(*q));
	q->fd = fd;
	q->path = xstrdup(path);
	q->cap = 4096;
	q->buf = xmalloc(q->cap);
	_cleanup_qmp_ struct hm_qmp *qq = q;
	json_t *greeting = NULL;
	if (read_message(q, deadline, &greeting, err) < 0) {
		hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
		return hm_err_wrap(err, "greeting");
	}
	q->greeting = json_incref(json_object_get(greeting, "QMP"));
	json_decref(greeting);
	if (!q->greeting)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "QMP %s: no greeting", path);
	if (hm_qmp_execute(q, "qmp_capabilities", NULL, NULL, remaining_ms(deadline), err) < 0) {
		hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
		return -1;
	}
	*ret = TAKE_PTR(qq);
	atomic_fetch_add(&n_connects, 1);
	return 0;
}

void hm_qmp_set_event_cb(struct hm_qmp *q, hm_qmp_event_fn fn, void *userdata)
{
	q->cb = fn;
	q->cb_data = userdata;
}

const json_t *hm_qmp_greeting(const struct hm_qmp *q)
{
	return q->greeting;
}

size_t hm_qmp_nevents(const struct hm_qmp *q)
{
	return q->ev_count;
}

const json_t *hm_qmp_event(const struct hm_qmp *q, size_t i)
{
	if (i >= q->ev_count)
		return NULL;
	return q->events[(q->ev_start + i) % HM_QMP_EVENTS];
}

void hm_qmp_close(struct hm_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	for (size_t i = 0; i < q->ev_count; i++)
		json_decref(q->events[(q->ev_start + i) % HM_QMP_EVENTS]);
	json_decref(q->greeting);
	free(q->buf);
	free(q->path);
	free(q);
}
