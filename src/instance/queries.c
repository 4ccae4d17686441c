/*
 * instance/queries: everything that reads: the derived state (from the row
 * and the VM's publication, never the VMM), the typed view of an instance,
 * get, list, wait, stats, stat, logs and the address ingress routes to.
 */
#include "instance/instances.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "instance/agent.h"
#include "instance/internal.h"
#include "instance/logs.h"
#include "store/instances.h"
#include "store/volumes.h"

/* ---- the derived state ---- */

static void status_of(struct hm_instances *in, const struct hm_instance_row *r,
                      struct inst_status *st, bool again);

void inst_status_of(struct hm_instances *in, const struct hm_instance_row *r,
                    struct inst_status *st)
{
	status_of(in, r, st, true);
}

/*
 * again: r may be older than the live list it is compared with. An
 * operation ends a VM's record after it has written the row (a standby:
 * Standby, then the record goes), so a row read before that write and a
 * list looked at after it show neither; the row is read again once then.
 * A VM's beginning writes the row first too (inst_live_begin: so that an
 * end its monitor sees at once lands on the new row), with the instance
 * marked as coming until its record is listed: a row read after that
 * write and a list looked at before the listing show the VM as the row
 * says, not Unknown.
 */
static void status_of(struct hm_instances *in, const struct hm_instance_row *r,
                      struct inst_status *st, bool again)
{
	*st = (struct inst_status){
		.state = HM_STATE_STOPPED,
		.exit_code = r->exit_code,
		.exit_message = r->exit_message ? xstrdup(r->exit_message) : NULL,
		.stopped_at = r->stopped_at ? xstrdup(r->stopped_at) : NULL,
	};
	/* The published state: no VMM is asked, no lock an operation holds is waited on. */
	bool coming = false;
	struct live *l = inst_live_get_or_coming(in, r->id, &coming);
	if (strcmp(r->phase, "Created") == 0) {
		st->state = HM_STATE_CREATED;
	} else if (l) {
		struct live_view v = { 0 };
		inst_live_view(l, &v);
		st->boot_us = atomic_load(&l->boot_us);
		st->vmm_start_us = l->vmm_start_us;
		st->vmm_load_us = l->vmm_load_us;
		st->stopping = atomic_load(&l->stop_asked) != 0 && !atomic_load(&l->exited);
		st->draining = atomic_load(&l->draining) && !atomic_load(&l->exited);
		switch (v.vm_state) {
		case HM_VM_RUNNING:
			st->state =
			    atomic_load(&l->started) ? HM_STATE_RUNNING : HM_STATE_INITIALIZING;
			break;
		case HM_VM_PAUSED:
			st->state = HM_STATE_PAUSED;
			break;
		case HM_VM_SHUTDOWN:
			st->state = HM_STATE_SHUTDOWN;
			break;
		case HM_VM_EXITED:
			/* Recorded; a row read before it was may not have it yet. */
			st->state = HM_STATE_STOPPED;
			if (strcmp(r->phase, "Stopped") != 0) {
				st->exit_code = v.exit_code;
				free(st->exit_message);
				st->exit_message = TAKE_PTR(v.exit_message);
				free(st->stopped_at);
				st->stopped_at = TAKE_PTR(v.stopped_at);
			}
			break;
		case HM_VM_UNKNOWN:
			st->state = HM_STATE_UNKNOWN;
			st->error = TAKE_PTR(v.error);
			break;
		}
		inst_live_view_done(&v);
	} else if (strcmp(r->phase, "Standby") == 0) {
		st->state = HM_STATE_STANDBY; /* no VMM; its memory and device state are on disk */
	} else if (coming && strcmp(r->phase, "Stopped") != 0) {
		/* Its row written a moment before its record is listed (inst_live_begin):
		 * the VMM runs, as the row says. */
		st->state =
		    strcmp(r->phase, "Running") == 0 ? HM_STATE_RUNNING : HM_STATE_INITIALIZING;
	} else if (strcmp(r->phase, "Stopped") != 0) {
		struct hm_instance_row fresh = { .exit_code = -1 };
		if (again && hm_store_instance_get(in->st, r->id, &fresh, NULL) == 0 &&
		    strcmp(fresh.phase, r->phase) != 0) {
			inst_live_free(l);
			inst_status_done(st);
			status_of(in, &fresh, st, false);
			hm_instance_row_done(&fresh);
			return;
		}
		hm_instance_row_done(&fresh);
		st->state = HM_STATE_UNKNOWN;
		st->error = xstrdup("no VMM is attached to this instance");
	}
	inst_live_free(l);
}

