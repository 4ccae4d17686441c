/*
 * Unit tests for store: opening creates and migrates the database, meta
 * get/set round trips and persistence across reopen, resuming from an
 * older schema, refusing a newer one, rolling back a failed migration,
 * and failing cleanly on unusable paths. Each test gets its own temp dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "store/attachments.h"
#include "store/migrations.h"
#include "store/instances.h"
#include "store/snapshots.h"
#include "store/store.h"
#include "store/volumes.h"

struct fixture {
	char dir[64];
	char db[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/hm-test-store.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->db, sizeof(f->db), "%s/hypeman.db", f->dir);
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return r;
}

/* Run SQL on the database file directly, outside the store. */
static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("sqlite: %s", msg ? msg : "?");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* One integer from a query run directly on the file. */
static int raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	int v = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

static bool table_exists(const char *path, const char *name)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
	return raw_int(path, sql) == 1;
}

static struct hm_store *open_ok(const char *path)
{
	struct hm_store *st = NULL;
	struct hm_err *err = NULL;
	if (hm_store_open(path, &st, &err) < 0)
		fail_msg("hm_store_open: %s", err ? err->msg : "(no error)");
	assert_null(err);
	assert_non_null(st);
	return st;
}

static void open_creates_and_migrates(void **state)
{
	struct fixture *f = *state;
	assert_int_not_equal(access(f->db, F_OK), 0);
	struct hm_store *st = open_ok(f->db);
	assert_int_equal(access(f->db, F_OK), 0);
	assert_true(hm_store_latest_schema() >= 1);
	assert_int_equal(hm_store_latest_schema(), (int)hm_migrations_count);
	assert_int_equal(hm_store_schema_version(st), hm_store_latest_schema());
	hm_store_close(st);
	/* what the file itself says */
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), hm_store_latest_schema());
	assert_true(table_exists(f->db, "meta"));
	assert_true(table_exists(f->db, "images"));
	/* WAL mode is persistent in the file */
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	hm_store_close(NULL);
}

static void meta_round_trip(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = open_ok(f->db);
	struct hm_err *err = NULL;
	char *v = NULL;
	assert_int_equal(hm_store_meta_set(st, "created_at", "2024-01-01T00:00:00Z", &err), 0);
	assert_int_equal(hm_store_meta_get(st, "created_at", &v, &err), 0);
	assert_string_equal(v, "2024-01-01T00:00:00Z");
	free(v);

	/* overwrite */
	assert_int_equal(hm_store_meta_set(st, "created_at", "later", &err), 0);
	assert_int_equal(hm_store_meta_get(st, "created_at", &v, &err), 0);
	assert_string_equal(v, "later");
	free(v);

	/* empty, unicode and SQL-looking keys and values are just data */
	const char *k = "it's'; DROP TABLE meta; --";
	assert_int_equal(hm_store_meta_set(st, k, "", &err), 0);
	assert_int_equal(hm_store_meta_set(st, "unicode", "h\xc3\xa9llo \xe2\x9c\x93", &err), 0);
	assert_int_equal(hm_store_meta_get(st, k, &v, &err), 0);
	assert_string_equal(v, "");
	free(v);
	assert_int_equal(hm_store_meta_get(st, "unicode", &v, &err), 0);
	assert_string_equal(v, "h\xc3\xa9llo \xe2\x9c\x93");
	free(v);
	/* other keys are unaffected */
	assert_int_equal(hm_store_meta_get(st, "created_at", &v, &err), 0);
	assert_string_equal(v, "later");
	free(v);
	assert_null(err);
	hm_store_close(st);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM meta"), 3);
}

static void meta_missing_key(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = open_ok(f->db);
	struct hm_err *err = NULL;
	char *v = (char *)"untouched";
	assert_true(hm_store_meta_get(st, "nope", &v, &err) < 0);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	assert_int_equal(hm_err_http_status(err), 404);
	assert_non_null(strstr(err->msg, "nope"));
	assert_string_equal(v, "untouched");
	hm_err_free(err);
	/* keys are case-sensitive */
	err = NULL;
	assert_int_equal(hm_store_meta_set(st, "Key", "1", &err), 0);
	assert_true(hm_store_meta_get(st, "key", &v, &err) < 0);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	hm_store_close(st);
}

