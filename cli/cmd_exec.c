/*
 * hypeman exec: run a command in a running instance over the exec
 * WebSocket (GET /instances/{id}/exec; see api/openapi.yaml). This file
 * owns the terminal (raw mode under -t, restored on every way out; the
 * window size at start and on SIGWINCH) and the pump between stdin/stdout
 * and the socket; the connection is cli/wsclient's. It exits with the
 * command's exit code, like `docker exec`.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "commands.h"
#include "wsclient.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"

#define STDIN_BUF (32u << 10)

static volatile sig_atomic_t winch;
static struct termios saved_tio;
static bool tio_saved;

static void on_winch(int sig)
{
	(void)sig;
	winch = 1;
}

static void restore_tty(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tio);
	tio_saved = false;
}

static void raw_tty(void)
{
	struct termios t;
	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	tio_saved = true;
	atexit(restore_tty);
	t = saved_tio;
	cfmakeraw(&t);
	tcsetattr(STDIN_FILENO, TCSADRAIN, &t);
}

static void window_size(int *rows, int *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* Returns the command's exit code, or -1 with *err. */
static int pump(struct hm_ws *ws, bool interactive, bool tty, struct hm_err **err)
{
	bool stdin_open = interactive;
	if (!interactive)
		cli_ws_send_json(ws, json_pack("{s:s}", "type", "stdin_close"));
	int code = -1;
	char *inbuf = xmalloc(STDIN_BUF);
	for (;;) {
		if (winch && tty) {
			winch = 0;
			int rows, cols;
			window_size(&rows, &cols);
			cli_ws_send_json(ws, json_pack("{s:s,s:i,s:i}", "type", "resize", "rows",
			                               rows, "cols", cols));
		}
		if (!hm_ws_buffered(ws)) {
			struct pollfd p[2] = { { .fd = hm_ws_fd(ws), .events = POLLIN },
				               { .fd = STDIN_FILENO, .events = POLLIN } };
			int r = poll(p, stdin_open ? 2 : 1, -1);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				hm_err_errno(err, errno, "poll");
				break;
			}
			if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t n = read(STDIN_FILENO, inbuf, STDIN_BUF);
				if (n < 0 && errno == EINTR)
					continue;
				if (n > 0) {
					hm_ws_send(ws, HM_WS_BINARY, inbuf, (size_t)n, NULL);
				} else {
					stdin_open = false;
					cli_ws_send_json(ws,
					                 json_pack("{s:s}", "type", "stdin_close"));
				}
			}
			if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		struct hm_ws_msg m = { 0 };
		int r = hm_ws_read_frame(ws, &m, err);
		if (r < 0)
			break;
		if (r == 0) {
			if (code < 0)
				hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
				           "exec: the connection closed before the command's exit "
				           "code came");
			break;
		}
		if (m.opcode == HM_WS_BINARY) {
			cli_write_all(STDOUT_FILENO, (char *)m.data, m.len);
		} else {
			json_t *j = json_loadb((char *)m.data, m.len, 0, NULL);
			json_t *ec = json_object_get(j, "exitCode");
			const char *e = json_string_value(json_object_get(j, "error"));
			if (json_is_integer(ec))
				code = (int)json_integer_value(ec);
			else if (e)
				hm_err_set(err, HM_ERR_INVALID, NULL, "exec: %s", e);
			json_decref(j);
		}
		hm_ws_msg_clear(&m);
		if (code >= 0) {
			hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
			break;
		}
	}
	free(inbuf);
	return code;
}

int cmd_exec(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 't' },
		{ "env", required_argument, NULL, 'e' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 'T' },
		{ 0 },
	};
	bool interactive = false, tty = false;
	json_t *env = json_object();
	const char *cwd = NULL, *user = NULL;
	long timeout = 0;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "ite:w:u:", opts)) != -1) {
		switch (ch) {
		case 'i':
			interactive = true;
			break;
		case 't':
			tty = true;
			break;
		case 'e': {
			char *eq = strchr(optarg, '=');
			if (eq == optarg) {
				json_decref(env);
				return cli_misuse(cmd, "--env wants KEY=VALUE");
			}
			if (eq) {
				_cleanup_free_ char *k = strndup(optarg, (size_t)(eq - optarg));
				json_object_set_new(env, k, json_string(eq + 1));
			} else if (getenv(optarg)) {
				json_object_set_new(env, optarg, json_string(getenv(optarg)));
			}
			break;
		}
		case 'w':
			cwd = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'T': {
			char *end;
			timeout = strtol(optarg, &end, 10);
			if (*end || timeout < 0) {
				json_decref(env);
				return cli_misuse(cmd, "--timeout wants a number of seconds");
			}
			break;
		}
		}
	}
	if (argc - optind < 1) {
		json_decref(env);
		return cli_misuse(cmd, "expected INSTANCE [COMMAND [ARG...]]");
	}
	const char *target = argv[optind++];
	json_t *command = json_array();
	for (int i = optind; i < argc; i++)
		json_array_append_new(command, json_string(argv[i]));
	if (json_array_size(command) == 0)
		json_array_append_new(command, json_string("/bin/sh"));
	if (tty && !isatty(STDIN_FILENO))
		tty = false; /* docker says "the input device is not a TTY"; we just drop -t */
	int rows, cols;
	window_size(&rows, &cols);
	json_t *req = json_pack("{s:o,s:b,s:o,s:I,s:i,s:i}", "command", command, "tty", tty, "env",
	                        env, "timeout", (json_int_t)timeout, "rows", rows, "cols", cols);
	if (cwd)
		json_object_set_new(req, "cwd", json_string(cwd));
	if (user)
		json_object_set_new(req, "user", json_string(user));

	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_ws *ws = NULL;
	_cleanup_free_ char *enc = hm_percent_encode(target);
	_cleanup_free_ char *path = xasprintf("/instances/%s/exec", enc);
	int fd = cli_ws_open(c, path, &ws, &err);
	if (fd < 0) {
		json_decref(req);
		return cli_fail(err);
	}
	cli_ws_send_json(ws, req);
	if (tty) {
		struct sigaction sa = { .sa_handler = on_winch };
		sigaction(SIGWINCH, &sa, NULL);
		raw_tty();
	}
	signal(SIGPIPE, SIG_IGN);
	int code = pump(ws, interactive, tty, &err);
	restore_tty();
	hm_ws_free(ws);
	close(fd);
	if (code < 0)
		return err ? cli_fail(err) : 1;
	return code;
}
