/*
 * A FAKE VMM backend, built only into the unit tests: it implements the
 * hm_vmm_ops vtable over a stand-in process (a child of the test that waits
 * to be killed) and a fake guest agent on a socketpair, so that the instance
 * layer runs unchanged on top of it. A script set by the test makes each
 * operation fail, hang, or take the VM down, and every call is counted.
 * Nothing here is a hypervisor; the tests that need one boot real QEMU.
 */
#pragma once

#include <stdatomic.h>
#include <sys/types.h>

#include "vmm/vmm.h"

enum fake_op {
	FAKE_ADOPT,
	FAKE_PAUSE,
	FAKE_RESUME,
	FAKE_SHUTDOWN,
	FAKE_KILL,
	FAKE_INFO,
	FAKE_AGENT,
	FAKE_SNAPSHOT,
	FAKE_OPS,
};

struct fake_vmm_script {
	atomic_int kill_fails;     /* kill answers an error and the process stays */
	atomic_int snapshot_fails; /* snapshot answers an error; the guest runs on */
	atomic_int snapshot_exits; /* snapshot: the process dies, then an error */
	atomic_int hang_ms;        /* pause/resume/snapshot/info wait this long, then time out */
	atomic_int no_program;     /* the guest's hello reports no program (still booting) */
	atomic_int calls[FAKE_OPS];
};

extern struct fake_vmm_script fake_vmm;
extern const struct hm_vmm_ops hm_vmm_fake;

/* Reset the script and the counts. */
void fake_vmm_reset(void);
/* A stand-in VMM process: a child that waits to be killed (and dies with the test). */
pid_t fake_vmm_process(void);
/* Kill and reap a stand-in process (the VM "crashes"). */
void fake_vmm_crash(pid_t pid);
