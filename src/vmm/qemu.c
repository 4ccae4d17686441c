/*
 * qemu: the QEMU backend of the VMM interface (vmm.h).
 *
 * One qemu-system-x86_64 process per VM, started with posix_spawn in its own
 * session (a Ctrl-C on the daemon's terminal does not reach it, and it
 * outlives the daemon), stdin from /dev/null, stdout+stderr appended to the
 * VM's vmm_log. Its run_dir holds the QMP socket (control), the agent socket
 * (the virtio-serial port "hypeman.agent" of docs/guest.md), the pid file
 * and vmm.cmdline, the exact command line for debugging and benchmarks.
 *
 * Exit is observed through a pidfd, which works for children and adopted
 * processes alike; signals go through pidfd_send_signal, so a recycled pid
 * is never hit. Control is QMP, one connection per operation (vmm/qmp.h);
 * QEMU queues a second client until the first leaves, so threads sharing a
 * handle are served one after the other (exit bookkeeping is locked).
 *
 * A spec with kernel == NULL starts no guest at all (the firmware idles):
 * a test-only mode for exercising the process and control plumbing.
 *
 * Disks use cache=writeback: the host page cache is shared, so many VMs
 * booting the same read-only image read it from memory once; guest flushes
 * still reach the disk (the exit record's fsync is durable); and it works on
 * every host filesystem (cache=none needs O_DIRECT, which tmpfs lacks).
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "vmm/qmp.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

#define QMP_STARTUP_MS 10000 /* spawn: process start -> QMP answers */
#define QMP_OP_MS      5000  /* a control operation */
#define QMP_INFO_MS    2000  /* info: a slow answer means UNKNOWN */

struct qemu_vm {
	struct hm_vm base; /* first: callers see a struct hm_vm */
	char *run_dir;
	char *qmp_path;
	char *agent_path;
	pthread_mutex_t lock; /* guards exited and exit_status: handles may be shared */
	bool exited;          /* the process is gone (and reaped, if it was our child) */
	int exit_status;      /* wait status, or -1 if not ours to reap */
	int64_t spawned_us;   /* now_us() when its process was started */
	bool incoming;        /* prepared for a restore, its state not loaded yet */
	char *log_path;       /* a prepared restore's VMM log, and where this start's lines begin */
	off_t log_from;
};

static void qemu_vm_free(struct qemu_vm *vm)
{
	if (!vm)
		return;
	if (vm->base.pidfd >= 0)
		close(vm->base.pidfd);
	pthread_mutex_destroy(&vm->lock);
	free(vm->run_dir);
	free(vm->qmp_path);
	free(vm->agent_path);
	free(vm->log_path);
	free(vm);
}
DEFINE_CLEANUP_FUNC(struct qemu_vm *, qemu_vm_free)

static struct qemu_vm *qemu_vm_new(const char *run_dir)
{
	struct qemu_vm *vm = xcalloc(1, sizeof(*vm));
	vm->base.ops = &hm_vmm_qemu;
	vm->base.pid = -1;
	vm->base.pidfd = -1;
	vm->exit_status = -1;
	pthread_mutex_init(&vm->lock, NULL);
	vm->run_dir = xstrdup(run_dir);
	vm->qmp_path = xasprintf("%s/qmp.sock", run_dir);
	vm->agent_path = xasprintf("%s/agent.sock", run_dir);
	return vm;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/*
 * Has the process exited? Waits up to wait_ms for it. On exit, reaps it if
 * it is our child (recording the wait status); ECHILD (adopted, or reaped
 * through another handle) leaves exit_status at -1.
 */
static bool check_exited(struct qemu_vm *vm, int wait_ms)
{
	if (__atomic_load_n(&vm->exited, __ATOMIC_ACQUIRE))
		return true;
	long long deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
	for (;;) {
		struct pollfd p = { .fd = vm->base.pidfd, .events = POLLIN };
		long long left = deadline - now_ms();
		int r = poll(&p, 1, left > 0 ? (int)left : 0);
		if (r > 0)
			break;
		if (r == 0 && now_ms() >= deadline)
			return false;
		if (r < 0 && errno != EINTR)
			return false;
	}
	pthread_mutex_lock(&vm->lock);
	if (!vm->exited) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		int r;
		do
			r = waitid((idtype_t)P_PIDFD, (id_t)vm->base.pidfd, &si, WEXITED | WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == 0 && si.si_pid != 0) {
			if (si.si_code == CLD_EXITED)
				vm->exit_status = (si.si_status & 0xff) << 8;
			else if (si.si_code == CLD_KILLED)
				vm->exit_status = si.si_status & 0x7f;
			else if (si.si_code == CLD_DUMPED)
				vm->exit_status = (si.si_status & 0x7f) | 0x80;
		}
		__atomic_store_n(&vm->exited, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vm->lock);
	return true;
}

static int exit_status_of(struct qemu_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	int st = vm->exit_status;
	pthread_mutex_unlock(&vm->lock);
	return st;
}

/* One QMP command on a fresh connection, all within timeout_ms. */
static int qmp_run(struct qemu_vm *vm, const char *cmd, json_t *args, json_t **ret, int timeout_ms,
                   struct hm_err **err)
{
	long long t0 = now_ms();
	_cleanup_qmp_ struct hm_qmp *q = NULL;
	if (hm_qmp_connect(vm->qmp_path, timeout_ms, vm->base.pidfd, &q, err) < 0) {
		json_decref(args);
		return -1;
	}
	long long left = timeout_ms - (now_ms() - t0);
	return hm_qmp_execute(q, cmd, args, ret, left > 0 ? (int)left : 1, err);
}

/* query-status's "status" string, newly allocated. */
static int qmp_status(struct qemu_vm *vm, int timeout_ms, char **ret, struct hm_err **err)
{
	json_t *r = NULL;
	if (qmp_run(vm, "query-status", NULL, &r, timeout_ms, err) < 0)
		return -1;
	const char *s = json_string_value(json_object_get(r, "status"));
	if (!s) {
		json_decref(r);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "QMP query-status: no status");
	}
	*ret = xstrdup(s);
	json_decref(r);
	return 0;
}

