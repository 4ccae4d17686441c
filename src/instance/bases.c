/*
 * instance/bases: pre-booted base VMs, one per machine shape, that creates
 * restore instead of booting a kernel (docs/design.md, "Boot from a base").
 *
 * A base is a VM started on placeholder disks with `hypeman.base=1` on its
 * kernel command line, run until the guest init waits to be attached
 * (docs/guest.md, "Base mode": modules loaded, no disk read), and saved as
 * bases/<shape>-<generation>/{memory.ram, vm.state, base.json}. A create
 * copies its memory file and restores it onto the instance's own disks
 * (create.c); the placeholders themselves are not kept.
 *
 * The shape is what the saved devices fix: vCPUs, memory, the disks in
 * order with their read-only flags, a NIC or none, and the accelerator.
 * The kernel and initrd are fingerprinted (device, inode, size, mtime) in
 * base.json and compared at every use: a base of another kernel or initrd
 * is never used, and is replaced by the builder.
 *
 * One builder thread makes the bases, one at a time, from the shapes that
 * creates asked for (as redis runs its background jobs): a create never
 * waits for it, and with no ready base of its shape it asks for one and
 * boots cold. A base in use by a create is held (refs) and removed only
 * when the last holder lets go of it.
 *
 * Locking: b->lock guards the list and each entry's fields; it is a leaf
 * (nothing else is taken under it) and no file or VMM work is done under it.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json_cleanup.h"
#include "core/log.h"
#include "core/mono.h"
#include "core/xalloc.h"
#include "guest/lines.h"
#include "instance/internal.h"
#include "net/net.h"

#define BASE_READY_MS     60000               /* a base's boot up to its wait: TCG, a busy host */
#define PLACEHOLDER_BYTES (1LL << 20)         /* every placeholder but the config disk's */
#define RETRY_MS          (5 * 60000)         /* a shape whose build failed is tried again after */
#define BASE_MAC          "02:68:6d:ba:5e:00" /* the base's own NIC (never up) */
#define ROOM_BYTES        (256LL << 20)       /* free space a base build leaves, besides its RAM */
#define MAX_BASES         8                   /* ready bases kept (~100 MB of disk each) */

/* A ready base's files; held by the creates using them. */
struct inst_base {
	char *dir;
	char *memory, *state;
	uint64_t disk_bytes[HM_VM_MAX_DISKS]; /* the placeholders' sizes, as the guest saw them */
	size_t ndisks;
	char fp[256];      /* the kernel's and initrd's fingerprints it was made with */
	int refs;          /* the entry's one (while current), plus one per create using it */
	int64_t ram_bytes; /* memory.ram's allocated bytes: what each create copies */
};

enum base_state { BASE_WANTED, BASE_BUILDING, BASE_IDLE };

struct entry {
	struct entry *next;
	char *key;
	struct inst_shape shape;
	enum base_state state;
	struct inst_base *ready; /* or NULL */
	double failed_ms;        /* inst_mono_ms of the last failed build, 0: none */
	int broken;              /* bases of this shape in a row whose restore failed */
	double used_ms;          /* inst_mono_ms of the last create that asked for it */
	char *error;
};

struct inst_bases {
	struct hm_instances *in;
	char *dir;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct entry *list;
	atomic_bool stop;
	pthread_t thread;
	bool have_thread;
};

/* ---- shapes and fingerprints ---- */

void inst_shape_of(const struct hm_vm_spec *vs, struct inst_shape *sh)
{
	*sh = (struct inst_shape){ .vcpus = vs->vcpus,
		                   .mem_bytes = vs->mem_bytes,
		                   .nic = vs->tap != NULL,
		                   .accel = vs->accel };
	for (size_t i = 0; i < vs->ndisks && i < HM_VM_MAX_DISKS; i++)
		sh->disks[i] = vs->disks[i].readonly ? 'r' : 'w';
	sh->disks[vs->ndisks < HM_VM_MAX_DISKS ? vs->ndisks : HM_VM_MAX_DISKS] = '\0';
}

/* The shape as a folder name: "c2-m1024-wrw-net-tcg". */
static char *shape_key(const struct inst_shape *sh)
{
	return xasprintf("c%d-m%llu-%s-%s-%s", sh->vcpus, (unsigned long long)(sh->mem_bytes >> 20),
	                 sh->disks, sh->nic ? "net" : "nonet", hm_accel_name(sh->accel));
}

