/*
 * Tests for the config disk: the host writer (src/boot/guestcfg.c) against
 * the guest's own parser (guest/config.c), the exit record both ways, the
 * writer's validation, and the parsers' refusal of malformed areas,
 * including a few thousand random and mutated inputs that must never make
 * them read out of bounds (ASan watches: every input sits in a heap buffer
 * of exactly its length).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"
#include "guest/config.h"

struct fx {
	char *dir;
	char *disk;
};

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->dir = xstrdup("/tmp/hm-guestcfg-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	fx->disk = xasprintf("%s/config.img", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	struct hm_err *err = NULL;
	int r = hm_rm_rf(fx->dir, &err);
	hm_err_free(err);
	free(fx->dir);
	free(fx->disk);
	free(fx);
	return r;
}

/* Read the disk and parse its config area; the caller frees *area. */
static int parse_disk(const char *disk, struct hm_gcfg *cfg, char **area, char *why, size_t len)
{
	char *data = NULL;
	size_t n = 0;
	struct hm_err *err = NULL;
	if (hm_read_file(disk, 2 * HM_GUEST_CFG_SIZE, &data, &n, &err) < 0) {
		fail_msg("read %s: %s", disk, err->msg);
	}
	assert_int_equal(n, HM_GUEST_CFG_SIZE);
	*area = data;
	return hm_gcfg_parse(data, HM_GUEST_AREA_SIZE, cfg, why, len);
}

static void roundtrip_all_keys(void **state)
{
	struct fx *fx = *state;
	const char *argv[] = { "/bin/sh",   "-c", "echo 'a b'\necho second line", "k=v=w", "",
		               "tab\there", NULL };
	const char *env[] = { "PATH=/usr/bin:/bin", "MULTI=line1\nline2", "EMPTY=", "EQ=a=b",
		              NULL };
	const char *dns[] = { "10.0.0.1", "2001:db8::1", NULL };
	const char *vols[] = { "/dev/vdd rw /data", "/dev/vde ro /mnt/with space",
		               "/dev/vdf overlay:/dev/vdg /shared", NULL };
	struct hm_guest_config c = {
		.argv = argv,
		.env = env,
		.workdir = "/srv/my app",
		.user = "app:staff",
		.hostname = "web-1.example",
		.root = "/dev/vdb",
		.rootfs = "ext4",
		.overlay = "tmpfs",
		.dns = dns,
		.volumes = vols,
		.net_ip = "10.0.0.5/24",
		.net_gw = "10.0.0.1",
		.net_mac = "52:54:00:12:34:56",
		.agent = "org.test.agent",
		.egress_ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	};
	_cleanup_err_ struct hm_err *err = NULL;
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);
	struct stat st;
	assert_int_equal(stat(fx->disk, &st), 0);
	assert_int_equal(st.st_size, HM_GUEST_CFG_SIZE);
	assert_int_equal(st.st_mode & 0777, 0600);

	static struct hm_gcfg cfg;
	_cleanup_free_ char *area = NULL;
	char why[256] = "";
	assert_int_equal(parse_disk(fx->disk, &cfg, &area, why, sizeof(why)), 0);
	assert_int_equal(cfg.argc, 6);
	for (size_t i = 0; i < cfg.argc; i++)
		assert_string_equal(cfg.argv[i], argv[i]);
	assert_null(cfg.argv[6]);
	assert_int_equal(cfg.envc, 4);
	for (size_t i = 0; i < cfg.envc; i++)
		assert_string_equal(cfg.env[i], env[i]);
	assert_null(cfg.env[4]);
	assert_int_equal(cfg.nvolumes, 3);
	assert_string_equal(cfg.volume[2], "/dev/vdf overlay:/dev/vdg /shared");
	assert_string_equal(cfg.volume[0], "/dev/vdd rw /data");
	assert_string_equal(cfg.volume[1], "/dev/vde ro /mnt/with space");
	assert_null(cfg.volume[3]);
	assert_int_equal(cfg.ndns, 2);
	assert_string_equal(cfg.dns[0], "10.0.0.1");
	assert_string_equal(cfg.dns[1], "2001:db8::1");
	assert_string_equal(cfg.workdir, "/srv/my app");
	assert_string_equal(cfg.user, "app:staff");
	assert_string_equal(cfg.hostname, "web-1.example");
	assert_string_equal(cfg.root, "/dev/vdb");
	assert_string_equal(cfg.rootfs, "ext4");
	assert_string_equal(cfg.overlay, "tmpfs");
	assert_string_equal(cfg.net_ip, "10.0.0.5/24");
	assert_string_equal(cfg.net_gw, "10.0.0.1");
	assert_string_equal(cfg.net_mac, "52:54:00:12:34:56");
	assert_string_equal(cfg.agent, "org.test.agent");
	assert_string_equal(cfg.egress_ca,
	                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");

	/* The exit area is zero: no record yet. */
	int code = -1;
	char *msg = NULL;
	assert_int_equal(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err), 0);
	assert_null(msg);
}

