/*
 * The guest end of the agent channel (docs/guest.md, "The agent channel"):
 * finding and opening the virtio-serial port, splitting what the host sends
 * into lines, parsing and dispatching each request, answering stat and ping
 * here and handing exec requests to exec.c and copies to cp.c, and the send
 * buffer.
 *
 * Nothing here ever blocks. Messages are queued in one buffer that the main
 * loop drains while the port takes them (the port is O_NONBLOCK; a full
 * virtqueue or an absent host both read as EAGAIN). Above OUT_HIGH queued
 * bytes the init stops reading session output and the host's requests until
 * the host has caught up: exec output is never dropped while the host is
 * connected, and memory stays bounded. When the host goes away (HUP or EOF
 * on the port) the queue is dropped, every exec session is killed and every
 * copy session ended.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "core/cleanup.h"
#include "guest.h"
#include "lines.h"

#define AGENT_WAIT_MS  2000 /* how long the agent port's name may take to appear */
#define POLL_STEP_MS   5
#define HUP_FIRST_MS   2            /* after a HUP, look again this soon, then ever later */
#define HUP_RECHECK_MS 100          /* ... up to this often; closed this long: a disconnect */
#define OUT_HIGH       (256u << 10) /* stop reading requests above this many queued bytes */
#define OUT_ROOM       (128u << 10) /* sessions produce only below this: headroom for answers */
#define OUT_MAX        (8u << 20)   /* answers are dropped above this (a host that never reads) */
#define READ_CHUNK     (64u << 10)

static struct {
	int fd;
	bool up;  /* the host is (as far as we know) connected */
	bool hup; /* the port polled HUP: leave it out of poll until hup_at + hup_wait */
	long long hup_at, hup_wait;
	bool suspect; /* a HUP seen since the host last spoke (at suspect_at) */
	long long suspect_at;
	char *out; /* queued bytes: out[off..len) */
	size_t off, len, cap;
	char line[AGENT_LINE_MAX + 1];
	struct hm_lines lines; /* the host's bytes into line, a request at a time */
	struct hm_gjson doc;
} a = { .fd = -1, .up = true, .lines = { .buf = a.line, .cap = AGENT_LINE_MAX } };

/* ---- opening the port ---------------------------------------------------------------------- */

/* Does the virtio_console driver drive any device (is there a virtio-serial at all)? */
static bool have_virtio_serial(void)
{
	DIR *d = opendir("/sys/bus/virtio/drivers/virtio_console");
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)))
		found = strncmp(e->d_name, "virtio", 6) == 0;
	closedir(d);
	return found;
}

/* Look for the port named cfg.agent once; returns its open fd or -1. */
static int find_agent_port(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -1;
	int fd = -1;
	struct dirent *e;
	while (fd < 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX], name[256];
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
		if (read_small(path, name, sizeof(name)) <= 0)
			continue;
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, cfg.agent) != 0)
			continue;
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0 && errno != ENOENT)
			say("open agent port %s: %s", path, strerror(errno));
	}
	closedir(d);
	return fd;
}

void agent_open(void)
{
	if (a.fd >= 0)
		return; /* a base VM opened it early */
	if (!have_virtio_serial()) {
		step("no virtio-serial device: no agent");
		return;
	}
	for (int waited = 0;; waited += POLL_STEP_MS) {
		a.fd = find_agent_port();
		if (a.fd >= 0)
			break;
		if (waited >= AGENT_WAIT_MS) {
			say("agent port `%s` not found: running without an agent", cfg.agent);
			return;
		}
		sleep_ms(POLL_STEP_MS);
	}
	step("agent port open");
}

/* ---- the send buffer ----------------------------------------------------------------------- */

static size_t pending(void)
{
	return a.len - a.off;
}

/* Room for n more bytes at a.out + a.len; NULL when out of memory. */
static char *reserve(size_t n)
{
	if (a.off > 0 && (a.off == a.len || a.len + n > a.cap)) {
		memmove(a.out, a.out + a.off, a.len - a.off);
		a.len -= a.off;
		a.off = 0;
	}
	if (a.len + n > a.cap) {
		size_t cap = a.cap ? a.cap : 64u << 10;
		while (cap < a.len + n)
			cap *= 2;
		char *p = realloc(a.out, cap);
		if (!p)
			return NULL;
		a.out = p;
		a.cap = cap;
	}
	return a.out + a.len;
}

/* The host is gone: drop what it would have read and end what it was running. */
static void disconnected(void)
{
	if (!a.up)
		return;
	a.up = false;
	step("agent: host disconnected");
	a.off = a.len = 0;
	hm_lines_init(&a.lines, a.line, AGENT_LINE_MAX); /* a line in progress is dropped */
	exec_disconnect();
	cp_disconnect();
}

