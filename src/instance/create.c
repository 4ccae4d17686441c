/*
 * instance/create: POST /instances: the request checked field by field,
 * the resources admitted, the row inserted (the name's uniqueness is the
 * database's), the overlay and config disk made, the VMM spawned; and the
 * VMM spawn and disk steps the other operations reuse. A failed create
 * leaves nothing: no row, folder, process, TAP or address.
 */
#include "instance/instances.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/ext4.h"
#include "core/names.h"
#include "core/fileio.h"
#include "core/json_cleanup.h"
#include "core/spawn.h"
#include "core/tags.h"
#include "store/volumes.h"
#include "volume/volumes.h"
#include "core/xalloc.h"
#include "host/host.h"
#include "image/images.h"
#include "instance/command.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/attachments.h"
#include "store/instances.h"

#define DEFAULT_MEM     (1LL << 30)
#define DEFAULT_OVERLAY (10LL << 30)
#define DEFAULT_VCPUS   2
#define MIN_MEM         INST_MIN_MEM
#define MAX_MEM         INST_MAX_MEM
#define MIN_OVERLAY     (64LL << 20)
#define MAX_OVERLAY     (100LL << 30)
#define MAX_VCPUS       INST_MAX_VCPUS

/* ---- create ---- */

/* A create's request, checked and with its defaults in. */
struct create_req {
	const char *name;
	const char *image;
	int64_t vcpus, mem, overlay;
	json_t *env, *cmd, *entrypoint, *tags; /* borrowed; NULL when not given */
	enum hm_net_want network;
	enum hm_egress_mode egress;
	json_t *credentials;                /* their stored form (owned), or NULL */
	int64_t down_bps, up_bps, disk_bps; /* 0: default */
	json_t *volumes;                    /* checked: [{id, mount_path, readonly}] (owned) */
	const char *hypervisor;             /* the runtime asked for (HM_RUNTIME_DEFAULT) */
	bool boot;                          /* false: made Stopped, booted by a later start */
	struct hm_restart_policy restart;
	bool auto_standby_set;
	struct hm_auto_standby auto_standby;
	bool delete_on_stop, delete_lock;
	const char *hostname;
};

int inst_vcpus_check(int vcpus, struct hm_err **err)
{
	if (vcpus < 0 || vcpus > MAX_VCPUS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`vcpus` must be an integer from 1 to %d", MAX_VCPUS);
	return 0;
}

/* A size in bytes within [min, max]; 0 takes dflt. `what` names it in the error, in
 * the domain's words (each dialect has its own field name for it). */
int inst_size_check(const char *what, int64_t v, int64_t dflt, int64_t min, int64_t max,
                    int64_t *ret, struct hm_err **err)
{
	if (v == 0) {
		*ret = dflt;
		return 0;
	}
	if (v < min || v > max) {
		_cleanup_free_ char *got = hm_human_size(v);
		_cleanup_free_ char *lo = hm_human_size(min);
		_cleanup_free_ char *hi = hm_human_size(max);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s of %s is out of range (%s to %s)", what, got, lo, hi);
	}
	*ret = v;
	return 0;
}

static int check_mount_path(const char *p, struct hm_err **err)
{
	static const char *const system[] = { "/",     "/bin",   "/boot",  "/dev",  "/etc",
		                              "/lib",  "/lib32", "/lib64", "/proc", "/run",
		                              "/sbin", "/sys",   "/usr",   "/var",  NULL };
	size_t n = p ? strlen(p) : 0;
	bool ok = n > 1 && n < 256 && p[0] == '/' && p[n - 1] != '/' && !strstr(p, "//") &&
	          !strstr(p, "/./") && !strstr(p, "/../") && strcmp(p + n - 2, "/.") != 0 &&
	          (n < 3 || strcmp(p + n - 3, "/..") != 0) && !strpbrk(p, " \n\t");
	for (size_t i = 0; ok && system[i]; i++)
		ok = strcmp(p, system[i]) != 0;
	static const char *const under[] = { "/proc/", "/sys/", "/dev/", NULL };
	for (size_t i = 0; ok && under[i]; i++)
		ok = strncmp(p, under[i], strlen(under[i])) != 0;
	if (!ok)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_mount_path",
		                  "mount path `%.100s` must be a clean absolute path (no spaces) "
		                  "outside the system directories (/, /etc, /usr, /proc, ...)",
		                  p ? p : "");
	return 0;
}

/*
 * Attachments checked (mount paths, overlay sizes, no two on one path, what
 * fits in the VM's disk slots) and put in their stored form: [{id,
 * mount_path, readonly, overlay?, overlay_bytes?}], where id is still what
 * was asked (a name or an id) until inst_claim_volumes resolves it.
 * Existence and sharing are the claim's.
 */
