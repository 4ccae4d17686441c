/*
 * Tests for the guest init's agent-channel codecs (guest/json.c and
 * guest/b64.c): the messages docs/guest.md specifies, string escapes both
 * ways, the refusal of nesting, truncation, bad numbers and limits, base64
 * against RFC 4648's vectors, and thousands of random and mutated inputs
 * that must never make either read or write out of bounds (ASan watches:
 * every input sits in a heap buffer of exactly its length).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"
#include "guest/b64.h"
#include "guest/json.h"

static struct hm_gjson doc;

/* Parse a copy of s in a heap buffer of exactly its length; the copy is kept in *keep. */
static int parse(const char *s, char **keep)
{
	size_t n = strlen(s);
	char *buf = xmalloc(n ? n : 1);
	memcpy(buf, s, n);
	const char *why = NULL;
	int r = hm_gjson_parse(buf, n, &doc, &why);
	if (r < 0)
		assert_non_null(why);
	else
		assert_null(why);
	if (keep)
		*keep = buf;
	else
		free(buf);
	return r;
}

static void exec_message(void **state)
{
	(void)state;
	char *buf;
	assert_int_equal(
	    parse(" {\"type\":\"exec\",\"id\":42,\"command\":[\"sh\",\"-c\",\"echo hi\"],"
	          "\"env\":{\"A\":\"1\",\"B\":\"x=y\"},\"cwd\":\"/tmp\",\"tty\":true,"
	          "\"rows\":24,\"cols\":80,\"user\":null,\"extra\":1.5} \r\n",
	          &buf),
	    0);
	assert_int_equal(doc.nfields, 10);
	assert_string_equal(hm_gjson_str(&doc, "type"), "exec");
	long long id = 0;
	assert_int_equal(hm_gjson_int(&doc, "id", &id), 1);
	assert_int_equal(id, 42);
	const struct hm_gjson_value *cmd = hm_gjson_get(&doc, "command");
	assert_non_null(cmd);
	assert_int_equal(cmd->type, HM_GJSON_ARRAY);
	assert_int_equal(cmd->len, 3);
	assert_string_equal(cmd->items[0], "sh");
	assert_string_equal(cmd->items[2], "echo hi");
	const struct hm_gjson_value *env = hm_gjson_get(&doc, "env");
	assert_int_equal(env->type, HM_GJSON_OBJECT);
	assert_int_equal(env->len, 2);
	assert_string_equal(env->items[0], "A");
	assert_string_equal(env->items[1], "1");
	assert_string_equal(env->items[3], "x=y");
	bool tty = false;
	assert_int_equal(hm_gjson_bool(&doc, "tty", &tty), 1);
	assert_true(tty);
	/* null reads as absent; a wrong type is -1; a fraction is a NUMBER without value. */
	assert_int_equal(hm_gjson_int(&doc, "user", &id), 0);
	assert_null(hm_gjson_str(&doc, "user"));
	assert_int_equal(hm_gjson_int(&doc, "type", &id), -1);
	assert_int_equal(hm_gjson_bool(&doc, "rows", &tty), -1);
	assert_int_equal(hm_gjson_get(&doc, "extra")->type, HM_GJSON_NUMBER);
	assert_int_equal(hm_gjson_int(&doc, "extra", &id), -1);
	assert_null(hm_gjson_get(&doc, "missing"));
	free(buf);

	/* Empty object and containers, duplicate keys (the first wins), whitespace everywhere. */
	assert_int_equal(parse("{}", &buf), 0);
	assert_int_equal(doc.nfields, 0);
	free(buf);
	assert_int_equal(
	    parse("{ \"a\" : [ ] , \"b\" : { } , \"a\" : \"second\" , \"f\" : false }", &buf), 0);
	assert_int_equal(hm_gjson_get(&doc, "a")->type, HM_GJSON_ARRAY);
	assert_int_equal(hm_gjson_get(&doc, "a")->len, 0);
	assert_int_equal(hm_gjson_get(&doc, "b")->len, 0);
	free(buf);
}

