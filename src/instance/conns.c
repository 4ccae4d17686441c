/*
 * instance/conns: the connections our own edges (the ingress proxy today)
 * hold to instances, and draining. An edge opens a hold before it connects
 * to an instance and closes it when the connection ends; the hold counts on
 * the instance's live record (so a hold opened on one VM is never counted
 * against the next), and a draining instance refuses new ones.
 *
 * A drain (hm_instances_drain, and a stop that drains first) marks the live
 * record draining, then waits, holding no lock anyone else needs, until its
 * holds are all closed or the time is up. It ends with the VM (the record
 * goes) or with hm_instances_drain_end when what followed it failed.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "instance/instances.h"
#include "instance/internal.h"
#include "store/instances.h"

struct hm_instance_conn {
	struct hm_instances *in;
	char *id;
	struct live *l; /* a reference: the record counted on */
};

/*
 * Restore an instance in auto-standby for a connection (`who` asks, for the
 * oplog): 0 once it runs. Arrivals at once all ask; the op lock lets the
 * first restore it and the others find it running (a restore of a running
 * instance is a no-op); a CONFLICT (it moved on meanwhile) is for the
 * caller's next look.
 */
static int wake(struct hm_instances *in, const char *id, const char *name, const char *who,
                bool cold, struct hm_err **err)
{
	struct hm_instance_view *v = NULL;
	_cleanup_err_ struct hm_err *e = NULL;
	double t0 = inst_mono_ms();
	int r =
	    cold ? hm_instances_start(in, id, NULL, &v, &e) : hm_instances_restore(in, id, &v, &e);
	inst_oplog(in, id, "msg=\"wake asked by %s\" ok=%s ms=%.1f", who, r == 0 ? "yes" : "no",
	           inst_mono_ms() - t0);
	hm_instance_view_free(v);
	if (r < 0 && !hm_err_is_kind(&e, HM_ERR_CONFLICT)) {
		inst_wake_error_set(in, id, e->msg);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "wake_failed",
		                  "instance `%s` could not be woken: %s", name, e->msg);
	}
	if (r == 0)
		inst_wake_error_set(in, id, NULL);
	return 0;
}

/* One try: 0 with the hold, 1 to try again later (it is going to standby),
 * 2 to try again at once (it was just woken), 3 to try again later while
 * doubt_ok (an auto-standby instance in doubt), -1 with the error. */
static int try_open(struct hm_instances *in, const char *key, char ip[16], bool doubt_ok,
                    struct hm_instance_conn **ret, struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	const char *addr = json_string_value(json_object_get(inst_spec_net(spec), "ip"));
	struct hm_auto_standby p;
	inst_spec_auto_standby(spec, &p);
	enum hm_state state = inst_state(in, &row);
	struct live *l = inst_live_get(in, row.id);
	int r = 0;
	if (!addr) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "no_network", "instance `%s` has no network",
		               row.name);
	} else if (state == HM_STATE_STANDBY && p.enabled) {
		/* Woken by traffic. */
		r = wake(in, row.id, row.name, "a connection", false, err) < 0 ? -1 : 2;
	} else if (hm_auto_standby_asleep_cold(&p, state, row.stop_reason)) {
		/* Stateless: booted by traffic. */
		r = wake(in, row.id, row.name, "a connection", true, err) < 0 ? -1 : 2;
	} else if (l && atomic_load(&l->sleeping)) {
		r = 1; /* going to standby: wait for it, then wake it */
	} else if (state == HM_STATE_INITIALIZING && p.enabled) {
		r = 1; /* booting (a stateless wake): wait for it to run */
	} else if (state == HM_STATE_UNKNOWN && p.enabled && doubt_ok) {
		/* In doubt, as a VMM that was just woken can be for a moment (its
		 * first status asked while the host is busy with the connections
		 * that woke it): the monitor asks again each second. */
		r = 3;
	} else if (state != HM_STATE_RUNNING || !l) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is not running (current state: %s)", row.name,
		               hm_state_name(state));
	} else if (atomic_load(&l->draining)) {
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, "draining",
		               "instance `%s` is draining: it takes no new connections", row.name);
	} else {
		/* Counted first, then `sleeping` read: see idle.c. */
		atomic_fetch_add(&l->conns, 1);
		if (atomic_load(&l->sleeping)) {
			atomic_fetch_sub(&l->conns, 1);
			r = 1;
		} else {
			snprintf(ip, 16, "%s", addr);
			struct hm_instance_conn *c = xcalloc(1, sizeof(*c));
			c->in = in;
			c->id = xstrdup(row.id);
			c->l = TAKE_PTR(l);
			*ret = c;
		}
	}
	if (l)
		inst_live_free(l);
	json_decref(spec);
	hm_instance_row_done(&row);
	return r;
}

