/*
 * instance/instances: the instance service's core (see instances.h for the
 * model): the small helpers every part uses, the per-instance operation
 * locks, the network glue (TAPs, limits), and open/close.
 *
 * Each instance owns a folder, $DATA_DIR/instances/<id>/:
 *   config.img      the guest config disk (docs/guest.md), with the exit record
 *   overlay.ext4    the writable layer over the image (sparse)
 *   logs/app.log    the serial console: the program's output
 *   logs/vmm.log    the VMM process's own output
 *   logs/hypeman.log  what the daemon did to this instance
 *   run/            the VMM's sockets and pid file
 *
 * The parts: live.c (monitors, the published VM state, exec sessions),
 * reconcile.c (what start-up finds), create.c, lifecycle.c (delete, stop,
 * start, update), queries.c (the derived state, the typed view, get, list,
 * wait, stats, logs, addresses), attachments.c (volumes on a stopped
 * instance), standby.c, snapshots.c. Threads and locks: docs/design.md.
 */
#include "instance/instances.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "boot/initrd.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/mono.h"
#include "core/fileio.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "store/instances.h"

/* ---- small helpers ---- */

double inst_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

char *inst_path(struct hm_instances *in, const char *id, const char *rel)
{
	return rel ? xasprintf("%s/%s/%s", in->dir, id, rel) : xasprintf("%s/%s", in->dir, id);
}

/* Append one logfmt line to the instance's operations log (logs/hypeman.log). */
void inst_oplog(struct hm_instances *in, const char *id, const char *fmt, ...)
{
	_cleanup_free_ char *path = inst_path(in, id, "logs/hypeman.log");
	_cleanup_free_ char *ts = hm_now_rfc3339();
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	_cleanup_free_ char *line = xasprintf("ts=%s %s\n", ts, msg ? msg : "");
	hm_write_all(fd, line, strlen(line));
	close(fd);
}

struct live *inst_live_find(struct hm_instances *in, const char *id)
{
	for (struct live *l = in->lives; l; l = l->next)
		if (strcmp(l->id, id) == 0)
			return l;
	return NULL;
}

json_t *inst_spec_of(const struct hm_instance_row *r)
{
	json_t *spec = r->spec ? json_loads(r->spec, 0, NULL) : NULL;
	if (json_is_object(spec))
		return spec;
	json_decref(spec);
	return json_object();
}

int inst_check_runtime(struct hm_instances *in, const char *runtime, const char *what,
                       struct hm_err **err)
{
	const char *rt = runtime ? runtime : "qemu";
	if (strcmp(hm_runtime_backend(rt), in->vmm->name) == 0)
		return 0;
	return hm_err_set(err, HM_ERR_CONFLICT, "hypervisor_unavailable",
	                  "%s was made on hypervisor `%s`, which this daemon does not run (it "
	                  "runs %s)",
	                  what, rt, in->vmm->name);
}

/* ---- operation locks ---- */

struct op_lock {
	struct op_lock *next;
	char *id;
	pthread_mutex_t m;
	int users; /* holders and waiters */
};

void inst_op_lock(struct hm_instances *in, const char *id)
{
	pthread_mutex_lock(&in->lock);
	struct op_lock *o = in->op_locks;
	while (o && strcmp(o->id, id) != 0)
		o = o->next;
	if (!o) {
		o = xcalloc(1, sizeof(*o));
		o->id = xstrdup(id);
		pthread_mutex_init(&o->m, NULL);
		o->next = in->op_locks;
		in->op_locks = o;
	}
	o->users++;
	pthread_mutex_unlock(&in->lock);
	pthread_mutex_lock(&o->m);
}

void inst_op_unlock(struct hm_instances *in, const char *id)
{
	pthread_mutex_lock(&in->lock);
	for (struct op_lock **pp = &in->op_locks; *pp; pp = &(*pp)->next) {
		struct op_lock *o = *pp;
		if (strcmp(o->id, id) != 0)
			continue;
		pthread_mutex_unlock(&o->m);
		if (--o->users == 0) {
			*pp = o->next;
			pthread_mutex_destroy(&o->m);
			free(o->id);
			free(o);
		}
		break;
	}
	pthread_mutex_unlock(&in->lock);
}

