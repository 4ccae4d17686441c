/*
 * store/instances: typed access to the instances table.
 */
#include "store/instances.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "store/internal.h"

void hm_instance_row_done(struct hm_instance_row *r)
{
	free(r->id);
	free(r->name);
	free(r->image);
	free(r->image_digest);
	free(r->spec);
	free(r->phase);
	free(r->exit_message);
	free(r->created_at);
	free(r->started_at);
	free(r->stopped_at);
	free(r->hypervisor);
	free(r->uuid);
	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
}

void hm_instance_rows_free(struct hm_instance_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hm_instance_row_done(&rows[i]);
	free(rows);
}

#define COLS                                                                                       \
	"id, name, image, image_digest, spec, phase, vmm_pid, exit_code, exit_message, "           \
	"created_at, "                                                                             \
	"started_at, stopped_at, hypervisor, uuid, stop_reason, start_count, restart_count"

static void read_row(sqlite3_stmt *s, struct hm_instance_row *r)
{
	r->id = hm_store_col_text(s, 0);
	r->name = hm_store_col_text(s, 1);
	r->image = hm_store_col_text(s, 2);
	r->image_digest = hm_store_col_text(s, 3);
	r->spec = hm_store_col_text(s, 4);
	r->phase = hm_store_col_text(s, 5);
	r->vmm_pid = sqlite3_column_type(s, 6) == SQLITE_NULL ? 0 : (pid_t)sqlite3_column_int(s, 6);
	r->exit_code = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 7);
	r->exit_message = hm_store_col_text(s, 8);
	r->created_at = hm_store_col_text(s, 9);
	r->started_at = hm_store_col_text(s, 10);
	r->stopped_at = hm_store_col_text(s, 11);
	r->hypervisor = hm_store_col_text(s, 12);
	r->uuid = hm_store_col_text(s, 13);
	r->stop_reason = sqlite3_column_int(s, 14);
	r->start_count = sqlite3_column_int(s, 15);
	r->restart_count = sqlite3_column_int(s, 16);
}

static void read_any(sqlite3_stmt *s, void *row)
{
	read_row(s, row);
}

static void done_any(void *row)
{
	hm_instance_row_done(row);
}

static void bind_row(sqlite3_stmt *s, const struct hm_instance_row *r)
{
	sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, r->image, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, r->image_digest ? r->image_digest : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, r->spec ? r->spec : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, r->phase, -1, SQLITE_STATIC);
	if (r->vmm_pid > 0)
		sqlite3_bind_int(s, 7, r->vmm_pid);
	if (r->exit_code >= 0)
		sqlite3_bind_int(s, 8, r->exit_code);
	sqlite3_bind_text(s, 9, r->exit_message, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 10, r->created_at, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 11, r->started_at, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 12, r->stopped_at, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 13, r->hypervisor ? r->hypervisor : "qemu", -1, SQLITE_STATIC);
}

int hm_store_instance_insert(struct hm_store *st, const struct hm_instance_row *r,
                             struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(
	        st,
	        "INSERT INTO instances(" COLS ") VALUES "
	        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, 0, 0)",
	        &s, err) < 0)
		return -1;
	bind_row(s, r);
	char uuid[37];
	if (!r->uuid)
		hm_uuid_new(uuid);
	sqlite3_bind_text(s, 14, r->uuid ? r->uuid : uuid, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return hm_err_set(err, HM_ERR_CONFLICT, "name_conflict",
		                  "an instance named `%s` already exists", r->name);
	if (rc != SQLITE_DONE)
		return hm_store_error(st, err, "save instance");
	return 0;
}

/* Step an UPDATE ... RETURNING id of instance id: 0, or not found, or the store's error. */
static int step_one(struct hm_store *st, sqlite3_stmt *s, const char *id, const char *what,
                    struct hm_err **err)
{
	int found = hm_store_step_returning(st, s, what, err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "instance `%s` not found",
		                  id);
	return found < 0 ? -1 : 0;
}

int hm_store_instance_update(struct hm_store *st, const struct hm_instance_row *r,
                             struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "UPDATE instances SET name = ?2, image = ?3, image_digest = ?4, "
	                     "spec = ?5, phase = ?6, vmm_pid = ?7, exit_code = ?8, "
	                     "exit_message = ?9, created_at = ?10, started_at = ?11, "
	                     "stopped_at = ?12 WHERE id = ?1 RETURNING id",
	                     &s, err) < 0)
		return -1;
	bind_row(s, r);
	return step_one(st, s, r->id, "update instance", err);
}

int hm_store_instance_set_phase(struct hm_store *st, const char *id, const char *phase,
                                struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "UPDATE instances SET phase = ?2 WHERE id = ?1 RETURNING id", &s,
	                     err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, phase, -1, SQLITE_STATIC);
	return step_one(st, s, id, "update instance phase", err);
}

int hm_store_instance_cas_phase(struct hm_store *st, const char *id, const char *from,
                                const char *to, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "UPDATE instances SET phase = ?3 WHERE id = ?1 AND phase = ?2 "
	                     "RETURNING id",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, from, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, to, -1, SQLITE_STATIC);
	return step_one(st, s, id, "update instance phase", err);
}

