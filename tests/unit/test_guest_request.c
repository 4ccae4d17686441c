/*
 * Unit tests for the guest's request decoder (guest/request.c): each
 * message type decoded with its defaults and its values, and each way of
 * getting a field wrong refused with the right code and a message naming
 * the field. The fuzz target fuzz_agent_guest holds the same invariants on
 * arbitrary input; these pin the exact values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "guest/json.h"
#include "guest/request.h"

static struct hm_gjson doc;
static struct agent_req r;
static char line[1 << 17], buf[AGENT_CP_CHUNK], why[256];

static int decode(const char *msg)
{
	size_t n = strlen(msg);
	assert_true(n < sizeof(line));
	memcpy(line, msg, n);
	const char *perr = NULL;
	if (hm_gjson_parse(line, n, &doc, &perr) < 0)
		fail_msg("does not parse (%s): %s", perr, msg);
	return agent_req_decode(&doc, &r, buf, sizeof(buf), why, sizeof(why));
}

static void refused(const char *msg, int code, const char *needle)
{
	int d = decode(msg);
	if (d != code || !strstr(why, needle))
		fail_msg("%s: got %d `%s`, wanted %d naming `%s`", msg, d, why, code, needle);
}

static void exec_decoded(void **state)
{
	(void)state;
	assert_int_equal(decode("{\"type\":\"exec\",\"id\":7,\"command\":[\"sh\",\"-c\",\"x\"]}"),
	                 0);
	assert_int_equal(r.kind, AR_EXEC);
	assert_int_equal(r.id, 7);
	assert_int_equal(r.exec.argc, 3);
	assert_string_equal(r.exec.argv[2], "x");
	assert_int_equal(r.exec.nenv, 0);
	assert_null(r.exec.cwd);
	assert_null(r.exec.user);
	assert_false(r.exec.tty);
	assert_int_equal(r.exec.rows, 24);
	assert_int_equal(r.exec.cols, 80);
	assert_int_equal(
	    decode("{\"type\":\"exec\",\"id\":8,\"command\":[\"a\"],\"env\":{\"K\":\"v=1\"},"
	           "\"cwd\":\"/srv\",\"user\":\"\",\"tty\":true,\"rows\":50,\"cols\":"
	           "200}"),
	    0);
	assert_int_equal(r.exec.nenv, 1);
	assert_string_equal(r.exec.env[0], "K");
	assert_string_equal(r.exec.env[1], "v=1");
	assert_string_equal(r.exec.cwd, "/srv");
	assert_null(r.exec.user); /* "": the image's user */
	assert_true(r.exec.tty);
	assert_int_equal(r.exec.rows, 50);
	assert_int_equal(r.exec.cols, 200);
}

static void exec_refused(void **state)
{
	(void)state;
	const int F = AGENT_REQ_BAD_FIELD;
	refused("{\"type\":\"exec\",\"id\":1}", F, "`command`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[]}", F, "`command`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":\"sh\"}", F, "`command`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"env\":[\"A=1\"]}", F, "`env`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"env\":{\"A=B\":\"1\"}}", F,
	        "variable name");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"env\":{\"\":\"1\"}}", F,
	        "variable name");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"cwd\":5}", F, "`cwd`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"rows\":0}", F, "`rows`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"cols\":65536}", F, "`cols`");
	refused("{\"type\":\"exec\",\"id\":1,\"command\":[\"a\"],\"tty\":1}", F, "`tty`");
	refused("{\"type\":\"exec\",\"command\":[\"a\"]}", AGENT_REQ_BAD_MESSAGE, "`id`");
}

static void envelope(void **state)
{
	(void)state;
	const int M = AGENT_REQ_BAD_MESSAGE;
	refused("{\"type\":\"ping\",\"id\":-1}", M, "`id`");
	refused("{\"type\":\"ping\",\"id\":\"1\"}", M, "`id`");
	refused("{\"type\":\"ping\",\"id\":1.5}", M, "`id`");
	refused("{\"id\":1}", M, "`type`");
	refused("{\"type\":\"nope\",\"id\":1}", M, "unknown message type `nope`");
	refused("{\"type\":\"stat\",\"path\":\"/\"}", M, "`stat` needs a positive integer `id`");
	assert_int_equal(decode("{\"type\":\"hello\"}"), 0);
	assert_int_equal(r.kind, AR_HELLO);
	assert_int_equal(r.id, 0);
	assert_int_equal(decode("{\"type\":\"ping\",\"id\":3}"), 0);
	assert_int_equal(r.kind, AR_PING);
	assert_int_equal(r.id, 3);
}

