/*
 * instance/supervise: what follows a VM's end that no user asked for — its
 * restart policy, with a back-off between attempts, and delete-on-stop.
 *
 * The monitor that sees a VM end only reports it here (inst_sup_exited) and
 * goes on to finish: the actions run on this file's one thread, because each
 * takes the instance's op lock and an operation under that lock may join the
 * very monitor that reported (a start takes over the old live record). An
 * entry per instance with something pending or to show holds the sequence:
 * how many restarts it has made, when the next one is due, and why none will
 * come (a user's stop, or the attempts spent).
 *
 * A user's start, stop or delete ends a sequence (inst_sup_forget or
 * inst_sup_block, called under the op lock). An action takes the op lock
 * too, and runs only if its entry's generation is still the one it was
 * queued with: an operation that got the lock first has moved it on.
 *
 * Lock order: an instance's op lock, then sup.lock (a leaf held only to read
 * or change entries; nothing else is taken under it).
 *
 * Pending restarts live in memory: a daemon restarted while one is waiting
 * finds the instance Stopped and schedules it again (reconcile.c calls
 * inst_sup_exited for each VM that ended while it was away).
 */
#include "instance/instances.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/log.h"
#include "core/mono.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "store/instances.h"

enum sup_action { SUP_NONE, SUP_RESTART, SUP_DELETE };

struct sup_entry {
	struct sup_entry *next;
	char *id;
	enum sup_action action; /* what is queued, if anything */
	unsigned gen;           /* bumped by every change a queued action must not outlive */
	int64_t due_ms;         /* monotonic */
	int64_t due_unix_ms;    /* the same instant, for views */
	int attempts;           /* restarts made in this sequence */
	int64_t last_unix_ms;   /* the last attempt, or 0 */
	const char *blocked;    /* why no more come, or NULL */
};

struct hm_sup {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sup_entry *entries;
	bool stopping;
	pthread_t thread;
};