static bool shape_eq(const struct inst_shape *a, const struct inst_shape *b)
{
	return a->vcpus == b->vcpus && a->mem_bytes == b->mem_bytes && a->nic == b->nic &&
	       a->accel == b->accel && strcmp(a->disks, b->disks) == 0;
}

static void fingerprint(const struct hm_instances *in, char out[256])
{
	const char *paths[2] = { in->kernel.vmlinux, in->initrd };
	size_t len = 0;
	out[0] = '\0';
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		if (!paths[i] || stat(paths[i], &st) < 0) {
			snprintf(out, 256, "missing");
			return;
		}
		len +=
		    (size_t)snprintf(out + len, 256 - len, "%s%llx:%llx:%llx:%lld.%09ld",
		                     i ? " " : "", (unsigned long long)st.st_dev,
		                     (unsigned long long)st.st_ino, (unsigned long long)st.st_size,
		                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		if (len >= 256)
			return;
	}
}

/* ---- the files of a base ---- */

static void base_free(struct inst_base *b)
{
	if (!b)
		return;
	free(b->dir);
	free(b->memory);
	free(b->state);
	free(b);
}

/* Let go of b; the last holder of a replaced base removes its files. Under lock. */
static bool base_unref_locked(struct inst_base *b)
{
	return --b->refs == 0;
}

static void base_remove(struct inst_base *b)
{
	hm_rm_rf(b->dir, NULL);
	base_free(b);
}

/* Read bases/<name>/base.json; NULL (and the folder is not a usable base) on any doubt. */
static struct inst_base *base_load(const char *dir, struct inst_shape *sh, char **key)
{
	_cleanup_free_ char *path = xasprintf("%s/base.json", dir);
	_cleanup_json_ json_t *j = json_load_file(path, 0, NULL);
	json_t *disks = json_object_get(j, "disk_bytes");
	const char *fp = json_string_value(json_object_get(j, "fingerprint"));
	const char *d = json_string_value(json_object_get(j, "disks"));
	const char *accel = json_string_value(json_object_get(j, "accel"));
	const char *k = json_string_value(json_object_get(j, "key"));
	if (!j || !fp || !d || !accel || !k || !json_is_array(disks) ||
	    json_array_size(disks) != strlen(d) || strlen(d) > HM_VM_MAX_DISKS ||
	    strlen(fp) >= sizeof(((struct inst_base *)0)->fp))
		return NULL;
	*sh = (struct inst_shape){
		.vcpus = (int)json_integer_value(json_object_get(j, "vcpus")),
		.mem_bytes = (uint64_t)json_integer_value(json_object_get(j, "mem_bytes")),
		.nic = json_is_true(json_object_get(j, "nic")),
		.accel = strcmp(accel, "kvm") == 0 ? HM_ACCEL_KVM : HM_ACCEL_TCG,
	};
	snprintf(sh->disks, sizeof(sh->disks), "%s", d);
	struct inst_base *b = xcalloc(1, sizeof(*b));
	b->dir = xstrdup(dir);
	b->memory = xasprintf("%s/memory.ram", dir);
	b->state = xasprintf("%s/vm.state", dir);
	b->ndisks = strlen(d);
	for (size_t i = 0; i < b->ndisks; i++)
		b->disk_bytes[i] = (uint64_t)json_integer_value(json_array_get(disks, i));
	snprintf(b->fp, sizeof(b->fp), "%s", fp);
	b->ram_bytes = json_integer_value(json_object_get(j, "ram_bytes"));
	b->refs = 1;
	struct stat st;
	if (stat(b->memory, &st) < 0 || stat(b->state, &st) < 0 || !*k) {
		base_free(b);
		return NULL;
	}
	*key = xstrdup(k);
	return b;
}

/* ---- building one ---- */

/* One line from a base VM: false (stop) at its hello. */
static bool base_hello_line(void *ctx, char *line, size_t len)
{
	(void)ctx;
	(void)len;
	_cleanup_json_ json_t *m = json_loads(line, 0, NULL);
	const char *type = json_string_value(json_object_get(m, "type"));
	return !(type && strcmp(type, "hello") == 0 && json_is_true(json_object_get(m, "base")));
}

