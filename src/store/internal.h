/*
 * What the store's table modules share: the connection and statement
 * helpers. Private to src/store/.
 */
#pragma once

#include <sqlite3.h>

struct hm_err;
struct hm_store;

int hm_store_prepare(struct hm_store *st, const char *sql, sqlite3_stmt **ret, struct hm_err **err);
/* Step a statement that returns no rows, finalize it; < 0 on failure. */
int hm_store_step_done(struct hm_store *st, sqlite3_stmt *s, const char *what, struct hm_err **err);
/* Step a one-row `... RETURNING` statement, finalize it: 1 if it touched a row, 0 if
 * none, < 0 on failure. RETURNING tells this statement's own effect, whatever
 * other connections do. */
int hm_store_step_returning(struct hm_store *st, sqlite3_stmt *s, const char *what,
                            struct hm_err **err);
int hm_store_error(struct hm_store *st, struct hm_err **err, const char *what);

/* Fill a row struct from the current row of a statement (columns as the caller selected). */
typedef void hm_store_read_fn(sqlite3_stmt *s, void *row);

/* Column i as a new string, or NULL for SQL NULL. */
char *hm_store_col_text(sqlite3_stmt *s, int i);

/*
 * Every row `sql` selects, as a new array of *n rows of row_size bytes each
 * (zeroed, then filled by read). On failure the rows read so far are freed
 * with done, and the error names `what`.
 */
int hm_store_list_rows(struct hm_store *st, const char *sql, size_t row_size,
                       hm_store_read_fn *read, void (*done)(void *row), void **ret, size_t *n,
                       const char *what, struct hm_err **err);

/*
 * SELECT cols FROM table by key: an exact id, else (for a table with a uuid
 * column, when key is a UUID) its uuid, else an exact name, else a
 * unique prefix of an id (lowercase alphanumerics only). The row is read
 * into *row with read; done frees a row read by mistake. Missing:
 * HM_ERR_NOT_FOUND "<what> `key` not found"; several by prefix:
 * HM_ERR_CONFLICT ambiguous_id.
 */
int hm_store_find_by_key(struct hm_store *st, const char *table, const char *cols, const char *what,
                         const char *key, hm_store_read_fn *read, void (*done)(void *row),
                         void *row, struct hm_err **err);
/* The same for a table with a uuid column. */
int hm_store_find_by_key_or_uuid(struct hm_store *st, const char *table, const char *cols,
                                 const char *what, const char *key, hm_store_read_fn *read,
                                 void (*done)(void *row), void *row, struct hm_err **err);
