/*
 * ingress/route: ingress rule validation and hostname matching (route.h).
 */
#include "ingress/route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

#define MAX_CAPTURES 8

bool hm_route_is_pattern(const char *hostname)
{
	return strchr(hostname, '{') != NULL;
}

static bool label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* A DNS name, lowercase, labels 1-63, or with whole-label {captures} when patterns are allowed. */
static bool valid_hostname(const char *h, bool allow_pattern)
{
	size_t n = strlen(h);
	if (n == 0 || n > 253)
		return false;
	const char *p = h;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (len == 0 || len > 63)
			return false;
		if (p[0] == '{') {
			if (!allow_pattern || len < 3 || p[len - 1] != '}')
				return false;
			for (size_t i = 1; i + 1 < len; i++)
				if (!(islower((unsigned char)p[i]) || p[i] == '_'))
					return false;
		} else {
			for (size_t i = 0; i < len; i++)
				if (!label_char(p[i]))
					return false;
			if (p[0] == '-' || p[len - 1] == '-')
				return false;
		}
		p += len;
		if (*p == '.')
			p++;
		if (dot && !*p)
			return false; /* a trailing dot */
	}
	return true;
}

/* Does every {capture} of target appear in hostname? */
static bool captures_known(const char *hostname, const char *target)
{
	for (const char *p = strchr(target, '{'); p; p = strchr(p + 1, '{')) {
		const char *e = strchr(p, '}');
		if (!e)
			return false;
		char name[72];
		size_t len = (size_t)(e - p + 1);
		if (len >= sizeof(name))
			return false;
		memcpy(name, p, len);
		name[len] = '\0';
		if (!strstr(hostname, name))
			return false;
	}
	return true;
}

/* An instance name/id, or a capture reference made of those and {captures}. */
static bool valid_target(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > 63)
		return false;
	for (const char *p = t; *p; p++)
		if (!label_char(*p) && *p != '{' && *p != '}' && *p != '_')
			return false;
	return true;
}

static const char *const reserved_headers[] = {
	"authorization",  "proxy-authorization", "cookie",     "set-cookie", "host",
	"content-length", "transfer-encoding",   "connection", "upgrade",    "te",
	"trailer",        "keep-alive",          "expect",     "forwarded",  NULL,
};

static int rule_err(struct hm_err **err, size_t i, const char *what)
{
	return hm_err_set(err, HM_ERR_INVALID, "invalid_rule", "rules[%zu]: %s", i, what);
}

