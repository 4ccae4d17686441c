/*
 * api/ukc_read: UKC's instance create and update requests read into the
 * typed structs of ukc_read.h, apart from the engine: nothing here looks
 * anything up or makes anything, so a request is refused whole (a 400
 * naming the field) before a volume, group or instance is made for it, and
 * fuzz_bodies runs these readers on hostile bodies in-process.
 *
 * The readers own the translation of UKC's vocabulary onto the domain's:
 * scale_to_zero onto auto-standby, restart_policy onto the restart policy
 * with UKC's back-off, features, tags ("k=v" strings onto a map), args as a
 * string or a list. What the domain checks itself (names, image
 * references, mount paths, sizes against the host) it still checks.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ukc.h"
#include "api/ukc_read.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

int ukc_start_wait_in(json_t *opts, long *ret_ms, struct hm_err **err)
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

/* ---- create's parts ---- */

/*
 * UKC's scale_to_zero onto the engine's auto-standby (instance/idle.c), the
 * same policy the Hypeman API shows as auto_standby: `on` with `stateful`
 * (the memory kept) is a standby after cooldown_time_ms (default 1 s) with
 * no connection through an ingress, woken by the next one; `idle` the same
 * with no byte moved, the connections kept open across the standby and a
 * client's next bytes waking it; without `stateful`, a stop and a cold boot
 * on wake; `off` is none. Refused by name until built: notify_time_ms.
 * *set says whether a policy was given.
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

/* A ref by exactly one of `uuid` and `name` (ukc_ref_of), its item unset:
 * a create's refs are not per-item options. */
static int ref_in(json_t *obj, const char *where, struct ukc_ref *ret, struct hm_err **err)
{
	char prefix[48];
	snprintf(prefix, sizeof(prefix), "%s: ", where);
	if (ukc_ref_of(obj, prefix, ret, err) < 0)
		return -1;
	ret->item = NULL;
	return 0;
}

/*
 * The create's volumes: existing ones by uuid or name, and new ones (an
 * item with size_mb, read as POST /v1/volumes reads its body), each with
 * where it is mounted.
 */
static int volumes_in(json_t *list, long long replicas, struct ukc_create *c, struct hm_err **err)
{
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list) || json_array_size(list) > HM_MAX_ATTACH)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`volumes` must be an array of at most %d volumes",
		                  HM_MAX_ATTACH);
	size_t i;
	json_t *item;
	json_array_foreach (list, i, item) {
		char where[32];
		snprintf(where, sizeof(where), "`volumes[%zu]`", i);
		if (!json_is_object(item))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%s must be an object", where);
		struct ukc_create_volume *v = &c->vols[i];
		if (ukc_body_str(item, "at", &v->at, err) < 0 ||
		    ukc_body_bool(item, "readonly", &v->readonly, err) < 0)
			return hm_err_wrap(err, "%s", where);
		if (!v->at)
			return hm_err_set(err, HM_ERR_INVALID, "missing_field",
			                  "%s: `at` is required (where it is mounted)", where);
		json_t *size = json_object_get(item, "size_mb");
		v->is_new = size && !json_is_null(size);
		if (!v->is_new) {
			if (ref_in(item, where, &v->ref, err) < 0)
				return -1;
			c->nvols = i + 1;
			continue;
		}
		if (json_object_get(item, "uuid"))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "%s: a new volume (with `size_mb`) gets its uuid when it is "
			    "made; name it by `name`",
			    where);
		if (replicas > 0)
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "%s: a new volume cannot be made for replicas (each would "
			    "need its own); make it first and attach it read-only",
			    where);
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "volumes[%zu]: ", i);
		if (ukc_volume_spec_in(item, prefix, &v->spec, err) < 0)
			return -1;
		c->nvols = i + 1;
	}
	return 0;
}

/*
 * A create's `service_group`: an existing group by uuid or name, or, with
 * `services`, a new one for this instance alone (deleted with its last
 * member).
 */
static int group_in(json_t *sg, struct ukc_create *c, struct hm_err **err)
{
	c->group = UKC_GROUP_NONE;
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
		if (ukc_group_spec_in(sg, "service_group.", &c->group_spec, err) < 0)
			return -1;
		c->group_spec.persistent = false;
		c->group = UKC_GROUP_NEW;
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
	if (ref_in(sg, "`service_group`", &c->group_ref, err) < 0)
		return -1;
	c->group = UKC_GROUP_EXISTING;
	return 0;
}

/*
 * A create with branch_from, template or checkpoint: a copy of its source,
 * so what would describe another instance (image, args, sizes, ...) is
 * refused rather than ignored.
 */
