/*
 * instance/instances: the instance service (see instances.h for the model).
 *
 * Each instance owns a folder, $DATA_DIR/instances/<id>/:
 *   config.img      the guest config disk (docs/guest.md), with the exit record
 *   overlay.ext4    the writable layer over the image (sparse)
 *   logs/app.log    the serial console: the program's output
 *   logs/vmm.log    the VMM process's own output
 *   logs/hypeman.log  what the daemon did to this instance
 *   run/            the VMM's sockets and pid file
 *
 * Threads: request handlers call in under `lock` for the list of live VMs;
 * one monitor thread per live VM reads the guest agent channel and waits on
 * the VMM's pidfd. When the VMM exits, the monitor records the outcome (the
 * guest's exit record) in the store. A per-VM mutex serialises calls into
 * the VMM handle. A failed create removes everything it made: row, folder,
 * process.
 */
#include "instance/instances.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "boot/guestcfg.h"
#include "boot/initrd.h"
#include "boot/kernel.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/tags.h"
#include "net/net.h"
#include "store/volumes.h"
#include "volume/volumes.h"
#include "core/xalloc.h"
#include "host/host.h"
#include "image/images.h"
#include "instance/agent.h"
#include "instance/command.h"
#include "instance/internal.h"
#include "instance/payload.h"
#include "instance/logs.h"
#include "store/instances.h"
#include "vmm/vmm.h"

#define DEFAULT_MEM     (1LL << 30)
#define DEFAULT_OVERLAY (10LL << 30)
#define DEFAULT_VCPUS   2
#define MIN_MEM         (64LL << 20)
#define MAX_MEM         (1LL << 40)
#define MIN_OVERLAY     (64LL << 20)
#define MAX_OVERLAY     (100LL << 30)
#define MAX_VCPUS       64
#define AGENT_LINE_MAX  (64u << 10)

/* ---- small helpers ---- */

double inst_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

char *inst_path(struct hm_instances *in, const char *id, const char *rel)
{
	return rel ? xasprintf("%s/%s/%s", in->dir, id, rel) : xasprintf("%s/%s", in->dir, id);
}

/* Append one logfmt line to the instance's operations log (logs/hypeman.log). */
void inst_oplog(struct hm_instances *in, const char *id, const char *fmt, ...)
{
	_cleanup_free_ char *path = inst_path(in, id, "logs/hypeman.log");
	_cleanup_free_ char *ts = hm_now_rfc3339();
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	_cleanup_free_ char *line = xasprintf("ts=%s %s\n", ts, msg ? msg : "");
	hm_write_all(fd, line, strlen(line));
	close(fd);
}

static char *human_size(int64_t b)
{
	if (b > 0 && b % (1LL << 30) == 0)
		return xasprintf("%lldGB", (long long)(b >> 30));
	if (b > 0 && b % (1LL << 20) == 0)
		return xasprintf("%lldMB", (long long)(b >> 20));
	return xasprintf("%lldB", (long long)b);
}

struct live *inst_live_find(struct hm_instances *in, const char *id)
{
	for (struct live *l = in->lives; l; l = l->next)
		if (strcmp(l->id, id) == 0)
			return l;
	return NULL;
}

json_t *inst_spec_of(const struct hm_instance_row *r)
{
	json_t *spec = r->spec ? json_loads(r->spec, 0, NULL) : NULL;
	if (json_is_object(spec))
		return spec;
	json_decref(spec);
	return json_object();
}

/* ---- operation locks ---- */

struct op_lock {
	struct op_lock *next;
	char *id;
	pthread_mutex_t m;
	int users; /* holders and waiters */
};

void inst_op_lock(struct hm_instances *in, const char *id)
{
	pthread_mutex_lock(&in->lock);
	struct op_lock *o = in->op_locks;
	while (o && strcmp(o->id, id) != 0)
		o = o->next;
	if (!o) {
		o = xcalloc(1, sizeof(*o));
		o->id = xstrdup(id);
		pthread_mutex_init(&o->m, NULL);
		o->next = in->op_locks;
		in->op_locks = o;
	}
	o->users++;
	pthread_mutex_unlock(&in->lock);
	pthread_mutex_lock(&o->m);
}

void inst_op_unlock(struct hm_instances *in, const char *id)
{
	pthread_mutex_lock(&in->lock);
	for (struct op_lock **pp = &in->op_locks; *pp; pp = &(*pp)->next) {
		struct op_lock *o = *pp;
		if (strcmp(o->id, id) != 0)
			continue;
		pthread_mutex_unlock(&o->m);
		if (--o->users == 0) {
			*pp = o->next;
			pthread_mutex_destroy(&o->m);
			free(o->id);
			free(o);
		}
		break;
	}
	pthread_mutex_unlock(&in->lock);
}

int inst_find_locked(struct hm_instances *in, const char *key, struct hm_instance_row *row,
                     struct hm_err **err)
{
	if (hm_store_instance_find(in->st, key, row, err) < 0)
		return -1;
	_cleanup_free_ char *id = xstrdup(row->id);
	inst_op_lock(in, id);
	hm_instance_row_done(row);
	*row = (struct hm_instance_row){ .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, row, err) < 0) {
		inst_op_unlock(in, id);
		return -1;
	}
	return 0;
}

/* ---- network ---- */

/* The instance's network from its spec: NULL when it has none. */
json_t *inst_spec_net(json_t *spec)
{
	json_t *n = json_object_get(spec, "network");
	return json_is_true(json_object_get(n, "enabled")) ? n : NULL;
}

static void tap_of(const char *id, char tap[HM_NET_TAP_MAX])
{
	hm_net_tap_name(id, tap);
}

/* The VM is gone: its TAP and upload limit go with it (the address stays the instance's). */
void inst_drop_tap(struct hm_instances *in, const char *id)
{
	if (!hm_net_enabled(in->net))
		return;
	char tap[HM_NET_TAP_MAX];
	tap_of(id, tap);
	hm_net_tap_delete(in->net, tap);
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, &row, NULL) == 0) {
		json_t *spec = inst_spec_of(&row);
		const char *ip = json_string_value(json_object_get(inst_spec_net(spec), "ip"));
		if (ip)
			hm_net_limit_upload(in->net, ip, 0, NULL);
		json_decref(spec);
		hm_instance_row_done(&row);
	}
}

/* The guest's rate limits, on its TAP (download) and in the rules (upload). */
static int apply_limits(struct hm_instances *in, json_t *net, const char *tap, struct hm_err **err)
{
	json_int_t down = json_integer_value(json_object_get(net, "download_bps"));
	json_int_t up = json_integer_value(json_object_get(net, "upload_bps"));
	if (tap && down > 0 && hm_net_limit_download(in->net, tap, (uint64_t)down, err) < 0)
		return -1;
	if (up > 0 && hm_net_limit_upload(in->net, json_string_value(json_object_get(net, "ip")),
	                                  (uint64_t)up, err) < 0)
		return -1;
	return 0;
}

/* "500Mbps"-style text for a rate in bytes/s, as the API shows it. */
static char *rate_text(json_int_t bps)
{
	unsigned long long bits = (unsigned long long)bps * 8;
	if (bits % 1000000000ull == 0)
		return xasprintf("%lluGbps", bits / 1000000000ull);
	if (bits % 1000000ull == 0)
		return xasprintf("%lluMbps", bits / 1000000ull);
	if (bits % 1000ull == 0)
		return xasprintf("%llukbps", bits / 1000ull);
	return xasprintf("%llubps", bits);
}

/* Under the instances folder: folders of deletes under way (no id starts with a dot). */
#define DELETED_DIR ".deleted"

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

