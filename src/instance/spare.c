/*
 * instance/spare: forks made ready before they are asked for.
 *
 * A fork of a running instance pauses it, saves its device state and
 * copies its files, then loads that state into a VMM of its own. Two costs
 * on that path do not depend on the source's state at the moment of the
 * fork: starting the fork's VMM (QEMU up and waiting for its state, ~40 ms
 * under TCG) and allocating the fork's files (a copy into a new file makes
 * the filesystem allocate and the kernel cache every page it writes; a copy
 * over the pages of an older copy only moves bytes: measured here, 96 MB of
 * guest memory in ~23 ms against ~45). A spare takes both off the path.
 *
 * After a fork to Running of a running or standby instance, a spare of
 * that source is prepared here, in the background: a new instance id with
 * its folder; the fork's files at their sizes, filled with a copy of the
 * source's (of a running one taken as it runs: inconsistent, and never used
 * as such, only its pages matter); and a VMM started on them, waiting for
 * its state (inst_prepare_vm). The next fork of that source to Running
 * takes it (inst_spare_take): a running source is paused, saved and copied
 * over the spare's files as for any fork (hm_copy_sparse_into: what the
 * older copy had where the source has holes is punched out), and the state
 * is loaded into the waiting VMM. A source in standby does not change while
 * it sleeps: its copy is whole, and if the files' stamp (size, device,
 * inode, mtime: hm_payload_stamp) is still the one taken around that copy,
 * the fork skips the copy and only loads the state. The fork that took a
 * spare has another one prepared for the next.
 *
 * Bounds: at most SPARE_FORKS (default 2; 0: none) sources have a spare,
 * the most recently forked; each holds a waiting QEMU (~38 MiB PSS, as a
 * warm restore's) and files the size of its source's while it waits. A
 * spare is not an instance: it is in no listing nor in the host's
 * allocation, and only this module knows its id.
 *
 * Only sources without a network get one. A spare of one with a network
 * would hold an address, a TAP and rules keyed by an instance row it does
 * not have yet; and a networked fork waits for the guest to take its own
 * address, which costs more than a VMM's start.
 *
 * Ownership and locks: a spare belongs to this module's list (under
 * in->lock) until inst_spare_take hands its id, folder and VMM to a fork,
 * or an end (a stale take, the source's delete, an eviction, close)
 * removes it. Whoever unlinks it from the list owns it; ending needs no
 * other lock. Preparing happens under the source's op lock, so a fork of
 * that source (which holds it too) never meets a spare half made, and a
 * source has at most one. The one worker thread holds one op lock at a
 * time; lock order: an op lock, then in->lock, then the queue's (a leaf).
 *
 * A spare is used only for what it was made on: the fork's spec (the
 * source's, as copied), the image's root disk and digest, the runtime, and
 * the names and sizes of the source's files (hm_payload_shape) are compared
 * when it is taken; a stale one is ended and the fork goes the usual way.
 *
 * Its folder, instances/<id>/, holds a `spare` file naming its source until
 * a fork's row owns it. A daemon that dies leaves spares behind; at the
 * next start inst_spare_sweep kills each one's VMM (by its pid file, only if
 * the backend recognises that pid as the VMM of that folder) and removes
 * the folder.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/jobq.h"
#include "core/json_cleanup.h"
#include "core/log.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"
#include "vmm/vmm.h"

#define SPARE_FILE  "spare"
#define SPARE_QUEUE 16 /* sources waiting for a spare to be prepared */

struct spare {
	struct spare *next;
	char *source; /* the instance it is a fork of */
	char id[25];  /* the fork's id to be: its folder */
	char *print;  /* what it was made on */
	char *stamp;  /* a Standby source's files as copied (hm_payload_stamp), or NULL */
	struct hm_vm *vm;
};

struct inst_spares {
	int max;
	struct hm_jobq *jobs; /* sources waiting for a spare to be prepared */
	struct spare *list;   /* under in->lock; newest first */
};

/*
 * What a spare of source would be made on, as one string: the fork's spec,
 * the image's digest and root disk, the runtime, and the source's files
 * (memory from mem_src) by name and size. *spec_out: the fork's spec.
 */
