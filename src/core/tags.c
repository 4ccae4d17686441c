/*
 * tags: validation and matching of user tags.
 */
#include "core/tags.h"

#include <string.h>

#include "core/err.h"

static bool tag_chars_ok(const char *s)
{
	for (; *s; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || strchr(" _.:/=+@-", c);
		if (!ok)
			return false;
	}
	return true;
}

int hm_tags_validate(json_t *tags, struct hm_err **err)
{
	if (!tags || json_is_null(tags))
		return 0;
	if (!json_is_object(tags))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_tags", "tags must be an object");
	if (json_object_size(tags) > HM_TAGS_MAX)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_tags",
		                  "at most %d tags are allowed, got %zu", HM_TAGS_MAX,
		                  json_object_size(tags));
	const char *k;
	json_t *v;
	json_object_foreach (tags, k, v) {
		size_t kl = strlen(k);
		if (kl < 1 || kl > 128 || !tag_chars_ok(k))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_tags",
			                  "tag key `%.130s` must be 1-128 characters of "
			                  "[A-Za-z0-9 _.:/=+@-]",
			                  k);
		const char *s = json_string_value(v);
		if (!s)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_tags",
			                  "tag `%s` must have a string value", k);
		if (strlen(s) > 256 || !tag_chars_ok(s))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_tags",
			                  "tag `%s` value must be 0-256 characters of "
			                  "[A-Za-z0-9 _.:/=+@-]",
			                  k);
	}
	return 0;
}

bool hm_tags_match(json_t *tags, json_t *filter)
{
	const char *k;
	json_t *v;
	json_object_foreach (filter, k, v) {
		const char *have = json_string_value(json_object_get(tags, k));
		const char *want = json_string_value(v);
		if (!have || !want || strcmp(have, want) != 0)
			return false;
	}
	return true;
}
