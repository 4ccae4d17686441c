/*
 * instance/snapshots: snapshots as objects. A snapshot is an immutable
 * copy of an instance's payload (payload.h) in $DATA_DIR/snapshots/<id>/,
 * with a row (store/snapshots.h) that keeps what bringing it back needs:
 * the source's image, digest and spec. It outlives its source.
 *
 * Kinds: Standby (disks, memory and device state, taken from a Running
 * instance, which is paused only for the save and the copy, or from one in
 * Standby) and Stopped (disks only, from a Stopped instance). A snapshot
 * comes back either in place, onto its own source instance, or as a new
 * instance (a fork, with its own identity).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/names.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "instance/command.h"
#include "instance/instances.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"
#include "store/snapshots.h"

static char *snap_dir(struct hm_instances *in, const char *id)
{
	return xasprintf("%s/snapshots/%s", in->cfg->data_dir, id);
}

const char *hm_snapshot_kind_name(enum hm_snapshot_kind k)
{
	return k == HM_SNAPSHOT_STANDBY ? "Standby" : "Stopped";
}

static enum hm_snapshot_kind kind_of(const char *text)
{
	return text && strcmp(text, "Standby") == 0 ? HM_SNAPSHOT_STANDBY : HM_SNAPSHOT_STOPPED;
}

static void view_done(struct hm_snapshot_view *v)
{
	free(v->id);
	free(v->uuid);
	free(v->name);
	json_decref(v->tags);
	free(v->source_id);
	free(v->source_name);
	free(v->hypervisor);
	free(v->created_at);
	free(v->image);
	memset(v, 0, sizeof(*v));
}

void hm_snapshot_view_free(struct hm_snapshot_view *v)
{
	hm_snapshot_views_free(v, 1);
}

void hm_snapshot_views_free(struct hm_snapshot_view *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		view_done(&v[i]);
	free(v);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void view_of(struct hm_instances *in, const struct hm_snapshot_row *r,
                    struct hm_snapshot_view *v)
{
	json_t *meta = json_loads(r->meta ? r->meta : "{}", 0, NULL);
	json_t *tags = json_loads(r->tags ? r->tags : "{}", 0, NULL);
	_cleanup_free_ char *dir = snap_dir(in, r->id);
	json_t *comp = json_object_get(meta, "compression");
	json_t *cs = json_object_get(meta, "compressed_size_bytes");
	json_t *us = json_object_get(meta, "uncompressed_size_bytes");
	*v = (struct hm_snapshot_view){
		.id = xstrdup(r->id),
		.uuid = dup_or_null(r->uuid),
		.name = dup_or_null(r->name),
		.kind = kind_of(r->kind),
		.tags = json_is_object(tags) ? json_incref(tags) : json_object(),
		.source_id = xstrdup(r->source_id),
		.source_name = xstrdup(r->source_name),
		.hypervisor = xstrdup(r->hypervisor ? r->hypervisor : "qemu"),
		.created_at = xstrdup(r->created_at),
		.size_bytes = hm_payload_disk_bytes(dir),
		.compressed = json_is_true(json_object_get(comp, "enabled")),
		.level = (int)json_integer_value(json_object_get(comp, "level")),
		.compressed_bytes = json_is_integer(cs) ? json_integer_value(cs) : -1,
		.uncompressed_bytes = json_is_integer(us) ? json_integer_value(us) : -1,
		.image = dup_or_null(json_string_value(json_object_get(meta, "image"))),
	};
	json_t *spec = json_object_get(meta, "spec");
	v->vcpus = (int)json_integer_value(json_object_get(spec, "vcpus"));
	v->mem_bytes = json_integer_value(json_object_get(spec, "mem_bytes"));
	json_decref(tags);
	json_decref(meta);
}

static struct hm_snapshot_view *view_new(struct hm_instances *in, const struct hm_snapshot_row *r)
{
	struct hm_snapshot_view *v = xcalloc(1, sizeof(*v));
	view_of(in, r, v);
	return v;
}

/* ---- create ---- */

