/*
 * Instance endpoints: POST/GET /instances, GET/DELETE /instances/{id}
 * ({id} is an id, a name or a unique id prefix) and GET
 * /instances/{id}/logs as Server-Sent Events. The work is the instance
 * service's (instance/instances.h); this file maps HTTP to its calls.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "instance/instances.h"
#include "instance/logs.h"

/* A size string field ("512MB") in bytes; absent or null: 0 (the default). */
static int size_field(json_t *o, const char *key, int64_t *ret, struct hm_err **err)
{
	json_t *v = json_object_get(o, key);
	*ret = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be a size string such as \"1GB\"", key);
	if (hm_parse_size(json_string_value(v), ret, NULL) < 0 || *ret <= 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s`: invalid size `%.40s` (use e.g. \"512MB\", \"2GB\")", key,
		                  json_string_value(v));
	return 0;
}

/* Whether optional field key of o is there, not null, and not of the type `is` tests. */
static bool wrong_type(json_t *o, const char *key, int (*is)(const json_t *))
{
	json_t *v = json_object_get(o, key);
	return v && !json_is_null(v) && !is(v);
}

static int is_bool(const json_t *v)
{
	return json_is_boolean(v);
}

static int is_string(const json_t *v)
{
	return json_is_string(v);
}

/* A volume attachment object (a create's volumes[i], or an attach's body). */
static int parse_attach(json_t *v, const char *where, struct hm_attach *a, struct hm_err **err)
{
	if (wrong_type(v, "mount_path", is_string))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%smount_path must be a string", where);
	if (wrong_type(v, "readonly", is_bool))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%sreadonly must be a boolean", where);
	if (wrong_type(v, "overlay", is_bool))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%soverlay must be a boolean", where);
	a->mount_path = json_string_value(json_object_get(v, "mount_path"));
	a->readonly = json_is_true(json_object_get(v, "readonly"));
	a->overlay = json_is_true(json_object_get(v, "overlay"));
	return a->overlay ? size_field(v, "overlay_size", &a->overlay_bytes, err) : 0;
}

/*
 * POST /instances's body as the typed create. Shapes and units are checked
 * here (a size is a string, a rate is "1Gbps"); ranges and rules are the
 * domain's, shared with the other dialects.
 */
static int parse_duration_ms(const char *s, long *ret);

/* A Go-style duration field of o (absent or null: dflt), in ms. */
static int duration_field(json_t *o, const char *key, const char *field, long dflt, long *ret,
                          struct hm_err **err)
{
	json_t *v = json_object_get(o, key);
	*ret = dflt;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || parse_duration_ms(json_string_value(v), ret) < 0)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_field",
		    "`%s.%s` must be a duration of at most 24h, such as \"5s\" or \"10m\"", field,
		    key);
	return 0;
}

/*
 * Upstream's RestartPolicy {policy, backoff, max_attempts, stable_after}:
 * each restart comes `backoff` after the end (default 5s), at most
 * max_attempts in a row (0: no limit); a run of stable_after (default 10m)
 * starts the count again.
 */
static int parse_restart(json_t *rp, const char *field, struct hm_restart_policy *ret,
                         struct hm_err **err)
{
	*ret = (struct hm_restart_policy){ .policy = HM_RESTART_NEVER };
	if (!rp || json_is_null(rp))
		return 0;
	if (!json_is_object(rp))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`%s` must be an object",
		                  field);
	json_t *p = json_object_get(rp, "policy");
	const char *name = json_string_value(p);
	if (p && !json_is_null(p) && !name)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s.policy` must be never, always or on_failure", field);
	if (!name || strcmp(name, "never") == 0)
		ret->policy = HM_RESTART_NEVER;
	else if (strcmp(name, "always") == 0)
		ret->policy = HM_RESTART_ALWAYS;
	else if (strcmp(name, "on_failure") == 0)
		ret->policy = HM_RESTART_ON_FAILURE;
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s.policy` must be never, always or on_failure, not `%.40s`",
		                  field, name);
	long backoff, stable;
	if (duration_field(rp, "backoff", field, 5000, &backoff, err) < 0 ||
	    duration_field(rp, "stable_after", field, 600000, &stable, err) < 0)
		return -1;
	json_t *max = json_object_get(rp, "max_attempts");
	if (max && !json_is_null(max) && !json_is_integer(max))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s.max_attempts` must be an integer", field);
	json_int_t m = json_integer_value(max);
	ret->max_attempts = m < 0         ? -1
	                    : m > INT_MAX ? INT_MAX
	                                  : (int)m; /* the range: the domain's */
	ret->first_ms = ret->delay_ms = backoff;
	ret->stable_ms = stable;
	return 0;
}

