/*
 * Unit tests that hold the route table (api/routes.c) and the embedded
 * OpenAPI document (api/openapi.yaml, as JSON) to each other, both ways:
 * every route is a documented operation and every operation a route;
 * public routes are exactly those the spec marks `security: []`; scoped
 * routes use known scopes and document 401 and 403; body flags match the
 * documented request bodies; path parameters agree; and no route is
 * shadowed by an earlier one in the router.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/dialect.h"
#include "api/fields.h"
#include "api/request.h"
#include "api/router.h"
#include "api/spec.h"
#include "auth/jwt.h"
#include "core/err.h"

static const char *const http_methods[] = {
	"get", "put", "post", "delete", "patch", "head", "options", "trace", NULL,
};

static json_t *spec;

/* Every dialect's routes in one list (the dialects' prefixes keep them apart). */
#define MAX_ROUTES 256
static struct hm_route all_routes[MAX_ROUTES];
static size_t nall;

static int load_spec(void **state)
{
	(void)state;
	nall = 0;
	for (size_t d = 0; d < hm_dialects_count; d++)
		for (size_t i = 0; i < *hm_dialects[d]->nroutes && nall < MAX_ROUTES; i++)
			all_routes[nall++] = hm_dialects[d]->routes[i];
	json_error_t jerr;
	spec = json_loadb(hm_spec_json, (size_t)hm_spec_json_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!spec) {
		fprintf(stderr, "embedded spec JSON does not parse: %s (line %d)\n", jerr.text,
		        jerr.line);
		return -1;
	}
	return 0;
}

static int free_spec(void **state)
{
	(void)state;
	json_decref(spec);
	spec = NULL;
	return 0;
}

static json_t *paths(void)
{
	json_t *p = json_object_get(spec, "paths");
	assert_true(json_is_object(p));
	return p;
}

static void lower(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < size; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

/* Follow a local "$ref": "#/a/b" (one level; enough for parameters and responses). */
static json_t *deref(json_t *v)
{
	const char *ref = json_string_value(json_object_get(v, "$ref"));
	if (!ref)
		return v;
	assert_true(strncmp(ref, "#/", 2) == 0);
	json_t *cur = spec;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", ref + 2);
	for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok;
	     tok = strtok_r(NULL, "/", &save)) {
		cur = json_object_get(cur, tok);
		if (!cur)
			fail_msg("dangling $ref %s", ref);
	}
	return cur;
}

/* The spec's operation object for a route, or NULL. */
static json_t *operation(const struct hm_route *r)
{
	char m[16];
	lower(m, sizeof(m), r->method);
	return json_object_get(json_object_get(paths(), r->pattern), m);
}

static bool is_public(const struct hm_route *r)
{
	return (r->flags & HM_ROUTE_PUBLIC) != 0;
}

static void spec_is_embedded(void **state)
{
	(void)state;
	assert_true(hm_spec_json_len > 0);
	assert_int_equal(strlen(hm_spec_json), hm_spec_json_len);
	assert_true(hm_spec_yaml_len > 0);
	assert_int_equal(strlen(hm_spec_yaml), hm_spec_yaml_len);
	assert_non_null(strstr(hm_spec_yaml, "openapi:"));
	assert_true(json_is_string(json_object_get(spec, "openapi")));
	assert_true(json_object_size(paths()) > 0);
	/* the document requires a bearer token unless an operation opts out */
	json_t *sec = json_object_get(spec, "security");
	assert_true(json_is_array(sec));
	assert_true(json_array_size(sec) > 0);
}

static void table_is_well_formed(void **state)
{
	(void)state;
	assert_true(nall > 0);
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		assert_non_null(r->method);
		assert_non_null(r->pattern);
		assert_non_null(r->fn);
		assert_true(r->pattern[0] == '/');
		for (const char *c = r->method; *c; c++)
			assert_true(isupper((unsigned char)*c));
		/* a body is either JSON or an upload, never both, and public routes take none */
		assert_false((r->flags & HM_ROUTE_JSON_BODY) && (r->flags & HM_ROUTE_UPLOAD));
		if (is_public(r))
			assert_int_equal(r->flags & (HM_ROUTE_JSON_BODY | HM_ROUTE_UPLOAD), 0);
		for (size_t j = 0; j < i; j++)
			if (strcmp(all_routes[j].method, r->method) == 0 &&
			    strcmp(all_routes[j].pattern, r->pattern) == 0)
				fail_msg("duplicate route %s %s", r->method, r->pattern);
	}
}

