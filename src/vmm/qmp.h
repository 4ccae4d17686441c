/*
 * A small QMP (QEMU Machine Protocol) client over a unix socket.
 *
 * QEMU's QMP socket serves one client at a time, so callers connect per
 * operation, run their command(s) and close: hm_qmp_connect() reads the
 * greeting and negotiates capabilities, hm_qmp_execute() sends one command
 * and waits for its reply, skipping the asynchronous events QEMU interleaves
 * (STOP, RESUME, SHUTDOWN...). The last few events are kept in a small ring
 * and can also be handed to a callback as they arrive.
 *
 * All I/O is bounded: lines are at most HM_QMP_LINE_MAX bytes, and every
 * wait is a poll() against a deadline. After a timeout or an I/O error the
 * connection is unusable (its state is unknown); close it.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

struct hm_err;
struct hm_qmp;

#define HM_QMP_LINE_MAX (1u << 20)
#define HM_QMP_EVENTS   8 /* events kept in the ring */

/* Called for each event as it is read; `event` is borrowed. */
typedef void (*hm_qmp_event_fn)(const json_t *event, void *userdata);

/*
 * Connect to the QMP socket at `path`, read the greeting and send
 * qmp_capabilities, all within timeout_ms. While the socket does not exist
 * yet or refuses connections (QEMU still starting), retry until the deadline.
 * If `abort_fd` is >= 0 and becomes readable while waiting (a pidfd: the VMM
 * exited), give up at once. Failures are HM_ERR_UNAVAILABLE.
 */
int hm_qmp_connect(const char *path, int timeout_ms, int abort_fd, struct hm_qmp **ret,
                   struct hm_err **err);

void hm_qmp_set_event_cb(struct hm_qmp *q, hm_qmp_event_fn fn, void *userdata);

/*
 * Run `cmd` with `args` (stolen; may be NULL) and wait up to timeout_ms for
 * its reply. On success *ret_return (if not NULL) gets a new reference to
 * the reply's "return" value. A {"error":{"class","desc"}} reply becomes an
 * hm_err carrying desc (GenericError: HM_ERR_INTERNAL, CommandNotFound:
 * HM_ERR_NOT_IMPLEMENTED, DeviceNotFound: HM_ERR_NOT_FOUND); a closed
 * connection HM_ERR_UNAVAILABLE; no reply in time HM_ERR_TIMEOUT.
 */
int hm_qmp_execute(struct hm_qmp *q, const char *cmd, json_t *args, json_t **ret_return,
                   int timeout_ms, struct hm_err **err);

/*
 * Hand QEMU a copy of fd under `name` (getfd, the descriptor sent with the
 * command as SCM_RIGHTS), for a later command that names it ("fd:name" of
 * migrate and migrate-incoming). The caller keeps and closes its own fd.
 */
int hm_qmp_give_fd(struct hm_qmp *q, const char *name, int fd, int timeout_ms, struct hm_err **err);

/* The greeting's {"QMP":{...}} object (borrowed). */
const json_t *hm_qmp_greeting(const struct hm_qmp *q);

/* Events seen so far, at most HM_QMP_EVENTS: index 0 is the oldest kept. Borrowed. */
size_t hm_qmp_nevents(const struct hm_qmp *q);
const json_t *hm_qmp_event(const struct hm_qmp *q, size_t i);

void hm_qmp_close(struct hm_qmp *q);
/* Connections made and commands sent (qmp_capabilities too) since the process started. */
void hm_qmp_counts(unsigned long *connects, unsigned long *commands);
static inline void hm_qmp_closep(struct hm_qmp **q)
{
	if (*q)
		hm_qmp_close(*q);
	*q = (void *)0;
}
#define _cleanup_qmp_ __attribute__((cleanup(hm_qmp_closep)))
