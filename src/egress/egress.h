/*
 * Mediated egress: the daemon's forward proxy for instances whose policy
 * sends their outbound HTTP and HTTPS through the host (a create's
 * network.egress). It listens on the bridge's gateway address; guests reach
 * it as HTTP_PROXY / HTTPS_PROXY. Plain HTTP is forwarded (absolute-form
 * requests, rewritten to origin-form), HTTPS goes through CONNECT tunnels
 * whose bytes pass as they are. The proxy resolves names on the host and
 * refuses destinations a guest must not reach through it: the host itself
 * (loopback and every local address), the instances' subnet, link-local,
 * multicast and unspecified addresses.
 *
 * Credential brokering: with a broker, a CONNECT to a host the policy has
 * headers for (the guest's credentials, asked of the broker's policy by the
 * guest's address and the host) is decrypted instead of tunnelled: the
 * proxy connects to the host over TLS and verifies its certificate against
 * the host's trust roots (and the broker's extra CA file) for that name,
 * then answers the guest's handshake with a leaf of its own CA for the same
 * name, and sets those headers on each request of the connection (dropping
 * the guest's headers of the same names) as it relays; bodies and
 * responses pass as they are. Hosts with no headers keep a plain tunnel,
 * and plain HTTP never gets any. Header values are secrets: never logged.
 *
 * What forces a guest's traffic through here is the nftables policy
 * (net.h: hm_net_egress_enforce); this module only serves what comes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hm_ca;
struct hm_err;
struct hm_egress;

/* The headers to set for requests from guest `peer` to `host`: n pairs (at
 * most max) into names/values, each the caller's to free. */
typedef size_t hm_egress_policy_fn(void *arg, const char *peer, const char *host, char **names,
                                   char **values, size_t max);
struct hm_egress_broker {
	struct hm_ca *ca;        /* mints the leaves the guests see (borrowed) */
	const char *upstream_ca; /* a PEM file of more roots for upstream servers, or NULL */
	hm_egress_policy_fn *policy;
	void *arg;
};

#define HM_EGRESS_DEFAULT_PORT 3128

/* Listen on listen_ip:port; subnet ("10.100.0.0/16") is refused as a destination.
 * broker (copied; NULL: none) turns credential brokering on. */
int hm_egress_open(const char *listen_ip, int port, const char *subnet,
                   const struct hm_egress_broker *broker, struct hm_egress **ret,
                   struct hm_err **err);
/* Stop listening, end the tunnels, wait (up to 10 s) for their threads; false: some still run. */
bool hm_egress_close(struct hm_egress *e);

/* Whether a proxy may connect to this address (IPv4 or IPv6 text): pure, for the tests. */
bool hm_egress_allowed(const struct hm_egress *e, const char *addr);

/* A request head (through its blank line, len bytes) with each of the n
 * headers set: the request line, the head's other headers, then name: value
 * for each (a header of the same name in the head is dropped). Pure. */
char *hm_egress_inject_head(const char *head, size_t len, char *const *names, char *const *values,
                            size_t n);
