/*
 * Unit tests for config: built-in defaults, environment over defaults,
 * flags over environment, validation of every setting (ports, paths,
 * sizes, ratios, bandwidths, counts), getopt edge cases, and the size
 * parser hm_parse_size.
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
#include <unistd.h>

#include "config/config.h"
#include "core/err.h"

static const char *const env_keys[] = {
	"LISTEN_ADDR",
	"PORT",
	"DATA_DIR",
	"JWT_SECRET",
	"MAX_BODY_BYTES",
	"LOG_LEVEL",
	"OVERSUB_CPU",
	"OVERSUB_MEMORY",
	"OVERSUB_DISK",
	"OVERSUB_NETWORK",
	"NETWORK_LIMIT",
	"INSECURE_REGISTRIES",
	"MAX_CONCURRENT_PULLS",
	"PULL_STALL_TIMEOUT",
	"IMAGE_FORMAT",
	"MAX_UPLOAD_BYTES",
	"ACCEL",
	"LOG_MAX_BYTES",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_keys) / sizeof(env_keys[0]); i++)
		unsetenv(env_keys[i]);
	return 0;
}

/*
 * Load with the given flags (NULL-terminated) after argv[0]. The strings
 * are private copies, since getopt_long permutes argv.
 */
static int load(struct hm_config *cfg, struct hm_err **err, ...)
{
	char *argv[16], *owned[16];
	int argc = 0;
	argv[argc++] = strdup("hypeman-api");
	va_list ap;
	va_start(ap, err);
	for (const char *a; (a = va_arg(ap, const char *));) {
		assert_true(argc < 15);
		argv[argc++] = strdup(a);
	}
	va_end(ap);
	argv[argc] = NULL;
	memcpy(owned, argv, sizeof(argv));
	int r = hm_config_load(cfg, argc, argv, err);
	for (int i = 0; i < argc; i++)
		free(owned[i]);
	return r;
}

/* Expect loading to fail with HM_ERR_INVALID; the message must contain `needle`. */
static void expect_invalid_msg(const char *needle, ...)
{
	char *argv[16], *owned[16];
	int argc = 0;
	argv[argc++] = strdup("hypeman-api");
	va_list ap;
	va_start(ap, needle);
	for (const char *a; (a = va_arg(ap, const char *));) {
		assert_true(argc < 15);
		argv[argc++] = strdup(a);
	}
	va_end(ap);
	argv[argc] = NULL;
	memcpy(owned, argv, sizeof(argv));
	struct hm_config cfg;
	struct hm_err *err = NULL;
	int r = hm_config_load(&cfg, argc, argv, &err);
	for (int i = 0; i < argc; i++)
		free(owned[i]);
	assert_true(r < 0);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	if (needle && !strstr(err->msg, needle))
		fail_msg("error `%s` does not mention `%s`", err->msg, needle);
	hm_err_free(err);
	hm_config_done(&cfg);
}

/* Set one environment variable and expect the load to fail naming it. */
static void expect_env_invalid(const char *key, const char *value)
{
	clear_env(NULL);
	setenv(key, value, 1);
	char want[64];
	snprintf(want, sizeof(want), "environment %s", key);
	expect_invalid_msg(want, NULL);
	unsetenv(key);
}

static void defaults(void **state)
{
	(void)state;
	struct hm_config cfg;
	struct hm_err *err = NULL;
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_null(err);
	assert_string_equal(cfg.listen_addr, "127.0.0.1");
	assert_int_equal(cfg.port, 8080);
	assert_string_equal(cfg.data_dir, "/var/lib/hypeman");
	assert_null(cfg.jwt_secret);
	assert_int_equal(cfg.max_body_bytes, 1024 * 1024);
	assert_int_equal(cfg.max_upload_bytes, (size_t)16 << 30);
	assert_int_equal(cfg.max_connections, 512);
	assert_int_equal(cfg.log_level, HM_LOG_INFO);
	assert_true(cfg.oversub_cpu == 4.0);
	assert_true(cfg.oversub_memory == 1.0);
	assert_true(cfg.oversub_disk == 1.0);
	assert_true(cfg.oversub_network == 2.0);
	assert_int_equal(cfg.network_limit_bps, 0);
	assert_null(cfg.insecure_registries);
	assert_int_equal(cfg.pull_workers, 2);
	assert_int_equal(cfg.pull_stall_timeout_s, 30);
	assert_string_equal(cfg.image_format, "erofs");
	assert_int_equal(cfg.accel, HM_ACCEL_AUTO);
	assert_int_equal(cfg.log_max_bytes, 16 << 20);
	hm_config_done(&cfg);
	assert_null(cfg.listen_addr);
	assert_null(cfg.data_dir);
}