void inst_status_done(struct inst_status *st)
{
	free(st->error);
	free(st->exit_message);
	free(st->stopped_at);
	memset(st, 0, sizeof(*st));
}

enum hm_state inst_state(struct hm_instances *in, const struct hm_instance_row *row)
{
	struct inst_status st;
	inst_status_of(in, row, &st);
	enum hm_state s = st.state;
	inst_status_done(&st);
	return s;
}

/* ---- JSON ---- */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Fill v (zeroed) for row r. */
static void fill_view(struct hm_instances *in, const struct hm_instance_row *r,
                      struct hm_instance_view *v)
{
	json_t *spec = inst_spec_of(r);
	struct inst_status sts;
	inst_status_of(in, r, &sts);
	v->id = xstrdup(r->id);
	v->uuid = dup_or_null(r->uuid);
	v->name = xstrdup(r->name);
	v->image = xstrdup(r->image);
	v->state = sts.state;
	v->state_error = TAKE_PTR(sts.error);
	v->vcpus = (int)json_integer_value(json_object_get(spec, "vcpus"));
	v->mem_bytes = json_integer_value(json_object_get(spec, "mem_bytes"));
	v->overlay_bytes = json_integer_value(json_object_get(spec, "overlay_bytes"));
	v->disk_bps = json_integer_value(json_object_get(spec, "disk_io_bps"));
	json_t *env = json_object_get(spec, "env");
	json_t *tags = json_object_get(spec, "tags");
	v->env = json_is_object(env) ? json_incref(env) : json_object();
	v->tags = json_is_object(tags) ? json_incref(tags) : json_object();
	json_t *net = inst_spec_net(spec);
	v->network = net != NULL;
	v->ip = dup_or_null(json_string_value(json_object_get(net, "ip")));
	v->mac = dup_or_null(json_string_value(json_object_get(net, "mac")));
	v->download_bps = json_integer_value(json_object_get(net, "download_bps"));
	v->upload_bps = json_integer_value(json_object_get(net, "upload_bps"));
	size_t i;
	json_t *a;
	json_array_foreach (json_object_get(spec, "volumes"), i, a) {
		if (v->nvolumes == HM_MAX_ATTACH)
			break;
		struct hm_view_attach *va = &v->volumes[v->nvolumes++];
		va->volume_id = dup_or_null(json_string_value(json_object_get(a, "id")));
		va->mount_path = dup_or_null(json_string_value(json_object_get(a, "mount_path")));
		va->readonly = json_is_true(json_object_get(a, "readonly"));
		/* Its name and uuid, from the volumes table (a store read, no I/O
		 * of the volume's). */
		struct hm_volume_row vr = { 0 };
		if (va->volume_id && hm_store_volume_find(in->st, va->volume_id, &vr, NULL) == 0) {
			va->volume_name = TAKE_PTR(vr.name);
			va->volume_uuid = TAKE_PTR(vr.uuid);
			hm_volume_row_done(&vr);
		}
	}
	v->created_at = xstrdup(r->created_at);
	v->started_at = dup_or_null(r->started_at);
	bool stopped = sts.state == HM_STATE_STOPPED;
	v->stopped_at = stopped ? TAKE_PTR(sts.stopped_at) : NULL;
	v->exit_code = stopped ? sts.exit_code : -1;
	v->exit_message = stopped ? TAKE_PTR(sts.exit_message) : NULL;
	v->hypervisor = xstrdup(r->hypervisor ? r->hypervisor : "qemu");
	json_t *argv = json_object_get(spec, "argv");
	v->command = argv ? json_incref(argv) : NULL;
	json_t *cmd = json_object_get(spec, "cmd");
	v->cmd = json_is_array(cmd) ? json_incref(cmd) : NULL;
	json_t *ep = json_object_get(spec, "entrypoint");
	v->entrypoint = json_is_array(ep) ? json_incref(ep) : NULL;
	inst_spec_restart(spec, &v->restart);
	v->auto_standby_set = json_object_get(spec, "auto_standby") != NULL;
	inst_spec_auto_standby(spec, &v->auto_standby);
	inst_sup_status(in, r->id, &v->restart_status);
	v->delete_on_stop = json_is_true(json_object_get(spec, "delete_on_stop"));
	v->delete_lock = json_is_true(json_object_get(spec, "delete_lock"));
	v->template_ = json_is_true(json_object_get(spec, "template"));
	v->stop_reason = stopped ? r->stop_reason : 0;
	v->wake_error = v->state == HM_STATE_RUNNING ? NULL : inst_wake_error(in, r->id);
	v->boot_us = stopped ? 0 : sts.boot_us;
	v->vmm_start_us = stopped ? 0 : sts.vmm_start_us;
	v->vmm_load_us = stopped ? 0 : sts.vmm_load_us;
	const char *boot = json_string_value(json_object_get(spec, "booted_from"));
	v->boot = stopped || !boot ? NULL : strcmp(boot, "base") == 0 ? "base" : "cold";
	v->stopping = !stopped && sts.stopping;
	v->draining = !stopped && sts.draining;
	v->start_count = r->start_count;
	v->restart_count = r->restart_count;
	json_decref(spec);
	inst_status_done(&sts);
}