int inst_attachments(const struct hm_attach *a, size_t n, json_t **ret, struct hm_err **err)
{
	*ret = NULL;
	if (n > MAX_VOLUMES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`volumes` must be an array of at most %d attachments",
		                  MAX_VOLUMES);
	size_t disks = 0;
	for (size_t i = 0; i < n; i++)
		disks += a[i].overlay ? 2 : 1;
	if (disks > HM_VM_MAX_DISKS - 3)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_field",
		    "too many volume disks: an overlay attachment takes two, and %d fit",
		    HM_VM_MAX_DISKS - 3);
	json_t *vols = json_array();
	for (size_t i = 0; i < n; i++) {
		int r = 0;
		int64_t ovsize = 0;
		if (!a[i].volume || !*a[i].volume)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			               "volumes[%zu].volume_id is required", i);
		else if (check_mount_path(a[i].mount_path, err) < 0)
			r = -1;
		else if (a[i].overlay &&
		         inst_size_check("a volume overlay", a[i].overlay_bytes, 1LL << 30,
		                         MIN_OVERLAY, MAX_OVERLAY, &ovsize, err) < 0)
			r = -1;
		for (size_t k = 0; r == 0 && k < i; k++)
			if (strcmp(a[k].mount_path, a[i].mount_path) == 0)
				r = hm_err_set(err, HM_ERR_INVALID, "invalid_mount_path",
				               "two volumes on %s", a[i].mount_path);
		if (r < 0) {
			json_decref(vols);
			return -1;
		}
		json_t *att = json_pack("{s:s,s:s,s:b}", "id", a[i].volume, "mount_path",
		                        a[i].mount_path, "readonly", a[i].readonly || a[i].overlay);
		if (a[i].overlay) {
			json_object_set_new(att, "overlay", json_true());
			json_object_set_new(att, "overlay_bytes", json_integer(ovsize));
		}
		json_array_append_new(vols, att);
	}
	*ret = vols;
	return 0;
}

/*
 * Resolve each attachment to a volume (404 if none) and check sharing: a
 * read-write attachment needs the volume to itself, a read-only one needs
 * no writer. Under in->lock, so two creates cannot both take a volume.
 */
int inst_claim_volumes(struct hm_instances *in, json_t *vols, struct hm_err **err)
{
	int r = 0;
	size_t i;
	json_t *v;
	json_array_foreach (vols, i, v) {
		struct hm_volume_row vr = { 0 };
		if (hm_store_volume_find(in->st, json_string_value(json_object_get(v, "id")), &vr,
		                         err) < 0)
			return -1;
		json_object_set_new(v, "id", json_string(vr.id)); /* a name becomes the id */
		bool want_rw = !json_is_true(json_object_get(v, "readonly"));
		struct hm_attachment_row *rows = NULL;
		size_t n = 0;
		r = hm_store_attachments_of_volume(in->st, vr.id, &rows, &n, err);
		for (size_t k = 0; r == 0 && k < n; k++)
			if (want_rw || !rows[k].readonly)
				r = hm_err_set(
				    err, HM_ERR_CONFLICT, "volume_in_use",
				    "volume `%s` is attached %s to instance %s; a read-write "
				    "attachment needs it alone",
				    vr.name, rows[k].readonly ? "read-only" : "read-write",
				    rows[k].instance_name);
		hm_attachment_rows_free(rows, n);
		hm_volume_row_done(&vr);
		if (r < 0)
			break;
	}
	return r;
}

/* The domain's rules for a create, whichever dialect filled it in; c gets the defaults. */
static int check_create(const struct hm_instance_create *q, const char *data_dir,
                        const struct hm_accel_choice *accel, struct create_req *c,
                        struct hm_err **err)
{
	if (!q->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (hm_name_check("instance", q->name, err) < 0)
		return -1;
	if (!q->image)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`image` is required");
	size_t il = strlen(q->image);
	if (il == 0 || il > 512)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`image` must be a non-empty image reference");
	c->name = q->name;
	c->image = q->image;
	if (inst_vcpus_check(q->vcpus, err) < 0)
		return -1;
	c->vcpus = q->vcpus ? q->vcpus : DEFAULT_VCPUS;
	if (inst_size_check("memory", q->mem_bytes, DEFAULT_MEM, MIN_MEM, MAX_MEM, &c->mem, err) <
	        0 ||
	    inst_size_check("overlay", q->overlay_bytes, DEFAULT_OVERLAY, MIN_OVERLAY, MAX_OVERLAY,
	                    &c->overlay, err) < 0)
		return -1;
	struct hm_host_capacity cap = { 0 };
	if (hm_host_capacity(data_dir, 0, &cap, NULL) == 0 && cap.memory_bytes > 0 &&
	    c->mem > cap.memory_bytes) {
		_cleanup_free_ char *want = hm_human_size(c->mem);
		_cleanup_free_ char *h = hm_human_size(cap.memory_bytes);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "memory of %s is more than this host's (%s)", want, h);
	}
	c->env = q->env;
	if (c->env && hm_command_check_env(c->env, err) < 0)
		return -1;
	c->cmd = q->cmd;
	if (c->cmd && hm_command_check_args(c->cmd, "cmd", err) < 0)
		return -1;
	c->entrypoint = q->entrypoint;
	if (c->entrypoint && hm_command_check_args(c->entrypoint, "entrypoint", err) < 0)
		return -1;
	c->tags = q->tags;
	if (c->tags && hm_tags_validate(c->tags, err) < 0)
		return -1;
	c->network = q->network;
	c->egress = q->egress;
	if (c->egress != HM_EGRESS_OFF && c->network == HM_NET_OFF)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`network.egress` mediates a network the instance does not have "
		                  "(network.enabled is false)");
	if (inst_credentials_check(q->credentials, q->ncredentials, q->env, c->egress, err) < 0)
		return -1;
	if (q->ncredentials)
		c->credentials = inst_credentials_json(q->credentials, q->ncredentials);
	static const char *const rates[] = { "bandwidth_download", "bandwidth_upload" };
	const int64_t asked[] = { q->download_bps, q->upload_bps };
	int64_t *dst[] = { &c->down_bps, &c->up_bps };
	for (size_t i = 0; i < 2; i++) {
		if (asked[i] != 0 && (asked[i] < 1000 || asked[i] > 100000000000LL / 8))
			return hm_err_set(
			    err, HM_ERR_INVALID,
			    i ? "invalid_bandwidth_upload" : "invalid_bandwidth_download",
			    "`network.%s` must be a rate from 8kbps to 100Gbps such as "
			    "\"1Gbps\" or \"125MB/s\"",
			    rates[i]);
		*dst[i] = asked[i];
	}
	if (q->disk_bps != 0 && (q->disk_bps < 65536 || q->disk_bps > (1LL << 40)))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`disk_io_bps` must be a rate from 64KB/s to 1TB/s such as "
		                  "\"100MB/s\"");
	c->disk_bps = q->disk_bps;
	if (inst_attachments(q->volumes, q->nvolumes, &c->volumes, err) < 0)
		return -1;
	if (q->hypervisor && hm_runtime_check(accel, q->hypervisor, err) < 0)
		return -1;
	c->hypervisor = q->hypervisor;
	c->boot = !q->no_boot;
	if (inst_restart_check(&q->restart, err) < 0)
		return -1;
	if (q->delete_on_stop && q->restart.policy != HM_RESTART_NEVER)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "an instance deleted when it stops cannot have a restart policy");
	c->restart = q->restart;
	if (q->auto_standby_set && q->auto_standby.enabled &&
	    inst_auto_standby_check(&q->auto_standby, err) < 0)
		return -1;
	c->auto_standby_set = q->auto_standby_set;
	c->auto_standby = q->auto_standby;
	c->delete_on_stop = q->delete_on_stop;
	c->delete_lock = q->delete_lock;
	if (q->hostname && hm_name_check("host", q->hostname, err) < 0)
		return -1;
	c->hostname = q->hostname;
	return 0;
}

