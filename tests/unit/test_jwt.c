/*
 * Unit tests for auth/jwt: HS256 sign/verify round trips, rejection of
 * tampered, foreign-algorithm, expired, not-yet-valid, malformed and
 * oversized tokens, refusal of registry and builder tokens, and how the
 * permissions claim becomes a principal's scopes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "core/encoding.h"
#include "core/err.h"

#define SECRET "test-secret-0123456789abcdef"
#define NOW    ((time_t)1700000000)

/* Build a token by hand from raw header and claims text, HS256-signed with `secret`. */
static char *make_token(const char *secret, const char *header, const char *claims)
{
	char *h = hm_base64url_encode(header, strlen(header));
	char *c = hm_base64url_encode(claims, strlen(claims));
	size_t slen = strlen(h) + 1 + strlen(c);
	char *signing = malloc(slen + 1);
	assert_non_null(signing);
	snprintf(signing, slen + 1, "%s.%s", h, c);
	unsigned char mac[32];
	unsigned int maclen = sizeof(mac);
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
	                     (const unsigned char *)signing, slen, mac, &maclen));
	assert_int_equal(maclen, 32);
	char *sig = hm_base64url_encode(mac, maclen);
	size_t tlen = slen + 1 + strlen(sig);
	char *tok = malloc(tlen + 1);
	assert_non_null(tok);
	snprintf(tok, tlen + 1, "%s.%s", signing, sig);
	free(h);
	free(c);
	free(signing);
	free(sig);
	return tok;
}

static char *make_hs256(const char *claims)
{
	return make_token(SECRET, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims);
}

/* Verify and expect an HM_ERR_UNAUTHORIZED failure that leaves *ret alone. */
static void expect_rejected_at(const char *secret, const char *token, time_t now)
{
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_jwt_verify(secret, token, now, &p, &err) < 0);
	assert_null(p);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_UNAUTHORIZED);
	assert_int_equal(hm_err_http_status(err), 401);
	assert_non_null(err->msg);
	hm_err_free(err);
}

static void expect_rejected(const char *token)
{
	expect_rejected_at(SECRET, token, NOW);
}

static struct hm_principal *expect_accepted(const char *token)
{
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	int r = hm_jwt_verify(SECRET, token, NOW, &p, &err);
	if (r < 0)
		fail_msg("token rejected: %s", err ? err->msg : "(no error)");
	assert_null(err);
	assert_non_null(p);
	return p;
}

static void sign_verify_round_trip(void **state)
{
	(void)state;
	json_t *claims =
	    json_pack("{s:s,s:I,s:I,s:[ss]}", "sub", "alice", "iat", (json_int_t)NOW, "exp",
	              (json_int_t)NOW + 3600, "permissions", "instance:read", "image:write");
	char *tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);
	assert_non_null(tok);
	/* three non-empty parts */
	char *d1 = strchr(tok, '.');
	assert_non_null(d1);
	char *d2 = strchr(d1 + 1, '.');
	assert_non_null(d2);
	assert_null(strchr(d2 + 1, '.'));
	assert_true(d1 > tok && d2 > d1 + 1 && d2[1] != '\0');

	struct hm_principal *p = expect_accepted(tok);
	assert_string_equal(p->sub, "alice");
	assert_false(p->all);
	assert_non_null(p->scopes);
	assert_string_equal(p->scopes[0], "instance:read");
	assert_string_equal(p->scopes[1], "image:write");
	assert_null(p->scopes[2]);
	assert_true(hm_principal_has_scope(p, "instance:read"));
	assert_true(hm_principal_has_scope(p, "image:write"));
	assert_false(hm_principal_has_scope(p, "image:read"));
	hm_principal_free(p);
	free(tok);
}

static void signed_header_is_hs256(void **state)
{
	(void)state;
	json_t *claims = json_pack("{s:s}", "sub", "x");
	char *tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);
	size_t n;
	unsigned char *hdr = hm_base64url_decode(tok, (size_t)(strchr(tok, '.') - tok), &n);
	assert_non_null(hdr);
	json_t *h = json_loadb((const char *)hdr, n, 0, NULL);
	assert_non_null(h);
	assert_string_equal(json_string_value(json_object_get(h, "alg")), "HS256");
	assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
	json_decref(h);
	free(hdr);
	free(tok);
}

