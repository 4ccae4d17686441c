/*
 * h_snapshots: the handlers for standby, restore, fork and the snapshot
 * objects: the Hypeman JSON read into the domain's typed requests and its
 * views rendered. The work is in instance/standby.c and instance/snapshots.c.
 */
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "core/json_cleanup.h"
#include "instance/instances.h"
#include "instance/payload.h"

/* A SnapshotCompressionConfig ({enabled, algorithm: zstd, level}); absent or null: off. */
static int compression_in(json_t *v, struct hm_payload_opts *ret, struct hm_err **err)
{
	*ret = (struct hm_payload_opts){ .compress = false, .level = 1 };
	if (!v || json_is_null(v))
		return 0;
	json_t *en = json_object_get(v, "enabled");
	json_t *alg = json_object_get(v, "algorithm");
	json_t *lvl = json_object_get(v, "level");
	if (!json_is_object(v) || !json_is_boolean(en))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_compression",
		                  "`compression` must be an object with a boolean `enabled`");
	if (!json_is_true(en))
		return 0;
	if (alg && !json_is_null(alg) &&
	    (!json_is_string(alg) || strcmp(json_string_value(alg), "zstd") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_compression",
		                  "`compression.algorithm` %s is not available here: use zstd",
		                  json_is_string(alg) ? json_string_value(alg) : "(not a string)");
	if (lvl && !json_is_null(lvl)) {
		if (!json_is_integer(lvl) || json_integer_value(lvl) < 1 ||
		    json_integer_value(lvl) > 19)
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_compression",
			    "`compression.level` must be an integer from 1 to 19 (zstd)");
		ret->level = (int)json_integer_value(lvl);
	}
	ret->compress = true;
	return 0;
}

int hm_rest_parse_standby(json_t *body, struct hm_payload_opts *opts, struct hm_err **err)
{
	*opts = (struct hm_payload_opts){ .compress = false, .level = 1 };
	if (!body || json_is_null(body))
		return 0;
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	return compression_in(json_object_get(body, "compression"), opts, err);
}

