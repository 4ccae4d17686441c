/*
 * Fuzz target: framing of the requests on a proxied keep-alive connection
 * (src/ingress/reqstream.c) and the egress proxy's header rewrite
 * (src/egress/egress.c). Input: a first request head (up to its blank
 * line), then client bytes, fed in chunks whose sizes come from the data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/egress.h"
#include "ingress/reqstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_head(void *arg, const char *head, size_t len, struct hm_buf *out)
{
	(void)arg;
	if (strlen(head) != len)
		abort();
	hm_buf_add(out, head, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *in = (const char *)data;
	const char *end = memmem(in, size, "\r\n\r\n", 4);
	if (!end)
		return 0;
	size_t hl = (size_t)(end - in) + 4;
	char *head = malloc(hl + 1);
	memcpy(head, in, hl);
	head[hl] = '\0';
	static char n1[] = "Authorization", n2[] = "X-Extra", v1[] = "Bearer secret", v2[] = "1";
	char *const names[] = { n1, n2 };
	char *const values[] = { v1, v2 };
	char *rewritten = hm_egress_inject_head(head, hl, names, values, 2);
	free(rewritten);
	struct hm_reqstream *s = hm_reqstream_new(head, on_head, NULL);
	if (s) {
		struct hm_buf out = { 0 };
		size_t off = hl;
		while (off < size) {
			size_t chunk = 1 + (size_t)data[off] % 97;
			if (chunk > size - off)
				chunk = size - off;
			if (hm_reqstream_feed(s, in + off, chunk, &out) < 0)
				break;
			off += chunk;
		}
		hm_buf_done(&out);
		hm_reqstream_free(s);
	}
	free(head);
	return 0;
}