static void every_route_is_documented(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		if (!json_is_object(operation(r)))
			fail_msg("route %s %s is not in api/openapi.yaml", r->method, r->pattern);
	}
}

static void every_operation_has_a_route(void **state)
{
	(void)state;
	const char *path;
	json_t *item;
	size_t nops = 0;
	json_object_foreach (paths(), path, item) {
		assert_true(json_is_object(item));
		const char *key;
		json_t *op;
		json_object_foreach (item, key, op) {
			bool is_method = false;
			for (size_t m = 0; http_methods[m]; m++)
				if (strcmp(key, http_methods[m]) == 0)
					is_method = true;
			if (!is_method)
				continue; /* parameters, summary, ... */
			nops++;
			bool found = false;
			for (size_t i = 0; i < nall && !found; i++) {
				char m[16];
				lower(m, sizeof(m), all_routes[i].method);
				found =
				    strcmp(m, key) == 0 && strcmp(all_routes[i].pattern, path) == 0;
			}
			if (!found)
				fail_msg("spec operation %s %s has no route", key, path);
		}
	}
	/* with both directions holding, the counts agree too */
	assert_int_equal(nops, nall);
}

static void scopes_and_security(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		json_t *op = operation(r);
		assert_non_null(op);
		json_t *sec = json_object_get(op, "security");
		if (is_public(r)) {
			if (r->scope)
				fail_msg("public route %s %s has scope %s", r->method, r->pattern,
				         r->scope);
			if (!json_is_array(sec) || json_array_size(sec) != 0)
				fail_msg("public route %s %s: spec lacks `security: []`", r->method,
				         r->pattern);
		} else {
			if (!r->scope)
				fail_msg("route %s %s needs a scope", r->method, r->pattern);
			if (!hm_scope_is_known(r->scope) || strcmp(r->scope, "*") == 0)
				fail_msg("route %s %s: unknown scope %s", r->method, r->pattern,
				         r->scope);
			if (sec && (!json_is_array(sec) || json_array_size(sec) == 0))
				fail_msg("route %s %s needs a token but the spec says it does not",
				         r->method, r->pattern);
		}
	}
}

static bool documents(json_t *op, const char *status)
{
	return json_is_object(deref(json_object_get(json_object_get(op, "responses"), status)));
}

static void authenticated_routes_document_401_and_403(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		json_t *op = operation(r);
		assert_non_null(op);
		assert_true(json_object_size(json_object_get(op, "responses")) > 0);
		if (is_public(r))
			continue;
		if (!documents(op, "401"))
			fail_msg("%s %s does not document 401", r->method, r->pattern);
		if (!documents(op, "403"))
			fail_msg("%s %s does not document 403 (missing scope)", r->method,
			         r->pattern);
	}
}

static void request_bodies_match_flags(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		json_t *op = operation(r);
		assert_non_null(op);
		json_t *body = json_object_get(op, "requestBody");
		json_t *content = json_object_get(deref(body ? body : json_null()), "content");
		if (r->flags & HM_ROUTE_JSON_BODY) {
			if (!json_object_get(content, "application/json"))
				fail_msg(
				    "%s %s takes JSON but the spec has no application/json body",
				    r->method, r->pattern);
		} else if (r->flags & HM_ROUTE_UPLOAD) {
			if (json_object_size(content) == 0)
				fail_msg("%s %s takes an upload but documents no body", r->method,
				         r->pattern);
			const char *ct;
			json_t *v;
			json_object_foreach (content, ct, v) {
				if (strcmp(ct, "application/x-tar") != 0 &&
				    strcmp(ct, "application/gzip") != 0 &&
				    strcmp(ct, "application/octet-stream") != 0)
					fail_msg(
					    "%s %s documents upload type %s the server refuses",
					    r->method, r->pattern, ct);
			}
		} else if (body) {
			fail_msg("%s %s takes no body but the spec documents one", r->method,
			         r->pattern);
		}
		/* a route with a body can be refused for its size and type */
		if (r->flags & (HM_ROUTE_JSON_BODY | HM_ROUTE_UPLOAD)) {
			if (!documents(op, "413") || !documents(op, "415"))
				fail_msg("%s %s does not document 413 and 415", r->method,
				         r->pattern);
		}
	}
}

