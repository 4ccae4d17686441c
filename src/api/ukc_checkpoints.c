/*
 * api/ukc_checkpoints: Unikraft Cloud checkpoints over the engine's
 * snapshots (instance/snapshots.c). A checkpoint of a running (or standby)
 * instance holds its memory and devices (a Standby snapshot), one of a
 * stopped instance its disks (a Stopped snapshot); either way it is the same
 * object /snapshots shows, named by uuid or name here. UKC lists checkpoints
 * as instances in state `checkpoint`; creating an instance with
 * `checkpoint` (ukc_instances.c) forks one. An instance's history is its
 * checkpoints, oldest first.
 *
 * A checkpoint is made before the answer, so a `timeout_s` of -1 or more
 * is met as it is made; 0 (answer at once, the checkpoint made after) is
 * refused.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/names.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "instance/instances.h"

static struct hm_instances *instances(struct hm_req *req)
{
	return hm_req_services(req)->instances;
}

int ukc_checkpoint_resolve(struct hm_instances *in, const struct ukc_ref *r,
                           struct hm_snapshot_view **ret, struct hm_err **err)
{
	*ret = NULL;
	if (ukc_ref_check(r, err) < 0)
		return -1;
	const char *key = r->uuid ? r->uuid : r->name;
	struct hm_snapshot_view *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	bool same = false;
	if (hm_snapshots_get(in, key, &v, &e) == 0)
		same = ukc_ref_is(r, v->uuid, v->name);
	else if (hm_err_is_kind(&e, HM_ERR_CONFLICT) && r->name)
		return hm_err_set(err, HM_ERR_CONFLICT, "ambiguous",
		                  "more than one checkpoint is named '%.80s': name it by uuid",
		                  r->name);
	else if (!hm_err_is_kind(&e, HM_ERR_NOT_FOUND)) {
		*err = TAKE_PTR(e);
		return -1;
	}
	if (!same) {
		hm_snapshot_view_free(v);
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
		                  "No checkpoint with %s '%.80s'", r->uuid ? "uuid" : "name", key);
	}
	*ret = v;
	return 0;
}

/* A checkpoint as UKC lists it: an instance in state `checkpoint`. */
static json_t *checkpoint_out(const struct hm_snapshot_view *v, bool details)
{
	json_t *o = json_pack("{s:s,s:s,s:s}", "uuid", v->uuid ? v->uuid : "", "name",
	                      v->name ? v->name : v->id, "state", "checkpoint");
	if (!details)
		return o;
	json_object_set_new(o, "created_at", json_string(v->created_at));
	if (v->image)
		json_object_set_new(o, "image", json_string(v->image));
	json_object_set_new(o, "memory_mb", json_integer(v->mem_bytes >> 20));
	json_object_set_new(o, "vcpus", json_integer(v->vcpus));
	json_object_set_new(o, "tags", ukc_tags_out(v->tags));
	json_object_set_new(o, "stateful", json_boolean(v->kind == HM_SNAPSHOT_STANDBY));
	return o;
}

/* ---- the checkpoint kind ---- */

static int resolve_any(struct hm_req *req, const struct ukc_ref *r, void **ret, struct hm_err **err)
{
	return ukc_checkpoint_resolve(instances(req), r, (struct hm_snapshot_view **)ret, err);
}

static void identity(const void *v, const char **uuid, const char **name)
{
	const struct hm_snapshot_view *sv = v;
	*uuid = sv->uuid;
	*name = sv->name ? sv->name : sv->id;
}

static void free_any(void *v)
{
	hm_snapshot_view_free(v);
}

/* Listed with the instances, as UKC lists checkpoints. */
static const struct ukc_kind checkpoint_kind = { "instances", resolve_any, identity, free_any };

/* ---- create: [{from, name?, tags?, timeout_s?}] ---- */

