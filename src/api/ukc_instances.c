/*
 * api/ukc_instances: the Unikraft Cloud instance endpoints (/v1/instances...)
 * over the instance domain. This file parses UKC's requests into the
 * domain's typed calls and says, per instance, how each went; the envelope
 * and the Instance object are ukc_envelope.c's and ukc_instance.c's.
 *
 * A ref names an instance by uuid or by name and by nothing else: the
 * domain's wider lookup (ids, id prefixes) is narrowed back after it, so
 * `{"name": "ab"}` never finds an instance whose id starts with "ab".
 *
 * Validation that makes a request unreadable (a wrong type, uuid and name
 * both given, a field not built) is a 400 for the whole request and nothing
 * is done; what goes wrong for one instance of several is that entry's
 * error, and the others go on.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "api/ukc_read.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "ingress/groups.h"
#include "instance/instances.h"
#include "volume/volumes.h"

/* A drain (drain_timeout_ms -1) lasts at most this long. */
#define UKC_DRAIN_MAX_MS (5L * 60 * 1000)
/* A log read returns at most this many bytes (and this many when no limit is given). */
#define UKC_LOG_MAX (1L << 20)

static struct hm_instances *instances(struct hm_req *req)
{
	return hm_req_services(req)->instances;
}

/* ---- refs to views ---- */

/* ---- the instance kind ---- */

static int resolve_any(struct hm_req *req, const struct ukc_ref *r, void **ret, struct hm_err **err)
{
	return ukc_instance_resolve(instances(req), r, (struct hm_instance_view **)ret, err);
}

static void identity(const void *v, const char **uuid, const char **name)
{
	const struct hm_instance_view *iv = v;
	*uuid = iv->uuid;
	*name = iv->name;
}

static void free_any(void *v)
{
	hm_instance_view_free(v);
}

const struct ukc_kind ukc_instance_kind = { "instances", resolve_any, identity, free_any };

/* Wait for Running after a start; Stopped counts (the program ran and ended). */
static int await_running(struct hm_instances *in, const struct hm_instance_view *v, long ms,
                         json_t *entry, struct hm_err **err)
{
	if (ms <= 0)
		return 0;
	struct hm_wait_result w = { 0 };
	if (hm_instances_wait(in, v->id, HM_STATE_RUNNING, ms, &w, err) < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(w.state)));
	bool timed_out = w.timed_out;
	free(w.state_error);
	if (timed_out)
		return hm_err_set(err, HM_ERR_TIMEOUT, "timeout",
		                  "instance '%s' did not reach running within %ld s", v->name,
		                  ms / 1000);
	return 0;
}

/* ---- create: the request read by ukc_create_in (ukc_read.c), then acted on ---- */

/*
 * The create's volumes: existing ones looked up, new ones made here, before
 * the instance; a create that fails afterwards deletes what was made
 * (volumes_drop), so nothing is left.
 */
struct create_volumes {
	struct hm_volume_view *v[HM_MAX_ATTACH];
	bool made[HM_MAX_ATTACH];
	size_t n;
};

static void volumes_drop(struct hm_req *req, struct create_volumes *cv, bool delete_made)
{
	for (size_t i = 0; i < cv->n; i++) {
		if (delete_made && cv->made[i])
			hm_volumes_delete(hm_req_services(req)->volumes, cv->v[i]->id, NULL);
		hm_volume_view_free(cv->v[i]);
	}
	cv->n = 0;
}

static int volumes_get(struct hm_req *req, struct ukc_create *uc, struct create_volumes *cv,
                       struct hm_err **err)
{
	struct hm_volumes *vs = hm_req_services(req)->volumes;
	for (size_t i = 0; i < uc->nvols; i++) {
		const struct ukc_create_volume *u = &uc->vols[i];
		int r;
		if (u->is_new) {
			r = ukc_volume_make(vs, &u->spec, &cv->v[i], err);
		} else {
			r = ukc_volume_resolve(vs, &u->ref, &cv->v[i], err);
		}
		if (r < 0) {
			hm_err_wrap(err, "volumes[%zu]", i);
			volumes_drop(req, cv, true);
			return -1;
		}
		cv->made[i] = u->is_new;
		cv->n = i + 1;
		uc->c.volumes[i] = (struct hm_attach){
			.volume = cv->v[i]->id,
			.mount_path = u->at,
			.readonly = u->readonly,
		};
	}
	uc->c.nvolumes = cv->n;
	return 0;
}

