/*
 * instance/lifecycle: delete, stop, start and update: the escalating stop
 * (guest init, power button, kill), a cold boot of a Stopped instance on its
 * own overlay, and env changes for the next boot. Each holds the instance's
 * op lock for its whole run.
 */
#include "instance/instances.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/json_cleanup.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "instance/agent.h"
#include "instance/command.h"
#include "instance/internal.h"
#include "store/instances.h"

#define STOP_GRACE_MS   10000
#define DELETE_GRACE_MS 5000 /* a graceful delete's: shorter than a stop's, as upstream */

static int stop_live(struct hm_instances *in, struct live *l, const struct hm_instance_row *row,
                     int grace_ms, int asked, struct hm_err **err);

int hm_instances_delete(struct hm_instances *in, const char *key, bool graceful,
                        struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	bool locked = json_is_true(json_object_get(spec, "delete_lock"));
	json_decref(spec);
	int r = locked ? hm_err_set(err, HM_ERR_CONFLICT, "delete_locked",
	                            "instance `%s` has a delete lock; unset it to delete the "
	                            "instance",
	                            row.name)
	               : inst_delete_held(in, &row, graceful, err);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int inst_delete_held(struct hm_instances *in, struct hm_instance_row *rowp, bool graceful,
                     struct hm_err **err)
{
	struct hm_instance_row row = *rowp; /* fields stay the caller's */
	inst_warm_drop(in, row.id);         /* a VMM waiting for its restore */
	inst_spare_drop(in, row.id);        /* a fork of it made ready */
	/* Graceful: the stop path first, where the program runs and its agent answers
	 * (one still booting has nothing to lose); whatever is left is killed below. */
	enum hm_state state = inst_state(in, &row);
	struct live *gl = graceful && state == HM_STATE_RUNNING ? inst_live_get(in, row.id) : NULL;
	if (gl && atomic_load(&gl->greeted)) {
		_cleanup_err_ struct hm_err *serr = NULL;
		if (stop_live(in, gl, &row, DELETE_GRACE_MS, STOP_ASKED_USER, &serr) < 0)
			log_warn("instances", "graceful delete: stop failed, killing",
			         "id=%s error=\"%s\"", row.id, serr->msg);
	}
	inst_live_free(gl);
	struct live *l = inst_live_take(in, row.id);
	int r = 0;
	if (l) {
		if (!atomic_load(&l->exited) && l->vm->ops->kill(l->vm, 10000, err) < 0) {
			/* Still running: keep monitoring it and report the failure. */
			pthread_mutex_lock(&in->lock);
			inst_live_start(in, row.id, l->vm, atomic_load(&l->started), NULL);
			l->vm = NULL;
			pthread_mutex_unlock(&in->lock);
			r = -1;
		}
		inst_live_free(l);
	}
	if (r == 0) {
		inst_drop_tap(in, row.id);
		_cleanup_free_ char *dir = inst_path(in, row.id, NULL);
		_cleanup_free_ char *ram = inst_mem_tmpfs(in, row.id);
		_cleanup_free_ char *trash = xasprintf("%s/" DELETED_DIR "/%s", in->dir, row.id);
		if (ram)
			unlink(ram);
		/* The folder goes aside in one rename, then the row: a daemon killed in
		 * between finds a row without a folder and finishes (adopt_all). */
		hm_rm_rf(trash, NULL);
		if (rename(dir, trash) < 0 && errno != ENOENT) {
			r = hm_err_errno(err, errno, "move `%s` aside", dir);
		} else if (hm_store_instance_delete(in->st, row.id, err) < 0) {
			rename(trash, dir); /* the row stays: so does its folder */
			r = -1;
		} else {
			hm_rm_rf(trash, NULL);
			json_t *spec = inst_spec_of(&row);
			hm_net_release(
			    in->net, json_string_value(json_object_get(inst_spec_net(spec), "ip")));
			json_decref(spec);
			log_info("instances", "deleted", "id=%s name=%s", row.id, row.name);
			inst_sup_forget(in, row.id);
			inst_wake_error_set(in, row.id, NULL);
			pthread_mutex_lock(&in->changes_lock);
			void (*told)(void *, const char *) = in->on_delete;
			void *arg = in->on_delete_arg;
			pthread_mutex_unlock(&in->changes_lock);
			if (told)
				told(arg, row.id); /* under this instance's op lock only */
		}
	}
	return r;
}

void hm_instances_on_delete(struct hm_instances *in, void (*fn)(void *arg, const char *id),
                            void *arg)
{
	pthread_mutex_lock(&in->changes_lock);
	in->on_delete = fn;
	in->on_delete_arg = arg;
	pthread_mutex_unlock(&in->changes_lock);
}

/* ---- lifecycle: stop, start, update, wait ---- */

/* The live record of an instance with a reference taken, or NULL. */

static bool wait_exited(struct live *l, long timeout_ms)
{
	for (long waited = 0; !atomic_load(&l->exited); waited += 20) {
		if (waited >= timeout_ms)
			return false;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return true;
}

/* The escalating stop of a live VM: guest init (the program gets SIGTERM and
 * grace_ms before SIGKILL), power button, kill. */
static int stop_live(struct hm_instances *in, struct live *l, const struct hm_instance_row *row,
                     int grace_ms, int asked_by, struct hm_err **err)
{
	double t0 = inst_mono_ms();
	inst_oplog(in, row->id, "msg=\"stop requested\" grace_ms=%d by=%s", grace_ms,
	           asked_by == STOP_ASKED_PLATFORM ? "idle" : "user");
	atomic_store(&l->stop_asked, grace_ms == 0 ? STOP_ASKED_FORCED : asked_by);
	/* 1: the guest init stops the program (SIGTERM, SIGKILL after the grace). */
	json_t *msg = json_pack("{s:s,s:i}", "type", "stop", "timeout_ms", grace_ms);
	bool asked = hm_agent_send(l->agent, msg, NULL) == 0;
	json_decref(msg);
	const char *how = "guest init";
	int r = 0;
	if (!asked || !wait_exited(l, grace_ms + 5000)) {
		/* 2: the ACPI power button, which the init also takes as "stop". */
		how = "power button";
		pthread_mutex_lock(&l->vm_lock);
		l->vm->ops->shutdown(l->vm, NULL);
		pthread_mutex_unlock(&l->vm_lock);
		if (!wait_exited(l, asked ? 3000 : grace_ms + 3000)) {
			/* 3: the VMM process itself. */
			how = "kill";
			atomic_store(&l->stop_asked, STOP_ASKED_FORCED);
			pthread_mutex_lock(&l->vm_lock);
			r = l->vm->ops->kill(l->vm, 10000, err);
			pthread_mutex_unlock(&l->vm_lock);
			if (r == 0 && !wait_exited(l, 5000))
				r = hm_err_set(err, HM_ERR_INTERNAL, NULL,
				               "the VMM of `%s` did not go away", row->name);
		}
	}
	if (r == 0) {
		inst_oplog(in, row->id, "msg=stopped via=\"%s\" ms=%.0f", how, inst_mono_ms() - t0);
		log_info("instances", "stopped", "id=%s name=%s via=\"%s\"", row->id, row->name,
		         how);
	}
	return r;
}

/* 0 when an instance in `state` (with live record l, or none) can be
 * stopped; a Stopped one is already what was asked (the instance, as upstream). */
static int check_stoppable(const struct hm_instance_row *row, enum hm_state state,
                           const struct live *l, struct hm_err **err)
{
	if (state == HM_STATE_STOPPED ||
	    (l && (state == HM_STATE_RUNNING || state == HM_STATE_INITIALIZING ||
	           state == HM_STATE_UNKNOWN)))
		return 0;
	return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
	                  "instance `%s` is %s; only a Running, Initializing or Unknown "
	                  "instance can be stopped",
	                  row->name, hm_state_name(state));
}

static int stop_in_background(struct hm_instances *in, struct live *l,
                              const struct hm_instance_row *row, int grace_ms, long drain_ms,
                              struct hm_err **err);

/* A stop's checks and answer; the stop itself now (wait) or on a worker. */
static int stop(struct hm_instances *in, const char *key, int grace_ms, long drain_ms, bool wait,
                struct hm_instance_view **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	struct live *l = inst_live_get(in, row.id);
	int r = check_stoppable(&row, state, l, err);
	if (r == 0 && state != HM_STATE_STOPPED)
		r = wait ? stop_live(in, l, &row, grace_ms < 0 ? STOP_GRACE_MS : grace_ms,
		                     STOP_ASKED_USER, err)
		         : stop_in_background(in, l, &row, grace_ms, drain_ms, err);
	if (l)
		inst_live_free(l);
	if (r == 0) {
		inst_sup_block(in, row.id, "manual_stop"); /* a pending restart too */
		r = hm_instances_get(in, row.id, ret, err);
	}
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_stop(struct hm_instances *in, const char *key, int grace_ms,
                      struct hm_instance_view **ret, struct hm_err **err)
{
	return stop(in, key, grace_ms, 0, true, ret, err);
}

int inst_stop_idle(struct hm_instances *in, const char *id, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, id, &row, err) < 0)
		return -1;
	struct live *l = inst_live_get(in, row.id);
	int r = inst_state(in, &row) == HM_STATE_RUNNING && l
	            ? stop_live(in, l, &row, STOP_GRACE_MS, STOP_ASKED_PLATFORM, err)
	            : hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
	                         "instance `%s` is not running", row.name);
	if (l)
		inst_live_free(l);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_stop_begin(struct hm_instances *in, const char *key, int grace_ms, long drain_ms,
                            struct hm_instance_view **ret, struct hm_err **err)
{
	return stop(in, key, grace_ms, drain_ms, false, ret, err);
}

