/*
 * egress/ca: the egress proxy's certificate authority (see ca.h). The key
 * and certificate are written tmp-then-rename, the key 0600. Leaves share
 * one EC key made at open (minting is then one signature), and live in a
 * small cache under `mu`; the oldest goes when it is full. A leaf is
 * minted outside the lock; two minted at once for one host both work, and
 * the cache keeps the first.
 */
#include "egress/ca.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"

#define CACHE_MAX 256
#define LEAF_DAYS 1
#define CA_YEARS  10
#define HOST_MAX  253

struct leaf {
	char *host;
	SSL_CTX *ctx;
};

struct hm_ca {
	EVP_PKEY *key, *leaf_key;
	X509 *cert;
	char *pem;
	pthread_mutex_t mu;
	struct leaf cache[CACHE_MAX];
	size_t ncache, next; /* next: the slot a full cache reuses */
};

static int ssl_err(struct hm_err **err, const char *what)
{
	char buf[256];
	unsigned long e = ERR_get_error();
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return hm_err_set(err, HM_ERR_INTERNAL, NULL, "egress CA: %s: %s", what,
	                  e ? buf : "failed");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	int r = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return r;
}

/* A certificate for key, named cn, valid from `from_s` ago for `for_s`,
 * issued by issuer (NULL: itself); the caller adds extensions and signs. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, long from_s, long for_s, X509 *issuer)
{
	X509 *x = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;
	bool ok = x && RAND_bytes(serial, sizeof(serial)) == 1;
	if (ok) {
		serial[0] &= 0x7f; /* positive */
		bn = BN_bin2bn(serial, sizeof(serial), NULL);
		sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
		ok = sn && X509_set_serialNumber(x, sn) == 1;
	}
	BN_free(bn);
	ASN1_INTEGER_free(sn);
	X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
	ok = ok && X509_set_version(x, 2) == 1 &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -from_s) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), for_s - from_s) &&
	     X509_set_pubkey(x, key) == 1 &&
	     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
	                                -1, 0) == 1 &&
	     X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static char *to_pem_cert(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (b && PEM_write_bio_X509(b, x) == 1) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		out = xstrndup(p, (size_t)n);
	}
	BIO_free(b);
	return out;
}

static char *to_pem_key(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		out = xstrndup(p, (size_t)n);
	}
	BIO_free(b);
	return out;
}

/* Make the CA: its key (0600) and certificate, each written whole or not at all. */
static int make_ca(struct hm_ca *ca, const char *kpath, const char *cpath, struct hm_err **err)
{
	ca->key = EVP_EC_gen("P-256");
	if (!ca->key)
		return ssl_err(err, "make the key");
	char host[64] = "this host";
	gethostname(host, sizeof(host) - 1);
	_cleanup_free_ char *cn = xasprintf("hypeman egress CA (%s)", host);
	ca->cert = make_cert(ca->key, cn, 3600, (long)CA_YEARS * 365 * 86400, NULL);
	if (!ca->cert ||
	    add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
	    X509_sign(ca->cert, ca->key, EVP_sha256()) <= 0)
		return ssl_err(err, "make the certificate");
	_cleanup_free_ char *kpem = to_pem_key(ca->key);
	_cleanup_free_ char *cpem = to_pem_cert(ca->cert);
	if (!kpem || !cpem)
		return ssl_err(err, "encode the CA");
	if (hm_write_file_atomic(kpath, kpem, strlen(kpem), 0600, err) < 0 ||
	    hm_write_file_atomic(cpath, cpem, strlen(cpem), 0644, err) < 0) {
		unlink(kpath);
		return -1;
	}
	log_info("egress", "CA made", "cert=%s", cpath);
	return 0;
}

static int load_ca(struct hm_ca *ca, const char *kpath, const char *cpath, struct hm_err **err)
{
	FILE *kf = fopen(kpath, "re"), *cf = fopen(cpath, "re");
	if (kf)
		ca->key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
	if (cf)
		ca->cert = PEM_read_X509(cf, NULL, NULL, NULL);
	if (kf)
		fclose(kf);
	if (cf)
		fclose(cf);
	if (!ca->key || !ca->cert)
		return hm_err_set(
		    err, HM_ERR_INTERNAL, NULL,
		    "egress CA: %s and %s cannot be read (delete both to make a new CA)", kpath,
		    cpath);
	if (X509_check_private_key(ca->cert, ca->key) != 1)
		return hm_err_set(
		    err, HM_ERR_INTERNAL, NULL,
		    "egress CA: %s is not the key of %s (delete both to make a new CA)", kpath,
		    cpath);
	return 0;
}

