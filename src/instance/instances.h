/*
 * The instance service: the domain model of an instance (an image booted
 * as a VM) and its state machine. It owns each instance's folder, its row in
 * the store, and the live VMM handle with the monitor thread that listens to
 * the guest agent and notices the VMM's exit.
 *
 * State is derived, never stored: Created (no VMM yet), Initializing (VMM
 * up, program not started), Running (the guest init reported the program
 * started), Paused / Shutdown (from the VMM), Stopped (VMM gone; exit code
 * and message from the guest's exit record), Unknown (the VMM does not
 * answer; state_error says why).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct hm_config;
struct hm_err;
struct hm_images;
struct hm_instances;
struct hm_log_stream;
struct hm_store;

/* Open the service: find the kernel, build the initrd, re-adopt VMs that
 * still run. A missing kernel is not fatal: creates then fail with 503. */
int hm_instances_open(struct hm_store *st, struct hm_images *images, const struct hm_config *cfg,
                      struct hm_instances **ret, struct hm_err **err);
/* Stop monitoring; VMs keep running and are re-adopted by the next start. */
void hm_instances_close(struct hm_instances *in);

/* POST /instances: validate, prepare disks, boot. *ret: the Instance object. */
int hm_instances_create(struct hm_instances *in, json_t *req, json_t **ret, struct hm_err **err);
/* By id, name or unique id prefix. */
int hm_instances_get(struct hm_instances *in, const char *key, json_t **ret, struct hm_err **err);
/* `state` and `tags` filters may be NULL. */
int hm_instances_list(struct hm_instances *in, const char *state, json_t *tags, json_t **ret,
                      struct hm_err **err);
/* Kill the VMM if any, remove every file and the row. */
int hm_instances_delete(struct hm_instances *in, const char *key, struct hm_err **err);
/* source: app | vmm | hypeman. */
int hm_instances_logs(struct hm_instances *in, const char *key, const char *source, long tail,
                      bool follow, struct hm_log_stream **ret, struct hm_err **err);
