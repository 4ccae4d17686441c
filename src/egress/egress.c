/*
 * egress/egress: the forward proxy for mediated egress (see egress.h). One
 * thread accepts; one thread per connection (core/connset.h, which close
 * ends all at once) reads the request head, checks and connects the
 * destination, then relays both ways with poll until either side is done.
 */
#include "egress/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/connset.h"
#include "core/err.h"
#include "core/log.h"
#include "core/mono.h"
#include "core/xalloc.h"

#define HEAD_MAX        (16u << 10)
#define HEAD_TIMEOUT_S  30
#define IDLE_TIMEOUT_MS (3600 * 1000)
#define CONNECT_MS      10000
#define MAX_CONNECTIONS 1024
#define CLOSE_WAIT_S    10
#define RELAY_BUF       (64u << 10)

struct hm_egress {
	int fd;
	pthread_t thread;
	uint32_t subnet, mask; /* host order */
	struct hm_connset *conns;
};

/* ---- destinations ---- */

static bool local_address(const struct sockaddr *sa)
{
	struct ifaddrs *ifs = NULL;
	if (getifaddrs(&ifs) < 0)
		return true; /* cannot tell: refuse */
	bool local = false;
	for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET)
			local = ((const struct sockaddr_in *)sa)->sin_addr.s_addr ==
			        ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
		else
			local =
			    memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr,
			           &((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16) == 0;
	}
	freeifaddrs(ifs);
	return local;
}

static bool allowed_sa(const struct hm_egress *e, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		if ((a >> 24) == 127 || (a >> 24) == 0 || (a >> 16) == 0xa9fe || (a >> 28) == 0xe ||
		    a == 0xffffffffu || (a & e->mask) == e->subnet)
			return false;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
		    IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || IN6_IS_ADDR_V4MAPPED(a))
			return false;
	} else {
		return false;
	}
	return !local_address(sa);
}

bool hm_egress_allowed(const struct hm_egress *e, const char *addr)
{
	struct sockaddr_storage ss = { 0 };
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return false;
	return allowed_sa(e, (struct sockaddr *)&ss);
}

/* Connect to host:port (a name resolved here, or an address) within CONNECT_MS:
 * the first allowed address that answers. -1 with why (an HTTP status) set. */
static int dial(const struct hm_egress *e, const char *host, const char *port, int *why)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		*why = 502;
		return -1;
	}
	int fd = -1;
	*why = 403;
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		if (!allowed_sa(e, a->ai_addr))
			continue;
		*why = 502;
		int s = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s < 0)
			continue;
		if (connect(s, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			close(s);
			continue;
		}
		struct pollfd p = { .fd = s, .events = POLLOUT };
		int soerr = 1;
		socklen_t sl = sizeof(soerr);
		if (poll(&p, 1, CONNECT_MS) != 1 ||
		    getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
			if (soerr == 1)
				*why = 504;
			close(s);
			continue;
		}
		fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
		fd = s;
	}
	freeaddrinfo(res);
	return fd;
}

/* ---- one connection ---- */

static void reply(int fd, int status, const char *reason, const char *msg)
{
	_cleanup_free_ char *r = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	                                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
	                                   status, reason, strlen(msg) + 1, msg);
	hm_send_all(fd, r, strlen(r));
}

static void reply_dial(int fd, int why, const char *host)
{
	char msg[400];
	snprintf(msg, sizeof(msg), "%.300s: %s", host,
	         why == 403   ? "not a destination the egress proxy connects to"
	         : why == 504 ? "no answer in time"
	                      : "cannot be reached");
	reply(fd, why,
	      why == 403   ? "Forbidden"
	      : why == 504 ? "Gateway Timeout"
	                   : "Bad Gateway",
	      msg);
}

/* Both ways until either side ends (then the other is half-closed) or nothing moves. */
static void relay(int a, int b)
{
	char *buf = xmalloc(RELAY_BUF);
	bool a_open = true, b_open = true;
	while (a_open || b_open) {
		struct pollfd p[2] = { { .fd = a_open ? a : -1, .events = POLLIN },
			               { .fd = b_open ? b : -1, .events = POLLIN } };
		int r = poll(p, 2, IDLE_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = i == 0 ? a : b, to = i == 0 ? b : a;
			ssize_t n = recv(from, buf, RELAY_BUF, 0);
			if (n > 0 && hm_send_all(to, buf, (size_t)n) == 0)
				continue;
			if (n < 0 && errno == EINTR)
				continue;
			shutdown(to, SHUT_WR);
			if (i == 0)
				a_open = false;
			else
				b_open = false;
			if (n < 0) /* a reset: nothing more either way */
				a_open = b_open = false;
		}
	}
	free(buf);
}