static void escapes(void **state)
{
	(void)state;
	char *buf;
	assert_int_equal(
	    parse("{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\u20AC \\ud83d\\ude00 "
	          "raw\xc3\xa9\",\"k\\u0041\":\"v\"}",
	          &buf),
	    0);
	const struct hm_gjson_value *v = hm_gjson_get(&doc, "s");
	const char want[] =
	    "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 raw\xc3\xa9";
	assert_int_equal(v->len, sizeof(want) - 1);
	assert_memory_equal(v->s, want, sizeof(want));
	assert_string_equal(hm_gjson_str(&doc, "kA"), "v");
	free(buf);

	static const char *const bad[] = {
		"{\"s\":\"\\x\"}",            /* unknown escape */
		"{\"s\":\"\\u12\"}",          /* short \u */
		"{\"s\":\"\\u12g4\"}",        /* not hex */
		"{\"s\":\"\\u0000\"}",        /* NUL */
		"{\"s\":\"\\ud83d\"}",        /* lone high surrogate */
		"{\"s\":\"\\ud83d\\u0041\"}", /* high surrogate, then not a low one */
		"{\"s\":\"\\ude00\"}",        /* lone low surrogate */
		"{\"s\":\"tab\there\"}",      /* raw control character */
		"{\"s\":\"nl\nhere\"}",
		"{\"s\":\"\\",
		"{\"s\":\"\\u",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], NULL), -1);
}

static void nesting_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"a\":{\"b\":{}}}",
		"{\"a\":[[]]}",
		"{\"a\":[1]}",
		"{\"a\":{\"b\":1}}",
		"{\"a\":[{}]}",
		"{\"a\":{\"b\":null}}",
		"{\"a\":[true]}",
		"[]",
		"\"s\"",
		"1",
		"{\"a\":{\"b\":[]}}",
		"{{}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], NULL), -1);
		assert_int_equal(doc.nfields, 0);
	}
}

static void malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		" ",
		"{",
		"{\"a\"",
		"{\"a\":",
		"{\"a\":1",
		"{\"a\":1,",
		"{\"a\":1,}",
		"{,}",
		"{\"a\" 1}",
		"{a:1}",
		"{\"a\":1}x",
		"{\"a\":1}}",
		"{\"a\":tru}",
		"{\"a\":nul}",
		"{\"a\":True}",
		"{'a':1}",
		"{\"a\":[\"x\",]}",
		"{\"a\":[\"x\" \"y\"]}",
		"{\"a\":{\"k\"}}",
		"{\"a\":{\"k\":\"v\",}}",
		"{\"a\":\"x\"\"b\":1}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], NULL), -1);
}

static void truncated(void **state)
{
	(void)state;
	const char *msg = "{\"type\":\"exec\",\"id\":7,\"command\":[\"a\\u00e9\",\"b\"],\"env\":"
	                  "{\"K\":\"V\\n\"},\"tty\":false,\"rows\":-3,\"x\":null}";
	size_t n = strlen(msg);
	for (size_t cut = 0; cut < n; cut++) {
		char *buf = xmalloc(cut ? cut : 1);
		memcpy(buf, msg, cut);
		assert_int_equal(hm_gjson_parse(buf, cut, &doc, NULL), -1);
		free(buf);
	}
	assert_int_equal(parse(msg, NULL), 0);
}