static void env_overrides_defaults(void **state)
{
	(void)state;
	setenv("LISTEN_ADDR", "0.0.0.0", 1);
	setenv("PORT", "9090", 1);
	setenv("DATA_DIR", "/srv/hypeman", 1);
	setenv("JWT_SECRET", "0123456789abcdef", 1);
	setenv("MAX_BODY_BYTES", "2MB", 1);
	setenv("LOG_LEVEL", "debug", 1);
	setenv("OVERSUB_CPU", "2.5", 1);
	setenv("OVERSUB_MEMORY", "1.5", 1);
	setenv("OVERSUB_DISK", "3", 1);
	setenv("OVERSUB_NETWORK", "1000", 1);
	setenv("NETWORK_LIMIT", "10Gbps", 1);
	setenv("INSECURE_REGISTRIES", "reg.local:5000,10.0.0.1", 1);
	setenv("MAX_CONCURRENT_PULLS", "16", 1);
	setenv("PULL_STALL_TIMEOUT", "60s", 1);
	setenv("IMAGE_FORMAT", "ext4", 1);
	struct hm_config cfg;
	struct hm_err *err = NULL;
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_string_equal(cfg.listen_addr, "0.0.0.0");
	assert_int_equal(cfg.port, 9090);
	assert_string_equal(cfg.data_dir, "/srv/hypeman");
	assert_string_equal(cfg.jwt_secret, "0123456789abcdef");
	assert_int_equal(cfg.max_body_bytes, 2 * 1024 * 1024);
	assert_int_equal(cfg.log_level, HM_LOG_DEBUG);
	assert_true(cfg.oversub_cpu == 2.5);
	assert_true(cfg.oversub_memory == 1.5);
	assert_true(cfg.oversub_disk == 3.0);
	assert_true(cfg.oversub_network == 1000.0);
	assert_int_equal(cfg.network_limit_bps, 1250000000);
	assert_string_equal(cfg.insecure_registries, "reg.local:5000,10.0.0.1");
	assert_int_equal(cfg.pull_workers, 16);
	assert_int_equal(cfg.pull_stall_timeout_s, 60);
	assert_string_equal(cfg.image_format, "ext4");
	hm_config_done(&cfg);
}