int hm_ca_open(const char *dir, struct hm_ca **ret, struct hm_err **err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hm_err_errno(err, errno, "egress CA: make %s", dir);
	_cleanup_free_ char *kpath = xasprintf("%s/ca.key", dir);
	_cleanup_free_ char *cpath = xasprintf("%s/ca.crt", dir);
	bool hk = access(kpath, F_OK) == 0, hc = access(cpath, F_OK) == 0;
	struct hm_ca *ca = xcalloc(1, sizeof(*ca));
	pthread_mutex_init(&ca->mu, NULL);
	int r;
	if (!hk && !hc)
		r = make_ca(ca, kpath, cpath, err);
	else if (hk != hc)
		r = hm_err_set(err, HM_ERR_INTERNAL, NULL,
		               "egress CA: %s is there without %s (delete it to make a new CA)",
		               hk ? kpath : cpath, hk ? cpath : kpath);
	else
		r = load_ca(ca, kpath, cpath, err);
	if (r == 0) {
		ca->leaf_key = EVP_EC_gen("P-256");
		ca->pem = to_pem_cert(ca->cert);
		if (!ca->leaf_key || !ca->pem)
			r = ssl_err(err, "make the leaf key");
	}
	if (r < 0) {
		hm_ca_free(ca);
		return -1;
	}
	*ret = ca;
	return 0;
}

void hm_ca_free(struct hm_ca *ca)
{
	if (!ca)
		return;
	for (size_t i = 0; i < ca->ncache; i++) {
		free(ca->cache[i].host);
		SSL_CTX_free(ca->cache[i].ctx);
	}
	EVP_PKEY_free(ca->key);
	EVP_PKEY_free(ca->leaf_key);
	X509_free(ca->cert);
	free(ca->pem);
	pthread_mutex_destroy(&ca->mu);
	free(ca);
}

const char *hm_ca_pem(const struct hm_ca *ca)
{
	return ca->pem;
}

/* A DNS name (labels of letters, digits, _ and inner -; `*.` not taken) or an IP address. */
static bool host_ok(const char *h, bool *ip)
{
	unsigned char buf[16];
	*ip = inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
	if (*ip)
		return true;
	size_t n = strlen(h), label = 0;
	if (n == 0 || n > HOST_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (h[i] == '.' || h[i] == '\0') {
			if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '_') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

static SSL_CTX *mint(struct hm_ca *ca, const char *host, bool ip, struct hm_err **err)
{
	X509 *leaf = make_cert(ca->leaf_key, host, 3600, (long)LEAF_DAYS * 86400, ca->cert);
	_cleanup_free_ char *san = xasprintf("%s:%s", ip ? "IP" : "DNS", host);
	SSL_CTX *ctx = NULL;
	if (!leaf || add_ext(leaf, ca->cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(leaf, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(leaf, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(leaf, ca->cert, NID_authority_key_identifier, "keyid") < 0 ||
	    X509_sign(leaf, ca->key, EVP_sha256()) <= 0) {
		X509_free(leaf);
		ssl_err(err, "mint a leaf");
		return NULL;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate(ctx, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, ca->leaf_key) != 1 ||
	    SSL_CTX_add1_chain_cert(ctx, ca->cert) != 1) {
		SSL_CTX_free(ctx);
		X509_free(leaf);
		ssl_err(err, "set up a leaf");
		return NULL;
	}
	X509_free(leaf);
	return ctx;
}

SSL_CTX *hm_ca_server_ctx(struct hm_ca *ca, const char *host, struct hm_err **err)
{
	bool ip;
	if (!host_ok(host, &ip)) {
		hm_err_set(err, HM_ERR_INVALID, "invalid_host", "`%.80s` is not a host name", host);
		return NULL;
	}
	char low[HOST_MAX + 1];
	snprintf(low, sizeof(low), "%s", host);
	for (char *p = low; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	pthread_mutex_lock(&ca->mu);
	for (size_t i = 0; i < ca->ncache; i++) {
		if (strcmp(ca->cache[i].host, low) == 0) {
			SSL_CTX *c = ca->cache[i].ctx;
			SSL_CTX_up_ref(c);
			pthread_mutex_unlock(&ca->mu);
			return c;
		}
	}
	pthread_mutex_unlock(&ca->mu);
	SSL_CTX *ctx = mint(ca, low, ip, err);
	if (!ctx)
		return NULL;
	pthread_mutex_lock(&ca->mu);
	for (size_t i = 0; i < ca->ncache; i++) {
		if (strcmp(ca->cache[i].host, low) == 0) { /* minted meanwhile: that one */
			SSL_CTX_free(ctx);
			ctx = ca->cache[i].ctx;
			SSL_CTX_up_ref(ctx);
			pthread_mutex_unlock(&ca->mu);
			return ctx;
		}
	}
	struct leaf *slot;
	if (ca->ncache < CACHE_MAX) {
		slot = &ca->cache[ca->ncache++];
	} else {
		slot = &ca->cache[ca->next];
		ca->next = (ca->next + 1) % CACHE_MAX;
		free(slot->host);
		SSL_CTX_free(slot->ctx);
	}
	slot->host = xstrdup(low);
	slot->ctx = ctx;
	SSL_CTX_up_ref(ctx); /* the caller's */
	pthread_mutex_unlock(&ca->mu);
	return ctx;
}
