/*
 * TLS for ingress ports, with certificates the user supplies: every
 * `NAME.crt` (PEM, the chain after the leaf) with its `NAME.key` in the
 * certificate directory (INGRESS_CERT_DIR) is loaded, and a handshake picks
 * the one whose names cover the client's SNI (X509_check_host, so wildcard
 * certificates work). The only user of OpenSSL's TLS API in the daemon.
 */
#pragma once

#include <stdbool.h>

#include <openssl/ssl.h>

struct hm_err;
struct hm_tls;

/* Load the directory (missing or empty is fine: nothing is covered). */
int hm_tls_open(const char *dir, struct hm_tls **ret, struct hm_err **err);
void hm_tls_free(struct hm_tls *t);
/* Read the directory again (new or replaced files). */
int hm_tls_reload(struct hm_tls *t, struct hm_err **err);
/*
 * Does a loaded certificate cover hostname? A pattern's {captures} are
 * tried as a sample label, so `{instance}.apps.example.com` needs a
 * certificate for `*.apps.example.com`.
 */
bool hm_tls_covers(struct hm_tls *t, const char *hostname);
const char *hm_tls_dir(const struct hm_tls *t);
/*
 * Complete the server handshake on a connected socket (blocking, bounded by
 * the socket's timeouts). Returns the SSL object (the caller frees it and
 * closes fd) or NULL with *err.
 */
SSL *hm_tls_accept(struct hm_tls *t, int fd, struct hm_err **err);
