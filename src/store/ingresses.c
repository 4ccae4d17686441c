/*
 * store/ingresses: typed access to the two tables of named routing specs,
 * which share one row shape: `ingresses` (the Hypeman API's) and
 * `service_groups` (the Unikraft Cloud API's, each row's id its UUID).
 */
#include "store/ingresses.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "store/internal.h"

#define COLS "id, name, spec, created_at"

struct table {
	const char *name, *noun;
};
static const struct table INGRESSES = { "ingresses", "ingress" };
static const struct table GROUPS = { "service_groups", "service group" };

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

static void read_row(sqlite3_stmt *s, void *row)
{
	struct hm_ingress_row *r = row;
	r->id = hm_store_col_text(s, 0);
	r->name = hm_store_col_text(s, 1);
	r->spec = hm_store_col_text(s, 2);
	r->created_at = hm_store_col_text(s, 3);
}

static void done_any(void *row)
{
	hm_ingress_row_done(row);
}

static int insert(struct hm_store *st, const struct table *t, const struct hm_ingress_row *r,
                  struct hm_err **err)
{
	sqlite3_stmt *s;
	_cleanup_free_ char *sql =
	    xasprintf("INSERT INTO %s(" COLS ") VALUES (?1, ?2, ?3, ?4)", t->name);
	if (hm_store_prepare(st, sql, &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, r->spec, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->created_at, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return hm_err_set(err, HM_ERR_CONFLICT, "name_conflict",
		                  "a %s named `%s` already exists", t->noun, r->name);
	if (rc != SQLITE_DONE)
		return hm_store_error(st, err, "save routing spec");
	return 0;
}

static int find(struct hm_store *st, const struct table *t, const char *key,
                struct hm_ingress_row *ret, struct hm_err **err)
{
	return hm_store_find_by_key(st, t->name, COLS, t->noun, key, read_row, done_any, ret, err);
}

static int list(struct hm_store *st, const struct table *t, struct hm_ingress_row **ret, size_t *n,
                struct hm_err **err)
{
	_cleanup_free_ char *sql =
	    xasprintf("SELECT " COLS " FROM %s ORDER BY created_at, id", t->name);
	return hm_store_list_rows(st, sql, sizeof(**ret), read_row, done_any, (void **)ret, n,
	                          "list routing specs", err);
}

static int delete_row(struct hm_store *st, const struct table *t, const char *id,
                      struct hm_err **err)
{
	sqlite3_stmt *s;
	_cleanup_free_ char *sql = xasprintf("DELETE FROM %s WHERE id = ?1 RETURNING id", t->name);
	if (hm_store_prepare(st, sql, &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete routing spec", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "%s `%s` not found", t->noun,
		                  id);
	return found < 0 ? -1 : 0;
}

int hm_store_ingress_insert(struct hm_store *st, const struct hm_ingress_row *row,
                            struct hm_err **err)
{
	return insert(st, &INGRESSES, row, err);
}

int hm_store_ingress_find(struct hm_store *st, const char *key, struct hm_ingress_row *ret,
                          struct hm_err **err)
{
	return find(st, &INGRESSES, key, ret, err);
}

int hm_store_ingress_list(struct hm_store *st, struct hm_ingress_row **ret, size_t *n,
                          struct hm_err **err)
{
	return list(st, &INGRESSES, ret, n, err);
}

int hm_store_ingress_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	return delete_row(st, &INGRESSES, id, err);
}

int hm_store_group_insert(struct hm_store *st, const struct hm_ingress_row *row,
                          struct hm_err **err)
{
	return insert(st, &GROUPS, row, err);
}

int hm_store_group_find(struct hm_store *st, const char *key, struct hm_ingress_row *ret,
                        struct hm_err **err)
{
	return find(st, &GROUPS, key, ret, err);
}

int hm_store_group_list(struct hm_store *st, struct hm_ingress_row **ret, size_t *n,
                        struct hm_err **err)
{
	return list(st, &GROUPS, ret, n, err);
}

int hm_store_group_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	return delete_row(st, &GROUPS, id, err);
}

int hm_store_group_set_spec(struct hm_store *st, const char *id, const char *spec,
                            struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "UPDATE service_groups SET spec = ?2 WHERE id = ?1 RETURNING id",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, spec, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "save service group", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found",
		                  "service group `%s` not found", id);
	return found < 0 ? -1 : 0;
}