static void numbers(void **state)
{
	(void)state;
	char *buf;
	long long v = 0;
	assert_int_equal(parse("{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
	                       "\"over\":9223372036854775808,\"under\":-9223372036854775809,"
	                       "\"huge\":123456789012345678901234567890,\"exp\":1e999,"
	                       "\"frac\":0.5,\"zero\":0,\"negzero\":-0,\"e\":2E+3}",
	                       &buf),
	                 0);
	assert_int_equal(hm_gjson_int(&doc, "max", &v), 1);
	assert_true(v == INT64_MAX);
	assert_int_equal(hm_gjson_int(&doc, "min", &v), 1);
	assert_true(v == INT64_MIN);
	static const char *const noval[] = { "over", "under", "huge", "exp", "frac", "e" };
	for (size_t i = 0; i < sizeof(noval) / sizeof(noval[0]); i++) {
		assert_int_equal(hm_gjson_get(&doc, noval[i])->type, HM_GJSON_NUMBER);
		assert_int_equal(hm_gjson_int(&doc, noval[i], &v), -1);
	}
	assert_int_equal(hm_gjson_int(&doc, "zero", &v), 1);
	assert_int_equal(v, 0);
	assert_int_equal(hm_gjson_int(&doc, "negzero", &v), 1);
	assert_int_equal(v, 0);
	free(buf);
	static const char *const bad[] = { "{\"a\":01}",  "{\"a\":-}",   "{\"a\":1.}",
		                           "{\"a\":.5}",  "{\"a\":+1}",  "{\"a\":1e}",
		                           "{\"a\":1e+}", "{\"a\":--1}", "{\"a\":0x1}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], NULL), -1);
}

static void limits(void **state)
{
	(void)state;
	/* HM_GJSON_MAX_FIELDS fields parse, one more does not. */
	for (int extra = 0; extra <= 1; extra++) {
		char s[2048] = "{";
		for (int i = 0; i < HM_GJSON_MAX_FIELDS + extra; i++)
			sprintf(s + strlen(s), "%s\"k%d\":%d", i ? "," : "", i, i);
		strcat(s, "}");
		assert_int_equal(parse(s, NULL), extra ? -1 : 0);
	}
	/* HM_GJSON_MAX_ITEMS items (spread over an array and an object) parse, one more does not.
	 */
	for (int extra = 0; extra <= 1; extra++) {
		size_t cap = 16 * HM_GJSON_MAX_ITEMS;
		char *s = xmalloc(cap);
		size_t n = (size_t)sprintf(s, "{\"a\":[");
		int items = HM_GJSON_MAX_ITEMS - 2 + extra;
		for (int i = 0; i < items; i++)
			n += (size_t)sprintf(s + n, "%s\"%d\"", i ? "," : "", i);
		n += (size_t)sprintf(s + n, "],\"o\":{\"k\":\"v\"}}");
		assert_true(n < cap);
		char *buf;
		assert_int_equal(parse(s, &buf), extra ? -1 : 0);
		if (!extra) {
			assert_int_equal(hm_gjson_get(&doc, "a")->len, (size_t)items);
			assert_string_equal(hm_gjson_get(&doc, "o")->items[1], "v");
		}
		free(buf);
		free(s);
	}
}

static void escape_out(void **state)
{
	(void)state;
	char out[256];
	const char in[] =
	    "a\"b\\c\nd\x01\x7f \xc3\xa9 \xff \xc0\xaf \xed\xa0\x80 \xf0\x9f\x98\x80 \xe2\x82";
	size_t n = hm_gjson_escape(out, sizeof(out), in, sizeof(in) - 1);
	const char want[] = "a\\\"b\\\\c\\nd\\u0001\\u007f \xc3\xa9 ? ?? ??? \xf0\x9f\x98\x80 ??";
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));

	/* What it writes parses back to the input (valid UTF-8 without NUL). */
	const char orig[] = "line1\nline2\t\"quoted\" back\\slash \xe2\x82\xac \x1f end";
	char json[512];
	int j = snprintf(json, sizeof(json), "{\"s\":\"");
	j += (int)hm_gjson_escape(json + j, sizeof(json) - (size_t)j, orig, sizeof(orig) - 1);
	j += snprintf(json + j, sizeof(json) - (size_t)j, "\"}");
	char *buf;
	assert_int_equal(parse(json, &buf), 0);
	assert_string_equal(hm_gjson_str(&doc, "s"), orig);
	free(buf);

	/* A small buffer cuts at a character boundary, never mid-escape or mid-character. */
	for (size_t cap = 1; cap < 16; cap++) {
		char small[16];
		memset(small, 'Z', sizeof(small));
		size_t m = hm_gjson_escape(small, cap, "\xc3\xa9\"\xe2\x82\xac\x01", 7);
		assert_true(m < cap);
		assert_int_equal(small[m], '\0');
		static const size_t ok[] = { 0, 2, 4, 7, 13 };
		bool boundary = false;
		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			boundary |= m == ok[i];
		assert_true(boundary);
	}
	assert_int_equal(hm_gjson_escape(out, 0, "x", 1), 0);
}

static void b64_vectors(void **state)
{
	(void)state;
	static const char *const v[][2] = {
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char enc[32], dec[32];
		size_t n = hm_gb64_encode(v[i][0], strlen(v[i][0]), enc);
		assert_int_equal(n, HM_GB64_LEN(strlen(v[i][0])));
		assert_string_equal(enc, v[i][1]);
		char *in = xstrdup(v[i][1]);
		assert_int_equal(hm_gb64_decode(in, strlen(in), dec, sizeof(dec)),
		                 (ssize_t)strlen(v[i][0]));
		assert_memory_equal(dec, v[i][0], strlen(v[i][0]));
		/* Unpadded decodes the same. */
		size_t bare = strcspn(in, "=");
		assert_int_equal(hm_gb64_decode(in, bare, dec, sizeof(dec)),
		                 (ssize_t)strlen(v[i][0]));
		/* In place. */
		assert_int_equal(hm_gb64_decode(in, strlen(in), in, strlen(in)),
		                 (ssize_t)strlen(v[i][0]));
		assert_memory_equal(in, v[i][0], strlen(v[i][0]));
		free(in);
	}
	static const char *const bad[] = { "Z",    "Zg=",  "Z===",  "Zg=a",     "====", "Zm9v!",
		                           "Zh==", "Zm9=", "Zm 9v", "Zg==Zg==", "-_==" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char dec[32];
		assert_int_equal(hm_gb64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)), -1);
	}
	/* Output beyond cap is refused, exactly at cap accepted. */
	char dec[6];
	assert_int_equal(hm_gb64_decode("Zm9vYmFy", 8, dec, 5), -1);
	assert_int_equal(hm_gb64_decode("Zm9vYmFy", 8, dec, 6), 6);
	assert_int_equal(hm_gb64_decode("", 0, dec, 0), 0);
}

