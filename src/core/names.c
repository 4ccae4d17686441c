/*
 * core/names: name shapes and new ids (see names.h).
 */
#include "core/names.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "core/err.h"

int hm_name_check(const char *what, const char *name, struct hm_err **err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= 63 && name[0] != '-' && name[n - 1] != '-' &&
	          strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
	if (!ok)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		                  "invalid %s name `%.80s`: use 1-63 lowercase letters, digits "
		                  "and dashes, not starting or ending with a dash",
		                  what, name ? name : "");
	return 0;
}

static void random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
}

void hm_id_new(char out[25])
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[24];
	random_bytes(rnd, sizeof(rnd));
	out[0] = alnum[rnd[0] % 26];
	for (int i = 1; i < 24; i++)
		out[i] = alnum[rnd[i] % 36];
	out[24] = '\0';
}

void hm_uuid_new(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* the RFC 4122 variant */
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0f];
	}
	*o = '\0';
}

bool hm_uuid_is(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}