static int copy_create(struct hm_req *req, struct hm_resp *resp, const struct ukc_create *uc,
                       struct hm_err **err);
static int not_a_template(const struct hm_instance_view *v, struct hm_err **err);

/* How long a stateful first start waits for its program's port. */
#define UKC_PRIME_MS 60000

static struct hm_ingresses *ingresses(struct hm_req *req)
{
	return hm_req_services(req)->ingresses;
}

/* The create's service group: looked up, or made for this instance alone. */
static int group_get(struct hm_req *req, const struct ukc_create *uc, const char *name,
                     struct hm_group_view **ret, bool *own, struct hm_err **err)
{
	*ret = NULL;
	*own = false;
	switch (uc->group) {
	case UKC_GROUP_NONE:
		return 0;
	case UKC_GROUP_EXISTING:
		return ukc_group_resolve(req, &uc->group_ref, ret, err);
	case UKC_GROUP_NEW:
		if (hm_groups_create(ingresses(req), name, &uc->group_spec, "service_group.", ret,
		                     err) < 0)
			return -1;
		*own = true;
		return 0;
	}
	abort();
}

/*
 * Stateful scale to zero as UKC starts it: boot, wait until the program
 * accepts on the group's first port that goes to the instance, then standby,
 * so that the first request is a restore. A prime that cannot be asked
 * leaves the instance running (its cooldown puts it to sleep).
 */
static void prime(struct hm_req *req, const struct hm_instance_view *v,
                  const struct hm_auto_standby *p, const struct hm_group_view *g)
{
	if (!p->enabled || p->cold)
		return;
	for (size_t i = 0; i < g->nsvcs; i++) {
		if (g->svcs[i].handlers & HM_SVC_REDIRECT)
			continue;
		hm_instances_prime(instances(req), v->id, g->svcs[i].dest_port, UKC_PRIME_MS, NULL);
		return;
	}
}

/* A create that made nothing lets its group go (its own is deleted). */
static void group_drop(struct hm_req *req, struct hm_group_view *g, bool own)
{
	if (g && own)
		hm_groups_delete(ingresses(req), g->uuid, NULL);
	hm_group_view_free(g);
}

