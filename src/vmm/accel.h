/*
 * What this host can run guests with: the accelerator decision (KVM or
 * TCG) and which hypervisor runtimes can launch. The decision is made once,
 * at daemon start-up, from facts about the host that cannot lie: a /dev/kvm
 * that opens is not enough (a paravirtual nested KVM such as kvm_pvm opens,
 * creates VMs and then runs a stock kernel hundreds of times slower than
 * TCG), so `auto` picks KVM only when the device works, the CPU advertises
 * hardware virtualization (vmx or svm) and no paravirtual KVM module is
 * loaded. Every spawn and restore then uses that one choice.
 *
 * Facts are gathered by hm_virt_probe() and judged by hm_accel_decide(),
 * which touches nothing, so the unit tests feed it any host they like.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct hm_err;

/* The accelerator a VM runs under. TCG is 0: a zeroed VM spec is always safe. */
enum hm_accel {
	HM_ACCEL_TCG = 0,
	HM_ACCEL_KVM,
};

/* What the operator asked for (ACCEL / --accel). */
enum hm_accel_mode {
	HM_ACCEL_AUTO = 0,
	HM_ACCEL_FORCE_KVM,
	HM_ACCEL_FORCE_TCG,
};

/* "kvm" or "tcg". */
const char *hm_accel_name(enum hm_accel a);
/* The accelerator named `s` ("kvm", "tcg"), or -1. */
int hm_accel_from_name(const char *s);
/* "auto", "kvm" or "tcg" into *ret; -1 for anything else. */
int hm_accel_mode_parse(const char *s, enum hm_accel_mode *ret);

/* Facts about the host's virtualization support. */
struct hm_virt_facts {
	bool kvm_present;    /* the KVM device exists */
	bool kvm_opens;      /* it opens read-write */
	bool kvm_creates_vm; /* and answers KVM_CREATE_VM with a VM */
	bool cpu_hw_virt;    /* a CPU flags line has vmx or svm */
	char open_error[64]; /* why it did not open or create a VM, or "" */
	char pv_module[32];  /* a loaded paravirtual KVM module ("kvm_pvm"), or "" */
};

/* Read the facts from this host: /dev/kvm, /proc/cpuinfo, /sys/module. */
void hm_virt_probe(struct hm_virt_facts *ret);
/* The same from other paths (tests): a device, a cpuinfo file, a module dir. */
void hm_virt_probe_at(const char *kvm_dev, const char *cpuinfo, const char *module_dir,
                      struct hm_virt_facts *ret);

struct hm_accel_choice {
	enum hm_accel accel;
	bool kvm_usable;      /* KVM runs guests at hardware speed here */
	char kvm_reason[192]; /* why KVM is not usable, or "" */
	char reason[256];     /* why `accel` was chosen, for the log and /capabilities */
};

/*
 * Judge the facts. auto: KVM when usable, else TCG. kvm: KVM, or an
 * HM_ERR_UNAVAILABLE error naming why it is not usable (the daemon refuses
 * to start). tcg: TCG. Always fills ret->kvm_usable and kvm_reason.
 */
int hm_accel_decide(enum hm_accel_mode mode, const struct hm_virt_facts *f,
                    struct hm_accel_choice *ret, struct hm_err **err);

/* A hypervisor runtime and whether it can launch here. */
struct hm_runtime {
	const char *name; /* "cloud-hypervisor", "firecracker", "qemu", "qemu-microvm" */
	bool available;
	char reason[256];        /* why not, or "" */
	const char *features[8]; /* NULL-terminated stable feature IDs when available */
	const char *accelerator; /* what it would run under ("kvm", "tcg") */
};

#define HM_RUNTIMES_MAX    4
#define HM_RUNTIME_DEFAULT "qemu"

/* Every runtime this build knows, sorted by name, into out (HM_RUNTIMES_MAX). */
size_t hm_runtimes(const struct hm_accel_choice *c, struct hm_runtime out[HM_RUNTIMES_MAX]);
/*
 * Can runtime `name` launch here? 0 if so; else an error: HM_ERR_INVALID
 * "unsupported_hypervisor" naming the runtime and the reason (unknown names
 * included).
 */
int hm_runtime_check(const struct hm_accel_choice *c, const char *name, struct hm_err **err);
/* The backend (struct hm_vmm_ops.name) that runs runtime `name`: "qemu" for
 * qemu and qemu-microvm; the name itself for one this table does not know. */
const char *hm_runtime_backend(const char *name);