/* A header for request_header_auth: a dedicated name, a printable value of 32-256. */
static bool auth_ok(const char *h, const char *v)
{
	bool ok = h && v && *h && strlen(h) <= 64 && strlen(v) >= 32 && strlen(v) <= 256;
	for (const char *p = h; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_';
	for (const char *p = v; ok && *p; p++)
		ok = *p >= 0x21 && *p <= 0x7e;
	for (size_t k = 0; ok && reserved_headers[k]; k++)
		ok = strcasecmp(h, reserved_headers[k]) != 0;
	if (ok && (strncasecmp(h, "proxy-", 6) == 0 || strncasecmp(h, "sec-", 4) == 0))
		ok = false;
	return ok;
}

static int one_rule(const struct hm_ingress_rule *r, size_t i, struct hm_ingress_rule *o,
                    char host[256], struct hm_err **err)
{
	if (!r->hostname)
		return rule_err(err, i, "`match.hostname` is required");
	size_t n = strlen(r->hostname);
	snprintf(host, 256, "%s", r->hostname);
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (n > 253 || !valid_hostname(host, true))
		return rule_err(err, i,
		                "`match.hostname` must be a DNS name such as api.example.com, or a "
		                "pattern such as {instance}.example.com");
	int port = r->port ? r->port : 80;
	if (port < 1 || port > 65535)
		return rule_err(err, i, "`match.port` must be 1-65535");
	if (!r->instance || !valid_target(r->instance))
		return rule_err(err, i,
		                "`target.instance` must be an instance name or id, or a "
		                "{capture} of the hostname");
	if (!captures_known(host, r->instance))
		return rule_err(err, i, "`target.instance` uses a {capture} the hostname lacks");
	if (r->target_port < 1 || r->target_port > 65535)
		return rule_err(err, i, "`target.port` must be 1-65535");
	if (r->redirect_http && !r->tls)
		return rule_err(err, i, "redirect_http needs tls");
	if ((r->auth_header || r->auth_value) && !auth_ok(r->auth_header, r->auth_value))
		return rule_err(err, i,
		                "`request_header_auth` needs a dedicated header name (not "
		                "authorization, cookie, host, framing or proxy headers) and a "
		                "printable value of 32-256 characters");
	*o = *r;
	o->hostname = host;
	o->port = port;
	return 0;
}

int hm_route_check(const struct hm_ingress_rule *rules, size_t nrules, struct hm_ingress_rule *out,
                   char (*hosts)[256], struct hm_err **err)
{
	if (nrules == 0 || nrules > HM_ROUTE_MAX_RULES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "`rules` must be an array of 1 to %d rules", HM_ROUTE_MAX_RULES);
	for (size_t i = 0; i < nrules; i++) {
		if (one_rule(&rules[i], i, &out[i], hosts[i], err) < 0)
			return -1;
		/* The same hostname and port twice in one ingress is a mistake. */
		for (size_t k = 0; k < i; k++)
			if (out[k].port == out[i].port &&
			    strcmp(out[k].hostname, out[i].hostname) == 0)
				return rule_err(err, i,
				                "repeats the hostname and port of an earlier rule");
	}
	return 0;
}

bool hm_route_match(const char *hostname, const char *host, const char *target, char *out,
                    size_t outlen)
{
	if (!hm_route_is_pattern(hostname)) {
		if (strcmp(hostname, host) != 0)
			return false;
		snprintf(out, outlen, "%s", target);
		return true;
	}
	/* Label by label; a {capture} takes exactly one label of host. */
	struct {
		char name[72];
		char value[64];
	} cap[MAX_CAPTURES];
	size_t ncap = 0;
	const char *p = hostname, *h = host;
	while (*p && *h) {
		size_t pl = strcspn(p, "."), hl = strcspn(h, ".");
		if (p[0] == '{') {
			if (hl == 0 || hl > 63 || ncap == MAX_CAPTURES)
				return false;
			for (size_t i = 0; i < hl; i++)
				if (!label_char(h[i]))
					return false;
			snprintf(cap[ncap].name, sizeof(cap[ncap].name), "%.*s", (int)pl, p);
			snprintf(cap[ncap].value, sizeof(cap[ncap].value), "%.*s", (int)hl, h);
			ncap++;
		} else if (pl != hl || strncmp(p, h, pl) != 0) {
			return false;
		}
		p += pl;
		h += hl;
		if ((*p == '.') != (*h == '.'))
			return false;
		if (*p == '.') {
			p++;
			h++;
		}
	}
	if (*p || *h)
		return false;
	/* Substitute the captures into the target. */
	size_t o = 0;
	for (const char *t = target; *t && o + 1 < outlen;) {
		if (*t == '{') {
			const char *e = strchr(t, '}');
			size_t len = e ? (size_t)(e - t + 1) : strlen(t);
			bool done = false;
			for (size_t k = 0; k < ncap && !done; k++) {
				if (strlen(cap[k].name) == len &&
				    strncmp(cap[k].name, t, len) == 0) {
					int w = snprintf(out + o, outlen - o, "%s", cap[k].value);
					o += w > 0 ? (size_t)w : 0;
					done = true;
				}
			}
			if (!done)
				return false;
			t += len;
		} else {
			out[o++] = *t++;
		}
	}
	if (o >= outlen)
		return false;
	out[o] = '\0';
	return true;
}
