/*
 * core/connset: the caps on connections, in all and per client address,
 * and close ending every connection. Each connection is one end of a
 * socketpair served by a thread that reads until EOF; the address is what
 * accept would have given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/connset.h"

static atomic_int served;

/* A connection's thread: read until the client end closes (or close shuts it). */
static void serve(struct hm_conn *c)
{
	atomic_fetch_add(&served, 1);
	char buf[64];
	while (read(c->fd, buf, sizeof(buf)) > 0)
		;
}

static struct sockaddr_storage addr(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &a->sin_addr);
	return ss;
}

/* Hand the set one end of a new socketpair from ip; *client gets the other end. */
static bool offer(struct hm_connset *s, const char *ip, int *client)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*client = sv[1];
	struct sockaddr_storage ss = addr(ip);
	return hm_connset_spawn(s, sv[0], &ss, NULL, NULL, serve);
}

/* After a refusal the server end is closed: the client end reads EOF. */
static void assert_refused(int client)
{
	char b;
	assert_int_equal(read(client, &b, 1), 0);
}

static void wait_count(struct hm_connset *s, int n)
{
	for (int i = 0; i < 2000 && hm_connset_count(s) != n; i++) {
		struct timespec ts = { 0, 1000000L };
		nanosleep(&ts, NULL);
	}
	assert_int_equal(hm_connset_count(s), n);
}

static void caps(void **state)
{
	(void)state;
	struct hm_connset *s = hm_connset_new(5, 2);
	int a[3], b[3], c[2];
	/* Two from one address; the third is refused, another address is not. */
	assert_true(offer(s, "10.0.0.1", &a[0]));
	assert_true(offer(s, "10.0.0.1", &a[1]));
	assert_false(offer(s, "10.0.0.1", &a[2]));
	assert_refused(a[2]);
	assert_true(offer(s, "10.0.0.2", &b[0]));
	assert_true(offer(s, "10.0.0.2", &b[1]));
	assert_false(offer(s, "10.0.0.2", &b[2]));
	assert_refused(b[2]);
	/* Five in all: the fifth fits, a sixth (a third address) does not. */
	assert_true(offer(s, "10.0.0.3", &c[0]));
	assert_false(offer(s, "10.0.0.4", &c[1]));
	assert_refused(c[1]);
	assert_int_equal(hm_connset_count(s), 5);
	/* One of the first address's ends: it has room again. */
	close(a[0]);
	wait_count(s, 4);
	assert_true(offer(s, "10.0.0.1", &a[0]));
	/* Close ends every connection and waits for their threads. */
	assert_true(hm_connset_close(s, 5000));
	assert_int_equal(atomic_load(&served), 6);
	for (int i = 0; i < 2; i++) {
		assert_refused(a[i]);
		assert_refused(b[i]);
		close(a[i]);
		close(b[i]);
	}
	close(a[2]);
	close(b[2]);
	close(c[0]);
	close(c[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
