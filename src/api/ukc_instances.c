/*
 * api/ukc_instances: the Unikraft Cloud instance endpoints (/v1/instances...)
 * over the instance domain. This file parses UKC's requests into the
 * domain's typed calls and says, per instance, how each went; the envelope
 * and the Instance object are ukc_envelope.c's and ukc_instance.c's.
 *
 * A ref names an instance by uuid or by name and by nothing else: the
 * domain's wider lookup (ids, id prefixes) is narrowed back after it, so
 * `{"name": "ab"}` never finds an instance whose id starts with "ab".
 *
 * Validation that makes a request unreadable (a wrong type, uuid and name
 * both given, a field not built) is a 400 for the whole request and nothing
 * is done; what goes wrong for one instance of several is that entry's
 * error, and the others go on.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "ingress/groups.h"
#include "instance/instances.h"
#include "volume/volumes.h"

/* A wait of -1 ("forever") is held at most this long. */
#define UKC_WAIT_MAX_MS (60L * 60 * 1000)
/* A drain (drain_timeout_ms -1) lasts at most this long. */
#define UKC_DRAIN_MAX_MS (5L * 60 * 1000)
/* A create makes at most this many replicas besides the instance. */
#define UKC_MAX_REPLICAS 16
/* A log read returns at most this many bytes (and this many when no limit is given). */
#define UKC_LOG_MAX (1L << 20)

static struct hm_instances *instances(struct hm_req *req)
{
	return hm_req_services(req)->instances;
}

/* ---- refs to views ---- */

/* ---- the instance kind ---- */

static int resolve_any(struct hm_req *req, const struct ukc_ref *r, void **ret, struct hm_err **err)
{
	return ukc_instance_resolve(instances(req), r, (struct hm_instance_view **)ret, err);
}

static void identity(const void *v, const char **uuid, const char **name)
{
	const struct hm_instance_view *iv = v;
	*uuid = iv->uuid;
	*name = iv->name;
}

static void free_any(void *v)
{
	hm_instance_view_free(v);
}

const struct ukc_kind ukc_instance_kind = { "instances", resolve_any, identity, free_any };

/* ---- options ---- */

/*
 * How long to wait for Running after a start: `timeout_s` (-1: the most, 0:
 * not at all), or the deprecated `wait_timeout_ms` rounded up to seconds.
 */
static int opt_start_wait(json_t *opts, long *ret_ms, struct hm_err **err)
{
	long long s, ms;
	if (ukc_body_int(opts, "timeout_s", 0, -1, UKC_WAIT_MAX_MS / 1000, &s, err) < 0 ||
	    ukc_body_int(opts, "wait_timeout_ms", 0, -1, UKC_WAIT_MAX_MS, &ms, err) < 0)
		return -1;
	if (s == 0 && ms != 0)
		s = ms < 0 ? -1 : (ms + 999) / 1000;
	*ret_ms = s < 0 ? UKC_WAIT_MAX_MS : (long)s * 1000;
	return 0;
}

/* Wait for Running after a start; Stopped counts (the program ran and ended). */
static int await_running(struct hm_instances *in, const struct hm_instance_view *v, long ms,
                         json_t *entry, struct hm_err **err)
{
	if (ms <= 0)
		return 0;
	struct hm_wait_result w = { 0 };
	if (hm_instances_wait(in, v->id, HM_STATE_RUNNING, ms, &w, err) < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(w.state)));
	bool timed_out = w.timed_out;
	free(w.state_error);
	if (timed_out)
		return hm_err_set(err, HM_ERR_TIMEOUT, "timeout",
		                  "instance '%s' did not reach running within %ld s", v->name,
		                  ms / 1000);
	return 0;
}

/* ---- create ---- */

/*
 * UKC's scale_to_zero onto the engine's auto-standby (instance/idle.c), the
 * same policy the Hypeman API shows as auto_standby: `on` with `stateful`
 * (the memory kept) is a standby after cooldown_time_ms (default 1 s) with
 * no connection through an ingress, woken by the next one; `idle` the same
 * with no byte moved, the connections kept open across the standby and a
 * client's next bytes waking it; `off` is none. Not built yet, so refused by
 * name: stateless scaling (a cold boot on wake) and notify_time_ms. *set says whether a policy was
 * given.
 */
