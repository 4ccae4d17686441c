/*
 * instance/attachments: volumes attached to and detached from a stopped
 * instance; used from its next start.
 */
#include "instance/instances.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "store/volumes.h"
#include "store/attachments.h"
#include "store/instances.h"

/* ---- the attachments table ---- */

int inst_sync_attachments(struct hm_instances *in, const char *id, json_t *spec,
                          struct hm_err **err)
{
	json_t *vols = json_object_get(spec, "volumes");
	size_t n = json_array_size(vols);
	struct hm_attachment_row *rows = xcalloc(n ? n : 1, sizeof(*rows));
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_array_get(vols, i);
		rows[i] = (struct hm_attachment_row){
			.volume_id = (char *)json_string_value(json_object_get(a, "id")),
			.mount_path = (char *)json_string_value(json_object_get(a, "mount_path")),
			.readonly = json_is_true(json_object_get(a, "readonly")),
		};
	}
	int r = hm_store_attachments_set(in->st, id, rows, n, err);
	free(rows);
	return r;
}

/* ---- volumes on a stopped instance ---- */

/* The row of key with its spec parsed, if it is not running: 409 otherwise. */
static int stopped_row(struct hm_instances *in, const char *key, const char *what,
                       struct hm_instance_row *row, json_t **spec, struct hm_err **err)
{
	if (inst_find_locked(in, key, row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, row);
	if (state != HM_STATE_STOPPED && state != HM_STATE_CREATED) {
		int r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		                   "%s needs a stopped instance (current state: %s)", what,
		                   hm_state_name(state));
		inst_op_unlock(in, row->id);
		hm_instance_row_done(row);
		return r;
	}
	*spec = inst_spec_of(row);
	if (!json_is_array(json_object_get(*spec, "volumes")))
		json_object_set_new(*spec, "volumes", json_array());
	return 0;
}

/* Save the spec into the row and answer the instance. */
static int save_spec(struct hm_instances *in, struct hm_instance_row *row, json_t *spec,
                     struct hm_instance_view **ret, struct hm_err **err)
{
	/* The table first: its foreign key refuses a volume deleted meanwhile. */
	if (inst_sync_attachments(in, row->id, spec, err) < 0) {
		json_t *old = inst_spec_of(row);
		inst_sync_attachments(in, row->id, old, NULL);
		json_decref(old);
		return -1;
	}
	char *text = json_dumps(spec, JSON_COMPACT);
	int r = hm_store_instance_set_spec(in->st, row->id, text, err);
	if (r < 0) {
		free(text);
		json_t *old = inst_spec_of(row);
		inst_sync_attachments(in, row->id, old, NULL);
		json_decref(old);
		return -1;
	}
	free(row->spec);
	row->spec = text;
	*ret = inst_view(in, row);
	return 0;
}

int hm_instances_attach_volume(struct hm_instances *in, const char *key, const struct hm_attach *a,
                               struct hm_instance_view **ret, struct hm_err **err)
{
	json_t *vols_in = NULL;
	int r = inst_attachments(a, 1, &vols_in, err);
	struct hm_instance_row row = { .exit_code = -1 };
	json_t *spec = NULL;
	if (r == 0)
		r = stopped_row(in, key, "attaching a volume", &row, &spec, err);
	if (r < 0) {
		json_decref(vols_in);
		return -1;
	}
	pthread_mutex_lock(&in->vol_lock);
	json_t *vols = json_object_get(spec, "volumes");
	json_t *add = json_array_get(vols_in, 0);
	r = inst_claim_volumes(in, vols_in, err); /* also fills in the volume's id */
	size_t i;
	json_t *v;
	json_array_foreach (vols, i, v) {
		if (r == 0 && strcmp(json_string_value(json_object_get(v, "id")),
		                     json_string_value(json_object_get(add, "id"))) == 0)
			r = hm_err_set(err, HM_ERR_CONFLICT, "already_attached",
			               "the volume is already attached to %s", row.name);
		if (r == 0 && strcmp(json_string_value(json_object_get(v, "mount_path")),
		                     json_string_value(json_object_get(add, "mount_path"))) == 0)
			r = hm_err_set(err, HM_ERR_CONFLICT, "mount_path_in_use",
			               "%s already has a volume on %s", row.name,
			               json_string_value(json_object_get(add, "mount_path")));
	}
	if (r == 0 && json_array_size(vols) >= MAX_VOLUMES)
		r = hm_err_set(err, HM_ERR_CONFLICT, "too_many_volumes",
		               "%s already has %d volumes", row.name, MAX_VOLUMES);
	if (r == 0) {
		json_array_append(vols, add);
		r = save_spec(in, &row, spec, ret, err);
	}
	pthread_mutex_unlock(&in->vol_lock);
	if (r == 0)
		inst_oplog(in, row.id, "msg=\"volume attached\" volume=%s path=%s",
		           json_string_value(json_object_get(add, "id")),
		           json_string_value(json_object_get(add, "mount_path")));
	json_decref(vols_in);
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_detach_volume(struct hm_instances *in, const char *key, const char *volume,
                               struct hm_instance_view **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	json_t *spec = NULL;
	if (stopped_row(in, key, "detaching a volume", &row, &spec, err) < 0)
		return -1;
	struct hm_volume_row vr = { 0 };
	int r = hm_store_volume_find(in->st, volume, &vr, err);
	json_t *vols = json_object_get(spec, "volumes");
	size_t found = (size_t)-1, i;
	json_t *v;
	json_array_foreach (vols, i, v)
		if (r == 0 && strcmp(json_string_value(json_object_get(v, "id")), vr.id) == 0)
			found = i;
	if (r == 0 && found == (size_t)-1)
		r = hm_err_set(err, HM_ERR_NOT_FOUND, "not_attached",
		               "volume `%s` is not attached to %s", vr.name, row.name);
	if (r == 0) {
		json_array_remove(vols, found);
		r = save_spec(in, &row, spec, ret, err);
	}
	if (r == 0)
		inst_oplog(in, row.id, "msg=\"volume detached\" volume=%s", vr.id);
	hm_volume_row_done(&vr);
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}
