/*
 * hypeman-init: PID 1 of every guest, the guest side of docs/guest.md. It
 * owns the guest's whole life: load the initrd's modules, read the config
 * disk, join the image's read-only root and the writable overlay disk under
 * overlayfs and switch into it, set up hostname, /etc/hosts, resolv.conf and
 * eth0, open the agent port, start the program, reap every process (the
 * program, exec sessions, orphans), forward signals (SIGTERM, the agent's
 * signal and stop messages, the ACPI power button), and when the program
 * ends write the exit record, unmount and power off. A failure of the init
 * itself is reported on the console and in the exit record (code 255)
 * before powering off: it never panics and never hangs. Static, libc only,
 * single-threaded: one poll loop serves signals (through a signalfd), the
 * agent channel (agent.c), exec sessions (exec.c), copies (cp.c) and the
 * power button.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/input.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "guest.h"

#define DEVICE_WAIT_MS 5000 /* how long a disk may take to appear */
#define POLL_STEP_MS   5
#define TERM_GRACE_MS  2000 /* SIGTERM -> SIGKILL for what is left at the end */
#define AGENT_DRAIN_MS 1000 /* how long the way out waits for the host to take the exit message */
#define MAX_BUTTONS    4

/* Signals to PID 1 that go on to the program's process group. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

bool guest_debug;
struct hm_gcfg cfg;

static struct {
	int sfd;    /* signalfd for SIGCHLD and the forwarded signals */
	int cfg_fd; /* the config disk, read-write: the exit record goes there */
	int buttons[MAX_BUTTONS];
	int nbuttons;
	int oldroot_fd;    /* the initramfs root, to come back to for unmounting */
	bool switched;     /* running in the overlay root */
	bool rw_disk;      /* /mnt/rw is the overlay disk (not a tmpfs) */
	bool base;         /* hypeman.base=1: wait to be attached before reading a disk */
	pid_t pid;         /* the program, once started */
	long oom_before;   /* /proc/vmstat oom_kill when the program started */
	long long stop_at; /* a stop request's SIGKILL deadline (uptime ms), or 0 */
	const char *vol_paths[3 * HM_GUEST_MAX_VOLS]; /* mounts to undo on the way out, in order */
	size_t nvol_paths;
} g = { .sfd = -1, .cfg_fd = -1, .oldroot_fd = -1 };

static char cfgbuf[HM_GUEST_AREA_SIZE];

static _Noreturn void finish(int code, const char *message);
static void apply_clock_seed(const struct agent_req *r, char *why, size_t whylen);

pid_t program_pid(void)
{
	return g.pid;
}

/* ---- console ---------------------------------------------------------------------------- */

void say(const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "hypeman-init: ");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, len);
	(void)w;
}

/* Milliseconds since boot: the clock /proc/uptime reads, at a finer grain. */
long long uptime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void step(const char *fmt, ...)
{
	if (!guest_debug)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	long long ms = uptime_ms();
	say("[%4lld.%03lld] %s", ms / 1000, ms % 1000, buf);
}

/* Report a failure of the init itself and power off with code 255. */
static _Noreturn void die(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void die(int errnum, const char *fmt, ...)
{
	char what[600], msg[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (errnum) {
		say("%s: %s", what, strerror(errnum));
		snprintf(msg, sizeof(msg), "init: %s: %s", what, strerror(errnum));
	} else {
		say("%s", what);
		snprintf(msg, sizeof(msg), "init: %s", what);
	}
	finish(255, msg);
}

/* ---- small helpers ---------------------------------------------------------------------- */

void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Read a small file into buf (NUL-terminated); returns its length or -1 (errno set). */
ssize_t read_small(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Read a whole file of at most `max` bytes into a malloc'd, NUL-terminated buffer. */
char *read_alloc(const char *path, size_t max)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		errno = EFBIG;
		return NULL;
	}
	size_t size = (size_t)st.st_size, len = 0;
	char *buf = malloc(size + 1);
	if (!buf)
		return NULL;
	while (len < size) {
		ssize_t n = read(fd, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Replace path with a new file holding data (never writing through a symlink). */
static int write_new_file(const char *path, const char *data, mode_t mode)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return -1;
	_cleanup_close_ int fd =
	    open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, mode);
	if (fd < 0)
		return -1;
	return write_all(fd, data, strlen(data));
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Wait for a device node to appear (the disk's driver probes asynchronously). */
static void wait_device(const char *path)
{
	struct stat st;
	for (int waited = 0;; waited += POLL_STEP_MS) {
		if (stat(path, &st) == 0)
			return;
		if (waited >= DEVICE_WAIT_MS)
			die(errno, "device %s did not appear within %d ms", path, DEVICE_WAIT_MS);
		sleep_ms(POLL_STEP_MS);
	}
}

/* ---- early boot ------------------------------------------------------------------------- */

static void noop_handler(int sig)
{
	(void)sig;
}

/*
 * Block SIGCHLD and the forwarded signals and read them from a signalfd.
 * They also get a handler: PID 1 drops signals left at SIG_DFL.
 */
static void setup_signals(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	struct sigaction sa = { .sa_handler = noop_handler };
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++) {
		sigaddset(&mask, forwarded[i]);
		sigaction(forwarded[i], &sa, NULL);
	}
	sigaction(SIGCHLD, &sa, NULL);
	/* A write to an exec session's closed stdin is EPIPE, not death. Children reset it. */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	g.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	/* Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot. */
	reboot(RB_DISABLE_CAD);
}

static void ensure_stdio(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int c = open("/dev/console", O_RDWR | O_NOCTTY);
		if (c < 0)
			return;
		if (c != fd) {
			dup2(c, fd);
			close(c);
		}
	}
}

static void mount_early(void)
{
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mkdir("/dev", 0755);
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
		die(errno, "mount devtmpfs on /dev");
	ensure_stdio();
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
	    errno != EBUSY)
		die(errno, "mount proc on /proc");
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
	    errno != EBUSY)
		die(errno, "mount sysfs on /sys");
}