/* 409 when the row is a template's: it never runs. */
static int check_not_template(const struct hm_instance_row *row, json_t *spec, const char *what,
                              struct hm_err **err)
{
	if (!json_is_true(json_object_get(spec, "template")))
		return 0;
	return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
	                  "instance `%s` is a template: it cannot %s; create an instance from it",
	                  row->name, what);
}

int hm_instances_make_template(struct hm_instances *in, const char *key,
                               struct hm_instance_view **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	enum hm_state state = inst_state(in, &row);
	int r = 0;
	if (state != HM_STATE_STOPPED)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Stopped instance can become a template",
		               row.name, hm_state_name(state));
	else if (!json_is_true(json_object_get(spec, "template"))) {
		json_object_set_new(spec, "template", json_true());
		json_object_del(spec, "restart"); /* it never runs, so never restarts */
		free(row.spec);
		row.spec = json_dumps(spec, JSON_COMPACT);
		r = hm_store_instance_set_spec(in->st, row.id, row.spec, err);
		if (r == 0) {
			inst_sup_forget(in, row.id);
			inst_oplog(in, row.id, "msg=\"made a template\"");
		}
	}
	if (r == 0)
		*ret = inst_view(in, &row);
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* ---- a stop that does not wait: its work on a worker thread of the service ---- */

