/*
 * Fuzz target: image references (src/image/ref.c), as every create, pull
 * and tag takes them from a request. A reference that parses prints back to
 * one that parses to the same reference.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "image/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct hm_image_ref r = { 0 };
	struct hm_err *err = NULL;
	if (hm_image_ref_parse(s, &r, &err) == 0) {
		char *text = hm_image_ref_string(&r);
		char *repo = hm_image_ref_repo(&r);
		(void)hm_image_ref_endpoint(&r);
		(void)hm_image_ref_plain_http(&r, "a.test,b.test:5000");
		struct hm_image_ref again = { 0 };
		struct hm_err *e2 = NULL;
		if (hm_image_ref_parse(text, &again, &e2) < 0)
			abort(); /* what we print must parse */
		char *text2 = hm_image_ref_string(&again);
		if (strcmp(text, text2) != 0)
			abort(); /* and be a fixed point */
		free(text2);
		hm_image_ref_done(&again);
		free(text);
		free(repo);
		hm_image_ref_done(&r);
	} else {
		if (!err || !err->msg)
			abort(); /* a refusal names what is wrong */
		hm_err_free(err);
	}
	(void)hm_digest_valid(s);
	free(s);
	return 0;
}