static bool can_send(void)
{
	return a.fd >= 0 && a.up && pending() < OUT_MAX;
}

static void vqueue(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void vqueue(const char *fmt, va_list ap)
{
	if (!can_send()) {
		if (a.fd >= 0 && a.up)
			say("agent: the host does not read: message dropped");
		return;
	}
	va_list ap2;
	va_copy(ap2, ap);
	char *p = reserve(512);
	int n = p ? vsnprintf(p, 512, fmt, ap) : -1;
	if (n >= 511) {
		p = reserve((size_t)n + 2);
		if (p)
			vsnprintf(p, (size_t)n + 1, fmt, ap2);
	}
	va_end(ap2);
	if (!p || n < 0)
		return;
	p[n] = '\n';
	a.len += (size_t)n + 1;
}

void agent_send(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vqueue(fmt, ap);
	va_end(ap);
}

void agent_error(long long id, const char *fmt, ...)
{
	char msg[512], esc[6 * sizeof(msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hm_gjson_escape(esc, sizeof(esc), msg, strlen(msg));
	step("agent: error: %s", msg);
	if (id > 0)
		agent_send("{\"type\":\"error\",\"id\":%lld,\"message\":\"%s\"}", id, esc);
	else
		agent_send("{\"type\":\"error\",\"message\":\"%s\"}", esc);
}

/* Queue head (a message up to its data string's opening quote), data in base64, the end. */
static void queue_b64(const char *head, int h, const void *data, size_t len)
{
	if (!can_send() || h < 0)
		return;
	static const char tail[] = "\"}\n";
	char *p = reserve((size_t)h + HM_GB64_LEN(len) + sizeof(tail));
	if (!p)
		return;
	memcpy(p, head, (size_t)h);
	size_t n = (size_t)h + hm_gb64_encode(data, len, p + h);
	memcpy(p + n, tail, sizeof(tail) - 1);
	a.len += n + sizeof(tail) - 1;
}

void agent_output(long long id, const char *stream, const void *data, size_t len)
{
	char head[96];
	int h =
	    snprintf(head, sizeof(head),
	             "{\"type\":\"output\",\"id\":%lld,\"stream\":\"%s\",\"data\":\"", id, stream);
	queue_b64(head, h, data, len);
}

void agent_data(long long id, const char *type, const void *data, size_t len)
{
	char head[96];
	int h = snprintf(head, sizeof(head), "{\"type\":\"%s\",\"id\":%lld,\"data\":\"", type, id);
	queue_b64(head, h, data, len);
}

/*
 * Session output (exec, cp) stops well below the point where requests stop
 * being read: a busy copy or a chatty command must never starve the host's
 * next request of the port.
 */
bool agent_room(void)
{
	return a.fd >= 0 && a.up && pending() < OUT_ROOM;
}

void agent_flush(void)
{
	while (a.fd >= 0 && pending() > 0) {
		ssize_t w = write(a.fd, a.out + a.off, pending());
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) {
			say("agent: write: %s", w < 0 ? strerror(errno) : "nothing written");
			disconnected();
			return;
		}
		a.off += (size_t)w;
	}
	a.off = a.len = 0;
}

void agent_drain(long ms)
{
	long long deadline = uptime_ms() + ms;
	for (;;) {
		agent_flush();
		long long left = deadline - uptime_ms();
		if (a.fd < 0 || !a.up || pending() == 0 || left <= 0)
			return;
		struct pollfd pfd = { .fd = a.fd, .events = POLLOUT };
		if (poll(&pfd, 1, (int)left) > 0 && (pfd.revents & POLLHUP))
			return;
	}
}

/* ---- requests ------------------------------------------------------------------------------ */

static void do_stat(const struct agent_req *r)
{
	long long id = r->id;
	const char *path = r->stat.path;
	struct stat st;
	int rc = r->stat.follow ? stat(path, &st) : lstat(path, &st);
	if (rc < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR) {
			agent_send("{\"type\":\"stat\",\"id\":%lld,\"exists\":false}", id);
		} else {
			char msg[64];
			hm_gjson_escape(msg, sizeof(msg), strerror(e), strlen(strerror(e)));
			agent_send(
			    "{\"type\":\"stat\",\"id\":%lld,\"exists\":false,\"error\":\"%s\"}", id,
			    msg);
		}
		return;
	}
	bool link = S_ISLNK(st.st_mode);
	static char target[PATH_MAX + 1], esc[6 * PATH_MAX + 16];
	snprintf(esc, sizeof(esc), "null");
	if (link) {
		ssize_t n = readlink(path, target, PATH_MAX);
		if (n >= 0) {
			esc[0] = '"';
			size_t e = hm_gjson_escape(esc + 1, sizeof(esc) - 2, target, (size_t)n);
			esc[e + 1] = '"';
			esc[e + 2] = '\0';
		}
	}
	agent_send("{\"type\":\"stat\",\"id\":%lld,\"exists\":true,\"is_dir\":%s,\"is_file\":%s,"
	           "\"is_symlink\":%s,\"link_target\":%s,\"mode\":%u,\"size\":%lld}",
	           id, S_ISDIR(st.st_mode) ? "true" : "false",
	           S_ISREG(st.st_mode) ? "true" : "false", link ? "true" : "false", esc,
	           (unsigned)(st.st_mode & 07777), (long long)st.st_size);
}

/* One message from the host: decoded (request.c), refused or handed to its handler. */
static void dispatch(char *line, size_t len)
{
	static struct agent_req r;
	static char data[AGENT_CP_CHUNK];
	const char *why;
	if (hm_gjson_parse(line, len, &a.doc, &why) < 0) {
		step("agent: ignoring a malformed message (%s)", why);
		return;
	}
	char msg[256];
	int d = agent_req_decode(&a.doc, &r, data, sizeof(data), msg, sizeof(msg));
	if (d == AGENT_REQ_BAD_FIELD &&
	    (r.kind == AR_CP_TO || r.kind == AR_CP_DATA || r.kind == AR_CP_FROM)) {
		cp_refused(&r, msg);
		return;
	}
	if (d < 0) {
		agent_error(r.id, "%s", msg);
		return;
	}
	switch (r.kind) {
	case AR_HELLO:
		/* A host (re)connected. It may have come back faster than the port ever
		 * showed HUP: whatever the previous host was running ends now. */
		exec_disconnect();
		cp_disconnect();
		/* Where the guest is, for a host that missed `started` (it restarted
		 * during the boot): the program's pid, 0 before it started. */
		agent_send("{\"type\":\"hello\",\"program_pid\":%d}", (int)program_pid());
		break;
	case AR_PING:
		if (r.id > 0)
			agent_send("{\"type\":\"pong\",\"id\":%lld}", r.id);
		else
			agent_send("{\"type\":\"pong\"}");
		break;
	case AR_SIGNAL:
		step("agent: signal %d to the program", r.signal.sig);
		forward_signal(r.signal.sig);
		break;
	case AR_IDENTITY:
		identity_apply(&r); /* id 0: the host does not wait for the answer */
		break;
	case AR_STOP:
		step("agent: stop (SIGKILL after %lld ms)", r.stop.timeout_ms);
		program_stop(r.stop.timeout_ms);
		break;
	case AR_ATTACH:
		agent_error(r.id, "attach: the guest is attached already");
		break;
	case AR_STAT:
		do_stat(&r);
		break;
	case AR_EXEC:
		exec_request(&r);
		break;
	case AR_STDIN:
		exec_stdin(&r);
		break;
	case AR_STDIN_CLOSE:
		exec_stdin_close(r.id);
		break;
	case AR_RESIZE:
		exec_resize(&r);
		break;
	case AR_KILL:
		exec_kill(&r);
		break;
	case AR_CP_TO:
		cp_to(&r);
		break;
	case AR_CP_DATA:
		cp_data(&r);
		break;
	case AR_CP_END:
		cp_end(r.id);
		break;
	case AR_CP_ABORT:
		cp_abort(r.id);
		break;
	case AR_CP_FROM:
		cp_from(&r);
		break;
	}
}

/*
 * The port shows the host's end closed (HUP, or a read of 0). While the host
 * end is closed the port polls as HUP, so it is left out of poll and looked
 * at again a little later: 2 ms after the first HUP, the wait doubling at
 * each look to HUP_RECHECK_MS. A restore or fork connects its new host
 * within milliseconds of the guest running again, and its first request
 * (the fork's identity) is read at once rather than a whole recheck later.
 * Only a look that still finds it closed HUP_RECHECK_MS or more after the
 * first, with nothing read in between, is a disconnect: when one host
 * leaves and the next arrives at once, the guest kernel can deliver the new
 * host's first lines before it has processed the "open" that follows the
 * "close", and taking that stale HUP for a disconnect would end the new
 * host's sessions and drop their answers.
 */
static void host_hup(void)
{
	long long now = uptime_ms();
	if (!a.suspect) {
		a.suspect = true;
		a.suspect_at = now;
		a.hup_wait = HUP_FIRST_MS;
	} else {
		if (now - a.suspect_at >= HUP_RECHECK_MS)
			disconnected();
		a.hup_wait = a.hup_wait * 2 < HUP_RECHECK_MS ? a.hup_wait * 2 : HUP_RECHECK_MS;
	}
	a.hup = true;
	a.hup_at = now;
}

static bool on_line(void *ctx, char *line, size_t len)
{
	(void)ctx;
	dispatch(line, len);
	return true;
}

/* Read what the host sent (one read per loop turn) and dispatch the complete lines. */
static void agent_read(void)
{
	static char buf[READ_CHUNK];
	ssize_t n;
	do
		n = read(a.fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		host_hup();
		return;
	}
	if (n < 0)
		return;
	a.up = true;
	a.suspect = false;
	size_t dropped = a.lines.dropped;
	hm_lines_feed(&a.lines, buf, (size_t)n, on_line, NULL);
	if (a.lines.dropped != dropped)
		say("agent: a message longer than %u bytes: dropped", AGENT_LINE_MAX);
}

/* One line in base mode: false (stop) at the attach, which stays in the buffer. */
static bool on_base_line(void *ctx, char *line, size_t len)
{
	/* Parsed in a copy: an attach is handed back as it came. */
	static char copy[AGENT_LINE_MAX];
	memcpy(copy, line, len);
	const char *why;
	if (hm_gjson_parse(copy, len, &a.doc, &why) < 0)
		return true;
	long long id = 0;
	hm_gjson_int(&a.doc, "id", &id);
	const char *type = hm_gjson_str(&a.doc, "type");
	if (!type)
		return true;
	if (strcmp(type, "attach") == 0) {
		*(size_t *)ctx = len;
		return false;
	}
	if (strcmp(type, "hello") == 0)
		agent_send("{\"type\":\"hello\",\"program_pid\":0,\"base\":true}");
	else if (strcmp(type, "ping") == 0 && id > 0)
		agent_send("{\"type\":\"pong\",\"id\":%lld}", id);
	else
		agent_error(id, "`%.64s` before the guest is attached to its disks", type);
	return true;
}

/*
 * A base VM (hypeman.base=1, docs/guest.md "Base mode") waits here for the
 * `attach` that a create sends to the copy of it that it restores. The port
 * is read one byte at a time so that nothing after the `attach` line is
 * taken from it: whatever the host sends next (an exec right after the
 * create) is read by the main loop, once the root is mounted. Meanwhile
 * hello and ping are answered and every other request is refused. Returns
 * the attach line's length in buf (NUL-terminated), or -1 without a port.
 */
ssize_t agent_base_wait(char *buf, size_t cap)
{
	if (a.fd < 0 || cap < 2)
		return -1;
	agent_send("{\"type\":\"base_ready\",\"uptime_ms\":%lld}", uptime_ms());
	struct hm_lines lines;
	hm_lines_init(&lines, buf, cap - 1 < AGENT_LINE_MAX ? cap - 1 : AGENT_LINE_MAX);
	for (;;) {
		agent_flush();
		struct pollfd pfd = { .fd = a.fd, .events = POLLIN | (pending() ? POLLOUT : 0) };
		int pr = poll(&pfd, 1, 100);
		if (pr < 0 && errno != EINTR)
			return -1;
		if (pr <= 0)
			continue;
		if (!(pfd.revents & POLLIN)) {
			/* No host yet (a base is saved and restored while it waits): look again
			 * soon. */
			if (pfd.revents & (POLLHUP | POLLERR))
				sleep_ms(1);
			continue;
		}
		char c;
		ssize_t n = read(a.fd, &c, 1);
		if (n <= 0) {
			if (n == 0 || errno == EAGAIN)
				sleep_ms(1);
			continue;
		}
		a.up = true;
		size_t got = 0;
		if (!hm_lines_feed(&lines, &c, 1, on_base_line, &got))
			return (ssize_t)got;
	}
}

int agent_poll_fill(struct pollfd *pfd, long long now, int *timeout)
{
	if (a.fd < 0)
		return 0;
	if (a.hup) {
		long long left = a.hup_at + a.hup_wait - now;
		if (left > 0) {
			if (*timeout < 0 || left < *timeout)
				*timeout = (int)left;
			return 0;
		}
		a.hup = false;
	}
	short ev = 0;
	if (pending() < OUT_HIGH)
		ev |= POLLIN;
	if (pending() > 0)
		ev |= POLLOUT;
	*pfd = (struct pollfd){ .fd = a.fd, .events = ev };
	return 1;
}

void agent_poll_handle(short revents)
{
	if (revents & POLLIN)
		agent_read();
	if (a.hup)
		return;
	if (revents & (POLLHUP | POLLERR)) {
		host_hup();
		return;
	}
	if (revents & POLLOUT) { /* the port takes writes only while the host is there */
		a.up = true;
		a.suspect = false;
	}
}