void inst_spec_proxy_env(json_t *spec)
{
	/* Mediated egress: every common spelling points at the host's proxy. */
	const char *proxy = json_string_value(json_object_get(inst_spec_net(spec), "proxy"));
	json_t *full = json_object_get(spec, "full_env");
	if (!proxy || !json_is_object(full))
		return;
	static const char *const keys[] = { "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
		                            "https_proxy" };
	for (size_t i = 0; i < 4; i++)
		json_object_set_new(full, keys[i], json_string(proxy));
	json_object_set_new(full, "NO_PROXY", json_string("localhost,127.0.0.1"));
	json_object_set_new(full, "no_proxy", json_string("localhost,127.0.0.1"));
	/* The proxy's CA is in the guest's bundles (the init adds it); these
	 * point the runtimes that read no system bundle at them, unless the
	 * image or the request says otherwise. */
	static const char *const ca_vars[][2] = {
		{ "SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt" },
		{ "REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt" },
		{ "CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt" },
		{ "NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/hypeman-egress-ca.pem" },
	};
	for (size_t i = 0; i < 4; i++)
		if (!json_object_get(full, ca_vars[i][0]))
			json_object_set_new(full, ca_vars[i][0], json_string(ca_vars[i][1]));
}

/* What the program runs with, from the spec's asked-for parts and the image's config. */
int inst_spec_command(json_t *spec, json_t *cfg, struct hm_err **err)
{
	json_t *argv = NULL;
	if (hm_command_argv(json_object_get(cfg, "entrypoint"), json_object_get(cfg, "cmd"),
	                    json_object_get(spec, "entrypoint"), json_object_get(spec, "cmd"),
	                    &argv, err) < 0)
		return -1;
	json_object_set_new(spec, "argv", argv);
	json_t *env = json_object_get(spec, "env");
	json_object_set_new(
	    spec, "full_env",
	    hm_command_env(json_object_get(cfg, "env"), json_object_size(env) ? env : NULL));
	inst_spec_proxy_env(spec);
	const char *wd = json_string_value(json_object_get(cfg, "working_dir"));
	json_object_set_new(spec, "workdir", json_string(wd && *wd ? wd : "/"));
	const char *user = json_string_value(json_object_get(cfg, "user"));
	json_object_set_new(spec, "user", json_string(user ? user : ""));
	return 0;
}

/* A sparse ext4 file of `bytes`: the instance's writable layer. */
int inst_make_overlay(const char *path, int64_t bytes, struct hm_err **err)
{
	return hm_ext4_make(path, bytes, false, NULL, "overlay disk", err);
}

/* Everything of a create after the row exists; on failure the caller undoes it. */
/* (Re)write the guest config disk from the spec: a fresh disk, no exit record. */
int inst_write_config(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                      const char *rootfs, struct hm_err **err)
{
	json_t *argv = json_object_get(spec, "argv");
	json_t *envo = json_object_get(spec, "full_env");
	size_t argc = json_array_size(argv), envc = json_object_size(envo);
	_cleanup_free_ const char **av = xcalloc(argc + 1, sizeof(*av));
	for (size_t i = 0; i < argc; i++)
		av[i] = json_string_value(json_array_get(argv, i));
	_cleanup_free_ char **ev = xcalloc(envc + 1, sizeof(*ev));
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach (envo, key, val)
		ev[k++] = xasprintf("%s=%s", key, json_string_value(val));
	const char *user = json_string_value(json_object_get(spec, "user"));
	json_t *net = inst_spec_net(spec);
	const char *dns[] = { net ? hm_net_dns(in->net) : NULL, NULL };
	/* Volumes follow config, root and overlay: /dev/vdd, /dev/vde, ... */
	json_t *vols = json_object_get(spec, "volumes");
	char *vrec[MAX_VOLUMES + 1] = { 0 };
	char dev = 'd'; /* after config, root and overlay; an overlay volume takes two */
	for (size_t i = 0; i < json_array_size(vols) && i < MAX_VOLUMES; i++) {
		json_t *v = json_array_get(vols, i);
		const char *mp = json_string_value(json_object_get(v, "mount_path"));
		if (json_is_true(json_object_get(v, "overlay"))) {
			vrec[i] = xasprintf("/dev/vd%c overlay:/dev/vd%c %s", dev, dev + 1, mp);
			dev += 2;
		} else {
			vrec[i] = xasprintf(
			    "/dev/vd%c %s %s", dev,
			    json_is_true(json_object_get(v, "readonly")) ? "ro" : "rw", mp);
			dev++;
		}
	}
	struct hm_guest_config gc = {
		.volumes = (const char *const *)vrec,
		.net_ip = json_string_value(json_object_get(net, "cidr")),
		.net_gw = json_string_value(json_object_get(net, "gateway")),
		.net_mac = json_string_value(json_object_get(net, "mac")),
		.dns = dns,
		.argv = av,
		.env = (const char *const *)ev,
		.workdir = json_string_value(json_object_get(spec, "workdir")),
		.user = user && *user ? user : NULL,
		.hostname = inst_hostname(row, spec),
		.root = "/dev/vdb",
		.rootfs = rootfs,
		.overlay = "/dev/vdc",
		.egress_ca = json_object_get(net, "proxy") ? in->egress_ca : NULL,
	};
	_cleanup_free_ char *cfg = inst_path(in, row->id, "config.img");
	int r = hm_guestcfg_write(cfg, &gc, err);
	for (size_t i = 0; i < envc; i++)
		free(ev[i]);
	for (size_t i = 0; i < MAX_VOLUMES; i++)
		free(vrec[i]);
	return r;
}

