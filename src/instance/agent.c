/*
 * instance/agent: request routing over one guest agent channel. One mutex
 * guards the table of waiters (calls and sessions); another serialises
 * writes so lines from different threads never interleave. A session's
 * queue is signalled through an eventfd so its owner can poll it together
 * with its own client socket. A full queue is backpressure: the reader
 * (the monitor thread) waits for room, so the channel stops being read and
 * the guest holds its output (docs/guest.md); a session whose owner takes
 * nothing for STALL_MAX_MS is cut off instead.
 */
#include "instance/agent.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

#define QUEUE_MAX    256   /* messages a session may have waiting (each at most ~44 KB) */
#define STALL_MAX_MS 30000 /* how long a full queue may hold up the channel */

struct waiter {
	struct waiter *next;
	uint64_t id;
	bool session;
	/* call */
	json_t *answer;
	pthread_cond_t cond;
	/* session */
	json_t **queue;
	size_t qhead, qlen;
	int efd;
	bool ended;
	struct hm_agent *agent;
};

struct hm_agent {
	pthread_mutex_t lock;
	pthread_mutex_t write_lock;
	pthread_cond_t room; /* a session queue shrank, a waiter left or the channel went */
	int fd;
	uint64_t next_id;
	struct waiter *waiters;
};

struct hm_agent *hm_agent_new(void)
{
	struct hm_agent *a = xcalloc(1, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->write_lock, NULL);
	pthread_cond_init(&a->room, NULL);
	a->fd = -1;
	a->next_id = 1;
	return a;
}

void hm_agent_free(struct hm_agent *a)
{
	if (!a)
		return;
	hm_agent_set_fd(a, -1);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->write_lock);
	pthread_cond_destroy(&a->room);
	free(a);
}

static void wake(struct waiter *w)
{
	if (w->session) {
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter saturating still leaves it readable */
		}
	} else {
		pthread_cond_broadcast(&w->cond);
	}
}

void hm_agent_set_fd(struct hm_agent *a, int fd)
{
	/* The write lock first: a sender mid-write finishes before the fd changes, so
	 * the caller may close the old fd as soon as this returns. */
	pthread_mutex_lock(&a->write_lock);
	pthread_mutex_lock(&a->lock);
	a->fd = fd;
	if (fd < 0) {
		for (struct waiter *w = a->waiters; w; w = w->next) {
			w->ended = true;
			wake(w);
		}
		pthread_cond_broadcast(&a->room);
	}
	pthread_mutex_unlock(&a->lock);
	pthread_mutex_unlock(&a->write_lock);
}

static struct waiter *find_waiter(struct hm_agent *a, uint64_t id)
{
	for (struct waiter *w = a->waiters; w; w = w->next)
		if (w->id == id)
			return w;
	return NULL;
}

bool hm_agent_dispatch(struct hm_agent *a, json_t *msg)
{
	json_t *idv = json_object_get(msg, "id");
	if (!json_is_integer(idv))
		return false;
	uint64_t id = (uint64_t)json_integer_value(idv);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STALL_MAX_MS / 1000;
	bool routed = false;
	pthread_mutex_lock(&a->lock);
	for (;;) {
		/* Looked up again after every wait: the session may have closed meanwhile. */
		struct waiter *w = find_waiter(a, id);
		if (!w)
			break;
		routed = true;
		if (w->session && w->qlen == QUEUE_MAX && !w->ended) {
			if (pthread_cond_timedwait(&a->room, &a->lock, &deadline) == ETIMEDOUT) {
				w = find_waiter(a, id);
				if (w && w->qlen == QUEUE_MAX) {
					w->ended = true; /* its owner stopped taking: cut it off */
					wake(w);
				}
				break;
			}
			continue;
		}
		if (w->session) {
			if (!w->ended) {
				w->queue[(w->qhead + w->qlen) % QUEUE_MAX] = json_incref(msg);
				w->qlen++;
			}
		} else if (!w->answer) {
			w->answer = json_incref(msg);
		}
		wake(w);
		break;
	}
	pthread_mutex_unlock(&a->lock);
	return routed;
}