static void handle_agent_line(struct live *l, const char *line)
{
	json_t *msg = json_loads(line, 0, NULL);
	if (!msg)
		return;
	if (hm_agent_dispatch(l->agent, msg)) {
		json_decref(msg);
		return;
	}
	const char *type = json_string_value(json_object_get(msg, "type"));
	/* The guest answers our hello with its program's pid: a host that restarted
	 * during the boot missed `started` and learns it there. */
	bool started = type && (strcmp(type, "started") == 0 ||
	                        (strcmp(type, "hello") == 0 &&
	                         json_integer_value(json_object_get(msg, "program_pid")) > 0));
	if (started && !atomic_exchange(&l->started, true)) {
		/* Only the phase: an operation may be changing the rest of the row. */
		hm_store_instance_set_phase(l->in->st, l->id, "Running", NULL);
		inst_changed(l->in);
		inst_oplog(l->in, l->id, "msg=\"program started\" pid=%lld guest_uptime_ms=%lld%s",
		           (long long)json_integer_value(json_object_get(msg, "pid")) +
		               (long long)json_integer_value(json_object_get(msg, "program_pid")),
		           (long long)json_integer_value(json_object_get(msg, "uptime_ms")),
		           strcmp(type, "hello") == 0 ? " via=hello" : "");
	} else if (type && strcmp(type, "boot") == 0) {
		inst_oplog(l->in, l->id, "msg=\"guest init up\" guest_uptime_ms=%lld",
		           (long long)json_integer_value(json_object_get(msg, "uptime_ms")));
	} else if (type && strcmp(type, "exit") == 0) {
		inst_oplog(l->in, l->id, "msg=\"program exited\" code=%lld",
		           (long long)json_integer_value(json_object_get(msg, "code")));
	}
	json_decref(msg);
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
	if (hm_guestcfg_read_exit(cfg, &code, &message, &err) <= 0) {
		code = -1;
		free(message);
		message = xasprintf("the VM stopped without an exit report from the guest%s",
		                    err ? " (config disk unreadable)" : "");
	}
	/* Logged first: whoever sees Stopped finds the line there. Then only the
	 * columns a VM's end changes: an operation that saw the VMM gone (an attach,
	 * a start) may have written the rest of the row meanwhile. */
	_cleanup_free_ char *shown = hm_logfmt_escape(message);
	_cleanup_free_ char *stopped_at = hm_now_rfc3339();
	inst_oplog(in, l->id, "msg=\"vm stopped\" exit_code=%d exit_message=\"%s\"", code, shown);
	hm_store_instance_set_stopped(in->st, l->id, l->vm->pid, code, message, stopped_at, NULL);
	pthread_mutex_lock(&l->pub_lock);
	l->pub.exit_code = code;
	free(l->pub.exit_message);
	l->pub.exit_message = message;
	free(l->pub.stopped_at);
	l->pub.stopped_at = xstrdup(stopped_at);
	pthread_mutex_unlock(&l->pub_lock);
	inst_live_publish(l, HM_VM_EXITED, NULL);
	inst_drop_tap(in, l->id);
	atomic_store(&l->exited, true);
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
	size_t len = 0;
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
		if (p[1].revents) {
			stop = true;
			break;
		}
		if (afd >= 0 && p[2].revents) {
			ssize_t r = read(afd, buf + len, AGENT_LINE_MAX - len);
			if (r <= 0) {
				hm_agent_set_fd(l->agent, -1);
				close(afd);
				afd = -1;
			} else {
				len += (size_t)r;
				char *nl;
				while ((nl = memchr(buf, '\n', len))) {
					*nl = '\0';
					handle_agent_line(l, buf);
					len -= (size_t)(nl + 1 - buf);
					memmove(buf, nl + 1, len);
				}
				if (len == AGENT_LINE_MAX)
					len = 0; /* an over-long line: drop it */
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

/* Start monitoring `vm` (taken over) for instance `id`; adds it to the list. Under lock. */
void inst_live_start(struct hm_instances *in, const char *id, struct hm_vm *vm, bool started,
                     json_t *after_hello)
{
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
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&in->changes_lock);
	while (in->changes == seen &&
	       pthread_cond_timedwait(&in->changes_cond, &in->changes_lock, &until) == 0) {
	}
	pthread_mutex_unlock(&in->changes_lock);
}

/* ---- the derived state ---- */

void inst_status_of(struct hm_instances *in, const struct hm_instance_row *r,
                    struct inst_status *st)
{
	*st = (struct inst_status){
		.state = HM_STATE_STOPPED,
		.exit_code = r->exit_code,
		.exit_message = r->exit_message ? xstrdup(r->exit_message) : NULL,
		.stopped_at = r->stopped_at ? xstrdup(r->stopped_at) : NULL,
	};
	/* The published state: no VMM is asked, no lock an operation holds is waited on. */
	struct live *l = inst_live_get(in, r->id);
	if (strcmp(r->phase, "Created") == 0) {
		st->state = HM_STATE_CREATED;
	} else if (l) {
		struct live_view v = { 0 };
		inst_live_view(l, &v);
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
	} else if (strcmp(r->phase, "Stopped") != 0) {
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

json_t *inst_json(struct hm_instances *in, const struct hm_instance_row *r)
{
	json_t *spec = inst_spec_of(r);
	struct inst_status sts;
	inst_status_of(in, r, &sts);
	enum hm_state state = sts.state;

	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "image", json_string(r->image));
	json_object_set_new(o, "state", json_string(hm_state_name(state)));
	json_object_set_new(o, "state_error", sts.error ? json_string(sts.error) : json_null());
	json_int_t mem = json_integer_value(json_object_get(spec, "mem_bytes"));
	json_int_t ovl = json_integer_value(json_object_get(spec, "overlay_bytes"));
	_cleanup_free_ char *mem_s = human_size(mem);
	_cleanup_free_ char *ovl_s = human_size(ovl);
	json_object_set_new(o, "size", json_string(mem_s));
	json_object_set_new(o, "overlay_size", json_string(ovl_s));
	json_object_set(o, "vcpus", json_object_get(spec, "vcpus"));
	json_t *env = json_object_get(spec, "env");
	json_object_set_new(o, "env", env ? json_incref(env) : json_object());
	json_t *tags = json_object_get(spec, "tags");
	json_object_set_new(o, "tags", tags ? json_incref(tags) : json_object());
	json_t *net = inst_spec_net(spec);
	json_t *nj = json_pack("{s:b,s:s,s:O?,s:O?}", "enabled", net != NULL, "name", "default",
	                       "ip", net ? json_object_get(net, "ip") : NULL, "mac",
	                       net ? json_object_get(net, "mac") : NULL);
	json_int_t down = json_integer_value(json_object_get(net, "download_bps"));
	json_int_t up = json_integer_value(json_object_get(net, "upload_bps"));
	if (down > 0) {
		_cleanup_free_ char *t = rate_text(down);
		json_object_set_new(nj, "bandwidth_download", json_string(t));
	}
	if (up > 0) {
		_cleanup_free_ char *t = rate_text(up);
		json_object_set_new(nj, "bandwidth_upload", json_string(t));
	}
	json_object_set_new(o, "network", nj);
	json_int_t dio = json_integer_value(json_object_get(spec, "disk_io_bps"));
	if (dio > 0) {
		_cleanup_free_ char *h = human_size(dio);
		_cleanup_free_ char *t = xasprintf("%s/s", h);
		json_object_set_new(o, "disk_io_bps", json_string(t));
	}
	json_t *vols = json_array();
	size_t vi;
	json_t *va;
	json_array_foreach (json_object_get(spec, "volumes"), vi, va)
		json_array_append_new(
		    vols, json_pack("{s:O,s:O,s:b}", "volume_id", json_object_get(va, "id"),
		                    "mount_path", json_object_get(va, "mount_path"), "readonly",
		                    json_is_true(json_object_get(va, "readonly"))));
	json_object_set_new(o, "volumes", vols);
	json_object_set_new(o, "created_at", json_string(r->created_at));
	json_object_set_new(o, "expires_at", json_null());
	json_object_set_new(o, "started_at",
	                    r->started_at ? json_string(r->started_at) : json_null());
	bool stopped = state == HM_STATE_STOPPED;
	json_object_set_new(o, "stopped_at",
	                    stopped && sts.stopped_at ? json_string(sts.stopped_at) : json_null());
	json_object_set_new(o, "exit_code",
	                    stopped && sts.exit_code >= 0 ? json_integer(sts.exit_code)
	                                                  : json_null());
	if (stopped && sts.exit_message)
		json_object_set_new(o, "exit_message", json_string(sts.exit_message));
	json_object_set_new(o, "has_snapshot", json_boolean(state == HM_STATE_STANDBY));
	json_object_set_new(o, "hypervisor", json_string("qemu-microvm"));
	json_t *argv = json_object_get(spec, "argv");
	if (argv)
		json_object_set(o, "command",
		                argv); /* extension: what runs, after Docker's rules */
	json_decref(spec);
	inst_status_done(&sts);
	return o;
}

/* ---- open / close ---- */

/* Every instance keeps its address across daemon restarts. */
static void lease_again(struct hm_instances *in, const struct hm_instance_row *r)
{
	json_t *spec = inst_spec_of(r);
	json_t *net = inst_spec_net(spec);
	const char *ip = json_string_value(json_object_get(net, "ip"));
	struct hm_net_lease lease;
	_cleanup_err_ struct hm_err *err = NULL;
	if (ip && hm_net_enabled(in->net) && hm_net_lease(in->net, ip, &lease, &err) < 0)
		log_warn("instances", "address not kept", "id=%s ip=%s error=\"%s\"", r->id, ip,
		         err->msg);
	json_decref(spec);
}

/*
 * After a daemon died during a standby whose VMM is gone: is the VM saved
 * whole? The device state is renamed into place once written, and so is a
 * RAM file moved off tmpfs; a RAM file still on tmpfs (the VMM ended before
 * the move) is moved now. Otherwise the partial state goes.
 */
static bool standby_was_saved(struct hm_instances *in, const char *id)
{
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	_cleanup_free_ char *state = inst_path(in, id, HM_PAYLOAD_STATE);
	_cleanup_free_ char *mem = inst_path(in, id, HM_PAYLOAD_MEMORY);
	_cleanup_free_ char *tmpfs = inst_mem_tmpfs(in, id);
	if (access(state, F_OK) < 0)
		return false;
	if (tmpfs && access(tmpfs, F_OK) == 0) {
		_cleanup_free_ char *tmp = xasprintf("%s.tmp", mem);
		_cleanup_err_ struct hm_err *err = NULL;
		unlink(tmp);
		unlink(mem);
		if (hm_copy_sparse(tmpfs, tmp, 0600, NULL, &err) < 0 || rename(tmp, mem) < 0) {
			unlink(tmp);
			hm_payload_drop_memory(dir);
			return false;
		}
		unlink(tmpfs);
	}
	if (access(mem, F_OK) == 0)
		return true;
	hm_payload_drop_memory(dir);
	return false;
}

/*
 * A row that records no running VMM (Stopped, Standby, Created) whose VMM
 * runs all the same: a daemon died between starting it (a start, a
 * restore) and recording it. Found by the pid file QEMU writes at start,
 * and touched only if that pid is the QEMU of this instance's run dir
 * (adopt checks). A guest that runs was started or resumed: it is adopted,
 * as the operation would have recorded it. One still paused (a restore that
 * had not resumed it) is killed: its saved state is intact, the instance
 * stays as recorded. Returns true if it adopted one (the caller keeps it).
 */
static bool settle_unrecorded_vmm(struct hm_instances *in, struct hm_instance_row *r)
{
	_cleanup_free_ char *run = inst_path(in, r->id, "run");
	_cleanup_free_ char *pidfile = inst_path(in, r->id, "run/vmm.pid");
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (hm_read_file(pidfile, 64, &text, &len, NULL) < 0)
		return false;
	long pid = strtol(text, NULL, 10);
	struct hm_vm *vm = NULL;
	if (pid <= 0 || in->vmm->adopt(run, (pid_t)pid, &vm, NULL) < 0)
		return false;
	struct hm_vm_info info = { .exit_status = -1 };
	if (vm->ops->info(vm, &info, NULL) == 0 && info.state == HM_VM_RUNNING) {
		bool resumed = strcmp(r->phase, "Standby") == 0;
		if (resumed) {
			_cleanup_free_ char *state = inst_path(in, r->id, HM_PAYLOAD_STATE);
			unlink(state); /* the running VM owns the memory file again */
		}
		free(r->phase);
		r->phase = xstrdup(resumed ? "Running" : "Booting");
		r->vmm_pid = (pid_t)pid;
		hm_store_instance_update(in->st, r, NULL);
		pthread_mutex_lock(&in->lock);
		inst_live_start(in, r->id, vm, resumed, NULL);
		pthread_mutex_unlock(&in->lock);
		json_t *spec = inst_spec_of(r);
		json_t *net = inst_spec_net(spec);
		char tap[HM_NET_TAP_MAX];
		tap_of(r->id, tap);
		if (net && hm_net_enabled(in->net)) /* the operation may not have got to them */
			apply_limits(in, net, tap, NULL);
		json_decref(spec);
		log_warn("instances", "adopted a VMM an operation had not recorded",
		         "id=%s name=%s pid=%ld", r->id, r->name, pid);
		inst_oplog(in, r->id, "msg=\"adopted a VMM left unrecorded\" pid=%ld", pid);
		return true;
	}
	vm->ops->kill(vm, 10000, NULL);
	vm->ops->free(vm);
	inst_drop_tap(in, r->id);
	log_warn("instances", "killed a VMM no operation finished",
	         "id=%s name=%s pid=%ld phase=%s", r->id, r->name, pid, r->phase);
	inst_oplog(in, r->id, "msg=\"killed a paused VMM left by an unfinished operation\" pid=%ld",
	           pid);
	return false;
}

/*
 * What a daemon killed in a delete or a create left: a row whose folder is
 * gone is a delete that moved the folder aside (hm_instances_delete): the row
 * goes too. A row still Created, whose VMM was never recorded nor is running
 * (settle_unrecorded_vmm), is a create or fork that did not finish: undone.
 * Returns true when the row is gone.
 */
static bool finish_interrupted(struct hm_instances *in, struct hm_instance_row *r, bool no_folder)
{
	if (!no_folder && strcmp(r->phase, "Created") != 0)
		return false;
	_cleanup_free_ char *dir = inst_path(in, r->id, NULL);
	hm_rm_rf(dir, NULL);
	if (hm_store_instance_delete(in->st, r->id, NULL) < 0)
		return false;
	if (!no_folder) { /* its address was taken again by lease_again */
		json_t *spec = inst_spec_of(r);
		hm_net_release(in->net,
		               json_string_value(json_object_get(inst_spec_net(spec), "ip")));
		json_decref(spec);
	}
	log_warn("instances",
	         no_folder ? "finished an interrupted delete" : "undid an interrupted create",
	         "id=%s name=%s", r->id, r->name);
	return true;
}

static void adopt_all(struct hm_instances *in)
{
	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	_cleanup_free_ char *deleted = xasprintf("%s/" DELETED_DIR, in->dir);
	hm_rm_rf(deleted, NULL); /* folders of deletes that were under way */
	hm_mkdir_p(deleted, 0700, NULL);
	if (hm_store_instance_list(in->st, &rows, &n, NULL) < 0)
		return;
	_cleanup_free_ char **keep = xcalloc(n + 1, sizeof(*keep));
	_cleanup_free_ char **keep_ids = xcalloc(n + 1, sizeof(*keep_ids));
	size_t nkeep = 0;
	for (size_t i = 0; i < n; i++) {
		struct hm_instance_row *r = &rows[i];
		_cleanup_free_ char *dir = inst_path(in, r->id, NULL);
		if (access(dir, F_OK) < 0 && errno == ENOENT && finish_interrupted(in, r, true))
			continue;
		lease_again(in, r);
		if (strcmp(r->phase, "Booting") != 0 && strcmp(r->phase, "Running") != 0) {
			if (settle_unrecorded_vmm(in, r)) {
				keep_ids[nkeep] = xstrdup(r->id);
				keep[nkeep] = xmalloc(HM_NET_TAP_MAX);
				tap_of(r->id, keep[nkeep++]);
			} else {
				finish_interrupted(in, r, false);
			}
			continue;
		}
		_cleanup_free_ char *run = inst_path(in, r->id, "run");
		struct hm_vm *vm = NULL;
		_cleanup_err_ struct hm_err *err = NULL;
		if (r->vmm_pid > 0 && in->vmm->adopt(run, r->vmm_pid, &vm, &err) == 0) {
			log_info("instances", "re-adopted", "id=%s name=%s pid=%d", r->id, r->name,
			         (int)r->vmm_pid);
			inst_oplog(in, r->id, "msg=\"re-adopted by a restarted daemon\" pid=%d",
			           (int)r->vmm_pid);
			/* A daemon that died in a standby, between the save and the VMM's
			 * end, left the guest paused: the standby did not happen. */
			_cleanup_free_ char *state = inst_path(in, r->id, HM_PAYLOAD_STATE);
			if (access(state, F_OK) == 0) {
				_cleanup_free_ char *tmpfs = inst_mem_tmpfs(in, r->id);
				_cleanup_free_ char *mem = inst_path(in, r->id, HM_PAYLOAD_MEMORY);
				if (tmpfs && access(tmpfs, F_OK) == 0)
					unlink(mem); /* a copy the standby made; the VM runs on
					                tmpfs */
				unlink(state);
				vm->ops->resume(vm, NULL);
				inst_oplog(in, r->id,
				           "msg=\"an unfinished standby undone: running on\"");
			}
			pthread_mutex_lock(&in->lock);
			inst_live_start(in, r->id, vm, strcmp(r->phase, "Running") == 0, NULL);
			pthread_mutex_unlock(&in->lock);
			keep_ids[nkeep] = xstrdup(r->id);
			keep[nkeep] = xmalloc(HM_NET_TAP_MAX);
			tap_of(r->id, keep[nkeep++]);
			json_t *spec = inst_spec_of(r);
			json_t *net = inst_spec_net(spec);
			if (net && hm_net_enabled(in->net) && apply_limits(in, net, NULL, &err) < 0)
				log_warn("instances", "limits not restored", "id=%s error=\"%s\"",
				         r->id, err->msg);
			json_decref(spec);
			continue;
		}
		/* Its VMM ended while the daemon was away. A standby that had saved the
		 * VM whole is finished: the instance is in Standby. */
		if (standby_was_saved(in, r->id)) {
			free(r->phase);
			r->phase = xstrdup("Standby");
			r->vmm_pid = 0;
			hm_store_instance_update(in->st, r, NULL);
			inst_oplog(in, r->id, "msg=\"found saved at daemon start: in standby\"");
			continue;
		}
		/* Otherwise record what is known. */
		_cleanup_free_ char *cfg = inst_path(in, r->id, "config.img");
		int code = -1;
		char *msg = NULL;
		if (hm_guestcfg_read_exit(cfg, &code, &msg, NULL) <= 0) {
			code = -1;
			free(msg);
			msg = xstrdup("the VM stopped while the daemon was not running, without an "
			              "exit report");
		}
		free(r->phase);
		r->phase = xstrdup("Stopped");
		r->vmm_pid = 0;
		r->exit_code = code;
		free(r->exit_message);
		r->exit_message = msg;
		free(r->stopped_at);
		r->stopped_at = hm_now_rfc3339();
		hm_store_instance_update(in->st, r, NULL);
		inst_oplog(in, r->id, "msg=\"found stopped at daemon start\" exit_code=%d", code);
	}
	hm_instance_rows_free(rows, n);
	/* TAPs of VMs that died while the daemon was away, or of a crashed create. */
	hm_net_reclaim(in->net, (const char *const *)keep, nkeep);
	/* Likewise their RAM files on tmpfs. */
	inst_mem_reclaim(in, (const char *const *)keep_ids, nkeep);
	for (size_t i = 0; i < nkeep; i++)
		free(keep_ids[i]);
	for (size_t i = 0; i < nkeep; i++)
		free(keep[i]);
}

static char *self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return xstrdup(".");
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	return xstrdup(buf);
}

int hm_instances_open(struct hm_store *st, struct hm_images *images, struct hm_net *net,
                      const struct hm_config *cfg, const struct hm_accel_choice *accel,
                      struct hm_instances **ret, struct hm_err **err)
{
	struct hm_instances *in = xcalloc(1, sizeof(*in));
	in->accel = accel;
	in->net = net;
	in->st = st;
	in->images = images;
	in->cfg = cfg;
	in->vmm = &hm_vmm_qemu;
	in->dir = xasprintf("%s/instances", cfg->data_dir);
	in->tsc_khz = hm_vmm_host_tsc_khz();
	in->mem_dir = inst_mem_dir_pick(cfg->data_dir);
	pthread_mutex_init(&in->lock, NULL);
	pthread_mutex_init(&in->vol_lock, NULL);
	pthread_mutex_init(&in->changes_lock, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&in->changes_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (hm_mkdir_p(in->dir, 0700, err) < 0) {
		hm_instances_close(in);
		return -1;
	}

	_cleanup_err_ struct hm_err *kerr = NULL;
	_cleanup_free_ char *bindir = self_dir();
	_cleanup_free_ char *init_bin = xasprintf("%s/hypeman-init", bindir);
	_cleanup_free_ char *cache = xasprintf("%s/system/initrd", cfg->data_dir);
	if (hm_kernel_find(cfg->kernel_dir, cfg->data_dir, &in->kernel, &kerr) < 0 ||
	    hm_mkdir_p(cache, 0755, &kerr) < 0 ||
	    hm_initrd_ensure(&in->kernel, init_bin, cache, false, &in->initrd, &kerr) < 0) {
		in->boot_error = xstrdup(kerr ? kerr->msg : "no guest kernel");
		log_warn("instances", "instances cannot boot", "error=\"%s\"", in->boot_error);
	} else {
		log_info("instances", "guest kernel", "version=%s initrd=%s tsc_khz=%ld",
		         in->kernel.version, in->initrd, in->tsc_khz);
	}
	adopt_all(in);
	*ret = in;
	return 0;
}

void hm_instances_close(struct hm_instances *in)
{
	if (!in)
		return;
	for (;;) {
		pthread_mutex_lock(&in->lock);
		_cleanup_free_ char *id = in->lives ? xstrdup(in->lives->id) : NULL;
		pthread_mutex_unlock(&in->lock);
		if (!id)
			break;
		inst_live_free(inst_live_take(in, id));
	}
	while (in->op_locks) { /* none held: the API has stopped */
		struct op_lock *o = in->op_locks;
		in->op_locks = o->next;
		pthread_mutex_destroy(&o->m);
		free(o->id);
		free(o);
	}
	pthread_mutex_destroy(&in->lock);
	pthread_mutex_destroy(&in->vol_lock);
	pthread_mutex_destroy(&in->changes_lock);
	pthread_cond_destroy(&in->changes_cond);
	hm_kernel_done(&in->kernel);
	free(in->boot_error);
	inst_mem_dir_release(in);
	free(in->mem_dir);
	free(in->initrd);
	free(in->dir);
	free(in);
}

/* ---- create ---- */

struct create_req {
	const char *name;
	const char *image;
	int64_t vcpus, mem, overlay;
	json_t *env, *cmd, *entrypoint, *tags;
	bool network;
	int64_t down_bps, up_bps, disk_bps; /* 0: default */
	json_t *volumes;                    /* checked: [{id, mount_path, readonly}] (owned) */
};

static int size_field(json_t *req, const char *key, int64_t dflt, int64_t min, int64_t max,
                      int64_t *ret, struct hm_err **err)
{
	json_t *v = json_object_get(req, key);
	if (!v || json_is_null(v)) {
		*ret = dflt;
		return 0;
	}
	if (!json_is_string(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be a size string such as \"1GB\"", key);
	int64_t b;
	if (hm_parse_size(json_string_value(v), &b, NULL) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s`: invalid size `%.40s` (use e.g. \"512MB\", \"2GB\")", key,
		                  json_string_value(v));
	if (b < min || b > max) {
		_cleanup_free_ char *lo = human_size(min);
		_cleanup_free_ char *hi = human_size(max);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` %s is out of range (%s to %s)", key, json_string_value(v),
		                  lo, hi);
	}
	*ret = b;
	return 0;
}

/* A mount path a volume may take: absolute, clean, not a system directory. */
static int check_mount_path(const char *p, struct hm_err **err)
{
	static const char *const system[] = { "/",     "/bin",   "/boot",  "/dev",  "/etc",
		                              "/lib",  "/lib32", "/lib64", "/proc", "/run",
		                              "/sbin", "/sys",   "/usr",   "/var",  NULL };
	size_t n = p ? strlen(p) : 0;
	bool ok = n > 1 && n < 256 && p[0] == '/' && p[n - 1] != '/' && !strstr(p, "//") &&
	          !strstr(p, "/./") && !strstr(p, "/../") && strcmp(p + n - 2, "/.") != 0 &&
	          (n < 3 || strcmp(p + n - 3, "/..") != 0) && !strpbrk(p, " \n\t");
	for (size_t i = 0; ok && system[i]; i++)
		ok = strcmp(p, system[i]) != 0;
	static const char *const under[] = { "/proc/", "/sys/", "/dev/", NULL };
	for (size_t i = 0; ok && under[i]; i++)
		ok = strncmp(p, under[i], strlen(under[i])) != 0;
	if (!ok)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_mount_path",
		                  "mount path `%.100s` must be a clean absolute path (no spaces) "
		                  "outside the system directories (/, /etc, /usr, /proc, ...)",
		                  p ? p : "");
	return 0;
}

/* `volumes` of a create: shapes and paths; existence and sharing come later. */
static int parse_volumes(json_t *req, struct create_req *c, struct hm_err **err)
{
	json_t *vs = json_object_get(req, "volumes");
	c->volumes = json_array();
	if (!vs || json_is_null(vs))
		return 0;
	if (!json_is_array(vs) || json_array_size(vs) > MAX_VOLUMES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`volumes` must be an array of at most %d attachments",
		                  MAX_VOLUMES);
	size_t disks = 0, vi;
	json_t *vv;
	json_array_foreach (vs, vi, vv)
		disks += json_is_true(json_object_get(vv, "overlay")) ? 2 : 1;
	if (disks > HM_VM_MAX_DISKS - 3)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_field",
		    "too many volume disks: an overlay attachment takes two, and %d fit",
		    HM_VM_MAX_DISKS - 3);
	size_t i;
	json_t *v;
	json_array_foreach (vs, i, v) {
		const char *id = json_string_value(json_object_get(v, "volume_id"));
		const char *mp = json_string_value(json_object_get(v, "mount_path"));
		json_t *ro = json_object_get(v, "readonly"), *ov = json_object_get(v, "overlay");
		if (!json_is_object(v) || !id || !*id)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "volumes[%zu].volume_id is required", i);
		if (check_mount_path(mp, err) < 0)
			return -1;
		if ((ro && !json_is_null(ro) && !json_is_boolean(ro)))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "volumes[%zu].readonly must be a boolean", i);
		if (ov && !json_is_null(ov) && !json_is_boolean(ov))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "volumes[%zu].overlay must be a boolean", i);
		int64_t ovsize = 1LL << 30;
		if (json_is_true(ov) && size_field(v, "overlay_size", 1LL << 30, MIN_OVERLAY,
		                                   MAX_OVERLAY, &ovsize, err) < 0)
			return -1;
		for (size_t k = 0; k < json_array_size(c->volumes); k++) {
			const char *other = json_string_value(
			    json_object_get(json_array_get(c->volumes, k), "mount_path"));
			if (strcmp(other, mp) == 0)
				return hm_err_set(err, HM_ERR_INVALID, "invalid_mount_path",
				                  "two volumes on %s", mp);
		}
		json_t *att = json_pack("{s:s,s:s,s:b}", "id", id, "mount_path", mp, "readonly",
		                        json_is_true(ro) || json_is_true(ov));
		if (json_is_true(ov)) {
			json_object_set_new(att, "overlay", json_true());
			json_object_set_new(att, "overlay_bytes", json_integer(ovsize));
		}
		json_array_append_new(c->volumes, att);
	}
	return 0;
}

