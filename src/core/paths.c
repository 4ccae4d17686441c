/*
 * core/paths: the normaliser of paths that come from archives (image
 * layers, volume imports), so that both read an entry's path the same way:
 * by its components, with ".." refused wherever it appears, rather than by
 * substring checks that miss a case or refuse a legal name like "a..b".
 */
#include "core/paths.h"

#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

char *hm_path_clean(const char *p)
{
	char *out = xmalloc(strlen(p) + 1);
	size_t o = 0;
	while (*p) {
		while (*p == '/')
			p++;
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t l = (size_t)(p - seg);
		if (l == 0 || (l == 1 && seg[0] == '.'))
			continue;
		if (l == 2 && seg[0] == '.' && seg[1] == '.') {
			free(out);
			return NULL;
		}
		if (o)
			out[o++] = '/';
		memcpy(out + o, seg, l);
		o += l;
	}
	out[o] = '\0';
	return out;
}
