/*
 * Unit tests for image/challenge.c: WWW-Authenticate parameters read by the
 * grammar, including values that look like parameters, escapes, odd spacing
 * and broken challenges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "image/challenge.h"

static void check(const char *header, const char *name, const char *want)
{
	char *got = hm_challenge_param(header, name);
	if (!want && got)
		fail_msg("`%s` %s: want none, got `%s`", header, name, got);
	if (want && !got)
		fail_msg("`%s` %s: want `%s`, got none", header, name, want);
	if (want && strcmp(got, want) != 0)
		fail_msg("`%s` %s: want `%s`, got `%s`", header, name, want, got);
	free(got);
}

static void test_docker_hub(void **state)
{
	(void)state;
	const char *h =
	    "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
	    "scope=\"repository:library/busybox:pull\"";
	check(h, "realm", "https://auth.docker.io/token");
	check(h, "service", "registry.docker.io");
	check(h, "scope", "repository:library/busybox:pull");
	check(h, "REALM", "https://auth.docker.io/token");
	check(h, "error", NULL);
}

static void test_values_that_look_like_params(void **state)
{
	(void)state;
	/* A quoted realm holding ", scope=" is one value, not two parameters. */
	const char *h = "Bearer realm=\"https://x/t?a=1, scope=evil\", scope=\"repository:a:pull\"";
	check(h, "realm", "https://x/t?a=1, scope=evil");
	check(h, "scope", "repository:a:pull");
	check("Bearer realm=\"https://x/\\\"q\\\\\",service=s", "realm", "https://x/\"q\\");
	check("Bearer realm=\"https://x/\\\"q\\\\\",service=s", "service", "s");
	check("Bearer xrealm=\"no\",realm=yes", "realm", "yes");
	check("Bearer service=\"realm=nope\"", "realm", NULL);
}

static void test_spacing_and_case(void **state)
{
	(void)state;
	check("bearer  realm = \"r\" ,  service =s,,scope=\"\"", "realm", "r");
	check("bearer  realm = \"r\" ,  service =s,,scope=\"\"", "service", "s");
	check("bearer  realm = \"r\" ,  service =s,,scope=\"\"", "scope", "");
	check("Basic realm=\"Registry Realm\"", "realm", "Registry Realm");
	check("Bearer\trealm=abc+/=", "realm", "abc+/=");
}

static void test_broken(void **state)
{
	(void)state;
	check("", "realm", NULL);
	check("Bearer", "realm", NULL);
	check("realm=\"x\"", "realm", NULL); /* no scheme */
	check("Bearer realm=\"unterminated", "realm", NULL);
	check("Bearer service=s realm=\"x\"", "realm", NULL); /* no comma */
	check("Bearer service=s, =x, realm=\"x\"", "realm", NULL);
	check("Bearer realm=", "realm", NULL);
	check("Bearer realm=\"a\"", NULL, NULL);
	check(NULL, "realm", NULL);
	/* What comes before a break still reads. */
	check("Bearer realm=\"a\", garbage here", "realm", "a");
	char *big = malloc(HM_CHALLENGE_MAX + 64);
	strcpy(big, "Bearer realm=\"");
	memset(big + 14, 'a', HM_CHALLENGE_MAX);
	strcpy(big + 14 + HM_CHALLENGE_MAX, "\"");
	check(big, "realm", NULL);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_docker_hub),
		cmocka_unit_test(test_values_that_look_like_params),
		cmocka_unit_test(test_spacing_and_case),
		cmocka_unit_test(test_broken),
	};
	return cmocka_run_group_tests_name("challenge", tests, NULL, NULL);
}
