/*
 * instance/standby: standby, restore and fork, the operations that move a
 * VM's whole state between a running VMM and files.
 *
 * Every VM runs with its RAM in a file mapped shared (vmm.h: spec.mem_path;
 * on tmpfs after a cold boot, see memory.c). That file is always the memory
 * image, so standby only pauses the guest, writes its device state (tens of
 * KB) to instances/<id>/vm.state, moves a tmpfs RAM file to
 * instances/<id>/memory.ram and stops the VMM; restore starts a VMM on those
 * files. The instance's state files, its "payload", are
 *
 *   overlay.ext4, vol-<id>.ext4   its writable disks (sparse)
 *   config.img                    the guest config disk
 *   memory.ram, vm.state          RAM and device state (Standby only)
 *
 * A fork is a new instance whose payload is a sparse copy of its source's
 * (a reflink where the filesystem allows), taken while the source is
 * paused, stopped or in standby. A fork of a running source pauses it only
 * for the save and the copy; its VMM keeps running. A fork that runs from
 * memory has its own VMM started while the copy is made (early_vmm,
 * below). A fork restored from memory wakes with its parent's identity, so
 * the host sends the guest init an `identity` request (docs/guest.md) with
 * its new MAC, address, hostname and machine-id before the fork is handed
 * out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/names.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "instance/agent.h"
#include "instance/command.h"
#include "instance/instances.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "net/net.h"
#include "store/instances.h"
#include "vmm/vmm.h"

#define IDENTITY_MS 5000 /* the guest's answer to an identity request */

/* ---- standby ---- */

/* Standby's work once the instance is known to be Running (l: its live record). */
/*
 * Save l's device state to vmstate in dir, recording the accelerator it ran
 * under (the caller holds l->vm_lock). The guest is left paused, and
 * published so: readers see Paused for as long as the copy takes.
 */
static int save_state(struct live *l, const char *dir, const char *vmstate, struct hm_err **err)
{
	if (l->vm->ops->snapshot(l->vm, vmstate, err) < 0) {
		inst_live_refresh(l);
		return -1;
	}
	inst_live_publish(l, HM_VM_PAUSED, NULL);
	return hm_payload_mark_accel(dir, hm_accel_name(l->vm->accel), err);
}

/* Let l's guest run on after a save (under l->vm_lock), and publish what it is now. */
static int run_on(struct live *l, struct hm_err **err)
{
	if (l->vm->ops->resume(l->vm, err) < 0) {
		inst_live_refresh(l);
		return -1;
	}
	inst_live_publish(l, HM_VM_RUNNING, NULL);
	return 0;
}

