/*
 * api/dialect: choosing a request's dialect by its path's prefix (see
 * dialect.h). The dialects themselves are declared with their route tables.
 */
#include "api/dialect.h"

#include <string.h>

const struct hm_dialect *hm_dialect_pick(const struct hm_dialect *const *list, size_t n,
                                         const char *path)
{
	for (size_t i = 0; i < n; i++) {
		const char *p = list[i]->prefix;
		size_t len = strlen(p);
		if (strncmp(path, p, len) == 0 &&
		    (path[len] == '\0' || path[len] == '/' || path[len] == '?' || len == 0))
			return list[i];
	}
	return NULL;
}
