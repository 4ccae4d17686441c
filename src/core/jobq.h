/*
 * A background queue of keyed jobs with one worker thread (redis's bio, in
 * small): a push names a key, at most once in the queue at a time; the
 * worker runs fn(arg, key) for each in order. The queue is bounded: past
 * its capacity the oldest waiting key goes (a wish, not a promise). Used by
 * instance/warm.c (a VMM for a fresh standby) and instance/spare.c (a fork
 * made ready): each push is a hint that work for that key may pay.
 *
 * Locking: the queue's mutex is a leaf, never held while fn runs; fn may
 * take any lock its owner's order allows.
 */
#pragma once

#include <stddef.h>

struct hm_jobq;

typedef void hm_job_fn(void *arg, const char *key);

/* Start the worker; NULL if its thread cannot start. */
struct hm_jobq *hm_jobq_start(size_t capacity, hm_job_fn *fn, void *arg);
/* Queue key (copied) unless it is waiting already. */
void hm_jobq_push(struct hm_jobq *q, const char *key);
/* Stop the worker (a job under way finishes first), drop what waits, free q. */
void hm_jobq_stop(struct hm_jobq *q);
