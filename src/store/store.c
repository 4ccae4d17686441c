/*
 * store: SQLite connection, pragmas, migrations and the meta table.
 *
 * The database runs in WAL mode with foreign keys on and a busy timeout,
 * so short writers never fail spuriously. Each migration runs in its own
 * transaction together with its user_version bump: a crash mid-migration
 * leaves the previous version intact. A database newer than this build is
 * refused rather than guessed at.
 */
#include "store/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/log.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "store/internal.h"
#include "store/migrations.h"

struct hm_store {
	sqlite3 *db;
	char *path;
	char *reserve; /* a file of RESERVE_BYTES beside the database (see step_returning) */
};

/*
 * A full disk must not stop the deletes that would free it, yet SQLite needs
 * room to record a delete (the WAL grows). So the store keeps a reserve file
 * beside the database; a delete that fails for want of space releases it
 * and tries once more, and a later delete puts it back when there is room.
 */
#define RESERVE_BYTES (8 << 20)

static void reserve_ensure(struct hm_store *st)
{
	struct stat sb;
	if (stat(st->reserve, &sb) == 0 && sb.st_size == RESERVE_BYTES)
		return;
	int fd = open(st->reserve, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	int r = posix_fallocate(fd, 0, RESERVE_BYTES);
	close(fd);
	if (r != 0)
		unlink(st->reserve); /* no room for it now: tried again after a delete */
}

static int db_error(struct hm_store *st, struct hm_err **err, const char *what)
{
	/* A row others still point at (a volume an instance has attached). */
	if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
		return hm_err_set(err, HM_ERR_CONFLICT, "in_use", "%s: still in use (%s)", what,
		                  sqlite3_errmsg(st->db));
	int full = (sqlite3_errcode(st->db) & 0xff) == SQLITE_FULL;
	return hm_err_set(err, full ? HM_ERR_INSUFFICIENT : HM_ERR_INTERNAL,
	                  full ? "insufficient_storage" : "store_error", "%s: %s", what,
	                  sqlite3_errmsg(st->db));
}

static int exec_sql(struct hm_store *st, const char *sql, struct hm_err **err)
{
	char *msg = NULL;
	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		hm_err_set(err, HM_ERR_INTERNAL, "store_error", "sqlite: %s",
		           msg ? msg : sqlite3_errmsg(st->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

int hm_store_schema_version(struct hm_store *st)
{
	sqlite3_stmt *stmt;
	int v = -1;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

int hm_store_latest_schema(void)
{
	return (int)hm_migrations_count;
}

static int migrate(struct hm_store *st, struct hm_err **err)
{
	int v = hm_store_schema_version(st);
	if (v < 0)
		return db_error(st, err, "read schema version");
	if (v > hm_store_latest_schema())
		return hm_err_set(err, HM_ERR_INTERNAL, "store_error",
		                  "database `%s` has schema version %d, newer than this build "
		                  "knows (%d); refusing to touch it",
		                  st->path, v, hm_store_latest_schema());
	for (int i = v; i < hm_store_latest_schema(); i++) {
		_cleanup_free_ char *bump = xasprintf("PRAGMA user_version = %d;", i + 1);
		if (exec_sql(st, "BEGIN IMMEDIATE;", err) < 0)
			return -1;
		if (exec_sql(st, hm_migrations[i], err) < 0 || exec_sql(st, bump, err) < 0) {
			exec_sql(st, "ROLLBACK;", NULL);
			return hm_err_wrap(err, "migration %d", i + 1);
		}
		if (exec_sql(st, "COMMIT;", err) < 0)
			return -1;
		log_info("store", "applied migration", "version=%d", i + 1);
	}
	return 0;
}

int hm_store_open(const char *path, struct hm_store **ret, struct hm_err **err)
{
	struct hm_store *st = xcalloc(1, sizeof(*st));
	st->path = xstrdup(path);
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
	if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
		hm_err_set(err, HM_ERR_INTERNAL, "store_error", "open database `%s`: %s", path,
		           st->db ? sqlite3_errmsg(st->db) : "out of memory");
		hm_store_close(st);
		return -1;
	}
	sqlite3_busy_timeout(st->db, 5000);
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	st->reserve =
	    slash ? xasprintf("%.*s/.reserve", (int)(slash - dir), dir) : xstrdup(".reserve");
	reserve_ensure(st);
	if (exec_sql(st,
	             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
	             err) < 0 ||
	    migrate(st, err) < 0) {
		hm_err_wrap(err, "open database `%s`", path);
		hm_store_close(st);
		return -1;
	}
	*ret = st;
	return 0;
}

void hm_store_close(struct hm_store *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st->path);
	free(st->reserve);
	free(st);
}

int hm_store_meta_get(struct hm_store *st, const char *key, char **ret_value, struct hm_err **err)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?1", -1, &stmt, NULL) !=
	    SQLITE_OK)
		return db_error(st, err, "prepare meta lookup");
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), r = 0;
	if (rc == SQLITE_ROW)
		*ret_value = xstrdup((const char *)sqlite3_column_text(stmt, 0));
	else if (rc == SQLITE_DONE)
		r = hm_err_set(err, HM_ERR_NOT_FOUND, NULL, "no meta key `%s`", key);
	else
		r = db_error(st, err, "meta lookup");
	sqlite3_finalize(stmt);
	return r;
}