int hm_instances_conn_open(struct hm_instances *in, const char *key, char ip[16],
                           struct hm_instance_conn **ret, struct hm_err **err)
{
	*ret = NULL;
	/* A standby under way takes well under a second; a wake a few; doubt
	 * is given 3 s, then it is the caller's error. */
	int doubts = 0;
	for (int i = 0; i < 1500; i++) {
		int r = try_open(in, key, ip, doubts < 150, ret, err);
		if (r <= 0)
			return r;
		if (r == 2)
			continue; /* just woken: open at once */
		if (r == 3)
			doubts++;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return hm_err_set(err, HM_ERR_UNAVAILABLE, "wake_failed",
	                  "instance `%s` did not come back from standby in time", key);
}

int hm_instances_load(struct hm_instances *in, const char *id, struct hm_instance_load *ret)
{
	*ret = (struct hm_instance_load){ 0 };
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, &row, NULL) < 0)
		return -1;
	json_t *spec = inst_spec_of(&row);
	struct hm_auto_standby p;
	inst_spec_auto_standby(spec, &p);
	bool net = json_string_value(json_object_get(inst_spec_net(spec), "ip")) != NULL;
	json_decref(spec);
	enum hm_state state = inst_state(in, &row);
	int stop_reason = row.stop_reason;
	hm_instance_row_done(&row);
	struct live *l = inst_live_get(in, id);
	if (!net) {
		/* nothing reaches it */
	} else if ((state == HM_STATE_STANDBY && p.enabled) ||
	           hm_auto_standby_asleep_cold(&p, state, stop_reason)) {
		ret->wakeable = true;
	} else if (l && atomic_load(&l->sleeping)) {
		ret->wakeable =
		    true; /* going to standby: a connection waits for it, then wakes it */
	} else if (state == HM_STATE_RUNNING && l && !atomic_load(&l->draining)) {
		ret->running = true;
		ret->conns = atomic_load(&l->conns);
	}
	if (l)
		inst_live_free(l);
	return 0;
}

void hm_instances_conn_request(struct hm_instance_conn *c)
{
	atomic_fetch_add(&c->l->requests, 1);
}

double hm_instances_conn_age_ms(const struct hm_instance_conn *c)
{
	return inst_mono_ms() - c->l->born_ms;
}

void hm_instances_conn_close(struct hm_instance_conn *c)
{
	if (!c)
		return;
	atomic_fetch_sub(&c->l->conns, 1);
	inst_live_free(c->l);
	free(c->id);
	free(c);
}

/*
 * A held connection's bytes reach an instance in standby (keep_connections
 * let it sleep with the connection open): wake it, and count the hold on
 * the VM that runs now. The guest's side of the connection was saved with
 * its memory, so the bytes go on where they stopped.
 */
static int wake_held(struct hm_instance_conn *c)
{
	for (int i = 0; i < 1500; i++) {
		struct hm_instance_row row = { .exit_code = -1 };
		if (hm_store_instance_get(c->in->st, c->id, &row, NULL) < 0)
			return -1; /* deleted */
		enum hm_state state = inst_state(c->in, &row);
		json_t *spec = inst_spec_of(&row);
		struct hm_auto_standby p;
		inst_spec_auto_standby(spec, &p);
		json_decref(spec);
		hm_instance_row_done(&row);
		struct live *now = inst_live_get(c->in, c->id);
		bool sleeping = now && atomic_load(&now->sleeping);
		if (state == HM_STATE_RUNNING && now && now == c->l && !sleeping &&
		    !atomic_load(&c->l->exited)) {
			inst_live_free(now); /* the standby was called off: the same VM runs on */
			return 0;
		}
		if (state == HM_STATE_RUNNING && now && now != c->l && !sleeping) {
			atomic_fetch_add(&now->conns, 1);
			atomic_fetch_sub(&c->l->conns, 1);
			inst_live_free(c->l);
			c->l = now;
			atomic_store(&now->last_io_ms, hm_now_ms());
			return 0;
		}
		if (now)
			inst_live_free(now);
		if (state == HM_STATE_STANDBY) {
			if (!p.enabled ||
			    wake(c->in, c->id, c->id, "a held connection", false, NULL) < 0)
				return -1; /* a user's standby, or no wake: the connection ends */
			continue;
		}
		if (state != HM_STATE_RUNNING && !sleeping)
			return -1; /* stopped, deleted, ...: the connection ends */
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return -1;
}

int hm_instances_conn_activity(struct hm_instance_conn *c, bool inbound)
{
	/* The byte counted first, then `sleeping` read: see idle.c. */
	atomic_store(&c->l->last_io_ms, hm_now_ms());
	if (!inbound)
		return 0;
	if (!atomic_load(&c->l->sleeping) && !atomic_load(&c->l->exited))
		return 0;
	return wake_held(c);
}

int inst_drain_live(struct hm_instances *in, struct live *l, const char *id, long timeout_ms)
{
	atomic_store(&l->draining, true);
	inst_changed(in);
	double t0 = inst_mono_ms();
	int left = 0;
	for (;;) {
		left = atomic_load(&l->conns);
		if (left <= 0 || atomic_load(&l->exited) ||
		    inst_mono_ms() - t0 >= (double)timeout_ms)
			break;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	bool closed = left <= 0 || atomic_load(&l->exited);
	inst_oplog(in, id, "msg=drained why=%s open=%d ms=%.0f", closed ? "closed" : "timeout",
	           left > 0 ? left : 0, inst_mono_ms() - t0);
	return closed ? 0 : 1;
}

int hm_instances_drain(struct hm_instances *in, const char *key, long timeout_ms,
                       struct hm_err **err)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, err) < 0)
		return -1;
	struct live *l = inst_live_get(in, row.id);
	int r = 0;
	if (!l || inst_state(in, &row) != HM_STATE_RUNNING)
		r = hm_err_set(err, HM_ERR_CONFLICT, "invalid_state",
		               "instance `%s` is %s; only a Running instance is drained", row.name,
		               hm_state_name(inst_state(in, &row)));
	else
		inst_drain_live(in, l, row.id, timeout_ms);
	if (l)
		inst_live_free(l);
	hm_instance_row_done(&row);
	return r;
}

void hm_instances_drain_end(struct hm_instances *in, const char *key)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_find(in->st, key, &row, NULL) < 0)
		return;
	struct live *l = inst_live_get(in, row.id);
	if (l) {
		atomic_store(&l->draining, false);
		inst_live_free(l);
		inst_changed(in);
	}
	hm_instance_row_done(&row);
}
