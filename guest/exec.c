/*
 * Exec sessions (docs/guest.md, "The agent channel"): processes the host
 * starts in the guest next to the program, each in its own session and
 * process group, with pipes for stdin, stdout and stderr or a pty as its
 * controlling terminal. The init streams their output to the host as base64
 * chunks, feeds them what the host sends for stdin through a bounded queue,
 * resizes the pty, signals the process group, and reports one exec_exit once
 * the process has been reaped and its output has reached EOF.
 *
 * Output is read only while the agent has room to queue it, so a host that
 * reads slowly slows the session down instead of losing output. A process
 * that exits while something it started still holds its output open is
 * given DRAIN_IDLE_MS of silence before the session ends without the EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "guest.h"

#define CHUNK         (32u << 10) /* output read per message, before base64 */
#define STDIN_MAX     (1u << 20)  /* queued stdin per session */
#define DRAIN_IDLE_MS 250

struct session {
	bool used;
	bool detached; /* the host that started it is gone: killed, waiting to be reaped */
	bool tty;
	bool exited;
	bool stdin_closing; /* close stdin once the queue is written */
	long long id;
	pid_t pid;
	int status;
	int in_fd;  /* stdin pipe, or a dup of the pty master; -1 once closed */
	int out_fd; /* stdout pipe or the pty master */
	int err_fd; /* stderr pipe; -1 for a tty */
	char *q;    /* stdin waiting for the process: q[qoff..qlen) */
	size_t qoff, qlen;
	long long idle_since;      /* after exit: when output was last read */
	int pi_in, pi_out, pi_err; /* indices in the poll set, or -1 */
};

static struct session sessions[MAX_SESSIONS];

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static struct session *find(long long id)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i].used && !sessions[i].detached && sessions[i].id == id)
			return &sessions[i];
	return NULL;
}

static void release(struct session *s)
{
	close_fd(&s->in_fd);
	close_fd(&s->out_fd);
	close_fd(&s->err_fd);
	free(s->q);
	memset(s, 0, sizeof(*s));
	s->in_fd = s->out_fd = s->err_fd = -1;
}

static void signal_group(struct session *s, int sig)
{
	if (kill(-s->pid, sig) < 0 && errno == ESRCH && !s->exited)
		kill(s->pid, sig);
}

/* ---- starting -------------------------------------------------------------------------- */

enum { STAGE_IDS = 1, STAGE_CWD, STAGE_TTY, STAGE_EXEC };
struct child_report {
	int stage;
	int err;
};

static _Noreturn void child_fail(int fd, int stage)
{
	struct child_report r = { stage, errno };
	ssize_t w = write(fd, &r, sizeof(r));
	(void)w;
	_exit(127);
}

struct start {
	char **argv;
	char **envp;
	const char *cwd;
	struct ids ids;
	bool tty;
	int fds[3]; /* the child's stdin, stdout, stderr */
};

static _Noreturn void child(const struct start *st, int report)
{
	child_reset_signals();
	setsid();
	for (int i = 0; i < 3; i++) {
		if (st->fds[i] == i) {
			fcntl(i, F_SETFD, 0);
		} else if (dup2(st->fds[i], i) < 0) {
			child_fail(report, STAGE_TTY);
		}
	}
	if (st->tty && ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0)
		child_fail(report, STAGE_TTY);
	if (setgroups((size_t)st->ids.ngroups, st->ids.groups) < 0 || setgid(st->ids.gid) < 0 ||
	    setuid(st->ids.uid) < 0)
		child_fail(report, STAGE_IDS);
	if (chdir(st->cwd) < 0)
		child_fail(report, STAGE_CWD);
	errno = exec_search(st->argv, st->envp);
	child_fail(report, STAGE_EXEC);
}

