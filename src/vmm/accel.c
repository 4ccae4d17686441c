/*
 * accel: the accelerator decision and the runtime list (see accel.h for the
 * reasoning). Probing is a handful of reads and one KVM_CREATE_VM at start-up;
 * deciding is pure, so every host shape is a unit test (test_accel).
 */
#include "vmm/accel.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/spawn.h"
#include "vmm/vmm.h"

const char *hm_accel_name(enum hm_accel a)
{
	return a == HM_ACCEL_KVM ? "kvm" : "tcg";
}

int hm_accel_from_name(const char *s)
{
	if (s && strcmp(s, "kvm") == 0)
		return HM_ACCEL_KVM;
	if (s && strcmp(s, "tcg") == 0)
		return HM_ACCEL_TCG;
	return -1;
}

int hm_accel_mode_parse(const char *s, enum hm_accel_mode *ret)
{
	static const struct {
		const char *name;
		enum hm_accel_mode mode;
	} modes[] = { { "auto", HM_ACCEL_AUTO },
		      { "kvm", HM_ACCEL_FORCE_KVM },
		      { "tcg", HM_ACCEL_FORCE_TCG } };
	for (size_t i = 0; s && i < ARRAY_SIZE(modes); i++)
		if (strcmp(s, modes[i].name) == 0) {
			*ret = modes[i].mode;
			return 0;
		}
	return -1;
}

/* Does a "flags" line of cpuinfo name vmx or svm as a whole word? */
static bool cpuinfo_has_hw_virt(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return false;
	char line[8192];
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		char *save = NULL;
		for (char *w = strtok_r(colon + 1, " \t\n", &save); w;
		     w = strtok_r(NULL, " \t\n", &save))
			if (strcmp(w, "vmx") == 0 || strcmp(w, "svm") == 0)
				return true;
	}
	return false;
}

void hm_virt_probe_at(const char *kvm_dev, const char *cpuinfo, const char *module_dir,
                      struct hm_virt_facts *ret)
{
	*ret = (struct hm_virt_facts){ 0 };
	struct stat st;
	ret->kvm_present = stat(kvm_dev, &st) == 0;
	if (ret->kvm_present) {
		_cleanup_close_ int fd = open(kvm_dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			snprintf(ret->open_error, sizeof(ret->open_error), "%s", strerror(errno));
		} else {
			ret->kvm_opens = true;
			/* A character device that is not KVM fails these ioctls. */
			int vm = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION
			             ? ioctl(fd, KVM_CREATE_VM, 0)
			             : -1;
			if (vm >= 0) {
				ret->kvm_creates_vm = true;
				close(vm);
			} else {
				snprintf(ret->open_error, sizeof(ret->open_error),
				         "KVM_CREATE_VM: %s", strerror(errno));
			}
		}
	}
	ret->cpu_hw_virt = cpuinfo_has_hw_virt(cpuinfo);
	/* Paravirtual KVM implementations that run guests by emulation. */
	static const char *const pv[] = { "kvm_pvm" };
	for (size_t i = 0; i < ARRAY_SIZE(pv); i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", module_dir, pv[i]);
		if (access(p, F_OK) == 0) {
			snprintf(ret->pv_module, sizeof(ret->pv_module), "%s", pv[i]);
			break;
		}
	}
}

void hm_virt_probe(struct hm_virt_facts *ret)
{
	hm_virt_probe_at("/dev/kvm", "/proc/cpuinfo", "/sys/module", ret);
}

int hm_accel_decide(enum hm_accel_mode mode, const struct hm_virt_facts *f,
                    struct hm_accel_choice *ret, struct hm_err **err)
{
	*ret = (struct hm_accel_choice){ .accel = HM_ACCEL_TCG };
	char *why = ret->kvm_reason;
	size_t n = sizeof(ret->kvm_reason);
	if (!f->kvm_present)
		snprintf(why, n, "no /dev/kvm");
	else if (!f->kvm_opens)
		snprintf(why, n, "/dev/kvm does not open (%s)", f->open_error);
	else if (!f->kvm_creates_vm)
		snprintf(why, n, "/dev/kvm does not create a VM (%s)", f->open_error);
	else if (f->pv_module[0])
		snprintf(why, n,
		         "/dev/kvm is a paravirtual KVM (module %s), not hardware "
		         "virtualization: guests run far slower than under TCG",
		         f->pv_module);
	else if (!f->cpu_hw_virt)
		snprintf(why, n,
		         "the CPU advertises no hardware virtualization (no vmx or svm flag)");
	else
		ret->kvm_usable = true;

