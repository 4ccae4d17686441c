/*
 * api/ukc_node: the Unikraft Cloud node endpoints: GET /v1/healthz, what
 * this server can do now, each part healthy or degraded, with its versions.
 * Public, like /health, so that probes need no token.
 */
#include <jansson.h>
#include <string.h>

#include "api/api.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"
#include "core/version.h"
#include "instance/instances.h"
#include "net/net.h"
#include "vmm/accel.h"

int ukc_h_healthz(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	(void)err;
	const struct hm_services *svc = hm_req_services(req);
	struct hm_runtime rt[HM_RUNTIMES_MAX];
	size_t n = hm_runtimes(svc->accel, rt);
	bool vmm = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(rt[i].name, HM_RUNTIME_DEFAULT) == 0)
			vmm = rt[i].available;
	const char *boot = hm_instances_boot_error(svc->instances);
	json_t *checks =
	    json_pack("{s:s,s:s,s:s}", "api", "healthy", "vmm", vmm ? "healthy" : "degraded",
	              "guest_kernel", boot ? "degraded" : "healthy");
	/* Off by configuration is no fault: then there is nothing to check. */
	char gw[16], cidr[20];
	if (hm_net_enabled(svc->net))
		json_object_set_new(
		    checks, "network",
		    json_string(hm_net_subnet(svc->net, gw, cidr) == 0 ? "healthy" : "degraded"));
	json_t *data = json_pack("{s:o,s:{s:s,s:s}}", "checks", checks, "versions", "hypeman",
	                         HM_VERSION, "accelerator", hm_accel_name(svc->accel->accel));
	return ukc_reply(resp, data);
}