static int scale_to_zero_in(json_t *stz, const char *field, struct hm_auto_standby *ret, bool *set,
                            struct hm_err **err)
{
	*ret = (struct hm_auto_standby){ .enabled = false, .idle_ms = 1000 };
	*set = false;
	if (!stz || json_is_null(stz))
		return 0;
	if (!json_is_object(stz))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`%s` must be an object",
		                  field);
	*set = true;
	const char *p = NULL;
	long long cooldown, notify;
	bool stateful;
	if (ukc_body_str(stz, "policy", &p, err) < 0 ||
	    ukc_body_int(stz, "cooldown_time_ms", 1000, HM_AUTO_STANDBY_MIN_MS,
	                 HM_AUTO_STANDBY_MAX_MS, &cooldown, err) < 0 ||
	    ukc_body_int(stz, "notify_time_ms", 0, 0, 1LL << 40, &notify, err) < 0 ||
	    ukc_body_bool(stz, "stateful", &stateful, err) < 0)
		return hm_err_wrap(err, "`%s`", field);
	if (notify)
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_field",
		                  "`%s.notify_time_ms`: notices before a standby are not available "
		                  "yet",
		                  field);
	if (!p || strcmp(p, "off") == 0)
		return 0;
	bool idle = strcmp(p, "idle") == 0;
	if (!idle && strcmp(p, "on") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s.policy` must be off, on or idle, not `%.40s`", field, p);
	/* stateful: standby (its memory kept, a restore on wake); else a stop
	 * and a cold boot on wake. */
	*ret = (struct hm_auto_standby){
		.enabled = true, .idle_ms = cooldown, .keep_connections = idle, .cold = !stateful
	};
	return 0;
}

/*
 * UKC's restart policy (the SDK spells on-failure, the API document
 * on_failure: both are taken) with UKC's back-off: at once, then 5 s,
 * doubling up to 5 minutes; 10 s of running ends a sequence.
 */
static int restart_in(json_t *v, const char *field, struct hm_restart_policy *ret,
                      struct hm_err **err)
{
	*ret = (struct hm_restart_policy){ .policy = HM_RESTART_NEVER };
	if (!v || json_is_null(v))
		return 0;
	const char *s = json_string_value(v);
	if (!s)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be a string: never, always or on-failure", field);
	if (strcmp(s, "never") == 0)
		return 0;
	if (strcmp(s, "always") == 0)
		ret->policy = HM_RESTART_ALWAYS;
	else if (strcmp(s, "on-failure") == 0 || strcmp(s, "on_failure") == 0)
		ret->policy = HM_RESTART_ON_FAILURE;
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be never, always or on-failure, not `%.40s`", field,
		                  s);
	ret->first_ms = 0;
	ret->delay_ms = 5000;
	ret->doubling = true;
	ret->stable_ms = 10000;
	return 0;
}

/* features: delete-on-stop (or delete_on_stop) is the one there is. */
static int features_in(json_t *list, bool *delete_on_stop, struct hm_err **err)
{
	*delete_on_stop = false;
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`features` must be an array of strings");
	size_t i;
	json_t *f;
	json_array_foreach (list, i, f) {
		const char *s = json_string_value(f);
		if (s && (strcmp(s, "delete-on-stop") == 0 || strcmp(s, "delete_on_stop") == 0))
			*delete_on_stop = true;
		else
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`features[%zu]`: the one feature is delete-on-stop", i);
	}
	return 0;
}

/*
 * The create's volumes: existing ones by uuid or name, and new ones (an
 * item with size_mb) made here, before the instance; a create that fails
 * afterwards deletes what was made (volumes_drop), so nothing is left.
 */
struct create_volumes {
	struct hm_volume_view *v[HM_MAX_ATTACH];
	bool made[HM_MAX_ATTACH];
	size_t n;
};

static void volumes_drop(struct hm_req *req, struct create_volumes *cv, bool delete_made)
{
	for (size_t i = 0; i < cv->n; i++) {
		if (delete_made && cv->made[i])
			hm_volumes_delete(hm_req_services(req)->volumes, cv->v[i]->id, NULL);
		hm_volume_view_free(cv->v[i]);
	}
	cv->n = 0;
}

static int volumes_in(struct hm_req *req, json_t *list, struct hm_instance_create *c,
                      struct create_volumes *cv, struct hm_err **err)
{
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list) || json_array_size(list) > HM_MAX_ATTACH)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`volumes` must be an array of at most %d volumes",
		                  HM_MAX_ATTACH);
	/* Every item read first: nothing is made for a request that is refused. */
	size_t i;
	json_t *item;
	json_array_foreach (list, i, item) {
		char where[32];
		snprintf(where, sizeof(where), "`volumes[%zu]`", i);
		if (!json_is_object(item))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%s must be an object", where);
		const char *at = NULL;
		bool ro;
		if (ukc_body_str(item, "at", &at, err) < 0 ||
		    ukc_body_bool(item, "readonly", &ro, err) < 0)
			return -1;
		if (!at)
			return hm_err_set(err, HM_ERR_INVALID, "missing_field",
			                  "%s: `at` is required (where it is mounted)", where);
		json_t *size = json_object_get(item, "size_mb");
		if (size && !json_is_null(size)) {
			if (json_object_get(item, "uuid"))
				return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
				                  "%s: a new volume (with `size_mb`) gets its uuid "
				                  "when it is made; name it by `name`",
				                  where);
			continue; /* a new one: checked as it is made */
		}
		struct ukc_ref r = { json_string_value(json_object_get(item, "uuid")),
			             json_string_value(json_object_get(item, "name")), NULL };
		if (!r.uuid == !r.name)
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "%s names an existing volume by one of `uuid` and `name`, "
			    "or a new one with `size_mb`",
			    where);
	}
	json_array_foreach (list, i, item) {
		char where[32];
		snprintf(where, sizeof(where), "volumes[%zu]: ", i);
		json_t *size = json_object_get(item, "size_mb");
		bool is_new = size && !json_is_null(size);
		int r;
		if (is_new) {
			_cleanup_json_ json_t *spec = json_deep_copy(item);
			json_object_del(spec, "at");
			json_object_del(spec, "readonly");
			r = ukc_volume_create(hm_req_services(req)->volumes, spec, where, &cv->v[i],
			                      err);
		} else {
			struct ukc_ref ref = { json_string_value(json_object_get(item, "uuid")),
				               json_string_value(json_object_get(item, "name")),
				               NULL };
			r = ukc_volume_resolve(hm_req_services(req)->volumes, &ref, &cv->v[i], err);
		}
		if (r < 0) {
			volumes_drop(req, cv, true);
			return -1;
		}
		cv->made[i] = is_new;
		cv->n = i + 1;
		c->volumes[i] = (struct hm_attach){
			.volume = cv->v[i]->id,
			.mount_path = json_string_value(json_object_get(item, "at")),
			.readonly = json_is_true(json_object_get(item, "readonly")),
		};
	}
	c->nvolumes = cv->n;
	return 0;
}

static int create_branch(struct hm_req *req, struct hm_resp *resp, json_t *body,
                         struct hm_err **err);
static int not_a_template(const struct hm_instance_view *v, struct hm_err **err);

/* How long a stateful first start waits for its program's port. */
#define UKC_PRIME_MS 60000

static struct hm_ingresses *ingresses(struct hm_req *req)
{
	return hm_req_services(req)->ingresses;
}

/*
 * A create's `service_group`: an existing group by uuid or name, or, with
 * `services`, a new one for this instance alone (its name, deleted with its
 * last member). *ret NULL when the field is absent.
 */
static int group_in(struct hm_req *req, json_t *sg, const char *name, struct hm_group_view **ret,
                    bool *own, struct hm_err **err)
{
	*ret = NULL;
	*own = false;
	if (!sg || json_is_null(sg))
		return 0;
	if (!json_is_object(sg))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`service_group` must be an object: a group's `uuid` or `name`, "
		                  "or `services` for a new one");
	json_t *svcs = json_object_get(sg, "services");
	bool named = json_object_get(sg, "uuid") || json_object_get(sg, "name");
	if (svcs && !json_is_null(svcs)) {
		if (named)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`service_group` names a group or describes a new one "
			                  "(`services`), not both");
		struct hm_group_spec spec;
		if (ukc_group_spec_in(sg, "service_group.", &spec, err) < 0)
			return -1;
		spec.persistent = false;
		if (hm_groups_create(ingresses(req), name, &spec, "service_group.", ret, err) < 0)
			return -1;
		*own = true;
		return 0;
	}
	static const char *const only_new[] = { "domains", "soft_limit", "hard_limit" };
	for (size_t i = 0; i < 3; i++)
		if (json_object_get(sg, only_new[i]))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`service_group.%s` describes a new group: it needs "
			                  "`services` (an existing group is changed with PATCH "
			                  "/v1/services)",
			                  only_new[i]);
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	if (ukc_body_refs(sg, &refs, &n, err) < 0)
		return -1;
	if (n != 1)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`service_group` names one group");
	return ukc_group_resolve(req, &refs[0], ret, err);
}

/*
 * Stateful scale to zero as UKC starts it: boot, wait until the program
 * accepts on the group's first port that goes to the instance, then standby,
 * so that the first request is a restore. A prime that cannot be asked
 * leaves the instance running (its cooldown puts it to sleep).
 */
static void prime(struct hm_req *req, const struct hm_instance_view *v,
                  const struct hm_auto_standby *p, const struct hm_group_view *g)
{
	if (!p->enabled || p->cold)
		return;
	for (size_t i = 0; i < g->nsvcs; i++) {
		if (g->svcs[i].handlers & HM_SVC_REDIRECT)
			continue;
		hm_instances_prime(instances(req), v->id, g->svcs[i].dest_port, UKC_PRIME_MS, NULL);
		return;
	}
}

/* A create that made nothing lets its group go (its own is deleted). */
static void group_drop(struct hm_req *req, struct hm_group_view *g, bool own)
{
	if (g && own)
		hm_groups_delete(ingresses(req), g->uuid, NULL);
	hm_group_view_free(g);
}

int ukc_h_instances_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *body = hm_req_json(req);
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a CreateInstanceRequest object");
	json_t *branch = json_object_get(body, "branch_from");
	json_t *tmpl = json_object_get(body, "template");
	json_t *ckpt = json_object_get(body, "checkpoint");
	if ((branch && !json_is_null(branch)) || (tmpl && !json_is_null(tmpl)) ||
	    (ckpt && !json_is_null(ckpt)))
		return create_branch(req, resp, body, err);
	struct hm_instance_create c = { .network = HM_NET_DEFAULT };
	_cleanup_free_ char *made_name = NULL;
	if (ukc_body_str(body, "name", &c.name, err) < 0)
		return -1;
	if (!c.name)
		c.name = made_name = ukc_random_name();
	json_t *image = json_object_get(body, "image");
	if (json_is_object(image))
		image = json_object_get(image, "url");
	if (!json_is_string(image))
		return hm_err_set(err, HM_ERR_INVALID,
		                  json_object_get(body, "image") ? "invalid_field"
		                                                 : "missing_field",
		                  "`image` is required: a string, or an object with `url`");
	c.image = json_string_value(image);
	long long mem_mb, vcpus;
	bool autostart;
	if (ukc_body_int(body, "memory_mb", 128, 1, 1LL << 20, &mem_mb, err) < 0 ||
	    ukc_body_int(body, "vcpus", 1, 1, 64, &vcpus, err) < 0 ||
	    ukc_body_bool(body, "autostart", &autostart, err) < 0)
		return -1;
	c.mem_bytes = (int64_t)mem_mb << 20;
	c.vcpus = (int)vcpus;
	c.no_boot = !autostart;
	json_t *args = json_object_get(body, "args");
	if (args && !json_is_null(args)) {
		if (!json_is_array(args))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`args` must be an array of strings");
		c.cmd = args;
	}
	json_t *env = json_object_get(body, "env");
	if (env && !json_is_null(env)) {
		if (!json_is_object(env))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env` must be an object of strings");
		c.env = env;
	}
	long wait_ms = 0;
	if (opt_start_wait(body, &wait_ms, err) < 0 ||
	    scale_to_zero_in(json_object_get(body, "scale_to_zero"), "scale_to_zero",
	                     &c.auto_standby, &c.auto_standby_set, err) < 0 ||
	    restart_in(json_object_get(body, "restart_policy"), "restart_policy", &c.restart, err) <
	        0 ||
	    features_in(json_object_get(body, "features"), &c.delete_on_stop, err) < 0)
		return -1;
	if (ukc_body_str(body, "hostname", &c.hostname, err) < 0)
		return -1;
	if (c.delete_on_stop && c.auto_standby.enabled)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`scale_to_zero` cannot be combined with the delete-on-stop "
		                  "feature");
	if (c.delete_on_stop && c.restart.policy != HM_RESTART_NEVER)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`restart_policy` cannot be combined with the delete-on-stop "
		                  "feature");
	if (wait_ms > 0 && !autostart)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`timeout_s` waits for the start: it needs `autostart: true`");
	_cleanup_json_ json_t *tags = NULL;
	if (ukc_tags_in(json_object_get(body, "tags"), "tags", &tags, err) < 0)
		return -1;
	c.tags = tags;

	long long replicas;
	if (ukc_body_int(body, "replicas", 0, 0, UKC_MAX_REPLICAS, &replicas, err) < 0)
		return -1;
	size_t vi;
	json_t *vitem;
	json_array_foreach (json_object_get(body, "volumes"), vi, vitem) {
		json_t *size = json_object_get(vitem, "size_mb");
		if (replicas > 0 && size && !json_is_null(size))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "`volumes[%zu]`: a new volume cannot be made for replicas "
			    "(each would need its own); make it first and attach it "
			    "read-only",
			    vi);
	}

	/* The group first, so that what is wrong with it is found before anything is made. */
	struct hm_group_view *group = NULL;
	bool own_group = false;
	if (group_in(req, json_object_get(body, "service_group"), c.name, &group, &own_group, err) <
	    0)
		return -1;
	struct create_volumes cv = { .n = 0 };
	if (volumes_in(req, json_object_get(body, "volumes"), &c, &cv, err) < 0) {
		group_drop(req, group, own_group);
		if (hm_err_is_kind(err, HM_ERR_INVALID))
			return -1;
		struct ukc_batch b;
		ukc_batch_init(&b);
		struct ukc_ref named = { NULL, c.name, NULL };
		ukc_batch_fail(&b, &named, *err);
		hm_err_free(*err);
		*err = NULL;
		return ukc_batch_reply(resp, &b, "instances");
	}
	/*
	 * The instance, then its replicas: `<name>-1`, `<name>-2`, ... (each a
	 * made-up name when none was asked for). What the first finds wrong
	 * with the request is a 400 and nothing is made; a replica that cannot
	 * be made is its entry's error, the others stand.
	 */
	struct hm_instances *in = instances(req);
	size_t total = (size_t)replicas + 1;
	struct hm_instance_view *made[UKC_MAX_REPLICAS + 1] = { 0 };
	struct hm_err *errs[UKC_MAX_REPLICAS + 1] = { 0 };
	char *names[UKC_MAX_REPLICAS + 1] = { 0 };
	for (size_t k = 0; k < total; k++) {
		names[k] = k == 0      ? xstrdup(c.name)
		           : made_name ? ukc_random_name()
		                       : xasprintf("%s-%zu", c.name, k);
		struct hm_instance_create ck = c;
		ck.name = names[k];
		if (hm_instances_create(in, &ck, &made[k], &errs[k]) < 0 && k == 0 &&
		    hm_err_is_kind(&errs[0], HM_ERR_INVALID)) {
			volumes_drop(req, &cv, true);
			group_drop(req, group, own_group);
			free(names[0]);
			*err = errs[0];
			return -1; /* the request, not the instance: a 400 */
		}
		if (made[k] && group &&
		    hm_groups_attach(ingresses(req), group->uuid, made[k]->id, &errs[k]) < 0) {
			hm_instances_delete(in, made[k]->id, false, NULL);
			hm_instance_view_free(made[k]);
			made[k] = NULL;
		}
		if (made[k] && group && autostart)
			prime(req, made[k], &c.auto_standby, group);
	}
	volumes_drop(req, &cv, made[0] == NULL);
	bool any = false;
	for (size_t k = 0; k < total; k++)
		any |= made[k] != NULL;
	if (!any)
		group_drop(req, group, own_group);
	else
		hm_group_view_free(group);
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t k = 0; k < total; k++) {
		struct hm_instance_view *v = made[k];
		if (!v) {
			struct ukc_ref named = { NULL, names[k], NULL };
			ukc_batch_fail(&b, &named, errs[k]);
			hm_err_free(errs[k]);
			free(names[k]);
			continue;
		}
		free(names[k]);
		_cleanup_err_ struct hm_err *werr = NULL;
		json_t *entry = ukc_instance(req, v, true);
		if (await_running(in, v, wait_ms, entry, &werr) < 0) {
			json_decref(entry);
			struct ukc_ref named = { v->uuid, v->name, NULL };
			ukc_batch_fail(&b, &named, werr);
		} else {
			/* The state after the wait, not the one at create. */
			struct hm_instance_view *now = NULL;
			if (wait_ms > 0 && hm_instances_get(in, v->id, &now, NULL) == 0) {
				json_decref(entry);
				entry = ukc_instance(req, now, true);
				hm_instance_view_free(now);
			}
			ukc_batch_ok(&b, entry);
		}
		hm_instance_view_free(v);
	}
	return ukc_batch_reply(resp, &b, "instances");
}

