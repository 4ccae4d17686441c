/*
 * hypeman exec: run a command in a running instance over the exec
 * WebSocket (GET /instances/{id}/exec; see api/openapi.yaml). This file
 * owns the client side: the HTTP upgrade on a plain TCP connection, the
 * terminal (raw mode under -t, restored on every way out; window size at
 * start and on SIGWINCH), and the pump between stdin/stdout and the
 * socket. The framing itself is core/websocket's, in client mode. It exits
 * with the command's exit code, like `docker exec`.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"

#define HEADER_MAX (16u << 10)
#define BODY_MAX   (64u << 10)
#define STDIN_BUF  (32u << 10)

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

/* Split http://host[:port][/prefix] into its parts. https is not spoken here. */
static int parse_base(const char *base, char **host, char **port, char **prefix,
                      struct hm_err **err)
{
	if (strncmp(base, "http://", 7) != 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "exec needs an http:// base URL (got `%s`)", base);
	const char *h = base + 7;
	const char *slash = strchr(h, '/');
	size_t hl = slash ? (size_t)(slash - h) : strlen(h);
	_cleanup_free_ char *hp = strndup(h, hl);
	*prefix = xstrdup(slash ? slash : "");
	char *colon = NULL;
	if (hp[0] == '[') { /* [v6]:port */
		char *close = strchr(hp, ']');
		if (!close)
			return hm_err_set(err, HM_ERR_INVALID, NULL, "bad base URL `%s`", base);
		*close = '\0';
		*host = xstrdup(hp + 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(hp, ':');
		if (colon)
			*colon = '\0';
		*host = xstrdup(hp);
	}
	*port = xstrdup(colon ? colon + 1 : "80");
	return 0;
}

static int dial(const char *host, const char *port, struct hm_err **err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res = NULL;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "resolve %s: %s", host,
		                  gai_strerror(g));
	int fd = -1, saved = 0;
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return hm_err_errno(err, saved ? saved : ECONNREFUSED,
		                    "connect to %s:%s (is hypeman-api running?)", host, port);
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The answer to a refused upgrade: the API's {code,message}, as one line. */
static int refused(int fd, int status, char *buf, size_t have, size_t hdr_end, struct hm_err **err)
{
	size_t want = BODY_MAX;
	const char *cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl && (size_t)(cl - buf) < hdr_end)
		want = strtoul(cl + 17, NULL, 10);
	if (want > BODY_MAX)
		want = BODY_MAX;
	_cleanup_free_ char *body = xmalloc(want + 1);
	size_t n = have - hdr_end < want ? have - hdr_end : want;
	memcpy(body, buf + hdr_end, n);
	while (n < want) {
		ssize_t r = read(fd, body + n, want - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	body[n] = '\0';
	json_t *j = json_loads(body, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "message"));
	int r =
	    hm_err_set(err, status == 404 ? HM_ERR_NOT_FOUND : HM_ERR_INVALID, NULL,
	               "exec: %s (HTTP %d)", msg ? msg : "the server refused the upgrade", status);
	json_decref(j);
	return r;
}

/*
 * Connect and upgrade. Returns the socket, with the bytes the server sent
 * after its headers primed into *ws.
 */
static int upgrade(struct cli *c, const char *key_name, struct hm_ws **ws, struct hm_err **err)
{
	_cleanup_free_ char *host = NULL, *port = NULL, *prefix = NULL;
	if (parse_base(c->base_url, &host, &port, &prefix, err) < 0)
		return -1;
	int fd = dial(host, port, err);
	if (fd < 0)
		return -1;
	unsigned char nonce[16];
	if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
		memset(nonce, 0x42, sizeof(nonce));
	char key[32];
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
	_cleanup_free_ char *esc = NULL;
	{
		size_t n = strlen(key_name);
		esc = xmalloc(3 * n + 1);
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)key_name[i];
			if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			    (ch >= '0' && ch <= '9') || strchr("-._~", ch))
				esc[o++] = (char)ch;
			else
				o += (size_t)sprintf(esc + o, "%%%02X", ch);
		}
		esc[o] = '\0';
	}
	_cleanup_free_ char *auth =
	    c->api_key ? xasprintf("Authorization: Bearer %s\r\n", c->api_key) : xstrdup("");
	_cleanup_free_ char *req = xasprintf("GET %s/instances/%s/exec HTTP/1.1\r\n"
	                                     "Host: %s:%s\r\n"
	                                     "Upgrade: websocket\r\n"
	                                     "Connection: Upgrade\r\n"
	                                     "Sec-WebSocket-Key: %s\r\n"
	                                     "Sec-WebSocket-Version: 13\r\n"
	                                     "%s\r\n",
	                                     prefix, esc, host, port, key, auth);
	if (write_all(fd, req, strlen(req)) < 0) {
		hm_err_errno(err, errno, "send the exec request");
		close(fd);
		return -1;
	}
	_cleanup_free_ char *buf = xmalloc(HEADER_MAX + 1);
	size_t have = 0;
	char *end = NULL;
	while (!end) {
		ssize_t r = read(fd, buf + have, HEADER_MAX - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || have + (size_t)r >= HEADER_MAX) {
			close(fd);
			return hm_err_set(
			    err, HM_ERR_UNAVAILABLE, NULL,
			    "exec: the server closed the connection during the upgrade");
		}
		have += (size_t)r;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	size_t hdr_end = (size_t)(end - buf) + 4;
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		close(fd);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL, "exec: not an HTTP answer");
	}
	if (status != 101) {
		refused(fd, status, buf, have, hdr_end, err);
		close(fd);
		return -1;
	}
	_cleanup_free_ char *want = hm_ws_accept_key(key);
	const char *acc = strcasestr(buf, "\r\nSec-WebSocket-Accept:");
	bool ok = false;
	if (want && acc && (size_t)(acc - buf) < hdr_end) {
		acc += 23;
		while (*acc == ' ')
			acc++;
		ok = strncmp(acc, want, strlen(want)) == 0;
	}
	if (!ok) {
		close(fd);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "exec: the server's Sec-WebSocket-Accept is wrong");
	}
	struct hm_ws_opts o = { .client = true, .io_timeout_ms = -1, .max_message = 4u << 20 };
	*ws = hm_ws_new(fd, &o);
	if (have > hdr_end)
		hm_ws_prime(*ws, buf + hdr_end, have - hdr_end);
	return fd;
}

static void send_text(struct hm_ws *ws, json_t *o /* stolen */)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s)
		hm_ws_send(ws, HM_WS_TEXT, s, strlen(s), NULL);
	free(s);
}

/* Returns the command's exit code, or -1 with *err. */
static int pump(struct hm_ws *ws, bool interactive, bool tty, struct hm_err **err)
{
	bool stdin_open = interactive;
	if (!interactive)
		send_text(ws, json_pack("{s:s}", "type", "stdin_close"));
	int code = -1;
	char *inbuf = xmalloc(STDIN_BUF);
	for (;;) {
		if (winch && tty) {
			winch = 0;
			int rows, cols;
			window_size(&rows, &cols);
			send_text(ws, json_pack("{s:s,s:i,s:i}", "type", "resize", "rows", rows,
			                        "cols", cols));
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
					send_text(ws, json_pack("{s:s}", "type", "stdin_close"));
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
			write_all(STDOUT_FILENO, (char *)m.data, m.len);
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
	int fd = upgrade(c, target, &ws, &err);
	if (fd < 0) {
		json_decref(req);
		return cli_fail(err);
	}
	send_text(ws, req);
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