static void defaults(void **state)
{
	struct fx *fx = *state;
	const char *argv[] = { "true", NULL };
	struct hm_guest_config c = { .argv = argv };
	_cleanup_err_ struct hm_err *err = NULL;
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);
	static struct hm_gcfg cfg;
	_cleanup_free_ char *area = NULL;
	char why[256] = "";
	assert_int_equal(parse_disk(fx->disk, &cfg, &area, why, sizeof(why)), 0);
	assert_int_equal(cfg.argc, 1);
	assert_string_equal(cfg.argv[0], "true");
	assert_int_equal(cfg.envc, 0);
	assert_null(cfg.env[0]);
	assert_int_equal(cfg.ndns, 0);
	assert_string_equal(cfg.workdir, "/");
	assert_null(cfg.user);
	assert_string_equal(cfg.hostname, "hypeman");
	assert_string_equal(cfg.root, "/dev/vdb");
	assert_string_equal(cfg.rootfs, "erofs");
	assert_string_equal(cfg.overlay, "/dev/vdc");
	assert_null(cfg.net_ip);
	assert_null(cfg.net_gw);
	assert_null(cfg.net_mac);
	assert_string_equal(cfg.agent, "hypeman.agent");
	assert_null(cfg.egress_ca);
	/* The area holds the magic, one record, the end record, then zeros (the
	 * parser turned the value's newline into a NUL). */
	const char want[] = HM_GUEST_CFG_MAGIC "arg 4:true\0end 0:\n";
	assert_memory_equal(area, want, sizeof(want) - 1);
	for (size_t i = sizeof(want) - 1; i < HM_GUEST_CFG_SIZE; i++)
		if (area[i] != 0)
			fail_msg("byte %zu is not zero", i);
}

/* Write an exit record as the guest does: at the offset, 4096 bytes. */
static void guest_writes_exit(const char *disk, int code, const char *message)
{
	char rec[HM_GUEST_EXIT_SIZE];
	hm_gexit_format(rec, code, message);
	int fd = open(disk, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, rec, sizeof(rec), HM_GUEST_EXIT_OFFSET), sizeof(rec));
	close(fd);
}

