/*
 * h_snapshots: the handlers for standby, restore, fork and the snapshot
 * objects. The work is in instance/standby.c and instance/snapshots.c.
 */
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "instance/instances.h"

int hm_h_instances_standby(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_instances_standby(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                         hm_req_json(req), &inst, err) < 0)
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

int hm_h_instances_fork(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
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
	struct hm_instance_fork f = { .name = json_string_value(name),
		                      .target_state = json_string_value(target),
		                      .from_running = json_is_true(fr) };
	struct hm_instance_view *inst = NULL;
	if (hm_instances_fork(hm_req_services(req)->instances, hm_req_param(req, "id"), &f, &inst,
	                      err) < 0)
		return -1;
	return hm_resp_instance(resp, 201, inst);
}

int hm_h_snapshots_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *snap = NULL;
	if (hm_snapshots_create(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                        hm_req_json(req), &snap, err) < 0)
		return -1;
	return hm_resp_json(resp, 201, snap);
}

int hm_h_snapshots_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *kind = hm_req_query(req, "kind");
	if (kind && strcmp(kind, "Standby") != 0 && strcmp(kind, "Stopped") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_kind",
		                  "unknown kind `%.40s` (Standby or Stopped)", kind);
	json_t *filter = hm_query_deep_object(req, "tags");
	json_t *list = NULL;
	int r = hm_snapshots_list(hm_req_services(req)->instances,
	                          hm_req_query(req, "source_instance_id"), kind,
	                          hm_req_query(req, "name"), filter, &list, err);
	json_decref(filter);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, list);
}

int hm_h_snapshots_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *snap = NULL;
	if (hm_snapshots_get(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"),
	                     &snap, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, snap);
}

int hm_h_snapshots_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_snapshots_delete(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"),
	                        err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

int hm_h_snapshots_restore(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_snapshots_restore(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                         hm_req_param(req, "snapshotId"), hm_req_json(req), &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_h_snapshots_fork(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_snapshots_fork(hm_req_services(req)->instances, hm_req_param(req, "snapshotId"),
	                      hm_req_json(req), &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 201, inst);
}