static char *fingerprint(struct hm_instances *in, const struct hm_instance_row *source,
                         const char *root_disk, const char *mem_src, json_t **spec_out)
{
	/* The copy of a Standby source takes its saved state too (mem_src NULL). */
	json_t *src_spec = inst_spec_of(source);
	json_t *spec = inst_copy_spec(src_spec);
	json_decref(src_spec);
	_cleanup_free_ char *dir = inst_path(in, source->id, NULL);
	_cleanup_free_ char *shape = hm_payload_shape(dir, spec, true, mem_src);
	_cleanup_free_ char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
	char *print = shape && text
	                  ? xasprintf("%s|%s|%s|%s|%s", text,
	                              source->image_digest ? source->image_digest : "", root_disk,
	                              source->hypervisor ? source->hypervisor : "", shape)
	                  : NULL;
	if (spec_out)
		*spec_out = spec;
	else
		json_decref(spec);
	return print;
}

void inst_spare_discard(struct hm_instances *in, const char *id, struct hm_vm *vm)
{
	if (vm) {
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
	}
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	hm_rm_rf(dir, NULL);
}

/* End a spare taken off the list: its VMM, then its folder. */
static void end_spare(struct hm_instances *in, struct spare *s, const char *why)
{
	if (!s)
		return;
	inst_spare_discard(in, s->id, s->vm);
	inst_oplog(in, s->source, "msg=\"spare fork ended\" spare=%s why=%s", s->id, why);
	free(s->source);
	free(s->print);
	free(s->stamp);
	free(s);
}

/* Take source's spare off the list (caller: in->lock). */
static struct spare *unlink_locked(struct inst_spares *sp, const char *source)
{
	for (struct spare **pp = &sp->list; *pp; pp = &(*pp)->next) {
		struct spare *s = *pp;
		if (strcmp(s->source, source) == 0) {
			*pp = s->next;
			s->next = NULL;
			return s;
		}
	}
	return NULL;
}

static struct spare *unlink_source(struct hm_instances *in, const char *source)
{
	if (!in->spares)
		return NULL;
	pthread_mutex_lock(&in->lock);
	struct spare *s = unlink_locked(in->spares, source);
	pthread_mutex_unlock(&in->lock);
	return s;
}

/* Where a copy of source takes its memory from: a running one's RAM file, or
 * (NULL) the folder's saved memory and state. */
static char *memory_of(struct hm_instances *in, const char *source, bool standby)
{
	return standby ? NULL : inst_mem_current(in, source);
}

struct hm_vm *inst_spare_take(struct hm_instances *in, const struct hm_instance_row *source,
                              bool standby, char id[25], bool *filled)
{
	*filled = false;
	struct spare *s = unlink_source(in, source->id);
	if (!s)
		return NULL;
	struct hm_image_info img = { 0 };
	_cleanup_free_ char *mem = memory_of(in, source->id, standby);
	_cleanup_json_ json_t *spec = NULL;
	_cleanup_free_ char *now = hm_images_resolve(in->images, source->image, &img, NULL) == 0
	                               ? fingerprint(in, source, img.disk_path, mem, &spec)
	                               : NULL;
	hm_image_info_done(&img);
	if (!now || strcmp(now, s->print) != 0) {
		end_spare(in, s, "stale");
		return NULL;
	}
	if (standby && s->stamp) {
		/* Files no one wrote since they were copied: the copy is whole. */
		_cleanup_free_ char *dir = inst_path(in, source->id, NULL);
		_cleanup_free_ char *stamp = hm_payload_stamp(dir, spec, true, NULL);
		*filled = stamp && strcmp(stamp, s->stamp) == 0;
	}
	struct hm_vm *vm = s->vm;
	memcpy(id, s->id, sizeof(s->id));
	free(s->source);
	free(s->print);
	free(s->stamp);
	free(s);
	return vm;
}

void inst_spare_taken(struct hm_instances *in, const char *id)
{
	_cleanup_free_ char *mark = inst_path(in, id, SPARE_FILE);
	unlink(mark);
}

void inst_spare_drop(struct hm_instances *in, const char *source)
{
	end_spare(in, unlink_source(in, source), "dropped");
}

void inst_spare_later(struct hm_instances *in, const char *source)
{
	if (in->spares)
		hm_jobq_push(in->spares->jobs, source);
}

/* Make the spare's folder and files, and start its VMM (source: Running or Standby, held;
 * mem: a running one's RAM file, NULL for a Standby one's saved memory and state). */
