/*
 * api/ukc_envelope: the Unikraft Cloud envelope (see ukc.h) and the refs
 * requests name resources by. It owns the shape of every /v1 answer: the
 * handlers hand it entries and errors, never build an envelope themselves.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "api/ukc.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/names.h"
#include "core/xalloc.h"

/* ---- refs ---- */

int ukc_ref_of(json_t *item, const char *where, struct ukc_ref *r, struct hm_err **err)
{
	if (!json_is_object(item))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "%s must be an object {\"uuid\": ...} or {\"name\": ...}", where);
	json_t *u = json_object_get(item, "uuid");
	json_t *n = json_object_get(item, "name");
	if (u && !json_is_string(u))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "%s`uuid` must be a string",
		                  where);
	if (n && !json_is_string(n))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "%s`name` must be a string",
		                  where);
	if (u && n)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%sgive one of `uuid` and `name`, not both", where);
	if (!u && !n)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "%s`uuid` or `name` is required", where);
	*r = (struct ukc_ref){ json_string_value(u), json_string_value(n), item };
	return 0;
}

int ukc_body_refs(json_t *body, struct ukc_ref **ret, size_t *n, struct hm_err **err)
{
	*ret = NULL;
	*n = 0;
	if (!body)
		return hm_err_set(err, HM_ERR_INVALID, "missing_body",
		                  "the body must list the instances: [{\"uuid\": ...} or "
		                  "{\"name\": ...}, ...]");
	if (json_is_object(body)) {
		*ret = xcalloc(1, sizeof(**ret));
		if (ukc_ref_of(body, "", *ret, err) < 0) {
			free(*ret);
			*ret = NULL;
			return -1;
		}
		*n = 1;
		return 0;
	}
	if (!json_is_array(body))
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_json",
		    "the body must be an array of {\"uuid\": ...} or {\"name\": ...}");
	size_t count = json_array_size(body);
	if (count == 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body lists no instance");
	if (count > UKC_MAX_REFS)
		return hm_err_set(err, HM_ERR_INVALID, "too_many",
		                  "the body lists %zu items; at most %d per request", count,
		                  UKC_MAX_REFS);
	struct ukc_ref *refs = xcalloc(count, sizeof(*refs));
	for (size_t i = 0; i < count; i++) {
		char where[32];
		snprintf(where, sizeof(where), "item [%zu]: ", i);
		if (ukc_ref_of(json_array_get(body, i), where, &refs[i], err) < 0) {
			free(refs);
			return -1;
		}
	}
	*ret = refs;
	*n = count;
	return 0;
}

int ukc_query_refs(const struct hm_req *req, struct ukc_ref **ret, size_t *n, struct hm_err **err)
{
	size_t q = hm_req_query_count(req), k = 0;
	struct ukc_ref *refs = xcalloc(q ? q : 1, sizeof(*refs));
	for (size_t i = 0; i < q; i++) {
		const char *key, *value;
		hm_req_query_at(req, i, &key, &value);
		bool u = strcmp(key, "uuid") == 0, nm = strcmp(key, "name") == 0;
		if (!u && !nm)
			continue;
		if (!*value) {
			free(refs);
			return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
			                  "query parameter `%s` is empty", key);
		}
		refs[k++] = (struct ukc_ref){ u ? value : NULL, nm ? value : NULL, NULL };
	}
	*ret = refs;
	*n = k;
	return 0;
}

struct ukc_ref ukc_path_ref(const struct hm_req *req)
{
	return (struct ukc_ref){ hm_req_param(req, "uuid"), NULL, NULL };
}

int ukc_ref_check(const struct ukc_ref *r, struct hm_err **err)
{
	if (r->uuid && !hm_uuid_is(r->uuid))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_uuid", "Invalid uuid '%.80s'",
		                  r->uuid);
	return 0;
}

bool ukc_ref_is(const struct ukc_ref *r, const char *uuid, const char *name)
{
	return r->uuid ? uuid && strcasecmp(uuid, r->uuid) == 0
	               : name && strcmp(name, r->name) == 0;
}

/* ---- the envelope ---- */