int ukc_h_checkpoints_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	_cleanup_json_ json_t *one = json_is_object(body) ? json_pack("[O]", body) : NULL;
	json_t *list = one ? one : body;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_json",
		    "the body must be an array of {\"from\": {\"uuid\"|\"name\": ...}}");
	size_t n = json_array_size(list);
	if (n > UKC_MAX_REFS)
		return hm_err_set(err, HM_ERR_INVALID, "too_many",
		                  "the body lists %zu checkpoints; at most %d per request", n,
		                  UKC_MAX_REFS);
	/* Every item read before anything is made. */
	_cleanup_free_ struct ukc_ref *froms = xcalloc(n, sizeof(*froms));
	json_t **tags = xcalloc(n, sizeof(*tags));
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		json_t *item = json_array_get(list, i);
		char where[40];
		snprintf(where, sizeof(where), "item [%zu]", i);
		const char *name = NULL;
		long long timeout_s;
		_cleanup_free_ struct ukc_ref *refs = NULL;
		size_t nrefs = 0;
		_cleanup_err_ struct hm_err *e = NULL;
		json_t *from = json_object_get(item, "from");
		if (!json_is_object(item))
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_json", "%s must be an object",
			               where);
		else if (!json_is_object(from) || ukc_body_refs(from, &refs, &nrefs, &e) < 0)
			r = hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "%s: `from` must name the instance: {\"uuid\"|\"name\": ...}", where);
		else if (ukc_body_str(item, "name", &name, err) < 0 ||
		         ukc_body_int(item, "timeout_s", -1, -1, 24 * 3600, &timeout_s, err) < 0 ||
		         ukc_tags_in(json_object_get(item, "tags"), "tags", &tags[i], err) < 0)
			r = hm_err_wrap(err, "%s", where);
		else if (timeout_s == 0)
			r = hm_err_set(
			    err, HM_ERR_INVALID, "unsupported_field",
			    "%s: `timeout_s` 0 (answer before the checkpoint is made) is not "
			    "available: a checkpoint is made before the answer",
			    where);
		else if ((name && hm_name_check("checkpoint", name, err) < 0) ||
		         (tags[i] && hm_tags_validate(tags[i], err) < 0))
			r = hm_err_wrap(err, "%s", where);
		else
			froms[i] = (struct ukc_ref){ refs[0].uuid, refs[0].name, item };
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			json_decref(tags[i]);
		free(tags);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = 0; i < n; i++) {
		json_t *item = froms[i].item;
		const char *name = json_string_value(json_object_get(item, "name"));
		_cleanup_free_ char *made = name ? NULL : ukc_random_name();
		struct ukc_ref src = { froms[i].uuid, froms[i].name, NULL };
		_cleanup_err_ struct hm_err *e = NULL;
		struct hm_instance_view *iv = NULL;
		struct hm_snapshot_view *sv = NULL;
		if (ukc_instance_resolve(instances(req), &src, &iv, &e) == 0) {
			/* Memory and devices while it runs (or sleeps), its disks when stopped. */
			bool live = iv->state == HM_STATE_RUNNING || iv->state == HM_STATE_STANDBY;
			struct hm_snapshot_create c = {
				.kind = live ? HM_SNAPSHOT_STANDBY : HM_SNAPSHOT_STOPPED,
				.name = name ? name : made,
				.tags = tags[i],
			};
			if (hm_snapshots_create(instances(req), iv->id, &c, &sv, &e) == 0) {
				ukc_batch_ok(&b, checkpoint_out(sv, false));
				hm_snapshot_view_free(sv);
			} else {
				struct ukc_ref named = { NULL, name ? name : made, NULL };
				ukc_batch_fail(&b, &named, e);
			}
		} else {
			ukc_batch_fail(&b, &src, e);
		}
		hm_instance_view_free(iv);
	}
	for (size_t i = 0; i < n; i++)
		json_decref(tags[i]);
	free(tags);
	return ukc_batch_reply(resp, &b, "instances");
}

/* ---- list, get, delete ---- */

static int op_get(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	const struct hm_snapshot_view *v = view;
	(void)req;
	(void)err;
	json_t *o = checkpoint_out(v, !json_is_false(json_object_get(opts, "details")));
	json_object_update(entry, o);
	json_decref(o);
	return 0;
}

int ukc_h_checkpoints_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_(ukc_list_done) struct ukc_list q = { 0 };
	if (ukc_list_parse(req, &q, err) < 0)
		return -1;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t nrefs = 0;
	if (ukc_query_refs(req, &refs, &nrefs, err) < 0)
		return -1;
	_cleanup_json_ json_t *opts = json_pack("{s:b}", "details", q.details);
	if (nrefs > 0)
		return ukc_each(req, resp, &checkpoint_kind, refs, nrefs, opts, op_get);
	struct hm_snapshot_view *views = NULL;
	size_t n = 0;
	if (hm_snapshots_list(instances(req), NULL, -1, NULL, q.tags, &views, &n, err) < 0)
		return -1;
	_cleanup_free_ const char **uuids = xcalloc(n ? n : 1, sizeof(*uuids));
	for (size_t i = 0; i < n; i++)
		uuids[i] = views[q.desc ? n - 1 - i : i].uuid;
	size_t first;
	if (ukc_page(&q, uuids, n, "checkpoint", &first, err) < 0) {
		hm_snapshot_views_free(views, n);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = first; i < n && (q.count == 0 || i - first < (size_t)q.count); i++)
		ukc_batch_ok(&b, checkpoint_out(&views[q.desc ? n - 1 - i : i], q.details));
	hm_snapshot_views_free(views, n);
	return ukc_batch_reply(resp, &b, "instances");
}

int ukc_h_checkpoint_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &checkpoint_kind, op_get, err);
}

static int op_delete(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_snapshot_view *v = view;
	(void)opts;
	(void)entry;
	return hm_snapshots_delete(instances(req), v->id, err);
}

int ukc_h_checkpoints_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &checkpoint_kind, op_delete, err);
}

int ukc_h_checkpoint_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &checkpoint_kind, op_delete, err);
}

/* ---- an instance's history: its checkpoints ---- */

static int op_history(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                      struct hm_err **err)
{
	(void)opts;
	const struct hm_instance_view *iv = view;
	struct hm_snapshot_view *views = NULL;
	size_t nv = 0;
	if (hm_snapshots_list(instances(req), iv->id, -1, NULL, NULL, &views, &nv, err) < 0)
		return -1;
	json_t *h = json_array();
	for (size_t k = 0; k < nv; k++)
		json_array_append_new(h, json_pack("{s:s,s:s,s:s}", "uuid",
		                                   views[k].uuid ? views[k].uuid : "", "name",
		                                   views[k].name ? views[k].name : views[k].id,
		                                   "created_at", views[k].created_at));
	hm_snapshot_views_free(views, nv);
	json_object_set_new(entry, "history", h);
	return 0;
}

int ukc_h_instances_history(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_query(req, resp, &ukc_instance_kind, NULL, op_history, err);
}

int ukc_h_instance_history(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_history, err);
}
