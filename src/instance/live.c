/*
 * instance/live: the record of each VM the service runs and its monitor
 * thread. The monitor reads the guest agent channel, keeps the logs within
 * their cap and waits on the VMM's pidfd; when the VMM exits it records the
 * outcome. What a VMM is, learned by its monitor or done to it by an
 * operation under vm_lock, is published here; every read takes it from the
 * publication (lock order: internal.h, docs/design.md). Exec sessions ride
 * on a live VM's agent channel.
 */
#include "instance/instances.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/mono.h"
#include "core/fileio.h"
#include "core/xalloc.h"
#include "guest/lines.h"
#include "instance/agent.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "store/instances.h"

#define AGENT_LINE_MAX (64u << 10)

/* ---- the monitor ---- */

/*
 * A guest can print without end, and its console goes to logs/app.log (QEMU
 * appends there). Each log past LOG_MAX_BYTES is copied to NAME.1 (the one
 * before goes) and truncated in place, as logrotate's copytruncate does: QEMU
 * keeps its descriptor and, appending, writes at the new end. What is written
 * between the copy and the truncation is lost; a file never grows past the
 * cap by more than one check interval's output.
 */
#define LOG_CHECK_MS 1000

void inst_logs_trim(struct hm_instances *in, const char *id)
{
	static const char *const names[] = { "logs/app.log", "logs/hypeman.log", "logs/vmm.log" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *path = inst_path(in, id, names[i]);
		struct stat st;
		if (stat(path, &st) < 0 || st.st_size <= in->cfg->log_max_bytes)
			continue;
		_cleanup_free_ char *old = xasprintf("%s.1", path);
		_cleanup_free_ char *tmp = xasprintf("%s.1.tmp", path);
		_cleanup_err_ struct hm_err *err = NULL;
		unlink(tmp);
		if (hm_copy_sparse(path, tmp, 0644, NULL, &err) < 0 || rename(tmp, old) < 0 ||
		    truncate(path, 0) < 0) {
			unlink(tmp);
			log_warn("instances", "log not rotated", "id=%s file=%s error=\"%s\"", id,
			         names[i], err ? err->msg : strerror(errno));
			continue;
		}
		log_info("instances", "log rotated", "id=%s file=%s bytes=%lld", id, names[i],
		         (long long)st.st_size);
	}
}

static bool handle_agent_line(void *ctx, char *line, size_t len)
{
	(void)len;
	struct live *l = ctx;
	json_t *msg = json_loads(line, 0, NULL);
	if (!msg)
		return true;
	if (hm_agent_dispatch(l->agent, msg)) {
		json_decref(msg);
		return true;
	}
	const char *type = json_string_value(json_object_get(msg, "type"));
	/* The guest answers our hello with its program's pid: a host that restarted
	 * during the boot missed `started` and learns it there. */
	bool started = type && (strcmp(type, "started") == 0 ||
	                        (strcmp(type, "hello") == 0 &&
	                         json_integer_value(json_object_get(msg, "program_pid")) > 0));
	if (started && !atomic_exchange(&l->started, true)) {
		if (strcmp(type, "started") == 0)
			atomic_store(&l->boot_us,
			             (long long)((inst_mono_ms() - l->born_ms) * 1000));
		/* Only the phase, and only from Booting: an operation may be changing
		 * the rest of the row, and a row that has moved on stays as it is. */
		hm_store_instance_cas_phase(l->in->st, l->id, "Booting", "Running", NULL);
		inst_changed(l->in);
		inst_oplog(l->in, l->id, "msg=\"program started\" pid=%lld guest_uptime_ms=%lld%s",
		           (long long)json_integer_value(json_object_get(msg, "pid")) +
		               (long long)json_integer_value(json_object_get(msg, "program_pid")),
		           (long long)json_integer_value(json_object_get(msg, "uptime_ms")),
		           strcmp(type, "hello") == 0 ? " via=hello" : "");
	} else if (type && strcmp(type, "boot") == 0) {
		/* Attached (if it came from a base): nothing to send again. */
		_cleanup_free_ char *attach = inst_path(l->in, l->id, INST_ATTACH_FILE);
		unlink(attach);
		inst_oplog(l->in, l->id, "msg=\"guest init up\" guest_uptime_ms=%lld",
		           (long long)json_integer_value(json_object_get(msg, "uptime_ms")));
	} else if (type && strcmp(type, "error") == 0) {
		/* One nobody waits for: an identity sent after the hello, a bad line. */
		const char *e = json_string_value(json_object_get(msg, "message"));
		_cleanup_free_ char *m = hm_logfmt_escape(e ? e : "");
		inst_oplog(l->in, l->id, "msg=\"guest agent error\" error=\"%.200s\"", m);
	} else if (type && strcmp(type, "exit") == 0) {
		inst_oplog(l->in, l->id, "msg=\"program exited\" code=%lld",
		           (long long)json_integer_value(json_object_get(msg, "code")));
	}
	json_decref(msg);
	return true;
}

