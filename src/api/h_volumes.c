/*
 * Volume endpoints: POST/GET /volumes, POST /volumes/from-archive (the
 * body, a tar.gz, streamed to a temporary file first), GET/DELETE
 * /volumes/{id} ({id} is an id, a name or a unique id prefix). The work is
 * the volume service's (volume/volumes.h).
 */
#include <jansson.h>
#include <stdlib.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/json_cleanup.h"
#include "core/err.h"
#include "instance/instances.h"
#include "volume/volumes.h"

#define MAX_SIZE_GB 2048

/* The Hypeman Volume object. Sizes are whole GiB here: a volume made
 * through /v1 in MiB shows its size rounded up. */
static json_t *volume_json(const struct hm_volume_view *v)
{
	json_t *att = json_array();
	for (size_t i = 0; i < v->nmounts; i++)
		json_array_append_new(att, json_pack("{s:s,s:s,s:b}", "instance_id",
		                                     v->mounts[i].instance_id, "mount_path",
		                                     v->mounts[i].mount_path, "readonly",
		                                     v->mounts[i].readonly));
	return json_pack("{s:s,s:s,s:I,s:O,s:o,s:s}", "id", v->id, "name", v->name, "size_gb",
	                 (json_int_t)((v->size_bytes + (1LL << 30) - 1) >> 30), "tags", v->tags,
	                 "attachments", att, "created_at", v->created_at);
}

static int reply_volume(struct hm_resp *resp, int status, struct hm_volume_view *v)
{
	json_t *o = volume_json(v);
	hm_volume_view_free(v);
	return hm_resp_json(resp, status, o);
}

static int size_gb_in(long long gb, const char *how, struct hm_volume_create *c,
                      struct hm_err **err)
{
	if (gb < 1 || gb > MAX_SIZE_GB)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
		                  "`size_gb`%s must be an integer from 1 to %d", how, MAX_SIZE_GB);
	c->size_bytes = (int64_t)gb << 30;
	c->size_field = "size_gb";
	return 0;
}

/* POST /volumes {name, size_gb, id?, tags?}. */
int hm_rest_parse_volume(json_t *body, struct hm_volume_create *c, struct hm_err **err)
{
	*c = (struct hm_volume_create){ 0 };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *nv = json_object_get(body, "name"), *iv = json_object_get(body, "id");
	if ((nv && !json_is_string(nv)) || (iv && !json_is_null(iv) && !json_is_string(iv)))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`name` and `id` must be strings");
	*c = (struct hm_volume_create){ .name = json_string_value(nv),
		                        .id = json_string_value(iv),
		                        .tags = json_object_get(body, "tags") };
	if (!c->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	json_t *sz = json_object_get(body, "size_gb");
	if (!json_is_integer(sz))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
		                  "`size_gb` is required: an integer from 1 to %d", MAX_SIZE_GB);
	return size_gb_in(json_integer_value(sz), "", c, err);
}

int hm_h_volumes_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_volume_create c;
	if (hm_rest_parse_volume(hm_req_json(req), &c, err) < 0)
		return -1;
	struct hm_volume_view *v = NULL;
	if (hm_volumes_create(hm_req_services(req)->volumes, &c, &v, err) < 0)
		return -1;
	return reply_volume(resp, 201, v);
}

/* POST /volumes/from-archive?name&size_gb&id&tags, the body (a tar.gz)
 * streamed to a temporary file first. */
int hm_h_volumes_from_archive(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *tags = hm_query_deep_object(req, "tags");
	struct hm_volume_create c = { .name = hm_req_query(req, "name"),
		                      .id = hm_req_query(req, "id"),
		                      .tags = tags,
		                      .archive = hm_req_upload_path(req) };
	if (!c.name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	const char *size_gb = hm_req_query(req, "size_gb");
	char *end = NULL;
	long long gb = size_gb ? strtoll(size_gb, &end, 10) : 0;
	if (!size_gb || *end || end == size_gb)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
		                  "`size_gb` (query) is required: an integer from 1 to %d",
		                  MAX_SIZE_GB);
	if (size_gb_in(gb, " (query)", &c, err) < 0)
		return -1;
	struct hm_volume_view *v = NULL;
	if (hm_volumes_create(hm_req_services(req)->volumes, &c, &v, err) < 0)
		return -1;
	return reply_volume(resp, 201, v);
}

int hm_h_volumes_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *filter = hm_query_deep_object(req, "tags");
	struct hm_volume_view *views = NULL;
	size_t n = 0;
	if (hm_volumes_list(hm_req_services(req)->volumes, filter, &views, &n, err) < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, volume_json(&views[i]));
	hm_volume_views_free(views, n);
	return hm_resp_json(resp, 200, list);
}

int hm_h_volumes_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_volume_view *v = NULL;
	if (hm_volumes_get(hm_req_services(req)->volumes, hm_req_param(req, "id"), &v, err) < 0)
		return -1;
	return reply_volume(resp, 200, v);
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