/* Is `name` already a snapshot of source_id? (The insert checks again.) */
static bool name_taken(struct hm_instances *in, const char *source_id, const char *name)
{
	struct hm_snapshot_row *rows = NULL;
	size_t n = 0;
	bool taken = false;
	if (hm_store_snapshot_list(in->st, &rows, &n, NULL) < 0)
		return false;
	for (size_t i = 0; i < n && !taken; i++)
		taken = rows[i].name && strcmp(rows[i].source_id, source_id) == 0 &&
		        strcmp(rows[i].name, name) == 0;
	hm_snapshot_rows_free(rows, n);
	return taken;
}

static int check_create(const struct hm_snapshot_create *c, struct hm_err **err)
{
	if (c->kind != HM_SNAPSHOT_STANDBY && c->kind != HM_SNAPSHOT_STOPPED)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`kind` must be Standby or Stopped");
	if (c->name && hm_name_check("snapshot", c->name, err) < 0)
		return -1;
	if (c->tags && !json_is_null(c->tags) && hm_tags_validate(c->tags, err) < 0)
		return -1;
	return hm_payload_opts_check(&(struct hm_payload_opts){ c->compress, c->level }, err);
}

int hm_snapshots_create(struct hm_instances *in, const char *key,
                        const struct hm_snapshot_create *c, struct hm_snapshot_view **ret,
                        struct hm_err **err)
{
	if (check_create(c, err) < 0)
		return -1;
	const char *kind = hm_snapshot_kind_name(c->kind), *name = c->name;
	json_t *tags = c->tags && !json_is_null(c->tags) ? c->tags : NULL;
	struct hm_payload_opts opts = { .compress = c->compress, .level = c->level };
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	json_t *spec = inst_spec_of(&row);
	bool running = state == HM_STATE_RUNNING;
	bool standby = state == HM_STATE_STANDBY;
	int r = 0;
	if (strcmp(kind, "Standby") == 0 && !running && !standby)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; a Standby snapshot needs a Running or Standby "
		               "instance",
		               row.name, hm_state_name(state));
	else if (strcmp(kind, "Stopped") == 0 && state != HM_STATE_STOPPED)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; a Stopped snapshot needs a Stopped instance",
		               row.name, hm_state_name(state));
	else if (name && name_taken(in, row.id, name))
		r = hm_err_set(err, HM_ERR_CONFLICT, "already_exists",
		               "instance `%s` already has a snapshot named `%s`", row.name, name);
	else
		r = inst_check_forkable(spec, row.name, err);
	char id[25], uuid[37];
	hm_id_new(id);
	hm_uuid_new(uuid);
	_cleanup_free_ char *dir = snap_dir(in, id);
	unsigned long long copied = 0;
	double t0 = inst_mono_ms();
	if (r == 0)
		r = inst_capture(in, &row, spec, running, strcmp(kind, "Standby") == 0, dir, 0,
		                 &copied, err);
	double t_copy = inst_mono_ms();
	json_t *meta = json_pack("{s:s,s:s,s:O}", "image", row.image, "image_digest",
	                         row.image_digest ? row.image_digest : "", "spec", spec);
	bool already = hm_payload_file_size(dir, HM_PAYLOAD_MEMORY_ZST) >= 0;
	if (r == 0 && already) {
		/* Copied from an instance whose standby compressed its memory. */
		json_object_set_new(meta, "compression",
		                    json_pack("{s:b,s:s}", "enabled", 1, "algorithm", "zstd"));
		json_object_set_new(meta, "compressed_size_bytes",
		                    json_integer(hm_payload_file_size(dir, HM_PAYLOAD_MEMORY_ZST)));
	} else if (r == 0 && opts.compress && strcmp(kind, "Standby") == 0) {
		int64_t cs = 0, us = 0;
		if (hm_payload_compress(dir, &opts, &cs, &us) < 0) {
			r = hm_err_set(
			    err, HM_ERR_INTERNAL, NULL,
			    "compressing the snapshot's memory failed (see the daemon log)");
		} else {
			json_object_set_new(meta, "compression",
			                    json_pack("{s:b,s:s,s:i}", "enabled", 1, "algorithm",
			                              "zstd", "level", opts.level));
			json_object_set_new(meta, "compressed_size_bytes", json_integer(cs));
			json_object_set_new(meta, "uncompressed_size_bytes", json_integer(us));
		}
	}
	_cleanup_free_ char *meta_text = json_dumps(meta, JSON_COMPACT);
	_cleanup_free_ char *tags_text = tags ? json_dumps(tags, JSON_COMPACT) : xstrdup("{}");
	_cleanup_free_ char *created = hm_now_rfc3339();
	struct hm_snapshot_row sr = {
		.id = id,
		.name = (char *)name,
		.kind = (char *)kind,
		.source_id = row.id,
		.source_name = row.name,
		.tags = tags_text,
		.meta = meta_text,
		.created_at = created,
		.hypervisor = row.hypervisor,
		.uuid = uuid,
	};
	if (r == 0)
		r = hm_store_snapshot_insert(in->st, &sr, err);
	if (r < 0) {
		hm_rm_rf(dir, NULL);
	} else {
		inst_oplog(in, row.id,
		           "msg=\"snapshot taken\" snapshot=%s kind=%s copy_ms=%.1f "
		           "total_ms=%.1f copied_bytes=%llu",
		           id, kind, t_copy - t0, inst_mono_ms() - t0, copied);
		log_info("snapshots", "created", "id=%s source=%s kind=%s ms=%.1f", id, row.name,
		         kind, inst_mono_ms() - t0);
		*ret = view_new(in, &sr);
	}
	json_decref(meta);
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* ---- read, list, delete ---- */

