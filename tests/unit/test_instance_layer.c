/*
 * Unit tests for the instance layer on the FAKE VMM (tests/unit/fake_vmm.c):
 * the real service, store and monitors over stand-in VMM processes, with the
 * failures a real VMM has scripted in: a kill that fails, a VMM that exits
 * in the middle of a standby, one that stops answering, a VM that ends while
 * a PATCH is written, and what a restarted daemon finds. Reads are checked
 * to make no VMM call at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"
#include "instance/instances.h"
#include "instance/internal.h"
#include "net/net.h"
#include "store/instances.h"
#include "store/store.h"
#include "tests/unit/fake_vmm.h"
#include "vmm/accel.h"

#define MAX_VMS 8

struct t {
	char dir[64];
	struct hm_config cfg;
	struct hm_store *st;
	struct hm_net *net;
	struct hm_accel_choice accel;
	struct hm_instances *in;
	pid_t pids[MAX_VMS];
	char ids[MAX_VMS][32];
	int n;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A row for a VM that "runs" as pid (0: none) on runtime hv, with its folder. */
static const char *add_vm_on(struct t *t, const char *name, const char *phase, pid_t pid,
                             const char *hv)
{
	assert_true(t->n < MAX_VMS);
	char *id = t->ids[t->n];
	snprintf(id, 32, "fake%020d", t->n);
	t->pids[t->n++] = pid;
	struct hm_instance_row r = {
		.id = id,
		.name = (char *)name,
		.image = (char *)"test/fake:latest",
		.image_digest = (char *)"sha256:00",
		.spec = (char *)"{\"mem_bytes\":134217728,\"overlay_bytes\":67108864,\"vcpus\":1,"
		                "\"env\":{},\"tags\":{}}",
		.phase = (char *)phase,
		.vmm_pid = pid,
		.exit_code = -1,
		.created_at = (char *)"2026-12-02T00:00:00Z",
		.started_at = (char *)"2026-12-02T00:00:01Z",
		.hypervisor = (char *)hv,
	};
	assert_int_equal(hm_store_instance_insert(t->st, &r, NULL), 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/instances/%s/logs", t->dir, id);
	assert_int_equal(hm_mkdir_p(path, 0700, NULL), 0);
	snprintf(path, sizeof(path), "%s/instances/%s/memory.ram", t->dir, id);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fputs("guest memory", f);
	fclose(f);
	return id;
}

static const char *add_vm(struct t *t, const char *name, const char *phase, pid_t pid)
{
	return add_vm_on(t, name, phase, pid, "fake");
}

static void open_service(struct t *t)
{
	struct hm_err *err = NULL;
	if (hm_instances_open(t->st, NULL, t->net, &t->cfg, &t->accel, &hm_vmm_fake, &t->in, &err) <
	    0)
		fail_msg("open: %s", err->msg);
}

static int setup(void **state)
{
	struct t *t = xcalloc(1, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/hm-inst-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	setenv("DATA_DIR", t->dir, 1);
	setenv("NETWORK_ENABLED", "false", 1);
	setenv("KERNEL_DIR", "/nonexistent", 1);
	setenv("LOG_LEVEL", "error", 1);
	char *argv[] = { (char *)"test", NULL };
	struct hm_err *err = NULL;
	if (hm_config_load(&t->cfg, 1, argv, &err) < 0)
		fail_msg("config: %s", err->msg);
	char db[128];
	snprintf(db, sizeof(db), "%s/hypeman.db", t->dir);
	assert_int_equal(hm_store_open(db, &t->st, NULL), 0);
	assert_int_equal(hm_net_open(&t->cfg, &t->net, NULL), 0);
	t->accel.accel = HM_ACCEL_TCG;
	fake_vmm_reset();
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	hm_instances_close(t->in); /* VMs keep running, as in the daemon... */
	for (int i = 0; i < t->n; i++)
		if (t->pids[i] > 0)
			fake_vmm_crash(t->pids[i]); /* ...so the test ends its stand-ins */
	hm_net_close(t->net);
	hm_store_close(t->st);
	hm_config_done(&t->cfg);
	hm_rm_rf(t->dir, NULL);
	free(t);
	return 0;
}

/* An instance's state and state_error, as its view has them; "(code)" on failure. */
static const char *state_of(struct t *t, const char *id, char *why, size_t whylen)
{
	static char st[32];
	struct hm_instance_view *v = NULL;
	struct hm_err *err = NULL;
	if (hm_instances_get(t->in, id, &v, &err) < 0) {
		snprintf(st, sizeof(st), "(%s)", hm_err_code(err));
		hm_err_free(err);
		return st;
	}
	snprintf(st, sizeof(st), "%s", hm_state_name(v->state));
	if (why)
		snprintf(why, whylen, "%s", v->state_error ? v->state_error : "");
	hm_instance_view_free(v);
	return st;
}

/* How many instances hm_instances_list gives (state may be NULL). */
static size_t count_listed(struct t *t, const enum hm_state *state)
{
	struct hm_instance_view *views = NULL;
	size_t n = 0;
	assert_int_equal(hm_instances_list(t->in, state, NULL, &views, &n, NULL), 0);
	hm_instance_views_free(views, n);
	return n;
}

static void wait_state(struct t *t, const char *id, const char *want, int ms)
{
	long long until = now_ms() + ms;
	const char *s;
	while (strcmp(s = state_of(t, id, NULL, 0), want) != 0) {
		if (now_ms() > until)
			fail_msg("%s is %s, not %s, after %d ms", id, s, want, ms);
		sleep_ms(10);
	}
}

/* Until n monitors have made their first look and connected to their guest. */
static void wait_monitors(int n)
{
	long long until = now_ms() + 5000;
	while (atomic_load(&fake_vmm.calls[FAKE_AGENT]) < n) {
		if (now_ms() > until)
			fail_msg("%d of %d monitors connected",
			         atomic_load(&fake_vmm.calls[FAKE_AGENT]), n);
		sleep_ms(5);
	}
}

static bool alive(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

static void reads_ask_no_vmm(void **state)
{
	struct t *t = *state;
	const char *ids[3];
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "vm%d", i);
		ids[i] = add_vm(t, name, "Running", fake_vmm_process());
	}
	open_service(t);
	for (int i = 0; i < 3; i++)
		wait_state(t, ids[i], "Running", 5000);
	wait_monitors(3);
	int before[FAKE_OPS];
	for (int k = 0; k < FAKE_OPS; k++)
		before[k] = atomic_load(&fake_vmm.calls[k]);
	for (int round = 0; round < 20; round++) {
		assert_int_equal(count_listed(t, NULL), 3);
		enum hm_state running = HM_STATE_RUNNING;
		assert_int_equal(count_listed(t, &running), 3);
		for (int i = 0; i < 3; i++) {
			assert_string_equal(state_of(t, ids[i], NULL, 0), "Running");
			struct hm_wait_result w = { 0 };
			assert_int_equal(
			    hm_instances_wait(t->in, ids[i], HM_STATE_RUNNING, 1000, &w, NULL), 0);
			assert_int_equal(w.state, HM_STATE_RUNNING);
			assert_false(w.timed_out);
			free(w.state_error);
			struct hm_instance_stats st;
			assert_int_equal(hm_instances_stats(t->in, ids[i], &st, NULL), 0);
			assert_int_equal(st.vcpus, 1);
			assert_string_equal(st.id, ids[i]);
		}
	}
	for (int k = 0; k < FAKE_OPS; k++)
		if (atomic_load(&fake_vmm.calls[k]) != before[k])
			fail_msg("op %d: %d calls during reads (had %d)", k,
			         atomic_load(&fake_vmm.calls[k]), before[k]);
}

/*
 * A VMM's beginning (inst_live_begin: the row written, then the record
 * listed) is never read as Unknown: between the two the instance is marked
 * as coming and shown as its row says. Here the window is held open by
 * hand: the record taken away from a Running row (Unknown, as it should
 * be with no VMM), the mark set (Running), then a real inst_live_begin
 * lists the VMM again and leaves no mark behind.
 */
static void a_beginning_is_never_unknown(void **state)
{
	struct t *t = *state;
	const char *id = add_vm(t, "riser", "Running", fake_vmm_process());
	open_service(t);
	wait_state(t, id, "Running", 5000);
	wait_monitors(1);
	struct live *l = inst_live_take(t->in, id);
	assert_non_null(l);
	struct hm_vm *vm = l->vm;
	l->vm = NULL;
	inst_live_free(l);
	char why[256];
	assert_string_equal(state_of(t, id, why, sizeof(why)), "Unknown");
	assert_non_null(strstr(why, "no VMM"));

	pthread_mutex_lock(&t->in->lock);
	snprintf(t->in->coming[t->in->ncoming++], sizeof(t->in->coming[0]), "%s", id);
	pthread_mutex_unlock(&t->in->lock);
	assert_string_equal(state_of(t, id, NULL, 0), "Running");
	assert_int_equal(count_listed(t, &(enum hm_state){ HM_STATE_RUNNING }), 1);
	pthread_mutex_lock(&t->in->lock);
	t->in->ncoming = 0; /* as the window ends; begin sets its own mark */
	pthread_mutex_unlock(&t->in->lock);

	struct hm_instance_row row = { .exit_code = -1 };
	assert_int_equal(hm_store_instance_get(t->st, id, &row, NULL), 0);
	struct hm_err *err = NULL;
	if (inst_live_begin(t->in, &row, vm, true, NULL, &err) < 0)
		fail_msg("begin: %s", err->msg);
	hm_instance_row_done(&row);
	assert_int_equal(t->in->ncoming, 0);
	assert_string_equal(state_of(t, id, NULL, 0), "Running");
	struct live *back = inst_live_get(t->in, id);
	assert_non_null(back);
	inst_live_free(back);
}

static void delete_when_kill_fails(void **state)
{
	struct t *t = *state;
	pid_t pid = fake_vmm_process();
	const char *id = add_vm(t, "victim", "Running", pid);
	open_service(t);
	wait_state(t, id, "Running", 5000);
	wait_monitors(1);
	atomic_store(&fake_vmm.kill_fails, 1);
	struct hm_err *err = NULL;
	assert_int_equal(hm_instances_delete(t->in, id, false, &err), -1);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_TIMEOUT);
	hm_err_free(err);
	err = NULL;
	/* Nothing was lost: it runs on, watched, listed, its folder there. */
	assert_true(alive(pid));
	wait_state(t, id, "Running", 5000);
	char path[256];
	snprintf(path, sizeof(path), "%s/instances/%s", t->dir, id);
	assert_int_equal(access(path, F_OK), 0);
	atomic_store(&fake_vmm.kill_fails, 0);
	assert_int_equal(hm_instances_delete(t->in, id, false, &err), 0);
	assert_string_equal(state_of(t, id, NULL, 0), "(not_found)");
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	t->pids[0] = 0;
}