/* The entry of id (made when `make`), under sup.lock. */
static struct sup_entry *entry_of(struct hm_sup *s, const char *id, bool make)
{
	for (struct sup_entry *e = s->entries; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	if (!make)
		return NULL;
	struct sup_entry *e = xcalloc(1, sizeof(*e));
	e->id = xstrdup(id);
	e->next = s->entries;
	s->entries = e;
	return e;
}

static void entry_drop(struct hm_sup *s, const char *id)
{
	for (struct sup_entry **pp = &s->entries; *pp; pp = &(*pp)->next) {
		struct sup_entry *e = *pp;
		if (strcmp(e->id, id) == 0) {
			*pp = e->next;
			free(e->id);
			free(e);
			return;
		}
	}
}

/* The delay before restart number n (1-based) of a sequence. */
static int64_t delay_of(const struct hm_restart_policy *p, int n)
{
	if (n <= 1)
		return p->first_ms;
	int64_t d = p->delay_ms;
	for (int i = 2; p->doubling && i < n && d < HM_RESTART_DELAY_CAP_MS; i++)
		d *= 2;
	return d < HM_RESTART_DELAY_CAP_MS ? d : HM_RESTART_DELAY_CAP_MS;
}

void inst_sup_exited(struct hm_instances *in, const char *id, int exit_code, bool by_user,
                     double ran_ms)
{
	struct hm_instance_row row = { .exit_code = -1 };
	if (hm_store_instance_get(in->st, id, &row, NULL) < 0)
		return;
	json_t *spec = inst_spec_of(&row);
	struct hm_restart_policy pol;
	inst_spec_restart(spec, &pol);
	bool delete_on_stop = json_is_true(json_object_get(spec, "delete_on_stop"));
	json_decref(spec);
	struct hm_sup *s = in->sup;
	pthread_mutex_lock(&s->lock);
	struct sup_entry *e = entry_of(s, id, true);
	e->gen++;
	e->action = SUP_NONE;
	if (delete_on_stop) {
		e->action = SUP_DELETE;
		e->due_ms = 0;
	} else if (by_user) {
		e->blocked = "manual_stop";
	} else if (pol.policy == HM_RESTART_ALWAYS ||
	           (pol.policy == HM_RESTART_ON_FAILURE && exit_code != 0)) {
		if (ran_ms >= (double)pol.stable_ms)
			e->attempts = 0; /* it ran well: a new sequence */
		if (pol.max_attempts > 0 && e->attempts >= pol.max_attempts) {
			e->blocked = "max_attempts_exceeded";
		} else {
			int64_t d = delay_of(&pol, e->attempts + 1);
			e->action = SUP_RESTART;
			e->blocked = NULL;
			e->due_ms = (int64_t)inst_mono_ms() + d;
			e->due_unix_ms = hm_now_ms() + d;
		}
	}
	enum sup_action queued = e->action;
	int next = e->attempts + 1;
	int64_t due = e->due_unix_ms;
	if (queued == SUP_NONE && !e->blocked && e->attempts == 0)
		entry_drop(s, id); /* nothing to do or show */
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (queued == SUP_RESTART) {
		_cleanup_free_ char *at = hm_rfc3339_of_ms(due);
		inst_oplog(in, id, "msg=\"restart scheduled\" attempt=%d at=%s exit_code=%d", next,
		           at, exit_code);
	} else if (queued == SUP_DELETE) {
		inst_oplog(in, id, "msg=\"delete on stop\"");
	}
	hm_instance_row_done(&row);
}

void inst_sup_block(struct hm_instances *in, const char *id, const char *why)
{
	struct hm_sup *s = in->sup;
	pthread_mutex_lock(&s->lock);
	struct sup_entry *e = entry_of(s, id, false);
	if (e) {
		e->gen++;
		e->action = SUP_NONE;
		e->attempts = 0;
		e->blocked = why;
		if (!why)
			entry_drop(s, id);
	}
	pthread_mutex_unlock(&s->lock);
}

void inst_sup_forget(struct hm_instances *in, const char *id)
{
	inst_sup_block(in, id, NULL);
}

void inst_sup_status(struct hm_instances *in, const char *id, struct hm_restart_status *ret)
{
	*ret = (struct hm_restart_status){ 0 };
	struct hm_sup *s = in->sup;
	pthread_mutex_lock(&s->lock);
	struct sup_entry *e = entry_of(s, id, false);
	if (e) {
		ret->attempts = e->attempts;
		ret->blocked = e->blocked;
		if (e->last_unix_ms)
			ret->last_attempt_at = hm_rfc3339_of_ms(e->last_unix_ms);
		if (e->action == SUP_RESTART)
			ret->next_attempt_at = hm_rfc3339_of_ms(e->due_unix_ms);
	}
	pthread_mutex_unlock(&s->lock);
}

void hm_restart_status_done(struct hm_restart_status *st)
{
	free(st->last_attempt_at);
	free(st->next_attempt_at);
	*st = (struct hm_restart_status){ 0 };
}

/* Run entry id's action if its generation is still gen: under the op lock. */
static void act(struct hm_instances *in, const char *id, enum sup_action action, unsigned gen)
{
	struct hm_instance_row row = { .exit_code = -1 };
	_cleanup_err_ struct hm_err *err = NULL;
	if (inst_find_locked(in, id, &row, &err) < 0)
		return; /* deleted meanwhile */
	struct hm_sup *s = in->sup;
	pthread_mutex_lock(&s->lock);
	struct sup_entry *e = entry_of(s, id, false);
	bool current = e && e->gen == gen;
	if (current && action == SUP_RESTART) {
		e->attempts++;
		e->last_unix_ms = hm_now_ms();
		e->gen++;
	}
	int attempt = e ? e->attempts : 0;
	pthread_mutex_unlock(&s->lock);
	enum hm_state state = inst_state(in, &row);
	if (!current || state != HM_STATE_STOPPED) {
		inst_op_unlock(in, row.id);
		hm_instance_row_done(&row);
		return;
	}
	json_t *spec = inst_spec_of(&row);
	bool locked = json_is_true(json_object_get(spec, "delete_lock"));
	json_decref(spec);
	if (action == SUP_DELETE && locked) {
		inst_oplog(in, id, "msg=\"not deleted on stop: it has a delete lock\"");
	} else if (action == SUP_DELETE) {
		if (inst_delete_held(in, &row, false, &err) < 0)
			log_warn("instances", "delete on stop failed", "id=%s error=\"%s\"", id,
			         err->msg);
		else
			inst_sup_forget(in, id);
	} else {
		struct hm_instance_view *v = NULL;
		inst_oplog(in, id, "msg=\"restarting\" attempt=%d", attempt);
		if (in->boot_error)
			hm_err_set(&err, HM_ERR_UNAVAILABLE, "boot_unavailable",
			           "instances cannot boot on this host: %s", in->boot_error);
		if (err || inst_boot_again(in, &row, NULL, NULL, true, &v, &err) < 0) {
			inst_oplog(in, id, "msg=\"restart failed\" attempt=%d error=\"%s\"",
			           attempt, err->msg);
			log_warn("instances", "restart failed", "id=%s error=\"%s\"", id, err->msg);
		} else {
			log_info("instances", "restarted by policy", "id=%s attempt=%d", id,
			         attempt);
		}
		hm_instance_view_free(v);
	}
	inst_op_unlock(in, id);
	hm_instance_row_done(&row);
}

static void *sup_thread(void *arg)
{
	struct hm_instances *in = arg;
	struct hm_sup *s = in->sup;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		/* The earliest due action; wait for it, or for news. */
		struct sup_entry *first = NULL;
		for (struct sup_entry *e = s->entries; e; e = e->next)
			if (e->action != SUP_NONE && (!first || e->due_ms < first->due_ms))
				first = e;
		int64_t now = (int64_t)inst_mono_ms();
		if (!first || first->due_ms > now) {
			struct timespec ts =
			    hm_mono_after(first ? (long)(first->due_ms - now) : 60000);
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
			continue;
		}
		enum sup_action action = first->action;
		unsigned gen = first->gen;
		_cleanup_free_ char *id = xstrdup(first->id);
		first->action = SUP_NONE; /* taken; a new end queues anew */
		pthread_mutex_unlock(&s->lock);
		act(in, id, action, gen);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void inst_sup_open(struct hm_instances *in)
{
	struct hm_sup *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	hm_cond_init_mono(&s->cond);
	in->sup = s;
	if (pthread_create(&s->thread, NULL, sup_thread, in) != 0)
		abort();
}

void inst_sup_close(struct hm_instances *in)
{
	struct hm_sup *s = in->sup;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
}

void inst_sup_free(struct hm_instances *in)
{
	struct hm_sup *s = in->sup;
	if (!s)
		return;
	while (s->entries)
		entry_drop(s, s->entries->id);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
	in->sup = NULL;
}

/* ---- the policy in a spec ---- */

static const char *const restart_names[] = {
	[HM_RESTART_NEVER] = "never",
	[HM_RESTART_ALWAYS] = "always",
	[HM_RESTART_ON_FAILURE] = "on_failure",
};

const char *hm_restart_name(enum hm_restart r)
{
	return (unsigned)r < ARRAY_SIZE(restart_names) ? restart_names[r] : "never";
}

void inst_spec_restart(json_t *spec, struct hm_restart_policy *ret)
{
	*ret = (struct hm_restart_policy){ .policy = HM_RESTART_NEVER };
	json_t *r = json_object_get(spec, "restart");
	const char *name = json_string_value(json_object_get(r, "policy"));
	for (size_t i = 0; name && i < ARRAY_SIZE(restart_names); i++)
		if (strcmp(name, restart_names[i]) == 0)
			ret->policy = (enum hm_restart)i;
	ret->first_ms = json_integer_value(json_object_get(r, "first_ms"));
	ret->delay_ms = json_integer_value(json_object_get(r, "delay_ms"));
	ret->doubling = json_is_true(json_object_get(r, "doubling"));
	ret->max_attempts = (int)json_integer_value(json_object_get(r, "max_attempts"));
	ret->stable_ms = json_integer_value(json_object_get(r, "stable_ms"));
}

json_t *inst_restart_json(const struct hm_restart_policy *p)
{
	return json_pack("{s:s,s:I,s:I,s:b,s:i,s:I}", "policy", hm_restart_name(p->policy),
	                 "first_ms", (json_int_t)p->first_ms, "delay_ms", (json_int_t)p->delay_ms,
	                 "doubling", p->doubling, "max_attempts", p->max_attempts, "stable_ms",
	                 (json_int_t)p->stable_ms);
}

int inst_restart_check(const struct hm_restart_policy *p, struct hm_err **err)
{
	const int64_t day = 24LL * 3600 * 1000;
	if ((unsigned)p->policy >= ARRAY_SIZE(restart_names))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "unknown restart policy");
	if (p->first_ms < 0 || p->first_ms > HM_RESTART_DELAY_CAP_MS || p->delay_ms < 0 ||
	    p->delay_ms > HM_RESTART_DELAY_CAP_MS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "a restart delay must be from 0 to 5 minutes");
	if (p->max_attempts < 0 || p->max_attempts > 1000000)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "restart max attempts must be from 0 (no limit) to 1000000");
	if (p->stable_ms < 0 || p->stable_ms > day)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "a restart policy's stable time must be from 0 to 24 hours");
	return 0;
}