static void read_cmdline(void)
{
	char buf[4096];
	if (read_small("/proc/cmdline", buf, sizeof(buf)) < 0)
		return;
	char *save = NULL;
	for (char *t = strtok_r(buf, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save))
		if (strcmp(t, "hypeman.debug=1") == 0)
			guest_debug = true;
		else if (strcmp(t, "hypeman.base=1") == 0)
			g.base = true;
}

/* insmod every module of /lib/modules/load.order, in order. */
static void load_modules(void)
{
	_cleanup_free_ char *order = read_alloc("/lib/modules/load.order", 1u << 20);
	if (!order) {
		if (errno != ENOENT)
			say("cannot read /lib/modules/load.order: %s", strerror(errno));
		return;
	}
	int loaded = 0;
	char *save = NULL;
	for (char *name = strtok_r(order, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
		if (!*name || strchr(name, '/'))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/lib/modules/%s", name);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			say("module %s: %s", name, strerror(errno));
			continue;
		}
		long long t = uptime_ms();
		if (syscall(SYS_finit_module, fd, "", 0) < 0) {
			if (errno != EEXIST && errno != ENODEV)
				say("module %s: %s", name, strerror(errno));
			continue;
		}
		loaded++;
		if (guest_debug)
			say("  %s %lld ms", name, uptime_ms() - t);
	}
	step("%d modules loaded", loaded);
}

/* ---- base mode --------------------------------------------------------------------------- */

#ifndef BLKFLSBUF
#define BLKFLSBUF _IO(0x12, 97)
#endif

/* Wait until /sys/block/<dev> shows want bytes (the host's resize notice is asynchronous). */
static void wait_disk_size(const char *dev, unsigned long long want)
{
	char path[64], text[32];
	snprintf(path, sizeof(path), "/sys/block/%s/size", dev);
	unsigned long long sectors = 0;
	for (int waited = 0;; waited += 1) {
		if (read_small(path, text, sizeof(text)) > 0) {
			sectors = strtoull(text, NULL, 10);
			if (sectors == want / 512)
				return;
		}
		if (waited >= DEVICE_WAIT_MS)
			die(0, "disk %s is %llu bytes, not the %llu it was attached with", dev,
			    sectors * 512, want);
		sleep_ms(1);
	}
}

/* Drop what the block cache holds of dev: the base read its placeholder there. */
static void flush_disk(const char *dev)
{
	char path[32];
	snprintf(path, sizeof(path), "/dev/%s", dev);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || ioctl(fd, BLKFLSBUF, 0) < 0)
		die(errno, "drop the block cache of %s", path);
}

/*
 * Base mode (docs/guest.md): a base VM stops here, modules loaded and no
 * disk read yet, and is saved. Each instance made from the base is restored
 * at this point with its own disks in the base's slots and sent `attach`:
 * the clock, fresh randomness (every copy of a base shares its RNG state
 * until then) and each disk's real size. Until the host's resize notices
 * arrive a disk has its placeholder's size, and the block cache holds what
 * the base's partition scan read from the placeholders: both are settled
 * before anything reads a disk.
 */
static void base_attach(void)
{
	cfg.agent = "hypeman.agent";
	agent_open();
	static char line[AGENT_LINE_MAX];
	step("base: waiting to be attached");
	ssize_t n = agent_base_wait(line, sizeof(line));
	if (n < 0)
		die(0, "base mode: no agent port to wait on");
	static struct hm_gjson doc;
	static struct agent_req r;
	static char data[AGENT_CP_CHUNK];
	const char *why = NULL;
	char err[200] = "";
	if (hm_gjson_parse(line, (size_t)n, &doc, &why) < 0)
		die(0, "base mode: a bad attach message (%s)", why);
	if (agent_req_decode(&doc, &r, data, sizeof(data), err, sizeof(err)) < 0)
		die(0, "base mode: %s", err);
	if (r.kind != AR_ATTACH)
		die(0, "base mode: `%.64s` where `attach` was expected", r.type);
	apply_clock_seed(&r, err, sizeof(err));
	if (err[0])
		say("attach: %s", err);
	for (size_t i = 0; i < r.attach.ndisks; i++) {
		char dev[8];
		snprintf(dev, sizeof(dev), "vd%c", (char)('a' + i));
		wait_disk_size(dev, r.attach.disk_bytes[i]);
		flush_disk(dev);
	}
	step("base: attached (%zu disks)", r.attach.ndisks);
}