static int standby_live(struct hm_instances *in, struct hm_instance_row *row, struct live *l,
                        const struct hm_payload_opts *opts, struct hm_err **err)
{
	_cleanup_free_ char *dir = inst_path(in, row->id, NULL);
	_cleanup_free_ char *mem = inst_mem_current(in, row->id);
	_cleanup_free_ char *disk_mem = inst_path(in, row->id, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *vmstate = inst_path(in, row->id, HM_PAYLOAD_STATE);
	bool on_tmpfs = strcmp(mem, disk_mem) != 0;
	if (access(mem, F_OK) < 0)
		return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		                  "instance `%s` was booted without its memory in a file (by an "
		                  "older hypeman); stop and start it once to allow standby",
		                  row->name);
	double t0 = inst_mono_ms();
	pthread_mutex_lock(&l->vm_lock);
	int r = save_state(l, dir, vmstate, err);
	double t_save = inst_mono_ms();
	/* RAM on tmpfs goes to disk while the guest is paused (memory.c). */
	unsigned long long moved = 0;
	if (r == 0 && on_tmpfs) {
		/* Renamed into place whole: a memory.ram next to a vm.state is complete
		 * (a daemon that dies here finds a Standby instance at its restart). */
		_cleanup_free_ char *tmp = xasprintf("%s.tmp", disk_mem);
		unlink(tmp);
		r = hm_copy_sparse(mem, tmp, 0600, &moved, err);
		if (r == 0 && rename(tmp, disk_mem) < 0)
			r = hm_err_errno(err, errno, "save the guest memory as `%s`", disk_mem);
		if (r < 0)
			unlink(tmp);
	}
	if (r < 0) {
		/* Nothing changed: the guest runs on. */
		unlink(vmstate);
		run_on(l, NULL);
		pthread_mutex_unlock(&l->vm_lock);
		return hm_err_wrap(err, "standby of `%s`", row->name);
	}
	pthread_mutex_unlock(&l->vm_lock);
	double t_moved = inst_mono_ms();

	/* Its monitor stops first, so that the VMM's end is not taken for a stop;
	 * the record stays listed (Paused) until the row says Standby, so that no
	 * reader meets an instance with neither a VMM nor a saved state. */
	inst_live_silence(l);
	pthread_mutex_lock(&l->vm_lock);
	int killed = l->vm->ops->kill(l->vm, 10000, err);
	if (killed < 0)
		run_on(l, NULL);
	pthread_mutex_unlock(&l->vm_lock);
	if (killed < 0) {
		/* Still there: it runs on under a new monitor; report the failure. */
		struct live *d = inst_live_take(in, row->id);
		if (d) {
			pthread_mutex_lock(&in->lock);
			inst_live_start(in, row->id, d->vm, true, NULL);
			d->vm = NULL;
			pthread_mutex_unlock(&in->lock);
			inst_live_free(d);
		}
		unlink(vmstate);
		if (on_tmpfs)
			unlink(disk_mem); /* it runs on tmpfs still: the copy is stale */
		return -1;
	}
	if (on_tmpfs)
		unlink(mem);
	inst_drop_tap(in, row->id);
	free(row->phase);
	row->phase = xstrdup("Standby");
	row->vmm_pid = 0;
	int saved = hm_store_instance_update(in->st, row, err);
	inst_live_free(inst_live_take(in, row->id));
	if (saved < 0)
		return -1;
	double t_stop = inst_mono_ms();
	if (opts->compress)
		hm_payload_compress(dir, opts, NULL, NULL); /* best effort: restore reads either */
	else
		inst_warm_later(in, row->id); /* a VMM waits for the restore (warm.c) */
	hm_payload_sync_later(dir);
	inst_oplog(in, row->id,
	           "msg=standby save_ms=%.1f move_ms=%.1f moved_bytes=%llu total_ms=%.1f "
	           "compressed=%s",
	           t_save - t0, t_moved - t_save, moved, t_stop - t0,
	           opts->compress ? "yes" : "no");
	log_info("instances", "standby", "id=%s name=%s save_ms=%.1f total_ms=%.1f", row->id,
	         row->name, t_save - t0, t_stop - t0);
	return 0;
}

int hm_instances_standby(struct hm_instances *in, const char *key,
                         const struct hm_payload_opts *asked, struct hm_instance_view **ret,
                         struct hm_err **err)
{
	struct hm_payload_opts opts = asked ? *asked : (struct hm_payload_opts){ .level = 1 };
	if (hm_payload_opts_check(&opts, err) < 0)
		return -1;
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	struct live *l = state == HM_STATE_RUNNING ? inst_live_get(in, row.id) : NULL;
	int r;
	if (state == HM_STATE_STANDBY && !opts.compress)
		r = 0; /* already what was asked: the instance, as upstream */
	else if (state == HM_STATE_STANDBY)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is already in standby; its saved memory stays as it "
		               "was saved (compression applies to a new standby)",
		               row.name);
	else if (!l)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Running instance can go to standby",
		               row.name, hm_state_name(state));
	else
		r = standby_live(in, &row, l, &opts, err);
	if (r == 0)
		*ret = inst_view(in, &row);
	inst_live_free(l);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* ---- waking from a saved state ---- */

/* The identity request for a guest that wakes: the clock always, the rest for a fork. */
static json_t *identity_msg(struct hm_instances *in, const struct hm_instance_row *row,
                            json_t *spec, bool new_identity)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	_cleanup_free_ char *hex = inst_seed_hex();
	json_t *m = json_pack("{s:s,s:I,s:s}", "type", "identity", "unix_ms",
	                      (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "seed", hex);
	if (!new_identity)
		return m;
	unsigned char mid[16];
	if (getrandom(mid, sizeof(mid), 0) != (ssize_t)sizeof(mid))
		memset(mid, 0x5a, sizeof(mid));
	_cleanup_free_ char *mids = hm_hex_encode(mid, sizeof(mid));
	json_object_set_new(m, "hostname", json_string(inst_hostname(row, spec)));
	json_object_set_new(m, "machine_id", json_string(mids));
	json_t *net = inst_spec_net(spec);
	if (net) {
		json_object_set(m, "ip", json_object_get(net, "cidr"));
		json_object_set(m, "gateway", json_object_get(net, "gateway"));
		json_object_set(m, "mac", json_object_get(net, "mac"));
		const char *dns = hm_net_dns(in->net);
		if (dns)
			json_object_set_new(m, "dns", json_string(dns));
	}
	return m;
}