/* Map a failure to reach a VM that has exited meanwhile to a clear error. */
static int vm_error(struct qemu_vm *vm, const char *what, struct hm_err **err)
{
	/* An exiting QEMU closes its sockets a moment before its pidfd reports. */
	bool unreachable = hm_err_is_kind(err, HM_ERR_UNAVAILABLE);
	if (check_exited(vm, unreachable ? 100 : 0))
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "%s: the VMM process %d has exited", what, (int)vm->base.pid);
	return hm_err_wrap(err, "%s", what);
}

/* ---- spawn ---- */

struct argv {
	char **v;
	size_t n, cap;
};

static void argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

static void argv_add(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_add(struct argv *a, const char *fmt, ...)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	va_list ap;
	va_start(ap, fmt);
	a->v[a->n++] = xvasprintf(fmt, ap);
	va_end(ap);
	a->v[a->n] = NULL;
}

/* A value inside a QEMU option string: ',' is written ",,". */
static char *opt_escape(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == ',' ? 2 : 1;
	char *out = xmalloc(n + 1), *o = out;
	for (const char *p = s; *p; p++) {
		*o++ = *p;
		if (*p == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

/* The -qmp argument; adopt() looks for it verbatim in /proc/PID/cmdline. */
static char *qmp_arg(const char *qmp_path)
{
	_cleanup_free_ char *p = opt_escape(qmp_path);
	return xasprintf("unix:%s,server=on,wait=off", p);
}

void hm_vmm_control_counts(unsigned long *connections, unsigned long *commands)
{
	hm_qmp_counts(connections, commands); /* the one backend: QEMU's QMP */
}

const char *hm_vmm_qemu_binary(void)
{
	const char *b = getenv("HYPEMAN_QEMU");
	return b && *b ? b : "qemu-system-x86_64";
}

/* argv as one shell-quoted line. */
static char *shell_join(char *const *v)
{
	size_t cap = 256, len = 0;
	char *out = xmalloc(cap);
	for (size_t i = 0; v[i]; i++) {
		const char *s = v[i];
		bool plain = *s != '\0';
		for (const char *p = s; *p && plain; p++)
			plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			               "0123456789_./=:,@%+-",
			               *p) != NULL;
		size_t need = len + 4 * strlen(s) + 4;
		if (need > cap) {
			cap = need * 2;
			out = xrealloc(out, cap);
		}
		if (i)
			out[len++] = ' ';
		if (plain) {
			memcpy(out + len, s, strlen(s));
			len += strlen(s);
			continue;
		}
		out[len++] = '\'';
		for (const char *p = s; *p; p++) {
			if (*p == '\'') {
				memcpy(out + len, "'\\''", 4);
				len += 4;
			} else {
				out[len++] = *p;
			}
		}
		out[len++] = '\'';
	}
	out[len++] = '\n';
	out[len] = '\0';
	return out;
}

static void build_argv(const struct hm_vm_spec *spec, const struct qemu_vm *vm, bool incoming,
                       struct argv *a)
{
	const char *machine = spec->machine ? spec->machine : "microvm";
	bool mmio =
	    strncmp(machine, "microvm", 7) == 0 && (machine[7] == '\0' || machine[7] == ',');
	const char *bus = mmio ? "device" : "pci";
	bool kvm = spec->accel == HM_ACCEL_KVM;

	argv_add(a, "%s", hm_vmm_qemu_binary());
	argv_add(a, "-nodefaults");
	argv_add(a, "-no-user-config");
	argv_add(a, "-display");
	argv_add(a, "none");
	argv_add(a, "-no-reboot");
	if (spec->id) {
		_cleanup_free_ char *id = opt_escape(spec->id);
		argv_add(a, "-name");
		argv_add(a, "guest=%s", id);
	}
	argv_add(a, "-machine");
	if (spec->mem_path) {
		argv_add(a, "%s,memory-backend=mem", machine);
		_cleanup_free_ char *mp = opt_escape(spec->mem_path);
		argv_add(a, "-object");
		argv_add(a, "memory-backend-file,id=mem,size=%lluM,mem-path=%s,share=on",
		         (unsigned long long)((spec->mem_bytes + (1u << 20) - 1) >> 20), mp);
	} else {
		argv_add(a, "%s", machine);
	}
	argv_add(a, "-accel");
	argv_add(a, "%s", kvm ? "kvm" : "tcg");
	if (kvm) {
		/* The host's CPU model, less IA32_ARCH_CAPABILITIES (MSR 0x10a): some
		 * hosts refuse to let QEMU set it and QEMU then aborts at start. */
		argv_add(a, "-cpu");
		argv_add(a, "host,-arch-capabilities");
	}
	argv_add(a, "-smp");
	argv_add(a, "%d", spec->vcpus);
	argv_add(a, "-m");
	argv_add(a, "%lluM", (unsigned long long)((spec->mem_bytes + (1u << 20) - 1) >> 20));
	if (spec->kernel) {
		argv_add(a, "-kernel");
		argv_add(a, "%s", spec->kernel);
		if (spec->initrd) {
			argv_add(a, "-initrd");
			argv_add(a, "%s", spec->initrd);
		}
		if (spec->cmdline) {
			argv_add(a, "-append");
			argv_add(a, "%s", spec->cmdline);
		}
	}
	if (spec->console_log) {
		_cleanup_free_ char *p = opt_escape(spec->console_log);
		argv_add(a, "-chardev");
		argv_add(a, "file,id=con,path=%s,append=on", p);
		argv_add(a, "-serial");
		argv_add(a, "chardev:con");
	}
	for (size_t i = 0; i < spec->ndisks; i++) {
		_cleanup_free_ char *p = opt_escape(spec->disks[i].path);
		argv_add(a, "-drive");
		char thr[64] = "";
		if (spec->disks[i].bps)
			snprintf(thr, sizeof(thr), ",throttling.bps-total=%llu",
			         (unsigned long long)spec->disks[i].bps);
		/* Node names: disks_resized reopens and resizes the nodes by name. */
		argv_add(a,
		         "id=d%zu,file=%s,format=raw,if=none,cache=writeback,node-name=n%zu,"
		         "file.node-name=f%zu%s%s",
		         i, p, i, i, spec->disks[i].readonly ? ",readonly=on" : "", thr);
		argv_add(a, "-device");
		argv_add(a, "virtio-blk-%s,drive=d%zu", bus, i);
	}
	if (spec->tap) {
		argv_add(a, "-netdev");
		argv_add(a, "tap,id=n0,ifname=%s,script=no,downscript=no", spec->tap);
		argv_add(a, "-device");
		argv_add(a, "virtio-net-%s,netdev=n0%s%s", bus, spec->mac ? ",mac=" : "",
		         spec->mac ? spec->mac : "");
	}
	_cleanup_free_ char *agent = opt_escape(vm->agent_path);
	argv_add(a, "-device");
	argv_add(a, "virtio-serial-%s,id=vs0", bus);
	argv_add(a, "-chardev");
	argv_add(a, "socket,id=agent,path=%s,server=on,wait=off", agent);
	argv_add(a, "-device");
	argv_add(a, "virtserialport,bus=vs0.0,chardev=agent,name=hypeman.agent");
	_cleanup_free_ char *qmp = qmp_arg(vm->qmp_path);
	argv_add(a, "-qmp");
	argv_add(a, "%s", qmp);
	argv_add(a, "-pidfile");
	argv_add(a, "%s/vmm.pid", vm->run_dir);
	if (incoming) {
		/* Wait for migrate-incoming; stay paused once the state is in. */
		argv_add(a, "-incoming");
		argv_add(a, "defer");
		argv_add(a, "-S");
	}
}

static int check_spec(const struct hm_vm_spec *spec, struct hm_err **err)
{
	if (!spec->run_dir || spec->run_dir[0] != '/')
		return hm_err_set(err, HM_ERR_INVALID, NULL, "VM spec: run_dir must be absolute");
	if (spec->vcpus < 1)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "VM spec: vcpus must be >= 1");
	if (spec->mem_bytes < (1u << 20))
		return hm_err_set(err, HM_ERR_INVALID, NULL, "VM spec: memory must be >= 1 MiB");
	if (spec->ndisks > HM_VM_MAX_DISKS)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "VM spec: more than %d disks",
		                  HM_VM_MAX_DISKS);
	for (size_t i = 0; i < spec->ndisks; i++)
		if (!spec->disks[i].path || spec->disks[i].path[0] != '/')
			return hm_err_set(err, HM_ERR_INVALID, NULL,
			                  "VM spec: disk %zu path must be absolute", i);
	if (spec->kernel && spec->kernel[0] != '/')
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "VM spec: kernel path must be absolute");
	if (spec->mem_path && spec->mem_path[0] != '/')
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "VM spec: memory file path must be absolute");
	struct sockaddr_un sa;
	if (strlen(spec->run_dir) + sizeof("/agent.sock") > sizeof(sa.sun_path))
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "VM spec: run_dir too long for a unix socket path: %s",
		                  spec->run_dir);
	return 0;
}