static void tampered_payload_rejected(void **state)
{
	(void)state;
	json_t *claims = json_pack("{s:s,s:[s]}", "sub", "alice", "permissions", "image:read");
	char *tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);

	/* Replace the claims with an escalated set but keep the signature. */
	const char *evil = "{\"permissions\":[\"*\"],\"sub\":\"alice\"}";
	char *evil_b64 = hm_base64url_encode(evil, strlen(evil));
	char *d1 = strchr(tok, '.');
	char *d2 = strchr(d1 + 1, '.');
	size_t len = (size_t)(d1 - tok) + 1 + strlen(evil_b64) + strlen(d2) + 1;
	char *forged = malloc(len);
	assert_non_null(forged);
	snprintf(forged, len, "%.*s.%s%s", (int)(d1 - tok), tok, evil_b64, d2);
	expect_rejected(forged);

	/* Flip one character inside the original payload. */
	char *flip = strdup(tok);
	assert_non_null(flip);
	size_t at = (size_t)(d1 - tok) + 2;
	flip[at] = flip[at] == 'A' ? 'B' : 'A';
	expect_rejected(flip);

	free(flip);
	free(forged);
	free(evil_b64);
	free(tok);
}

static void tampered_signature_rejected(void **state)
{
	(void)state;
	json_t *claims = json_pack("{s:s}", "sub", "alice");
	char *tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);
	size_t len = strlen(tok);

	char *t = strdup(tok);
	assert_non_null(t);
	/* first character of the signature (its bits are all significant) */
	char *sig = strrchr(t, '.') + 1;
	sig[0] = sig[0] == 'A' ? 'B' : 'A';
	expect_rejected(t);
	free(t);

	/* truncated signature */
	t = strdup(tok);
	assert_non_null(t);
	t[len - 4] = '\0';
	expect_rejected(t);
	free(t);

	/* empty signature */
	t = strdup(tok);
	assert_non_null(t);
	strrchr(t, '.')[1] = '\0';
	expect_rejected(t);
	free(t);

	/* signature that is not base64url */
	t = strdup(tok);
	assert_non_null(t);
	strrchr(t, '.')[1] = '+';
	expect_rejected(t);
	free(t);

	/* signature longer than 32 bytes: the real MAC followed by more bytes */
	size_t l2 = len + 5;
	t = malloc(l2);
	assert_non_null(t);
	snprintf(t, l2, "%sAAAA", tok);
	expect_rejected(t);
	free(t);

	free(tok);
}

static void wrong_secret_rejected(void **state)
{
	(void)state;
	json_t *claims = json_pack("{s:s}", "sub", "alice");
	char *tok = hm_jwt_sign("another-secret-0123456789", claims);
	json_decref(claims);
	expect_rejected(tok);
	/* and the right secret accepts it */
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_jwt_verify("another-secret-0123456789", tok, NOW, &p, &err), 0);
	assert_null(err);
	hm_principal_free(p);
	/* a secret that is a prefix of the right one is not the right one */
	expect_rejected_at("another-secret", tok, NOW);
	free(tok);
}

static void expiry_enforced(void **state)
{
	(void)state;
	char *tok = make_hs256("{\"sub\":\"a\",\"exp\":1700000000}");
	expect_rejected_at(SECRET, tok, NOW);     /* exp == now: expired */
	expect_rejected_at(SECRET, tok, NOW + 1); /* after exp */
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_jwt_verify(SECRET, tok, NOW - 1, &p, &err), 0);
	hm_principal_free(p);
	free(tok);

	/* the error says why */
	tok = make_hs256("{\"sub\":\"a\",\"exp\":1600000000}");
	p = NULL;
	assert_true(hm_jwt_verify(SECRET, tok, NOW, &p, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_UNAUTHORIZED);
	assert_non_null(strstr(err->msg, "expired"));
	hm_err_free(err);
	free(tok);

	/* fractional and non-numeric exp */
	tok = make_hs256("{\"sub\":\"a\",\"exp\":1700000000.5}");
	p = NULL;
	err = NULL;
	assert_int_equal(hm_jwt_verify(SECRET, tok, NOW, &p, &err), 0);
	hm_principal_free(p);
	free(tok);
	tok = make_hs256("{\"sub\":\"a\",\"exp\":\"2100000000\"}");
	expect_rejected(tok);
	free(tok);
	tok = make_hs256("{\"sub\":\"a\",\"exp\":null}");
	expect_rejected(tok);
	free(tok);
}

