/*
 * Unit tests for ingress/route: what an ingress request may contain, and
 * how a Host header meets literal and pattern hostnames.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "core/err.h"
#include "ingress/route.h"

static json_t *req(const char *json)
{
	json_error_t e;
	json_t *j = json_loads(json, 0, &e);
	assert_non_null(j);
	return j;
}

static int validate(const char *json, json_t **rules, const char **code)
{
	json_t *r = req(json);
	struct hm_err *err = NULL;
	int rc = hm_route_validate(r, rules, &err);
	if (rc < 0) {
		*code = err->code;
		assert_int_equal(err->kind, HM_ERR_INVALID);
		hm_err_free(err);
	}
	json_decref(r);
	return rc;
}

static void defaults_are_filled_and_hostnames_lowercased(void **state)
{
	(void)state;
	json_t *rules = NULL;
	const char *code = NULL;
	assert_int_equal(
	    validate("{\"name\":\"x\",\"rules\":[{\"match\":{\"hostname\":\"API.Example.com\"},"
	             "\"target\":{\"instance\":\"web\",\"port\":8080}}]}",
	             &rules, &code),
	    0);
	json_t *r = json_array_get(rules, 0);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r, "match"), "hostname")),
	    "api.example.com");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "match"), "port")),
	                 80);
	assert_true(json_is_false(json_object_get(r, "tls")));
	assert_true(json_is_false(json_object_get(r, "redirect_http")));
	json_decref(rules);
}

static void bad_rules_are_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"rules\":[]}",
		"{\"rules\":{}}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"-a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a..com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com.\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a_b.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\",\"port\":0},\"target\":{"
		"\"instance\":\"w\",\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":70000}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"W "
		"W\",\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"{app}"
		"\",\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"x{a}.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1},\"tls\":\"yes\"}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1},"
		"\"request_header_auth\":{\"header\":\"Authorization\",\"value\":"
		"\"0123456789abcdef0123456789abcdef\"}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1},"
		"\"request_header_auth\":{\"header\":\"X-Key\",\"value\":\"short\"}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}},"
		"{\"match\":{\"hostname\":\"a.com\",\"port\":80},\"target\":{\"instance\":\"v\","
		"\"port\":2}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1}}],"
		"\"tags\":{\"k\":5}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *rules = NULL;
		const char *code = NULL;
		if (validate(bad[i], &rules, &code) == 0) {
			print_error("accepted: %s\n", bad[i]);
			fail();
		}
		assert_null(rules);
	}
}

static void literal_and_pattern_matching(void **state)
{
	(void)state;
	char out[64];
	assert_true(hm_route_match("api.example.com", "api.example.com", "web", out, sizeof(out)));
	assert_string_equal(out, "web");
	assert_false(
	    hm_route_match("api.example.com", "x.api.example.com", "web", out, sizeof(out)));
	assert_true(hm_route_match("{instance}.example.com", "shop.example.com", "{instance}", out,
	                           sizeof(out)));
	assert_string_equal(out, "shop");
	assert_true(hm_route_match("{app}.{env}.example.com", "shop.prod.example.com",
	                           "{app}-{env}", out, sizeof(out)));
	assert_string_equal(out, "shop-prod");
	/* a capture is one label: it never spans dots, and is never empty */
	assert_false(hm_route_match("{instance}.example.com", "a.b.example.com", "{instance}", out,
	                            sizeof(out)));
	assert_false(hm_route_match("{instance}.example.com", ".example.com", "{instance}", out,
	                            sizeof(out)));
	assert_false(hm_route_match("{instance}.example.com", "example.com", "{instance}", out,
	                            sizeof(out)));
	assert_false(hm_route_match("{instance}.example.com", "a_b.example.com", "{instance}", out,
	                            sizeof(out)));
	assert_true(hm_route_is_pattern("{x}.a.com"));
	assert_false(hm_route_is_pattern("x.a.com"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_filled_and_hostnames_lowercased),
		cmocka_unit_test(bad_rules_are_refused),
		cmocka_unit_test(literal_and_pattern_matching),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