int hm_h_instances_standby(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_payload_opts opts;
	if (hm_rest_parse_standby(hm_req_json(req), &opts, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_instances_standby(hm_req_services(req)->instances, hm_req_param(req, "id"), &opts,
	                         &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_h_instances_restore(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_instances_restore(hm_req_services(req)->instances, hm_req_param(req, "id"), &inst,
	                         err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_rest_parse_fork(json_t *body, struct hm_instance_fork *f, struct hm_err **err)
{
	*f = (struct hm_instance_fork){ 0 };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *name = json_object_get(body, "name");
	json_t *target = json_object_get(body, "target_state");
	json_t *fr = json_object_get(body, "from_running");
	if (name && !json_is_string(name))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	if (target && !json_is_null(target) && !json_is_string(target))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_target_state",
		                  "`target_state` must be Stopped, Standby or Running");
	if (fr && !json_is_null(fr) && !json_is_boolean(fr))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`from_running` must be a boolean");
	*f = (struct hm_instance_fork){ .name = json_string_value(name),
		                        .target_state = json_string_value(target),
		                        .from_running = json_is_true(fr) };
	return 0;
}

int hm_h_instances_fork(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_fork f;
	if (hm_rest_parse_fork(hm_req_json(req), &f, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_instances_fork(hm_req_services(req)->instances, hm_req_param(req, "id"), &f, &inst,
	                      err) < 0)
		return -1;
	return hm_resp_instance(resp, 201, inst);
}

/* The Hypeman Snapshot object. */
static json_t *snapshot_json(const struct hm_snapshot_view *v)
{
	json_t *o = json_pack("{s:s,s:s,s:O,s:s,s:s,s:s,s:s,s:I,s:s}", "id", v->id, "kind",
	                      hm_snapshot_kind_name(v->kind), "tags", v->tags, "source_instance_id",
	                      v->source_id, "source_instance_name", v->source_name,
	                      "source_hypervisor", v->hypervisor, "created_at", v->created_at,
	                      "size_bytes", (json_int_t)v->size_bytes, "compression_state",
	                      v->compressed ? "compressed" : "none");
	json_object_set_new(o, "name", v->name ? json_string(v->name) : json_null());
	if (v->compressed) {
		json_t *c = json_pack("{s:b,s:s}", "enabled", 1, "algorithm", "zstd");
		if (v->level > 0)
			json_object_set_new(c, "level", json_integer(v->level));
		json_object_set_new(o, "compression", c);
	}
	json_object_set_new(o, "compressed_size_bytes",
	                    v->compressed_bytes >= 0 ? json_integer(v->compressed_bytes)
	                                             : json_null());
	json_object_set_new(o, "uncompressed_size_bytes",
	                    v->uncompressed_bytes >= 0 ? json_integer(v->uncompressed_bytes)
	                                               : json_null());
	return o;
}

static int reply_snapshot(struct hm_resp *resp, int status, struct hm_snapshot_view *v)
{
	json_t *o = snapshot_json(v);
	hm_snapshot_view_free(v);
	return hm_resp_json(resp, status, o);
}

/* POST /instances/{id}/snapshots {kind, name?, tags?, compression?}. */
int hm_rest_parse_snapshot(json_t *body, struct hm_snapshot_create *c, struct hm_err **err)
{
	*c = (struct hm_snapshot_create){ 0 };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *k = json_object_get(body, "kind");
	json_t *n = json_object_get(body, "name");
	if (!k)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "`kind` is required (Standby or Stopped)");
	const char *kind = json_string_value(k);
	if (!kind || (strcmp(kind, "Standby") != 0 && strcmp(kind, "Stopped") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`kind` must be Standby or Stopped");
	if (n && !json_is_null(n) && !json_is_string(n))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	struct hm_payload_opts opts;
	if (compression_in(json_object_get(body, "compression"), &opts, err) < 0)
		return -1;
	*c = (struct hm_snapshot_create){
		.kind = strcmp(kind, "Standby") == 0 ? HM_SNAPSHOT_STANDBY : HM_SNAPSHOT_STOPPED,
		.name = json_string_value(n),
		.tags = json_object_get(body, "tags"),
		.compress = opts.compress,
		.level = opts.level,
	};
	return 0;
}

int hm_h_snapshots_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_snapshot_create c;
	if (hm_rest_parse_snapshot(hm_req_json(req), &c, err) < 0)
		return -1;
	struct hm_snapshot_view *v = NULL;
	if (hm_snapshots_create(hm_req_services(req)->instances, hm_req_param(req, "id"), &c, &v,
	                        err) < 0)
		return -1;
	return reply_snapshot(resp, 201, v);
}

int hm_h_snapshots_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *kind = hm_req_query(req, "kind");
	if (kind && strcmp(kind, "Standby") != 0 && strcmp(kind, "Stopped") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_kind",
		                  "unknown kind `%.40s` (Standby or Stopped)", kind);
	_cleanup_json_ json_t *filter = hm_query_deep_object(req, "tags");
	struct hm_snapshot_view *views = NULL;
	size_t n = 0;
	int k = !kind                          ? -1
	        : strcmp(kind, "Standby") == 0 ? HM_SNAPSHOT_STANDBY
	                                       : HM_SNAPSHOT_STOPPED;
	if (hm_snapshots_list(hm_req_services(req)->instances,
	                      hm_req_query(req, "source_instance_id"), k, hm_req_query(req, "name"),
	                      filter, &views, &n, err) < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, snapshot_json(&views[i]));
	hm_snapshot_views_free(views, n);
	return hm_resp_json(resp, 200, list);
}

int hm_h_snapshots_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_snapshot_view *v = NULL;
	if (hm_snapshots_get(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"), &v,
	                     err) < 0)
		return -1;
	return reply_snapshot(resp, 200, v);
}

int hm_h_snapshots_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_snapshots_delete(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"),
	                        err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

int hm_rest_parse_bring(json_t *body, struct hm_snapshot_bring *b, struct hm_err **err)
{
	*b = (struct hm_snapshot_bring){ 0 };
	if (!body || json_is_null(body))
		return 0;
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *name = json_object_get(body, "name");
	json_t *target = json_object_get(body, "target_state");
	json_t *hyp = json_object_get(body, "target_hypervisor");
	if (name && !json_is_string(name))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	if (target && !json_is_null(target) && !json_is_string(target))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_target_state",
		                  "`target_state` must be Stopped, Standby or Running");
	if (hyp && !json_is_null(hyp) && !json_is_string(hyp))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`target_hypervisor` must be a string");
	b->name = json_string_value(name);
	b->target_state = json_string_value(target);
	b->target_hypervisor = json_string_value(hyp);
	return 0;
}

int hm_h_snapshots_restore(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_snapshot_bring b;
	if (hm_rest_parse_bring(hm_req_json(req), &b, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_snapshots_restore(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                         hm_req_param(req, "snapshotId"), &b, &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_h_snapshots_fork(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	struct hm_snapshot_bring b;
	if (hm_rest_parse_bring(body, &b, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_snapshots_fork(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"), &b,
	                      &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 201, inst);
}
