/*
 * hypeman-init: PID 1 of every guest, the guest side of docs/guest.md. It
 * owns the guest's whole life: load the initrd's modules, read the config
 * disk, join the image's read-only root and the writable overlay disk under
 * overlayfs and switch into it, set up hostname, /etc/hosts, resolv.conf and
 * eth0, open the agent port, start the program, reap every process, forward
 * signals (SIGTERM, the agent's signal message, the ACPI power button), and
 * when the program ends write the exit record, unmount and power off. A
 * failure of the init itself is reported on the console and in the exit
 * record (code 255) before powering off: it never panics and never hangs.
 * Static, libc only, single-threaded; signals arrive through a signalfd.
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

#include "config.h"
#include "core/cleanup.h"

#define DEFAULT_PATH     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEVICE_WAIT_MS   5000 /* how long a disk may take to appear */
#define AGENT_WAIT_MS    2000 /* how long the agent port's name may take to appear */
#define POLL_STEP_MS     5
#define TERM_GRACE_MS    2000 /* SIGTERM -> SIGKILL for what is left at the end */
#define AGENT_LINE_MAX   (64u << 10)
#define MAX_BUTTONS      4
#define MAX_GROUPS       64
#define ACCOUNT_FILE_MAX (4u << 20)

/* Signals to PID 1 that go on to the program's process group. */
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

static struct {
	bool debug;
	int sfd;        /* signalfd for SIGCHLD and the forwarded signals */
	int cfg_fd;     /* the config disk, read-write: the exit record goes there */
	int agent_fd;   /* the agent port, or -1 */
	bool agent_hup; /* host side not connected: poll it only now and then */
	int buttons[MAX_BUTTONS];
	int nbuttons;
	int oldroot_fd;  /* the initramfs root, to come back to for unmounting */
	bool switched;   /* running in the overlay root */
	bool rw_disk;    /* /mnt/rw is the overlay disk (not a tmpfs) */
	pid_t pid;       /* the program, once started */
	long oom_before; /* /proc/vmstat oom_kill when the program started */
	char line[AGENT_LINE_MAX];
	size_t line_len;
	bool line_skip; /* the current agent line is too long: drop up to its '\n' */
} g = { .sfd = -1, .cfg_fd = -1, .agent_fd = -1, .oldroot_fd = -1 };

static struct hm_gcfg cfg;
static char cfgbuf[HM_GUEST_AREA_SIZE];

static _Noreturn void finish(int code, const char *message);

/* ---- console ---------------------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
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
static long long uptime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void step(const char *fmt, ...)
{
	if (!g.debug)
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

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Read a small file into buf (NUL-terminated); returns its length or -1 (errno set). */
static ssize_t read_small(const char *path, char *buf, size_t size)
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
static char *read_alloc(const char *path, size_t max)
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
			g.debug = true;
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
		if (g.debug)
			say("  %s %lld ms", name, uptime_ms() - t);
	}
	step("%d modules loaded", loaded);
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
		if (mount(cfg.overlay, "/mnt/rw", "ext4", 0, NULL) < 0)
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
	if (cfg.net_mac) {
		char mac[64];
		if (read_small("/sys/class/net/eth0/address", mac, sizeof(mac)) > 0) {
			mac[strcspn(mac, "\n")] = '\0';
			if (strcasecmp(mac, cfg.net_mac) != 0)
				say("eth0 has MAC %s, the config says %s", mac, cfg.net_mac);
		}
	}
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = addr;
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		die(errno, "network: set eth0 address %s", cfg.net_ip);
	sin = (struct sockaddr_in *)&ifr.ifr_netmask;
	sin->sin_family = AF_INET;
	sin->sin_addr = mask;
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		die(errno, "network: set eth0 netmask");
	if (if_up(s, "eth0") < 0)
		die(errno, "network: bring up eth0");
	if (cfg.net_gw) {
		struct rtentry rt = { 0 };
		struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
		struct sockaddr_in *gwa = (struct sockaddr_in *)&rt.rt_gateway;
		struct sockaddr_in *msk = (struct sockaddr_in *)&rt.rt_genmask;
		dst->sin_family = gwa->sin_family = msk->sin_family = AF_INET;
		gwa->sin_addr = gw;
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		char dev[] = "eth0";
		rt.rt_dev = dev;
		if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
			die(errno, "network: default route via %s", cfg.net_gw);
	}
	step("eth0 up (%s via %s)", cfg.net_ip, cfg.net_gw ? cfg.net_gw : "-");
}

