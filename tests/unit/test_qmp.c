/*
 * Unit tests for vmm/qmp: a fake QMP server in a thread on a unix socket
 * plays QEMU's side (greeting, capabilities, then a scripted scenario) and
 * the client must cope: events interleaved before a reply, error replies,
 * a server that closes mid-line, an over-long line, a silent server, a
 * socket that appears late, a pidfd-style abort fd, and a descriptor handed
 * over with a command (SCM_RIGHTS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fileio.h"
#include "vmm/qmp.h"

enum scenario {
	S_BASIC,       /* event, reply; then events + reply to a command with arguments */
	S_ERROR,       /* an error reply */
	S_CLOSE_MID,   /* half a reply, then close */
	S_LONG,        /* a line over HM_QMP_LINE_MAX */
	S_SILENT,      /* never answers the command */
	S_NO_GREETING, /* accepts, never greets */
	S_MANY_EVENTS, /* more events than the ring holds */
	S_FD,          /* takes the descriptor sent with the command, writes to it */
};

struct fake {
	char dir[64];
	char path[128];
	int lfd;
	enum scenario sc;
	int listen_delay_ms; /* bind only after this long (the client must retry) */
	pthread_t th;
	char cmds[4][512]; /* the command lines the server received after capabilities */
	int ncmds;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void put(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* Read one line into buf (without '\n'); returns its length or -1 on EOF. */
static int get_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r <= 0)
			return -1;
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = '\0';
	return (int)n;
}

static void wait_eof(int fd)
{
	char c;
	while (read(fd, &c, 1) > 0)
		;
}

static int make_listener(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	return fd;
}

static void *server(void *arg)
{
	struct fake *f = arg;
	if (f->listen_delay_ms) {
		sleep_ms(f->listen_delay_ms);
		f->lfd = make_listener(f->path);
	}
	int c = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	if (f->sc == S_NO_GREETING) {
		wait_eof(c);
		close(c);
		return NULL;
	}
	put(c, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, "
	       "\"capabilities\": [\"oob\"]}}\r\n");
	char line[512];
	if (get_line(c, line, sizeof(line)) < 0 || !strstr(line, "\"qmp_capabilities\"")) {
		close(c);
		return NULL;
	}
	put(c, "{\"return\": {}}\r\n");
	int got_fd = -1;
	if (f->sc == S_FD) {
		/* The descriptor comes with the command's first byte, as QEMU reads it. */
		char first;
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = { .iov_base = &first, .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov,
			             .msg_iovlen = 1,
			             .msg_control = u.buf,
			             .msg_controllen = sizeof(u.buf) };
		if (recvmsg(c, &mh, 0) == 1) {
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			if (cm && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&got_fd, CMSG_DATA(cm), sizeof(int));
		}
		f->cmds[0][0] = first;
		if (get_line(c, f->cmds[0] + 1, sizeof(f->cmds[0]) - 1) >= 0)
			f->ncmds = 1;
		if (got_fd >= 0) {
			ssize_t w = write(got_fd, "fd-ok", 5); /* the client checks what came */
			(void)w;
			close(got_fd);
		}
		put(c, "{\"return\": {}}\r\n");
	}
	while (f->ncmds < 4 && get_line(c, f->cmds[f->ncmds], sizeof(f->cmds[0])) >= 0) {
		int i = f->ncmds++;
		switch (f->sc) {
		case S_BASIC:
			if (i == 0) {
				put(c, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
				       "\"event\": \"RESUME\"}\r\n");
				sleep_ms(20); /* the reply arrives in a later read */
				put(c, "{\"return\": {\"status\": \"running\", \"running\": "
				       "true}}\r\n");
			} else {
				/* two events and the reply in one write */
				put(c, "{\"event\": \"STOP\"}\r\n\r\n{\"event\": "
				       "\"X\"}\r\n{\"return\": "
				       "{}}\r\n");
			}
			break;
		case S_ERROR:
			put(c,
			    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'uri' "
			    "expects a valid migration protocol\"}}\r\n");
			break;
		case S_CLOSE_MID:
			put(c, "{\"return\": {\"sta");
			close(c);
			return NULL;
		case S_LONG: {
			size_t n = HM_QMP_LINE_MAX + 4096;
			char *big = malloc(n + 1);
			memset(big, 'x', n);
			big[0] = '"';
			big[n] = '\0';
			put(c, big); /* fails with EPIPE once the client gives up */
			free(big);
			break;
		}
		case S_SILENT:
			break;
		case S_MANY_EVENTS:
			for (int k = 0; k < 10; k++) {
				char ev[64];
				snprintf(ev, sizeof(ev), "{\"event\": \"E%d\"}\n", k);
				put(c, ev);
			}
			put(c, "{\"return\": {}}\n");
			break;
		case S_NO_GREETING:
		case S_FD:
			break;
		}
	}
	wait_eof(c);
	close(c);
	return NULL;
}

