/*
 * jwt: HS256 signing and verification with OpenSSL's HMAC, and the scope
 * vocabulary of the API. Verification is strict: exactly three base64url
 * parts, a JSON object header naming HS256, a constant-time signature
 * compare, and numeric exp/nbf when present.
 */
#include "auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

const char *const hm_known_scopes[] = {
	"*",
	"instance:read",
	"instance:write",
	"instance:delete",
	"image:read",
	"image:write",
	"image:delete",
	"volume:read",
	"volume:write",
	"volume:delete",
	"snapshot:read",
	"snapshot:write",
	"snapshot:delete",
	"ingress:read",
	"ingress:write",
	"ingress:delete",
	"resource:read",
	NULL,
};

bool hm_scope_is_known(const char *scope)
{
	for (size_t i = 0; hm_known_scopes[i]; i++)
		if (strcmp(hm_known_scopes[i], scope) == 0)
			return true;
	return false;
}

static char *b64json(json_t *j)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!s)
		abort();
	return hm_base64url_encode(s, strlen(s));
}

static void hs256(const char *secret, const char *data, size_t len, unsigned char out[32])
{
	unsigned int outlen = 32;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, len, out,
	          &outlen))
		abort();
}

char *hm_jwt_sign(const char *secret, json_t *claims)
{
	json_t *hdr = json_pack("{s:s,s:s}", "alg", "HS256", "typ", "JWT");
	_cleanup_free_ char *h = b64json(hdr);
	json_decref(hdr);
	_cleanup_free_ char *c = b64json(claims);
	_cleanup_free_ char *signing = xasprintf("%s.%s", h, c);
	unsigned char mac[32];
	hs256(secret, signing, strlen(signing), mac);
	_cleanup_free_ char *sig = hm_base64url_encode(mac, sizeof(mac));
	return xasprintf("%s.%s", signing, sig);
}

static json_t *decode_part(const char *s, size_t len)
{
	size_t n;
	_cleanup_free_ unsigned char *raw = hm_base64url_decode(s, len, &n);
	if (!raw)
		return NULL;
	json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int unauthorized(struct hm_err **err, const char *msg)
{
	return hm_err_set(err, HM_ERR_UNAUTHORIZED, NULL, "%s", msg);
}

/* A numeric date claim: absent is fine, present must be a number. */
static int date_claim(json_t *claims, const char *name, bool *present, double *value)
{
	json_t *v = json_object_get(claims, name);
	*present = v != NULL;
	if (!v)
		return 0;
	if (!json_is_number(v))
		return -1;
	*value = json_number_value(v);
	return 0;
}

static int principal_from_claims(json_t *claims, struct hm_principal **ret, struct hm_err **err)
{
	json_t *sub = json_object_get(claims, "sub");
	if (sub && !json_is_string(sub))
		return unauthorized(err, "invalid token");
	if (json_object_get(claims, "repos") || json_object_get(claims, "scope") ||
	    json_object_get(claims, "build_id"))
		return unauthorized(err, "invalid token type");
	const char *subs = sub ? json_string_value(sub) : "";
	if (strncmp(subs, "builder-", 8) == 0)
		return unauthorized(err, "invalid token type");

	struct hm_principal *p = xcalloc(1, sizeof(*p));
	p->sub = xstrdup(subs);
	json_t *perms = json_object_get(claims, "permissions");
	if (!perms || json_is_null(perms)) {
		p->all = true;
		p->scopes = xcalloc(1, sizeof(char *));
		*ret = p;
		return 0;
	}
	if (!json_is_array(perms) || json_array_size(perms) > 256) {
		hm_principal_free(p);
		return unauthorized(err, "invalid token: permissions must be an array of scopes");
	}
	p->scopes = xcalloc(json_array_size(perms) + 1, sizeof(char *));
	size_t i, n = 0;
	json_t *v;
	json_array_foreach (perms, i, v) {
		if (!json_is_string(v)) {
			hm_principal_free(p);
			return unauthorized(
			    err, "invalid token: permissions must be an array of scopes");
		}
		if (strcmp(json_string_value(v), "*") == 0)
			p->all = true;
		p->scopes[n++] = xstrdup(json_string_value(v));
	}
	*ret = p;
	return 0;
}

int hm_jwt_verify(const char *secret, const char *token, time_t now, struct hm_principal **ret,
                  struct hm_err **err)
{
	size_t len = strlen(token);
	if (len == 0 || len > HM_JWT_MAX_LEN)
		return unauthorized(err, "invalid token");
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		return unauthorized(err, "invalid token");

	json_t *hdr = decode_part(token, (size_t)(dot1 - token));
	if (!hdr)
		return unauthorized(err, "invalid token");
	const char *alg = json_string_value(json_object_get(hdr, "alg"));
	bool hs = alg && strcmp(alg, "HS256") == 0;
	json_decref(hdr);
	if (!hs)
		return unauthorized(err, "invalid token: unsupported signing algorithm");

	size_t siglen;
	_cleanup_free_ unsigned char *sig =
	    hm_base64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), &siglen);
	unsigned char mac[32];
	hs256(secret, token, (size_t)(dot2 - token), mac);
	if (!sig || siglen != sizeof(mac) || CRYPTO_memcmp(sig, mac, sizeof(mac)) != 0)
		return unauthorized(err, "invalid token");

	json_t *claims = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (!claims)
		return unauthorized(err, "invalid token");
	bool has_exp, has_nbf;
	double exp = 0, nbf = 0;
	int r = 0;
	if (date_claim(claims, "exp", &has_exp, &exp) < 0 ||
	    date_claim(claims, "nbf", &has_nbf, &nbf) < 0)
		r = unauthorized(err, "invalid token");
	else if (has_exp && (double)now >= exp)
		r = unauthorized(err, "token has expired");
	else if (has_nbf && (double)now < nbf)
		r = unauthorized(err, "token is not valid yet");
	else
		r = principal_from_claims(claims, ret, err);
	json_decref(claims);
	return r;
}

bool hm_principal_has_scope(const struct hm_principal *p, const char *scope)
{
	if (!p)
		return false;
	if (p->all)
		return true;
	for (char **s = p->scopes; s && *s; s++)
		if (strcmp(*s, scope) == 0)
			return true;
	return false;
}

void hm_principal_free(struct hm_principal *p)
{
	if (!p)
		return;
	for (char **s = p->scopes; s && *s; s++)
		free(*s);
	free(p->scopes);
	free(p->sub);
	free(p);
}