/*
 * Resolve each attachment to a volume (404 if none) and check sharing: a
 * read-write attachment needs the volume to itself, a read-only one needs
 * no writer. Under in->lock, so two creates cannot both take a volume.
 */
static int claim_volumes(struct hm_instances *in, json_t *vols, struct hm_err **err)
{
	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	if (hm_store_instance_list(in->st, &rows, &n, err) < 0)
		return -1;
	int r = 0;
	size_t i;
	json_t *v;
	json_array_foreach (vols, i, v) {
		struct hm_volume_row vr = { 0 };
		if (hm_store_volume_find(in->st, json_string_value(json_object_get(v, "id")), &vr,
		                         err) < 0) {
			r = -1;
			break;
		}
		json_object_set_new(v, "id", json_string(vr.id)); /* a name becomes the id */
		bool want_rw = !json_is_true(json_object_get(v, "readonly"));
		for (size_t k = 0; k < n && r == 0; k++) {
			json_t *spec = inst_spec_of(&rows[k]);
			size_t j;
			json_t *a;
			json_array_foreach (json_object_get(spec, "volumes"), j, a) {
				if (r == 0 &&
				    strcmp(json_string_value(json_object_get(a, "id")) ?: "",
				           vr.id) == 0 &&
				    (want_rw || !json_is_true(json_object_get(a, "readonly"))))
					r = hm_err_set(
					    err, HM_ERR_CONFLICT, "volume_in_use",
					    "volume `%s` is attached %s to instance %s; a "
					    "read-write attachment needs it alone",
					    vr.name,
					    json_is_true(json_object_get(a, "readonly"))
					        ? "read-only"
					        : "read-write",
					    rows[k].name);
			}
			json_decref(spec);
		}
		hm_volume_row_done(&vr);
		if (r < 0)
			break;
	}
	hm_instance_rows_free(rows, n);
	return r;
}

