/*
 * api/ukc_images: the Unikraft Cloud image endpoints over the image service
 * (image/images.h): GET /v1/images lists the ready images (the same ones
 * /images shows; an image's `url` is its reference), POST /v1/images pins,
 * which here is a pull that the request waits for up to its timeout_s.
 * Every image here is kept until it is deleted (through the Hypeman API):
 * there is no cache eviction, so each is `persistent`.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "image/ref.h"

/* The longest a pin waits (timeout_s -1). */
#define PIN_MAX_S (60 * 60)

static struct hm_images *images(struct hm_req *req)
{
	return hm_req_services(req)->images;
}

/* The Image object. */
static json_t *image_out(const struct hm_image_view *v)
{
	json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:b}", "url", v->name, "created_at", v->created_at,
	                      "initrd_or_rom", 0, "size_in_bytes",
	                      (json_int_t)(v->size_bytes > 0 ? v->size_bytes : 0), "persistent", 1);
	json_t *cmd = json_object_get(v->config, "cmd");
	json_object_set_new(o, "args", json_is_array(cmd) ? json_incref(cmd) : json_array());
	json_t *env = json_object_get(v->config, "env");
	json_object_set_new(o, "env", json_is_object(env) ? json_incref(env) : json_object());
	json_object_set_new(o, "tags", ukc_tags_out(v->tags));
	if (*v->digest)
		json_object_set_new(o, "digest", json_string(v->digest));
	return o;
}

/* The digest filter matches with or without its "sha256:". */
static bool digest_is(const char *digest, const char *want)
{
	if (strcmp(digest, want) == 0)
		return true;
	return strncmp(digest, "sha256:", 7) == 0 && strcmp(digest + 7, want) == 0;
}

/* A UKC tag ("k=v" or "k") among the image's tags. */
static bool has_tag(json_t *tags, const char *tag)
{
	const char *eq = strchr(tag, '=');
	_cleanup_free_ char *k = eq ? xstrndup(tag, (size_t)(eq - tag)) : xstrdup(tag);
	const char *v = json_string_value(json_object_get(tags, k));
	return v && strcmp(v, eq ? eq + 1 : "") == 0;
}

int ukc_h_images_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *digest = NULL, *tag = NULL;
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *val;
		hm_req_query_at(req, i, &k, &val);
		if (strcmp(k, "digest") == 0)
			digest = val;
		else if (strcmp(k, "tag") == 0)
			tag = val;
	}
	struct hm_image_view *views = NULL;
	size_t n = 0;
	if (hm_images_list(images(req), NULL, &views, &n, err) < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct hm_image_view *v = &views[i];
		if (v->status != HM_IMAGE_READY || (digest && !digest_is(v->digest, digest)) ||
		    (tag && !has_tag(v->tags, tag)))
			continue;
		json_array_append_new(list, image_out(v));
	}
	hm_image_views_free(views, n);
	return ukc_reply(resp, json_pack("{s:o}", "images", list));
}

/* One pin as asked: checked before anything is pulled. */
struct pin {
	const char *url;
	long wait_ms;
	bool never; /* pull_policy never: only what is here */
};

static int pin_check(json_t *item, const char *where, struct pin *p, struct hm_err **err)
{
	const char *policy = NULL;
	long long timeout_s;
	if (!json_is_object(item))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json", "%s must be an object",
		                  where);
	if (ukc_body_str(item, "url", &p->url, err) < 0 ||
	    ukc_body_str(item, "pull_policy", &policy, err) < 0 ||
	    ukc_body_int(item, "timeout_s", 0, -1, PIN_MAX_S, &timeout_s, err) < 0)
		return hm_err_wrap(err, "%s", where);
	json_t *m = json_object_get(item, "merge_requests");
	if (m && !json_is_null(m) && !json_is_boolean(m))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s: `merge_requests` must be a boolean", where);
	if (!p->url || !*p->url)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "%s: `url` is required: the image reference", where);
	struct hm_image_ref ref = { 0 };
	if (strlen(p->url) > HM_REF_MAX_LEN || hm_image_ref_parse(p->url, &ref, NULL) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s: `url` `%.80s` is not an image reference", where, p->url);
	hm_image_ref_done(&ref);
	if (timeout_s == 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s: `timeout_s` is required and must not be 0 (-1: up to %d s)",
		                  where, PIN_MAX_S);
	if (json_is_false(m))
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
		                  "%s: `merge_requests`: pulls of one image are always merged",
		                  where);
	if (policy && strcmp(policy, "if_not_present") != 0 && strcmp(policy, "never") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
		                  "%s: `pull_policy` is if_not_present or never, not `%.40s`",
		                  where, policy);
	p->never = policy && strcmp(policy, "never") == 0;
	p->wait_ms = (timeout_s < 0 ? PIN_MAX_S : (long)timeout_s) * 1000L;
	return 0;
}

/* A checked pin: the pull waited for, or that entry's error. */
static int pin_do(struct hm_req *req, const struct pin *p, json_t **ret, struct hm_err **err)
{
	struct hm_image_view *v = NULL;
	if (p->never) {
		if (hm_images_get(images(req), p->url, &v, err) < 0)
			return -1;
		if (v->status != HM_IMAGE_READY) {
			int r =
			    hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
			               "image `%s` is not here (it is %s) and pull_policy is never",
			               v->name, hm_image_status_name(v->status));
			hm_image_view_free(v);
			return r;
		}
	} else {
		struct hm_image_request ir = { .name = p->url };
		if (hm_images_pull(images(req), &ir, p->wait_ms, &v, err) < 0)
			return -1;
	}
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:b}", "name", v->name, "url", v->name,
	                      "created_at", v->created_at, "state", "ready", "persistent", 1);
	json_object_set_new(o, "tags", ukc_tags_out(v->tags));
	hm_image_view_free(v);
	*ret = o;
	return 0;
}

/*
 * POST /v1/images [{url, timeout_s, pull_policy?, merge_requests?}]: every
 * item checked first (a malformed one is a 400 and nothing is pulled), then
 * each pulled in turn, the request waiting for it; a pull that fails or
 * outlasts its timeout_s is that item's error (the pull goes on).
 */
int ukc_h_images_pin(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	_cleanup_json_ json_t *items = json_is_object(body) ? json_pack("[O]", body) : NULL;
	json_t *list = items ? items : body;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_json",
		    "the body must be an array of {\"url\": ..., \"timeout_s\": ...}");
	size_t n = json_array_size(list);
	if (n > UKC_MAX_REFS)
		return hm_err_set(err, HM_ERR_INVALID, "too_many",
		                  "the body lists %zu images; at most %d per request", n,
		                  UKC_MAX_REFS);
	_cleanup_free_ struct pin *pins = xcalloc(n, sizeof(*pins));
	for (size_t i = 0; i < n; i++) {
		char where[32];
		snprintf(where, sizeof(where), "item [%zu]", i);
		if (pin_check(json_array_get(list, i), where, &pins[i], err) < 0)
			return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = 0; i < n; i++) {
		_cleanup_err_ struct hm_err *e = NULL;
		json_t *o = NULL;
		if (pin_do(req, &pins[i], &o, &e) == 0) {
			ukc_batch_ok(&b, o);
		} else {
			struct ukc_ref named = { NULL, pins[i].url, NULL };
			ukc_batch_fail(&b, &named, e);
		}
	}
	return ukc_batch_reply(resp, &b, "images");
}