int hm_snapshots_get(struct hm_instances *in, const char *key, struct hm_snapshot_view **ret,
                     struct hm_err **err)
{
	struct hm_snapshot_row r = { 0 };
	if (hm_store_snapshot_find(in->st, key, &r, err) < 0)
		return -1;
	*ret = view_new(in, &r);
	hm_snapshot_row_done(&r);
	return 0;
}

int hm_snapshots_list(struct hm_instances *in, const char *source_id, int kind, const char *name,
                      json_t *tags, struct hm_snapshot_view **ret, size_t *n, struct hm_err **err)
{
	struct hm_snapshot_row *rows = NULL;
	size_t count = 0;
	if (hm_store_snapshot_list(in->st, &rows, &count, err) < 0)
		return -1;
	struct hm_snapshot_view *out = xcalloc(count ? count : 1, sizeof(*out));
	size_t k = 0;
	for (size_t i = 0; i < count; i++) {
		const struct hm_snapshot_row *r = &rows[i];
		if ((source_id && strcmp(r->source_id, source_id) != 0) ||
		    (kind >= 0 && kind_of(r->kind) != (enum hm_snapshot_kind)kind) ||
		    (name && (!r->name || strcmp(r->name, name) != 0)))
			continue;
		view_of(in, r, &out[k]);
		if (tags && !hm_tags_match(out[k].tags, tags))
			view_done(&out[k]);
		else
			k++;
	}
	hm_snapshot_rows_free(rows, count);
	*ret = out;
	*n = k;
	return 0;
}

int hm_snapshots_delete(struct hm_instances *in, const char *key, struct hm_err **err)
{
	struct hm_snapshot_row r = { 0 };
	if (hm_store_snapshot_find(in->st, key, &r, err) < 0)
		return -1;
	_cleanup_free_ char *dir = snap_dir(in, r.id);
	/* The row goes first: a half-removed folder is never offered as a snapshot. */
	int rc = hm_store_snapshot_delete(in->st, r.id, err);
	if (rc == 0 && hm_rm_rf(dir, NULL) < 0)
		log_warn("snapshots", "payload not fully removed", "id=%s dir=%s", r.id, dir);
	if (rc == 0)
		log_info("snapshots", "deleted", "id=%s", r.id);
	hm_snapshot_row_done(&r);
	return rc;
}

/* ---- bringing one back ---- */

static int check_hypervisor(const char *h, const char *kind, struct hm_err **err)
{
	if (!h)
		return 0;
	if (strcmp(h, "qemu") == 0 || strcmp(h, "qemu-microvm") == 0)
		return 0;
	if (strcmp(kind, "Standby") == 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "a Standby snapshot comes back on the hypervisor it was taken on "
		                  "(qemu), not %s",
		                  h);
	return hm_err_set(err, HM_ERR_NOT_IMPLEMENTED, "unsupported_hypervisor",
	                  "hypervisor `%s` is not available on this host (QEMU is)", h);
}

static int check_target(const char *t, struct hm_err **err)
{
	if (t && strcmp(t, "Stopped") != 0 && strcmp(t, "Standby") != 0 &&
	    strcmp(t, "Running") != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_target_state",
		                  "`target_state` must be Stopped, Standby or Running");
	return 0;
}