static int make_spare(struct hm_instances *in, const struct hm_instance_row *source,
                      const char *root_disk, const char *mem, json_t *spec, struct spare *s,
                      unsigned long long *copied, double *fill_ms, struct hm_err **err)
{
	_cleanup_free_ char *src_dir = inst_path(in, source->id, NULL);
	_cleanup_free_ char *dir = inst_path(in, s->id, NULL);
	_cleanup_free_ char *logs = inst_path(in, s->id, "logs");
	_cleanup_free_ char *run = inst_path(in, s->id, "run");
	_cleanup_free_ char *mark = inst_path(in, s->id, SPARE_FILE);
	if (hm_mkdir_p(logs, 0700, err) < 0 || hm_mkdir_p(run, 0700, err) < 0 ||
	    hm_write_file_atomic(mark, source->id, strlen(source->id), 0600, err) < 0)
		return -1;
	double t0 = inst_mono_ms();
	int p = hm_payload_presize(src_dir, dir, spec, true, mem, err);
	if (p < 0)
		return -1;
	if (p == 0)
		return hm_err_set(err, HM_ERR_CONFLICT, NULL, "its files cannot be made ahead");
	/* A Standby source's files do not change while it sleeps: if no one
	 * wrote them during the copy, the copy is the fork's as it stands. */
	_cleanup_free_ char *before = mem ? NULL : hm_payload_stamp(src_dir, spec, true, NULL);
	if (hm_payload_copy(src_dir, dir, spec, true, mem, HM_PAYLOAD_IN_PLACE, copied, err) < 0)
		return -1;
	_cleanup_free_ char *after = mem ? NULL : hm_payload_stamp(src_dir, spec, true, NULL);
	if (before && after && strcmp(before, after) == 0)
		s->stamp = TAKE_PTR(after);
	*fill_ms = inst_mono_ms() - t0;
	_cleanup_free_ char *text = json_dumps(spec, JSON_COMPACT);
	struct hm_instance_row row = {
		.id = s->id,
		.name = source->name,
		.image = source->image,
		.image_digest = source->image_digest,
		.spec = text,
		.phase = (char *)"Created",
		.exit_code = -1,
		.hypervisor = source->hypervisor,
	};
	return inst_prepare_vm(in, &row, spec, root_disk, &s->vm, err);
}

/* Prepare source's spare if it is still a Running or Standby instance without a network. */
static void prepare(struct hm_instances *in, const char *source)
{
	double t0 = inst_mono_ms();
	inst_op_lock(in, source);
	struct hm_instance_row row = { .exit_code = -1 };
	struct hm_image_info img = { 0 };
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *mem = NULL, *saved = inst_path(in, source, HM_PAYLOAD_MEMORY);
	enum hm_state state = HM_STATE_UNKNOWN;
	json_t *src_spec = NULL, *spec = NULL;
	struct spare *s = NULL;
	unsigned long long copied = 0;
	double fill_ms = 0;
	bool has = false;
	pthread_mutex_lock(&in->lock);
	for (struct spare *o = in->spares->list; o && !has; o = o->next)
		has = strcmp(o->source, source) == 0;
	pthread_mutex_unlock(&in->lock);
	if (!has && !in->boot_error && hm_store_instance_get(in->st, source, &row, NULL) == 0) {
		state = inst_state(in, &row);
		mem = memory_of(in, source, state == HM_STATE_STANDBY);
	}
	if ((state != HM_STATE_RUNNING && state != HM_STATE_STANDBY) ||
	    access(mem ? mem : saved, F_OK) < 0 ||
	    hm_images_resolve(in->images, row.image, &img, NULL) < 0 ||
	    (row.image_digest && *row.image_digest && strcmp(img.digest, row.image_digest) != 0))
		goto out; /* not (or no longer) one to prepare */
	src_spec = inst_spec_of(&row);
	if (inst_spec_net(src_spec))
		goto out; /* see the top of this file */
	s = xcalloc(1, sizeof(*s));
	s->source = xstrdup(source);
	hm_id_new(s->id);
	s->print = fingerprint(in, &row, img.disk_path, mem, &spec);
	if (!s->print) {
		hm_err_set(&err, HM_ERR_INTERNAL, NULL, "a file of the source is missing");
	} else if (make_spare(in, &row, img.disk_path, mem, spec, s, &copied, &fill_ms, &err) ==
	           0) {
		inst_oplog(in, source,
		           "msg=\"spare fork ready\" spare=%s pid=%d of=%s whole=%s fill_ms=%.1f "
		           "filled_bytes=%llu ms=%.1f",
		           s->id, (int)s->vm->pid, hm_state_name(state), s->stamp ? "yes" : "no",
		           fill_ms, copied, inst_mono_ms() - t0);
		pthread_mutex_lock(&in->lock);
		s->next = in->spares->list;
		in->spares->list = TAKE_PTR(s);
		pthread_mutex_unlock(&in->lock);
		goto out;
	}
	log_warn("instances", "no spare fork", "source=%s error=\"%s\"", source,
	         hm_err_message(&err, "?"));
	end_spare(in, TAKE_PTR(s), "failed");
out:
	json_decref(spec);
	json_decref(src_spec);
	hm_image_info_done(&img);
	hm_instance_row_done(&row);
	inst_op_unlock(in, source);
}