char *inst_cmdline(const struct hm_instances *in, const char *extra)
{
	/* tsc_early_khz: without it microvm boots hang at random under TCG. */
	if (in->tsc_khz > 0)
		return xasprintf("console=ttyS0 panic=-1 quiet loglevel=2 cryptomgr.notests "
		                 "tsc_early_khz=%ld%s",
		                 in->tsc_khz, extra);
	return xasprintf("console=ttyS0 panic=-1 quiet loglevel=2 cryptomgr.notests%s", extra);
}

/* How a VM starts: booted, woken from its own saved state, or restored from a base. */
struct spawn_how {
	const char *restore_from; /* the instance's saved state, or NULL */
	bool prepare;             /* with restore_from: start the VMM, leave the load to come */
	bool try_base;            /* a boot: from a ready base of its shape, if there is one */
	bool from_base;           /* out: it was (the guest waits for *attach) */
	json_t *attach;           /* out, with from_base: the guest's attach message */
};

static int spawn_vm_on(struct hm_instances *in, const char *id, json_t *spec,
                       struct hm_vm_spec *vsp, const char *restore_from, bool prepare,
                       const bool *resize, struct hm_vm **ret_vm, struct hm_err **err);

/*
 * A boot from base b: its memory copied to the instance's RAM file (a
 * private copy: standby, fork and snapshots work as on a cold boot's), the
 * VMM restored from its state onto the instance's disks, each disk whose
 * size differs from b's placeholder resized, the guest resumed. The attach
 * message tells it the real sizes (it waits for them).
 */
static int boot_from_base(struct hm_instances *in, const char *id, json_t *spec,
                          struct hm_vm_spec *vs, const struct inst_base *b, struct spawn_how *how,
                          struct hm_vm **ret_vm, struct hm_err **err)
{
	double t0 = inst_mono_ms();
	unsigned long long copied = 0;
	if (hm_copy_sparse(inst_base_memory(b), vs->mem_path, 0600, &copied, err) < 0)
		return -1;
	double t_copy = inst_mono_ms();
	bool resize[HM_VM_MAX_DISKS] = { false };
	json_t *sizes = json_array();
	for (size_t i = 0; i < vs->ndisks; i++) {
		struct stat st;
		if (stat(vs->disks[i].path, &st) < 0) {
			json_decref(sizes);
			unlink(vs->mem_path);
			return hm_err_errno(err, errno, "disk `%s`", vs->disks[i].path);
		}
		resize[i] = (uint64_t)st.st_size != inst_base_disk_bytes(b, i);
		json_array_append_new(sizes, json_sprintf("%lld", (long long)st.st_size));
	}
	if (spawn_vm_on(in, id, spec, vs, inst_base_state(b), false, resize, ret_vm, err) < 0) {
		json_decref(sizes);
		unlink(vs->mem_path);
		return -1;
	}
	struct hm_vm *vm = *ret_vm;
	/* Kept until the guest is up: a daemon that dies before its monitor sent
	 * the attach sends it again when it adopts the VM (reconcile.c). */
	_cleanup_json_ json_t *keep = json_pack("{s:s,s:O}", "type", "attach", "disk_bytes", sizes);
	_cleanup_free_ char *keep_text = json_dumps(keep, JSON_COMPACT);
	_cleanup_free_ char *keep_path = inst_path(in, id, INST_ATTACH_FILE);
	if (hm_write_file_atomic(keep_path, keep_text, strlen(keep_text), 0600, err) < 0 ||
	    vm->ops->resume(vm, err) < 0) {
		unlink(keep_path);
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
		*ret_vm = NULL;
		inst_drop_tap(in, id);
		json_decref(sizes);
		unlink(vs->mem_path);
		return hm_err_wrap(err, "start the VM from its base");
	}
	how->attach = inst_attach_msg(keep);
	json_decref(sizes);
	how->from_base = true;
	inst_oplog(in, id, "msg=\"from base\" copy_ms=%.1f copied_mb=%.1f restore_ms=%.1f",
	           t_copy - t0, (double)copied / (1 << 20), inst_mono_ms() - t_copy);
	return 0;
}

char *inst_seed_hex(void)
{
	unsigned char seed[64];
	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		memset(seed, 0, sizeof(seed));
	return hm_hex_encode(seed, sizeof(seed));
}

