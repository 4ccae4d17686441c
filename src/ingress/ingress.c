/*
 * ingress/ingress: the ingress service and its HTTP reverse proxy (see
 * ingress.h). Locking: `mu` serialises changes (create, delete: store row,
 * listeners and the rule table move together); `lock` (a rwlock) guards
 * the rule table that connection threads read. A connection copies what
 * it needs from its rule under the read lock and never holds it across I/O.
 */
#include "ingress/ingress.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/connset.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/mono.h"
#include "core/names.h"
#include "core/log.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "ingress/internal.h"
#include "ingress/reqstream.h"
#include "ingress/route.h"
#include "ingress/tls.h"
#include "instance/instances.h"
#include "store/ingresses.h"

#define HEAD_MAX        (16u << 10)
#define HEAD_TIMEOUT_S  10
#define IDLE_TIMEOUT_S  3600
#define CONNECT_MS      5000
#define MAX_CONNECTIONS 1024
#define MAX_PER_CLIENT  256 /* from one address: a hoarder leaves room for the rest */
#define CLOSE_WAIT_S    10  /* for connection threads to end at shutdown */
#define RELAY_BUF       (64u << 10)
#define BOOT_GRACE_MS   15000

/* ---- the rule table ---- */

void ing_rules_free(struct rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].hostname);
		free(r[i].target);
		free(r[i].auth_header);
		free(r[i].auth_value);
		free(r[i].group);
		for (size_t k = 0; k < r[i].nmembers; k++)
			free(r[i].members[k]);
		free(r[i].members);
	}
	free(r);
}

/* One rule of a stored spec (see spec_text_of), its strings borrowed from o. */
static struct hm_ingress_rule stored_rule(json_t *o)
{
	json_t *m = json_object_get(o, "match"), *t = json_object_get(o, "target");
	json_t *a = json_object_get(o, "request_header_auth");
	return (struct hm_ingress_rule){
		.hostname = json_string_value(json_object_get(m, "hostname")),
		.port = (int)json_integer_value(json_object_get(m, "port")),
		.instance = json_string_value(json_object_get(t, "instance")),
		.target_port = (int)json_integer_value(json_object_get(t, "port")),
		.tls = json_is_true(json_object_get(o, "tls")),
		.redirect_http = json_is_true(json_object_get(o, "redirect_http")),
		.auth_header = json_string_value(json_object_get(a, "header")),
		.auth_value = json_string_value(json_object_get(a, "value")),
	};
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Append the rules of one stored spec to (*r, *n). */
static void rules_add(struct rule **r, size_t *n, const char *spec_text)
{
	json_t *spec = json_loads(spec_text ? spec_text : "{}", 0, NULL);
	size_t i;
	json_t *o;
	json_array_foreach (json_object_get(spec, "rules"), i, o) {
		struct hm_ingress_rule sr = stored_rule(o);
		const char *h = sr.hostname ? sr.hostname : "";
		*r = xrealloc(*r, (*n + 1) * sizeof(**r));
		(*r)[(*n)++] = (struct rule){
			.hostname = xstrdup(h),
			.pattern = hm_route_is_pattern(h),
			.port = sr.port,
			.tls = sr.tls,
			.target = xstrdup(sr.instance ? sr.instance : ""),
			.target_port = sr.target_port,
			.auth_header = dup_or_null(sr.auth_header),
			.auth_value = dup_or_null(sr.auth_value),
		};
		if (sr.tls && sr.redirect_http) {
			*r = xrealloc(*r, (*n + 1) * sizeof(**r));
			(*r)[(*n)++] = (struct rule){
				.hostname = xstrdup(h),
				.pattern = hm_route_is_pattern(h),
				.port = 80,
				.redirect_to = sr.port,
				.target = xstrdup(""),
			};
		}
	}
	json_decref(spec);
}

int ing_reload(struct hm_ingresses *ing, struct hm_err **err)
{
	struct hm_ingress_row *rows = NULL, *groups = NULL;
	size_t n = 0, ng = 0;
	if (hm_store_ingress_list(ing->st, &rows, &n, err) < 0)
		return -1;
	if (hm_store_group_list(ing->st, &groups, &ng, err) < 0) {
		hm_ingress_rows_free(rows, n);
		return -1;
	}
	struct rule *r = NULL;
	size_t nr = 0;
	for (size_t i = 0; i < n; i++)
		rules_add(&r, &nr, rows[i].spec);
	for (size_t i = 0; i < ng; i++)
		ing_group_rules_add(&r, &nr, groups[i].name, groups[i].spec);
	hm_ingress_rows_free(rows, n);
	hm_ingress_rows_free(groups, ng);
	pthread_rwlock_wrlock(&ing->lock);
	struct rule *old = ing->rules;
	size_t nold = ing->nrules;
	ing->rules = r;
	ing->nrules = nr;
	pthread_rwlock_unlock(&ing->lock);
	ing_rules_free(old, nold);
	return 0;
}

/* ---- the proxy: one connection ---- */

struct conn {
	struct hm_ingresses *ing;
	struct hm_conn *k; /* the client's socket, its address, the instance's end */
	int port;
	bool tls, raw;
	SSL *ssl; /* tls: after the handshake */
};

/* Bytes from the client: through TLS or not. */
static ssize_t cl_read(struct conn *c, void *buf, size_t n)
{
	if (!c->ssl)
		return recv(c->k->fd, buf, n, 0);
	int r = SSL_read(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
	return r > 0 ? r : -1;
}

static int cl_write(struct conn *c, const void *p, size_t n)
{
	if (!c->ssl)
		return hm_send_all(c->k->fd, p, n);
	return SSL_write(c->ssl, p, (int)n) == (int)n ? 0 : -1;
}

static void reply(struct conn *c, int status, const char *reason, const char *code, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static void reply(struct conn *c, int status, const char *reason, const char *code, const char *fmt,
                  ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *b = json_pack("{s:s,s:s}", "code", code, "message", msg);
	_cleanup_free_ char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	_cleanup_free_ char *head = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	                                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	                                      status, reason, strlen(body) + 1);
	cl_write(c, head, strlen(head));
	cl_write(c, body, strlen(body));
	cl_write(c, "\n", 1);
}

/* The value of header `name` in a request head (CRLF lines), copied to out; false if absent. */
static bool header(const char *head, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
		const char *h = l + 2;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
			const char *v = h + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t len = e ? (size_t)(e - v) : strlen(v);
			while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			snprintf(out, outlen, "%.*s", (int)len, v);
			return true;
		}
	}
	return false;
}

