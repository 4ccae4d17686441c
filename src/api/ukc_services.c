/*
 * api/ukc_services: the Unikraft Cloud service group endpoints
 * (/v1/services...) over the ingress service's groups (ingress/groups.h):
 * reading a group's fields from UKC's shapes, the ServiceGroup object, and
 * create, list, get, update and delete through the shared per-resource
 * engine (ukc_each.c). An instance joins a group on create
 * (ukc_instances.c); the Instance object names its group.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "ingress/groups.h"
#include "instance/instances.h"

static struct hm_ingresses *ingresses(struct hm_req *req)
{
	return hm_req_services(req)->ingresses;
}

/* ---- a group's fields from a request ---- */

static int svc_in(json_t *o, const char *where, size_t i, struct hm_svc *ret, struct hm_err **err)
{
	_cleanup_free_ char *at = xasprintf("%sservices[%zu].", where, i);
	if (!json_is_object(o))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%sservices[%zu] must be an object with `port`", where, i);
	long long port, dest;
	_cleanup_err_ struct hm_err *e = NULL;
	if (ukc_body_int(o, "port", -1, 1, 65535, &port, &e) < 0 ||
	    (port >= 0 && ukc_body_int(o, "destination_port", port, 1, 65535, &dest, &e) < 0))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`port` and `destination_port` are integers from 1 to 65535",
		                  at);
	if (port < 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "%s`port` is required", at);
	const char *proto = NULL;
	if (ukc_body_str(o, "protocol", &proto, err) < 0)
		return -1;
	if (proto && strcmp(proto, "tcp") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
		                  "%s`protocol`: only tcp is available, not `%.20s`", at, proto);
	unsigned h = 0;
	json_t *hs = json_object_get(o, "handlers");
	if (hs && !json_is_null(hs)) {
		if (!json_is_array(hs))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%s`handlers` must be an array of tls, http, redirect",
			                  at);
		size_t k;
		json_t *x;
		json_array_foreach (hs, k, x) {
			const char *s = json_string_value(x);
			unsigned bit = !s                           ? 0
			               : strcmp(s, "tls") == 0      ? HM_SVC_TLS
			               : strcmp(s, "http") == 0     ? HM_SVC_HTTP
			               : strcmp(s, "redirect") == 0 ? HM_SVC_REDIRECT
			                                            : 0;
			if (!bit)
				return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
				                  "%shandlers[%zu]: tls, http or redirect", at, k);
			h |= bit;
		}
	} else {
		/* What the port allows. */
		h = port == 80 ? HM_SVC_HTTP : port == 443 ? HM_SVC_HTTP | HM_SVC_TLS : HM_SVC_TLS;
	}
	*ret = (struct hm_svc){ .port = (int)port, .dest_port = (int)dest, .handlers = h };
	return 0;
}

static int svcs_in(json_t *list, const char *where, struct hm_group_spec *ret, struct hm_err **err)
{
	if (!json_is_array(list) || json_array_size(list) < 1 ||
	    json_array_size(list) > HM_GROUP_MAX_SERVICES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`services` must be an array of 1 to %d services", where,
		                  HM_GROUP_MAX_SERVICES);
	ret->nsvcs = 0;
	size_t i;
	json_t *o;
	json_array_foreach (list, i, o)
		if (svc_in(o, where, i, &ret->svcs[ret->nsvcs++], err) < 0)
			return -1;
	return 0;
}

static int domains_in(json_t *list, const char *where, struct hm_group_spec *ret,
                      struct hm_err **err)
{
	ret->ndomains = 0;
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list) || json_array_size(list) > HM_GROUP_MAX_DOMAINS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`domains` must be an array of at most %d {name}", where,
		                  HM_GROUP_MAX_DOMAINS);
	size_t i;
	json_t *o;
	json_array_foreach (list, i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		if (!name)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%sdomains[%zu] must be an object with `name`", where, i);
		ret->domains[ret->ndomains++] = name;
	}
	return 0;
}

static int limit_in(json_t *obj, const char *key, const char *where, int *ret, struct hm_err **err)
{
	long long v;
	_cleanup_err_ struct hm_err *e = NULL;
	if (ukc_body_int(obj, key, 0, 1, HM_GROUP_MAX_LIMIT, &v, &e) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`%s` must be an integer from 1 to %d", where, key,
		                  HM_GROUP_MAX_LIMIT);
	*ret = (int)v;
	return 0;
}

