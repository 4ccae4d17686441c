/*
 * api/fields: every JSON request body checked against the embedded OpenAPI
 * document (fields.h says the rules). The document is parsed once, on first
 * use, and only read afterwards.
 */
#include "api/fields.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "api/spec.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

#define MAX_DEPTH 16

static json_t *spec;
static pthread_once_t spec_once = PTHREAD_ONCE_INIT;

static void spec_load(void)
{
	spec = json_loadb(hm_spec_json, (size_t)hm_spec_json_len, 0, NULL);
}

/* Follow "#/components/schemas/X" references. */
static json_t *resolve(json_t *schema)
{
	for (int i = 0; i < 8 && schema; i++) {
		const char *ref = json_string_value(json_object_get(schema, "$ref"));
		if (!ref || strncmp(ref, "#/components/schemas/", 21) != 0)
			return schema;
		schema = json_object_get(
		    json_object_get(json_object_get(spec, "components"), "schemas"), ref + 21);
	}
	return schema;
}

json_t *hm_body_schema(const char *method, const char *pattern)
{
	pthread_once(&spec_once, spec_load);
	char m[16];
	size_t n = strlen(method);
	if (n >= sizeof(m))
		return NULL;
	for (size_t i = 0; i <= n; i++)
		m[i] = (char)tolower((unsigned char)method[i]);
	json_t *op = json_object_get(json_object_get(json_object_get(spec, "paths"), pattern), m);
	json_t *content = json_object_get(json_object_get(op, "requestBody"), "content");
	return resolve(json_object_get(json_object_get(content, "application/json"), "schema"));
}

/* A value no one would send to ask for anything: null, false, "", 0, {}, [] or made of those. */
static bool is_default(json_t *v, int depth)
{
	if (depth > MAX_DEPTH)
		return false;
	const char *k;
	json_t *x;
	size_t i;
	switch (json_typeof(v)) {
	case JSON_NULL:
	case JSON_FALSE:
		return true;
	case JSON_STRING:
		return json_string_length(v) == 0;
	case JSON_INTEGER:
		return json_integer_value(v) == 0;
	case JSON_REAL:
		return json_real_value(v) == 0;
	case JSON_OBJECT:
		json_object_foreach (v, k, x)
			if (!is_default(x, depth + 1))
				return false;
		return true;
	case JSON_ARRAY:
		json_array_foreach (v, i, x)
			if (!is_default(x, depth + 1))
				return false;
		return true;
	default:
		return false;
	}
}

/* The JSON Schema type name of a value. */
static const char *type_of(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

/* A oneOf's alternative for v: the first whose `type` is v's (an array of refs or
 * one ref, a string or an object). None: the schema itself, which lists nothing. */
static json_t *pick_alternative(json_t *schema, json_t *v)
{
	json_t *alts = json_object_get(schema, "oneOf");
	size_t i;
	json_t *alt;
	json_array_foreach (alts, i, alt) {
		alt = resolve(alt);
		const char *t = json_string_value(json_object_get(alt, "type"));
		if (t && (strcmp(t, type_of(v)) == 0 ||
		          (strcmp(t, "number") == 0 && json_is_integer(v))))
			return alt;
	}
	return schema;
}

static int check(json_t *schema, json_t *v, const char *path, int depth, struct hm_err **err)
{
	schema = resolve(schema);
	if (!schema || depth > MAX_DEPTH)
		return 0;
	if (json_object_get(schema, "oneOf"))
		schema = pick_alternative(schema, v);
	if (json_is_array(v)) {
		json_t *items = json_object_get(schema, "items");
		size_t i;
		json_t *x;
		json_array_foreach (v, i, x) {
			_cleanup_free_ char *p = xasprintf("%s[%zu]", path, i);
			if (check(items, x, p, depth + 1, err) < 0)
				return -1;
		}
		return 0;
	}
	json_t *props = json_object_get(schema, "properties");
	json_t *values = resolve(json_object_get(schema, "additionalProperties"));
	if (json_is_object(v) && !props && json_object_get(values, "properties")) {
		/* a map of any keys whose values are objects of known fields */
		const char *k;
		json_t *x;
		json_object_foreach (v, k, x) {
			_cleanup_free_ char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
			if (check(values, x, p, depth + 1, err) < 0)
				return -1;
		}
		return 0;
	}
	if (!json_is_object(v) || (!props && values))
		return 0; /* a scalar, or a map of any keys: the handler checks the values */
	json_t *refused = json_object_get(schema, "x-refused");
	const char *k;
	json_t *x;
	json_object_foreach (v, k, x) {
		_cleanup_free_ char *p = *path ? xasprintf("%s.%s", path, k) : xstrdup(k);
		json_t *ps = json_object_get(props, k);
		if (ps) {
			if (check(ps, x, p, depth + 1, err) < 0)
				return -1;
			continue;
		}
		const char *why = json_string_value(json_object_get(refused, k));
		if (why) {
			if (is_default(x, 0))
				continue;
			return hm_err_set(err, HM_ERR_INVALID, "unsupported_field", "`%s`: %s", p,
			                  why);
		}
		return hm_err_set(err, HM_ERR_INVALID, "unknown_field",
		                  props ? "`%s` is not a field of this request (see /spec.yaml)"
		                        : "`%s` is not a field of this request: it takes none",
		                  p);
	}
	return 0;
}

int hm_body_fields_check(const char *method, const char *pattern, json_t *body, struct hm_err **err)
{
	if (!body)
		return 0;
	json_t *schema = hm_body_schema(method, pattern);
	if (schema)
		return check(schema, body, "", 0, err);
	/* A route that documents no body: the schema {}, an object of no fields. */
	json_t *none = json_object();
	int r = check(none, body, "", 0, err);
	json_decref(none);
	return r;
}