/* Open the config disk, read and parse its config area. */
static void read_config(void)
{
	const char *dev = "/dev/vda";
	wait_device(dev);
	g.cfg_fd = open(dev, O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (g.cfg_fd < 0)
		die(errno, "open config disk %s", dev);
	size_t len = 0;
	while (len < sizeof(cfgbuf)) {
		ssize_t n = pread(g.cfg_fd, cfgbuf + len, sizeof(cfgbuf) - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(errno, "read config disk %s", dev);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	char why[256];
	if (hm_gcfg_parse(cfgbuf, len, &cfg, why, sizeof(why)) < 0)
		die(0, "bad config disk %s: %s", dev, why);
	step("config read (%zu args, %zu env)", cfg.argc, cfg.envc);
}

/* ---- root filesystem -------------------------------------------------------------------- */

static void mount_root(void)
{
	mkdir("/mnt", 0755);
	mkdir("/mnt/lower", 0755);
	mkdir("/mnt/rw", 0755);
	mkdir("/newroot", 0755);

	wait_device(cfg.root);
	if (mount(cfg.root, "/mnt/lower", cfg.rootfs, MS_RDONLY, NULL) < 0)
		die(errno, "mount root disk %s (%s) on /mnt/lower", cfg.root, cfg.rootfs);

	if (strcmp(cfg.overlay, "tmpfs") == 0) {
		if (mount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755") < 0)
			die(errno, "mount tmpfs on /mnt/rw");
	} else {
		wait_device(cfg.overlay);
		/* noinit_itable: the disk is a fresh sparse file whose inode tables already read
		 * as zeros; zeroing them in the background would only fill the host's disk and
		 * eat the instance's disk I/O budget. */
		if (mount(cfg.overlay, "/mnt/rw", "ext4", 0, "noinit_itable") < 0)
			die(errno, "mount overlay disk %s (ext4) on /mnt/rw", cfg.overlay);
		g.rw_disk = true;
	}
	if (mkdir("/mnt/rw/upper", 0755) < 0 && errno != EEXIST)
		die(errno, "mkdir /mnt/rw/upper");
	if (mkdir("/mnt/rw/work", 0755) < 0 && errno != EEXIST)
		die(errno, "mkdir /mnt/rw/work");
	if (mount("overlay", "/newroot", "overlay", 0,
	          "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work") < 0)
		die(errno, "mount overlay on /newroot");
	step("root mounted (%s %s, overlay %s)", cfg.rootfs, cfg.root, cfg.overlay);
}

/*
 * Volumes, after the switch: each record is "DEVICE ro|rw /path". The path
 * is made in the new root if missing; ro mounts read-only (the host also
 * gives the device read-only, so the guest cannot write it either way).
 */
/* An overlay volume's lower and writable mount points (they must outlive mount_volumes). */
static char vol_mounts[HM_GUEST_MAX_VOLS][2][64];

static void mount_volumes(void)
{
	for (size_t i = 0; i < cfg.nvolumes; i++) {
		char *rec = cfg.volume[i];
		char *sp1 = strchr(rec, ' ');
		char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		if (!sp1 || !sp2 || sp2[1] != '/')
			die(0, "volume record `%s`: want DEVICE ro|rw /path", rec);
		*sp1 = '\0';
		*sp2 = '\0';
		const char *dev = rec, *mode = sp1 + 1, *path = sp2 + 1;
		const char *upper = strncmp(mode, "overlay:", 8) == 0 ? mode + 8 : NULL;
		bool ro = strcmp(mode, "ro") == 0;
		if (!ro && !upper && strcmp(mode, "rw") != 0)
			die(0, "volume %s: mode `%s` (want ro, rw or overlay:DEVICE)", dev, mode);
		wait_device(dev);
		if (mkdir_p(path, 0755) < 0)
			die(errno, "volume %s: create mount point %s", dev, path);
		if (upper) {
			/* The shared volume read-only below, this instance's own disk above. */
			char *lower = vol_mounts[i][0], *rw = vol_mounts[i][1];
			snprintf(lower, sizeof(vol_mounts[i][0]), "/run/hypeman-volume-%zu/lower",
			         i);
			snprintf(rw, sizeof(vol_mounts[i][1]), "/run/hypeman-volume-%zu/rw", i);
			char up[96], work[96], opts[320];
			snprintf(up, sizeof(up), "%s/upper", rw);
			snprintf(work, sizeof(work), "%s/work", rw);
			wait_device(upper);
			if (mkdir_p(lower, 0700) < 0 || mkdir_p(rw, 0700) < 0)
				die(errno, "volume %s: make its mount points", dev);
			if (mount(dev, lower, "ext4", MS_RDONLY, NULL) < 0)
				die(errno, "volume %s: mount read-only on %s", dev, lower);
			g.vol_paths[g.nvol_paths++] = lower;
			if (mount(upper, rw, "ext4", 0, "noinit_itable") < 0)
				die(errno, "volume %s: mount its overlay disk %s", dev, upper);
			g.vol_paths[g.nvol_paths++] = rw;
			if ((mkdir(up, 0755) < 0 && errno != EEXIST) ||
			    (mkdir(work, 0755) < 0 && errno != EEXIST))
				die(errno, "volume %s: make its overlay directories", dev);
			int n = snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s",
			                 lower, up, work);
			if (n < 0 || (size_t)n >= sizeof(opts))
				die(0, "volume %s: overlay options too long", dev);
			if (mount("overlay", path, "overlay", 0, opts) < 0)
				die(errno, "volume %s: overlay on %s", dev, path);
		} else if (mount(dev, path, "ext4", ro ? MS_RDONLY : 0, NULL) < 0) {
			die(errno, "volume %s: mount on %s (%s)", dev, path, mode);
		}
		g.vol_paths[g.nvol_paths++] = path;
		step("volume %s on %s (%s)", dev, path, mode);
	}
}

static void switch_root(void)
{
	static const char *const moves[] = { "/dev", "/proc", "/sys" };
	for (size_t i = 0; i < ARRAY_SIZE(moves); i++) {
		char dst[64];
		snprintf(dst, sizeof(dst), "/newroot%s", moves[i]);
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			die(errno, "mkdir %s", dst);
		if (mount(moves[i], dst, NULL, MS_MOVE, NULL) < 0)
			die(errno, "move %s to %s", moves[i], dst);
	}
	g.oldroot_fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (chdir("/newroot") < 0)
		die(errno, "chdir /newroot");
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		die(errno, "move /newroot to /");
	if (chroot(".") < 0)
		die(errno, "chroot into the new root");
	if (chdir("/") < 0)
		die(errno, "chdir /");
	g.switched = true;

	if (mkdir("/dev/pts", 0755) < 0 && errno != EEXIST)
		say("mkdir /dev/pts: %s", strerror(errno));
	else if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
	               "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
		say("mount /dev/pts: %s", strerror(errno));
	if (mkdir("/dev/shm", 01777) < 0 && errno != EEXIST)
		say("mkdir /dev/shm: %s", strerror(errno));
	else if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		say("mount /dev/shm: %s", strerror(errno));
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST)
			say("symlink %s: %s", links[i][1], strerror(errno));
	step("switched root");
}

/* ---- identity and network --------------------------------------------------------------- */

/* Split "A.B.C.D/prefix" into an address and a netmask. */
static int parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(ip))
		return -1;
	memcpy(ip, s, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, addr) != 1)
		return -1;
	long prefix = 32;
	if (slash) {
		char *end;
		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || prefix < 0 || prefix > 32)
			return -1;
	}
	mask->s_addr = prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
	return 0;
}

