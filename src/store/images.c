/*
 * store/images: typed access to the images table.
 */
#include "store/images.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xalloc.h"
#include "store/internal.h"

void hm_image_row_done(struct hm_image_row *r)
{
	free(r->name);
	free(r->digest);
	free(r->platform);
	free(r->status);
	free(r->error);
	free(r->config);
	free(r->tags);
	free(r->created_at);
	memset(r, 0, sizeof(*r));
}

void hm_image_rows_free(struct hm_image_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hm_image_row_done(&rows[i]);
	free(rows);
}

#define COLS "name, digest, platform, status, error, size_bytes, config, tags, created_at"

static void read_row(sqlite3_stmt *s, struct hm_image_row *r)
{
	r->name = hm_store_col_text(s, 0);
	r->digest = hm_store_col_text(s, 1);
	r->platform = hm_store_col_text(s, 2);
	r->status = hm_store_col_text(s, 3);
	r->error = hm_store_col_text(s, 4);
	r->size_bytes = sqlite3_column_type(s, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 5);
	r->config = hm_store_col_text(s, 6);
	r->tags = hm_store_col_text(s, 7);
	r->created_at = hm_store_col_text(s, 8);
}

static void read_any(sqlite3_stmt *s, void *row)
{
	read_row(s, row);
}

static void done_any(void *row)
{
	hm_image_row_done(row);
}

int hm_store_image_put(struct hm_store *st, const struct hm_image_row *r, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "INSERT OR REPLACE INTO images(" COLS ", updated_at) VALUES "
	                     "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%fZ'))",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->digest ? r->digest : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, r->platform, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->status, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, r->error, -1, SQLITE_STATIC);
	if (r->size_bytes >= 0)
		sqlite3_bind_int64(s, 6, r->size_bytes);
	sqlite3_bind_text(s, 7, r->config, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, r->tags ? r->tags : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, r->created_at, -1, SQLITE_STATIC);
	return hm_store_step_done(st, s, "save image", err);
}

int hm_store_image_get(struct hm_store *st, const char *name, struct hm_image_row *ret,
                       struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "SELECT " COLS " FROM images WHERE name = ?1", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), r = 0;
	if (rc == SQLITE_ROW)
		read_row(s, ret);
	else if (rc == SQLITE_DONE)
		r = hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "image `%s` not found", name);
	else
		r = hm_store_error(st, err, "look up image");
	sqlite3_finalize(s);
	return r;
}

int hm_store_image_list(struct hm_store *st, struct hm_image_row **ret, size_t *n,
                        struct hm_err **err)
{
	return hm_store_list_rows(st, "SELECT " COLS " FROM images ORDER BY created_at, name",
	                          sizeof(**ret), read_any, done_any, (void **)ret, n, "list images",
	                          err);
}

int hm_store_image_delete(struct hm_store *st, const char *name, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "DELETE FROM images WHERE name = ?1 RETURNING name", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete image", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "image `%s` not found", name);
	return found < 0 ? -1 : 0;
}

int hm_store_image_digest_refs(struct hm_store *st, const char *digest, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "SELECT count(*) FROM images WHERE digest = ?1", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, digest, -1, SQLITE_STATIC);
	int n = -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return n < 0 ? hm_store_error(st, err, "count image references") : n;
}
