/*
 * Unit tests for core/websocket: a server end and a client end on the two
 * sides of a socketpair talk to each other (masking one way, not the
 * other), and hand-made frames check what the RFC says a server must
 * refuse: unmasked client frames, oversized messages, invalid UTF-8,
 * interleaved control frames and fragments, and the close handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "core/websocket.h"

struct pair {
	int sfd, cfd;
	struct hm_ws *server, *client;
};

static void pair_open(struct pair *p, size_t max_message)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p->sfd = sv[0];
	p->cfd = sv[1];
	struct hm_ws_opts so = { .max_message = max_message, .io_timeout_ms = 2000 };
	struct hm_ws_opts co = { .client = true, .io_timeout_ms = 2000 };
	p->server = hm_ws_new(p->sfd, &so);
	p->client = hm_ws_new(p->cfd, &co);
}

static void pair_close(struct pair *p)
{
	hm_ws_free(p->server);
	hm_ws_free(p->client);
	close(p->sfd);
	close(p->cfd);
}

/* Raw bytes from the client side, as a misbehaving peer would send them. */
static void raw(struct pair *p, const void *b, size_t n)
{
	assert_int_equal(write(p->cfd, b, n), (ssize_t)n);
}

/* Read the server's close frame from the client fd and return its code. */
static int server_close_code(struct pair *p)
{
	unsigned char h[4];
	assert_int_equal(read(p->cfd, h, 4), 4);
	assert_int_equal(h[0], 0x88);
	return h[2] << 8 | h[3];
}

static void accept_key_rfc_example(void **state)
{
	(void)state;
	char *k = hm_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==");
	assert_non_null(k);
	assert_string_equal(k, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	free(k);
	assert_null(hm_ws_accept_key("short"));
	assert_null(hm_ws_accept_key(NULL));
	assert_null(hm_ws_accept_key("dGhlIHNhbXBsZSBub25j!!=="));
}

static void round_trip_both_ways(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	struct hm_ws_msg m = { 0 };
	/* client -> server: masked on the wire, plain after reading */
	assert_int_equal(hm_ws_send(p.client, HM_WS_TEXT, "{\"command\":[\"ls\"]}", 18, NULL), 0);
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 1);
	assert_int_equal(m.opcode, HM_WS_TEXT);
	assert_string_equal((char *)m.data, "{\"command\":[\"ls\"]}");
	hm_ws_msg_clear(&m);
	/* server -> client, a binary message over 64 KiB (the 8-byte length) */
	size_t big = 70000;
	unsigned char *buf = malloc(big);
	for (size_t i = 0; i < big; i++)
		buf[i] = (unsigned char)(i * 31);
	assert_int_equal(hm_ws_send(p.server, HM_WS_BINARY, buf, big, NULL), 0);
	assert_int_equal(hm_ws_read_frame(p.client, &m, NULL), 1);
	assert_int_equal(m.opcode, HM_WS_BINARY);
	assert_int_equal(m.len, big);
	assert_memory_equal(m.data, buf, big);
	hm_ws_msg_clear(&m);
	/* and the client masks 126..65535-byte frames too */
	assert_int_equal(hm_ws_send(p.client, HM_WS_BINARY, buf, 300, NULL), 0);
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 1);
	assert_memory_equal(m.data, buf, 300);
	hm_ws_msg_clear(&m);
	free(buf);
	pair_close(&p);
}

static void close_handshake(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	assert_int_equal(hm_ws_close(p.client, HM_WS_CLOSE_NORMAL, "bye"), 0);
	struct hm_ws_msg m = { 0 };
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 0);
	assert_int_equal(hm_ws_peer_close_code(p.server), HM_WS_CLOSE_NORMAL);
	/* the server answered the close; the client reads the end */
	assert_int_equal(hm_ws_read_frame(p.client, &m, NULL), 0);
	assert_int_equal(hm_ws_peer_close_code(p.client), HM_WS_CLOSE_NORMAL);
	/* nothing more may be sent after a close */
	assert_int_equal(hm_ws_send(p.server, HM_WS_TEXT, "x", 1, NULL), -1);
	pair_close(&p);
}