/* Is `name` declared as a path parameter of the path item or the operation? */
static bool declares_path_param(json_t *item, json_t *op, const char *name, size_t len)
{
	json_t *lists[2] = { json_object_get(item, "parameters"),
		             json_object_get(op, "parameters") };
	for (size_t l = 0; l < 2; l++) {
		size_t i;
		json_t *p;
		json_array_foreach (lists[l], i, p) {
			p = deref(p);
			const char *n = json_string_value(json_object_get(p, "name"));
			const char *in = json_string_value(json_object_get(p, "in"));
			if (n && in && strcmp(in, "path") == 0 && strlen(n) == len &&
			    strncmp(n, name, len) == 0)
				return true;
		}
	}
	return false;
}

/* Every JSON body is checked field by field against a schema that lists its fields, or
 * takes none. */
static void json_bodies_have_field_lists(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		if (!(r->flags & HM_ROUTE_JSON_BODY))
			continue;
		json_t *schema = hm_body_schema(r->method, r->pattern);
		if (!schema || !json_object_get(schema, "properties")) {
			/* documents no body, or one of no fields: only {} gets through */
			json_t *j = json_pack("{s:b}", "no_such_field", 1);
			struct hm_err *err = NULL;
			assert_int_equal(hm_body_fields_check(r->method, r->pattern, j, &err), -1);
			assert_string_equal(err->code, "unknown_field");
			hm_err_free(err);
			json_decref(j);
			j = json_object();
			assert_int_equal(hm_body_fields_check(r->method, r->pattern, j, NULL), 0);
			json_decref(j);
		}
	}
}

