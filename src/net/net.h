/*
 * The default network: a Linux bridge with the subnet's gateway address, a
 * TAP per running instance plugged into it (port-isolated, so instances
 * cannot reach each other at layer 2), an address and MAC per instance,
 * and one nftables table named `hypeman` holding every rule hypeman needs
 * (NAT out of the subnet, forwarding, no way from a guest to the API,
 * upload limits). The table is replaced whole, atomically, each time, so rules are never
 * duplicated and rules hypeman did not make are never touched. The bridge,
 * the table and the TAPs of running instances outlive the daemon; a
 * restarted daemon finds them again and removes the TAPs nobody owns.
 *
 * The only user of iproute2 (ip, tc) and nftables, run as tools. Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hm_config;
struct hm_err;
struct hm_net;

#define HM_NET_TAP_MAX 16 /* IFNAMSIZ */

/* What one instance holds on the network. */
struct hm_net_lease {
	char ip[16];   /* dotted quad */
	char cidr[20]; /* ip/prefix, as the guest configures it */
	char gateway[16];
	char mac[18]; /* 02:00:00:xx:xx:xx */
};

/*
 * Set up (or find again) the default network from cfg. With
 * NETWORK_ENABLED=false nothing on the host is touched and every instance
 * is network-less. Fails with a message naming the problem (forwarding
 * off, a subnet that collides with a route, missing tools).
 */
int hm_net_open(const struct hm_config *cfg, struct hm_net **ret, struct hm_err **err);
/* Forget the network; the bridge, rules and live TAPs stay for the next start. */
void hm_net_close(struct hm_net *net);

bool hm_net_enabled(const struct hm_net *net);
const char *hm_net_dns(const struct hm_net *net);
/* The bridge's address and the subnet ("10.100.0.0/16"); -1 when disabled. */
int hm_net_subnet(const struct hm_net *net, char gateway[16], char cidr[20]);

/*
 * Write the nftables table again, with a rule that drops guest traffic to
 * the API's TCP port (0: none, e.g. a unix socket). Called once the API
 * listens.
 */
int hm_net_protect_api(struct hm_net *net, uint16_t api_port, struct hm_err **err);

/*
 * Take an address for an instance. want: an address it held before (after
 * a restart, kept across stop/start), or NULL for a free one. A taken or
 * out-of-subnet want is HM_ERR_CONFLICT / HM_ERR_INVALID. The MAC follows
 * from the address. HM_ERR_INSUFFICIENT_RESOURCES when the subnet is full.
 */
int hm_net_lease(struct hm_net *net, const char *want, struct hm_net_lease *ret,
                 struct hm_err **err);
/* Give an address back (on delete). */
void hm_net_release(struct hm_net *net, const char *ip);

/* The TAP name of an instance id: "hm-" and the id's first 12 characters. */
void hm_net_tap_name(const char *id, char out[HM_NET_TAP_MAX]);
/* The TAP of a base VM being built (instance/bases.c): "hmb-" and 8 hex digits of tag. */
void hm_net_base_tap_name(uint32_t tag, char out[HM_NET_TAP_MAX]);
/* Create the TAP, plug it into the bridge isolated, bring it up. An old one of that name is
 * replaced. */
int hm_net_tap_create(struct hm_net *net, const char *tap, struct hm_err **err);
/* Remove a TAP (no error if it is gone). */
void hm_net_tap_delete(struct hm_net *net, const char *tap);
/*
 * Remove every hypeman TAP ("hm-" on our bridge, or unattached) that is not
 * in keep[0..n): what a crashed daemon or a VM that died left behind.
 */
void hm_net_reclaim(struct hm_net *net, const char *const *keep, size_t n);
/*
 * Limit what a guest receives to down_bps bytes/s (0: no limit): a token
 * bucket (tc tbf) on its TAP, which shapes rather than drops.
 */
int hm_net_limit_download(struct hm_net *net, const char *tap, uint64_t down_bps,
                          struct hm_err **err);
/*
 * Limit what the guest at ip sends to up_bps bytes/s (0: remove the limit):
 * an nftables policer on its source address in the hypeman table, which is
 * written again.
 */
int hm_net_limit_upload(struct hm_net *net, const char *ip, uint64_t up_bps, struct hm_err **err);
/*
 * Mediated egress for the guest at ip: its new direct TCP connections are
 * refused (a TCP reset), all but those to the egress proxy's port on the
 * host (ALL), or those to ports 80 and 443 (HTTP_HTTPS_ONLY); OFF lifts it.
 * UDP is left alone under both (DNS keeps working).
 */
enum { HM_NET_EGRESS_OFF, HM_NET_EGRESS_ALL, HM_NET_EGRESS_HTTP_HTTPS_ONLY };
int hm_net_egress_enforce(struct hm_net *net, const char *ip, int mode, struct hm_err **err);
/*
 * Hold the guest behind tap to its own address: IPv4 packets and ARP
 * claims from it with another source address are dropped at the bridge
 * (an nftables bridge table), so that an address names one instance (the
 * egress proxy tells guests apart by it). NULL ip lifts it.
 */
int hm_net_guard(struct hm_net *net, const char *tap, const char *ip, struct hm_err **err);
/* What the guest received and sent through its TAP (0 when unknown). */
struct hm_net_counters {
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
};
void hm_net_tap_counters(const char *tap, struct hm_net_counters *ret);
