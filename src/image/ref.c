/*
 * ref: Docker-style image references, parsed by hand against the grammar
 * of distribution/reference and normalized the way `docker pull` does;
 * also the two questions the registry client asks of a reference (which
 * host to connect to, and whether to speak plain HTTP to it).
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path ( "/" path )*
 *   domain     := host [ ":" port ]      (has "." or ":" or is "localhost")
 *   host       := dns-label ( "." dns-label )* | "[" ipv6 "]"
 *   path       := [a-z0-9]+ ( separator [a-z0-9]+ )*
 *   separator  := "." | "_" | "__" | "-"+
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := "sha256:" [0-9a-f]{64}
 */
#include "image/ref.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

#define REPO_MAX_LEN 255 /* distribution/reference's NameTotalLengthMax */
#define TAG_MAX_LEN  128
#define QUOTE_MAX    80 /* how much of a bad reference an error message repeats */

/* ASCII only: references are never locale-dependent. */
static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c);
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The input as an error message may show it: control bytes as `?`, long ones cut. */
static char *quote(const char *s)
{
	size_t n = strlen(s);
	bool cut = n > QUOTE_MAX;
	char *q = xmalloc((cut ? QUOTE_MAX : n) + 4);
	size_t i = 0;
	for (; i < n && i < QUOTE_MAX; i++)
		q[i] = ((unsigned char)s[i] < ' ' || s[i] == 0x7f) ? '?' : s[i];
	if (cut) {
		memcpy(q + i, "...", 3);
		i += 3;
	}
	q[i] = '\0';
	return q;
}

static int bad(struct hm_err **err, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct hm_err **err, const char *s, const char *fmt, ...)
{
	_cleanup_free_ char *q = quote(s);
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *why = xvasprintf(fmt, ap);
	va_end(ap);
	return hm_err_set(err, HM_ERR_INVALID, "invalid_name", "invalid image reference `%s`: %s",
	                  q, why);
}