int inst_find_locked(struct hm_instances *in, const char *key, struct hm_instance_row *row,
                     struct hm_err **err)
{
	if (hm_store_instance_find(in->st, key, row, err) < 0)
		return -1;
	_cleanup_free_ char *id = xstrdup(row->id);
	inst_op_lock(in, id);
	hm_instance_row_done(row);
	*row = (struct hm_instance_row){ .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, row, err) < 0) {
		inst_op_unlock(in, id);
		return -1;
	}
	return 0;
}

/* ---- network ---- */

const char *inst_hostname(const struct hm_instance_row *row, json_t *spec)
{
	const char *h = json_string_value(json_object_get(spec, "hostname"));
	return h && *h ? h : row->name;
}

/* The instance's network from its spec: NULL when it has none. */
json_t *inst_spec_net(json_t *spec)
{
	json_t *n = json_object_get(spec, "network");
	return json_is_true(json_object_get(n, "enabled")) ? n : NULL;
}

void inst_tap_of(const char *id, char tap[HM_NET_TAP_MAX])
{
	hm_net_tap_name(id, tap);
}

/* The VM is gone: its TAP and upload limit go with it (the address stays the instance's). */
void inst_drop_tap(struct hm_instances *in, const char *id)
{
	if (!hm_net_enabled(in->net))
		return;
	char tap[HM_NET_TAP_MAX];
	inst_tap_of(id, tap);
	hm_net_tap_delete(in->net, tap);
	hm_net_guard(in->net, tap, NULL, NULL);
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, &row, NULL) == 0) {
		json_t *spec = inst_spec_of(&row);
		const char *ip = json_string_value(json_object_get(inst_spec_net(spec), "ip"));
		if (ip) {
			hm_net_limit_upload(in->net, ip, 0, NULL);
			hm_net_egress_enforce(in->net, ip, HM_NET_EGRESS_OFF, NULL);
		}
		json_decref(spec);
		hm_instance_row_done(&row);
	}
}

/* The guest's rate limits, on its TAP (download) and in the rules (upload);
 * its address guard and egress policy in the rules. */
int inst_apply_limits(struct hm_instances *in, const char *id, json_t *net, const char *tap,
                      struct hm_err **err)
{
	char own_tap[HM_NET_TAP_MAX];
	inst_tap_of(id, own_tap);
	if (hm_net_guard(in->net, own_tap, json_string_value(json_object_get(net, "ip")), err) < 0)
		return -1;
	json_int_t down = json_integer_value(json_object_get(net, "download_bps"));
	json_int_t up = json_integer_value(json_object_get(net, "upload_bps"));
	if (tap && down > 0 && hm_net_limit_download(in->net, tap, (uint64_t)down, err) < 0)
		return -1;
	if (up > 0 && hm_net_limit_upload(in->net, json_string_value(json_object_get(net, "ip")),
	                                  (uint64_t)up, err) < 0)
		return -1;
	const char *eg = json_string_value(json_object_get(net, "egress"));
	if (eg && hm_net_egress_enforce(in->net, json_string_value(json_object_get(net, "ip")),
	                                strcmp(eg, "all") == 0 ? HM_NET_EGRESS_ALL
	                                                       : HM_NET_EGRESS_HTTP_HTTPS_ONLY,
	                                err) < 0)
		return -1;
	return 0;
}

void hm_instances_set_egress_ca(struct hm_instances *in, const char *pem)
{
	free(in->egress_ca);
	in->egress_ca = pem ? xstrdup(pem) : NULL;
}

/* ---- open / close ---- */

static char *self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return xstrdup(".");
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	return xstrdup(buf);
}