/*
 * The egress proxy's CA into the trust store, before the program starts:
 * appended to each common bundle the image has (Debian/Alpine, the
 * LibreSSL/BSD path, RHEL's) unless already there (a restarted instance's
 * overlay keeps it), the Debian path made when the image has none, and
 * on its own in /etc/ssl/certs/hypeman-egress-ca.pem (the host points
 * NODE_EXTRA_CA_CERTS there).
 */
static void install_egress_ca(void)
{
	if (!cfg.egress_ca)
		return;
	static const char *const bundles[] = { "/etc/ssl/certs/ca-certificates.crt",
		                               "/etc/ssl/cert.pem",
		                               "/etc/pki/tls/certs/ca-bundle.crt" };
	if (mkdir_p("/etc/ssl/certs", 0755) < 0)
		say("mkdir /etc/ssl/certs: %s", strerror(errno));
	if (write_new_file("/etc/ssl/certs/hypeman-egress-ca.pem", cfg.egress_ca, 0644) < 0)
		say("write the egress CA: %s", strerror(errno));
	int added = 0;
	for (size_t i = 0; i < sizeof(bundles) / sizeof(bundles[0]); i++) {
		bool first = i == 0;
		if (!first && access(bundles[i], F_OK) < 0)
			continue;
		_cleanup_free_ char *have = read_alloc(bundles[i], 64u << 20);
		if (have && strstr(have, cfg.egress_ca))
			continue; /* there already (or the same file through a link) */
		_cleanup_close_ int fd =
		    open(bundles[i], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
		size_t hl = have ? strlen(have) : 0;
		if (fd < 0 || (hl && have[hl - 1] != '\n' && write_all(fd, "\n", 1) < 0) ||
		    write_all(fd, cfg.egress_ca, strlen(cfg.egress_ca)) < 0) {
			say("add the egress CA to %s: %s", bundles[i], strerror(errno));
			continue;
		}
		added++;
	}
	step("egress CA trusted (%d bundles changed)", added);
}

static void setup_identity(void)
{
	if (sethostname(cfg.hostname, strlen(cfg.hostname)) < 0)
		say("sethostname %s: %s", cfg.hostname, strerror(errno));
	if (mkdir("/etc", 0755) < 0 && errno != EEXIST) {
		say("mkdir /etc: %s", strerror(errno));
		return;
	}
	char ip[INET_ADDRSTRLEN] = "127.0.1.1";
	struct in_addr a, m;
	if (cfg.net_ip && parse_cidr(cfg.net_ip, &a, &m) == 0)
		inet_ntop(AF_INET, &a, ip, sizeof(ip));
	char hosts[512];
	snprintf(hosts, sizeof(hosts),
	         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip,
	         cfg.hostname);
	if (write_new_file("/etc/hosts", hosts, 0644) < 0)
		say("write /etc/hosts: %s", strerror(errno));
	if (cfg.ndns > 0) {
		char resolv[1024];
		size_t len = 0;
		resolv[0] = '\0';
		for (size_t i = 0; i < cfg.ndns && len < sizeof(resolv); i++) {
			int n = snprintf(resolv + len, sizeof(resolv) - len, "nameserver %s\n",
			                 cfg.dns[i]);
			if (n > 0)
				len += (size_t)n;
		}
		if (write_new_file("/etc/resolv.conf", resolv, 0644) < 0)
			say("write /etc/resolv.conf: %s", strerror(errno));
	}
	step("hostname and /etc files written");
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

/* Give eth0 the address cidr (replacing the one it had), bring it up, route via gw. */
static int net_address(int s, const char *cidr, const char *gwtext, char *why, size_t whylen)
{
	struct in_addr addr, mask, gw;
	if (parse_cidr(cidr, &addr, &mask) < 0) {
		snprintf(why, whylen, "bad address `%.40s` (want A.B.C.D/prefix)", cidr);
		return -1;
	}
	if (gwtext && inet_pton(AF_INET, gwtext, &gw) != 1) {
		snprintf(why, whylen, "bad gateway `%.40s`", gwtext);
		return -1;
	}
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = addr;
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
		snprintf(why, whylen, "set eth0 address %s: %s", cidr, strerror(errno));
		return -1;
	}
	sin = (struct sockaddr_in *)&ifr.ifr_netmask;
	sin->sin_family = AF_INET;
	sin->sin_addr = mask;
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
		snprintf(why, whylen, "set eth0 netmask: %s", strerror(errno));
		return -1;
	}
	if (if_up(s, "eth0") < 0) {
		snprintf(why, whylen, "bring up eth0: %s", strerror(errno));
		return -1;
	}
	if (gwtext) {
		struct rtentry rt = { 0 };
		struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
		struct sockaddr_in *gwa = (struct sockaddr_in *)&rt.rt_gateway;
		struct sockaddr_in *msk = (struct sockaddr_in *)&rt.rt_genmask;
		dst->sin_family = gwa->sin_family = msk->sin_family = AF_INET;
		gwa->sin_addr = gw;
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		char dev[] = "eth0";
		rt.rt_dev = dev;
		if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
			snprintf(why, whylen, "default route via %s: %s", gwtext, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* eth0's MAC, changed live (virtio-net tells the device, which filters on it). */
static int set_mac(int s, const char *mac, char *why, size_t whylen)
{
	unsigned b[6];
	char end;
	if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
	           &end) != 6) {
		snprintf(why, whylen, "bad MAC `%.40s`", mac);
		return -1;
	}
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	ifr.ifr_hwaddr.sa_family = 1; /* ARPHRD_ETHER */
	for (int i = 0; i < 6; i++)
		ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
	if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) {
		snprintf(why, whylen, "set eth0 MAC %s: %s", mac, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The host's `identity` request, after a restore or a fork (docs/guest.md):
 * the wall clock, fresh randomness, and for a fork its own MAC, address,
 * hostname and machine-id. Everything given is applied; the answer names
 * the first step that failed.
 */
static void apply_clock_seed(const struct agent_req *r, char *why, size_t whylen)
{
	if (r->unix_ms > 0) {
		struct timespec ts = { (time_t)(r->unix_ms / 1000),
			               (long)(r->unix_ms % 1000) * 1000000L };
		if (clock_settime(CLOCK_REALTIME, &ts) < 0)
			snprintf(why, whylen, "set the clock: %s", strerror(errno));
	}
	if (r->seed_len > 0) {
		const unsigned char *buf = r->seed;
		size_t n = r->seed_len;
		/*
		 * Mixed into the pool (not credited), then a reseed forced: a write
		 * alone reaches the CRNG only at its next scheduled reseed (up to a
		 * minute on Linux 6.x), and until then a fork would draw the same
		 * stream as its parent.
		 */
		_cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
		/* ENODATA: the CRNG is not ready yet, so it is seeded afresh anyway. */
		if (fd < 0 || write_all(fd, (const char *)buf, n) < 0 ||
		    (ioctl(fd, RNDRESEEDCRNG) < 0 && errno != ENODATA))
			if (!why[0])
				snprintf(why, whylen, "seed /dev/urandom: %s", strerror(errno));
	}
}

void identity_apply(const struct agent_req *r)
{
	long long id = r->id;
	char why[200] = "";
	apply_clock_seed(r, why, sizeof(why));
	const char *host = r->identity.hostname, *ip = r->identity.ip, *gw = r->identity.gateway;
	const char *mac = r->identity.mac, *dns = r->identity.dns, *mid = r->identity.machine_id;
	if (mac || ip) {
		_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		char w[160] = "";
		if (s < 0)
			snprintf(w, sizeof(w), "socket: %s", strerror(errno));
		else if (!mac || set_mac(s, mac, w, sizeof(w)) == 0)
			if (ip)
				net_address(s, ip, gw, w, sizeof(w));
		if (w[0] && !why[0])
			snprintf(why, sizeof(why), "network: %s", w);
	}
	if (host)
		cfg.hostname = strdup(host);
	if (ip)
		cfg.net_ip = strdup(ip);
	if (gw)
		cfg.net_gw = strdup(gw);
	if (mac)
		cfg.net_mac = strdup(mac);
	if (dns) {
		cfg.dns[0] = strdup(dns);
		cfg.dns[1] = NULL;
		cfg.ndns = 1;
	}
	if (host || ip || dns)
		setup_identity();
	if (mid && access("/etc/machine-id", F_OK) == 0) {
		char line[40];
		snprintf(line, sizeof(line), "%s\n", mid);
		if (write_new_file("/etc/machine-id", line, 0444) < 0 && !why[0])
			snprintf(why, sizeof(why), "write /etc/machine-id: %s", strerror(errno));
	}
	step("agent: identity applied%s%s", why[0] ? ": " : "", why);
	if (why[0]) {
		agent_error(id, "identity: %s", why);
		return;
	}
	agent_send("{\"type\":\"identity\",\"id\":%lld}", id);
}

static void setup_network(void)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		if (cfg.net_ip)
			die(errno, "network: socket");
		return;
	}
	if (if_up(s, "lo") < 0)
		say("bring up lo: %s", strerror(errno));
	if (!cfg.net_ip)
		return;

	struct in_addr addr, mask, gw;
	if (parse_cidr(cfg.net_ip, &addr, &mask) < 0)
		die(0, "network: bad net_ip `%s` (want A.B.C.D/prefix)", cfg.net_ip);
	if (cfg.net_gw && inet_pton(AF_INET, cfg.net_gw, &gw) != 1)
		die(0, "network: bad net_gw `%s`", cfg.net_gw);
	for (int waited = 0; access("/sys/class/net/eth0", F_OK) < 0; waited += POLL_STEP_MS) {
		if (waited >= DEVICE_WAIT_MS)
			die(0, "network: no eth0 after %d ms", DEVICE_WAIT_MS);
		sleep_ms(POLL_STEP_MS);
	}
	char why[160];
	if (cfg.net_mac) {
		/* A VM restored from a base has the base's MAC until told otherwise. */
		char mac[64];
		if (read_small("/sys/class/net/eth0/address", mac, sizeof(mac)) > 0) {
			mac[strcspn(mac, "\n")] = '\0';
			if (strcasecmp(mac, cfg.net_mac) != 0 &&
			    set_mac(s, cfg.net_mac, why, sizeof(why)) < 0)
				die(0, "network: %s", why);
		}
	}
	if (net_address(s, cfg.net_ip, cfg.net_gw, why, sizeof(why)) < 0)
		die(0, "network: %s", why);
	step("eth0 up (%s via %s)", cfg.net_ip, cfg.net_gw ? cfg.net_gw : "-");
}

/* ---- power button ----------------------------------------------------------------------- */

static void open_power_buttons(void)
{
	DIR *d = opendir("/sys/class/input");
	if (!d)
		return;
	struct dirent *e;
	while (g.nbuttons < MAX_BUTTONS && (e = readdir(d))) {
		if (strncmp(e->d_name, "event", 5) != 0)
			continue;
		char path[PATH_MAX], name[256];
		snprintf(path, sizeof(path), "/sys/class/input/%s/device/name", e->d_name);
		if (read_small(path, name, sizeof(name)) <= 0 || !strstr(name, "Power Button"))
			continue;
		snprintf(path, sizeof(path), "/dev/input/%s", e->d_name);
		int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			say("open %s: %s", path, strerror(errno));
			continue;
		}
		g.buttons[g.nbuttons++] = fd;
	}
	closedir(d);
	step("%d power button(s)", g.nbuttons);
}