static int image_create(struct hm_req *req, struct hm_resp *resp, struct ukc_create *uc,
                        struct hm_err **err)
{
	_cleanup_free_ char *made_name = uc->name ? NULL : ukc_random_name();
	const char *name = uc->name ? uc->name : made_name;
	/* The group first, so that what is wrong with it is found before anything is made. */
	struct hm_group_view *group = NULL;
	bool own_group = false;
	if (group_get(req, uc, name, &group, &own_group, err) < 0)
		return -1;
	struct create_volumes cv = { .n = 0 };
	if (volumes_get(req, uc, &cv, err) < 0) {
		group_drop(req, group, own_group);
		if (hm_err_is_kind(err, HM_ERR_INVALID))
			return -1;
		struct ukc_batch b;
		ukc_batch_init(&b);
		struct ukc_ref named = { NULL, name, NULL };
		ukc_batch_fail(&b, &named, *err);
		hm_err_free(*err);
		*err = NULL;
		return ukc_batch_reply(resp, &b, "instances");
	}
	/*
	 * The instance, then its replicas: `<name>-1`, `<name>-2`, ... (each a
	 * made-up name when none was asked for). What the first finds wrong
	 * with the request is a 400 and nothing is made; a replica that cannot
	 * be made is its entry's error, the others stand.
	 */
	struct hm_instances *in = instances(req);
	size_t total = (size_t)uc->replicas + 1;
	struct hm_instance_view *made[UKC_MAX_REPLICAS + 1] = { 0 };
	struct hm_err *errs[UKC_MAX_REPLICAS + 1] = { 0 };
	char *names[UKC_MAX_REPLICAS + 1] = { 0 };
	for (size_t k = 0; k < total; k++) {
		names[k] = k == 0      ? xstrdup(name)
		           : made_name ? ukc_random_name()
		                       : xasprintf("%s-%zu", name, k);
		struct hm_instance_create ck = uc->c;
		ck.name = names[k];
		if (hm_instances_create(in, &ck, &made[k], &errs[k]) < 0 && k == 0 &&
		    hm_err_is_kind(&errs[0], HM_ERR_INVALID)) {
			volumes_drop(req, &cv, true);
			group_drop(req, group, own_group);
			free(names[0]);
			*err = errs[0];
			return -1; /* the request, not the instance: a 400 */
		}
		if (made[k] && group &&
		    hm_groups_attach(ingresses(req), group->uuid, made[k]->id, &errs[k]) < 0) {
			hm_instances_delete(in, made[k]->id, false, NULL);
			hm_instance_view_free(made[k]);
			made[k] = NULL;
		}
		if (made[k] && group && uc->autostart)
			prime(req, made[k], &uc->c.auto_standby, group);
	}
	volumes_drop(req, &cv, made[0] == NULL);
	bool any = false;
	for (size_t k = 0; k < total; k++)
		any |= made[k] != NULL;
	if (!any)
		group_drop(req, group, own_group);
	else
		hm_group_view_free(group);
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t k = 0; k < total; k++) {
		struct hm_instance_view *v = made[k];
		if (!v) {
			struct ukc_ref named = { NULL, names[k], NULL };
			ukc_batch_fail(&b, &named, errs[k]);
			hm_err_free(errs[k]);
			free(names[k]);
			continue;
		}
		free(names[k]);
		_cleanup_err_ struct hm_err *werr = NULL;
		json_t *entry = ukc_instance(req, v, true);
		if (await_running(in, v, uc->wait_ms, entry, &werr) < 0) {
			json_decref(entry);
			struct ukc_ref named = { v->uuid, v->name, NULL };
			ukc_batch_fail(&b, &named, werr);
		} else {
			/* The state after the wait, not the one at create. */
			struct hm_instance_view *now = NULL;
			if (uc->wait_ms > 0 && hm_instances_get(in, v->id, &now, NULL) == 0) {
				json_decref(entry);
				entry = ukc_instance(req, now, true);
				hm_instance_view_free(now);
			}
			ukc_batch_ok(&b, entry);
		}
		hm_instance_view_free(v);
	}
	return ukc_batch_reply(resp, &b, "instances");
}

int ukc_h_instances_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct ukc_create uc;
	if (ukc_create_in(hm_req_json(req), &uc, err) < 0)
		return -1;
	int r = uc.from == UKC_FROM_IMAGE ? image_create(req, resp, &uc, err)
	                                  : copy_create(req, resp, &uc, err);
	ukc_create_done(&uc);
	return r;
}

/*
 * A create with branch_from: a fork of that instance (stopped, in standby or
 * running: a running one is paused for the copy and runs on); with template
 * one of a template; with checkpoint one of that snapshot. Named as a
 * create's, running with autostart (timeout_s waits for it) and stopped
 * without.
 */
