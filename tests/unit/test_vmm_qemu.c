/*
 * Tests for the QEMU backend (vmm/qemu.c) against real qemu-system-x86_64
 * processes (QEMU is a package `make setup` installs: without it every test
 * fails, naming the binary). VMs are kept small
 * (-m 64M, one vCPU). The running case boots no kernel at all: with
 * spec.kernel NULL (a test-only mode) the firmware just idles, which is
 * enough for QMP, pause/resume, adopt, the agent socket and kill. Exit
 * detection uses the real kernel (.data/system/kernel/current/vmlinux or
 * $HYPEMAN_KERNEL_DIR) with an initrd that has no /init: the kernel panics,
 * panic=-1 reboots, -no-reboot makes QEMU exit. Every process started is
 * killed by pid in the teardown, whatever the test did.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/spawn.h"
#include "vmm/qmp.h"
#include "vmm/vmm.h"

struct t {
	char dir[64];
	char console[128], vmmlog[128], disk0[128], disk1[128];
	pid_t pids[8];
	int npids;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void make_file(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

static int setup(void **state)
{
	if (!hm_which(hm_vmm_qemu_binary())) {
		print_message("`%s` is not installed (make setup installs qemu-system-x86)\n",
		              hm_vmm_qemu_binary());
		return -1; /* a failure, not a skip */
	}
	struct t *t = calloc(1, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/hm-vmm-XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->console, sizeof(t->console), "%s/console.log", t->dir);
	snprintf(t->vmmlog, sizeof(t->vmmlog), "%s/vmm.log", t->dir);
	snprintf(t->disk0, sizeof(t->disk0), "%s/disk0.img", t->dir);
	snprintf(t->disk1, sizeof(t->disk1), "%s/disk,1.img", t->dir); /* a comma to escape */
	*state = t;
	return 0;
}

/* Kill (by pid) whatever a test started, even when it failed half-way. */
static int teardown(void **state)
{
	struct t *t = *state;
	if (!t)
		return 0;
	for (int i = 0; i < t->npids; i++) {
		if (kill(t->pids[i], SIGKILL) == 0)
			waitpid(t->pids[i], NULL, 0);
		else
			waitpid(t->pids[i], NULL, WNOHANG);
	}
	struct hm_err *err = NULL;
	hm_rm_rf(t->dir, &err);
	hm_err_free(err);
	free(t);
	return 0;
}

static void track(struct t *t, pid_t pid)
{
	assert_true(t->npids < 8);
	t->pids[t->npids++] = pid;
}

static void base_spec(struct t *t, struct hm_vm_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->id = "test-vm";
	spec->run_dir = t->dir;
	spec->vcpus = 1;
	spec->mem_bytes = 64u << 20;
	spec->console_log = t->console;
	spec->vmm_log = t->vmmlog;
}

static enum hm_vm_state state_of(struct hm_vm *vm)
{
	struct hm_vm_info info;
	struct hm_err *err = NULL;
	assert_int_equal(vm->ops->info(vm, &info, &err), 0);
	assert_int_equal(info.pid, vm->pid);
	return info.state;
}

static char *slurp(const char *path)
{
	char *data = NULL;
	size_t len;
	struct hm_err *err = NULL;
	if (hm_read_file(path, 16u << 20, &data, &len, &err) < 0) {
		hm_err_free(err);
		return NULL;
	}
	return data;
}