static void button_read(int fd)
{
	struct input_event ev[16];
	ssize_t n;
	while ((n = read(fd, ev, sizeof(ev))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
			if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1) {
				step("power button: SIGTERM to the program");
				forward_signal(SIGTERM);
			}
		}
	}
}

/* ---- the program ------------------------------------------------------------------------ */

static long oom_kills(void)
{
	char buf[16384];
	if (read_small("/proc/vmstat", buf, sizeof(buf)) < 0)
		return -1;
	const char *p = strstr(buf, "\noom_kill ");
	return p ? strtol(p + 10, NULL, 10) : -1;
}

void forward_signal(int sig)
{
	if (g.pid <= 0)
		return;
	if (kill(-g.pid, sig) < 0 && errno == ESRCH)
		kill(g.pid, sig);
}

void program_stop(long long timeout_ms)
{
	if (g.pid <= 0)
		return;
	forward_signal(SIGTERM);
	long long at = uptime_ms() + timeout_ms;
	if (at < 1)
		at = 1;
	if (!g.stop_at || at < g.stop_at)
		g.stop_at = at;
}

enum { STAGE_IDS = 1, STAGE_WORKDIR, STAGE_EXEC };
struct child_report {
	int stage;
	int err;
};

static _Noreturn void child_fail(int fd, int stage)
{
	struct child_report r = { stage, errno };
	ssize_t w = write(fd, &r, sizeof(r));
	(void)w;
	_exit(127);
}