json_t *inst_attach_msg(json_t *kept)
{
	_cleanup_free_ char *hex = inst_seed_hex();
	/* unix_ms: the monitor sets it when it sends this. */
	return json_pack("{s:s,s:I,s:s,s:O}", "type", "attach", "unix_ms", (json_int_t)0, "seed",
	                 hex, "disk_bytes", json_object_get(kept, "disk_bytes"));
}

static int spawn_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                    const char *root_disk, struct spawn_how *how, struct hm_vm **ret_vm,
                    struct hm_err **err)
{
	const char *id = row->id;
	const char *restore_from = how->restore_from;
	_cleanup_free_ char *cmdline = inst_cmdline(in, "");
	_cleanup_free_ char *run = inst_path(in, id, "run");
	_cleanup_free_ char *cfg = inst_path(in, id, "config.img");
	_cleanup_free_ char *overlay = inst_path(in, id, "overlay.ext4");
	_cleanup_free_ char *app_log = inst_path(in, id, "logs/app.log");
	_cleanup_free_ char *vmm_log = inst_path(in, id, "logs/vmm.log");
	/* A cold boot starts on fresh memory (tmpfs when it fits: memory.c); a
	 * restore runs on the saved memory file. */
	_cleanup_free_ char *mem =
	    restore_from
	        ? inst_path(in, id, HM_PAYLOAD_MEMORY)
	        : inst_mem_for_boot(in, id, json_integer_value(json_object_get(spec, "mem_bytes")));
	uint64_t dio = (uint64_t)json_integer_value(json_object_get(spec, "disk_io_bps"));
	json_t *vols = json_object_get(spec, "volumes");
	char *vol_disks[MAX_VOLUMES] = { 0 };
	struct hm_vm_spec vs = {
		.id = id,
		.run_dir = run,
		.kernel = in->kernel.vmlinux,
		.initrd = in->initrd,
		.cmdline = cmdline,
		.vcpus = (int)json_integer_value(json_object_get(spec, "vcpus")),
		.mem_bytes = (uint64_t)json_integer_value(json_object_get(spec, "mem_bytes")),
		.disks = { { cfg, false, 0 }, { root_disk, true, dio }, { overlay, false, dio } },
		.ndisks = 3,
		.console_log = app_log,
		.vmm_log = vmm_log,
		.mem_path = mem,
		.accel = in->accel->accel,
	};
	char *upper_disks[MAX_VOLUMES] = { 0 };
	int r = 0;
	for (size_t i = 0; i < json_array_size(vols) && i < MAX_VOLUMES && r == 0; i++) {
		json_t *v = json_array_get(vols, i);
		const char *vid = json_string_value(json_object_get(v, "id"));
		vol_disks[i] = hm_volume_disk(in->cfg->data_dir, vid);
		vs.disks[vs.ndisks++] =
		    (struct hm_vm_disk){ vol_disks[i], json_is_true(json_object_get(v, "readonly")),
			                 dio };
		if (json_is_true(json_object_get(v, "overlay"))) {
			/* The instance's private writable layer over the shared volume, kept
			 * across stop/start like its own overlay. */
			_cleanup_free_ char *name = xasprintf("vol-%s.ext4", vid);
			upper_disks[i] = inst_path(in, id, name);
			if (!restore_from && access(upper_disks[i], F_OK) < 0)
				r = inst_make_overlay(
				    upper_disks[i],
				    json_integer_value(json_object_get(v, "overlay_bytes")), err);
			vs.disks[vs.ndisks++] = (struct hm_vm_disk){ upper_disks[i], false, dio };
		}
	}
	/* A boot from a base of this shape where one is ready (bases.c); else cold. */
	struct inst_base *base = NULL;
	if (r == 0 && how->try_base && !restore_from) {
		struct inst_shape sh;
		inst_shape_of(&vs, &sh);
		sh.nic =
		    inst_spec_net(spec) && hm_net_enabled(in->net); /* spawn_vm_on makes the TAP */
		base = inst_base_get(in, &sh);
	}
	if (r == 0 && base) {
		_cleanup_err_ struct hm_err *berr = NULL;
		r = boot_from_base(in, id, spec, &vs, base, how, ret_vm, &berr);
		bool base_failed = r < 0;
		if (r < 0) {
			/* This boot goes cold. */
			log_warn("instances", "boot from base failed, booting cold",
			         "id=%s error=\"%s\"", id, hm_err_message(&berr, "?"));
			inst_oplog(in, id, "msg=\"boot from base failed\" error=\"%s\"",
			           hm_err_message(&berr, "?"));
			free(mem);
			mem = inst_mem_for_boot(in, id, (int64_t)vs.mem_bytes);
			vs.mem_path = mem;
			r = spawn_vm_on(in, id, spec, &vs, NULL, false, NULL, ret_vm, err);
		}
		/* Only a base that failed where a cold boot worked is dropped (and made
		 * again); when both fail, the fault is the instance's. */
		inst_base_put(in, base, base_failed && r == 0);
	} else if (r == 0) {
		r = spawn_vm_on(in, id, spec, &vs, restore_from, how->prepare, NULL, ret_vm, err);
	}
	for (size_t i = 0; i < MAX_VOLUMES; i++) {
		free(vol_disks[i]);
		free(upper_disks[i]);
	}
	return r;
}

int inst_spawn_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                  const char *root_disk, const char *restore_from, struct hm_vm **ret_vm,
                  struct hm_err **err)
{
	struct spawn_how how = { .restore_from = restore_from };
	return spawn_vm(in, row, spec, root_disk, &how, ret_vm, err);
}

