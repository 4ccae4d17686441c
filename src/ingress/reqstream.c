/*
 * ingress/reqstream: the request framing of one client connection (see
 * reqstream.h). A state machine over the bytes as they come, however they
 * are split: a head is gathered whole (to be rewritten), everything else
 * passes as soon as it is seen.
 */
#include "ingress/reqstream.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xalloc.h"

#define CHUNK_LINE_MAX 1024

enum state {
	HEAD,       /* gathering a head */
	BODY,       /* `left` body bytes to pass */
	CHUNK_LINE, /* a chunk-size line (gathered in `line`) */
	CHUNK_DATA, /* `left` chunk bytes, then its CRLF */
	CHUNK_END,  /* `left` bytes of a chunk's CRLF */
	TRAILER,    /* trailer lines until a blank one */
	RAW,        /* a switched protocol: everything */
};

struct hm_reqstream {
	enum state st;
	hm_reqstream_head_fn *fn;
	void *arg;
	char *head; /* HEAD: what came so far (NUL-terminated) */
	size_t head_len;
	char line[CHUNK_LINE_MAX + 1];
	size_t line_len;
	uint64_t left;
	unsigned long count;
};

void hm_buf_add(struct hm_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 256;
		b->data = xrealloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void hm_buf_done(struct hm_buf *b)
{
	free(b->data);
	*b = (struct hm_buf){ 0 };
}

/* The values of header `name` in head (the first max copied to vals, each cut
 * at 127 bytes); the count of them all. */
static size_t header_values(const char *head, const char *name, char vals[][128], size_t max)
{
	size_t nl = strlen(name), n = 0;
	for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r' && l[2];
	     l = strstr(l + 2, "\r\n")) {
		const char *h = l + 2;
		if (strncasecmp(h, name, nl) != 0 || h[nl] != ':')
			continue;
		const char *v = h + nl + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		const char *e = strstr(v, "\r\n");
		size_t len = e ? (size_t)(e - v) : strlen(v);
		while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
			len--;
		if (n < max) {
			size_t c = len < 127 ? len : 127;
			memcpy(vals[n], v, c);
			vals[n][c] = '\0';
		}
		n++;
	}
	return n;
}

/* Does a comma-separated list hold token (any case)? */
static bool has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

/* The state a head leaves: its body's framing. -1: it cannot be framed. */
static int framing(struct hm_reqstream *s, const char *head)
{
	char te[4][128], cl[4][128], conn[4][128], upg[1][128];
	size_t nte = header_values(head, "Transfer-Encoding", te, 4);
	size_t ncl = header_values(head, "Content-Length", cl, 4);
	size_t nconn = header_values(head, "Connection", conn, 4);
	bool upgrade = header_values(head, "Upgrade", upg, 1) > 0;
	bool conn_upgrade = false;
	for (size_t i = 0; i < nconn && i < 4; i++)
		conn_upgrade |= has_token(conn[i], "upgrade");
	if (nte > 4 || ncl > 4 || (nte && ncl))
		return -1;
	if (nte) {
		/* chunked, and last: anything else has no end but the connection's */
		const char *last = te[nte - 1];
		const char *c = strrchr(last, ',');
		c = c ? c + 1 : last;
		while (*c == ' ' || *c == '\t')
			c++;
		if (strcasecmp(c, "chunked") != 0)
			return -1;
		s->st = CHUNK_LINE;
		s->line_len = 0;
	} else if (ncl) {
		uint64_t len = 0;
		for (size_t i = 0; i < ncl; i++) {
			const char *p = cl[i];
			if (!*p || strlen(p) > 18)
				return -1;
			uint64_t v = 0;
			for (; *p; p++) {
				if (!isdigit((unsigned char)*p))
					return -1;
				v = v * 10 + (uint64_t)(*p - '0');
			}
			if (i > 0 && v != len)
				return -1;
			len = v;
		}
		s->left = len;
		s->st = len ? BODY : HEAD;
	} else {
		s->st = HEAD;
	}
	s->count++;
	if (upgrade && conn_upgrade && s->st == HEAD)
		s->st = RAW; /* the switch's answer decides; either way bytes pass as they are */
	return 0;
}

