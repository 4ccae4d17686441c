/*
 * Unit tests for the Hypeman dialect's create reader (hm_rest_parse_create)
 * on its durations: Go-style strings ("90s", "1m30s", "500ms") become
 * milliseconds, and anything that is not one, or is longer than a day, is
 * a 400 naming the field. The over-range cases are the ones fuzz_bodies
 * found converting an unbounded double to long (UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "api/handlers.h"
#include "core/err.h"
#include "instance/instances.h"

/* Parse a create whose auto_standby.idle_timeout is `d`; -1 on refusal. */
static int idle_ms(const char *d, int64_t *ms, struct hm_err **err)
{
	json_t *body = json_pack("{s:s,s:s,s:{s:b,s:s}}", "name", "x", "image", "busybox",
	                         "auto_standby", "enabled", 1, "idle_timeout", d);
	assert_non_null(body);
	struct hm_instance_create c = { 0 };
	int r = hm_rest_parse_create(body, &c, err);
	*ms = c.auto_standby.idle_ms;
	json_decref(body);
	return r;
}

static void durations_parse(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{ "90s", 90000 }, { "1m30s", 90000 },  { "500ms", 500 }, { "2h", 7200000 },
		{ "1.5s", 1500 }, { "24h", 86400000 }, { "0s", 0 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct hm_err *err = NULL;
		int64_t ms = -1;
		assert_int_equal(idle_ms(ok[i].s, &ms, &err), 0);
		assert_null(err);
		assert_int_equal(ms, ok[i].ms);
	}
}

static void durations_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",     "5",      "5x",       "-1s",     "3.8e61h", "1e308h", "infs",
		"nans", "24h1ms", "1e20ms5s", "1e999ms", "0x10s ",  "s",      "25h",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct hm_err *err = NULL;
		int64_t ms;
		assert_int_equal(idle_ms(bad[i], &ms, &err), -1);
		assert_non_null(err);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		assert_non_null(strstr(err->msg, "auto_standby.idle_timeout"));
		hm_err_free(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(durations_parse),
		cmocka_unit_test(durations_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
