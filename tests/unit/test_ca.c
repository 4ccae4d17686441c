/*
 * Unit tests for egress/ca: the CA made once and loaded again, its key
 * private, leaves that verify against it for the names asked (DNS and IP),
 * the cache, and what is refused. Run under ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/err.h"
#include "core/fileio.h"
#include "egress/ca.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hm-ca-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	hm_rm_rf(dir, NULL);
	return 0;
}

/* Does ctx's leaf verify against the CA pem, for host (DNS or IP)? */
static bool verifies(SSL_CTX *ctx, const char *pem, const char *host, bool ip)
{
	X509 *leaf = SSL_CTX_get0_certificate(ctx);
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *root = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	X509_STORE *st = X509_STORE_new();
	X509_STORE_add_cert(st, root);
	X509_STORE_CTX *vc = X509_STORE_CTX_new();
	X509_STORE_CTX_init(vc, st, leaf, NULL);
	X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(vc);
	X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
	if (ip)
		X509_VERIFY_PARAM_set1_ip_asc(p, host);
	else
		X509_VERIFY_PARAM_set1_host(p, host, 0);
	bool ok = X509_verify_cert(vc) == 1;
	X509_STORE_CTX_free(vc);
	X509_STORE_free(st);
	X509_free(root);
	return ok;
}

static void made_once_then_loaded(void **state)
{
	(void)state;
	struct hm_ca *ca = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_ca_open(dir, &ca, &err), 0);
	char kpath[128];
	snprintf(kpath, sizeof(kpath), "%s/ca.key", dir);
	struct stat st;
	assert_int_equal(stat(kpath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char *first = strdup(hm_ca_pem(ca));
	assert_non_null(strstr(first, "BEGIN CERTIFICATE"));
	hm_ca_free(ca);
	assert_int_equal(hm_ca_open(dir, &ca, &err), 0);
	assert_string_equal(hm_ca_pem(ca), first); /* the same CA, not a new one */
	hm_ca_free(ca);
	free(first);
	/* one file without the other: refused, nothing made over it */
	char cpath[128];
	snprintf(cpath, sizeof(cpath), "%s/ca.crt", dir);
	assert_int_equal(unlink(cpath), 0);
	assert_int_equal(hm_ca_open(dir, &ca, &err), -1);
	assert_non_null(strstr(err->msg, "without"));
	hm_err_free(err);
	err = NULL;
	assert_int_equal(access(cpath, F_OK), -1);
	unlink(kpath);
}

static void leaves_verify_for_their_names(void **state)
{
	(void)state;
	struct hm_ca *ca = NULL;
	struct hm_err *err = NULL;
	assert_int_equal(hm_ca_open(dir, &ca, &err), 0);
	SSL_CTX *a = hm_ca_server_ctx(ca, "API.Example.com", &err);
	assert_non_null(a);
	assert_true(verifies(a, hm_ca_pem(ca), "api.example.com", false));
	assert_false(verifies(a, hm_ca_pem(ca), "other.example.com", false));
	SSL_CTX *again = hm_ca_server_ctx(ca, "api.example.com", &err);
	assert_ptr_equal(again, a); /* cached */
	SSL_CTX *ip = hm_ca_server_ctx(ca, "192.0.2.9", &err);
	assert_non_null(ip);
	assert_true(verifies(ip, hm_ca_pem(ca), "192.0.2.9", true));
	assert_false(verifies(ip, hm_ca_pem(ca), "192.0.2.10", true));
	SSL_CTX_free(a);
	SSL_CTX_free(again);
	SSL_CTX_free(ip);
	/* what is not a host name is refused */
	static const char *const bad[] = { "",  "a..b", "*.example.com", "with space", "x/y",
		                           "-", NULL };
	for (size_t i = 0; bad[i]; i++) {
		SSL_CTX *c = hm_ca_server_ctx(ca, bad[i], &err);
		if (c)
			fail_msg("`%s` was taken", bad[i]);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		hm_err_free(err);
		err = NULL;
	}
	/* a full cache keeps working */
	for (int i = 0; i < 300; i++) {
		char h[32];
		snprintf(h, sizeof(h), "h%d.example", i);
		SSL_CTX *c = hm_ca_server_ctx(ca, h, &err);
		assert_non_null(c);
		SSL_CTX_free(c);
	}
	hm_ca_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(made_once_then_loaded),
		cmocka_unit_test(leaves_verify_for_their_names),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
