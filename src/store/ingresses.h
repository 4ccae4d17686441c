/*
 * The ingresses table: each ingress's id, name, validated spec (rules and
 * tags, JSON) and creation time. The routing built from it lives in
 * ingress/.
 */
#pragma once

#include <stddef.h>

struct hm_err;
struct hm_store;

struct hm_ingress_row {
	char *id;
	char *name;
	char *spec; /* JSON text */
	char *created_at;
};

/* A taken name is HM_ERR_CONFLICT. */
int hm_store_ingress_insert(struct hm_store *st, const struct hm_ingress_row *row,
                            struct hm_err **err);
/* By id, name, or unique id prefix. Missing: HM_ERR_NOT_FOUND; ambiguous: HM_ERR_CONFLICT. */
int hm_store_ingress_find(struct hm_store *st, const char *key, struct hm_ingress_row *ret,
                          struct hm_err **err);
/* All rows, oldest first. */
int hm_store_ingress_list(struct hm_store *st, struct hm_ingress_row **ret, size_t *n,
                          struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_ingress_delete(struct hm_store *st, const char *id, struct hm_err **err);

void hm_ingress_row_done(struct hm_ingress_row *row);
void hm_ingress_rows_free(struct hm_ingress_row *rows, size_t n);
