/*
 * The volumes table: each volume's id, uuid, name, size and tags. Its disk lives
 * in the data dir (volume/volumes.c owns it).
 */
#pragma once

#include <stddef.h>

struct hm_err;
struct hm_store;

struct hm_volume_row {
	char *id;
	char *uuid; /* NULL at insert: one is made */
	char *name;
	long long size_mb;
	char *tags; /* JSON text */
	char *created_at;
};

/* A taken name is HM_ERR_CONFLICT. */
int hm_store_volume_insert(struct hm_store *st, const struct hm_volume_row *row,
                           struct hm_err **err);
/* By id, uuid, name, or unique id prefix. Missing: HM_ERR_NOT_FOUND; ambiguous: HM_ERR_CONFLICT. */
int hm_store_volume_find(struct hm_store *st, const char *key, struct hm_volume_row *ret,
                         struct hm_err **err);
/* All rows, oldest first. */
int hm_store_volume_list(struct hm_store *st, struct hm_volume_row **ret, size_t *n,
                         struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_volume_delete(struct hm_store *st, const char *id, struct hm_err **err);

void hm_volume_row_done(struct hm_volume_row *row);
void hm_volume_rows_free(struct hm_volume_row *rows, size_t n);