static void vmm_exits_during_standby(void **state)
{
	struct t *t = *state;
	pid_t pid = fake_vmm_process();
	const char *id = add_vm(t, "sleeper", "Running", pid);
	open_service(t);
	wait_state(t, id, "Running", 5000);
	wait_monitors(1);
	atomic_store(&fake_vmm.snapshot_exits, 1);
	struct hm_instance_view *o = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_instances_standby(t->in, id, NULL, &o, &err), -1);
	assert_non_null(err);
	hm_err_free(err);
	/* The monitor records the end: Stopped, no half-saved state left. */
	wait_state(t, id, "Stopped", 5000);
	char path[256];
	snprintf(path, sizeof(path), "%s/instances/%s/vm.state", t->dir, id);
	assert_int_not_equal(access(path, F_OK), 0);
	struct hm_instance_row row = { .exit_code = -1 };
	assert_int_equal(hm_store_instance_get(t->st, id, &row, NULL), 0);
	assert_string_equal(row.phase, "Stopped");
	assert_int_equal(row.vmm_pid, 0);
	hm_instance_row_done(&row);
}

struct standby_call {
	struct t *t;
	const char *id;
	atomic_bool done;
	int rc;
	enum hm_err_kind kind;
};

static void *do_standby(void *arg)
{
	struct standby_call *c = arg;
	struct hm_instance_view *o = NULL;
	struct hm_err *err = NULL;
	c->rc = hm_instances_standby(c->t->in, c->id, NULL, &o, &err);
	c->kind = err ? err->kind : HM_ERR_INTERNAL;
	hm_err_free(err);
	hm_instance_view_free(o);
	atomic_store(&c->done, true);
	return NULL;
}

