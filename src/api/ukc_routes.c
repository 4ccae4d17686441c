/*
 * api/ukc_routes: the Unikraft Cloud dialect's route table and the dialect
 * itself, at /v1. Literal segments (wait, log, metrics, start, stop,
 * suspend, templates, checkpoints, history; attach and detach of volumes)
 * come before `{uuid}`: the router takes the first match, and the unit test
 * test_routes checks that no route is shadowed and that the table and
 * api/openapi.yaml agree both ways.
 */
#include "api/dialect.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_handlers.h"

static const struct hm_route ukc_routes[] = {
	{ "GET", "/v1/instances", "instance:read", 0, ukc_h_instances_list },
	{ "GET", "/v1/healthz", NULL, HM_ROUTE_PUBLIC, ukc_h_healthz },
	{ "POST", "/v1/instances", "instance:write", HM_ROUTE_JSON_BODY, ukc_h_instances_create },
	{ "DELETE", "/v1/instances", "instance:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_instances_delete },
	{ "PATCH", "/v1/instances", "instance:write", HM_ROUTE_JSON_BODY, ukc_h_instances_update },
	{ "PUT", "/v1/instances/start", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instances_start },
	{ "PUT", "/v1/instances/stop", "instance:write", HM_ROUTE_JSON_BODY, ukc_h_instances_stop },
	{ "PUT", "/v1/instances/suspend", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instances_suspend },
	{ "GET", "/v1/instances/wait", "instance:read", HM_ROUTE_JSON_BODY, ukc_h_instances_wait },
	{ "GET", "/v1/instances/log", "instance:read", 0, ukc_h_instances_log },
	{ "GET", "/v1/instances/metrics", "instance:read", 0, ukc_h_instances_metrics },
	{ "POST", "/v1/instances/templates", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_templates_create },
	{ "GET", "/v1/instances/templates", "instance:read", 0, ukc_h_templates_list },
	{ "DELETE", "/v1/instances/templates", "instance:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_templates_delete },
	{ "PATCH", "/v1/instances/templates", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_templates_update },
	{ "GET", "/v1/instances/templates/{uuid}", "instance:read", 0, ukc_h_template_get },
	{ "DELETE", "/v1/instances/templates/{uuid}", "instance:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_template_delete },
	{ "PATCH", "/v1/instances/templates/{uuid}", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_template_update },
	{ "POST", "/v1/instances/checkpoints", "snapshot:write", HM_ROUTE_JSON_BODY,
	  ukc_h_checkpoints_create },
	{ "GET", "/v1/instances/checkpoints", "snapshot:read", 0, ukc_h_checkpoints_list },
	{ "DELETE", "/v1/instances/checkpoints", "snapshot:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_checkpoints_delete },
	{ "GET", "/v1/instances/checkpoints/{uuid}", "snapshot:read", 0, ukc_h_checkpoint_get },
	{ "DELETE", "/v1/instances/checkpoints/{uuid}", "snapshot:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_checkpoint_delete },
	{ "GET", "/v1/instances/history", "instance:read", 0, ukc_h_instances_history },
	{ "GET", "/v1/instances/{uuid}", "instance:read", 0, ukc_h_instances_get },
	{ "DELETE", "/v1/instances/{uuid}", "instance:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_delete },
	{ "PATCH", "/v1/instances/{uuid}", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_update },
	{ "PUT", "/v1/instances/{uuid}/start", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_start },
	{ "PUT", "/v1/instances/{uuid}/stop", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_stop },
	{ "PUT", "/v1/instances/{uuid}/suspend", "instance:write", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_suspend },
	{ "GET", "/v1/instances/{uuid}/wait", "instance:read", HM_ROUTE_JSON_BODY,
	  ukc_h_instance_wait },
	{ "GET", "/v1/instances/{uuid}/log", "instance:read", 0, ukc_h_instance_log },
	{ "GET", "/v1/instances/{uuid}/metrics", "instance:read", 0, ukc_h_instance_metrics },
	{ "GET", "/v1/instances/{uuid}/history", "instance:read", 0, ukc_h_instance_history },
	{ "GET", "/v1/images", "image:read", 0, ukc_h_images_list },
	{ "POST", "/v1/images", "image:write", HM_ROUTE_JSON_BODY, ukc_h_images_pin },
	{ "POST", "/v1/volumes", "volume:write", HM_ROUTE_JSON_BODY, ukc_h_volumes_create },
	{ "GET", "/v1/volumes", "volume:read", 0, ukc_h_volumes_list },
	{ "DELETE", "/v1/volumes", "volume:delete", HM_ROUTE_JSON_BODY, ukc_h_volumes_delete },
	{ "PUT", "/v1/volumes/attach", "volume:write", HM_ROUTE_JSON_BODY, ukc_h_volumes_attach },
	{ "PUT", "/v1/volumes/detach", "volume:write", HM_ROUTE_JSON_BODY, ukc_h_volumes_detach },
	{ "GET", "/v1/volumes/{uuid}", "volume:read", 0, ukc_h_volume_get },
	{ "DELETE", "/v1/volumes/{uuid}", "volume:delete", HM_ROUTE_JSON_BODY,
	  ukc_h_volume_delete },
	{ "PUT", "/v1/volumes/{uuid}/attach", "volume:write", HM_ROUTE_JSON_BODY,
	  ukc_h_volume_attach },
	{ "PUT", "/v1/volumes/{uuid}/detach", "volume:write", HM_ROUTE_JSON_BODY,
	  ukc_h_volume_detach },
};

static const size_t ukc_routes_count = sizeof(ukc_routes) / sizeof(ukc_routes[0]);

const struct hm_dialect hm_dialect_ukc = {
	.name = "ukc",
	.prefix = "/v1",
	.routes = ukc_routes,
	.nroutes = &ukc_routes_count,
	.render_error = ukc_render_error,
	.finish = ukc_finish,
};
