/*
 * api/ukc_volumes: the Unikraft Cloud volume endpoints (/v1/volumes...) over
 * the volume service (volume/volumes.h) and, for attach and detach, the
 * instance domain: the same volumes the Hypeman API's /volumes shows, named
 * here by uuid or name. A volume made here is sized in MiB; its Hypeman
 * size_gb is that rounded up.
 *
 * A volume's UKC state is derived, never stored: `available` attached to
 * nothing, `mounted` while an instance it is attached to runs (that
 * instance is in `mounted_by`), `idle` attached only to instances that do
 * not run. Attach and detach need the instance stopped, as the Hypeman API's.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "instance/instances.h"
#include "volume/volumes.h"

static struct hm_volumes *volumes(struct hm_req *req)
{
	return hm_req_services(req)->volumes;
}

static struct hm_instances *instances(struct hm_req *req)
{
	return hm_req_services(req)->instances;
}

int ukc_volume_resolve(struct hm_volumes *vs, const struct ukc_ref *r, struct hm_volume_view **ret,
                       struct hm_err **err)
{
	*ret = NULL;
	if (ukc_ref_check(r, err) < 0)
		return -1;
	const char *key = r->uuid ? r->uuid : r->name;
	struct hm_volume_view *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	bool same = false;
	if (hm_volumes_get(vs, key, &v, &e) == 0)
		same = ukc_ref_is(r, v->uuid, v->name);
	else if (!hm_err_is_kind(&e, HM_ERR_NOT_FOUND) && !hm_err_is_kind(&e, HM_ERR_CONFLICT)) {
		*err = TAKE_PTR(e);
		return -1;
	}
	if (!same) {
		hm_volume_view_free(v);
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "No volume with %s '%.80s'",
		                  r->uuid ? "uuid" : "name", key);
	}
	*ret = v;
	return 0;
}

/* ---- the Volume object ---- */

json_t *ukc_volume(struct hm_instances *in, const struct hm_volume_view *v, bool details)
{
	json_t *attached = json_array(), *mounted = json_array();
	for (size_t i = 0; i < v->nmounts; i++) {
		const struct hm_volume_mount *m = &v->mounts[i];
		json_array_append_new(attached,
		                      json_pack("{s:s,s:s}", "uuid",
		                                m->instance_uuid ? m->instance_uuid : "", "name",
		                                m->instance_name ? m->instance_name : ""));
		struct hm_instance_view *iv = NULL;
		if (hm_instances_get(in, m->instance_id, &iv, NULL) == 0 &&
		    (iv->state == HM_STATE_RUNNING || iv->state == HM_STATE_INITIALIZING))
			json_array_append_new(
			    mounted, json_pack("{s:s,s:s,s:b}", "uuid", iv->uuid ? iv->uuid : "",
			                       "name", iv->name, "readonly", m->readonly));
		hm_instance_view_free(iv);
	}
	const char *state = json_array_size(mounted) ? "mounted"
	                    : v->nmounts             ? "idle"
	                                             : "available";
	json_t *o = json_pack("{s:s,s:s,s:s}", "uuid", v->uuid ? v->uuid : "", "name", v->name,
	                      "state", state);
	if (details) {
		json_object_set_new(o, "created_at", json_string(v->created_at));
		json_object_set_new(o, "size_mb", json_integer(v->size_bytes >> 20));
		json_object_set_new(o, "persistent", json_true());
		json_object_set_new(o, "attached_to", attached);
		json_object_set_new(o, "mounted_by", mounted);
		json_object_set_new(o, "tags", ukc_tags_out(v->tags));
		json_object_set_new(o, "quota_policy", json_string("static"));
		json_object_set_new(o, "filesystem", json_string("ext4"));
		json_object_set_new(o, "access_mode", json_string("rwo"));
	} else {
		json_decref(attached);
		json_decref(mounted);
	}
	return o;
}

/* ---- the volume kind ---- */

static int resolve_any(struct hm_req *req, const struct ukc_ref *r, void **ret, struct hm_err **err)
{
	return ukc_volume_resolve(volumes(req), r, (struct hm_volume_view **)ret, err);
}

