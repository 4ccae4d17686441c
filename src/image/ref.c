/*
 * ref: Docker-style image references, parsed by hand against the grammar
 * of distribution/reference and normalized the way `docker pull` does.
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path ( "/" path )*
 *   domain     := host [ ":" port ]      (has "." or ":" or is "localhost")
 *   path       := [a-z0-9]+ ( separator [a-z0-9]+ )*
 *   separator  := "." | "_" | "__" | "-"+
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 */
#include "image/ref.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

static int bad(struct hm_err **err, const char *s, const char *why)
{
	return hm_err_set(err, HM_ERR_INVALID, "invalid_name", "invalid image reference `%s`: %s",
	                  s, why);
}

bool hm_digest_valid(const char *d)
{
	if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
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
		return "path components must start and end with a letter or digit";
	for (size_t i = 0; i < n;) {
		if (is_lower_alnum(c[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_lower_alnum(c[j]))
			j++;
		size_t l = j - i;
		bool ok = (l == 1 && (c[i] == '.' || c[i] == '_' || c[i] == '-')) ||
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

/* host[:port], host a DNS name, an IPv4 address or a bracketed IPv6 literal. */
static const char *check_domain(const char *d, size_t n)
{
	size_t host_end = n;
	if (d[0] == '[') {
		const char *close = memchr(d, ']', n);
		if (!close)
			return "unterminated IPv6 address";
		for (const char *p = d + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':')
				return "invalid IPv6 address";
		host_end = (size_t)(close - d) + 1;
		if (host_end < n && d[host_end] != ':')
			return "invalid registry host";
	} else {
		const char *colon = memchr(d, ':', n);
		if (colon)
			host_end = (size_t)(colon - d);
		if (host_end == 0)
			return "empty registry host";
		for (size_t i = 0; i < host_end; i++) {
			char c = d[i];
			if (!(isalnum((unsigned char)c) || c == '.' || c == '-'))
				return "invalid registry host";
		}
		if (d[0] == '-' || d[0] == '.' || d[host_end - 1] == '-' || d[host_end - 1] == '.')
			return "invalid registry host";
	}
	if (host_end < n) {
		const char *port = d + host_end + 1;
		size_t pl = n - host_end - 1;
		if (pl == 0 || pl > 5)
			return "invalid registry port";
		long v = 0;
		for (size_t i = 0; i < pl; i++) {
			if (!isdigit((unsigned char)port[i]))
				return "invalid registry port";
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
	if (n == 0 || n > 128)
		return false;
	if (!(isalnum((unsigned char)t[0]) || t[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

int hm_image_ref_parse(const char *s, struct hm_image_ref *ret, struct hm_err **err)
{
	memset(ret, 0, sizeof(*ret));
	if (!s || !*s)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		                  "invalid image reference: it is empty");
	size_t len = strlen(s);
	if (len > HM_REF_MAX_LEN)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		                  "invalid image reference: longer than %d characters",
		                  HM_REF_MAX_LEN);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return bad(err, s, "whitespace or control characters");
	if (strstr(s, "://"))
		return bad(err, s, "give the image name without a URL scheme");

	_cleanup_free_ char *work = xstrdup(s);
	/* Digest. */
	char *at = strchr(work, '@');
	_cleanup_free_ char *digest = NULL;
	if (at) {
		*at = '\0';
		const char *d = at + 1;
		if (!*d)
			return bad(err, s, "empty digest after `@`");
		if (strncmp(d, "sha256:", 7) != 0)
			return bad(err, s, "only sha256 digests are supported");
		if (!hm_digest_valid(d))
			return bad(err, s, "a sha256 digest is 64 lowercase hex characters");
		digest = xstrdup(d);
	}
	/* Tag: a ':' after the last '/'. */
	char *slash = strrchr(work, '/');
	char *colon = strrchr(slash ? slash : work, ':');
	_cleanup_free_ char *tag = NULL;
	if (colon) {
		*colon = '\0';
		if (!tag_valid(colon + 1))
			return bad(err, s,
			           colon[1] ? "invalid tag (letters, digits, `_.-`, at most 128)"
			                    : "empty tag after `:`");
		tag = xstrdup(colon + 1);
	}
	const char *name = work;
	if (!*name)
		return bad(err, s, "missing repository name");

	/* Domain. */
	const char *first_slash = strchr(name, '/');
	_cleanup_free_ char *registry = NULL;
	const char *path = name;
	if (first_slash) {
		size_t dl = (size_t)(first_slash - name);
		bool is_domain = memchr(name, '.', dl) || memchr(name, ':', dl) ||
		                 (dl == 9 && strncmp(name, "localhost", 9) == 0) || name[0] == '[';
		if (is_domain) {
			const char *why = check_domain(name, dl);
			if (why)
				return bad(err, s, why);
			registry = xstrndup(name, dl);
			for (char *p = registry; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			path = first_slash + 1;
		}
	}
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
			return bad(err, s, why);
		if (!e)
			break;
		c = e + 1;
	}
	_cleanup_free_ char *repo = NULL;
	if (strcmp(registry, "docker.io") == 0 && !strchr(path, '/'))
		repo = xasprintf("library/%s", path);
	else
		repo = xstrdup(path);
	if (strlen(repo) > 255)
		return bad(err, s, "repository name is longer than 255 characters");
	if (!tag && !digest)
		tag = xstrdup("latest");
	ret->registry = TAKE_PTR(registry);
	ret->repository = TAKE_PTR(repo);
	ret->tag = TAKE_PTR(tag);
	ret->digest = TAKE_PTR(digest);
	return 0;
}

void hm_image_ref_done(struct hm_image_ref *r)
{
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

bool hm_image_ref_plain_http(const struct hm_image_ref *r, const char *insecure)
{
	_cleanup_free_ char *host = host_only(r->registry);
	if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	    strncmp(host, "127.", 4) == 0)
		return true;
	if (!insecure)
		return false;
	_cleanup_free_ char *list = xstrdup(insecure);
	char *save = NULL;
	for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
		if (strcasecmp(t, r->registry) == 0 || strcasecmp(t, host) == 0)
			return true;
	return false;
}