/* The last non-empty line QEMU wrote to its log since byte `from`. */
static char *log_last_line(const char *path, off_t from)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= from)
		return NULL;
	off_t start = st.st_size - from > 4096 ? st.st_size - 4096 : from;
	char buf[4097];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, start);
	if (n <= 0)
		return NULL;
	size_t end = (size_t)n;
	while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r' || buf[end - 1] == ' '))
		end--;
	size_t b = end;
	while (b > 0 && buf[b - 1] != '\n')
		b--;
	return end > b ? xstrndup(buf + b, end - b) : NULL;
}

static void remove_runtime_files(const char *run_dir)
{
	const char *names[] = { "qmp.sock", "agent.sock", "vmm.pid" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", run_dir, names[i]);
		unlink(p);
	}
}

/* Spawn failed after the process started: kill it (ours, by pid) and reap it. */
static void abort_spawn(struct qemu_vm *vm)
{
	if (vm->base.pid > 0 && !vm->exited) {
		if (vm->base.pidfd >= 0)
			sys_pidfd_send_signal(vm->base.pidfd, SIGKILL);
		else
			kill(vm->base.pid, SIGKILL);
		while (waitpid(vm->base.pid, NULL, 0) < 0 && errno == EINTR)
			;
		vm->exited = true;
	}
	remove_runtime_files(vm->run_dir);
}

