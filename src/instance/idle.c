/*
 * instance/idle: auto-standby. A running instance whose policy is enabled
 * goes to standby once no connection through our edges (the ingress holds
 * of conns.c) has been open for its idle time; a new connection through an
 * edge restores it (hm_instances_conn_open). Connections made to the guest
 * by other paths (the host straight to its address) are not seen, as
 * upstream counts only what its observer sees.
 *
 * Activity is what our edges see (connections held, bytes relayed) and any
 * packet on the VM's TAP besides (traffic that does not pass our edges: the
 * guest's own to the outside, the host's straight to its address), so a
 * VM that talks to anyone is not idle, whichever policy.
 *
 * One thread looks at the running VMs every IDLE_TICK_MS; an entry per
 * instance remembers since when it is idle, its last activity and a user's
 * hold. An entry belongs to one VM (its live record's born_ms): a restored
 * or restarted VM starts its countdown afresh.
 *
 * The standby races a new connection without a lock between them: the
 * controller marks the VM `sleeping` and only then reads its connection
 * count, a connection counts itself and only then reads `sleeping` (both
 * sequentially consistent atomics), so one of the two always sees the other:
 * either the standby is called off, or the connection waits for the
 * standby and wakes the instance.
 *
 * A first start can be primed (hm_instances_prime, UKC's stateful
 * scale to zero): the controller tries the program's port at each look and
 * puts the VM to standby as soon as it accepts, so that the first request
 * is a restore of a program that is ready, not a boot.
 *
 * Lock order: an instance's op lock (hm_instances_standby), then idle.lock
 * (a leaf: held only to read or change entries).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/log.h"
#include "core/mono.h"
#include "core/xalloc.h"
#include "instance/instances.h"
#include "instance/internal.h"
#include "net/net.h"
#include "store/instances.h"

#define IDLE_TICK_MS 200

struct idle_entry {
	struct idle_entry *next;
	char *id;
	double born_ms;        /* the VM it counts for */
	int64_t idle_since;    /* unix ms: no connection since; 0: one is open */
	int64_t last_activity; /* unix ms: a connection was last seen open; 0: never */
	int64_t hold_until;    /* unix ms: no standby before; 0: none */
	int conns;             /* open at the last look */
	bool requested;        /* a standby was asked of this VM */
	int prime_port;        /* a first start's: standby once the program accepts here; 0: no */
	int64_t prime_until;   /* unix ms: the prime is given up after */
	bool prime_ready;      /* it accepted at the last look */
	uint64_t tap_packets;  /* its TAP's packets, both ways, at the last look */
};

/* The last wake of an instance that failed, until one succeeds (under lock). */
struct wake_error {
	struct wake_error *next;
	char *id, *msg;
};

struct hm_idle {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stopping;
	struct idle_entry *entries;
	struct wake_error *wake_errors;
};

void inst_wake_error_set(struct hm_instances *in, const char *id, const char *msg)
{
	struct hm_idle *s = in->idle;
	if (!s)
		return; /* closing */
	pthread_mutex_lock(&s->lock);
	struct wake_error **pp = &s->wake_errors;
	while (*pp && strcmp((*pp)->id, id) != 0)
		pp = &(*pp)->next;
	if (*pp && !msg) {
		struct wake_error *w = *pp;
		*pp = w->next;
		free(w->id);
		free(w->msg);
		free(w);
	} else if (msg) {
		if (!*pp) {
			*pp = xcalloc(1, sizeof(**pp));
			(*pp)->id = xstrdup(id);
		}
		free((*pp)->msg);
		(*pp)->msg = xstrdup(msg);
	}
	pthread_mutex_unlock(&s->lock);
}

char *inst_wake_error(struct hm_instances *in, const char *id)
{
	struct hm_idle *s = in->idle;
	if (!s)
		return NULL;
	char *msg = NULL;
	pthread_mutex_lock(&s->lock);
	for (struct wake_error *w = s->wake_errors; w && !msg; w = w->next)
		if (strcmp(w->id, id) == 0)
			msg = xstrdup(w->msg);
	pthread_mutex_unlock(&s->lock);
	return msg;
}