/* host[:port] (an IPv6 address in brackets) split; dflt when no port. */
static bool split_host(const char *hp, char *host, size_t hl, char *port, size_t pl,
                       const char *dflt)
{
	const char *colon;
	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');
		if (!close || (size_t)(close - hp - 1) >= hl)
			return false;
		snprintf(host, hl, "%.*s", (int)(close - hp - 1), hp + 1);
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] && !colon)
			return false;
	} else {
		colon = strrchr(hp, ':');
		size_t n = colon ? (size_t)(colon - hp) : strlen(hp);
		if (n == 0 || n >= hl)
			return false;
		snprintf(host, hl, "%.*s", (int)n, hp);
	}
	const char *p = colon ? colon + 1 : dflt;
	if (!*p || strlen(p) >= pl || strspn(p, "0123456789") != strlen(p) || atoi(p) < 1 ||
	    atoi(p) > 65535)
		return false;
	snprintf(port, pl, "%s", p);
	for (const char *h = host; *h; h++)
		if (*h <= ' ' || *h == '/' || *h == '@')
			return false;
	return true;
}

/*
 * The head to send on for an absolute-form request: the origin-form
 * request line, the client's headers less Proxy-* and hop-by-hop ones, a
 * Host, and Connection: close (one request per upstream connection).
 */
static char *origin_head(const char *method, const char *path, const char *version,
                         const char *hostport, const char *head)
{
	static const char *const drop[] = { "proxy-connection",
		                            "proxy-authorization",
		                            "connection",
		                            "keep-alive",
		                            "te",
		                            "trailer",
		                            NULL };
	size_t cap = strlen(head) + strlen(path) + strlen(hostport) + 256;
	char *out = xmalloc(cap);
	int o = snprintf(out, cap, "%s %s %s\r\n", method, path, version);
	bool has_host = false;
	const char *l = strstr(head, "\r\n");
	for (l = l ? l + 2 : head + strlen(head); *l && strncmp(l, "\r\n", 2) != 0;) {
		const char *e = strstr(l, "\r\n");
		if (!e)
			break;
		size_t len = (size_t)(e - l) + 2;
		const char *colon = memchr(l, ':', len);
		size_t nl = colon ? (size_t)(colon - l) : 0;
		bool keep = colon != NULL;
		for (size_t k = 0; keep && drop[k]; k++)
			keep = !(strlen(drop[k]) == nl && strncasecmp(l, drop[k], nl) == 0);
		has_host |= nl == 4 && strncasecmp(l, "host", 4) == 0;
		if (keep && (size_t)o + len < cap) {
			memcpy(out + o, l, len);
			o += (int)len;
		}
		l = e + 2;
	}
	snprintf(out + o, cap - (size_t)o, "%s%s%sConnection: close\r\n\r\n",
	         has_host ? "" : "Host: ", has_host ? "" : hostport, has_host ? "" : "\r\n");
	return out;
}