static void a_vmm_that_stops_answering(void **state)
{
	struct t *t = *state;
	const char *id = add_vm(t, "stuck", "Running", fake_vmm_process());
	const char *other = add_vm(t, "other", "Running", fake_vmm_process());
	open_service(t);
	wait_state(t, id, "Running", 5000);
	wait_state(t, other, "Running", 5000);
	wait_monitors(2);
	atomic_store(&fake_vmm.hang_ms, 1500);
	struct standby_call c = { .t = t, .id = id };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, do_standby, &c), 0);
	sleep_ms(100);
	/* The standby holds its VM for seconds; reads of it and of others go on. */
	assert_int_equal(count_listed(t, NULL), 2);
	assert_string_equal(state_of(t, other, NULL, 0), "Running");
	assert_string_equal(state_of(t, id, NULL, 0), "Running");
	assert_false(atomic_load(&c.done));
	pthread_join(th, NULL);
	assert_int_equal(c.rc, -1);
	assert_int_equal(c.kind, HM_ERR_TIMEOUT);
	/* What the failed operation learned is what readers see. */
	char why[256];
	assert_string_equal(state_of(t, id, why, sizeof(why)), "Unknown");
	assert_true(strlen(why) > 0);
	assert_string_equal(state_of(t, other, NULL, 0), "Running");
	/* It answers again: its monitor asks again and publishes Running; a stop
	 * goes through the guest, and it ends Stopped. */
	atomic_store(&fake_vmm.hang_ms, 0);
	wait_state(t, id, "Running", 5000);
	struct hm_instance_view *o = NULL;
	struct hm_err *err = NULL;
	int r = hm_instances_stop(t->in, id, -1, &o, &err);
	if (r < 0)
		fail_msg("stop: %s", err->msg);
	hm_instance_view_free(o);
	wait_state(t, id, "Stopped", 5000);
}

