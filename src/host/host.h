/*
 * Facts about the host this daemon runs on: CPU count, memory, disk space
 * of the data dir, network capacity. Read from /proc, sysfs and statfs.
 */
#pragma once

#include <stdint.h>

struct hm_err;

struct hm_host_capacity {
	int64_t cpus;
	int64_t memory_bytes;
	int64_t disk_bytes; /* size of the filesystem holding the data dir */
	int64_t network_bps;
	const char *network_source; /* "detected", "configured" or "default" */
};

/* `network_limit_bps` > 0 overrides detection. */
int hm_host_capacity(const char *data_dir, int64_t network_limit_bps, struct hm_host_capacity *ret,
                     struct hm_err **err);
