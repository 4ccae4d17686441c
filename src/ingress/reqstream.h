/*
 * The requests a client sends on one proxied HTTP/1.1 connection, told
 * apart so that each head can be rewritten before it goes on (its auth
 * header stripped, X-Forwarded-* added, its Host held to the connection's
 * route) and a keep-alive connection can carry many requests. A body is
 * framed by Content-Length or chunked Transfer-Encoding and passes as it
 * is; after a protocol switch (Upgrade) every byte passes. Pure: no I/O,
 * so the proxy (ingress.c) and the unit tests share it.
 *
 * What cannot be framed without guessing ends the connection: both
 * Content-Length and Transfer-Encoding, a coding other than chunked last,
 * conflicting lengths, a head over HM_REQSTREAM_HEAD_MAX, a bad chunk line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HM_REQSTREAM_HEAD_MAX (16u << 10)

/* Bytes to send on. */
struct hm_buf {
	char *data;
	size_t len, cap;
};
void hm_buf_add(struct hm_buf *b, const void *p, size_t n);
void hm_buf_done(struct hm_buf *b);

/* A head after the first (NUL-terminated, len bytes, ending in the blank
 * line): append what goes upstream to out; < 0 ends the connection. */
typedef int hm_reqstream_head_fn(void *arg, const char *head, size_t len, struct hm_buf *out);

struct hm_reqstream;
/* After the first head (the caller sent it on): its framing decides what
 * follows. NULL when that head cannot be framed. */
struct hm_reqstream *hm_reqstream_new(const char *first_head, hm_reqstream_head_fn *fn, void *arg);
void hm_reqstream_free(struct hm_reqstream *s);
static inline void hm_reqstream_freep(struct hm_reqstream **s)
{
	hm_reqstream_free(*s);
}
/* Client bytes in; what goes upstream appended to out. -1: end the connection. */
int hm_reqstream_feed(struct hm_reqstream *s, const char *in, size_t n, struct hm_buf *out);
/* Requests seen (the first included). */
unsigned long hm_reqstream_count(const struct hm_reqstream *s);
