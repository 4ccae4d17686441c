/*
 * The state store: one SQLite database in the data dir (`hypeman.db`).
 * This module is the only includer of <sqlite3.h>; everything else sees
 * typed functions. Writes are transactions; the schema evolves through
 * numbered migrations recorded in PRAGMA user_version.
 */
#pragma once

struct hm_err;
struct hm_store;

/* Open (creating if needed) and migrate the database at `path`. */
int hm_store_open(const char *path, struct hm_store **ret, struct hm_err **err);
void hm_store_close(struct hm_store *st);

/* The schema version the database is at, and the newest this build knows. */
int hm_store_schema_version(struct hm_store *st);
int hm_store_latest_schema(void);

/* Small key/value facts about this installation (created_at, ...). Missing key: HM_ERR_NOT_FOUND.
 */
int hm_store_meta_get(struct hm_store *st, const char *key, char **ret_value, struct hm_err **err);
int hm_store_meta_set(struct hm_store *st, const char *key, const char *value, struct hm_err **err);