static void b64_roundtrip(void **state)
{
	(void)state;
	srand(1234);
	for (int round = 0; round < 500; round++) {
		size_t n = (size_t)(rand() % 300);
		unsigned char *in = xmalloc(n + 1);
		for (size_t i = 0; i < n; i++)
			in[i] = (unsigned char)rand();
		char *enc = xmalloc(HM_GB64_LEN(n) + 1);
		size_t e = hm_gb64_encode(in, n, enc);
		assert_int_equal(e, HM_GB64_LEN(n));
		unsigned char *dec = xmalloc(n + 1);
		assert_int_equal(hm_gb64_decode(enc, e, dec, n), (ssize_t)n);
		assert_memory_equal(dec, in, n);
		free(in);
		free(enc);
		free(dec);
	}
}

/* Random bytes and mutations of valid messages: never a crash, never out of bounds. */
static void fuzz(void **state)
{
	(void)state;
	static const char *const seeds[] = {
		"{\"type\":\"exec\",\"id\":1,\"command\":[\"sh\",\"-c\",\"x\"],\"env\":{\"A\":"
		"\"\\u00e9\"},"
		"\"tty\":true,\"rows\":24}",
		"{\"type\":\"stdin\",\"id\":3,\"data\":\"aGVsbG8=\"}",
		"{\"type\":\"stat\",\"id\":9,\"path\":\"/a\\\\b\\\"c\",\"follow_links\":false}",
		"{\"type\":\"ping\",\"n\":-12.5e3,\"s\":\"\\ud83d\\ude00\"}",
	};
	static const char alphabet[] = "{}[]\":,\\u0aZ-1e.tfn \n\xc3\xff";
	srand(42);
	int accepted = 0;
	for (int round = 0; round < 20000; round++) {
		size_t n;
		char *buf;
		if (round % 4 == 0) {
			n = (size_t)(rand() % 200);
			buf = xmalloc(n + 1);
			for (size_t i = 0; i < n; i++)
				buf[i] = round % 8 == 0 ? (char)rand()
				                        : alphabet[rand() % (sizeof(alphabet) - 1)];
		} else {
			const char *seed = seeds[rand() % 4];
			n = strlen(seed);
			buf = xmalloc(n + 1);
			memcpy(buf, seed, n);
			int muts = 1 + rand() % 4;
			for (int m = 0; m < muts; m++) {
				size_t at = (size_t)rand() % n;
				switch (rand() % 3) {
				case 0:
					buf[at] = alphabet[rand() % (sizeof(alphabet) - 1)];
					break;
				case 1:
					buf[at] = (char)rand();
					break;
				default:
					n = at; /* truncate */
					break;
				}
				if (n == 0)
					break;
			}
		}
		/* An exact-length copy, so ASan catches a read past the end. */
		char *exact = xmalloc(n ? n : 1);
		memcpy(exact, buf, n);
		free(buf);
		if (hm_gjson_parse(exact, n, &doc, NULL) == 0) {
			accepted++;
			assert_true(doc.nfields <= HM_GJSON_MAX_FIELDS);
			for (size_t i = 0; i < doc.nfields; i++) {
				const struct hm_gjson_value *v = &doc.fields[i].v;
				assert_true(strlen(doc.fields[i].key) < n);
				if (v->type == HM_GJSON_STRING)
					assert_int_equal(strlen(v->s), v->len);
				if (v->type == HM_GJSON_ARRAY)
					for (size_t k = 0; k < v->len; k++)
						assert_true(strlen(v->items[k]) < n);
			}
			char out[1200];
			const char *s = hm_gjson_str(&doc, "type");
			if (s)
				hm_gjson_escape(out, sizeof(out), s, strlen(s));
		}
		/* base64 of the same bytes: refused or decoded within bounds. */
		unsigned char *dec = xmalloc(n + 1);
		ssize_t d = hm_gb64_decode(exact, n, dec, n);
		assert_true(d >= -1 && d <= (ssize_t)n);
		free(dec);
		free(exact);
	}
	assert_true(accepted > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exec_message),
		cmocka_unit_test(escapes),
		cmocka_unit_test(nesting_refused),
		cmocka_unit_test(malformed),
		cmocka_unit_test(truncated),
		cmocka_unit_test(numbers),
		cmocka_unit_test(limits),
		cmocka_unit_test(escape_out),
		cmocka_unit_test(b64_vectors),
		cmocka_unit_test(b64_roundtrip),
		cmocka_unit_test(fuzz),
	};
	return cmocka_run_group_tests_name("guest_json", tests, NULL, NULL);
}