int hm_store_meta_set(struct hm_store *st, const char *key, const char *value, struct hm_err **err)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(st->db,
	                       "INSERT INTO meta(key, value) VALUES (?1, ?2) "
	                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	                       -1, &stmt, NULL) != SQLITE_OK)
		return db_error(st, err, "prepare meta update");
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
	int r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : db_error(st, err, "meta update");
	sqlite3_finalize(stmt);
	return r;
}

/* ---- helpers for the table modules (store/internal.h) ---- */

int hm_store_error(struct hm_store *st, struct hm_err **err, const char *what)
{
	return db_error(st, err, what);
}

int hm_store_prepare(struct hm_store *st, const char *sql, sqlite3_stmt **ret, struct hm_err **err)
{
	if (sqlite3_prepare_v2(st->db, sql, -1, ret, NULL) != SQLITE_OK)
		return db_error(st, err, "prepare statement");
	return 0;
}

int hm_store_step_returning(struct hm_store *st, sqlite3_stmt *s, const char *what,
                            struct hm_err **err)
{
	bool is_delete = strncmp(sqlite3_sql(s), "DELETE", 6) == 0;
	int rc, found;
	for (int attempt = 0;; attempt++) {
		found = 0;
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			found = 1;
			rc = sqlite3_step(s);
		}
		if (rc == SQLITE_DONE || (rc & 0xff) != SQLITE_FULL || !is_delete || attempt > 0 ||
		    unlink(st->reserve) < 0)
			break;
		log_warn("store", "disk full: reserve released for a delete", "file=\"%s\"",
		         st->reserve);
		sqlite3_reset(s);
	}
	if (rc != SQLITE_DONE) {
		db_error(st, err, what);
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	if (is_delete)
		reserve_ensure(st);
	return found;
}

int hm_store_step_done(struct hm_store *st, sqlite3_stmt *s, const char *what, struct hm_err **err)
{
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(st, err, what);
	return 0;
}

/* Rows matching one key: how many (up to 2), the first read into row. */
static int find_step(struct hm_store *st, const char *sql, const char *key, hm_store_read_fn *read,
                     void (*done)(void *row), void *row, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, sql, &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int rc, n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (n++ == 0)
			read(s, row);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		if (n > 0)
			done(row);
		return hm_store_error(st, err, "look up");
	}
	return n;
}

static int find_key(struct hm_store *st, const char *table, const char *cols, const char *what,
                    const char *key, bool uuid, hm_store_read_fn *read, void (*done)(void *row),
                    void *row, struct hm_err **err)
{
	_cleanup_free_ char *by_id = xasprintf("SELECT %s FROM %s WHERE id = ?1", cols, table);
	_cleanup_free_ char *by_uuid =
	    xasprintf("SELECT %s FROM %s WHERE uuid = lower(?1)", cols, table);
	_cleanup_free_ char *by_name = xasprintf("SELECT %s FROM %s WHERE name = ?1", cols, table);
	_cleanup_free_ char *by_prefix = xasprintf(
	    "SELECT %s FROM %s WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2", cols, table);
	int n = find_step(st, by_id, key, read, done, row, err);
	if (n == 0 && uuid && hm_uuid_is(key))
		n = find_step(st, by_uuid, key, read, done, row, err);
	if (n == 0)
		n = find_step(st, by_name, key, read, done, row, err);
	if (n == 0 && *key && strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(key))
		n = find_step(st, by_prefix, key, read, done, row, err);
	if (n < 0)
		return -1;
	if (n == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "%s `%s` not found", what,
		                  key);
	if (n > 1) {
		done(row);
		return hm_err_set(err, HM_ERR_CONFLICT, "ambiguous_id",
		                  "`%s` is a prefix of more than one %s id", key, what);
	}
	return 0;
}

int hm_store_find_by_key(struct hm_store *st, const char *table, const char *cols, const char *what,
                         const char *key, hm_store_read_fn *read, void (*done)(void *row),
                         void *row, struct hm_err **err)
{
	return find_key(st, table, cols, what, key, false, read, done, row, err);
}

int hm_store_find_by_key_or_uuid(struct hm_store *st, const char *table, const char *cols,
                                 const char *what, const char *key, hm_store_read_fn *read,
                                 void (*done)(void *row), void *row, struct hm_err **err)
{
	return find_key(st, table, cols, what, key, true, read, done, row, err);
}

char *hm_store_col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? xstrdup((const char *)t) : NULL;
}

int hm_store_list_rows(struct hm_store *st, const char *sql, size_t row_size,
                       hm_store_read_fn *read, void (*done)(void *row), void **ret, size_t *n,
                       const char *what, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, sql, &s, err) < 0)
		return -1;
	char *rows = NULL;
	size_t count = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		rows = xrealloc(rows, (count + 1) * row_size);
		memset(rows + count * row_size, 0, row_size);
		read(s, rows + count * row_size);
		count++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < count; i++)
			done(rows + i * row_size);
		free(rows);
		return hm_store_error(st, err, what);
	}
	*ret = rows;
	*n = count;
	return 0;
}
