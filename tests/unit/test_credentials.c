/*
 * Unit tests for instance/credentials: a create's credential policy checked
 * field by field (each refusal names its field), host patterns and their
 * matching, and the split of a request env into the guest's (placeholders,
 * no sources) and the host's secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/err.h"
#include "instance/instances.h"
#include "instance/internal.h"

static struct hm_credential one(const char *env, const char *source, const char *header,
                                const char *format, const char *host)
{
	struct hm_credential c = { .env = env, .source = source, .ninject = 1 };
	c.inject[0] = (struct hm_credential_inject){ .header = header, .format = format };
	if (host) {
		c.inject[0].hosts[0] = host;
		c.inject[0].nhosts = 1;
	}
	return c;
}

static void expect_refusal(const struct hm_credential *c, size_t n, json_t *env,
                           enum hm_egress_mode eg, const char *words)
{
	struct hm_err *err = NULL;
	assert_int_equal(inst_credentials_check(c, n, env, eg, &err), -1);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	if (!strstr(err->msg, words))
		fail_msg("`%s` does not say `%s`", err->msg, words);
	hm_err_free(err);
}

static void each_bad_field_is_named(void **state)
{
	(void)state;
	json_t *env = json_pack("{s:s,s:s}", "REAL", "sk-123", "BAD", "a\r\nb");
	struct hm_credential ok = one("KEY", "REAL", "Authorization", "Bearer ${value}", NULL);
	assert_int_equal(inst_credentials_check(&ok, 1, env, HM_EGRESS_ALL, NULL), 0);
	expect_refusal(&ok, 1, env, HM_EGRESS_OFF, "network.egress.enabled");
	struct hm_credential c = one("KEY", "REAL", "Authorization", "Bearer", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.KEY.inject[0].as.format`");
	c = one("KEY", "MISSING", "Authorization", "${value}", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.KEY.source.env`");
	c = one("KEY", "BAD", "Authorization", "${value}", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`env.BAD`");
	c = one("KEY", "REAL", "Host", "${value}", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.KEY.inject[0].as.header`");
	c = one("KEY", "REAL", "Bad Header", "${value}", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "as.header");
	c = one("1KEY", "REAL", "Authorization", "${value}", NULL);
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.1KEY`");
	static const char *const bad_hosts[] = { "*",       "*.",           "a*.example.com",
		                                 "a.*.com", "http://a.com", "a.com:443",
		                                 "a..com",  "-a.com",       "",
		                                 "a.com." };
	for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
		c = one("KEY", "REAL", "Authorization", "${value}", bad_hosts[i]);
		expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.KEY.inject[0].hosts[0]`");
	}
	c = one("KEY", "REAL", "Authorization", "${value}", NULL);
	c.ninject = 0;
	expect_refusal(&c, 1, env, HM_EGRESS_ALL, "`credentials.KEY.inject`");
	struct hm_credential two[2] = { ok, ok };
	expect_refusal(two, 2, env, HM_EGRESS_ALL, "twice");
	json_decref(env);
}

static void patterns_match_exactly_or_subdomains_only(void **state)
{
	(void)state;
	assert_true(inst_host_pattern_ok("api.example.com"));
	assert_true(inst_host_pattern_ok("*.example.com"));
	assert_true(inst_host_pattern_ok("192.0.2.2"));
	assert_true(inst_host_matches("api.example.com", "API.example.com"));
	assert_false(inst_host_matches("api.example.com", "x.api.example.com"));
	assert_true(inst_host_matches("*.example.com", "a.example.com"));
	assert_true(inst_host_matches("*.example.com", "a.b.example.com"));
	assert_false(inst_host_matches("*.example.com", "example.com"));
	assert_false(inst_host_matches("*.example.com", "badexample.com"));
	assert_false(inst_host_matches("*.example.com", "example.com.evil.net"));
}

static void the_guest_sees_placeholders_and_no_source(void **state)
{
	(void)state;
	struct hm_credential c[2] = {
		one("OPENAI_KEY", "OPENAI_KEY", "Authorization", "Bearer ${value}", NULL),
		one("GH", "REAL_GH", "X-Token", "${value}", "*.github.com"),
	};
	json_t *env =
	    json_pack("{s:s,s:s,s:s}", "OPENAI_KEY", "sk-1", "REAL_GH", "gh-2", "PORT", "80");
	json_t *creds = inst_credentials_json(c, 2);
	json_t *secrets = NULL;
	json_t *guest = inst_credentials_split_env(creds, env, &secrets);
	assert_string_equal(json_string_value(json_object_get(guest, "OPENAI_KEY")),
	                    "mock-OPENAI_KEY");
	assert_string_equal(json_string_value(json_object_get(guest, "GH")), "mock-GH");
	assert_null(json_object_get(guest, "REAL_GH"));
	assert_string_equal(json_string_value(json_object_get(guest, "PORT")), "80");
	assert_string_equal(json_string_value(json_object_get(secrets, "OPENAI_KEY")), "sk-1");
	assert_string_equal(json_string_value(json_object_get(secrets, "REAL_GH")), "gh-2");
	assert_int_equal(json_object_size(secrets), 2);
	char *text = json_dumps(creds, JSON_COMPACT); /* the stored policy: no values */
	assert_null(strstr(text, "sk-1"));
	assert_null(strstr(text, "gh-2"));
	assert_true(inst_credential_source(creds, "REAL_GH"));
	assert_false(inst_credential_source(creds, "GH"));
	assert_true(inst_credential_guest_var(creds, "GH"));
	free(text);
	json_decref(guest);
	json_decref(secrets);
	json_decref(creds);
	json_decref(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(each_bad_field_is_named),
		cmocka_unit_test(patterns_match_exactly_or_subdomains_only),
		cmocka_unit_test(the_guest_sees_placeholders_and_no_source),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