	switch (mode) {
	case HM_ACCEL_FORCE_TCG:
		snprintf(ret->reason, sizeof(ret->reason), "ACCEL=tcg");
		return 0;
	case HM_ACCEL_FORCE_KVM:
		if (!ret->kvm_usable)
			return hm_err_set(err, HM_ERR_UNAVAILABLE, "kvm_unavailable",
			                  "ACCEL=kvm, but KVM is not usable on this host: %s "
			                  "(use ACCEL=auto or ACCEL=tcg)",
			                  ret->kvm_reason);
		ret->accel = HM_ACCEL_KVM;
		snprintf(ret->reason, sizeof(ret->reason), "ACCEL=kvm, and KVM is usable");
		return 0;
	case HM_ACCEL_AUTO:
		break;
	}
	if (ret->kvm_usable) {
		ret->accel = HM_ACCEL_KVM;
		snprintf(ret->reason, sizeof(ret->reason),
		         "auto: /dev/kvm creates VMs and the CPU has hardware virtualization");
	} else {
		snprintf(ret->reason, sizeof(ret->reason), "auto: %s", ret->kvm_reason);
	}
	return 0;
}

/* Append one more reason to r's, "; "-separated. */
static void add_reason(struct hm_runtime *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_reason(struct hm_runtime *r, const char *fmt, ...)
{
	size_t len = strlen(r->reason);
	if (len && len + 2 < sizeof(r->reason)) {
		memcpy(r->reason + len, "; ", 3);
		len += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	if (len < sizeof(r->reason))
		vsnprintf(r->reason + len, sizeof(r->reason) - len, fmt, ap);
	va_end(ap);
}

/* A runtime that needs hardware KVM and a binary, and that this build has no backend for. */
static void kvm_only(const struct hm_accel_choice *c, const char *name, const char *binary,
                     struct hm_runtime *r)
{
	*r = (struct hm_runtime){ .name = name, .accelerator = "kvm" };
	add_reason(r, "this build has no %s backend yet", name);
	if (!c->kvm_usable)
		add_reason(r, "it needs hardware KVM, and %s", c->kvm_reason);
	if (!hm_which(binary))
		add_reason(r, "`%s` is not installed", binary);
}

static void qemu(const struct hm_accel_choice *c, const char *name, struct hm_runtime *r)
{
	*r = (struct hm_runtime){ .name = name, .accelerator = hm_accel_name(c->accel) };
	const char *bin = hm_vmm_qemu_binary();
	if (!hm_which(bin)) {
		add_reason(r, "`%s` is not installed (package qemu-system-x86)", bin);
		return;
	}
	r->available = true;
	static const char *const features[] = { "disk-io-limit", "fork", "snapshots", "standby",
		                                NULL };
	memcpy(r->features, features, sizeof(features));
}

size_t hm_runtimes(const struct hm_accel_choice *c, struct hm_runtime out[HM_RUNTIMES_MAX])
{
	kvm_only(c, "cloud-hypervisor", "cloud-hypervisor", &out[0]);
	kvm_only(c, "firecracker", "firecracker", &out[1]);
	qemu(c, "qemu", &out[2]);
	qemu(c, "qemu-microvm", &out[3]);
	return HM_RUNTIMES_MAX;
}

const char *hm_runtime_backend(const char *name)
{
	if (strcmp(name, "qemu") == 0 || strcmp(name, "qemu-microvm") == 0)
		return "qemu";
	return name;
}

int hm_runtime_check(const struct hm_accel_choice *c, const char *name, struct hm_err **err)
{
	struct hm_runtime rt[HM_RUNTIMES_MAX];
	size_t n = hm_runtimes(c, rt);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rt[i].name, name) != 0)
			continue;
		if (rt[i].available)
			return 0;
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_hypervisor",
		                  "hypervisor `%s` cannot run on this host: %s (see GET "
		                  "/capabilities)",
		                  name, rt[i].reason);
	}
	return hm_err_set(err, HM_ERR_INVALID, "unsupported_hypervisor",
	                  "unknown hypervisor `%s` (one of cloud-hypervisor, firecracker, qemu, "
	                  "qemu-microvm)",
	                  name);
}
