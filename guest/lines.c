/*
 * The agent channel's line framing (see lines.h): one copy into the
 * caller's buffer per byte taken, a '\n' search per chunk, and the state of
 * the line in progress (its length, or that it is being dropped) kept
 * between calls, so a line may arrive in any number of reads.
 */
#include "lines.h"

#include <string.h>

void hm_lines_init(struct hm_lines *l, char *buf, size_t cap)
{
	*l = (struct hm_lines){ .buf = buf, .cap = cap };
}

bool hm_lines_feed(struct hm_lines *l, const char *data, size_t n, hm_line_fn fn, void *ctx)
{
	const char *p = data, *end = data + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t chunk = (size_t)((nl ? nl : end) - p);
		if (!l->skip && chunk <= l->cap - l->len) {
			memcpy(l->buf + l->len, p, chunk);
			l->len += chunk;
		} else if (!l->skip) {
			l->skip = true;
			l->dropped++;
		}
		if (!nl)
			break;
		p = nl + 1;
		bool whole = !l->skip && l->len > 0;
		size_t len = l->len;
		l->len = 0;
		l->skip = false;
		if (whole) {
			l->buf[len] = '\0';
			if (!fn(ctx, l->buf, len))
				return false;
		}
	}
	return true;
}