static json_t *envelope(const char *status, const char *message, json_t *data)
{
	json_t *e = json_pack("{s:s}", "status", status);
	if (message)
		json_object_set_new(e, "message", json_string(message));
	json_object_set_new(e, "data", data ? data : json_object());
	/* ukc_finish sets the time just before the answer goes. */
	json_object_set_new(e, "op_time_us", json_integer(0));
	return e;
}

void ukc_batch_init(struct ukc_batch *b)
{
	*b = (struct ukc_batch){ json_array(), 0, 0 };
}

void ukc_batch_ok(struct ukc_batch *b, json_t *entry)
{
	json_object_set_new(entry, "status", json_string("success"));
	json_array_append_new(b->entries, entry);
	b->ok++;
}

void ukc_batch_fail(struct ukc_batch *b, const struct ukc_ref *ref, const struct hm_err *err)
{
	_cleanup_free_ char *msg = hm_utf8_sanitize(err && err->msg ? err->msg : "failed");
	json_t *e = json_pack("{s:s,s:s,s:i}", "status", "error", "message", msg, "error",
	                      hm_err_is(err, HM_ERR_NOT_FOUND) ? UKC_ERR_NOT_FOUND : UKC_ERR_OTHER);
	if (ref && ref->uuid)
		json_object_set_new(e, "uuid", json_string(ref->uuid));
	if (ref && ref->name)
		json_object_set_new(e, "name", json_string(ref->name));
	json_array_append_new(b->entries, e);
	b->failed++;
}

int ukc_batch_reply(struct hm_resp *resp, struct ukc_batch *b, const char *key)
{
	const char *status = b->failed == 0 ? "success" : b->ok == 0 ? "error" : "partial_success";
	json_t *data = json_object();
	json_object_set_new(data, key, b->entries);
	b->entries = NULL;
	return hm_resp_json(
	    resp, 200,
	    envelope(status, b->failed ? "Failed to perform all operations" : NULL, data));
}

int ukc_reply(struct hm_resp *resp, json_t *data)
{
	return hm_resp_json(resp, 200, envelope("success", NULL, data));
}

void ukc_render_error(struct hm_resp *resp, const struct hm_err *err)
{
	int status = hm_err_http_status(err);
	_cleanup_free_ char *msg = hm_utf8_sanitize(err && err->msg ? err->msg : "internal error");
	json_t *e = envelope("error", msg, NULL);
	json_object_set_new(e, "errors",
	                    json_pack("[{s:i,s:s}]", "status", status, "message", msg));
	hm_resp_json(resp, status, e);
	if (status == 401)
		hm_resp_header(resp, "WWW-Authenticate", "Bearer");
}

void ukc_finish(struct hm_resp *resp, double elapsed_us)
{
	if (json_is_object(resp->json) && json_object_get(resp->json, "op_time_us"))
		json_object_set_new(resp->json, "op_time_us",
		                    json_integer(elapsed_us > 0 ? (json_int_t)elapsed_us : 0));
}

/* ---- query values ---- */

static const char *last_query(const struct hm_req *req, const char *name)
{
	const char *found = NULL;
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *v;
		hm_req_query_at(req, i, &k, &v);
		if (strcmp(k, name) == 0)
			found = v;
	}
	return found;
}

int ukc_query_int(const struct hm_req *req, const char *name, long long dflt, long long min,
                  long long max, long long *ret, struct hm_err **err)
{
	const char *v = last_query(req, name);
	if (!v) {
		*ret = dflt;
		return 0;
	}
	char *end = NULL;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "query parameter `%s` must be an integer from %lld to %lld, not "
		                  "`%.40s`",
		                  name, min, max, v);
	*ret = x;
	return 0;
}

int ukc_query_bool(const struct hm_req *req, const char *name, bool dflt, bool *ret,
                   struct hm_err **err)
{
	const char *v = last_query(req, name);
	if (!v)
		*ret = dflt;
	else if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*ret = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*ret = false;
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "query parameter `%s` must be true or false, not `%.40s`", name,
		                  v);
	return 0;
}

/* ---- list queries ---- */

