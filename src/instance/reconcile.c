/*
 * instance/reconcile: what the service finds at start-up, and puts right
 * before it serves: VMs still running are re-adopted (by pid, after checking
 * the process is that instance's QEMU), a standby the last daemon finished
 * saving is Standby, an interrupted create or delete is undone or finished,
 * and every instance keeps its address.
 */
#include "instance/instances.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "core/cleanup.h"
#include "core/json_cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"

/* Every instance keeps its address across daemon restarts. */
static void lease_again(struct hm_instances *in, const struct hm_instance_row *r)
{
	json_t *spec = inst_spec_of(r);
	json_t *net = inst_spec_net(spec);
	const char *ip = json_string_value(json_object_get(net, "ip"));
	struct hm_net_lease lease;
	_cleanup_err_ struct hm_err *err = NULL;
	if (ip && hm_net_enabled(in->net) && hm_net_lease(in->net, ip, &lease, &err) < 0)
		log_warn("instances", "address not kept", "id=%s ip=%s error=\"%s\"", r->id, ip,
		         err->msg);
	json_decref(spec);
}

/*
 * After a daemon died during a standby whose VMM is gone: is the VM saved
 * whole? The device state is renamed into place once written, and so is a
 * RAM file moved off tmpfs; a RAM file still on tmpfs (the VMM ended before
 * the move) is moved now. Otherwise the partial state goes.
 */