int ukc_group_spec_in(json_t *obj, const char *where, struct hm_group_spec *ret,
                      struct hm_err **err)
{
	*ret = (struct hm_group_spec){ .persistent = true };
	json_t *svcs = json_object_get(obj, "services");
	if (!svcs || json_is_null(svcs))
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "%s`services` is required: at least one published port", where);
	if (svcs_in(svcs, where, ret, err) < 0 ||
	    domains_in(json_object_get(obj, "domains"), where, ret, err) < 0 ||
	    limit_in(obj, "soft_limit", where, &ret->soft_limit, err) < 0 ||
	    limit_in(obj, "hard_limit", where, &ret->hard_limit, err) < 0)
		return -1;
	return 0;
}

/* ---- the ServiceGroup object ---- */

static json_t *members_out(struct hm_instances *in, const struct hm_group_view *g)
{
	json_t *a = json_array();
	for (size_t i = 0; i < g->nmembers; i++) {
		struct hm_instance_view *v = NULL;
		if (hm_instances_get(in, g->members[i], &v, NULL) == 0)
			json_array_append_new(a,
			                      json_pack("{s:s,s:s}", "uuid", v->uuid ? v->uuid : "",
			                                "name", v->name));
		hm_instance_view_free(v);
	}
	return a;
}

static json_t *domains_out(const struct hm_group_view *g)
{
	json_t *a = json_array();
	for (size_t i = 0; i < g->nfqdns; i++)
		json_array_append_new(a, json_pack("{s:s}", "fqdn", g->fqdns[i]));
	return a;
}

static json_t *group_out(struct hm_instances *in, const struct hm_group_view *g, bool details)
{
	json_t *o = json_pack("{s:s,s:s}", "uuid", g->uuid, "name", g->name);
	if (!details)
		return o;
	static const char *const names[] = { "tls", "http", "redirect" };
	json_t *svcs = json_array();
	for (size_t i = 0; i < g->nsvcs; i++) {
		json_t *h = json_array();
		for (unsigned b = 0; b < 3; b++)
			if (g->svcs[i].handlers & (1u << b))
				json_array_append_new(h, json_string(names[b]));
		json_array_append_new(svcs, json_pack("{s:i,s:i,s:s,s:o}", "port", g->svcs[i].port,
		                                      "destination_port", g->svcs[i].dest_port,
		                                      "protocol", "tcp", "handlers", h));
	}
	json_object_set_new(o, "created_at", json_string(g->created_at));
	json_object_set_new(o, "persistent", json_boolean(g->persistent));
	json_object_set_new(o, "autoscale", json_false());
	json_object_set_new(o, "soft_limit", json_integer(g->soft_limit));
	json_object_set_new(o, "hard_limit", json_integer(g->hard_limit));
	json_object_set_new(o, "services", svcs);
	json_object_set_new(o, "domains", domains_out(g));
	json_object_set_new(o, "instances", members_out(in, g));
	return o;
}

void ukc_instance_group_out(struct hm_ingresses *ing, const char *instance_id, json_t *o)
{
	struct hm_group_view *g = NULL;
	if (!ing || hm_groups_of(ing, instance_id, &g, NULL) < 0 || !g)
		return;
	json_object_set_new(o, "service_group",
	                    json_pack("{s:s,s:s,s:o}", "uuid", g->uuid, "name", g->name, "domains",
	                              domains_out(g)));
	hm_group_view_free(g);
}

/* ---- the kind ---- */

static int resolve_any(struct hm_req *req, const struct ukc_ref *r, void **ret, struct hm_err **err)
{
	*ret = NULL;
	if (ukc_ref_check(r, err) < 0)
		return -1;
	const char *key = r->uuid ? r->uuid : r->name;
	struct hm_group_view *g = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	bool same = false;
	if (hm_groups_get(ingresses(req), key, &g, &e) == 0)
		same = ukc_ref_is(r, g->uuid, g->name);
	else if (!hm_err_is_kind(&e, HM_ERR_NOT_FOUND) && !hm_err_is_kind(&e, HM_ERR_CONFLICT)) {
		*err = TAKE_PTR(e);
		return -1;
	}
	if (!same) {
		hm_group_view_free(g);
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
		                  "No service group with %s '%.80s'", r->uuid ? "uuid" : "name",
		                  key);
	}
	*ret = g;
	return 0;
}

static void identity(const void *v, const char **uuid, const char **name)
{
	const struct hm_group_view *g = v;
	*uuid = g->uuid;
	*name = g->name;
}

static void free_any(void *v)
{
	hm_group_view_free(v);
}

static const struct ukc_kind group_kind = { "service_groups", resolve_any, identity, free_any };

int ukc_group_resolve(struct hm_req *req, const struct ukc_ref *r, struct hm_group_view **ret,
                      struct hm_err **err)
{
	return resolve_any(req, r, (void **)ret, err);
}

/* ---- create ---- */