static void patch_while_the_vm_ends(void **state)
{
	struct t *t = *state;
	const char *ids[4];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "race%d", i);
		ids[i] = add_vm(t, name, "Running", fake_vmm_process());
	}
	open_service(t);
	for (int i = 0; i < 4; i++) {
		wait_state(t, ids[i], "Running", 5000);
		json_t *env = json_pack("{s:s}", "ROUND", "x");
		struct hm_instance_update u = { .env_set = env, .delete_lock = -1 };
		fake_vmm_crash(t->pids[i]); /* the VM ends as the PATCH comes in */
		t->pids[i] = 0;
		struct hm_instance_view *o = NULL;
		assert_int_equal(hm_instances_update(t->in, ids[i], &u, &o, NULL), 0);
		hm_instance_view_free(o);
		json_decref(env);
		wait_state(t, ids[i], "Stopped", 5000);
		/* Both writes are there: the end (not Running again) and the env. */
		struct hm_instance_row row = { .exit_code = -1 };
		assert_int_equal(hm_store_instance_get(t->st, ids[i], &row, NULL), 0);
		assert_string_equal(row.phase, "Stopped");
		assert_int_equal(row.vmm_pid, 0);
		json_t *spec = json_loads(row.spec, 0, NULL);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(spec, "env"), "ROUND")), "x");
		json_decref(spec);
		hm_instance_row_done(&row);
	}
}

