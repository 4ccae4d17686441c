/*
 * store/snapshots: typed access to the snapshots table.
 */
#include "store/snapshots.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "store/internal.h"

#define COLS "id, name, kind, source_id, source_name, tags, meta, created_at, hypervisor, uuid"

void hm_snapshot_row_done(struct hm_snapshot_row *r)
{
	free(r->id);
	free(r->name);
	free(r->kind);
	free(r->source_id);
	free(r->source_name);
	free(r->tags);
	free(r->meta);
	free(r->created_at);
	free(r->hypervisor);
	free(r->uuid);
	memset(r, 0, sizeof(*r));
}

void hm_snapshot_rows_free(struct hm_snapshot_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hm_snapshot_row_done(&rows[i]);
	free(rows);
}

static void read_row(sqlite3_stmt *s, struct hm_snapshot_row *r)
{
	r->id = hm_store_col_text(s, 0);
	r->name = hm_store_col_text(s, 1);
	r->kind = hm_store_col_text(s, 2);
	r->source_id = hm_store_col_text(s, 3);
	r->source_name = hm_store_col_text(s, 4);
	r->tags = hm_store_col_text(s, 5);
	r->meta = hm_store_col_text(s, 6);
	r->created_at = hm_store_col_text(s, 7);
	r->hypervisor = hm_store_col_text(s, 8);
	r->uuid = hm_store_col_text(s, 9);
}

int hm_store_snapshot_insert(struct hm_store *st, const struct hm_snapshot_row *r,
                             struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "INSERT INTO snapshots(" COLS
	                     ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
	if (r->name)
		sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_text(s, 3, r->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->source_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, r->source_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, r->tags ? r->tags : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, r->meta ? r->meta : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, r->created_at, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, r->hypervisor ? r->hypervisor : "qemu", -1, SQLITE_STATIC);
	char uuid[37];
	if (!r->uuid)
		hm_uuid_new(uuid);
	sqlite3_bind_text(s, 10, r->uuid ? r->uuid : uuid, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return hm_err_set(err, HM_ERR_CONFLICT, "already_exists",
		                  "instance `%s` already has a snapshot named `%s`", r->source_name,
		                  r->name ? r->name : "");
	if (rc != SQLITE_DONE)
		return hm_store_error(st, err, "save snapshot");
	return 0;
}

static void read_any(sqlite3_stmt *s, void *row)
{
	read_row(s, row);
}

static void done_any(void *row)
{
	hm_snapshot_row_done(row);
}

int hm_store_snapshot_find(struct hm_store *st, const char *key, struct hm_snapshot_row *ret,
                           struct hm_err **err)
{
	return hm_store_find_by_key_or_uuid(st, "snapshots", COLS, "snapshot", key, read_any,
	                                    done_any, ret, err);
}

int hm_store_snapshot_list(struct hm_store *st, struct hm_snapshot_row **ret, size_t *n,
                           struct hm_err **err)
{
	return hm_store_list_rows(st, "SELECT " COLS " FROM snapshots ORDER BY created_at, id",
	                          sizeof(**ret), read_any, done_any, (void **)ret, n,
	                          "list snapshots", err);
}

int hm_store_snapshot_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "DELETE FROM snapshots WHERE id = ?1 RETURNING id", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete snapshot", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "snapshot `%s` not found",
		                  id);
	return found < 0 ? -1 : 0;
}