static void lifecycle(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	make_file(t->disk0, 1 << 20);
	make_file(t->disk1, 1 << 20);
	spec.disks[0] = (struct hm_vm_disk){ t->disk0, false };
	spec.disks[1] = (struct hm_vm_disk){ t->disk1, true };
	spec.ndisks = 2;

	const struct hm_vmm_ops *ops = &hm_vmm_qemu;
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	long long t0 = now_ms();
	int r = ops->spawn(&spec, &vm, &err);
	long long t_spawn = now_ms() - t0;
	if (r < 0)
		fail_msg("spawn: %s", err->msg);
	track(t, vm->pid);
	assert_true(vm->pid > 0);
	assert_true(vm->pidfd >= 0);
	assert_ptr_equal(vm->ops, ops);

	char path[256];
	snprintf(path, sizeof(path), "%s/vmm.cmdline", t->dir);
	char *cmdline = slurp(path);
	assert_non_null(cmdline);
	assert_non_null(strstr(cmdline, "-machine microvm"));
	assert_non_null(strstr(cmdline, "virtio-blk-device,drive=d1"));
	assert_non_null(strstr(cmdline,
	                       "disk,,1.img,format=raw,if=none,cache=writeback,node-name=n1,"
	                       "file.node-name=f1,readonly=on"));
	assert_null(strstr(cmdline, "-kernel"));
	if (getenv("HM_TEST_VERBOSE"))
		print_message("%s", cmdline);
	free(cmdline);
	snprintf(path, sizeof(path), "%s/vmm.pid", t->dir);
	char *pidtxt = slurp(path);
	assert_non_null(pidtxt);
	assert_int_equal(atoi(pidtxt), vm->pid);
	free(pidtxt);

	assert_int_equal(state_of(vm), HM_VM_RUNNING);
	assert_int_equal(ops->boot(vm, &err), 0);

	t0 = now_ms();
	assert_int_equal(ops->pause(vm, &err), 0);
	long long t_pause = now_ms() - t0;
	assert_int_equal(state_of(vm), HM_VM_PAUSED);
	t0 = now_ms();
	assert_int_equal(ops->resume(vm, &err), 0);
	long long t_resume = now_ms() - t0;
	assert_int_equal(state_of(vm), HM_VM_RUNNING);

	/* A control socket that is gone fails each call, also for callers that
	 * pass no error object (a stop's power button, an undo's resume). */
	char qmp[256], aside[256];
	snprintf(qmp, sizeof(qmp), "%s/qmp.sock", t->dir);
	snprintf(aside, sizeof(aside), "%s/qmp.sock.aside", t->dir);
	assert_int_equal(rename(qmp, aside), 0);
	assert_int_equal(ops->resume(vm, NULL), -1);
	assert_int_equal(ops->pause(vm, NULL), -1);
	assert_int_equal(ops->shutdown(vm, NULL), -1);
	assert_int_equal(ops->resume(vm, &err), -1);
	assert_non_null(err);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(rename(aside, qmp), 0);
	assert_int_equal(state_of(vm), HM_VM_RUNNING);

	/* a second handle on the same VM, as after a daemon restart */
	struct hm_vm *vm2 = NULL;
	t0 = now_ms();
	r = ops->adopt(t->dir, vm->pid, &vm2, &err);
	long long t_adopt = now_ms() - t0;
	if (r < 0)
		fail_msg("adopt: %s", err->msg);
	assert_int_equal(vm2->pid, vm->pid);
	assert_int_equal(state_of(vm2), HM_VM_RUNNING);
	assert_int_equal(ops->pause(vm2, &err), 0);
	assert_int_equal(state_of(vm), HM_VM_PAUSED);
	assert_int_equal(ops->resume(vm2, &err), 0);
	assert_int_equal(state_of(vm), HM_VM_RUNNING);

	/* never adopt an unrelated process, nor the right pid for another run_dir */
	struct hm_vm *bad = NULL;
	assert_true(ops->adopt(t->dir, getpid(), &bad, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	assert_null(bad);
	hm_err_free(err);
	err = NULL;
	assert_true(ops->adopt("/tmp/hm-vmm-elsewhere", vm->pid, &bad, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;

	/* the agent channel's host end */
	int fd = ops->agent_connect(vm, 2000, &err);
	if (fd < 0)
		fail_msg("agent_connect: %s", err->msg);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(write(fd, "{\"type\":\"ping\"}\n", 16), 16);
	close(fd);

	/* the power button: the idle firmware ignores it, QMP accepts it */
	assert_int_equal(ops->shutdown(vm, &err), 0);

	pid_t pid = vm->pid;
	t0 = now_ms();
	assert_int_equal(ops->kill(vm, 5000, &err), 0);
	long long t_kill = now_ms() - t0;
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	struct hm_vm_info info;
	assert_int_equal(ops->info(vm, &info, &err), 0);
	assert_int_equal(info.state, HM_VM_EXITED);
	assert_true(WIFSIGNALED(info.exit_status));
	assert_int_equal(WTERMSIG(info.exit_status), SIGKILL);
	/* the adopted handle sees it gone too (no wait status: not its child) */
	assert_int_equal(ops->info(vm2, &info, &err), 0);
	assert_int_equal(info.state, HM_VM_EXITED);
	assert_int_equal(info.exit_status, -1);
	assert_int_equal(ops->kill(vm2, 1000, &err), 0);
	assert_true(ops->pause(vm, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	hm_err_free(err);
	err = NULL;
	assert_true(ops->agent_connect(vm, 200, &err) < 0);
	hm_err_free(err);
	err = NULL;
	assert_true(ops->adopt(t->dir, pid, &bad, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);

	ops->free(vm2);
	ops->free(vm);
	print_message("qemu timings: spawn->QMP %lld ms, pause %lld ms, resume %lld ms, "
	              "adopt %lld ms, kill %lld ms\n",
	              t_spawn, t_pause, t_resume, t_adopt, t_kill);
}

struct hammer {
	struct hm_vm *vm;
	int failures;
	char msg[256];
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < 15; i++) {
		struct hm_err *err = NULL;
		struct hm_vm_info info;
		int r = h->vm->ops->info(h->vm, &info, &err);
		if (r == 0 && info.state != HM_VM_RUNNING && info.state != HM_VM_PAUSED) {
			snprintf(h->msg, sizeof(h->msg), "info state %d", (int)info.state);
			h->failures++;
		}
		if (r == 0)
			r = h->vm->ops->pause(h->vm, &err);
		if (r == 0)
			r = h->vm->ops->resume(h->vm, &err);
		if (r < 0) {
			snprintf(h->msg, sizeof(h->msg), "%s", err->msg);
			h->failures++;
		}
		hm_err_free(err);
	}
	return NULL;
}

/* Threads sharing one handle: QMP serves them one at a time, none fails. */
static void concurrent_clients(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	if (hm_vmm_qemu.spawn(&spec, &vm, &err) < 0)
		fail_msg("spawn: %s", err->msg);
	track(t, vm->pid);
	struct hammer h[3];
	pthread_t th[3];
	long long t0 = now_ms();
	for (int i = 0; i < 3; i++) {
		h[i] = (struct hammer){ .vm = vm };
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &h[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	long long dt = now_ms() - t0;
	for (int i = 0; i < 3; i++)
		if (h[i].failures)
			fail_msg("thread %d: %d failures, last: %s", i, h[i].failures, h[i].msg);
	assert_int_equal(state_of(vm), HM_VM_RUNNING);
	assert_int_equal(vm->ops->kill(vm, 5000, &err), 0);
	vm->ops->free(vm);
	print_message("3 threads x 15 x (info, pause, resume): %lld ms\n", dt);
}

/*
 * Snapshot and restore with RAM in a file: the state file holds only the
 * devices; a restored VM comes back paused and runs on resume; a damaged
 * state file fails the restore with QEMU's reason and leaves no process.
 */
static void snapshot_restore(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	char mem[128], st[128], bad[128];
	snprintf(mem, sizeof(mem), "%s/memory.ram", t->dir);
	snprintf(st, sizeof(st), "%s/vm's state", t->dir); /* a quote for the shell */
	snprintf(bad, sizeof(bad), "%s/bad.state", t->dir);
	spec.mem_path = mem;
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	if (hm_vmm_qemu.spawn(&spec, &vm, &err) < 0)
		fail_msg("spawn: %s", err->msg);
	track(t, vm->pid);
	long long t0 = now_ms();
	if (vm->ops->snapshot(vm, st, &err) < 0)
		fail_msg("snapshot: %s", err->msg);
	long long t_save = now_ms() - t0;
	assert_int_equal(state_of(vm), HM_VM_PAUSED);
	struct stat sb;
	assert_int_equal(stat(st, &sb), 0);
	assert_true(sb.st_size > 0 && sb.st_size < (8 << 20)); /* devices only, not 64 MiB */
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.tmp", st);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(vm->ops->kill(vm, 5000, &err), 0);
	vm->ops->free(vm);

	t0 = now_ms();
	if (hm_vmm_qemu.restore(&spec, st, &vm, &err) < 0)
		fail_msg("restore: %s", err->msg);
	long long t_restore = now_ms() - t0;
	track(t, vm->pid);
	assert_int_equal(state_of(vm), HM_VM_PAUSED);
	assert_int_equal(vm->ops->resume(vm, &err), 0);
	assert_int_equal(state_of(vm), HM_VM_RUNNING);
	assert_int_equal(vm->ops->kill(vm, 5000, &err), 0);
	vm->ops->free(vm);

	/* a damaged state: QEMU refuses it, and nothing is left running */
	int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a VM state\n", 15), 15);
	close(fd);
	assert_true(hm_vmm_qemu.restore(&spec, bad, &vm, &err) < 0);
	if (!strstr(err->msg, "could not load"))
		fail_msg("unexpected error: %s", err->msg);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	/* a missing one: a clear error before any process starts */
	snprintf(bad, sizeof(bad), "%s/missing.state", t->dir);
	assert_true(hm_vmm_qemu.restore(&spec, bad, &vm, &err) < 0);
	assert_non_null(strstr(err->msg, "missing.state"));
	hm_err_free(err);
	print_message("snapshot %lld ms (%lld bytes of state), restore to paused %lld ms\n", t_save,
	              (long long)sb.st_size, t_restore);
}

/* Node name -> (virtual size, read-only) from the VM's QMP. */
static void node_info(struct t *t, const char *node, long long *size, bool *ro)
{
	char sock[200];
	snprintf(sock, sizeof(sock), "%s/qmp.sock", t->dir);
	struct hm_qmp *q = NULL;
	struct hm_err *err = NULL;
	json_t *r = NULL;
	if (hm_qmp_connect(sock, 5000, -1, &q, &err) < 0 ||
	    hm_qmp_execute(q, "query-named-block-nodes", NULL, &r, 5000, &err) < 0)
		fail_msg("QMP: %s", err->msg);
	*size = -1;
	size_t i;
	json_t *n;
	json_array_foreach (r, i, n) {
		if (strcmp(json_string_value(json_object_get(n, "node-name")), node) != 0)
			continue;
		*size = json_integer_value(
		    json_object_get(json_object_get(n, "image"), "virtual-size"));
		*ro = json_is_true(json_object_get(n, "ro"));
	}
	json_decref(r);
	hm_qmp_close(q);
}

/*
 * A VM restored onto other disk files than it was saved with (a boot from a
 * base): disks_resized tells it their sizes, read-only ones staying read-only.
 */
static void restore_onto_other_disks(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	char mem[128], st[128];
	snprintf(mem, sizeof(mem), "%s/memory.ram", t->dir);
	snprintf(st, sizeof(st), "%s/vm.state", t->dir);
	make_file(t->disk0, 1 << 20);
	make_file(t->disk1, 1 << 20);
	spec.disks[0] = (struct hm_vm_disk){ t->disk0, false, 0 };
	spec.disks[1] = (struct hm_vm_disk){ t->disk1, true, 1 << 20 };
	spec.ndisks = 2;
	spec.mem_path = mem;
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	if (hm_vmm_qemu.spawn(&spec, &vm, &err) < 0)
		fail_msg("spawn: %s", err->msg);
	track(t, vm->pid);
	if (vm->ops->snapshot(vm, st, &err) < 0)
		fail_msg("snapshot: %s", err->msg);
	assert_int_equal(vm->ops->kill(vm, 5000, &err), 0);
	vm->ops->free(vm);

	assert_int_equal(truncate(t->disk0, 3 << 20), 0);
	assert_int_equal(truncate(t->disk1, 5 << 20), 0);
	if (hm_vmm_qemu.restore(&spec, st, &vm, &err) < 0)
		fail_msg("restore: %s", err->msg);
	track(t, vm->pid);
	bool which[2] = { true, true };
	long long t0 = now_ms();
	if (vm->ops->disks_resized(vm, spec.disks, 2, which, &err) < 0)
		fail_msg("disks_resized: %s", err->msg);
	long long dt = now_ms() - t0;
	long long size;
	bool ro;
	node_info(t, "n0", &size, &ro);
	assert_int_equal(size, 3 << 20);
	assert_false(ro);
	node_info(t, "n1", &size, &ro);
	assert_int_equal(size, 5 << 20);
	assert_true(ro); /* writable only for the resize */
	node_info(t, "f1", &size, &ro);
	assert_true(ro);
	struct stat sb;
	assert_int_equal(stat(t->disk1, &sb), 0);
	assert_int_equal(sb.st_size, 5 << 20); /* the file keeps its size */
	/* a disk that is gone: an error naming it */
	char gone[160];
	snprintf(gone, sizeof(gone), "%s/gone.img", t->dir);
	struct hm_vm_disk other[2] = { spec.disks[0], { gone, true, 0 } };
	assert_true(vm->ops->disks_resized(vm, other, 2, which, &err) < 0);
	if (!strstr(err->msg, "gone.img"))
		fail_msg("error does not name the disk: %s", err->msg);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(vm->ops->resume(vm, &err), 0);
	assert_int_equal(state_of(vm), HM_VM_RUNNING);
	assert_int_equal(vm->ops->kill(vm, 5000, &err), 0);
	vm->ops->free(vm);
	print_message("two disks resized in %lld ms\n", dt);
}

static void missing_disk(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/no-such-disk.img", t->dir);
	spec.disks[0] = (struct hm_vm_disk){ missing, true };
	spec.ndisks = 1;
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	long long t0 = now_ms();
	assert_true(hm_vmm_qemu.spawn(&spec, &vm, &err) < 0);
	long long dt = now_ms() - t0;
	assert_null(vm);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	if (!strstr(err->msg, missing))
		fail_msg("error does not name the disk: %s", err->msg);
	print_message("missing disk after %lld ms: %s\n", dt, err->msg);
	hm_err_free(err);
	/* nothing left behind: no child of ours (reaped), no sockets */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	char path[256];
	snprintf(path, sizeof(path), "%s/qmp.sock", t->dir);
	assert_int_equal(access(path, F_OK), -1);
}

static void bad_specs(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	spec.run_dir = "relative/dir";
	assert_true(hm_vmm_qemu.spawn(&spec, &vm, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	hm_err_free(err);
	err = NULL;

	base_spec(t, &spec);
	/* The configured QEMU (a wrapper, say) is put back afterwards. */
	char *saved = getenv("HYPEMAN_QEMU") ? strdup(getenv("HYPEMAN_QEMU")) : NULL;
	setenv("HYPEMAN_QEMU", "/nonexistent/qemu-system-x86_64", 1);
	int r = hm_vmm_qemu.spawn(&spec, &vm, &err);
	if (saved)
		setenv("HYPEMAN_QEMU", saved, 1);
	else
		unsetenv("HYPEMAN_QEMU");
	free(saved);
	assert_true(r < 0);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	assert_non_null(strstr(err->msg, "/nonexistent/qemu-system-x86_64"));
	hm_err_free(err);
	err = NULL;

	struct hm_vm *adopted = NULL;
	assert_true(hm_vmm_qemu.adopt(t->dir, 0, &adopted, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	hm_err_free(err);
}

/* newc cpio entry; name includes no leading slash. */
static void cpio_entry(FILE *f, const char *name, unsigned mode)
{
	size_t namesize = strlen(name) + 1;
	fprintf(f, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08zX%08X", 1u, mode, 0u, 0u,
	        1u, 0u, 0u, 0u, 0u, 0u, 0u, namesize, 0u);
	fwrite(name, 1, namesize, f);
	for (size_t pad = (4 - (110 + namesize) % 4) % 4; pad > 0; pad--)
		fputc(0, f);
}

/* The kernel's absolute path (malloc'd), or NULL. Tests run from the repo root. */
static char *find_kernel(void)
{
	const char *dir = getenv("HYPEMAN_KERNEL_DIR");
	char rel[4096];
	snprintf(rel, sizeof(rel), "%s/vmlinux", dir ? dir : ".data/system/kernel/current");
	return realpath(rel, NULL);
}

static void guest_panic_exits(void **state)
{
	struct t *t = *state;
	char *kernel = find_kernel();
	if (!kernel) /* make setup fetches it */
		fail_msg("no guest kernel (.data/system/kernel/current/vmlinux or "
		         "$HYPEMAN_KERNEL_DIR/vmlinux): run make setup");
	char initrd[128];
	snprintf(initrd, sizeof(initrd), "%s/initrd.cpio", t->dir);
	FILE *f = fopen(initrd, "we");
	assert_non_null(f);
	cpio_entry(f, "dev", 040755); /* no /init: the kernel panics looking for a root */
	cpio_entry(f, "TRAILER!!!", 0);
	fclose(f);
	char cmdline[256];
	long khz = hm_vmm_host_tsc_khz();
	snprintf(cmdline, sizeof(cmdline),
	         "console=ttyS0 panic=-1 quiet tsc_early_khz=%ld cryptomgr.notests", khz);

	struct hm_vm_spec spec;
	base_spec(t, &spec);
	spec.kernel = kernel;
	spec.initrd = initrd;
	spec.cmdline = cmdline;
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	long long t0 = now_ms();
	if (hm_vmm_qemu.spawn(&spec, &vm, &err) < 0)
		fail_msg("spawn: %s", err->msg);
	track(t, vm->pid);
	struct hm_vm_info info = { 0 };
	while (now_ms() - t0 < 30000) {
		assert_int_equal(vm->ops->info(vm, &info, &err), 0);
		if (info.state == HM_VM_EXITED)
			break;
		if (info.state != HM_VM_RUNNING && info.state != HM_VM_SHUTDOWN)
			fail_msg("state %d after %lld ms of a panicking guest", (int)info.state,
			         now_ms() - t0);
		sleep_ms(50);
	}
	long long dt = now_ms() - t0;
	assert_int_equal(info.state, HM_VM_EXITED);
	assert_true(WIFEXITED(info.exit_status));
	assert_int_equal(WEXITSTATUS(info.exit_status), 0);
	char *console = slurp(t->console);
	assert_non_null(console);
	if (!strstr(console, "Kernel panic"))
		fail_msg("no panic on the console: %s", console);
	free(console);
	vm->ops->free(vm);
	free(kernel);
	print_message("kernel panic -> qemu exited after %lld ms\n", dt);
}

/* The accelerator is the spec's: TCG by default, KVM with the CPU model that
 * keeps QEMU from aborting on MSR 0x10a. Read from the recorded command line,
 * which is written before QEMU starts (KVM may not run on this host). */
static void accel_on_command_line(void **state)
{
	struct t *t = *state;
	struct hm_vm_spec spec;
	base_spec(t, &spec);
	char cmdline[4200];
	snprintf(cmdline, sizeof(cmdline), "%s/vmm.cmdline", t->dir);
	struct hm_vm *vm = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_vmm_qemu.spawn(&spec, &vm, &err), 0);
	track(t, vm->pid);
	assert_int_equal(vm->accel, HM_ACCEL_TCG);
	char *line = slurp(cmdline);
	assert_non_null(line);
	assert_non_null(strstr(line, " -accel tcg "));
	assert_null(strstr(line, "-cpu"));
	free(line);
	/* An adopted VMM reports the accelerator from its command line. */
	struct hm_vm *adopted = NULL;
	assert_int_equal(hm_vmm_qemu.adopt(t->dir, vm->pid, &adopted, &err), 0);
	assert_int_equal(adopted->accel, HM_ACCEL_TCG);
	hm_vmm_qemu.free(adopted);
	assert_int_equal(hm_vmm_qemu.kill(vm, 5000, &err), 0);
	hm_vmm_qemu.free(vm);

	spec.accel = HM_ACCEL_KVM;
	vm = NULL;
	if (hm_vmm_qemu.spawn(&spec, &vm, &err) == 0) {
		track(t, vm->pid);
		assert_int_equal(vm->accel, HM_ACCEL_KVM);
		assert_int_equal(hm_vmm_qemu.kill(vm, 5000, &err), 0);
		hm_vmm_qemu.free(vm);
	} else {
		hm_err_free(err); /* no usable /dev/kvm here: the line is what matters */
		err = NULL;
	}
	line = slurp(cmdline);
	assert_non_null(line);
	assert_non_null(strstr(line, " -accel kvm -cpu host,-arch-capabilities "));
	free(line);
}

static void tsc_khz(void **state)
{
	(void)state;
	long khz = hm_vmm_host_tsc_khz();
#if defined(__x86_64__)
	assert_true(khz > 100000 && khz < 10000000);
#endif
	assert_int_equal(hm_vmm_host_tsc_khz(), khz);
	print_message("host TSC %ld kHz\n", khz);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(restore_onto_other_disks, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_specs, setup, teardown),
		cmocka_unit_test_setup_teardown(guest_panic_exits, setup, teardown),
		cmocka_unit_test_setup_teardown(accel_on_command_line, setup, teardown),
		cmocka_unit_test(tsc_khz),
	};
	return cmocka_run_group_tests_name("vmm_qemu", tests, NULL, NULL);
}