static int start_process(char *const *argv, const char *log_path, pid_t *ret_pid,
                         struct hm_err **err)
{
	_cleanup_close_ int logfd =
	    open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
	if (logfd < 0)
		return hm_err_errno(err, errno, "open VMM log `%s`", log_path);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, logfd, 1);
	posix_spawn_file_actions_adddup2(&fa, logfd, 2);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none); /* the daemon blocks SIGTERM; QEMU must not */
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGHUP);
	posix_spawnattr_setsigdefault(&attr, &def);
	/* Own session: no terminal signals from the daemon's tty; outlives the daemon. */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	                                    POSIX_SPAWN_SETSIGDEF);
	int r = posix_spawnp(ret_pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		hm_err_errno(err, r, "start `%s`", argv[0]);
		hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
		return -1;
	}
	return 0;
}

/* Wait until QMP answers query-status; fail early if the process exits. */
static int wait_ready(struct qemu_vm *vm, const char *log_path, off_t log_from, struct hm_err **err)
{
	_cleanup_free_ char *status = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	if (qmp_status(vm, QMP_STARTUP_MS, &status, &e) == 0)
		return 0;
	/* A failing QEMU closes its sockets a moment before its pidfd reports. */
	if (check_exited(vm, 500)) {
		_cleanup_free_ char *line = log_last_line(log_path, log_from);
		char how[64] = "";
		if (vm->exit_status >= 0 && WIFEXITED(vm->exit_status))
			snprintf(how, sizeof(how), " with status %d", WEXITSTATUS(vm->exit_status));
		else if (vm->exit_status >= 0 && WIFSIGNALED(vm->exit_status))
			snprintf(how, sizeof(how), " on signal %d", WTERMSIG(vm->exit_status));
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "qemu exited at startup%s%s%s",
		                  how, line ? ": " : " (nothing in its log)", line ? line : "");
	}
	if (!err)
		return -1;
	hm_err_free(*err);
	*err = TAKE_PTR(e);
	hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
	return hm_err_wrap(err, "qemu did not become ready");
}

/* Start the process for spec and wait for QMP; with `incoming`, it waits for a state to load. */
static int spawn_process(const struct hm_vm_spec *spec, bool incoming, struct qemu_vm **ret,
                         struct hm_err **err)
{
	if (check_spec(spec, err) < 0)
		return -1;
	if (hm_mkdir_p(spec->run_dir, 0700, err) < 0)
		return hm_err_wrap(err, "spawn VM %s", spec->id ? spec->id : "");
	_cleanup_(qemu_vm_freep) struct qemu_vm *vm = qemu_vm_new(spec->run_dir);
	_cleanup_free_ char *log_path =
	    spec->vmm_log ? xstrdup(spec->vmm_log) : xasprintf("%s/vmm.log", spec->run_dir);
	remove_runtime_files(vm->run_dir); /* stale sockets would answer ECONNREFUSED only */

