/*
 * store/volumes: typed access to the volumes table.
 */
#include "store/volumes.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "store/internal.h"

#define COLS "id, name, size_mb, tags, created_at, uuid"

void hm_volume_row_done(struct hm_volume_row *r)
{
	free(r->id);
	free(r->name);
	free(r->uuid);
	free(r->tags);
	free(r->created_at);
	memset(r, 0, sizeof(*r));
}

void hm_volume_rows_free(struct hm_volume_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hm_volume_row_done(&rows[i]);
	free(rows);
}

static void read_row(sqlite3_stmt *s, struct hm_volume_row *r)
{
	r->id = hm_store_col_text(s, 0);
	r->name = hm_store_col_text(s, 1);
	r->size_mb = sqlite3_column_int64(s, 2);
	r->tags = hm_store_col_text(s, 3);
	r->created_at = hm_store_col_text(s, 4);
	r->uuid = hm_store_col_text(s, 5);
}

int hm_store_volume_insert(struct hm_store *st, const struct hm_volume_row *r, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "INSERT INTO volumes(" COLS ", size_gb) "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, (?3 + 1023) / 1024)",
	                     &s, err) < 0)
		return -1;
	char uuid[37];
	if (!r->uuid)
		hm_uuid_new(uuid);
	sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, r->size_mb);
	sqlite3_bind_text(s, 4, r->tags ? r->tags : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, r->created_at, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, r->uuid ? r->uuid : uuid, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return hm_err_set(err, HM_ERR_CONFLICT, "already_exists",
		                  "a volume with id `%s` or name `%s` already exists", r->id,
		                  r->name);
	if (rc != SQLITE_DONE)
		return hm_store_error(st, err, "save volume");
	return 0;
}

static void read_any(sqlite3_stmt *s, void *row)
{
	read_row(s, row);
}

static void done_any(void *row)
{
	hm_volume_row_done(row);
}

int hm_store_volume_find(struct hm_store *st, const char *key, struct hm_volume_row *ret,
                         struct hm_err **err)
{
	return hm_store_find_by_key_or_uuid(st, "volumes", COLS, "volume", key, read_any, done_any,
	                                    ret, err);
}

int hm_store_volume_list(struct hm_store *st, struct hm_volume_row **ret, size_t *n,
                         struct hm_err **err)
{
	return hm_store_list_rows(st, "SELECT " COLS " FROM volumes ORDER BY created_at, id",
	                          sizeof(**ret), read_any, done_any, (void **)ret, n,
	                          "list volumes", err);
}

int hm_store_volume_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "DELETE FROM volumes WHERE id = ?1 RETURNING id", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete volume", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "volume `%s` not found", id);
	return found < 0 ? -1 : 0;
}
