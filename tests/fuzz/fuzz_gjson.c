/*
 * Fuzz target: the guest init's JSON parser (guest/json.c), which reads
 * every line the host sends on the agent channel. Whatever the bytes, it
 * parses or refuses in bounds; a parsed message's accessors stay in bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hm_gjson doc;
	char *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	const char *why = NULL;
	if (hm_gjson_parse(buf, size, &doc, &why) == 0) {
		long long n;
		bool b;
		for (size_t i = 0; i < doc.nfields; i++) {
			const char *k = doc.fields[i].key;
			(void)hm_gjson_get(&doc, k);
			(void)hm_gjson_str(&doc, k);
			(void)hm_gjson_int(&doc, k, &n);
			(void)hm_gjson_bool(&doc, k, &b);
			const struct hm_gjson_value *v = &doc.fields[i].v;
			if (v->type == HM_GJSON_STRING)
				(void)strlen(v->s);
			if (v->type == HM_GJSON_ARRAY)
				for (size_t j = 0; j < v->len; j++)
					(void)strlen(v->items[j]);
			if (v->type == HM_GJSON_OBJECT)
				for (size_t j = 0; j < 2 * v->len; j++)
					(void)strlen(v->items[j]);
		}
	}
	/* The escaper on the same bytes: 6 * len + 1 always suffices. */
	char *out = malloc(6 * size + 1);
	size_t w = hm_gjson_escape(out, 6 * size + 1, (const char *)data, size);
	if (w > 6 * size || out[w] != '\0')
		abort();
	free(out);
	free(buf);
	return 0;
}
