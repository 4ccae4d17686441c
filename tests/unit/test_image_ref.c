/*
 * Tests for image/ref: Docker-style reference normalization (default
 * registry, library/ prefix, default tag, ports and IPv6 registries,
 * digests), the invalid_name errors, and the endpoint and plain-HTTP
 * decisions the registry client makes from a reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "image/ref.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DGST  "sha256:" HEX64
#define T129                                                                                       \
	"tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" \
	"tttttt"                                                                                   \
	"ttttttttttttttttttttttttttttttttttt"
#define T128                                                                                       \
	"tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" \
	"tttttt"                                                                                   \
	"tttttttttttttttttttttttttttttttttt"

struct ok_case {
	const char *in;
	const char *string; /* hm_image_ref_string */
	const char *repo;   /* hm_image_ref_repo, or NULL to skip */
};

static const struct ok_case ok_cases[] = {
	{ "alpine", "docker.io/library/alpine:latest", "docker.io/library/alpine" },
	{ "nginx:1.27", "docker.io/library/nginx:1.27", "docker.io/library/nginx" },
	{ "library/nginx", "docker.io/library/nginx:latest", NULL },
	{ "docker.io/nginx", "docker.io/library/nginx:latest", NULL },
	{ "index.docker.io/library/nginx:1", "docker.io/library/nginx:1", NULL },
	{ "Docker.IO/nginx", "docker.io/library/nginx:latest", NULL },
	{ "user/app", "docker.io/user/app:latest", "docker.io/user/app" },
	{ "ghcr.io/org/app:v1.2", "ghcr.io/org/app:v1.2", "ghcr.io/org/app" },
	{ "GHCR.io/org/app", "ghcr.io/org/app:latest", NULL },
	{ "localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app" },
	{ "localhost/app", "localhost/app:latest", NULL },
	{ "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b" },
	{ "[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x" },
	{ "[2001:db8::1]/x:y", "[2001:db8::1]/x:y", NULL },
	{ "registry.example.com:443/team/app@" DGST, "registry.example.com:443/team/app@" DGST,
	  "registry.example.com:443/team/app" },
	{ "name:tag@" DGST, "docker.io/library/name:tag@" DGST, NULL },
	{ "alpine@" DGST, "docker.io/library/alpine@" DGST, NULL },
	{ "org/a.b_c__d-e--f", "docker.io/org/a.b_c__d-e--f:latest", NULL },
	{ "quay.io/a/b/c/d:_T.x-1", "quay.io/a/b/c/d:_T.x-1", NULL },
	{ "alpine:" T128, "docker.io/library/alpine:" T128, NULL },
	{ "localhost:5000", "docker.io/library/localhost:5000", NULL }, /* Docker's reading */
	{ "host.example:65535/x", "host.example:65535/x:latest", NULL },
};

struct bad_case {
	const char *in;
	const char *why; /* substring the message must contain */
};