int ukc_list_parse(const struct hm_req *req, struct ukc_list *q, struct hm_err **err)
{
	*q = (struct ukc_list){ 0 };
	if (ukc_query_bool(req, "details", true, &q->details, err) < 0 ||
	    ukc_query_int(req, "count", 0, 0, 1000000, &q->count, err) < 0)
		return -1;
	const char *order = NULL, *sortby = NULL;
	_cleanup_json_ json_t *tag_list = json_array();
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *val;
		hm_req_query_at(req, i, &k, &val);
		if (strcmp(k, "order") == 0)
			order = val;
		else if (strcmp(k, "sortby") == 0)
			sortby = val;
		else if (strcmp(k, "from") == 0 || strcmp(k, "from_uuid") == 0)
			q->from = val; /* the SDK sends from, the API document from_uuid */
		else if (strcmp(k, "tags") == 0)
			json_array_append_new(tag_list, json_string(val));
	}
	if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`order` must be asc or desc, not `%.40s`", order);
	if (sortby && strcmp(sortby, "create_time") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`sortby` must be create_time, not `%.40s`", sortby);
	q->desc = order && strcmp(order, "desc") == 0;
	if (json_array_size(tag_list) && ukc_tags_in(tag_list, "tags", &q->tags, err) < 0)
		return -1;
	return 0;
}

void ukc_list_done(struct ukc_list *q)
{
	json_decref(q->tags);
	q->tags = NULL;
}

/* ---- body fields ---- */

/* opts[key] as an integer, or dflt when absent or null. */
int ukc_body_int(json_t *opts, const char *key, long long dflt, long long min, long long max,
                 long long *ret, struct hm_err **err)
{
	json_t *v = json_object_get(opts, key);
	if (!v || json_is_null(v)) {
		*ret = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an integer from %lld to %lld", key, min, max);
	*ret = json_integer_value(v);
	return 0;
}

int ukc_body_bool(json_t *opts, const char *key, bool *ret, struct hm_err **err)
{
	json_t *v = json_object_get(opts, key);
	if (!v || json_is_null(v)) {
		*ret = false;
		return 0;
	}
	if (!json_is_boolean(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`%s` must be a boolean",
		                  key);
	*ret = json_is_true(v);
	return 0;
}

/* A name like UKC's: word-word-hex. */
char *ukc_random_name(void)
{
	static const char *const first[] = { "amber", "brave", "calm",  "deft",  "eager",
		                             "fair",  "glad",  "hazy",  "jolly", "keen",
		                             "lucid", "merry", "noble", "proud", "quiet",
		                             "rapid", "swift", "tidy",  "vivid", "witty" };
	static const char *const second[] = { "aspen", "brook", "cedar", "dune",  "ember",
		                              "fjord", "grove", "heath", "inlet", "jade",
		                              "knoll", "larch", "marsh", "north", "oasis",
		                              "pine",  "ridge", "stone", "tide",  "vale" };
	unsigned char r[6] = { 0 };
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r[0] = r[1] = 0;
	return xasprintf("%s-%s-%02x%02x%02x%x", first[r[0] % 20], second[r[1] % 20], r[2], r[3],
	                 r[4], r[5] & 0xf);
}

/* UKC's tags (["k=v", "k"]) as the domain's map ({"k": "v", "k": ""}). */
int ukc_tags_in(json_t *list, const char *field, json_t **ret, struct hm_err **err)
{
	*ret = NULL;
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an array of strings", field);
	json_t *map = json_object();
	size_t i;
	json_t *t;
	json_array_foreach (list, i, t) {
		const char *s = json_string_value(t);
		if (!s || !*s) {
			json_decref(map);
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`%s[%zu]` must be a non-empty string", field, i);
		}
		const char *eq = strchr(s, '=');
		_cleanup_free_ char *k = eq ? xstrndup(s, (size_t)(eq - s)) : xstrdup(s);
		json_object_set_new(map, k, json_string(eq ? eq + 1 : ""));
	}
	*ret = map;
	return 0;
}

int ukc_body_str(json_t *body, const char *key, const char **ret, struct hm_err **err)
{
	json_t *v = json_object_get(body, key);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`%s` must be a string",
		                  key);
	*ret = json_string_value(v);
	return 0;
}
