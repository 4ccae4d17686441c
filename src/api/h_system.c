/*
 * System endpoints: GET /health (public), GET /spec.yaml and /spec.json
 * (public; our own OpenAPI document, embedded at build time),
 * GET /resources (host capacity and what is allocated against it),
 * GET /capabilities (what this host can run, and how), and GET /metrics
 * (counters in Prometheus' text format).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "api/api.h"
#include "api/handlers.h"
#include "instance/instances.h"
#include "api/request.h"
#include "api/spec.h"
#include "config/config.h"
#include "core/err.h"
#include "core/version.h"
#include "host/host.h"
#include "net/net.h"
#include "vmm/accel.h"
#include "vmm/vmm.h"

int hm_h_health(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)req;
	(void)err;
	return hm_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

int hm_h_spec_yaml(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)req;
	(void)err;
	return hm_resp_raw(resp, 200, "application/vnd.oai.openapi", hm_spec_yaml,
	                   (size_t)hm_spec_yaml_len);
}

int hm_h_spec_json(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)req;
	(void)err;
	return hm_resp_raw(resp, 200, "application/json", hm_spec_json, (size_t)hm_spec_json_len);
}

static json_t *resource_status(const char *type, int64_t capacity, double ratio, int64_t allocated,
                               const char *source)
{
	int64_t limit = (int64_t)((double)capacity * ratio);
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:s}", "type", type, "capacity",
	                 (json_int_t)capacity, "effective_limit", (json_int_t)limit, "allocated",
	                 (json_int_t)allocated, "available", (json_int_t)(limit - allocated),
	                 "oversub_ratio", ratio, "source", source);
}

int hm_h_resources(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const struct hm_config *cfg = hm_req_services(req)->cfg;
	struct hm_host_capacity cap;
	if (hm_host_capacity(cfg->data_dir, cfg->network_limit_bps, &cap, err) < 0)
		return -1;
	int64_t vcpus = 0, mem = 0, disk = 0;
	if (hm_req_services(req)->instances)
		hm_instances_allocated(hm_req_services(req)->instances, &vcpus, &mem, &disk);
	json_t *body = json_pack(
	    "{s:o,s:o,s:o,s:o,s:[]}", "cpu",
	    resource_status("cpu", cap.cpus, cfg->oversub_cpu, vcpus, "detected"), "memory",
	    resource_status("memory", cap.memory_bytes, cfg->oversub_memory, mem, "detected"),
	    "disk", resource_status("disk", cap.disk_bytes, cfg->oversub_disk, disk, "detected"),
	    "network",
	    resource_status("network", cap.network_bps, cfg->oversub_network, 0,
	                    cap.network_source),
	    "allocations");
	return hm_resp_json(resp, 200, body);
}

/* Server-level features: API surfaces this server really serves (no builds, no devices). */
static const char *const server_features[] = { "exec", "images",    "ingress", "instances",
	                                       "logs", "snapshots", "volumes", NULL };

int hm_h_capabilities(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)err;
	const struct hm_services *svc = hm_req_services(req);
	const struct hm_accel_choice *accel = svc->accel;
	struct hm_runtime rt[HM_RUNTIMES_MAX];
	size_t n = hm_runtimes(accel, rt);
	json_t *runtimes = json_array();
	bool default_ok = false;
	for (size_t i = 0; i < n; i++) {
		json_t *features = json_array();
		for (size_t f = 0; rt[i].features[f]; f++)
			json_array_append_new(features, json_string(rt[i].features[f]));
		json_t *o =
		    json_pack("{s:s,s:b,s:o,s:s}", "name", rt[i].name, "available", rt[i].available,
		              "features", features, "accelerator", rt[i].accelerator);
		if (!rt[i].available)
			json_object_set_new(o, "reason", json_string(rt[i].reason));
		if (strcmp(rt[i].name, HM_RUNTIME_DEFAULT) == 0)
			default_ok = rt[i].available;
		json_array_append_new(runtimes, o);
	}
	struct utsname u;
	const char *arch = uname(&u) < 0                      ? "unknown"
	                   : strcmp(u.machine, "x86_64") == 0 ? "amd64"
	                                                      : u.machine;
	json_t *net = json_pack("{s:s,s:b}", "model", "bridge", "guest_to_guest", 0);
	char gw[16], cidr[20];
	if (hm_net_subnet(svc->net, gw, cidr) == 0) {
		json_object_set_new(net, "gateway", json_string(gw));
		json_object_set_new(net, "subnet", json_string(cidr));
	}
	json_t *features = json_array();
	for (size_t f = 0; server_features[f]; f++)
		json_array_append_new(features, json_string(server_features[f]));
	json_t *body = json_pack(
	    "{s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:b},s:o,s:{s:s,s:b,s:s},s:o,s:{s:[s],s:s},s:o}",
	    "server", "version", HM_VERSION, "api_version", HM_VERSION, "host", "os", "linux",
	    "arch", arch, "default_runtime", "name", HM_RUNTIME_DEFAULT, "available", default_ok,
	    "runtimes", runtimes, "accelerator", "name", hm_accel_name(accel->accel), "kvm_usable",
	    accel->kvm_usable, "reason", accel->reason, "network", net, "images", "platforms",
	    "linux/amd64", "default_platform", "linux/amd64", "features", features);
	if (accel->kvm_reason[0])
		json_object_set_new(json_object_get(body, "accelerator"), "kvm_reason",
		                    json_string(accel->kvm_reason));
	return hm_resp_json(resp, 200, body);
}

/*
 * GET /metrics: Prometheus text exposition (format 0.0.4). Instances by the
 * state GET /instances shows, and how often the daemon has talked to VMM
 * control sockets: reads are served from published state, so listing
 * instances moves neither counter.
 */
int hm_h_metrics(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	long counts[HM_STATE_COUNT] = { 0 };
	struct hm_instances *in = hm_req_services(req)->instances;
	if (in) {
		struct hm_instance_view *views = NULL;
		size_t n = 0;
		if (hm_instances_list(in, NULL, NULL, &views, &n, err) < 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			counts[views[i].state]++;
		hm_instance_views_free(views, n);
	}
	unsigned long conns = 0, cmds = 0;
	hm_vmm_control_counts(&conns, &cmds);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return hm_err_errno(err, errno, "metrics");
	fputs("# HELP hypeman_instances Instances by state.\n"
	      "# TYPE hypeman_instances gauge\n",
	      f);
	for (int k = 0; k < HM_STATE_COUNT; k++)
		fprintf(f, "hypeman_instances{state=\"%s\"} %ld\n", hm_state_name(k), counts[k]);
	fprintf(f,
	        "# HELP hypeman_vmm_control_connections_total Connections opened to VMM control "
	        "sockets.\n"
	        "# TYPE hypeman_vmm_control_connections_total counter\n"
	        "hypeman_vmm_control_connections_total %lu\n"
	        "# HELP hypeman_vmm_control_commands_total Commands sent to VMMs.\n"
	        "# TYPE hypeman_vmm_control_commands_total counter\n"
	        "hypeman_vmm_control_commands_total %lu\n",
	        conns, cmds);
	fclose(f);
	return hm_resp_text(resp, 200, "text/plain; version=0.0.4", text, len);
}
