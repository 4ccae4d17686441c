/*
 * Unit tests for ingress/route: what an ingress request may contain (a
 * body read by the Hypeman dialect, hm_rest_parse_ingress, then checked by
 * the domain's hm_route_check and tag rules, as a create does before it
 * binds anything), and how a Host header meets literal and pattern
 * hostnames.
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
#include "core/tags.h"
#include "ingress/ingress.h"
#include "ingress/route.h"

static json_t *req(const char *json)
{
	json_error_t e;
	json_t *j = json_loads(json, 0, &e);
	assert_non_null(j);
	return j;
}

/* The checks of a create body; out/hosts: the normalised rules, which
 * borrow from *doc (the body, the caller's to let go). */
static int validate_doc(const char *json, json_t **doc, struct hm_ingress_rule *out,
                        char (*hosts)[256], size_t *n, const char **code)
{
	json_t *r = *doc = req(json);
	struct hm_err *err = NULL;
	struct hm_ingress_create c;
	int rc = hm_rest_parse_ingress(r, &c, &err);
	if (rc == 0)
		rc = hm_route_check(c.rules, c.nrules, out, hosts, &err);
	if (rc == 0 && c.tags)
		rc = hm_tags_validate(c.tags, &err);
	*n = c.nrules;
	if (rc < 0) {
		*code = err->code;
		assert_int_equal(err->kind, HM_ERR_INVALID);
		hm_err_free(err);
	}
	return rc;
}

static int validate(const char *json, struct hm_ingress_rule *out, char (*hosts)[256], size_t *n,
                    const char **code)
{
	json_t *doc = NULL;
	int rc = validate_doc(json, &doc, out, hosts, n, code);
	json_decref(doc);
	return rc;
}

static void defaults_are_filled_and_hostnames_lowercased(void **state)
{
	(void)state;
	struct hm_ingress_rule out[HM_ROUTE_MAX_RULES];
	char hosts[HM_ROUTE_MAX_RULES][256];
	size_t n = 0;
	const char *code = NULL;
	json_t *doc = NULL;
	assert_int_equal(
	    validate_doc("{\"name\":\"x\",\"rules\":[{\"match\":{\"hostname\":\"API.Example.com\"},"
	                 "\"target\":{\"instance\":\"web\",\"port\":8080}}]}",
	                 &doc, out, hosts, &n, &code),
	    0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].hostname, "api.example.com");
	assert_ptr_equal(out[0].hostname, hosts[0]);
	assert_int_equal(out[0].port, 80);
	assert_string_equal(out[0].instance, "web");
	assert_int_equal(out[0].target_port, 8080);
	assert_false(out[0].tls);
	assert_false(out[0].redirect_http);
	assert_null(out[0].auth_header);
	json_decref(doc);
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
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1},\"redirect_http\":true}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{\"instance\":\"w\","
		"\"port\":1},\"request_header_auth\":{\"header\":\"X-Key\"}}]}",
		"{\"rules\":[{\"match\":{\"hostname\":\"a.com\",\"port\":4294967377},"
		"\"target\":{\"instance\":\"w\",\"port\":1}}]}",
		"{\"name\":5,\"rules\":[{\"match\":{\"hostname\":\"a.com\"},\"target\":{"
		"\"instance\":\"w\",\"port\":1}}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hm_ingress_rule out[HM_ROUTE_MAX_RULES];
		char hosts[HM_ROUTE_MAX_RULES][256];
		size_t n = 0;
		const char *code = NULL;
		if (validate(bad[i], out, hosts, &n, &code) == 0) {
			print_error("accepted: %s\n", bad[i]);
			fail();
		}
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