static void exit_error(long long id, int code, const char *msg)
{
	char esc[6 * 600];
	hm_gjson_escape(esc, sizeof(esc), msg, strlen(msg));
	step("exec %lld: %s", id, msg);
	agent_send("{\"type\":\"exec_exit\",\"id\":%lld,\"code\":%d,\"error\":\"%s\"}", id, code,
	           esc);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* The pty pair for a tty session, sized rows x cols; the master is non-blocking. */
static int open_pty(int *master, int *slave, int rows, int cols)
{
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	char name[64];
	*slave = -1;
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (grantpt(*master) == 0 && unlockpt(*master) == 0 &&
	    ptsname_r(*master, name, sizeof(name)) == 0 &&
	    (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) >= 0 &&
	    ioctl(*master, TIOCSWINSZ, &ws) == 0 && set_nonblock(*master) == 0)
		return 0;
	int e = errno;
	close_fd(slave);
	close_fd(master);
	errno = e;
	return -1;
}

void exec_request(const struct agent_req *req)
{
	long long id = req->id;
	const typeof(req->exec) *e = &req->exec;
	if (find(id)) {
		agent_error(id, "exec: id %lld is in use by a running session", id);
		return;
	}
	bool tty = e->tty;
	size_t nenv = e->nenv;

	struct session *s = NULL;
	for (int i = 0; i < MAX_SESSIONS && !s; i++)
		if (!sessions[i].used)
			s = &sessions[i];
	if (!s) {
		exit_error(id, 126, "too many exec sessions");
		return;
	}

	struct start st = { .tty = tty, .fds = { -1, -1, -1 } };
	st.cwd = e->cwd ? e->cwd : "/";
	const char *user = e->user ? e->user : cfg.user;
	char why[600];
	if (resolve_user(user, &st.ids, why, sizeof(why)) < 0) {
		exit_error(id, 126, why);
		return;
	}

	/* argv and the request's env as NULL-terminated arrays of "KEY=value" / strings. */
	_cleanup_free_ char **argv = calloc(e->argc + 1, sizeof(char *));
	_cleanup_free_ char **extra = calloc(nenv + 1, sizeof(char *));
	_cleanup_free_ char *kvbuf = NULL;
	size_t kvbytes = 0;
	for (size_t i = 0; i < nenv; i++)
		kvbytes += strlen(e->env[2 * i]) + strlen(e->env[2 * i + 1]) + 2;
	kvbuf = malloc(kvbytes + 1);
	if (!argv || !extra || !kvbuf) {
		exit_error(id, 126, "out of memory");
		return;
	}
	for (size_t i = 0; i < e->argc; i++)
		argv[i] = (char *)e->argv[i];
	char *kv = kvbuf;
	for (size_t i = 0; i < nenv; i++) {
		extra[i] = kv;
		kv += sprintf(kv, "%s=%s", e->env[2 * i], e->env[2 * i + 1]) + 1;
	}
	_cleanup_free_ char **envp = build_env(&st.ids, extra, nenv, tty);
	if (!envp) {
		exit_error(id, 126, "out of memory");
		return;
	}
	st.argv = argv;
	st.envp = envp;

	/* ours[]: our ends (stdin write end, stdout and stderr read ends). */
	int ours[3] = { -1, -1, -1 }, report[2] = { -1, -1 };
	int slave = -1;
	bool ok = true;
	if (tty) {
		ok = open_pty(&ours[1], &slave, e->rows, e->cols) == 0;
		if (ok) {
			ours[0] = fcntl(ours[1], F_DUPFD_CLOEXEC, 3);
			ok = ours[0] >= 0;
			st.fds[0] = st.fds[1] = st.fds[2] = slave;
		}
	} else {
		for (int i = 0; i < 3 && ok; i++) {
			int p[2];
			if (pipe2(p, O_CLOEXEC) < 0) {
				ok = false;
				break;
			}
			ours[i] = i == 0 ? p[1] : p[0];
			st.fds[i] = i == 0 ? p[0] : p[1];
			ok = set_nonblock(ours[i]) == 0;
		}
	}
	if (ok)
		ok = pipe2(report, O_CLOEXEC) == 0;
	pid_t pid = -1;
	if (ok) {
		pid = fork();
		ok = pid >= 0;
	}
	if (pid == 0) {
		close(report[0]);
		child(&st, report[1]);
	}
	int err = errno;
	if (tty)
		close_fd(&slave);
	else
		for (int i = 0; i < 3; i++)
			close_fd(&st.fds[i]);
	close_fd(&report[1]);
	if (!ok) {
		for (int i = 0; i < 3; i++)
			close_fd(&ours[i]);
		close_fd(&report[0]);
		snprintf(why, sizeof(why), "cannot start %s: %s", argv[0], strerror(err));
		exit_error(id, 126, why);
		return;
	}

	struct child_report r = { 0, 0 };
	ssize_t got;
	do
		got = read(report[0], &r, sizeof(r));
	while (got < 0 && errno == EINTR);
	close_fd(&report[0]);
	if (got > 0) {
		/* The child failed before or at exec: collect it and say why. */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		for (int i = 0; i < 3; i++)
			close_fd(&ours[i]);
		int code = 126;
		switch (r.stage) {
		case STAGE_IDS:
			snprintf(why, sizeof(why), "cannot switch to user %s: %s",
			         user ? user : "root", strerror(r.err));
			break;
		case STAGE_CWD:
			snprintf(why, sizeof(why), "cannot change to directory %s: %s", st.cwd,
			         strerror(r.err));
			break;
		case STAGE_TTY:
			snprintf(why, sizeof(why), "cannot set up the terminal: %s",
			         strerror(r.err));
			break;
		default:
			code = exec_failure(r.err, argv[0], why, sizeof(why));
		}
		exit_error(id, code, why);
		return;
	}

	*s = (struct session){
		.used = true,
		.tty = tty,
		.id = id,
		.pid = pid,
		.in_fd = ours[0],
		.out_fd = ours[1],
		.err_fd = ours[2],
		.pi_in = -1,
		.pi_out = -1,
		.pi_err = -1,
	};
	step("exec %lld: pid %d%s", id, (int)pid, tty ? " (tty)" : "");
	agent_send("{\"type\":\"exec_started\",\"id\":%lld,\"pid\":%d}", id, (int)pid);
}

/* ---- stdin, resize, kill ----------------------------------------------------------------- */

/* Write what the process takes of the queue; close stdin when asked and done. */
static void write_stdin(struct session *s)
{
	while (s->in_fd >= 0 && s->qoff < s->qlen) {
		ssize_t w = write(s->in_fd, s->q + s->qoff, s->qlen - s->qoff);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) {
			/* The reader is gone (EPIPE) or the pty hung up: nothing more goes in. */
			close_fd(&s->in_fd);
			break;
		}
		s->qoff += (size_t)w;
	}
	free(s->q);
	s->q = NULL;
	s->qoff = s->qlen = 0;
	if (s->stdin_closing && !s->tty)
		close_fd(&s->in_fd);
}