static void signals_and_stop(void **state)
{
	(void)state;
	const int F = AGENT_REQ_BAD_FIELD;
	assert_int_equal(decode("{\"type\":\"signal\",\"signal\":15}"), 0);
	assert_int_equal(r.signal.sig, 15);
	refused("{\"type\":\"signal\"}", F, "`signal`");
	refused("{\"type\":\"signal\",\"signal\":0}", F, "`signal`");
	refused("{\"type\":\"signal\",\"signal\":65}", F, "`signal`");
	assert_int_equal(decode("{\"type\":\"kill\",\"id\":2}"), 0);
	assert_int_equal(r.signal.sig, SIGKILL);
	refused("{\"type\":\"kill\",\"id\":2,\"signal\":\"TERM\"}", F, "`signal`");
	assert_int_equal(decode("{\"type\":\"stop\"}"), 0);
	assert_int_equal(r.stop.timeout_ms, 10000);
	assert_int_equal(decode("{\"type\":\"stop\",\"timeout_ms\":0}"), 0);
	assert_int_equal(r.stop.timeout_ms, 0);
	refused("{\"type\":\"stop\",\"timeout_ms\":86400001}", F, "`timeout_ms`");
	refused("{\"type\":\"stop\",\"timeout_ms\":-1}", F, "`timeout_ms`");
	assert_int_equal(decode("{\"type\":\"resize\",\"id\":2,\"rows\":1,\"cols\":65535}"), 0);
	assert_int_equal(r.resize.rows, 1);
	assert_int_equal(r.resize.cols, 65535);
	refused("{\"type\":\"resize\",\"id\":2,\"rows\":10}", F, "`cols`");
}

static void data_and_stat(void **state)
{
	(void)state;
	const int F = AGENT_REQ_BAD_FIELD;
	assert_int_equal(decode("{\"type\":\"stdin\",\"id\":2,\"data\":\"aGk=\"}"), 0);
	assert_int_equal(r.data.len, 2);
	assert_memory_equal(r.data.data, "hi", 2);
	assert_ptr_equal(r.data.data, buf);
	assert_int_equal(decode("{\"type\":\"cp_data\",\"id\":2,\"data\":\"\"}"), 0);
	assert_int_equal(r.data.len, 0);
	refused("{\"type\":\"stdin\",\"id\":2}", F, "`data`");
	refused("{\"type\":\"stdin\",\"id\":2,\"data\":\"a\"}", F, "`data`");
	refused("{\"type\":\"cp_data\",\"id\":2,\"data\":\"!!!!\"}", F, "`data`");
	/* A whole chunk is taken; one byte more is refused (ASan: nothing written past buf). */
	static char msg[64 + 4 * (AGENT_CP_CHUNK / 3 + 1)];
	int n = snprintf(msg, sizeof(msg), "{\"type\":\"cp_data\",\"id\":2,\"data\":\"");
	for (unsigned i = 0; i < AGENT_CP_CHUNK / 3; i++)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, "AAAA");
	snprintf(msg + n, sizeof(msg) - (size_t)n, "AAA=\"}"); /* 32768 = 3 * 10922 + 2 */
	assert_int_equal(decode(msg), 0);
	assert_int_equal(r.data.len, AGENT_CP_CHUNK);
	snprintf(msg + n, sizeof(msg) - (size_t)n, "AAAA\"}");
	refused(msg, F, "at most 32768 bytes");
	assert_int_equal(
	    decode("{\"type\":\"stat\",\"id\":4,\"path\":\"/x\",\"follow_links\":true}"), 0);
	assert_string_equal(r.stat.path, "/x");
	assert_true(r.stat.follow);
	refused("{\"type\":\"stat\",\"id\":4,\"path\":\"\"}", F, "`path`");
	refused("{\"type\":\"stat\",\"id\":4,\"path\":\"/x\",\"follow_links\":\"y\"}", F,
	        "`follow_links`");
}

static void copies(void **state)
{
	(void)state;
	const int F = AGENT_REQ_BAD_FIELD;
	assert_int_equal(decode("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/tmp\"}"), 0);
	assert_int_equal(r.kind, AR_CP_TO);
	assert_string_equal(r.cp_to.path, "/tmp");
	assert_null(r.cp_to.name);
	assert_false(r.cp_to.is_dir);
	assert_int_equal(r.cp_to.mode, -1);
	assert_int_equal(r.cp_to.uid, -1);
	assert_int_equal(r.cp_to.gid, -1);
	assert_false(r.cp_to.has_mtime);
	assert_int_equal(decode("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/d\",\"name\":\"f\","
	                        "\"is_dir\":true,\"mode\":493,\"uid\":0,\"gid\":4294967294,"
	                        "\"mtime\":-5}"),
	                 0);
	assert_string_equal(r.cp_to.name, "f");
	assert_true(r.cp_to.is_dir);
	assert_int_equal(r.cp_to.mode, 0755);
	assert_int_equal(r.cp_to.uid, 0);
	assert_int_equal(r.cp_to.gid, 4294967294LL);
	assert_true(r.cp_to.has_mtime);
	assert_int_equal(r.cp_to.mtime, -5);
	refused("{\"type\":\"cp_to\",\"id\":5}", F, "`path`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"rel\"}", F, "`path`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"name\":\"..\"}", F, "`name`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"name\":\"a/b\"}", F, "`name`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"name\":\"\"}", F, "`name`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"mode\":4096}", F, "`mode`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"uid\":4294967295}", F, "`uid`");
	refused("{\"type\":\"cp_to\",\"id\":5,\"path\":\"/\",\"mtime\":1.5e9}", F, "`mtime`");
	assert_int_equal(decode("{\"type\":\"cp_from\",\"id\":6,\"path\":\"/etc\"}"), 0);
	assert_string_equal(r.cp_from.path, "/etc");
	assert_false(r.cp_from.follow);
	refused("{\"type\":\"cp_from\",\"id\":6,\"path\":\"etc\"}", F, "`path`");
	refused("{\"type\":\"cp_from\",\"id\":6,\"path\":\"/\",\"follow_links\":0}", F,
	        "`follow_links`");
	/* A path of PATH_MAX bytes or more is refused. */
	static char msg[AGENT_PATH_MAX + 64], path[AGENT_PATH_MAX + 1];
	memset(path, 'p', AGENT_PATH_MAX);
	path[0] = '/';
	path[AGENT_PATH_MAX] = '\0';
	snprintf(msg, sizeof(msg), "{\"type\":\"cp_from\",\"id\":6,\"path\":\"%s\"}", path);
	refused(msg, F, "`path`");
	path[AGENT_PATH_MAX - 1] = '\0';
	snprintf(msg, sizeof(msg), "{\"type\":\"cp_from\",\"id\":6,\"path\":\"%s\"}", path);
	assert_int_equal(decode(msg), 0);
}