static json_t *body(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

static void expect_fields(const char *method, const char *pattern, const char *text,
                          const char *code, const char *needle)
{
	json_t *j = body(text);
	struct hm_err *err = NULL;
	int r = hm_body_fields_check(method, pattern, j, &err);
	json_decref(j);
	if (!code) {
		if (r != 0)
			fail_msg("%s: refused: %s", text, err->msg);
		return;
	}
	if (r == 0)
		fail_msg("%s: accepted, expected %s", text, code);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	assert_string_equal(err->code, code);
	if (!strstr(err->msg, needle))
		fail_msg("`%s` does not say `%s`", err->msg, needle);
	hm_err_free(err);
}

static void body_fields(void **state)
{
	(void)state;
	const char *c = "/instances";
	/* what is honoured, and the documented no-ops */
	expect_fields(
	    "POST", c,
	    "{\"name\":\"a\",\"image\":\"b\",\"size\":\"1GB\",\"env\":{\"ANY_KEY\":\"v\"},"
	    "\"tags\":{\"k\":\"v\"},\"network\":{\"enabled\":true,\"bandwidth_upload\":\"1Gbps\"},"
	    "\"volumes\":[{\"volume_id\":\"v\",\"mount_path\":\"/d\",\"readonly\":true}],"
	    "\"skip_guest_agent\":true,\"skip_kernel_headers\":false,\"platform\":\"linux/amd64\"}",
	    NULL, NULL);
	/* an unknown key, at the top, nested, in an array element */
	expect_fields("POST", c, "{\"name\":\"a\",\"image\":\"b\",\"colour\":\"red\"}",
	              "unknown_field", "`colour` is not a field");
	expect_fields("POST", c, "{\"network\":{\"enabled\":true,\"mtu\":9000}}", "unknown_field",
	              "`network.mtu`");
	expect_fields("POST", c,
	              "{\"volumes\":[{\"volume_id\":\"v\"},{\"volume_id\":\"w\",\"size\":1}]}",
	              "unknown_field", "`volumes[1].size`");
	/* refused upstream fields: named with the reason, unless at their default */
	/* credentials: a map whose entries' fields are known, nested ones too */
	expect_fields("POST", c,
	              "{\"credentials\":{\"GITHUB_TOKEN\":{\"source\":{\"env\":\"X\"},"
	              "\"inject\":[{\"hosts\":[\"api.github.com\"],\"as\":{\"header\":"
	              "\"Authorization\",\"format\":\"Bearer ${value}\"}}]}}}",
	              NULL, NULL);
	expect_fields("POST", c,
	              "{\"credentials\":{\"GITHUB_TOKEN\":{\"source\":{\"env\":\"X\","
	              "\"vault\":\"v\"}}}}",
	              "unknown_field", "`credentials.GITHUB_TOKEN.source.vault`");
	expect_fields("POST", c,
	              "{\"credentials\":{\"T\":{\"inject\":[{\"as\":{\"header\":\"A\","
	              "\"sign\":\"hmac\"}}]}}}",
	              "unknown_field", "`credentials.T.inject[0].as.sign`");
	expect_fields("POST", c, "{\"network\":{\"egress\":{\"enabled\":true}}}", NULL, NULL);
	expect_fields("POST", c, "{\"network\":{\"egress\":{\"enforcement\":{\"ports\":[1]}}}}",
	              "unknown_field", "`network.egress.enforcement.ports`");
	expect_fields("POST", c, "{\"ttl\":\"1h\"}", "unsupported_field", "`ttl`");
	expect_fields("POST", c, "{\"hotplug_size\":\"1GB\"}", "unsupported_field",
	              "`hotplug_size`");
	expect_fields("POST", c, "{\"restart_policy\":{\"policy\":\"always\",\"backoff\":\"1s\"}}",
	              NULL, NULL);
	expect_fields("POST", c, "{\"restart_policy\":{\"policy\":\"always\",\"tries\":3}}",
	              "unknown_field", "`restart_policy.tries`");
	expect_fields(
	    "POST", c,
	    "{\"credentials\":{},\"ttl\":null,\"devices\":[],\"auto_standby\":{\"enabled\":false},"
	    "\"network\":{\"egress\":{\"enabled\":false}},\"hotplug_size\":\"\"}",
	    NULL, NULL);
	/* the other bodies follow the same rule */
	expect_fields("PATCH", "/instances/{id}", "{\"env\":{\"A\":\"1\"}}", NULL, NULL);
	expect_fields("PATCH", "/instances/{id}",
	              "{\"auto_standby\":{\"enabled\":true,\"idle_timeout\":\"30s\"}}", NULL, NULL);
	expect_fields("PATCH", "/instances/{id}",
	              "{\"auto_standby\":{\"enabled\":true,\"idle\":1}}", "unknown_field",
	              "`auto_standby.idle`");
	expect_fields("PATCH", "/instances/{id}", "{\"health_check\":{\"type\":\"http\"}}",
	              "unsupported_field", "`health_check`");
	expect_fields("POST", "/instances/{id}/standby", "{\"compression_delay\":\"5m\"}",
	              "unsupported_field", "`compression_delay`");
	expect_fields("POST", "/instances/{id}/fork", "{\"name\":\"x\",\"extra\":1}",
	              "unknown_field", "`extra`");
	expect_fields("POST", "/volumes", "{\"name\":\"v\",\"size_gb\":1,\"fs\":\"xfs\"}",
	              "unknown_field", "`fs`");
	expect_fields(
	    "POST", "/ingresses",
	    "{\"name\":\"i\",\"rules\":[{\"match\":{\"hostname\":\"h\",\"path\":\"/\"}}]}",
	    "unknown_field", "`rules[0].match.path`");
	/* a body that is not an object is left to the handler */
	expect_fields("POST", c, "[1,2]", NULL, NULL);
}

static void path_parameters_agree(void **state)
{
	(void)state;
	for (size_t i = 0; i < nall; i++) {
		const struct hm_route *r = &all_routes[i];
		json_t *item = json_object_get(paths(), r->pattern);
		json_t *op = operation(r);
		assert_non_null(op);
		size_t nparams = 0;
		for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
			const char *end = strchr(p, '}');
			assert_non_null(end);
			/* a parameter is a whole segment */
			assert_true(p[-1] == '/');
			assert_true(end[1] == '\0' || end[1] == '/');
			nparams++;
			if (!declares_path_param(item, op, p + 1, (size_t)(end - p - 1)))
				fail_msg("%s %s: {%.*s} is not declared as a path parameter",
				         r->method, r->pattern, (int)(end - p - 1), p + 1);
		}
		assert_true(nparams <= HM_ROUTER_MAX_PARAMS);
		/* and the spec declares no path parameter the pattern lacks */
		json_t *lists[2] = { json_object_get(item, "parameters"),
			             json_object_get(op, "parameters") };
		for (size_t l = 0; l < 2; l++) {
			size_t k;
			json_t *p;
			json_array_foreach (lists[l], k, p) {
				p = deref(p);
				const char *in = json_string_value(json_object_get(p, "in"));
				const char *n = json_string_value(json_object_get(p, "name"));
				if (!in || strcmp(in, "path") != 0)
					continue;
				char want[128];
				snprintf(want, sizeof(want), "{%s}", n ? n : "");
				if (!strstr(r->pattern, want))
					fail_msg(
					    "%s %s: spec path parameter %s is not in the pattern",
					    r->method, r->pattern, n ? n : "(null)");
			}
		}
	}
}

