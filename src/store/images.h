/*
 * The images table: one row per normalized reference. Several rows may
 * share a digest (a tag and the same image by digest); the converted disk
 * belongs to the digest, so it goes only when its last row does.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct hm_err;
struct hm_store;

struct hm_image_row {
	char *name;
	char *digest; /* "" until resolved */
	char *platform;
	char *status; /* pending|pulling|converting|ready|failed */
	char *error;
	int64_t size_bytes; /* -1: unknown */
	char *config;       /* JSON text (see image/manifest.h) or NULL */
	char *tags;         /* JSON object text */
	char *created_at;
};

/* Insert or replace the whole row. */
int hm_store_image_put(struct hm_store *st, const struct hm_image_row *row, struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_image_get(struct hm_store *st, const char *name, struct hm_image_row *ret,
                       struct hm_err **err);
/* All rows ordered by created_at, name. */
int hm_store_image_list(struct hm_store *st, struct hm_image_row **ret, size_t *n,
                        struct hm_err **err);
/* Missing: HM_ERR_NOT_FOUND. */
int hm_store_image_delete(struct hm_store *st, const char *name, struct hm_err **err);
/* How many rows name `digest`. */
int hm_store_image_digest_refs(struct hm_store *st, const char *digest, struct hm_err **err);

void hm_image_row_done(struct hm_image_row *row);
void hm_image_rows_free(struct hm_image_row *rows, size_t n);
