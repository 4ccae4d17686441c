/*
 * The host's TSC frequency, for the guest's tsc_early_khz= (under TCG the
 * guest reads the host TSC, and microvm has no other clock to calibrate
 * against; see docs/guest.md).
 *
 * /proc/cpuinfo's "cpu MHz" is the TSC frequency only when no cpufreq driver
 * is active (VMs, most cloud hosts: the kernel reports tsc_khz there); with
 * a cpufreq driver it is the core's current clock, which wanders. So: use
 * cpuinfo unless /sys/devices/system/cpu/cpu0/cpufreq exists, else time
 * rdtsc against CLOCK_MONOTONIC over ~20 ms. Computed once, then cached.
 */
#include "vmm/vmm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "core/cleanup.h"

static long tsc_khz_cached = -1;

static long from_cpuinfo(void)
{
	if (access("/sys/devices/system/cpu/cpu0/cpufreq", F_OK) == 0)
		return 0;
	_cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return 0;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "cpu MHz", 7) != 0)
			continue;
		const char *colon = strchr(line, ':');
		if (!colon)
			return 0;
		char *end;
		double mhz = strtod(colon + 1, &end);
		if (end == colon + 1 || !(mhz > 0 && mhz < 100000))
			return 0;
		return (long)(mhz * 1000.0 + 0.5);
	}
	return 0;
}

static long from_rdtsc(void)
{
#if defined(__x86_64__) || defined(__i386__)
	struct timespec t0, t1, pause = { 0, 20 * 1000 * 1000 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned long long c0 = __rdtsc();
	nanosleep(&pause, NULL);
	unsigned long long c1 = __rdtsc();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	if (ns <= 0 || c1 <= c0)
		return 0;
	return (long)((double)(c1 - c0) / ns * 1e6 + 0.5);
#else
	return 0;
#endif
}

long hm_vmm_host_tsc_khz(void)
{
	long khz = __atomic_load_n(&tsc_khz_cached, __ATOMIC_ACQUIRE);
	if (khz >= 0)
		return khz;
	khz = from_cpuinfo();
	if (khz == 0)
		khz = from_rdtsc();
	__atomic_store_n(&tsc_khz_cached, khz, __ATOMIC_RELEASE);
	return khz;
}
