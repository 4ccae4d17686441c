/*
 * egress/egress: the forward proxy for mediated egress (see egress.h). One
 * thread accepts; one thread per connection (core/connset.h, which close
 * ends all at once) reads the request head, checks and connects the
 * destination, then relays both ways with poll until either side is done.
 * A brokered CONNECT (egress.h) relays between two TLS sessions on that one
 * thread (an SSL object is never used from two), its requests told apart by
 * ingress/reqstream so that each head gets the credentials' headers.
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
#include "egress/ca.h"
#include "ingress/reqstream.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define HEAD_MAX        (16u << 10)
#define HEAD_TIMEOUT_S  30
#define IDLE_TIMEOUT_MS (3600 * 1000)
#define CONNECT_MS      10000
#define MAX_CONNECTIONS 1024
#define MAX_PER_GUEST   256 /* one guest cannot take the others' room */
#define CLOSE_WAIT_S    10
#define RELAY_BUF       (64u << 10)
#define MAX_INJECT      16

struct hm_egress {
	int fd;
	pthread_t thread;
	uint32_t subnet, mask; /* host order */
	struct hm_connset *conns;
	struct hm_egress_broker broker; /* ca NULL: no brokering */
	SSL_CTX *upstream;              /* the client context for brokered hosts */
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

/* ---- brokered CONNECT ---- */

char *hm_egress_inject_head(const char *head, size_t len, char *const *names, char *const *values,
                            size_t n)
{
	size_t cap = len + 3; /* a head cut short still gets its blank line */
	for (size_t i = 0; i < n; i++)
		cap += strlen(names[i]) + strlen(values[i]) + 4;
	char *out = xmalloc(cap);
	size_t o = 0;
	const char *end = head + len;
	const char *l = memmem(head, len, "\r\n", 2);
	if (!l) { /* not a head: passed as it is */
		memcpy(out, head, len);
		out[len] = '\0';
		return out;
	}
	l += 2;
	memcpy(out, head, (size_t)(l - head));
	o = (size_t)(l - head);
	while (l < end && !(end - l >= 2 && l[0] == '\r' && l[1] == '\n')) {
		const char *e = memmem(l, (size_t)(end - l), "\r\n", 2);
		if (!e)
			break;
		size_t ll = (size_t)(e - l) + 2;
		const char *colon = memchr(l, ':', ll);
		size_t nl = colon ? (size_t)(colon - l) : 0;
		bool keep = true;
		for (size_t i = 0; keep && colon && i < n; i++)
			keep = !(strlen(names[i]) == nl && strncasecmp(l, names[i], nl) == 0);
		if (keep) {
			memcpy(out + o, l, ll);
			o += ll;
		}
		l = e + 2;
	}
	for (size_t i = 0; i < n; i++)
		o += (size_t)sprintf(out + o, "%s: %s\r\n", names[i], values[i]);
	memcpy(out + o, "\r\n", 3);
	return out;
}

struct inject {
	char *names[MAX_INJECT], *values[MAX_INJECT];
	size_t n;
};

static void inject_done(struct inject *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->names[i]);
		explicit_bzero(j->values[i], strlen(j->values[i]));
		free(j->values[i]);
	}
	j->n = 0;
}

static int later_head(void *arg, const char *head, size_t len, struct hm_buf *out)
{
	struct inject *j = arg;
	char *h = hm_egress_inject_head(head, len, j->names, j->values, j->n);
	size_t hl = strlen(h);
	hm_buf_add(out, h, hl);
	explicit_bzero(h, hl);
	free(h);
	return 0;
}

static const char *ssl_error(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	if (!e)
		return "the connection ended";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}

/* One end of a brokered connection. */
struct end {
	int fd;
	SSL *ssl;
	short want; /* what its last blocked operation waits for */
};