static int create_one(struct hm_req *req, json_t *item, size_t i, bool many, struct ukc_batch *b,
                      struct hm_err **err)
{
	_cleanup_free_ char *where = many ? xasprintf("[%zu]: ", i) : xstrdup("");
	if (!json_is_object(item))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "%sa CreateServiceGroupRequest is an object", where);
	const char *name = NULL;
	if (ukc_body_str(item, "name", &name, err) < 0)
		return -1;
	struct hm_group_spec spec;
	if (ukc_group_spec_in(item, where, &spec, err) < 0)
		return -1;
	_cleanup_free_ char *made = name ? NULL : ukc_random_name();
	struct hm_group_view *g = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	if (hm_groups_create(ingresses(req), name ? name : made, &spec, where, &g, &e) < 0) {
		if (hm_err_is_kind(&e, HM_ERR_INVALID) && !many) {
			*err = TAKE_PTR(e);
			return -1; /* the request: a 400 */
		}
		struct ukc_ref named = { NULL, name ? name : made, NULL };
		ukc_batch_fail(b, &named, e);
		return 0;
	}
	ukc_batch_ok(b, group_out(hm_req_services(req)->instances, g, true));
	hm_group_view_free(g);
	return 0;
}

int ukc_h_services_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	struct ukc_batch b;
	ukc_batch_init(&b);
	int r = 0;
	if (json_is_array(body)) {
		if (json_array_size(body) == 0 || json_array_size(body) > UKC_MAX_REFS)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_json",
			               "the body must list from 1 to %d service groups",
			               UKC_MAX_REFS);
		size_t i;
		json_t *item;
		json_array_foreach (body, i, item)
			if (r == 0)
				r = create_one(req, item, i, true, &b, err);
	} else {
		r = create_one(req, body, 0, false, &b, err);
	}
	if (r < 0) {
		json_decref(b.entries);
		return -1;
	}
	return ukc_batch_reply(resp, &b, "service_groups");
}

/* ---- list and get ---- */

static int op_get(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	(void)err;
	bool details = !json_is_false(json_object_get(opts, "details"));
	json_t *o = group_out(hm_req_services(req)->instances, view, details);
	json_object_update(entry, o);
	json_decref(o);
	return 0;
}

int ukc_h_services_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_(ukc_list_done) struct ukc_list q = { 0 };
	if (ukc_list_parse(req, &q, err) < 0)
		return -1;
	if (q.tags)
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
		                  "service groups have no tags to filter by");
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t nrefs = 0;
	if (ukc_query_refs(req, &refs, &nrefs, err) < 0)
		return -1;
	_cleanup_json_ json_t *opts = json_pack("{s:b}", "details", q.details);
	if (nrefs > 0)
		return ukc_each(req, resp, &group_kind, refs, nrefs, opts, op_get);
	struct hm_group_view *views = NULL;
	size_t n = 0;
	if (hm_groups_list(ingresses(req), &views, &n, err) < 0)
		return -1;
	_cleanup_free_ const char **uuids = xcalloc(n ? n : 1, sizeof(*uuids));
	for (size_t i = 0; i < n; i++)
		uuids[i] = views[q.desc ? n - 1 - i : i].uuid;
	size_t first;
	if (ukc_page(&q, uuids, n, "service group", &first, err) < 0) {
		hm_group_views_free(views, n);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = first; i < n && (q.count == 0 || i - first < (size_t)q.count); i++)
		ukc_batch_ok(&b, group_out(hm_req_services(req)->instances,
		                           &views[q.desc ? n - 1 - i : i], q.details));
	hm_group_views_free(views, n);
	return ukc_batch_reply(resp, &b, "service_groups");
}

int ukc_h_service_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &group_kind, op_get, err);
}

/* ---- update ---- */

/* The spec a group has now, as a request would give it (domains as full names). */
static void spec_of(const struct hm_group_view *g, struct hm_group_spec *s, char **fq)
{
	*s = (struct hm_group_spec){ .nsvcs = g->nsvcs,
		                     .soft_limit = g->soft_limit,
		                     .hard_limit = g->hard_limit,
		                     .persistent = g->persistent };
	memcpy(s->svcs, g->svcs, g->nsvcs * sizeof(g->svcs[0]));
	for (size_t i = 0; i < g->nfqdns; i++) {
		fq[i] = xasprintf("%s.", g->fqdns[i]);
		s->domains[s->ndomains++] = fq[i];
	}
}

/* del's value for services: ports (or services with a port); for domains: names. */
static bool named_in(json_t *value, const struct hm_svc *svc, const char *fqdn, const char *dom)
{
	size_t i;
	json_t *x;
	json_array_foreach (value, i, x) {
		if (svc) {
			json_t *p = json_is_object(x) ? json_object_get(x, "port") : x;
			if (json_is_integer(p) && json_integer_value(p) == svc->port)
				return true;
		} else {
			json_t *n = json_is_object(x) ? json_object_get(x, "name") : x;
			const char *s = json_string_value(n);
			if (!s)
				continue;
			size_t len = strlen(s);
			if ((len && s[len - 1] == '.' && strncmp(s, fqdn, len - 1) == 0 &&
			     fqdn[len - 1] == '\0') ||
			    (strncmp(fqdn, s, len) == 0 && fqdn[len] == '.' &&
			     strcmp(fqdn + len + 1, dom) == 0))
				return true;
		}
	}
	return false;
}