struct hm_reqstream *hm_reqstream_new(const char *first_head, hm_reqstream_head_fn *fn, void *arg)
{
	struct hm_reqstream *s = xcalloc(1, sizeof(*s));
	s->fn = fn;
	s->arg = arg;
	if (framing(s, first_head) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

void hm_reqstream_free(struct hm_reqstream *s)
{
	if (!s)
		return;
	free(s->head);
	free(s);
}

unsigned long hm_reqstream_count(const struct hm_reqstream *s)
{
	return s->count;
}

/* One chunk-size line (without CRLF): its size, or -1. */
static int64_t chunk_size(const char *line)
{
	uint64_t v = 0;
	size_t digits = 0;
	const char *p = line;
	for (; isxdigit((unsigned char)*p); p++, digits++) {
		if (digits == 15)
			return -1;
		v = v * 16 + (uint64_t)(isdigit((unsigned char)*p)
		                            ? *p - '0'
		                            : tolower((unsigned char)*p) - 'a' + 10);
	}
	if (!digits || (*p && *p != ';' && *p != ' ' && *p != '\t'))
		return -1;
	return (int64_t)v;
}

int hm_reqstream_feed(struct hm_reqstream *s, const char *in, size_t n, struct hm_buf *out)
{
	while (n > 0) {
		switch (s->st) {
		case RAW:
			hm_buf_add(out, in, n);
			return 0;
		case BODY:
		case CHUNK_DATA:
		case CHUNK_END: {
			size_t take = n < s->left ? n : (size_t)s->left;
			hm_buf_add(out, in, take);
			in += take;
			n -= take;
			s->left -= take;
			if (s->left == 0) {
				if (s->st == CHUNK_DATA) {
					s->st = CHUNK_END;
					s->left = 2;
				} else if (s->st == CHUNK_END) {
					s->st = CHUNK_LINE;
					s->line_len = 0;
				} else {
					s->st = HEAD;
				}
			}
			break;
		}
		case CHUNK_LINE:
		case TRAILER: {
			/* A line, passed once whole (so that its end is known). */
			const char *nl = memchr(in, '\n', n);
			size_t take = nl ? (size_t)(nl - in) + 1 : n;
			if (s->line_len + take > CHUNK_LINE_MAX)
				return -1;
			memcpy(s->line + s->line_len, in, take);
			s->line_len += take;
			in += take;
			n -= take;
			if (!nl)
				break;
			hm_buf_add(out, s->line, s->line_len);
			if (s->line_len < 2 || s->line[s->line_len - 2] != '\r')
				return -1;
			s->line[s->line_len - 2] = '\0';
			bool blank = s->line_len == 2;
			s->line_len = 0;
			if (s->st == TRAILER) {
				if (blank)
					s->st = HEAD;
				break;
			}
			int64_t size = chunk_size(s->line);
			if (size < 0)
				return -1;
			if (size == 0) {
				s->st = TRAILER;
			} else {
				s->st = CHUNK_DATA;
				s->left = (uint64_t)size;
			}
			break;
		}
		case HEAD: {
			/* Gathered to its blank line, at most HM_REQSTREAM_HEAD_MAX. */
			if (!s->head)
				s->head = xmalloc(HM_REQSTREAM_HEAD_MAX + 1);
			size_t room = HM_REQSTREAM_HEAD_MAX - s->head_len;
			size_t take = n < room ? n : room;
			/* NUL is never in a head (RFC 9110): one would give the head
			 * handler a shorter head than the one framed and sent on. */
			if (memchr(in, '\0', take))
				return -1;
			size_t from = s->head_len > 3 ? s->head_len - 3 : 0;
			memcpy(s->head + s->head_len, in, take);
			s->head_len += take;
			s->head[s->head_len] = '\0';
			/* Blank lines before a request line are skipped, as RFC 9112 allows. */
			while (s->head_len >= 2 && s->head[0] == '\r' && s->head[1] == '\n') {
				memmove(s->head, s->head + 2, s->head_len - 1);
				s->head_len -= 2;
				from = 0;
			}
			char *end = strstr(s->head + from, "\r\n\r\n");
			if (!end) {
				if (s->head_len == HM_REQSTREAM_HEAD_MAX)
					return -1;
				in += take;
				n -= take;
				break;
			}
			size_t hl = (size_t)(end - s->head) + 4;
			/* What came after the head is given back to the loop. */
			size_t extra = s->head_len - hl;
			in += take - extra;
			n -= take - extra;
			s->head[hl] = '\0';
			s->head_len = 0;
			if (framing(s, s->head) < 0 || s->fn(s->arg, s->head, hl, out) < 0)
				return -1;
			break;
		}
		}
	}
	return 0;
}