/*
 * Upstream's AutoStandbyPolicy {enabled, idle_timeout, ignore_source_cidrs,
 * ignore_destination_ports}: idle_timeout default 5m. The ignore lists are
 * not built yet: non-empty ones are refused by name.
 */
static int parse_auto_standby(json_t *as, const char *field, struct hm_auto_standby *ret,
                              struct hm_err **err)
{
	*ret = (struct hm_auto_standby){ .enabled = false, .idle_ms = 300000 };
	if (!json_is_object(as))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`%s` must be an object",
		                  field);
	json_t *en = json_object_get(as, "enabled");
	if (en && !json_is_null(en) && !json_is_boolean(en))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s.enabled` must be a boolean", field);
	ret->enabled = json_is_true(en);
	static const char *const refused[] = { "ignore_source_cidrs", "ignore_destination_ports" };
	for (size_t i = 0; i < 2; i++) {
		json_t *l = json_object_get(as, refused[i]);
		if (l && !json_is_null(l) && (!json_is_array(l) || json_array_size(l) > 0))
			return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
			                  "`%s.%s`: ignore lists are not available yet (every "
			                  "connection through an ingress keeps the instance awake)",
			                  field, refused[i]);
	}
	long idle;
	if (duration_field(as, "idle_timeout", field, 300000, &idle, err) < 0)
		return -1;
	ret->idle_ms = idle;
	return 0;
}

/* credentials: {GUEST_VAR: {source: {env}, inject: [{hosts?, as: {header, format}}]}},
 * typed; the rules (names, patterns, the source in env) are the domain's. */
static int parse_credentials(json_t *cr, struct hm_instance_create *c, struct hm_err **err)
{
	if (!json_is_object(cr) || json_object_size(cr) > HM_MAX_CREDENTIALS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`credentials` must be an object of at most %d credentials",
		                  HM_MAX_CREDENTIALS);
	const char *key;
	json_t *v;
	json_object_foreach (cr, key, v) {
		struct hm_credential *k = &c->credentials[c->ncredentials++];
		k->env = key;
		json_t *src = json_object_get(v, "source");
		json_t *inj = json_object_get(v, "inject");
		if (!json_is_object(v) || !json_is_string(json_object_get(src, "env")))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`credentials.%.128s.source.env` is required: the key of "
			                  "`env` holding the real value",
			                  key);
		k->source = json_string_value(json_object_get(src, "env"));
		if (!json_is_array(inj) || json_array_size(inj) == 0 ||
		    json_array_size(inj) > HM_MAX_INJECT)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`credentials.%.128s.inject` must be an array of 1 to %d "
			                  "rules",
			                  key, HM_MAX_INJECT);
		size_t i;
		json_t *rule;
		json_array_foreach (inj, i, rule) {
			struct hm_credential_inject *r = &k->inject[k->ninject++];
			json_t *as = json_object_get(rule, "as");
			json_t *hosts = json_object_get(rule, "hosts");
			if (!json_is_string(json_object_get(as, "header")) ||
			    !json_is_string(json_object_get(as, "format")))
				return hm_err_set(
				    err, HM_ERR_INVALID, "invalid_field",
				    "`credentials.%.128s.inject[%zu].as` needs the strings "
				    "`header` and `format`",
				    key, i);
			r->header = json_string_value(json_object_get(as, "header"));
			r->format = json_string_value(json_object_get(as, "format"));
			if (hosts && !json_is_null(hosts) &&
			    (!json_is_array(hosts) || json_array_size(hosts) > HM_MAX_INJECT_HOSTS))
				return hm_err_set(
				    err, HM_ERR_INVALID, "invalid_field",
				    "`credentials.%.128s.inject[%zu].hosts` must be an "
				    "array of at most %d host patterns",
				    key, i, HM_MAX_INJECT_HOSTS);
			size_t h;
			json_t *p;
			json_array_foreach (hosts, h, p) {
				if (!json_is_string(p))
					return hm_err_set(
					    err, HM_ERR_INVALID, "invalid_field",
					    "`credentials.%.128s.inject[%zu].hosts[%zu]` "
					    "must be a string",
					    key, i, h);
				r->hosts[r->nhosts++] = json_string_value(p);
			}
		}
	}
	return 0;
}

static int parse_create(json_t *req, struct hm_instance_create *c, struct hm_err **err)
{
	if (!json_is_object(req))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *name = json_object_get(req, "name");
	json_t *image = json_object_get(req, "image");
	if (name && !json_is_string(name))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	c->name = json_string_value(name); /* required, and its rule: the domain's */
	if (image && !json_is_string(image))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`image` must be a non-empty image reference");
	c->image = json_string_value(image);
	json_t *vcpus = json_object_get(req, "vcpus");
	if (vcpus && !json_is_null(vcpus)) {
		if (!json_is_integer(vcpus))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`vcpus` must be an integer");
		/* The range is the domain's: what cannot be one (below 1, beyond an
		 * int) goes to it as a value it refuses (0 would mean the default). */
		json_int_t n = json_integer_value(vcpus);
		c->vcpus = n < 1 ? -1 : n > INT_MAX ? INT_MAX : (int)n;
	}
	if (size_field(req, "size", &c->mem_bytes, err) < 0 ||
	    size_field(req, "overlay_size", &c->overlay_bytes, err) < 0)
		return -1;
	static const char *const lists[] = { "env", "cmd", "entrypoint", "tags" };
	json_t **dst[] = { &c->env, &c->cmd, &c->entrypoint, &c->tags };
	for (size_t i = 0; i < 4; i++) {
		json_t *v = json_object_get(req, lists[i]);
		*dst[i] = v && !json_is_null(v) ? v : NULL; /* their rules are the domain's */
	}
	json_t *net = json_object_get(req, "network");
	if (net && !json_is_null(net) && !json_is_object(net))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`network` must be an object");
	if (wrong_type(net, "enabled", is_bool))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`network.enabled` must be a boolean");
	json_t *en = json_object_get(net, "enabled");
	c->network = !json_is_boolean(en) ? HM_NET_DEFAULT
	             : json_is_true(en)   ? HM_NET_ON
	                                  : HM_NET_OFF;
	json_t *eg = json_object_get(net, "egress");
	if (eg && !json_is_null(eg)) {
		json_t *on = json_object_get(eg, "enabled");
		json_t *enf = json_object_get(eg, "enforcement");
		json_t *mode = json_object_get(enf, "mode");
		if (!json_is_object(eg) || (on && !json_is_null(on) && !json_is_boolean(on)))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "`network.egress` must be an object with a boolean `enabled`");
		if (enf && !json_is_null(enf) && !json_is_object(enf))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`network.egress.enforcement` must be an object");
		const char *m = mode && !json_is_null(mode) ? json_string_value(mode) : "all";
		if (!m || (strcmp(m, "all") != 0 && strcmp(m, "http_https_only") != 0))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`network.egress.enforcement.mode` must be all or "
			                  "http_https_only");
		if (json_is_true(on))
			c->egress =
			    strcmp(m, "all") == 0 ? HM_EGRESS_ALL : HM_EGRESS_HTTP_HTTPS_ONLY;
	}
	json_t *cr = json_object_get(req, "credentials");
	if (cr && !json_is_null(cr) && parse_credentials(cr, c, err) < 0)
		return -1;
	static const char *const rates[] = { "bandwidth_download", "bandwidth_upload" };
	int64_t *bps[] = { &c->download_bps, &c->upload_bps };
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(net, rates[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v) ||
		    hm_parse_bandwidth(json_string_value(v), bps[i], NULL) < 0 || *bps[i] <= 0)
			return hm_err_set(
			    err, HM_ERR_INVALID,
			    i ? "invalid_bandwidth_upload" : "invalid_bandwidth_download",
			    "`network.%s`: `%.40s` is not a rate (use e.g. \"1Gbps\" or "
			    "\"125MB/s\")",
			    rates[i], json_is_string(v) ? json_string_value(v) : "(not a string)");
	}
	json_t *dio = json_object_get(req, "disk_io_bps");
	if (dio && !json_is_null(dio)) {
		_cleanup_free_ char *t =
		    json_is_string(dio) ? xstrdup(json_string_value(dio)) : NULL;
		size_t tl = t ? strlen(t) : 0;
		if (tl > 2 && strcmp(t + tl - 2, "/s") == 0)
			t[tl - 2] = '\0';
		if (!t || hm_parse_size(t, &c->disk_bps, NULL) < 0 || c->disk_bps <= 0)
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "`disk_io_bps`: `%.40s` is not a rate (use e.g. \"100MB/s\")",
			    t ? json_string_value(dio) : "(not a string)");
	}
	json_t *vs = json_object_get(req, "volumes");
	if (vs && !json_is_null(vs)) {
		if (!json_is_array(vs) || json_array_size(vs) > HM_MAX_ATTACH)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`volumes` must be an array of at most %d attachments",
			                  HM_MAX_ATTACH);
		size_t i;
		json_t *v;
		json_array_foreach (vs, i, v) {
			char where[32];
			snprintf(where, sizeof(where), "volumes[%zu].", i);
			if (!json_is_object(v) || !json_is_string(json_object_get(v, "volume_id")))
				return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
				                  "volumes[%zu].volume_id is required", i);
			c->volumes[i].volume = json_string_value(json_object_get(v, "volume_id"));
			if (parse_attach(v, where, &c->volumes[i], err) < 0)
				return -1;
		}
		c->nvolumes = json_array_size(vs);
	}
	json_t *pf = json_object_get(req, "platform");
	if (pf && !json_is_null(pf) &&
	    (!json_is_string(pf) || strcmp(json_string_value(pf), "linux/amd64") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_platform",
		                  "`platform` %s cannot run here: this host runs linux/amd64",
		                  json_is_string(pf) ? json_string_value(pf) : "(not a string)");
	/* skip_guest_agent and skip_kernel_headers: accepted, no effect (api/openapi.yaml). */
	json_t *hv = json_object_get(req, "hypervisor");
	if (hv && !json_is_null(hv)) {
		if (!json_is_string(hv))
			return hm_err_set(err, HM_ERR_INVALID, "unsupported_hypervisor",
			                  "`hypervisor` must be a string");
		c->hypervisor = json_string_value(hv);
	}
	json_t *as = json_object_get(req, "auto_standby");
	if (as && !json_is_null(as)) {
		c->auto_standby_set = true;
		if (parse_auto_standby(as, "auto_standby", &c->auto_standby, err) < 0)
			return -1;
	}
	return parse_restart(json_object_get(req, "restart_policy"), "restart_policy", &c->restart,
	                     err);
}

int hm_h_instances_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_create c = { 0 };
	if (hm_rest_parse_create(hm_req_json(req), &c, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_instances_create(hm_req_services(req)->instances, &c, &inst, err) < 0)
		return -1;
	return hm_resp_instance(resp, 201, inst);
}

int hm_rest_parse_create(json_t *body, struct hm_instance_create *c, struct hm_err **err)
{
	return parse_create(body, c, err);
}

int hm_rest_parse_attach(json_t *body, struct hm_attach *a, struct hm_err **err)
{
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	return parse_attach(body, "", a, err);
}

int hm_h_instances_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *q = hm_req_query(req, "state");
	enum hm_state state;
	if (q && !hm_state_parse(q, &state))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_state",
		                  "unknown state `%.40s` (one of Created, Initializing, "
		                  "Running, Paused, Shutdown, Stopped, Standby, Unknown)",
		                  q);
	json_t *filter = hm_query_deep_object(req, "tags");
	struct hm_instance_view *views = NULL;
	size_t n = 0;
	int r = hm_instances_list(hm_req_services(req)->instances, q ? &state : NULL, filter,
	                          &views, &n, err);
	json_decref(filter);
	if (r < 0)
		return -1;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, hm_rest_instance(&views[i]));
	hm_instance_views_free(views, n);
	return hm_resp_json(resp, 200, list);
}

int hm_h_instances_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_instances_get(hm_req_services(req)->instances, hm_req_param(req, "id"), &inst, err) <
	    0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

static int query_bool(struct hm_req *req, const char *name, bool dflt, bool *ret,
                      struct hm_err **err)
{
	const char *v = hm_req_query(req, name);
	if (!v || !*v) {
		*ret = dflt;
		return 0;
	}
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*ret = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*ret = false;
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`%s` must be true or false", name);
	return 0;
}

int hm_h_instances_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	bool graceful = true;
	if (query_bool(req, "graceful_shutdown", true, &graceful, err) < 0 ||
	    hm_instances_delete(hm_req_services(req)->instances, hm_req_param(req, "id"), graceful,
	                        err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

static ssize_t logs_read(void *cls, char *buf, size_t max)
{
	return hm_log_stream_read(cls, buf, max);
}

static void logs_free(void *cls)
{
	hm_log_stream_close(cls);
}

int hm_h_instances_logs(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	long tail = 100;
	const char *t = hm_req_query(req, "tail");
	if (t && *t) {
		char *end;
		errno = 0;
		tail = strtol(t, &end, 10);
		if (errno || *end || tail < 0 || tail > 1000000)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
			                  "`tail` must be an integer from 0 to 1000000");
	}
	bool follow = false;
	if (query_bool(req, "follow", false, &follow, err) < 0)
		return -1;
	struct hm_log_stream *s = NULL;
	if (hm_instances_logs(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                      hm_req_query(req, "source"), tail, follow, &s, err) < 0)
		return -1;
	resp->status = 200;
	resp->content_type = "text/event-stream";
	resp->stream_read = logs_read;
	resp->stream_free = logs_free;
	resp->stream_cls = s;
	hm_resp_header(resp, "Cache-Control", "no-cache");
	hm_resp_header(resp, "X-Accel-Buffering", "no");
	return 0;
}

int hm_h_instances_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_view *inst = NULL;
	if (hm_instances_stop(hm_req_services(req)->instances, hm_req_param(req, "id"), -1, &inst,
	                      err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_rest_parse_start(json_t *body, struct hm_instance_start *s, struct hm_err **err)
{
	*s = (struct hm_instance_start){ 0 };
	if (!body || json_is_null(body))
		return 0;
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *cmd = json_object_get(body, "cmd");
	json_t *ep = json_object_get(body, "entrypoint");
	s->cmd = json_is_null(cmd) ? NULL : cmd;
	s->entrypoint = json_is_null(ep) ? NULL : ep;
	return 0; /* the argv rules are the domain's (hm_instances_start checks them first) */
}

int hm_h_instances_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_start s;
	if (hm_rest_parse_start(hm_req_json(req), &s, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_instances_start(hm_req_services(req)->instances, hm_req_param(req, "id"), &s, &inst,
	                       err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

int hm_rest_parse_update(json_t *body, struct hm_instance_update *u, struct hm_err **err)
{
	*u = (struct hm_instance_update){ .delete_lock = -1 };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *env = json_object_get(body, "env");
	json_t *rp = json_object_get(body, "restart_policy");
	json_t *as = json_object_get(body, "auto_standby");
	if ((!env || json_is_null(env)) && (!rp || json_is_null(rp)) && (!as || json_is_null(as)))
		return hm_err_set(
		    err, HM_ERR_INVALID, "missing_field",
		    "nothing to update: give `env`, `restart_policy` or `auto_standby`");
	if (env && !json_is_null(env) && !json_is_object(env))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`env` must be an object of strings");
	u->env_set = json_is_object(env) ? env : NULL;
	if (rp && !json_is_null(rp)) {
		u->restart_set = true;
		if (parse_restart(rp, "restart_policy", &u->restart, err) < 0)
			return -1;
	}
	if (as && !json_is_null(as)) {
		u->auto_standby_set = true;
		if (parse_auto_standby(as, "auto_standby", &u->auto_standby, err) < 0)
			return -1;
	}
	return 0;
}

int hm_h_instances_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_update u;
	if (hm_rest_parse_update(hm_req_json(req), &u, err) < 0)
		return -1;
	struct hm_instance_view *inst = NULL;
	if (hm_instances_update(hm_req_services(req)->instances, hm_req_param(req, "id"), &u, &inst,
	                        err) < 0)
		return -1;
	return hm_resp_instance(resp, 200, inst);
}

/* Go-style durations as upstream takes them: "60s", "500ms", "2m", "1m30s". */
static int parse_duration_ms(const char *s, long *ret)
{
	const double limit = 24.0 * 3600000; /* a day: the longest any caller takes */
	double total = 0;
	const char *p = s;
	if (!*p)
		return -1;
	while (*p) {
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		/* !(v >= 0) also refuses NaN; inf and huge values fail the limit
		 * below, which is checked in double before any conversion. */
		if (errno || end == p || !(v >= 0))
			return -1;
		double mult;
		if (strncmp(end, "ms", 2) == 0) {
			mult = 1;
			end += 2;
		} else if (*end == 's') {
			mult = 1000;
			end++;
		} else if (*end == 'm') {
			mult = 60000;
			end++;
		} else if (*end == 'h') {
			mult = 3600000;
			end++;
		} else {
			return -1;
		}
		total += v * mult;
		if (!(total <= limit))
			return -1;
		p = end;
	}
	*ret = (long)total;
	return 0;
}

#define WAIT_MAX_MS (5L * 60 * 1000)

int hm_h_instances_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *q = hm_req_query(req, "state");
	if (!q || !*q)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`state` is required");
	enum hm_state state;
	if (!hm_state_parse(q, &state))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_state", "unknown state `%.40s`", q);
	long timeout_ms = 60000;
	const char *t = hm_req_query(req, "timeout");
	if (t && *t && parse_duration_ms(t, &timeout_ms) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`timeout` must be a duration such as 30s, 500ms or 2m");
	if (timeout_ms > WAIT_MAX_MS)
		timeout_ms = WAIT_MAX_MS;
	struct hm_wait_result w = { 0 };
	if (hm_instances_wait(hm_req_services(req)->instances, hm_req_param(req, "id"), state,
	                      timeout_ms, &w, err) < 0)
		return -1;
	json_t *out = json_pack("{s:s,s:s?,s:b}", "state", hm_state_name(w.state), "state_error",
	                        w.state_error, "timed_out", w.timed_out);
	free(w.state_error);
	return hm_resp_json(resp, 200, out);
}

int hm_h_instances_stats(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_instance_stats st;
	if (hm_instances_stats(hm_req_services(req)->instances, hm_req_param(req, "id"), &st, err) <
	    0)
		return -1;
	return hm_resp_json(
	    resp, 200,
	    json_pack("{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:i,s:I}", "instance_id", st.id,
	              "instance_name", st.name, "cpu_seconds", st.cpu_seconds, "memory_rss_bytes",
	              (json_int_t)st.rss_bytes, "memory_vms_bytes", (json_int_t)st.vms_bytes,
	              "network_rx_bytes", (json_int_t)st.rx_bytes, "network_tx_bytes",
	              (json_int_t)st.tx_bytes, "allocated_vcpus", st.vcpus,
	              "allocated_memory_bytes", (json_int_t)st.mem_bytes));
}

int hm_h_instances_stat(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	bool follow = false;
	if (query_bool(req, "follow_links", false, &follow, err) < 0)
		return -1;
	json_t *out = NULL;
	if (hm_instances_stat(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                      hm_req_query(req, "path"), follow, &out, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, out);
}

/* The AutoStandbyStatus object. */
static json_t *auto_standby_status_json(const struct hm_auto_standby_status *st)
{
	json_t *o =
	    json_pack("{s:b,s:b,s:b,s:b,s:s,s:s,s:i,s:s}", "supported", 1, "configured",
	              st->configured, "enabled", st->enabled, "eligible", st->eligible, "status",
	              st->status, "reason", st->reason, "active_inbound_connections", st->conns,
	              "tracking_mode", "ingress_connections");
	_cleanup_free_ char *idle = st->configured ? hm_rest_go_duration(st->idle_ms) : NULL;
	json_object_set_new(o, "idle_timeout", idle ? json_string(idle) : json_null());
	static const char *const keys[] = { "idle_since", "last_inbound_activity_at",
		                            "next_standby_at", "hold_until" };
	const int64_t at[] = { st->idle_since_ms, st->last_activity_ms, st->next_standby_ms,
		               st->hold_until_ms };
	for (size_t i = 0; i < 4; i++) {
		_cleanup_free_ char *t = at[i] > 0 ? hm_rfc3339_of_ms(at[i]) : NULL;
		json_object_set_new(o, keys[i], t ? json_string(t) : json_null());
	}
	int64_t left = st->next_standby_ms > 0 ? st->next_standby_ms - hm_now_ms() : -1;
	_cleanup_free_ char *rem = left >= 0 ? hm_rest_go_duration(left) : NULL;
	json_object_set_new(o, "countdown_remaining", rem ? json_string(rem) : json_null());
	return o;
}

int hm_h_instances_auto_standby_status(struct hm_req *req, struct hm_resp *resp,
                                       struct hm_err **err)
{
	struct hm_auto_standby_status st;
	if (hm_instances_auto_standby_status(hm_req_services(req)->instances,
	                                     hm_req_param(req, "id"), &st, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, auto_standby_status_json(&st));
}

int hm_h_instances_auto_standby_hold(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	struct hm_auto_standby_status st;
	if (hm_instances_auto_standby_hold(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                                   &st, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, auto_standby_status_json(&st));
}
