/*
 * config: defaults < environment < flags, validated in one place. The
 * variable names match upstream Hypeman's (PORT, DATA_DIR, JWT_SECRET,
 * OVERSUB_*), so an existing deployment's environment carries over.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

void hm_config_usage(const char *prog)
{
	printf(
	    "Usage: %s [OPTIONS]\n"
	    "\n"
	    "Run the hypeman API daemon: pulls OCI images and runs them as microVMs.\n"
	    "\n"
	    "Options (each also read from the environment variable in brackets):\n"
	    "  --listen ADDR       address to bind [LISTEN_ADDR] (default 127.0.0.1)\n"
	    "  --port N            TCP port; 0 picks a free one [PORT] (default 8080)\n"
	    "  --data-dir DIR      state directory [DATA_DIR] (default /var/lib/hypeman)\n"
	    "  --max-body SIZE     largest JSON request body [MAX_BODY_BYTES] (default 1MB)\n"
	    "  --log-level LEVEL   debug, info, warn or error [LOG_LEVEL] (default info)\n"
	    "  --accel MODE        how guests run [ACCEL] (default auto):\n"
	    "                        auto  KVM where it runs guests at hardware speed (/dev/kvm\n"
	    "                              creates VMs, the CPU has vmx or svm, and no\n"
	    "                              paravirtual KVM module is loaded), else TCG\n"
	    "                        kvm   KVM, or refuse to start, naming why it is unusable\n"
	    "                        tcg   QEMU's software emulation (TCG), always\n"
	    "                      The choice is logged at start and shown by GET /capabilities.\n"
	    "  -h, --help          show this help\n"
	    "\n"
	    "Environment only:\n"
	    "  JWT_SECRET          HS256 signing secret; default: <data-dir>/jwt_secret,\n"
	    "                      created on first start and shared with hypeman-token\n"
	    "  OVERSUB_CPU, OVERSUB_MEMORY, OVERSUB_DISK, OVERSUB_NETWORK\n"
	    "                      oversubscription ratios (defaults 4, 1, 1, 2)\n"
	    "  NETWORK_LIMIT       host network capacity, e.g. 10Gbps or 1250MB/s\n"
	    "  INSECURE_REGISTRIES registries (host[:port], comma-separated) spoken to over\n"
	    "                      plain HTTP; loopback registries always are\n"
	    "  MAX_CONCURRENT_PULLS image pulls run at once (default 2)\n"
	    "  PULL_STALL_TIMEOUT  seconds a registry transfer may make no progress (default 30)\n"
	    "  IMAGE_FORMAT        root disk format: erofs (default) or ext4\n"
	    "  KERNEL_DIR          guest kernel dir (vmlinux, modules/, load.order); default\n"
	    "                      DATA_DIR/system/kernel/current, made by scripts/kernel.sh\n"
	    "  BASE_BOOT           create from a pre-booted base VM where one is ready\n"
	    "                      (default on); off: every boot starts the kernel afresh\n"
	    "  WARM_RESTORES       VMMs kept started and waiting for the most recent standbys,\n"
	    "                      so that their restore only loads the state (default 4;\n"
	    "                      0: none)\n"
	    "  SPARE_FORKS         sources, the most recently forked, that keep a fork made\n"
	    "                      ready for their next fork: its files and a waiting VMM\n"
	    "                      (default 2; 0: none; sources without a network only)\n"
	    "  NETWORK_ENABLED     give instances a network (default true); false: none, and\n"
	    "                      the host's network is left untouched\n"
	    "  BRIDGE_NAME         the instances' bridge (default vmbr0)\n"
	    "  SUBNET_CIDR         the instances' subnet (default 10.100.0.0/16)\n"
	    "  SUBNET_GATEWAY      the bridge's address (default: the subnet's first)\n"
	    "  DNS_SERVER          the guests' resolver (default: the host's first\n"
	    "                      non-loopback nameserver, else 1.1.1.1)\n"
	    "  INGRESS_LISTEN_ADDR where ingress ports listen (default 0.0.0.0)\n"
	    "  INGRESS_CERT_DIR    TLS certificates for ingress rules, NAME.crt + NAME.key\n"
	    "                      (default DATA_DIR/ingress/certs)\n"
	    "  EGRESS_PROXY_PORT   the egress proxy's port on the bridge gateway, for\n"
	    "                      instances with network.egress (default 3128)\n"
	    "  EGRESS_UPSTREAM_CA  a PEM file of CAs the egress proxy trusts for upstream\n"
	    "                      servers, besides the host's trust roots (default none)\n"
	    "  SERVICE_DOMAIN      the domain a service group's bare names go under\n"
	    "                      (/v1/services; default localhost: `web` is web.localhost)\n"
	    "  MAX_CONNECTIONS     API connections open at once (default 512); past it new\n"
	    "                      ones are refused\n"
	    "  MAX_CONNECTIONS_PER_CLIENT\n"
	    "                      API connections one client address may hold (default 64),\n"
	    "                      so that one client cannot take the others' room\n"
	    "  REQUEST_HEAD_TIMEOUT seconds an API connection may wait for a request head to\n"
	    "                      arrive (after it opens, or between keep-alive requests)\n"
	    "                      with nothing received before it is closed (default 10)\n"
	    "  LOG_MAX_BYTES       cap of each instance log (console, operations, VMM); past\n"
	    "                      it the file is kept as NAME.1 and starts again (default\n"
	    "                      16MB, at least 64KB)\n",
	    prog);
}

int hm_parse_size(const char *s, int64_t *ret, struct hm_err **err)
{
	const char *p = s;
	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size", "invalid size `%s`", s);
	errno = 0;
	char *end;
	double v = strtod(p, &end);
	if (errno || v < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size", "invalid size `%s`", s);
	while (isspace((unsigned char)*end))
		end++;
	static const struct {
		const char *suffix;
		double mult;
	} units[] = {
		{ "", 1 },
		{ "b", 1 },
		{ "k", 1024.0 },
		{ "kb", 1024.0 },
		{ "kib", 1024.0 },
		{ "m", 1024.0 * 1024 },
		{ "mb", 1024.0 * 1024 },
		{ "mib", 1024.0 * 1024 },
		{ "g", 1024.0 * 1024 * 1024 },
		{ "gb", 1024.0 * 1024 * 1024 },
		{ "gib", 1024.0 * 1024 * 1024 },
		{ "t", 1024.0 * 1024 * 1024 * 1024 },
		{ "tb", 1024.0 * 1024 * 1024 * 1024 },
		{ "tib", 1024.0 * 1024 * 1024 * 1024 },
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) == 0) {
			double bytes = v * units[i].mult;
			if (bytes > 9.0e18)
				return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
				                  "size `%s` is too large", s);
			*ret = (int64_t)bytes;
			return 0;
		}
	}
	return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
	                  "invalid size `%s`: unknown unit (use B, KB, MB, GB or TB)", s);
}

static int parse_port(const char *s, int *ret, struct hm_err **err)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > 65535)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "invalid port `%s` (0-65535)", s);
	*ret = (int)v;
	return 0;
}

static int parse_ratio(const char *name, const char *s, double *ret, struct hm_err **err)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v > 0 && v <= 1000))
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "invalid %s `%s`: expected a number in (0, 1000]", name, s);
	*ret = v;
	return 0;
}

int hm_parse_bandwidth(const char *s, int64_t *ret, struct hm_err **err)
{
	size_t len = strlen(s);
	if (len > 3 && strcasecmp(s + len - 3, "bps") == 0) {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		double mult = 0;
		if (strcasecmp(end, "bps") == 0)
			mult = 1;
		else if (strcasecmp(end, "kbps") == 0)
			mult = 1e3;
		else if (strcasecmp(end, "mbps") == 0)
			mult = 1e6;
		else if (strcasecmp(end, "gbps") == 0)
			mult = 1e9;
		if (errno || end == s || mult == 0 || v <= 0 || v > 1e13)
			return hm_err_set(err, HM_ERR_INVALID, NULL, "invalid bandwidth `%s`", s);
		*ret = (int64_t)(v * mult / 8);
		return 0;
	}
	/* Byte rates are decimal, as network rates are: 125MB/s is 1Gbps. */
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	static const struct {
		const char *unit;
		double mult;
	} units[] = { { "", 1 },       { "B/s", 1 },    { "KB/s", 1e3 }, { "kB/s", 1e3 },
		      { "MB/s", 1e6 }, { "GB/s", 1e9 }, { "TB/s", 1e12 } };
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (errno || end == s || v <= 0 || v * units[i].mult > 1e13 ||
		    v * units[i].mult < 1)
			break;
		*ret = (int64_t)(v * units[i].mult);
		return 0;
	}
	return hm_err_set(err, HM_ERR_INVALID, NULL,
	                  "invalid bandwidth `%s` (e.g. 1Gbps, 800Mbps, 125MB/s)", s);
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v);
}