/*
 * Send the identity request once the monitor has the agent channel; wait for
 * the answer. *sent_ms: when the request went out (the channel was up).
 */
static int send_identity(struct live *l, json_t *msg, double *sent_ms, struct hm_err **err)
{
	double deadline = inst_mono_ms() + IDENTITY_MS;
	for (;;) {
		*sent_ms = inst_mono_ms();
		struct hm_err *e = NULL;
		json_t *ans = NULL;
		int r = hm_agent_call(l->agent, msg, IDENTITY_MS, &ans, &e);
		if (r == 0) {
			const char *error = json_string_value(json_object_get(ans, "error"));
			if (error)
				r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "the guest: %s", error);
			json_decref(ans);
			return r;
		}
		/* Not connected yet: the monitor connects within milliseconds of the resume. */
		if (e->kind != HM_ERR_UNAVAILABLE || inst_mono_ms() >= deadline ||
		    atomic_load(&l->exited)) {
			*err = e;
			return -1;
		}
		hm_err_free(e);
		struct timespec ts = { 0, 2 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

void inst_wait_greeted(struct hm_instances *in, const char *id)
{
	struct live *gl = inst_live_get(in, id);
	for (int i = 0; gl && i < 2000 && !atomic_load(&gl->greeted); i++) {
		struct timespec ts = { 0, 1000000L };
		nanosleep(&ts, NULL);
	}
	inst_live_free(gl);
}

/* Wake's VMM part: load, resume, record. On failure nothing runs. */
static int wake_vm(struct hm_instances *in, struct hm_instance_row *row, json_t *spec,
                   const char *root_disk, const char *vmstate, json_t *after_hello,
                   struct hm_vm *prepared, bool *warm, struct hm_err **err)
{
	struct live *old = inst_live_take(in, row->id);
	inst_live_free(old);
	/* A VMM already waiting for this state (the caller's, or warm.c's) only loads it. */
	struct hm_vm *vm = prepared ? prepared : inst_warm_take(in, row, root_disk);
	if (vm && vm->ops->restore_load(vm, vmstate, err) < 0) {
		log_warn("instances", "warm restore failed, restoring cold", "id=%s error=\"%s\"",
		         row->id, hm_err_message(err, "?"));
		inst_oplog(in, row->id, "msg=\"warm restore failed\" error=\"%s\"",
		           hm_err_message(err, "?"));
		hm_err_free(*err);
		*err = NULL;
		vm->ops->free(vm); /* it ended */
		vm = NULL;
		inst_drop_tap(in, row->id);
	}
	*warm = vm != NULL;
	if (!vm && inst_spawn_vm(in, row, spec, root_disk, vmstate, &vm, err) < 0) {
		json_decref(after_hello);
		return -1;
	}
	free(row->phase);
	row->phase = xstrdup("Running");
	row->vmm_pid = vm->pid;
	free(row->started_at);
	row->started_at = hm_now_rfc3339();
	if (vm->ops->resume(vm, err) < 0 ||
	    inst_live_begin(in, row, vm, true, after_hello, err) < 0) {
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
		inst_drop_tap(in, row->id);
		free(row->phase);
		row->phase = xstrdup("Standby");
		row->vmm_pid = 0;
		json_decref(after_hello);
		return -1;
	}
	if (hm_store_instance_count_start(in->st, row->id, false, NULL) == 0)
		row->start_count++;
	/* The state is used up: the running VM owns the memory file again. */
	unlink(vmstate);
	_cleanup_free_ char *mark = inst_path(in, row->id, HM_PAYLOAD_ACCEL);
	unlink(mark);
	return 0;
}

/* End a prepared VMM that will not be used, and its TAP. */
static void end_prepared(struct hm_instances *in, const char *id, struct hm_vm *vm)
{
	if (!vm)
		return;
	vm->ops->kill(vm, 5000, NULL);
	vm->ops->free(vm);
	inst_drop_tap(in, id);
}

int inst_wake(struct hm_instances *in, struct hm_instance_row *row, bool new_identity,
              struct hm_vm *prepared, struct hm_err **err)
{
	double t0 = inst_mono_ms();
	_cleanup_free_ char *dir = inst_path(in, row->id, NULL);
	_cleanup_free_ char *vmstate = inst_path(in, row->id, HM_PAYLOAD_STATE);
	struct hm_image_info img = { 0 };
	int r = 0;
	if (in->boot_error)
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		               "instances cannot run on this host: %s", in->boot_error);
	/* Saved state comes back only on the hypervisor that saved it. */
	else if (inst_check_runtime(in, row->hypervisor, "its saved state", err) < 0)
		r = -1;
	else if (hm_images_resolve(in->images, row->image, &img, err) < 0)
		r = hm_err_wrap(err, "the instance's image");
	if (r < 0) {
		end_prepared(in, row->id, prepared);
		return r;
	}
	if (row->image_digest && *row->image_digest && strcmp(img.digest, row->image_digest) != 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "image_changed",
		               "image %s is now %s, not the %s this saved state was made on; the "
		               "state cannot be restored onto another root disk",
		               row->image, img.digest, row->image_digest);
	if (r == 0)
		/* decompresses a compressed memory file */
		r = hm_payload_ready(dir, hm_accel_name(in->accel->accel), err);
	if (r < 0)
		end_prepared(in, row->id, TAKE_PTR(prepared));
	json_t *spec = inst_spec_of(row);
	/*
	 * A plain restore does not wait for the guest: the monitor sends the
	 * clock and seed as soon as it connects, ahead of anything a client
	 * sends. Nor does a fork without a network: its hostname, machine-id and
	 * seed reach the guest the same way, ahead of any exec, copy or stat, and
	 * the guest's own program runs meanwhile either way. A fork with a
	 * network waits for the guest's answer: it must not be handed out before
	 * it holds its own address (under TCG a new VMM's first guest work takes
	 * some 50 ms, its code translated afresh). A failure the guest reports
	 * without a waiter is in the operations log (monitor).
	 */
	json_t *msg = identity_msg(in, row, spec, new_identity);
	bool wait = new_identity && inst_spec_net(spec);
	bool warm = false, early = prepared != NULL;
	if (r == 0)
		r = wake_vm(in, row, spec, img.disk_path, vmstate, wait ? NULL : json_incref(msg),
		            prepared, &warm, err);
	const char *how = !warm ? "no" : early ? "early" : "yes"; /* the VMM it loaded into */
	hm_image_info_done(&img);
	json_decref(spec);
	if (r < 0 || !wait) {
		json_decref(msg);
		if (r < 0)
			return r;
		/* Answer once the monitor has the channel and sent the clock: whatever
		 * a client sends next reaches the guest after it. */
		inst_wait_greeted(in, row->id);
		inst_oplog(in, row->id, "msg=restored running_ms=%.1f warm=%s%s",
		           inst_mono_ms() - t0, how, new_identity ? " identity=sent" : "");
		return 0;
	}
	double t_running = inst_mono_ms();
	struct live *l = inst_live_get(in, row->id);
	struct hm_err *ie = NULL;
	double t_sent = t_running;
	int ir = l ? send_identity(l, msg, &t_sent, &ie)
	           : hm_err_set(&ie, HM_ERR_INTERNAL, NULL, "the VM is not monitored");
	json_decref(msg);
	inst_live_free(l);
	if (ir < 0) {
		/* The caller removes the fork. */
		*err = ie;
		return hm_err_wrap(err, "give the fork its own identity");
	}
	double t_done = inst_mono_ms();
	inst_oplog(in, row->id,
	           "msg=restored running_ms=%.1f identity_ms=%.1f identity_connect_ms=%.1f "
	           "identity_answer_ms=%.1f warm=%s",
	           t_running - t0, t_done - t_running, t_sent - t_running, t_done - t_sent, how);
	log_info("instances", "restored", "id=%s name=%s ms=%.1f", row->id, row->name, t_done - t0);
	return 0;
}

int hm_instances_restore(struct hm_instances *in, const char *key, struct hm_instance_view **ret,
                         struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	int r;
	bool awake = state == HM_STATE_RUNNING;
	if (awake)
		r = 0; /* already what was asked: the instance, as upstream */
	else if (state != HM_STATE_STANDBY)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Standby instance can be restored",
		               row.name, hm_state_name(state));
	else
		r = inst_wake(in, &row, false, NULL, err);
	if (r == 0)
		inst_wake_error_set(in, row.id, NULL); /* whoever woke it */
	if (r == 0)
		*ret = inst_view(in, &row);
	else if (!awake && state == HM_STATE_STANDBY)
		hm_err_wrap(err, "restore `%s` (it stays in standby)", row.name);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* ---- fork ---- */

int inst_check_forkable(json_t *spec, const char *name, struct hm_err **err)
{
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(spec, "volumes"), i, v)
		if (!json_is_true(json_object_get(v, "readonly")) &&
		    !json_is_true(json_object_get(v, "overlay")))
			return hm_err_set(
			    err, HM_ERR_CONFLICT, "writable_volume",
			    "`%s` has volume %s attached read-write at %s; a copy would "
			    "be a second writer (detach it, or attach it read-only or "
			    "with an overlay)",
			    name, json_string_value(json_object_get(v, "id")),
			    json_string_value(json_object_get(v, "mount_path")));
	return 0;
}

