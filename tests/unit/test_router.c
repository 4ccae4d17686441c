/*
 * Unit tests for api/router against a local route table: literal and
 * {param} matches, per-segment percent-decoding, 404 versus 405 with its
 * Allow list, trailing and doubled slashes, and the segment limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/dialect.h"
#include "api/router.h"
#include "core/err.h"

static int dummy(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)req;
	(void)resp;
	(void)err;
	return 0;
}

#define SIXTEEN "/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s"

static const struct hm_route routes[] = {
	{ "GET", "/", NULL, HM_ROUTE_PUBLIC, dummy },
	{ "GET", "/health", NULL, HM_ROUTE_PUBLIC, dummy },
	{ "GET", "/images", "image:read", 0, dummy },
	{ "POST", "/images", "image:write", HM_ROUTE_JSON_BODY, dummy },
	{ "POST", "/images/load", "image:write", HM_ROUTE_UPLOAD, dummy },
	{ "GET", "/images/{name}", "image:read", 0, dummy },
	{ "DELETE", "/images/{name}", "image:delete", 0, dummy },
	{ "GET", "/instances/{id}/logs", "instance:read", 0, dummy },
	{ "PUT", "/a/{x}/b/{y}", "instance:write", 0, dummy },
	{ "GET", SIXTEEN, NULL, HM_ROUTE_PUBLIC, dummy },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Index of the route at `method path`, or -1 with the error kind in *kind. */
static int match(const char *method, const char *path, struct hm_params *params, char **allow,
                 enum hm_err_kind *kind)
{
	const struct hm_route *r = NULL;
	struct hm_err *err = NULL;
	if (hm_router_match(routes, NROUTES, method, path, &r, params, allow, &err) < 0) {
		assert_non_null(err);
		assert_null(r);
		assert_int_equal(params->n, 0);
		if (kind)
			*kind = err->kind;
		hm_err_free(err);
		return -1;
	}
	assert_null(err);
	assert_non_null(r);
	assert_true(r >= routes && r < routes + NROUTES);
	return (int)(r - routes);
}

static void expect_route(const char *method, const char *path, int want)
{
	struct hm_params params;
	assert_int_equal(match(method, path, &params, NULL, NULL), want);
	hm_params_done(&params);
}

static void expect_fail(const char *method, const char *path, enum hm_err_kind want)
{
	struct hm_params params;
	enum hm_err_kind kind = HM_ERR_INTERNAL;
	char *allow = NULL;
	assert_int_equal(match(method, path, &params, &allow, &kind), -1);
	assert_int_equal(kind, want);
	if (want != HM_ERR_METHOD)
		assert_null(allow);
	free(allow);
	hm_params_done(&params);
}

static void exact_match(void **state)
{
	(void)state;
	expect_route("GET", "/health", 1);
	expect_route("GET", "/images", 2);
	expect_route("POST", "/images", 3);
	expect_route("POST", "/images/load", 4);
	expect_route("GET", "/", 0);
	struct hm_params params;
	assert_int_equal(match("GET", "/health", &params, NULL, NULL), 1);
	assert_int_equal(params.n, 0);
	assert_null(hm_params_get(&params, "name"));
	hm_params_done(&params);
	/* literal segments are case-sensitive and compared whole */
	expect_fail("GET", "/Health", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/healthz", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/heal", HM_ERR_NOT_FOUND);
	/* the method is compared exactly */
	expect_fail("get", "/health", HM_ERR_METHOD);
}

static void param_capture(void **state)
{
	(void)state;
	struct hm_params params;
	assert_int_equal(match("GET", "/images/alpine", &params, NULL, NULL), 5);
	assert_int_equal(params.n, 1);
	assert_string_equal(hm_params_get(&params, "name"), "alpine");
	assert_null(hm_params_get(&params, "nam"));
	assert_null(hm_params_get(&params, "names"));
	assert_null(hm_params_get(&params, "{name}"));
	hm_params_done(&params);
	assert_int_equal(params.n, 0);

	assert_int_equal(match("DELETE", "/images/alpine", &params, NULL, NULL), 6);
	assert_string_equal(hm_params_get(&params, "name"), "alpine");
	hm_params_done(&params);

	assert_int_equal(match("GET", "/instances/abc123/logs", &params, NULL, NULL), 7);
	assert_int_equal(params.n, 1);
	assert_string_equal(hm_params_get(&params, "id"), "abc123");
	hm_params_done(&params);

	assert_int_equal(match("PUT", "/a/one/b/two", &params, NULL, NULL), 8);
	assert_int_equal(params.n, 2);
	assert_string_equal(hm_params_get(&params, "x"), "one");
	assert_string_equal(hm_params_get(&params, "y"), "two");
	hm_params_done(&params);

	/* literal parts of a param pattern must still match */
	expect_fail("PUT", "/a/one/c/two", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/instances/abc123", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/instances/abc123/log", HM_ERR_NOT_FOUND);
	/* a param matches exactly one segment */
	expect_fail("GET", "/images/docker.io/library/alpine", HM_ERR_NOT_FOUND);
}

