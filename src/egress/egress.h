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
 * What forces a guest's traffic through here is the nftables policy
 * (net.h: hm_net_egress_enforce); this module only serves what comes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct hm_err;
struct hm_egress;

#define HM_EGRESS_DEFAULT_PORT 3128

/* Listen on listen_ip:port; subnet ("10.100.0.0/16") is refused as a destination. */
int hm_egress_open(const char *listen_ip, int port, const char *subnet, struct hm_egress **ret,
                   struct hm_err **err);
/* Stop listening, end the tunnels, wait (up to 10 s) for their threads; false: some still run. */
bool hm_egress_close(struct hm_egress *e);

/* Whether a proxy may connect to this address (IPv4 or IPv6 text): pure, for the tests. */
bool hm_egress_allowed(const struct hm_egress *e, const char *addr);
