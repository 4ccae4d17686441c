/*
 * Instance logs as Server-Sent Events: the last `tail` lines of a log file,
 * then (with follow) each new line as it is appended, one event per line:
 * `data: <line as a JSON string>\n\n`. The HTTP edge pulls bytes with
 * hm_log_stream_read; the stream never holds more than a few KiB.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct hm_err;
struct hm_log_stream;

/* Asked while following: is the writer still alive? When it says no and the
 * file is drained, the stream ends. */
typedef bool hm_log_alive_fn(void *cls);

int hm_log_stream_open(const char *path, long tail, bool follow, hm_log_alive_fn *alive,
                       void *alive_cls, void (*alive_free)(void *), struct hm_log_stream **ret,
                       struct hm_err **err);
/*
 * Up to `max` bytes of SSE into buf: > 0 bytes, 0 when nothing arrived
 * within about 250 ms (call again), -1 at the end of the stream.
 */
ssize_t hm_log_stream_read(struct hm_log_stream *s, char *buf, size_t max);
void hm_log_stream_close(struct hm_log_stream *s);