static void a_restarted_daemon_finds(void **state)
{
	struct t *t = *state;
	pid_t dead = fake_vmm_process();
	const char *running = add_vm(t, "alive", "Running", fake_vmm_process());
	const char *gone = add_vm(t, "gone", "Running", dead);
	const char *booting = add_vm(t, "booting", "Booting", fake_vmm_process());
	const char *created = add_vm(t, "halfmade", "Created", 0);
	const char *foreign =
	    add_vm_on(t, "elsewhere", "Running", fake_vmm_process(), "firecracker");
	fake_vmm_crash(dead); /* it died while no daemon ran */
	t->pids[1] = 0;
	open_service(t);
	/* Made on a hypervisor this daemon does not run: not adopted, not touched. */
	char why[256];
	assert_string_equal(state_of(t, foreign, why, sizeof(why)), "Unknown");
	assert_true(alive(t->pids[4]));
	struct hm_instance_view *o = NULL;
	assert_int_equal(hm_instances_get(t->in, foreign, &o, NULL), 0);
	assert_string_equal(o->hypervisor, "firecracker");
	hm_instance_view_free(o);
	assert_int_equal(hm_instances_get(t->in, running, &o, NULL), 0);
	assert_string_equal(o->hypervisor, "fake");
	assert_int_equal(o->state, HM_STATE_RUNNING);
	assert_int_equal(o->mem_bytes, 134217728);
	assert_int_equal(o->vcpus, 1);
	assert_false(o->network);
	hm_instance_view_free(o);
	wait_state(t, running, "Running", 5000);
	/* Booting when the daemon went: the guest's hello names its program, so Running. */
	wait_state(t, booting, "Running", 5000);
	/* The row follows (the monitor publishes first, then writes the phase). */
	struct hm_instance_row row = { .exit_code = -1 };
	for (long long until = now_ms() + 5000;; sleep_ms(10)) {
		assert_int_equal(hm_store_instance_get(t->st, booting, &row, NULL), 0);
		if (strcmp(row.phase, "Running") == 0 || now_ms() > until)
			break;
		hm_instance_row_done(&row);
	}
	assert_string_equal(row.phase, "Running");
	hm_instance_row_done(&row);
	assert_string_equal(state_of(t, gone, NULL, 0), "Stopped");
	assert_int_equal(hm_store_instance_get(t->st, gone, &row, NULL), 0);
	assert_non_null(strstr(row.exit_message, "while the daemon was not running"));
	hm_instance_row_done(&row);
	/* A create that never got its VM is undone: no row, no folder. */
	assert_string_equal(state_of(t, created, NULL, 0), "(not_found)");
	char path[256];
	snprintf(path, sizeof(path), "%s/instances/%s", t->dir, created);
	assert_int_not_equal(access(path, F_OK), 0);
	/* Closing leaves the VMs running, for the next daemon. */
	hm_instances_close(t->in);
	t->in = NULL;
	assert_true(alive(t->pids[0]));
	assert_true(alive(t->pids[2]));
	open_service(t);
	wait_state(t, running, "Running", 5000);
}

