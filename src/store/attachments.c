/*
 * store/attachments: typed access to the attachments table (see
 * attachments.h). A set is written without a transaction (the connection is
 * shared by every thread): the new rows first, each checked by its foreign
 * key, then the instance's other rows go. A crash between leaves rows over,
 * which the instance service's start-up sets again from the specs.
 */
#include "store/attachments.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "store/internal.h"

void hm_attachment_rows_free(struct hm_attachment_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].instance_id);
		free(rows[i].instance_name);
		free(rows[i].instance_uuid);
		free(rows[i].volume_id);
		free(rows[i].mount_path);
	}
	free(rows);
}

int hm_store_attachments_set(struct hm_store *st, const char *instance_id,
                             const struct hm_attachment_row *rows, size_t n, struct hm_err **err)
{
	json_t *keep = json_array();
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_stmt *s;
		if (hm_store_prepare(st,
		                     "INSERT INTO attachments(instance_id, volume_id, mount_path, "
		                     "readonly) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(instance_id, "
		                     "volume_id) DO UPDATE SET mount_path = excluded.mount_path, "
		                     "readonly = excluded.readonly",
		                     &s, err) < 0) {
			r = -1;
			break;
		}
		sqlite3_bind_text(s, 1, instance_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, rows[i].volume_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, rows[i].mount_path, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 4, rows[i].readonly);
		r = hm_store_step_done(st, s, "attach volume", err);
		if (r < 0 &&
		    hm_err_is_kind(err, HM_ERR_CONFLICT)) /* its foreign key: no such volume */
			hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "volume `%s` not found",
			           rows[i].volume_id);
		json_array_append_new(keep, json_string(rows[i].volume_id));
	}
	_cleanup_free_ char *ids = r == 0 ? json_dumps(keep, JSON_COMPACT) : NULL;
	json_decref(keep);
	if (r < 0)
		return -1;
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "DELETE FROM attachments WHERE instance_id = ?1 AND volume_id NOT IN "
	                     "(SELECT value FROM json_each(?2))",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, instance_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, ids ? ids : "[]", -1, SQLITE_STATIC);
	return hm_store_step_done(st, s, "detach volumes", err);
}

int hm_store_attachments_of_volume(struct hm_store *st, const char *volume_id,
                                   struct hm_attachment_row **ret, size_t *n, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(
	        st,
	        "SELECT a.instance_id, i.name, a.volume_id, a.mount_path, a.readonly, i.uuid "
	        "FROM attachments a JOIN instances i ON i.id = a.instance_id "
	        "WHERE a.volume_id = ?1 ORDER BY i.created_at, i.id",
	        &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, volume_id, -1, SQLITE_STATIC);
	struct hm_attachment_row *rows = NULL;
	size_t count = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		rows = xrealloc(rows, (count + 1) * sizeof(*rows));
		rows[count] = (struct hm_attachment_row){
			.instance_id = hm_store_col_text(s, 0),
			.instance_name = hm_store_col_text(s, 1),
			.volume_id = hm_store_col_text(s, 2),
			.mount_path = hm_store_col_text(s, 3),
			.readonly = sqlite3_column_int(s, 4) != 0,
			.instance_uuid = hm_store_col_text(s, 5),
		};
		count++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		hm_attachment_rows_free(rows, count);
		return hm_store_error(st, err, "list attachments");
	}
	*ret = rows;
	*n = count;
	return 0;
}