static void identity(const void *v, const char **uuid, const char **name)
{
	const struct hm_volume_view *vv = v;
	*uuid = vv->uuid;
	*name = vv->name;
}

static void free_any(void *v)
{
	hm_volume_view_free(v);
}

static const struct ukc_kind volume_kind = { "volumes", resolve_any, identity, free_any };

/* The one instance an object field names ({uuid} or {name}). */
static int instance_at(struct hm_req *req, json_t *ref, const char *field,
                       struct hm_instance_view **ret, struct hm_err **err)
{
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	_cleanup_err_ struct hm_err *e = NULL;
	if (!json_is_object(ref) || ukc_body_refs(ref, &refs, &n, &e) < 0 || n != 1)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an object with an instance's `uuid` or `name`",
		                  field);
	return ukc_instance_resolve(instances(req), &refs[0], ret, err);
}

/* ---- create ---- */

/* err with `where` ("volumes[0]: ") before it, or as it is when where is "". */
static int wrapped(struct hm_err **err, const char *where)
{
	size_t n = strlen(where);
	while (n && (where[n - 1] == ' ' || where[n - 1] == ':'))
		n--;
	return n ? hm_err_wrap(err, "%.*s", (int)n, where) : -1;
}

/*
 * A new volume from UKC's fields: name (made up when absent), size_mb,
 * tags; quota_policy, filesystem and access_mode only as we make volumes
 * (static, ext4, rwo). Shared with an instance create's new volumes.
 */
int ukc_volume_spec_in(json_t *body, const char *where, struct ukc_volume_spec *ret,
                       struct hm_err **err)
{
	*ret = (struct ukc_volume_spec){ 0 };
	long long mb;
	if (ukc_body_str(body, "name", &ret->name, err) < 0 ||
	    ukc_body_int(body, "size_mb", -1, 1, HM_VOLUME_MAX_BYTES >> 20, &mb, err) < 0)
		return wrapped(err, where);
	if (mb < 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "%s`size_mb` is required: the size in MiB, from 1 to %lld", where,
		                  HM_VOLUME_MAX_BYTES >> 20);
	ret->size_bytes = (int64_t)mb << 20;
	static const struct {
		const char *field, *only;
	} fixed[] = { { "quota_policy", "static" },
		      { "filesystem", "ext4" },
		      { "access_mode", "rwo" } };
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		const char *s = NULL;
		if (ukc_body_str(body, fixed[i].field, &s, err) < 0)
			return wrapped(err, where);
		if (s && strcmp(s, fixed[i].only) != 0)
			return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
			                  "%s`%s`: only `%s` is available, not `%.40s`", where,
			                  fixed[i].field, fixed[i].only, s);
	}
	if (ukc_tags_in(json_object_get(body, "tags"), "tags", &ret->tags, err) < 0)
		return wrapped(err, where);
	return 0;
}

int ukc_volume_make(struct hm_volumes *vs, const struct ukc_volume_spec *s,
                    struct hm_volume_view **ret, struct hm_err **err)
{
	_cleanup_free_ char *made = s->name ? NULL : ukc_random_name();
	struct hm_volume_create c = { .name = s->name ? s->name : made,
		                      .size_bytes = s->size_bytes,
		                      .tags = s->tags,
		                      .size_field = "size_mb" };
	return hm_volumes_create(vs, &c, ret, err);
}

int ukc_h_volumes_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a CreateVolumeRequest object");
	struct hm_volume_view *v = NULL;
	struct ukc_volume_spec spec;
	if (ukc_volume_spec_in(body, "", &spec, err) < 0)
		return -1;
	int r = ukc_volume_make(volumes(req), &spec, &v, err);
	json_decref(spec.tags);
	if (r < 0) {
		if (hm_err_is_kind(err, HM_ERR_INVALID))
			return -1; /* the request, not the volume: a 400 */
		struct ukc_batch b;
		ukc_batch_init(&b);
		const char *name = json_string_value(json_object_get(body, "name"));
		struct ukc_ref named = { NULL, name, NULL };
		ukc_batch_fail(&b, &named, *err);
		hm_err_free(*err);
		*err = NULL;
		return ukc_batch_reply(resp, &b, "volumes");
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	ukc_batch_ok(&b, ukc_volume(instances(req), v, true));
	hm_volume_view_free(v);
	return ukc_batch_reply(resp, &b, "volumes");
}

