/*
 * cli/wsclient: the CLI's WebSocket connections (exec, cp). It speaks the
 * HTTP/1.1 upgrade itself on a plain TCP connection to the base URL
 * (libcurl of this vintage has no WebSocket support) with the bearer
 * token, turns a refused upgrade into the API's {code,message} as one
 * line, checks the accept key, and hands over a core/websocket in client
 * mode with whatever the server sent past its headers already primed.
 */
#include "wsclient.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/websocket.h"
#include "core/xalloc.h"

#define HEADER_MAX (16u << 10)
#define BODY_MAX   (64u << 10)

/* Split http://host[:port][/prefix] into its parts. https is not spoken here. */
static int parse_base(const char *base, char **host, char **port, char **prefix,
                      struct hm_err **err)
{
	if (strncmp(base, "http://", 7) != 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "WebSocket commands need an http:// base URL (got `%s`)", base);
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

int cli_write_all(int fd, const char *p, size_t n)
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
	int r = hm_err_set(err, status == 404 ? HM_ERR_NOT_FOUND : HM_ERR_INVALID, NULL,
	                   "%s (HTTP %d)", msg ? msg : "the server refused the upgrade", status);
	json_decref(j);
	return r;
}

int cli_ws_open(struct cli *c, const char *path, struct hm_ws **ws, struct hm_err **err)
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
	_cleanup_free_ char *auth =
	    c->api_key ? xasprintf("Authorization: Bearer %s\r\n", c->api_key) : xstrdup("");
	_cleanup_free_ char *req = xasprintf("GET %s%s HTTP/1.1\r\n"
	                                     "Host: %s:%s\r\n"
	                                     "Upgrade: websocket\r\n"
	                                     "Connection: Upgrade\r\n"
	                                     "Sec-WebSocket-Key: %s\r\n"
	                                     "Sec-WebSocket-Version: 13\r\n"
	                                     "%s\r\n",
	                                     prefix, path, host, port, key, auth);
	if (cli_write_all(fd, req, strlen(req)) < 0) {
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
			    "the server closed the connection during the WebSocket upgrade");
		}
		have += (size_t)r;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	size_t hdr_end = (size_t)(end - buf) + 4;
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		close(fd);
		return hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		                  "the server did not answer in HTTP");
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
		                  "the server's Sec-WebSocket-Accept is wrong");
	}
	struct hm_ws_opts o = { .client = true, .io_timeout_ms = -1, .max_message = 4u << 20 };
	*ws = hm_ws_new(fd, &o);
	if (have > hdr_end)
		hm_ws_prime(*ws, buf + hdr_end, have - hdr_end);
	return fd;
}

void cli_ws_send_json(struct hm_ws *ws, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s)
		hm_ws_send(ws, HM_WS_TEXT, s, strlen(s), NULL);
	free(s);
}