/* The VMM is gone: record how it ended. */
static void finalize(struct live *l)
{
	struct hm_instances *in = l->in;
	struct hm_vm_info info = { .exit_status = -1 };
	pthread_mutex_lock(&l->vm_lock);
	l->vm->ops->info(l->vm, &info, NULL);
	pthread_mutex_unlock(&l->vm_lock);
	/* Its RAM is garbage now (a Stopped instance boots fresh): free it, host
	 * memory on tmpfs, before the row says Stopped and a start may make a new one. */
	_cleanup_free_ char *ram_tmpfs = inst_mem_tmpfs(in, l->id);
	_cleanup_free_ char *ram_disk = inst_path(in, l->id, HM_PAYLOAD_MEMORY);
	if (ram_tmpfs)
		unlink(ram_tmpfs);
	unlink(ram_disk);

	_cleanup_free_ char *cfg = inst_path(in, l->id, "config.img");
	int code = -1;
	char *message = NULL;
	_cleanup_err_ struct hm_err *err = NULL;
	bool report = hm_guestcfg_read_exit(cfg, &code, &message, &err) > 0;
	if (!report) {
		code = -1;
		free(message);
		message = xasprintf("the VM stopped without an exit report from the guest%s",
		                    err ? " (config disk unreadable)" : "");
	}
	/* Who stopped it and how: a user's stop (forced when it had to kill, or
	 * gave the program no grace), or the guest on its own (the program's exit
	 * reported, or none: a crash). */
	int asked = atomic_load(&l->stop_asked);
	int reason =
	    asked == STOP_ASKED_FORCED ? HM_STOP_FORCED | HM_STOP_USER | HM_STOP_PLATFORM
	    : asked == STOP_ASKED_PLATFORM
	        ? HM_STOP_PLATFORM | HM_STOP_KERNEL | (report ? HM_STOP_APP : 0)
	    : asked  ? HM_STOP_USER | HM_STOP_PLATFORM | HM_STOP_KERNEL | (report ? HM_STOP_APP : 0)
	    : report ? HM_STOP_APP | HM_STOP_KERNEL
	             : HM_STOP_KERNEL;
	/* Logged first: whoever sees Stopped finds the line there. Then only the
	 * columns a VM's end changes: an operation that saw the VMM gone (an attach,
	 * a start) may have written the rest of the row meanwhile. */
	_cleanup_free_ char *shown = hm_logfmt_escape(message);
	_cleanup_free_ char *stopped_at = hm_now_rfc3339();
	inst_oplog(in, l->id, "msg=\"vm stopped\" exit_code=%d exit_message=\"%s\"", code, shown);
	bool recorded = hm_store_instance_set_stopped(in->st, l->id, l->vm->pid, code, message,
	                                              stopped_at, reason, NULL) == 0;
	pthread_mutex_lock(&l->pub_lock);
	l->pub.exit_code = code;
	free(l->pub.exit_message);
	l->pub.exit_message = message;
	free(l->pub.stopped_at);
	l->pub.stopped_at = xstrdup(stopped_at);
	pthread_mutex_unlock(&l->pub_lock);
	inst_live_publish(l, HM_VM_EXITED, NULL);
	inst_drop_tap(in, l->id);
	/* Before `exited`: a stop that waits for it finds its sequence decided. A
	 * row a new boot took meanwhile is no end to act on. */
	if (recorded)
		inst_sup_exited(in, l->id, code, asked != 0, inst_mono_ms() - l->born_ms);
	atomic_store(&l->exited, true);
}

