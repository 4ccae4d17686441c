/*
 * Daemon configuration: built-in defaults, then environment variables,
 * then command-line flags (last wins). Every value is validated here, so
 * the rest of the daemon can trust it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "vmm/accel.h"

struct hm_err;

struct hm_config {
	char *listen_addr;                   /* LISTEN_ADDR / --listen, default 127.0.0.1 */
	int port;                            /* PORT / --port, default 8080; 0 picks a free port */
	char *data_dir;                      /* DATA_DIR / --data-dir, default /var/lib/hypeman */
	char *jwt_secret;                    /* JWT_SECRET; NULL means the data dir's secret file */
	size_t max_body_bytes;               /* MAX_BODY_BYTES / --max-body, default 1 MiB */
	size_t max_upload_bytes;             /* MAX_UPLOAD_BYTES, default 16 GiB (image archives) */
	unsigned max_connections;            /* MAX_CONNECTIONS: the API's, default 512 */
	unsigned max_connections_per_client; /* MAX_CONNECTIONS_PER_CLIENT: per address, 64 */
	unsigned head_timeout_s;     /* REQUEST_HEAD_TIMEOUT: a request head's wait, default 10 s */
	enum hm_log_level log_level; /* LOG_LEVEL / --log-level */
	double oversub_cpu;          /* OVERSUB_CPU, default 4.0 */
	double oversub_memory;       /* OVERSUB_MEMORY, default 1.0 */
	double oversub_disk;         /* OVERSUB_DISK, default 1.0 */
	double oversub_network;      /* OVERSUB_NETWORK, default 2.0 */
	int64_t network_limit_bps;   /* NETWORK_LIMIT (bytes/s), 0 = detect */
	char *insecure_registries;   /* INSECURE_REGISTRIES, comma list, or NULL */
	int pull_workers;            /* MAX_CONCURRENT_PULLS, default 2 */
	long pull_stall_timeout_s;   /* PULL_STALL_TIMEOUT, default 30 */
	char *image_format;          /* IMAGE_FORMAT: erofs (default) or ext4 */
	char
	    *kernel_dir; /* KERNEL_DIR: vmlinux + modules; NULL = $DATA_DIR/system/kernel/current */
	int warm_restores; /* WARM_RESTORES: waiting VMMs for recent standbys (instance/warm.c), 4
	                    */
	int spare_forks; /* SPARE_FORKS: sources keeping a fork made ready (instance/spare.c), 2 */
	int base_boot;   /* BASE_BOOT: on (default) creates from pre-booted bases (instance/bases.c)
	                  */
	/* The default network (net/net.h). */
	int network_enabled;  /* NETWORK_ENABLED, default 1 */
	char *bridge_name;    /* BRIDGE_NAME, default vmbr0 */
	char *subnet_cidr;    /* SUBNET_CIDR, default 10.100.0.0/16 */
	char *subnet_gateway; /* SUBNET_GATEWAY; NULL = the subnet's first address */
	/* DNS_SERVER; NULL = the host's first non-loopback resolver, else 1.1.1.1 */
	char *dns_server;
	char *ingress_listen_addr; /* INGRESS_LISTEN_ADDR, default 0.0.0.0 */
	char *ingress_cert_dir;    /* INGRESS_CERT_DIR, default DATA_DIR/ingress/certs */
	char *service_domain;      /* SERVICE_DOMAIN, default localhost: service groups' names */
	int egress_port;           /* EGRESS_PROXY_PORT, default 3128, on the bridge's gateway */
	char *egress_upstream_ca; /* EGRESS_UPSTREAM_CA: more roots for upstream servers, or NULL */
	enum hm_accel_mode accel; /* ACCEL / --accel: auto (default), kvm or tcg */
	int64_t log_max_bytes;    /* LOG_MAX_BYTES: each instance log's cap, default 16MB */
};

enum { HM_CONFIG_OK = 0, HM_CONFIG_HELP = 1 };

/*
 * Fill `cfg` from defaults, `envp`-style lookups through getenv, and argv.
 * Returns HM_CONFIG_HELP when --help was asked for (usage already printed).
 */
int hm_config_load(struct hm_config *cfg, int argc, char **argv, struct hm_err **err);
void hm_config_done(struct hm_config *cfg);
void hm_config_usage(const char *prog);

/* Bandwidth "10Gbps", "1Gbps", "125MB/s", "1000000" (bytes/s) into bytes per second. */
int hm_parse_bandwidth(const char *s, int64_t *ret, struct hm_err **err);
/* Parse a size like "1GB", "512MB", "10G", "1024" (bytes) into bytes. */
int hm_parse_size(const char *s, int64_t *ret, struct hm_err **err);