/*
 * A create with branch_from: a fork of that instance (stopped, in standby or
 * running: a running one is paused for the copy and runs on); with template
 * one of a template; with checkpoint one of that snapshot. Named as a
 * create's, running with autostart (timeout_s waits for it) and stopped
 * without. The copy is the source's, so what would describe another
 * instance (image, args, sizes, ...) is refused rather than ignored.
 */
static int create_branch(struct hm_req *req, struct hm_resp *resp, json_t *body,
                         struct hm_err **err)
{
	json_t *tmpl = json_object_get(body, "template");
	json_t *ckpt = json_object_get(body, "checkpoint");
	bool from_template = tmpl && !json_is_null(tmpl);
	bool from_checkpoint = ckpt && !json_is_null(ckpt);
	const char *field = from_template     ? "template"
	                    : from_checkpoint ? "checkpoint"
	                                      : "branch_from";
	const char *allowed[] = {
		"name", field, "autostart", "timeout_s", "wait_timeout_ms", NULL
	};
	const char *k;
	json_t *x;
	json_object_foreach (body, k, x) {
		bool ok = json_is_null(x);
		for (size_t i = 0; !ok && allowed[i]; i++)
			ok = strcmp(k, allowed[i]) == 0;
		if (!ok)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`%s` cannot be combined with `%s`: the new "
			                  "instance is a copy of its source",
			                  k, field);
	}
	const char *name = NULL;
	bool autostart;
	long wait_ms = 0;
	if (ukc_body_str(body, "name", &name, err) < 0 ||
	    ukc_body_bool(body, "autostart", &autostart, err) < 0 ||
	    opt_start_wait(body, &wait_ms, err) < 0)
		return -1;
	if (wait_ms > 0 && !autostart)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`timeout_s` waits for the start: it needs `autostart: true`");
	json_t *from = json_object_get(body, field);
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	_cleanup_err_ struct hm_err *rerr = NULL;
	if (!json_is_object(from) || ukc_body_refs(from, &refs, &n, &rerr) < 0 || n != 1)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an object with a `uuid` or a `name`", field);
	refs[0].item = NULL;
	_cleanup_free_ char *made_name = name ? NULL : ukc_random_name();
	struct hm_instances *in = instances(req);
	struct ukc_batch b;
	ukc_batch_init(&b);
	struct ukc_ref named = { NULL, name ? name : made_name, NULL };
	struct hm_instance_view *src = NULL, *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	int r;
	if (from_checkpoint) {
		/* A copy of the checkpoint: running on from it with autostart (a
		 * restore when it holds memory, else a boot), stopped without. */
		struct hm_snapshot_view *sv = NULL;
		if (ukc_checkpoint_resolve(in, &refs[0], &sv, &e) < 0) {
			ukc_batch_fail(&b, &named, e);
			return ukc_batch_reply(resp, &b, "instances");
		}
		struct hm_snapshot_bring sb = { .name = named.name,
			                        .target_state = autostart ? "Running" : "Stopped" };
		r = hm_snapshots_fork(in, sv->id, &sb, &v, &e);
		hm_snapshot_view_free(sv);
	} else {
		if (ukc_instance_resolve(in, &refs[0], &src, &e) < 0 ||
		    (from_template && !src->template_ && not_a_template(src, &e) < 0)) {
			hm_instance_view_free(src);
			ukc_batch_fail(&b, &named, e);
			return ukc_batch_reply(resp, &b, "instances");
		}
		struct hm_instance_fork f = { .name = named.name,
			                      .target_state = autostart ? "Running" : "Stopped",
			                      .from_running = true };
		r = hm_instances_fork(in, src->id, &f, &v, &e);
		hm_instance_view_free(src);
	}
	if (r < 0) {
		if (hm_err_is_kind(&e, HM_ERR_INVALID)) {
			*err = TAKE_PTR(e);
			return -1;
		}
		ukc_batch_fail(&b, &named, e);
		return ukc_batch_reply(resp, &b, "instances");
	}
	json_t *entry = NULL;
	_cleanup_json_ json_t *scratch = json_object();
	if (await_running(in, v, wait_ms, scratch, &e) < 0) {
		struct ukc_ref made = { v->uuid, v->name, NULL };
		ukc_batch_fail(&b, &made, e);
	} else {
		struct hm_instance_view *now = NULL;
		if (hm_instances_get(in, v->id, &now, NULL) == 0) {
			entry = ukc_instance(req, now, true);
			hm_instance_view_free(now);
		} else {
			entry = ukc_instance(req, v, true);
		}
		ukc_batch_ok(&b, entry);
	}
	hm_instance_view_free(v);
	return ukc_batch_reply(resp, &b, "instances");
}

