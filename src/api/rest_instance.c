/*
 * api/rest_instance: the Hypeman API's Instance object, rendered from the
 * domain's typed view (instance/instances.h): sizes as "1GB", rates as
 * "100Mbps", the upstream fields it has no value for as null.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/request.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/xalloc.h"
#include "instance/instances.h"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* Milliseconds as Go prints a time.Duration: "5s", "1m30s", "10m0s", "1.5s", "0s". */
char *hm_rest_go_duration(int64_t ms)
{
	int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
	char sec[32];
	if (frac)
		snprintf(sec, sizeof(sec), "%lld.%03llds", (long long)s, (long long)frac);
	else
		snprintf(sec, sizeof(sec), "%llds", (long long)s);
	if (frac) { /* Go drops trailing zeros of the fraction */
		char *e = sec + strlen(sec) - 2;
		while (*e == '0')
			memmove(e, e + 1, strlen(e));
	}
	if (h)
		return xasprintf("%lldh%lldm%s", (long long)h, (long long)m, sec);
	if (m)
		return xasprintf("%lldm%s", (long long)m, sec);
	return xstrdup(sec);
}

json_t *hm_rest_instance(const struct hm_instance_view *v)
{
	_cleanup_free_ char *mem = hm_human_size(v->mem_bytes);
	_cleanup_free_ char *ovl = hm_human_size(v->overlay_bytes);
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(v->id));
	json_object_set_new(o, "name", json_string(v->name));
	json_object_set_new(o, "image", json_string(v->image));
	json_object_set_new(o, "state", json_string(hm_state_name(v->state)));
	json_object_set_new(o, "state_error", str_or_null(v->state_error));
	json_object_set_new(o, "size", json_string(mem));
	json_object_set_new(o, "overlay_size", json_string(ovl));
	json_object_set_new(o, "vcpus", json_integer(v->vcpus));
	json_object_set(o, "env", v->env);
	json_object_set(o, "tags", v->tags);
	json_t *net = json_pack("{s:b,s:s,s:o,s:o}", "enabled", v->network, "name", "default", "ip",
	                        v->network ? str_or_null(v->ip) : json_null(), "mac",
	                        v->network ? str_or_null(v->mac) : json_null());
	if (v->network && v->download_bps > 0) {
		_cleanup_free_ char *t = hm_rate_text(v->download_bps);
		json_object_set_new(net, "bandwidth_download", json_string(t));
	}
	if (v->network && v->upload_bps > 0) {
		_cleanup_free_ char *t = hm_rate_text(v->upload_bps);
		json_object_set_new(net, "bandwidth_upload", json_string(t));
	}
	json_object_set_new(o, "network", net);
	if (v->disk_bps > 0) {
		_cleanup_free_ char *h = hm_human_size(v->disk_bps);
		_cleanup_free_ char *t = xasprintf("%s/s", h);
		json_object_set_new(o, "disk_io_bps", json_string(t));
	}
	json_t *vols = json_array();
	for (size_t i = 0; i < v->nvolumes; i++)
		json_array_append_new(vols,
		                      json_pack("{s:o,s:o,s:b}", "volume_id",
		                                str_or_null(v->volumes[i].volume_id), "mount_path",
		                                str_or_null(v->volumes[i].mount_path), "readonly",
		                                v->volumes[i].readonly));
	json_object_set_new(o, "volumes", vols);
	json_object_set_new(o, "created_at", json_string(v->created_at));
	json_object_set_new(o, "expires_at", json_null()); /* no ttl: refused at create */
	json_object_set_new(o, "started_at", str_or_null(v->started_at));
	json_object_set_new(o, "stopped_at", str_or_null(v->stopped_at));
	json_object_set_new(o, "exit_code",
	                    v->exit_code >= 0 ? json_integer(v->exit_code) : json_null());
	if (v->exit_message)
		json_object_set_new(o, "exit_message", json_string(v->exit_message));
	json_object_set_new(o, "has_snapshot", json_boolean(v->state == HM_STATE_STANDBY));
	json_object_set_new(o, "hypervisor", json_string(v->hypervisor));
	if (v->command)
		json_object_set(o, "command", v->command); /* extension: what runs */
	if (v->boot)
		json_object_set_new(o, "boot", json_string(v->boot)); /* extension */
	if (v->auto_standby_set) {
		_cleanup_free_ char *idle = hm_rest_go_duration(v->auto_standby.idle_ms);
		json_object_set_new(o, "auto_standby",
		                    json_pack("{s:b,s:s,s:[],s:[]}", "enabled",
		                              v->auto_standby.enabled, "idle_timeout", idle,
		                              "ignore_source_cidrs", "ignore_destination_ports"));
	}
	if (v->restart.policy != HM_RESTART_NEVER) {
		_cleanup_free_ char *backoff = hm_rest_go_duration(v->restart.delay_ms);
		_cleanup_free_ char *stable = hm_rest_go_duration(v->restart.stable_ms);
		json_object_set_new(o, "restart_policy",
		                    json_pack("{s:s,s:s,s:i,s:s}", "policy",
		                              hm_restart_name(v->restart.policy), "backoff",
		                              backoff, "max_attempts", v->restart.max_attempts,
		                              "stable_after", stable));
		const struct hm_restart_status *rs = &v->restart_status;
		json_object_set_new(o, "restart_status",
		                    json_pack("{s:i,s:o,s:o,s:o}", "attempts", rs->attempts,
		                              "last_attempt_at", str_or_null(rs->last_attempt_at),
		                              "next_attempt_at", str_or_null(rs->next_attempt_at),
		                              "blocked_reason", str_or_null(rs->blocked)));
	}
	return o;
}

int hm_resp_instance(struct hm_resp *resp, int status, struct hm_instance_view *v)
{
	json_t *o = hm_rest_instance(v);
	hm_instance_view_free(v);
	return hm_resp_json(resp, status, o);
}