static int queue_stdin(struct session *s, const void *data, size_t len)
{
	if (s->in_fd < 0)
		return 0; /* the process closed its stdin or has gone: like a closed pipe */
	size_t waiting = s->qlen - s->qoff;
	if (waiting + len > STDIN_MAX)
		return -1;
	if (s->qoff > 0) {
		memmove(s->q, s->q + s->qoff, waiting);
		s->qoff = 0;
		s->qlen = waiting;
	}
	char *q = realloc(s->q, waiting + len);
	if (!q)
		return -1;
	s->q = q;
	memcpy(s->q + s->qlen, data, len);
	s->qlen += len;
	write_stdin(s);
	return 0;
}

void exec_stdin(const struct agent_req *r)
{
	long long id = r->id;
	struct session *s = find(id);
	if (!s) {
		agent_error(id, "stdin: no exec session %lld", id);
		return;
	}
	if (s->stdin_closing) {
		agent_error(id, "stdin: stdin of session %lld is closed", id);
		return;
	}
	if (queue_stdin(s, r->data.data, r->data.len) < 0)
		agent_error(id, "stdin: session %lld has %zu bytes of stdin waiting: data dropped",
		            id, s->qlen - s->qoff);
}

void exec_stdin_close(long long id)
{
	struct session *s = find(id);
	if (!s) {
		agent_error(id, "stdin_close: no exec session %lld", id);
		return;
	}
	if (s->stdin_closing)
		return;
	s->stdin_closing = true;
	if (s->tty) {
		/* A terminal has no EOF of its own: send its EOF character (^D). */
		struct termios t;
		char eof = 4;
		if (s->out_fd >= 0 && tcgetattr(s->out_fd, &t) == 0 && t.c_cc[VEOF])
			eof = (char)t.c_cc[VEOF];
		queue_stdin(s, &eof, 1);
	} else {
		write_stdin(s);
	}
}

void exec_resize(const struct agent_req *r)
{
	long long id = r->id;
	struct session *s = find(id);
	if (!s) {
		agent_error(id, "resize: no exec session %lld", id);
	} else if (!s->tty) {
		agent_error(id, "resize: session %lld has no tty", id);
	} else if (s->out_fd >= 0) {
		struct winsize ws = { .ws_row = (unsigned short)r->resize.rows,
			              .ws_col = (unsigned short)r->resize.cols };
		if (ioctl(s->out_fd, TIOCSWINSZ, &ws) < 0)
			agent_error(id, "resize: %s", strerror(errno));
	}
}