/* Turn "/images/{name}" into "/images/x-name" for matching. */
static void sample_path(const char *pattern, char *out, size_t size)
{
	size_t o = 0;
	for (const char *p = pattern; *p && o + 1 < size; p++) {
		if (*p == '{') {
			o += (size_t)snprintf(out + o, size - o, "x-");
			continue;
		}
		if (*p == '}')
			continue;
		out[o++] = *p;
	}
	out[o] = '\0';
}

static void no_route_is_shadowed(void **state)
{
	(void)state;
	for (size_t d = 0; d < hm_dialects_count; d++) {
		const struct hm_dialect *dl = hm_dialects[d];
		for (size_t i = 0; i < *dl->nroutes; i++) {
			const struct hm_route *r = &dl->routes[i];
			char path[512];
			sample_path(r->pattern, path, sizeof(path));
			/* the edge gives the path to this dialect, and its table routes it here */
			if (hm_dialect_pick(hm_dialects, hm_dialects_count, path) != dl)
				fail_msg("%s %s is not taken by dialect %s", r->method, path,
				         dl->name);
			const struct hm_route *got = NULL;
			struct hm_params params;
			struct hm_err *err = NULL;
			if (hm_router_match(dl->routes, *dl->nroutes, r->method, path, &got,
			                    &params, NULL, &err) < 0)
				fail_msg("%s %s does not route: %s", r->method, path, err->msg);
			if (got != r)
				fail_msg("%s %s reaches %s %s instead", r->method, path,
				         got->method, got->pattern);
			hm_params_done(&params);
		}
	}
}

static void dialects_are_apart(void **state)
{
	(void)state;
	/* the root dialect goes last, and prefixes are whole segments */
	assert_string_equal(hm_dialects[hm_dialects_count - 1]->prefix, "");
	assert_ptr_equal(hm_dialect_pick(hm_dialects, hm_dialects_count, "/v1"), &hm_dialect_ukc);
	assert_ptr_equal(hm_dialect_pick(hm_dialects, hm_dialects_count, "/v1/instances?x=1"),
	                 &hm_dialect_ukc);
	assert_ptr_equal(hm_dialect_pick(hm_dialects, hm_dialects_count, "/v10/instances"),
	                 &hm_dialect_hypeman);
	assert_ptr_equal(hm_dialect_pick(hm_dialects, hm_dialects_count, "/instances"),
	                 &hm_dialect_hypeman);
	for (size_t d = 0; d < hm_dialects_count; d++) {
		const struct hm_dialect *dl = hm_dialects[d];
		assert_non_null(dl->render_error);
		for (size_t i = 0; i < *dl->nroutes; i++) {
			const char *p = dl->routes[i].pattern;
			if (*dl->prefix && strncmp(p, dl->prefix, strlen(dl->prefix)) != 0)
				fail_msg("%s route %s is outside its prefix %s", dl->name, p,
				         dl->prefix);
			/* a root route is never inside another dialect's prefix */
			if (!*dl->prefix &&
			    hm_dialect_pick(hm_dialects, hm_dialects_count, p) != dl)
				fail_msg("root route %s is taken by another dialect", p);
		}
	}
}