	_cleanup_(argv_free) struct argv a = { 0 };
	build_argv(spec, vm, incoming, &a);
	_cleanup_free_ char *line = shell_join(a.v);
	/* A record for people and benchmarks, not state: no fsync on the boot path. */
	_cleanup_free_ char *cmdline_path = xasprintf("%s/vmm.cmdline", vm->run_dir);
	_cleanup_free_ char *cmdline_tmp = xasprintf("%s.tmp", cmdline_path);
	{
		_cleanup_close_ int cfd =
		    open(cmdline_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (cfd < 0 || hm_write_all(cfd, line, strlen(line)) < 0 ||
		    rename(cmdline_tmp, cmdline_path) < 0) {
			hm_err_errno(err, errno, "write `%s`", cmdline_path);
			unlink(cmdline_tmp);
			return hm_err_wrap(err, "spawn VM %s", spec->id ? spec->id : "");
		}
	}

	struct stat st;
	off_t log_from = stat(log_path, &st) == 0 ? st.st_size : 0;
	long long t0 = now_ms();
	vm->spawned_us = now_us();
	pid_t pid;
	if (start_process(a.v, log_path, &pid, err) < 0)
		return hm_err_wrap(err, "spawn VM %s", spec->id ? spec->id : "");
	vm->base.pid = pid;
	vm->base.accel = spec->accel;
	vm->base.pidfd = sys_pidfd_open(pid);
	if (vm->base.pidfd < 0) {
		int e = errno;
		abort_spawn(vm);
		return hm_err_errno(err, e, "pidfd_open %d", (int)pid);
	}
	/* An incoming VM is waited for by restore's own first QMP connection. */
	if (!incoming && wait_ready(vm, log_path, log_from, err) < 0) {
		abort_spawn(vm);
		return hm_err_wrap(err, "spawn VM %s", spec->id ? spec->id : "");
	}
	/* An incoming VM's start ends when restore connects (qemu_restore sets it). */
	if (!incoming)
		vm->base.start_us = now_us() - vm->spawned_us;
	log_debug("vmm", "qemu ready", "id=%s pid=%d ms=%lld", spec->id ? spec->id : "", (int)pid,
	          now_ms() - t0);
	*ret = TAKE_PTR(vm);
	return 0;
}

static int qemu_spawn(const struct hm_vm_spec *spec, struct hm_vm **ret, struct hm_err **err)
{
	struct qemu_vm *vm = NULL;
	if (spawn_process(spec, false, &vm, err) < 0)
		return -1;
	*ret = &vm->base;
	return 0;
}

/* ---- the other operations ---- */

static int qemu_boot(struct hm_vm *base, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	_cleanup_free_ char *status = NULL;
	if (qmp_status(vm, QMP_OP_MS, &status, err) < 0)
		return vm_error(vm, "boot", err);
	if (strcmp(status, "running") == 0 || strcmp(status, "paused") == 0)
		return 0;
	if (strcmp(status, "prelaunch") == 0) {
		if (qmp_run(vm, "cont", NULL, NULL, QMP_OP_MS, err) < 0)
			return vm_error(vm, "boot", err);
		return 0;
	}
	return hm_err_set(err, HM_ERR_CONFLICT, NULL, "boot: the VM is %s", status);
}

/* Is /proc/PID/cmdline a QEMU serving run_dir's QMP socket? *accel: its -accel. */
static bool is_our_qemu(pid_t pid, const char *qmp_path, enum hm_accel *accel)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int)pid);
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	_cleanup_err_ struct hm_err *e = NULL;
	if (hm_read_file(path, 1u << 20, &data, &len, &e) < 0 || len == 0)
		return false;
	const char *argv0 = data;
	const char *base = strrchr(argv0, '/');
	if (!strstr(base ? base + 1 : argv0, "qemu"))
		return false;
	_cleanup_free_ char *want = qmp_arg(qmp_path);
	bool prev_qmp = false, prev_accel = false, ours = false;
	*accel = HM_ACCEL_TCG;
	for (size_t off = 0; off < len;) {
		const char *arg = data + off;
		if (prev_qmp && strcmp(arg, want) == 0)
			ours = true;
		if (prev_accel && strcmp(arg, "kvm") == 0)
			*accel = HM_ACCEL_KVM;
		prev_qmp = strcmp(arg, "-qmp") == 0;
		prev_accel = strcmp(arg, "-accel") == 0;
		off += strlen(arg) + 1;
	}
	return ours;
}

static int qemu_adopt(const char *run_dir, pid_t pid, struct hm_vm **ret, struct hm_err **err)
{
	if (!run_dir || run_dir[0] != '/' || pid <= 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "adopt: bad run_dir or pid");
	_cleanup_(qemu_vm_freep) struct qemu_vm *vm = qemu_vm_new(run_dir);
	vm->base.pid = pid;
	vm->base.pidfd = sys_pidfd_open(pid);
	if (vm->base.pidfd < 0) {
		if (errno == ESRCH)
			return hm_err_set(err, HM_ERR_NOT_FOUND, NULL,
			                  "adopt: VMM process %d is not running", (int)pid);
		return hm_err_errno(err, errno, "adopt: pidfd_open %d", (int)pid);
	}
	/* Check identity after opening the pidfd and check the pidfd after
	 * that: if it is still not readable, the cmdline read belonged to the
	 * process the pidfd holds, not to a later one that reused the pid. */
	if (!is_our_qemu(pid, vm->qmp_path, &vm->base.accel) || check_exited(vm, 0))
		return hm_err_set(err, HM_ERR_NOT_FOUND, NULL,
		                  "adopt: process %d is not the VMM of %s", (int)pid, run_dir);
	_cleanup_free_ char *status = NULL;
	if (qmp_status(vm, QMP_OP_MS, &status, err) < 0) {
		if (check_exited(vm, 0))
			return hm_err_set(err, HM_ERR_NOT_FOUND, NULL,
			                  "adopt: VMM process %d exited", (int)pid);
		return hm_err_wrap(err, "adopt %d", (int)pid);
	}
	*ret = &TAKE_PTR(vm)->base;
	return 0;
}

static int qemu_pause(struct hm_vm *base, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	if (qmp_run(vm, "stop", NULL, NULL, QMP_OP_MS, err) < 0)
		return vm_error(vm, "pause", err);
	return 0;
}

static int qemu_resume(struct hm_vm *base, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	if (qmp_run(vm, "cont", NULL, NULL, QMP_OP_MS, err) < 0)
		return vm_error(vm, "resume", err);
	return 0;
}

static int qemu_shutdown(struct hm_vm *base, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	if (qmp_run(vm, "system_powerdown", NULL, NULL, QMP_OP_MS, err) < 0)
		return vm_error(vm, "shutdown", err);
	return 0;
}

