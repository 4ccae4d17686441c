/*
 * routes: the API's route table, in one place so that a reader sees the
 * whole surface, its scopes and its body rules at a glance. The unit test
 * test_routes checks it against api/openapi.yaml both ways.
 */
#include "api/dialect.h"
#include "api/handlers.h"
#include "api/request.h"

const struct hm_route hm_routes[] = {
	{ "GET", "/health", NULL, HM_ROUTE_PUBLIC, hm_h_health },
	{ "GET", "/spec.yaml", NULL, HM_ROUTE_PUBLIC, hm_h_spec_yaml },
	{ "GET", "/spec.json", NULL, HM_ROUTE_PUBLIC, hm_h_spec_json },
	{ "GET", "/resources", "resource:read", 0, hm_h_resources },
	{ "GET", "/capabilities", "resource:read", 0, hm_h_capabilities },
	{ "GET", "/metrics", "resource:read", 0, hm_h_metrics },
	{ "GET", "/images", "image:read", 0, hm_h_images_list },
	{ "POST", "/images", "image:write", HM_ROUTE_JSON_BODY, hm_h_images_create },
	{ "POST", "/images/load", "image:write", HM_ROUTE_UPLOAD, hm_h_images_load },
	{ "GET", "/images/{name}", "image:read", 0, hm_h_images_get },
	{ "DELETE", "/images/{name}", "image:delete", 0, hm_h_images_delete },
	{ "POST", "/images/{name}/tag", "image:write", HM_ROUTE_JSON_BODY, hm_h_images_tag },
	{ "GET", "/instances", "instance:read", 0, hm_h_instances_list },
	{ "POST", "/instances", "instance:write", HM_ROUTE_JSON_BODY, hm_h_instances_create },
	{ "GET", "/instances/{id}", "instance:read", 0, hm_h_instances_get },
	{ "DELETE", "/instances/{id}", "instance:delete", 0, hm_h_instances_delete },
	{ "PATCH", "/instances/{id}", "instance:write", HM_ROUTE_JSON_BODY, hm_h_instances_update },
	{ "GET", "/instances/{id}/logs", "instance:read", 0, hm_h_instances_logs },
	{ "POST", "/instances/{id}/stop", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_stop },
	{ "POST", "/instances/{id}/start", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_start },
	{ "POST", "/instances/{id}/standby", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_standby },
	{ "POST", "/instances/{id}/restore", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_restore },
	{ "POST", "/instances/{id}/fork", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_fork },
	{ "GET", "/instances/{id}/auto-standby/status", "instance:read", 0,
	  hm_h_instances_auto_standby_status },
	{ "POST", "/instances/{id}/auto-standby/hold", "instance:write", 0,
	  hm_h_instances_auto_standby_hold },
	{ "POST", "/instances/{id}/snapshots", "snapshot:write", HM_ROUTE_JSON_BODY,
	  hm_h_snapshots_create },
	{ "POST", "/instances/{id}/snapshots/{snapshotId}/restore", "instance:write",
	  HM_ROUTE_JSON_BODY, hm_h_snapshots_restore },
	{ "GET", "/snapshots", "snapshot:read", 0, hm_h_snapshots_list },
	{ "GET", "/snapshots/{snapshotId}", "snapshot:read", 0, hm_h_snapshots_get },
	{ "DELETE", "/snapshots/{snapshotId}", "snapshot:delete", 0, hm_h_snapshots_delete },
	{ "POST", "/snapshots/{snapshotId}/fork", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_snapshots_fork },
	{ "GET", "/instances/{id}/wait", "instance:read", 0, hm_h_instances_wait },
	{ "GET", "/instances/{id}/stats", "instance:read", 0, hm_h_instances_stats },
	{ "GET", "/instances/{id}/stat", "instance:read", 0, hm_h_instances_stat },
	{ "GET", "/instances/{id}/exec", "instance:write", 0, hm_h_instances_exec },
	{ "GET", "/instances/{id}/cp", "instance:write", 0, hm_h_instances_cp },
	{ "GET", "/ingresses", "ingress:read", 0, hm_h_ingresses_list },
	{ "POST", "/ingresses", "ingress:write", HM_ROUTE_JSON_BODY, hm_h_ingresses_create },
	{ "GET", "/ingresses/{id}", "ingress:read", 0, hm_h_ingresses_get },
	{ "DELETE", "/ingresses/{id}", "ingress:delete", 0, hm_h_ingresses_delete },
	{ "POST", "/instances/{id}/volumes/{volumeId}", "instance:write", HM_ROUTE_JSON_BODY,
	  hm_h_instances_attach_volume },
	{ "DELETE", "/instances/{id}/volumes/{volumeId}", "instance:write", 0,
	  hm_h_instances_detach_volume },
	{ "GET", "/volumes", "volume:read", 0, hm_h_volumes_list },
	{ "POST", "/volumes", "volume:write", HM_ROUTE_JSON_BODY, hm_h_volumes_create },
	{ "POST", "/volumes/from-archive", "volume:write", HM_ROUTE_UPLOAD,
	  hm_h_volumes_from_archive },
	{ "GET", "/volumes/{id}", "volume:read", 0, hm_h_volumes_get },
	{ "DELETE", "/volumes/{id}", "volume:delete", 0, hm_h_volumes_delete },
};

const size_t hm_routes_count = sizeof(hm_routes) / sizeof(hm_routes[0]);

const struct hm_dialect hm_dialect_hypeman = {
	.name = "hypeman",
	.prefix = "",
	.routes = hm_routes,
	.nroutes = &hm_routes_count,
	.render_error = hm_resp_error,
};

/* Prefixed dialects first: the root one takes whatever they do not. */
const struct hm_dialect *const hm_dialects[] = { &hm_dialect_ukc, &hm_dialect_hypeman };
const size_t hm_dialects_count = sizeof(hm_dialects) / sizeof(hm_dialects[0]);
