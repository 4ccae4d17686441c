/*
 * core/connset: connections served on threads of their own, ended all at
 * once (see connset.h).
 */
#include "core/connset.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/mono.h"
#include "core/xalloc.h"

struct hm_connset {
	pthread_mutex_t mu;
	pthread_cond_t idle; /* signalled when the last connection ends */
	struct hm_conn *active;
	int n, max, max_per_peer;
	bool closing;
};

struct job {
	struct hm_conn c;
	hm_conn_fn *fn;
	void (*free_arg)(void *);
};

struct hm_connset *hm_connset_new(int max, int max_per_peer)
{
	struct hm_connset *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	hm_cond_init_mono(&s->idle);
	s->max = max;
	s->max_per_peer = max_per_peer;
	return s;
}

/* Does peer hold its cap already (under the lock)? One pass over at most max. */
static bool peer_full_locked(struct hm_connset *s, const char *peer)
{
	if (!peer[0])
		return false;
	int n = 0;
	for (struct hm_conn *c = s->active; c; c = c->next)
		if (strcmp(c->peer, peer) == 0 && ++n >= s->max_per_peer)
			return true;
	return false;
}

static void unlink_locked(struct hm_connset *s, struct hm_conn *c)
{
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	if (--s->n == 0)
		pthread_cond_broadcast(&s->idle);
}

static void *run(void *arg)
{
	struct job *j = arg;
	struct hm_conn *c = &j->c;
	j->fn(c);
	struct hm_connset *s = c->set;
	pthread_mutex_lock(&s->mu);
	if (c->up >= 0)
		close(c->up);
	close(c->fd);
	unlink_locked(s, c);
	pthread_mutex_unlock(&s->mu);
	if (j->free_arg)
		j->free_arg(c->arg);
	free(j);
	return NULL;
}

bool hm_connset_spawn(struct hm_connset *s, int fd, const struct sockaddr_storage *ss, void *arg,
                      void (*free_arg)(void *), hm_conn_fn *fn)
{
	struct job *j = xcalloc(1, sizeof(*j));
	*j = (struct job){ .c = { .fd = fd, .arg = arg, .set = s, .up = -1 },
		           .fn = fn,
		           .free_arg = free_arg };
	if (ss && ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, j->c.peer,
		          sizeof(j->c.peer));
	else if (ss && ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, j->c.peer,
		          sizeof(j->c.peer));
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&s->mu);
	bool taken = !s->closing && s->n < s->max && !peer_full_locked(s, j->c.peer);
	if (taken) {
		struct hm_conn *c = &j->c;
		c->next = s->active;
		if (c->next)
			c->next->pprev = &c->next;
		c->pprev = &s->active;
		s->active = c;
		s->n++;
		pthread_t t;
		if (pthread_create(&t, &at, run, j) != 0) {
			unlink_locked(s, c);
			taken = false;
		}
	}
	pthread_mutex_unlock(&s->mu);
	pthread_attr_destroy(&at);
	if (!taken) {
		close(fd);
		if (free_arg)
			free_arg(arg);
		free(j);
	}
	return taken;
}

int hm_conn_set_up(struct hm_conn *c, int up)
{
	pthread_mutex_lock(&c->set->mu);
	bool closing = c->set->closing;
	if (!closing)
		c->up = up;
	pthread_mutex_unlock(&c->set->mu);
	return closing ? -1 : 0;
}

void hm_conn_drop_up(struct hm_conn *c)
{
	pthread_mutex_lock(&c->set->mu);
	if (c->up >= 0)
		close(c->up);
	c->up = -1;
	pthread_mutex_unlock(&c->set->mu);
}

int hm_connset_count(struct hm_connset *s)
{
	pthread_mutex_lock(&s->mu);
	int n = s->n;
	pthread_mutex_unlock(&s->mu);
	return n;
}

bool hm_connset_close(struct hm_connset *s, long wait_ms)
{
	if (!s)
		return true;
	struct timespec until = hm_mono_after(wait_ms);
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	for (struct hm_conn *c = s->active; c; c = c->next) {
		shutdown(c->fd, SHUT_RDWR);
		if (c->up >= 0)
			shutdown(c->up, SHUT_RDWR);
	}
	int w = 0;
	while (s->n > 0 && w == 0)
		w = pthread_cond_timedwait(&s->idle, &s->mu, &until);
	bool idle = s->n == 0;
	pthread_mutex_unlock(&s->mu);
	if (!idle)
		return false; /* leaked rather than freed under a live thread */
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->idle);
	free(s);
	return true;
}

int hm_accept(int lfd, struct sockaddr_storage *ss)
{
	for (;;) {
		socklen_t sl = sizeof(*ss);
		int fd = accept4(lfd, (struct sockaddr *)ss, &sl, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE) {
			usleep(100000);
			continue;
		}
		return -1; /* shut down */
	}
}

int hm_send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}
