/*
 * Every request handler, declared once for the route table (api/routes.c).
 * Handlers live in api/h_<resource>.c.
 */
#pragma once

#include <stdint.h>

#include "api/request.h"

hm_handler_fn hm_h_health;
hm_handler_fn hm_h_spec_yaml;
hm_handler_fn hm_h_spec_json;
hm_handler_fn hm_h_resources;
hm_handler_fn hm_h_capabilities;
hm_handler_fn hm_h_metrics;
hm_handler_fn hm_h_images_create;
hm_handler_fn hm_h_images_list;
hm_handler_fn hm_h_images_get;
hm_handler_fn hm_h_images_delete;
hm_handler_fn hm_h_images_tag;
hm_handler_fn hm_h_images_load;
hm_handler_fn hm_h_instances_create;
/* The Hypeman API's Instance object for a view (api/rest_instance.c); the
 * second answers with it and frees the view. */
struct hm_instance_view;
json_t *hm_rest_instance(const struct hm_instance_view *v);
/* A duration as Go prints it ("5m0s", "1.5s"), as upstream shows them. */
char *hm_rest_go_duration(int64_t ms);
int hm_resp_instance(struct hm_resp *resp, int status, struct hm_instance_view *v);
/* A create body into c (its strings borrowed from body; fuzz_bodies calls it too). */
struct hm_instance_create;
int hm_rest_parse_create(json_t *body, struct hm_instance_create *c, struct hm_err **err);
/* An attachment's body {mount_path, readonly, overlay, overlay_size} into a (h_instances.c). */
struct hm_attach;
int hm_rest_parse_attach(json_t *body, struct hm_attach *a, struct hm_err **err);
/*
 * The other bodies read apart from the engine, each into the domain's typed
 * request (strings borrowed from body): PATCH /instances/{id}, start
 * ({cmd, entrypoint}, none: as it was), standby ({compression}), fork,
 * POST /instances/{id}/snapshots, a snapshot's restore or fork ({name,
 * target_state, target_hypervisor}), POST /volumes, POST /images, POST
 * /ingresses (h_ingresses.c: the rules' shapes; their values are the
 * ingress service's, hm_route_check).
 * fuzz_bodies runs each on hostile bodies.
 */
struct hm_instance_update;
struct hm_instance_start;
struct hm_payload_opts;
struct hm_instance_fork;
struct hm_snapshot_create;
struct hm_snapshot_bring;
struct hm_volume_create;
struct hm_image_request;
struct hm_ingress_create;
int hm_rest_parse_ingress(json_t *body, struct hm_ingress_create *c, struct hm_err **err);
int hm_rest_parse_update(json_t *body, struct hm_instance_update *u, struct hm_err **err);
int hm_rest_parse_start(json_t *body, struct hm_instance_start *s, struct hm_err **err);
int hm_rest_parse_standby(json_t *body, struct hm_payload_opts *opts, struct hm_err **err);
int hm_rest_parse_fork(json_t *body, struct hm_instance_fork *f, struct hm_err **err);
int hm_rest_parse_snapshot(json_t *body, struct hm_snapshot_create *c, struct hm_err **err);
int hm_rest_parse_bring(json_t *body, struct hm_snapshot_bring *b, struct hm_err **err);
int hm_rest_parse_volume(json_t *body, struct hm_volume_create *c, struct hm_err **err);
int hm_rest_parse_image(json_t *body, struct hm_image_request *ir, struct hm_err **err);
/* A copy's file header for the client from the guest's cp_header: only a
 * header's fields, each of its type (h_cp.c; fuzz_agent_host checks it). */
json_t *hm_cp_guest_header(json_t *msg);
hm_handler_fn hm_h_instances_list;
hm_handler_fn hm_h_instances_get;
hm_handler_fn hm_h_instances_delete;
hm_handler_fn hm_h_instances_logs;
hm_handler_fn hm_h_instances_stop;
hm_handler_fn hm_h_instances_standby;
hm_handler_fn hm_h_instances_restore;
hm_handler_fn hm_h_instances_fork;
hm_handler_fn hm_h_snapshots_create;
hm_handler_fn hm_h_snapshots_list;
hm_handler_fn hm_h_snapshots_get;
hm_handler_fn hm_h_snapshots_delete;
hm_handler_fn hm_h_snapshots_restore;
hm_handler_fn hm_h_snapshots_fork;
hm_handler_fn hm_h_instances_start;
hm_handler_fn hm_h_instances_update;
hm_handler_fn hm_h_instances_wait;
hm_handler_fn hm_h_instances_stats;
hm_handler_fn hm_h_instances_stat;
hm_handler_fn hm_h_instances_exec;
hm_handler_fn hm_h_instances_cp;
hm_handler_fn hm_h_ingresses_list;
hm_handler_fn hm_h_ingresses_create;
hm_handler_fn hm_h_ingresses_get;
hm_handler_fn hm_h_ingresses_delete;
hm_handler_fn hm_h_volumes_list;
hm_handler_fn hm_h_volumes_create;
hm_handler_fn hm_h_volumes_from_archive;
hm_handler_fn hm_h_volumes_get;
hm_handler_fn hm_h_volumes_delete;
hm_handler_fn hm_h_instances_attach_volume;
hm_handler_fn hm_h_instances_auto_standby_status;
hm_handler_fn hm_h_instances_auto_standby_hold;
hm_handler_fn hm_h_instances_detach_volume;