/* ---- list and get ---- */

static int op_get(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)in;
	(void)err;
	bool details = !json_is_false(json_object_get(opts, "details"));
	json_t *o = ukc_instance(req, v, details);
	json_object_update(entry, o);
	json_decref(o);
	return 0;
}

static int op_get_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                           struct hm_err **err);

/* GET /v1/instances (no templates) and /v1/instances/templates (only them). */
static int list_of(struct hm_req *req, struct hm_resp *resp, bool templates, struct hm_err **err)
{
	_cleanup_(ukc_list_done) struct ukc_list q = { 0 };
	if (ukc_list_parse(req, &q, err) < 0)
		return -1;
	bool details = q.details;
	long long count = q.count;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t nrefs = 0;
	if (ukc_query_refs(req, &refs, &nrefs, err) < 0)
		return -1;
	_cleanup_json_ json_t *opts = json_pack("{s:b}", "details", details);
	if (nrefs > 0)
		return ukc_each(req, resp, &ukc_instance_kind, refs, nrefs, opts,
		                templates ? op_get_template : op_get);

	struct hm_instance_view *views = NULL;
	size_t n = 0;
	if (hm_instances_list(instances(req), NULL, q.tags, &views, &n, err) < 0)
		return -1;
	/* The kind asked for, in order (oldest first; desc: newest first). */
	_cleanup_free_ size_t *at = xcalloc(n ? n : 1, sizeof(*at));
	_cleanup_free_ const char **uuids = xcalloc(n ? n : 1, sizeof(*uuids));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		size_t x = q.desc ? n - 1 - i : i;
		if (views[x].template_ == templates) {
			uuids[k] = views[x].uuid;
			at[k++] = x;
		}
	}
	size_t first;
	if (ukc_page(&q, uuids, k, templates ? "template" : "instance", &first, err) < 0) {
		hm_instance_views_free(views, n);
		return -1;
	}
	struct ukc_batch b;
	ukc_batch_init(&b);
	for (size_t i = first; i < k && (count == 0 || i - first < (size_t)count); i++)
		ukc_batch_ok(&b, ukc_instance(req, &views[at[i]], details));
	hm_instance_views_free(views, n);
	return ukc_batch_reply(resp, &b, "instances");
}

