/*
 * The attachments table: which volume each instance has, where, and how.
 * The instance's spec (instance module) is what a boot reads; this table
 * mirrors it so that foreign keys hold: a volume still attached cannot be
 * deleted (HM_ERR_CONFLICT in_use), and an instance's rows go with it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct hm_err;
struct hm_store;

struct hm_attachment_row {
	char *instance_id;
	char *instance_name; /* read only: joined from instances */
	char *instance_uuid; /* read only: joined from instances */
	char *volume_id;
	char *mount_path;
	bool readonly;
};

/*
 * Make instance_id's rows exactly these n (its old ones go). A volume that
 * does not exist (deleted meanwhile) fails its foreign key: HM_ERR_NOT_FOUND.
 */
int hm_store_attachments_set(struct hm_store *st, const char *instance_id,
                             const struct hm_attachment_row *rows, size_t n, struct hm_err **err);
/* Where volume_id is attached, by instance creation order. */
int hm_store_attachments_of_volume(struct hm_store *st, const char *volume_id,
                                   struct hm_attachment_row **ret, size_t *n, struct hm_err **err);
void hm_attachment_rows_free(struct hm_attachment_row *rows, size_t n);
