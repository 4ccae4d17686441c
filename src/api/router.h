/*
 * Route matching: a path split into percent-decoded segments is compared
 * against each route's pattern; `{name}` segments capture. A path that
 * matches some pattern but not the method is a 405 with an Allow list.
 */
#pragma once

#include <stddef.h>

struct hm_err;
struct hm_route;

#define HM_ROUTER_MAX_PARAMS   8
#define HM_ROUTER_MAX_SEGMENTS 16

struct hm_params {
	size_t n;
	const char *names[HM_ROUTER_MAX_PARAMS]; /* borrowed from the pattern, not NUL-ended */
	size_t name_lens[HM_ROUTER_MAX_PARAMS];
	char *values[HM_ROUTER_MAX_PARAMS]; /* owned */
};

/*
 * Find the route for `method` and the raw (still percent-encoded) `path`.
 * On success sets *ret and fills `params`. Failures: HM_ERR_NOT_FOUND,
 * HM_ERR_METHOD (with *ret_allow set to "GET, DELETE"), HM_ERR_INVALID for
 * a malformed escape.
 */
int hm_router_match(const struct hm_route *routes, size_t n, const char *method, const char *path,
                    const struct hm_route **ret, struct hm_params *params, char **ret_allow,
                    struct hm_err **err);

const char *hm_params_get(const struct hm_params *p, const char *name);
void hm_params_done(struct hm_params *p);
