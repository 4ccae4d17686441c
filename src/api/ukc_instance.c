/*
 * api/ukc_instance: the Unikraft Cloud Instance object, rendered from the
 * domain's typed view (instance/instances.h), and the state names. Memory is
 * in MiB, times are RFC 3339 text and uptime in ms; what the engine does not
 * have (service groups, ROMs, schedules) is left out rather than made up.
 * And how a ref finds an instance (ukc_instance_resolve), which every
 * /v1 resource that points at instances shares.
 */
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "instance/instances.h"

const char *ukc_state_name(enum hm_state s)
{
	switch (s) {
	case HM_STATE_CREATED:
	case HM_STATE_INITIALIZING:
		return "starting";
	case HM_STATE_RUNNING:
		return "running";
	case HM_STATE_PAUSED:   /* only on the way to standby */
	case HM_STATE_SHUTDOWN: /* the guest powered off; its VMM is ending */
		return "stopping";
	case HM_STATE_STANDBY:
		return "standby";
	case HM_STATE_STOPPED:
		return "stopped";
	case HM_STATE_UNKNOWN:
	default:
		/* Not one of UKC's: the VMM does not answer, and saying any of theirs
		 * would be a guess. The entry's message says why. */
		return "unknown";
	}
}

const char *ukc_view_state(const struct hm_instance_view *v)
{
	bool up = v->state == HM_STATE_RUNNING || v->state == HM_STATE_INITIALIZING;
	if (v->template_)
		return "template";
	if (up && v->draining)
		return "draining";
	if (hm_auto_standby_asleep_cold(&v->auto_standby, v->state, v->stop_reason))
		return "standby"; /* stopped by its stateless scale to zero: traffic boots it */
	return up && v->stopping ? "stopping" : ukc_state_name(v->state);
}

json_t *ukc_tags_out(json_t *tags)
{
	json_t *out = json_array();
	const char *k;
	json_t *v;
	json_object_foreach (tags, k, v) {
		const char *s = json_string_value(v);
		json_array_append_new(out, s && *s ? json_sprintf("%s=%s", k, s) : json_string(k));
	}
	return out;
}

