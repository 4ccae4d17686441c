/*
 * Image endpoints: POST /images (queue a pull, 202), GET /images (with
 * ?tags[k]=v filters), GET and DELETE /images/{name} where {name} is the
 * URL-encoded reference (any form that normalizes to the stored name).
 * The work is the image service's (image/images.h); this file maps the
 * JSON to its typed calls and renders its views as the Image object.
 */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "core/json_cleanup.h"
#include "image/images.h"
#include "image/ref.h"

/* The Hypeman Image object. */
static json_t *image_json(const struct hm_image_view *v)
{
	json_t *o = json_pack("{s:s,s:s,s:s}", "name", v->name, "digest", v->digest, "status",
	                      hm_image_status_name(v->status));
	json_object_set_new(o, "platform", v->platform ? json_string(v->platform) : json_null());
	json_object_set_new(o, "queue_position",
	                    v->queue_position >= 0 ? json_integer(v->queue_position) : json_null());
	json_object_set_new(o, "error", v->error ? json_string(v->error) : json_null());
	json_object_set_new(o, "size_bytes",
	                    v->size_bytes >= 0 ? json_integer(v->size_bytes) : json_null());
	static const char *const keys[] = { "entrypoint", "cmd", "working_dir" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *x = json_object_get(v->config, keys[i]);
		json_object_set(o, keys[i], x ? x : json_null());
	}
	json_t *env = json_object_get(v->config, "env");
	json_object_set_new(o, "env", json_is_object(env) ? json_incref(env) : json_object());
	json_object_set(o, "tags", v->tags);
	json_object_set_new(o, "created_at", json_string(v->created_at));
	if (v->in_flight)
		json_object_set_new(o, "progress",
		                    json_pack("{s:i,s:i,s:I,s:I}", "layers_done",
		                              v->progress.layers_done, "layers_total",
		                              v->progress.layers_total, "bytes_done",
		                              (json_int_t)v->progress.bytes_done, "bytes_total",
		                              (json_int_t)v->progress.bytes_total));
	return o;
}

static int reply_image(struct hm_resp *resp, int status, struct hm_image_view *v)
{
	json_t *o = image_json(v);
	hm_image_view_free(v);
	return hm_resp_json(resp, status, o);
}

int hm_rest_parse_image(json_t *body, struct hm_image_request *ir, struct hm_err **err)
{
	*ir = (struct hm_image_request){ 0 };
	json_t *creds = NULL;
	if (hm_body_object(body, err) < 0 ||
	    hm_body_string(body, "name", true, HM_REF_MAX_LEN, &ir->name, err) < 0 ||
	    hm_body_string(body, "platform", false, 64, &ir->platform, err) < 0 ||
	    hm_body_object_field(body, "credentials", &creds, err) < 0 ||
	    hm_body_object_field(body, "tags", &ir->tags, err) < 0)
		return -1;
	if (!json_is_null(json_object_get(body, "tags")) && json_object_get(body, "tags") &&
	    !ir->tags)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_tags", "tags must be an object");
	if (creds &&
	    (hm_body_string(creds, "username", false, 1024, &ir->creds.username, err) < 0 ||
	     hm_body_string(creds, "password", false, 8192, &ir->creds.password, err) < 0 ||
	     hm_body_string(creds, "registry_token", false, 16384, &ir->creds.token, err) < 0))
		return hm_err_wrap(err, "credentials");
	return 0;
}

int hm_h_images_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_image_request ir;
	if (hm_rest_parse_image(hm_req_json(req), &ir, err) < 0)
		return -1;
	struct hm_image_view *img = NULL;
	if (hm_images_create(hm_req_services(req)->images, &ir, &img, err) < 0)
		return -1;
	return reply_image(resp, 202, img);
}

int hm_h_images_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *filter = hm_query_deep_object(req, "tags");
	struct hm_image_view *views = NULL;
	size_t n = 0;
	if (hm_images_list(hm_req_services(req)->images, filter, &views, &n, err) < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, image_json(&views[i]));
	hm_image_views_free(views, n);
	return hm_resp_json(resp, 200, list);
}

int hm_h_images_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_image_view *img = NULL;
	if (hm_images_get(hm_req_services(req)->images, hm_req_param(req, "name"), &img, err) < 0)
		return -1;
	return reply_image(resp, 200, img);
}

int hm_h_images_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_images_delete(hm_req_services(req)->images, hm_req_param(req, "name"), err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

int hm_h_images_load(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *name = hm_req_query(req, "name");
	if (name && strlen(name) > HM_REF_MAX_LEN)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name", "name is too long");
	const char *path = hm_req_upload_path(req);
	if (!path)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_request",
		                  "send the image archive as the request body");
	struct hm_image_view *img = NULL;
	int r = hm_images_import(hm_req_services(req)->images, path, name, NULL, &img, err);
	unlink(path); /* now, not after the response: the client may look at once */
	if (r < 0)
		return -1;
	return reply_image(resp, 200, img);
}

int hm_h_images_tag(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	const char *target = NULL;
	if (hm_body_object(body, err) < 0 ||
	    hm_body_string(body, "target", true, HM_REF_MAX_LEN, &target, err) < 0)
		return -1;
	struct hm_image_view *img = NULL;
	if (hm_images_tag(hm_req_services(req)->images, hm_req_param(req, "name"), target, &img,
	                  err) < 0)
		return -1;
	return reply_image(resp, 200, img);
}
