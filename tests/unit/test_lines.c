/*
 * Unit tests for guest/lines.c, the agent channel's framing at both ends:
 * a line split across any reads comes out whole; a line over the cap is
 * dropped up to its newline and its tail never read as a line; empty lines
 * are skipped; a callback that stops leaves the rest of the input alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest/lines.h"

struct got {
	char text[1024]; /* the lines, each followed by '|' */
	size_t n;
	int stop_after; /* stop once this many lines came (0: never) */
};

static bool collect(void *ctx, char *line, size_t len)
{
	struct got *g = ctx;
	assert_true(len > 0);
	assert_int_equal(line[len], '\0');
	assert_null(memchr(line, '\n', len));
	size_t at = strlen(g->text);
	assert_true(at + len + 1 < sizeof(g->text));
	memcpy(g->text + at, line, len);
	g->text[at + len] = '|';
	g->n++;
	return !(g->stop_after && (int)g->n == g->stop_after);
}

/* Feed in pieces of `step` bytes (0: all at once). */
static void frame(const char *in, size_t cap, size_t step, struct got *g, size_t *dropped)
{
	char buf[64];
	assert_true(cap < sizeof(buf));
	struct hm_lines l;
	hm_lines_init(&l, buf, cap);
	size_t n = strlen(in);
	for (size_t off = 0; off < n;) {
		size_t k = step && step < n - off ? step : n - off;
		if (!hm_lines_feed(&l, in + off, k, collect, g))
			break;
		off += k;
	}
	if (dropped)
		*dropped = l.dropped;
}

static void check(const char *in, size_t cap, const char *want, size_t want_dropped)
{
	for (size_t step = 0; step <= 5; step++) {
		struct got g = { 0 };
		size_t dropped = 0;
		frame(in, cap, step, &g, &dropped);
		if (strcmp(g.text, want) != 0)
			fail_msg("`%s` cap %zu step %zu: want `%s`, got `%s`", in, cap, step, want,
			         g.text);
		assert_int_equal(dropped, want_dropped);
	}
}

static void test_split(void **state)
{
	(void)state;
	check("a\nbc\n", 8, "a|bc|", 0);
	check("one\ntwo\nthree", 8, "one|two|", 0); /* the unfinished line waits */
	check("\n\nx\n\n", 8, "x|", 0);
	check("{\"id\":1}\n", 8, "{\"id\":1}|", 0); /* exactly the cap */
}

static void test_overlong(void **state)
{
	(void)state;
	/* Its tail ("89") is not a line of its own; the next line is whole. */
	check("0123456789\nok\n", 8, "ok|", 1);
	check("0123456789\n0123456789\nok\n", 8, "ok|", 2);
	check("abcdefghi", 8, "", 1);
	check("123456789\n", 8, "", 1); /* one over the cap */
}

static void test_stop(void **state)
{
	(void)state;
	struct got g = { .stop_after = 1 };
	char buf[16];
	struct hm_lines l;
	hm_lines_init(&l, buf, sizeof(buf) - 1);
	assert_false(hm_lines_feed(&l, "a\nb\n", 4, collect, &g));
	assert_string_equal(g.text, "a|");
	/* Fed on, it frames from where it stopped. */
	g.stop_after = 0;
	assert_true(hm_lines_feed(&l, "c\n", 2, collect, &g));
	assert_string_equal(g.text, "a|c|");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_stop),
	};
	return cmocka_run_group_tests_name("lines", tests, NULL, NULL);
}