static int parse_create(json_t *req, const char *data_dir, const struct hm_accel_choice *accel,
                        struct create_req *c, struct hm_err **err)
{
	if (!json_is_object(req))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *name = json_object_get(req, "name");
	json_t *image = json_object_get(req, "image");
	if (!name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (!json_is_string(name))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "`name` must be a string");
	if (hm_command_check_name(json_string_value(name), err) < 0)
		return -1;
	if (!image)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`image` is required");
	if (!json_is_string(image) || json_string_length(image) == 0 ||
	    json_string_length(image) > 512)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`image` must be a non-empty image reference");
	c->name = json_string_value(name);
	c->image = json_string_value(image);

	json_t *vcpus = json_object_get(req, "vcpus");
	c->vcpus = DEFAULT_VCPUS;
	if (vcpus && !json_is_null(vcpus)) {
		if (!json_is_integer(vcpus) || json_integer_value(vcpus) < 1 ||
		    json_integer_value(vcpus) > MAX_VCPUS)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`vcpus` must be an integer from 1 to %d", MAX_VCPUS);
		c->vcpus = json_integer_value(vcpus);
	}
	if (size_field(req, "size", DEFAULT_MEM, MIN_MEM, MAX_MEM, &c->mem, err) < 0 ||
	    size_field(req, "overlay_size", DEFAULT_OVERLAY, MIN_OVERLAY, MAX_OVERLAY, &c->overlay,
	               err) < 0)
		return -1;
	struct hm_host_capacity cap = { 0 };
	if (hm_host_capacity(data_dir, 0, &cap, NULL) == 0 && cap.memory_bytes > 0 &&
	    c->mem > cap.memory_bytes) {
		_cleanup_free_ char *h = human_size(cap.memory_bytes);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`size` %s is more than this host's memory (%s)",
		                  json_string_value(json_object_get(req, "size")), h);
	}
	c->env = json_object_get(req, "env");
	if (c->env && !json_is_null(c->env) && hm_command_check_env(c->env, err) < 0)
		return -1;
	c->cmd = json_object_get(req, "cmd");
	if (c->cmd && !json_is_null(c->cmd) && hm_command_check_args(c->cmd, "cmd", err) < 0)
		return -1;
	c->entrypoint = json_object_get(req, "entrypoint");
	if (c->entrypoint && !json_is_null(c->entrypoint) &&
	    hm_command_check_args(c->entrypoint, "entrypoint", err) < 0)
		return -1;
	c->tags = json_object_get(req, "tags");
	if (c->tags && !json_is_null(c->tags) && hm_tags_validate(c->tags, err) < 0)
		return -1;
	json_t *net = json_object_get(req, "network");
	if (net && !json_is_null(net) && !json_is_object(net))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`network` must be an object");
	json_t *en = json_object_get(net, "enabled");
	if (en && !json_is_null(en) && !json_is_boolean(en))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`network.enabled` must be a boolean");
	c->network = en && json_is_boolean(en) ? json_is_true(en) : true;
	static const char *const rates[] = { "bandwidth_download", "bandwidth_upload" };
	int64_t *dst[] = { &c->down_bps, &c->up_bps };
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(net, rates[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v) ||
		    hm_parse_bandwidth(json_string_value(v), dst[i], NULL) < 0 || *dst[i] < 1000 ||
		    *dst[i] > 100000000000LL / 8)
			return hm_err_set(
			    err, HM_ERR_INVALID,
			    i ? "invalid_bandwidth_upload" : "invalid_bandwidth_download",
			    "`network.%s` must be a rate from 8kbps to 100Gbps such as "
			    "\"1Gbps\" or \"125MB/s\"",
			    rates[i]);
	}
	json_t *dio = json_object_get(req, "disk_io_bps");
	if (dio && !json_is_null(dio)) {
		_cleanup_free_ char *t =
		    json_is_string(dio) ? xstrdup(json_string_value(dio)) : NULL;
		size_t tl = t ? strlen(t) : 0;
		if (tl > 2 && strcmp(t + tl - 2, "/s") == 0)
			t[tl - 2] = '\0';
		if (!t || hm_parse_size(t, &c->disk_bps, NULL) < 0 || c->disk_bps < 65536 ||
		    c->disk_bps > (1LL << 40))
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_field",
			    "`disk_io_bps` must be a rate from 64KB/s to 1TB/s such as "
			    "\"100MB/s\"");
	}
	if (parse_volumes(req, c, err) < 0)
		return -1;
	json_t *pf = json_object_get(req, "platform");
	if (pf && !json_is_null(pf) &&
	    (!json_is_string(pf) || strcmp(json_string_value(pf), "linux/amd64") != 0))
		return hm_err_set(err, HM_ERR_INVALID, "unsupported_platform",
		                  "`platform` %s cannot run here: this host runs linux/amd64",
		                  json_is_string(pf) ? json_string_value(pf) : "(not a string)");
	/* skip_guest_agent and skip_kernel_headers: accepted, no effect (api/openapi.yaml). */
	json_t *hv = json_object_get(req, "hypervisor");
	if (hv && !json_is_null(hv)) {
		if (!json_is_string(hv))
			return hm_err_set(err, HM_ERR_INVALID, "unsupported_hypervisor",
			                  "`hypervisor` must be a string");
		if (hm_runtime_check(accel, json_string_value(hv), err) < 0)
			return -1;
	}
	return 0;
}