struct hm_instance_view *inst_view(struct hm_instances *in, const struct hm_instance_row *r)
{
	struct hm_instance_view *v = xcalloc(1, sizeof(*v));
	fill_view(in, r, v);
	return v;
}

static void view_done(struct hm_instance_view *v)
{
	free(v->id);
	free(v->uuid);
	free(v->name);
	free(v->image);
	free(v->state_error);
	free(v->wake_error);
	json_decref(v->env);
	json_decref(v->tags);
	free(v->ip);
	free(v->mac);
	for (size_t i = 0; i < v->nvolumes; i++) {
		free(v->volumes[i].volume_id);
		free(v->volumes[i].volume_name);
		free(v->volumes[i].volume_uuid);
		free(v->volumes[i].mount_path);
	}
	free(v->created_at);
	free(v->started_at);
	free(v->stopped_at);
	free(v->exit_message);
	free(v->hypervisor);
	json_decref(v->command);
	json_decref(v->cmd);
	json_decref(v->entrypoint);
	hm_restart_status_done(&v->restart_status);
}

void hm_instance_view_free(struct hm_instance_view *v)
{
	if (!v)
		return;
	view_done(v);
	free(v);
}

void hm_instance_views_free(struct hm_instance_view *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		view_done(&v[i]);
	free(v);
}

/* ---- read, list ---- */

int hm_instances_get(struct hm_instances *in, const char *key, struct hm_instance_view **ret,
                     struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	*ret = inst_view(in, &row);
	hm_instance_row_done(&row);
	return 0;
}

int hm_instances_list(struct hm_instances *in, const enum hm_state *state, json_t *tags,
                      struct hm_instance_view **ret, size_t *n, struct hm_err **err)
{
	struct hm_instance_row *rows = NULL;
	size_t nrows = 0;
	if (hm_store_instance_list(in->st, &rows, &nrows, err) < 0)
		return -1;
	struct hm_instance_view *views = xcalloc(nrows ? nrows : 1, sizeof(*views));
	size_t k = 0;
	for (size_t i = 0; i < nrows; i++) {
		fill_view(in, &rows[i], &views[k]);
		bool keep = (!state || views[k].state == *state) &&
		            (!tags || hm_tags_match(views[k].tags, tags));
		if (keep) {
			k++;
		} else {
			view_done(&views[k]);
			memset(&views[k], 0, sizeof(views[k])); /* the slot is used again */
		}
	}
	hm_instance_rows_free(rows, nrows);
	*ret = views;
	*n = k;
	return 0;
}

int hm_instances_wait(struct hm_instances *in, const char *key, enum hm_state state,
                      long timeout_ms, struct hm_wait_result *ret, struct hm_err **err)
{
	enum { WAIT_POLL_MS = 100 };
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	double deadline = inst_mono_ms() + (double)timeout_ms;
	struct inst_status now = { 0 };
	bool timed_out = false;
	for (;;) {
		unsigned long seen = inst_changes(in);
		struct hm_instance_row cur = { .exit_code = -1 };
		if (hm_store_instance_get(in->st, row.id, &cur, err) < 0) {
			inst_status_done(&now);
			hm_instance_row_done(&row);
			return -1;
		}
		inst_status_done(&now);
		inst_status_of(in, &cur, &now);
		hm_instance_row_done(&cur);
		/* Stopped and Standby are terminal for a wait: nothing moves them without a
		 * request. */
		if (now.state == state || now.state == HM_STATE_STOPPED ||
		    now.state == HM_STATE_STANDBY)
			break;
		if (inst_mono_ms() >= deadline) {
			timed_out = true;
			break;
		}
		/* Woken by a publication (a VM's state, a program's start), else polled:
		 * a row's phase can change without one. */
		double left = deadline - inst_mono_ms();
		inst_changes_wait(in, seen, left < WAIT_POLL_MS ? (long)left + 1 : WAIT_POLL_MS);
	}
	*ret = (struct hm_wait_result){ now.state, TAKE_PTR(now.error), timed_out };
	inst_status_done(&now);
	hm_instance_row_done(&row);
	return 0;
}