/* In the forked child: become the program. Never returns. */
static _Noreturn void child_exec(int report, const struct ids *ids, char *const envp[])
{
	child_reset_signals();
	setsid();

	int fd = open("/dev/null", O_RDWR | O_NOCTTY);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	fd = open("/dev/console", O_WRONLY | O_NOCTTY);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (setgroups((size_t)ids->ngroups, ids->groups) < 0 || setgid(ids->gid) < 0 ||
	    setuid(ids->uid) < 0)
		child_fail(report, STAGE_IDS);
	if (chdir(cfg.workdir) < 0)
		child_fail(report, STAGE_WORKDIR);
	errno = exec_search(cfg.argv, envp);
	child_fail(report, STAGE_EXEC);
}

static void start_program(void)
{
	static struct ids ids;
	char why[600];
	if (resolve_user(cfg.user, &ids, why, sizeof(why)) < 0)
		die(0, "%s", why);
	_cleanup_free_ char **envp = build_env(&ids, NULL, 0, false);
	if (!envp)
		die(ENOMEM, "environment");

	if (mkdir_p(cfg.workdir, 0755) < 0)
		die(errno, "create workdir %s", cfg.workdir);

	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die(errno, "pipe");
	g.oom_before = oom_kills();
	pid_t pid = fork();
	if (pid < 0)
		die(errno, "fork");
	if (pid == 0) {
		close(pipefd[0]);
		child_exec(pipefd[1], &ids, envp);
	}
	close(pipefd[1]);
	struct child_report r = { 0, 0 };
	ssize_t got;
	do
		got = read(pipefd[0], &r, sizeof(r));
	while (got < 0 && errno == EINTR);
	close(pipefd[0]);
	if (got <= 0) {
		g.pid = pid;
		step("program started (pid %d)", (int)pid);
		agent_send("{\"type\":\"started\",\"pid\":%d,\"uptime_ms\":%lld}", (int)pid,
		           uptime_ms());
		return;
	}
	/* The child failed before or at exec: collect it, then report why. */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	switch (r.stage) {
	case STAGE_IDS:
		die(r.err, "switch to user %s", cfg.user ? cfg.user : "root");
	case STAGE_WORKDIR:
		die(r.err, "chdir to workdir %s", cfg.workdir);
	default:
		break;
	}
	char msg[PATH_MAX + 64];
	int code = exec_failure(r.err, cfg.argv[0], msg, sizeof(msg));
	say("%s", msg);
	finish(code, msg);
}