/* Read agent lines from fd until a base's hello, by deadline (or the daemon's stop). */
static int wait_base_hello(struct inst_bases *bs, int fd, double deadline, struct hm_err **err)
{
	char buf[4096], chunk[4096];
	struct hm_lines lines; /* a line too long for anything a base says is dropped */
	hm_lines_init(&lines, buf, sizeof(buf) - 1);
	for (;;) {
		double left = deadline - inst_mono_ms();
		if (left <= 0)
			return hm_err_set(err, HM_ERR_TIMEOUT, NULL,
			                  "the base VM did not reach its wait within %d s",
			                  BASE_READY_MS / 1000);
		if (atomic_load(&bs->stop))
			return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "the daemon is stopping");
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, left < 100 ? (int)left + 1 : 100);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return hm_err_set(err, HM_ERR_INTERNAL, NULL,
			                  "the base VM's agent channel closed before its wait");
		if (!hm_lines_feed(&lines, chunk, (size_t)n, base_hello_line, NULL))
			return 0;
	}
}

/* The TAP of the base of shape key, while it is built. */
static void base_tap(const char *key, char tap[HM_NET_TAP_MAX])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	hm_net_base_tap_name(h, tap);
}

static int make_placeholder(const char *path, int64_t bytes, struct hm_err **err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, bytes) < 0)
		return hm_err_errno(err, errno, "make the placeholder disk `%s`", path);
	return 0;
}

/*
 * Boot a base of shape sh in bases/.build-<key>, save it and move it to
 * bases/<key>-<generation>. Leaves nothing on failure: no folder, VMM or TAP.
 */