/* End the oldest spares past the cap. */
static void evict(struct hm_instances *in)
{
	for (;;) {
		struct spare *s = NULL;
		pthread_mutex_lock(&in->lock);
		int n = 0;
		struct spare **last = NULL;
		for (struct spare **pp = &in->spares->list; *pp; pp = &(*pp)->next, n++)
			last = pp;
		if (n > in->spares->max) {
			s = *last;
			*last = NULL;
		}
		pthread_mutex_unlock(&in->lock);
		if (!s)
			return;
		end_spare(in, s, "evicted");
	}
}

/* One job of the queue: source's spare, then the cap held. */
static void spare_job(void *arg, const char *source)
{
	struct hm_instances *in = arg;
	prepare(in, source);
	evict(in);
}

int inst_spare_open(struct hm_instances *in, int max)
{
	if (max <= 0 || !in->vmm->restore_prepare || !in->vmm->restore_load)
		return 0;
	struct inst_spares *sp = xcalloc(1, sizeof(*sp));
	sp->max = max;
	in->spares = sp;
	sp->jobs = hm_jobq_start(SPARE_QUEUE, spare_job, in);
	if (!sp->jobs) {
		in->spares = NULL;
		free(sp);
		return -1;
	}
	return 0;
}

void inst_spare_close(struct hm_instances *in)
{
	struct inst_spares *sp = in->spares;
	if (!sp)
		return;
	hm_jobq_stop(sp->jobs);
	/* Spares end with the daemon: a restart would sweep them anyway. */
	for (;;) {
		pthread_mutex_lock(&in->lock);
		struct spare *s = sp->list;
		if (s)
			sp->list = s->next;
		pthread_mutex_unlock(&in->lock);
		if (!s)
			break;
		end_spare(in, s, "shutdown");
	}
	in->spares = NULL;
	free(sp);
}

void inst_spare_sweep(struct hm_instances *in)
{
	DIR *d = opendir(in->dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		_cleanup_free_ char *mark = inst_path(in, e->d_name, SPARE_FILE);
		if (access(mark, F_OK) < 0)
			continue;
		struct hm_instance_row row = { .exit_code = -1 };
		if (hm_store_instance_get(in->st, e->d_name, &row, NULL) == 0) {
			/* A fork's row owns it (killed before inst_spare_taken): reconcile's. */
			hm_instance_row_done(&row);
			unlink(mark);
			continue;
		}
		_cleanup_free_ char *run = inst_path(in, e->d_name, "run");
		_cleanup_free_ char *pidfile = inst_path(in, e->d_name, "run/vmm.pid");
		_cleanup_free_ char *text = NULL;
		struct hm_vm *vm = NULL;
		long pid =
		    hm_read_file(pidfile, 64, &text, NULL, NULL) == 0 ? strtol(text, NULL, 10) : 0;
		/* adopt checks that pid is this folder's QEMU (not a pid reused since). */
		if (pid > 0 && in->vmm->adopt(run, (pid_t)pid, &vm, NULL) == 0) {
			vm->ops->kill(vm, 5000, NULL);
			vm->ops->free(vm);
		}
		_cleanup_free_ char *dir = inst_path(in, e->d_name, NULL);
		hm_rm_rf(dir, NULL);
		log_info("instances", "removed a spare fork a stopped daemon left",
		         "spare=%s pid=%ld", e->d_name, pid);
	}
	closedir(d);
}