/* ---- agent channel ---------------------------------------------------------------------- */

/* Does the virtio_console driver drive any device (is there a virtio-serial at all)? */
static bool have_virtio_serial(void)
{
	DIR *d = opendir("/sys/bus/virtio/drivers/virtio_console");
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)))
		found = strncmp(e->d_name, "virtio", 6) == 0;
	closedir(d);
	return found;
}

/* Look for the port named cfg.agent once; returns its open fd or -1. */
static int find_agent_port(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -1;
	int fd = -1;
	struct dirent *e;
	while (fd < 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX], name[256];
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
		if (read_small(path, name, sizeof(name)) <= 0)
			continue;
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, cfg.agent) != 0)
			continue;
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd < 0 && errno != ENOENT)
			say("open agent port %s: %s", path, strerror(errno));
	}
	closedir(d);
	return fd;
}

static void open_agent(void)
{
	if (!have_virtio_serial()) {
		step("no virtio-serial device: no agent");
		return;
	}
	for (int waited = 0;; waited += POLL_STEP_MS) {
		g.agent_fd = find_agent_port();
		if (g.agent_fd >= 0)
			break;
		if (waited >= AGENT_WAIT_MS) {
			say("agent port `%s` not found: running without an agent", cfg.agent);
			return;
		}
		sleep_ms(POLL_STEP_MS);
	}
	step("agent port open");
}

/* Send one JSON line to the host; dropped if the host is not there to read it. */
static void agent_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void agent_send(const char *fmt, ...)
{
	if (g.agent_fd < 0)
		return;
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 1)
		return;
	buf[n++] = '\n';
	ssize_t w;
	do
		w = write(g.agent_fd, buf, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w != n && g.debug)
		say("agent: message dropped (%s)", w < 0 ? strerror(errno) : "short write");
}

/* Escape s as the inside of a JSON string; invalid UTF-8 bytes become '?'. */
static void json_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)s;
	while (*p && o + 8 < cap) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
			p++;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			out[o++] = (char)c;
			p++;
		} else {
			int n = c >= 0xf0 && c <= 0xf4  ? 4
			        : c >= 0xe0             ? 3
			        : c >= 0xc2 && c < 0xe0 ? 2
			                                : 0;
			bool ok = n > 0 && c < 0xf5;
			for (int i = 1; ok && i < n; i++)
				ok = (p[i] & 0xc0) == 0x80;
			if (!ok) {
				out[o++] = '?';
				p++;
				continue;
			}
			for (int i = 0; i < n; i++)
				out[o++] = (char)p[i];
			p += n;
		}
	}
	out[o] = '\0';
}

static const char *json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* p at '"': returns the byte after the closing quote, or NULL. */
static const char *json_skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *json_skip_value(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	if (*p == '"')
		return json_skip_string(p, end);
	if (*p == '{' || *p == '[') {
		int depth = 0;
		while (p < end) {
			if (*p == '"') {
				p = json_skip_string(p, end);
				if (!p)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']')
				depth--;
			p++;
			if (depth == 0)
				return p;
		}
		return NULL;
	}
	while (p < end && !strchr(",}] \t\r\n", *p))
		p++;
	return p;
}