static int qemu_kill(struct hm_vm *base, int timeout_ms, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	if (check_exited(vm, 0))
		return 0;
	if (sys_pidfd_send_signal(vm->base.pidfd, SIGKILL) < 0 && errno != ESRCH)
		return hm_err_errno(err, errno, "kill VMM process %d", (int)vm->base.pid);
	if (!check_exited(vm, timeout_ms))
		return hm_err_set(err, HM_ERR_TIMEOUT, NULL,
		                  "VMM process %d still there %d ms after SIGKILL",
		                  (int)vm->base.pid, timeout_ms);
	_cleanup_free_ char *q = xasprintf("%s/qmp.sock", vm->run_dir);
	_cleanup_free_ char *a = xasprintf("%s/agent.sock", vm->run_dir);
	unlink(q);
	unlink(a);
	return 0;
}

static enum hm_vm_state state_of(const char *status)
{
	if (strcmp(status, "running") == 0)
		return HM_VM_RUNNING;
	if (strcmp(status, "shutdown") == 0 || strcmp(status, "guest-panicked") == 0)
		return HM_VM_SHUTDOWN;
	if (strcmp(status, "internal-error") == 0)
		return HM_VM_UNKNOWN;
	return HM_VM_PAUSED; /* paused, prelaunch, suspended, io-error, inmigrate... */
}

static int qemu_info(struct hm_vm *base, struct hm_vm_info *ret, struct hm_err **err)
{
	(void)err;
	struct qemu_vm *vm = (struct qemu_vm *)base;
	ret->pid = vm->base.pid;
	if (check_exited(vm, 0)) {
		ret->state = HM_VM_EXITED;
		ret->exit_status = exit_status_of(vm);
		return 0;
	}
	_cleanup_free_ char *status = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	if (qmp_status(vm, QMP_INFO_MS, &status, &e) < 0) {
		/* A socket that refuses or drops us is a QEMU on its way out, whose pidfd
		 * can lag under load: it gets a second to show its exit. One that does
		 * not answer in time is in doubt at once. */
		bool gone = check_exited(vm, hm_err_is_kind(&e, HM_ERR_UNAVAILABLE) ? 1000 : 100);
		ret->state = gone ? HM_VM_EXITED : HM_VM_UNKNOWN;
		ret->exit_status = gone ? exit_status_of(vm) : -1;
		if (!gone)
			log_debug("vmm", "QMP does not answer", "pid=%d err=\"%s\"",
			          (int)vm->base.pid, e->msg);
		return 0;
	}
	ret->state = state_of(status);
	ret->exit_status = -1;
	return 0;
}

static int qemu_agent_connect(struct hm_vm *base, int timeout_ms, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(vm->agent_path) >= sizeof(sa.sun_path))
		return hm_err_set(err, HM_ERR_INVALID, NULL, "agent socket path too long");
	memcpy(sa.sun_path, vm->agent_path, strlen(vm->agent_path) + 1);
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		/* Non-blocking connect: a blocking one could wait for ever on a full
		 * backlog (QEMU accepts one client at a time). */
		_cleanup_close_ int fd =
		    socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return hm_err_errno(err, errno, "agent socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			int fl = fcntl(fd, F_GETFL);
			if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
				return hm_err_errno(err, errno, "agent socket");
			return TAKE_FD(fd);
		}
		int e = errno;
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN && e != EINTR) {
			hm_err_errno(err, e, "connect to agent socket %s", vm->agent_path);
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		long long left = deadline - now_ms();
		if (left <= 0) {
			hm_err_errno(err, e, "connect to agent socket %s (gave up after %d ms)",
			             vm->agent_path, timeout_ms);
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		if (check_exited(vm, left < 5 ? (int)left : 5))
			return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
			                  "agent: the VMM process %d has exited",
			                  (int)vm->base.pid);
	}
}

/* ---- snapshot and restore ---- */

#define MIGRATE_MS 60000 /* a save or a load, start to end */

/*
 * The device state moves through a file descriptor handed to QEMU over QMP
 * (getfd, then the "fd:" URI): no `exec:` child (a shell and a cat, ~3 ms of
 * each save and load here), and QEMU reads or writes the file itself.
 */
#define STATE_FD "hm-state"

static json_t *ignore_shared_caps(void)
{
	return json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared",
	                 "state", 1);
}

/* Poll query-migrate on q until it completes; a failure carries QEMU's reason. */
static int wait_migration(struct qemu_vm *vm, struct hm_qmp *q, long long deadline,
                          struct hm_err **err)
{
	for (;;) {
		json_t *r = NULL;
		long long left = deadline - now_ms();
		if (hm_qmp_execute(q, "query-migrate", NULL, &r, left > 0 ? (int)left : 1, err) < 0)
			return vm_error(vm, "query-migrate", err);
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && strcmp(st, "completed") == 0) {
			json_decref(r);
			return 0;
		}
		if (st && (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
			const char *why = json_string_value(json_object_get(r, "error-desc"));
			int rc =
			    hm_err_set(err, HM_ERR_INTERNAL, NULL, "saving the VM state %s%s%s", st,
			               why ? ": " : "", why ? why : "");
			json_decref(r);
			return rc;
		}
		json_decref(r);
		if (now_ms() >= deadline)
			return hm_err_set(err, HM_ERR_TIMEOUT, NULL,
			                  "saving the VM state took more than %d ms", MIGRATE_MS);
		struct timespec ts = { 0, 500000L };
		nanosleep(&ts, NULL);
	}
}

