/*
 * ingress/tls: the certificate directory and server handshakes (tls.h).
 * One SSL_CTX per certificate; a base context whose SNI callback swaps in
 * the context that covers the requested name. Contexts are reference
 * counted by OpenSSL, so a reload never frees one a handshake still uses.
 */
#include "ingress/tls.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xalloc.h"

#define MAX_CERTS 256

struct hm_tls {
	char *dir;
	pthread_mutex_t lock;
	SSL_CTX *base;
	SSL_CTX *ctx[MAX_CERTS];
	X509 *leaf[MAX_CERTS];
	size_t n;
};

static const char *ssl_error(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();
	if (!e)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

static SSL_CTX *new_ctx(void)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	if (c) {
		SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
		SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	}
	return c;
}

/* Pick the context whose leaf covers the SNI name. */
static int on_sni(SSL *ssl, int *alert, void *arg)
{
	struct hm_tls *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!name) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	SSL_CTX *pick = NULL;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n && !pick; i++)
		if (X509_check_host(t->leaf[i], name, 0, 0, NULL) == 1)
			pick = t->ctx[i];
	if (pick)
		SSL_set_SSL_CTX(ssl, pick); /* takes its own reference */
	pthread_mutex_unlock(&t->lock);
	if (!pick) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

static void drop_all(struct hm_tls *t)
{
	for (size_t i = 0; i < t->n; i++) {
		SSL_CTX_free(t->ctx[i]);
		X509_free(t->leaf[i]);
	}
	t->n = 0;
}

int hm_tls_reload(struct hm_tls *t, struct hm_err **err)
{
	(void)err;
	SSL_CTX *ctx[MAX_CERTS];
	X509 *leaf[MAX_CERTS];
	size_t n = 0;
	DIR *d = opendir(t->dir);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < MAX_CERTS) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".crt") != 0)
			continue;
		char *crt = xasprintf("%s/%s", t->dir, e->d_name);
		char *key = xasprintf("%s/%.*s.key", t->dir, (int)(len - 4), e->d_name);
		SSL_CTX *c = new_ctx();
		if (c && SSL_CTX_use_certificate_chain_file(c, crt) == 1 &&
		    SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) == 1 &&
		    SSL_CTX_check_private_key(c) == 1) {
			X509 *x = SSL_CTX_get0_certificate(c);
			X509_up_ref(x);
			ctx[n] = c;
			leaf[n++] = x;
		} else {
			log_warn("ingress", "certificate not loaded", "file=%s error=\"%s\"", crt,
			         ssl_error());
			SSL_CTX_free(c);
		}
		free(crt);
		free(key);
	}
	if (d)
		closedir(d);
	pthread_mutex_lock(&t->lock);
	drop_all(t);
	memcpy(t->ctx, ctx, n * sizeof(*ctx));
	memcpy(t->leaf, leaf, n * sizeof(*leaf));
	t->n = n;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int hm_tls_open(const char *dir, struct hm_tls **ret, struct hm_err **err)
{
	struct hm_tls *t = xcalloc(1, sizeof(*t));
	t->dir = xstrdup(dir);
	pthread_mutex_init(&t->lock, NULL);
	t->base = new_ctx();
	if (!t->base) {
		hm_tls_free(t);
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "TLS: %s", ssl_error());
	}
	SSL_CTX_set_tlsext_servername_callback(t->base, on_sni);
	SSL_CTX_set_tlsext_servername_arg(t->base, t);
	hm_tls_reload(t, NULL);
	*ret = t;
	return 0;
}

void hm_tls_free(struct hm_tls *t)
{
	if (!t)
		return;
	drop_all(t);
	SSL_CTX_free(t->base);
	pthread_mutex_destroy(&t->lock);
	free(t->dir);
	free(t);
}

const char *hm_tls_dir(const struct hm_tls *t)
{
	return t->dir;
}

bool hm_tls_covers(struct hm_tls *t, const char *hostname)
{
	/* A pattern's captures stand for one label: try a sample one. */
	char sample[300];
	size_t o = 0;
	for (const char *p = hostname; *p && o + 8 < sizeof(sample);) {
		if (*p == '{') {
			const char *e = strchr(p, '}');
			memcpy(sample + o, "sample", 6);
			o += 6;
			p = e ? e + 1 : p + strlen(p);
		} else {
			sample[o++] = *p++;
		}
	}
	sample[o] = '\0';
	bool ok = false;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n && !ok; i++)
		ok = X509_check_host(t->leaf[i], sample, 0, 0, NULL) == 1;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

SSL *hm_tls_accept(struct hm_tls *t, int fd, struct hm_err **err)
{
	SSL *ssl = SSL_new(t->base);
	if (!ssl) {
		hm_err_set(err, HM_ERR_INTERNAL, NULL, "TLS: %s", ssl_error());
		return NULL;
	}
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1) {
		hm_err_set(err, HM_ERR_INVALID, NULL, "TLS handshake: %s", ssl_error());
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}
