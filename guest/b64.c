/*
 * Base64 codec of the agent channel (see b64.h): a table-driven encoder and a
 * strict decoder that reads each quantum before writing it, so it can decode
 * in place.
 */
#include "b64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t hm_gb64_encode(const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	size_t o = 0, i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t hm_gb64_decode(const char *in, size_t len, void *out, size_t cap)
{
	unsigned char *o = out;
	const unsigned char *p = (const unsigned char *)in;
	/* Padding: at most two '=' and only to complete the last quantum. */
	if (len % 4 == 0 && len >= 4) {
		if (p[len - 1] == '=')
			len--;
		if (p[len - 1] == '=')
			len--;
	}
	if (len % 4 == 1)
		return -1;
	size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (n > cap)
		return -1;
	size_t w = 0;
	for (size_t i = 0; i < len; i += 4) {
		size_t k = len - i < 4 ? len - i : 4;
		int v[4] = { 0, 0, 0, 0 };
		for (size_t j = 0; j < k; j++)
			if ((v[j] = value(p[i + j])) < 0)
				return -1;
		uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		/* Unused low bits of a short last quantum must be zero (canonical form). */
		if ((k == 2 && (q & 0xffff)) || (k == 3 && (q & 0xff)))
			return -1;
		o[w++] = (unsigned char)(q >> 16);
		if (k > 2)
			o[w++] = (unsigned char)(q >> 8);
		if (k > 3)
			o[w++] = (unsigned char)q;
	}
	return (ssize_t)w;
}