/* > 0 bytes, 0 the end (or an error), -1 would block (e->want set). */
static int end_io(struct end *e, char *buf, size_t n, bool write)
{
	int r = write ? SSL_write(e->ssl, buf, (int)n) : SSL_read(e->ssl, buf, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(e->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		e->want |= POLLIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		e->want |= POLLOUT;
		return -1;
	default:
		ERR_clear_error();
		return 0;
	}
}

/*
 * Both ways between the guest's TLS session and the upstream's, on
 * non-blocking sockets: guest bytes through rs (each head rewritten), the
 * upstream's as they are. Ends when either side ends and what it sent is
 * delivered, or when nothing moves for IDLE_TIMEOUT_MS.
 */
static void relay_tls(struct end *g, struct end *u, struct hm_reqstream *rs)
{
	fcntl(g->fd, F_SETFL, fcntl(g->fd, F_GETFL) | O_NONBLOCK);
	fcntl(u->fd, F_SETFL, fcntl(u->fd, F_GETFL) | O_NONBLOCK);
	char *in = xmalloc(RELAY_BUF), *back = xmalloc(RELAY_BUF);
	struct hm_buf xf = { 0 };
	size_t fwd_off = 0, back_len = 0, back_off = 0;
	bool g_end = false, u_end = false;
	for (;;) {
		bool moved = false;
		g->want = u->want = 0;
		if (!g_end && fwd_off == xf.len) {
			int n = end_io(g, in, RELAY_BUF, false);
			if (n > 0) {
				xf.len = fwd_off = 0;
				if (hm_reqstream_feed(rs, in, (size_t)n, &xf) < 0)
					break; /* a request that cannot be framed */
				moved = true;
			} else if (n == 0) {
				g_end = moved = true;
			}
		}
		if (fwd_off < xf.len) {
			int n = end_io(u, xf.data + fwd_off, xf.len - fwd_off, true);
			if (n == 0)
				break;
			if (n > 0) {
				fwd_off += (size_t)n;
				moved = true;
			}
		}
		if (!u_end && back_off == back_len) {
			int n = end_io(u, back, RELAY_BUF, false);
			if (n > 0) {
				back_len = (size_t)n;
				back_off = 0;
				moved = true;
			} else if (n == 0) {
				u_end = moved = true;
			}
		}
		if (back_off < back_len) {
			int n = end_io(g, back + back_off, back_len - back_off, true);
			if (n == 0)
				break;
			if (n > 0) {
				back_off += (size_t)n;
				moved = true;
			}
		}
		if ((g_end && fwd_off == xf.len) || (u_end && back_off == back_len))
			break;
		if (moved)
			continue;
		struct pollfd p[2] = { { .fd = g->fd, .events = g->want },
			               { .fd = u->fd, .events = u->want } };
		int r = poll(p, 2, IDLE_TIMEOUT_MS);
		if (r == 0 || (r < 0 && errno != EINTR))
			break;
	}
	SSL_shutdown(g->ssl);
	SSL_shutdown(u->ssl);
	if (xf.data)
		explicit_bzero(xf.data, xf.cap);
	hm_buf_done(&xf);
	free(in);
	free(back);
}

static bool is_ip(const char *host)
{
	unsigned char a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* The upstream side: TLS to host over up, its certificate verified for host. */
static SSL *upstream_tls(const struct hm_egress *e, int up, const char *host, char *why, size_t wl)
{
	SSL *ssl = SSL_new(e->upstream);
	if (!ssl) {
		snprintf(why, wl, "%s", ssl_error());
		return NULL;
	}
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	bool ip = is_ip(host);
	if (!ip)
		SSL_set_tlsext_host_name(ssl, host);
	if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
	        : X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1 ||
	    SSL_set_fd(ssl, up) != 1 || SSL_connect(ssl) != 1) {
		long v = SSL_get_verify_result(ssl);
		snprintf(why, wl, "%s",
		         v != X509_V_OK ? X509_verify_cert_error_string(v) : ssl_error());
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* The guest's first request head (to frame what follows), then the relay. */
static void broker_session(struct hm_conn *c, struct end *g, struct end *u, const char *host,
                           const char *port, struct inject *j)
{
	_cleanup_free_ char *head = xmalloc(HEAD_MAX + 1);
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		int n = SSL_read(g->ssl, head + len, (int)(HEAD_MAX - len));
		if (n <= 0 || memchr(head + len, '\0', (size_t)n))
			return; /* no NUL in a head (RFC 9110) */
		len += (size_t)n;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
		if (!end && len == HEAD_MAX)
			return;
	}
	size_t head_len = (size_t)(end - head) + 4;
	char saved = head[head_len];
	head[head_len] = '\0';
	_cleanup_(hm_reqstream_freep) struct hm_reqstream *rs =
	    hm_reqstream_new(head, later_head, j);
	char *first = rs ? hm_egress_inject_head(head, head_len, j->names, j->values, j->n) : NULL;
	head[head_len] = saved;
	struct hm_buf xf = { 0 };
	int r = first && SSL_write(u->ssl, first, (int)strlen(first)) > 0 ? 0 : -1;
	if (r == 0 && len > head_len)
		r = hm_reqstream_feed(rs, head + head_len, len - head_len, &xf);
	if (r == 0 && xf.len && SSL_write(u->ssl, xf.data, (int)xf.len) <= 0)
		r = -1;
	if (first) {
		explicit_bzero(first, strlen(first));
		free(first);
	}
	if (xf.data)
		explicit_bzero(xf.data, xf.cap);
	hm_buf_done(&xf);
	log_debug("egress", "brokered", "peer=%s dest=%s:%s headers=%zu", c->peer, host, port,
	          j->n);
	if (r == 0)
		relay_tls(g, u, rs);
}

/*
 * A CONNECT to a host with credentials: the upstream session first (so
 * that an untrusted upstream is a 502 to the CONNECT, not a broken
 * session), then the 200, then the guest's handshake against a leaf for
 * host, and the session.
 */
static void broker(struct hm_conn *c, int up, const char *host, const char *port, struct inject *j)
{
	const struct hm_egress *e = c->arg;
	struct timeval tv = { .tv_sec = HEAD_TIMEOUT_S };
	setsockopt(up, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(up, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char why[256];
	struct end u = { .fd = up, .ssl = upstream_tls(e, up, host, why, sizeof(why)) };
	if (!u.ssl) {
		log_info("egress", "upstream refused", "peer=%s dest=%s:%s reason=\"%s\"", c->peer,
		         host, port, why);
		char msg[600];
		snprintf(msg, sizeof(msg), "%.200s: its TLS certificate is not trusted here (%s)",
		         host, why);
		reply(c->fd, 502, "Bad Gateway", msg);
		return;
	}
	struct end g = { .fd = c->fd };
	_cleanup_err_ struct hm_err *err = NULL;
	SSL_CTX *ctx = hm_ca_server_ctx(e->broker.ca, host, &err);
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	if (ctx && hm_send_all(c->fd, ok, sizeof(ok) - 1) == 0 && (g.ssl = SSL_new(ctx)) &&
	    SSL_set_fd(g.ssl, c->fd) == 1 && SSL_accept(g.ssl) == 1)
		broker_session(c, &g, &u, host, port, j);
	else
		log_info("egress", "guest handshake failed", "peer=%s dest=%s:%s reason=\"%s\"",
		         c->peer, host, port, ctx ? ssl_error() : hm_err_message(&err, "?"));
	SSL_free(g.ssl);
	SSL_free(u.ssl);
	SSL_CTX_free(ctx);
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
		if (memchr(head + len, '\0', (size_t)n)) {
			reply(c->fd, 400, "Bad Request", "the request head holds a NUL byte");
			return;
		}
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
	struct inject j = { .n = 0 };
	if (tunnel && e->broker.ca && e->broker.policy)
		j.n = e->broker.policy(e->broker.arg, c->peer, host, j.names, j.values, MAX_INJECT);
	if (j.n > 0) {
		if (len > head_len) { /* a client that does not wait for the 200 */
			inject_done(&j);
			reply(c->fd, 400, "Bad Request", "send the TLS handshake after the 200");
			return;
		}
		broker(c, up, host, port, &j);
		inject_done(&j);
		return;
	}
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

/* The client context for brokered upstreams: TLS 1.2+, verified against the
 * host's roots and the extra file. */
static int upstream_ctx(struct hm_egress *e, const char *extra, struct hm_err **err)
{
	e->upstream = SSL_CTX_new(TLS_client_method());
	if (!e->upstream)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "egress proxy: %s", ssl_error());
	SSL_CTX_set_min_proto_version(e->upstream, TLS1_2_VERSION);
	SSL_CTX_set_verify(e->upstream, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(e->upstream, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_set_default_verify_paths(e->upstream) != 1)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL,
		                  "egress proxy: the host's trust roots: %s", ssl_error());
	if (extra && SSL_CTX_load_verify_locations(e->upstream, extra, NULL) != 1)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "egress proxy: EGRESS_UPSTREAM_CA `%s`: %s", extra, ssl_error());
	return 0;
}

int hm_egress_open(const char *listen_ip, int port, const char *subnet,
                   const struct hm_egress_broker *broker, struct hm_egress **ret,
                   struct hm_err **err)
{
	struct hm_egress *e = xcalloc(1, sizeof(*e));
	e->fd = -1;
	e->conns = hm_connset_new(MAX_CONNECTIONS, MAX_PER_GUEST);
	if (broker) {
		e->broker = *broker;
		e->broker.upstream_ca = NULL; /* read now, not kept */
		if (upstream_ctx(e, broker->upstream_ca, err) < 0) {
			hm_egress_close(e);
			return -1;
		}
	}
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
	SSL_CTX_free(e->upstream);
	free(e);
	return true;
}
