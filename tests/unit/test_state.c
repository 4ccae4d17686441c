/*
 * Unit tests for instance/state: the one table of state names, checked
 * against the OpenAPI document's InstanceState enum both ways, and names
 * that are not states refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "api/spec.h"
#include "instance/state.h"

static void names_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < HM_STATE_COUNT; i++) {
		enum hm_state s;
		assert_true(hm_state_parse(hm_state_name((enum hm_state)i), &s));
		assert_int_equal(s, i);
	}
	assert_string_equal(hm_state_name(HM_STATE_RUNNING), "Running");
	assert_string_equal(hm_state_name((enum hm_state)99), "Unknown");
	assert_string_equal(hm_state_name((enum hm_state) - 1), "Unknown");
}

static void non_states_are_refused(void **state)
{
	(void)state;
	enum hm_state s = HM_STATE_CREATED;
	const char *bad[] = { "", "running", "RUNNING", "Running ", "Booting", "Runnin", NULL };
	for (size_t i = 0; bad[i]; i++)
		assert_false(hm_state_parse(bad[i], &s));
	assert_false(hm_state_parse(NULL, &s));
	assert_int_equal(s, HM_STATE_CREATED); /* untouched */
}

static void the_spec_lists_exactly_these(void **state)
{
	(void)state;
	json_error_t jerr;
	json_t *spec = json_loadb(hm_spec_json, (size_t)hm_spec_json_len, 0, &jerr);
	assert_non_null(spec);
	json_t *e = json_object_get(
	    json_object_get(json_object_get(json_object_get(spec, "components"), "schemas"),
	                    "InstanceState"),
	    "enum");
	assert_true(json_is_array(e));
	assert_int_equal(json_array_size(e), HM_STATE_COUNT);
	size_t i;
	json_t *v;
	bool seen[HM_STATE_COUNT] = { false };
	json_array_foreach (e, i, v) {
		enum hm_state s;
		assert_true(hm_state_parse(json_string_value(v), &s));
		assert_false(seen[s]);
		seen[s] = true;
	}
	json_decref(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_round_trip),
		cmocka_unit_test(non_states_are_refused),
		cmocka_unit_test(the_spec_lists_exactly_these),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