/*
 * A copy that is to run from memory starts its VMM while its files are
 * copied: they are made first at their sizes and empty (the source's
 * presize), a thread starts the VMM on them (inst_prepare_vm: QEMU up and
 * waiting for its state, with x-ignore-shared, and the TAP made), and the
 * copy fills them in place meanwhile, into the very inodes QEMU has open and
 * mapped. QEMU touches neither the memory nor the disks before the load
 * (an incoming VM's RAM is not even reset), so what it loads is the whole
 * copy. The wake then only loads the device state and resumes: the copy
 * costs the longer of the two, not their sum. The thread reads only the
 * row, which nothing changes until it is joined, and a spec of its own.
 */
struct early_vmm {
	struct hm_instances *in;
	const struct hm_instance_row *row;
	char *root_disk;
	pthread_t thread;
	bool started;
	struct hm_vm *vm;
	struct hm_err *err;
	double ms;
};

static void *early_main(void *arg)
{
	struct early_vmm *e = arg;
	double t0 = inst_mono_ms();
	json_t *spec = inst_spec_of(e->row);
	if (inst_prepare_vm(e->in, e->row, spec, e->root_disk, &e->vm, &e->err) < 0)
		e->vm = NULL;
	json_decref(spec);
	e->ms = inst_mono_ms() - t0;
	return NULL;
}

