/*
 * Fuzz target: WWW-Authenticate challenges (src/image/challenge.c). Input:
 * a parameter name, a NUL, then the header. What comes back is never longer
 * than the header, and asking twice gives the same answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/challenge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > HM_CHALLENGE_MAX + 256)
		return 0;
	char *in = malloc(size + 1);
	memcpy(in, data, size);
	in[size] = '\0';
	const char *name = in;
	size_t nl = strlen(in);
	const char *header = nl < size ? in + nl + 1 : "";
	char *a = hm_challenge_param(header, name);
	char *b = hm_challenge_param(header, name);
	if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
		abort();
	if (a && strlen(a) > strlen(header))
		abort();
	free(a);
	free(b);
	free(in);
	return 0;
}