/*
 * A VM published Unknown (an operation's call went unanswered) is asked
 * again at each tick until it answers, unless an operation holds it: the
 * one periodic VMM call, and only for a VM in doubt.
 */
static void recheck_unknown(struct live *l)
{
	pthread_mutex_lock(&l->pub_lock);
	bool unknown = l->pub.vm_state == HM_VM_UNKNOWN;
	pthread_mutex_unlock(&l->pub_lock);
	if (!unknown || pthread_mutex_trylock(&l->vm_lock) != 0)
		return;
	inst_live_refresh(l);
	pthread_mutex_unlock(&l->vm_lock);
}

static void *monitor(void *arg)
{
	struct live *l = arg;
	/* What the VM is at the start (adopted ones may be paused); from here on
	 * the operations publish what they do, and the exit is seen on the pidfd. */
	pthread_mutex_lock(&l->vm_lock);
	inst_live_refresh(l);
	pthread_mutex_unlock(&l->vm_lock);
	_cleanup_err_ struct hm_err *err = NULL;
	int afd = l->vm->ops->agent_connect(l->vm, 10000, &err);
	if (afd < 0)
		inst_oplog(l->in, l->id, "msg=\"agent channel unavailable\" error=\"%s\"",
		           err ? err->msg : "?");
	else {
		hm_agent_set_fd(l->agent, afd);
		/* A fresh host: the guest ends what an earlier connection left running. */
		json_t *hello = json_pack("{s:s}", "type", "hello");
		hm_agent_send(l->agent, hello, NULL);
		json_decref(hello);
		if (l->after_hello) {
			/* A clock set now, not when the request was made. */
			if (json_object_get(l->after_hello, "unix_ms")) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				json_object_set_new(l->after_hello, "unix_ms",
				                    json_integer((json_int_t)ts.tv_sec * 1000 +
				                                 ts.tv_nsec / 1000000));
			}
			if (hm_agent_send(l->agent, l->after_hello, NULL) == 0)
				inst_oplog(
				    l->in, l->id, "msg=\"%s sent\"",
				    json_string_value(json_object_get(l->after_hello, "type")));
		}
	}
	atomic_store(&l->greeted, true);
	_cleanup_free_ char *buf = xmalloc(AGENT_LINE_MAX + 1);
	_cleanup_free_ char *chunk = xmalloc(AGENT_LINE_MAX);
	struct hm_lines lines;
	hm_lines_init(&lines, buf, AGENT_LINE_MAX);
	bool stop = false;
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = l->vm->pidfd, .events = POLLIN },
			{ .fd = l->wake[0], .events = POLLIN },
			{ .fd = afd, .events = POLLIN },
		};
		/* Woken at least every LOG_CHECK_MS to keep the logs within their cap. */
		int n = poll(p, afd >= 0 ? 3 : 2, LOG_CHECK_MS);
		if (n < 0 && errno == EINTR)
			continue;
		inst_logs_trim(l->in, l->id);
		recheck_unknown(l);
		if (p[1].revents) {
			stop = true;
			break;
		}
		if (afd >= 0 && p[2].revents) {
			ssize_t r = read(afd, chunk, AGENT_LINE_MAX);
			if (r <= 0) {
				hm_agent_set_fd(l->agent, -1);
				close(afd);
				afd = -1;
			} else {
				/* An over-long line is dropped whole (guest/lines.c). */
				hm_lines_feed(&lines, chunk, (size_t)r, handle_agent_line, l);
			}
		}
		if (p[0].revents)
			break;
	}
	if (afd >= 0) {
		hm_agent_set_fd(l->agent, -1);
		close(afd);
	}
	if (!stop)
		finalize(l);
	return NULL;
}

void inst_live_free(struct live *l)
{
	if (!l || atomic_fetch_sub(&l->refs, 1) > 1)
		return;
	hm_agent_free(l->agent);
	json_decref(l->after_hello);
	if (l->vm)
		l->vm->ops->free(l->vm);
	pthread_mutex_destroy(&l->vm_lock);
	pthread_mutex_destroy(&l->pub_lock);
	free(l->pub.error);
	free(l->pub.exit_message);
	free(l->pub.stopped_at);
	close(l->wake[0]);
	close(l->wake[1]);
	free(l->id);
	free(l->dir);
	free(l);
}

