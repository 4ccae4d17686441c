/*
 * Fuzz target: the archive path normaliser (src/core/paths.c). What it
 * returns is never absolute, has no empty, "." or ".." component, and is
 * its own normal form; it refuses exactly the inputs with a ".." component.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_dotdot(const char *p)
{
	for (const char *s = p;;) {
		const char *e = strchr(s, '/');
		size_t l = e ? (size_t)(e - s) : strlen(s);
		if (l == 2 && s[0] == '.' && s[1] == '.')
			return 1;
		if (!e)
			return 0;
		s = e + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *in = malloc(size + 1);
	memcpy(in, data, size);
	in[size] = '\0';
	char *c = hm_path_clean(in);
	if ((c == NULL) != has_dotdot(in))
		abort();
	if (c) {
		if (c[0] == '/' || strstr(c, "//") || (*c && c[strlen(c) - 1] == '/'))
			abort();
		if (!strcmp(c, ".") || !strncmp(c, "./", 2) || strstr(c, "/./") ||
		    (strlen(c) >= 2 && !strcmp(c + strlen(c) - 2, "/.")))
			abort();
		char *again = hm_path_clean(c);
		if (!again || strcmp(again, c) != 0)
			abort();
		free(again);
	}
	free(c);
	free(in);
	return 0;
}
