/*
 * The interfaces between the parts of the guest init: init.c (boot, the
 * program, the main loop, the way out), proc.c (how a process is started:
 * user, environment, PATH search), agent.c (the agent channel: framing,
 * dispatch, the send buffer and its backpressure), exec.c (exec sessions)
 * and cp.c (copy sessions). Single-threaded: every function runs on the
 * main loop.
 */
#pragma once

#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "json.h"
#include "request.h"

#define DEFAULT_PATH   "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define AGENT_LINE_MAX (64u << 10)
#define MAX_SESSIONS   64
#define MAX_GROUPS     64

/* ---- init.c ---- */

extern bool guest_debug;
extern struct hm_gcfg cfg;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* say() with an uptime stamp, only under hypeman.debug=1. */
void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long long uptime_ms(void);
void sleep_ms(long ms);
ssize_t read_small(const char *path, char *buf, size_t size);
char *read_alloc(const char *path, size_t max);

/* The program's pid once it started (it may have exited since), else 0. */
pid_t program_pid(void);
/* Signal the program's process group (nothing before it started). */
void forward_signal(int sig);
/* The agent's stop request: SIGTERM now, SIGKILL after timeout_ms. */
void program_stop(long long timeout_ms);
/* The agent's identity request (clock, randomness, network, names). */
void identity_apply(const struct agent_req *r);

/* ---- proc.c ---- */

struct ids {
	uid_t uid;
	gid_t gid;
	char name[256]; /* the passwd name, "" if none */
	char home[PATH_MAX];
	gid_t groups[MAX_GROUPS];
	int ngroups;
};

/*
 * Resolve `user`, `uid`, `user:group` or `uid:gid` (NULL: root) in the
 * guest's /etc/passwd and /etc/group as Docker does. Returns 0, or -1 with a
 * reason ("user `x`: no such user in /etc/passwd") in why.
 */
int resolve_user(const char *spec, struct ids *ids, char *why, size_t whylen);

const char *env_get(char *const *env, const char *name);

/* execvp's search along envp's PATH (DEFAULT_PATH if none). Returns the errno to report. */
int exec_search(char *const argv[], char *const envp[]);

/* In a forked child: the signal dispositions and mask a program expects. */
void child_reset_signals(void);

/*
 * The environment of a process started as `ids`: the config's env, then
 * `extra` (KEY=value strings, overriding same-named keys), then PATH,
 * HOSTNAME and HOME (and TERM=xterm when tty) where still missing. The
 * array and its strings are one malloc'd block: free() it. NULL when out of
 * memory.
 */
char **build_env(const struct ids *ids, char *const *extra, size_t nextra, bool tty);

/* The exit code and message of a failed exec (errno err) of argv0, as docs/guest.md lists them. */
int exec_failure(int err, const char *argv0, char *msg, size_t len);

/* ---- agent.c ---- */

/* Find and open the agent port named cfg.agent (no agent when there is none); once. */
void agent_open(void);
/* A base VM: say `base_ready`, then wait for the host's `attach` line (into buf). */
ssize_t agent_base_wait(char *buf, size_t cap);
/*
 * Queue one message line (a JSON object, no newline) for the host. Dropped
 * when the host is not connected or the send buffer is far over its limit.
 */
void agent_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Queue an output message for exec session id: data is base64-encoded into it. */
void agent_output(long long id, const char *stream, const void *data, size_t len);
/* Queue {"type":type,"id":id,"data":B64} (a copy's cp_data). */
void agent_data(long long id, const char *type, const void *data, size_t len);
/* Room for session output: the host is connected and the send buffer is below its limit. */
bool agent_room(void);
/* Add the agent port to a poll set (returns 1) or not (0); lowers *timeout as needed. */
int agent_poll_fill(struct pollfd *pfd, long long now, int *timeout);
void agent_poll_handle(short revents);
/* Write what the port takes now without blocking. */
void agent_flush(void);
/* Try to deliver what is queued for up to ms (the way out). */
void agent_drain(long ms);
/* Answer a request with {"type":"error","id":N,"message":...} (no id when id <= 0). */
void agent_error(long long id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- exec.c ---- */

void exec_request(const struct agent_req *r);
void exec_stdin(const struct agent_req *r);
void exec_stdin_close(long long id);
void exec_resize(const struct agent_req *r);
void exec_kill(const struct agent_req *r);
/* A child was reaped: true when it was a session's process. */
bool exec_reaped(pid_t pid, int status);
/* The host went away: SIGKILL every session and forget them. */
void exec_disconnect(void);
/* Add the sessions' fds to a poll set (returns how many); lowers *timeout as needed. */
int exec_poll_fill(struct pollfd *pfd, long long now, int *timeout);
/* Handle the revents of the fds exec_poll_fill added, then finish sessions that are done. */
void exec_poll_handle(const struct pollfd *pfd, long long now);

/* ---- cp.c ---- */

void cp_to(const struct agent_req *r);
void cp_data(const struct agent_req *r);
void cp_end(long long id);
void cp_abort(long long id);
void cp_from(const struct agent_req *r);
/* A cp_to, cp_data or cp_from whose fields were refused: answered as that request answers. */
void cp_refused(const struct agent_req *r, const char *why);
/* The host went away (or the init is on its way out): end every copy, remove temporary files. */
void cp_disconnect(void);
/* A poll timeout of 0 while a cp_from walk has output to produce and the agent has room. */
void cp_poll_fill(int *timeout);
/* Advance the cp_from walks, each by a bounded number of messages, while the agent has room. */
void cp_poll_handle(void);
