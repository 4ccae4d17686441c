/*
 * The snapshots table: each snapshot's identity, its source, its tags and
 * `meta`, the JSON of what is needed to bring it back (the source's image
 * and spec, the payload's compression). The payload itself lives in the data
 * dir (instance/snapshots.c owns it). Names are unique per source instance.
 */
#pragma once

#include <stddef.h>

struct hm_err;
struct hm_store;

struct hm_snapshot_row {
	char *id;
	char *name; /* NULL: none */
	char *kind; /* Standby | Stopped */
	char *source_id;
	char *source_name;
	char *tags; /* JSON text */
	char *meta; /* JSON text */
	char *created_at;
	char *hypervisor; /* the source's runtime; NULL at insert: qemu */
	char *uuid;       /* RFC 4122; NULL at insert: one is made */
};

/* A taken id, or a name the same source already used: HM_ERR_CONFLICT. */
int hm_store_snapshot_insert(struct hm_store *st, const struct hm_snapshot_row *row,
                             struct hm_err **err);
/* By id, name, or unique id prefix. Missing: HM_ERR_NOT_FOUND. */
int hm_store_snapshot_find(struct hm_store *st, const char *key, struct hm_snapshot_row *ret,
                           struct hm_err **err);
/* All rows, oldest first. */
int hm_store_snapshot_list(struct hm_store *st, struct hm_snapshot_row **ret, size_t *n,
                           struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_snapshot_delete(struct hm_store *st, const char *id, struct hm_err **err);

void hm_snapshot_row_done(struct hm_snapshot_row *row);
void hm_snapshot_rows_free(struct hm_snapshot_row *rows, size_t n);