int ukc_h_instances_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return list_of(req, resp, false, err);
}

int ukc_h_instances_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &ukc_instance_kind, op_get, err);
}

/* ---- delete, start, stop, suspend ---- */

static int op_delete(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	json_object_set_new(entry, "previous_state", json_string(ukc_state_name(v->state)));
	/* Force-stopped if it runs, as UKC's delete says. */
	return hm_instances_delete(in, v->id, false, err);
}

int ukc_h_instances_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_delete, err);
}

int ukc_h_instance_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_delete, err);
}

/* entry: state now, previous_state before. */
static void states(json_t *entry, const struct hm_instance_view *before,
                   const struct hm_instance_view *after)
{
	json_object_set_new(entry, "state", json_string(ukc_view_state(after ? after : before)));
	json_object_set_new(entry, "previous_state", json_string(ukc_view_state(before)));
}

static int op_start(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                    struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	long wait_ms = 0;
	if (opt_start_wait(opts, &wait_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	/* A suspended (standby) instance starts where it was. */
	int r = v->state == HM_STATE_STANDBY ? hm_instances_restore(in, v->id, &after, err)
	                                     : hm_instances_start(in, v->id, NULL, &after, err);
	if (r < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return await_running(in, v, wait_ms, entry, err);
}

int ukc_h_instances_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_start, err);
}

int ukc_h_instance_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_start, err);
}