static int qemu_snapshot(struct hm_vm *base, const char *state_path, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	long long deadline = now_ms() + MIGRATE_MS;
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", state_path);
	_cleanup_qmp_ struct hm_qmp *q = NULL;
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hm_err_errno(err, errno, "snapshot: create %s", tmp);
	if (hm_qmp_connect(vm->qmp_path, QMP_OP_MS, vm->base.pidfd, &q, err) < 0) {
		unlink(tmp);
		return vm_error(vm, "snapshot", err);
	}
	/* RAM is in a shared file already: only device state travels. */
	if (hm_qmp_execute(q, "migrate-set-capabilities", ignore_shared_caps(), NULL, QMP_OP_MS,
	                   err) < 0 ||
	    hm_qmp_give_fd(q, STATE_FD, fd, QMP_OP_MS, err) < 0 ||
	    hm_qmp_execute(q, "stop", NULL, NULL, QMP_OP_MS, err) < 0 ||
	    hm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" STATE_FD), NULL, QMP_OP_MS,
	                   err) < 0 ||
	    wait_migration(vm, q, deadline, err) < 0) {
		unlink(tmp);
		return hm_err_wrap(err, "snapshot VM %d", (int)vm->base.pid);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		unlink(tmp);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL,
		                  "snapshot: no VM state was written to %s", tmp);
	}
	if (fsync(fd) < 0 || rename(tmp, state_path) < 0) {
		int e = errno;
		unlink(tmp);
		return hm_err_errno(err, e, "snapshot: save %s", state_path);
	}
	return 0;
}

static void qemu_free(struct hm_vm *vm);

/*
 * A restore that failed after its VMM started: QEMU's own last words where it
 * ended (a state it could not load ends the process), then the process goes.
 */
static int incoming_failed(struct qemu_vm *vm, struct hm_err **err)
{
	if (check_exited(vm, 500)) {
		_cleanup_free_ char *line = log_last_line(vm->log_path, vm->log_from);
		hm_err_free(*err);
		*err = NULL;
		hm_err_set(err, HM_ERR_INTERNAL, NULL,
		           "restore: qemu could not load the VM state%s%s", line ? ": " : "",
		           line ? line : "");
	}
	abort_spawn(vm);
	return -1;
}

/* A restore's first half: the VMM started, waiting for a state, x-ignore-shared set. */
static int qemu_restore_prepare(const struct hm_vm_spec *spec, struct hm_vm **ret,
                                struct hm_err **err)
{
	if (!spec->mem_path)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "restore: the spec has no memory file");
	if (access(spec->mem_path, R_OK | W_OK) < 0)
		return hm_err_errno(err, errno, "restore: the memory file `%s`", spec->mem_path);
	char *log_path =
	    spec->vmm_log ? xstrdup(spec->vmm_log) : xasprintf("%s/vmm.log", spec->run_dir);
	struct stat lst;
	off_t log_from = stat(log_path, &lst) == 0 ? lst.st_size : 0;
	_cleanup_(qemu_vm_freep) struct qemu_vm *vm = NULL;
	if (spawn_process(spec, true, &vm, err) < 0) {
		free(log_path);
		return -1;
	}
	vm->log_path = log_path;
	vm->log_from = log_from;
	{
		_cleanup_qmp_ struct hm_qmp *q = NULL;
		if (hm_qmp_connect(vm->qmp_path, QMP_STARTUP_MS, vm->base.pidfd, &q, err) < 0)
			goto fail;
		vm->base.start_us = now_us() - vm->spawned_us;
		/* A migration setting: it holds for the load, whichever connection sends it. */
		if (hm_qmp_execute(q, "migrate-set-capabilities", ignore_shared_caps(), NULL,
		                   QMP_OP_MS, err) < 0)
			goto fail;
	}
	vm->incoming = true;
	*ret = &TAKE_PTR(vm)->base;
	return 0;
fail:
	incoming_failed(vm, err);
	return hm_err_wrap(err, "restore VM %s", spec->id ? spec->id : "");
}

