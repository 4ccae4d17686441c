/*
 * System endpoints: GET /health (public), GET /spec.yaml and /spec.json
 * (public; our own OpenAPI document, embedded at build time), and
 * GET /resources (host capacity and what is allocated against it).
 */
#include <jansson.h>

#include "api/api.h"
#include "api/handlers.h"
#include "instance/instances.h"
#include "api/request.h"
#include "api/spec.h"
#include "config/config.h"
#include "core/err.h"
#include "host/host.h"

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