static void serve(struct hm_conn *c)
{
	const struct hm_egress *e = c->arg;
	struct timeval tv = { .tv_sec = HEAD_TIMEOUT_S };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	_cleanup_free_ char *head = xmalloc(HEAD_MAX + 1);
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		ssize_t n = recv(c->fd, head + len, HEAD_MAX - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		len += (size_t)n;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
		if (!end && len == HEAD_MAX) {
			reply(c->fd, 431, "Request Header Fields Too Large",
			      "the request head is too long");
			return;
		}
	}
	size_t head_len = (size_t)(end - head) + 4;
	char method[16], target[2048], version[16];
	if (sscanf(head, "%15s %2047s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		reply(c->fd, 400, "Bad Request", "not an HTTP/1.x proxy request");
		return;
	}
	char host[300], port[8];
	bool tunnel = strcmp(method, "CONNECT") == 0;
	const char *path = "/";
	if (tunnel) {
		if (!split_host(target, host, sizeof(host), port, sizeof(port), "")) {
			reply(c->fd, 400, "Bad Request", "CONNECT takes host:port");
			return;
		}
	} else {
		if (strncasecmp(target, "http://", 7) != 0) {
			reply(c->fd, 400, "Bad Request",
			      strncasecmp(target, "https://", 8) == 0
			          ? "HTTPS goes through CONNECT (set HTTPS_PROXY)"
			          : "a proxy request names its destination: http://host/path");
			return;
		}
		char *hp = target + 7;
		char *slash = strchr(hp, '/');
		path = slash ? slash : "/";
		char hostport[300];
		snprintf(hostport, sizeof(hostport), "%.*s",
		         (int)(slash ? (size_t)(slash - hp) : strlen(hp)), hp);
		if (!split_host(hostport, host, sizeof(host), port, sizeof(port), "80")) {
			reply(c->fd, 400, "Bad Request", "the request's host is not a host[:port]");
			return;
		}
	}
	int why = 0;
	int up = dial(e, host, port, &why);
	if (up < 0) {
		log_info("egress", "refused", "peer=%s dest=%s:%s status=%d", c->peer, host, port,
		         why);
		reply_dial(c->fd, why, host);
		return;
	}
	if (hm_conn_set_up(c, up) < 0) {
		close(up);
		return;
	}
	int one = 1;
	setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	log_debug("egress", "connected", "peer=%s dest=%s:%s mode=%s", c->peer, host, port,
	          tunnel ? "connect" : "forward");
	int r;
	if (tunnel) {
		static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
		r = hm_send_all(c->fd, ok, sizeof(ok) - 1);
	} else {
		char hostport[310];
		snprintf(hostport, sizeof(hostport), strcmp(port, "80") ? "%s:%s" : "%s", host,
		         port);
		head[head_len - 2] = '\0'; /* the head's last line, without the blank one */
		_cleanup_free_ char *fwd = origin_head(method, path, version, hostport, head);
		r = hm_send_all(up, fwd, strlen(fwd));
	}
	if (r == 0 && len > head_len)
		r = hm_send_all(up, head + head_len, len - head_len);
	if (r == 0) {
		struct timeval none = { 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
		relay(c->fd, up);
	}
}

static void *accept_loop(void *arg)
{
	struct hm_egress *e = arg;
	for (;;) {
		struct sockaddr_storage ss;
		int fd = hm_accept(e->fd, &ss);
		if (fd < 0)
			return NULL; /* shut down */
		hm_connset_spawn(e->conns, fd, &ss, e, NULL, serve);
	}
}

int hm_egress_open(const char *listen_ip, int port, const char *subnet, struct hm_egress **ret,
                   struct hm_err **err)
{
	struct hm_egress *e = xcalloc(1, sizeof(*e));
	e->fd = -1;
	e->conns = hm_connset_new(MAX_CONNECTIONS);
	char net[20];
	int prefix = 32;
	struct in_addr a;
	if (sscanf(subnet, "%19[0-9.]/%d", net, &prefix) != 2 || inet_pton(AF_INET, net, &a) != 1 ||
	    prefix < 0 || prefix > 32) {
		hm_egress_close(e);
		return hm_err_set(err, HM_ERR_INVALID, NULL, "egress: bad subnet `%s`", subnet);
	}
	e->mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
	e->subnet = ntohl(a.s_addr) & e->mask;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, listen_ip, &sa.sin_addr);
	int one = 1;
	e->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (e->fd >= 0)
		setsockopt(e->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (e->fd < 0 || bind(e->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(e->fd, 512) < 0) {
		int en = errno;
		hm_egress_close(e);
		return hm_err_errno(err, en, "egress proxy: listen on %s:%d (EGRESS_PROXY_PORT)",
		                    listen_ip, port);
	}
	if (pthread_create(&e->thread, NULL, accept_loop, e) != 0) {
		close(e->fd);
		e->fd = -1;
		hm_egress_close(e);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "egress proxy: no thread");
	}
	log_info("egress", "proxy listening", "addr=%s:%d", listen_ip, port);
	*ret = e;
	return 0;
}

bool hm_egress_close(struct hm_egress *e)
{
	if (!e)
		return true;
	if (e->fd >= 0) {
		shutdown(e->fd, SHUT_RDWR); /* wakes accept() */
		pthread_join(e->thread, NULL);
		close(e->fd);
	}
	if (!hm_connset_close(e->conns, CLOSE_WAIT_S * 1000L))
		return false;
	free(e);
	return true;
}