/* Exit code and message of a wait status, as Docker reports them. */
static int describe_status(int status, char *msg, size_t len)
{
	if (WIFEXITED(status)) {
		int c = WEXITSTATUS(status);
		if (c == 0)
			snprintf(msg, len, "success");
		else
			snprintf(msg, len, "exit status %d", c);
		return c;
	}
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
	const char *abbrev = sigabbrev_np(sig);
	long oom = oom_kills();
	bool oomed = g.oom_before >= 0 && oom > g.oom_before;
	if (abbrev)
		snprintf(msg, len, "killed by signal %d (SIG%s)%s", sig, abbrev,
		         oomed ? " - OOM" : "");
	else
		snprintf(msg, len, "killed by signal %d%s", sig, oomed ? " - OOM" : "");
	return 128 + sig;
}

/*
 * Reap every exited child: the program (returns true and its status), an
 * exec session's process (exec.c takes it), or an orphan the kernel handed
 * to PID 1 (nothing to do).
 */
static bool reap(int *program_status)
{
	bool done = false;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0)
			return done;
		if (g.pid > 0 && p == g.pid) {
			*program_status = st;
			done = true;
		} else {
			exec_reaped(p, st);
		}
	}
}

static void drain_signals(int *sigs, size_t *nsigs, size_t max)
{
	struct signalfd_siginfo si[8];
	ssize_t n;
	while ((n = read(g.sfd, si, sizeof(si))) > 0)
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++)
			if (*nsigs < max)
				sigs[(*nsigs)++] = (int)si[i].ssi_signo;
}

/* Serve signals, the agent, exec sessions and the power button until the program exits. */
static int main_loop(void)
{
	static struct pollfd pfd[2 + MAX_BUTTONS + 3 * MAX_SESSIONS];
	for (;;) {
		agent_flush();
		long long now = uptime_ms();
		int timeout = -1;
		if (g.stop_at) {
			long long left = g.stop_at - now;
			if (left <= 0) {
				step("stop: SIGKILL to the program");
				forward_signal(SIGKILL);
				g.stop_at = 0;
			} else {
				timeout = (int)(left < INT32_MAX ? left : INT32_MAX);
			}
		}
		int nfds = 0;
		pfd[nfds++] = (struct pollfd){ .fd = g.sfd, .events = POLLIN };
		int agent_i = nfds;
		nfds += agent_poll_fill(&pfd[nfds], now, &timeout);
		bool have_agent = nfds > agent_i;
		int button_i = nfds;
		for (int i = 0; i < g.nbuttons; i++)
			pfd[nfds++] = (struct pollfd){ .fd = g.buttons[i], .events = POLLIN };
		int exec_i = nfds;
		nfds += exec_poll_fill(&pfd[nfds], now, &timeout);
		cp_poll_fill(&timeout);

		int r = poll(pfd, (nfds_t)nfds, timeout);
		if (r < 0 && errno != EINTR)
			die(errno, "poll");
		if (r < 0)
			continue;
		now = uptime_ms();
		if (pfd[0].revents & POLLIN) {
			int sigs[32];
			size_t nsigs = 0;
			drain_signals(sigs, &nsigs, ARRAY_SIZE(sigs));
			int status = 0;
			bool exited = false;
			for (size_t i = 0; i < nsigs; i++) {
				if (sigs[i] == SIGCHLD)
					exited |= reap(&status);
				else
					forward_signal(sigs[i]);
			}
			if (exited)
				return status;
		}
		if (have_agent && pfd[agent_i].revents)
			agent_poll_handle(pfd[agent_i].revents);
		for (int i = 0; i < g.nbuttons; i++)
			if (pfd[button_i + i].revents & POLLIN)
				button_read(g.buttons[i]);
		exec_poll_handle(&pfd[exec_i], now);
		cp_poll_handle();
	}
}