static int copy_create(struct hm_req *req, struct hm_resp *resp, const struct ukc_create *uc,
                       struct hm_err **err)
{
	_cleanup_free_ char *made_name = uc->name ? NULL : ukc_random_name();
	struct hm_instances *in = instances(req);
	struct ukc_batch b;
	ukc_batch_init(&b);
	struct ukc_ref named = { NULL, uc->name ? uc->name : made_name, NULL };
	struct hm_instance_view *src = NULL, *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	const char *target = uc->autostart ? "Running" : "Stopped";
	int r;
	if (uc->from == UKC_FROM_CHECKPOINT) {
		/* A copy of the checkpoint: running on from it with autostart (a
		 * restore when it holds memory, else a boot), stopped without. */
		struct hm_snapshot_view *sv = NULL;
		if (ukc_checkpoint_resolve(in, &uc->source, &sv, &e) < 0) {
			ukc_batch_fail(&b, &named, e);
			return ukc_batch_reply(resp, &b, "instances");
		}
		struct hm_snapshot_bring sb = { .name = named.name, .target_state = target };
		r = hm_snapshots_fork(in, sv->id, &sb, &v, &e);
		hm_snapshot_view_free(sv);
	} else {
		if (ukc_instance_resolve(in, &uc->source, &src, &e) < 0 ||
		    (uc->from == UKC_FROM_TEMPLATE && !src->template_ &&
		     not_a_template(src, &e) < 0)) {
			hm_instance_view_free(src);
			ukc_batch_fail(&b, &named, e);
			return ukc_batch_reply(resp, &b, "instances");
		}
		struct hm_instance_fork f = { .name = named.name,
			                      .target_state = target,
			                      .from_running = true };
		r = hm_instances_fork(in, src->id, &f, &v, &e);
		hm_instance_view_free(src);
	}
	if (r < 0) {
		if (hm_err_is_kind(&e, HM_ERR_INVALID)) {
			*err = TAKE_PTR(e);
			return -1;
		}
		ukc_batch_fail(&b, &named, e);
		return ukc_batch_reply(resp, &b, "instances");
	}
	json_t *entry = NULL;
	_cleanup_json_ json_t *scratch = json_object();
	if (await_running(in, v, uc->wait_ms, scratch, &e) < 0) {
		struct ukc_ref made = { v->uuid, v->name, NULL };
		ukc_batch_fail(&b, &made, e);
	} else {
		struct hm_instance_view *now = NULL;
		if (hm_instances_get(in, v->id, &now, NULL) == 0) {
			entry = ukc_instance(req, now, true);
			hm_instance_view_free(now);
		} else {
			entry = ukc_instance(req, v, true);
		}
		ukc_batch_ok(&b, entry);
	}
	hm_instance_view_free(v);
	return ukc_batch_reply(resp, &b, "instances");
}

/* ---- list and get ---- */

static int op_get(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)in;
	(void)err;
	bool details = !json_is_false(json_object_get(opts, "details"));
	json_t *o = ukc_instance(req, v, details);
	json_object_update(entry, o);
	json_decref(o);
	return 0;
}

static int op_get_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                           struct hm_err **err);

/* GET /v1/instances (no templates) and /v1/instances/templates (only them). */
static int list_of(struct hm_req *req, struct hm_resp *resp, bool templates, struct hm_err **err)
{
	_cleanup_(ukc_list_done) struct ukc_list q = { 0 };
	if (ukc_list_parse(req, &q, err) < 0)
		return -1;
	bool details = q.details;
	long long count = q.count;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t nrefs = 0;
	if (ukc_query_refs(req, &refs, &nrefs, err) < 0)
		return -1;
	_cleanup_json_ json_t *opts = json_pack("{s:b}", "details", details);
	if (nrefs > 0)
		return ukc_each(req, resp, &ukc_instance_kind, refs, nrefs, opts,
		                templates ? op_get_template : op_get);

	struct hm_instance_view *views = NULL;
	size_t n = 0;
	if (hm_instances_list(instances(req), NULL, q.tags, &views, &n, err) < 0)
		return -1;
	/* The kind asked for, in order (oldest first; desc: newest first). */
	_cleanup_free_ size_t *at = xcalloc(n ? n : 1, sizeof(*at));
	_cleanup_free_ const char **uuids = xcalloc(n ? n : 1, sizeof(*uuids));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		size_t x = q.desc ? n - 1 - i : i;
		if (views[x].template_ == templates) {
			uuids[k] = views[x].uuid;
			at[k++] = x;
		}
	}
	size_t first;
	if (ukc_page(&q, uuids, k, templates ? "template" : "instance", &first, err) < 0) {
		hm_instance_views_free(views, n);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = first; i < k && (count == 0 || i - first < (size_t)count); i++)
		ukc_batch_ok(&b, ukc_instance(req, &views[at[i]], details));
	hm_instance_views_free(views, n);
	return ukc_batch_reply(resp, &b, "instances");
}