int inst_prepare_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                    const char *root_disk, struct hm_vm **ret_vm, struct hm_err **err)
{
	_cleanup_free_ char *state = inst_path(in, row->id, HM_PAYLOAD_STATE);
	struct spawn_how how = { .restore_from = state, .prepare = true };
	return spawn_vm(in, row, spec, root_disk, &how, ret_vm, err);
}

int inst_boot_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                 const char *root_disk, struct hm_vm **ret_vm, json_t **attach, struct hm_err **err)
{
	struct spawn_how how = { .try_base = in->bases != NULL };
	*attach = NULL;
	int r = spawn_vm(in, row, spec, root_disk, &how, ret_vm, err);
	if (r == 0)
		*attach = how.attach;
	json_object_set_new(spec, "booted_from", json_string(how.from_base ? "base" : "cold"));
	return r;
}

/* spawn_vm's second half: the network, the VMM (disks resized where resize[i]), the limits. */
static int spawn_vm_on(struct hm_instances *in, const char *id, json_t *spec,
                       struct hm_vm_spec *vsp, const char *restore_from, bool prepare,
                       const bool *resize, struct hm_vm **ret_vm, struct hm_err **err)
{
	struct hm_vm_spec vs = *vsp;
	char tap[HM_NET_TAP_MAX];
	json_t *net = inst_spec_net(spec);
	double t_net = inst_mono_ms();
	if (net) {
		if (!hm_net_enabled(in->net))
			return hm_err_set(
			    err, HM_ERR_CONFLICT, "network_unavailable",
			    "this instance has a network but networking is disabled on "
			    "this host (NETWORK_ENABLED=false)");
		inst_tap_of(id, tap);
		if (hm_net_tap_create(in->net, tap, err) < 0)
			return -1;
		vs.tap = tap;
		vs.mac = json_string_value(json_object_get(net, "mac"));
	}
	double t0 = inst_mono_ms();
	int r = prepare        ? in->vmm->restore_prepare(&vs, ret_vm, err)
	        : restore_from ? in->vmm->restore(&vs, restore_from, ret_vm, err)
	                       : in->vmm->spawn(&vs, ret_vm, err);
	if (r == 0 && resize &&
	    (*ret_vm)->ops->disks_resized(*ret_vm, vs.disks, vs.ndisks, resize, err) < 0) {
		(*ret_vm)->ops->kill(*ret_vm, 5000, NULL);
		(*ret_vm)->ops->free(*ret_vm);
		*ret_vm = NULL;
		r = -1;
	}
	if (r < 0) {
		if (net)
			hm_net_tap_delete(in->net, tap);
		return hm_err_wrap(err, prepare        ? "start a VMM for the restore"
		                        : restore_from ? "restore the VM"
		                                       : "start the VM");
	}
	double t1 = inst_mono_ms();
	/*
	 * The rate limits go on while the guest kernel boots (about a second before
	 * it can send anything): tc and nft cost tens of milliseconds that would
	 * otherwise come before the VMM even starts.
	 */
	if (net && inst_apply_limits(in, id, net, tap, err) < 0) {
		(*ret_vm)->ops->kill(*ret_vm, 5000, NULL);
		(*ret_vm)->ops->free(*ret_vm);
		*ret_vm = NULL;
		hm_net_tap_delete(in->net, tap);
		hm_net_guard(in->net, tap, NULL, NULL);
		hm_net_limit_upload(in->net, json_string_value(json_object_get(net, "ip")), 0,
		                    NULL);
		hm_net_egress_enforce(in->net, json_string_value(json_object_get(net, "ip")),
		                      HM_NET_EGRESS_OFF, NULL);
		return hm_err_wrap(err, "start the VM");
	}
	/* A boot from a base is a start (of a restored VM): "vm started" from=base. */
	inst_oplog(in, id, "msg=\"vm %s\"%s pid=%d tap_ms=%.1f vmm_ms=%.1f limits_ms=%.1f",
	           prepare                   ? "waiting for its state"
	           : restore_from && !resize ? "restored"
	                                     : "started",
	           resize ? " from=base" : "", (int)(*ret_vm)->pid, t0 - t_net, t1 - t0,
	           inst_mono_ms() - t1);
	return 0;
}

/* Everything of a create after the row exists, and before a boot: the folders
 * and disks. On failure the caller undoes it. */
