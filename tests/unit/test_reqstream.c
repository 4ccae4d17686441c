/*
 * Unit tests for ingress/reqstream: requests on one connection told apart
 * however the bytes are split, bodies by Content-Length and chunked
 * framing passed as they are, each later head handed to the rewrite, and
 * what cannot be framed ending the connection. Run under ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingress/reqstream.h"

/* The rewrite: each head marked, so that the output shows where it went. */
static int mark(void *arg, const char *head, size_t len, struct hm_buf *out)
{
	int *calls = arg;
	(*calls)++;
	if (strstr(head, "X-Refuse:"))
		return -1;
	hm_buf_add(out, "[", 1);
	hm_buf_add(out, head, len);
	hm_buf_add(out, "]", 1);
	return 0;
}

/* Feed `in` in pieces of `step` bytes; the output (NUL-terminated, malloc'd) or NULL on -1. */
static char *run(const char *first, const char *in, size_t step, int *calls, unsigned long *count)
{
	*calls = 0;
	struct hm_reqstream *s = hm_reqstream_new(first, mark, calls);
	if (!s)
		return NULL;
	struct hm_buf out = { 0 };
	size_t n = strlen(in);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i += step)
		r = hm_reqstream_feed(s, in + i, n - i < step ? n - i : step, &out);
	if (count)
		*count = hm_reqstream_count(s);
	hm_reqstream_free(s);
	if (r < 0) {
		hm_buf_done(&out);
		return NULL;
	}
	hm_buf_add(&out, "", 1);
	return out.data;
}

static const char *GET = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

static void every_split_gives_the_same_stream(void **state)
{
	(void)state;
	static const struct {
		const char *first, *in, *want;
		int heads;
		unsigned long count;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		  "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /y "
		  "HTTP/1.1\r\n\r\n",
		  "[POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n]hello[GET /y "
		  "HTTP/1.1\r\n\r\n]",
		  2, 3 },
		/* the first request's body, then a chunked one with a trailer */
		{ "PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
		  "abcPOST / HTTP/1.1\r\nTransfer-Encoding: "
		  "chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / "
		  "HTTP/1.1\r\n\r\n",
		  "abc[POST / HTTP/1.1\r\nTransfer-Encoding: "
		  "chunked\r\n\r\n]5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n[GET / "
		  "HTTP/1.1\r\n\r\n]",
		  2, 3 },
		/* a blank line between requests is dropped */
		{ "GET / HTTP/1.1\r\n\r\n", "\r\nGET /b HTTP/1.1\r\n\r\n",
		  "[GET /b HTTP/1.1\r\n\r\n]", 1, 2 },
		/* after an upgrade, every byte passes */
		{ "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, "
		  "Upgrade\r\n\r\n",
		  "\x81\x05hello GET / HTTP/1.1\r\n\r\n", "\x81\x05hello GET / HTTP/1.1\r\n\r\n", 0,
		  1 },
		/* Content-Length: 0 is no body */
		{ "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "GET / HTTP/1.1\r\n\r\n",
		  "[GET / HTTP/1.1\r\n\r\n]", 1, 2 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (size_t step = 1; step <= strlen(cases[c].in); step++) {
			int calls;
			unsigned long count;
			char *got = run(cases[c].first, cases[c].in, step, &calls, &count);
			if (!got || strcmp(got, cases[c].want) != 0)
				fail_msg("case %zu, step %zu: got %s", c, step,
				         got ? got : "(ended)");
			assert_int_equal(calls, cases[c].heads);
			assert_int_equal(count, cases[c].count);
			free(got);
		}
	}
}

static void what_cannot_be_framed_ends_the_connection(void **state)
{
	(void)state;
	int calls;
	/* first heads */
	assert_null(hm_reqstream_new(
	    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", mark,
	    &calls));
	assert_null(hm_reqstream_new("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
	                             mark, &calls));
	assert_null(hm_reqstream_new(
	    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", mark, &calls));
	assert_null(
	    hm_reqstream_new("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", mark, &calls));
	assert_null(hm_reqstream_new(
	    "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", mark, &calls));
	struct hm_reqstream *ok = hm_reqstream_new(
	    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", mark, &calls);
	assert_non_null(ok);
	hm_reqstream_free(ok);
	/* later heads and bodies */
	static const char *const bad[] = {
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
		"GET / HTTP/1.1\r\nX-Refuse: 1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (size_t step = 1; step <= strlen(bad[i]); step++)
			if (run(GET, bad[i], step, &calls, NULL))
				fail_msg("bad[%zu] at step %zu was taken", i, step);
	/* a NUL in a later head (found by tests/fuzz/fuzz_reqstream): the
	 * handler would see a shorter head than the one framed and sent on */
	static const char nul_head[] = "GET /x HTTP/1.1\r\nX-A: a\0b\r\n\r\nGET / HTTP/1.1\r\n\r\n";
	for (size_t step = 1; step < sizeof(nul_head); step++) {
		calls = 0;
		struct hm_reqstream *s = hm_reqstream_new(GET, mark, &calls);
		struct hm_buf out = { 0 };
		int r = 0;
		for (size_t i = 0; i < sizeof(nul_head) - 1 && r == 0; i += step)
			r = hm_reqstream_feed(
			    s, nul_head + i,
			    sizeof(nul_head) - 1 - i < step ? sizeof(nul_head) - 1 - i : step,
			    &out);
		assert_int_equal(r, -1);
		assert_int_equal(calls, 0);
		hm_buf_done(&out);
		hm_reqstream_free(s);
	}
	/* a head with no end within the limit; a chunk line too long */
	size_t big = HM_REQSTREAM_HEAD_MAX + 10;
	char *h = malloc(big + 1);
	memset(h, 'a', big);
	h[big] = '\0';
	assert_null(run(GET, h, 4096, &calls, NULL));
	memcpy(h, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5", 48);
	assert_null(run(GET, h, 4096, &calls, NULL));
	free(h);
}

static void mutated_streams_never_overrun(void **state)
{
	(void)state;
	const char *base =
	    "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	    "PUT / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n";
	size_t n = strlen(base);
	char *m = malloc(n + 1);
	srand(7);
	for (int round = 0; round < 3000; round++) {
		memcpy(m, base, n + 1);
		for (int k = 0; k < 3; k++)
			m[rand() % n] = (char)(rand() % 256 ?: 1);
		int calls;
		free(run(GET, m, 1 + (size_t)(rand() % 17), &calls, NULL));
	}
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_split_gives_the_same_stream),
		cmocka_unit_test(what_cannot_be_framed_ends_the_connection),
		cmocka_unit_test(mutated_streams_never_overrun),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