static const struct bad_case bad_cases[] = {
	{ "Alpine", "invalid image reference `Alpine`: repository name must be lowercase" },
	{ "ghcr.io/Org/app", "must be lowercase" },
	{ "", "empty" },
	{ " alpine", "whitespace" },
	{ "alp\tine", "whitespace or control" },
	{ "alp\x01ine", "`alp?ine`" },
	{ "a//b", "empty path component" },
	{ "a/", "empty path component" },
	{ "/a", "empty path component" },
	{ "a:", "empty tag" },
	{ "a@", "empty digest" },
	{ "a@sha256:abc", "64 lowercase hex" },
	{ "a@sha256:"
	  "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	  "64 lowercase hex" },
	{ "a@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm `md5`" },
	{ "a@sha512:" HEX64 HEX64, "unsupported digest algorithm `sha512`" },
	{ "a@" DGST "@" DGST, "more than one" },
	{ "https://x/y", "URL scheme" },
	{ "a:" T129, "invalid tag" },
	{ "a:-x", "invalid tag" },
	{ "a:t/b", "invalid registry port" /* "a:t" is a domain with a bad port */ },
	{ "a.b_c/x", "invalid registry host" /* a dot makes it a registry */ },
	{ "host:99999/x", "1-65535" },
	{ "host:0/x", "1-65535" },
	{ "host:/x", "empty registry port" },
	{ "host:12a/x", "invalid registry port" },
	{ "-bad.io/x", "invalid registry host" },
	{ "a..b/x", "invalid registry host" },
	{ "[::1/x", "unterminated IPv6" },
	{ "[zz::1]/x", "invalid IPv6" },
	{ "[]/x", "invalid IPv6" },
	{ "-a", "start and end" },
	{ "a-", "start and end" },
	{ "a___b", "invalid character" },
	{ "a.-b", "invalid character" },
	{ ":tag", "missing repository name" },
	{ "ghcr.io/", "missing repository name" },
};

static void test_parse_ok(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		_cleanup_err_ struct hm_err *err = NULL;
		struct hm_image_ref ref;
		if (hm_image_ref_parse(c->in, &ref, &err) < 0)
			fail_msg("`%s`: %s", c->in, err->msg);
		_cleanup_free_ char *s = hm_image_ref_string(&ref);
		assert_string_equal(s, c->string);
		if (c->repo) {
			_cleanup_free_ char *r = hm_image_ref_repo(&ref);
			assert_string_equal(r, c->repo);
		}
		/* Normalizing is idempotent. */
		struct hm_image_ref again;
		assert_int_equal(hm_image_ref_parse(s, &again, &err), 0);
		_cleanup_free_ char *s2 = hm_image_ref_string(&again);
		assert_string_equal(s2, s);
		hm_image_ref_done(&again);
		hm_image_ref_done(&ref);
	}
}

static void test_parse_fields(void **state)
{
	(void)state;
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_image_ref ref;
	assert_int_equal(hm_image_ref_parse("name:tag@" DGST, &ref, &err), 0);
	assert_string_equal(ref.registry, "docker.io");
	assert_string_equal(ref.repository, "library/name");
	assert_string_equal(ref.tag, "tag");
	assert_string_equal(ref.digest, DGST);
	hm_image_ref_done(&ref);

	assert_int_equal(hm_image_ref_parse("ghcr.io/o/a@" DGST, &ref, &err), 0);
	assert_null(ref.tag); /* a digest alone means no default tag */
	assert_string_equal(ref.digest, DGST);
	hm_image_ref_done(&ref);
	hm_image_ref_done(&ref); /* done twice is harmless */
}

static void test_parse_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		_cleanup_err_ struct hm_err *err = NULL;
		struct hm_image_ref ref;
		if (hm_image_ref_parse(c->in, &ref, &err) == 0)
			fail_msg("`%s` parsed as `%s/%s`", c->in, ref.registry, ref.repository);
		assert_non_null(err);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		assert_string_equal(hm_err_code(err), "invalid_name");
		if (!strstr(err->msg, c->why))
			fail_msg("`%s`: message \"%s\" lacks \"%s\"", c->in, err->msg, c->why);
		/* A failed parse leaves nothing to free. */
		assert_null(ref.registry);
		assert_null(ref.repository);
		assert_null(ref.tag);
		assert_null(ref.digest);
	}
}