/* The value of a top-level key of a JSON object (a flat scan), or NULL. */
static const char *json_get(const char *s, const char *end, const char *key)
{
	size_t klen = strlen(key);
	const char *p = json_ws(s, end);
	if (p >= end || *p != '{')
		return NULL;
	p++;
	for (;;) {
		p = json_ws(p, end);
		if (p >= end || *p != '"')
			return NULL;
		const char *k = p + 1, *kend = json_skip_string(p, end);
		if (!kend)
			return NULL;
		bool match = (size_t)(kend - 1 - k) == klen && memcmp(k, key, klen) == 0;
		p = json_ws(kend, end);
		if (p >= end || *p != ':')
			return NULL;
		p = json_ws(p + 1, end);
		if (match)
			return p;
		p = json_skip_value(p, end);
		if (!p)
			return NULL;
		p = json_ws(p, end);
		if (p >= end || *p != ',')
			return NULL;
		p++;
	}
}

static void forward_signal(int sig)
{
	if (g.pid <= 0)
		return;
	if (kill(-g.pid, sig) < 0 && errno == ESRCH)
		kill(g.pid, sig);
}

static void agent_message(const char *line, size_t len)
{
	const char *end = line + len;
	const char *t = json_get(line, end, "type");
	if (!t || *t != '"') {
		step("agent: ignoring a message without a type");
		return;
	}
	const char *tend = json_skip_string(t, end);
	size_t tlen = tend ? (size_t)(tend - t - 2) : 0;
	if (tlen == 4 && memcmp(t + 1, "ping", 4) == 0) {
		agent_send("{\"type\":\"pong\"}");
	} else if (tlen == 6 && memcmp(t + 1, "signal", 6) == 0) {
		const char *v = json_get(line, end, "signal");
		char num[16] = "";
		if (v) {
			size_t n = 0;
			while (v + n < end && n < sizeof(num) - 1 && v[n] >= '0' && v[n] <= '9')
				n++;
			memcpy(num, v, n);
			num[n] = '\0';
		}
		long sig = num[0] ? strtol(num, NULL, 10) : 0;
		if (sig < 1 || sig > SIGRTMAX) {
			step("agent: bad signal message");
			return;
		}
		step("agent: signal %ld to the program", sig);
		forward_signal((int)sig);
	} else {
		step("agent: ignoring message type %.*s", (int)tlen, t + 1);
	}
}

static void agent_read(void)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(g.agent_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			g.agent_hup = true;
			return;
		}
		if (n < 0)
			return;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c == '\n') {
				if (!g.line_skip)
					agent_message(g.line, g.line_len);
				g.line_len = 0;
				g.line_skip = false;
			} else if (g.line_len < sizeof(g.line)) {
				g.line[g.line_len++] = c;
			} else {
				g.line_skip = true;
			}
		}
	}
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

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Split line at ':' into at most max fields (in place); returns how many. */
static int split_fields(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	}
	return n;
}

struct ids {
	uid_t uid;
	gid_t gid;
	char name[256]; /* the passwd name, "" if none */
	char home[PATH_MAX];
	gid_t groups[MAX_GROUPS];
	int ngroups;
};

/* Look a user up in /etc/passwd by name (name != NULL) or uid. Returns 1 found, 0 not. */
static int passwd_lookup(const char *name, long uid, struct ids *ids)
{
	_cleanup_free_ char *data = read_alloc("/etc/passwd", ACCOUNT_FILE_MAX);
	if (!data)
		return 0;
	char *save = NULL;
	for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		/* name:password:uid:gid:gecos:home:shell */
		char *f[7];
		int n = split_fields(l, f, 7);
		if (n < 4 || !all_digits(f[2]) || !all_digits(f[3]))
			continue;
		long this_uid = strtol(f[2], NULL, 10);
		if (name ? strcmp(f[0], name) != 0 : this_uid != uid)
			continue;
		ids->uid = (uid_t)this_uid;
		ids->gid = (gid_t)strtol(f[3], NULL, 10);
		snprintf(ids->name, sizeof(ids->name), "%s", f[0]);
		if (n >= 6 && f[5][0])
			snprintf(ids->home, sizeof(ids->home), "%s", f[5]);
		return 1;
	}
	return 0;
}

/*
 * Scan /etc/group: find `group` by name (setting *gid, returns 1), or with
 * group NULL add the groups whose member list names ids->name.
 */
