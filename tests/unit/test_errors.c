/*
 * Unit tests for core/err and api/errors: the kind -> HTTP status and
 * default code table, custom codes, hm_err_set/wrap/errno, and the
 * {code,message} response with its 409 and 401 headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "core/err.h"

static const struct {
	enum hm_err_kind kind;
	int status;
	const char *code;
} table[] = {
	{ HM_ERR_INTERNAL, 500, "internal_error" },
	{ HM_ERR_INVALID, 400, "invalid_request" },
	{ HM_ERR_UNAUTHORIZED, 401, "Unauthorized" },
	{ HM_ERR_FORBIDDEN, 403, "Forbidden" },
	{ HM_ERR_NOT_FOUND, 404, "not_found" },
	{ HM_ERR_METHOD, 405, "method_not_allowed" },
	{ HM_ERR_CONFLICT, 409, "conflict" },
	{ HM_ERR_TOO_LARGE, 413, "payload_too_large" },
	{ HM_ERR_MEDIA_TYPE, 415, "unsupported_media_type" },
	{ HM_ERR_UNAVAILABLE, 503, "unavailable" },
	{ HM_ERR_TIMEOUT, 504, "timeout" },
	{ HM_ERR_NOT_IMPLEMENTED, 501, "not_implemented" },
	{ HM_ERR_INSUFFICIENT, 507, "insufficient_storage" },
};
#define NKINDS (sizeof(table) / sizeof(table[0]))

static void status_and_default_code(void **state)
{
	(void)state;
	for (size_t i = 0; i < NKINDS; i++) {
		struct hm_err *err = NULL;
		assert_int_equal(hm_err_set(&err, table[i].kind, NULL, "kind %zu", i), -1);
		assert_non_null(err);
		assert_int_equal(err->kind, table[i].kind);
		assert_int_equal(err->errnum, 0);
		assert_null(err->code);
		assert_int_equal(hm_err_http_status(err), table[i].status);
		assert_string_equal(hm_err_code(err), table[i].code);
		assert_true(hm_err_is(err, table[i].kind));
		assert_false(hm_err_is(err, table[(i + 1) % NKINDS].kind));
		const char *name = hm_err_kind_name(table[i].kind);
		assert_non_null(name);
		assert_string_not_equal(name, "unknown");
		hm_err_free(err);
	}
	/* every kind has a row (the table above covers the enum) */
	assert_int_equal(NKINDS, HM_ERR_INSUFFICIENT + 1);
}

static void null_and_out_of_range(void **state)
{
	(void)state;
	assert_int_equal(hm_err_http_status(NULL), 500);
	assert_string_equal(hm_err_code(NULL), "internal_error");
	assert_false(hm_err_is(NULL, HM_ERR_INTERNAL));
	struct hm_err bogus = { .kind = (enum hm_err_kind)999, .msg = NULL };
	assert_int_equal(hm_err_http_status(&bogus), 500);
	assert_string_equal(hm_err_code(&bogus), "internal_error");
	assert_string_equal(hm_err_kind_name((enum hm_err_kind)999), "unknown");
	hm_err_free(NULL);
	/* err == NULL: nothing is filled, -1 is still returned */
	assert_int_equal(hm_err_set(NULL, HM_ERR_CONFLICT, NULL, "x %d", 1), -1);
	assert_int_equal(hm_err_errno(NULL, ENOENT, "x"), -1);
	assert_int_equal(hm_err_wrap(NULL, "ctx"), -1);
	struct hm_err *none = NULL;
	assert_int_equal(hm_err_wrap(&none, "ctx"), -1);
	assert_null(none);
}