static void reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = open_ok(f->db);
	struct hm_err *err = NULL;
	assert_int_equal(hm_store_meta_set(st, "install_id", "abc", &err), 0);
	hm_store_close(st);

	st = open_ok(f->db);
	assert_int_equal(hm_store_schema_version(st), hm_store_latest_schema());
	char *v = NULL;
	assert_int_equal(hm_store_meta_get(st, "install_id", &v, &err), 0);
	assert_string_equal(v, "abc");
	free(v);
	hm_store_close(st);

	/* two handles on the same file see each other's writes */
	struct hm_store *a = open_ok(f->db);
	struct hm_store *b = open_ok(f->db);
	assert_int_equal(hm_store_meta_set(a, "shared", "yes", &err), 0);
	assert_int_equal(hm_store_meta_get(b, "shared", &v, &err), 0);
	assert_string_equal(v, "yes");
	free(v);
	hm_store_close(a);
	hm_store_close(b);
	assert_null(err);
}

static void resumes_from_older_schema(void **state)
{
	struct fixture *f = *state;
	if (hm_migrations_count < 2)
		skip();
	/* a database left at version 1 with data in it */
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "%s INSERT INTO meta(key, value) VALUES ('old', 'kept'); PRAGMA user_version = 1;",
	         hm_migrations[0]);
	raw_exec(f->db, sql);
	assert_false(table_exists(f->db, "images"));

	struct hm_store *st = open_ok(f->db);
	assert_int_equal(hm_store_schema_version(st), hm_store_latest_schema());
	char *v = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_store_meta_get(st, "old", &v, &err), 0);
	assert_string_equal(v, "kept");
	free(v);
	hm_store_close(st);
	assert_true(table_exists(f->db, "images"));
}

static void newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	int newer = hm_store_latest_schema() + 1;
	char sql[128];
	snprintf(sql, sizeof(sql), "CREATE TABLE future(x); PRAGMA user_version = %d;", newer);
	raw_exec(f->db, sql);

	struct hm_store *st = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_store_open(f->db, &st, &err) < 0);
	assert_null(st);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	assert_string_equal(hm_err_code(err), "store_error");
	assert_non_null(strstr(err->msg, "newer"));
	assert_non_null(strstr(err->msg, f->db));
	hm_err_free(err);

	/* and it was not touched */
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), newer);
	assert_false(table_exists(f->db, "meta"));
	assert_true(table_exists(f->db, "future"));
}

static void failed_migration_rolls_back(void **state)
{
	struct fixture *f = *state;
	if (hm_migrations_count < 2)
		skip();
	/*
	 * Version 1, plus an index already named like the one migration 2
	 * creates after its table: the migration fails half way and must
	 * leave neither its table nor a version bump behind.
	 */
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "%s CREATE TABLE other(x); CREATE INDEX images_digest ON other(x);"
	         " PRAGMA user_version = 1;",
	         hm_migrations[0]);
	raw_exec(f->db, sql);

	struct hm_store *st = NULL;
	struct hm_err *err = NULL;
	assert_true(hm_store_open(f->db, &st, &err) < 0);
	assert_null(st);
	assert_non_null(err);
	assert_non_null(strstr(err->msg, "migration 2"));
	hm_err_free(err);
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), 1);
	assert_false(table_exists(f->db, "images"));
	assert_true(table_exists(f->db, "meta"));
}

static void unusable_paths(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = NULL;
	struct hm_err *err = NULL;

	/* a directory that does not exist */
	char path[256];
	snprintf(path, sizeof(path), "%s/missing/hypeman.db", f->dir);
	assert_true(hm_store_open(path, &st, &err) < 0);
	assert_null(st);
	assert_non_null(err);
	assert_string_equal(hm_err_code(err), "store_error");
	hm_err_free(err);
	err = NULL;

	/* a file that is not a database */
	FILE *fp = fopen(f->db, "w");
	assert_non_null(fp);
	for (int i = 0; i < 64; i++)
		fputs("this is not an sqlite database, just text\n", fp);
	fclose(fp);
	assert_true(hm_store_open(f->db, &st, &err) < 0);
	assert_null(st);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_INTERNAL);
	hm_err_free(err);
}

