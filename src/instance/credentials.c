/*
 * instance/credentials: credential brokering's host side (instances.h,
 * struct hm_credential). It owns the rules of a policy (checked at create),
 * its stored form in the spec (no values: `credentials`, a list of {env,
 * source, inject: [{hosts, header, format}]}), and the instance's secrets
 * file: `secrets.json` in its folder, 0600, {source: value}, written
 * whole (temp, fsync, rename) so that a rotation is seen entirely or not
 * at all. The values are never in the spec, the config disk, a view or a
 * log line: the guest's variables hold placeholders (mock-<env>).
 *
 * The egress proxy asks hm_instances_egress_inject for the headers of a
 * request it decrypted; it reads the row and the secrets file each time,
 * so a rotation (a PATCH of a source key) applies from the next
 * connection, and a fork or a snapshot (whose payload copies the secrets
 * file: payload.c) brings the values along without them entering the
 * memory image.
 */
#include "instance/instances.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json_cleanup.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"

#define SECRETS_FILE   HM_PAYLOAD_SECRETS
#define SECRETS_MAX    (1u << 20)
#define HEADER_MAX     64
#define FORMAT_MAX     1024
#define VALUE_MAX      8192
#define PLACEHOLDER    "mock-"
#define VALUE_TEMPLATE "${value}"

static bool env_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 128 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* A DNS name (letters, digits, hyphens; labels of 1 to 63) or an IPv4 address. */
static bool host_name_ok(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253 || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)s[i]) || (s[i] == '-' && label > 0)) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0 && s[n - 1] != '-';
}

bool inst_host_pattern_ok(const char *p)
{
	if (!p)
		return false;
	return strncmp(p, "*.", 2) == 0 ? host_name_ok(p + 2) : host_name_ok(p);
}

bool inst_host_matches(const char *pattern, const char *host)
{
	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, host) == 0;
	/* *.example.com: names under example.com, not example.com itself */
	size_t pl = strlen(pattern) - 1, hl = strlen(host); /* ".example.com" */
	return hl > pl && strcasecmp(host + hl - pl, pattern + 1) == 0;
}

/* A header we may set: a token, and not one that frames or routes the request. */
static bool header_ok(const char *h)
{
	static const char *const framing[] = {
		"host", "content-length", "transfer-encoding", "connection", "upgrade",
		"te",   "trailer",        "keep-alive",        "expect",     "content-type",
		NULL
	};
	size_t n = h ? strlen(h) : 0;
	if (n == 0 || n > HEADER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && !strchr("!#$%&'*+-.^_`|~", h[i]))
			return false;
	for (size_t i = 0; framing[i]; i++)
		if (strcasecmp(h, framing[i]) == 0)
			return false;
	return strncasecmp(h, "proxy-", 6) != 0;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int inst_credential_value_check(const char *key, json_t *v, struct hm_err **err)
{
	const char *s = json_string_value(v);
	if (!s || !*s || strlen(s) > VALUE_MAX || !printable(s))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`env.%s` is a credential's value: a non-empty string of at most "
		                  "%d printable characters (it goes into a header)",
		                  key, VALUE_MAX);
	return 0;
}

