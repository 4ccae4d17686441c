/*
 * instance/warm: warm restores. Right after a standby, a VMM for that
 * instance's own files is started and left waiting for its state (the
 * backend's restore_prepare: QEMU up, QMP answering, x-ignore-shared set;
 * the TAP and its limits in place), so that a restore or a wake only loads
 * the device state and resumes: the process start and QMP set-up, most of a
 * restore's time, are off its path. At most WARM_RESTORES (default 4) wait,
 * for the most recent standbys; each holds a QEMU process (its PSS is in
 * bench/standby), its TAP and its files open while the instance sleeps.
 *
 * Ownership: a waiting VMM belongs to this module's list (under in->lock)
 * until inst_warm_take hands it to its instance's restore, or
 * inst_warm_drop, an eviction or close ends it. Preparing and ending happen
 * under the instance's op lock, so a restore, a delete or a restore from a
 * snapshot never meets one half-made. The one worker thread holds one op
 * lock at a time; lock order: an op lock, then in->lock, then w->m (a leaf).
 *
 * A waiting VMM is used only on the files it was started on: the row's spec,
 * the root disk, and the memory file and device state (device, inode, size,
 * mtime) are compared when it is taken, so an operation that replaced the
 * payload without dropping it gets a cold restore, never a stale VM.
 *
 * It lives in the instance's run/ like any VMM. A daemon that dies leaves
 * it there; reconcile.c finds it by run/vmm.pid as a restore that never
 * resumed: killed, its TAP dropped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"
#include "vmm/vmm.h"

#define WARM_QUEUE 16 /* standbys waiting for a VMM to be prepared */

struct warm_vm {
	struct warm_vm *next;
	char *id;
	struct hm_vm *vm;
	char *print; /* what it was started on (fingerprint) */
};

struct inst_warm {
	int max;
	struct hm_jobq *jobs; /* standbys waiting for a VMM to be prepared */
	struct warm_vm *list; /* under in->lock; newest first */
};