static void unmasked_client_frame_is_1002(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	raw(&p, "\x81\x02hi", 4);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(p.server, &m, &err), -1);
	hm_err_free(err);
	assert_int_equal(server_close_code(&p), HM_WS_CLOSE_PROTOCOL);
	pair_close(&p);
}

static void masked_server_frame_is_refused(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	/* the server end writing a masked frame: the client must refuse it */
	assert_int_equal(write(p.sfd, "\x81\x82\0\0\0\0hi", 8), 8);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(p.client, &m, &err), -1);
	assert_non_null(err);
	hm_err_free(err);
	pair_close(&p);
}

static void fragments_with_a_ping_between(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	/* "Hel" (text, not final, key 0), ping "p", "lo" (continuation, final) */
	raw(&p, "\x01\x83\0\0\0\0Hel", 9);
	raw(&p, "\x89\x81\0\0\0\0p", 7);
	raw(&p, "\x80\x82\x01\x02\x03\x04", 6);
	unsigned char lo[2] = { 'l' ^ 1, 'o' ^ 2 };
	raw(&p, lo, 2);
	struct hm_ws_msg m = { 0 };
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 1);
	assert_string_equal((char *)m.data, "Hello");
	hm_ws_msg_clear(&m);
	/* the ping was answered with a pong carrying the same byte */
	unsigned char pong[3];
	assert_int_equal(read(p.cfd, pong, 3), 3);
	assert_int_equal(pong[0], 0x8a);
	assert_int_equal(pong[1], 1);
	assert_int_equal(pong[2], 'p');
	pair_close(&p);
}

static void too_big_is_1009(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 16);
	/* declares 1000 bytes: refused before any payload is read or allocated */
	raw(&p, "\x82\xfe\x03\xe8\0\0\0\0", 8);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(p.server, &m, &err), -1);
	assert_int_equal(err->kind, HM_ERR_TOO_LARGE);
	hm_err_free(err);
	assert_int_equal(server_close_code(&p), HM_WS_CLOSE_TOO_BIG);
	pair_close(&p);
}

static void invalid_utf8_is_1007(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	raw(&p, "\x81\x82\0\0\0\0\xc3\x28", 8);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(p.server, &m, &err), -1);
	hm_err_free(err);
	assert_int_equal(server_close_code(&p), HM_WS_CLOSE_INVALID_DATA);
	pair_close(&p);
}

static void stray_continuation_is_1002(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	raw(&p, "\x80\x81\0\0\0\0x", 7);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(p.server, &m, &err), -1);
	hm_err_free(err);
	assert_int_equal(server_close_code(&p), HM_WS_CLOSE_PROTOCOL);
	pair_close(&p);
}

static void primed_bytes_come_first(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	/* bytes the HTTP layer read past the upgrade request, then more from the socket */
	assert_int_equal(hm_ws_prime(p.server, "\x81\x81\0\0\0\0a", 7), 0);
	raw(&p, "\x81\x81\0\0\0\0b", 7);
	assert_true(hm_ws_buffered(p.server));
	struct hm_ws_msg m = { 0 };
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 1);
	assert_string_equal((char *)m.data, "a");
	hm_ws_msg_clear(&m);
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 1);
	assert_string_equal((char *)m.data, "b");
	hm_ws_msg_clear(&m);
	pair_close(&p);
}

static void eof_between_messages_is_an_end(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	shutdown(p.cfd, SHUT_WR);
	struct hm_ws_msg m = { 0 };
	assert_int_equal(hm_ws_read_frame(p.server, &m, NULL), 0);
	assert_int_equal(hm_ws_peer_close_code(p.server), HM_WS_CLOSE_ABNORMAL);
	pair_close(&p);
}