static int group_scan(const char *group, gid_t *gid, struct ids *ids)
{
	_cleanup_free_ char *data = read_alloc("/etc/group", ACCOUNT_FILE_MAX);
	if (!data)
		return 0;
	char *save = NULL;
	for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		/* name:password:gid:member,member */
		char *f[4];
		int n = split_fields(l, f, 4);
		if (n < 3 || !all_digits(f[2]))
			continue;
		gid_t this_gid = (gid_t)strtol(f[2], NULL, 10);
		if (group) {
			if (strcmp(f[0], group) == 0) {
				*gid = this_gid;
				return 1;
			}
			continue;
		}
		if (n < 4 || !ids->name[0])
			continue;
		char *msave = NULL;
		for (char *m = strtok_r(f[3], ",", &msave); m; m = strtok_r(NULL, ",", &msave)) {
			if (strcmp(m, ids->name) != 0 || ids->ngroups >= MAX_GROUPS)
				continue;
			ids->groups[ids->ngroups++] = this_gid;
			break;
		}
	}
	return 0;
}

/* Resolve cfg.user (`user`, `uid`, `user:group`, `uid:gid`) as Docker does. */
static void resolve_user(struct ids *ids)
{
	memset(ids, 0, sizeof(*ids));
	snprintf(ids->home, sizeof(ids->home), "/");
	char spec[512];
	snprintf(spec, sizeof(spec), "%s", cfg.user ? cfg.user : "0");
	char *grp = strchr(spec, ':');
	if (grp)
		*grp++ = '\0';
	if (all_digits(spec)) {
		errno = 0;
		long uid = strtol(spec, NULL, 10);
		if (errno || uid > INT32_MAX)
			die(0, "user `%s`: uid out of range", cfg.user);
		if (!passwd_lookup(NULL, uid, ids)) {
			ids->uid = (uid_t)uid;
			ids->gid = 0;
		}
	} else if (!passwd_lookup(spec, 0, ids)) {
		die(0, "user `%s`: no such user in /etc/passwd", spec);
	}
	if (grp && *grp) {
		if (all_digits(grp)) {
			errno = 0;
			long gid = strtol(grp, NULL, 10);
			if (errno || gid > INT32_MAX)
				die(0, "user `%s`: gid out of range", cfg.user);
			ids->gid = (gid_t)gid;
		} else if (!group_scan(grp, &ids->gid, ids)) {
			die(0, "user `%s`: no such group in /etc/group", cfg.user);
		}
		ids->groups[0] = ids->gid;
		ids->ngroups = 1;
	} else {
		ids->groups[0] = ids->gid;
		ids->ngroups = 1;
		group_scan(NULL, NULL, ids);
	}
}