static void not_before_enforced(void **state)
{
	(void)state;
	char *tok = make_hs256("{\"sub\":\"a\",\"nbf\":1700000100}");
	expect_rejected(tok);
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_jwt_verify(SECRET, tok, NOW, &p, &err) < 0);
	assert_non_null(strstr(err->msg, "not valid yet"));
	hm_err_free(err);
	err = NULL;
	/* valid from exactly nbf on */
	assert_int_equal(hm_jwt_verify(SECRET, tok, NOW + 100, &p, &err), 0);
	hm_principal_free(p);
	free(tok);

	tok = make_hs256("{\"sub\":\"a\",\"nbf\":\"soon\"}");
	expect_rejected(tok);
	free(tok);
}

static void foreign_algorithms_rejected(void **state)
{
	(void)state;
	const char *claims = "{\"sub\":\"a\"}";
	const char *headers[] = {
		"{\"alg\":\"none\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
		"{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
		"{\"typ\":\"JWT\"}",
		"{\"alg\":256}",
		"{\"alg\":\"HS256\",\"alg\":\"none\"}",
	};
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		/* correctly HS256-signed over the foreign header: still refused */
		char *tok = make_token(SECRET, headers[i], claims);
		expect_rejected(tok);
		free(tok);
	}

	/* alg none with an empty signature, the classic attack */
	const char *none = "{\"alg\":\"none\"}";
	char *h = hm_base64url_encode(none, strlen(none));
	char *c = hm_base64url_encode(claims, strlen(claims));
	char buf[256];
	snprintf(buf, sizeof(buf), "%s.%s.", h, c);
	expect_rejected(buf);

	/* alg error message names the algorithm problem */
	char *tok = make_token(SECRET, "{\"alg\":\"HS512\"}", claims);
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_jwt_verify(SECRET, tok, NOW, &p, &err) < 0);
	assert_non_null(strstr(err->msg, "algorithm"));
	hm_err_free(err);
	free(tok);
	free(h);
	free(c);
}

static void malformed_structures_rejected(void **state)
{
	(void)state;
	const char *bad[] = {
		"",
		"a",
		"a.b",
		"a.b.c.d",
		"..",
		".",
		"...",
		"not a token at all",
		"eyJhbGciOiJIUzI1NiJ9..sig", /* empty claims part */
		"!!!.???.***",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_rejected(bad[i]);

	/* non-base64 header or claims in an otherwise-signed token */
	char *tok = make_hs256("{\"sub\":\"a\"}");
	char *t = strdup(tok);
	assert_non_null(t);
	t[0] = '*';
	expect_rejected(t);
	free(t);

	/* an extra part appended to a valid token */
	size_t l = strlen(tok) + 3;
	t = malloc(l);
	assert_non_null(t);
	snprintf(t, l, "%s.x", tok);
	expect_rejected(t);
	free(t);
	free(tok);

	/* header and claims that are JSON but not objects, or not JSON */
	const char *hs = "{\"alg\":\"HS256\"}";
	const char *not_objects[] = { "[]", "\"str\"", "42", "null", "{", "", "{\"a\":1}x" };
	for (size_t i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++) {
		tok = make_token(SECRET, hs, not_objects[i]);
		expect_rejected(tok);
		free(tok);
		tok = make_token(SECRET, not_objects[i], "{\"sub\":\"a\"}");
		expect_rejected(tok);
		free(tok);
	}

	/* duplicate claim keys are refused, not resolved either way */
	tok =
	    make_hs256("{\"sub\":\"a\",\"permissions\":[\"image:read\"],\"permissions\":[\"*\"]}");
	expect_rejected(tok);
	free(tok);

	/* sub of the wrong type */
	tok = make_hs256("{\"sub\":42}");
	expect_rejected(tok);
	free(tok);
}

static void oversized_token_rejected(void **state)
{
	(void)state;
	/* A validly signed token whose length is just over the limit. */
	size_t fill = HM_JWT_MAX_LEN; /* base64 makes this longer still */
	char *sub = malloc(fill + 1);
	assert_non_null(sub);
	memset(sub, 'x', fill);
	sub[fill] = '\0';
	json_t *claims = json_pack("{s:s}", "sub", sub);
	char *tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);
	assert_true(strlen(tok) > HM_JWT_MAX_LEN);
	expect_rejected(tok);
	free(tok);

	/* the same shape well under the limit is accepted */
	sub[100] = '\0';
	claims = json_pack("{s:s}", "sub", sub);
	tok = hm_jwt_sign(SECRET, claims);
	json_decref(claims);
	struct hm_principal *p = expect_accepted(tok);
	assert_string_equal(p->sub, sub);
	hm_principal_free(p);
	free(tok);
	free(sub);
}

