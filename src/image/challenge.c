/*
 * image/challenge: reading a registry's WWW-Authenticate challenge (RFC 9110
 * §11: `auth-scheme 1*SP auth-param *( OWS "," OWS auth-param )`, where an
 * auth-param is `token BWS "=" BWS ( token / quoted-string )`). It is read
 * left to right as that grammar says, so a quoted value may hold anything,
 * commas, `scope=` or escaped quotes, without being taken for a parameter
 * of its own. A challenge that breaks the grammar yields what came before
 * the break and nothing after. Registries send a single challenge; a second
 * one in the same header ends the first one's parameters (its scheme reads
 * as a parameter with no `=`).
 */
#include "image/challenge.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xalloc.h"

static bool tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A token value may also be a token68 (base64 and friends: '/', '+', '='). */
static bool vchar(char c)
{
	return tchar(c) || c == '/' || c == '=' || c == ':' || c == '?' || c == '@' || c == '[' ||
	       c == ']' || c == '(' || c == ')';
}

char *hm_challenge_param(const char *header, const char *name)
{
	if (!header || !name || strnlen(header, HM_CHALLENGE_MAX + 1) > HM_CHALLENGE_MAX)
		return NULL;
	const char *p = ows(header);
	while (tchar(*p)) /* the scheme */
		p++;
	if (p == header || (*p != ' ' && *p != '\t'))
		return NULL;
	size_t nl = strlen(name);
	for (;;) {
		p = ows(p);
		while (*p == ',') /* empty list elements are allowed */
			p = ows(p + 1);
		if (!*p)
			return NULL;
		const char *k = p;
		while (tchar(*p))
			p++;
		size_t kl = (size_t)(p - k);
		p = ows(p);
		if (kl == 0 || *p != '=')
			return NULL;
		p = ows(p + 1);
		bool want = kl == nl && strncasecmp(k, name, nl) == 0;
		char *val = NULL;
		if (*p == '"') {
			p++;
			size_t cap = strlen(p) + 1, n = 0;
			val = want ? xmalloc(cap) : NULL;
			for (; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (val)
					val[n++] = *p;
			}
			if (*p != '"') { /* unterminated */
				free(val);
				return NULL;
			}
			p++;
			if (val)
				val[n] = '\0';
		} else {
			const char *v = p;
			while (vchar(*p))
				p++;
			if (p == v)
				return NULL;
			if (want)
				val = xstrndup(v, (size_t)(p - v));
		}
		if (val)
			return val;
		p = ows(p);
		if (*p && *p != ',')
			return NULL;
	}
}
