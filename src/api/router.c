/*
 * router: matches requests to the static route table. Patterns are split
 * on '/' at match time (the table is small; no precompilation needed).
 * Path segments are percent-decoded individually, so an image name sent
 * as `docker.io%2Flibrary%2Falpine%3Alatest` stays one segment.
 */
#include "api/router.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

struct segs {
	size_t n;
	const char *p[HM_ROUTER_MAX_SEGMENTS];
	size_t len[HM_ROUTER_MAX_SEGMENTS];
};

/* Split "/a/b/c" into segments; a single trailing slash is ignored. */
static int split(const char *path, struct segs *s)
{
	s->n = 0;
	if (path[0] != '/')
		return -1;
	const char *p = path + 1;
	if (*p == '\0')
		return 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0) {
			if (slash || s->n == 0)
				return -1; /* empty segment: "//" */
			break;
		}
		if (s->n == HM_ROUTER_MAX_SEGMENTS)
			return -1;
		s->p[s->n] = p;
		s->len[s->n++] = len;
		if (!slash)
			break;
		p = slash + 1;
		if (*p == '\0')
			break; /* trailing slash */
	}
	return 0;
}

static bool is_param(const char *seg, size_t len)
{
	return len >= 2 && seg[0] == '{' && seg[len - 1] == '}';
}

static bool pattern_matches(const struct segs *pat, const struct segs *path)
{
	if (pat->n != path->n)
		return false;
	for (size_t i = 0; i < pat->n; i++) {
		if (is_param(pat->p[i], pat->len[i]))
			continue;
		if (pat->len[i] != path->len[i] || memcmp(pat->p[i], path->p[i], pat->len[i]) != 0)
			return false;
	}
	return true;
}

int hm_router_match(const struct hm_route *routes, size_t n, const char *method, const char *path,
                    const struct hm_route **ret, struct hm_params *params, char **ret_allow,
                    struct hm_err **err)
{
	struct segs ps, pat;
	*params = (struct hm_params){ 0 };
	if (split(path, &ps) < 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, NULL, "no route for %s %s", method, path);

	_cleanup_free_ char *allow = NULL;
	const struct hm_route *found = NULL;
	for (size_t i = 0; i < n; i++) {
		split(routes[i].pattern, &pat);
		if (!pattern_matches(&pat, &ps))
			continue;
		if (strcmp(routes[i].method, method) == 0) {
			found = &routes[i];
			break;
		}
		char *a = allow ? xasprintf("%s, %s", allow, routes[i].method)
		                : xstrdup(routes[i].method);
		free(allow);
		allow = a;
	}
	if (!found) {
		if (allow) {
			hm_err_set(err, HM_ERR_METHOD, NULL,
			           "method %s not allowed on %s (allowed: %s)", method, path,
			           allow);
			if (ret_allow)
				*ret_allow = TAKE_PTR(allow);
			return -1;
		}
		return hm_err_set(err, HM_ERR_NOT_FOUND, NULL, "no route for %s %s", method, path);
	}

	split(found->pattern, &pat);
	for (size_t i = 0; i < pat.n; i++) {
		if (!is_param(pat.p[i], pat.len[i]))
			continue;
		char *v = hm_percent_decode(ps.p[i], ps.len[i]);
		if (!v || !*v) {
			free(v);
			hm_params_done(params);
			return hm_err_set(err, HM_ERR_INVALID, "invalid_path",
			                  "malformed percent-encoding in path `%s`", path);
		}
		params->names[params->n] = pat.p[i] + 1;
		params->name_lens[params->n] = pat.len[i] - 2;
		params->values[params->n++] = v;
	}
	*ret = found;
	return 0;
}

const char *hm_params_get(const struct hm_params *p, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < p->n; i++)
		if (p->name_lens[i] == len && memcmp(p->names[i], name, len) == 0)
			return p->values[i];
	return NULL;
}

void hm_params_done(struct hm_params *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->values[i]);
	p->n = 0;
}
