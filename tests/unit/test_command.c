/*
 * Unit tests for instance/command: Docker's entrypoint/cmd rules, env
 * merging, and the validation of names, argv, env and ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/names.h"
#include "instance/command.h"

static json_t *J(const char *text)
{
	return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

/* argv for (image entrypoint, image cmd, request entrypoint, request cmd) as JSON text. */
static char *argv_of(const char *ie, const char *ic, const char *re, const char *rc)
{
	json_t *a = J(ie), *b = J(ic), *c = J(re), *d = J(rc), *out = NULL;
	struct hm_err *err = NULL;
	int r = hm_command_argv(a, b, c, d, &out, &err);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
	if (r < 0) {
		char *m = strdup(err->code ? err->code : "error");
		hm_err_free(err);
		return m;
	}
	char *s = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return s;
}

static void expect_argv(const char *ie, const char *ic, const char *re, const char *rc,
                        const char *want)
{
	char *got = argv_of(ie, ic, re, rc);
	assert_string_equal(got, want);
	free(got);
}

static void docker_rules(void **state)
{
	(void)state;
	/* image only */
	expect_argv("[\"/ep\"]", "[\"a\",\"b\"]", NULL, NULL, "[\"/ep\",\"a\",\"b\"]");
	expect_argv("null", "[\"/bin/sh\"]", NULL, NULL, "[\"/bin/sh\"]");
	/* cmd override keeps the entrypoint */
	expect_argv("[\"/ep\"]", "[\"a\"]", NULL, "[\"x\"]", "[\"/ep\",\"x\"]");
	/* entrypoint override drops the image cmd */
	expect_argv("[\"/ep\"]", "[\"a\"]", "[\"/new\"]", NULL, "[\"/new\"]");
	/* both overridden */
	expect_argv("[\"/ep\"]", "[\"a\"]", "[\"/new\"]", "[\"y\"]", "[\"/new\",\"y\"]");
	/* an empty entrypoint clears it; the request cmd runs alone */
	expect_argv("[\"/ep\"]", "[\"a\"]", "[]", "[\"echo\",\"z\"]", "[\"echo\",\"z\"]");
	/* shell form strings become /bin/sh -c */
	expect_argv("\"run.sh --fast\"", NULL, NULL, NULL,
	            "[\"/bin/sh\",\"-c\",\"run.sh --fast\"]");
	expect_argv(NULL, "\"echo $HOME\"", NULL, NULL, "[\"/bin/sh\",\"-c\",\"echo $HOME\"]");
	/* a null override is no override */
	expect_argv("[\"/ep\"]", "[\"a\"]", "null", "null", "[\"/ep\",\"a\"]");
	/* nothing to run */
	expect_argv(NULL, NULL, NULL, NULL, "missing_command");
	expect_argv("[\"/ep\"]", NULL, "[]", NULL, "missing_command");
	expect_argv(NULL, "[\"\"]", NULL, NULL, "invalid_command");
	expect_argv(NULL, "[1]", NULL, NULL, "invalid_command");
}

static void env_merge(void **state)
{
	(void)state;
	json_t *img = J("{\"PATH\":\"/bin\",\"FOO\":\"img\"}");
	json_t *req = J("{\"FOO\":\"req\",\"NEW\":\"1\"}");
	json_t *env = hm_command_env(img, req);
	char *s = json_dumps(env, JSON_COMPACT);
	assert_string_equal(s, "{\"PATH\":\"/bin\",\"FOO\":\"req\",\"NEW\":\"1\"}");
	free(s);
	json_decref(env);
	env = hm_command_env(NULL, NULL);
	assert_int_equal(json_object_size(env), 0);
	json_decref(env);
	json_decref(img);
	json_decref(req);
}

static int check_env(const char *text)
{
	json_t *e = J(text);
	struct hm_err *err = NULL;
	int r = hm_command_check_env(e, &err);
	if (r < 0) {
		assert_int_equal(err->kind, HM_ERR_INVALID);
		hm_err_free(err);
	}
	json_decref(e);
	return r;
}

static int check_args(const char *text)
{
	json_t *e = J(text);
	struct hm_err *err = NULL;
	int r = hm_command_check_args(e, "cmd", &err);
	hm_err_free(err);
	json_decref(e);
	return r;
}

static void validation(void **state)
{
	(void)state;
	assert_int_equal(check_env("{\"A\":\"1\",\"B_2\":\"x=y\"}"), 0);
	assert_int_equal(check_env("{\"A\":1}"), -1);
	assert_int_equal(check_env("{\"\":\"x\"}"), -1);
	assert_int_equal(check_env("{\"A=B\":\"x\"}"), -1);
	assert_int_equal(check_env("{\"A\":\"a\\u0000b\"}"), -1);
	assert_int_equal(check_env("[\"A=1\"]"), -1);
	assert_int_equal(check_args("[\"echo\",\"hi there\"]"), 0);
	assert_int_equal(check_args("[]"), 0);
	assert_int_equal(check_args("\"echo\""), -1);
	assert_int_equal(check_args("[\"a\",2]"), -1);
	assert_int_equal(check_args("[\"a\\u0000\"]"), -1);
	/* bounded: a 200 KiB argument is refused */
	char *big = malloc(200 * 1024 + 8);
	memset(big, 'x', 200 * 1024);
	big[200 * 1024] = '\0';
	json_t *arr = json_pack("[s]", big);
	struct hm_err *err = NULL;
	assert_int_equal(hm_command_check_args(arr, "cmd", &err), -1);
	hm_err_free(err);
	json_decref(arr);
	free(big);
}

static void names_and_ids(void **state)
{
	(void)state;
	const char *good[] = { "a", "web", "my-app-1", "0", "a1-b2" };
	const char *bad[] = {
		"",    "-a",  "a-",
		"A",   "a_b", "a.b",
		"a b", "ä",   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(hm_name_check("instance", good[i], NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hm_err *err = NULL;
		assert_int_equal(hm_name_check("instance", bad[i], &err), -1);
		assert_string_equal(err->code, "invalid_name");
		hm_err_free(err);
	}
	char a[25], b[25];
	hm_id_new(a);
	hm_id_new(b);
	assert_int_equal(strlen(a), 24);
	assert_true(a[0] >= 'a' && a[0] <= 'z');
	assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyz0123456789"), 24);
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(docker_rules),
		cmocka_unit_test(env_merge),
		cmocka_unit_test(validation),
		cmocka_unit_test(names_and_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