static bool standby_was_saved(struct hm_instances *in, const char *id)
{
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	_cleanup_free_ char *state = inst_path(in, id, HM_PAYLOAD_STATE);
	_cleanup_free_ char *mem = inst_path(in, id, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *tmpfs = inst_mem_tmpfs(in, id);
	if (access(state, F_OK) < 0)
		return false;
	if (tmpfs && access(tmpfs, F_OK) == 0) {
		_cleanup_free_ char *tmp = xasprintf("%s.tmp", mem);
		_cleanup_err_ struct hm_err *err = NULL;
		unlink(tmp);
		unlink(mem);
		if (hm_copy_sparse(tmpfs, tmp, 0600, NULL, &err) < 0 || rename(tmp, mem) < 0) {
			unlink(tmp);
			hm_payload_drop_memory(dir);
			return false;
		}
		unlink(tmpfs);
	}
	if (access(mem, F_OK) == 0)
		return true;
	hm_payload_drop_memory(dir);
	return false;
}

/*
 * A row that records no running VMM (Stopped, Standby, Created) whose VMM
 * runs all the same: a daemon died between starting it (a start, a
 * restore) and recording it. Found by the pid file QEMU writes at start,
 * and touched only if that pid is the QEMU of this instance's run dir
 * (adopt checks). A guest that runs was started or resumed: it is adopted,
 * as the operation would have recorded it. One still paused (a restore that
 * had not resumed it) is killed: its saved state is intact, the instance
 * stays as recorded. Returns true if it adopted one (the caller keeps it).
 */
static bool settle_unrecorded_vmm(struct hm_instances *in, struct hm_instance_row *r)
{
	_cleanup_free_ char *run = inst_path(in, r->id, "run");
	_cleanup_free_ char *pidfile = inst_path(in, r->id, "run/vmm.pid");
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (hm_read_file(pidfile, 64, &text, &len, NULL) < 0)
		return false;
	long pid = strtol(text, NULL, 10);
	struct hm_vm *vm = NULL;
	if (pid <= 0 || in->vmm->adopt(run, (pid_t)pid, &vm, NULL) < 0)
		return false;
	struct hm_vm_info info = { .exit_status = -1 };
	if (vm->ops->info(vm, &info, NULL) == 0 && info.state == HM_VM_RUNNING) {
		bool resumed = strcmp(r->phase, "Standby") == 0;
		if (resumed) {
			_cleanup_free_ char *state = inst_path(in, r->id, HM_PAYLOAD_STATE);
			unlink(state); /* the running VM owns the memory file again */
		}
		free(r->phase);
		r->phase = xstrdup(resumed ? "Running" : "Booting");
		r->vmm_pid = (pid_t)pid;
		hm_store_instance_update(in->st, r, NULL);
		pthread_mutex_lock(&in->lock);
		inst_live_start(in, r->id, vm, resumed, NULL);
		pthread_mutex_unlock(&in->lock);
		json_t *spec = inst_spec_of(r);
		json_t *net = inst_spec_net(spec);
		char tap[HM_NET_TAP_MAX];
		inst_tap_of(r->id, tap);
		if (net && hm_net_enabled(in->net)) /* the operation may not have got to them */
			inst_apply_limits(in, r->id, net, tap, NULL);
		json_decref(spec);
		log_warn("instances", "adopted a VMM an operation had not recorded",
		         "id=%s name=%s pid=%ld", r->id, r->name, pid);
		inst_oplog(in, r->id, "msg=\"adopted a VMM left unrecorded\" pid=%ld", pid);
		return true;
	}
	vm->ops->kill(vm, 10000, NULL);
	vm->ops->free(vm);
	inst_drop_tap(in, r->id);
	log_warn("instances", "killed a VMM no operation finished",
	         "id=%s name=%s pid=%ld phase=%s", r->id, r->name, pid, r->phase);
	inst_oplog(in, r->id, "msg=\"killed a paused VMM left by an unfinished operation\" pid=%ld",
	           pid);
	return false;
}

/*
 * What a daemon killed in a delete or a create left: a row whose folder is
 * gone is a delete that moved the folder aside (hm_instances_delete): the row
 * goes too. A row still Created, whose VMM was never recorded nor is running
 * (settle_unrecorded_vmm), is a create or fork that did not finish: undone.
 * Returns true when the row is gone.
 */
static bool finish_interrupted(struct hm_instances *in, struct hm_instance_row *r, bool no_folder)
{
	if (!no_folder && strcmp(r->phase, "Created") != 0)
		return false;
	_cleanup_free_ char *dir = inst_path(in, r->id, NULL);
	hm_rm_rf(dir, NULL);
	if (hm_store_instance_delete(in->st, r->id, NULL) < 0)
		return false;
	if (!no_folder) { /* its address was taken again by lease_again */
		json_t *spec = inst_spec_of(r);
		hm_net_release(in->net,
		               json_string_value(json_object_get(inst_spec_net(spec), "ip")));
		json_decref(spec);
	}
	log_warn("instances",
	         no_folder ? "finished an interrupted delete" : "undid an interrupted create",
	         "id=%s name=%s", r->id, r->name);
	return true;
}

void inst_adopt_all(struct hm_instances *in)
{
	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	_cleanup_free_ char *deleted = xasprintf("%s/" DELETED_DIR, in->dir);
	hm_rm_rf(deleted, NULL); /* folders of deletes that were under way */
	hm_mkdir_p(deleted, 0700, NULL);
	inst_spare_sweep(in); /* forks made ready, by a daemon that is gone */
	if (hm_store_instance_list(in->st, &rows, &n, NULL) < 0)
		return;
	_cleanup_free_ char **keep = xcalloc(n + 1, sizeof(*keep));
	_cleanup_free_ char **keep_ids = xcalloc(n + 1, sizeof(*keep_ids));
	size_t nkeep = 0;
	for (size_t i = 0; i < n; i++) {
		struct hm_instance_row *r = &rows[i];
		_cleanup_free_ char *dir = inst_path(in, r->id, NULL);
		if (access(dir, F_OK) < 0 && errno == ENOENT && finish_interrupted(in, r, true))
			continue;
		lease_again(in, r);
		/* The attachments table mirrors the spec: rows a crash left over, or
		 * missing, are set again (a spec naming a volume that is gone keeps no row). */
		{
			json_t *spec = inst_spec_of(r);
			_cleanup_err_ struct hm_err *aerr = NULL;
			if (inst_sync_attachments(in, r->id, spec, &aerr) < 0)
				log_warn("instances", "attachments not recorded",
				         "id=%s error=\"%s\"", r->id, aerr->msg);
			json_decref(spec);
		}
		if (strcmp(r->phase, "Booting") != 0 && strcmp(r->phase, "Running") != 0) {
			if (settle_unrecorded_vmm(in, r)) {
				keep_ids[nkeep] = xstrdup(r->id);
				keep[nkeep] = xmalloc(HM_NET_TAP_MAX);
				inst_tap_of(r->id, keep[nkeep++]);
			} else {
				finish_interrupted(in, r, false);
			}
			continue;
		}
		_cleanup_free_ char *run = inst_path(in, r->id, "run");
		struct hm_vm *vm = NULL;
		_cleanup_err_ struct hm_err *err = NULL;
		if (inst_check_runtime(in, r->hypervisor, "it", &err) < 0) {
			/* Not ours to adopt, nor to record as stopped: it shows Unknown. */
			log_warn("instances", "not adopted", "id=%s name=%s error=\"%s\"", r->id,
			         r->name, err->msg);
			continue;
		}
		if (r->vmm_pid > 0 && in->vmm->adopt(run, r->vmm_pid, &vm, &err) == 0) {
			log_info("instances", "re-adopted", "id=%s name=%s pid=%d", r->id, r->name,
			         (int)r->vmm_pid);
			inst_oplog(in, r->id, "msg=\"re-adopted by a restarted daemon\" pid=%d",
			           (int)r->vmm_pid);
			/* A daemon that died in a standby, between the save and the VMM's
			 * end, left the guest paused: the standby did not happen. */
			_cleanup_free_ char *state = inst_path(in, r->id, HM_PAYLOAD_STATE);
			if (access(state, F_OK) == 0) {
				_cleanup_free_ char *tmpfs = inst_mem_tmpfs(in, r->id);
				_cleanup_free_ char *mem = inst_path(in, r->id, HM_PAYLOAD_MEMORY);
				if (tmpfs && access(tmpfs, F_OK) == 0)
					unlink(mem); /* a copy the standby made; the VM runs on
					                tmpfs */
				unlink(state);
				vm->ops->resume(vm, NULL);
				inst_oplog(in, r->id,
				           "msg=\"an unfinished standby undone: running on\"");
			}
			/* No user pauses a VM (there is no such operation): a guest found
			 * paused was paused by an operation that died with its daemon (the
			 * copy of a fork or a snapshot of it running), and runs on. */
			struct hm_vm_info vi = { .exit_status = -1 };
			if (vm->ops->info(vm, &vi, NULL) == 0 && vi.state == HM_VM_PAUSED &&
			    vm->ops->resume(vm, NULL) == 0)
				inst_oplog(in, r->id,
				           "msg=\"found paused by an unfinished operation: "
				           "running on\"");
			/* A guest from a base whose attach may never have been sent: again
			 * (a guest that already has it answers an error, and runs on). */
			_cleanup_free_ char *attach = inst_path(in, r->id, INST_ATTACH_FILE);
			_cleanup_json_ json_t *kept = strcmp(r->phase, "Running") != 0
			                                  ? json_load_file(attach, 0, NULL)
			                                  : NULL;
			if (kept)
				inst_oplog(in, r->id, "msg=\"attach to be sent again\"");
			pthread_mutex_lock(&in->lock);
			inst_live_start(in, r->id, vm, strcmp(r->phase, "Running") == 0,
			                kept ? inst_attach_msg(kept) : NULL);
			pthread_mutex_unlock(&in->lock);
			keep_ids[nkeep] = xstrdup(r->id);
			keep[nkeep] = xmalloc(HM_NET_TAP_MAX);
			inst_tap_of(r->id, keep[nkeep++]);
			json_t *spec = inst_spec_of(r);
			json_t *net = inst_spec_net(spec);
			if (net && hm_net_enabled(in->net) &&
			    inst_apply_limits(in, r->id, net, NULL, &err) < 0)
				log_warn("instances", "limits not restored", "id=%s error=\"%s\"",
				         r->id, err->msg);
			json_decref(spec);
			continue;
		}
		/* Its VMM ended while the daemon was away. A standby that had saved the
		 * VM whole is finished: the instance is in Standby. */
		if (standby_was_saved(in, r->id)) {
			free(r->phase);
			r->phase = xstrdup("Standby");
			r->vmm_pid = 0;
			hm_store_instance_update(in->st, r, NULL);
			inst_oplog(in, r->id, "msg=\"found saved at daemon start: in standby\"");
			/* A VMM started since on its files (one waiting for the restore,
			 * warm.c) is settled as for any Standby row. */
			if (settle_unrecorded_vmm(in, r)) {
				keep_ids[nkeep] = xstrdup(r->id);
				keep[nkeep] = xmalloc(HM_NET_TAP_MAX);
				inst_tap_of(r->id, keep[nkeep++]);
			}
			continue;
		}
		/* Otherwise record what is known. */
		_cleanup_free_ char *cfg = inst_path(in, r->id, "config.img");
		int code = -1;
		char *msg = NULL;
		if (hm_guestcfg_read_exit(cfg, &code, &msg, NULL) <= 0) {
			code = -1;
			free(msg);
			msg = xstrdup("the VM stopped while the daemon was not running, without an "
			              "exit report");
		}
		free(r->phase);
		r->phase = xstrdup("Stopped");
		r->vmm_pid = 0;
		r->exit_code = code;
		free(r->exit_message);
		r->exit_message = msg;
		free(r->stopped_at);
		r->stopped_at = hm_now_rfc3339();
		hm_store_instance_update(in->st, r, NULL);
		inst_oplog(in, r->id, "msg=\"found stopped at daemon start\" exit_code=%d", code);
		/* Its policy applies as to any end no user asked for (no user stop
		 * could have run with no daemon); a long run for all we know. */
		inst_sup_exited(in, r->id, code, false, 1e15);
	}
	hm_instance_rows_free(rows, n);
	/* TAPs of VMs that died while the daemon was away, or of a crashed create. */
	hm_net_reclaim(in->net, (const char *const *)keep, nkeep);
	/* Likewise their RAM files on tmpfs. */
	inst_mem_reclaim(in, (const char *const *)keep_ids, nkeep);
	for (size_t i = 0; i < nkeep; i++)
		free(keep_ids[i]);
	for (size_t i = 0; i < nkeep; i++)
		free(keep[i]);
}