static struct idle_entry *entry_of(struct hm_idle *s, const char *id, bool make)
{
	for (struct idle_entry *e = s->entries; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	if (!make)
		return NULL;
	struct idle_entry *e = xcalloc(1, sizeof(*e));
	e->id = xstrdup(id);
	e->born_ms = -1;
	e->next = s->entries;
	s->entries = e;
	return e;
}

static void entry_drop(struct hm_idle *s, const char *id)
{
	for (struct idle_entry **pp = &s->entries; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0) {
			struct idle_entry *e = *pp;
			*pp = e->next;
			free(e->id);
			free(e);
			return;
		}
}

void inst_spec_auto_standby(json_t *spec, struct hm_auto_standby *ret)
{
	json_t *a = json_object_get(spec, "auto_standby");
	*ret = (struct hm_auto_standby){
		.enabled = json_is_true(json_object_get(a, "enabled")),
		.idle_ms = json_integer_value(json_object_get(a, "idle_ms")),
		.keep_connections = json_is_true(json_object_get(a, "keep_connections")),
		.cold = json_is_true(json_object_get(a, "cold")),
	};
}

bool hm_auto_standby_asleep_cold(const struct hm_auto_standby *p, enum hm_state state,
                                 int stop_reason)
{
	return p->enabled && p->cold && state == HM_STATE_STOPPED &&
	       (stop_reason & HM_STOP_PLATFORM) && !(stop_reason & HM_STOP_USER);
}

json_t *inst_auto_standby_json(const struct hm_auto_standby *p)
{
	json_t *o =
	    json_pack("{s:b,s:I}", "enabled", p->enabled, "idle_ms", (json_int_t)p->idle_ms);
	if (p->keep_connections)
		json_object_set_new(o, "keep_connections", json_true());
	if (p->cold)
		json_object_set_new(o, "cold", json_true());
	return o;
}

int inst_auto_standby_check(const struct hm_auto_standby *p, struct hm_err **err)
{
	if (p->idle_ms < HM_AUTO_STANDBY_MIN_MS || p->idle_ms > HM_AUTO_STANDBY_MAX_MS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "the auto-standby idle timeout must be from %d ms to %lld h",
		                  HM_AUTO_STANDBY_MIN_MS, HM_AUTO_STANDBY_MAX_MS / 3600000);
	return 0;
}

/* A running VM as the controller sees it. */
struct seen {
	char *id;
	double born_ms;
	struct live *l; /* a reference */
};

/* Ask for the standby of l's instance, unless a connection came (or, with
 * keep, a byte moved after io_seen) meanwhile: false when it still runs. */
static bool put_to_sleep(struct hm_instances *in, struct live *l, const char *id,
                         const struct hm_auto_standby *p, int64_t io_seen)
{
	bool keep = p->keep_connections;
	atomic_store(&l->sleeping, true);
	if (keep ? atomic_load(&l->last_io_ms) > io_seen : atomic_load(&l->conns) > 0) {
		atomic_store(&l->sleeping, false);
		return false;
	}
	inst_oplog(in, id, "msg=\"auto standby\" why=idle%s", p->cold ? " how=stop" : "");
	struct hm_instance_view *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	/* Stateless: stopped, its memory let go; a connection boots it again. */
	bool slept = p->cold
	                 ? inst_stop_idle(in, id, &e) == 0 && hm_instances_get(in, id, &v, &e) == 0
	                 : hm_instances_standby(in, id, NULL, &v, &e) == 0;
	if (!slept) {
		atomic_store(&l->sleeping, false); /* still running: its connections go on */
		inst_oplog(in, id, "msg=\"auto standby failed\" error=\"%s\"", e->msg);
		log_warn("instances", "auto standby failed", "id=%s error=\"%s\"", id, e->msg);
	} else {
		log_info("instances", "auto standby", "id=%s name=%s", id, v->name);
	}
	hm_instance_view_free(v);
	return slept;
}

/* Does ip:port accept a TCP connection (within 100 ms)? */
static bool accepts(const char *ip, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (!ip || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (!ok && errno == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int soerr = 1;
		socklen_t sl = sizeof(soerr);
		ok = poll(&p, 1, 100) == 1 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0;
	}
	close(fd);
	return ok;
}

static void look(struct hm_instances *in)
{
	struct hm_idle *s = in->idle;
	size_t n = 0, cap = 0;
	struct seen *vms = NULL;
	pthread_mutex_lock(&in->lock);
	for (struct live *l = in->lives; l; l = l->next) {
		if (atomic_load(&l->exited) || !atomic_load(&l->started))
			continue;
		if (n == cap)
			vms = xrealloc(vms, (cap = cap ? cap * 2 : 8) * sizeof(*vms));
		atomic_fetch_add(&l->refs, 1);
		vms[n++] = (struct seen){ xstrdup(l->id), l->born_ms, l };
	}
	pthread_mutex_unlock(&in->lock);
	int64_t now = hm_now_ms();
	for (size_t i = 0; i < n; i++) {
		struct hm_instance_row row = { .exit_code = -1 };
		struct hm_auto_standby p = { 0 };
		char ip[16] = "";
		if (hm_store_instance_get(in->st, vms[i].id, &row, NULL) == 0) {
			json_t *spec = inst_spec_of(&row);
			inst_spec_auto_standby(spec, &p);
			const char *a =
			    json_string_value(json_object_get(inst_spec_net(spec), "ip"));
			snprintf(ip, sizeof(ip), "%s", a ? a : "");
			json_decref(spec);
		}
		bool due = false;
		int64_t io = 0;
		int prime = 0;
		uint64_t tap_packets = 0;
		if (p.enabled && *ip) {
			char tap[HM_NET_TAP_MAX];
			struct hm_net_counters nc = { 0 };
			inst_tap_of(vms[i].id, tap);
			hm_net_tap_counters(tap, &nc); /* sysfs reads, outside the lock */
			tap_packets = nc.rx_packets + nc.tx_packets;
		}
		bool ready = false;
		pthread_mutex_lock(&s->lock);
		struct idle_entry *e = entry_of(s, vms[i].id, p.enabled);
		if (e && !p.enabled) {
			entry_drop(s, vms[i].id);
			e = NULL;
		}
		if (e) {
			if (e->born_ms != vms[i].born_ms) { /* a new VM: a new countdown */
				e->born_ms = vms[i].born_ms;
				e->idle_since = now;
				e->requested = false;
				e->prime_port = 0;
				e->prime_ready = false;
			}
			e->conns = atomic_load(&vms[i].l->conns);
			io = atomic_load(&vms[i].l->last_io_ms);
			if (tap_packets != e->tap_packets) {
				/* a packet moved since the last look: activity now */
				e->tap_packets = tap_packets;
				atomic_store(&vms[i].l->last_io_ms, now);
				io = now;
				if (!p.keep_connections && e->idle_since)
					e->idle_since = now;
			}
			if (p.keep_connections) {
				/* idle: no byte moved, connections open or not */
				if (io > e->idle_since)
					e->idle_since = io;
				if (io > e->last_activity)
					e->last_activity = io;
			} else if (e->conns > 0) {
				e->idle_since = 0;
				e->last_activity = now;
			} else if (!e->idle_since) {
				e->idle_since = now;
			}
			due = !e->requested && e->idle_since && now >= e->idle_since + p.idle_ms &&
			      now >= e->hold_until;
			if (due)
				e->requested = true;
			if (e->prime_port && now > e->prime_until) {
				inst_oplog(in, vms[i].id, "msg=\"prime given up\" port=%d",
				           e->prime_port);
				e->prime_port = 0;
			}
			prime = due || e->requested ? 0 : e->prime_port;
			ready = e->prime_ready;
		}
		pthread_mutex_unlock(&s->lock);
		/*
		 * Accepted at one look, to standby at the next: the probe's own packets
		 * (its FIN and their answers) are done by then. A VM saved with a
		 * packet in flight was seen to lose its interrupt and stall its network
		 * until a guest timer ran (about 5 s).
		 */
		if (prime && !ready && inst_state(in, &row) == HM_STATE_RUNNING &&
		    accepts(ip, prime)) {
			pthread_mutex_lock(&s->lock);
			struct idle_entry *pe = entry_of(s, vms[i].id, false);
			if (pe && pe->born_ms == vms[i].born_ms)
				pe->prime_ready = true;
			pthread_mutex_unlock(&s->lock);
		} else if (prime && ready && inst_state(in, &row) == HM_STATE_RUNNING) {
			/* Ready: to standby now, unless a connection came first. */
			struct hm_auto_standby now_p = p;
			now_p.keep_connections = false;
			now_p.cold = false;
			bool slept = put_to_sleep(in, vms[i].l, vms[i].id, &now_p, 0);
			inst_oplog(in, vms[i].id, "msg=primed port=%d standby=%s", prime,
			           slept ? "yes" : "no");
			pthread_mutex_lock(&s->lock);
			struct idle_entry *pe = entry_of(s, vms[i].id, false);
			if (pe) {
				pe->prime_port = 0;
				pe->prime_ready = false;
			}
			pthread_mutex_unlock(&s->lock);
		}
		if (due && (inst_state(in, &row) != HM_STATE_RUNNING ||
		            !put_to_sleep(in, vms[i].l, vms[i].id, &p, io))) {
			/* Not now: counted again from here. */
			pthread_mutex_lock(&s->lock);
			struct idle_entry *again = entry_of(s, vms[i].id, false);
			if (again && again->born_ms == vms[i].born_ms) {
				again->requested = false;
				again->idle_since = hm_now_ms();
			}
			pthread_mutex_unlock(&s->lock);
		}
		hm_instance_row_done(&row);
		inst_live_free(vms[i].l);
		free(vms[i].id);
	}
	free(vms);
}

static void *idle_thread(void *arg)
{
	struct hm_instances *in = arg;
	struct hm_idle *s = in->idle;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec ts = hm_mono_after(IDLE_TICK_MS);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->stopping)
			break;
		pthread_mutex_unlock(&s->lock);
		look(in);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void inst_idle_open(struct hm_instances *in)
{
	struct hm_idle *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	hm_cond_init_mono(&s->cond);
	in->idle = s;
	if (pthread_create(&s->thread, NULL, idle_thread, in) != 0)
		abort();
}

void inst_idle_close(struct hm_instances *in)
{
	struct hm_idle *s = in->idle;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	while (s->entries)
		entry_drop(s, s->entries->id);
	while (s->wake_errors)
		inst_wake_error_set(in, s->wake_errors->id, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
	in->idle = NULL;
}

/* ---- what the API asks ---- */

static int status_of(struct hm_instances *in, const struct hm_instance_row *row, bool hold,
                     struct hm_auto_standby_status *st, struct hm_err **err)
{
	json_t *spec = inst_spec_of(row);
	struct hm_auto_standby p;
	inst_spec_auto_standby(spec, &p);
	bool has_net = json_string_value(json_object_get(inst_spec_net(spec), "ip")) != NULL;
	bool configured = json_object_get(spec, "auto_standby") != NULL;
	json_decref(spec);
	enum hm_state state = inst_state(in, row);
	struct live *l = inst_live_get(in, row->id);
	bool sleeping = l && atomic_load(&l->sleeping);
	if (l)
		inst_live_free(l);
	if (hold && (state == HM_STATE_STANDBY || sleeping))
		return hm_err_set(err, HM_ERR_CONFLICT, "instance_in_standby",
		                  "instance `%s` is in standby (or going there): restore it before "
		                  "connecting",
		                  row->name);
	*st = (struct hm_auto_standby_status){ .configured = configured,
		                               .enabled = p.enabled,
		                               .idle_ms = p.idle_ms };
	int64_t now = hm_now_ms();
	struct hm_idle *s = in->idle;
	pthread_mutex_lock(&s->lock);
	struct idle_entry *e = entry_of(s, row->id, hold && p.enabled);
	if (e && hold)
		e->hold_until = now + p.idle_ms;
	if (e) {
		st->conns = e->conns;
		st->idle_since_ms = e->idle_since;
		st->last_activity_ms = e->last_activity;
		st->hold_until_ms = e->hold_until > now ? e->hold_until : 0;
		if (e->idle_since) {
			int64_t at = e->idle_since + p.idle_ms;
			st->next_standby_ms = at > e->hold_until ? at : e->hold_until;
		}
	}
	bool requested = e && e->requested;
	bool wake_failed = false;
	for (struct wake_error *w = s->wake_errors; w && !wake_failed; w = w->next)
		wake_failed = strcmp(w->id, row->id) == 0;
	pthread_mutex_unlock(&s->lock);
	st->eligible = false;
	if (wake_failed && state != HM_STATE_RUNNING) {
		st->status = "error", st->reason = "observer_error"; /* the wake's, in the oplog */
	} else if (!configured) {
		st->status = "disabled", st->reason = "policy_missing";
	} else if (!p.enabled) {
		st->status = "disabled", st->reason = "policy_disabled";
	} else if (!has_net) {
		st->status = "ineligible", st->reason = "network_disabled";
	} else if (state != HM_STATE_RUNNING) {
		st->status = "ineligible", st->reason = "instance_not_running";
	} else if (requested || sleeping) {
		st->status = "standby_requested", st->reason = "ready_for_standby";
		st->eligible = true;
	} else if (st->conns > 0 && !p.keep_connections) {
		st->status = "active", st->reason = "active_inbound_connections";
		st->next_standby_ms = 0;
	} else {
		st->eligible = true;
		st->status = "idle_countdown", st->reason = "idle_timeout_not_elapsed";
	}
	return 0;
}

int hm_instances_auto_standby_status(struct hm_instances *in, const char *key,
                                     struct hm_auto_standby_status *ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	int r = status_of(in, &row, false, ret, err);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_auto_standby_hold(struct hm_instances *in, const char *key,
                                   struct hm_auto_standby_status *ret, struct hm_err **err)
{
	/* Under the op lock: a standby is either done (409) or not begun. */
	struct hm_instance_row row = { .exit_code = -1 };
	if (inst_find_locked(in, key, &row, err) < 0)
		return -1;
	int r = status_of(in, &row, true, ret, err);
	inst_op_unlock(in, row.id);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_prime(struct hm_instances *in, const char *key, int port, long timeout_ms,
                       struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	struct hm_auto_standby p;
	inst_spec_auto_standby(spec, &p);
	json_decref(spec);
	struct live *l = inst_live_get(in, row.id);
	int r = 0;
	if (!p.enabled || p.cold)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` has no stateful auto-standby to prime", row.name);
	else if (!l || atomic_load(&l->exited))
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is not running", row.name);
	if (r == 0) {
		struct hm_idle *s = in->idle;
		pthread_mutex_lock(&s->lock);
		struct idle_entry *e = entry_of(s, row.id, true);
		if (e->born_ms != l->born_ms) { /* counted for this VM from here */
			e->born_ms = l->born_ms;
			e->idle_since = hm_now_ms();
			e->requested = false;
		}
		e->prime_port = port;
		e->prime_ready = false;
		e->prime_until = hm_now_ms() + timeout_ms;
		pthread_mutex_unlock(&s->lock);
		inst_oplog(in, row.id, "msg=\"prime asked\" port=%d timeout_ms=%ld", port,
		           timeout_ms);
	}
	if (l)
		inst_live_free(l);
	hm_instance_row_done(&row);
	return r;
}