int hm_agent_send(struct hm_agent *a, json_t *msg, struct hm_err **err)
{
	char *line = json_dumps(msg, JSON_COMPACT);
	if (!line)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "cannot encode an agent message");
	size_t n = strlen(line);
	line = xrealloc(line, n + 2);
	line[n++] = '\n';
	int r = 0;
	pthread_mutex_lock(&a->write_lock);
	pthread_mutex_lock(&a->lock);
	int fd = a->fd;
	pthread_mutex_unlock(&a->lock);
	if (fd < 0) {
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, "agent_unavailable",
		               "the guest agent is not connected");
	} else if (hm_write_all(fd, line, n) < 0) {
		r = hm_err_errno(err, errno, "write to the guest agent");
		hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
	}
	pthread_mutex_unlock(&a->write_lock);
	free(line);
	return r;
}

static void unlink_waiter(struct hm_agent *a, struct waiter *w)
{
	for (struct waiter **pp = &a->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

int hm_agent_call(struct hm_agent *a, json_t *req, int timeout_ms, json_t **ret,
                  struct hm_err **err)
{
	struct waiter w = { 0 };
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&a->lock);
	w.id = a->next_id++;
	w.next = a->waiters;
	a->waiters = &w;
	pthread_mutex_unlock(&a->lock);

	json_object_set_new(req, "id", json_integer((json_int_t)w.id));
	int r = hm_agent_send(a, req, err);
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->lock);
	while (r == 0 && !w.answer && !w.ended) {
		if (pthread_cond_timedwait(&w.cond, &a->lock, &deadline) == ETIMEDOUT)
			break;
	}
	unlink_waiter(a, &w);
	pthread_mutex_unlock(&a->lock);
	pthread_cond_destroy(&w.cond);
	if (r < 0)
		return -1;
	if (!w.answer)
		return w.ended ? hm_err_set(err, HM_ERR_UNAVAILABLE, "agent_unavailable",
		                            "the guest agent went away")
		               : hm_err_set(err, HM_ERR_TIMEOUT, "agent_timeout",
		                            "the guest agent did not answer in %d ms", timeout_ms);
	*ret = w.answer;
	return 0;
}

struct hm_agent_session {
	struct waiter w;
};

int hm_agent_session_open(struct hm_agent *a, struct hm_agent_session **ret, struct hm_err **err)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return hm_err_errno(err, errno, "eventfd");
	struct hm_agent_session *s = xcalloc(1, sizeof(*s));
	s->w.session = true;
	s->w.efd = efd;
	s->w.agent = a;
	s->w.queue = xcalloc(QUEUE_MAX, sizeof(json_t *));
	pthread_mutex_lock(&a->lock);
	s->w.id = a->next_id++;
	s->w.ended = a->fd < 0;
	s->w.next = a->waiters;
	a->waiters = &s->w;
	pthread_mutex_unlock(&a->lock);
	*ret = s;
	return 0;
}

uint64_t hm_agent_session_id(struct hm_agent_session *s)
{
	return s->w.id;
}

int hm_agent_session_fd(struct hm_agent_session *s)
{
	return s->w.efd;
}

json_t *hm_agent_session_take(struct hm_agent_session *s, bool *ended)
{
	struct hm_agent *a = s->w.agent;
	pthread_mutex_lock(&a->lock);
	json_t *m = NULL;
	if (s->w.qlen > 0) {
		m = s->w.queue[s->w.qhead];
		s->w.qhead = (s->w.qhead + 1) % QUEUE_MAX;
		s->w.qlen--;
		pthread_cond_broadcast(&a->room);
	}
	if (s->w.qlen == 0 && !s->w.ended) {
		uint64_t v;
		if (read(s->w.efd, &v, sizeof(v)) < 0) {
			/* nothing to drain */
		}
	}
	*ended = s->w.ended && s->w.qlen == 0 && !m;
	pthread_mutex_unlock(&a->lock);
	return m;
}

void hm_agent_session_close(struct hm_agent_session *s)
{
	if (!s)
		return;
	struct hm_agent *a = s->w.agent;
	pthread_mutex_lock(&a->lock);
	unlink_waiter(a, &s->w);
	pthread_cond_broadcast(&a->room);
	pthread_mutex_unlock(&a->lock);
	while (s->w.qlen > 0) {
		json_decref(s->w.queue[s->w.qhead]);
		s->w.qhead = (s->w.qhead + 1) % QUEUE_MAX;
		s->w.qlen--;
	}
	free(s->w.queue);
	close(s->w.efd);
	free(s);
}
