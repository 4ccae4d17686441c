/*
 * Unit tests for core/paths.c: archive entry paths normalised by
 * components, ".." refused anywhere, legal names that merely contain dots
 * kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/paths.h"

static void check(const char *in, const char *want)
{
	char *got = hm_path_clean(in);
	if (!want && got)
		fail_msg("`%s`: want refused, got `%s`", in, got);
	if (want && !got)
		fail_msg("`%s`: want `%s`, got refused", in, want);
	if (want && strcmp(got, want) != 0)
		fail_msg("`%s`: want `%s`, got `%s`", in, want, got);
	free(got);
}

static void test_clean(void **state)
{
	(void)state;
	check("a/b", "a/b");
	check("./a/b/", "a/b");
	check("/etc//passwd", "etc/passwd");
	check("a/./b/.", "a/b");
	check("", "");
	check("./", "");
	check("/", "");
	check("a..b/..c/d..", "a..b/..c/d..");
	check(".hidden/...", ".hidden/...");
}

static void test_refused(void **state)
{
	(void)state;
	check("..", NULL);
	check("../x", NULL);
	check("a/../b", NULL);
	check("a/..", NULL);
	check("/..", NULL);
	check("./a/b/../../..", NULL);
	check("a//..//b", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests_name("paths", tests, NULL, NULL);
}
