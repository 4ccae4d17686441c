/*
 * Unit tests for egress/egress: which destinations the egress proxy
 * connects to. The proxy itself listens on loopback here (an ephemeral
 * port); its traffic is tested in tests/integration/network.test.mjs. The
 * addresses allowed must not be this machine's own (those are refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/err.h"
#include "egress/egress.h"

static void refuses_the_host_the_subnet_and_special_addresses(void **state)
{
	(void)state;
	struct hm_egress *e = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_egress_open("127.0.0.1", 0, "10.100.0.0/16", &e, &err), 0);
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
	assert_int_equal(hm_egress_open("127.0.0.1", 0, "10.100.0.0/40", &e, &err), -1);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	hm_err_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refuses_the_host_the_subnet_and_special_addresses),
		cmocka_unit_test(a_bad_subnet_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
