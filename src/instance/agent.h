/*
 * The host end of one guest's agent channel (docs/guest.md): a stream of
 * JSON lines. The instance's monitor thread reads it and hands every line
 * to hm_agent_dispatch; any thread may send. Requests carry an id; their
 * answers are routed to whoever registered that id: a one-shot call (stat,
 * ping) or a session (exec) that receives every message for its id through
 * a queue it can poll on.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct hm_err;
struct hm_agent;
struct hm_agent_session;

struct hm_agent *hm_agent_new(void);
void hm_agent_free(struct hm_agent *a);

/* The monitor connected (fd) or lost (-1) the channel. Losing it fails every
 * pending call and ends every session. The agent does not own the fd. */
void hm_agent_set_fd(struct hm_agent *a, int fd);

/* Route a message that carries an id. Returns false if nobody waits for it. */
bool hm_agent_dispatch(struct hm_agent *a, json_t *msg);

/* Send one message (borrowed) as a line. HM_ERR_UNAVAILABLE when not connected. */
int hm_agent_send(struct hm_agent *a, json_t *msg, struct hm_err **err);

/* Send `req` (borrowed; its "id" is set here) and wait for the first answer
 * with that id: HM_ERR_TIMEOUT after timeout_ms. */
int hm_agent_call(struct hm_agent *a, json_t *req, int timeout_ms, json_t **ret,
                  struct hm_err **err);

/* A session: every message with its id is queued until taken. */
int hm_agent_session_open(struct hm_agent *a, struct hm_agent_session **ret, struct hm_err **err);
uint64_t hm_agent_session_id(struct hm_agent_session *s);
/* An fd that is readable while messages are queued or the session ended. */
int hm_agent_session_fd(struct hm_agent_session *s);
/* The next queued message (new reference) or NULL; *ended tells whether the
 * channel is gone (nothing more will come). */
json_t *hm_agent_session_take(struct hm_agent_session *s, bool *ended);
void hm_agent_session_close(struct hm_agent_session *s);