static int copy_in(json_t *body, struct ukc_create *c, struct hm_err **err)
{
	const char *field = c->from == UKC_FROM_TEMPLATE     ? "template"
	                    : c->from == UKC_FROM_CHECKPOINT ? "checkpoint"
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
	json_t *from = json_object_get(body, field);
	_cleanup_err_ struct hm_err *e = NULL;
	if (!json_is_object(from) || ref_in(from, field, &c->source, &e) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an object with a `uuid` or a `name`", field);
	return 0;
}

/* The fields of a create from an image. */
static int image_in(json_t *body, struct ukc_create *c, struct hm_err **err)
{
	struct hm_instance_create *ic = &c->c;
	json_t *image = json_object_get(body, "image");
	if (json_is_object(image))
		image = json_object_get(image, "url");
	if (!json_is_string(image))
		return hm_err_set(err, HM_ERR_INVALID,
		                  json_object_get(body, "image") ? "invalid_field"
		                                                 : "missing_field",
		                  "`image` is required: a string, or an object with `url`");
	ic->image = json_string_value(image);
	long long mem_mb, vcpus;
	if (ukc_body_int(body, "memory_mb", 128, 1, 1LL << 20, &mem_mb, err) < 0 ||
	    ukc_body_int(body, "vcpus", 1, 1, 64, &vcpus, err) < 0)
		return -1;
	ic->mem_bytes = (int64_t)mem_mb << 20;
	ic->vcpus = (int)vcpus;
	ic->no_boot = !c->autostart;
	json_t *args = json_object_get(body, "args");
	if (args && !json_is_null(args)) {
		if (!json_is_array(args))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`args` must be an array of strings");
		ic->cmd = args;
	}
	json_t *env = json_object_get(body, "env");
	if (env && !json_is_null(env)) {
		if (!json_is_object(env))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env` must be an object of strings");
		ic->env = env;
	}
	if (scale_to_zero_in(json_object_get(body, "scale_to_zero"), "scale_to_zero",
	                     &ic->auto_standby, &ic->auto_standby_set, err) < 0 ||
	    restart_in(json_object_get(body, "restart_policy"), "restart_policy", &ic->restart,
	               err) < 0 ||
	    features_in(json_object_get(body, "features"), &ic->delete_on_stop, err) < 0 ||
	    ukc_body_str(body, "hostname", &ic->hostname, err) < 0)
		return -1;
	if (ic->delete_on_stop && ic->auto_standby.enabled)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`scale_to_zero` cannot be combined with the delete-on-stop "
		                  "feature");
	if (ic->delete_on_stop && ic->restart.policy != HM_RESTART_NEVER)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`restart_policy` cannot be combined with the delete-on-stop "
		                  "feature");
	if (ukc_tags_in(json_object_get(body, "tags"), "tags", &ic->tags, err) < 0 ||
	    ukc_body_int(body, "replicas", 0, 0, UKC_MAX_REPLICAS, &c->replicas, err) < 0 ||
	    group_in(json_object_get(body, "service_group"), c, err) < 0 ||
	    volumes_in(json_object_get(body, "volumes"), c->replicas, c, err) < 0)
		return -1;
	return 0;
}

int ukc_create_in(json_t *body, struct ukc_create *ret, struct hm_err **err)
{
	*ret = (struct ukc_create){ .from = UKC_FROM_IMAGE, .c = { .network = HM_NET_DEFAULT } };
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a CreateInstanceRequest object");
	static const struct {
		const char *field;
		enum ukc_create_from from;
	} copies[] = { { "template", UKC_FROM_TEMPLATE },
		       { "checkpoint", UKC_FROM_CHECKPOINT },
		       { "branch_from", UKC_FROM_INSTANCE } };
	for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
		json_t *x = json_object_get(body, copies[i].field);
		if (x && !json_is_null(x)) {
			ret->from = copies[i].from;
			break;
		}
	}
	int r = 0;
	if (ukc_body_str(body, "name", &ret->name, err) < 0 ||
	    ukc_body_bool(body, "autostart", &ret->autostart, err) < 0 ||
	    ukc_start_wait_in(body, &ret->wait_ms, err) < 0)
		r = -1;
	else if (ret->from != UKC_FROM_IMAGE)
		r = copy_in(body, ret, err);
	else
		r = image_in(body, ret, err);
	if (r == 0 && ret->wait_ms > 0 && !ret->autostart)
		r = hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		               "`timeout_s` waits for the start: it needs `autostart: true`");
	if (r < 0)
		ukc_create_done(ret);
	return r;
}

void ukc_create_done(struct ukc_create *c)
{
	json_decref(c->c.tags);
	c->c.tags = NULL;
	for (size_t i = 0; i < c->nvols; i++) {
		json_decref(c->vols[i].spec.tags);
		c->vols[i].spec.tags = NULL;
	}
	c->nvols = 0;
}

/* ---- update items ---- */

/*
 * A string or an array of strings as a list (*ret new): a string is split
 * at blanks (split: args) or taken whole (keys for a del); `what` names
 * the value in messages.
 */
static int strings_in(json_t *v, bool split, const char *what, json_t **ret, struct hm_err **err)
{
	if (json_is_string(v) && !split) {
		*ret = json_pack("[O]", v);
		return 0;
	}
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
		                  "`value` for %s must be a string or an array of strings", what);
	json_array_foreach (v, i, x) {
		if (!json_is_string(x))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`value[%zu]` for %s must be a string", i, what);
	}
	*ret = json_incref(v);
	return 0;
}

static const char *const prop_names[] = {
	[UKC_PROP_IMAGE] = "image",
	[UKC_PROP_ARGS] = "args",
	[UKC_PROP_ENV] = "env",
	[UKC_PROP_MEMORY] = "memory_mb",
	[UKC_PROP_VCPUS] = "vcpus",
	[UKC_PROP_TAGS] = "tags",
	[UKC_PROP_DELETE_LOCK] = "delete_lock",
	[UKC_PROP_SCALE_TO_ZERO] = "scale_to_zero",
};

/* The value of one prop under its op (u->prop and u->op set). */
static int value_in(json_t *value, struct ukc_update *u, struct hm_err **err)
{
	bool set = u->op == UKC_OP_SET, add = u->op == UKC_OP_ADD, del = u->op == UKC_OP_DEL;
	bool none = !value || json_is_null(value);
	switch (u->prop) {
	case UKC_PROP_IMAGE:
		if (!set || !json_is_string(value))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "image takes a set with a string `value`");
		u->image = json_string_value(value);
		return 0;
	case UKC_PROP_ARGS:
		return del ? 0 : strings_in(value, true, "args", &u->args, err);
	case UKC_PROP_ENV:
		if (del)
			return none ? 0 : strings_in(value, false, "a del", &u->env_keys, err);
		if (!json_is_object(value))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`value` for env must be an object of strings");
		u->env = json_incref(value);
		return 0;
	case UKC_PROP_MEMORY:
	case UKC_PROP_VCPUS: {
		bool mem = u->prop == UKC_PROP_MEMORY;
		long long max = mem ? 1LL << 20 : 64;
		if (!set || !json_is_integer(value) || json_integer_value(value) < 1 ||
		    json_integer_value(value) > max)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%s takes a set with an integer `value` from 1 to %lld",
			                  prop_names[u->prop], max);
		if (mem)
			u->mem_bytes = (int64_t)json_integer_value(value) << 20;
		else
			u->vcpus = (int)json_integer_value(value);
		return 0;
	}
	case UKC_PROP_TAGS:
		if (del && none)
			return 0;
		return ukc_tags_in(value, "value", &u->tags, err);
	case UKC_PROP_DELETE_LOCK:
		if (add)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "delete_lock takes a set or a del");
		if (set && !json_is_boolean(value))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "delete_lock takes a boolean `value`");
		u->delete_lock = set && json_is_true(value);
		return 0;
	case UKC_PROP_SCALE_TO_ZERO: {
		if (add)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "scale_to_zero takes a set or a del");
		bool given;
		if (del) /* off */
			return 0;
		return scale_to_zero_in(value, "value", &u->auto_standby, &given, err);
	}
	}
	abort();
}

int ukc_update_in(json_t *opts, struct ukc_update *ret, struct hm_err **err)
{
	*ret = (struct ukc_update){ .auto_standby = { .enabled = false, .idle_ms = 1000 } };
	const char *prop = NULL, *op = NULL;
	if (ukc_body_str(opts, "prop", &prop, err) < 0 || ukc_body_str(opts, "op", &op, err) < 0)
		return -1;
	if (!prop)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`prop` is required");
	if (!op || (strcmp(op, "set") != 0 && strcmp(op, "add") != 0 && strcmp(op, "del") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`op` must be set, add or del");
	ret->op = op[0] == 's' ? UKC_OP_SET : op[0] == 'a' ? UKC_OP_ADD : UKC_OP_DEL;
	size_t p = 0;
	while (p < sizeof(prop_names) / sizeof(prop_names[0]) && strcmp(prop, prop_names[p]) != 0)
		p++;
	if (p == sizeof(prop_names) / sizeof(prop_names[0]))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`prop` must be one of image, args, env, memory_mb, vcpus, "
		                  "scale_to_zero, tags, delete_lock; not `%.40s`",
		                  prop);
	ret->prop = (enum ukc_update_prop)p;
	json_t *value = json_object_get(opts, "value");
	if (ret->op != UKC_OP_DEL && (!value || json_is_null(value)))
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "`value` is required to %s `%s`", op, prop);
	if (value_in(value, ret, err) < 0) {
		ukc_update_done(ret);
		return -1;
	}
	return 0;
}

void ukc_update_done(struct ukc_update *u)
{
	json_decref(u->args);
	json_decref(u->env);
	json_decref(u->env_keys);
	json_decref(u->tags);
	u->args = u->env = u->env_keys = u->tags = NULL;
}