/* Start it, where the copy's image is still the one it was made on. */
static void early_start(struct hm_instances *in, const struct hm_instance_row *row,
                        struct early_vmm *e)
{
	struct hm_image_info img = { 0 };
	if (hm_images_resolve(in->images, row->image, &img, NULL) < 0)
		return; /* the wake says why */
	if (!row->image_digest || !*row->image_digest ||
	    strcmp(img.digest, row->image_digest) == 0) {
		e->root_disk = xstrdup(img.disk_path);
		e->started = pthread_create(&e->thread, NULL, early_main, e) == 0;
	}
	hm_image_info_done(&img);
}

/* Wait for it: its VMM, or NULL (a wake then starts one itself). */
static struct hm_vm *early_join(struct early_vmm *e, const char *id)
{
	free(TAKE_PTR(e->root_disk));
	if (!e->started)
		return NULL;
	pthread_join(e->thread, NULL);
	e->started = false;
	if (e->vm) {
		inst_oplog(e->in, id, "msg=\"VMM started during the copy\" pid=%d ms=%.1f",
		           (int)e->vm->pid, e->ms);
	} else {
		log_warn("instances", "no VMM started during the copy", "id=%s error=\"%s\"", id,
		         hm_err_message(&e->err, "?"));
		hm_err_free(TAKE_PTR(e->err));
	}
	return TAKE_PTR(e->vm);
}