/* The files and spec a restore of row would start a VMM on, as one string. */
static char *fingerprint(struct hm_instances *in, const struct hm_instance_row *row,
                         const char *root_disk)
{
	_cleanup_free_ char *mem = inst_path(in, row->id, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *state = inst_path(in, row->id, HM_PAYLOAD_STATE);
	struct stat a, b;
	if (stat(mem, &a) < 0 || stat(state, &b) < 0)
		return NULL;
	return xasprintf("%lu:%lu:%lld:%lld.%09ld %lu:%lu:%lld:%lld.%09ld %s %s",
	                 (unsigned long)a.st_dev, (unsigned long)a.st_ino, (long long)a.st_size,
	                 (long long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec, (unsigned long)b.st_dev,
	                 (unsigned long)b.st_ino, (long long)b.st_size, (long long)b.st_mtim.tv_sec,
	                 b.st_mtim.tv_nsec, root_disk, row->spec ? row->spec : "");
}

/* End a waiting VMM taken off the list (under its instance's op lock). */
static void end_warm(struct hm_instances *in, struct warm_vm *w, const char *why)
{
	if (!w)
		return;
	w->vm->ops->kill(w->vm, 5000, NULL);
	w->vm->ops->free(w->vm);
	inst_drop_tap(in, w->id);
	inst_oplog(in, w->id, "msg=\"warm restore VMM ended\" why=%s", why);
	free(w->id);
	free(w->print);
	free(w);
}

/* Take id's entry off the list (caller: in->lock). */
static struct warm_vm *unlink_locked(struct inst_warm *wm, const char *id)
{
	for (struct warm_vm **pp = &wm->list; *pp; pp = &(*pp)->next) {
		struct warm_vm *w = *pp;
		if (strcmp(w->id, id) == 0) {
			*pp = w->next;
			w->next = NULL;
			return w;
		}
	}
	return NULL;
}

static struct warm_vm *unlink_id(struct hm_instances *in, const char *id)
{
	if (!in->warm)
		return NULL;
	pthread_mutex_lock(&in->lock);
	struct warm_vm *w = unlink_locked(in->warm, id);
	pthread_mutex_unlock(&in->lock);
	return w;
}

struct hm_vm *inst_warm_take(struct hm_instances *in, const struct hm_instance_row *row,
                             const char *root_disk)
{
	struct warm_vm *w = unlink_id(in, row->id);
	if (!w)
		return NULL;
	_cleanup_free_ char *now = fingerprint(in, row, root_disk);
	if (!now || strcmp(now, w->print) != 0) {
		end_warm(in, w, "stale");
		return NULL;
	}
	struct hm_vm *vm = w->vm;
	free(w->id);
	free(w->print);
	free(w);
	return vm;
}

void inst_warm_drop(struct hm_instances *in, const char *id)
{
	end_warm(in, unlink_id(in, id), "dropped");
}

void inst_warm_later(struct hm_instances *in, const char *id)
{
	if (in->warm)
		hm_jobq_push(in->warm->jobs, id);
}

/* Prepare id's VMM if it is still a Standby instance with a plain saved state. */
static void prepare(struct hm_instances *in, const char *id)
{
	double t0 = inst_mono_ms();
	inst_op_lock(in, id);
	struct hm_instance_row row = { .exit_code = -1 };
	struct hm_image_info img = { 0 };
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	_cleanup_free_ char *zst = inst_path(in, id, HM_PAYLOAD_MEMORY_ZST);
	_cleanup_free_ char *print = NULL;
	struct hm_vm *vm = NULL;
	json_t *spec = NULL;
	struct warm_vm *w = NULL;
	bool mine = false;
	pthread_mutex_lock(&in->lock);
	for (struct warm_vm *o = in->warm->list; o && !mine; o = o->next)
		mine = strcmp(o->id, id) == 0;
	pthread_mutex_unlock(&in->lock);
	if (mine || in->boot_error || hm_store_instance_get(in->st, id, &row, NULL) < 0 ||
	    strcmp(row.phase, "Standby") != 0 || access(zst, F_OK) == 0 ||
	    hm_payload_ready(dir, hm_accel_name(in->accel->accel), NULL) < 0 ||
	    hm_images_resolve(in->images, row.image, &img, NULL) < 0 ||
	    (row.image_digest && *row.image_digest && strcmp(img.digest, row.image_digest) != 0))
		goto out; /* not (or no longer) one to prepare */
	print = fingerprint(in, &row, img.disk_path);
	spec = inst_spec_of(&row);
	if (!print || inst_prepare_vm(in, &row, spec, img.disk_path, &vm, &err) < 0) {
		log_warn("instances", "no warm restore", "id=%s error=\"%s\"", id,
		         hm_err_message(&err, "its saved state is gone"));
		goto out;
	}
	w = xcalloc(1, sizeof(*w));
	*w = (struct warm_vm){ .id = xstrdup(id), .vm = vm, .print = TAKE_PTR(print) };
	pthread_mutex_lock(&in->lock);
	w->next = in->warm->list;
	in->warm->list = w;
	pthread_mutex_unlock(&in->lock);
	inst_oplog(in, id, "msg=\"warm restore ready\" pid=%d ms=%.1f", (int)vm->pid,
	           inst_mono_ms() - t0);
out:
	json_decref(spec);
	hm_image_info_done(&img);
	hm_instance_row_done(&row);
	inst_op_unlock(in, id);
}

/* End the oldest waiting VMMs past the cap, each under its own op lock. */
static void evict(struct hm_instances *in)
{
	for (;;) {
		_cleanup_free_ char *id = NULL;
		pthread_mutex_lock(&in->lock);
		int n = 0;
		struct warm_vm *last = NULL;
		for (struct warm_vm *w = in->warm->list; w; w = w->next, n++)
			last = w;
		if (n > in->warm->max)
			id = xstrdup(last->id);
		pthread_mutex_unlock(&in->lock);
		if (!id)
			return;
		inst_op_lock(in, id);
		end_warm(in, unlink_id(in, id), "evicted");
		inst_op_unlock(in, id);
	}
}

/* One job of the queue: id's VMM, then the cap held. */
static void warm_job(void *arg, const char *id)
{
	struct hm_instances *in = arg;
	prepare(in, id);
	evict(in);
}

int inst_warm_open(struct hm_instances *in, int max)
{
	if (max <= 0 || !in->vmm->restore_prepare || !in->vmm->restore_load)
		return 0;
	struct inst_warm *wm = xcalloc(1, sizeof(*wm));
	wm->max = max;
	in->warm = wm;
	wm->jobs = hm_jobq_start(WARM_QUEUE, warm_job, in);
	if (!wm->jobs) {
		in->warm = NULL;
		free(wm);
		return -1;
	}
	return 0;
}

void inst_warm_close(struct hm_instances *in)
{
	struct inst_warm *wm = in->warm;
	if (!wm)
		return;
	hm_jobq_stop(wm->jobs);
	/* The waiting VMMs end with the daemon: a restart would kill them anyway. */
	for (;;) {
		pthread_mutex_lock(&in->lock);
		struct warm_vm *w = wm->list;
		if (w)
			wm->list = w->next;
		pthread_mutex_unlock(&in->lock);
		if (!w)
			break;
		end_warm(in, w, "shutdown");
	}
	in->warm = NULL;
	free(wm);
}