static struct fake *fake_start(enum scenario sc, int listen_delay_ms)
{
	struct fake *f = calloc(1, sizeof(*f));
	f->sc = sc;
	f->lfd = -1;
	f->listen_delay_ms = listen_delay_ms;
	snprintf(f->dir, sizeof(f->dir), "/tmp/hm-qmp-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/qmp.sock", f->dir);
	if (!listen_delay_ms)
		f->lfd = make_listener(f->path);
	assert_int_equal(pthread_create(&f->th, NULL, server, f), 0);
	return f;
}

/* Call after the client has closed its connection. */
static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	if (f->lfd >= 0)
		close(f->lfd);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
}

static int nevents_cb;
static void count_event(const json_t *event, void *userdata)
{
	assert_ptr_equal(userdata, &nevents_cb);
	assert_non_null(json_object_get(event, "event"));
	nevents_cb++;
}

static void command_after_event(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_BASIC, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	assert_non_null(json_object_get(hm_qmp_greeting(q), "version"));
	nevents_cb = 0;
	hm_qmp_set_event_cb(q, count_event, &nevents_cb);

	json_t *r = NULL;
	assert_int_equal(hm_qmp_execute(q, "query-status", NULL, &r, 2000, &err), 0);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "running");
	json_decref(r);
	assert_int_equal(hm_qmp_nevents(q), 1);
	assert_string_equal(json_string_value(json_object_get(hm_qmp_event(q, 0), "event")),
	                    "RESUME");

	/* arguments are sent; the reply without a return slot pointer is fine */
	assert_int_equal(
	    hm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "exec:cat"), NULL, 2000, &err),
	    0);
	assert_int_equal(hm_qmp_nevents(q), 3);
	assert_string_equal(json_string_value(json_object_get(hm_qmp_event(q, 2), "event")), "X");
	assert_null(hm_qmp_event(q, 3));
	assert_int_equal(nevents_cb, 3);
	hm_qmp_close(q);

	assert_int_equal(f->ncmds, 2);
	assert_string_equal(f->cmds[0], "{\"execute\":\"query-status\"}");
	assert_non_null(strstr(f->cmds[1], "\"arguments\":{\"uri\":\"exec:cat\"}"));
	fake_stop(f);
}