/* Under lock: id is no longer on its way (listed, or its begin failed). */
static void coming_drop(struct hm_instances *in, const char *id)
{
	for (int i = 0; i < in->ncoming; i++)
		if (strcmp(in->coming[i], id) == 0) {
			in->ncoming--;
			memmove(in->coming[i], in->coming[in->ncoming], sizeof(in->coming[i]));
			return;
		}
}

int inst_live_begin(struct hm_instances *in, struct hm_instance_row *row, struct hm_vm *vm,
                    bool started, json_t *after_hello, struct hm_err **err)
{
	pthread_mutex_lock(&in->lock);
	/* A full table leaves that reader window open, nothing worse. */
	if (in->ncoming < (int)(sizeof(in->coming) / sizeof(in->coming[0])))
		snprintf(in->coming[in->ncoming++], sizeof(in->coming[0]), "%s", row->id);
	pthread_mutex_unlock(&in->lock);
	int r = hm_store_instance_update(in->st, row, err);
	pthread_mutex_lock(&in->lock);
	if (r == 0)
		inst_live_start(in, row->id, vm, started, after_hello); /* drops the mark */
	else
		coming_drop(in, row->id);
	pthread_mutex_unlock(&in->lock);
	return r;
}

/* Start monitoring `vm` (taken over) for instance `id`; adds it to the list. Under lock. */
void inst_live_start(struct hm_instances *in, const char *id, struct hm_vm *vm, bool started,
                     json_t *after_hello)
{
	coming_drop(in, id);
	struct live *l = xcalloc(1, sizeof(*l));
	l->after_hello = after_hello;
	l->id = xstrdup(id);
	l->dir = inst_path(in, id, NULL);
	l->vm = vm;
	l->in = in;
	atomic_init(&l->started, started);
	atomic_init(&l->exited, false);
	atomic_init(&l->greeted, false);
	atomic_init(&l->refs, 1);
	atomic_init(&l->stop_asked, 0);
	atomic_init(&l->boot_us, 0);
	l->born_ms = inst_mono_ms();
	atomic_init(&l->conns, 0);
	atomic_init(&l->draining, false);
	atomic_init(&l->sleeping, false);
	atomic_init(&l->last_io_ms, 0);
	atomic_init(&l->requests, 0);
	l->vmm_start_us = vm->start_us;
	l->vmm_load_us = vm->load_us;
	l->agent = hm_agent_new();
	pthread_mutex_init(&l->vm_lock, NULL);
	pthread_mutex_init(&l->pub_lock, NULL);
	l->pub.vm_state = HM_VM_RUNNING; /* as spawned, or resumed, until the monitor asks */
	l->pub.exit_code = -1;
	if (pipe2(l->wake, O_CLOEXEC) < 0)
		abort();
	if (pthread_create(&l->thread, NULL, monitor, l) != 0)
		abort();
	l->next = in->lives;
	in->lives = l;
	inst_changed(in);
}

struct live *inst_live_take(struct hm_instances *in, const char *id)
{
	struct live *l = NULL;
	pthread_mutex_lock(&in->lock);
	for (struct live **pp = &in->lives; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			l = *pp;
			*pp = l->next;
			break;
		}
	}
	pthread_mutex_unlock(&in->lock);
	if (!l)
		return NULL;
	inst_live_silence(l);
	inst_changed(in);
	return l;
}

void inst_live_silence(struct live *l)
{
	if (l->joined)
		return;
	if (write(l->wake[1], "x", 1) < 0) {
		/* the monitor also ends when the VMM exits */
	}
	pthread_join(l->thread, NULL);
	l->joined = true;
}

void inst_live_publish(struct live *l, enum hm_vm_state s, const char *error)
{
	pthread_mutex_lock(&l->pub_lock);
	l->pub.vm_state = s;
	free(l->pub.error);
	l->pub.error =
	    s == HM_VM_UNKNOWN ? xstrdup(error ? error : "the VMM does not answer") : NULL;
	pthread_mutex_unlock(&l->pub_lock);
	inst_changed(l->in);
}

