/*
 * validate: typed field access for request bodies and deepObject queries.
 */
#include "api/validate.h"

#include <string.h>

#include "api/request.h"
#include "core/err.h"
#include "core/xalloc.h"

int hm_body_object(json_t *body, struct hm_err **err)
{
	if (!body)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_request",
		                  "a JSON body is required");
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_request",
		                  "request body must be a JSON object");
	return 0;
}

int hm_body_string(json_t *body, const char *key, bool required, size_t max, const char **ret,
                   struct hm_err **err)
{
	json_t *v = json_object_get(body, key);
	*ret = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return hm_err_set(err, HM_ERR_INVALID, "missing_field", "%s is required",
			                  key);
		return 0;
	}
	if (!json_is_string(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "%s must be a string", key);
	if (json_string_length(v) > max)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s is longer than %zu bytes", key, max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s must not contain NUL characters", key);
	*ret = json_string_value(v);
	return 0;
}

int hm_body_object_field(json_t *body, const char *key, json_t **ret, struct hm_err **err)
{
	json_t *v = json_object_get(body, key);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "%s must be an object",
		                  key);
	*ret = v;
	return 0;
}

json_t *hm_query_deep_object(const struct hm_req *req, const char *prefix)
{
	size_t pl = strlen(prefix);
	json_t *out = NULL;
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *v;
		hm_req_query_at(req, i, &k, &v);
		size_t kl = strlen(k);
		if (kl < pl + 3 || strncmp(k, prefix, pl) != 0 || k[pl] != '[' || k[kl - 1] != ']')
			continue;
		char *inner = xstrndup(k + pl + 1, kl - pl - 2);
		if (!out)
			out = json_object();
		json_object_set_new(out, inner, json_string(v));
		free(inner);
	}
	return out;
}