int ukc_h_instances_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return list_of(req, resp, false, err);
}

int ukc_h_instances_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &ukc_instance_kind, op_get, err);
}

/* ---- delete, start, stop, suspend ---- */

static int op_delete(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	json_object_set_new(entry, "previous_state", json_string(ukc_state_name(v->state)));
	/* Force-stopped if it runs, as UKC's delete says. */
	return hm_instances_delete(in, v->id, false, err);
}

int ukc_h_instances_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_delete, err);
}

int ukc_h_instance_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_delete, err);
}

/* entry: state now, previous_state before. */
static void states(json_t *entry, const struct hm_instance_view *before,
                   const struct hm_instance_view *after)
{
	json_object_set_new(entry, "state", json_string(ukc_view_state(after ? after : before)));
	json_object_set_new(entry, "previous_state", json_string(ukc_view_state(before)));
}

static int op_start(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                    struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	long wait_ms = 0;
	if (ukc_start_wait_in(opts, &wait_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	/* A suspended (standby) instance starts where it was. */
	int r = v->state == HM_STATE_STANDBY ? hm_instances_restore(in, v->id, &after, err)
	                                     : hm_instances_start(in, v->id, NULL, &after, err);
	if (r < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return await_running(in, v, wait_ms, entry, err);
}

int ukc_h_instances_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_start, err);
}

int ukc_h_instance_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_start, err);
}

/* drain_timeout_ms: how long a stop or suspend first waits for the
 * connections our edges hold to close (-1: the most), none taken meanwhile. */
static int drain_in(json_t *opts, long *ret, struct hm_err **err)
{
	long long ms;
	if (ukc_body_int(opts, "drain_timeout_ms", 0, -1, UKC_DRAIN_MAX_MS, &ms, err) < 0)
		return -1;
	*ret = ms < 0 ? UKC_DRAIN_MAX_MS : (long)ms;
	return 0;
}

static int op_stop(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                   struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	bool force;
	long drain_ms;
	if (ukc_body_bool(opts, "force", &force, err) < 0 || drain_in(opts, &drain_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	/* As UKC's: the answer does not wait for the stop (wait for `stopped`);
	 * a drain first shows `draining`. */
	if (hm_instances_stop_begin(in, v->id, force ? 0 : -1, drain_ms, &after, err) < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_stop, err);
}

int ukc_h_instance_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_stop, err);
}

static int op_suspend(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                      struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	long drain_ms;
	if (drain_in(opts, &drain_ms, err) < 0)
		return -1;
	/* A suspend waits for its drain: the answer says where it went. */
	if (drain_ms > 0 && v->state == HM_STATE_RUNNING &&
	    hm_instances_drain(in, v->id, drain_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	if (hm_instances_standby(in, v->id, NULL, &after, err) < 0) {
		if (drain_ms > 0)
			hm_instances_drain_end(in, v->id);
		return -1;
	}
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_suspend(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_suspend, err);
}

int ukc_h_instance_suspend(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_suspend, err);
}

/* ---- wait ---- */

static int wait_target(const char *name, enum hm_state *ret, struct hm_err **err)
{
	static const struct {
		const char *name;
		enum hm_state state;
	} targets[] = {
		{ "running", HM_STATE_RUNNING },
		{ "stopped", HM_STATE_STOPPED },
		{ "standby", HM_STATE_STANDBY },
	};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (strcmp(name, targets[i].name) == 0) {
			*ret = targets[i].state;
			return 0;
		}
	return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
	                  "`state`: `%.40s` cannot be waited for; use running, stopped or standby",
	                  name);
}