void inst_changed(struct hm_instances *in)
{
	pthread_mutex_lock(&in->changes_lock);
	in->changes++;
	pthread_cond_broadcast(&in->changes_cond);
	pthread_mutex_unlock(&in->changes_lock);
}

void inst_live_refresh(struct live *l)
{
	struct hm_vm_info info = { .state = HM_VM_UNKNOWN, .exit_status = -1 };
	_cleanup_err_ struct hm_err *err = NULL;
	if (l->vm->ops->info(l->vm, &info, &err) < 0)
		info.state = HM_VM_UNKNOWN;
	/* The exit is the monitor's to publish, once it is recorded. */
	if (info.state != HM_VM_EXITED)
		inst_live_publish(l, info.state, err ? err->msg : NULL);
}

void inst_live_view(struct live *l, struct live_view *v)
{
	pthread_mutex_lock(&l->pub_lock);
	v->vm_state = l->pub.vm_state;
	v->error = l->pub.error ? xstrdup(l->pub.error) : NULL;
	v->exit_code = l->pub.exit_code;
	v->exit_message = l->pub.exit_message ? xstrdup(l->pub.exit_message) : NULL;
	v->stopped_at = l->pub.stopped_at ? xstrdup(l->pub.stopped_at) : NULL;
	pthread_mutex_unlock(&l->pub_lock);
}

void inst_live_view_done(struct live_view *v)
{
	free(v->error);
	free(v->exit_message);
	free(v->stopped_at);
	memset(v, 0, sizeof(*v));
}

unsigned long inst_changes(struct hm_instances *in)
{
	pthread_mutex_lock(&in->changes_lock);
	unsigned long c = in->changes;
	pthread_mutex_unlock(&in->changes_lock);
	return c;
}

void inst_changes_wait(struct hm_instances *in, unsigned long seen, long ms)
{
	struct timespec until = hm_mono_after(ms);
	pthread_mutex_lock(&in->changes_lock);
	while (in->changes == seen &&
	       pthread_cond_timedwait(&in->changes_cond, &in->changes_lock, &until) == 0) {
	}
	pthread_mutex_unlock(&in->changes_lock);
}

struct live *inst_live_get(struct hm_instances *in, const char *id)
{
	bool coming;
	return inst_live_get_or_coming(in, id, &coming);
}

struct live *inst_live_get_or_coming(struct hm_instances *in, const char *id, bool *coming)
{
	pthread_mutex_lock(&in->lock);
	struct live *l = inst_live_find(in, id);
	if (l)
		atomic_fetch_add(&l->refs, 1);
	*coming = false;
	for (int i = 0; !l && i < in->ncoming && !*coming; i++)
		*coming = strcmp(in->coming[i], id) == 0;
	pthread_mutex_unlock(&in->lock);
	return l;
}

/* ---- exec sessions ---- */

struct hm_exec {
	struct live *live;
	struct hm_agent_session *session;
};

int hm_instances_exec_open(struct hm_instances *in, const char *key, struct hm_exec **ret,
                           struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	struct live *l = state == HM_STATE_RUNNING ? inst_live_get(in, row.id) : NULL;
	int r = 0;
	if (!l) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance must be running (current state: %s)",
		               hm_state_name(state));
	} else {
		struct hm_exec *x = xcalloc(1, sizeof(*x));
		x->live = l;
		if (hm_agent_session_open(l->agent, &x->session, err) < 0) {
			inst_live_free(l);
			free(x);
			r = -1;
		} else {
			*ret = x;
		}
	}
	hm_instance_row_done(&row);
	return r;
}

int hm_exec_fd(struct hm_exec *x)
{
	return hm_agent_session_fd(x->session);
}

int hm_exec_send(struct hm_exec *x, json_t *msg, struct hm_err **err)
{
	json_object_set_new(msg, "id", json_integer((json_int_t)hm_agent_session_id(x->session)));
	return hm_agent_send(x->live->agent, msg, err);
}

json_t *hm_exec_take(struct hm_exec *x, bool *ended)
{
	return hm_agent_session_take(x->session, ended);
}

void hm_exec_close(struct hm_exec *x)
{
	if (!x)
		return;
	hm_agent_session_close(x->session);
	inst_live_free(x->live);
	free(x);
}