static void custom_code_and_message(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	hm_err_set(&err, HM_ERR_INVALID, "invalid_size", "invalid size `%s` (%d)", "1XB", 7);
	assert_string_equal(err->msg, "invalid size `1XB` (7)");
	assert_string_equal(hm_err_code(err), "invalid_size");
	assert_int_equal(hm_err_http_status(err), 400);

	/* setting again replaces the previous error (ASan checks the old one is freed) */
	hm_err_set(&err, HM_ERR_CONFLICT, NULL, "second");
	assert_int_equal(err->kind, HM_ERR_CONFLICT);
	assert_null(err->code);
	assert_string_equal(err->msg, "second");
	assert_string_equal(hm_err_code(err), "conflict");
	hm_err_free(err);

	/* a message with a percent sign passed through %s stays verbatim */
	err = NULL;
	hm_err_set(&err, HM_ERR_NOT_FOUND, NULL, "%s", "100%d");
	assert_string_equal(err->msg, "100%d");
	hm_err_free(err);
}

static void wrap_prefixes_context(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	hm_err_set(&err, HM_ERR_NOT_FOUND, "image_not_found", "no image `%s`", "alpine");
	assert_int_equal(hm_err_wrap(&err, "pull %s", "alpine"), -1);
	assert_string_equal(err->msg, "pull alpine: no image `alpine`");
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	assert_string_equal(hm_err_code(err), "image_not_found");
	assert_int_equal(hm_err_http_status(err), 404);
	/* wrapping nests outward */
	hm_err_wrap(&err, "request %d", 3);
	assert_string_equal(err->msg, "request 3: pull alpine: no image `alpine`");
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);

	/* errnum survives a wrap too */
	err = NULL;
	hm_err_errno(&err, EACCES, "open `%s`", "/x");
	hm_err_wrap(&err, "load");
	assert_int_equal(err->errnum, EACCES);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	hm_err_free(err);
}

static void errno_appends_strerror(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	assert_int_equal(hm_err_errno(&err, ENOENT, "open `%s`", "/nope"), -1);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	assert_int_equal(err->errnum, ENOENT);
	assert_null(err->code);
	assert_int_equal(hm_err_http_status(err), 500);
	assert_string_equal(hm_err_code(err), "internal_error");
	char want[256];
	snprintf(want, sizeof(want), "open `/nope`: %s", strerror(ENOENT));
	assert_string_equal(err->msg, want);

	/* replaces an earlier error */
	hm_err_errno(&err, ENOSPC, "write");
	assert_int_equal(err->errnum, ENOSPC);
	snprintf(want, sizeof(want), "write: %s", strerror(ENOSPC));
	assert_string_equal(err->msg, want);
	hm_err_free(err);
}

static void cleanup_attribute_frees(void **state)
{
	(void)state;
	/* ASan reports a leak if the cleanup attribute does not free it */
	_cleanup_err_ struct hm_err *err = NULL;
	hm_err_set(&err, HM_ERR_INTERNAL, NULL, "leak check");
	assert_non_null(err);
}