struct stop_job {
	struct hm_instances *in;
	char *id;
	int grace_ms;
	long drain_ms; /* > 0: drain first, for up to this long */
};

static void *stop_worker(void *arg)
{
	struct stop_job *j = arg;
	struct hm_instance_view *v = NULL;
	_cleanup_err_ struct hm_err *err = NULL;
	/* The drain holds no lock: reads, and the holds closing, go on meanwhile. */
	struct live *l = j->drain_ms > 0 ? inst_live_get(j->in, j->id) : NULL;
	if (l) {
		inst_drain_live(j->in, l, j->id, j->drain_ms);
		inst_live_free(l);
	}
	if (hm_instances_stop(j->in, j->id, j->grace_ms, &v, &err) < 0) {
		inst_oplog(j->in, j->id, "msg=\"stop failed\" error=\"%s\"", err->msg);
		log_warn("instances", "stop failed", "id=%s error=\"%s\"", j->id, err->msg);
	}
	hm_instance_view_free(v);
	struct hm_instances *in = j->in;
	free(j->id);
	free(j);
	pthread_mutex_lock(&in->changes_lock);
	in->workers--;
	pthread_cond_broadcast(&in->changes_cond);
	pthread_mutex_unlock(&in->changes_lock);
	return NULL;
}

/* Seen as stopping from now on; the worker's stop takes the op lock once the
 * caller lets it go. */