static struct hm_instance_row inst_row(char *id, char *name)
{
	return (struct hm_instance_row){
		.id = id,
		.name = name,
		.image = (char *)"docker.io/library/busybox:latest",
		.image_digest = (char *)"sha256:00",
		.spec = (char *)"{}",
		.phase = (char *)"Created",
		.exit_code = -1,
		.created_at = (char *)"2026-01-01T00:00:00.000Z",
	};
}

/* Instances: unique names, lookup by id, name and unique id prefix, update, delete. */
static void instances_table(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = open_ok(f->db);
	struct hm_err *err = NULL;
	struct hm_instance_row a = inst_row((char *)"abc111", (char *)"web");
	struct hm_instance_row b = inst_row((char *)"abc222", (char *)"db");
	assert_int_equal(hm_store_instance_insert(st, &a, &err), 0);
	assert_int_equal(hm_store_instance_insert(st, &b, &err), 0);
	struct hm_instance_row dup = inst_row((char *)"zzz999", (char *)"web");
	assert_int_equal(hm_store_instance_insert(st, &dup, &err), -1);
	assert_int_equal(err->kind, HM_ERR_CONFLICT);
	hm_err_free(err);
	err = NULL;

	struct hm_instance_row got = { 0 };
	assert_int_equal(hm_store_instance_find(st, "web", &got, &err), 0);
	assert_string_equal(got.id, "abc111");
	assert_int_equal(got.exit_code, -1);
	assert_int_equal(got.vmm_pid, 0);
	hm_instance_row_done(&got);
	assert_int_equal(hm_store_instance_find(st, "abc2", &got, &err), 0);
	assert_string_equal(got.name, "db");
	hm_instance_row_done(&got);
	/* ambiguous prefix: 409; unknown: 404; a LIKE pattern is not a prefix */
	assert_int_equal(hm_store_instance_find(st, "abc", &got, &err), -1);
	assert_int_equal(err->kind, HM_ERR_CONFLICT);
	hm_err_free(err);
	err = NULL;
	const char *missing[] = { "nope", "%", "a_c", "" };
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		assert_int_equal(hm_store_instance_find(st, missing[i], &got, &err), -1);
		assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
		hm_err_free(err);
		err = NULL;
	}

	b.phase = (char *)"Stopped";
	b.exit_code = 3;
	b.exit_message = (char *)"exit status 3";
	b.vmm_pid = 4242;
	assert_int_equal(hm_store_instance_update(st, &b, &err), 0);
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_string_equal(got.phase, "Stopped");
	assert_int_equal(got.exit_code, 3);
	assert_int_equal(got.vmm_pid, 4242);
	assert_string_equal(got.exit_message, "exit status 3");
	hm_instance_row_done(&got);
	struct hm_instance_row ghost = inst_row((char *)"ghost", (char *)"ghost");
	assert_int_equal(hm_store_instance_update(st, &ghost, &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;

	/* The monitor's narrow updates touch only their columns... */
	b.phase = (char *)"Booting";
	b.spec = (char *)"{\"changed\":true}";
	assert_int_equal(hm_store_instance_update(st, &b, &err), 0);
	assert_int_equal(hm_store_instance_set_phase(st, "abc222", "Running", &err), 0);
	/* ...and a VM's end is recorded only while the row still records that VMM */
	assert_int_equal(hm_store_instance_set_stopped(st, "abc222", 1111, 0, "x", "t", 3, &err),
	                 -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(hm_store_instance_set_stopped(st, "abc222", 4242, 7, "exit status 7", "t1",
	                                               HM_STOP_APP | HM_STOP_KERNEL, &err),
	                 0);
	/* Starts are counted in place; an update of the row leaves the counts. */
	assert_int_equal(hm_store_instance_count_start(st, "abc222", false, &err), 0);
	assert_int_equal(hm_store_instance_count_start(st, "abc222", true, &err), 0);
	assert_int_equal(hm_store_instance_count_start(st, "ghost", true, &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_int_equal(got.stop_reason, HM_STOP_APP | HM_STOP_KERNEL);
	assert_int_equal(got.start_count, 2);
	assert_int_equal(got.restart_count, 1);
	assert_string_equal(got.phase, "Stopped");
	assert_int_equal(got.vmm_pid, 0);
	assert_int_equal(got.exit_code, 7);
	assert_string_equal(got.exit_message, "exit status 7");
	assert_string_equal(got.stopped_at, "t1");
	assert_string_equal(got.spec, "{\"changed\":true}");
	hm_instance_row_done(&got);
	assert_int_equal(hm_store_instance_set_phase(st, "ghost", "Running", &err), -1);
	hm_err_free(err);
	err = NULL;

	/* The runtime is recorded at insert (qemu when none is named) and kept. */
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_string_equal(got.hypervisor, "qemu");
	hm_instance_row_done(&got);

	/* The program's start moves Booting to Running, and nothing else: the VM's
	 * end recorded first stays (no Running over Stopped). */
	assert_int_equal(hm_store_instance_cas_phase(st, "abc222", "Booting", "Running", &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_string_equal(got.phase, "Stopped");
	hm_instance_row_done(&got);
	/* A PATCH's spec goes in alone: the recorded end is neither undone nor lost. */
	assert_int_equal(hm_store_instance_set_spec(st, "abc222", "{\"env\":{\"A\":\"1\"}}", &err),
	                 0);
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_string_equal(got.spec, "{\"env\":{\"A\":\"1\"}}");
	assert_string_equal(got.phase, "Stopped");
	assert_int_equal(got.exit_code, 7);
	assert_string_equal(got.stopped_at, "t1");
	hm_instance_row_done(&got);
	assert_int_equal(hm_store_instance_set_spec(st, "ghost", "{}", &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	b.phase = (char *)"Booting";
	assert_int_equal(hm_store_instance_update(st, &b, &err), 0);
	assert_int_equal(hm_store_instance_cas_phase(st, "abc222", "Booting", "Running", &err), 0);
	assert_int_equal(hm_store_instance_get(st, "abc222", &got, &err), 0);
	assert_string_equal(got.phase, "Running");
	hm_instance_row_done(&got);

	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(hm_store_instance_list(st, &rows, &n, &err), 0);
	assert_int_equal(n, 2);
	hm_instance_rows_free(rows, n);
	assert_int_equal(hm_store_instance_delete(st, "abc111", &err), 0);
	assert_int_equal(hm_store_instance_delete(st, "abc111", &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	hm_store_close(st);
}

static struct hm_snapshot_row snap_row(const char *id, const char *name, const char *source)
{
	return (struct hm_snapshot_row){
		.id = (char *)id,
		.name = (char *)name,
		.kind = (char *)"Standby",
		.source_id = (char *)source,
		.source_name = (char *)"web",
		.meta = (char *)"{\"image\":\"x\"}",
		.created_at = (char *)"2026-11-27T00:00:00Z",
	};
}

/* Names are unique per source, not globally; unnamed snapshots never collide. */
static void snapshots_table(void **state)
{
	struct fixture *f = *state;
	struct hm_store *st = open_ok(f->db);
	struct hm_err *err = NULL;
	struct hm_snapshot_row a = snap_row("snapaaa1", "base", "inst1");
	struct hm_snapshot_row b = snap_row("snapbbb2", "base", "inst2");
	struct hm_snapshot_row c = snap_row("snapccc3", NULL, "inst1");
	struct hm_snapshot_row d = snap_row("snapddd4", NULL, "inst1");
	assert_int_equal(hm_store_snapshot_insert(st, &a, &err), 0);
	assert_int_equal(hm_store_snapshot_insert(st, &b, &err), 0);
	assert_int_equal(hm_store_snapshot_insert(st, &c, &err), 0);
	assert_int_equal(hm_store_snapshot_insert(st, &d, &err), 0);
	struct hm_snapshot_row dup = snap_row("snapeee5", "base", "inst1");
	assert_int_equal(hm_store_snapshot_insert(st, &dup, &err), -1);
	assert_int_equal(err->kind, HM_ERR_CONFLICT);
	assert_non_null(strstr(err->msg, "base"));
	hm_err_free(err);
	err = NULL;

	struct hm_snapshot_row got = { 0 };
	assert_int_equal(hm_store_snapshot_find(st, "snapccc", &got, &err), 0);
	assert_string_equal(got.id, "snapccc3");
	assert_null(got.name);
	assert_string_equal(got.tags, "{}");
	assert_string_equal(got.meta, "{\"image\":\"x\"}");
	hm_snapshot_row_done(&got);
	struct hm_snapshot_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(hm_store_snapshot_list(st, &rows, &n, &err), 0);
	assert_int_equal(n, 4);
	hm_snapshot_rows_free(rows, n);
	assert_int_equal(hm_store_snapshot_delete(st, "snapaaa1", &err), 0);
	assert_int_equal(hm_store_snapshot_delete(st, "snapaaa1", &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	/* the name is free again for its source */
	assert_int_equal(hm_store_snapshot_insert(st, &dup, &err), 0);
	hm_store_close(st);
}

/*
 * Attachments: filled from the specs by migration 8 (a volume that is gone
 * keeps no row), a volume still attached cannot be deleted, an instance's
 * rows go with it, and a set is exact.
 */
static void attachments_table(void **state)
{
	struct fixture *f = *state;
	char sql[16384];
	size_t off = 0;
	for (size_t i = 0; i < 7; i++)
		off += (size_t)snprintf(sql + off, sizeof(sql) - off, "%s\n", hm_migrations[i]);
	snprintf(
	    sql + off, sizeof(sql) - off,
	    "INSERT INTO volumes(id, name, size_gb, created_at) VALUES ('vol1', 'data', 1, 't');"
	    "INSERT INTO volumes(id, name, size_gb, created_at) VALUES ('vol2', 'more', 1, 't');"
	    "INSERT INTO instances(id, name, image, image_digest, spec, phase, created_at) "
	    "VALUES ('inst1', 'web', 'img', '', '{\"volumes\":[{\"id\":\"vol1\","
	    "\"mount_path\":\"/data\",\"readonly\":true},{\"id\":\"gone\","
	    "\"mount_path\":\"/x\",\"readonly\":false}]}', 'Stopped', 't');"
	    "PRAGMA user_version = 7;");
	raw_exec(f->db, sql);
	struct hm_store *st = open_ok(f->db);
	struct hm_attachment_row *rows = NULL;
	size_t n = 0;
	struct hm_err *err = NULL;
	assert_int_equal(hm_store_attachments_of_volume(st, "vol1", &rows, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].instance_id, "inst1");
	assert_string_equal(rows[0].instance_name, "web");
	assert_string_equal(rows[0].mount_path, "/data");
	assert_true(rows[0].readonly);
	hm_attachment_rows_free(rows, n);
	/* Attached: the database refuses the volume's delete. */
	assert_int_equal(hm_store_volume_delete(st, "vol1", &err), -1);
	assert_int_equal(err->kind, HM_ERR_CONFLICT);
	assert_string_equal(err->code, "in_use");
	hm_err_free(err);
	err = NULL;
	/* A set is exact: vol2 in, vol1 out; a volume that does not exist is a 404. */
	struct hm_attachment_row want[] = { { .volume_id = (char *)"vol2",
		                              .mount_path = (char *)"/more" } };
	assert_int_equal(hm_store_attachments_set(st, "inst1", want, 1, &err), 0);
	assert_int_equal(hm_store_attachments_of_volume(st, "vol1", &rows, &n, &err), 0);
	assert_int_equal(n, 0);
	hm_attachment_rows_free(rows, n);
	struct hm_attachment_row ghost[] = { { .volume_id = (char *)"nope",
		                               .mount_path = (char *)"/n" } };
	assert_int_equal(hm_store_attachments_set(st, "inst1", ghost, 1, &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(hm_store_attachments_of_volume(st, "vol2", &rows, &n, &err), 0);
	assert_int_equal(n, 1); /* the failed set left the rows as they were */
	hm_attachment_rows_free(rows, n);
	assert_int_equal(hm_store_volume_delete(st, "vol1", &err), 0);
	/* The instance goes: its attachments with it, and the volume can go. */
	assert_int_equal(hm_store_instance_delete(st, "inst1", &err), 0);
	assert_int_equal(hm_store_attachments_of_volume(st, "vol2", &rows, &n, &err), 0);
	assert_int_equal(n, 0);
	hm_attachment_rows_free(rows, n);
	assert_int_equal(hm_store_volume_delete(st, "vol2", &err), 0);
	hm_store_close(st);
}

int main(void)
{
	hm_log_set_level(HM_LOG_WARN); /* quiet the per-migration info lines */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(open_creates_and_migrates, setup, teardown),
		cmocka_unit_test_setup_teardown(meta_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(meta_missing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(resumes_from_older_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(failed_migration_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(unusable_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(instances_table, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshots_table, setup, teardown),
		cmocka_unit_test_setup_teardown(attachments_table, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