/* ---- list and get ---- */

static int op_get(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	(void)err;
	const struct hm_volume_view *v = view;
	bool details = !json_is_false(json_object_get(opts, "details"));
	json_t *o = ukc_volume(instances(req), v, details);
	json_object_update(entry, o);
	json_decref(o);
	return 0;
}

int ukc_h_volumes_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
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
		return ukc_each(req, resp, &volume_kind, refs, nrefs, opts, op_get);
	struct hm_volume_view *views = NULL;
	size_t n = 0;
	if (hm_volumes_list(volumes(req), q.tags, &views, &n, err) < 0)
		return -1;
	_cleanup_free_ const char **uuids = xcalloc(n ? n : 1, sizeof(*uuids));
	for (size_t i = 0; i < n; i++)
		uuids[i] = views[q.desc ? n - 1 - i : i].uuid;
	size_t first;
	if (ukc_page(&q, uuids, n, "volume", &first, err) < 0) {
		hm_volume_views_free(views, n);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = first; i < n && (q.count == 0 || i - first < (size_t)q.count); i++)
		ukc_batch_ok(&b,
		             ukc_volume(instances(req), &views[q.desc ? n - 1 - i : i], q.details));
	hm_volume_views_free(views, n);
	return ukc_batch_reply(resp, &b, "volumes");
}

int ukc_h_volume_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &volume_kind, op_get, err);
}

/* ---- delete ---- */

static int op_delete(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_volume_view *v = view;
	(void)opts;
	(void)entry;
	return hm_volumes_delete(volumes(req), v->id, err);
}

int ukc_h_volumes_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &volume_kind, op_delete, err);
}

int ukc_h_volume_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &volume_kind, op_delete, err);
}

/* ---- attach and detach ---- */

static int op_attach(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_volume_view *v = view;
	(void)entry;
	const char *at = NULL;
	bool readonly;
	if (ukc_body_str(opts, "at", &at, err) < 0 ||
	    ukc_body_bool(opts, "readonly", &readonly, err) < 0)
		return -1;
	if (!at)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "`at` is required: where the volume is mounted in the instance");
	struct hm_instance_view *inst = NULL;
	if (instance_at(req, json_object_get(opts, "attach_to"), "attach_to", &inst, err) < 0)
		return -1;
	struct hm_attach a = { .volume = v->id, .mount_path = at, .readonly = readonly };
	struct hm_instance_view *after = NULL;
	int r = hm_instances_attach_volume(instances(req), inst->id, &a, &after, err);
	hm_instance_view_free(inst);
	hm_instance_view_free(after);
	return r;
}

int ukc_h_volumes_attach(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &volume_kind, op_attach, err);
}

int ukc_h_volume_attach(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &volume_kind, op_attach, err);
}

/* From the instance `from` names, or from every instance it is attached to. */
static int op_detach(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_volume_view *v = view;
	(void)entry;
	json_t *from = json_object_get(opts, "from");
	if (from && !json_is_null(from)) {
		struct hm_instance_view *inst = NULL;
		if (instance_at(req, from, "from", &inst, err) < 0)
			return -1;
		struct hm_instance_view *after = NULL;
		int r = hm_instances_detach_volume(instances(req), inst->id, v->id, &after, err);
		hm_instance_view_free(inst);
		hm_instance_view_free(after);
		return r;
	}
	for (size_t i = 0; i < v->nmounts; i++) {
		struct hm_instance_view *after = NULL;
		if (hm_instances_detach_volume(instances(req), v->mounts[i].instance_id, v->id,
		                               &after, err) < 0)
			return -1;
		hm_instance_view_free(after);
	}
	return 0;
}

int ukc_h_volumes_detach(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &volume_kind, op_detach, err);
}

int ukc_h_volume_detach(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &volume_kind, op_detach, err);
}