int hm_instances_open(struct hm_store *st, struct hm_images *images, struct hm_net *net,
                      const struct hm_config *cfg, const struct hm_accel_choice *accel,
                      const struct hm_vmm_ops *vmm, struct hm_instances **ret, struct hm_err **err)
{
	struct hm_instances *in = xcalloc(1, sizeof(*in));
	in->accel = accel;
	in->net = net;
	in->st = st;
	in->images = images;
	in->cfg = cfg;
	in->vmm = vmm ? vmm : &hm_vmm_qemu;
	in->dir = xasprintf("%s/instances", cfg->data_dir);
	in->tsc_khz = hm_vmm_host_tsc_khz();
	in->mem_dir = inst_mem_dir_pick(cfg->data_dir);
	pthread_mutex_init(&in->lock, NULL);
	pthread_mutex_init(&in->vol_lock, NULL);
	pthread_mutex_init(&in->changes_lock, NULL);
	hm_cond_init_mono(&in->changes_cond);
	if (hm_mkdir_p(in->dir, 0700, err) < 0) {
		hm_instances_close(in);
		return -1;
	}

	_cleanup_err_ struct hm_err *kerr = NULL;
	_cleanup_free_ char *bindir = self_dir();
	_cleanup_free_ char *init_bin = xasprintf("%s/hypeman-init", bindir);
	_cleanup_free_ char *cache = xasprintf("%s/system/initrd", cfg->data_dir);
	if (hm_kernel_find(cfg->kernel_dir, cfg->data_dir, &in->kernel, &kerr) < 0 ||
	    hm_mkdir_p(cache, 0755, &kerr) < 0 ||
	    hm_initrd_ensure(&in->kernel, init_bin, cache, false, &in->initrd, &kerr) < 0) {
		in->boot_error = xstrdup(kerr ? kerr->msg : "no guest kernel");
		log_warn("instances", "instances cannot boot", "error=\"%s\"", in->boot_error);
	} else {
		log_info("instances", "guest kernel", "version=%s initrd=%s tsc_khz=%ld",
		         in->kernel.version, in->initrd, in->tsc_khz);
	}
	inst_sup_open(in);
	inst_idle_open(in);
	inst_adopt_all(in);
	if (!in->boot_error && inst_warm_open(in, cfg->warm_restores) < 0)
		log_warn("instances", "no warm restores", "error=\"no thread\"");
	if (!in->boot_error && inst_spare_open(in, cfg->spare_forks) < 0)
		log_warn("instances", "no spare forks", "error=\"no thread\"");
	if (!in->boot_error && cfg->base_boot) {
		/* The shape of a create that asks for nothing special, made at once. */
		struct inst_shape dflt = { .vcpus = 2,
			                   .mem_bytes = 1ULL << 30,
			                   .disks = "wrw",
			                   .nic = hm_net_enabled(net),
			                   .accel = accel->accel };
		_cleanup_err_ struct hm_err *berr = NULL;
		if (inst_bases_open(in, &dflt, 1, &berr) < 0)
			log_warn("instances", "no boots from bases", "error=\"%s\"",
			         hm_err_message(&berr, "?"));
	}
	*ret = in;
	return 0;
}

const char *hm_instances_boot_error(const struct hm_instances *in)
{
	return in->boot_error;
}

void hm_instances_close(struct hm_instances *in)
{
	if (!in)
		return;
	inst_workers_wait(in); /* stops under way end first (the API no longer starts any) */
	inst_warm_close(in);   /* VMMs waiting for restores end */
	inst_spare_close(in);  /* and forks made ready */
	inst_bases_close(in);  /* a base being built is stopped */
	inst_idle_close(in);   /* auto standbys: one may be under way */
	inst_sup_close(in);    /* then restarts: it may be starting a VM */
	for (;;) {
		pthread_mutex_lock(&in->lock);
		_cleanup_free_ char *id = in->lives ? xstrdup(in->lives->id) : NULL;
		pthread_mutex_unlock(&in->lock);
		if (!id)
			break;
		inst_live_free(inst_live_take(in, id));
	}
	inst_sup_free(in);     /* the monitors, which report to it, have ended */
	while (in->op_locks) { /* none held: the API has stopped */
		struct op_lock *o = in->op_locks;
		in->op_locks = o->next;
		pthread_mutex_destroy(&o->m);
		free(o->id);
		free(o);
	}
	pthread_mutex_destroy(&in->lock);
	pthread_mutex_destroy(&in->vol_lock);
	pthread_mutex_destroy(&in->changes_lock);
	pthread_cond_destroy(&in->changes_cond);
	hm_kernel_done(&in->kernel);
	free(in->boot_error);
	free(in->egress_ca);
	inst_mem_dir_release(in);
	free(in->mem_dir);
	free(in->initrd);
	free(in->dir);
	free(in);
}
