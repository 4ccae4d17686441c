/*
 * Fuzz target: bearer tokens (src/auth/jwt.c), the first thing the API
 * reads from any caller. Forgeries never verify; nothing is read out of
 * bounds whatever the token.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/jwt.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	char *tok = malloc(size + 1);
	memcpy(tok, data, size);
	tok[size] = '\0';
	struct hm_principal *p = NULL;
	struct hm_err *err = NULL;
	/* The secret is not in any input: a token that verifies is a forgery. */
	if (hm_jwt_verify("fuzz-secret-never-in-the-corpus-3f9a1c", tok, time(NULL), &p, &err) == 0)
		abort();
	hm_err_free(err);
	hm_principal_free(p);
	free(tok);
	return 0;
}
