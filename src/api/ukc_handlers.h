/*
 * The Unikraft Cloud dialect's handlers, declared once for its route table
 * (api/ukc_routes.c). They live in api/ukc_<resource>.c.
 */
#pragma once

#include "api/request.h"

hm_handler_fn ukc_h_instances_create;
hm_handler_fn ukc_h_instances_list;
hm_handler_fn ukc_h_instances_get;
hm_handler_fn ukc_h_instances_delete;
hm_handler_fn ukc_h_instance_delete;
hm_handler_fn ukc_h_instances_start;
hm_handler_fn ukc_h_instance_start;
hm_handler_fn ukc_h_instances_stop;
hm_handler_fn ukc_h_instance_stop;
hm_handler_fn ukc_h_instances_suspend;
hm_handler_fn ukc_h_instance_suspend;
hm_handler_fn ukc_h_instances_wait;
hm_handler_fn ukc_h_instance_wait;
hm_handler_fn ukc_h_instances_log;
hm_handler_fn ukc_h_instance_log;
hm_handler_fn ukc_h_instances_metrics;
hm_handler_fn ukc_h_instance_metrics;
hm_handler_fn ukc_h_instances_update;
hm_handler_fn ukc_h_instance_update;
hm_handler_fn ukc_h_healthz;
hm_handler_fn ukc_h_templates_create;
hm_handler_fn ukc_h_templates_list;
hm_handler_fn ukc_h_templates_delete;
hm_handler_fn ukc_h_templates_update;
hm_handler_fn ukc_h_template_get;
hm_handler_fn ukc_h_template_delete;
hm_handler_fn ukc_h_template_update;
hm_handler_fn ukc_h_volumes_create;
hm_handler_fn ukc_h_volumes_list;
hm_handler_fn ukc_h_volume_get;
hm_handler_fn ukc_h_volumes_delete;
hm_handler_fn ukc_h_volume_delete;
hm_handler_fn ukc_h_volumes_attach;
hm_handler_fn ukc_h_volume_attach;
hm_handler_fn ukc_h_volumes_detach;
hm_handler_fn ukc_h_volume_detach;
hm_handler_fn ukc_h_images_list;
hm_handler_fn ukc_h_images_pin;
hm_handler_fn ukc_h_checkpoints_create;
hm_handler_fn ukc_h_checkpoints_list;
hm_handler_fn ukc_h_checkpoint_get;
hm_handler_fn ukc_h_checkpoints_delete;
hm_handler_fn ukc_h_checkpoint_delete;
hm_handler_fn ukc_h_instances_history;
hm_handler_fn ukc_h_instance_history;
hm_handler_fn ukc_h_services_create;
hm_handler_fn ukc_h_services_list;
hm_handler_fn ukc_h_services_update;
hm_handler_fn ukc_h_services_delete;
hm_handler_fn ukc_h_service_get;
hm_handler_fn ukc_h_service_update;
hm_handler_fn ukc_h_service_delete;