static void literal_wins_by_table_order(void **state)
{
	(void)state;
	/* POST /images/load is before the {name} routes, so it is the literal route. */
	struct hm_params params;
	assert_int_equal(match("POST", "/images/load", &params, NULL, NULL), 4);
	assert_int_equal(params.n, 0);
	hm_params_done(&params);
	/* GET finds the {name} route, with "load" as the name. */
	assert_int_equal(match("GET", "/images/load", &params, NULL, NULL), 5);
	assert_string_equal(hm_params_get(&params, "name"), "load");
	hm_params_done(&params);
}

static void percent_encoded_segment(void **state)
{
	(void)state;
	struct hm_params params;
	assert_int_equal(
	    match("GET", "/images/docker.io%2Flibrary%2Falpine:latest", &params, NULL, NULL), 5);
	assert_int_equal(params.n, 1);
	assert_string_equal(hm_params_get(&params, "name"), "docker.io/library/alpine:latest");
	hm_params_done(&params);

	assert_int_equal(
	    match("DELETE", "/images/docker.io%2flibrary%2falpine%3Alatest", &params, NULL, NULL),
	    6);
	assert_string_equal(hm_params_get(&params, "name"), "docker.io/library/alpine:latest");
	hm_params_done(&params);

	/* a space and a percent sign */
	assert_int_equal(match("GET", "/instances/a%20b%25c/logs", &params, NULL, NULL), 7);
	assert_string_equal(hm_params_get(&params, "id"), "a b%c");
	hm_params_done(&params);

	/* a single encoded slash as the whole segment */
	assert_int_equal(match("GET", "/images/%2F", &params, NULL, NULL), 5);
	assert_string_equal(hm_params_get(&params, "name"), "/");
	hm_params_done(&params);
}

static void malformed_escape(void **state)
{
	(void)state;
	expect_fail("GET", "/images/%zz", HM_ERR_INVALID);
	expect_fail("GET", "/images/abc%2", HM_ERR_INVALID);
	expect_fail("GET", "/images/abc%", HM_ERR_INVALID);
	expect_fail("GET", "/images/a%00b", HM_ERR_INVALID);
	expect_fail("DELETE", "/images/%G1", HM_ERR_INVALID);
	/* the second param bad: the first one's value must not leak (ASan checks) */
	expect_fail("PUT", "/a/good/b/%zz", HM_ERR_INVALID);

	/* the error carries its own code and 400 */
	const struct hm_route *r = NULL;
	struct hm_params params;
	struct hm_err *err = NULL;
	assert_true(
	    hm_router_match(routes, NROUTES, "GET", "/images/%zz", &r, &params, NULL, &err) < 0);
	assert_int_equal(hm_err_http_status(err), 400);
	assert_string_equal(hm_err_code(err), "invalid_path");
	hm_err_free(err);
}

static void unknown_path(void **state)
{
	(void)state;
	expect_fail("GET", "/nope", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/images/a/b", HM_ERR_NOT_FOUND);
	expect_fail("GET", "", HM_ERR_NOT_FOUND);
	expect_fail("GET", "health", HM_ERR_NOT_FOUND);
	expect_fail("GET", "images/x", HM_ERR_NOT_FOUND);
	/* an escape in a literal position is not decoded and does not match */
	expect_fail("GET", "/imag%65s", HM_ERR_NOT_FOUND);

	struct hm_err *err = NULL;
	const struct hm_route *r = NULL;
	struct hm_params params;
	assert_true(hm_router_match(routes, NROUTES, "GET", "/nope", &r, &params, NULL, &err) < 0);
	assert_int_equal(hm_err_http_status(err), 404);
	assert_non_null(strstr(err->msg, "/nope"));
	hm_err_free(err);
}

static void wrong_method(void **state)
{
	(void)state;
	struct hm_params params;
	char *allow = NULL;
	enum hm_err_kind kind;
	assert_int_equal(match("PATCH", "/images/alpine", &params, &allow, &kind), -1);
	assert_int_equal(kind, HM_ERR_METHOD);
	assert_non_null(allow);
	assert_string_equal(allow, "GET, DELETE");
	free(allow);
	allow = NULL;

	assert_int_equal(match("DELETE", "/images", &params, &allow, &kind), -1);
	assert_int_equal(kind, HM_ERR_METHOD);
	assert_string_equal(allow, "GET, POST");
	free(allow);
	allow = NULL;

	/* /images/load matches both the literal POST route and the {name} routes */
	assert_int_equal(match("PUT", "/images/load", &params, &allow, &kind), -1);
	assert_int_equal(kind, HM_ERR_METHOD);
	assert_string_equal(allow, "POST, GET, DELETE");
	free(allow);
	allow = NULL;

	assert_int_equal(match("POST", "/health", &params, &allow, &kind), -1);
	assert_int_equal(kind, HM_ERR_METHOD);
	assert_string_equal(allow, "GET");
	free(allow);
	allow = NULL;

	/* ret_allow may be NULL; status is 405 */
	const struct hm_route *r = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_router_match(routes, NROUTES, "PUT", "/images", &r, &params, NULL, &err) <
	            0);
	assert_int_equal(hm_err_http_status(err), 405);
	assert_non_null(strstr(err->msg, "GET, POST"));
	hm_err_free(err);
}