static int stop_in_background(struct hm_instances *in, struct live *l,
                              const struct hm_instance_row *row, int grace_ms, long drain_ms,
                              struct hm_err **err)
{
	int expected = 0;
	atomic_compare_exchange_strong(&l->stop_asked, &expected,
	                               grace_ms == 0 ? STOP_ASKED_FORCED : STOP_ASKED_USER);
	if (drain_ms > 0)
		atomic_store(&l->draining, true); /* refused from the answer on */
	struct stop_job *j = xcalloc(1, sizeof(*j));
	*j = (struct stop_job){ in, xstrdup(row->id), grace_ms, drain_ms };
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&in->changes_lock);
	in->workers++;
	pthread_mutex_unlock(&in->changes_lock);
	int r = 0;
	if (pthread_create(&t, &a, stop_worker, j) != 0) {
		pthread_mutex_lock(&in->changes_lock);
		in->workers--;
		pthread_mutex_unlock(&in->changes_lock);
		free(j->id);
		free(j);
		r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "no thread for the stop of `%s`",
		               row->name);
	}
	pthread_attr_destroy(&a);
	inst_changed(in);
	return r;
}

void inst_workers_wait(struct hm_instances *in)
{
	pthread_mutex_lock(&in->changes_lock);
	while (in->workers > 0)
		pthread_cond_wait(&in->changes_cond, &in->changes_lock);
	pthread_mutex_unlock(&in->changes_lock);
}

int hm_instances_start(struct hm_instances *in, const char *key, const struct hm_instance_start *s,
                       struct hm_instance_view **ret, struct hm_err **err)
{
	json_t *cmd = s && !json_is_null(s->cmd) ? s->cmd : NULL;
	json_t *ep = s && !json_is_null(s->entrypoint) ? s->entrypoint : NULL;
	if ((cmd && hm_command_check_args(cmd, "cmd", err) < 0) ||
	    (ep && hm_command_check_args(ep, "entrypoint", err) < 0))
		return -1;
	if (in->boot_error)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		                  "instances cannot boot on this host: %s", in->boot_error);
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	int r;
	bool running = state == HM_STATE_RUNNING || state == HM_STATE_INITIALIZING;
	if (running && !cmd && !ep)
		r = hm_instances_get(in, row.id, ret,
		                     err); /* already what was asked, as upstream */
	else if (running)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is already %s; stop it to start it with another "
		               "command",
		               row.name, hm_state_name(state));
	else if (state != HM_STATE_STOPPED)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Stopped instance can be started",
		               row.name, hm_state_name(state));
	else {
		json_t *spec = inst_spec_of(&row);
		r = check_not_template(&row, spec, "be started", err);
		json_decref(spec);
		if (r == 0)
			r = inst_boot_again(in, &row, cmd, ep, false, ret, err);
	}
	if (r == 0)
		inst_sup_forget(in, row.id); /* a user's start ends a restart sequence */
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* Start's work once the instance is known to be Stopped. */
int inst_boot_again(struct hm_instances *in, struct hm_instance_row *rowp, json_t *cmd, json_t *ep,
                    bool by_policy, struct hm_instance_view **ret, struct hm_err **err)
{
	struct hm_instance_row row = *rowp; /* fields stay owned by the caller's row */
	json_t *spec = NULL;
	struct hm_image_info img = { 0 };
	struct hm_vm *vm = NULL;
	json_t *attach = NULL, *hello = NULL;
	int r = 0;
	/* The old VMM's record goes; a new one comes with the boot. */
	struct live *old = inst_live_take(in, row.id);
	inst_live_free(old);

	if (hm_images_resolve(in->images, row.image, &img, err) < 0) {
		r = hm_err_wrap(err, "the instance's image");
		goto out;
	}
	spec = inst_spec_of(&row);
	if (cmd || ep) {
		/* Overrides are remembered for the next starts, as docker's are not, so
		 * that a restart runs what the user last asked for. */
		json_t *use_cmd = cmd ? cmd : json_object_get(spec, "cmd");
		json_t *use_ep = ep ? ep : json_object_get(spec, "entrypoint");
		json_t *argv = NULL;
		if (hm_command_argv(json_object_get(img.config, "entrypoint"),
		                    json_object_get(img.config, "cmd"), use_ep, use_cmd, &argv,
		                    err) < 0) {
			r = -1;
			goto out;
		}
		json_object_set_new(spec, "argv", argv);
		if (cmd)
			json_object_set(spec, "cmd", cmd);
		if (ep)
			json_object_set(spec, "entrypoint", ep);
	}
	if (inst_write_config(in, &row, spec, img.disk_format, err) < 0 ||
	    inst_boot_vm(in, &row, spec, img.disk_path, &vm, &attach, err) < 0) {
		r = -1;
		goto out;
	}
	free(row.spec);
	row.spec = json_dumps(spec, JSON_COMPACT);
	free(row.phase);
	row.phase = xstrdup("Booting");
	row.vmm_pid = vm->pid;
	row.exit_code = -1;
	free(row.exit_message);
	row.exit_message = NULL;
	free(row.stopped_at);
	row.stopped_at = NULL;
	free(row.started_at);
	row.started_at = hm_now_rfc3339();
	hello = json_incref(attach); /* the record's */
	if (inst_live_begin(in, &row, vm, false, hello, err) < 0) {
		json_decref(hello);
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
		inst_drop_tap(in, row.id);
		r = -1;
		goto out;
	}
	if (attach)
		inst_wait_greeted(in, row.id);
	if (hm_store_instance_count_start(in->st, row.id, by_policy, NULL) == 0) {
		row.start_count++;
		row.restart_count += by_policy;
	}
	log_info("instances", "started", "id=%s name=%s", row.id, row.name);
	*ret = inst_view(in, &row);
out:
	*rowp = row;
	json_decref(attach);
	json_decref(spec);
	hm_image_info_done(&img);
	return r;
}