/* A spare the copy will not use: its VMM and folder end (returns r). */
static int spare_unused(struct hm_instances *in, const struct inst_source *src, int r)
{
	if (src->spare_vm)
		inst_spare_discard(in, src->spare_id, src->spare_vm);
	return r;
}

json_t *inst_copy_spec(json_t *spec)
{
	json_t *copy = json_deep_copy(spec);
	json_object_del(copy, "template");
	json_object_del(copy, "delete_lock");
	return copy;
}

int inst_new_from(struct hm_instances *in, const struct inst_source *src, const char *name,
                  const char *target, struct hm_instance_view **ret, struct hm_err **err)
{
	bool standby = strcmp(src->kind, "Standby") == 0;
	if (!target)
		target = src->default_target;
	if (!standby && strcmp(target, "Standby") == 0)
		return spare_unused(
		    in, src,
		    hm_err_set(err, HM_ERR_CONFLICT, "invalid_target_state",
		               "a copy of a stopped instance cannot be in standby: it has no "
		               "memory to wake"));
	if (strcmp(target, "Running") == 0 && in->boot_error)
		return spare_unused(in, src,
		                    hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		                               "instances cannot run on this host: %s",
		                               in->boot_error));
	/* A copy is an instance of its own: not a template, unlocked. */
	json_t *spec = inst_copy_spec(src->spec);
	if (inst_check_forkable(spec, src->name, err) < 0) {
		json_decref(spec);
		return spare_unused(in, src, -1);
	}
	/* Its own address and MAC where the source had a network. */
	struct hm_net_lease lease = { { 0 } };
	json_t *net = inst_spec_net(spec);
	if (net && !hm_net_enabled(in->net)) {
		json_decref(spec);
		return spare_unused(
		    in, src,
		    hm_err_set(err, HM_ERR_CONFLICT, "network_unavailable",
		               "`%s` has a network but networking is disabled on this host",
		               src->name));
	}
	if (net && hm_net_lease(in->net, NULL, &lease, err) < 0) {
		json_decref(spec);
		return spare_unused(in, src, -1);
	}
	if (net) {
		json_object_set_new(net, "ip", json_string(lease.ip));
		json_object_set_new(net, "cidr", json_string(lease.cidr));
		json_object_set_new(net, "gateway", json_string(lease.gateway));
		json_object_set_new(net, "mac", json_string(lease.mac));
	}
	char id[25];
	if (src->spare_id)
		snprintf(id, sizeof(id), "%s", src->spare_id); /* its folder is made */
	else
		hm_id_new(id);
	_cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
	_cleanup_free_ char *created = hm_now_rfc3339();
	char uuid[37];
	hm_uuid_new(uuid);
	struct hm_instance_row row = {
		.id = xstrdup(id),
		.uuid = xstrdup(uuid),
		.name = xstrdup(name),
		.image = xstrdup(src->image),
		.image_digest = xstrdup(src->image_digest ? src->image_digest : ""),
		.spec = xstrdup(spec_text),
		.phase = xstrdup("Created"),
		.exit_code = -1,
		.created_at = xstrdup(created),
		.hypervisor = src->hypervisor ? xstrdup(src->hypervisor) : NULL,
	};
	double t0 = inst_mono_ms();
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	_cleanup_free_ char *logs = inst_path(in, id, "logs");
	_cleanup_free_ char *run = inst_path(in, id, "run");
	unsigned long long copied = 0;
	bool made = false;
	inst_op_lock(in, id); /* a delete by name waits until the copy is whole */
	int r = hm_store_instance_insert(in->st, &row, err);
	if (r == 0) {
		made = true;
		if (src->spare_id)
			inst_spare_taken(in, id);
		if (inst_sync_attachments(in, id, spec, err) < 0)
			r = -1;
	}
	struct early_vmm early = { .in = in, .row = &row };
	bool run_now = standby && strcmp(target, "Running") == 0;
	if (r == 0 && (hm_mkdir_p(logs, 0700, err) < 0 || hm_mkdir_p(run, 0700, err) < 0))
		r = -1;
	if (r == 0 && run_now && !src->spare_vm && src->presize && in->vmm->restore_prepare) {
		int p = src->presize(src->ctx, dir, err);
		if (p < 0)
			r = -1;
		else if (p == 1)
			early_start(in, &row, &early);
	}
	if (r == 0 && !src->spare_filled && src->fill(src->ctx, dir, &copied, err) < 0)
		r = -1;
	double t_fill = inst_mono_ms();
	struct hm_vm *prepared = src->spare_vm ? src->spare_vm : early_join(&early, id);
	double t_copy = inst_mono_ms();
	if (r == 0) {
		inst_oplog(in, id,
		           "msg=\"forked\" source=%s kind=%s copy_ms=%.1f copied_bytes=%llu "
		           "vmm_wait_ms=%.1f spare=%s",
		           src->name, src->kind, t_fill - t0, copied, t_copy - t_fill,
		           !src->spare_vm      ? "no"
		           : src->spare_filled ? "whole"
		                               : "yes");
		free(row.phase);
		row.phase = xstrdup(standby ? "Standby" : "Stopped");
		if (!standby) {
			free(row.stopped_at);
			row.stopped_at = hm_now_rfc3339();
			row.exit_message = xasprintf("a copy of `%s`, not started yet", src->name);
		}
		r = hm_store_instance_update(in->st, &row, err);
	}
	if (r == 0 && standby && strcmp(target, "Stopped") == 0) {
		hm_payload_drop_memory(dir);
		free(row.phase);
		row.phase = xstrdup("Stopped");
		row.stopped_at = hm_now_rfc3339();
		row.exit_message = xasprintf("a copy of `%s`, not started yet", src->name);
		r = hm_store_instance_update(in->st, &row, err);
	} else if (r == 0 && strcmp(target, "Running") == 0) {
		if (standby) {
			r = inst_wake(in, &row, true, TAKE_PTR(prepared), err);
		} else {
			struct hm_instance_view *o = NULL;
			r = inst_boot_again(in, &row, NULL, NULL, false, &o, err);
			hm_instance_view_free(o);
		}
	}
	if (r < 0) {
		/* Leave nothing: no VMM, no TAP, no folder, no row, no address. */
		if (made || src->spare_vm) {
			struct live *l = inst_live_take(in, id);
			if (l && !atomic_load(&l->exited))
				l->vm->ops->kill(l->vm, 10000, NULL);
			inst_live_free(l);
			end_prepared(in, id, TAKE_PTR(prepared));
			inst_drop_tap(in, id);
			hm_rm_rf(dir, NULL);
			hm_store_instance_delete(in->st, id, NULL);
		}
		if (lease.ip[0])
			hm_net_release(in->net, lease.ip);
		log_warn("instances", "fork failed", "source=%s name=%s error=\"%s\"", src->name,
		         name, hm_err_message(err, "?"));
	} else {
		log_info("instances", "forked", "id=%s name=%s source=%s kind=%s target=%s ms=%.1f",
		         id, name, src->name, src->kind, target, inst_mono_ms() - t0);
		*ret = inst_view(in, &row);
	}
	inst_op_unlock(in, id);
	hm_instance_row_done(&row);
	json_decref(spec);
	return r;
}