static int build(struct inst_bases *bs, const char *key, const struct inst_shape *sh,
                 struct inst_base **ret, struct hm_err **err)
{
	struct hm_instances *in = bs->in;
	double t0 = inst_mono_ms();
	_cleanup_free_ char *dir = xasprintf("%s/.build-%s", bs->dir, key);
	_cleanup_free_ char *run = xasprintf("%s/run", dir);
	hm_rm_rf(dir, NULL);
	/* The base's RAM file is sparse, but the guest may touch all of it: a
	 * base never fills the data dir (a guest's writes to a full one kill its VMM). */
	struct statvfs sv;
	if (statvfs(bs->dir, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < sh->mem_bytes + ROOM_BYTES)
		return hm_err_set(err, HM_ERR_INSUFFICIENT, NULL,
		                  "build base %s: %llu MB free in %s, the base needs %llu", key,
		                  (unsigned long long)sv.f_bavail * sv.f_frsize >> 20, bs->dir,
		                  (unsigned long long)(sh->mem_bytes + ROOM_BYTES) >> 20);
	if (hm_mkdir_p(run, 0700, err) < 0)
		return -1;
	char fp[256];
	fingerprint(in, fp);
	size_t nd = strlen(sh->disks);
	char *disk_paths[HM_VM_MAX_DISKS] = { 0 };
	uint64_t sizes[HM_VM_MAX_DISKS] = { 0 };
	int r = 0;
	struct hm_vm_spec vs = { 0 };
	_cleanup_free_ char *cmdline = inst_cmdline(in, " hypeman.base=1");
	_cleanup_free_ char *mem = xasprintf("%s/memory.ram", dir);
	_cleanup_free_ char *state = xasprintf("%s/vm.state", dir);
	_cleanup_free_ char *con = xasprintf("%s/console.log", dir);
	_cleanup_free_ char *vlog = xasprintf("%s/vmm.log", dir);
	vs = (struct hm_vm_spec){
		.id = key,
		.run_dir = run,
		.kernel = in->kernel.vmlinux,
		.initrd = in->initrd,
		.cmdline = cmdline,
		.vcpus = sh->vcpus,
		.mem_bytes = sh->mem_bytes,
		.ndisks = nd,
		.console_log = con,
		.vmm_log = vlog,
		.mem_path = mem,
		.accel = sh->accel,
	};
	for (size_t i = 0; i < nd && r == 0; i++) {
		disk_paths[i] = xasprintf("%s/disk%zu.img", dir, i);
		sizes[i] = i == 0 ? HM_GUEST_CFG_SIZE : PLACEHOLDER_BYTES;
		r = make_placeholder(disk_paths[i], (int64_t)sizes[i], err);
		vs.disks[i] = (struct hm_vm_disk){ disk_paths[i], sh->disks[i] == 'r', 0 };
	}
	char tap[HM_NET_TAP_MAX] = "";
	if (r == 0 && sh->nic) {
		/* Its own TAP on the bridge; the base never brings its NIC up. */
		base_tap(key, tap);
		r = hm_net_tap_create(in->net, tap, err);
		if (r < 0)
			tap[0] = '\0';
		vs.tap = tap;
		vs.mac = BASE_MAC;
	}
	r = r == 0 ? make_placeholder(mem, (int64_t)sh->mem_bytes, err) : r;
	struct hm_vm *vm = NULL;
	if (r == 0)
		r = in->vmm->spawn(&vs, &vm, err);
	if (r == 0) {
		_cleanup_close_ int afd = vm->ops->agent_connect(vm, 10000, err);
		static const char hello[] = "{\"type\":\"hello\"}\n";
		if (afd < 0)
			r = -1;
		else if (write(afd, hello, sizeof(hello) - 1) != (ssize_t)sizeof(hello) - 1)
			r = hm_err_errno(err, errno, "greet the base VM");
		else
			r = wait_base_hello(bs, afd, t0 + BASE_READY_MS, err);
		if (r == 0)
			r = vm->ops->snapshot(vm, state, err);
		vm->ops->kill(vm, 10000, NULL);
		vm->ops->free(vm);
	}
	if (tap[0])
		hm_net_tap_delete(in->net, tap);
	for (size_t i = 0; i < nd; i++) {
		if (disk_paths[i])
			unlink(disk_paths[i]);
		free(disk_paths[i]);
	}
	struct stat st;
	int64_t ram = stat(mem, &st) == 0 ? (int64_t)st.st_blocks * 512 : 0;
	if (r == 0) {
		json_t *dj = json_array();
		for (size_t i = 0; i < nd; i++)
			json_array_append_new(dj, json_integer((json_int_t)sizes[i]));
		_cleanup_json_ json_t *j = json_pack(
		    "{s:s,s:i,s:I,s:s,s:b,s:s,s:o,s:s,s:I,s:f}", "key", key, "vcpus", sh->vcpus,
		    "mem_bytes", (json_int_t)sh->mem_bytes, "disks", sh->disks, "nic", sh->nic,
		    "accel", hm_accel_name(sh->accel), "disk_bytes", dj, "fingerprint", fp,
		    "ram_bytes", (json_int_t)ram, "build_ms", inst_mono_ms() - t0);
		_cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
		_cleanup_free_ char *meta = xasprintf("%s/base.json", dir);
		r = hm_write_file_atomic(meta, text, strlen(text), 0600, err);
	}
	_cleanup_free_ char *final = NULL;
	if (r == 0) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		final = xasprintf("%s/%s-%llx%05lx", bs->dir, key, (unsigned long long)now.tv_sec,
		                  now.tv_nsec / 10000);
		if (rename(dir, final) < 0)
			r = hm_err_errno(err, errno, "move the base to `%s`", final);
	}
	if (r < 0) {
		hm_rm_rf(dir, NULL);
		return hm_err_wrap(err, "build base %s", key);
	}
	struct inst_shape got;
	_cleanup_free_ char *k = NULL;
	*ret = base_load(final, &got, &k);
	if (!*ret) {
		hm_rm_rf(final, NULL);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "build base %s: unreadable", key);
	}
	log_info("instances", "base ready", "shape=%s ms=%.0f ram_mb=%.1f", key,
	         inst_mono_ms() - t0, (double)ram / (1 << 20));
	return 0;
}

/* ---- the builder ---- */

static struct entry *find_entry(struct inst_bases *bs, const struct inst_shape *sh)
{
	for (struct entry *e = bs->list; e; e = e->next)
		if (shape_eq(&e->shape, sh))
			return e;
	return NULL;
}

static struct entry *add_entry(struct inst_bases *bs, const struct inst_shape *sh)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	e->shape = *sh;
	e->key = shape_key(sh);
	e->state = BASE_IDLE;
	e->used_ms = inst_mono_ms();
	e->next = bs->list;
	bs->list = e;
	return e;
}

/* The least recently asked-for ready base nobody uses, once there are more
 * than MAX_BASES (under lock); the caller removes it. */
static struct inst_base *evict_locked(struct inst_bases *bs)
{
	int n = 0;
	struct entry *lru = NULL;
	for (struct entry *e = bs->list; e; e = e->next) {
		if (!e->ready)
			continue;
		n++;
		if (e->ready->refs == 1 && (!lru || e->used_ms < lru->used_ms))
			lru = e;
	}
	if (n <= MAX_BASES || !lru)
		return NULL;
	struct inst_base *b = lru->ready;
	lru->ready = NULL;
	log_info("instances", "base evicted", "shape=%s", lru->key);
	return base_unref_locked(b) ? b : NULL;
}