/* The /v1 bodies: arrays of refs or one ref, oneOf alternatives, refusals. */
static void ukc_body_fields(void **state)
{
	(void)state;
	const char *c = "/v1/instances";
	expect_fields("POST", c,
	              "{\"name\":\"a\",\"image\":\"b\",\"args\":[\"x\"],\"env\":{\"K\":\"v\"},"
	              "\"memory_mb\":256,\"vcpus\":1,\"autostart\":true,\"timeout_s\":5,"
	              "\"tags\":[\"t\"],\"restart_policy\":\"never\","
	              "\"scale_to_zero\":{\"policy\":\"off\"}}",
	              NULL, NULL);
	expect_fields("POST", c, "{\"image\":{\"url\":\"b\"}}", NULL, NULL);
	expect_fields("POST", c, "{\"image\":{\"url\":\"b\",\"colour\":1}}", "unknown_field",
	              "`image.colour`");
	expect_fields("POST", c, "{\"image\":{\"url\":\"b\",\"pull_policy\":\"always\"}}",
	              "unsupported_field", "`image.pull_policy`");
	expect_fields("POST", c, "{\"image\":\"b\",\"replicas\":2}", NULL, NULL);
	expect_fields("POST", c, "{\"image\":\"b\",\"gpus\":1}", "unsupported_field",
	              "`gpus`: GPUs are not available");
	expect_fields("POST", c,
	              "{\"image\":\"b\",\"volumes\":[{\"name\":\"v\",\"at\":\"/v\","
	              "\"host_path\":\"/srv\"}]}",
	              "unsupported_field", "`volumes[0].host_path`");
	expect_fields("POST", "/v1/volumes", "{\"size_mb\":8,\"template\":{\"name\":\"t\"}}",
	              "unsupported_field", "`template`: volume templates");
	expect_fields("POST", "/v1/images",
	              "[{\"url\":\"a\",\"timeout_s\":1,\"autokill\":{"
	              "\"time_ms\":5}}]",
	              "unsupported_field", "`[0].autokill`");
	expect_fields("POST", c, "{\"image\":\"b\",\"replicas\":0,\"volumes\":[],\"features\":[]}",
	              NULL, NULL);
	expect_fields("POST", c, "{\"image\":\"b\",\"features\":[\"delete-on-stop\"]}", NULL, NULL);
	expect_fields("POST", c, "{\"image\":\"b\",\"restart_policy\":\"on-failure\"}", NULL, NULL);
	/* updates: items of prop, op and value (any type) */
	expect_fields("PATCH", c,
	              "[{\"name\":\"a\",\"prop\":\"memory_mb\",\"op\":\"set\",\"value\":256,"
	              "\"id\":\"op-1\"},{\"uuid\":\"u\",\"prop\":\"env\",\"op\":\"del\","
	              "\"value\":[\"K\"]}]",
	              NULL, NULL);
	expect_fields("PATCH", c, "[{\"name\":\"a\",\"prop\":\"tags\",\"opp\":\"set\"}]",
	              "unknown_field", "`[0].opp`");
	expect_fields("PATCH", "/v1/instances/{uuid}",
	              "{\"prop\":\"delete_lock\",\"op\":\"set\",\"value\":true}", NULL, NULL);
	expect_fields("POST", c, "{\"image\":\"b\",\"memory\":1}", "unknown_field", "`memory`");
	/* bulk bodies: an array of refs, or one */
	expect_fields("PUT", "/v1/instances/stop",
	              "[{\"name\":\"a\"},{\"uuid\":\"u\",\"force\":true}]", NULL, NULL);
	expect_fields("PUT", "/v1/instances/stop", "{\"name\":\"a\",\"force\":true}", NULL, NULL);
	expect_fields("PUT", "/v1/instances/stop", "[{\"name\":\"a\"},{\"name\":\"b\",\"x\":1}]",
	              "unknown_field", "`[1].x`");
	expect_fields("PUT", "/v1/instances/stop", "[{\"name\":\"a\",\"drain_timeout_ms\":250}]",
	              NULL, NULL);
	expect_fields("PUT", "/v1/instances/stop", "[{\"name\":\"a\",\"dump\":true}]",
	              "unsupported_field", "`[0].dump`: stop dumps");
	expect_fields("DELETE", c, "[{\"name\":\"a\",\"dont_retain\":true}]", "unsupported_field",
	              "`[0].dont_retain`");
	expect_fields("PUT", "/v1/instances/{uuid}/stop", "{\"force\":true}", NULL, NULL);
	expect_fields("PUT", "/v1/instances/{uuid}/stop", "{\"name\":\"a\"}", "unknown_field",
	              "`name`");
	expect_fields("DELETE", "/v1/instances/{uuid}", "{}", NULL, NULL);
	expect_fields("PUT", "/v1/instances/{uuid}/suspend", "{\"drain_timeout_ms\":5}", NULL,
	              NULL);
	expect_fields("PUT", "/v1/instances/{uuid}/suspend", "{\"drain\":5}", "unknown_field",
	              "`drain`");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spec_is_embedded),
		cmocka_unit_test(table_is_well_formed),
		cmocka_unit_test(every_route_is_documented),
		cmocka_unit_test(every_operation_has_a_route),
		cmocka_unit_test(scopes_and_security),
		cmocka_unit_test(authenticated_routes_document_401_and_403),
		cmocka_unit_test(request_bodies_match_flags),
		cmocka_unit_test(path_parameters_agree),
		cmocka_unit_test(json_bodies_have_field_lists),
		cmocka_unit_test(body_fields),
		cmocka_unit_test(no_route_is_shadowed),
		cmocka_unit_test(dialects_are_apart),
		cmocka_unit_test(ukc_body_fields),
	};
	return cmocka_run_group_tests_name("routes", tests, load_spec, free_spec);
}