json_t *ukc_instance(struct hm_req *req, const struct hm_instance_view *v, bool details)
{
	json_t *o = json_pack("{s:s,s:s,s:s}", "uuid", v->uuid ? v->uuid : "", "name", v->name,
	                      "state", ukc_view_state(v));
	if (v->state == HM_STATE_UNKNOWN && v->state_error)
		json_object_set_new(o, "message", json_string(v->state_error));
	else if (v->wake_error)
		json_object_set_new(
		    o, "message",
		    json_sprintf("the last wake by traffic failed: %s", v->wake_error));
	if (!details)
		return o;
	json_object_set_new(o, "created_at", json_string(v->created_at));
	json_object_set_new(o, "image", json_string(v->image));
	json_object_set_new(o, "memory_mb", json_integer(v->mem_bytes >> 20));
	json_object_set_new(o, "vcpus", json_integer(v->vcpus));
	json_object_set_new(o, "args", v->cmd ? json_incref(v->cmd) : json_array());
	json_object_set(o, "env", v->env);
	json_object_set_new(o, "tags", ukc_tags_out(v->tags));
	if (req)
		ukc_instance_group_out(hm_req_services(req)->ingresses, v->id, o);
	if (v->network && v->ip)
		json_object_set_new(o, "private_ip", json_string(v->ip));
	if (v->started_at)
		json_object_set_new(o, "started_at", json_string(v->started_at));
	if (v->stopped_at)
		json_object_set_new(o, "stopped_at", json_string(v->stopped_at));
	int64_t started = hm_rfc3339_ms(v->started_at);
	bool up = v->state == HM_STATE_RUNNING || v->state == HM_STATE_INITIALIZING;
	if (up && started > 0) {
		int64_t ms = hm_now_ms() - started;
		json_object_set_new(o, "uptime_ms", json_integer(ms > 0 ? ms : 0));
	} else if (v->stopped_at && started > 0) {
		int64_t ms = hm_rfc3339_ms(v->stopped_at) - started;
		json_object_set_new(o, "uptime_ms", json_integer(ms > 0 ? ms : 0));
	}
	if (v->state == HM_STATE_STOPPED && v->exit_code >= 0)
		json_object_set_new(o, "exit_code", json_integer(v->exit_code));
	static const char *const policies[] = {
		[HM_RESTART_NEVER] = "never",
		[HM_RESTART_ALWAYS] = "always",
		[HM_RESTART_ON_FAILURE] = "on-failure", /* as the SDK spells it */
	};
	json_object_set_new(o, "restart_policy", json_string(policies[v->restart.policy]));
	const struct hm_restart_status *rs = &v->restart_status;
	if (rs->attempts > 0 || rs->next_attempt_at) {
		json_t *r = json_pack("{s:i}", "attempt", rs->attempts);
		if (rs->next_attempt_at)
			json_object_set_new(r, "next_at", json_string(rs->next_attempt_at));
		json_object_set_new(o, "restart", r);
	}
	if (v->boot_us > 0)
		json_object_set_new(o, "boot_time_us", json_integer(v->boot_us));
	/* The VMM's own figures: its start, a restore's load of the saved state,
	 * and the two together (until the guest could run). */
	if (v->vmm_start_us > 0) {
		json_object_set_new(o, "vmm_start_time_us", json_integer(v->vmm_start_us));
		json_object_set_new(o, "vmm_load_time_us", json_integer(v->vmm_load_us));
		json_object_set_new(o, "vmm_ready_time_us",
		                    json_integer(v->vmm_start_us + v->vmm_load_us));
	}
	json_object_set_new(o, "start_count", json_integer(v->start_count));
	json_object_set_new(o, "restart_count", json_integer(v->restart_count));
	if (v->state == HM_STATE_STOPPED && v->stop_reason)
		json_object_set_new(o, "stop_reason", json_integer(v->stop_reason));
	json_object_set_new(o, "delete_lock", json_boolean(v->delete_lock));
	json_t *vols = json_array();
	for (size_t i = 0; i < v->nvolumes; i++) {
		const struct hm_view_attach *a = &v->volumes[i];
		if (a->volume_uuid && a->volume_name && a->mount_path)
			json_array_append_new(vols,
			                      json_pack("{s:s,s:s,s:s,s:b}", "uuid", a->volume_uuid,
			                                "name", a->volume_name, "at", a->mount_path,
			                                "readonly", a->readonly));
	}
	json_object_set_new(o, "volumes", vols);
	json_object_set_new(o, "features",
	                    v->delete_on_stop ? json_pack("[s]", "delete-on-stop") : json_array());
	/* The engine's auto-standby (both APIs set the same policy). */
	if (v->auto_standby.enabled)
		json_object_set_new(o, "scale_to_zero",
		                    json_pack("{s:b,s:s,s:b,s:I}", "enabled", 1, "policy",
		                              v->auto_standby.keep_connections ? "idle" : "on",
		                              "stateful", !v->auto_standby.cold, "cooldown_time_ms",
		                              (json_int_t)v->auto_standby.idle_ms));
	else
		json_object_set_new(o, "scale_to_zero",
		                    json_pack("{s:b,s:s}", "enabled", 0, "policy", "off"));
	return o;
}

int ukc_instance_resolve(struct hm_instances *in, const struct ukc_ref *r,
                         struct hm_instance_view **ret, struct hm_err **err)
{
	*ret = NULL;
	if (ukc_ref_check(r, err) < 0)
		return -1;
	const char *key = r->uuid ? r->uuid : r->name;
	struct hm_instance_view *v = NULL;
	if (hm_instances_get(in, key, &v, err) < 0) {
		if (hm_err_is_kind(err, HM_ERR_NOT_FOUND) || hm_err_is_kind(err, HM_ERR_CONFLICT)) {
			hm_err_free(*err);
			*err = NULL;
			return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
			                  "No instance with %s '%.80s'", r->uuid ? "uuid" : "name",
			                  key);
		}
		return -1;
	}
	if (!ukc_ref_is(r, v->uuid, v->name)) {
		hm_instance_view_free(v);
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "No instance with %s '%.80s'",
		                  r->uuid ? "uuid" : "name", key);
	}
	*ret = v;
	return 0;
}