/* ---- stats, stat ---- */

static int64_t status_kb(const char *status, const char *key)
{
	const char *p = strstr(status, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : 0;
}

int hm_instances_stats(struct hm_instances *in, const char *key, struct hm_instance_stats *ret,
                       struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	double cpu = 0;
	int64_t rss = 0, vms = 0;
	struct live *l = inst_live_get(in, row.id);
	if (l && !atomic_load(&l->exited)) {
		pid_t pid = l->vm->pid;
		_cleanup_free_ char *sp = xasprintf("/proc/%d/stat", (int)pid);
		_cleanup_free_ char *stp = xasprintf("/proc/%d/status", (int)pid);
		_cleanup_free_ char *stat = NULL, *status = NULL;
		size_t n;
		if (hm_read_file(sp, 4096, &stat, &n, NULL) == 0) {
			/* Fields after the command name (which may hold spaces) start after ')'. */
			const char *p = strrchr(stat, ')');
			unsigned long long ut = 0, st = 0;
			if (p &&
			    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			           &ut, &st) == 2)
				cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
		}
		if (hm_read_file(stp, 16384, &status, &n, NULL) == 0) {
			rss = status_kb(status, "VmRSS:") * 1024;
			vms = status_kb(status, "VmSize:") * 1024;
		}
	}
	struct hm_net_counters nc = { 0 };
	int conns = l && !atomic_load(&l->exited) ? atomic_load(&l->conns) : 0;
	int64_t requests = l && !atomic_load(&l->exited) ? atomic_load(&l->requests) : 0;
	if (l && !atomic_load(&l->exited) && inst_spec_net(spec)) {
		char tap[HM_NET_TAP_MAX];
		inst_tap_of(row.id, tap);
		hm_net_tap_counters(tap, &nc);
	}
	if (l)
		inst_live_free(l);
	*ret = (struct hm_instance_stats){
		.cpu_seconds = cpu,
		.rss_bytes = rss,
		.vms_bytes = vms,
		.rx_bytes = nc.rx_bytes,
		.tx_bytes = nc.tx_bytes,
		.rx_packets = nc.rx_packets,
		.tx_packets = nc.tx_packets,
		.conns = conns,
		.requests = requests,
		.vcpus = (int)json_integer_value(json_object_get(spec, "vcpus")),
		.mem_bytes = json_integer_value(json_object_get(spec, "mem_bytes")),
	};
	snprintf(ret->id, sizeof(ret->id), "%s", row.id);
	snprintf(ret->name, sizeof(ret->name), "%s", row.name);
	json_decref(spec);
	hm_instance_row_done(&row);
	return 0;
}

int hm_instances_stat(struct hm_instances *in, const char *key, const char *path, bool follow_links,
                      json_t **ret, struct hm_err **err)
{
	if (!path || path[0] != '/' || strlen(path) > 4096)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_path",
		                  "`path` must be an absolute path inside the guest");
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	struct live *l = state == HM_STATE_RUNNING ? inst_live_get(in, row.id) : NULL;
	int r;
	if (!l) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; stat needs a Running instance", row.name,
		               hm_state_name(state));
	} else {
		json_t *req = json_pack("{s:s,s:s,s:b}", "type", "stat", "path", path,
		                        "follow_links", follow_links);
		json_t *ans = NULL;
		r = hm_agent_call(l->agent, req, 10000, &ans, err);
		json_decref(req);
		if (r == 0) {
			json_object_del(ans, "type");
			json_object_del(ans, "id");
			*ret = ans;
		}
		inst_live_free(l);
	}
	hm_instance_row_done(&row);
	return r;
}

