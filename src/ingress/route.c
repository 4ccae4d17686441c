/*
 * ingress/route: ingress rule validation and hostname matching (route.h).
 */
#include "ingress/route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/tags.h"

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

static int one_rule(json_t *r, size_t i, json_t **out, struct hm_err **err)
{
	if (!json_is_object(r))
		return rule_err(err, i, "must be an object");
	json_t *match = json_object_get(r, "match"), *target = json_object_get(r, "target");
	if (!json_is_object(match) || !json_is_object(target))
		return rule_err(err, i, "`match` and `target` objects are required");
	json_t *hv = json_object_get(match, "hostname");
	if (!json_is_string(hv))
		return rule_err(err, i, "`match.hostname` is required");
	char host[256];
	snprintf(host, sizeof(host), "%s", json_string_value(hv));
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (json_string_length(hv) > 253 || !valid_hostname(host, true))
		return rule_err(err, i,
		                "`match.hostname` must be a DNS name such as api.example.com, or a "
		                "pattern such as {instance}.example.com");
	json_t *pv = json_object_get(match, "port");
	json_int_t port = 80;
	if (pv && !json_is_null(pv)) {
		if (!json_is_integer(pv) || json_integer_value(pv) < 1 ||
		    json_integer_value(pv) > 65535)
			return rule_err(err, i, "`match.port` must be 1-65535");
		port = json_integer_value(pv);
	}
	const char *ti = json_string_value(json_object_get(target, "instance"));
	if (!ti || !valid_target(ti))
		return rule_err(err, i,
		                "`target.instance` must be an instance name or id, or a "
		                "{capture} of the hostname");
	if (!captures_known(host, ti))
		return rule_err(err, i, "`target.instance` uses a {capture} the hostname lacks");
	json_t *tp = json_object_get(target, "port");
	if (!json_is_integer(tp) || json_integer_value(tp) < 1 || json_integer_value(tp) > 65535)
		return rule_err(err, i, "`target.port` must be 1-65535");
	json_t *tls = json_object_get(r, "tls"), *redir = json_object_get(r, "redirect_http");
	if ((tls && !json_is_null(tls) && !json_is_boolean(tls)) ||
	    (redir && !json_is_null(redir) && !json_is_boolean(redir)))
		return rule_err(err, i, "`tls` and `redirect_http` must be booleans");
	json_t *o = json_pack("{s:{s:s,s:I},s:{s:s,s:O},s:b,s:b}", "match", "hostname", host,
	                      "port", port, "target", "instance", ti, "port", tp, "tls",
	                      json_is_true(tls), "redirect_http", json_is_true(redir));
	json_t *auth = json_object_get(r, "request_header_auth");
	if (auth && !json_is_null(auth)) {
		const char *h = json_string_value(json_object_get(auth, "header"));
		const char *v = json_string_value(json_object_get(auth, "value"));
		bool ok = h && v && *h && strlen(h) <= 64 && strlen(v) >= 32 && strlen(v) <= 256;
		for (const char *p = h; ok && *p; p++)
			ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_';
		for (const char *p = v; ok && *p; p++)
			ok = *p >= 0x21 && *p <= 0x7e;
		for (size_t k = 0; ok && reserved_headers[k]; k++)
			ok = strcasecmp(h, reserved_headers[k]) != 0;
		if (ok && (strncasecmp(h, "proxy-", 6) == 0 || strncasecmp(h, "sec-", 4) == 0))
			ok = false;
		if (!ok) {
			json_decref(o);
			return rule_err(
			    err, i,
			    "`request_header_auth` needs a dedicated header name (not "
			    "authorization, cookie, host, framing or proxy headers) and a "
			    "printable value of 32-256 characters");
		}
		json_object_set_new(o, "request_header_auth",
		                    json_pack("{s:s,s:s}", "header", h, "value", v));
	}
	*out = o;
	return 0;
}

int hm_route_validate(json_t *req, json_t **rules, struct hm_err **err)
{
	if (!json_is_object(req))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *in = json_object_get(req, "rules");
	if (!json_is_array(in) || json_array_size(in) == 0 ||
	    json_array_size(in) > HM_ROUTE_MAX_RULES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
		                  "`rules` must be an array of 1 to %d rules", HM_ROUTE_MAX_RULES);
	json_t *tags = json_object_get(req, "tags");
	if (tags && !json_is_null(tags) && hm_tags_validate(tags, err) < 0)
		return -1;
	json_t *out = json_array();
	size_t i;
	json_t *r;
	json_array_foreach (in, i, r) {
		json_t *o = NULL;
		if (one_rule(r, i, &o, err) < 0) {
			json_decref(out);
			return -1;
		}
		/* The same hostname and port twice in one ingress is a mistake. */
		for (size_t k = 0; k < json_array_size(out); k++) {
			json_t *m1 = json_object_get(json_array_get(out, k), "match");
			json_t *m2 = json_object_get(o, "match");
			if (json_equal(m1, m2)) {
				json_decref(o);
				json_decref(out);
				return rule_err(err, i,
				                "repeats the hostname and port of an earlier rule");
			}
		}
		json_array_append_new(out, o);
	}
	*rules = out;
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
