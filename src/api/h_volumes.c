/*
 * Volume endpoints: POST/GET /volumes, POST /volumes/from-archive (the
 * body, a tar.gz, streamed to a temporary file first), GET/DELETE
 * /volumes/{id} ({id} is an id, a name or a unique id prefix). The work is
 * the volume service's (volume/volumes.h).
 */
#include <jansson.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "instance/instances.h"
#include "volume/volumes.h"

int hm_h_volumes_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *o = NULL;
	if (hm_volumes_create(hm_req_services(req)->volumes, hm_req_json(req), &o, err) < 0)
		return -1;
	return hm_resp_json(resp, 201, o);
}

int hm_h_volumes_from_archive(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *tags = hm_query_deep_object(req, "tags");
	json_t *o = NULL;
	int r = hm_volumes_create_from_archive(
	    hm_req_services(req)->volumes, hm_req_query(req, "name"), hm_req_query(req, "size_gb"),
	    hm_req_query(req, "id"), tags, hm_req_upload_path(req), &o, err);
	json_decref(tags);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 201, o);
}

int hm_h_volumes_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *filter = hm_query_deep_object(req, "tags");
	json_t *list = NULL;
	int r = hm_volumes_list(hm_req_services(req)->volumes, filter, &list, err);
	json_decref(filter);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, list);
}

int hm_h_volumes_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *o = NULL;
	if (hm_volumes_get(hm_req_services(req)->volumes, hm_req_param(req, "id"), &o, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, o);
}

int hm_h_volumes_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_volumes_delete(hm_req_services(req)->volumes, hm_req_param(req, "id"), err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

int hm_h_instances_attach_volume(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_attach a = { .volume = hm_req_param(req, "volumeId") };
	if (hm_rest_parse_attach(hm_req_json(req), &a, err) < 0)
		return -1;
	struct hm_instance_view *o = NULL;
	if (hm_instances_attach_volume(hm_req_services(req)->instances, hm_req_param(req, "id"), &a,
	                               &o, err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, o);
}

int hm_h_instances_detach_volume(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *o = NULL;
	if (hm_instances_detach_volume(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                               hm_req_param(req, "volumeId"), &o, err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, o);
}
