/*
 * The VMM interface: one vtable that every hypervisor backend implements
 * (QEMU in qemu.c; Cloud Hypervisor and Firecracker later), so the instance
 * layer never knows which one runs a VM. Like crun's libcrun_container_ops
 * or kvmtool's per-arch hooks: the caller holds a `struct hm_vm` and calls
 * through vm->ops.
 *
 * A VMM process outlives the daemon that started it (it runs in its own
 * session), so the interface can both spawn a VM and adopt one that is
 * already running after a daemon restart. Exit is observed through a pidfd,
 * which works for children and adopted processes alike.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/accel.h"

struct hm_err;

#define HM_VM_MAX_DISKS 16

struct hm_vm_disk {
	const char *path;
	bool readonly;
	uint64_t bps; /* throughput limit in bytes/s, reads and writes together; 0: none */
};

/* Everything a backend needs to start a VM. Paths are absolute. */
struct hm_vm_spec {
	const char *id;      /* instance id, used in names and logs */
	const char *run_dir; /* per-instance dir for sockets and the pid file */
	const char *kernel;  /* uncompressed vmlinux */
	const char *initrd;
	const char *cmdline;
	int vcpus;
	uint64_t mem_bytes;
	struct hm_vm_disk disks[HM_VM_MAX_DISKS]; /* in guest order: vda, vdb, ... */
	size_t ndisks;
	const char *console_log; /* serial console output, appended */
	const char *vmm_log;     /* the VMM process's own stdout/stderr, appended */
	const char *machine;     /* NULL: the backend's fastest ("microvm" for QEMU) */
	const char *tap;         /* a TAP to give the guest as its NIC, or NULL for none */
	const char *mac;         /* the NIC's MAC (with tap) */
	/* Guest RAM in this file, mapped shared (NULL: anonymous memory). A VM
	 * with its RAM in a file can be snapshotted in milliseconds: the file
	 * already is the memory image, and only device state is written. */
	const char *mem_path;
	/* The accelerator (hm_accel_decide at start-up). A restore must use the
	 * one the state was saved under. */
	enum hm_accel accel;
};

enum hm_vm_state {
	HM_VM_RUNNING,  /* the VMM process lives and the guest CPUs run */
	HM_VM_PAUSED,   /* the VMM process lives, the guest is paused */
	HM_VM_SHUTDOWN, /* the guest powered off; the VMM process is about to exit */
	HM_VM_EXITED,   /* the VMM process is gone */
	HM_VM_UNKNOWN,  /* alive but its control socket does not answer */
};

struct hm_vm_info {
	enum hm_vm_state state;
	pid_t pid;
	int exit_status; /* wait status if the process was our child and exited, else -1 */
};

struct hm_vm;

struct hm_vmm_ops {
	const char *name; /* "qemu" */
	/* Start the VMM process for spec; on return the process runs and its
	 * control socket answers. Kills what it started on failure. */
	int (*spawn)(const struct hm_vm_spec *spec, struct hm_vm **ret, struct hm_err **err);
	/* Start the guest if spawn left it stopped (a no-op for QEMU, which boots
	 * at once; CH and FC need an explicit boot call). */
	int (*boot)(struct hm_vm *vm, struct hm_err **err);
	/* Re-attach to a VMM started earlier (by pid and run_dir), after a daemon
	 * restart. Fails with HM_ERR_NOT_FOUND if it is no longer running. */
	int (*adopt)(const char *run_dir, pid_t pid, struct hm_vm **ret, struct hm_err **err);
	int (*pause)(struct hm_vm *vm, struct hm_err **err);
	int (*resume)(struct hm_vm *vm, struct hm_err **err);
	/* Ask the guest to power off (ACPI power button). Returns at once. */
	int (*shutdown)(struct hm_vm *vm, struct hm_err **err);
	/* SIGKILL the VMM process (by its pid, only the one we started) and
	 * wait up to timeout_ms for it to be gone. */
	int (*kill)(struct hm_vm *vm, int timeout_ms, struct hm_err **err);
	int (*info)(struct hm_vm *vm, struct hm_vm_info *ret, struct hm_err **err);
	/* Connect to the guest agent channel: a stream fd (CLOEXEC) or < 0. */
	int (*agent_connect)(struct hm_vm *vm, int timeout_ms, struct hm_err **err);
	/*
	 * Pause the guest and write its device state to state_path (atomically:
	 * a temporary file renamed into place, synced). The VM must have its RAM
	 * in spec.mem_path, which together with state_path is the whole VM. The
	 * guest stays paused afterwards: the caller resumes it or kills the VMM.
	 */
	int (*snapshot)(struct hm_vm *vm, const char *state_path, struct hm_err **err);
	/*
	 * Start a VMM for spec (whose mem_path holds the saved RAM) and load the
	 * device state from state_path into it. On return the guest is paused at
	 * the instant it was saved; resume() runs it. The spec must describe the
	 * same machine (memory size, vCPUs, disks in order, NIC or none) as the
	 * one saved; paths, the TAP and the MAC may differ. Kills what it
	 * started on failure.
	 */
	int (*restore)(const struct hm_vm_spec *spec, const char *state_path, struct hm_vm **ret,
	               struct hm_err **err);
	/*
	 * restore in two halves, for a VMM started ahead of need (a warm
	 * restore, instance/warm.c): restore_prepare starts the VMM for spec
	 * waiting for a state, touching neither the memory file nor the guest;
	 * restore_load loads state_path into a VM so prepared, once, and leaves
	 * it as restore does. A prepared VMM that fails to load is ended (the
	 * caller still frees the handle); one never loaded is ended by kill.
	 * Either may be NULL: the backend has no warm restores.
	 */
	int (*restore_prepare)(const struct hm_vm_spec *spec, struct hm_vm **ret,
	                       struct hm_err **err);
	int (*restore_load)(struct hm_vm *vm, const char *state_path, struct hm_err **err);
	/*
	 * Tell a paused guest the current size of each disk i with which[i]
	 * (disks: the spec's, in order): a VM restored onto other disk files than
	 * it was saved with still has the old sizes. The files keep their size.
	 */
	int (*disks_resized)(struct hm_vm *vm, const struct hm_vm_disk *disks, size_t n,
	                     const bool *which, struct hm_err **err);
	void (*free)(struct hm_vm *vm); /* releases memory and fds; never stops the VM */
};

/* The part of every VM handle the caller may read. Backends embed it first. */
struct hm_vm {
	const struct hm_vmm_ops *ops;
	pid_t pid;
	int pidfd;           /* readable when the VMM process has exited */
	enum hm_accel accel; /* what it runs under (an adopted VMM: read from its command line) */
	/* How long this VMM took, as its backend measured it (0: not seen, as for
	 * an adopted one): from its spawn until it answered, and for a restore
	 * the load of the saved state after that. */
	int64_t start_us, load_us;
};

/* The QEMU backend (-accel as the spec says). */
extern const struct hm_vmm_ops hm_vmm_qemu;
/* The QEMU binary it runs: $HYPEMAN_QEMU, else qemu-system-x86_64 from PATH. */
const char *hm_vmm_qemu_binary(void);

/*
 * How often this process has talked to VMM control sockets (QMP for QEMU):
 * connections opened and commands sent, since it started.
 */
void hm_vmm_control_counts(unsigned long *connections, unsigned long *commands);

/* Host TSC frequency in kHz (for tsc_early_khz=), or 0 if unknown. */
long hm_vmm_host_tsc_khz(void);