static const char *default_target(const char *kind)
{
	return strcmp(kind, "Standby") == 0 ? "Running" : "Stopped";
}

struct snap_fill {
	const char *dir;
	json_t *spec;
	bool memory;
	unsigned flags; /* HM_PAYLOAD_IN_PLACE once presized */
};

static int fill_from_snapshot(void *ctx, const char *dst, unsigned long long *copied,
                              struct hm_err **err)
{
	struct snap_fill *f = ctx;
	return hm_payload_copy(f->dir, dst, f->spec, f->memory, NULL, f->flags, copied, err);
}

static int presize_from_snapshot(void *ctx, const char *dst, struct hm_err **err)
{
	struct snap_fill *f = ctx;
	int r = hm_payload_presize(f->dir, dst, f->spec, f->memory, NULL, err);
	if (r == 1)
		f->flags |= HM_PAYLOAD_IN_PLACE;
	return r;
}

int hm_snapshots_fork(struct hm_instances *in, const char *snapshot,
                      const struct hm_snapshot_bring *b, struct hm_instance_view **ret,
                      struct hm_err **err)
{
	if (!b->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (hm_name_check("instance", b->name, err) < 0 || check_target(b->target_state, err) < 0)
		return -1;
	struct hm_snapshot_row sr = { 0 };
	if (hm_store_snapshot_find(in->st, snapshot, &sr, err) < 0)
		return -1;
	int r = check_hypervisor(b->target_hypervisor, sr.kind, err);
	json_t *meta = json_loads(sr.meta ? sr.meta : "{}", 0, NULL);
	_cleanup_free_ char *dir = snap_dir(in, sr.id);
	_cleanup_free_ char *what = xasprintf("snapshot %s of %s", sr.id, sr.source_name);
	if (r == 0) {
		struct snap_fill f = { dir, json_object_get(meta, "spec"),
			               strcmp(sr.kind, "Standby") == 0 };
		struct inst_source src = {
			.name = what,
			.hypervisor = sr.hypervisor,
			.image = json_string_value(json_object_get(meta, "image")),
			.image_digest = json_string_value(json_object_get(meta, "image_digest")),
			.spec = f.spec ? f.spec : json_object_get(meta, "spec"),
			.kind = sr.kind,
			.default_target = default_target(sr.kind),
			.fill = fill_from_snapshot,
			.presize = presize_from_snapshot,
			.ctx = &f,
		};
		if (!src.image || !json_is_object(src.spec))
			r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "snapshot %s has no source spec",
			               sr.id);
		else
			r = inst_new_from(in, &src, b->name, b->target_state, ret, err);
	}
	json_decref(meta);
	hm_snapshot_row_done(&sr);
	return r;
}

/* Replace an instance's payload with the snapshot's: copied aside first, then renamed in. */
static int replace_payload(struct hm_instances *in, const char *id, const char *snapdir,
                           json_t *spec, bool memory, struct hm_err **err)
{
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	_cleanup_free_ char *tmp = inst_path(in, id, "restore.tmp");
	hm_rm_rf(tmp, NULL);
	inst_warm_drop(in, id); /* it waits for the state being replaced */
	if (hm_payload_copy(snapdir, tmp, spec, memory, NULL, 0, NULL, err) < 0) {
		hm_rm_rf(tmp, NULL);
		return -1;
	}
	hm_payload_drop_memory(dir);
	DIR *d = opendir(tmp);
	if (!d) {
		int e = errno;
		hm_rm_rf(tmp, NULL);
		return hm_err_errno(err, e, "open `%s`", tmp);
	}
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		_cleanup_free_ char *from = xasprintf("%s/%s", tmp, e->d_name);
		_cleanup_free_ char *to = xasprintf("%s/%s", dir, e->d_name);
		if (rename(from, to) < 0)
			r = hm_err_errno(err, errno, "move `%s` into place", from);
	}
	closedir(d);
	hm_rm_rf(tmp, NULL);
	return r;
}