bool hm_digest_valid(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!(is_digit(*p) || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* One path component: alnum runs joined by ".", "_", "__" or runs of "-". */
static const char *check_component(const char *c, size_t n)
{
	if (n == 0)
		return "empty path component";
	for (size_t i = 0; i < n; i++)
		if (c[i] >= 'A' && c[i] <= 'Z')
			return "repository name must be lowercase";
	if (!is_lower_alnum(c[0]) || !is_lower_alnum(c[n - 1]))
		return "path components must start and end with a lowercase letter or digit";
	for (size_t i = 0; i < n;) {
		if (is_lower_alnum(c[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_lower_alnum(c[j]))
			j++;
		size_t l = j - i;
		bool ok = (l == 1 && (c[i] == '.' || c[i] == '_')) ||
		          (l == 2 && c[i] == '_' && c[i + 1] == '_');
		if (!ok) {
			ok = true;
			for (size_t k = i; k < j; k++)
				ok &= c[k] == '-';
		}
		if (!ok)
			return "invalid character in repository name";
		i = j;
	}
	return NULL;
}

/* A DNS name (labels of letters, digits and inner dashes) or an IPv4 address. */
static bool dns_host_valid(const char *h, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && h[i] != '.') {
			if (!is_alnum(h[i]) && h[i] != '-')
				return false;
			continue;
		}
		if (i == start || h[start] == '-' || h[i - 1] == '-')
			return false;
		start = i + 1;
	}
	return true;
}

/* host[:port]; host a DNS name, an IPv4 address or a bracketed IPv6 literal. */
static const char *check_domain(const char *d, size_t n)
{
	size_t host_end;
	if (d[0] == '[') {
		const char *close = memchr(d, ']', n);
		if (!close)
			return "unterminated IPv6 address in registry";
		size_t al = (size_t)(close - d) - 1;
		char addr[INET6_ADDRSTRLEN];
		struct in6_addr a6;
		if (al == 0 || al >= sizeof(addr))
			return "invalid IPv6 address in registry";
		memcpy(addr, d + 1, al);
		addr[al] = '\0';
		for (size_t i = 0; i < al; i++)
			if (!is_hex(addr[i]) && addr[i] != ':' && addr[i] != '.')
				return "invalid IPv6 address in registry";
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			return "invalid IPv6 address in registry";
		host_end = al + 2;
		if (host_end < n && d[host_end] != ':')
			return "invalid registry host";
	} else {
		const char *colon = memchr(d, ':', n);
		host_end = colon ? (size_t)(colon - d) : n;
		if (host_end == 0)
			return "empty registry host";
		if (!dns_host_valid(d, host_end))
			return "invalid registry host";
	}
	if (host_end < n) {
		const char *port = d + host_end + 1;
		size_t pl = n - host_end - 1;
		if (pl == 0)
			return "empty registry port";
		long v = 0;
		for (size_t i = 0; i < pl; i++) {
			if (!is_digit(port[i]))
				return "invalid registry port";
			if (v <= 65535)
				v = v * 10 + (port[i] - '0');
		}
		if (v < 1 || v > 65535)
			return "registry port must be 1-65535";
	}
	return NULL;
}

static bool tag_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX_LEN)
		return false;
	if (!(is_alnum(t[0]) || t[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum(t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

/* Why `d` (the text after '@') is not a digest we accept, or NULL. */
static int check_digest(const char *s, const char *d, struct hm_err **err)
{
	if (!*d)
		return bad(err, s, "empty digest after `@`");
	const char *colon = strchr(d, ':');
	if (!colon || colon == d)
		return bad(err, s, "a digest is `sha256:` and 64 lowercase hex characters");
	if ((size_t)(colon - d) != 6 || strncmp(d, "sha256", 6) != 0)
		return bad(err, s, "unsupported digest algorithm `%.*s` (only sha256 is supported)",
		           (int)(colon - d), d);
	if (!hm_digest_valid(d))
		return bad(err, s, "a sha256 digest is 64 lowercase hex characters");
	return 0;
}

static bool is_localhost(const char *s, size_t n)
{
	return n == 9 && strncasecmp(s, "localhost", 9) == 0;
}

int hm_image_ref_parse(const char *s, struct hm_image_ref *ret, struct hm_err **err)
{
	memset(ret, 0, sizeof(*ret));
	if (!s || !*s)
		return bad(err, "", "it is empty");
	if (strlen(s) > HM_REF_MAX_LEN)
		return bad(err, s, "longer than %d characters", HM_REF_MAX_LEN);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return bad(err, s, "whitespace or control characters are not allowed");
	if (strstr(s, "://"))
		return bad(err, s, "give the image name without a URL scheme");

	_cleanup_free_ char *work = xstrdup(s);
	_cleanup_free_ char *digest = NULL;
	_cleanup_free_ char *tag = NULL;
	_cleanup_free_ char *registry = NULL;
	_cleanup_free_ char *repo = NULL;

	/* Digest: everything after the '@'. */
	char *at = strchr(work, '@');
	if (at) {
		*at = '\0';
		if (strchr(at + 1, '@'))
			return bad(err, s, "more than one `@`");
		if (check_digest(s, at + 1, err) < 0)
			return -1;
		digest = xstrdup(at + 1);
	}
	/* Tag: a ':' after the last '/' (an earlier one is a registry port). */
	char *slash = strrchr(work, '/');
	char *colon = strrchr(slash ? slash : work, ':');
	if (colon) {
		*colon = '\0';
		if (!colon[1])
			return bad(err, s, "empty tag after `:`");
		if (!tag_valid(colon + 1))
			return bad(err, s,
			           "invalid tag (letters, digits and `_.-`, not starting with `.` "
			           "or `-`, at most %d)",
			           TAG_MAX_LEN);
		tag = xstrdup(colon + 1);
	}
	const char *name = work;
	if (!*name)
		return bad(err, s, "missing repository name");

	/* Registry: a first component that looks like a host. */
	const char *first_slash = strchr(name, '/');
	const char *path = name;
	if (first_slash) {
		size_t dl = (size_t)(first_slash - name);
		bool is_domain = memchr(name, '.', dl) || memchr(name, ':', dl) ||
		                 is_localhost(name, dl) || name[0] == '[';
		if (is_domain) {
			const char *why = check_domain(name, dl);
			if (why)
				return bad(err, s, "%s", why);
			registry = xstrndup(name, dl);
			for (char *p = registry; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
			path = first_slash + 1;
		}
	}
	/* index.docker.io is Docker Hub's legacy name, registry-1 its API host. */
	if (!registry || strcmp(registry, "index.docker.io") == 0 ||
	    strcmp(registry, "registry-1.docker.io") == 0) {
		free(registry);
		registry = xstrdup("docker.io");
	}

	/* Path components. */
	if (!*path)
		return bad(err, s, "missing repository name");
	for (const char *c = path;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);
		const char *why = check_component(c, n);
		if (why)
			return bad(err, s, "%s", why);
		if (!e)
			break;
		c = e + 1;
	}
	if (strcmp(registry, "docker.io") == 0 && !strchr(path, '/'))
		repo = xasprintf("library/%s", path);
	else
		repo = xstrdup(path);
	if (strlen(repo) > REPO_MAX_LEN)
		return bad(err, s, "repository name is longer than %d characters", REPO_MAX_LEN);

	if (!tag && !digest)
		tag = xstrdup("latest");
	ret->registry = TAKE_PTR(registry);
	ret->repository = TAKE_PTR(repo);
	ret->tag = TAKE_PTR(tag);
	ret->digest = TAKE_PTR(digest);
	/* The full form (registry, library/, :latest added) is what is stored and
	 * shown, and must parse again: it is held to the same length. */
	_cleanup_free_ char *full = hm_image_ref_string(ret);
	if (strlen(full) > HM_REF_MAX_LEN) {
		hm_image_ref_done(ret);
		return bad(err, s, "longer than %d characters once completed to `%.40s...`",
		           HM_REF_MAX_LEN, full);
	}
	return 0;
}

void hm_image_ref_done(struct hm_image_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

char *hm_image_ref_string(const struct hm_image_ref *r)
{
	return xasprintf("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
	                 r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}

char *hm_image_ref_repo(const struct hm_image_ref *r)
{
	return xasprintf("%s/%s", r->registry, r->repository);
}

const char *hm_image_ref_endpoint(const struct hm_image_ref *r)
{
	return strcmp(r->registry, "docker.io") == 0 ? "registry-1.docker.io" : r->registry;
}

/* host without port: "localhost:5000" -> "localhost", "[::1]:5000" -> "[::1]". */
static char *host_only(const char *reg)
{
	if (reg[0] == '[') {
		const char *close = strchr(reg, ']');
		return xstrndup(reg, close ? (size_t)(close - reg) + 1 : strlen(reg));
	}
	return xstrndup(reg, strcspn(reg, ":"));
}

/* localhost, an address in 127.0.0.0/8, or the IPv6 loopback in brackets. */
static bool host_is_loopback(const char *host)
{
	if (strcasecmp(host, "localhost") == 0)
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	size_t n = strlen(host);
	if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
		char addr[INET6_ADDRSTRLEN];
		struct in6_addr a6;
		if (n - 2 >= sizeof(addr))
			return false;
		memcpy(addr, host + 1, n - 2);
		addr[n - 2] = '\0';
		return inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return false;
}

bool hm_image_ref_plain_http(const struct hm_image_ref *r, const char *insecure)
{
	_cleanup_free_ char *host = host_only(r->registry);
	if (host_is_loopback(host))
		return true;
	if (!insecure)
		return false;
	_cleanup_free_ char *list = xstrdup(insecure);
	char *save = NULL;
	for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
		if (strcasecmp(t, r->registry) == 0 || strcasecmp(t, host) == 0)
			return true;
	return false;
}
