/*
 * core/jobq: a bounded queue of keyed jobs and the one thread that runs
 * them (jobq.h). It owns the queued keys and its thread.
 */
#include "core/jobq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

struct hm_jobq {
	hm_job_fn *fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t m; /* a leaf: guards keys, n, stop */
	pthread_cond_t c;
	char **keys;
	size_t n, cap;
	bool stop;
};

static void *worker(void *p)
{
	struct hm_jobq *q = p;
	for (;;) {
		pthread_mutex_lock(&q->m);
		while (!q->stop && q->n == 0)
			pthread_cond_wait(&q->c, &q->m);
		if (q->stop) {
			pthread_mutex_unlock(&q->m);
			return NULL;
		}
		char *key = q->keys[0];
		memmove(q->keys, q->keys + 1, (q->n - 1) * sizeof(char *));
		q->n--;
		pthread_mutex_unlock(&q->m);
		q->fn(q->arg, key);
		free(key);
	}
}

struct hm_jobq *hm_jobq_start(size_t capacity, hm_job_fn *fn, void *arg)
{
	struct hm_jobq *q = xcalloc(1, sizeof(*q));
	q->fn = fn;
	q->arg = arg;
	q->cap = capacity ? capacity : 1;
	q->keys = xcalloc(q->cap, sizeof(char *));
	pthread_mutex_init(&q->m, NULL);
	pthread_cond_init(&q->c, NULL);
	if (pthread_create(&q->thread, NULL, worker, q) != 0) {
		pthread_mutex_destroy(&q->m);
		pthread_cond_destroy(&q->c);
		free(q->keys);
		free(q);
		return NULL;
	}
	return q;
}

void hm_jobq_push(struct hm_jobq *q, const char *key)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->m);
	bool queued = false;
	for (size_t i = 0; i < q->n && !queued; i++)
		queued = strcmp(q->keys[i], key) == 0;
	if (!queued) {
		if (q->n == q->cap) { /* the oldest wish goes */
			free(q->keys[0]);
			memmove(q->keys, q->keys + 1, (q->cap - 1) * sizeof(char *));
			q->n--;
		}
		q->keys[q->n++] = xstrdup(key);
		pthread_cond_signal(&q->c);
	}
	pthread_mutex_unlock(&q->m);
}

void hm_jobq_stop(struct hm_jobq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->m);
	q->stop = true;
	pthread_cond_signal(&q->c);
	pthread_mutex_unlock(&q->m);
	pthread_join(q->thread, NULL);
	for (size_t i = 0; i < q->n; i++)
		free(q->keys[i]);
	pthread_mutex_destroy(&q->m);
	pthread_cond_destroy(&q->c);
	free(q->keys);
	free(q);
}