static void error_reply(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_ERROR, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	json_t *r = NULL;
	assert_true(
	    hm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "file:/x"), &r, 2000, &err) < 0);
	assert_null(r);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	assert_non_null(strstr(err->msg, "expects a valid migration protocol"));
	assert_non_null(strstr(err->msg, "migrate"));
	hm_err_free(err);
	err = NULL;
	/* an error reply leaves the connection usable */
	assert_true(hm_qmp_execute(q, "stop", NULL, NULL, 2000, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	hm_err_free(err);
	hm_qmp_close(q);
	fake_stop(f);
}

static void closed_mid_line(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_CLOSE_MID, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	assert_true(hm_qmp_execute(q, "query-status", NULL, NULL, 2000, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_non_null(strstr(err->msg, "middle of a message"));
	hm_err_free(err);
	err = NULL;
	/* broken now: refuses at once, and a stolen args object is still freed */
	assert_true(hm_qmp_execute(q, "cont", json_object(), NULL, 2000, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	hm_err_free(err);
	hm_qmp_close(q);
	fake_stop(f);
}

static void overlong_line(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_LONG, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	assert_true(hm_qmp_execute(q, "query-status", NULL, NULL, 5000, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	assert_non_null(strstr(err->msg, "longer than 1 MiB"));
	hm_err_free(err);
	hm_qmp_close(q);
	fake_stop(f);
}

static void reply_timeout(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_SILENT, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	long long t0 = now_ms();
	assert_true(hm_qmp_execute(q, "query-status", NULL, NULL, 200, &err) < 0);
	long long dt = now_ms() - t0;
	assert_true(dt >= 190 && dt < 2000);
	assert_int_equal(err->kind, HM_ERR_TIMEOUT);
	hm_err_free(err);
	hm_qmp_close(q);
	fake_stop(f);
}

static void event_ring_keeps_newest(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_MANY_EVENTS, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	assert_int_equal(hm_qmp_execute(q, "stop", NULL, NULL, 2000, &err), 0);
	assert_int_equal(hm_qmp_nevents(q), HM_QMP_EVENTS);
	assert_string_equal(json_string_value(json_object_get(hm_qmp_event(q, 0), "event")), "E2");
	assert_string_equal(
	    json_string_value(json_object_get(hm_qmp_event(q, HM_QMP_EVENTS - 1), "event")), "E9");
	hm_qmp_close(q);
	fake_stop(f);
}

static void connect_retries_until_socket_appears(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_BASIC, 150);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	long long t0 = now_ms();
	assert_int_equal(hm_qmp_connect(f->path, 3000, -1, &q, &err), 0);
	assert_true(now_ms() - t0 >= 140);
	hm_qmp_close(q);
	fake_stop(f);
}

static void gives_a_descriptor(void **state)
{
	(void)state;
	struct fake *f = fake_start(S_FD, 0);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_qmp_connect(f->path, 2000, -1, &q, &err), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(hm_qmp_give_fd(q, "hm-state", p[1], 2000, &err), 0);
	close(p[1]); /* ours; the server had its own copy */
	char buf[16] = { 0 };
	assert_int_equal(read(p[0], buf, sizeof(buf) - 1), 5);
	assert_string_equal(buf, "fd-ok");
	close(p[0]);
	hm_qmp_close(q);
	assert_int_equal(f->ncmds, 1);
	assert_non_null(strstr(f->cmds[0], "\"execute\":\"getfd\""));
	assert_non_null(strstr(f->cmds[0], "\"fdname\":\"hm-state\""));
	fake_stop(f);
}

static void connect_gives_up(void **state)
{
	(void)state;
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	/* nothing there */
	long long t0 = now_ms();
	assert_true(hm_qmp_connect("/tmp/hm-qmp-does-not-exist/qmp.sock", 100, -1, &q, &err) < 0);
	assert_true(now_ms() - t0 >= 95);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_non_null(strstr(err->msg, "gave up"));
	hm_err_free(err);
	err = NULL;

	/* the abort fd fires: stop waiting at once */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	t0 = now_ms();
	assert_true(hm_qmp_connect("/tmp/hm-qmp-does-not-exist/qmp.sock", 5000, p[0], &q, &err) <
	            0);
	assert_true(now_ms() - t0 < 1000);
	assert_non_null(strstr(err->msg, "exited"));
	hm_err_free(err);
	err = NULL;
	close(p[0]);
	close(p[1]);

	/* connected but never greeted */
	struct fake *f = fake_start(S_NO_GREETING, 0);
	t0 = now_ms();
	assert_true(hm_qmp_connect(f->path, 200, -1, &q, &err) < 0);
	assert_true(now_ms() - t0 >= 190);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_null(q);
	hm_err_free(err);
	fake_stop(f);

	/* a path that cannot be a unix socket address */
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	err = NULL;
	assert_true(hm_qmp_connect(longp, 100, -1, &q, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	hm_err_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(command_after_event),
		cmocka_unit_test(error_reply),
		cmocka_unit_test(closed_mid_line),
		cmocka_unit_test(overlong_line),
		cmocka_unit_test(reply_timeout),
		cmocka_unit_test(event_ring_keeps_newest),
		cmocka_unit_test(connect_retries_until_socket_appears),
		cmocka_unit_test(connect_gives_up),
		cmocka_unit_test(gives_a_descriptor),
	};
	return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
