/*
 * instance/logs: tails an instance log file as SSE. The tail is found by
 * reading backwards from the end in blocks until enough newlines are seen;
 * following waits on inotify (IN_MODIFY) with a short timeout, so a stream
 * also notices when its instance stops. A keep-alive comment goes out every
 * 15 s so a vanished client is noticed on the next write.
 */
#include "instance/logs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

#define LINE_MAX_BYTES (64u << 10)
#define KEEPALIVE_S    15

struct hm_log_stream {
	int fd;
	int ino; /* inotify fd, or -1 */
	bool follow;
	bool ended;
	hm_log_alive_fn *alive;
	void *alive_cls;
	void (*alive_free)(void *);
	char *line; /* partial line read so far */
	size_t line_len;
	char *out; /* formatted SSE not yet handed out */
	size_t out_len, out_off;
	time_t last_write;
};

static void emit(struct hm_log_stream *s, const char *line, size_t len)
{
	while (len > 0 && line[len - 1] == '\r')
		len--;
	/* Console output is not always valid UTF-8; if not, non-ASCII bytes become '?'. */
	json_t *str = json_stringn(line, len);
	if (!str) {
		char *copy = xmalloc(len + 1);
		for (size_t i = 0; i < len; i++)
			copy[i] = (unsigned char)line[i] >= 0x80 || !line[i] ? '?' : line[i];
		str = json_stringn(copy, len);
		free(copy);
	}
	if (!str)
		return;
	char *js = json_dumps(str, JSON_ENCODE_ANY);
	json_decref(str);
	if (!js)
		return;
	size_t n = strlen(js);
	s->out = xrealloc(s->out, s->out_len + n + 8);
	memcpy(s->out + s->out_len, "data: ", 6);
	memcpy(s->out + s->out_len + 6, js, n);
	memcpy(s->out + s->out_len + 6 + n, "\n\n", 2);
	s->out_len += n + 8;
	free(js);
}

/* Split appended bytes into lines; the rest waits for its newline. */
static void feed(struct hm_log_stream *s, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || s->line_len >= LINE_MAX_BYTES) {
			emit(s, s->line, s->line_len);
			s->line_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		s->line[s->line_len++] = buf[i];
	}
}

/* Position fd at the start of the last `tail` lines (tail < 0: all). */
static void seek_tail(int fd, long tail)
{
	struct stat st;
	if (tail < 0 || fstat(fd, &st) < 0)
		return;
	off_t end = st.st_size, pos = end;
	if (tail == 0) {
		lseek(fd, end, SEEK_SET);
		return;
	}
	long seen = 0;
	char buf[8192];
	/* A final line without its newline yet counts as a line. */
	bool first = true;
	while (pos > 0) {
		size_t n = pos > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)pos;
		pos -= (off_t)n;
		if (pread(fd, buf, n, pos) != (ssize_t)n)
			break;
		for (size_t i = n; i-- > 0;) {
			if (buf[i] != '\n')
				continue;
			if (first && pos + (off_t)i == end - 1) {
				first = false;
				continue;
			}
			first = false;
			if (++seen == tail) {
				lseek(fd, pos + (off_t)i + 1, SEEK_SET);
				return;
			}
		}
	}
	lseek(fd, 0, SEEK_SET);
}

int hm_log_stream_open(const char *path, long tail, bool follow, hm_log_alive_fn *alive,
                       void *alive_cls, void (*alive_free)(void *), struct hm_log_stream **ret,
                       struct hm_err **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (alive_free)
			alive_free(alive_cls);
		if (errno == ENOENT)
			return hm_err_set(err, HM_ERR_NOT_FOUND, "log_not_found",
			                  "no log file yet");
		return hm_err_errno(err, errno, "open log");
	}
	struct hm_log_stream *s = xcalloc(1, sizeof(*s));
	s->fd = fd;
	s->ino = -1;
	s->follow = follow;
	s->alive = alive;
	s->alive_cls = alive_cls;
	s->alive_free = alive_free;
	s->line = xmalloc(LINE_MAX_BYTES + 1);
	s->last_write = time(NULL);
	if (follow) {
		s->ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (s->ino >= 0 && inotify_add_watch(s->ino, path, IN_MODIFY) < 0) {
			close(s->ino);
			s->ino = -1;
		}
	}
	seek_tail(fd, tail);
	*ret = s;
	return 0;
}

/* Read what is there now into the formatted buffer; returns bytes read. */
static ssize_t pull(struct hm_log_stream *s)
{
	char buf[16384];
	ssize_t total = 0;
	for (;;) {
		ssize_t n = read(s->fd, buf, sizeof(buf));
		if (n == 0) {
			/* Rotated (truncated in place, instances.c): go on from its start. */
			struct stat st;
			off_t at = lseek(s->fd, 0, SEEK_CUR);
			if (fstat(s->fd, &st) == 0 && at > st.st_size &&
			    lseek(s->fd, 0, SEEK_SET) == 0)
				continue;
		}
		if (n <= 0)
			break;
		feed(s, buf, (size_t)n);
		total += n;
		if (s->out_len > (256u << 10))
			break;
	}
	return total;
}

ssize_t hm_log_stream_read(struct hm_log_stream *s, char *buf, size_t max)
{
	if (s->out_off == s->out_len) {
		s->out_len = s->out_off = 0;
		if (s->ended)
			return -1;
		pull(s);
		if (s->out_len == 0) {
			bool alive = s->follow && s->alive && s->alive(s->alive_cls);
			if (!s->follow || !alive) {
				/* Drain once more: the writer may have appended before dying. */
				pull(s);
				if (s->line_len > 0) {
					emit(s, s->line, s->line_len);
					s->line_len = 0;
				}
				s->ended = true;
				if (s->out_len == 0)
					return -1;
			} else {
				if (s->ino >= 0) {
					struct pollfd p = { .fd = s->ino, .events = POLLIN };
					if (poll(&p, 1, 250) > 0) {
						char ev[4096];
						while (read(s->ino, ev, sizeof(ev)) > 0) {
						}
					}
				} else {
					struct timespec ts = { 0, 250 * 1000 * 1000 };
					nanosleep(&ts, NULL);
				}
				pull(s);
				if (s->out_len == 0) {
					if (time(NULL) - s->last_write < KEEPALIVE_S)
						return 0;
					static const char ka[] = ": keep-alive\n\n";
					s->out = xrealloc(s->out, sizeof(ka));
					memcpy(s->out, ka, sizeof(ka) - 1);
					s->out_len = sizeof(ka) - 1;
				}
			}
		}
	}
	size_t n = s->out_len - s->out_off;
	if (n > max)
		n = max;
	memcpy(buf, s->out + s->out_off, n);
	s->out_off += n;
	s->last_write = time(NULL);
	return (ssize_t)n;
}

void hm_log_stream_close(struct hm_log_stream *s)
{
	if (!s)
		return;
	if (s->alive_free)
		s->alive_free(s->alive_cls);
	close(s->fd);
	if (s->ino >= 0)
		close(s->ino);
	free(s->line);
	free(s->out);
	free(s);
}