int inst_credentials_check(const struct hm_credential *c, size_t n, json_t *env,
                           enum hm_egress_mode egress, struct hm_err **err)
{
	if (n == 0)
		return 0;
	if (n > HM_MAX_CREDENTIALS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`credentials` holds at most %d entries", HM_MAX_CREDENTIALS);
	if (egress == HM_EGRESS_OFF)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`credentials` are brokered by the egress proxy: set "
		                  "network.egress.enabled to true");
	for (size_t i = 0; i < n; i++) {
		const struct hm_credential *k = &c[i];
		const char *name = k->env ? k->env : "";
		if (!env_name_ok(k->env))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "`credentials.%.128s`: the key is the guest's variable, a "
			    "name of letters, digits and _",
			    name);
		for (size_t j = 0; j < i; j++)
			if (strcmp(c[j].env, k->env) == 0)
				return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
				                  "`credentials.%s` is given twice", name);
		if (!env_name_ok(k->source))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`credentials.%s.source.env` must name a key of `env`",
			                  name);
		json_t *v = json_object_get(env, k->source);
		if (!v)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`credentials.%s.source.env`: `env` has no key %s (the "
			                  "real value goes there)",
			                  name, k->source);
		if (inst_credential_value_check(k->source, v, err) < 0)
			return -1;
		if (k->ninject == 0 || k->ninject > HM_MAX_INJECT)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`credentials.%s.inject` must hold 1 to %d rules", name,
			                  HM_MAX_INJECT);
		for (size_t r = 0; r < k->ninject; r++) {
			const struct hm_credential_inject *in = &k->inject[r];
			if (!header_ok(in->header))
				return hm_err_set(
				    err, HM_ERR_INVALID, "invalid_field",
				    "`credentials.%s.inject[%zu].as.header` must be a header name "
				    "(a token of at most %d characters, not one that frames the "
				    "request such as Host or Content-Length)",
				    name, r, HEADER_MAX);
			if (!in->format || strlen(in->format) > FORMAT_MAX ||
			    !strstr(in->format, VALUE_TEMPLATE) || !printable(in->format))
				return hm_err_set(
				    err, HM_ERR_INVALID, "invalid_field",
				    "`credentials.%s.inject[%zu].as.format` must contain ${value} "
				    "(at most %d printable characters)",
				    name, r, FORMAT_MAX);
			if (in->nhosts > HM_MAX_INJECT_HOSTS)
				return hm_err_set(
				    err, HM_ERR_INVALID, "invalid_field",
				    "`credentials.%s.inject[%zu].hosts` holds at most %d "
				    "patterns",
				    name, r, HM_MAX_INJECT_HOSTS);
			for (size_t h = 0; h < in->nhosts; h++)
				if (!inst_host_pattern_ok(in->hosts[h]))
					return hm_err_set(
					    err, HM_ERR_INVALID, "invalid_field",
					    "`credentials.%s.inject[%zu].hosts[%zu]`: `%.100s` is "
					    "not a host name or *.domain pattern",
					    name, r, h, in->hosts[h] ? in->hosts[h] : "");
		}
	}
	return 0;
}

json_t *inst_credentials_json(const struct hm_credential *c, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *rules = json_array();
		for (size_t r = 0; r < c[i].ninject; r++) {
			json_t *hosts = json_array();
			for (size_t h = 0; h < c[i].inject[r].nhosts; h++)
				json_array_append_new(hosts, json_string(c[i].inject[r].hosts[h]));
			json_array_append_new(rules, json_pack("{s:o,s:s,s:s}", "hosts", hosts,
			                                       "header", c[i].inject[r].header,
			                                       "format", c[i].inject[r].format));
		}
		json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "env", c[i].env, "source",
		                                      c[i].source, "inject", rules));
	}
	return list;
}

/* Whether a credential of the stored policy has `field` (env or source) equal to key. */
static bool credential_has(json_t *creds, const char *field, const char *key)
{
	size_t i;
	json_t *c;
	json_array_foreach (creds, i, c) {
		const char *s = json_string_value(json_object_get(c, field));
		if (s && strcmp(s, key) == 0)
			return true;
	}
	return false;
}

bool inst_credential_source(json_t *creds, const char *key)
{
	return credential_has(creds, "source", key);
}

bool inst_credential_guest_var(json_t *creds, const char *key)
{
	return credential_has(creds, "env", key);
}

json_t *inst_credentials_split_env(json_t *creds, json_t *env, json_t **secrets)
{
	json_t *guest = env ? json_deep_copy(env) : json_object();
	*secrets = json_object();
	size_t i;
	json_t *c;
	json_array_foreach (creds, i, c) {
		const char *src = json_string_value(json_object_get(c, "source"));
		json_t *v = json_object_get(env, src);
		if (v)
			json_object_set(*secrets, src, v);
		json_object_del(guest, src);
	}
	json_array_foreach (creds, i, c) {
		const char *var = json_string_value(json_object_get(c, "env"));
		json_object_set_new(guest, var, json_sprintf(PLACEHOLDER "%s", var));
	}
	return guest;
}