static void identity_and_attach(void **state)
{
	(void)state;
	const int F = AGENT_REQ_BAD_FIELD;
	assert_int_equal(decode("{\"type\":\"identity\",\"id\":3,\"unix_ms\":1764700000000,"
	                        "\"seed\":\"00fF11\",\"hostname\":\"web\",\"ip\":\"10.0.0.2/16\","
	                        "\"gateway\":\"10.0.0.1\",\"mac\":\"02:00:00:00:00:01\","
	                        "\"dns\":\"\",\"machine_id\":"
	                        "\"0123456789abcdef0123456789abcdef\"}"),
	                 0);
	assert_int_equal(r.kind, AR_IDENTITY);
	assert_int_equal(r.unix_ms, 1764700000000LL);
	assert_int_equal(r.seed_len, 3);
	assert_memory_equal(r.seed, "\x00\xff\x11", 3);
	assert_string_equal(r.identity.hostname, "web");
	assert_string_equal(r.identity.ip, "10.0.0.2/16");
	assert_string_equal(r.identity.gateway, "10.0.0.1");
	assert_string_equal(r.identity.mac, "02:00:00:00:00:01");
	assert_null(r.identity.dns); /* "": none */
	assert_string_equal(r.identity.machine_id, "0123456789abcdef0123456789abcdef");
	assert_int_equal(decode("{\"type\":\"identity\",\"unix_ms\":5}"), 0);
	assert_int_equal(r.seed_len, 0);
	assert_null(r.identity.hostname);
	assert_null(r.identity.ip);
	refused("{\"type\":\"identity\",\"seed\":\"abc\"}", F, "`seed`");
	refused("{\"type\":\"identity\",\"seed\":\"zz\"}", F, "`seed`");
	refused("{\"type\":\"identity\",\"unix_ms\":-1}", F, "`unix_ms`");
	refused("{\"type\":\"identity\",\"hostname\":\"\"}", F, "`hostname`");
	refused("{\"type\":\"identity\",\"hostname\":"
	        "\"a123456789012345678901234567890123456789012345678901234567890123\"}",
	        F, "`hostname`");
	refused("{\"type\":\"identity\",\"ip\":7}", F, "`ip`");
	refused("{\"type\":\"identity\",\"machine_id\":\"0123\"}", F, "`machine_id`");
	refused("{\"type\":\"identity\",\"machine_id\":\"0123456789abcdef0123456789abcdeg\"}", F,
	        "`machine_id`");
	assert_int_equal(decode("{\"type\":\"attach\",\"unix_ms\":0,\"seed\":\"ab\",\"disk_bytes\":"
	                        "[\"1048576\",\"10737418240\"]}"),
	                 0);
	assert_int_equal(r.kind, AR_ATTACH);
	assert_int_equal(r.unix_ms, 0);
	assert_int_equal(r.attach.ndisks, 2);
	assert_int_equal(r.attach.disk_bytes[1], 10737418240ULL);
	refused("{\"type\":\"attach\"}", F, "`disk_bytes`");
	refused("{\"type\":\"attach\",\"disk_bytes\":[\"-1\"]}", F, "disk_bytes[0]");
	refused("{\"type\":\"attach\",\"disk_bytes\":[\"1\",\"\"]}", F, "disk_bytes[1]");
	refused("{\"type\":\"attach\",\"disk_bytes\":[\"99999999999999999999\"]}", F,
	        "disk_bytes[0]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exec_decoded),
		cmocka_unit_test(exec_refused),
		cmocka_unit_test(envelope),
		cmocka_unit_test(signals_and_stop),
		cmocka_unit_test(data_and_stat),
		cmocka_unit_test(copies),
		cmocka_unit_test(identity_and_attach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