/* A connected TCP pair on loopback: a reset only happens on a real TCP socket. */
static void tcp_pair(int *sfd, int *cfd)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*cfd, (struct sockaddr *)&a, sizeof(a)), 0);
	*sfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*sfd >= 0);
	close(l);
}

struct last_word {
	int fd;
	struct hm_ws *ws;
	int ms;
};

/* The server's end of a session: its last frame, then the orderly end, then close(fd). */
static void *say_last_and_finish(void *arg)
{
	struct last_word *w = arg;
	hm_ws_send(w->ws, HM_WS_TEXT, "{\"exitCode\":0}", 14, NULL);
	hm_ws_finish(w->ws, w->ms);
	close(w->fd);
	return NULL;
}

/*
 * The client sent a frame the server never read (stdin_close after the
 * command ended, say). Closing with those bytes unread would answer with a
 * reset that throws the server's last frame away; after hm_ws_finish the
 * client reads that frame, the close, and a clean end of stream.
 */
static void finish_ends_without_a_reset(void **state)
{
	(void)state;
	int sfd, cfd;
	tcp_pair(&sfd, &cfd);
	struct hm_ws_opts so = { .io_timeout_ms = 2000 };
	struct hm_ws_opts co = { .client = true, .io_timeout_ms = 2000 };
	struct hm_ws *server = hm_ws_new(sfd, &so), *client = hm_ws_new(cfd, &co);
	assert_int_equal(hm_ws_send(client, HM_WS_TEXT, "{\"type\":\"stdin_close\"}", 22, NULL), 0);
	usleep(50 * 1000); /* it is in the server's receive queue, unread */
	struct last_word w = { sfd, server, 5000 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, say_last_and_finish, &w), 0);
	usleep(50 * 1000);
	struct hm_ws_msg m = { 0 };
	struct hm_err *err = NULL;
	assert_int_equal(hm_ws_read_frame(client, &m, &err), 1);
	assert_null(err);
	assert_string_equal((char *)m.data, "{\"exitCode\":0}");
	hm_ws_msg_clear(&m);
	assert_int_equal(hm_ws_read_frame(client, &m, &err), 0); /* the close, answered */
	assert_int_equal(hm_ws_peer_close_code(client), HM_WS_CLOSE_NORMAL);
	char b[16];
	assert_int_equal(read(cfd, b, sizeof(b)), 0); /* end of stream, not ECONNRESET */
	pthread_join(t, NULL);
	/* The server ended on the client's close, not on its deadline. */
	assert_int_equal(hm_ws_peer_close_code(server), HM_WS_CLOSE_NORMAL);
	hm_ws_free(server);
	hm_ws_free(client);
	close(cfd);
}

/* A peer that never answers the close: hm_ws_finish gives up after its ms. */
static void finish_is_bounded(void **state)
{
	(void)state;
	struct pair p;
	pair_open(&p, 0);
	hm_ws_finish(p.server, 100);
	assert_int_equal(hm_ws_peer_close_code(p.server), 0);
	assert_int_equal(server_close_code(&p), HM_WS_CLOSE_NORMAL);
	char b[4];
	assert_int_equal(read(p.cfd, b, sizeof(b)), 0); /* our write side is shut */
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accept_key_rfc_example),
		cmocka_unit_test(round_trip_both_ways),
		cmocka_unit_test(close_handshake),
		cmocka_unit_test(unmasked_client_frame_is_1002),
		cmocka_unit_test(masked_server_frame_is_refused),
		cmocka_unit_test(fragments_with_a_ping_between),
		cmocka_unit_test(too_big_is_1009),
		cmocka_unit_test(invalid_utf8_is_1007),
		cmocka_unit_test(stray_continuation_is_1002),
		cmocka_unit_test(primed_bytes_come_first),
		cmocka_unit_test(eof_between_messages_is_an_end),
		cmocka_unit_test(finish_ends_without_a_reset),
		cmocka_unit_test(finish_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