int hm_snapshots_restore(struct hm_instances *in, const char *key, const char *snapshot,
                         const struct hm_snapshot_bring *b, struct hm_instance_view **ret,
                         struct hm_err **err)
{
	if (check_target(b->target_state, err) < 0)
		return -1;
	struct hm_instance_row row = { .exit_code = -1 };
	struct hm_snapshot_row sr = { 0 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	if (hm_store_snapshot_find(in->st, snapshot, &sr, err) < 0) {
		inst_op_unlock(in, row.id);
		hm_instance_row_done(&row);
		return -1;
	}
	enum hm_state state = inst_state(in, &row);
	bool standby_kind = strcmp(sr.kind, "Standby") == 0;
	const char *to = b->target_state ? b->target_state : default_target(sr.kind);
	json_t *meta = json_loads(sr.meta ? sr.meta : "{}", 0, NULL);
	json_t *spec = json_deep_copy(json_object_get(meta, "spec"));
	json_t *cur = inst_spec_of(&row);
	int r = check_hypervisor(b->target_hypervisor, sr.kind, err);
	if (r == 0 && strcmp(sr.source_id, row.id) != 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "wrong_source",
		               "snapshot %s was taken of `%s`, not of `%s`; fork it to get a new "
		               "instance from it",
		               sr.id, sr.source_name, row.name);
	else if (r == 0 && state != HM_STATE_STOPPED && state != HM_STATE_STANDBY)
		r = hm_err_set(
		    err, HM_ERR_CONFLICT, "invalid_state",
		    "instance `%s` is %s; it must be Stopped or in Standby to be restored "
		    "from a snapshot",
		    row.name, hm_state_name(state));
	else if (r == 0 && !standby_kind && strcmp(to, "Standby") == 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_target_state",
		               "a Stopped snapshot has no memory to wake: it comes back Stopped or "
		               "Running");
	else if (r == 0 && !json_is_object(spec))
		r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "snapshot %s has no source spec", sr.id);
	if (r == 0 && strcmp(to, "Running") == 0 && in->boot_error)
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		               "instances cannot run on this host: %s", in->boot_error);
	_cleanup_free_ char *snapdir = snap_dir(in, sr.id);
	if (r == 0) {
		/* The instance keeps its own address lease: same as the snapshot's. */
		json_t *net = json_object_get(cur, "network");
		if (net)
			json_object_set(spec, "network", net);
		/* The snapshot's attachments first: a volume deleted since is a 404 here,
		 * before the payload is touched. */
		r = inst_sync_attachments(in, row.id, spec, err);
		if (r == 0 && replace_payload(in, row.id, snapdir, spec, standby_kind, err) < 0) {
			inst_sync_attachments(in, row.id, cur, NULL);
			r = -1;
		}
	}
	if (r == 0) {
		free(row.spec);
		row.spec = json_dumps(spec, JSON_COMPACT);
		free(row.image);
		row.image = xstrdup(json_string_value(json_object_get(meta, "image")) ?: row.image);
		free(row.image_digest);
		row.image_digest =
		    xstrdup(json_string_value(json_object_get(meta, "image_digest")) ?: "");
		bool stay_standby = standby_kind && strcmp(to, "Stopped") != 0;
		if (!stay_standby) {
			_cleanup_free_ char *dir = inst_path(in, row.id, NULL);
			hm_payload_drop_memory(dir);
		}
		free(row.phase);
		row.phase = xstrdup(stay_standby ? "Standby" : "Stopped");
		if (!stay_standby) {
			row.exit_code = -1;
			free(row.exit_message);
			row.exit_message = xasprintf("restored from snapshot %s", sr.id);
			free(row.stopped_at);
			row.stopped_at = hm_now_rfc3339();
		}
		r = hm_store_instance_update(in->st, &row, err);
		if (r < 0)
			inst_sync_attachments(in, row.id, cur, NULL);
		inst_oplog(in, row.id, "msg=\"restored from snapshot\" snapshot=%s kind=%s", sr.id,
		           sr.kind);
	}
	if (r == 0 && strcmp(to, "Running") == 0) {
		if (standby_kind) {
			r = inst_wake(in, &row, false, NULL, err);
		} else {
			struct hm_instance_view *o = NULL;
			r = inst_boot_again(in, &row, NULL, NULL, false, &o, err);
			hm_instance_view_free(o);
		}
	}
	if (r == 0)
		*ret = inst_view(in, &row);
	json_decref(cur);
	json_decref(spec);
	json_decref(meta);
	hm_snapshot_row_done(&sr);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}