static void exit_record_write_read_clear(void **state)
{
	struct fx *fx = *state;
	const char *argv[] = { "true", NULL };
	struct hm_guest_config c = { .argv = argv };
	_cleanup_err_ struct hm_err *err = NULL;
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);

	static const struct {
		int code;
		const char *msg;
	} cases[] = {
		{ 0, "success" },
		{ 3, "exit status 3" },
		{ 137, "killed by signal 9 (SIGKILL) - OOM" },
		{ 127, "command not found: /bin/ñoño \"quoted\"\nsecond line" },
		{ 255, "init: bad config disk /dev/vda: no config magic" },
		{ 0, "" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		guest_writes_exit(fx->disk, cases[i].code, cases[i].msg);
		int code = -1;
		_cleanup_free_ char *msg = NULL;
		assert_int_equal(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err), 1);
		assert_int_equal(code, cases[i].code);
		assert_string_equal(msg, cases[i].msg);
	}
	/* The record's exact bytes, as docs/guest.md writes them. */
	char rec[HM_GUEST_EXIT_SIZE];
	hm_gexit_format(rec, 3, "exit status 3");
	const char want[] = "HYPEMAN-EXIT 1\ncode 1:3\nmessage 13:exit status 3\nend 0:\n";
	assert_memory_equal(rec, want, sizeof(want) - 1);
	for (size_t i = sizeof(want) - 1; i < sizeof(rec); i++)
		assert_int_equal(rec[i], 0);

	assert_int_equal(hm_guestcfg_clear_exit(fx->disk, &err), 0);
	int code = -1;
	char *msg = NULL;
	assert_int_equal(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err), 0);
	assert_null(msg);
	/* Clearing leaves the config alone. */
	static struct hm_gcfg cfg;
	_cleanup_free_ char *area = NULL;
	char why[256];
	assert_int_equal(parse_disk(fx->disk, &cfg, &area, why, sizeof(why)), 0);
	assert_string_equal(cfg.argv[0], "true");
}

static void exit_message_cut_at_utf8_boundary(void **state)
{
	(void)state;
	/* 2-byte characters, so any cut at an odd offset would split one. */
	size_t n = 3000;
	_cleanup_free_ char *msg = xmalloc(2 * n + 2);
	msg[0] = 'x';
	for (size_t i = 0; i < n; i++)
		memcpy(msg + 1 + 2 * i, "\xc3\xa9", 2);
	msg[1 + 2 * n] = '\0';
	char rec[HM_GUEST_EXIT_SIZE];
	hm_gexit_format(rec, 1, msg);
	int code = -1;
	char out[HM_GUEST_EXIT_SIZE], why[256];
	assert_int_equal(
	    hm_gexit_parse(rec, sizeof(rec), &code, out, sizeof(out), why, sizeof(why)), 1);
	assert_int_equal(code, 1);
	size_t len = strlen(out);
	assert_true(len <= HM_GUEST_EXIT_MSG_MAX);
	assert_true(len > HM_GUEST_EXIT_MSG_MAX - 4);
	assert_int_equal(len % 2, 1); /* 'x' plus whole characters */
	assert_memory_equal(out, msg, len);
	/* A small message buffer cuts the copy, NUL-terminated. */
	char small[8];
	assert_int_equal(
	    hm_gexit_parse(rec, sizeof(rec), &code, small, sizeof(small), why, sizeof(why)), 1);
	assert_int_equal(strlen(small), 7);
}

