/*
 * Fuzz target: the router (src/api/router.c) over the real route table:
 * any method and raw path, percent escapes included, finds a route, or
 * answers 404, 405 or 400, with every parameter decoded and in bounds.
 * Input: the method's index in the first byte, then the path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/router.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = {
		"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "X"
	};
	if (size < 1 || size > 8192)
		return 0;
	const char *method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
	char *path = malloc(size);
	memcpy(path, data + 1, size - 1);
	path[size - 1] = '\0';
	const struct hm_route *route = NULL;
	struct hm_params params = { 0 };
	char *allow = NULL;
	struct hm_err *err = NULL;
	if (hm_router_match(hm_routes, hm_routes_count, method, path, &route, &params, &allow,
	                    &err) == 0) {
		if (!route)
			abort();
		for (size_t i = 0; i < params.n; i++)
			(void)strlen(params.values[i]);
	} else if (!err) {
		abort();
	}
	hm_params_done(&params);
	free(allow);
	hm_err_free(err);
	free(path);
	return 0;
}
