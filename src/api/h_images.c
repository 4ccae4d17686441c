/*
 * Image endpoints: POST /images (queue a pull, 202), GET /images (with
 * ?tags[k]=v filters), GET and DELETE /images/{name} where {name} is the
 * URL-encoded reference (any form that normalizes to the stored name).
 * The work is the image service's (image/images.h); this file only maps
 * JSON to its calls.
 */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "image/images.h"
#include "image/ref.h"

int hm_h_images_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	struct hm_image_request ir = { 0 };
	json_t *creds = NULL;
	if (hm_body_object(body, err) < 0 ||
	    hm_body_string(body, "name", true, HM_REF_MAX_LEN, &ir.name, err) < 0 ||
	    hm_body_string(body, "platform", false, 64, &ir.platform, err) < 0 ||
	    hm_body_object_field(body, "credentials", &creds, err) < 0 ||
	    hm_body_object_field(body, "tags", &ir.tags, err) < 0)
		return -1;
	if (!json_is_null(json_object_get(body, "tags")) && json_object_get(body, "tags") &&
	    !ir.tags)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_tags", "tags must be an object");
	if (creds &&
	    (hm_body_string(creds, "username", false, 1024, &ir.creds.username, err) < 0 ||
	     hm_body_string(creds, "password", false, 8192, &ir.creds.password, err) < 0 ||
	     hm_body_string(creds, "registry_token", false, 16384, &ir.creds.token, err) < 0))
		return hm_err_wrap(err, "credentials");
	json_t *img = NULL;
	if (hm_images_create(hm_req_services(req)->images, &ir, &img, err) < 0)
		return -1;
	return hm_resp_json(resp, 202, img);
}

int hm_h_images_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *filter = hm_query_deep_object(req, "tags");
	json_t *list = NULL;
	int r = hm_images_list(hm_req_services(req)->images, filter, &list, err);
	json_decref(filter);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, list);
}

int hm_h_images_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *img = NULL;
	if (hm_images_get(hm_req_services(req)->images, hm_req_param(req, "name"), &img, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, img);
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
	json_t *img = NULL;
	int r = hm_images_import(hm_req_services(req)->images, path, name, NULL, &img, err);
	unlink(path); /* now, not after the response: the client may look at once */
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, img);
}

int hm_h_images_tag(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	const char *target = NULL;
	if (hm_body_object(body, err) < 0 ||
	    hm_body_string(body, "target", true, HM_REF_MAX_LEN, &target, err) < 0)
		return -1;
	json_t *img = NULL;
	if (hm_images_tag(hm_req_services(req)->images, hm_req_param(req, "name"), target, &img,
	                  err) < 0)
		return -1;
	return hm_resp_json(resp, 200, img);
}
