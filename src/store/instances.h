/*
 * The instances table: what the daemon must remember about each instance
 * across restarts. `phase` is the last lifecycle fact the daemon recorded
 * (Created, Booting, Stopped); the live state a client sees is derived from
 * the VMM on every read (instance/instances.c), never stored.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct hm_err;
struct hm_store;

struct hm_instance_row {
	char *id;
	char *name;
	char *image;
	char *image_digest;
	char *spec;    /* JSON text */
	char *phase;   /* Created | Booting | Stopped */
	pid_t vmm_pid; /* 0: none */
	int exit_code; /* -1: none */
	char *exit_message;
	char *created_at;
	char *started_at;
	char *stopped_at;
	char
	    *hypervisor; /* the runtime it was made on (set at insert, never updated); NULL: qemu */
	char *uuid;      /* RFC 4122; the store makes one at insert when NULL, never updated */
	/* Written only by set_stopped and count_start (insert and update leave them). */
	int stop_reason;   /* HM_STOP_* bits of the last stop; 0: unknown or none */
	int start_count;   /* boots and restores that reached the VM running */
	int restart_count; /* of those, the restart policy's */
};

/* Who and how a VM stopped, as bits (the Unikraft Cloud API's stop_reason). */
enum {
	HM_STOP_KERNEL = 1 << 0,   /* the guest kernel went down (a report or a crash) */
	HM_STOP_APP = 1 << 1,      /* the program exited; exit_code holds its code */
	HM_STOP_PLATFORM = 1 << 2, /* the daemon stopped it (with USER: on a user's request) */
	HM_STOP_USER = 1 << 3,     /* a user asked for the stop */
	HM_STOP_FORCED = 1 << 4,   /* killed without a clean shutdown */
};

/* Insert a new row; a taken name or id is HM_ERR_CONFLICT. */
int hm_store_instance_insert(struct hm_store *st, const struct hm_instance_row *row,
                             struct hm_err **err);
/* Replace the row with this id (which must exist: HM_ERR_NOT_FOUND). */
int hm_store_instance_update(struct hm_store *st, const struct hm_instance_row *row,
                             struct hm_err **err);
/* Only the phase: a concurrent operation's other changes stay. */
int hm_store_instance_set_phase(struct hm_store *st, const char *id, const char *phase,
                                struct hm_err **err);
/* The phase, only while it is `from` (the monitor's Booting -> Running): a row
 * that has moved on meanwhile is left alone (HM_ERR_NOT_FOUND). */
int hm_store_instance_cas_phase(struct hm_store *st, const char *id, const char *from,
                                const char *to, struct hm_err **err);
/* Only the spec (a PATCH, an attachment): the phase, VMM and exit stay as
 * whoever else wrote them. */
int hm_store_instance_set_spec(struct hm_store *st, const char *id, const char *spec,
                               struct hm_err **err);
/* Only what a VM's end changes: phase Stopped, no VMM, the exit (code -1: none).
 * Only while the row records that VMM (vmm_pid) or none: a row a new boot has
 * taken since is left alone (HM_ERR_NOT_FOUND). */
int hm_store_instance_set_stopped(struct hm_store *st, const char *id, pid_t vmm_pid, int exit_code,
                                  const char *exit_message, const char *stopped_at, int stop_reason,
                                  struct hm_err **err);
/* One more start (and restart, when by_policy), counted in the database. */
int hm_store_instance_count_start(struct hm_store *st, const char *id, bool by_policy,
                                  struct hm_err **err);
/* By exact id. Missing: HM_ERR_NOT_FOUND. */
int hm_store_instance_get(struct hm_store *st, const char *id, struct hm_instance_row *ret,
                          struct hm_err **err);
/*
 * By id, UUID, name, or unique id prefix (in that order of preference). Missing
 * or ambiguous prefix: HM_ERR_NOT_FOUND / HM_ERR_CONFLICT.
 */
int hm_store_instance_find(struct hm_store *st, const char *key, struct hm_instance_row *ret,
                           struct hm_err **err);
/* The one whose spec holds this network address (an address is leased to one
 * instance at a time). Missing: HM_ERR_NOT_FOUND. */
int hm_store_instance_by_ip(struct hm_store *st, const char *ip, struct hm_instance_row *ret,
                            struct hm_err **err);
/* All rows ordered by created_at, id. */
int hm_store_instance_list(struct hm_store *st, struct hm_instance_row **ret, size_t *n,
                           struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_instance_delete(struct hm_store *st, const char *id, struct hm_err **err);

void hm_instance_row_done(struct hm_instance_row *row);
void hm_instance_rows_free(struct hm_instance_row *rows, size_t n);