void exec_kill(const struct agent_req *r)
{
	long long id = r->id;
	struct session *s = find(id);
	if (!s) {
		agent_error(id, "kill: no exec session %lld", id);
	} else {
		step("exec %lld: signal %d", id, r->signal.sig);
		signal_group(s, r->signal.sig);
	}
}

/* ---- the loop's side --------------------------------------------------------------------- */

bool exec_reaped(pid_t pid, int status)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &sessions[i];
		if (!s->used || s->exited || s->pid != pid)
			continue;
		s->exited = true;
		s->status = status;
		s->idle_since = uptime_ms();
		if (s->detached)
			release(s);
		return true;
	}
	return false;
}

void exec_disconnect(void)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &sessions[i];
		if (!s->used || s->detached)
			continue;
		step("exec %lld: host gone, SIGKILL", s->id);
		signal_group(s, SIGKILL);
		if (s->exited) {
			release(s);
			continue;
		}
		close_fd(&s->in_fd);
		close_fd(&s->out_fd);
		close_fd(&s->err_fd);
		free(s->q);
		s->q = NULL;
		s->qoff = s->qlen = 0;
		s->detached = true;
	}
}

int exec_poll_fill(struct pollfd *pfd, long long now, int *timeout)
{
	int n = 0;
	bool room = agent_room();
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &sessions[i];
		s->pi_in = s->pi_out = s->pi_err = -1;
		if (!s->used || s->detached)
			continue;
		if (room && s->out_fd >= 0) {
			s->pi_out = n;
			pfd[n++] = (struct pollfd){ .fd = s->out_fd, .events = POLLIN };
		}
		if (room && s->err_fd >= 0) {
			s->pi_err = n;
			pfd[n++] = (struct pollfd){ .fd = s->err_fd, .events = POLLIN };
		}
		if (s->in_fd >= 0 && s->qoff < s->qlen) {
			s->pi_in = n;
			pfd[n++] = (struct pollfd){ .fd = s->in_fd, .events = POLLOUT };
		}
		if (s->exited && (s->out_fd >= 0 || s->err_fd >= 0)) {
			/* Waiting for the host does not count as silence. */
			if (!room)
				s->idle_since = now;
			long long left = s->idle_since + DRAIN_IDLE_MS - now;
			if (left < 0)
				left = 0;
			if (*timeout < 0 || left < *timeout)
				*timeout = (int)left;
		}
	}
	return n;
}

/* Read one chunk of a session's output and queue it; close the fd at EOF. */
static void read_output(struct session *s, int *fd, const char *stream, long long now)
{
	static char buf[CHUNK];
	ssize_t n;
	do
		n = read(*fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		agent_output(s->id, stream, buf, (size_t)n);
		s->idle_since = now;
		return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	/* EOF; a pty master reads EIO once no one holds the terminal. */
	close_fd(fd);
	if (s->tty)
		close_fd(&s->in_fd);
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 128 + SIGKILL;
}

void exec_poll_handle(const struct pollfd *pfd, long long now)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &sessions[i];
		if (!s->used || s->detached)
			continue;
		if (s->pi_out >= 0 && pfd[s->pi_out].revents && s->out_fd >= 0)
			read_output(s, &s->out_fd, "stdout", now);
		if (s->pi_err >= 0 && pfd[s->pi_err].revents && s->err_fd >= 0)
			read_output(s, &s->err_fd, "stderr", now);
		if (s->pi_in >= 0 && pfd[s->pi_in].revents && s->in_fd >= 0)
			write_stdin(s);
		if (!s->exited)
			continue;
		bool open = s->out_fd >= 0 || s->err_fd >= 0;
		if (open && agent_room() && now - s->idle_since >= DRAIN_IDLE_MS) {
			step("exec %lld: output still open %d ms after exit: ending the session",
			     s->id, DRAIN_IDLE_MS);
			open = false;
		}
		if (open)
			continue;
		int code = exit_code(s->status);
		step("exec %lld: exit %d", s->id, code);
		agent_send("{\"type\":\"exec_exit\",\"id\":%lld,\"code\":%d}", s->id, code);
		release(s);
	}
}
