/*
 * The ingresses table: each ingress's id, name, validated spec (rules and
 * tags, JSON) and creation time; and the service_groups table (the Unikraft
 * Cloud API's routing) in the same shape, each group's id its UUID. The
 * routing built from them lives in ingress/.
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

/* The same for service groups (hm_store_group_set_spec: a PATCH's new spec). */
int hm_store_group_insert(struct hm_store *st, const struct hm_ingress_row *row,
                          struct hm_err **err);
int hm_store_group_find(struct hm_store *st, const char *key, struct hm_ingress_row *ret,
                        struct hm_err **err);
int hm_store_group_list(struct hm_store *st, struct hm_ingress_row **ret, size_t *n,
                        struct hm_err **err);
int hm_store_group_delete(struct hm_store *st, const char *id, struct hm_err **err);
int hm_store_group_set_spec(struct hm_store *st, const char *id, const char *spec,
                            struct hm_err **err);

void hm_ingress_row_done(struct hm_ingress_row *row);
void hm_ingress_rows_free(struct hm_ingress_row *rows, size_t n);
