/*
 * store/ingresses: typed access to the ingresses table.
 */
#include "store/ingresses.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xalloc.h"
#include "store/internal.h"

#define COLS "id, name, spec, created_at"

void hm_ingress_row_done(struct hm_ingress_row *r)
{
	free(r->id);
	free(r->name);
	free(r->spec);
	free(r->created_at);
	memset(r, 0, sizeof(*r));
}

void hm_ingress_rows_free(struct hm_ingress_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hm_ingress_row_done(&rows[i]);
	free(rows);
}

static void read_row(sqlite3_stmt *s, struct hm_ingress_row *r)
{
	r->id = hm_store_col_text(s, 0);
	r->name = hm_store_col_text(s, 1);
	r->spec = hm_store_col_text(s, 2);
	r->created_at = hm_store_col_text(s, 3);
}

int hm_store_ingress_insert(struct hm_store *st, const struct hm_ingress_row *r,
                            struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "INSERT INTO ingresses(" COLS ") VALUES (?1, ?2, ?3, ?4)", &s,
	                     err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, r->spec, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->created_at, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return hm_err_set(err, HM_ERR_CONFLICT, "name_conflict",
		                  "an ingress named `%s` already exists", r->name);
	if (rc != SQLITE_DONE)
		return hm_store_error(st, err, "save ingress");
	return 0;
}

static void read_any(sqlite3_stmt *s, void *row)
{
	read_row(s, row);
}

static void done_any(void *row)
{
	hm_ingress_row_done(row);
}

int hm_store_ingress_find(struct hm_store *st, const char *key, struct hm_ingress_row *ret,
                          struct hm_err **err)
{
	return hm_store_find_by_key(st, "ingresses", COLS, "ingress", key, read_any, done_any, ret,
	                            err);
}

int hm_store_ingress_list(struct hm_store *st, struct hm_ingress_row **ret, size_t *n,
                          struct hm_err **err)
{
	return hm_store_list_rows(st, "SELECT " COLS " FROM ingresses ORDER BY created_at, id",
	                          sizeof(**ret), read_any, done_any, (void **)ret, n,
	                          "list ingresses", err);
}

int hm_store_ingress_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "DELETE FROM ingresses WHERE id = ?1 RETURNING id", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete ingress", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "ingress `%s` not found", id);
	return found < 0 ? -1 : 0;
}
