/*
 * core/mono: the monotonic clock for deadlines: condition variables that
 * wait on it, and a deadline some milliseconds from now.
 */
#pragma once

#include <pthread.h>
#include <time.h>

/* pthread_cond_init with CLOCK_MONOTONIC for its timed waits. */
void hm_cond_init_mono(pthread_cond_t *c);
/* CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait on such a condition. */
struct timespec hm_mono_after(long ms);