/* MAX_UPLOAD_BYTES is read from the environment and bounded below. */
static void env_max_upload_bytes(void **state)
{
	(void)state;
	struct hm_config cfg;
	struct hm_err *err = NULL;
	setenv("MAX_UPLOAD_BYTES", "1GB", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	size_t got = cfg.max_upload_bytes;
	hm_config_done(&cfg);
	assert_int_equal(got, (size_t)1 << 30);
	expect_env_invalid("MAX_UPLOAD_BYTES", "1KB");
}

static void env_edge_values(void **state)
{
	(void)state;
	struct hm_config cfg;
	struct hm_err *err = NULL;
	/* empty values are ignored, like unset ones */
	setenv("PORT", "", 1);
	setenv("DATA_DIR", "", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 8080);
	assert_string_equal(cfg.data_dir, "/var/lib/hypeman");
	hm_config_done(&cfg);

	/* port 0 (pick a free port) and 65535 are valid */
	setenv("PORT", "0", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 0);
	hm_config_done(&cfg);
	setenv("PORT", "65535", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 65535);
	hm_config_done(&cfg);
	unsetenv("PORT");

	/* bandwidth forms */
	setenv("NETWORK_LIMIT", "500kB/s", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.network_limit_bps, 500000);
	hm_config_done(&cfg);
	setenv("NETWORK_LIMIT", "1250MB/s", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.network_limit_bps, 1250000000); /* decimal, like 10Gbps */
	hm_config_done(&cfg);
	setenv("NETWORK_LIMIT", "1000000", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.network_limit_bps, 1000000);
	hm_config_done(&cfg);
	setenv("NETWORK_LIMIT", "800mbps", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.network_limit_bps, 100000000);
	hm_config_done(&cfg);
	unsetenv("NETWORK_LIMIT");

	/* boundaries of MAX_BODY_BYTES and a timeout without the `s` */
	setenv("MAX_BODY_BYTES", "1KB", 1);
	setenv("PULL_STALL_TIMEOUT", "3600", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.max_body_bytes, 1024);
	assert_int_equal(cfg.pull_stall_timeout_s, 3600);
	hm_config_done(&cfg);
	setenv("MAX_BODY_BYTES", "64MB", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.max_body_bytes, 64 * 1024 * 1024);
	hm_config_done(&cfg);
	assert_null(err);
}

static void flags_override_env(void **state)
{
	(void)state;
	setenv("PORT", "9090", 1);
	setenv("LISTEN_ADDR", "0.0.0.0", 1);
	setenv("DATA_DIR", "/env/dir", 1);
	setenv("MAX_BODY_BYTES", "2MB", 1);
	setenv("LOG_LEVEL", "debug", 1);
	struct hm_config cfg;
	struct hm_err *err = NULL;
	assert_int_equal(load(&cfg, &err, "--port", "7070", "--listen", "::1", "--data-dir",
	                      "/flag/dir", "--max-body", "4096", "--log-level", "error", NULL),
	                 HM_CONFIG_OK);
	assert_int_equal(cfg.port, 7070);
	assert_string_equal(cfg.listen_addr, "::1");
	assert_string_equal(cfg.data_dir, "/flag/dir");
	assert_int_equal(cfg.max_body_bytes, 4096);
	assert_int_equal(cfg.log_level, HM_LOG_ERROR);
	hm_config_done(&cfg);

	/* --opt=value form, and the last of a repeated flag wins */
	assert_int_equal(load(&cfg, &err, "--port=6060", "--port", "6061", NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 6061);
	/* settings without a flag keep their environment value */
	assert_string_equal(cfg.data_dir, "/env/dir");
	assert_int_equal(cfg.log_level, HM_LOG_DEBUG);
	hm_config_done(&cfg);
	assert_null(err);
}

static void help_flag(void **state)
{
	(void)state;
	struct hm_config cfg;
	struct hm_err *err = NULL;
	/* usage goes to stdout: keep it out of the test log */
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int devnull = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && devnull >= 0);
	dup2(devnull, STDOUT_FILENO);
	int r = load(&cfg, &err, "--help", NULL);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(devnull);
	assert_int_equal(r, HM_CONFIG_HELP);
	assert_null(err);
	hm_config_done(&cfg);
}

static void invalid_port(void **state)
{
	(void)state;
	const char *bad[] = { "-1",  "70000", "65536", "abc",
		              "80x", " ",     "8080 ", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_env_invalid("PORT", bad[i]);
		expect_invalid_msg("port", "--port", bad[i], NULL);
	}
	expect_invalid_msg("port", "--port=", NULL);
}

static void invalid_env_values(void **state)
{
	(void)state;
	expect_env_invalid("DATA_DIR", "relative/dir");
	expect_env_invalid("JWT_SECRET", "short");
	expect_env_invalid("JWT_SECRET", "0123456789abcde"); /* 15 characters */
	expect_env_invalid("MAX_BODY_BYTES", "512");
	expect_env_invalid("MAX_BODY_BYTES", "65MB");
	expect_env_invalid("MAX_BODY_BYTES", "lots");
	expect_env_invalid("LOG_LEVEL", "verbose");
	expect_env_invalid("OVERSUB_CPU", "0");
	expect_env_invalid("OVERSUB_CPU", "-1");
	expect_env_invalid("OVERSUB_MEMORY", "1000.5");
	expect_env_invalid("OVERSUB_DISK", "abc");
	expect_env_invalid("OVERSUB_NETWORK", "2x");
	expect_env_invalid("OVERSUB_NETWORK", "nan");
	expect_env_invalid("NETWORK_LIMIT", "fast");
	expect_env_invalid("NETWORK_LIMIT", "0");
	expect_env_invalid("NETWORK_LIMIT", "10Xbps");
	expect_env_invalid("NETWORK_LIMIT", "-5Gbps");
	expect_env_invalid("MAX_CONCURRENT_PULLS", "0");
	expect_env_invalid("MAX_CONCURRENT_PULLS", "17");
	expect_env_invalid("MAX_CONCURRENT_PULLS", "two");
	expect_env_invalid("PULL_STALL_TIMEOUT", "0");
	expect_env_invalid("PULL_STALL_TIMEOUT", "3601");
	expect_env_invalid("PULL_STALL_TIMEOUT", "10m");
	expect_env_invalid("IMAGE_FORMAT", "squashfs");
	expect_env_invalid("IMAGE_FORMAT", "EROFS");
	expect_env_invalid("ACCEL", "hvf");
	expect_env_invalid("LOG_MAX_BYTES", "1KB");
	expect_env_invalid("LOG_MAX_BYTES", "lots");
	expect_env_invalid("ACCEL", "KVM");
}

/* ACCEL from the environment, --accel over it. */
static void accel_setting(void **state)
{
	(void)state;
	struct hm_config cfg;
	struct hm_err *err = NULL;
	setenv("ACCEL", "tcg", 1);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.accel, HM_ACCEL_FORCE_TCG);
	hm_config_done(&cfg);
	assert_int_equal(load(&cfg, &err, "--accel", "kvm", NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.accel, HM_ACCEL_FORCE_KVM);
	hm_config_done(&cfg);
	assert_int_equal(load(&cfg, &err, "--accel=auto", NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.accel, HM_ACCEL_AUTO);
	hm_config_done(&cfg);
	assert_null(err);
	unsetenv("ACCEL");
	expect_invalid_msg("ACCEL must be auto, kvm or tcg", "--accel", "xen", NULL);
}

static void invalid_flags(void **state)
{
	(void)state;
	expect_invalid_msg("absolute", "--data-dir", "rel", NULL);
	expect_invalid_msg("MAX_BODY_BYTES", "--max-body", "100", NULL);
	expect_invalid_msg("LOG_LEVEL", "--log-level", "loud", NULL);
	expect_invalid_msg("unknown option", "--bogus", NULL);
	expect_invalid_msg("needs a value", "--port", NULL);
	expect_invalid_msg("unexpected argument", "extra", NULL);
	expect_invalid_msg("unexpected argument", "--port", "1", "extra", NULL);
	/* an env-only setting has no flag */
	expect_invalid_msg("unknown option", "--jwt-secret", "0123456789abcdef", NULL);
	/* a good flag after a bad env value does not rescue it: env is checked first */
	setenv("PORT", "nope", 1);
	expect_invalid_msg("environment PORT", "--port", "1234", NULL);
	unsetenv("PORT");
}

static void repeated_loads_are_independent(void **state)
{
	(void)state;
	/* getopt state must not carry over from one load to the next */
	struct hm_config cfg;
	struct hm_err *err = NULL;
	expect_invalid_msg("unknown option", "--nope", NULL);
	assert_int_equal(load(&cfg, &err, "--port", "1111", NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 1111);
	hm_config_done(&cfg);
	assert_int_equal(load(&cfg, &err, NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 8080);
	hm_config_done(&cfg);
	assert_int_equal(load(&cfg, &err, "--port=2222", NULL), HM_CONFIG_OK);
	assert_int_equal(cfg.port, 2222);
	hm_config_done(&cfg);
}

static void expect_size(const char *s, int64_t want)
{
	int64_t v = -42;
	struct hm_err *err = NULL;
	if (hm_parse_size(s, &v, &err) < 0)
		fail_msg("hm_parse_size(\"%s\") failed: %s", s, err->msg);
	assert_null(err);
	assert_int_equal(v, want);
}

static void expect_bad_size(const char *s)
{
	int64_t v = -42;
	struct hm_err *err = NULL;
	if (hm_parse_size(s, &v, &err) == 0)
		fail_msg("hm_parse_size(\"%s\") accepted as %lld", s, (long long)v);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	assert_string_equal(hm_err_code(err), "invalid_size");
	assert_int_equal(v, -42);
	hm_err_free(err);
}

static void parse_size(void **state)
{
	(void)state;
	expect_size("1GB", 1LL << 30);
	expect_size("512MB", 512LL << 20);
	expect_size("10G", 10LL << 30);
	expect_size("1024", 1024);
	expect_size("0", 0);
	expect_size("1B", 1);
	expect_size("4k", 4096);
	expect_size("4KiB", 4096);
	expect_size("2mib", 2LL << 20);
	expect_size("1gib", 1LL << 30);
	expect_size("2T", 2LL << 40);
	expect_size("1TB", 1LL << 40);
	expect_size("1.5K", 1536);
	expect_size("  8 MB", 8LL << 20);
	expect_size("16 MB", 16LL << 20);
	/* the largest that fits below the overflow guard */
	expect_size("8000000T", 8000000LL << 40);

	expect_bad_size("");
	expect_bad_size("   ");
	expect_bad_size("GB");
	expect_bad_size("abc");
	expect_bad_size("-1");
	expect_bad_size("-1GB");
	expect_bad_size("+1");
	expect_bad_size(".5G");
	expect_bad_size("1XB");
	expect_bad_size("1 G B");
	expect_bad_size("1PB");
	expect_bad_size("12abc");
	expect_bad_size("inf");
	expect_bad_size("nan");
	/* overflow */
	expect_bad_size("99999999999999999999G");
	expect_bad_size("8388608T"); /* exactly 2^63 */
	expect_bad_size("1e400");
	expect_bad_size("99999999999999999999");

	/* err may be NULL */
	int64_t v;
	assert_true(hm_parse_size("junk", &v, NULL) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(defaults, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(env_overrides_defaults, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(env_max_upload_bytes, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(env_edge_values, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(flags_override_env, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(help_flag, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(invalid_port, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(invalid_env_values, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(invalid_flags, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(accel_setting, clear_env, clear_env),
		cmocka_unit_test_setup_teardown(repeated_loads_are_independent, clear_env,
		                                clear_env),
		cmocka_unit_test(parse_size),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