/* Constant-time comparison for the header auth value. */
static bool same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;
	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/*
 * The head to send upstream: the request line and the client's headers,
 * less hop-by-hop ones and the auth header, plus X-Forwarded-* and our
 * Connection: Upgrade for a protocol switch, else keep-alive unless the
 * client's says close (or it speaks HTTP/1.0 without keep-alive).
 */
static char *upstream_head(const char *head, const char *auth_header, const char *peer,
                           const char *host, bool upgrade, bool tls)
{
	char conn[128] = "";
	header(head, "Connection", conn, sizeof(conn));
	const char *eol0 = strstr(head, "\r\n");
	bool http10 = eol0 && eol0 - head >= 8 && strncmp(eol0 - 8, "HTTP/1.0", 8) == 0;
	bool close = strcasestr(conn, "close") || (http10 && !strcasestr(conn, "keep-alive"));
	static const char *const drop[] = {
		"connection",      "keep-alive",       "proxy-connection",  "te", "trailer",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", NULL
	};
	const char *eol = strstr(head, "\r\n");
	size_t cap = strlen(head) + 512;
	char *out = xmalloc(cap);
	size_t o = (size_t)(eol - head) + 2;
	memcpy(out, head, o);
	char xff[512] = "";
	header(head, "X-Forwarded-For", xff, sizeof(xff));
	for (const char *l = eol + 2; *l && strncmp(l, "\r\n", 2) != 0;) {
		const char *e = strstr(l, "\r\n");
		size_t len = (size_t)(e - l) + 2;
		const char *colon = memchr(l, ':', len);
		size_t nl = colon ? (size_t)(colon - l) : 0;
		bool keep = colon != NULL;
		for (size_t k = 0; keep && drop[k]; k++)
			keep = !(strlen(drop[k]) == nl && strncasecmp(l, drop[k], nl) == 0);
		if (keep && !upgrade && nl == 7 && strncasecmp(l, "upgrade", 7) == 0)
			keep = false;
		if (keep && auth_header && strlen(auth_header) == nl &&
		    strncasecmp(l, auth_header, nl) == 0)
			keep = false;
		if (keep) {
			memcpy(out + o, l, len);
			o += len;
		}
		l = e + 2;
	}
	int w = snprintf(out + o, cap - o,
	                 "X-Forwarded-For: %s%s%s\r\nX-Forwarded-Host: %s\r\n"
	                 "X-Forwarded-Proto: %s\r\nConnection: %s\r\n\r\n",
	                 xff, *xff ? ", " : "", peer, host, tls ? "https" : "http",
	                 upgrade ? "Upgrade"
	                 : close ? "close"
	                         : "keep-alive");
	if (w < 0 || (size_t)w >= cap - o) {
		free(out);
		return NULL;
	}
	return out;
}

/* The instance's end of c, once connected; -1 when the daemon is stopping. */
static int set_up(struct conn *c, int up)
{
	return hm_conn_set_up(c->k, up);
}

static void drop_up(struct conn *c)
{
	hm_conn_drop_up(c->k);
}