/* A sparse ext4 file of `bytes`: the instance's writable layer. */
int inst_make_overlay(const char *path, int64_t bytes, struct hm_err **err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hm_err_errno(err, errno, "create overlay disk `%s`", path);
	int r = ftruncate(fd, bytes);
	int e = errno;
	close(fd);
	if (r < 0)
		return hm_err_errno(err, e, "size overlay disk `%s`", path);
	const char *argv[] = { "mkfs.ext4",
		               "-q",
		               "-F",
		               "-m",
		               "0",
		               "-E",
		               "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
		               "-O",
		               "^has_journal",
		               path,
		               NULL };
	if (hm_run(argv, NULL, NULL, err) < 0)
		return hm_err_wrap(err, "format overlay disk");
	return 0;
}

/* Everything of a create after the row exists; on failure the caller undoes it. */
/* (Re)write the guest config disk from the spec: a fresh disk, no exit record. */
int inst_write_config(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                      const char *rootfs, struct hm_err **err)
{
	json_t *argv = json_object_get(spec, "argv");
	json_t *envo = json_object_get(spec, "full_env");
	size_t argc = json_array_size(argv), envc = json_object_size(envo);
	_cleanup_free_ const char **av = xcalloc(argc + 1, sizeof(*av));
	for (size_t i = 0; i < argc; i++)
		av[i] = json_string_value(json_array_get(argv, i));
	_cleanup_free_ char **ev = xcalloc(envc + 1, sizeof(*ev));
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach (envo, key, val)
		ev[k++] = xasprintf("%s=%s", key, json_string_value(val));
	const char *user = json_string_value(json_object_get(spec, "user"));
	json_t *net = inst_spec_net(spec);
	const char *dns[] = { net ? hm_net_dns(in->net) : NULL, NULL };
	/* Volumes follow config, root and overlay: /dev/vdd, /dev/vde, ... */
	json_t *vols = json_object_get(spec, "volumes");
	char *vrec[MAX_VOLUMES + 1] = { 0 };
	char dev = 'd'; /* after config, root and overlay; an overlay volume takes two */
	for (size_t i = 0; i < json_array_size(vols) && i < MAX_VOLUMES; i++) {
		json_t *v = json_array_get(vols, i);
		const char *mp = json_string_value(json_object_get(v, "mount_path"));
		if (json_is_true(json_object_get(v, "overlay"))) {
			vrec[i] = xasprintf("/dev/vd%c overlay:/dev/vd%c %s", dev, dev + 1, mp);
			dev += 2;
		} else {
			vrec[i] = xasprintf(
			    "/dev/vd%c %s %s", dev,
			    json_is_true(json_object_get(v, "readonly")) ? "ro" : "rw", mp);
			dev++;
		}
	}
	struct hm_guest_config gc = {
		.volumes = (const char *const *)vrec,
		.net_ip = json_string_value(json_object_get(net, "cidr")),
		.net_gw = json_string_value(json_object_get(net, "gateway")),
		.net_mac = json_string_value(json_object_get(net, "mac")),
		.dns = dns,
		.argv = av,
		.env = (const char *const *)ev,
		.workdir = json_string_value(json_object_get(spec, "workdir")),
		.user = user && *user ? user : NULL,
		.hostname = row->name,
		.root = "/dev/vdb",
		.rootfs = rootfs,
		.overlay = "/dev/vdc",
	};
	_cleanup_free_ char *cfg = inst_path(in, row->id, "config.img");
	int r = hm_guestcfg_write(cfg, &gc, err);
	for (size_t i = 0; i < envc; i++)
		free(ev[i]);
	for (size_t i = 0; i < MAX_VOLUMES; i++)
		free(vrec[i]);
	return r;
}

/* Start the VMM on the instance's disks. */
static int spawn_vm_on(struct hm_instances *in, const char *id, json_t *spec,
                       struct hm_vm_spec *vsp, const char *restore_from, struct hm_vm **ret_vm,
                       struct hm_err **err);

int inst_spawn_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                  const char *root_disk, const char *restore_from, struct hm_vm **ret_vm,
                  struct hm_err **err)
{
	const char *id = row->id;
	/* tsc_early_khz: without it microvm boots hang at random under TCG. */
	_cleanup_free_ char *cmdline =
	    in->tsc_khz > 0 ? xasprintf("console=ttyS0 panic=-1 quiet loglevel=2 cryptomgr.notests "
	                                "tsc_early_khz=%ld",
	                                in->tsc_khz)
	                    : xstrdup("console=ttyS0 panic=-1 quiet loglevel=2 cryptomgr.notests");
	_cleanup_free_ char *run = inst_path(in, id, "run");
	_cleanup_free_ char *cfg = inst_path(in, id, "config.img");
	_cleanup_free_ char *overlay = inst_path(in, id, "overlay.ext4");
	_cleanup_free_ char *app_log = inst_path(in, id, "logs/app.log");
	_cleanup_free_ char *vmm_log = inst_path(in, id, "logs/vmm.log");
	/* A cold boot starts on fresh memory (tmpfs when it fits: memory.c); a
	 * restore runs on the saved memory file. */
	_cleanup_free_ char *mem =
	    restore_from
	        ? inst_path(in, id, HM_PAYLOAD_MEMORY)
	        : inst_mem_for_boot(in, id, json_integer_value(json_object_get(spec, "mem_bytes")));
	uint64_t dio = (uint64_t)json_integer_value(json_object_get(spec, "disk_io_bps"));
	json_t *vols = json_object_get(spec, "volumes");
	char *vol_disks[MAX_VOLUMES] = { 0 };
	struct hm_vm_spec vs = {
		.id = id,
		.run_dir = run,
		.kernel = in->kernel.vmlinux,
		.initrd = in->initrd,
		.cmdline = cmdline,
		.vcpus = (int)json_integer_value(json_object_get(spec, "vcpus")),
		.mem_bytes = (uint64_t)json_integer_value(json_object_get(spec, "mem_bytes")),
		.disks = { { cfg, false, 0 }, { root_disk, true, dio }, { overlay, false, dio } },
		.ndisks = 3,
		.console_log = app_log,
		.vmm_log = vmm_log,
		.mem_path = mem,
		.accel = in->accel->accel,
	};
	char *upper_disks[MAX_VOLUMES] = { 0 };
	int r = 0;
	for (size_t i = 0; i < json_array_size(vols) && i < MAX_VOLUMES && r == 0; i++) {
		json_t *v = json_array_get(vols, i);
		const char *vid = json_string_value(json_object_get(v, "id"));
		vol_disks[i] = hm_volume_disk(in->cfg->data_dir, vid);
		vs.disks[vs.ndisks++] =
		    (struct hm_vm_disk){ vol_disks[i], json_is_true(json_object_get(v, "readonly")),
			                 dio };
		if (json_is_true(json_object_get(v, "overlay"))) {
			/* The instance's private writable layer over the shared volume, kept
			 * across stop/start like its own overlay. */
			_cleanup_free_ char *name = xasprintf("vol-%s.ext4", vid);
			upper_disks[i] = inst_path(in, id, name);
			if (!restore_from && access(upper_disks[i], F_OK) < 0)
				r = inst_make_overlay(
				    upper_disks[i],
				    json_integer_value(json_object_get(v, "overlay_bytes")), err);
			vs.disks[vs.ndisks++] = (struct hm_vm_disk){ upper_disks[i], false, dio };
		}
	}
	if (r == 0)
		r = spawn_vm_on(in, id, spec, &vs, restore_from, ret_vm, err);
	for (size_t i = 0; i < MAX_VOLUMES; i++) {
		free(vol_disks[i]);
		free(upper_disks[i]);
	}
	return r;
}