/* drain_timeout_ms: how long a stop or suspend first waits for the
 * connections our edges hold to close (-1: the most), none taken meanwhile. */
static int drain_in(json_t *opts, long *ret, struct hm_err **err)
{
	long long ms;
	if (ukc_body_int(opts, "drain_timeout_ms", 0, -1, UKC_DRAIN_MAX_MS, &ms, err) < 0)
		return -1;
	*ret = ms < 0 ? UKC_DRAIN_MAX_MS : (long)ms;
	return 0;
}

static int op_stop(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                   struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	bool force;
	long drain_ms;
	if (ukc_body_bool(opts, "force", &force, err) < 0 || drain_in(opts, &drain_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	/* As UKC's: the answer does not wait for the stop (wait for `stopped`);
	 * a drain first shows `draining`. */
	if (hm_instances_stop_begin(in, v->id, force ? 0 : -1, drain_ms, &after, err) < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_stop, err);
}

int ukc_h_instance_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_stop, err);
}

static int op_suspend(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                      struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	long drain_ms;
	if (drain_in(opts, &drain_ms, err) < 0)
		return -1;
	/* A suspend waits for its drain: the answer says where it went. */
	if (drain_ms > 0 && v->state == HM_STATE_RUNNING &&
	    hm_instances_drain(in, v->id, drain_ms, err) < 0)
		return -1;
	struct hm_instance_view *after = NULL;
	if (hm_instances_standby(in, v->id, NULL, &after, err) < 0) {
		if (drain_ms > 0)
			hm_instances_drain_end(in, v->id);
		return -1;
	}
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_suspend(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_suspend, err);
}

int ukc_h_instance_suspend(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_suspend, err);
}

/* ---- wait ---- */

static int wait_target(const char *name, enum hm_state *ret, struct hm_err **err)
{
	static const struct {
		const char *name;
		enum hm_state state;
	} targets[] = {
		{ "running", HM_STATE_RUNNING },
		{ "stopped", HM_STATE_STOPPED },
		{ "standby", HM_STATE_STANDBY },
	};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (strcmp(name, targets[i].name) == 0) {
			*ret = targets[i].state;
			return 0;
		}
	return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
	                  "`state`: `%.40s` cannot be waited for; use running, stopped or standby",
	                  name);
}

static int op_wait(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                   struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	enum hm_state target = (enum hm_state)json_integer_value(json_object_get(opts, "target"));
	long ms = (long)json_integer_value(json_object_get(opts, "timeout_ms"));
	struct hm_wait_result w = { 0 };
	if (hm_instances_wait(in, v->id, target, ms, &w, err) < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(w.state)));
	free(w.state_error);
	if (w.state == target)
		return 0;
	if (w.timed_out)
		return hm_err_set(err, HM_ERR_TIMEOUT, "timeout",
		                  "instance '%s' did not become %s within %ld ms (it is %s)",
		                  v->name, ukc_state_name(target), ms, ukc_state_name(w.state));
	return hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
	                  "instance '%s' is %s and will not become %s without a request", v->name,
	                  ukc_state_name(w.state), ukc_state_name(target));
}

static int wait_opts(struct hm_req *req, json_t **ret, struct hm_err **err)
{
	const char *state = NULL;
	for (size_t i = 0; i < hm_req_query_count(req); i++) {
		const char *k, *val;
		hm_req_query_at(req, i, &k, &val);
		if (strcmp(k, "state") == 0)
			state = val;
	}
	enum hm_state target = HM_STATE_RUNNING;
	if (state && wait_target(state, &target, err) < 0)
		return -1;
	long long s, ms;
	if (ukc_query_int(req, "timeout_s", -2, -1, UKC_WAIT_MAX_MS / 1000, &s, err) < 0 ||
	    ukc_query_int(req, "timeout_ms", -2, -1, UKC_WAIT_MAX_MS, &ms, err) < 0)
		return -1;
	/* -1 or neither given: as long as a wait may be held. */
	long wait_ms = s >= 0    ? (long)s * 1000
	               : s == -1 ? UKC_WAIT_MAX_MS
	               : ms >= 0 ? (long)ms
	                         : UKC_WAIT_MAX_MS;
	*ret = json_pack("{s:i,s:I}", "target", (int)target, "timeout_ms", (json_int_t)wait_ms);
	return 0;
}

/*
 * The wait's options from a body item ({state?, timeout_ms?}, as the API
 * document has them; -1 or none: as long as a wait may be held), in the form
 * op_wait reads.
 */
static int wait_item(json_t *item, const char *where, json_t **ret, struct hm_err **err)
{
	const char *state = NULL;
	long long ms;
	if (ukc_body_str(item, "state", &state, err) < 0 ||
	    ukc_body_int(item, "timeout_ms", -1, -1, UKC_WAIT_MAX_MS, &ms, err) < 0)
		return hm_err_wrap(err, "%s", where);
	enum hm_state target = HM_STATE_RUNNING;
	if (state && wait_target(state, &target, err) < 0)
		return hm_err_wrap(err, "%s", where);
	*ret = json_pack("{s:i,s:I}", "target", (int)target, "timeout_ms",
	                 (json_int_t)(ms < 0 ? UKC_WAIT_MAX_MS : ms));
	return 0;
}

/* The query may not carry the options a body gives. */
static int body_or_query(struct hm_req *req, struct hm_err **err)
{
	static const char *const keys[] = { "uuid", "name", "state", "timeout_s", "timeout_ms" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (hm_req_query(req, keys[i]))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_query",
			    "`%s`: give the wait in the body or in the query, not both", keys[i]);
	return 0;
}