/* ---- the end ---------------------------------------------------------------------------- */

/* Wait up to ms for every child to be gone; true when none is left. */
static bool wait_all_gone(long ms)
{
	long long deadline = uptime_ms() + ms;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0)
			continue;
		if (p < 0 && errno == ECHILD)
			return true;
		long long left = deadline - uptime_ms();
		if (left <= 0)
			return false;
		if (g.sfd >= 0) {
			struct pollfd pfd = { .fd = g.sfd, .events = POLLIN };
			poll(&pfd, 1, (int)left);
			int sigs[32];
			size_t n = 0;
			drain_signals(sigs, &n, ARRAY_SIZE(sigs));
		} else {
			sleep_ms(left < 10 ? left : 10);
		}
	}
}

/* SIGTERM everything left, SIGKILL what is still there after the grace time. */
static void kill_all(void)
{
	if (kill(-1, SIGTERM) < 0 && errno == ESRCH) {
		wait_all_gone(0);
		return;
	}
	if (wait_all_gone(TERM_GRACE_MS))
		return;
	step("SIGKILL to what is left");
	kill(-1, SIGKILL);
	wait_all_gone(1000);
}

static void write_exit_record(int code, const char *message)
{
	if (g.cfg_fd < 0)
		return;
	static char rec[HM_GUEST_EXIT_SIZE];
	hm_gexit_format(rec, code, message);
	ssize_t n = pwrite(g.cfg_fd, rec, sizeof(rec), HM_GUEST_EXIT_OFFSET);
	if (n != (ssize_t)sizeof(rec))
		say("write exit record: %s", n < 0 ? strerror(errno) : "short write");
	else if (fsync(g.cfg_fd) < 0)
		say("sync config disk: %s", strerror(errno));
}

/*
 * Unmount the overlay and its disk so the ext4 journal is clean. After the
 * switch the overlay is "/": detach it, step back into the initramfs root
 * through the fd kept for this, and unmount the disk by its old path.
 */
static void unmount_all(void)
{
	/* Volumes first, newest first, so their ext4 journals are clean too. */
	for (size_t i = g.nvol_paths; i-- > 0;) {
		int r = -1;
		for (int k = 0; k < 100 && (r = umount2(g.vol_paths[i], 0)) < 0 && errno == EBUSY;
		     k++)
			sleep_ms(2);
		if (r < 0 && mount(NULL, g.vol_paths[i], NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
			say("unmount volume %s: %s", g.vol_paths[i], strerror(errno));
	}
	if (g.switched) {
		if (umount2("/", MNT_DETACH) < 0)
			say("detach the root overlay: %s", strerror(errno));
		if (g.oldroot_fd < 0 || fchdir(g.oldroot_fd) < 0 || chroot(".") < 0 ||
		    chdir("/") < 0) {
			say("back to the initramfs root: %s", strerror(errno));
			return;
		}
	} else if (umount2("/newroot", MNT_DETACH) < 0 && errno != EINVAL) {
		say("detach /newroot: %s", strerror(errno));
	}
	if (!g.rw_disk)
		return;
	int r = -1;
	for (int i = 0; i < 100 && (r = umount2("/mnt/rw", 0)) < 0 && errno == EBUSY; i++)
		sleep_ms(2);
	if (r < 0) {
		say("unmount the overlay disk: %s", strerror(errno));
		if (mount(NULL, "/mnt/rw", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
			say("remount the overlay disk read-only: %s", strerror(errno));
	} else {
		step("overlay disk unmounted");
	}
}

static _Noreturn void finish(int code, const char *message)
{
	static bool finishing;
	if (finishing) { /* a failure on the way out: just stop */
		reboot(RB_POWER_OFF);
		_exit(code);
	}
	finishing = true;
	cp_disconnect(); /* no temporary file left behind, nothing open on the overlay */
	static char esc[6 * HM_GUEST_EXIT_MSG_MAX + 1];
	hm_gjson_escape(esc, sizeof(esc), message, strlen(message));
	agent_send("{\"type\":\"exit\",\"code\":%d,\"message\":\"%s\",\"uptime_ms\":%lld}", code,
	           esc, uptime_ms());
	agent_drain(AGENT_DRAIN_MS);
	step("program ended: %d %s", code, message);
	kill_all();
	write_exit_record(code, message);
	sync();
	unmount_all();
	step("power off");
	reboot(RB_POWER_OFF);
	say("power off: %s", strerror(errno));
	_exit(code);
}

int main(void)
{
	/* Run anywhere else it would mount over /dev and power the machine off. */
	if (getpid() != 1) {
		fprintf(stderr,
		        "hypeman-init: the guest init runs only as PID 1 of a hypeman VM\n");
		return 1;
	}
	setup_signals();
	mount_early();
	read_cmdline();
	step("init started");
	if (g.sfd < 0)
		die(errno, "signalfd");
	load_modules();
	if (g.base)
		base_attach();
	read_config();
	mount_root();
	switch_root();
	mount_volumes();
	setup_identity();
	install_egress_ca();
	setup_network();
	agent_open();
	agent_send("{\"type\":\"boot\",\"uptime_ms\":%lld}", uptime_ms());
	agent_flush();
	open_power_buttons();
	start_program();
	int status = main_loop();
	char msg[128];
	int code = describe_status(status, msg, sizeof(msg));
	finish(code, msg);
}
