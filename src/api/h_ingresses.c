/*
 * Ingress endpoints: POST/GET /ingresses, GET/DELETE /ingresses/{id} ({id}
 * is an id, a name or a unique id prefix). The Hypeman Ingress body is read
 * here into the ingress service's typed create (its shape: types, the
 * rule count; its values are the domain's, ingress/route.c) and the Ingress
 * object rendered from its views. The work is the ingress service's
 * (ingress/ingress.h).
 */
#include <jansson.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "core/json_cleanup.h"
#include "ingress/ingress.h"

/* A port field: absent or null is 0 (the domain's default); else an integer 1-65535. */
static int port_in(json_t *v, size_t i, const char *field, bool required, int *ret,
                   struct hm_err **err)
{
	*ret = 0;
	if ((!v || json_is_null(v)) && !required)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "rules[%zu]: `%s` must be 1-65535", i, field);
	*ret = (int)json_integer_value(v);
	return 0;
}

static int bool_in(json_t *v, bool *ret)
{
	*ret = json_is_true(v);
	return !v || json_is_null(v) || json_is_boolean(v) ? 0 : -1;
}

/* One IngressRule {match: {hostname, port?}, target: {instance, port}, tls?,
 * redirect_http?, request_header_auth?: {header, value}}: its shape here,
 * its values the domain's (hm_route_check). */
static int rule_in(json_t *o, size_t i, struct hm_ingress_rule *r, struct hm_err **err)
{
	*r = (struct hm_ingress_rule){ 0 };
	if (!json_is_object(o))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "rules[%zu]: must be an object", i);
	json_t *match = json_object_get(o, "match"), *target = json_object_get(o, "target");
	if (!json_is_object(match) || !json_is_object(target))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "rules[%zu]: `match` and `target` objects are required", i);
	r->hostname = json_string_value(json_object_get(match, "hostname"));
	if (!r->hostname)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "rules[%zu]: `match.hostname` is required", i);
	r->instance = json_string_value(json_object_get(target, "instance"));
	if (port_in(json_object_get(match, "port"), i, "match.port", false, &r->port, err) < 0 ||
	    port_in(json_object_get(target, "port"), i, "target.port", true, &r->target_port, err) <
	        0)
		return -1;
	if (bool_in(json_object_get(o, "tls"), &r->tls) < 0 ||
	    bool_in(json_object_get(o, "redirect_http"), &r->redirect_http) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "rules[%zu]: `tls` and `redirect_http` must be booleans", i);
	json_t *auth = json_object_get(o, "request_header_auth");
	if (auth && !json_is_null(auth)) {
		r->auth_header = json_string_value(json_object_get(auth, "header"));
		r->auth_value = json_string_value(json_object_get(auth, "value"));
		if (!r->auth_header || !r->auth_value)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
			                  "rules[%zu]: `request_header_auth` needs string `header` "
			                  "and `value`",
			                  i);
	}
	return 0;
}

int hm_rest_parse_ingress(json_t *body, struct hm_ingress_create *c, struct hm_err **err)
{
	*c = (struct hm_ingress_create){ 0 };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *name = json_object_get(body, "name");
	if (name && !json_is_null(name) && !json_is_string(name))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	c->name = json_string_value(name);
	json_t *tags = json_object_get(body, "tags");
	c->tags = json_is_null(tags) ? NULL : tags;
	json_t *rules = json_object_get(body, "rules");
	if (!json_is_array(rules) || json_array_size(rules) == 0 ||
	    json_array_size(rules) > HM_ROUTE_MAX_RULES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "`rules` must be an array of 1 to %d rules", HM_ROUTE_MAX_RULES);
	size_t i;
	json_t *o;
	json_array_foreach (rules, i, o) {
		if (rule_in(o, i, &c->rules[i], err) < 0)
			return -1;
		c->nrules = i + 1;
	}
	return 0;
}

/* The Ingress object. */
static json_t *ingress_json(const struct hm_ingress_view *v)
{
	json_t *rules = json_array();
	for (size_t i = 0; i < v->nrules; i++) {
		const struct hm_ingress_rule *r = &v->rules[i];
		json_t *o =
		    json_pack("{s:{s:s,s:i},s:{s:s,s:i},s:b,s:b}", "match", "hostname",
		              r->hostname ? r->hostname : "", "port", r->port, "target", "instance",
		              r->instance ? r->instance : "", "port", r->target_port, "tls", r->tls,
		              "redirect_http", r->redirect_http);
		if (r->auth_header && r->auth_value)
			json_object_set_new(o, "request_header_auth",
			                    json_pack("{s:s,s:s}", "header", r->auth_header,
			                              "value", r->auth_value));
		json_array_append_new(rules, o);
	}
	return json_pack("{s:s,s:s,s:O,s:o,s:s}", "id", v->id, "name", v->name, "tags", v->tags,
	                 "rules", rules, "created_at", v->created_at);
}

static int reply_ingress(struct hm_resp *resp, int status, struct hm_ingress_view *v)
{
	json_t *o = ingress_json(v);
	hm_ingress_view_free(v);
	return hm_resp_json(resp, status, o);
}

int hm_h_ingresses_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_ingress_create c;
	if (hm_rest_parse_ingress(hm_req_json(req), &c, err) < 0)
		return -1;
	struct hm_ingress_view *v = NULL;
	if (hm_ingresses_create(hm_req_services(req)->ingresses, &c, &v, err) < 0)
		return -1;
	return reply_ingress(resp, 201, v);
}

int hm_h_ingresses_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *filter = hm_query_deep_object(req, "tags");
	struct hm_ingress_view *views = NULL;
	size_t n = 0;
	if (hm_ingresses_list(hm_req_services(req)->ingresses, filter, &views, &n, err) < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, ingress_json(&views[i]));
	hm_ingress_views_free(views, n);
	return hm_resp_json(resp, 200, list);
}

int hm_h_ingresses_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_ingress_view *v = NULL;
	if (hm_ingresses_get(hm_req_services(req)->ingresses, hm_req_param(req, "id"), &v, err) < 0)
		return -1;
	return reply_ingress(resp, 200, v);
}

int hm_h_ingresses_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	if (hm_ingresses_delete(hm_req_services(req)->ingresses, hm_req_param(req, "id"), err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}