/* One setting, named the same way in the environment and on the command line. */
static int apply(struct hm_config *cfg, const char *key, const char *v, struct hm_err **err)
{
	int64_t n;
	if (strcmp(key, "LISTEN_ADDR") == 0) {
		set_str(&cfg->listen_addr, v);
	} else if (strcmp(key, "PORT") == 0) {
		return parse_port(v, &cfg->port, err);
	} else if (strcmp(key, "DATA_DIR") == 0) {
		if (v[0] != '/')
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "DATA_DIR must be an absolute path, got `%s`", v);
		set_str(&cfg->data_dir, v);
	} else if (strcmp(key, "JWT_SECRET") == 0) {
		if (strlen(v) < 16)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "JWT_SECRET must be at least 16 characters");
		set_str(&cfg->jwt_secret, v);
	} else if (strcmp(key, "MAX_BODY_BYTES") == 0) {
		if (hm_parse_size(v, &n, err) < 0)
			return -1;
		if (n < 1024 || n > 64 * 1024 * 1024)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "MAX_BODY_BYTES must be between 1KB and 64MB");
		cfg->max_body_bytes = (size_t)n;
	} else if (strcmp(key, "LOG_LEVEL") == 0) {
		if (hm_log_level_parse(v, &cfg->log_level) < 0)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "invalid LOG_LEVEL `%s` (debug, info, warn, error)", v);
	} else if (strcmp(key, "OVERSUB_CPU") == 0) {
		return parse_ratio(key, v, &cfg->oversub_cpu, err);
	} else if (strcmp(key, "OVERSUB_MEMORY") == 0) {
		return parse_ratio(key, v, &cfg->oversub_memory, err);
	} else if (strcmp(key, "OVERSUB_DISK") == 0) {
		return parse_ratio(key, v, &cfg->oversub_disk, err);
	} else if (strcmp(key, "OVERSUB_NETWORK") == 0) {
		return parse_ratio(key, v, &cfg->oversub_network, err);
	} else if (strcmp(key, "NETWORK_LIMIT") == 0) {
		return hm_parse_bandwidth(v, &cfg->network_limit_bps, err);
	} else if (strcmp(key, "MAX_UPLOAD_BYTES") == 0) {
		if (hm_parse_size(v, &n, err) < 0)
			return -1;
		if (n < 1024 * 1024)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "MAX_UPLOAD_BYTES must be at least 1MB");
		cfg->max_upload_bytes = (size_t)n;
	} else if (strcmp(key, "INSECURE_REGISTRIES") == 0) {
		set_str(&cfg->insecure_registries, v);
	} else if (strcmp(key, "MAX_CONCURRENT_PULLS") == 0) {
		char *end;
		long w = strtol(v, &end, 10);
		if (*end || end == v || w < 1 || w > 16)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "MAX_CONCURRENT_PULLS must be 1-16, got `%s`", v);
		cfg->pull_workers = (int)w;
	} else if (strcmp(key, "PULL_STALL_TIMEOUT") == 0) {
		char *end;
		long t = strtol(v, &end, 10);
		if (*end == 's')
			end++;
		if (*end || end == v || t < 1 || t > 3600)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "PULL_STALL_TIMEOUT must be 1-3600 seconds, got `%s`", v);
		cfg->pull_stall_timeout_s = t;
	} else if (strcmp(key, "IMAGE_FORMAT") == 0) {
		if (strcmp(v, "erofs") != 0 && strcmp(v, "ext4") != 0)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "IMAGE_FORMAT must be erofs or ext4, got `%s`", v);
		set_str(&cfg->image_format, v);
	} else if (strcmp(key, "KERNEL_DIR") == 0) {
		set_str(&cfg->kernel_dir, v);
	} else if (strcmp(key, "BASE_BOOT") == 0) {
		if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			cfg->base_boot = 1;
		else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			cfg->base_boot = 0;
		else
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "BASE_BOOT must be on or off, got `%s`", v);
	} else if (strcmp(key, "WARM_RESTORES") == 0) {
		char *end = NULL;
		long x = strtol(v, &end, 10);
		if (!*v || *end || x < 0 || x > 64)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "WARM_RESTORES must be a number from 0 to 64, got `%s`",
			                  v);
		cfg->warm_restores = (int)x;
	} else if (strcmp(key, "SPARE_FORKS") == 0) {
		char *end = NULL;
		long x = strtol(v, &end, 10);
		if (!*v || *end || x < 0 || x > 16)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "SPARE_FORKS must be a number from 0 to 16, got `%s`", v);
		cfg->spare_forks = (int)x;
	} else if (strcmp(key, "NETWORK_ENABLED") == 0) {
		if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			cfg->network_enabled = 1;
		else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			cfg->network_enabled = 0;
		else
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "NETWORK_ENABLED must be true or false, got `%s`", v);
	} else if (strcmp(key, "BRIDGE_NAME") == 0) {
		if (strlen(v) > 15 ||
		    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(v))
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "BRIDGE_NAME must be an interface name (at most 15 of "
			                  "a-z 0-9 - _ .), got `%s`",
			                  v);
		set_str(&cfg->bridge_name, v);
	} else if (strcmp(key, "SUBNET_CIDR") == 0) {
		set_str(&cfg->subnet_cidr, v); /* checked by net/net.c, which knows the rules */
	} else if (strcmp(key, "SUBNET_GATEWAY") == 0) {
		set_str(&cfg->subnet_gateway, v);
	} else if (strcmp(key, "DNS_SERVER") == 0) {
		set_str(&cfg->dns_server, v);
	} else if (strcmp(key, "INGRESS_LISTEN_ADDR") == 0) {
		unsigned char buf[16];
		if (inet_pton(strchr(v, ':') ? AF_INET6 : AF_INET, v, buf) != 1)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "INGRESS_LISTEN_ADDR must be an IP address, got `%s`", v);
		set_str(&cfg->ingress_listen_addr, v);
	} else if (strcmp(key, "INGRESS_CERT_DIR") == 0) {
		set_str(&cfg->ingress_cert_dir, v);
	} else if (strcmp(key, "EGRESS_UPSTREAM_CA") == 0) {
		set_str(&cfg->egress_upstream_ca, v);
	} else if (strcmp(key, "EGRESS_PROXY_PORT") == 0) {
		char *end = NULL;
		long p = strtol(v, &end, 10);
		if (!*v || *end || p < 1 || p > 65535)
			return hm_err_set(
			    err, HM_ERR_INVALID, NULL,
			    "EGRESS_PROXY_PORT must be a port from 1 to 65535, got `%s`", v);
		cfg->egress_port = (int)p;
	} else if (strcmp(key, "SERVICE_DOMAIN") == 0) {
		size_t len = strlen(v);
		bool ok = len > 0 && len < 200 && v[0] != '.' && v[len - 1] != '.';
		for (const char *p = v; ok && *p; p++)
			ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
			     *p == '-' || (*p == '.' && p[1] != '.');
		if (!ok)
			return hm_err_set(
			    err, HM_ERR_INVALID, NULL,
			    "SERVICE_DOMAIN must be a lowercase domain name, got `%s`", v);
		set_str(&cfg->service_domain, v);
	} else if (strcmp(key, "LOG_MAX_BYTES") == 0) {
		if (hm_parse_size(v, &n, err) < 0)
			return -1;
		if (n < 64 * 1024)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "LOG_MAX_BYTES must be at least 64KB, got `%s`", v);
		cfg->log_max_bytes = n;
	} else if (strcmp(key, "MAX_CONNECTIONS") == 0 ||
	           strcmp(key, "MAX_CONNECTIONS_PER_CLIENT") == 0 ||
	           strcmp(key, "REQUEST_HEAD_TIMEOUT") == 0) {
		bool head = strcmp(key, "REQUEST_HEAD_TIMEOUT") == 0;
		long lo = 1, hi = head ? 3600 : 100000;
		char *end = NULL;
		long x = strtol(v, &end, 10);
		if (!*v || *end || x < lo || x > hi)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "%s must be %s from %ld to %ld, got `%s`", key,
			                  head ? "a number of seconds" : "a count", lo, hi, v);
		if (head)
			cfg->head_timeout_s = (unsigned)x;
		else if (strcmp(key, "MAX_CONNECTIONS") == 0)
			cfg->max_connections = (unsigned)x;
		else
			cfg->max_connections_per_client = (unsigned)x;
	} else if (strcmp(key, "ACCEL") == 0) {
		if (hm_accel_mode_parse(v, &cfg->accel) < 0)
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "ACCEL must be auto, kvm or tcg, got `%s`", v);
	}
	return 0;
}