static int op_wait(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                   struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	enum hm_state target = (enum hm_state)json_integer_value(json_object_get(opts, "target"));
	long ms = (long)json_integer_value(json_object_get(opts, "timeout_ms"));
	struct hm_wait_result w = { 0 };
	if (hm_instances_wait(in, v->id, target, ms, &w, err) < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(w.state)));
	free(w.state_error);
	if (w.state == target)
		return 0;
	if (w.timed_out)
		return hm_err_set(err, HM_ERR_TIMEOUT, "timeout",
		                  "instance '%s' did not become %s within %ld ms (it is %s)",
		                  v->name, ukc_state_name(target), ms, ukc_state_name(w.state));
	return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
	                  "instance '%s' is %s and will not become %s without a request", v->name,
	                  ukc_state_name(w.state), ukc_state_name(target));
}

static int wait_opts(struct hm_req *req, json_t **ret, struct hm_err **err)
{
	const char *state = NULL;
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *val;
		hm_req_query_at(req, i, &k, &val);
		if (strcmp(k, "state") == 0)
			state = val;
	}
	enum hm_state target = HM_STATE_RUNNING;
	if (state && wait_target(state, &target, err) < 0)
		return -1;
	long long s, ms;
	if (ukc_query_int(req, "timeout_s", -2, -1, UKC_WAIT_MAX_MS / 1000, &s, err) < 0 ||
	    ukc_query_int(req, "timeout_ms", -2, -1, UKC_WAIT_MAX_MS, &ms, err) < 0)
		return -1;
	/* -1 or neither given: as long as a wait may be held. */
	long wait_ms = s >= 0    ? (long)s * 1000
	               : s == -1 ? UKC_WAIT_MAX_MS
	               : ms >= 0 ? (long)ms
	                         : UKC_WAIT_MAX_MS;
	*ret = json_pack("{s:i,s:I}", "target", (int)target, "timeout_ms", (json_int_t)wait_ms);
	return 0;
}

/*
 * The wait's options from a body item ({state?, timeout_ms?}, as the API
 * document has them; -1 or none: as long as a wait may be held), in the form
 * op_wait reads.
 */
static int wait_item(json_t *item, const char *where, json_t **ret, struct hm_err **err)
{
	const char *state = NULL;
	long long ms;
	if (ukc_body_str(item, "state", &state, err) < 0 ||
	    ukc_body_int(item, "timeout_ms", -1, -1, UKC_WAIT_MAX_MS, &ms, err) < 0)
		return hm_err_wrap(err, "%s", where);
	enum hm_state target = HM_STATE_RUNNING;
	if (state && wait_target(state, &target, err) < 0)
		return hm_err_wrap(err, "%s", where);
	*ret = json_pack("{s:i,s:I}", "target", (int)target, "timeout_ms",
	                 (json_int_t)(ms < 0 ? UKC_WAIT_MAX_MS : ms));
	return 0;
}

/* The query may not carry the options a body gives. */
static int body_or_query(struct hm_req *req, struct hm_err **err)
{
	static const char *const keys[] = { "uuid", "name", "state", "timeout_s", "timeout_ms" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (hm_req_query(req, keys[i]))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_query",
			    "`%s`: give the wait in the body or in the query, not both", keys[i]);
	return 0;
}

int ukc_h_instances_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	json_t *body = hm_req_json(req);
	if (body) {
		/* [{uuid|name, state?, timeout_ms?}], as the API document sends it */
		if (body_or_query(req, err) < 0 || ukc_body_refs(body, &refs, &n, err) < 0)
			return -1;
		_cleanup_json_ json_t *items = json_array();
		for (size_t i = 0; i < n; i++) {
			char where[32];
			snprintf(where, sizeof(where), "item [%zu]", i);
			json_t *o = NULL;
			if (wait_item(refs[i].item, where, &o, err) < 0)
				return -1;
			json_array_append_new(items, o);
			refs[i].item = o;
		}
		return ukc_each(req, resp, &ukc_instance_kind, refs, n, NULL, op_wait);
	}
	if (wait_opts(req, &opts, err) < 0 || ukc_query_refs(req, &refs, &n, err) < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_query",
		                  "name the instances with `uuid=` or `name=` query parameters "
		                  "(or in a body)");
	return ukc_each(req, resp, &ukc_instance_kind, refs, n, opts, op_wait);
}