/* inst_spawn_vm's second half: the network, the VMM, the limits. */
static int spawn_vm_on(struct hm_instances *in, const char *id, json_t *spec,
                       struct hm_vm_spec *vsp, const char *restore_from, struct hm_vm **ret_vm,
                       struct hm_err **err)
{
	struct hm_vm_spec vs = *vsp;
	char tap[HM_NET_TAP_MAX];
	json_t *net = inst_spec_net(spec);
	double t_net = inst_mono_ms();
	if (net) {
		if (!hm_net_enabled(in->net))
			return hm_err_set(
			    err, HM_ERR_CONFLICT, "network_unavailable",
			    "this instance has a network but networking is disabled on "
			    "this host (NETWORK_ENABLED=false)");
		tap_of(id, tap);
		if (hm_net_tap_create(in->net, tap, err) < 0)
			return -1;
		vs.tap = tap;
		vs.mac = json_string_value(json_object_get(net, "mac"));
	}
	double t0 = inst_mono_ms();
	int r = restore_from ? in->vmm->restore(&vs, restore_from, ret_vm, err)
	                     : in->vmm->spawn(&vs, ret_vm, err);
	if (r < 0) {
		if (net)
			hm_net_tap_delete(in->net, tap);
		return hm_err_wrap(err, restore_from ? "restore the VM" : "start the VM");
	}
	double t1 = inst_mono_ms();
	/*
	 * The rate limits go on while the guest kernel boots (about a second before
	 * it can send anything): tc and nft cost tens of milliseconds that would
	 * otherwise come before the VMM even starts.
	 */
	if (net && apply_limits(in, net, tap, err) < 0) {
		(*ret_vm)->ops->kill(*ret_vm, 5000, NULL);
		(*ret_vm)->ops->free(*ret_vm);
		*ret_vm = NULL;
		hm_net_tap_delete(in->net, tap);
		hm_net_limit_upload(in->net, json_string_value(json_object_get(net, "ip")), 0,
		                    NULL);
		return hm_err_wrap(err, "start the VM");
	}
	inst_oplog(in, id, "msg=\"vm %s\" pid=%d tap_ms=%.1f vmm_ms=%.1f limits_ms=%.1f",
	           restore_from ? "restored" : "started", (int)(*ret_vm)->pid, t0 - t_net, t1 - t0,
	           inst_mono_ms() - t1);
	return 0;
}

