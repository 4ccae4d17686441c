/*
 * The FAKE VMM backend for unit tests (see fake_vmm.h). Each fake VM is a
 * pidfd on a stand-in child process and, once the agent is connected, a
 * thread playing the guest init on the other end of a socketpair: it answers
 * hello (with a program pid unless told otherwise) and takes stop as the
 * program exiting and the VM powering off.
 */
#include "tests/unit/fake_vmm.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/xalloc.h"

struct fake_vmm_script fake_vmm;

struct fake_vm {
	struct hm_vm base; /* first: the instance layer sees only this */
	enum hm_vm_state state;
	int guest_fd; /* the guest's end of the agent channel, or -1 */
	pthread_t guest;
	bool has_guest;
};

void fake_vmm_reset(void)
{
	memset(&fake_vmm, 0, sizeof(fake_vmm));
}

pid_t fake_vmm_process(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

void fake_vmm_crash(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void count(enum fake_op op)
{
	atomic_fetch_add(&fake_vmm.calls[op], 1);
}

static bool exited(struct fake_vm *vm)
{
	struct pollfd p = { .fd = vm->base.pidfd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* The scripted hang: wait, then fail as a VMM that does not answer would. */
static int hang(const char *what, struct hm_err **err)
{
	int ms = atomic_load(&fake_vmm.hang_ms);
	if (ms <= 0)
		return 0;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
	return hm_err_set(err, HM_ERR_TIMEOUT, NULL, "fake VMM: %s timed out after %d ms", what,
	                  ms);
}

static void send_line(int fd, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return;
	size_t n = strlen(s);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	if (send(fd, s, n, MSG_NOSIGNAL) < 0) {
		/* the host went away */
	}
	free(s);
}

/* The fake guest init: one line in, its answer out, until the channel closes. */
static void *guest_main(void *arg)
{
	struct fake_vm *vm = arg;
	char buf[65536];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(vm->guest_fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			return NULL;
		len += (size_t)r;
		char *nl;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = '\0';
			json_t *m = json_loads(buf, 0, NULL);
			const char *type = json_string_value(json_object_get(m, "type"));
			if (type && strcmp(type, "hello") == 0) {
				bool prog = !atomic_load(&fake_vmm.no_program);
				send_line(vm->guest_fd, json_pack("{s:s,s:i}", "type", "hello",
				                                  "program_pid", prog ? 7 : 0));
			} else if (type && strcmp(type, "stop") == 0) {
				send_line(vm->guest_fd,
				          json_pack("{s:s,s:i}", "type", "exit", "code", 0));
				kill(vm->base.pid,
				     SIGKILL); /* the program ended: the VM powers off */
			}
			json_decref(m);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		if (len == sizeof(buf) - 1)
			len = 0;
	}
}

static void guest_stop(struct fake_vm *vm)
{
	if (!vm->has_guest)
		return;
	shutdown(vm->guest_fd, SHUT_RDWR);
	pthread_join(vm->guest, NULL);
	close(vm->guest_fd);
	vm->guest_fd = -1;
	vm->has_guest = false;
}

static int fake_spawn(const struct hm_vm_spec *spec, struct hm_vm **ret, struct hm_err **err)
{
	(void)spec;
	(void)ret;
	return hm_err_set(err, HM_ERR_NOT_IMPLEMENTED, NULL, "fake VMM: no spawn (adopt only)");
}

static int fake_boot(struct hm_vm *vm, struct hm_err **err)
{
	(void)vm;
	(void)err;
	return 0;
}

static int fake_adopt(const char *run_dir, pid_t pid, struct hm_vm **ret, struct hm_err **err)
{
	(void)run_dir;
	count(FAKE_ADOPT);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, NULL, "fake VMM: process %d is gone",
		                  (int)pid);
	struct fake_vm *vm = xcalloc(1, sizeof(*vm));
	vm->base = (struct hm_vm){ &hm_vmm_fake, pid, pidfd, HM_ACCEL_TCG };
	vm->state = HM_VM_RUNNING;
	vm->guest_fd = -1;
	*ret = &vm->base;
	if (exited(vm)) {
		hm_vmm_fake.free(*ret);
		*ret = NULL;
		return hm_err_set(err, HM_ERR_NOT_FOUND, NULL, "fake VMM: process %d has exited",
		                  (int)pid);
	}
	return 0;
}

static int fake_pause(struct hm_vm *base, struct hm_err **err)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_PAUSE);
	if (hang("pause", err) < 0)
		return -1;
	vm->state = HM_VM_PAUSED;
	return 0;
}

static int fake_resume(struct hm_vm *base, struct hm_err **err)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_RESUME);
	if (hang("resume", err) < 0)
		return -1;
	if (exited(vm))
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "fake VMM: the process has exited");
	vm->state = HM_VM_RUNNING;
	return 0;
}