/* The parts of an update checked on their own, before the instance is read. */
static int check_update(const struct hm_instance_update *u, struct hm_err **err)
{
	if ((u->env_set && hm_command_check_env(u->env_set, err) < 0) ||
	    (u->tags && hm_tags_validate(u->tags, err) < 0) ||
	    (u->cmd_set && u->cmd && hm_command_check_args(u->cmd, "cmd", err) < 0) ||
	    (u->restart_set && inst_restart_check(&u->restart, err) < 0) ||
	    (u->auto_standby_set && u->auto_standby.enabled &&
	     inst_auto_standby_check(&u->auto_standby, err) < 0))
		return -1;
	size_t i;
	json_t *k;
	json_array_foreach (u->env_del, i, k) {
		if (!json_is_string(k))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "env keys to remove must be strings");
	}
	if (u->image && (!*u->image || strlen(u->image) > 512))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`image` must be a non-empty image reference");
	int64_t mem;
	if (inst_vcpus_check(u->vcpus, err) < 0 ||
	    (u->mem_bytes &&
	     inst_size_check("memory", u->mem_bytes, 0, INST_MIN_MEM, INST_MAX_MEM, &mem, err) < 0))
		return -1;
	return 0;
}

/*
 * An update's env against the instance's credentials: a source key's value
 * goes to *rotate, other keys to *plain; a guest variable (its placeholder)
 * cannot be set or removed, nor can a source be removed.
 */
