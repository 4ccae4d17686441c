/*
 * host: capacity discovery. CPUs from sched_getaffinity (what we may
 * actually use), memory from /proc/meminfo, disk from statvfs on the data
 * dir, network from the speed of the interface that carries the default
 * route (sysfs), else 10 Gbit/s as upstream assumes.
 */
#include "host/host.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

#define DEFAULT_NETWORK_BPS (10000000000LL / 8)

static int64_t meminfo_total(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	char line[256];
	long long kb;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
			return kb * 1024;
	return -1;
}

/* The interface of the default IPv4 route, from /proc/net/route. */
static char *default_route_iface(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/net/route", "re");
	if (!f)
		return NULL;
	char line[512], iface[64];
	unsigned long dest, mask;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %lx %*x %*x %*d %*d %*d %lx", iface, &dest, &mask) == 3 &&
		    dest == 0 && mask == 0)
			return xstrdup(iface);
	}
	return NULL;
}

static int64_t iface_speed_bps(const char *iface)
{
	if (strchr(iface, '/') || strcmp(iface, "..") == 0)
		return -1;
	_cleanup_free_ char *path = xasprintf("/sys/class/net/%s/speed", iface);
	_cleanup_free_ char *data = NULL;
	if (hm_read_file(path, 64, &data, NULL, NULL) < 0)
		return -1;
	long mbit = strtol(data, NULL, 10);
	if (mbit <= 0)
		return -1;
	return (int64_t)mbit * 1000000 / 8;
}

int hm_host_capacity(const char *data_dir, int64_t network_limit_bps, struct hm_host_capacity *ret,
                     struct hm_err **err)
{
	struct hm_host_capacity c = { 0 };
	cpu_set_t set;
	c.cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
	c.memory_bytes = meminfo_total();
	if (c.memory_bytes < 0)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL,
		                  "cannot read MemTotal from /proc/meminfo");
	struct statvfs vfs;
	if (statvfs(data_dir, &vfs) < 0)
		return hm_err_errno(err, errno, "statvfs `%s`", data_dir);
	c.disk_bytes = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
	if (network_limit_bps > 0) {
		c.network_bps = network_limit_bps;
		c.network_source = "configured";
	} else {
		_cleanup_free_ char *iface = default_route_iface();
		int64_t speed = iface ? iface_speed_bps(iface) : -1;
		c.network_bps = speed > 0 ? speed : DEFAULT_NETWORK_BPS;
		c.network_source = speed > 0 ? "detected" : "default";
	}
	*ret = c;
	return 0;
}