int ukc_h_instances_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	json_t *body = hm_req_json(req);
	if (body) {
		/* [{uuid|name, state?, timeout_ms?}], as the API document sends it */
		if (body_or_query(req, err) < 0 || ukc_body_refs(body, &refs, &n, err) < 0)
			return -1;
		_cleanup_json_ json_t *items = json_array();
		for (size_t i = 0; i < n; i++) {
			char where[32];
			snprintf(where, sizeof(where), "item [%zu]", i);
			json_t *o = NULL;
			if (wait_item(refs[i].item, where, &o, err) < 0)
				return -1;
			json_array_append_new(items, o);
			refs[i].item = o;
		}
		return ukc_each(req, resp, &ukc_instance_kind, refs, n, NULL, op_wait);
	}
	if (wait_opts(req, &opts, err) < 0 || ukc_query_refs(req, &refs, &n, err) < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_query",
		                  "name the instances with `uuid=` or `name=` query parameters "
		                  "(or in a body)");
	return ukc_each(req, resp, &ukc_instance_kind, refs, n, opts, op_wait);
}

int ukc_h_instance_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	json_t *body = hm_req_json(req);
	if (body) {
		if (!json_is_object(body))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
			                  "the body must be an object");
		if (body_or_query(req, err) < 0 || wait_item(body, "the body", &opts, err) < 0)
			return -1;
	} else if (wait_opts(req, &opts, err) < 0) {
		return -1;
	}
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, opts, op_wait);
}

/* ---- log ---- */

static int op_log(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                  struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	struct hm_log_range lr;
	if (hm_instances_log_range(in, v->id, json_integer_value(json_object_get(opts, "offset")),
	                           json_integer_value(json_object_get(opts, "limit")), &lr,
	                           err) < 0)
		return -1;
	_cleanup_free_ char *b64 = hm_base64_encode(lr.data, lr.len);
	free(lr.data);
	json_object_set_new(entry, "output", json_string(b64));
	json_object_set_new(entry, "available",
	                    json_pack("{s:I,s:I}", "start", (json_int_t)lr.avail_start, "end",
	                              (json_int_t)lr.avail_end));
	json_object_set_new(
	    entry, "range",
	    json_pack("{s:I,s:I}", "start", (json_int_t)lr.start, "end", (json_int_t)lr.end));
	json_object_set_new(entry, "state", json_string(ukc_state_name(v->state)));
	return 0;
}

static int log_opts(struct hm_req *req, json_t **ret, struct hm_err **err)
{
	long long offset, limit;
	if (ukc_query_int(req, "offset", 0, -(1LL << 50), 1LL << 50, &offset, err) < 0 ||
	    ukc_query_int(req, "limit", UKC_LOG_MAX, 0, UKC_LOG_MAX, &limit, err) < 0)
		return -1;
	*ret = json_pack("{s:I,s:I}", "offset", (json_int_t)offset, "limit", (json_int_t)limit);
	return 0;
}

int ukc_h_instances_log(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	_cleanup_free_ struct ukc_ref *refs = NULL;
	size_t n = 0;
	if (log_opts(req, &opts, err) < 0 || ukc_query_refs(req, &refs, &n, err) < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_INVALID, "missing_query",
		                  "name the instances with `uuid=` or `name=` query parameters");
	return ukc_each(req, resp, &ukc_instance_kind, refs, n, opts, op_log);
}

int ukc_h_instance_log(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	_cleanup_json_ json_t *opts = NULL;
	if (log_opts(req, &opts, err) < 0)
		return -1;
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, opts, op_log);
}

/* ---- metrics ---- */

static int op_metrics(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                      struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	struct hm_instance_stats s;
	if (hm_instances_stats(in, v->id, &s, err) < 0)
		return -1;
	json_object_set_new(entry, "rss_bytes", json_integer(s.rss_bytes));
	json_object_set_new(entry, "cpu_time_ms", json_integer((json_int_t)(s.cpu_seconds * 1000)));
	json_object_set_new(entry, "rx_bytes", json_integer((json_int_t)s.rx_bytes));
	json_object_set_new(entry, "tx_bytes", json_integer((json_int_t)s.tx_bytes));
	json_object_set_new(entry, "rx_packets", json_integer((json_int_t)s.rx_packets));
	json_object_set_new(entry, "tx_packets", json_integer((json_int_t)s.tx_packets));
	json_object_set_new(entry, "boot_time_us", json_integer(v->boot_us));
	json_object_set_new(entry, "nconns", json_integer(s.conns));
	json_object_set_new(entry, "ntotal", json_integer(s.requests));
	return 0;
}

int ukc_h_instances_metrics(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_query(req, resp, &ukc_instance_kind, NULL, op_metrics, err);
}

int ukc_h_instance_metrics(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)err;
	struct ukc_ref r = ukc_path_ref(req);
	return ukc_each(req, resp, &ukc_instance_kind, &r, 1, NULL, op_metrics);
}

/* ---- update: [{uuid|name, prop, op, value, id?}] ---- */