static void *builder(void *arg)
{
	struct inst_bases *bs = arg;
	pthread_mutex_lock(&bs->lock);
	for (;;) {
		struct entry *e = NULL;
		while (!bs->stop) {
			for (e = bs->list; e && e->state != BASE_WANTED; e = e->next)
				;
			if (e)
				break;
			pthread_cond_wait(&bs->cond, &bs->lock);
		}
		if (bs->stop)
			break;
		e->state = BASE_BUILDING;
		struct inst_shape sh = e->shape;
		_cleanup_free_ char *key = xstrdup(e->key);
		pthread_mutex_unlock(&bs->lock);

		struct inst_base *b = NULL;
		_cleanup_err_ struct hm_err *err = NULL;
		int r = build(bs, key, &sh, &b, &err);
		if (r < 0)
			log_warn("instances", "base not built", "shape=%s error=\"%s\"", key,
			         hm_err_message(&err, "?"));

		pthread_mutex_lock(&bs->lock);
		e->state = BASE_IDLE;
		struct inst_base *old = NULL;
		if (r == 0) {
			old = e->ready;
			e->ready = b;
			e->failed_ms = 0;
			free(e->error);
			e->error = NULL;
		} else {
			e->failed_ms = inst_mono_ms();
			free(e->error);
			e->error = xstrdup(hm_err_message(&err, "?"));
		}
		bool gone = old && base_unref_locked(old);
		/* Bounded: past MAX_BASES the base of the shape asked for longest ago goes. */
		struct inst_base *evicted = r == 0 ? evict_locked(bs) : NULL;
		pthread_mutex_unlock(&bs->lock);
		if (gone)
			base_remove(old);
		if (evicted)
			base_remove(evicted);
		pthread_mutex_lock(&bs->lock);
	}
	pthread_mutex_unlock(&bs->lock);
	return NULL;
}

/* Ask for a base of sh (under lock); the builder takes it when free. */
static void want_locked(struct inst_bases *bs, struct entry *e)
{
	if (e->state != BASE_IDLE)
		return;
	if (e->failed_ms > 0 && inst_mono_ms() - e->failed_ms < RETRY_MS)
		return;
	e->state = BASE_WANTED;
	pthread_cond_signal(&bs->cond);
}

/* ---- what creates use ---- */

struct inst_base *inst_base_get(struct hm_instances *in, const struct inst_shape *sh)
{
	struct inst_bases *bs = in->bases;
	if (!bs)
		return NULL;
	char fp[256];
	fingerprint(in, fp);
	pthread_mutex_lock(&bs->lock);
	struct entry *e = find_entry(bs, sh);
	if (!e)
		e = add_entry(bs, sh);
	e->used_ms = inst_mono_ms();
	struct inst_base *b = e->ready;
	if (b && strcmp(b->fp, fp) != 0)
		b = NULL; /* of another kernel or initrd: rebuilt, never used */
	if (b)
		b->refs++;
	else
		want_locked(bs, e);
	pthread_mutex_unlock(&bs->lock);
	return b;
}

void inst_base_put(struct hm_instances *in, struct inst_base *b, bool broken)
{
	struct inst_bases *bs = in->bases;
	if (!b)
		return;
	pthread_mutex_lock(&bs->lock);
	for (struct entry *e = bs->list; e; e = e->next) {
		if (e->ready != b)
			continue;
		if (!broken) {
			e->broken = 0;
			continue;
		}
		/* A restore of it failed: it goes and a new one is made at once; after
		 * a second in a row the shape waits as after a failed build. */
		e->ready = NULL;
		base_unref_locked(b);
		if (++e->broken >= 2)
			e->failed_ms = inst_mono_ms();
		want_locked(bs, e);
	}
	bool gone = base_unref_locked(b);
	pthread_mutex_unlock(&bs->lock);
	if (gone)
		base_remove(b);
}

const char *inst_base_memory(const struct inst_base *b)
{
	return b->memory;
}

const char *inst_base_state(const struct inst_base *b)
{
	return b->state;
}

uint64_t inst_base_disk_bytes(const struct inst_base *b, size_t i)
{
	return i < b->ndisks ? b->disk_bytes[i] : 0;
}