/* A restore's second half: the state loaded into a prepared VMM, which ends on failure. */
static int qemu_restore_load(struct hm_vm *base, const char *state_path, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	if (!vm->incoming)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "restore: VMM %d is not waiting for a state", (int)base->pid);
	vm->incoming = false; /* one load per prepared VMM, whatever happens */
	long long deadline = now_ms() + MIGRATE_MS;
	_cleanup_qmp_ struct hm_qmp *q = NULL;
	int64_t t_up = 0;
	_cleanup_close_ int fd = open(state_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		hm_err_errno(err, errno, "restore: the VM state `%s`", state_path);
		goto fail;
	}
	if (hm_qmp_connect(vm->qmp_path, QMP_STARTUP_MS, vm->base.pidfd, &q, err) < 0)
		goto fail;
	t_up = now_us();
	if (hm_qmp_give_fd(q, STATE_FD, fd, QMP_OP_MS, err) < 0 ||
	    hm_qmp_execute(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" STATE_FD), NULL,
	                   QMP_OP_MS, err) < 0)
		goto fail;
	/* "inmigrate" while loading; "paused" (-S) once the state is in. A load
	 * that fails ends the QEMU process. */
	for (;;) {
		json_t *r = NULL;
		long long left = deadline - now_ms();
		if (hm_qmp_execute(q, "query-status", NULL, &r, left > 0 ? (int)left : 1, err) < 0)
			goto fail;
		const char *st = json_string_value(json_object_get(r, "status"));
		bool done = st && strcmp(st, "inmigrate") != 0;
		bool ok = st && strcmp(st, "paused") == 0;
		_cleanup_free_ char *status = st ? xstrdup(st) : NULL;
		json_decref(r);
		if (done && ok) {
			vm->base.load_us = now_us() - t_up;
			return 0;
		}
		if (done) {
			hm_err_set(err, HM_ERR_INTERNAL, NULL,
			           "restore: the VM is `%s` after loading its state", status);
			goto fail;
		}
		if (now_ms() >= deadline) {
			hm_err_set(err, HM_ERR_TIMEOUT, NULL,
			           "restore: loading the VM state took more than %d ms",
			           MIGRATE_MS);
			goto fail;
		}
		struct timespec ts = { 0, 500000L };
		nanosleep(&ts, NULL);
	}
fail:
	hm_qmp_close(q);
	q = NULL;
	incoming_failed(vm, err);
	return hm_err_wrap(err, "restore VM %d", (int)base->pid);
}

static int qemu_restore(const struct hm_vm_spec *spec, const char *state_path, struct hm_vm **ret,
                        struct hm_err **err)
{
	if (access(state_path, R_OK) < 0)
		return hm_err_errno(err, errno, "restore: the VM state `%s`", state_path);
	struct hm_vm *vm = NULL;
	if (qemu_restore_prepare(spec, &vm, err) < 0)
		return -1;
	if (qemu_restore_load(vm, state_path, err) < 0) {
		qemu_free(vm);
		return hm_err_wrap(err, "restore VM %s", spec->id ? spec->id : "");
	}
	*ret = vm;
	return 0;
}

static void qemu_free(struct hm_vm *vm)
{
	qemu_vm_free((struct qemu_vm *)vm);
}

/* blockdev-reopen of disk i's two nodes (format over file) as read-only or not. */
static json_t *reopen_args(size_t i, const char *path, bool readonly)
{
	_cleanup_free_ char *fnode = xasprintf("f%zu", i);
	_cleanup_free_ char *nnode = xasprintf("n%zu", i);
	return json_pack("{s:[{s:s,s:s,s:s,s:b},{s:s,s:s,s:s,s:b}]}", "options", "node-name", fnode,
	                 "driver", "file", "filename", path, "read-only", readonly, "node-name",
	                 nnode, "driver", "raw", "file", fnode, "read-only", readonly);
}

static int qemu_disks_resized(struct hm_vm *base, const struct hm_vm_disk *disks, size_t n,
                              const bool *which, struct hm_err **err)
{
	struct qemu_vm *vm = (struct qemu_vm *)base;
	_cleanup_qmp_ struct hm_qmp *q = NULL;
	if (hm_qmp_connect(vm->qmp_path, QMP_OP_MS, vm->base.pidfd, &q, err) < 0)
		return vm_error(vm, "resize disks", err);
	for (size_t i = 0; i < n; i++) {
		if (!which[i])
			continue;
		struct stat st;
		if (stat(disks[i].path, &st) < 0)
			return hm_err_errno(err, errno, "resize disk %zu: `%s`", i, disks[i].path);
		_cleanup_free_ char *node = xasprintf("n%zu", i);
		/*
		 * The resize is what notifies the guest (virtio-blk's config
		 * change); the file keeps its size. QEMU resizes only writable
		 * nodes, so a read-only disk is writable for the two commands (the
		 * guest is paused: nothing writes in between).
		 */
		bool ro = disks[i].readonly;
		int r = 0;
		if (ro)
			r = hm_qmp_execute(q, "blockdev-reopen",
			                   reopen_args(i, disks[i].path, false), NULL, QMP_OP_MS,
			                   err);
		if (r == 0)
			r = hm_qmp_execute(q, "block_resize",
			                   json_pack("{s:s,s:I}", "node-name", node, "size",
			                             (json_int_t)st.st_size),
			                   NULL, QMP_OP_MS, err);
		if (ro && hm_qmp_execute(q, "blockdev-reopen", reopen_args(i, disks[i].path, true),
		                         NULL, QMP_OP_MS, r == 0 ? err : NULL) < 0)
			r = -1;
		if (r < 0)
			return hm_err_wrap(err, "resize disk %zu (`%s`)", i, disks[i].path);
	}
	return 0;
}

const struct hm_vmm_ops hm_vmm_qemu = {
	.name = "qemu",
	.spawn = qemu_spawn,
	.boot = qemu_boot,
	.adopt = qemu_adopt,
	.pause = qemu_pause,
	.resume = qemu_resume,
	.shutdown = qemu_shutdown,
	.kill = qemu_kill,
	.info = qemu_info,
	.agent_connect = qemu_agent_connect,
	.snapshot = qemu_snapshot,
	.restore = qemu_restore,
	.restore_prepare = qemu_restore_prepare,
	.restore_load = qemu_restore_load,
	.disks_resized = qemu_disks_resized,
	.free = qemu_free,
};