static int prepare(struct hm_instances *in, struct hm_instance_row *row, json_t *spec,
                   json_t *secrets, const struct hm_image_info *img, struct hm_err **err)
{
	const char *id = row->id;
	double t0 = inst_mono_ms();
	_cleanup_free_ char *logs = inst_path(in, id, "logs");
	_cleanup_free_ char *run = inst_path(in, id, "run");
	if (hm_mkdir_p(logs, 0700, err) < 0 || hm_mkdir_p(run, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *agent_sock = xasprintf("%s/agent.sock", run);
	if (strlen(agent_sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return hm_err_set(err, HM_ERR_INTERNAL, NULL,
		                  "the data dir path is too long for unix sockets (`%s`)",
		                  agent_sock);
	inst_oplog(in, id, "msg=created name=%s image=%s digest=%s", row->name, row->image,
	           row->image_digest);
	if (secrets && inst_secrets_write(in, id, secrets, err) < 0)
		return -1;
	_cleanup_free_ char *overlay = inst_path(in, id, "overlay.ext4");
	if (inst_make_overlay(overlay, json_integer_value(json_object_get(spec, "overlay_bytes")),
	                      err) < 0)
		return -1;
	double t_overlay = inst_mono_ms();
	if (inst_write_config(in, row, spec, img->disk_format, err) < 0)
		return -1;
	inst_oplog(in, id, "msg=\"disks ready\" overlay_ms=%.1f config_ms=%.1f", t_overlay - t0,
	           inst_mono_ms() - t_overlay);
	return 0;
}

/*
 * Admission: what is asked must fit in what the host has (times the
 * configured oversubscription) minus what live instances hold. Concurrent
 * creates may both pass; that is the accepted slack of a check without a
 * reservation.
 */
static int admit(struct hm_instances *in, const struct create_req *c, struct hm_err **err)
{
	struct hm_host_capacity cap = { 0 };
	if (hm_host_capacity(in->cfg->data_dir, 0, &cap, NULL) < 0)
		return 0;
	int64_t vcpus, mem, disk;
	hm_instances_allocated(in, &vcpus, &mem, &disk);
	double cpu_limit = (double)cap.cpus * in->cfg->oversub_cpu;
	double mem_limit = (double)cap.memory_bytes * in->cfg->oversub_memory;
	if ((double)(vcpus + c->vcpus) > cpu_limit)
		return hm_err_set(err, HM_ERR_CONFLICT, "insufficient_resources",
		                  "not enough CPU: %lld vCPUs asked, %lld of %.0f in use",
		                  (long long)c->vcpus, (long long)vcpus, cpu_limit);
	if ((double)(mem + c->mem) > mem_limit) {
		_cleanup_free_ char *a = hm_human_size(c->mem);
		_cleanup_free_ char *u = hm_human_size(mem);
		_cleanup_free_ char *l = hm_human_size((int64_t)mem_limit);
		return hm_err_set(err, HM_ERR_CONFLICT, "insufficient_resources",
		                  "not enough memory: %s asked, %s of %s in use", a, u, l);
	}
	return 0;
}

static int create(struct hm_instances *in, struct create_req c, struct hm_instance_view **ret,
                  struct hm_err **err);

int hm_instances_create(struct hm_instances *in, const struct hm_instance_create *req,
                        struct hm_instance_view **ret, struct hm_err **err)
{
	struct create_req c = { 0 };
	int r = check_create(req, in->cfg->data_dir, in->accel, &c, err);
	if (r == 0)
		r = create(in, c, ret, err);
	json_decref(c.volumes);
	json_decref(c.credentials);
	return r;
}

int hm_instance_create_check(const struct hm_instance_create *req, const char *data_dir,
                             const struct hm_accel_choice *accel, struct hm_err **err)
{
	struct create_req c = { 0 };
	int r = check_create(req, data_dir, accel, &c, err);
	json_decref(c.volumes);
	json_decref(c.credentials);
	return r;
}

/* How long a create waits for the pull of an image that was not here. */
#define CREATE_PULL_TIMEOUT_MS (10 * 60 * 1000)

static int create(struct hm_instances *in, struct create_req c, struct hm_instance_view **ret,
                  struct hm_err **err)
{
	if (in->boot_error)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		                  "instances cannot boot on this host: %s", in->boot_error);
	if (c.boot && admit(in, &c, err) < 0)
		return -1;
	/* A network asked for where the host has none: refused before any pull. */
	if ((c.network == HM_NET_ON || c.egress != HM_EGRESS_OFF) && !hm_net_enabled(in->net))
		return hm_err_set(err, HM_ERR_INVALID, "network_unavailable",
		                  "networking is disabled on this host (NETWORK_ENABLED=false): "
		                  "create with network.enabled false");
	struct hm_image_info img = { 0 };
	if (hm_images_ensure(in->images, c.image, CREATE_PULL_TIMEOUT_MS, &img, err) < 0)
		return -1;

	json_t *spec = json_object();
	json_object_set_new(spec, "vcpus", json_integer(c.vcpus));
	json_object_set_new(spec, "mem_bytes", json_integer(c.mem));
	json_object_set_new(spec, "overlay_bytes", json_integer(c.overlay));
	/* Credentials: their sources stay on the host (the secrets file), and
	 * the guest's variables hold placeholders. */
	_cleanup_json_ json_t *secrets = NULL;
	if (c.credentials) {
		json_object_set_new(spec, "env",
		                    inst_credentials_split_env(c.credentials, c.env, &secrets));
		json_object_set(spec, "credentials", c.credentials);
	} else {
		json_object_set_new(spec, "env", c.env ? json_deep_copy(c.env) : json_object());
	}
	json_object_set_new(spec, "tags", c.tags ? json_deep_copy(c.tags) : json_object());
	if (c.cmd)
		json_object_set(spec, "cmd", c.cmd);
	if (c.entrypoint)
		json_object_set(spec, "entrypoint", c.entrypoint);
	/* argv, full_env, workdir, user: the asked-for parts over the image's config */
	if (inst_spec_command(spec, img.config, err) < 0) {
		json_decref(spec);
		hm_image_info_done(&img);
		return -1;
	}
	if (c.disk_bps)
		json_object_set_new(spec, "disk_io_bps", json_integer(c.disk_bps));
	if (c.restart.policy != HM_RESTART_NEVER)
		json_object_set_new(spec, "restart", inst_restart_json(&c.restart));
	if (c.auto_standby_set)
		json_object_set_new(spec, "auto_standby", inst_auto_standby_json(&c.auto_standby));
	if (c.delete_on_stop)
		json_object_set_new(spec, "delete_on_stop", json_true());
	if (c.delete_lock)
		json_object_set_new(spec, "delete_lock", json_true());
	if (c.hostname)
		json_object_set_new(spec, "hostname", json_string(c.hostname));
	json_object_set(spec, "volumes", c.volumes); /* ids filled in by claim_volumes */
	/* Network on by default where the host has one (asked for where it has none: refused
	 * above). */
	struct hm_net_lease lease = { { 0 } };
	if (c.network != HM_NET_OFF && hm_net_enabled(in->net)) {
		if (hm_net_lease(in->net, NULL, &lease, err) < 0) {
			json_decref(spec);
			hm_image_info_done(&img);
			return -1;
		}
		/* Unset limits default to the instance's share of the host's network, by CPU. */
		struct hm_host_capacity cap = { 0 };
		int64_t share = 0;
		if (hm_host_capacity(in->cfg->data_dir, in->cfg->network_limit_bps, &cap, NULL) ==
		        0 &&
		    cap.cpus > 0 && cap.network_bps > 0)
			share = cap.network_bps * c.vcpus / cap.cpus;
		json_t *net =
		    json_pack("{s:b,s:s,s:s,s:s,s:s,s:I,s:I}", "enabled", 1, "ip", lease.ip, "cidr",
		              lease.cidr, "gateway", lease.gateway, "mac", lease.mac,
		              "download_bps", (json_int_t)(c.down_bps ? c.down_bps : share),
		              "upload_bps", (json_int_t)(c.up_bps ? c.up_bps : share));
		if (c.egress != HM_EGRESS_OFF) {
			json_object_set_new(
			    net, "egress",
			    json_string(c.egress == HM_EGRESS_ALL ? "all" : "http_https_only"));
			json_object_set_new(
			    net, "proxy",
			    json_sprintf("http://%s:%d", lease.gateway, in->cfg->egress_port));
		}
		json_object_set_new(spec, "network", net);
		inst_spec_proxy_env(spec);
	} else {
		json_object_set_new(spec, "network", json_pack("{s:b}", "enabled", 0));
	}

	/* Volumes are claimed and the row saved under one lock: two creates cannot both
	 * take a volume that allows one writer. */
	pthread_mutex_lock(&in->vol_lock);
	if (inst_claim_volumes(in, c.volumes, err) < 0) {
		pthread_mutex_unlock(&in->vol_lock);
		if (lease.ip[0])
			hm_net_release(in->net, lease.ip);
		json_decref(spec);
		hm_image_info_done(&img);
		return -1;
	}
	char id[25], uuid[37];
	hm_id_new(id);
	hm_uuid_new(uuid);
	_cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
	_cleanup_free_ char *created = hm_now_rfc3339();
	struct hm_instance_row row = {
		.id = id,
		.uuid = uuid,
		.name = (char *)c.name,
		.image = img.name,
		.image_digest = img.digest,
		.spec = spec_text,
		.phase = (char *)"Created",
		.exit_code = -1,
		.created_at = created,
		.hypervisor = (char *)(c.hypervisor ? c.hypervisor : HM_RUNTIME_DEFAULT),
	};
	int r = hm_store_instance_insert(in->st, &row, err);
	if (r == 0 && inst_sync_attachments(in, id, spec, err) < 0) {
		hm_store_instance_delete(in->st, id, NULL); /* its attachments go with it */
		r = -1;
	}
	pthread_mutex_unlock(&in->vol_lock);
	struct hm_vm *vm = NULL;
	json_t *attach = NULL;
	bool listed = false;    /* its VMM's record is listed (inst_live_begin) */
	bool from_base = false; /* booted from a base: the guest waits for its attach */
	if (r == 0)
		r = prepare(in, &row, spec, secrets, &img, err);
	if (r == 0 && c.boot)
		r = inst_boot_vm(in, &row, spec, img.disk_path, &vm, &attach, err);
	_cleanup_free_ char *started = hm_now_rfc3339();
	_cleanup_free_ char *booted_spec = NULL;
	if (r == 0 && c.boot) {
		booted_spec = json_dumps(spec, JSON_COMPACT); /* with booted_from */
		row.spec = booted_spec;
	}
	if (r == 0 && !c.boot) {
		/* Made, not booted: Stopped with no exit, until a start. */
		row.phase = (char *)"Stopped";
		r = hm_store_instance_update(in->st, &row, err);
	} else if (r == 0) {
		row.phase = (char *)"Booting";
		row.vmm_pid = vm->pid;
		row.started_at = started;
		from_base = attach != NULL;
		r = inst_live_begin(in, &row, vm, false, attach, err);
		if (r < 0) {
			vm->ops->kill(vm, 5000, NULL);
			vm->ops->free(vm);
			inst_drop_tap(in, id);
		} else {
			attach = NULL; /* the record's */
		}
		vm = NULL; /* the record's, or ended */
		listed = r == 0;
	}
	if (r < 0) {
		/* Leave nothing behind: no folder, no row (a name conflict made neither). */
		if (!hm_err_is_kind(err, HM_ERR_CONFLICT)) {
			_cleanup_free_ char *dir = inst_path(in, id, NULL);
			hm_rm_rf(dir, NULL);
			hm_store_instance_delete(in->st, id, NULL);
		}
		if (lease.ip[0])
			hm_net_release(in->net, lease.ip);
		log_warn("instances", "create failed", "name=%s error=\"%s\"", c.name,
		         hm_err_message(err, "?"));
	} else {
		if (listed) {
			if (hm_store_instance_count_start(in->st, id, false, NULL) == 0)
				row.start_count = 1;
			/* From a base, the guest waits for its attach: whatever a client
			 * sends once this returns must reach it after that. */
			if (from_base)
				inst_wait_greeted(in, id);
		}
		log_info("instances", "created", "id=%s name=%s image=%s booted=%s", id, c.name,
		         img.name, c.boot ? "yes" : "no");
		*ret = inst_view(in, &row);
	}
	json_decref(attach);
	json_decref(spec);
	hm_image_info_done(&img);
	return r;
}