/* ---- open, close ---- */

/*
 * A build a dead daemon left: its base VMM may still run (VMMs run in their
 * own session). adopt() takes it only if that pid is a QEMU serving this
 * folder's control socket, so a reused pid is never killed.
 */
static void kill_left_build(struct inst_bases *bs, const char *dir)
{
	_cleanup_free_ char *run = xasprintf("%s/run", dir);
	_cleanup_free_ char *pidfile = xasprintf("%s/vmm.pid", run);
	char text[32] = "";
	FILE *f = fopen(pidfile, "re");
	if (f && !fgets(text, sizeof(text), f))
		text[0] = '\0';
	if (f)
		fclose(f);
	long pid = strtol(text, NULL, 10);
	struct hm_vm *vm = NULL;
	if (pid > 1 && bs->in->vmm->adopt(run, (pid_t)pid, &vm, NULL) == 0) {
		log_info("instances", "left base build stopped", "pid=%ld", pid);
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
	}
	/* Its TAP, which the start-up reclaim found still held by that VMM. */
	const char *slash = strrchr(dir, '/');
	char tap[HM_NET_TAP_MAX];
	base_tap(slash ? slash + 1 + strlen(".build-") : dir, tap);
	if (hm_net_enabled(bs->in->net))
		hm_net_tap_delete(bs->in->net, tap);
}

/* Adopt the bases of an earlier run that still fit the kernel and initrd; remove the rest. */
static void scan(struct inst_bases *bs)
{
	char fp[256];
	fingerprint(bs->in, fp);
	DIR *d = opendir(bs->dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", bs->dir, de->d_name);
		if (strncmp(de->d_name, ".build-", 7) == 0)
			kill_left_build(bs, path);
		struct inst_shape sh;
		_cleanup_free_ char *key = NULL;
		struct inst_base *b = de->d_name[0] == '.' ? NULL : base_load(path, &sh, &key);
		struct entry *e = b ? find_entry(bs, &sh) : NULL;
		if (!b || strcmp(b->fp, fp) != 0 || e) {
			/* Of two of one shape (both fit), the first one read is kept. */
			log_info("instances", "base removed", "dir=%s reason=\"%s\"", de->d_name,
			         !b  ? "incomplete"
			         : e ? "another of its shape is kept"
			             : "another kernel");
			base_free(b);
			hm_rm_rf(path, NULL);
			continue;
		}
		e = add_entry(bs, &sh);
		e->ready = b;
	}
	closedir(d);
}

int inst_bases_open(struct hm_instances *in, const struct inst_shape *defaults, size_t n,
                    struct hm_err **err)
{
	struct inst_bases *bs = xcalloc(1, sizeof(*bs));
	bs->in = in;
	bs->dir = xasprintf("%s/bases", in->cfg->data_dir);
	pthread_mutex_init(&bs->lock, NULL);
	pthread_cond_init(&bs->cond, NULL);
	if (hm_mkdir_p(bs->dir, 0700, err) < 0) {
		in->bases = bs;
		inst_bases_close(in);
		return -1;
	}
	scan(bs);
	for (size_t i = 0; i < n; i++) {
		struct entry *e = find_entry(bs, &defaults[i]);
		if (!e)
			e = add_entry(bs, &defaults[i]);
		if (!e->ready)
			want_locked(bs, e);
	}
	in->bases = bs;
	if (pthread_create(&bs->thread, NULL, builder, bs) != 0) {
		inst_bases_close(in);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "start the base builder");
	}
	bs->have_thread = true;
	return 0;
}

void inst_bases_close(struct hm_instances *in)
{
	struct inst_bases *bs = in->bases;
	if (!bs)
		return;
	pthread_mutex_lock(&bs->lock);
	bs->stop = true;
	pthread_cond_broadcast(&bs->cond);
	pthread_mutex_unlock(&bs->lock);
	if (bs->have_thread)
		pthread_join(bs->thread, NULL);
	while (bs->list) {
		struct entry *e = bs->list;
		bs->list = e->next;
		if (e->ready && base_unref_locked(e->ready))
			base_free(e->ready); /* its files stay for the next start */
		free(e->key);
		free(e->error);
		free(e);
	}
	pthread_mutex_destroy(&bs->lock);
	pthread_cond_destroy(&bs->cond);
	free(bs->dir);
	free(bs);
	in->bases = NULL;
}