int inst_secrets_write(struct hm_instances *in, const char *id, json_t *secrets,
                       struct hm_err **err)
{
	_cleanup_free_ char *path = inst_path(in, id, SECRETS_FILE);
	_cleanup_free_ char *text = json_dumps(secrets, JSON_COMPACT);
	if (!text)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "credentials: cannot encode");
	int r = hm_write_file_atomic(path, text, strlen(text), 0600, err);
	explicit_bzero(text, strlen(text));
	return r < 0 ? hm_err_wrap(err, "store the instance's credentials") : 0;
}

json_t *inst_secrets_read(struct hm_instances *in, const char *id)
{
	_cleanup_free_ char *path = inst_path(in, id, SECRETS_FILE);
	char *text = NULL;
	size_t len = 0;
	if (hm_read_file(path, SECRETS_MAX, &text, &len, NULL) < 0)
		return NULL;
	json_t *s = json_loadb(text, len, 0, NULL);
	explicit_bzero(text, len);
	free(text);
	return json_is_object(s) ? s : (json_decref(s), NULL);
}

int inst_secrets_rotate(struct hm_instances *in, const char *id, json_t *set, struct hm_err **err)
{
	_cleanup_json_ json_t *s = inst_secrets_read(in, id);
	if (!s)
		s = json_object();
	json_object_update(s, set);
	return inst_secrets_write(in, id, s, err);
}

/* format with each ${value} replaced by value. */
static char *expand(const char *format, const char *value)
{
	size_t tl = strlen(VALUE_TEMPLATE), vl = strlen(value), n = 0;
	for (const char *p = format; (p = strstr(p, VALUE_TEMPLATE)); p += tl)
		n++;
	char *out = xmalloc(strlen(format) + n * vl + 1), *o = out;
	for (const char *p = format;;) {
		const char *hit = strstr(p, VALUE_TEMPLATE);
		size_t k = hit ? (size_t)(hit - p) : strlen(p);
		memcpy(o, p, k);
		o += k;
		if (!hit)
			break;
		memcpy(o, value, vl);
		o += vl;
		p = hit + tl;
	}
	*o = '\0';
	return out;
}

size_t hm_instances_egress_inject(struct hm_instances *in, const char *peer, const char *host,
                                  char **names, char **values, size_t max)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_by_ip(in->st, peer, &row, NULL) < 0)
		return 0;
	size_t n = 0;
	_cleanup_json_ json_t *spec = inst_spec_of(&row);
	json_t *creds = json_object_get(spec, "credentials");
	_cleanup_json_ json_t *secrets =
	    json_array_size(creds) ? inst_secrets_read(in, row.id) : NULL;
	size_t i;
	json_t *c;
	json_array_foreach (creds, i, c) {
		const char *value = json_string_value(
		    json_object_get(secrets, json_string_value(json_object_get(c, "source"))));
		size_t r;
		json_t *rule;
		json_array_foreach (json_object_get(c, "inject"), r, rule) {
			json_t *hosts = json_object_get(rule, "hosts");
			bool match = json_array_size(hosts) == 0;
			size_t h;
			json_t *p;
			json_array_foreach (hosts, h, p)
				match = match || inst_host_matches(json_string_value(p), host);
			const char *hdr = json_string_value(json_object_get(rule, "header"));
			if (!match || !value || !hdr || n == max)
				continue;
			/* One value per header: a later rule for the same header wins. */
			size_t k = 0;
			while (k < n && strcasecmp(names[k], hdr) != 0)
				k++;
			char *v = expand(json_string_value(json_object_get(rule, "format")), value);
			if (k < n) {
				explicit_bzero(values[k], strlen(values[k]));
				free(values[k]);
				values[k] = v;
			} else {
				names[n] = xstrdup(hdr);
				values[n++] = v;
			}
		}
	}
	hm_instance_row_done(&row);
	return n;
}