static int connect_to(const char *ip, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (poll(&p, 1, CONNECT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
	    soerr != 0) {
		close(fd);
		errno = soerr ? soerr : ETIMEDOUT;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/*
 * connect_to for a held connection: a VM up for less than BOOT_GRACE_MS
 * (booted by this very connection, as a stateless scale to zero does) may
 * not listen yet, so a refusal is tried again until it does or the grace
 * runs out.
 */
static int connect_held(const char *ip, int port, const struct hm_instance_conn *hold)
{
	for (;;) {
		int up = connect_to(ip, port);
		if (up >= 0 || errno != ECONNREFUSED ||
		    hm_instances_conn_age_ms(hold) > BOOT_GRACE_MS)
			return up;
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

struct relay {
	int from, to;
	struct hm_instance_conn *hold; /* the instance's count of this connection */
	bool inbound;                  /* client -> instance */
	struct hm_reqstream *rs;       /* inbound HTTP: its requests, each head rewritten */
};

/* Copy from -> to until EOF or an error, then half-close `to`. */
static void *relay(void *arg)
{
	struct relay *r = arg;
	char *buf = xmalloc(RELAY_BUF);
	struct hm_buf xf = { 0 };
	for (;;) {
		ssize_t n = recv(r->from, buf, RELAY_BUF, 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* Activity; bytes for an instance asleep with this connection held wake it. */
		if (n <= 0 || hm_instances_conn_activity(r->hold, r->inbound) < 0)
			break;
		const char *out = buf;
		size_t len = (size_t)n;
		if (r->rs) {
			xf.len = 0;
			if (hm_reqstream_feed(r->rs, buf, len, &xf) < 0)
				break; /* a request that cannot be framed, or refused */
			out = xf.data;
			len = xf.len;
		}
		if (len && hm_send_all(r->to, out, len) < 0)
			break;
	}
	hm_buf_done(&xf);
	free(buf);
	shutdown(r->to, SHUT_WR);
	shutdown(r->from, SHUT_RD);
	return NULL;
}

/*
 * Both directions on one thread, for a TLS client (an SSL object must not
 * be read and written from two threads): non-blocking sockets, one buffer
 * each way, poll for what each side can take. Ends when both directions
 * are done or nothing moves for IDLE_TIMEOUT_S.
 */
static void relay_tls(struct conn *c, int up, struct hm_instance_conn *hold,
                      struct hm_reqstream *rs)
{
	struct hm_buf xf = { 0 };
	const char *c2u_data = NULL; /* what is to go upstream: c2u, or xf's rewrite of it */
	fcntl(c->k->fd, F_SETFL, fcntl(c->k->fd, F_GETFL) | O_NONBLOCK);
	fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
	char *c2u = xmalloc(RELAY_BUF), *u2c = xmalloc(RELAY_BUF);
	size_t c2u_len = 0, c2u_off = 0, u2c_len = 0, u2c_off = 0;
	bool c_eof = false, u_eof = false, c_want_write = false;
	for (;;) {
		/* Client -> upstream. */
		while (!c_eof && c2u_len == 0) {
			int n = SSL_read(c->ssl, c2u, RELAY_BUF);
			if (n > 0 && hm_instances_conn_activity(hold, true) < 0) {
				c_eof = u_eof = true; /* it could not be woken */
				break;
			}
			if (n > 0 && rs) {
				xf.len = 0;
				if (hm_reqstream_feed(rs, c2u, (size_t)n, &xf) < 0) {
					c_eof = u_eof = true; /* cannot be framed, or refused */
					break;
				}
				c2u_data = xf.data;
				c2u_len = xf.len;
				c2u_off = 0;
				break;
			}
			if (n > 0) {
				c2u_data = c2u;
				c2u_len = (size_t)n;
				c2u_off = 0;
				break;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				c_eof = true;
				shutdown(up, SHUT_WR);
			}
			break;
		}
		while (c2u_len > c2u_off) {
			ssize_t w = send(up, c2u_data + c2u_off, c2u_len - c2u_off, MSG_NOSIGNAL);
			if (w > 0) {
				c2u_off += (size_t)w;
				continue;
			}
			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			c_eof = u_eof = true; /* upstream gone */
			break;
		}
		if (c2u_off == c2u_len)
			c2u_len = c2u_off = 0;
		/* Upstream -> client. */
		if (!u_eof && u2c_len == 0) {
			ssize_t n = recv(up, u2c, RELAY_BUF, 0);
			if (n > 0) {
				hm_instances_conn_activity(hold, false);
				u2c_len = (size_t)n;
				u2c_off = 0;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				u_eof = true;
			}
		}
		c_want_write = false;
		while (u2c_len > u2c_off) {
			int w = SSL_write(c->ssl, u2c + u2c_off, (int)(u2c_len - u2c_off));
			if (w > 0) {
				u2c_off += (size_t)w;
				continue;
			}
			int e = SSL_get_error(c->ssl, w);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				c_want_write = true;
				break;
			}
			c_eof = u_eof = true; /* client gone */
			u2c_len = u2c_off = 0;
			break;
		}
		if (u2c_off == u2c_len)
			u2c_len = u2c_off = 0;
		if (u_eof && u2c_len == 0) {
			SSL_shutdown(c->ssl);
			break;
		}
		if (c_eof && u_eof)
			break;
		if (!c_eof && c2u_len == 0 && SSL_pending(c->ssl) > 0)
			continue;
		struct pollfd p[2] = {
			{ .fd = c->k->fd,
			  .events = (short)((!c_eof && c2u_len == 0 ? POLLIN : 0) |
			                    (c_want_write ? POLLOUT : 0)) },
			{ .fd = up,
			  .events = (short)((!u_eof && u2c_len == 0 ? POLLIN : 0) |
			                    (c2u_len > c2u_off ? POLLOUT : 0)) },
		};
		int r = poll(p, 2, IDLE_TIMEOUT_S * 1000);
		if (r == 0 || (r < 0 && errno != EINTR))
			break;
	}
	free(c2u);
	free(u2c);
	hm_buf_done(&xf);
}

static void set_timeout(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* What a request needs from its rule, copied out from under the lock. */
struct match {
	char target[128]; /* an ingress's instance, or a group's name */
	int port;
	int redirect_to;
	char auth_header[72];
	char auth_value[260];
	bool auth;
	bool group;
	char members[HM_GROUP_MAX_MEMBERS][32];
	size_t nmembers;
	int soft_limit, hard_limit;
};

static bool find_rule(struct hm_ingresses *ing, int port, const char *host, struct match *m)
{
	bool found = false;
	pthread_rwlock_rdlock(&ing->lock);
	/* Literal hostnames first, then patterns, each in creation order. */
	for (int pass = 0; pass < 2 && !found; pass++) {
		for (size_t i = 0; i < ing->nrules && !found; i++) {
			struct rule *r = &ing->rules[i];
			if (r->port != port || r->pattern != (pass == 1))
				continue;
			if (!hm_route_match(r->hostname, host, r->group ? r->group : r->target,
			                    m->target, sizeof(m->target)))
				continue;
			found = true;
			m->port = r->target_port;
			m->redirect_to = r->redirect_to;
			m->auth = r->auth_header != NULL;
			if (m->auth) {
				snprintf(m->auth_header, sizeof(m->auth_header), "%s",
				         r->auth_header);
				snprintf(m->auth_value, sizeof(m->auth_value), "%s", r->auth_value);
			}
			m->group = r->group != NULL;
			for (size_t k = 0; k < r->nmembers && k < HM_GROUP_MAX_MEMBERS; k++)
				snprintf(m->members[m->nmembers++], sizeof(m->members[0]), "%s",
				         r->members[k]);
			m->soft_limit = r->soft_limit;
			m->hard_limit = r->hard_limit;
		}
	}
	pthread_rwlock_unlock(&ing->lock);
	return found;
}

/*
 * Which member of a group takes a connection: a running one under the soft
 * limit, fewest connections first; else one asleep under auto-standby (the
 * hold wakes it); else a running one under the hard limit. The loads are
 * read without a lock, so two connections at once may both take a member's
 * last place under the hard limit.
 */
static int open_member(struct hm_ingresses *ing, const struct match *m, char ip[16],
                       struct hm_instance_conn **hold, struct hm_err **err)
{
	int soft = -1, hard = -1, asleep = -1, soft_conns = 0, hard_conns = 0;
	for (size_t i = 0; i < m->nmembers; i++) {
		struct hm_instance_load ld;
		if (hm_instances_load(ing->instances, m->members[i], &ld) < 0)
			continue;
		if (ld.running && (!m->soft_limit || ld.conns < m->soft_limit) &&
		    (soft < 0 || ld.conns < soft_conns)) {
			soft = (int)i;
			soft_conns = ld.conns;
		}
		if (ld.running && (!m->hard_limit || ld.conns < m->hard_limit) &&
		    (hard < 0 || ld.conns < hard_conns)) {
			hard = (int)i;
			hard_conns = ld.conns;
		}
		if (ld.wakeable && asleep < 0)
			asleep = (int)i;
	}
	int pick = soft >= 0 ? soft : asleep >= 0 ? asleep : hard;
	if (pick < 0)
		return hm_err_set(
		    err, HM_ERR_UNAVAILABLE, "no_instance",
		    "service group `%s` has no instance to take the connection (%zu "
		    "members: none running under its hard limit, none asleep to wake)",
		    m->target, m->nmembers);
	return hm_instances_conn_open(ing->instances, m->members[pick], ip, hold, err);
}

/* The hold on the instance a matched rule sends the connection to. */
static int open_target(struct hm_ingresses *ing, const struct match *m, char ip[16],
                       struct hm_instance_conn **hold, struct hm_err **err)
{
	if (m->group)
		return open_member(ing, m, ip, hold, err);
	return hm_instances_conn_open(ing->instances, m->target, ip, hold, err);
}

/*
 * A TLS-only port (a service group's service with no `http`): the client's
 * SNI picks the route, and the bytes after the handshake go to the
 * instance as they are. There is no HTTP to answer errors with: a
 * connection that cannot be routed is closed.
 */
static void serve_raw(struct conn *c)
{
	const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
	char host[300];
	snprintf(host, sizeof(host), "%s", sni ? sni : "");
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	struct match m = { .port = 0 };
	if (!*host || !find_rule(c->ing, c->port, host, &m)) {
		log_debug("ingress", "no route", "peer=%s port=%d sni=%s", c->k->peer, c->port,
		          host);
		return;
	}
	char ip[16];
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_(hm_instances_conn_closep) struct hm_instance_conn *hold = NULL;
	if (open_target(c->ing, &m, ip, &hold, &err) < 0) {
		log_info("ingress", "connection refused", "peer=%s sni=%s error=\"%s\"", c->k->peer,
		         host, err->msg);
		return;
	}
	int up = connect_held(ip, m.port, hold);
	if (up >= 0 && set_up(c, up) < 0) {
		close(up);
		return; /* the daemon is stopping */
	}
	if (up < 0) {
		log_info("ingress", "instance unreachable", "sni=%s addr=%s:%d error=\"%s\"", host,
		         ip, m.port, strerror(errno));
		return;
	}
	relay_tls(c, up, hold, NULL);
	drop_up(c);
}

/* A Host header's name as routes are matched: no port, lowercase. */
static void norm_host(char *host)
{
	char *colon = host[0] == '[' ? NULL : strchr(host, ':');
	if (colon)
		*colon = '\0';
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

/* What the later requests of a connection are held to: its first's route. */
struct later {
	struct conn *c;
	const struct match *m;
	const char *host;
	struct hm_instance_conn *hold; /* set once the instance is chosen */
};

/*
 * A later request on a kept-alive connection: the same Host as the first
 * (the connection is the first's route's; another route needs a connection
 * of its own) and, on a route with header auth, the right header each time;
 * its head rewritten as the first's was. Anything else ends the connection.
 */
static int later_head(void *arg, const char *head, size_t len, struct hm_buf *out)
{
	(void)len;
	struct later *x = arg;
	char host[300], conn_hdr[128] = "", upg[64];
	if (!header(head, "Host", host, sizeof(host)))
		return -1;
	norm_host(host);
	if (strcmp(host, x->host) != 0)
		return -1;
	if (x->m->auth) {
		char got[300];
		if (!header(head, x->m->auth_header, got, sizeof(got)) ||
		    !same_secret(got, x->m->auth_value))
			return -1;
	}
	header(head, "Connection", conn_hdr, sizeof(conn_hdr));
	bool upgrade = header(head, "Upgrade", upg, sizeof(upg)) && strcasestr(conn_hdr, "upgrade");
	_cleanup_free_ char *fwd = upstream_head(head, x->m->auth ? x->m->auth_header : NULL,
	                                         x->c->k->peer, host, upgrade, x->c->tls);
	if (!fwd)
		return -1;
	hm_buf_add(out, fwd, strlen(fwd));
	hm_instances_conn_request(x->hold);
	return 0;
}

static void serve(struct conn *c)
{
	set_timeout(c->k->fd, HEAD_TIMEOUT_S);
	struct timeval tv = { .tv_sec = HEAD_TIMEOUT_S };
	setsockopt(c->k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (c->tls) {
		_cleanup_err_ struct hm_err *e = NULL;
		c->ssl = hm_tls_accept(c->ing->tls, c->k->fd, &e);
		if (!c->ssl) {
			log_debug("ingress", "handshake failed", "peer=%s error=\"%s\"", c->k->peer,
			          e->msg);
			return;
		}
		if (c->raw) {
			serve_raw(c);
			return;
		}
	}
	char *head = xmalloc(HEAD_MAX + 1);
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		ssize_t n = cl_read(c, head + len, HEAD_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(head);
			return;
		}
		if (memchr(head + len, '\0', (size_t)n)) {
			reply(c, 400, "Bad Request", "bad_request",
			      "the request head holds a NUL byte");
			free(head);
			return;
		}
		len += (size_t)n;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
		if (!end && len == HEAD_MAX) {
			reply(c, 431, "Request Header Fields Too Large", "headers_too_large",
			      "the request head is over %u bytes", HEAD_MAX);
			free(head);
			return;
		}
	}
	size_t head_len = (size_t)(end - head) + 4;
	char saved = head[head_len];
	head[head_len] = '\0';
	char host[300];
	if (!header(head, "Host", host, sizeof(host)) || !*host) {
		reply(c, 400, "Bad Request", "bad_request", "the request has no Host header");
		free(head);
		return;
	}
	norm_host(host);
	struct match m = { .port = 0 };
	if (!find_rule(c->ing, c->port, host, &m)) {
		reply(c, 404, "Not Found", "not_found", "no ingress routes %s on port %d", host,
		      c->port);
		free(head);
		return;
	}
	if (m.redirect_to) {
		char target[2048];
		const char *sp = strchr(head, ' ');
		const char *path = sp ? sp + 1 : "/";
		size_t pl = strcspn(path, " \r");
		char portpart[16] = "";
		if (m.redirect_to != 443)
			snprintf(portpart, sizeof(portpart), ":%d", m.redirect_to);
		snprintf(target, sizeof(target), "https://%s%s%.*s", host, portpart,
		         (int)(pl < 1800 ? pl : 1800), path);
		_cleanup_free_ char *r301 = xasprintf("HTTP/1.1 301 Moved Permanently\r\nLocation: "
		                                      "%s\r\nContent-Length: 0\r\nConnection: "
		                                      "close\r\n\r\n",
		                                      target);
		cl_write(c, r301, strlen(r301));
		free(head);
		return;
	}
	if (m.auth) {
		char got[300];
		if (!header(head, m.auth_header, got, sizeof(got)) ||
		    !same_secret(got, m.auth_value)) {
			reply(c, 403, "Forbidden", "forbidden",
			      "this route needs the %s header with the right value", m.auth_header);
			free(head);
			return;
		}
	}
	/* The requests that follow the first on this connection, each told apart. */
	struct later later = { c, &m, host, NULL };
	_cleanup_(hm_reqstream_freep) struct hm_reqstream *rs =
	    hm_reqstream_new(head, later_head, &later);
	if (!rs) {
		reply(c, 400, "Bad Request", "bad_request",
		      "the request's body cannot be framed (Content-Length and Transfer-Encoding "
		      "together, a coding other than chunked last, or a bad length)");
		free(head);
		return;
	}
	char ip[16];
	_cleanup_err_ struct hm_err *err = NULL;
	/* Held until this function returns: the instance counts this connection
	 * (a drain waits for it) and refuses new ones while it drains. */
	_cleanup_(hm_instances_conn_closep) struct hm_instance_conn *hold = NULL;
	if (open_target(c->ing, &m, ip, &hold, &err) < 0) {
		if (hm_err_is(err, HM_ERR_UNAVAILABLE)) /* draining, or a wake that failed */
			reply(c, 503, "Service Unavailable", err->code ? err->code : "unavailable",
			      "%s", err->msg);
		else
			reply(c, 502, "Bad Gateway", "bad_gateway", "%s", err->msg);
		free(head);
		return;
	}
	later.hold = hold;
	hm_instances_conn_request(hold);
	int up = connect_held(ip, m.port, hold);
	if (up >= 0 && set_up(c, up) < 0) {
		close(up);
		return; /* the daemon is stopping */
	}
	if (up < 0) {
		reply(c, 502, "Bad Gateway", "bad_gateway", "instance %s (%s:%d): %s", m.target, ip,
		      m.port, strerror(errno));
		free(head);
		return;
	}
	char conn_hdr[128] = "", upg[64] = "";
	header(head, "Connection", conn_hdr, sizeof(conn_hdr));
	bool upgrade = header(head, "Upgrade", upg, sizeof(upg)) && strcasestr(conn_hdr, "upgrade");
	_cleanup_free_ char *fwd =
	    upstream_head(head, m.auth ? m.auth_header : NULL, c->k->peer, host, upgrade, c->tls);
	head[head_len] = saved;
	int r = fwd ? hm_send_all(up, fwd, strlen(fwd)) : -1;
	if (r == 0 && len > head_len) {
		/* What came after the first head: its body, and maybe more requests. */
		struct hm_buf xf = { 0 };
		r = hm_reqstream_feed(rs, head + head_len, len - head_len, &xf);
		if (r == 0 && xf.len)
			r = hm_send_all(up, xf.data, xf.len);
		hm_buf_done(&xf);
	}
	free(head);
	if (r < 0) {
		reply(c, 502, "Bad Gateway", "bad_gateway", "instance %s stopped reading",
		      m.target);
		drop_up(c);
		return;
	}
	if (c->ssl) {
		relay_tls(c, up, hold, rs);
		drop_up(c);
		return;
	}
	set_timeout(c->k->fd, IDLE_TIMEOUT_S);
	set_timeout(up, IDLE_TIMEOUT_S);
	struct relay back = { up, c->k->fd, hold, false, NULL },
	             forth = { c->k->fd, up, hold, true, rs };
	pthread_t t;
	bool threaded = pthread_create(&t, NULL, relay, &back) == 0;
	relay(&forth);
	if (threaded)
		pthread_join(t, NULL);
	else
		relay(&back);
	drop_up(c);
}

static void serve_conn(struct hm_conn *k)
{
	struct conn *c = k->arg;
	c->k = k;
	serve(c);
	SSL_free(c->ssl);
	c->ssl = NULL;
}

/* ---- listeners ---- */

static void *accept_loop(void *arg)
{
	struct listener *l = arg;
	for (;;) {
		struct sockaddr_storage ss;
		int fd = hm_accept(l->fd, &ss);
		if (fd < 0)
			return NULL; /* shut down */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = xcalloc(1, sizeof(*c));
		*c = (struct conn){ .ing = l->ing, .port = l->port, .tls = l->tls, .raw = l->raw };
		hm_connset_spawn(l->ing->conns, fd, &ss, c, free, serve_conn);
	}
}

int ing_listen_on(struct hm_ingresses *ing, int port, bool tls, bool raw, struct hm_err **err)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int family;
	if (strchr(ing->listen_addr, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, ing->listen_addr, &a6->sin6_addr);
		sl = sizeof(*a6);
		family = AF_INET6;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, ing->listen_addr, &a4->sin_addr);
		sl = sizeof(*a4);
		family = AF_INET;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 512) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		hm_err_errno(err, e, "ingress: listen on %s port %d", ing->listen_addr, port);
		return hm_err_recast(
		    err, e == EADDRINUSE || e == EACCES ? HM_ERR_CONFLICT : HM_ERR_INTERNAL,
		    "port_unavailable");
	}
	struct listener *l = xcalloc(1, sizeof(*l));
	*l = (struct listener){
		.next = ing->listeners, .port = port, .tls = tls, .raw = raw, .fd = fd, .ing = ing
	};
	if (pthread_create(&l->thread, NULL, accept_loop, l) != 0) {
		close(fd);
		free(l);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "ingress: no thread for port %d",
		                  port);
	}
	ing->listeners = l;
	log_info("ingress", "port open", "addr=%s:%d tls=%s", ing->listen_addr, port,
	         raw   ? "raw"
	         : tls ? "yes"
	               : "no");
	return 0;
}

static void listener_stop(struct listener *l)
{
	shutdown(l->fd, SHUT_RDWR); /* wakes accept() */
	pthread_join(l->thread, NULL);
	close(l->fd);
	log_info("ingress", "port closed", "port=%d", l->port);
	free(l);
}

static bool port_wanted(struct hm_ingresses *ing, int port)
{
	bool w = false;
	pthread_rwlock_rdlock(&ing->lock);
	for (size_t i = 0; i < ing->nrules && !w; i++)
		w = ing->rules[i].port == port;
	pthread_rwlock_unlock(&ing->lock);
	return w;
}

bool ing_listening(struct hm_ingresses *ing, int port)
{
	for (struct listener *l = ing->listeners; l; l = l->next)
		if (l->port == port)
			return true;
	return false;
}

void ing_prune_listeners(struct hm_ingresses *ing)
{
	for (struct listener **pp = &ing->listeners; *pp;) {
		struct listener *l = *pp;
		if (port_wanted(ing, l->port)) {
			pp = &l->next;
		} else {
			*pp = l->next;
			listener_stop(l);
		}
	}
}

/* ---- the service ---- */

/* ---- views: the stored spec ({rules: [...], tags}) read back ---- */

static void view_of(const struct hm_ingress_row *r, struct hm_ingress_view *v)
{
	json_t *spec = json_loads(r->spec ? r->spec : "{}", 0, NULL);
	json_t *tags = json_object_get(spec, "tags"), *rules = json_object_get(spec, "rules");
	*v = (struct hm_ingress_view){
		.id = xstrdup(r->id),
		.name = xstrdup(r->name),
		.created_at = xstrdup(r->created_at ? r->created_at : ""),
		.tags = json_is_object(tags) ? json_incref(tags) : json_object(),
	};
	v->rules = xcalloc(json_array_size(rules) + 1, sizeof(*v->rules));
	size_t i;
	json_t *o;
	json_array_foreach (rules, i, o) {
		struct hm_ingress_rule *d = &v->rules[v->nrules++];
		*d = stored_rule(o);
		d->hostname = dup_or_null(d->hostname);
		d->instance = dup_or_null(d->instance);
		d->auth_header = dup_or_null(d->auth_header);
		d->auth_value = dup_or_null(d->auth_value);
	}
	json_decref(spec);
}

/* What one view owns (not the view itself). */
static void view_done(struct hm_ingress_view *v)
{
	for (size_t i = 0; i < v->nrules; i++) {
		struct hm_ingress_rule *r = &v->rules[i];
		free((char *)r->hostname);
		free((char *)r->instance);
		free((char *)r->auth_header);
		free((char *)r->auth_value);
	}
	free(v->rules);
	free(v->id);
	free(v->name);
	free(v->created_at);
	json_decref(v->tags);
}

void hm_ingress_view_free(struct hm_ingress_view *v)
{
	hm_ingress_views_free(v, v ? 1 : 0);
}

void hm_ingress_views_free(struct hm_ingress_view *v, size_t n)
{
	for (size_t k = 0; k < n; k++)
		view_done(&v[k]);
	free(v);
}

/* The stored spec of checked rules and tags: the form rules_add and view_of read. */
static char *spec_text_of(const struct hm_ingress_rule *rules, size_t n, json_t *tags)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct hm_ingress_rule *r = &rules[i];
		json_t *o =
		    json_pack("{s:{s:s,s:i},s:{s:s,s:i},s:b,s:b}", "match", "hostname", r->hostname,
		              "port", r->port, "target", "instance", r->instance, "port",
		              r->target_port, "tls", r->tls, "redirect_http", r->redirect_http);
		if (r->auth_header)
			json_object_set_new(o, "request_header_auth",
			                    json_pack("{s:s,s:s}", "header", r->auth_header,
			                              "value", r->auth_value));
		json_array_append_new(a, o);
	}
	json_t *spec = json_pack("{s:o,s:o}", "rules", a, "tags",
	                         json_is_object(tags) ? json_deep_copy(tags) : json_object());
	char *text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	return text;
}

/* An instance deleted by any path leaves its service group. */
static void member_gone(void *arg, const char *id)
{
	hm_groups_detach(arg, id);
}

int hm_ingresses_open(struct hm_store *st, struct hm_instances *instances,
                      const struct hm_config *cfg, struct hm_ingresses **ret, struct hm_err **err)
{
	struct hm_ingresses *ing = xcalloc(1, sizeof(*ing));
	ing->st = st;
	ing->instances = instances;
	ing->listen_addr = xstrdup(cfg->ingress_listen_addr);
	ing->domain = xstrdup(cfg->service_domain);
	pthread_mutex_init(&ing->mu, NULL);
	pthread_rwlock_init(&ing->lock, NULL);
	ing->conns = hm_connset_new(MAX_CONNECTIONS, MAX_PER_CLIENT);
	if (hm_tls_open(cfg->ingress_cert_dir, &ing->tls, err) < 0 || ing_reload(ing, err) < 0) {
		hm_ingresses_close(ing);
		return -1;
	}
	pthread_mutex_lock(&ing->mu);
	for (size_t i = 0; i < ing->nrules; i++) {
		if (ing_listening(ing, ing->rules[i].port))
			continue;
		_cleanup_err_ struct hm_err *e = NULL;
		if (ing_listen_on(ing, ing->rules[i].port, ing->rules[i].tls, ing->rules[i].raw,
		                  &e) < 0)
			log_warn("ingress", "port unavailable", "error=\"%s\"", e->msg);
	}
	pthread_mutex_unlock(&ing->mu);
	hm_instances_on_delete(instances, member_gone, ing);
	*ret = ing;
	return 0;
}

bool hm_ingresses_close(struct hm_ingresses *ing)
{
	if (!ing)
		return true;
	hm_instances_on_delete(ing->instances, NULL, NULL);
	pthread_mutex_lock(&ing->mu);
	while (ing->listeners) {
		struct listener *l = ing->listeners;
		ing->listeners = l->next;
		listener_stop(l);
	}
	pthread_mutex_unlock(&ing->mu);
	/*
	 * Connection threads call into `ing` and the instance service: end every
	 * one (a shut socket wakes each read, write and poll on it) and wait for
	 * the last, so that nothing they use is freed under them.
	 */
	int open = hm_connset_count(ing->conns);
	if (!hm_connset_close(ing->conns, CLOSE_WAIT_S * 1000L)) {
		log_error("ingress", "connections still open at shutdown", "count=%d", open);
		return false; /* leak rather than free under a live thread; the process is ending */
	}
	ing_rules_free(ing->rules, ing->nrules);
	hm_tls_free(ing->tls);
	pthread_rwlock_destroy(&ing->lock);
	pthread_mutex_destroy(&ing->mu);
	free(ing->listen_addr);
	free(ing->domain);
	free(ing);
	return true;
}

static const char *mode_name(const struct rule *r)
{
	return r->raw ? "TLS without HTTP" : r->tls ? "HTTP over TLS" : "plain HTTP";
}

/*
 * The new rules against the table and each other: a hostname and port
 * another ingress routes is 409 hostname_in_use; a port that would serve
 * both TLS and plain HTTP is 409 port_conflict.
 */
int ing_check_new(struct hm_ingresses *ing, const struct rule *nr, size_t nn,
                  const char *skip_group, struct hm_err **err)
{
	int r = 0;
	pthread_rwlock_rdlock(&ing->lock);
	for (size_t i = 0; i < nn && r == 0; i++) {
		for (size_t k = 0; k < ing->nrules && r == 0; k++) {
			const struct rule *o = &ing->rules[k];
			if (o->port != nr[i].port ||
			    (skip_group && o->group && strcmp(o->group, skip_group) == 0))
				continue;
			if (strcmp(o->hostname, nr[i].hostname) == 0)
				r = hm_err_set(
				    err, HM_ERR_CONFLICT, "hostname_in_use",
				    "hostname %s on port %d is already routed by another "
				    "ingress",
				    nr[i].hostname, nr[i].port);
			else if (o->tls != nr[i].tls || o->raw != nr[i].raw)
				r = hm_err_set(err, HM_ERR_CONFLICT, "port_conflict",
				               "port %d already serves %s; it cannot also serve %s",
				               nr[i].port, mode_name(o), mode_name(&nr[i]));
		}
		for (size_t k = 0; k < i && r == 0; k++)
			if (nr[k].port == nr[i].port &&
			    (nr[k].tls != nr[i].tls || nr[k].raw != nr[i].raw))
				r = hm_err_set(err, HM_ERR_INVALID, "invalid_rule",
				               "port %d cannot serve both %s and %s", nr[i].port,
				               mode_name(&nr[k]), mode_name(&nr[i]));
	}
	pthread_rwlock_unlock(&ing->lock);
	return r;
}

int hm_ingresses_create(struct hm_ingresses *ing, const struct hm_ingress_create *c,
                        struct hm_ingress_view **ret, struct hm_err **err)
{
	struct hm_ingress_rule checked[HM_ROUTE_MAX_RULES];
	char hosts[HM_ROUTE_MAX_RULES][256];
	if (hm_route_check(c->rules, c->nrules, checked, hosts, err) < 0 ||
	    (c->tags && hm_tags_validate(c->tags, err) < 0))
		return -1;
	if (!c->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (hm_name_check("ingress", c->name, err) < 0)
		return -1;
	/* TLS rules need a certificate the user put in the directory. */
	hm_tls_reload(ing->tls, NULL);
	for (size_t i = 0; i < c->nrules; i++)
		if (checked[i].tls && !hm_tls_covers(ing->tls, checked[i].hostname))
			return hm_err_set(
			    err, HM_ERR_INVALID, "certificate_missing",
			    "rules[%zu]: no certificate in %s covers %s (put NAME.crt and "
			    "NAME.key there)",
			    i, hm_tls_dir(ing->tls), checked[i].hostname);
	_cleanup_free_ char *spec_text = spec_text_of(checked, c->nrules, c->tags);

	struct rule *nr = NULL;
	size_t nn = 0;
	rules_add(&nr, &nn, spec_text);
	pthread_mutex_lock(&ing->mu);
	int r = ing_check_new(ing, nr, nn, NULL, err);
	/* Every port the new rules need must be bound before the ingress exists. */
	for (size_t k = 0; k < nn && r == 0; k++)
		if (!ing_listening(ing, nr[k].port))
			r = ing_listen_on(ing, nr[k].port, nr[k].tls, nr[k].raw, err);
	char id[25];
	hm_id_new(id);
	_cleanup_free_ char *created = hm_now_rfc3339();
	struct hm_ingress_row row = {
		.id = id, .name = (char *)c->name, .spec = spec_text, .created_at = created
	};
	if (r == 0)
		r = hm_store_ingress_insert(ing->st, &row, err);
	if (r == 0)
		r = ing_reload(ing, err);
	ing_prune_listeners(ing); /* what a failed create opened */
	pthread_mutex_unlock(&ing->mu);
	ing_rules_free(nr, nn);
	if (r < 0)
		return -1;
	log_info("ingress", "created", "id=%s name=%s", id, c->name);
	*ret = xcalloc(1, sizeof(**ret));
	view_of(&row, *ret);
	return 0;
}

int hm_ingresses_get(struct hm_ingresses *ing, const char *key, struct hm_ingress_view **ret,
                     struct hm_err **err)
{
	struct hm_ingress_row row = { 0 };
	if (hm_store_ingress_find(ing->st, key, &row, err) < 0)
		return -1;
	*ret = xcalloc(1, sizeof(**ret));
	view_of(&row, *ret);
	hm_ingress_row_done(&row);
	return 0;
}

int hm_ingresses_list(struct hm_ingresses *ing, json_t *tags, struct hm_ingress_view **ret,
                      size_t *n, struct hm_err **err)
{
	struct hm_ingress_row *rows = NULL;
	size_t nrows = 0;
	if (hm_store_ingress_list(ing->st, &rows, &nrows, err) < 0)
		return -1;
	struct hm_ingress_view *v = xcalloc(nrows + 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < nrows; i++) {
		view_of(&rows[i], &v[k]);
		if (!tags || hm_tags_match(v[k].tags, tags))
			k++;
		else
			view_done(&v[k]);
	}
	hm_ingress_rows_free(rows, nrows);
	*ret = v;
	*n = k;
	return 0;
}

int hm_ingresses_delete(struct hm_ingresses *ing, const char *key, struct hm_err **err)
{
	struct hm_ingress_row row = { 0 };
	if (hm_store_ingress_find(ing->st, key, &row, err) < 0)
		return -1;
	pthread_mutex_lock(&ing->mu);
	int r = hm_store_ingress_delete(ing->st, row.id, err);
	if (r == 0)
		r = ing_reload(ing, err);
	ing_prune_listeners(ing);
	pthread_mutex_unlock(&ing->mu);
	if (r == 0)
		log_info("ingress", "deleted", "id=%s name=%s", row.id, row.name);
	hm_ingress_row_done(&row);
	return r;
}
