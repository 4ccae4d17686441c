/*
 * The egress proxy's certificate authority: made once per host install
 * (an EC P-256 key and a self-signed CA certificate in the data dir, the
 * key 0600), then loaded at each start. It mints short-lived leaf
 * certificates for the hosts guests connect to, so that the proxy can
 * terminate their TLS and add what the host holds (credential brokering);
 * guests trust it because their trust store gets the CA's certificate.
 * Leaves are cached per host name. The only minter of certificates in the
 * daemon.
 */
#pragma once

#include <openssl/ssl.h>

struct hm_err;
struct hm_ca;

/* dir/ca.key and dir/ca.crt: loaded, or made when neither exists (one alone is an error). */
int hm_ca_open(const char *dir, struct hm_ca **ret, struct hm_err **err);
void hm_ca_free(struct hm_ca *ca);
/* The CA certificate, PEM (borrowed: the CA's). */
const char *hm_ca_pem(const struct hm_ca *ca);
/*
 * A server context presenting a leaf for host (a DNS name, or an IP
 * address: the leaf names it as such), valid from an hour ago for a day,
 * signed by the CA. The context is the cache's: the caller takes a
 * reference (SSL_CTX_free it). 400-kind error for a host that is not one.
 */
SSL_CTX *hm_ca_server_ctx(struct hm_ca *ca, const char *host, struct hm_err **err);