/* Everything of a create after the row exists; on failure the caller undoes it. */
static int prepare_and_boot(struct hm_instances *in, struct hm_instance_row *row, json_t *spec,
                            const struct hm_image_info *img, struct hm_vm **ret_vm,
                            struct hm_err **err)
{
	const char *id = row->id;
	double t0 = inst_mono_ms();
	_cleanup_free_ char *logs = inst_path(in, id, "logs");
	_cleanup_free_ char *run = inst_path(in, id, "run");
	if (hm_mkdir_p(logs, 0700, err) < 0 || hm_mkdir_p(run, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *agent_sock = xasprintf("%s/agent.sock", run);
	if (strlen(agent_sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return hm_err_set(err, HM_ERR_INTERNAL, NULL,
		                  "the data dir path is too long for unix sockets (`%s`)",
		                  agent_sock);
	inst_oplog(in, id, "msg=created name=%s image=%s digest=%s", row->name, row->image,
	           row->image_digest);
	_cleanup_free_ char *overlay = inst_path(in, id, "overlay.ext4");
	if (inst_make_overlay(overlay, json_integer_value(json_object_get(spec, "overlay_bytes")),
	                      err) < 0)
		return -1;
	double t_overlay = inst_mono_ms();
	if (inst_write_config(in, row, spec, img->disk_format, err) < 0)
		return -1;
	inst_oplog(in, id, "msg=\"disks ready\" overlay_ms=%.1f config_ms=%.1f", t_overlay - t0,
	           inst_mono_ms() - t_overlay);
	return inst_spawn_vm(in, row, spec, img->disk_path, NULL, ret_vm, err);
}

/*
 * Admission: what is asked must fit in what the host has (times the
 * configured oversubscription) minus what live instances hold. Concurrent
 * creates may both pass; that is the accepted slack of a check without a
 * reservation.
 */
static int admit(struct hm_instances *in, const struct create_req *c, struct hm_err **err)
{
	struct hm_host_capacity cap = { 0 };
	if (hm_host_capacity(in->cfg->data_dir, 0, &cap, NULL) < 0)
		return 0;
	int64_t vcpus, mem, disk;
	hm_instances_allocated(in, &vcpus, &mem, &disk);
	double cpu_limit = (double)cap.cpus * in->cfg->oversub_cpu;
	double mem_limit = (double)cap.memory_bytes * in->cfg->oversub_memory;
	if ((double)(vcpus + c->vcpus) > cpu_limit)
		return hm_err_set(err, HM_ERR_CONFLICT, "insufficient_resources",
		                  "not enough CPU: %lld vCPUs asked, %lld of %.0f in use",
		                  (long long)c->vcpus, (long long)vcpus, cpu_limit);
	if ((double)(mem + c->mem) > mem_limit) {
		_cleanup_free_ char *a = human_size(c->mem);
		_cleanup_free_ char *u = human_size(mem);
		_cleanup_free_ char *l = human_size((int64_t)mem_limit);
		return hm_err_set(err, HM_ERR_CONFLICT, "insufficient_resources",
		                  "not enough memory: %s asked, %s of %s in use", a, u, l);
	}
	return 0;
}

static int create(struct hm_instances *in, json_t *req, struct create_req c, json_t **ret,
                  struct hm_err **err);

int hm_instances_create(struct hm_instances *in, json_t *req, json_t **ret, struct hm_err **err)
{
	struct create_req c = { 0 };
	int r = parse_create(req, in->cfg->data_dir, in->accel, &c, err);
	if (r == 0)
		r = create(in, req, c, ret, err);
	json_decref(c.volumes);
	return r;
}

/* How long a create waits for the pull of an image that was not here. */
#define CREATE_PULL_TIMEOUT_MS (10 * 60 * 1000)

static int create(struct hm_instances *in, json_t *req, struct create_req c, json_t **ret,
                  struct hm_err **err)
{
	if (in->boot_error)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		                  "instances cannot boot on this host: %s", in->boot_error);
	if (admit(in, &c, err) < 0)
		return -1;
	struct hm_image_info img = { 0 };
	if (hm_images_ensure(in->images, c.image, CREATE_PULL_TIMEOUT_MS, &img, err) < 0)
		return -1;

	json_t *cfg = img.config;
	json_t *argv = NULL;
	if (hm_command_argv(json_object_get(cfg, "entrypoint"), json_object_get(cfg, "cmd"),
	                    c.entrypoint, c.cmd, &argv, err) < 0) {
		hm_image_info_done(&img);
		return -1;
	}
	json_t *req_env = json_is_object(c.env) ? c.env : NULL;
	json_t *spec = json_object();
	json_object_set_new(spec, "vcpus", json_integer(c.vcpus));
	json_object_set_new(spec, "mem_bytes", json_integer(c.mem));
	json_object_set_new(spec, "overlay_bytes", json_integer(c.overlay));
	json_object_set_new(spec, "env", req_env ? json_deep_copy(req_env) : json_object());
	json_object_set_new(spec, "full_env", hm_command_env(json_object_get(cfg, "env"), req_env));
	json_object_set_new(spec, "argv", argv);
	const char *wd = json_string_value(json_object_get(cfg, "working_dir"));
	json_object_set_new(spec, "workdir", json_string(wd && *wd ? wd : "/"));
	const char *user = json_string_value(json_object_get(cfg, "user"));
	json_object_set_new(spec, "user", json_string(user ? user : ""));
	json_object_set_new(spec, "tags",
	                    json_is_object(c.tags) ? json_deep_copy(c.tags) : json_object());
	if (c.cmd && !json_is_null(c.cmd))
		json_object_set(spec, "cmd", c.cmd);
	if (c.entrypoint && !json_is_null(c.entrypoint))
		json_object_set(spec, "entrypoint", c.entrypoint);
	if (c.disk_bps)
		json_object_set_new(spec, "disk_io_bps", json_integer(c.disk_bps));
	json_object_set(spec, "volumes", c.volumes); /* ids filled in by claim_volumes */
	/* Network on by default where the host has one; asked for where it has none: 400. */
	bool asked = json_is_true(json_object_get(json_object_get(req, "network"), "enabled"));
	struct hm_net_lease lease = { { 0 } };
	if (c.network && !hm_net_enabled(in->net) && asked) {
		json_decref(spec);
		hm_image_info_done(&img);
		return hm_err_set(err, HM_ERR_INVALID, "network_unavailable",
		                  "networking is disabled on this host (NETWORK_ENABLED=false): "
		                  "create with network.enabled false");
	}
	if (c.network && hm_net_enabled(in->net)) {
		if (hm_net_lease(in->net, NULL, &lease, err) < 0) {
			json_decref(spec);
			hm_image_info_done(&img);
			return -1;
		}
		/* Unset limits default to the instance's share of the host's network, by CPU. */
		struct hm_host_capacity cap = { 0 };
		int64_t share = 0;
		if (hm_host_capacity(in->cfg->data_dir, in->cfg->network_limit_bps, &cap, NULL) ==
		        0 &&
		    cap.cpus > 0 && cap.network_bps > 0)
			share = cap.network_bps * c.vcpus / cap.cpus;
		json_object_set_new(
		    spec, "network",
		    json_pack("{s:b,s:s,s:s,s:s,s:s,s:I,s:I}", "enabled", 1, "ip", lease.ip, "cidr",
		              lease.cidr, "gateway", lease.gateway, "mac", lease.mac,
		              "download_bps", (json_int_t)(c.down_bps ? c.down_bps : share),
		              "upload_bps", (json_int_t)(c.up_bps ? c.up_bps : share)));
	} else {
		json_object_set_new(spec, "network", json_pack("{s:b}", "enabled", 0));
	}

	/* Volumes are claimed and the row saved under one lock: two creates cannot both
	 * take a volume that allows one writer. */
	pthread_mutex_lock(&in->vol_lock);
	if (claim_volumes(in, c.volumes, err) < 0) {
		pthread_mutex_unlock(&in->vol_lock);
		if (lease.ip[0])
			hm_net_release(in->net, lease.ip);
		json_decref(spec);
		hm_image_info_done(&img);
		return -1;
	}
	char id[25];
	hm_command_new_id(id);
	_cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
	_cleanup_free_ char *created = hm_now_rfc3339();
	struct hm_instance_row row = {
		.id = id,
		.name = (char *)c.name,
		.image = img.name,
		.image_digest = img.digest,
		.spec = spec_text,
		.phase = (char *)"Created",
		.exit_code = -1,
		.created_at = created,
	};
	int r = hm_store_instance_insert(in->st, &row, err);
	pthread_mutex_unlock(&in->vol_lock);
	struct hm_vm *vm = NULL;
	if (r == 0)
		r = prepare_and_boot(in, &row, spec, &img, &vm, err);
	_cleanup_free_ char *started = hm_now_rfc3339();
	if (r == 0) {
		row.phase = (char *)"Booting";
		row.vmm_pid = vm->pid;
		row.started_at = started;
		r = hm_store_instance_update(in->st, &row, err);
		if (r < 0) {
			vm->ops->kill(vm, 5000, NULL);
			vm->ops->free(vm);
			vm = NULL;
		}
	}
	if (r < 0) {
		/* Leave nothing behind: no folder, no row (a name conflict made neither). */
		if (!hm_err_is_kind(err, HM_ERR_CONFLICT)) {
			_cleanup_free_ char *dir = inst_path(in, id, NULL);
			hm_rm_rf(dir, NULL);
			hm_store_instance_delete(in->st, id, NULL);
		}
		if (lease.ip[0])
			hm_net_release(in->net, lease.ip);
		log_warn("instances", "create failed", "name=%s error=\"%s\"", c.name,
		         hm_err_message(err, "?"));
	} else {
		pthread_mutex_lock(&in->lock);
		inst_live_start(in, id, vm, false, NULL);
		pthread_mutex_unlock(&in->lock);
		log_info("instances", "created", "id=%s name=%s image=%s", id, c.name, img.name);
		*ret = inst_json(in, &row);
	}
	json_decref(spec);
	hm_image_info_done(&img);
	return r;
}

/* ---- read, list, delete ---- */

#define STOP_GRACE_MS   10000
#define DELETE_GRACE_MS 5000 /* a graceful delete's: shorter than a stop's, as upstream */

static int stop_live(struct hm_instances *in, struct live *l, const struct hm_instance_row *row,
                     int grace_ms, struct hm_err **err);

int hm_instances_get(struct hm_instances *in, const char *key, json_t **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	*ret = inst_json(in, &row);
	hm_instance_row_done(&row);
	return 0;
}

int hm_instances_list(struct hm_instances *in, const enum hm_state *state, json_t *tags,
                      json_t **ret, struct hm_err **err)
{
	struct hm_instance_row *rows = NULL;
	size_t n = 0;
	if (hm_store_instance_list(in->st, &rows, &n, err) < 0)
		return -1;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = inst_json(in, &rows[i]);
		bool keep = true;
		if (state && strcmp(json_string_value(json_object_get(o, "state")),
		                    hm_state_name(*state)) != 0)
			keep = false;
		if (keep && tags && !hm_tags_match(json_object_get(o, "tags"), tags))
			keep = false;
		if (keep)
			json_array_append_new(arr, o);
		else
			json_decref(o);
	}
	hm_instance_rows_free(rows, n);
	*ret = arr;
	return 0;
}

int hm_instances_delete(struct hm_instances *in, const char *key, bool graceful,
                        struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	/* Graceful: the stop path first, where the program runs and its agent answers
	 * (one still booting has nothing to lose); whatever is left is killed below. */
	enum hm_state state = inst_state(in, &row);
	struct live *gl = graceful && state == HM_STATE_RUNNING ? inst_live_get(in, row.id) : NULL;
	if (gl && atomic_load(&gl->greeted)) {
		_cleanup_err_ struct hm_err *serr = NULL;
		if (stop_live(in, gl, &row, DELETE_GRACE_MS, &serr) < 0)
			log_warn("instances", "graceful delete: stop failed, killing",
			         "id=%s error=\"%s\"", row.id, serr->msg);
	}
	inst_live_free(gl);
	struct live *l = inst_live_take(in, row.id);
	int r = 0;
	if (l) {
		if (!atomic_load(&l->exited) && l->vm->ops->kill(l->vm, 10000, err) < 0) {
			/* Still running: keep monitoring it and report the failure. */
			pthread_mutex_lock(&in->lock);
			inst_live_start(in, row.id, l->vm, atomic_load(&l->started), NULL);
			l->vm = NULL;
			pthread_mutex_unlock(&in->lock);
			r = -1;
		}
		inst_live_free(l);
	}
	if (r == 0) {
		inst_drop_tap(in, row.id);
		_cleanup_free_ char *dir = inst_path(in, row.id, NULL);
		_cleanup_free_ char *ram = inst_mem_tmpfs(in, row.id);
		_cleanup_free_ char *trash = xasprintf("%s/" DELETED_DIR "/%s", in->dir, row.id);
		if (ram)
			unlink(ram);
		/* The folder goes aside in one rename, then the row: a daemon killed in
		 * between finds a row without a folder and finishes (adopt_all). */
		hm_rm_rf(trash, NULL);
		if (rename(dir, trash) < 0 && errno != ENOENT) {
			r = hm_err_errno(err, errno, "move `%s` aside", dir);
		} else if (hm_store_instance_delete(in->st, row.id, err) < 0) {
			rename(trash, dir); /* the row stays: so does its folder */
			r = -1;
		} else {
			hm_rm_rf(trash, NULL);
			json_t *spec = inst_spec_of(&row);
			hm_net_release(
			    in->net, json_string_value(json_object_get(inst_spec_net(spec), "ip")));
			json_decref(spec);
			log_info("instances", "deleted", "id=%s name=%s", row.id, row.name);
		}
	}
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
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

/* ---- lifecycle: stop, start, update, wait ---- */

/* The live record of an instance with a reference taken, or NULL. */
struct live *inst_live_get(struct hm_instances *in, const char *id)
{
	pthread_mutex_lock(&in->lock);
	struct live *l = inst_live_find(in, id);
	if (l)
		atomic_fetch_add(&l->refs, 1);
	pthread_mutex_unlock(&in->lock);
	return l;
}

static bool wait_exited(struct live *l, long timeout_ms)
{
	for (long waited = 0; !atomic_load(&l->exited); waited += 20) {
		if (waited >= timeout_ms)
			return false;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return true;
}

/* The escalating stop of a live VM: guest init (the program gets SIGTERM and
 * grace_ms before SIGKILL), power button, kill. */
static int stop_live(struct hm_instances *in, struct live *l, const struct hm_instance_row *row,
                     int grace_ms, struct hm_err **err)
{
	double t0 = inst_mono_ms();
	inst_oplog(in, row->id, "msg=\"stop requested\" grace_ms=%d", grace_ms);
	/* 1: the guest init stops the program (SIGTERM, SIGKILL after the grace). */
	json_t *msg = json_pack("{s:s,s:i}", "type", "stop", "timeout_ms", grace_ms);
	bool asked = hm_agent_send(l->agent, msg, NULL) == 0;
	json_decref(msg);
	const char *how = "guest init";
	int r = 0;
	if (!asked || !wait_exited(l, grace_ms + 5000)) {
		/* 2: the ACPI power button, which the init also takes as "stop". */
		how = "power button";
		pthread_mutex_lock(&l->vm_lock);
		l->vm->ops->shutdown(l->vm, NULL);
		pthread_mutex_unlock(&l->vm_lock);
		if (!wait_exited(l, asked ? 3000 : grace_ms + 3000)) {
			/* 3: the VMM process itself. */
			how = "kill";
			pthread_mutex_lock(&l->vm_lock);
			r = l->vm->ops->kill(l->vm, 10000, err);
			pthread_mutex_unlock(&l->vm_lock);
			if (r == 0 && !wait_exited(l, 5000))
				r = hm_err_set(err, HM_ERR_INTERNAL, NULL,
				               "the VMM of `%s` did not go away", row->name);
		}
	}
	if (r == 0) {
		inst_oplog(in, row->id, "msg=stopped via=\"%s\" ms=%.0f", how, inst_mono_ms() - t0);
		log_info("instances", "stopped", "id=%s name=%s via=\"%s\"", row->id, row->name,
		         how);
	}
	return r;
}

int hm_instances_stop(struct hm_instances *in, const char *key, json_t **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	struct live *l = inst_live_get(in, row.id);
	int r;
	if (state == HM_STATE_STOPPED) /* already what was asked: the instance, as upstream */
		r = 0;
	else if (!l || (state != HM_STATE_RUNNING && state != HM_STATE_INITIALIZING))
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Running or Initializing instance can "
		               "be stopped",
		               row.name, hm_state_name(state));
	else
		r = stop_live(in, l, &row, STOP_GRACE_MS, err);
	if (l)
		inst_live_free(l);
	if (r == 0)
		r = hm_instances_get(in, row.id, ret, err);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_start(struct hm_instances *in, const char *key, json_t *body, json_t **ret,
                       struct hm_err **err)
{
	if (body && !json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *cmd = body ? json_object_get(body, "cmd") : NULL;
	json_t *ep = body ? json_object_get(body, "entrypoint") : NULL;
	if ((cmd && !json_is_null(cmd) && hm_command_check_args(cmd, "cmd", err) < 0) ||
	    (ep && !json_is_null(ep) && hm_command_check_args(ep, "entrypoint", err) < 0))
		return -1;
	if (in->boot_error)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "boot_unavailable",
		                  "instances cannot boot on this host: %s", in->boot_error);
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	enum hm_state state = inst_state(in, &row);
	int r;
	bool running = state == HM_STATE_RUNNING || state == HM_STATE_INITIALIZING;
	if (running && !(cmd && !json_is_null(cmd)) && !(ep && !json_is_null(ep)))
		r = hm_instances_get(in, row.id, ret,
		                     err); /* already what was asked, as upstream */
	else if (running)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is already %s; stop it to start it with another "
		               "command",
		               row.name, hm_state_name(state));
	else if (state != HM_STATE_STOPPED)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Stopped instance can be started",
		               row.name, hm_state_name(state));
	else
		r = inst_boot_again(in, &row, cmd, ep, ret, err);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

/* Start's work once the instance is known to be Stopped. */
int inst_boot_again(struct hm_instances *in, struct hm_instance_row *rowp, json_t *cmd, json_t *ep,
                    json_t **ret, struct hm_err **err)
{
	struct hm_instance_row row = *rowp; /* fields stay owned by the caller's row */
	json_t *spec = NULL;
	struct hm_image_info img = { 0 };
	struct hm_vm *vm = NULL;
	int r = 0;
	/* The old VMM's record goes; a new one comes with the boot. */
	struct live *old = inst_live_take(in, row.id);
	inst_live_free(old);

	if (hm_images_resolve(in->images, row.image, &img, err) < 0) {
		r = hm_err_wrap(err, "the instance's image");
		goto out;
	}
	spec = inst_spec_of(&row);
	if (cmd || ep) {
		/* Overrides are remembered for the next starts, as docker's are not, so
		 * that a restart runs what the user last asked for. */
		json_t *use_cmd = cmd ? cmd : json_object_get(spec, "cmd");
		json_t *use_ep = ep ? ep : json_object_get(spec, "entrypoint");
		json_t *argv = NULL;
		if (hm_command_argv(json_object_get(img.config, "entrypoint"),
		                    json_object_get(img.config, "cmd"), use_ep, use_cmd, &argv,
		                    err) < 0) {
			r = -1;
			goto out;
		}
		json_object_set_new(spec, "argv", argv);
		if (cmd)
			json_object_set(spec, "cmd", cmd);
		if (ep)
			json_object_set(spec, "entrypoint", ep);
	}
	if (inst_write_config(in, &row, spec, img.disk_format, err) < 0 ||
	    inst_spawn_vm(in, &row, spec, img.disk_path, NULL, &vm, err) < 0) {
		r = -1;
		goto out;
	}
	free(row.spec);
	row.spec = json_dumps(spec, JSON_COMPACT);
	free(row.phase);
	row.phase = xstrdup("Booting");
	row.vmm_pid = vm->pid;
	row.exit_code = -1;
	free(row.exit_message);
	row.exit_message = NULL;
	free(row.stopped_at);
	row.stopped_at = NULL;
	free(row.started_at);
	row.started_at = hm_now_rfc3339();
	if (hm_store_instance_update(in->st, &row, err) < 0) {
		vm->ops->kill(vm, 5000, NULL);
		vm->ops->free(vm);
		r = -1;
		goto out;
	}
	pthread_mutex_lock(&in->lock);
	inst_live_start(in, row.id, vm, false, NULL);
	pthread_mutex_unlock(&in->lock);
	log_info("instances", "started", "id=%s name=%s", row.id, row.name);
	*ret = inst_json(in, &row);
out:
	*rowp = row;
	json_decref(spec);
	hm_image_info_done(&img);
	return r;
}

int hm_instances_update(struct hm_instances *in, const char *key, json_t *body, json_t **ret,
                        struct hm_err **err)
{
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *env = json_object_get(body, "env");
	if (!env || json_is_null(env))
		return hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                  "nothing to update: give `env`");
	if (hm_command_check_env(env, err) < 0)
		return -1;
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	json_t *shown = json_object_get(spec, "env");
	json_t *full = json_object_get(spec, "full_env");
	if (!json_is_object(shown))
		json_object_set_new(spec, "env", shown = json_object());
	if (!json_is_object(full))
		json_object_set_new(spec, "full_env", full = json_object());
	json_object_update(shown, env);
	json_object_update(full, env);
	free(row.spec);
	row.spec = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	int r = hm_store_instance_update(in->st, &row, err);
	if (r == 0) {
		inst_oplog(in, row.id, "msg=\"env updated\" keys=%zu", json_object_size(env));
		*ret = inst_json(in, &row);
	}
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_wait(struct hm_instances *in, const char *key, enum hm_state state,
                      long timeout_ms, json_t **ret, struct hm_err **err)
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
	*ret = json_pack("{s:s,s:s?,s:b}", "state", hm_state_name(now.state), "state_error",
	                 now.error, "timed_out", timed_out);
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

int hm_instances_stats(struct hm_instances *in, const char *key, json_t **ret, struct hm_err **err)
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
	uint64_t rx = 0, tx = 0;
	if (l && !atomic_load(&l->exited) && inst_spec_net(spec)) {
		char tap[HM_NET_TAP_MAX];
		tap_of(row.id, tap);
		hm_net_tap_counters(tap, &rx, &tx);
	}
	if (l)
		inst_live_free(l);
	*ret = json_pack(
	    "{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "instance_id", row.id, "instance_name",
	    row.name, "cpu_seconds", cpu, "memory_rss_bytes", (json_int_t)rss, "memory_vms_bytes",
	    (json_int_t)vms, "network_rx_bytes", (json_int_t)rx, "network_tx_bytes", (json_int_t)tx,
	    "allocated_vcpus", json_integer_value(json_object_get(spec, "vcpus")),
	    "allocated_memory_bytes", json_integer_value(json_object_get(spec, "mem_bytes")));
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

/* ---- addresses (for ingress) ---- */

int hm_instances_address(struct hm_instances *in, const char *key, char ip[16], struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	const char *addr = json_string_value(json_object_get(inst_spec_net(spec), "ip"));
	enum hm_state state = inst_state(in, &row);
	int r = 0;
	if (!addr)
		r = hm_err_set(err, HM_ERR_CONFLICT, "no_network", "instance `%s` has no network",
		               row.name);
	else if (state != HM_STATE_RUNNING)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is not running (current state: %s)", row.name,
		               hm_state_name(state));
	else
		snprintf(ip, 16, "%s", addr);
	json_decref(spec);
	hm_instance_row_done(&row);
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
                     json_t **ret, struct hm_err **err)
{
	free(row->spec);
	row->spec = json_dumps(spec, JSON_COMPACT);
	int r = hm_store_instance_update(in->st, row, err);
	if (r == 0)
		*ret = inst_json(in, row);
	return r;
}

int hm_instances_attach_volume(struct hm_instances *in, const char *key, const char *volume,
                               json_t *body, json_t **ret, struct hm_err **err)
{
	if (!json_is_object(body))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_json",
		                  "the body must be a JSON object");
	json_t *one = json_pack("{s:[{s:s,s:O?,s:O?,s:O?}]}", "volumes", "volume_id", volume,
	                        "mount_path", json_object_get(body, "mount_path"), "readonly",
	                        json_object_get(body, "readonly"), "overlay",
	                        json_object_get(body, "overlay"));
	struct create_req c = { 0 };
	int r = one ? parse_volumes(one, &c, err)
	            : hm_err_set(err, HM_ERR_INVALID, "invalid_json", "bad attachment");
	json_decref(one);
	struct hm_instance_row row = { .exit_code = -1 };
	json_t *spec = NULL;
	if (r == 0)
		r = stopped_row(in, key, "attaching a volume", &row, &spec, err);
	if (r < 0) {
		json_decref(c.volumes);
		return -1;
	}
	pthread_mutex_lock(&in->vol_lock);
	json_t *vols = json_object_get(spec, "volumes");
	json_t *add = json_array_get(c.volumes, 0);
	r = claim_volumes(in, c.volumes, err); /* also fills in the volume's id */
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
	json_decref(c.volumes);
	json_decref(spec);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_detach_volume(struct hm_instances *in, const char *key, const char *volume,
                               json_t **ret, struct hm_err **err)
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