static void foreign_token_types_rejected(void **state)
{
	(void)state;
	/* Registry tokens (repos / scope claims), builder tokens (build_id, builder- subjects). */
	const char *claims[] = {
		"{\"sub\":\"a\",\"repos\":[\"library/alpine\"]}",
		"{\"sub\":\"a\",\"scope\":\"repository:x:pull\"}",
		"{\"sub\":\"a\",\"build_id\":\"b-123\"}",
		"{\"sub\":\"builder-123\"}",
		"{\"sub\":\"builder-\",\"permissions\":[\"*\"]}",
	};
	for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
		char *tok = make_hs256(claims[i]);
		struct hm_principal *p = NULL;
		struct hm_err *err = NULL;
		assert_true(hm_jwt_verify(SECRET, tok, NOW, &p, &err) < 0);
		assert_null(p);
		assert_int_equal(err->kind, HM_ERR_UNAUTHORIZED);
		assert_non_null(strstr(err->msg, "token type"));
		hm_err_free(err);
		free(tok);
	}
	/* "builder" alone or elsewhere in the subject is an ordinary subject */
	char *tok = make_hs256("{\"sub\":\"my-builder-1\"}");
	struct hm_principal *p = expect_accepted(tok);
	assert_string_equal(p->sub, "my-builder-1");
	hm_principal_free(p);
	free(tok);
}

static void permissions_claim(void **state)
{
	(void)state;
	/* no permissions claim: full access */
	char *tok = make_hs256("{\"sub\":\"root\"}");
	struct hm_principal *p = expect_accepted(tok);
	assert_true(p->all);
	assert_non_null(p->scopes);
	assert_null(p->scopes[0]);
	assert_true(hm_principal_has_scope(p, "instance:delete"));
	assert_true(hm_principal_has_scope(p, "resource:read"));
	hm_principal_free(p);
	free(tok);

	/* explicit null is the same as absent */
	tok = make_hs256("{\"sub\":\"root\",\"permissions\":null}");
	p = expect_accepted(tok);
	assert_true(p->all);
	hm_principal_free(p);
	free(tok);

	/* ["*"]: full access */
	tok = make_hs256("{\"sub\":\"s\",\"permissions\":[\"*\"]}");
	p = expect_accepted(tok);
	assert_true(p->all);
	assert_true(hm_principal_has_scope(p, "image:delete"));
	hm_principal_free(p);
	free(tok);

	/* "*" among others still grants everything */
	tok = make_hs256("{\"sub\":\"s\",\"permissions\":[\"image:read\",\"*\"]}");
	p = expect_accepted(tok);
	assert_true(p->all);
	assert_true(hm_principal_has_scope(p, "volume:write"));
	hm_principal_free(p);
	free(tok);

	/* a single scope grants only that scope */
	tok = make_hs256("{\"sub\":\"r\",\"permissions\":[\"instance:read\"]}");
	p = expect_accepted(tok);
	assert_false(p->all);
	assert_true(hm_principal_has_scope(p, "instance:read"));
	assert_false(hm_principal_has_scope(p, "instance:write"));
	assert_false(hm_principal_has_scope(p, "instance"));
	assert_false(hm_principal_has_scope(p, "instance:rea"));
	assert_false(hm_principal_has_scope(p, "*"));
	hm_principal_free(p);
	free(tok);

	/* an empty list grants nothing */
	tok = make_hs256("{\"sub\":\"n\",\"permissions\":[]}");
	p = expect_accepted(tok);
	assert_false(p->all);
	assert_null(p->scopes[0]);
	assert_false(hm_principal_has_scope(p, "image:read"));
	hm_principal_free(p);
	free(tok);

	/* no sub: accepted with an empty subject */
	tok = make_hs256("{\"permissions\":[\"image:read\"]}");
	p = expect_accepted(tok);
	assert_string_equal(p->sub, "");
	hm_principal_free(p);
	free(tok);

	/* malformed permissions */
	const char *bad[] = {
		"{\"sub\":\"x\",\"permissions\":\"*\"}",
		"{\"sub\":\"x\",\"permissions\":{\"*\":true}}",
		"{\"sub\":\"x\",\"permissions\":[\"image:read\",7]}",
		"{\"sub\":\"x\",\"permissions\":[null]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tok = make_hs256(bad[i]);
		expect_rejected(tok);
		free(tok);
	}

	/* NULL principal has no scopes */
	assert_false(hm_principal_has_scope(NULL, "image:read"));
	hm_principal_free(NULL);
}