static int split_credential_env(json_t *creds, const struct hm_instance_update *u, json_t **plain,
                                json_t **rotate, struct hm_err **err)
{
	size_t i;
	json_t *k;
	json_array_foreach (u->env_del, i, k) {
		const char *key = json_string_value(k);
		if (inst_credential_source(creds, key) || inst_credential_guest_var(creds, key))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "env key %s belongs to a credential: it cannot be removed", key);
	}
	if (!u->env_set)
		return 0;
	*plain = json_object();
	*rotate = json_object();
	const char *key;
	json_t *v;
	json_object_foreach (u->env_set, key, v) {
		if (inst_credential_source(creds, key)) {
			if (inst_credential_value_check(key, v, err) < 0)
				return -1;
			json_object_set(*rotate, key, v);
		} else if (inst_credential_guest_var(creds, key)) {
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env.%s` is a credential's placeholder in the guest; to "
			                  "change its value, set its source key",
			                  key);
		} else {
			json_object_set(*plain, key, v);
		}
	}
	return 0;
}

int hm_instances_update(struct hm_instances *in, const char *key,
                        const struct hm_instance_update *u, struct hm_instance_view **ret,
                        struct hm_err **err)
{
	if (check_update(u, err) < 0)
		return -1;
	bool needs_stopped = u->image || u->cmd_set || u->vcpus || u->mem_bytes;
	/* Under the op lock, and only the spec (and image): an operation or a VM's
	 * end that writes the row meanwhile is neither undone nor lost. */
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	struct hm_image_info img = { 0 };
	json_t *spec = inst_spec_of(&row);
	int r = 0;
	json_t *shown, *k, *creds, *env_set = u->env_set;
	_cleanup_json_ json_t *plain = NULL, *rotate = NULL;
	size_t i;
	enum hm_state state = inst_state(in, &row);
	if ((needs_stopped || u->env_set || u->env_del || u->restart_set) &&
	    check_not_template(&row, spec, "change what it runs (only tags and the delete lock)",
	                       err) < 0) {
		r = -1;
		goto out;
	}
	if (needs_stopped && state != HM_STATE_STOPPED) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; its image, command, vcpus and memory change "
		               "only while it is Stopped",
		               row.name, hm_state_name(state));
		goto out;
	}
	if (u->image) {
		if (hm_images_ensure(in->images, u->image, 10 * 60 * 1000, &img, err) < 0) {
			r = -1;
			goto out;
		}
	} else if (u->env_del || u->env_replace || u->cmd_set) {
		/* env and cmd are combined with the image's config again (a removed
		 * key may be the image's to set); new keys alone merge in below */
		if (hm_images_resolve(in->images, row.image, &img, err) < 0) {
			r = hm_err_wrap(err, "the instance's image");
			goto out;
		}
	}
	/* Credentials: a source key's new value rotates what the egress proxy
	 * injects (its next connection, once the rest is stored); the guest's
	 * placeholders stay. */
	creds = json_object_get(spec, "credentials");
	if (json_array_size(creds) && (u->env_set || u->env_del) &&
	    split_credential_env(creds, u, &plain, &rotate, err) < 0) {
		r = -1;
		goto out;
	}
	if (plain)
		env_set = plain;
	shown = json_object_get(spec, "env");
	if (!json_is_object(shown) || (env_set && u->env_replace))
		json_object_set_new(spec, "env", shown = json_object());
	if (env_set) {
		json_object_update(shown, env_set);
		json_t *full = json_object_get(spec, "full_env");
		if (!json_is_object(full))
			json_object_set_new(spec, "full_env", full = json_object());
		json_object_update(full, env_set);
	}
	json_array_foreach (u->env_del, i, k)
		json_object_del(shown, json_string_value(k));
	json_array_foreach (creds, i, k) {
		const char *var = json_string_value(json_object_get(k, "env"));
		json_object_set_new(shown, var, json_sprintf("mock-%s", var));
	}
	if (u->tags)
		json_object_set_new(spec, "tags", json_deep_copy(u->tags));
	if (u->delete_lock >= 0)
		json_object_set_new(spec, "delete_lock", json_boolean(u->delete_lock));
	if (u->cmd_set) {
		if (u->cmd)
			json_object_set(spec, "cmd", u->cmd);
		else
			json_object_del(spec, "cmd");
	}
	if (u->vcpus)
		json_object_set_new(spec, "vcpus", json_integer(u->vcpus));
	if (u->mem_bytes)
		json_object_set_new(spec, "mem_bytes", json_integer(u->mem_bytes));
	if (u->restart_set) {
		if (u->restart.policy != HM_RESTART_NEVER &&
		    json_is_true(json_object_get(spec, "delete_on_stop"))) {
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			               "instance `%s` is deleted when it stops; it cannot have a "
			               "restart policy",
			               row.name);
			goto out;
		}
		json_object_set_new(spec, "restart", inst_restart_json(&u->restart));
	}
	if (u->auto_standby_set) /* takes effect at the controller's next look */
		json_object_set_new(spec, "auto_standby", inst_auto_standby_json(&u->auto_standby));
	if (img.config && inst_spec_command(spec, img.config, err) < 0) {
		r = -1;
		goto out;
	}
	free(row.spec);
	row.spec = json_dumps(spec, JSON_COMPACT);
	if (u->image) {
		free(row.image);
		row.image = xstrdup(img.name ? img.name : u->image);
		free(row.image_digest);
		row.image_digest = xstrdup(img.digest ? img.digest : "");
		r = hm_store_instance_update(in->st, &row, err);
	} else {
		r = hm_store_instance_set_spec(in->st, row.id, row.spec, err);
	}
	/* The values last: an update refused on the way rotates nothing. */
	if (r == 0 && json_object_size(rotate))
		r = inst_secrets_rotate(in, row.id, rotate, err);
	if (r == 0) {
		inst_oplog(
		    in, row.id,
		    "msg=updated env=%zu env_removed=%zu credentials_rotated=%zu image=\"%s\"",
		    json_object_size(env_set), json_array_size(u->env_del),
		    json_object_size(rotate), u->image ? row.image : "");
		*ret = inst_view(in, &row);
	}
out:
	json_decref(spec);
	hm_image_info_done(&img);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}