static void trailing_and_double_slashes(void **state)
{
	(void)state;
	struct hm_params params;
	/* one trailing slash is ignored */
	expect_route("GET", "/health/", 1);
	expect_route("GET", "/images/", 2);
	assert_int_equal(match("GET", "/images/alpine/", &params, NULL, NULL), 5);
	assert_string_equal(hm_params_get(&params, "name"), "alpine");
	hm_params_done(&params);
	/* "/" is the root, not an empty segment */
	expect_route("GET", "/", 0);
	/* empty segments anywhere else are refused as not found */
	expect_fail("GET", "//", HM_ERR_NOT_FOUND);
	expect_fail("GET", "//health", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/health//", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/images//alpine", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/instances//logs", HM_ERR_NOT_FOUND);
	expect_fail("GET", "/images/alpine//", HM_ERR_NOT_FOUND);
}

static void segment_limit(void **state)
{
	(void)state;
	/* exactly HM_ROUTER_MAX_SEGMENTS segments is fine, with or without a trailing slash */
	expect_route("GET", SIXTEEN, 9);
	expect_route("GET", SIXTEEN "/", 9);
	/* one more is refused (and does not overrun the segment array) */
	expect_fail("GET", SIXTEEN "/s", HM_ERR_NOT_FOUND);
	expect_fail("GET", SIXTEEN "/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s", HM_ERR_NOT_FOUND);
	/* fewer does not match the long route */
	expect_fail("GET", "/s/s/s", HM_ERR_NOT_FOUND);
}

static void empty_table(void **state)
{
	(void)state;
	const struct hm_route *r = NULL;
	struct hm_params params;
	struct hm_err *err = NULL;
	assert_true(hm_router_match(routes, 0, "GET", "/health", &r, &params, NULL, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
}

/* Dialects by prefix: a whole leading segment, first match wins, the root last. */
static void dialect_by_prefix(void **state)
{
	(void)state;
	static const struct hm_dialect v1 = { .name = "v1", .prefix = "/v1" };
	static const struct hm_dialect root = { .name = "root", .prefix = "" };
	const struct hm_dialect *const both[] = { &v1, &root };
	assert_ptr_equal(hm_dialect_pick(both, 2, "/v1"), &v1);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/v1/instances"), &v1);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/v1/"), &v1);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/v10/instances"), &root);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/v"), &root);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/instances"), &root);
	assert_ptr_equal(hm_dialect_pick(both, 2, "/"), &root);
	const struct hm_dialect *const only_v1[] = { &v1 };
	assert_null(hm_dialect_pick(only_v1, 1, "/instances"));
	assert_null(hm_dialect_pick(only_v1, 0, "/v1"));
	/* What the daemon serves: the Hypeman API at the root, the last entry. */
	assert_true(hm_dialects_count >= 1);
	assert_ptr_equal(hm_dialects[hm_dialects_count - 1], &hm_dialect_hypeman);
	assert_ptr_equal(hm_dialect_pick(hm_dialects, hm_dialects_count, "/instances"),
	                 &hm_dialect_hypeman);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_match),
		cmocka_unit_test(dialect_by_prefix),
		cmocka_unit_test(param_capture),
		cmocka_unit_test(literal_wins_by_table_order),
		cmocka_unit_test(percent_encoded_segment),
		cmocka_unit_test(malformed_escape),
		cmocka_unit_test(unknown_path),
		cmocka_unit_test(wrong_method),
		cmocka_unit_test(trailing_and_double_slashes),
		cmocka_unit_test(segment_limit),
		cmocka_unit_test(empty_table),
	};
	return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