/* A string or array of strings as an argv (a string splits at spaces). */
static int args_in(json_t *v, json_t **ret, struct hm_err **err)
{
	if (json_is_string(v)) {
		json_t *a = json_array();
		_cleanup_free_ char *copy = xstrdup(json_string_value(v));
		char *save = NULL;
		for (char *t = strtok_r(copy, " \t\n", &save); t;
		     t = strtok_r(NULL, " \t\n", &save))
			json_array_append_new(a, json_string(t));
		*ret = a;
		return 0;
	}
	size_t i;
	json_t *x;
	if (!json_is_array(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`value` for args must be a string or an array of strings");
	json_array_foreach (v, i, x) {
		if (!json_is_string(x))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`value[%zu]` for args must be a string", i);
	}
	*ret = json_incref(v);
	return 0;
}

/* A list of keys (a string is one) for a del. */
static int keys_in(json_t *v, json_t **ret, struct hm_err **err)
{
	if (json_is_string(v)) {
		*ret = json_pack("[O]", v);
		return 0;
	}
	size_t i;
	json_t *x;
	if (!json_is_array(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`value` for a del must be a string or an array of strings");
	json_array_foreach (v, i, x) {
		if (!json_is_string(x))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`value[%zu]` must be a string", i);
	}
	*ret = json_incref(v);
	return 0;
}

static int op_update(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                     struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	const char *prop = json_string_value(json_object_get(opts, "prop"));
	const char *op = json_string_value(json_object_get(opts, "op"));
	json_t *value = json_object_get(opts, "value");
	json_t *id = json_object_get(opts, "id");
	if (json_is_string(id))
		json_object_set(entry, "id", id);
	if (!prop)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`prop` is required");
	if (!op || (strcmp(op, "set") != 0 && strcmp(op, "add") != 0 && strcmp(op, "del") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`op` must be set, add or del");
	bool set = strcmp(op, "set") == 0, add = strcmp(op, "add") == 0;
	bool del = !set && !add;
	if (!del && (!value || json_is_null(value)))
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "`value` is required to %s `%s`", op, prop);
	struct hm_instance_update u = { .delete_lock = -1 };
	_cleanup_json_ json_t *hold = NULL, *hold2 = NULL;
	if (strcmp(prop, "image") == 0) {
		if (!set || !json_is_string(value))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "image takes a set with a string `value`");
		u.image = json_string_value(value);
	} else if (strcmp(prop, "args") == 0) {
		u.cmd_set = true;
		if (!del && args_in(value, &hold, err) < 0)
			return -1;
		if (add) { /* appended to what it runs with now */
			hold2 = v->cmd ? json_copy(v->cmd) : json_array();
			json_array_extend(hold2, hold);
			u.cmd = hold2;
		} else {
			u.cmd = hold; /* del: NULL, the image's */
		}
	} else if (strcmp(prop, "env") == 0) {
		if (del) {
			if (!value || json_is_null(value)) {
				u.env_set = hold = json_object();
				u.env_replace = true;
			} else if (keys_in(value, &hold, err) < 0) {
				return -1;
			} else {
				u.env_del = hold;
			}
		} else if (!json_is_object(value)) {
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`value` for env must be an object of strings");
		} else {
			u.env_set = value;
			u.env_replace = set;
		}
	} else if (strcmp(prop, "memory_mb") == 0 || strcmp(prop, "vcpus") == 0) {
		bool mem = prop[0] == 'm';
		long long max = mem ? 1LL << 20 : 64;
		if (!set || !json_is_integer(value) || json_integer_value(value) < 1 ||
		    json_integer_value(value) > max)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%s takes a set with an integer `value` from 1 to %lld",
			                  prop, max);
		if (mem)
			u.mem_bytes = (int64_t)json_integer_value(value) << 20;
		else
			u.vcpus = (int)json_integer_value(value);
	} else if (strcmp(prop, "tags") == 0) {
		json_t *now = json_deep_copy(v->tags);
		hold2 = now;
		if (del && (!value || json_is_null(value))) {
			json_object_clear(now);
		} else {
			json_t *given = NULL;
			if (ukc_tags_in(value, "value", &given, err) < 0)
				return -1;
			hold = given;
			if (set)
				json_object_clear(now);
			const char *k;
			json_t *x;
			json_object_foreach (given, k, x) {
				if (del)
					json_object_del(now, k);
				else
					json_object_set(now, k, x);
			}
		}
		u.tags = now;
	} else if (strcmp(prop, "delete_lock") == 0) {
		if (set && !json_is_boolean(value))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "delete_lock takes a boolean `value`");
		if (add)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "delete_lock takes a set or a del");
		u.delete_lock = set && json_is_true(value);
	} else if (strcmp(prop, "scale_to_zero") == 0) {
		if (add)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "scale_to_zero takes a set or a del");
		if (!del &&
		    scale_to_zero_in(value, "value", &u.auto_standby, &u.auto_standby_set, err) < 0)
			return -1;
		if (del) /* off */
			u.auto_standby =
			    (struct hm_auto_standby){ .enabled = false, .idle_ms = 1000 };
		u.auto_standby_set = true;
	} else {
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`prop` must be one of image, args, env, memory_mb, vcpus, "
		                  "scale_to_zero, tags, delete_lock; not `%.40s`",
		                  prop);
	}
	struct hm_instance_view *after = NULL;
	if (hm_instances_update(in, v->id, &u, &after, err) < 0)
		return -1;
	json_object_set_new(entry, "state", json_string(ukc_state_name(after->state)));
	hm_instance_view_free(after);
	return 0;
}

int ukc_h_instances_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_update, err);
}

int ukc_h_instance_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_update, err);
}

/* ---- templates: stopped instances that never run, to create instances from ---- */

static int not_a_template(const struct hm_instance_view *v, struct hm_err **err)
{
	return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "No template with uuid '%s'",
	                  v->uuid ? v->uuid : v->name);
}

static int op_get_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                           struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	return op_get(req, v, opts, entry, err);
}

static int op_make_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                            struct hm_err **err)
{
	struct hm_instances *in = instances(req);
	const struct hm_instance_view *v = view;
	(void)opts;
	struct hm_instance_view *after = NULL;
	if (hm_instances_make_template(in, v->id, &after, err) < 0)
		return -1;
	states(entry, v, after);
	hm_instance_view_free(after);
	return 0;
}

static int op_delete_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                              struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	return op_delete(req, v, opts, entry, err);
}

static int op_update_template(struct hm_req *req, const void *view, json_t *opts, json_t *entry,
                              struct hm_err **err)
{
	const struct hm_instance_view *v = view;
	if (!v->template_)
		return not_a_template(v, err);
	const char *prop = json_string_value(json_object_get(opts, "prop"));
	if (prop && strcmp(prop, "tags") != 0 && strcmp(prop, "delete_lock") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "a template's `prop` is tags or delete_lock, not `%.40s`", prop);
	return op_update(req, v, opts, entry, err);
}

int ukc_h_templates_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_make_template, err);
}

int ukc_h_templates_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return list_of(req, resp, true, err);
}

int ukc_h_template_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_get(req, resp, &ukc_instance_kind, op_get_template, err);
}

int ukc_h_templates_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_delete_template, err);
}

int ukc_h_template_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_delete_template, err);
}

int ukc_h_templates_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_body(req, resp, &ukc_instance_kind, op_update_template, err);
}

int ukc_h_template_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	return ukc_each_path(req, resp, &ukc_instance_kind, op_update_template, err);
}
