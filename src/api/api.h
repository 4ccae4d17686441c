/*
 * The HTTP API server as the daemon sees it: start it with the services
 * the handlers need, stop it on shutdown. Everything about HTTP stays
 * behind this header (libmicrohttpd is included by api/http.c alone).
 */
#pragma once

#include <stdint.h>
#include <time.h>

struct hm_config;
struct hm_err;
struct hm_store;
struct hm_images;
struct hm_instances;
struct hm_ingresses;
struct hm_volumes;
struct hm_net;
struct hm_accel_choice;

/* What handlers may use. Owned by the daemon; outlives the server. */
struct hm_services {
	const struct hm_config *cfg;
	struct hm_store *store;
	struct hm_images *images;
	struct hm_instances *instances;
	struct hm_ingresses *ingresses;
	struct hm_volumes *volumes;
	struct hm_net *net;
	const char *jwt_secret;
	time_t started_at;
	const struct hm_accel_choice *accel; /* how guests run on this host */
};

struct hm_api;

/* Bind and start serving on cfg->listen_addr:cfg->port. */
int hm_api_start(struct hm_services *svc, struct hm_api **ret, struct hm_err **err);
/* The TCP port actually bound (useful with port 0). */
uint16_t hm_api_port(const struct hm_api *api);
/* Stop accepting, finish in-flight requests, free. */
void hm_api_stop(struct hm_api *api);