int ukc_h_instance_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	json_t *body = hm_req_json(req);
	if (body) {
		if (!json_is_object(body))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
			                  "the body must be an object");
		if (body_or_query(req, err) < 0 || wait_item(body, "the body", &opts, err) < 0)
			return -1;
	} else if (wait_opts(req, &opts, err) < 0) {
		return -1;
	}
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, opts, op_wait);
}

/* ---- log ---- */

static int op_log(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	struct hm_log_range lr;
	if (hm_instances_log_range(in, v->id, json_integer_value(json_object_get(opts, "offset")),
	                           json_integer_value(json_object_get(opts, "limit")), &lr,
	                           err) < 0)
		return -1;
	_cleanup_free_ char *b64 = hm_base64_encode(lr.data, lr.len);
	free(lr.data);
	json_object_set_new(entry, "output", json_string(b64));
	json_object_set_new(entry, "available",
	                    json_pack("{s:I,s:I}", "start", (json_int_t)lr.avail_start, "end",
	                              (json_int_t)lr.avail_end));
	json_object_set_new(
	    entry, "range",
	    json_pack("{s:I,s:I}", "start", (json_int_t)lr.start, "end", (json_int_t)lr.end));
	json_object_set_new(entry, "state", json_string(ukc_state_name(v->state)));
	return 0;
}

static int log_opts(struct hm_req *req, json_t **ret, struct hm_err **err)
{
	long long offset, limit;
	if (ukc_query_int(req, "offset", 0, -(1LL << 50), 1LL << 50, &offset, err) < 0 ||
	    ukc_query_int(req, "limit", UKC_LOG_MAX, 0, UKC_LOG_MAX, &limit, err) < 0)
		return -1;
	*ret = json_pack("{s:I,s:I}", "offset", (json_int_t)offset, "limit", (json_int_t)limit);
	return 0;
}

int ukc_h_instances_log(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	if (log_opts(req, &opts, err) < 0 || ukc_query_refs(req, &refs, &n, err) < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_query",
		                  "name the instances with `uuid=` or `name=` query parameters");
	return ukc_each(req, resp, &ukc_instance_kind, refs, n, opts, op_log);
}

int ukc_h_instance_log(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	if (log_opts(req, &opts, err) < 0)
		return -1;
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, opts, op_log);
}

/* ---- metrics ---- */

static int op_metrics(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                      struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	struct hm_instance_stats s;
	if (hm_instances_stats(in, v->id, &s, err) < 0)
		return -1;
	json_object_set_new(entry, "rss_bytes", json_integer(s.rss_bytes));
	json_object_set_new(entry, "cpu_time_ms", json_integer((json_int_t)(s.cpu_seconds * 1000)));
	json_object_set_new(entry, "rx_bytes", json_integer((json_int_t)s.rx_bytes));
	json_object_set_new(entry, "tx_bytes", json_integer((json_int_t)s.tx_bytes));
	json_object_set_new(entry, "rx_packets", json_integer((json_int_t)s.rx_packets));
	json_object_set_new(entry, "tx_packets", json_integer((json_int_t)s.tx_packets));
	json_object_set_new(entry, "boot_time_us", json_integer(v->boot_us));
	json_object_set_new(entry, "nconns", json_integer(s.conns));
	json_object_set_new(entry, "ntotal", json_integer(s.requests));
	return 0;
}

int ukc_h_instances_metrics(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_query(req, resp, &ukc_instance_kind, NULL, op_metrics, err);
}

int ukc_h_instance_metrics(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)err;
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, NULL, op_metrics);
}

/* ---- update: [{uuid|name, prop, op, value, id?}], each item read by ukc_update_in ---- */