static void exit_record_errors(void **state)
{
	struct fx *fx = *state;
	_cleanup_err_ struct hm_err *err = NULL;
	int code;
	char *msg = NULL;
	/* missing file */
	assert_true(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err) < 0);
	/* short file */
	assert_int_equal(hm_write_file_atomic(fx->disk, "HYPEMAN", 7, 0600, &err), 0);
	assert_true(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err) < 0);
	assert_non_null(strstr(err->msg, "shorter"));

	static const char *const bad[] = {
		"garbage",
		"HYPEMAN-EXIT 2\ncode 1:0\nend 0:\n",
		"HYPEMAN-EXIT 1\ncode 1:0\n",                          /* no end */
		"HYPEMAN-EXIT 1\nmessage 2:hi\nend 0:\n",              /* no code */
		"HYPEMAN-EXIT 1\ncode 3:256\nend 0:\n",                /* out of range */
		"HYPEMAN-EXIT 1\ncode 2:-1\nend 0:\n",                 /* not a number */
		"HYPEMAN-EXIT 1\ncode 0:\nend 0:\n",                   /* empty code */
		"HYPEMAN-EXIT 1\ncode 1:0\nmessage 99999:x\nend 0:\n", /* past the end */
		"HYPEMAN-EXIT 1\ncode 1:0\nmessage 5:x\nend 0:\n",     /* no newline after */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char rec[HM_GUEST_EXIT_SIZE] = { 0 };
		memcpy(rec, bad[i], strlen(bad[i]));
		char out[64], why[256] = "";
		int r = hm_gexit_parse(rec, sizeof(rec), &code, out, sizeof(out), why, sizeof(why));
		if (r != -1)
			fail_msg("case %zu accepted: %s", i, bad[i]);
		assert_true(why[0] != '\0');
	}
	/* Through the host API too. */
	const char *argv[] = { "true", NULL };
	struct hm_guest_config c = { .argv = argv };
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);
	int fd = open(fx->disk, O_WRONLY | O_CLOEXEC);
	assert_int_equal(pwrite(fd, "junk", 4, HM_GUEST_EXIT_OFFSET), 4);
	close(fd);
	assert_true(hm_guestcfg_read_exit(fx->disk, &code, &msg, &err) < 0);
	assert_non_null(strstr(err->msg, "magic"));
	assert_null(msg);
}

/* Parse text as a config area held in a heap buffer of exactly its length. */
static int parse_text(const char *text, size_t len, char *why, size_t whylen)
{
	static struct hm_gcfg cfg;
	char *buf = xmalloc(len ? len : 1);
	memcpy(buf, text, len);
	int r = hm_gcfg_parse(buf, len, &cfg, why, whylen);
	free(buf);
	return r;
}

static void malformed_configs(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *why; /* a word of the reason */
	} bad[] = {
		{ "", "magic" },
		{ "HYPEMAN-CONFIG 2\narg 4:true\nend 0:\n", "magic" },
		{ "hypeman-config 1\narg 4:true\nend 0:\n", "magic" },
		{ "HYPEMAN-CONFIG 1\narg 4:true\n", "past the end" },          /* no end */
		{ "HYPEMAN-CONFIG 1\narg 4:true\nend 0:", "past the end" },    /* end cut */
		{ "HYPEMAN-CONFIG 1\narg x:true\nend 0:\n", "length" },        /* not a number */
		{ "HYPEMAN-CONFIG 1\narg :true\nend 0:\n", "length" },         /* empty length */
		{ "HYPEMAN-CONFIG 1\narg -4:true\nend 0:\n", "length" },       /* sign */
		{ "HYPEMAN-CONFIG 1\narg 4 true\nend 0:\n", "length" },        /* no colon */
		{ "HYPEMAN-CONFIG 1\narg 3:true\nend 0:\n", "newline" },       /* wrong length */
		{ "HYPEMAN-CONFIG 1\narg 5:true\nend 0:\n", "newline" },       /* wrong length */
		{ "HYPEMAN-CONFIG 1\narg 40:true\nend 0:\n", "past the end" }, /* past the end */
		{ "HYPEMAN-CONFIG 1\narg 999999999:t\n", "past the end" },     /* huge */
		{ "HYPEMAN-CONFIG 1\narg 18446744073709551617:t\n", "too large" }, /* overflow */
		{ "HYPEMAN-CONFIG 1\narg4:true\nend 0:\n", "key" },                /* no space */
		{ "HYPEMAN-CONFIG 1\n 4:true\nend 0:\n", "key" },                  /* empty key */
		{ "HYPEMAN-CONFIG 1\na/b 4:true\nend 0:\n", "key" }, /* bad key char */
		{ "HYPEMAN-CONFIG 1\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1:x\n", "key" },
		{ "HYPEMAN-CONFIG 1\nend 0:\n", "no arg" },
		{ "HYPEMAN-CONFIG 1\nenv 3:A=b\nend 0:\n", "no arg" },
		{ "HYPEMAN-CONFIG 1\narg 1:x\nuser 1:a\nuser 1:b\nend 0:\n", "repeated" },
		{ "HYPEMAN-CONFIG 1\narg 1:x\nend 1:x\n",
		  NULL }, /* end with a value is still end */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char why[256] = "";
		int r = parse_text(bad[i].text, strlen(bad[i].text), why, sizeof(why));
		if (!bad[i].why) {
			assert_int_equal(r, 0);
			continue;
		}
		if (r != -1)
			fail_msg("case %zu accepted: %s", i, bad[i].text);
		if (!strstr(why, bad[i].why))
			fail_msg("case %zu: reason `%s` does not mention `%s`", i, why, bad[i].why);
	}
	/* A NUL inside a value. */
	const char nul[] = "HYPEMAN-CONFIG 1\narg 3:a\0b\nend 0:\n";
	char why[256] = "";
	assert_int_equal(parse_text(nul, sizeof(nul) - 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "NUL"));
	/* Unknown keys are skipped; the value may hold anything but NUL. */
	const char fwd[] = "HYPEMAN-CONFIG 1\nfuture_key 5:a\nb:c\narg 2:hi\nend 0:\ntrailing junk";
	assert_int_equal(parse_text(fwd, sizeof(fwd) - 1, why, sizeof(why)), 0);
	/* A NULL or empty errbuf is fine. */
	assert_int_equal(parse_text("x", 1, NULL, 0), -1);
}

