/*
 * api/ukc_each: one verb over the resources a /v1 request names, whatever
 * their kind (instances, volumes, checkpoints): each ref resolved by the
 * kind, the verb run on it, and each outcome an entry of data.<kind>. The
 * refs come from the body (bulk routes), the path (by-uuid routes, whose
 * body is then the options) or the query. And the paging every list shares.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/request.h"
#include "api/ukc.h"
#include "core/cleanup.h"
#include "core/err.h"

int ukc_each(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
             const struct ukc_ref *refs, size_t n, json_t *shared_opts, ukc_verb *verb)
{
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = 0; i < n; i++) {
		_cleanup_err_ struct hm_err *e = NULL;
		void *v = NULL;
		json_t *opts = refs[i].item ? refs[i].item : shared_opts;
		if (k->resolve(req, &refs[i], &v, &e) < 0) {
			ukc_batch_fail(&b, &refs[i], e);
			continue;
		}
		struct ukc_ref named = { NULL, NULL, NULL };
		k->identity(v, &named.uuid, &named.name);
		json_t *entry = json_pack("{s:s,s:s}", "uuid", named.uuid ? named.uuid : "", "name",
		                          named.name ? named.name : "");
		if (verb(req, v, opts, entry, &e) < 0) {
			json_decref(entry);
			ukc_batch_fail(&b, &named, e);
		} else {
			ukc_batch_ok(&b, entry);
		}
		k->free(v);
	}
	return ukc_batch_reply(resp, &b, k->key);
}

int ukc_each_body(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
                  ukc_verb *verb, struct hm_err **err)
{
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	if (ukc_body_refs(hm_req_json(req), &refs, &n, err) < 0)
		return -1;
	return ukc_each(req, resp, k, refs, n, NULL, verb);
}

int ukc_each_path(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
                  ukc_verb *verb, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	if (body && !json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be an object");
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, k, &r, 1, body, verb);
}

int ukc_each_query(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k, json_t *opts,
                   ukc_verb *verb, struct hm_err **err)
{
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	if (ukc_query_refs(req, &refs, &n, err) < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_query",
		                  "name the %s with `uuid=` or `name=` query parameters", k->key);
	return ukc_each(req, resp, k, refs, n, opts, verb);
}

int ukc_each_get(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k, ukc_verb *verb,
                 struct hm_err **err)
{
	bool details;
	if (ukc_query_bool(req, "details", true, &details, err) < 0)
		return -1;
	_cleanup_json_ json_t *opts = json_pack("{s:b}", "details", details);
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, k, &r, 1, opts, verb);
}

int ukc_page(const struct ukc_list *q, const char *const *uuids, size_t n, const char *what,
             size_t *first, struct hm_err **err)
{
	*first = 0;
	if (!q->from)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (uuids[i] && strcasecmp(uuids[i], q->from) == 0) {
			*first = i + 1;
			return 0;
		}
	return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
	                  "`from`: no %s has the uuid `%.80s`", what, q->from);
}