/* The item (read) as the domain's update of view v: an add of args appends
 * to what it runs with now; tags are changed from the ones it has. */
static void update_of(const struct ukc_update *uu, const struct hm_instance_view *v,
                      struct hm_instance_update *u, json_t **hold)
{
	*u = (struct hm_instance_update){ .delete_lock = -1 };
	switch (uu->prop) {
	case UKC_PROP_IMAGE:
		u->image = uu->image;
		break;
	case UKC_PROP_ARGS:
		u->cmd_set = true;
		if (uu->op == UKC_OP_ADD) {
			*hold = v->cmd ? json_copy(v->cmd) : json_array();
			json_array_extend(*hold, uu->args);
			u->cmd = *hold;
		} else {
			u->cmd = uu->args; /* del: NULL, the image's */
		}
		break;
	case UKC_PROP_ENV:
		if (uu->op != UKC_OP_DEL) {
			u->env_set = uu->env;
			u->env_replace = uu->op == UKC_OP_SET;
		} else if (uu->env_keys) {
			u->env_del = uu->env_keys;
		} else {
			u->env_set = *hold = json_object();
			u->env_replace = true;
		}
		break;
	case UKC_PROP_MEMORY:
		u->mem_bytes = uu->mem_bytes;
		break;
	case UKC_PROP_VCPUS:
		u->vcpus = uu->vcpus;
		break;
	case UKC_PROP_TAGS: {
		json_t *now = *hold = json_deep_copy(v->tags);
		if (uu->op == UKC_OP_SET || !uu->tags)
			json_object_clear(now);
		const char *k;
		json_t *x;
		json_object_foreach (uu->tags, k, x) {
			if (uu->op == UKC_OP_DEL)
				json_object_del(now, k);
			else
				json_object_set(now, k, x);
		}
		u->tags = now;
		break;
	}
	case UKC_PROP_DELETE_LOCK:
		u->delete_lock = uu->delete_lock;
		break;
	case UKC_PROP_SCALE_TO_ZERO:
		u->auto_standby = uu->auto_standby;
		u->auto_standby_set = true;
		break;
	}
}

static int op_update(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	json_t *id = json_object_get(opts, "id");
	if (json_is_string(id))
		json_object_set(entry, "id", id);
	struct ukc_update uu;
	if (ukc_update_in(opts, &uu, err) < 0)
		return -1;
	struct hm_instance_update u;
	_cleanup_json_ json_t *hold = NULL;
	update_of(&uu, v, &u, &hold);
	struct hm_instance_view *after = NULL;
	int r = hm_instances_update(instances(req), v->id, &u, &after, err);
	ukc_update_done(&uu);
	if (r < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(after->state)));
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_update, err);
}

int ukc_h_instance_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_update, err);
}

/* ---- templates: stopped instances that never run, to create instances from ---- */

static int not_a_template(const struct hm_instance_view *v, struct hm_err **err)
{
	return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "No template with uuid '%s'",
	                  v->uuid ? v->uuid : v->name);
}

static int op_get_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                           struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	return op_get(req, v, opts, entry, err);
}

static int op_make_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                            struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	struct hm_instance_view *after = NULL;
	if (hm_instances_make_template(in, v->id, &after, err) < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

static int op_delete_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                              struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	return op_delete(req, v, opts, entry, err);
}

static int op_update_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                              struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	const char *prop = json_string_value(json_object_get(opts, "prop"));
	if (prop && strcmp(prop, "tags") != 0 && strcmp(prop, "delete_lock") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "a template's `prop` is tags or delete_lock, not `%.40s`", prop);
	return op_update(req, v, opts, entry, err);
}

int ukc_h_templates_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_make_template, err);
}

int ukc_h_templates_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return list_of(req, resp, true, err);
}

int ukc_h_template_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &ukc_instance_kind, op_get_template, err);
}

int ukc_h_templates_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_delete_template, err);
}

int ukc_h_template_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_delete_template, err);
}

int ukc_h_templates_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_update_template, err);
}

int ukc_h_template_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_update_template, err);
}