static void too_many_permissions_rejected(void **state)
{
	(void)state;
	json_t *perms = json_array();
	for (int i = 0; i < 257; i++)
		json_array_append_new(perms, json_string("image:read"));
	json_t *claims = json_pack("{s:s,s:o}", "sub", "x", "permissions", perms);
	char *tok = hm_jwt_sign(SECRET, claims);
	expect_rejected(tok);
	free(tok);
	/* 256 is still fine */
	json_array_remove(perms, 0);
	tok = hm_jwt_sign(SECRET, claims);
	struct hm_principal *p = expect_accepted(tok);
	assert_string_equal(p->scopes[255], "image:read");
	assert_null(p->scopes[256]);
	hm_principal_free(p);
	free(tok);
	json_decref(claims);
}

static void known_scopes(void **state)
{
	(void)state;
	assert_true(hm_scope_is_known("*"));
	assert_true(hm_scope_is_known("instance:read"));
	assert_true(hm_scope_is_known("image:write"));
	assert_true(hm_scope_is_known("image:delete"));
	assert_true(hm_scope_is_known("resource:read"));
	assert_false(hm_scope_is_known(""));
	assert_false(hm_scope_is_known("image"));
	assert_false(hm_scope_is_known("image:"));
	assert_false(hm_scope_is_known("Image:read"));
	assert_false(hm_scope_is_known("image:read "));
	assert_false(hm_scope_is_known("resource:write"));
	/* the list is NULL-terminated, has no duplicates and every entry is known */
	size_t n = 0;
	for (; hm_known_scopes[n]; n++) {
		assert_true(hm_scope_is_known(hm_known_scopes[n]));
		for (size_t j = 0; j < n; j++)
			assert_string_not_equal(hm_known_scopes[j], hm_known_scopes[n]);
	}
	assert_true(n > 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sign_verify_round_trip),
		cmocka_unit_test(signed_header_is_hs256),
		cmocka_unit_test(tampered_payload_rejected),
		cmocka_unit_test(tampered_signature_rejected),
		cmocka_unit_test(wrong_secret_rejected),
		cmocka_unit_test(expiry_enforced),
		cmocka_unit_test(not_before_enforced),
		cmocka_unit_test(foreign_algorithms_rejected),
		cmocka_unit_test(malformed_structures_rejected),
		cmocka_unit_test(oversized_token_rejected),
		cmocka_unit_test(foreign_token_types_rejected),
		cmocka_unit_test(permissions_claim),
		cmocka_unit_test(too_many_permissions_rejected),
		cmocka_unit_test(known_scopes),
	};
	return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