int hm_store_instance_set_spec(struct hm_store *st, const char *id, const char *spec,
                               struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "UPDATE instances SET spec = ?2 WHERE id = ?1 RETURNING id", &s,
	                     err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, spec, -1, SQLITE_STATIC);
	return step_one(st, s, id, "update instance spec", err);
}

int hm_store_instance_set_stopped(struct hm_store *st, const char *id, pid_t vmm_pid, int exit_code,
                                  const char *exit_message, const char *stopped_at, int stop_reason,
                                  struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(
	        st,
	        "UPDATE instances SET phase = 'Stopped', vmm_pid = 0, exit_code = ?2, "
	        "exit_message = ?3, stopped_at = ?4, stop_reason = ?6 WHERE id = ?1 AND "
	        "(vmm_pid = ?5 OR vmm_pid = 0 OR vmm_pid IS NULL) RETURNING id",
	        &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 5, (int)vmm_pid);
	if (exit_code >= 0)
		sqlite3_bind_int(s, 2, exit_code);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_text(s, 3, exit_message, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, stopped_at, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, stop_reason);
	return step_one(st, s, id, "record an instance's stop", err);
}

int hm_store_instance_count_start(struct hm_store *st, const char *id, bool by_policy,
                                  struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st,
	                     "UPDATE instances SET start_count = start_count + 1, "
	                     "restart_count = restart_count + ?2 WHERE id = ?1 RETURNING id",
	                     &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, by_policy ? 1 : 0);
	return step_one(st, s, id, "count an instance's start", err);
}

/* Run a one-key lookup; 1 if a row was read into *ret, 0 if none, <0 on error. */
static int lookup(struct hm_store *st, const char *sql, const char *key,
                  struct hm_instance_row *ret, int *count, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, sql, &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int rc, n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n++ == 0)
			read_row(s, ret);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		if (n > 0)
			hm_instance_row_done(ret);
		return hm_store_error(st, err, "look up instance");
	}
	if (count)
		*count = n;
	return n > 0;
}

int hm_store_instance_get(struct hm_store *st, const char *id, struct hm_instance_row *ret,
                          struct hm_err **err)
{
	int r = lookup(st, "SELECT " COLS " FROM instances WHERE id = ?1", id, ret, NULL, err);
	if (r == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "instance `%s` not found",
		                  id);
	return r < 0 ? -1 : 0;
}

int hm_store_instance_by_ip(struct hm_store *st, const char *ip, struct hm_instance_row *ret,
                            struct hm_err **err)
{
	int r =
	    lookup(st,
	           "SELECT " COLS " FROM instances WHERE json_extract(spec, '$.network.ip') = ?1 "
	           "ORDER BY created_at LIMIT 1",
	           ip, ret, NULL, err);
	if (r == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "no instance has address %s",
		                  ip);
	return r < 0 ? -1 : 0;
}

int hm_store_instance_find(struct hm_store *st, const char *key, struct hm_instance_row *ret,
                           struct hm_err **err)
{
	int r = lookup(st, "SELECT " COLS " FROM instances WHERE id = ?1", key, ret, NULL, err);
	if (r == 0 && hm_uuid_is(key))
		r = lookup(st, "SELECT " COLS " FROM instances WHERE uuid = lower(?1)", key, ret,
		           NULL, err);
	if (r == 0)
		r = lookup(st, "SELECT " COLS " FROM instances WHERE name = ?1", key, ret, NULL,
		           err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	/* A prefix of an id: ids are lowercase alphanumerics, so no LIKE escapes are needed
	 * once the key is checked to be one. */
	if (!*key || strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(key))
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "instance `%s` not found",
		                  key);
	int count = 0;
	r = lookup(st,
	           "SELECT " COLS " FROM instances WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2",
	           key, ret, &count, err);
	if (r < 0)
		return -1;
	if (count == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "instance `%s` not found",
		                  key);
	if (count > 1) {
		hm_instance_row_done(ret);
		return hm_err_set(err, HM_ERR_CONFLICT, "ambiguous_id",
		                  "`%s` is a prefix of more than one instance id", key);
	}
	return 0;
}

int hm_store_instance_list(struct hm_store *st, struct hm_instance_row **ret, size_t *n,
                           struct hm_err **err)
{
	return hm_store_list_rows(st, "SELECT " COLS " FROM instances ORDER BY created_at, id",
	                          sizeof(**ret), read_any, done_any, (void **)ret, n,
	                          "list instances", err);
}

int hm_store_instance_delete(struct hm_store *st, const char *id, struct hm_err **err)
{
	sqlite3_stmt *s;
	if (hm_store_prepare(st, "DELETE FROM instances WHERE id = ?1 RETURNING id", &s, err) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int found = hm_store_step_returning(st, s, "delete instance", err);
	if (found == 0)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "not_found", "instance `%s` not found",
		                  id);
	return found < 0 ? -1 : 0;
}
