/*
 * Unit tests for core/encoding: base64url round trips and strictness,
 * hex, and percent-decoding that refuses malformed escapes and NULs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/encoding.h"

static void base64url_round_trip(void **state)
{
	(void)state;
	const char *inputs[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\xfd" };
	const char *expect[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy", "__79" };
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		char *enc = hm_base64url_encode(inputs[i], strlen(inputs[i]));
		assert_string_equal(enc, expect[i]);
		size_t n;
		unsigned char *dec = hm_base64url_decode(enc, strlen(enc), &n);
		assert_non_null(dec);
		assert_int_equal(n, strlen(inputs[i]));
		assert_memory_equal(dec, inputs[i], n);
		free(dec);
		free(enc);
	}
}

static void base64url_rejects_garbage(void **state)
{
	(void)state;
	assert_null(hm_base64url_decode("Zm9v+", 5, NULL)); /* '+' is not base64url */
	assert_null(hm_base64url_decode("Z", 1, NULL));     /* impossible length */
	assert_null(hm_base64url_decode("Zh", 2, NULL));    /* non-canonical trailing bits */
	assert_null(hm_base64url_decode("Zm 9", 4, NULL));
}

static void hex_encodes_lowercase(void **state)
{
	(void)state;
	char *h = hm_hex_encode("\x00\xab\x10", 3);
	assert_string_equal(h, "00ab10");
	free(h);
}

static void percent_decode_cases(void **state)
{
	(void)state;
	char *s = hm_percent_decode("docker.io%2Flibrary%2Falpine%3Alatest", 37);
	assert_string_equal(s, "docker.io/library/alpine:latest");
	free(s);
	assert_null(hm_percent_decode("%zz", 3));
	assert_null(hm_percent_decode("abc%2", 5));
	assert_null(hm_percent_decode("a%00b", 5));
	s = hm_percent_encode("a b/c~");
	assert_string_equal(s, "a%20b%2Fc~");
	free(s);
}

static void expect_str(char *got, const char *want)
{
	assert_string_equal(got, want);
	free(got);
}

static void utf8_sanitize_and_logfmt_escape(void **state)
{
	(void)state;
	expect_str(hm_utf8_sanitize(""), "");
	expect_str(hm_utf8_sanitize("plain \xc3\xa9 \xf0\x9f\x98\x80"),
	           "plain \xc3\xa9 \xf0\x9f\x98\x80");
	/* lone continuation, truncated sequence, overlong, surrogate, > U+10FFFF */
	expect_str(hm_utf8_sanitize("a\x80"
	                            "b"),
	           "a\xef\xbf\xbd"
	           "b");
	expect_str(hm_utf8_sanitize("\xc3"), "\xef\xbf\xbd");
	expect_str(hm_utf8_sanitize("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");
	expect_str(hm_utf8_sanitize("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	expect_str(hm_utf8_sanitize("\xf4\x90\x80\x80"),
	           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_true(hm_utf8_valid((const unsigned char *)"ok \xc3\xa9", 5));
	assert_false(hm_utf8_valid((const unsigned char *)"\xff", 1));

	expect_str(hm_logfmt_escape("plain"), "plain");
	expect_str(hm_logfmt_escape("a \"quoted\" \\ back"), "a \\\"quoted\\\" \\\\ back");
	/* no way to end the line or the value */
	expect_str(hm_logfmt_escape("one\nts=2000 msg=evil\r\x1b[2J"),
	           "one\\nts=2000 msg=evil\\x0d\\x1b[2J");
	expect_str(hm_logfmt_escape("\xff\xc3\xa9\x7f"), "\\xff\xc3\xa9\\x7f");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(utf8_sanitize_and_logfmt_escape),
		cmocka_unit_test(base64url_round_trip),
		cmocka_unit_test(base64url_rejects_garbage),
		cmocka_unit_test(hex_encodes_lowercase),
		cmocka_unit_test(percent_decode_cases),
	};
	return cmocka_run_group_tests_name("encoding", tests, NULL, NULL);
}
