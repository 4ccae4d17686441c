/*
 * core/jobq: keys run in order, once each while queued, the oldest waiting
 * key dropped past the capacity, and stop finishing the job under way and
 * dropping (freeing, under ASan) what waits. The first job is held on a
 * gate so that the queue can be filled behind it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/jobq.h"

struct seen {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool open;    /* the gate: jobs wait until it opens */
	bool started; /* a job has begun */
	char keys[16][8];
	int n;
};

static void job(void *arg, const char *key)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->m);
	s->started = true;
	pthread_cond_broadcast(&s->c);
	while (!s->open)
		pthread_cond_wait(&s->c, &s->m);
	if (s->n < 16)
		snprintf(s->keys[s->n++], sizeof(s->keys[0]), "%s", key);
	pthread_cond_broadcast(&s->c);
	pthread_mutex_unlock(&s->m);
}

static void wait_for(struct seen *s, bool *flag_or_null, int n)
{
	pthread_mutex_lock(&s->m);
	while (flag_or_null ? !*flag_or_null : s->n < n)
		pthread_cond_wait(&s->c, &s->m);
	pthread_mutex_unlock(&s->m);
}

static void open_gate(struct seen *s)
{
	pthread_mutex_lock(&s->m);
	s->open = true;
	pthread_cond_broadcast(&s->c);
	pthread_mutex_unlock(&s->m);
}

static void order_dedupe_and_capacity(void **state)
{
	(void)state;
	struct seen s = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	struct hm_jobq *q = hm_jobq_start(3, job, &s);
	assert_non_null(q);
	hm_jobq_push(q, "a");
	wait_for(&s, &s.started, 0); /* "a" runs, held at the gate */
	hm_jobq_push(q, "b");
	hm_jobq_push(q, "b"); /* already waiting: once */
	hm_jobq_push(q, "c");
	hm_jobq_push(q, "d");
	hm_jobq_push(q, "e"); /* past 3 waiting: "b", the oldest, goes */
	open_gate(&s);
	wait_for(&s, NULL, 4);
	hm_jobq_stop(q);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.keys[0], "a");
	assert_string_equal(s.keys[1], "c");
	assert_string_equal(s.keys[2], "d");
	assert_string_equal(s.keys[3], "e");
}

static void *opener(void *arg)
{
	struct timespec ts = { 0, 200 * 1000000L }; /* stop is called meanwhile */
	nanosleep(&ts, NULL);
	open_gate(arg);
	return NULL;
}

static void stop_finishes_the_job_under_way_and_drops_the_rest(void **state)
{
	(void)state;
	struct seen s = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	struct hm_jobq *q = hm_jobq_start(8, job, &s);
	assert_non_null(q);
	hm_jobq_push(q, "x");
	wait_for(&s, &s.started, 0);
	hm_jobq_push(q, "y");
	hm_jobq_push(q, "z");
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, opener, &s), 0);
	hm_jobq_stop(q); /* waits for "x"; "y" and "z" never run */
	pthread_join(t, NULL);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.keys[0], "x");
	hm_jobq_push(NULL, "ignored");
	hm_jobq_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(order_dedupe_and_capacity),
		cmocka_unit_test(stop_finishes_the_job_under_way_and_drops_the_rest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
