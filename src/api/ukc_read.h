/*
 * The UKC instance requests read into typed structs before anything is
 * looked up or made (ukc_read.c): a create (POST /v1/instances, every form:
 * an image, branch_from, template, checkpoint) and one update item (PATCH
 * /v1/instances). Everything a request can be refused for without the
 * engine is refused here, as a 400 naming the field; what needs the engine
 * (a name that is taken, a volume or group that does not exist) is left to
 * the handlers in ukc_instances.c, which act only on these structs. The
 * structs borrow strings from the request's JSON and own what they say
 * they own; ukc_create_done / ukc_update_done let that go.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/ukc.h"
#include "ingress/groups.h"
#include "instance/instances.h"

/* A create makes at most this many replicas besides the instance. */
#define UKC_MAX_REPLICAS 16
/* A wait of -1 ("forever") is held at most this long. */
#define UKC_WAIT_MAX_MS (60L * 60 * 1000)

/* What a create copies, when it is not made from an image. */
enum ukc_create_from {
	UKC_FROM_IMAGE,
	UKC_FROM_INSTANCE,   /* branch_from: a fork */
	UKC_FROM_TEMPLATE,   /* template: a fork of a template */
	UKC_FROM_CHECKPOINT, /* checkpoint: a copy of a snapshot */
};

/* One of a create's volumes: an existing one by ref, or a new one. */
struct ukc_create_volume {
	bool is_new;
	struct ukc_ref ref;          /* an existing one (ref.item unset) */
	struct ukc_volume_spec spec; /* a new one */
	const char *at;              /* the mount path (checked by the domain) */
	bool readonly;
};

/* The service group a create joins. */
enum ukc_create_group { UKC_GROUP_NONE, UKC_GROUP_EXISTING, UKC_GROUP_NEW };

struct ukc_create {
	enum ukc_create_from from;
	struct ukc_ref source; /* the copy's source (not UKC_FROM_IMAGE) */
	const char *name;      /* NULL: one is made up */
	bool autostart;
	long wait_ms; /* how long the answer waits for Running; 0: not at all */
	/* From an image only: */
	struct hm_instance_create c; /* all but name and volumes; c.tags owned */
	long long replicas;
	struct ukc_create_volume vols[HM_MAX_ATTACH];
	size_t nvols;
	enum ukc_create_group group;
	struct ukc_ref group_ref;        /* UKC_GROUP_EXISTING */
	struct hm_group_spec group_spec; /* UKC_GROUP_NEW (persistent false) */
};
int ukc_create_in(json_t *body, struct ukc_create *ret, struct hm_err **err);
void ukc_create_done(struct ukc_create *c);

/* How long to wait for Running after a start: `timeout_s` (-1: the most, 0:
 * not at all), or the deprecated `wait_timeout_ms` rounded up to seconds. */
int ukc_start_wait_in(json_t *opts, long *ret_ms, struct hm_err **err);

/* ---- update items: {prop, op, value, id?} ---- */

enum ukc_update_prop {
	UKC_PROP_IMAGE,
	UKC_PROP_ARGS,
	UKC_PROP_ENV,
	UKC_PROP_MEMORY,
	UKC_PROP_VCPUS,
	UKC_PROP_TAGS,
	UKC_PROP_DELETE_LOCK,
	UKC_PROP_SCALE_TO_ZERO,
};
enum ukc_update_op { UKC_OP_SET, UKC_OP_ADD, UKC_OP_DEL };

struct ukc_update {
	enum ukc_update_prop prop;
	enum ukc_update_op op;
	const char *image; /* IMAGE */
	json_t *args;      /* ARGS set/add: the argv (owned); del: NULL (the image's) */
	json_t *env;       /* ENV set/add: {NAME: value} (owned) */
	json_t *env_keys;  /* ENV del: the names (owned); NULL: every one */
	int64_t mem_bytes; /* MEMORY */
	int vcpus;         /* VCPUS */
	json_t *tags;      /* TAGS set/add/del: {k: v} given (owned); del NULL: every one */
	bool delete_lock;  /* DELETE_LOCK */
	struct hm_auto_standby auto_standby; /* SCALE_TO_ZERO (del: off) */
};
/* An item's id (echoed in its entry) is not read here. */
int ukc_update_in(json_t *opts, struct ukc_update *ret, struct hm_err **err);
void ukc_update_done(struct ukc_update *u);
