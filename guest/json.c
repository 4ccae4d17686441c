/*
 * The guest init's JSON parser and escaper (see json.h): a recursive-descent
 * reader over one flat object, bounded in depth (two levels), fields and
 * items, decoding strings in place. Every read checks the end pointer; the
 * input need not be NUL-terminated.
 */
#include "json.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "core/utf8.h"

struct parser {
	char *p;   /* next byte to read */
	char *end; /* one past the last byte */
	struct hm_gjson *doc;
	const char *why;
};

static int fail(struct parser *ps, const char *why)
{
	if (!ps->why)
		ps->why = why;
	return -1;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8_put(char *w, uint32_t cp)
{
	if (cp < 0x80) {
		w[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		w[0] = (char)(0xc0 | (cp >> 6));
		w[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		w[0] = (char)(0xe0 | (cp >> 12));
		w[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		w[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	w[0] = (char)(0xf0 | (cp >> 18));
	w[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	w[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	w[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * ps->p at '"': decode the string in place and NUL-terminate it. The write
 * cursor never passes the read cursor (each escape decodes to fewer bytes
 * than it takes), and the NUL lands at most on the closing quote.
 */
static int parse_string(struct parser *ps, const char **out, size_t *outlen)
{
	char *r = ps->p + 1, *w = r, *start = r;
	for (;;) {
		if (r >= ps->end)
			return fail(ps, "unterminated string");
		unsigned char c = (unsigned char)*r;
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(ps, "control character in a string");
		if (c != '\\') {
			*w++ = *r++;
			continue;
		}
		if (r + 1 >= ps->end)
			return fail(ps, "unterminated string");
		char e = r[1];
		r += 2;
		switch (e) {
		case '"':
		case '\\':
		case '/':
			*w++ = e;
			break;
		case 'b':
			*w++ = '\b';
			break;
		case 'f':
			*w++ = '\f';
			break;
		case 'n':
			*w++ = '\n';
			break;
		case 'r':
			*w++ = '\r';
			break;
		case 't':
			*w++ = '\t';
			break;
		case 'u': {
			unsigned u;
			if (ps->end - r < 4 || hex4(r, &u) < 0)
				return fail(ps, "bad \\u escape");
			r += 4;
			uint32_t cp = u;
			if (u >= 0xdc00 && u <= 0xdfff)
				return fail(ps, "lone low surrogate");
			if (u >= 0xd800 && u <= 0xdbff) {
				unsigned lo;
				if (ps->end - r < 6 || r[0] != '\\' || r[1] != 'u' ||
				    hex4(r + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return fail(ps, "lone high surrogate");
				r += 6;
				cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return fail(ps, "NUL in a string");
			w += utf8_put(w, cp);
			break;
		}
		default:
			return fail(ps, "bad escape");
		}
	}
	*w = '\0';
	*out = start;
	*outlen = (size_t)(w - start);
	ps->p = r + 1;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number by JSON's grammar: an INT when integral and in range, else a NUMBER. */
static int parse_number(struct parser *ps, struct hm_gjson_value *v)
{
	char *p = ps->p;
	bool neg = false, integral = true, overflow = false;
	unsigned long long mag = 0;
	if (p < ps->end && *p == '-') {
		neg = true;
		p++;
	}
	if (p >= ps->end || !is_digit(*p))
		return fail(ps, "bad number");
	if (*p == '0') {
		p++;
	} else {
		while (p < ps->end && is_digit(*p)) {
			unsigned d = (unsigned)(*p - '0');
			if (mag > (ULLONG_MAX - d) / 10)
				overflow = true;
			else
				mag = mag * 10 + d;
			p++;
		}
	}
	if (p < ps->end && *p == '.') {
		integral = false;
		p++;
		if (p >= ps->end || !is_digit(*p))
			return fail(ps, "bad number");
		while (p < ps->end && is_digit(*p))
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		integral = false;
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || !is_digit(*p))
			return fail(ps, "bad number");
		while (p < ps->end && is_digit(*p))
			p++;
	}
	ps->p = p;
	v->type = HM_GJSON_NUMBER;
	if (!integral || overflow)
		return 0;
	if (neg) {
		if (mag > (unsigned long long)LLONG_MAX + 1)
			return 0;
		v->i = mag == (unsigned long long)LLONG_MAX + 1 ? -LLONG_MAX - 1 : -(long long)mag;
	} else {
		if (mag > (unsigned long long)LLONG_MAX)
			return 0;
		v->i = (long long)mag;
	}
	v->type = HM_GJSON_INT;
	return 0;
}

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "bad literal");
	ps->p += n;
	return 0;
}

static int pool_add(struct parser *ps, const char *s)
{
	if (ps->doc->npool >= HM_GJSON_MAX_ITEMS)
		return fail(ps, "too many items");
	ps->doc->pool[ps->doc->npool++] = s;
	return 0;
}

/* A string inside an array or an object: nothing else is allowed there. */
static int inner_string(struct parser *ps, const char **out)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "truncated");
	if (*ps->p != '"')
		return fail(ps, *ps->p == '{' || *ps->p == '[' ? "nested value"
		                                               : "only strings allowed here");
	size_t len;
	return parse_string(ps, out, &len);
}

static int parse_array(struct parser *ps, struct hm_gjson_value *v)
{
	ps->p++; /* '[' */
	v->type = HM_GJSON_ARRAY;
	v->items = ps->doc->pool + ps->doc->npool;
	v->len = 0;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		const char *s;
		if (inner_string(ps, &s) < 0 || pool_add(ps, s) < 0)
			return -1;
		v->len++;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, "truncated");
		if (*ps->p == ']') {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return fail(ps, "expected , or ]");
		ps->p++;
	}
}

static int parse_object(struct parser *ps, struct hm_gjson_value *v)
{
	ps->p++; /* '{' */
	v->type = HM_GJSON_OBJECT;
	v->items = ps->doc->pool + ps->doc->npool;
	v->len = 0;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return 0;
	}
	for (;;) {
		const char *k, *s;
		if (inner_string(ps, &k) < 0)
			return -1;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return fail(ps, ps->p >= ps->end ? "truncated" : "expected :");
		ps->p++;
		if (inner_string(ps, &s) < 0 || pool_add(ps, k) < 0 || pool_add(ps, s) < 0)
			return -1;
		v->len++;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, "truncated");
		if (*ps->p == '}') {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return fail(ps, "expected , or }");
		ps->p++;
	}
}

static int parse_value(struct parser *ps, struct hm_gjson_value *v)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "truncated");
	memset(v, 0, sizeof(*v));
	switch (*ps->p) {
	case '"':
		v->type = HM_GJSON_STRING;
		return parse_string(ps, &v->s, &v->len);
	case '[':
		return parse_array(ps, v);
	case '{':
		return parse_object(ps, v);
	case 't':
		v->type = HM_GJSON_BOOL;
		v->b = true;
		return literal(ps, "true");
	case 'f':
		v->type = HM_GJSON_BOOL;
		return literal(ps, "false");
	case 'n':
		v->type = HM_GJSON_NULL;
		return literal(ps, "null");
	default:
		if (*ps->p == '-' || is_digit(*ps->p))
			return parse_number(ps, v);
		return fail(ps, "unexpected character");
	}
}

int hm_gjson_parse(char *buf, size_t len, struct hm_gjson *doc, const char **why)
{
	struct parser ps = { .p = buf, .end = buf + len, .doc = doc };
	doc->nfields = 0;
	doc->npool = 0;
	int r = -1;
	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '{') {
		fail(&ps, ps.p >= ps.end ? "empty" : "not an object");
		goto out;
	}
	ps.p++;
	skip_ws(&ps);
	if (ps.p < ps.end && *ps.p == '}') {
		ps.p++;
	} else {
		for (;;) {
			skip_ws(&ps);
			if (ps.p >= ps.end) {
				fail(&ps, "truncated");
				goto out;
			}
			if (*ps.p != '"') {
				fail(&ps, "expected a key");
				goto out;
			}
			if (doc->nfields >= HM_GJSON_MAX_FIELDS) {
				fail(&ps, "too many fields");
				goto out;
			}
			struct hm_gjson_field *f = &doc->fields[doc->nfields];
			size_t klen;
			if (parse_string(&ps, &f->key, &klen) < 0)
				goto out;
			skip_ws(&ps);
			if (ps.p >= ps.end || *ps.p != ':') {
				fail(&ps, ps.p >= ps.end ? "truncated" : "expected :");
				goto out;
			}
			ps.p++;
			if (parse_value(&ps, &f->v) < 0)
				goto out;
			doc->nfields++;
			skip_ws(&ps);
			if (ps.p >= ps.end) {
				fail(&ps, "truncated");
				goto out;
			}
			if (*ps.p == '}') {
				ps.p++;
				break;
			}
			if (*ps.p != ',') {
				fail(&ps, "expected , or }");
				goto out;
			}
			ps.p++;
		}
	}
	skip_ws(&ps);
	if (ps.p != ps.end) {
		fail(&ps, "trailing bytes after the object");
		goto out;
	}
	r = 0;
out:
	if (r < 0) {
		doc->nfields = 0;
		doc->npool = 0;
	}
	if (why)
		*why = r < 0 ? ps.why : NULL;
	return r;
}

const struct hm_gjson_value *hm_gjson_get(const struct hm_gjson *doc, const char *key)
{
	for (size_t i = 0; i < doc->nfields; i++)
		if (strcmp(doc->fields[i].key, key) == 0)
			return &doc->fields[i].v;
	return NULL;
}

const char *hm_gjson_str(const struct hm_gjson *doc, const char *key)
{
	const struct hm_gjson_value *v = hm_gjson_get(doc, key);
	return v && v->type == HM_GJSON_STRING ? v->s : NULL;
}

int hm_gjson_int(const struct hm_gjson *doc, const char *key, long long *out)
{
	const struct hm_gjson_value *v = hm_gjson_get(doc, key);
	if (!v || v->type == HM_GJSON_NULL)
		return 0;
	if (v->type != HM_GJSON_INT)
		return -1;
	*out = v->i;
	return 1;
}

int hm_gjson_bool(const struct hm_gjson *doc, const char *key, bool *out)
{
	const struct hm_gjson_value *v = hm_gjson_get(doc, key);
	if (!v || v->type == HM_GJSON_NULL)
		return 0;
	if (v->type != HM_GJSON_BOOL)
		return -1;
	*out = v->b;
	return 1;
}

size_t hm_gjson_escape(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	if (cap == 0)
		return 0;
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, i = 0;
	while (i < len) {
		unsigned char c = p[i];
		char tmp[8];
		size_t tn = 0, adv = 1;
		if (c == '"' || c == '\\') {
			tmp[tn++] = '\\';
			tmp[tn++] = (char)c;
		} else if (c == '\n') {
			tmp[tn++] = '\\';
			tmp[tn++] = 'n';
		} else if (c == '\t') {
			tmp[tn++] = '\\';
			tmp[tn++] = 't';
		} else if (c == '\r') {
			tmp[tn++] = '\\';
			tmp[tn++] = 'r';
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(tmp, "\\u00", 4);
			tn = 4;
			tmp[tn++] = hex[c >> 4];
			tmp[tn++] = hex[c & 15];
		} else if (c < 0x80) {
			tmp[tn++] = (char)c;
		} else {
			adv = hm_utf8_seq((const unsigned char *)p + i, len - i);
			if (adv == 0) {
				adv = 1;
				tmp[tn++] = '?';
			} else {
				memcpy(tmp, p + i, adv);
				tn = adv;
			}
		}
		if (o + tn >= cap)
			break;
		memcpy(out + o, tmp, tn);
		o += tn;
		i += adv;
	}
	out[o] = '\0';
	return o;
}