static void too_many_args(void **state)
{
	(void)state;
	size_t n = HM_GUEST_MAX_ARGS + 1;
	size_t cap = 32 + n * 8;
	_cleanup_free_ char *text = xmalloc(cap);
	size_t len = (size_t)snprintf(text, cap, HM_GUEST_CFG_MAGIC);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "arg 1:x\n");
	len += (size_t)snprintf(text + len, cap - len, "end 0:\n");
	char why[256] = "";
	assert_int_equal(parse_text(text, len, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "more than"));
}

static void writer_validation(void **state)
{
	struct fx *fx = *state;
	const char *argv[] = { "true", NULL };
	const char *none[] = { NULL };
	const char *bad_env[] = { "NOEQUALS", NULL };
	const char *bad_env2[] = { "=value", NULL };
	const char *bad_dns[] = { "not-an-ip", NULL };
	const char *bad_vol[] = { "/dev/vdd rx /data", NULL };
	const char *bad_vol2[] = { "/dev/vdd rw data", NULL };
	const char *bad_vol3[] = { "vdd rw /data", NULL };
	const char *bad_vol4[] = { "/dev/vdd overlay: /data", NULL };
	const char *many_dns[] = { "1.1.1.1", "1.1.1.1", "1.1.1.1", "1.1.1.1", "1.1.1.1",
		                   "1.1.1.1", "1.1.1.1", "1.1.1.1", "1.1.1.1", NULL };
	struct hm_guest_config cases[] = {
		{ .argv = NULL },
		{ .argv = none },
		{ .argv = argv, .env = bad_env },
		{ .argv = argv, .env = bad_env2 },
		{ .argv = argv, .dns = bad_dns },
		{ .argv = argv, .dns = many_dns },
		{ .argv = argv, .workdir = "relative/dir" },
		{ .argv = argv, .hostname = "has space" },
		{ .argv = argv, .hostname = "" },
		{ .argv = argv,
		  .hostname =
		      "a-very-long-hostname-that-goes-well-past-the-sixty-three-character-limit" },
		{ .argv = argv, .volumes = bad_vol },
		{ .argv = argv, .volumes = bad_vol2 },
		{ .argv = argv, .volumes = bad_vol3 },
		{ .argv = argv, .volumes = bad_vol4 },
		{ .argv = argv, .rootfs = "xfs" },
		{ .argv = argv, .root = "vdb" },
		{ .argv = argv, .overlay = "disk" },
		{ .argv = argv, .net_ip = "10.0.0.5" },
		{ .argv = argv, .net_ip = "10.0.0.5/33" },
		{ .argv = argv, .net_ip = "10.0.0/24" },
		{ .argv = argv, .net_gw = "gateway" },
		{ .argv = argv, .net_mac = "52:54:00:12:34" },
		{ .argv = argv, .net_mac = "52:54:00:12:34:zz" },
		{ .argv = argv, .agent = "a/b" },
		{ .argv = argv, .agent = "" },
		{ .argv = argv, .egress_ca = "not a certificate" },
		{ .argv = argv, .user = "app\nroot" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		if (hm_guestcfg_write(fx->disk, &cases[i], &err) != -1)
			fail_msg("case %zu accepted", i);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		assert_int_equal(access(fx->disk, F_OK), -1); /* nothing written */
	}

	/* Too large for the area: one argument of 1 MiB. */
	_cleanup_free_ char *big = xmalloc(HM_GUEST_CFG_SIZE + 1);
	memset(big, 'a', HM_GUEST_CFG_SIZE);
	big[HM_GUEST_CFG_SIZE] = '\0';
	const char *bigargv[] = { big, NULL };
	struct hm_guest_config c = { .argv = bigargv };
	_cleanup_err_ struct hm_err *err = NULL;
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), -1);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	assert_non_null(strstr(err->msg, "larger"));

	/* The largest argument that fits does fit, and round-trips. */
	size_t overhead = strlen(HM_GUEST_CFG_MAGIC) + strlen("arg 999999:\n") + strlen("end 0:\n");
	size_t fit = HM_GUEST_AREA_SIZE - overhead - 1;
	big[fit] = '\0';
	hm_err_freep(&err);
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);
	static struct hm_gcfg cfg;
	_cleanup_free_ char *area = NULL;
	char why[256] = "";
	if (parse_disk(fx->disk, &cfg, &area, why, sizeof(why)) != 0)
		fail_msg("%s", why);
	assert_int_equal(strlen(cfg.argv[0]), fit);

	/* Too many arguments. */
	size_t n = HM_GUEST_MAX_ARGS + 1;
	const char **many = xcalloc(n + 1, sizeof(*many));
	for (size_t i = 0; i < n; i++)
		many[i] = "x";
	c.argv = many;
	hm_err_freep(&err);
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), -1);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	many[n - 1] = NULL; /* exactly the limit is fine */
	hm_err_freep(&err);
	assert_int_equal(hm_guestcfg_write(fx->disk, &c, &err), 0);
	free(many);
}