static int fake_shutdown(struct hm_vm *base, struct hm_err **err)
{
	(void)err;
	count(FAKE_SHUTDOWN);
	kill(base->pid, SIGKILL);
	return 0;
}

static int fake_kill(struct hm_vm *base, int timeout_ms, struct hm_err **err)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_KILL);
	if (atomic_load(&fake_vmm.kill_fails))
		return hm_err_set(err, HM_ERR_TIMEOUT, NULL,
		                  "fake VMM: process %d survived SIGKILL", (int)base->pid);
	kill(base->pid, SIGKILL);
	struct pollfd p = { .fd = base->pidfd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1)
		return hm_err_set(err, HM_ERR_TIMEOUT, NULL, "fake VMM: still there");
	vm->state = HM_VM_EXITED;
	return 0;
}

static int fake_info(struct hm_vm *base, struct hm_vm_info *ret, struct hm_err **err)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_INFO);
	ret->pid = base->pid;
	ret->exit_status = -1;
	if (exited(vm)) {
		ret->state = HM_VM_EXITED;
		return 0;
	}
	if (hang("query-status", err) < 0) {
		ret->state = HM_VM_UNKNOWN;
		return 0;
	}
	ret->state = vm->state;
	return 0;
}

static int fake_agent_connect(struct hm_vm *base, int timeout_ms, struct hm_err **err)
{
	(void)timeout_ms;
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_AGENT);
	guest_stop(vm); /* a new host connection: the old one is gone */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return hm_err_errno(err, errno, "fake VMM: socketpair");
	vm->guest_fd = sv[1];
	if (pthread_create(&vm->guest, NULL, guest_main, vm) != 0)
		abort();
	vm->has_guest = true;
	return sv[0];
}

static int fake_snapshot(struct hm_vm *base, const char *state_path, struct hm_err **err)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	count(FAKE_SNAPSHOT);
	if (hang("migrate", err) < 0)
		return -1;
	if (atomic_load(&fake_vmm.snapshot_exits)) {
		kill(base->pid, SIGKILL);
		struct pollfd p = { .fd = base->pidfd, .events = POLLIN };
		poll(&p, 1, 5000);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "fake VMM: the process exited during the save");
	}
	if (atomic_load(&fake_vmm.snapshot_fails))
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "fake VMM: the save failed");
	vm->state = HM_VM_PAUSED;
	FILE *f = fopen(state_path, "we");
	if (!f)
		return hm_err_errno(err, errno, "fake VMM: write %s", state_path);
	fputs("fake device state\n", f);
	fclose(f);
	return 0;
}

static int fake_restore(const struct hm_vm_spec *spec, const char *state_path, struct hm_vm **ret,
                        struct hm_err **err)
{
	(void)spec;
	(void)state_path;
	(void)ret;
	return hm_err_set(err, HM_ERR_NOT_IMPLEMENTED, NULL, "fake VMM: no restore");
}

static int fake_disks_resized(struct hm_vm *vm, const struct hm_vm_disk *disks, size_t n,
                              const bool *which, struct hm_err **err)
{
	(void)vm;
	(void)disks;
	(void)n;
	(void)which;
	return hm_err_set(err, HM_ERR_NOT_IMPLEMENTED, NULL, "fake VMM: no disk resize");
}

static void fake_free(struct hm_vm *base)
{
	struct fake_vm *vm = (struct fake_vm *)base;
	if (!vm)
		return;
	guest_stop(vm);
	close(vm->base.pidfd);
	free(vm);
}

const struct hm_vmm_ops hm_vmm_fake = {
	.name = "fake",
	.spawn = fake_spawn,
	.boot = fake_boot,
	.adopt = fake_adopt,
	.pause = fake_pause,
	.resume = fake_resume,
	.shutdown = fake_shutdown,
	.kill = fake_kill,
	.info = fake_info,
	.agent_connect = fake_agent_connect,
	.snapshot = fake_snapshot,
	.restore = fake_restore,
	.disks_resized = fake_disks_resized,
	.free = fake_free,
};