/* The typed create's rules are the domain's: any dialect gets the same answers. */
static void typed_create_rules(void **state)
{
	struct t *t = *state;
	open_service(t);
	struct {
		struct hm_instance_create c;
		const char *code;
	} cases[] = {
		{ { .image = "busybox" }, "missing_field" },
		{ { .name = "Bad_Name", .image = "busybox" }, "invalid_name" },
		{ { .name = "ok" }, "missing_field" },
		{ { .name = "ok", .image = "" }, "invalid_field" },
		{ { .name = "ok", .image = "busybox", .vcpus = 65 }, "invalid_field" },
		{ { .name = "ok", .image = "busybox", .mem_bytes = 1 << 20 }, "invalid_field" },
		{ { .name = "ok", .image = "busybox", .overlay_bytes = 1LL << 50 },
		  "invalid_field" },
		{ { .name = "ok", .image = "busybox", .download_bps = 10 },
		  "invalid_bandwidth_download" },
		{ { .name = "ok", .image = "busybox", .upload_bps = 1LL << 62 },
		  "invalid_bandwidth_upload" },
		{ { .name = "ok", .image = "busybox", .disk_bps = 100 }, "invalid_field" },
		{ { .name = "ok", .image = "busybox", .hypervisor = "xen" },
		  "unsupported_hypervisor" },
		{ { .name = "ok",
		    .image = "busybox",
		    .volumes = { { .volume = "v", .mount_path = "/etc" } },
		    .nvolumes = 1 },
		  "invalid_mount_path" },
		{ { .name = "ok",
		    .image = "busybox",
		    .volumes = { { .volume = "v", .mount_path = "/data" },
		                 { .volume = "w", .mount_path = "/data" } },
		    .nvolumes = 2 },
		  "invalid_mount_path" },
		{ { .name = "ok",
		    .image = "busybox",
		    .volumes = { { .mount_path = "/data" } },
		    .nvolumes = 1 },
		  "invalid_field" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hm_instance_view *o = NULL;
		struct hm_err *err = NULL;
		assert_int_equal(hm_instances_create(t->in, &cases[i].c, &o, &err), -1);
		assert_non_null(err);
		if (strcmp(hm_err_code(err), cases[i].code) != 0)
			fail_msg("case %zu: %s (%s), not %s", i, hm_err_code(err), err->msg,
			         cases[i].code);
		assert_int_equal(hm_err_http_status(err), 400);
		hm_err_free(err);
	}
	json_t *env = json_pack("{s:s}", "A=B", "x");
	json_t *cmd = json_pack("[i]", 3);
	struct hm_instance_create bad_env = { .name = "ok", .image = "busybox", .env = env };
	struct hm_instance_create bad_cmd = { .name = "ok", .image = "busybox", .cmd = cmd };
	struct hm_err *err = NULL;
	struct hm_instance_view *o = NULL;
	assert_int_equal(hm_instances_create(t->in, &bad_env, &o, &err), -1);
	assert_int_equal(hm_err_http_status(err), 400);
	hm_err_free(err);
	err = NULL;
	assert_int_equal(hm_instances_create(t->in, &bad_cmd, &o, &err), -1);
	assert_int_equal(hm_err_http_status(err), 400);
	hm_err_free(err);
	err = NULL;
	json_decref(env);
	json_decref(cmd);
	/* Past every rule, this host cannot boot (no kernel here): 503, nothing made. */
	struct hm_instance_create fine = { .name = "fine",
		                           .image = "busybox",
		                           .vcpus = 1,
		                           .mem_bytes = 128LL << 20,
		                           .network = HM_NET_OFF };
	assert_int_equal(hm_instances_create(t->in, &fine, &o, &err), -1);
	assert_string_equal(hm_err_code(err), "boot_unavailable");
	hm_err_free(err);
	assert_int_equal(count_listed(t, NULL), 0);
}

/* The spec of a fake instance with `extra` members added (JSON object text). */
static void spec_add(struct t *t, const char *id, const char *extra)
{
	char spec[512];
	snprintf(spec, sizeof(spec),
	         "{\"mem_bytes\":134217728,\"overlay_bytes\":67108864,\"vcpus\":1,"
	         "\"env\":{},\"tags\":{},%s}",
	         extra);
	assert_int_equal(hm_store_instance_set_spec(t->st, id, spec, NULL), 0);
}

static struct hm_instance_view *view_of(struct t *t, const char *id)
{
	struct hm_instance_view *v = NULL;
	assert_int_equal(hm_instances_get(t->in, id, &v, NULL), 0);
	return v;
}

/*
 * The supervisor acts on a VM's end that no user asked for: a restart policy
 * schedules a restart (due at once: tried, and here it fails, as this host
 * cannot boot; due later: shown as next, until a user's stop ends the
 * sequence), delete-on-stop deletes, a delete lock refuses deletes. Each end
 * is recorded with why it stopped.
 */
static void restart_policy_and_delete_on_stop(void **state)
{
	struct t *t = *state;
	const char *now = add_vm(t, "restart-now", "Running", fake_vmm_process());
	const char *later = add_vm(t, "restart-later", "Running", fake_vmm_process());
	const char *gone = add_vm(t, "gone-on-stop", "Running", fake_vmm_process());
	const char *locked = add_vm(t, "locked", "Running", fake_vmm_process());
	spec_add(t, now, "\"restart\":{\"policy\":\"always\",\"first_ms\":0,\"delay_ms\":5000}");
	spec_add(t, later,
	         "\"restart\":{\"policy\":\"on_failure\",\"first_ms\":60000,\"delay_ms\":5000}");
	spec_add(t, gone, "\"delete_on_stop\":true");
	spec_add(t, locked, "\"delete_lock\":true,\"delete_on_stop\":true");
	open_service(t);
	for (int i = 0; i < 4; i++)
		wait_state(t, t->ids[i], "Running", 5000);
	for (int i = 0; i < 4; i++) {
		fake_vmm_crash(t->pids[i]);
		t->pids[i] = 0;
	}
	wait_state(t, now, "Stopped", 5000);
	wait_state(t, later, "Stopped", 5000);
	wait_state(t, gone, "(not_found)", 5000);

	/* Tried at once: one attempt made (failed: no kernel here), none pending. */
	long long until = now_ms() + 5000;
	struct hm_instance_view *v = view_of(t, now);
	while (v->restart_status.attempts < 1 && now_ms() < until) {
		hm_instance_view_free(v);
		sleep_ms(10);
		v = view_of(t, now);
	}
	assert_int_equal(v->restart.policy, HM_RESTART_ALWAYS);
	assert_int_equal(v->restart_status.attempts, 1);
	assert_non_null(v->restart_status.last_attempt_at);
	assert_null(v->restart_status.next_attempt_at);
	assert_int_equal(v->stop_reason, HM_STOP_KERNEL); /* no exit report: a crash */
	hm_instance_view_free(v);

	/* Due in a minute: shown; a user's stop of the Stopped instance ends it. */
	v = view_of(t, later);
	assert_int_equal(v->restart_status.attempts, 0);
	assert_non_null(v->restart_status.next_attempt_at);
	hm_instance_view_free(v);
	struct hm_err *err = NULL;
	assert_int_equal(hm_instances_stop(t->in, later, -1, &v, &err), 0);
	assert_null(v->restart_status.next_attempt_at);
	assert_string_equal(v->restart_status.blocked, "manual_stop");
	hm_instance_view_free(v);

	/* A delete lock outlasts delete-on-stop and refuses a user's delete... */
	wait_state(t, locked, "Stopped", 5000);
	assert_int_equal(hm_instances_delete(t->in, locked, false, &err), -1);
	assert_string_equal(hm_err_code(err), "delete_locked");
	assert_int_equal(hm_err_http_status(err), 409);
	hm_err_free(err);
	err = NULL;
	/* ...until an update unsets it. */
	struct hm_instance_update u = { .delete_lock = 0 };
	assert_int_equal(hm_instances_update(t->in, locked, &u, &v, &err), 0);
	assert_false(v->delete_lock);
	hm_instance_view_free(v);
	assert_int_equal(hm_instances_delete(t->in, locked, false, &err), 0);
}

/* What an update may change depends on the state; its parts are checked first. */
static void update_rules(void **state)
{
	struct t *t = *state;
	const char *id = add_vm(t, "upd", "Running", fake_vmm_process());
	open_service(t);
	wait_state(t, id, "Running", 5000);
	struct hm_err *err = NULL;
	struct hm_instance_view *v = NULL;
	struct hm_instance_update sizes = { .delete_lock = -1, .vcpus = 2 };
	assert_int_equal(hm_instances_update(t->in, id, &sizes, &v, &err), -1);
	assert_int_equal(hm_err_http_status(err), 409);
	hm_err_free(err);
	err = NULL;
	struct hm_instance_update bad[] = {
		{ .delete_lock = -1, .vcpus = 65 },
		{ .delete_lock = -1, .mem_bytes = 1 << 20 },
		{ .delete_lock = -1, .image = "" },
		{ .delete_lock = -1, .restart_set = true, .restart = { .max_attempts = -1 } },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(hm_instances_update(t->in, id, &bad[i], &v, &err), -1);
		assert_int_equal(hm_err_http_status(err), 400);
		hm_err_free(err);
		err = NULL;
	}
	/* Env, tags, the lock and the policy change while it runs. */
	json_t *env = json_pack("{s:s}", "A", "1");
	json_t *del = json_pack("[s]", "A");
	json_t *tags = json_pack("{s:s}", "team", "x");
	struct hm_instance_update live = { .env_set = env,
		                           .tags = tags,
		                           .delete_lock = 1,
		                           .restart_set = true,
		                           .restart = { .policy = HM_RESTART_ON_FAILURE } };
	assert_int_equal(hm_instances_update(t->in, id, &live, &v, &err), 0);
	assert_string_equal(json_string_value(json_object_get(v->env, "A")), "1");
	assert_string_equal(json_string_value(json_object_get(v->tags, "team")), "x");
	assert_true(v->delete_lock);
	assert_int_equal(v->restart.policy, HM_RESTART_ON_FAILURE);
	hm_instance_view_free(v);
	json_decref(env);
	json_decref(del);
	json_decref(tags);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(reads_ask_no_vmm, setup, teardown),
		cmocka_unit_test_setup_teardown(a_beginning_is_never_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(delete_when_kill_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(vmm_exits_during_standby, setup, teardown),
		cmocka_unit_test_setup_teardown(a_vmm_that_stops_answering, setup, teardown),
		cmocka_unit_test_setup_teardown(patch_while_the_vm_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(a_restarted_daemon_finds, setup, teardown),
		cmocka_unit_test_setup_teardown(typed_create_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(restart_policy_and_delete_on_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(update_rules, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