static const char *header(const struct hm_resp *resp, const char *name)
{
	for (size_t i = 0; i < resp->nheaders; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

/* The NULL-safe accessors: callers may pass no error object at all. */
static void null_safe_accessors(void **state)
{
	(void)state;
	assert_int_equal(hm_err_recast(NULL, HM_ERR_CONFLICT, "x"), -1);
	assert_string_equal(hm_err_message(NULL, "none"), "none");
	assert_false(hm_err_is_kind(NULL, HM_ERR_CONFLICT));
	assert_int_equal(hm_err_errnum(NULL), 0);
	hm_err_set_errnum(NULL, EIO);
	struct hm_err *e = NULL;
	assert_string_equal(hm_err_message(&e, "none"), "none");
	assert_int_equal(hm_err_recast(&e, HM_ERR_CONFLICT, NULL), -1);
	assert_null(e);
	hm_err_errno(&e, ENOENT, "open `x`");
	assert_int_equal(hm_err_errnum(&e), ENOENT);
	hm_err_recast(&e, HM_ERR_NOT_FOUND, "no_such");
	assert_true(hm_err_is_kind(&e, HM_ERR_NOT_FOUND));
	assert_string_equal(hm_err_code(e), "no_such");
	hm_err_set_errnum(&e, EIO);
	assert_int_equal(e->errnum, EIO);
	assert_string_equal(hm_err_message(&e, "none"), "open `x`: No such file or directory");
	hm_err_free(e);
}

static void check_body(const struct hm_resp *resp, const char *code, const char *message)
{
	assert_non_null(resp->json);
	assert_true(json_is_object(resp->json));
	assert_int_equal(json_object_size(resp->json), 2);
	assert_string_equal(json_string_value(json_object_get(resp->json, "code")), code);
	assert_string_equal(json_string_value(json_object_get(resp->json, "message")), message);
}

static void resp_error_body_and_status(void **state)
{
	(void)state;
	for (size_t i = 0; i < NKINDS; i++) {
		struct hm_err *err = NULL;
		hm_err_set(&err, table[i].kind, NULL, "message %zu", i);
		struct hm_resp resp = { 0 };
		hm_resp_error(&resp, err);
		assert_int_equal(resp.status, table[i].status);
		char msg[32];
		snprintf(msg, sizeof(msg), "message %zu", i);
		check_body(&resp, table[i].code, msg);
		if (table[i].status == 409) {
			assert_string_equal(header(&resp, "x-should-retry"), "false");
		} else {
			assert_null(header(&resp, "x-should-retry"));
		}
		if (table[i].status == 401) {
			assert_string_equal(header(&resp, "WWW-Authenticate"), "Bearer");
		} else {
			assert_null(header(&resp, "WWW-Authenticate"));
		}
		if (table[i].status != 409 && table[i].status != 401)
			assert_int_equal(resp.nheaders, 0);
		hm_resp_done(&resp);
		assert_null(resp.json);
		assert_int_equal(resp.nheaders, 0);
		hm_err_free(err);
	}
}

static void resp_error_custom_code_and_null(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	hm_err_set(&err, HM_ERR_CONFLICT, "image_in_use", "image `a` is in use");
	struct hm_resp resp = { 0 };
	hm_resp_error(&resp, err);
	assert_int_equal(resp.status, 409);
	check_body(&resp, "image_in_use", "image `a` is in use");
	assert_string_equal(header(&resp, "x-should-retry"), "false");
	hm_resp_done(&resp);
	hm_err_free(err);

	/* no error object at all: a generic 500 */
	hm_resp_error(&resp, NULL);
	assert_int_equal(resp.status, 500);
	check_body(&resp, "internal_error", "internal error");
	hm_resp_done(&resp);

	/* a response that already had a body gets it replaced (ASan checks the old one is freed) */
	hm_resp_json(&resp, 200, json_pack("{s:b}", "ok", 1));
	err = NULL;
	hm_err_set(&err, HM_ERR_UNAUTHORIZED, NULL, "token has expired");
	hm_resp_error(&resp, err);
	assert_int_equal(resp.status, 401);
	check_body(&resp, "Unauthorized", "token has expired");
	assert_string_equal(header(&resp, "WWW-Authenticate"), "Bearer");
	hm_resp_done(&resp);
	hm_err_free(err);

	/* a message quoting invalid UTF-8 (a %ff in a path, a cut multibyte
	 * character): the body is still JSON, the bad bytes U+FFFD */
	err = NULL;
	hm_err_set(&err, HM_ERR_NOT_FOUND, NULL, "instance `\xff` not found, `%.1s`", "\xc3\xa9");
	hm_resp_error(&resp, err);
	assert_int_equal(resp.status, 404);
	check_body(&resp, "not_found", "instance `\xef\xbf\xbd` not found, `\xef\xbf\xbd`");
	hm_resp_done(&resp);
	hm_err_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(status_and_default_code),
		cmocka_unit_test(null_safe_accessors),
		cmocka_unit_test(null_and_out_of_range),
		cmocka_unit_test(custom_code_and_message),
		cmocka_unit_test(wrap_prefixes_context),
		cmocka_unit_test(errno_appends_strerror),
		cmocka_unit_test(cleanup_attribute_frees),
		cmocka_unit_test(resp_error_body_and_status),
		cmocka_unit_test(resp_error_custom_code_and_null),
	};
	return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