static const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (; *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

/* execvp's search, but along the program's own PATH. Returns the errno to report. */
static int exec_search(char *const argv[], char *const envp[])
{
	const char *file = argv[0];
	if (!*file)
		return ENOENT;
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	const char *path = env_get(envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	bool eacces = false;
	for (const char *p = path;;) {
		const char *e = strchrnul(p, ':');
		char buf[PATH_MAX];
		int n = e == p ? snprintf(buf, sizeof(buf), "%s", file)
		               : snprintf(buf, sizeof(buf), "%.*s/%s", (int)(e - p), p, file);
		if (n > 0 && (size_t)n < sizeof(buf)) {
			execve(buf, argv, envp);
			switch (errno) {
			case EACCES:
				eacces = true;
				break;
			case ENOENT:
			case ENOTDIR:
			case ESTALE:
			case ELOOP:
			case ENAMETOOLONG:
			case ENODEV:
			case ETIMEDOUT:
				break;
			default:
				return errno;
			}
		}
		if (!*e)
			break;
		p = e + 1;
	}
	return eacces ? EACCES : ENOENT;
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
	sigset_t none;
	sigemptyset(&none);
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigemptyset(&dfl.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaction(forwarded[i], &dfl, NULL);
	sigaction(SIGCHLD, &dfl, NULL);
	sigprocmask(SIG_SETMASK, &none, NULL);
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

static char *env_store[HM_GUEST_MAX_ENV + 4];

static void start_program(void)
{
	struct ids ids;
	resolve_user(&ids);

	size_t n = 0;
	for (size_t i = 0; i < cfg.envc; i++)
		env_store[n++] = cfg.env[i];
	env_store[n] = NULL;
	static char path_env[] = "PATH=" DEFAULT_PATH;
	static char home_env[PATH_MAX + 8], host_env[128];
	if (!env_get(env_store, "PATH"))
		env_store[n++] = path_env;
	if (!env_get(env_store, "HOSTNAME")) {
		snprintf(host_env, sizeof(host_env), "HOSTNAME=%s", cfg.hostname);
		env_store[n++] = host_env;
	}
	if (!env_get(env_store, "HOME")) {
		snprintf(home_env, sizeof(home_env), "HOME=%s", ids.home);
		env_store[n++] = home_env;
	}
	env_store[n] = NULL;

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
		child_exec(pipefd[1], &ids, env_store);
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
	char msg[PATH_MAX + 64];
	const char *a0 = cfg.argv[0];
	switch (r.stage) {
	case STAGE_IDS:
		die(r.err, "switch to user %s", cfg.user ? cfg.user : "root");
	case STAGE_WORKDIR:
		die(r.err, "chdir to workdir %s", cfg.workdir);
	default:
		break;
	}
	int code = 126;
	if (r.err == ENOENT || r.err == ENOTDIR) {
		code = 127;
		snprintf(msg, sizeof(msg), "command not found: %s", a0);
	} else if (r.err == EACCES) {
		snprintf(msg, sizeof(msg), "permission denied: %s", a0);
	} else {
		snprintf(msg, sizeof(msg), "cannot execute %s: %s", a0, strerror(r.err));
	}
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

/* Reap every exited child; returns true when the program was among them. */
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

/* Serve signals, the agent and the power button until the program exits. */
static int main_loop(void)
{
	long long hup_at = 0;
	for (;;) {
		/* While the host end is closed the port polls as HUP: look again every 100 ms. */
		int timeout = -1;
		if (g.agent_hup) {
			long long left = hup_at + 100 - uptime_ms();
			if (left <= 0)
				g.agent_hup = false;
			else
				timeout = (int)left;
		}
		struct pollfd pfd[2 + MAX_BUTTONS];
		int nfds = 0, agent_i = -1;
		pfd[nfds++] = (struct pollfd){ .fd = g.sfd, .events = POLLIN };
		if (g.agent_fd >= 0 && !g.agent_hup) {
			agent_i = nfds;
			pfd[nfds++] = (struct pollfd){ .fd = g.agent_fd, .events = POLLIN };
		}
		int button_i = nfds;
		for (int i = 0; i < g.nbuttons; i++)
			pfd[nfds++] = (struct pollfd){ .fd = g.buttons[i], .events = POLLIN };
		int r = poll(pfd, (nfds_t)nfds, timeout);
		if (r < 0 && errno != EINTR)
			die(errno, "poll");
		if (r <= 0)
			continue;
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
		if (agent_i >= 0) {
			short re = pfd[agent_i].revents;
			if (re & POLLIN)
				agent_read();
			else if (re & (POLLHUP | POLLERR))
				g.agent_hup = true;
			if (g.agent_hup)
				hup_at = uptime_ms();
		}
		for (int i = 0; i < g.nbuttons; i++)
			if (pfd[button_i + i].revents & POLLIN)
				button_read(g.buttons[i]);
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
	char esc[4096];
	json_escape(esc, sizeof(esc), message);
	agent_send("{\"type\":\"exit\",\"code\":%d,\"message\":\"%s\",\"uptime_ms\":%lld}", code,
	           esc, uptime_ms());
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
	read_config();
	mount_root();
	switch_root();
	setup_identity();
	setup_network();
	open_agent();
	agent_send("{\"type\":\"boot\",\"uptime_ms\":%lld}", uptime_ms());
	open_power_buttons();
	start_program();
	int status = main_loop();
	char msg[128];
	int code = describe_status(status, msg, sizeof(msg));
	finish(code, msg);
}