/* Fork sources that are instances: a copy of their folder, taken as they are. */
struct inst_fill {
	struct hm_instances *in;
	struct hm_instance_row *row;
	json_t *spec;
	bool running, standby;
	unsigned flags; /* HM_PAYLOAD_IN_PLACE once presized */
};

int inst_capture(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                 bool running, bool standby, const char *dst, unsigned flags,
                 unsigned long long *copied, struct hm_err **err)
{
	_cleanup_free_ char *src = inst_path(in, row->id, NULL);
	if (!running)
		return hm_payload_copy(src, dst, spec, standby, NULL, flags, copied, err);
	/* Running: pause it for the save and the copy, then let it run on. */
	struct live *l = inst_live_get(in, row->id);
	if (!l || atomic_load(&l->exited)) {
		inst_live_free(l);
		return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		                  "instance `%s` stopped while it was being copied", row->name);
	}
	_cleanup_free_ char *mem = inst_mem_current(in, row->id);
	int r = 0;
	if (access(mem, F_OK) < 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` was booted without its memory in a file (by an older "
		               "hypeman); stop and start it once to allow this",
		               row->name);
	_cleanup_free_ char *vmstate = xasprintf("%s/%s", dst, HM_PAYLOAD_STATE);
	double t0 = inst_mono_ms();
	pthread_mutex_lock(&l->vm_lock);
	if (r == 0 && hm_mkdir_p(dst, 0700, err) < 0)
		r = -1;
	if (r == 0 && save_state(l, dst, vmstate, err) < 0)
		r = -1;
	double t_saved = inst_mono_ms();
	if (r == 0 && hm_payload_copy(src, dst, spec, true, mem, flags, copied, err) < 0)
		r = -1;
	_cleanup_err_ struct hm_err *re = NULL;
	if (run_on(l, &re) < 0)
		log_warn("instances", "source did not resume after a copy", "id=%s error=\"%s\"",
		         row->id, re->msg);
	pthread_mutex_unlock(&l->vm_lock);
	inst_oplog(in, row->id, "msg=\"copied while running\" paused_ms=%.1f save_ms=%.1f ok=%s",
	           inst_mono_ms() - t0, t_saved - t0, r == 0 ? "yes" : "no");
	inst_live_free(l);
	return r;
}

static int fill_from_instance(void *ctx, const char *dst, unsigned long long *copied,
                              struct hm_err **err)
{
	struct inst_fill *f = ctx;
	return inst_capture(f->in, f->row, f->spec, f->running, f->standby, dst, f->flags, copied,
	                    err);
}

static int presize_from_instance(void *ctx, const char *dst, struct hm_err **err)
{
	struct inst_fill *f = ctx;
	if (!f->running && !f->standby)
		return 0; /* no memory: a copy of its disks boots cold */
	_cleanup_free_ char *src = inst_path(f->in, f->row->id, NULL);
	_cleanup_free_ char *mem = f->running ? inst_mem_current(f->in, f->row->id) : NULL;
	if (mem && access(mem, F_OK) < 0)
		return 0; /* inst_capture says why */
	int r = hm_payload_presize(src, dst, f->spec, true, mem, err);
	if (r == 1)
		f->flags |= HM_PAYLOAD_IN_PLACE;
	return r;
}

int hm_instances_fork(struct hm_instances *in, const char *key, const struct hm_instance_fork *f,
                      struct hm_instance_view **ret, struct hm_err **err)
{
	if (!f->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (hm_name_check("instance", f->name, err) < 0)
		return -1;
	const char *t = f->target_state;
	if (t && strcmp(t, "Stopped") != 0 && strcmp(t, "Standby") != 0 &&
	    strcmp(t, "Running") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_target_state",
		                  "`target_state` must be Stopped, Standby or Running");
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	json_t *spec = inst_spec_of(&row);
	bool running = state == HM_STATE_RUNNING;
	bool standby = state == HM_STATE_STANDBY;
	int r = 0;
	if (running && !f->from_running)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is Running; fork it with from_running: true (it is "
		               "paused for the copy and runs on)",
		               row.name);
	else if (!running && !standby && state != HM_STATE_STOPPED)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; a fork needs a Stopped, Standby or Running "
		               "source",
		               row.name, hm_state_name(state));
	/* A fork of a running or standby source to Running uses its spare where
	 * one is ready (spare.c), and has the next one prepared. */
	bool to_run = (running && (!t || strcmp(t, "Running") == 0)) ||
	              (standby && t && strcmp(t, "Running") == 0);
	if (r == 0) {
		struct inst_fill fill = { in, &row, spec, running, standby, 0 };
		char spare_id[25];
		bool filled = false;
		struct hm_vm *spare_vm =
		    to_run ? inst_spare_take(in, &row, standby, spare_id, &filled) : NULL;
		if (spare_vm)
			fill.flags |= HM_PAYLOAD_IN_PLACE;
		struct inst_source src = {
			.name = row.name,
			.hypervisor = row.hypervisor,
			.image = row.image,
			.image_digest = row.image_digest,
			.spec = spec,
			.kind = running || standby ? "Standby" : "Stopped",
			.default_target = hm_state_name(state),
			.fill = fill_from_instance,
			.presize = presize_from_instance,
			.ctx = &fill,
			.spare_id = spare_vm ? spare_id : NULL,
			.spare_vm = spare_vm,
			.spare_filled = filled,
		};
		r = inst_new_from(in, &src, f->name, f->target_state, ret, err);
		if (r == 0 && to_run)
			inst_spare_later(in, row.id);
	}
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}