/* A small valid config area to mutate. */
static size_t sample_area(char *buf, size_t cap)
{
	return (size_t)snprintf(buf, cap,
	                        "%sarg 7:/bin/sh\narg 2:-c\narg 10:echo hi\nyo\nenv 5:A=b c\n"
	                        "workdir 4:/srv\nuser 8:app:1000\nhostname 3:box\ndns 7:1.1.1.1\n"
	                        "net_ip 11:10.0.0.2/24\nnet_gw 8:10.0.0.1\nend 0:\n",
	                        HM_GUEST_CFG_MAGIC);
}

static void check_parsed(const char *buf, size_t len, const struct hm_gcfg *cfg)
{
	assert_true(cfg->argc >= 1 && cfg->argc <= HM_GUEST_MAX_ARGS);
	assert_null(cfg->argv[cfg->argc]);
	for (size_t i = 0; i < cfg->argc; i++) {
		assert_true(cfg->argv[i] >= buf && cfg->argv[i] < buf + len);
		assert_non_null(memchr(cfg->argv[i], '\0', (size_t)(buf + len - cfg->argv[i])));
	}
	for (size_t i = 0; i < cfg->envc; i++)
		assert_true(cfg->env[i] >= buf && cfg->env[i] < buf + len);
}

static void fuzz(void **state)
{
	(void)state;
	unsigned seed = 12345;
	char sample[512];
	size_t slen = sample_area(sample, sizeof(sample));
	{
		char copy[512], why[128];
		memcpy(copy, sample, slen);
		static struct hm_gcfg ok;
		if (hm_gcfg_parse(copy, slen, &ok, why, sizeof(why)) != 0)
			fail_msg("the sample does not parse: %s", why);
		assert_int_equal(ok.argc, 3);
		assert_string_equal(ok.argv[2], "echo hi\nyo");
		assert_string_equal(ok.net_gw, "10.0.0.1");
	}
	char sample_exit[HM_GUEST_EXIT_SIZE];
	hm_gexit_format(sample_exit, 137, "killed by signal 9 (SIGKILL)");
	static struct hm_gcfg cfg;
	int accepted = 0, exits = 0;
	for (int it = 0; it < 6000; it++) {
		size_t len;
		char *buf;
		int kind = it % 3;
		if (kind == 0) {
			/* Random bytes, sometimes behind a valid magic. */
			len = (size_t)rand_r(&seed) % 600;
			buf = xmalloc(len ? len : 1);
			for (size_t i = 0; i < len; i++)
				buf[i] = (char)(rand_r(&seed) & 0xff);
			size_t m = strlen(HM_GUEST_CFG_MAGIC);
			if (len >= m && rand_r(&seed) % 2)
				memcpy(buf, HM_GUEST_CFG_MAGIC, m);
		} else {
			/* The valid sample, cut or extended, with a few bytes changed. */
			len = slen + (size_t)(rand_r(&seed) % 8) - 4;
			if (rand_r(&seed) % 4 == 0)
				len = (size_t)rand_r(&seed) % (slen + 1);
			buf = xcalloc(1, len ? len : 1);
			memcpy(buf, sample, len < slen ? len : slen);
			int flips = rand_r(&seed) % 4;
			static const char alphabet[] = "0123456789: \n\0aez";
			for (int f = 0; f < flips && len > 0; f++)
				buf[(size_t)rand_r(&seed) % len] =
				    alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
		}
		char why[128];
		int r = hm_gcfg_parse(buf, len, &cfg, why, sizeof(why));
		assert_true(r == 0 || r == -1);
		if (r == 0) {
			check_parsed(buf, len, &cfg);
			accepted++;
		}
		free(buf);

		/* The exit record parser, on the same kinds of input. */
		size_t elen = kind == 0 ? (size_t)rand_r(&seed) % 200 : HM_GUEST_EXIT_SIZE;
		char *ebuf = xmalloc(elen ? elen : 1);
		if (kind == 0) {
			for (size_t i = 0; i < elen; i++)
				ebuf[i] = (char)(rand_r(&seed) & 0xff);
		} else {
			memcpy(ebuf, sample_exit, elen);
			for (int f = rand_r(&seed) % 3; f >= 0; f--)
				ebuf[(size_t)rand_r(&seed) % 80] = (char)(rand_r(&seed) & 0xff);
		}
		int code = -1;
		char msg[64];
		r = hm_gexit_parse(ebuf, elen, &code, msg, sizeof(msg), why, sizeof(why));
		assert_true(r >= -1 && r <= 1);
		if (r == 1) {
			assert_true(code >= 0 && code <= 255);
			assert_true(strlen(msg) < sizeof(msg));
			exits++;
		}
		free(ebuf);
	}
	/* The mutations leave some inputs valid: both paths were exercised. */
	assert_true(accepted > 100);
	assert_true(exits > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(roundtrip_all_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(exit_record_write_read_clear, setup, teardown),
		cmocka_unit_test(exit_message_cut_at_utf8_boundary),
		cmocka_unit_test_setup_teardown(exit_record_errors, setup, teardown),
		cmocka_unit_test(malformed_configs),
		cmocka_unit_test(too_many_args),
		cmocka_unit_test_setup_teardown(writer_validation, setup, teardown),
		cmocka_unit_test(fuzz),
	};
	return cmocka_run_group_tests_name("guestcfg", tests, NULL, NULL);
}