static const char *const env_keys[] = {
	"LISTEN_ADDR",
	"PORT",
	"DATA_DIR",
	"JWT_SECRET",
	"MAX_BODY_BYTES",
	"MAX_UPLOAD_BYTES",
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
	"KERNEL_DIR",
	"BASE_BOOT",
	"WARM_RESTORES",
	"SPARE_FORKS",
	"NETWORK_ENABLED",
	"BRIDGE_NAME",
	"SUBNET_CIDR",
	"SUBNET_GATEWAY",
	"DNS_SERVER",
	"INGRESS_LISTEN_ADDR",
	"INGRESS_CERT_DIR",
	"SERVICE_DOMAIN",
	"EGRESS_PROXY_PORT",
	"EGRESS_UPSTREAM_CA",
	"ACCEL",
	"LOG_MAX_BYTES",
	"MAX_CONNECTIONS",
	"MAX_CONNECTIONS_PER_CLIENT",
	"REQUEST_HEAD_TIMEOUT",
};

int hm_config_load(struct hm_config *cfg, int argc, char **argv, struct hm_err **err)
{
	*cfg = (struct hm_config){
		.listen_addr = xstrdup("127.0.0.1"),
		.port = 8080,
		.data_dir = xstrdup("/var/lib/hypeman"),
		.max_body_bytes = 1024 * 1024,
		.max_upload_bytes = (size_t)16 << 30,
		.max_connections = 512,
		.max_connections_per_client = 64,
		.head_timeout_s = 10,
		.log_level = HM_LOG_INFO,
		.oversub_cpu = 4.0,
		.oversub_memory = 1.0,
		.oversub_disk = 1.0,
		.oversub_network = 2.0,
		.image_format = xstrdup("erofs"),
		.pull_workers = 2,
		.pull_stall_timeout_s = 30,
		.network_enabled = 1,
		.base_boot = 1,
		.warm_restores = 4,
		.spare_forks = 2,
		.bridge_name = xstrdup("vmbr0"),
		.subnet_cidr = xstrdup("10.100.0.0/16"),
		.ingress_listen_addr = xstrdup("0.0.0.0"),
		.service_domain = xstrdup("localhost"),
		.egress_port = 3128,
		.log_max_bytes = 16 << 20,
	};
	for (size_t i = 0; i < sizeof(env_keys) / sizeof(env_keys[0]); i++) {
		const char *v = getenv(env_keys[i]);
		if (v && *v && apply(cfg, env_keys[i], v, err) < 0)
			return hm_err_wrap(err, "environment %s", env_keys[i]);
	}

	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "max-body", required_argument, NULL, 'b' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "accel", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 0; /* 0 fully re-initialises getopt, so loading twice works */
	opterr = 0;
	for (;;) {
		int c = getopt_long(argc, argv, ":h", opts, NULL);
		if (c == -1)
			break;
		const char *key = NULL;
		switch (c) {
		case 'l':
			key = "LISTEN_ADDR";
			break;
		case 'p':
			key = "PORT";
			break;
		case 'd':
			key = "DATA_DIR";
			break;
		case 'b':
			key = "MAX_BODY_BYTES";
			break;
		case 'L':
			key = "LOG_LEVEL";
			break;
		case 'A':
			key = "ACCEL";
			break;
		case 'h':
			hm_config_usage(argv[0]);
			return HM_CONFIG_HELP;
		case ':':
			return hm_err_set(err, HM_ERR_INVALID, NULL, "option `%s` needs a value",
			                  argv[optind - 1]);
		default:
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "unknown option `%s` (see --help)", argv[optind - 1]);
		}
		if (apply(cfg, key, optarg, err) < 0)
			return -1;
	}
	if (optind < argc)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "unexpected argument `%s`",
		                  argv[optind]);
	if (!cfg->ingress_cert_dir)
		cfg->ingress_cert_dir = xasprintf("%s/ingress/certs", cfg->data_dir);
	return HM_CONFIG_OK;
}

void hm_config_done(struct hm_config *cfg)
{
	free(cfg->bridge_name);
	free(cfg->subnet_cidr);
	free(cfg->subnet_gateway);
	free(cfg->dns_server);
	free(cfg->ingress_listen_addr);
	free(cfg->ingress_cert_dir);
	free(cfg->egress_upstream_ca);
	free(cfg->service_domain);
	free(cfg->listen_addr);
	free(cfg->data_dir);
	free(cfg->jwt_secret);
	free(cfg->insecure_registries);
	free(cfg->image_format);
	free(cfg->kernel_dir);
	*cfg = (struct hm_config){ 0 };
}
