/*
 * Unit tests for egress/egress: which destinations the egress proxy
 * connects to, and the head rewrite of a brokered request (against
 * mutated heads too, under ASan). The proxy itself listens on loopback here (an ephemeral
 * port); its traffic is tested in tests/integration/network.test.mjs. The
 * addresses allowed must not be this machine's own (those are refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "egress/egress.h"

static void refuses_the_host_the_subnet_and_special_addresses(void **state)
{
	(void)state;
	struct hm_egress *e = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_egress_open("127.0.0.1", 0, "10.100.0.0/16", NULL, &e, &err), 0);
	static const char *const refused[] = {
		"127.0.0.1",
		"127.9.9.9",
		"10.100.0.1",
		"10.100.255.254",
		"169.254.169.254",
		"224.0.0.1",
		"0.0.0.0",
		"255.255.255.255",
		"::1",
		"fe80::1",
		"ff02::1",
		"::ffff:127.0.0.1",
		"::",
		"not an address",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (hm_egress_allowed(e, refused[i]))
			fail_msg("%s was allowed", refused[i]);
	static const char *const allowed[] = { "198.51.100.7", "10.101.0.1", "8.8.8.8",
		                               "2001:db8::1" };
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (!hm_egress_allowed(e, allowed[i]))
			fail_msg("%s was refused", allowed[i]);
	assert_true(hm_egress_close(e));
}

static void a_bad_subnet_is_refused(void **state)
{
	(void)state;
	struct hm_egress *e = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_egress_open("127.0.0.1", 0, "10.100.0.0/40", NULL, &e, &err), -1);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	hm_err_free(err);
}

static void a_brokered_head_gets_the_headers_in_place_of_the_guests(void **state)
{
	(void)state;
	char n1[] = "Authorization", n2[] = "X-Api-Key", v1[] = "Bearer real", v2[] = "k2";
	char *names[] = { n1, n2 };
	char *values[] = { v1, v2 };
	const char *head = "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\n"
	                   "authorization: Bearer mock-KEY\r\nContent-Length: 2\r\n\r\n";
	char *out = hm_egress_inject_head(head, strlen(head), names, values, 2);
	assert_string_equal(out, "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\n"
	                         "Content-Length: 2\r\nAuthorization: Bearer real\r\n"
	                         "X-Api-Key: k2\r\n\r\n");
	free(out);
	/* none to set: the head as it was */
	out = hm_egress_inject_head(head, strlen(head), names, values, 0);
	assert_string_equal(out, head);
	free(out);
	/* a name that only starts like one is kept */
	const char *h2 = "GET / HTTP/1.1\r\nAuthorization-Extra: 1\r\n\r\n";
	out = hm_egress_inject_head(h2, strlen(h2), names, values, 1);
	assert_string_equal(out, "GET / HTTP/1.1\r\nAuthorization-Extra: 1\r\n"
	                         "Authorization: Bearer real\r\n\r\n");
	free(out);
}

static void mutated_heads_never_read_past_their_end(void **state)
{
	(void)state;
	char n1[] = "Authorization", v1[] = "v";
	char *names[] = { n1 };
	char *values[] = { v1 };
	const char *head = "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\n\r\n";
	size_t n = strlen(head);
	for (size_t cut = 0; cut <= n; cut++) {
		char *copy = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees any over-read */
		memcpy(copy, head, cut);
		free(hm_egress_inject_head(copy, cut, names, values, 1));
		for (size_t i = 0; i < cut; i++) {
			char was = copy[i];
			copy[i] = (char)(i % 3 == 0 ? '\r' : i % 3 == 1 ? '\n' : ':');
			free(hm_egress_inject_head(copy, cut, names, values, 1));
			copy[i] = was;
		}
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refuses_the_host_the_subnet_and_special_addresses),
		cmocka_unit_test(a_bad_subnet_is_refused),
		cmocka_unit_test(a_brokered_head_gets_the_headers_in_place_of_the_guests),
		cmocka_unit_test(mutated_heads_never_read_past_their_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