static int op_update(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	const struct hm_group_view *g = view;
	const char *prop = json_string_value(json_object_get(opts, "prop"));
	const char *op = json_string_value(json_object_get(opts, "op"));
	json_t *value = json_object_get(opts, "value");
	const char *id = json_string_value(json_object_get(opts, "id"));
	if (!prop || !op)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "an update needs `prop` and `op`");
	bool set = strcmp(op, "set") == 0, add = strcmp(op, "add") == 0,
	     del = strcmp(op, "del") == 0;
	if (!set && !add && !del)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`op` is set, add or del, not `%.20s`", op);
	char *fq[HM_GROUP_MAX_DOMAINS] = { 0 };
	struct hm_group_spec s;
	spec_of(g, &s, fq);
	const char *dom = hm_groups_domain(ingresses(req));
	int r = 0;
	struct hm_group_spec in = { 0 };
	if (strcmp(prop, "services") == 0) {
		if (set || add) {
			r = svcs_in(value, "value: ", &in, err);
			if (r == 0 && set)
				s.nsvcs = 0;
			for (size_t i = 0; r == 0 && i < in.nsvcs; i++) {
				if (s.nsvcs == HM_GROUP_MAX_SERVICES)
					r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
					               "a group publishes at most %d ports",
					               HM_GROUP_MAX_SERVICES);
				else
					s.svcs[s.nsvcs++] = in.svcs[i];
			}
		} else {
			size_t k = 0;
			for (size_t i = 0; i < s.nsvcs; i++)
				if (value && !json_is_null(value) &&
				    !named_in(value, &s.svcs[i], NULL, NULL))
					s.svcs[k++] = s.svcs[i];
			s.nsvcs = k; /* none left: the check below says a group needs one */
		}
	} else if (strcmp(prop, "domains") == 0) {
		if (set || add) {
			r = domains_in(value, "value: ", &in, err);
			if (r == 0 && set)
				s.ndomains = 0;
			for (size_t i = 0; r == 0 && i < in.ndomains; i++) {
				if (s.ndomains == HM_GROUP_MAX_DOMAINS)
					r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
					               "a group has at most %d domains",
					               HM_GROUP_MAX_DOMAINS);
				else
					s.domains[s.ndomains++] = in.domains[i];
			}
		} else {
			size_t k = 0;
			for (size_t i = 0; i < s.ndomains; i++)
				if (value && !json_is_null(value) &&
				    !named_in(value, NULL, g->fqdns[i], dom))
					s.domains[k++] = s.domains[i];
			s.ndomains = k; /* none: the group's own name */
		}
	} else if (strcmp(prop, "soft_limit") == 0 || strcmp(prop, "hard_limit") == 0) {
		int *lim = prop[0] == 's' ? &s.soft_limit : &s.hard_limit;
		if (add)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			               "`%s` takes a set or a del", prop);
		else if (del)
			*lim = 0;
		else if (!json_is_integer(value) || json_integer_value(value) < 1 ||
		         json_integer_value(value) > HM_GROUP_MAX_LIMIT)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			               "`value` for %s: an integer from 1 to %d", prop,
			               HM_GROUP_MAX_LIMIT);
		else
			*lim = (int)json_integer_value(value);
	} else {
		r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		               "`prop` is services, domains, soft_limit or hard_limit, not `%.40s`",
		               prop);
	}
	struct hm_group_view *after = NULL;
	if (r == 0)
		r = hm_groups_update(ingresses(req), g->uuid, &s, &after, err);
	for (size_t i = 0; i < HM_GROUP_MAX_DOMAINS; i++)
		free(fq[i]);
	if (r < 0)
		return -1;
	json_t *o = group_out(hm_req_services(req)->instances, after, true);
	json_object_update(entry, o);
	json_decref(o);
	if (id)
		json_object_set_new(entry, "id", json_string(id));
	hm_group_view_free(after);
	return 0;
}

int ukc_h_services_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &group_kind, op_update, err);
}

int ukc_h_service_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &group_kind, op_update, err);
}

/* ---- delete ---- */

static int op_delete(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	(void)opts;
	(void)entry;
	const struct hm_group_view *g = view;
	return hm_groups_delete(ingresses(req), g->uuid, err);
}

int ukc_h_services_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &group_kind, op_delete, err);
}

int ukc_h_service_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &group_kind, op_delete, err);
}
