/*
 * encoding: base64url, hex and percent-coding. Small, table-free, and
 * strict: every decoder rejects what it does not understand.
 */
#include "core/encoding.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xalloc.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const void *data, size_t len, const char *alphabet, bool pad)
{
	const unsigned char *in = data;
	char *out = xmalloc((len + 2) / 3 * 4 + 1);
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (i < len) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		if (i + 1 < len)
			out[o++] = alphabet[v >> 6 & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

char *hm_base64url_encode(const void *data, size_t len)
{
	return b64_encode(data, len, b64url, false);
}

char *hm_base64_encode(const void *data, size_t len)
{
	return b64_encode(data, len, b64std, true);
}

static int b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

unsigned char *hm_base64url_decode(const char *s, size_t slen, size_t *ret_len)
{
	while (slen > 0 && s[slen - 1] == '=')
		slen--;
	if (slen % 4 == 1)
		return NULL;
	unsigned char *out = xmalloc(slen / 4 * 3 + 3);
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < slen; i++) {
		int v = b64url_value(s[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits & 0xff);
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
		free(out);
		return NULL;
	}
	out[o] = '\0';
	if (ret_len)
		*ret_len = o;
	return out;
}

char *hm_hex_encode(const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *in = data;
	char *out = xmalloc(len * 2 + 1);
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[len * 2] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *hm_percent_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
		int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(out);
			return NULL;
		}
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return out;
}

char *hm_percent_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s);
	char *out = xmalloc(len * 3 + 1);
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

char *hm_now_rfc3339(void)
{
	return hm_rfc3339_of_ms(hm_now_ms());
}

char *hm_rfc3339_of_ms(int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[40];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	return xasprintf("%s.%03dZ", buf, (int)(ms % 1000));
}

int64_t hm_rfc3339_ms(const char *s)
{
	struct tm tm = { 0 };
	const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!end)
		return -1;
	int64_t ms = 0;
	if (*end == '.') {
		int digits = 0;
		for (end++; *end >= '0' && *end <= '9'; end++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*end - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			ms *= 10;
	}
	if (strcmp(end, "Z") != 0)
		return -1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

int64_t hm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool hm_utf8_valid(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = hm_utf8_seq(p + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

char *hm_utf8_sanitize(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	char *out = xmalloc(3 * n + 1), *o = out; /* each bad byte becomes 3 */
	for (size_t i = 0; i < n;) {
		size_t l = hm_utf8_seq(p + i, n - i);
		if (l) {
			memcpy(o, p + i, l);
			o += l;
			i += l;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
			o += 3;
			i++;
		}
	}
	*o = '\0';
	return out;
}

char *hm_logfmt_escape(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	char *out = xmalloc(4 * n + 1), *o = out;
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t l = c >= 0x80 ? hm_utf8_seq(p + i, n - i) : 1;
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c == '\n') {
			memcpy(o, "\\n", 2);
			o += 2;
		} else if (c < 0x20 || c == 0x7f || !l) {
			o += sprintf(o, "\\x%02x", c);
			l = 1;
		} else {
			memcpy(o, p + i, l);
			o += l;
			i += l;
			continue;
		}
		i++;
	}
	*o = '\0';
	return out;
}

char *hm_human_size(int64_t b)
{
	if (b > 0 && b % (1LL << 30) == 0)
		return xasprintf("%lldGB", (long long)(b >> 30));
	if (b > 0 && b % (1LL << 20) == 0)
		return xasprintf("%lldMB", (long long)(b >> 20));
	return xasprintf("%lldB", (long long)b);
}

char *hm_rate_text(int64_t bps)
{
	unsigned long long bits = (unsigned long long)bps * 8;
	if (bits % 1000000000ull == 0)
		return xasprintf("%lluGbps", bits / 1000000000ull);
	if (bits % 1000000ull == 0)
		return xasprintf("%lluMbps", bits / 1000000ull);
	if (bits % 1000ull == 0)
		return xasprintf("%llukbps", bits / 1000ull);
	return xasprintf("%llubps", bits);
}