static void test_parse_lengths(void **state)
{
	(void)state;
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_image_ref ref;
	char s[HM_REF_MAX_LEN + 2];

	/* Whole reference over HM_REF_MAX_LEN; the message quotes only a prefix. */
	memset(s, 'a', HM_REF_MAX_LEN + 1);
	s[HM_REF_MAX_LEN + 1] = '\0';
	assert_int_equal(hm_image_ref_parse(s, &ref, &err), -1);
	assert_non_null(strstr(err->msg, "longer than"));
	assert_non_null(strstr(err->msg, "...`"));
	assert_true(strlen(err->msg) < 200);

	/* Repository of exactly 255 is fine, 256 is not. */
	memcpy(s, "ghcr.io/", 8);
	memset(s + 8, 'r', 255);
	s[8 + 255] = '\0';
	assert_int_equal(hm_image_ref_parse(s, &ref, &err), 0);
	hm_image_ref_done(&ref);
	s[8 + 255] = 'r';
	s[8 + 256] = '\0';
	assert_int_equal(hm_image_ref_parse(s, &ref, &err), -1);
	assert_non_null(strstr(err->msg, "longer than 255"));
	/* library/ counts towards the limit. */
	memset(s, 'r', 250);
	s[250] = '\0';
	assert_int_equal(hm_image_ref_parse(s, &ref, &err), -1);
	assert_string_equal(hm_err_code(err), "invalid_name");
}

static void test_digest_valid(void **state)
{
	(void)state;
	assert_true(hm_digest_valid(DGST));
	assert_false(hm_digest_valid(NULL));
	assert_false(hm_digest_valid(""));
	assert_false(hm_digest_valid("sha256:" HEX64 "0"));
	assert_false(hm_digest_valid("sha256:abc"));
	assert_false(hm_digest_valid("SHA256:" HEX64));
	assert_false(hm_digest_valid("sha512:" HEX64));
	assert_false(hm_digest_valid("sha256:0123456789ABCDEF0123456789abcdef"
	                             "0123456789abcdef0123456789abcdef"));
}

struct net_case {
	const char *in;
	const char *insecure;
	const char *endpoint;
	bool plain;
};

static const struct net_case net_cases[] = {
	{ "alpine", NULL, "registry-1.docker.io", false },
	{ "index.docker.io/library/nginx", NULL, "registry-1.docker.io", false },
	{ "ghcr.io/o/a", NULL, "ghcr.io", false },
	{ "ghcr.io/o/a", "", "ghcr.io", false },
	{ "localhost/app", NULL, "localhost", true },
	{ "localhost:5000/app", NULL, "localhost:5000", true },
	{ "127.0.0.1:5000/a", NULL, "127.0.0.1:5000", true },
	{ "127.1.2.3/a", NULL, "127.1.2.3", true },
	{ "127.example.com/a", NULL, "127.example.com", false },
	{ "128.0.0.1/a", NULL, "128.0.0.1", false },
	{ "[::1]:5000/x", NULL, "[::1]:5000", true },
	{ "[::1]/x", NULL, "[::1]", true },
	{ "[2001:db8::1]/x", NULL, "[2001:db8::1]", false },
	{ "reg.lan:5000/x", "reg.lan:5000", "reg.lan:5000", true },
	{ "reg.lan:5000/x", "other.lan, reg.lan", "reg.lan:5000", true },
	{ "reg.lan:5000/x", "reg.lan:5001", "reg.lan:5000", false },
	{ "reg.lan/x", "a.lan,REG.LAN,b.lan", "reg.lan", true },
	{ "reg.lan/x", "reg.la", "reg.lan", false },
	{ "reg.lan/x", "reg.lan:5000", "reg.lan", false },
};

static void test_endpoint_plain_http(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(net_cases); i++) {
		const struct net_case *c = &net_cases[i];
		_cleanup_err_ struct hm_err *err = NULL;
		struct hm_image_ref ref;
		assert_int_equal(hm_image_ref_parse(c->in, &ref, &err), 0);
		assert_string_equal(hm_image_ref_endpoint(&ref), c->endpoint);
		if (hm_image_ref_plain_http(&ref, c->insecure) != c->plain)
			fail_msg("`%s` with insecure=\"%s\": plain_http should be %d", c->in,
			         c->insecure ? c->insecure : "(null)", c->plain);
		hm_image_ref_done(&ref);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),     cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_parse_bad),    cmocka_unit_test(test_parse_lengths),
		cmocka_unit_test(test_digest_valid), cmocka_unit_test(test_endpoint_plain_http),
	};
	return cmocka_run_group_tests_name("image_ref", tests, NULL, NULL);
}