void hm_instances_allocated(struct hm_instances *in, int64_t *vcpus, int64_t *mem, int64_t *disk)
{
	*vcpus = *mem = *disk = 0;
	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	if (hm_store_instance_list(in->st, &rows, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		json_t *spec = inst_spec_of(&rows[i]);
		/* Disks are held whatever the state; CPU and memory only while a VMM runs. */
		*disk += json_integer_value(json_object_get(spec, "overlay_bytes"));
		pthread_mutex_lock(&in->lock);
		struct live *l = inst_live_find(in, rows[i].id);
		bool running = l && !atomic_load(&l->exited);
		pthread_mutex_unlock(&in->lock);
		if (running) {
			*vcpus += json_integer_value(json_object_get(spec, "vcpus"));
			*mem += json_integer_value(json_object_get(spec, "mem_bytes"));
		}
		json_decref(spec);
	}
	hm_instance_rows_free(rows, n);
}

/* ---- logs ---- */

struct alive_ref {
	struct hm_instances *in;
	char *id;
};

static bool log_alive(void *cls)
{
	struct alive_ref *a = cls;
	pthread_mutex_lock(&a->in->lock);
	struct live *l = inst_live_find(a->in, a->id);
	bool alive = l && !atomic_load(&l->exited);
	pthread_mutex_unlock(&a->in->lock);
	return alive;
}

static void alive_free(void *cls)
{
	struct alive_ref *a = cls;
	free(a->id);
	free(a);
}

int hm_instances_logs(struct hm_instances *in, const char *key, const char *source, long tail,
                      bool follow, struct hm_log_stream **ret, struct hm_err **err)
{
	const char *file;
	if (!source || strcmp(source, "app") == 0)
		file = "logs/app.log";
	else if (strcmp(source, "vmm") == 0)
		file = "logs/vmm.log";
	else if (strcmp(source, "hypeman") == 0)
		file = "logs/hypeman.log";
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_source",
		                  "`source` must be app, vmm or hypeman");
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	_cleanup_free_ char *path = inst_path(in, row.id, file);
	struct alive_ref *a = xcalloc(1, sizeof(*a));
	a->in = in;
	a->id = xstrdup(row.id);
	hm_instance_row_done(&row);
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		/* Nothing written yet (a VMM that printed nothing): an empty log. */
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	}
	return hm_log_stream_open(path, tail, follow, log_alive, a, alive_free, ret, err);
}

/*
 * A byte range of the app log. The bytes kept are the rotated file (.1, the
 * older) then the live one, counted from the oldest kept byte: a range is
 * read across the two. A rotation between the two opens can shift it by a
 * file; the next read sees the new window.
 */
int hm_instances_log_range(struct hm_instances *in, const char *key, int64_t offset, int64_t limit,
                           struct hm_log_range *ret, struct hm_err **err)
{
	*ret = (struct hm_log_range){ 0 };
	if (limit < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "the limit is negative");
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	_cleanup_free_ char *live = inst_path(in, row.id, "logs/app.log");
	hm_instance_row_done(&row);
	_cleanup_free_ char *old = xasprintf("%s.1", live);
	const char *paths[2] = { old, live };
	int fds[2] = { -1, -1 };
	int64_t sizes[2] = { 0, 0 };
	for (int i = 0; i < 2; i++) {
		fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fds[i] >= 0 && fstat(fds[i], &st) == 0)
			sizes[i] = st.st_size;
	}
	int64_t total = sizes[0] + sizes[1];
	int64_t start = offset >= 0 ? (offset < total ? offset : total)
	                            : (total + offset > 0 ? total + offset : 0);
	int64_t end = limit < total - start ? start + limit : total;
	char *data = xmalloc((size_t)(end - start) + 1);
	size_t got = 0;
	int rc = 0;
	for (int64_t pos = start; pos < end && rc == 0;) {
		int f = pos < sizes[0] ? 0 : 1;
		int64_t at = f ? pos - sizes[0] : pos;
		int64_t want = (f ? sizes[1] : sizes[0]) - at;
		if (want > end - pos)
			want = end - pos;
		ssize_t n = fds[f] >= 0 ? pread(fds[f], data + got, (size_t)want, at) : 0;
		if (n < 0)
			rc = hm_err_errno(err, errno, "read the log of `%s`", key);
		else if (n == 0)
			break; /* truncated meanwhile: what was read is the range */
		got += (size_t)(n > 0 ? n : 0);
		pos += n;
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (rc < 0) {
		free(data);
		return -1;
	}
	data[got] = '\0';
	*ret = (struct hm_log_range){ data, got, 0, total, start, start + (int64_t)got };
	return 0;
}

/* ---- addresses (for ingress) ---- */
