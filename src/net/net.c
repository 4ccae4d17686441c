/*
 * net/net: the default network (see net.h). Set-up runs once at start:
 * checks (tools, forwarding, route collisions), the bridge and its gateway
 * address through `ip`, the rules through one `nft -f` transaction. The hot
 * path, a TAP per boot, is done with ioctls (TUNSETIFF/TUNSETPERSIST,
 * SIOCBRADDIF, the brport/isolated sysfs knob) because spawning `ip` four
 * times would be a visible part of a boot. Addresses live in a bitmap over
 * the subnet, filled again from the instances at start (instance/ owns
 * which instance holds which address; this module only hands them out).
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/xalloc.h"

#define TAP_PREFIX      "hm-"
#define TAP_PREFIX_BASE "hmb-" /* never kept across a restart: reclaimed */
#define TABLE           "hypeman"

struct hm_net {
	bool enabled;
	char *bridge;
	char *dns;
	char *rules_path; /* the last ruleset applied, for nft -f and for a reader */
	uint32_t net;     /* host order */
	uint32_t mask;
	int prefix;
	uint32_t gw;
	pthread_mutex_t lock;
	unsigned char *used; /* one bit per address in the subnet */
	uint32_t size;
	/* What the table holds besides the fixed rules (under lock). */
	uint16_t api_port;
	struct upload {
		uint32_t ip;
		uint64_t bps;
	} * uploads;
	size_t nuploads;
	/* Mediated egress: whose direct TCP is refused, and which. */
	struct enforced {
		uint32_t ip;
		int mode; /* HM_NET_EGRESS_* */
	} * enforced;
	size_t nenforced;
	/* Each TAP's guest held to its address (the bridge table). */
	struct guard {
		char tap[HM_NET_TAP_MAX];
		uint32_t ip;
	} * guards;
	size_t nguards;
	int egress_port; /* the proxy's, which `all` leaves open */
};

static void ip_str(uint32_t a, char out[16])
{
	struct in_addr in = { htonl(a) };
	inet_ntop(AF_INET, &in, out, 16);
}

static int parse_ip(const char *s, uint32_t *ret)
{
	struct in_addr in;
	if (!s || inet_pton(AF_INET, s, &in) != 1)
		return -1;
	*ret = ntohl(in.s_addr);
	return 0;
}

static int parse_subnet(const char *s, struct hm_net *n, struct hm_err **err)
{
	char buf[32];
	const char *slash = strchr(s, '/');
	char *end;
	long p = slash ? strtol(slash + 1, &end, 10) : -1;
	if (!slash || (size_t)(slash - s) >= sizeof(buf) || *end || p < 8 || p > 30)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "SUBNET_CIDR `%s` must be A.B.C.D/N with N between 8 and 30", s);
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	uint32_t a;
	if (parse_ip(buf, &a) < 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "SUBNET_CIDR `%s`: bad address", s);
	n->prefix = (int)p;
	n->mask = p == 0 ? 0 : 0xffffffffu << (32 - p);
	if (a & ~n->mask) {
		char want[16];
		ip_str(a & n->mask, want);
		return hm_err_set(
		    err, HM_ERR_INVALID, NULL,
		    "SUBNET_CIDR `%s` is not a network address (did you mean %s/%ld?)", s, want, p);
	}
	n->net = a;
	n->size = 1u << (32 - p);
	return 0;
}

static bool used(const struct hm_net *n, uint32_t off)
{
	return n->used[off / 8] & (1u << (off % 8));
}

static void mark(struct hm_net *n, uint32_t off, bool on)
{
	if (on)
		n->used[off / 8] |= (unsigned char)(1u << (off % 8));
	else
		n->used[off / 8] &= (unsigned char)~(1u << (off % 8));
}

/* The first IPv4 nameserver of the host that a guest can reach (not loopback). */
static char *host_dns(void)
{
	char *data = NULL;
	size_t len = 0;
	if (hm_read_file("/etc/resolv.conf", 64 * 1024, &data, &len, NULL) < 0)
		return xstrdup("1.1.1.1");
	char *save = NULL, *found = NULL;
	for (char *line = strtok_r(data, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		char addr[64];
		uint32_t a;
		if (sscanf(line, " nameserver %63s", addr) == 1 && parse_ip(addr, &a) == 0 &&
		    (a >> 24) != 127 && a != 0)
			found = xstrdup(addr);
	}
	free(data);
	return found ? found : xstrdup("1.1.1.1");
}

/* Refuse a subnet that overlaps a route the host already has (other than ours). */
static int check_routes(const struct hm_net *n, struct hm_err **err)
{
	char *data = NULL;
	size_t len = 0;
	if (hm_read_file("/proc/net/route", 1u << 20, &data, &len, err) < 0)
		return -1;
	char *save = NULL;
	int r = 0;
	strtok_r(data, "\n", &save); /* header */
	for (char *line = strtok_r(NULL, "\n", &save); line && r == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		char dev[IFNAMSIZ + 1];
		unsigned dst, gw, flags, mask;
		if (sscanf(line, "%16s %x %x %x %*d %*d %*d %x", dev, &dst, &gw, &flags, &mask) !=
		    5)
			continue;
		dst = ntohl(dst);
		mask = ntohl(mask);
		if (mask == 0 || strcmp(dev, n->bridge) == 0)
			continue; /* the default route, or our own */
		uint32_t m = mask & n->mask;
		if ((dst & m) == (n->net & m)) {
			char d[16], ours[16];
			ip_str(dst, d);
			ip_str(n->net, ours);
			r = hm_err_set(err, HM_ERR_INVALID, NULL,
			               "SUBNET_CIDR %s/%d collides with the host's route to %s/%d "
			               "on %s: choose another subnet",
			               ours, n->prefix, d, __builtin_popcount(mask), dev);
		}
	}
	free(data);
	return r;
}

/* `ip ARGS...` (NULL-terminated), its last output line in the error. */
static int run_ip(struct hm_err **err, ...)
{
	const char *argv[12] = { "ip" };
	va_list ap;
	va_start(ap, err);
	for (size_t i = 1; i < 11 && (argv[i] = va_arg(ap, const char *)); i++)
		;
	va_end(ap);
	argv[11] = NULL;
	return hm_run(argv, NULL, NULL, err);
}

static int setup_bridge(struct hm_net *n, struct hm_err **err)
{
	_cleanup_free_ char *sys = xasprintf("/sys/class/net/%s", n->bridge);
	_cleanup_free_ char *brdir = xasprintf("/sys/class/net/%s/bridge", n->bridge);
	if (access(sys, F_OK) == 0 && access(brdir, F_OK) < 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "BRIDGE_NAME %s names an interface that is not a bridge",
		                  n->bridge);
	if (access(sys, F_OK) < 0 &&
	    run_ip(err, "link", "add", n->bridge, "type", "bridge", (char *)NULL) < 0)
		return hm_err_wrap(err, "create bridge %s", n->bridge);
	/*
	 * A fixed MAC for the bridge. Left to itself Linux gives a bridge the
	 * lowest MAC of its ports, so it changes as TAPs come and go (a standby
	 * and restore makes a new TAP), and every guest's ARP entry for the
	 * gateway then points at an address nobody answers to until it ages out
	 * (about 20 s of no traffic out). One the user set stays.
	 */
	_cleanup_free_ char *assign = NULL;
	_cleanup_free_ char *assign_path = xasprintf("%s/addr_assign_type", sys);
	if (hm_read_file(assign_path, 64, &assign, NULL, NULL) < 0 || atoi(assign) != 3) {
		char mac[18];
		snprintf(mac, sizeof(mac), "02:68:6d:%02x:%02x:%02x", (n->gw >> 16) & 0xff,
		         (n->gw >> 8) & 0xff, n->gw & 0xff);
		if (run_ip(err, "link", "set", n->bridge, "address", mac, (char *)NULL) < 0)
			return hm_err_wrap(err, "set the MAC of bridge %s", n->bridge);
	}
	char gw[16];
	ip_str(n->gw, gw);
	_cleanup_free_ char *cidr = xasprintf("%s/%d", gw, n->prefix);
	if (run_ip(err, "addr", "replace", cidr, "dev", n->bridge, (char *)NULL) < 0 ||
	    run_ip(err, "link", "set", n->bridge, "up", (char *)NULL) < 0)
		return hm_err_wrap(err, "configure bridge %s", n->bridge);
	return 0;
}

/* Token bucket depth for a rate: four times what passes in 4 ms, at least a frame. */
static uint64_t burst_for(uint64_t bps)
{
	uint64_t b = bps * 4 / 250;
	return b < 1540 ? 1540 : b;
}

/*
 * The whole table, replaced in one transaction (`table` first creates it
 * when missing so that `delete` always has something to delete). A
 * function of the network's state: fixed rules, the API port, and one
 * policer per upload limit. Under n->lock.
 */
static int apply_rules_locked(struct hm_net *n, struct hm_err **err)
{
	char net[16];
	ip_str(n->net, net);
	_cleanup_free_ char *api_rule =
	    n->api_port ? xasprintf("\t\tiifname \"%s\" tcp dport %u drop comment \"no guest "
	                            "reaches the hypeman API\"\n",
	                            n->bridge, n->api_port)
	                : xstrdup("");
	char *limits = xstrdup("");
	/* Direct TCP refused (new connections only: replies to ingress traffic pass). */
	char *fwd_enf = xstrdup(""), *in_enf = xstrdup("");
	for (size_t i = 0; i < n->nenforced; i++) {
		char a[16];
		ip_str(n->enforced[i].ip, a);
		bool all = n->enforced[i].mode == HM_NET_EGRESS_ALL;
		char *f = xasprintf("%s\t\tip saddr %s ct state new %s reject with tcp reset "
		                    "comment \"egress through the proxy\"\n",
		                    fwd_enf, a, all ? "meta l4proto tcp" : "tcp dport { 80, 443 }");
		char *in_rule =
		    all ? xasprintf("%s\t\tip saddr %s ct state new tcp dport != %d reject "
		                    "with tcp reset comment \"egress through the proxy\"\n",
		                    in_enf, a, n->egress_port)
		        : xasprintf("%s\t\tip saddr %s ct state new tcp dport { 80, 443 } "
		                    "reject with tcp reset comment \"egress through the "
		                    "proxy\"\n",
		                    in_enf, a);
		free(fwd_enf);
		free(in_enf);
		fwd_enf = f;
		in_enf = in_rule;
	}
	char *guards = xstrdup("");
	for (size_t i = 0; i < n->nguards; i++) {
		char a[16];
		ip_str(n->guards[i].ip, a);
		char *more =
		    xasprintf("%s\t\tiifname \"%s\" ip saddr != %s drop comment \"from its "
		              "own address only\"\n\t\tiifname \"%s\" arp saddr ip != %s drop "
		              "comment \"from its own address only\"\n",
		              guards, n->guards[i].tap, a, n->guards[i].tap, a);
		free(guards);
		guards = more;
	}
	for (size_t i = 0; i < n->nuploads; i++) {
		char a[16];
		ip_str(n->uploads[i].ip, a);
		char *more = xasprintf("%s\t\tip saddr %s limit rate over %llu bytes/second burst "
		                       "%llu bytes drop comment \"upload limit\"\n",
		                       limits, a, (unsigned long long)n->uploads[i].bps,
		                       (unsigned long long)burst_for(n->uploads[i].bps));
		free(limits);
		limits = more;
	}
	_cleanup_free_ char *rules = xasprintf(
	    "# Written by hypeman-api: its whole nftables state, rewritten on every change.\n"
	    "table ip " TABLE " {}\n"
	    "delete table ip " TABLE "\n"
	    "table ip " TABLE " {\n"
	    "\tchain postrouting {\n"
	    "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
	    "\t\tip saddr %s/%d ip daddr != %s/%d masquerade comment \"instances reach out\"\n"
	    "\t}\n"
	    "\tchain forward {\n"
	    "\t\ttype filter hook forward priority filter; policy accept;\n"
	    "%s%s"
	    "\t\tiifname \"%s\" oifname \"%s\" drop comment \"instances do not reach each other\"\n"
	    "\t\tiifname \"%s\" accept\n"
	    "\t\toifname \"%s\" ct state established,related accept\n"
	    "\t\toifname \"%s\" drop comment \"no connections into instances from outside\"\n"
	    "\t}\n"
	    "\tchain input {\n"
	    "\t\ttype filter hook input priority filter; policy accept;\n"
	    "%s%s%s"
	    "\t}\n"
	    "}\n"
	    /* Instances are IPv4 only: nothing they send over IPv6 reaches the host
	     * (its services listen on :: too) or goes anywhere through it. */
	    "table ip6 " TABLE " {}\n"
	    "delete table ip6 " TABLE "\n"
	    "table ip6 " TABLE " {\n"
	    "\tchain input {\n"
	    "\t\ttype filter hook input priority filter; policy accept;\n"
	    "\t\tiifname \"%s\" drop comment \"instances have no IPv6 to the host\"\n"
	    "\t}\n"
	    "\tchain forward {\n"
	    "\t\ttype filter hook forward priority filter; policy accept;\n"
	    "\t\tiifname \"%s\" drop comment \"instances have no IPv6 out\"\n"
	    "\t\toifname \"%s\" drop comment \"nor in\"\n"
	    "\t}\n"
	    "}\n"
	    /* A guest sends from its own address only (the bridge sees the port). */
	    "table bridge " TABLE " {}\n"
	    "delete table bridge " TABLE "\n"
	    "table bridge " TABLE " {\n"
	    "\tchain prerouting {\n"
	    "\t\ttype filter hook prerouting priority filter; policy accept;\n"
	    "%s"
	    "\t}\n"
	    "}\n",
	    net, n->prefix, net, n->prefix, limits, fwd_enf, n->bridge, n->bridge, n->bridge,
	    n->bridge, n->bridge, api_rule, in_enf, limits, n->bridge, n->bridge, n->bridge,
	    guards);
	free(guards);
	free(limits);
	free(fwd_enf);
	free(in_enf);
	if (hm_write_file_atomic(n->rules_path, rules, strlen(rules), 0644, err) < 0)
		return -1;
	const char *argv[] = { "nft", "-f", n->rules_path, NULL };
	if (hm_run(argv, NULL, NULL, err) < 0)
		return hm_err_wrap(err, "apply the nftables rules in %s", n->rules_path);
	return 0;
}

static int apply_rules(struct hm_net *n, struct hm_err **err)
{
	pthread_mutex_lock(&n->lock);
	int r = apply_rules_locked(n, err);
	pthread_mutex_unlock(&n->lock);
	return r;
}

int hm_net_protect_api(struct hm_net *net, uint16_t api_port, struct hm_err **err)
{
	if (!net->enabled)
		return 0;
	pthread_mutex_lock(&net->lock);
	net->api_port = api_port;
	int r = apply_rules_locked(net, err);
	pthread_mutex_unlock(&net->lock);
	return r;
}

int hm_net_limit_upload(struct hm_net *n, const char *ip, uint64_t up_bps, struct hm_err **err)
{
	uint32_t a;
	if (!n->enabled || parse_ip(ip, &a) < 0)
		return 0;
	pthread_mutex_lock(&n->lock);
	size_t i = 0;
	while (i < n->nuploads && n->uploads[i].ip != a)
		i++;
	bool changed = false;
	if (i < n->nuploads && up_bps == 0) {
		n->uploads[i] = n->uploads[--n->nuploads];
		changed = true;
	} else if (i < n->nuploads) {
		changed = n->uploads[i].bps != up_bps;
		n->uploads[i].bps = up_bps;
	} else if (up_bps > 0) {
		n->uploads = xrealloc(n->uploads, (n->nuploads + 1) * sizeof(*n->uploads));
		n->uploads[n->nuploads++] = (struct upload){ a, up_bps };
		changed = true;
	}
	int r = changed ? apply_rules_locked(n, err) : 0;
	pthread_mutex_unlock(&n->lock);
	return r;
}

int hm_net_egress_enforce(struct hm_net *n, const char *ip, int mode, struct hm_err **err)
{
	uint32_t a;
	if (!n->enabled || !ip || parse_ip(ip, &a) < 0)
		return 0;
	pthread_mutex_lock(&n->lock);
	size_t i = 0;
	while (i < n->nenforced && n->enforced[i].ip != a)
		i++;
	bool changed = false;
	if (i < n->nenforced && mode == HM_NET_EGRESS_OFF) {
		n->enforced[i] = n->enforced[--n->nenforced];
		changed = true;
	} else if (i < n->nenforced) {
		changed = n->enforced[i].mode != mode;
		n->enforced[i].mode = mode;
	} else if (mode != HM_NET_EGRESS_OFF) {
		n->enforced = xrealloc(n->enforced, (n->nenforced + 1) * sizeof(*n->enforced));
		n->enforced[n->nenforced++] = (struct enforced){ a, mode };
		changed = true;
	}
	int r = changed ? apply_rules_locked(n, err) : 0;
	pthread_mutex_unlock(&n->lock);
	return r;
}

int hm_net_guard(struct hm_net *n, const char *tap, const char *ip, struct hm_err **err)
{
	uint32_t a = 0;
	if (!n->enabled || !tap || strlen(tap) >= HM_NET_TAP_MAX || (ip && parse_ip(ip, &a) < 0))
		return 0;
	pthread_mutex_lock(&n->lock);
	size_t i = 0;
	while (i < n->nguards && strcmp(n->guards[i].tap, tap) != 0)
		i++;
	bool changed = false;
	if (i < n->nguards && !ip) {
		n->guards[i] = n->guards[--n->nguards];
		changed = true;
	} else if (i < n->nguards) {
		changed = n->guards[i].ip != a;
		n->guards[i].ip = a;
	} else if (ip) {
		n->guards = xrealloc(n->guards, (n->nguards + 1) * sizeof(*n->guards));
		n->guards[n->nguards] = (struct guard){ .ip = a };
		snprintf(n->guards[n->nguards++].tap, HM_NET_TAP_MAX, "%s", tap);
		changed = true;
	}
	int r = changed ? apply_rules_locked(n, err) : 0;
	pthread_mutex_unlock(&n->lock);
	return r;
}

int hm_net_limit_download(struct hm_net *n, const char *tap, uint64_t down_bps, struct hm_err **err)
{
	if (!n->enabled || down_bps == 0)
		return 0;
	char rate[32], burst[32];
	snprintf(rate, sizeof(rate), "%llubit", (unsigned long long)down_bps * 8);
	snprintf(burst, sizeof(burst), "%llu", (unsigned long long)burst_for(down_bps));
	const char *argv[] = { "tc",   "qdisc", "replace", "dev", tap,       "root", "tbf",
		               "rate", rate,    "burst",   burst, "latency", "50ms", NULL };
	if (hm_run(argv, NULL, NULL, err) < 0)
		return hm_err_wrap(err, "limit the download rate of TAP %s", tap);
	return 0;
}

int hm_net_open(const struct hm_config *cfg, struct hm_net **ret, struct hm_err **err)
{
	struct hm_net *n = xcalloc(1, sizeof(*n));
	pthread_mutex_init(&n->lock, NULL);
	n->enabled = cfg->network_enabled;
	n->bridge = xstrdup(cfg->bridge_name);
	n->dns = cfg->dns_server ? xstrdup(cfg->dns_server) : host_dns();
	n->rules_path = xasprintf("%s/system/nftables.conf", cfg->data_dir);
	n->egress_port = cfg->egress_port;
	*ret = n;
	if (!n->enabled)
		return 0;
	int r = 0;
	uint32_t dns;
	if (parse_ip(n->dns, &dns) < 0)
		r = hm_err_set(err, HM_ERR_INVALID, NULL, "DNS_SERVER `%s` is not an IPv4 address",
		               n->dns);
	if (r == 0)
		r = parse_subnet(cfg->subnet_cidr, n, err);
	if (r == 0) {
		n->gw = n->net + 1;
		if (cfg->subnet_gateway &&
		    (parse_ip(cfg->subnet_gateway, &n->gw) < 0 || (n->gw & n->mask) != n->net ||
		     n->gw == n->net || n->gw == (n->net | ~n->mask)))
			r = hm_err_set(err, HM_ERR_INVALID, NULL,
			               "SUBNET_GATEWAY `%s` is not a host address in %s",
			               cfg->subnet_gateway, cfg->subnet_cidr);
	}
	if (r == 0 && (!hm_which("ip") || !hm_which("nft")))
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, NULL,
		               "networking needs iproute2 and nftables (apt-get install iproute2 "
		               "nftables), or set NETWORK_ENABLED=false");
	if (r == 0) {
		char fwd[8] = "";
		int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (read(fd, fwd, sizeof(fwd) - 1) < 0)
				fwd[0] = '\0';
			close(fd);
		}
		if (fwd[0] != '1')
			r = hm_err_set(
			    err, HM_ERR_UNAVAILABLE, NULL,
			    "IP forwarding is off, so instances could not reach out: run "
			    "`sysctl -w net.ipv4.ip_forward=1`, or set NETWORK_ENABLED=false");
	}
	if (r == 0)
		r = check_routes(n, err);
	if (r == 0) {
		_cleanup_free_ char *dir = xasprintf("%s/system", cfg->data_dir);
		r = hm_mkdir_p(dir, 0755, err);
	}
	if (r == 0)
		r = setup_bridge(n, err);
	if (r == 0)
		r = apply_rules(n, err);
	if (r < 0) {
		hm_net_close(n);
		*ret = NULL;
		return -1;
	}
	n->used = xcalloc(n->size / 8 + 1, 1);
	mark(n, 0, true);              /* the network address */
	mark(n, n->size - 1, true);    /* broadcast */
	mark(n, n->gw - n->net, true); /* the bridge */
	char net[16], gw[16];
	ip_str(n->net, net);
	ip_str(n->gw, gw);
	log_info("net", "network ready", "bridge=%s subnet=%s/%d gateway=%s dns=%s", n->bridge, net,
	         n->prefix, gw, n->dns);
	return 0;
}

void hm_net_close(struct hm_net *n)
{
	if (!n)
		return;
	pthread_mutex_destroy(&n->lock);
	free(n->used);
	free(n->bridge);
	free(n->dns);
	free(n->rules_path);
	free(n->uploads);
	free(n->enforced);
	free(n->guards);
	free(n);
}

bool hm_net_enabled(const struct hm_net *n)
{
	return n && n->enabled;
}

const char *hm_net_dns(const struct hm_net *n)
{
	return n->dns;
}

int hm_net_subnet(const struct hm_net *n, char gateway[16], char cidr[20])
{
	if (!hm_net_enabled(n))
		return -1;
	char base[16];
	ip_str(n->gw, gateway);
	ip_str(n->net, base);
	snprintf(cidr, 20, "%s/%d", base, n->prefix);
	return 0;
}

static void fill_lease(const struct hm_net *n, uint32_t a, struct hm_net_lease *l)
{
	ip_str(a, l->ip);
	snprintf(l->cidr, sizeof(l->cidr), "%s/%d", l->ip, n->prefix);
	ip_str(n->gw, l->gateway);
	snprintf(l->mac, sizeof(l->mac), "02:00:00:%02x:%02x:%02x", (a >> 16) & 0xff,
	         (a >> 8) & 0xff, a & 0xff);
}

int hm_net_lease(struct hm_net *n, const char *want, struct hm_net_lease *ret, struct hm_err **err)
{
	if (!n->enabled)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "networking is disabled on this host (NETWORK_ENABLED=false)");
	uint32_t a = 0;
	if (want && (parse_ip(want, &a) < 0 || (a & n->mask) != n->net))
		return hm_err_set(err, HM_ERR_INVALID, NULL, "address %s is not in the subnet",
		                  want);
	int r = 0;
	pthread_mutex_lock(&n->lock);
	if (want) {
		if (used(n, a - n->net))
			r = hm_err_set(err, HM_ERR_CONFLICT, NULL, "address %s is already taken",
			               want);
		else
			mark(n, a - n->net, true);
	} else {
		uint32_t start = 0;
		if (getrandom(&start, sizeof(start), 0) != sizeof(start))
			start = (uint32_t)time(NULL);
		uint32_t off = start % n->size;
		bool found = false;
		for (uint32_t i = 0; i < n->size && !found; i++) {
			uint32_t o = (off + i) % n->size;
			if (!used(n, o)) {
				mark(n, o, true);
				a = n->net + o;
				found = true;
			}
		}
		if (!found)
			r = hm_err_set(err, HM_ERR_CONFLICT, "insufficient_resources",
			               "no free address left in the subnet");
	}
	pthread_mutex_unlock(&n->lock);
	if (r == 0)
		fill_lease(n, a, ret);
	return r;
}

void hm_net_release(struct hm_net *n, const char *ip)
{
	uint32_t a;
	if (!n || !n->enabled || !ip || parse_ip(ip, &a) < 0 || (a & n->mask) != n->net)
		return;
	uint32_t off = a - n->net;
	if (off == 0 || off == n->size - 1 || a == n->gw)
		return;
	pthread_mutex_lock(&n->lock);
	mark(n, off, false);
	pthread_mutex_unlock(&n->lock);
}

void hm_net_tap_name(const char *id, char out[HM_NET_TAP_MAX])
{
	snprintf(out, HM_NET_TAP_MAX, TAP_PREFIX "%.12s", id);
}

void hm_net_base_tap_name(uint32_t tag, char out[HM_NET_TAP_MAX])
{
	snprintf(out, HM_NET_TAP_MAX, TAP_PREFIX_BASE "%08x", tag);
}

/* Open /dev/net/tun bound to `name` as a TAP; the caller closes it. */
static int tun_open(const char *name, struct hm_err **err)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return hm_err_errno(err, errno, "open /dev/net/tun");
	struct ifreq ifr = { 0 };
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return hm_err_errno(err, e, "create TAP %s", name);
	}
	return fd;
}

static int write_sys(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	errno = e;
	return w == (ssize_t)strlen(value) ? 0 : -1;
}

int hm_net_tap_create(struct hm_net *n, const char *tap, struct hm_err **err)
{
	hm_net_tap_delete(n, tap); /* a leftover of the same name */
	int fd = tun_open(tap, err);
	if (fd < 0)
		return -1;
	int r = 0;
	if (ioctl(fd, TUNSETPERSIST, 1) < 0)
		r = hm_err_errno(err, errno, "make TAP %s persistent", tap);
	close(fd);
	if (r < 0)
		return -1;
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
	int index = s >= 0 && ioctl(s, SIOCGIFINDEX, &ifr) == 0 ? ifr.ifr_ifindex : 0;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->bridge);
	ifr.ifr_ifindex = index;
	if (index == 0 || ioctl(s, SIOCBRADDIF, &ifr) < 0)
		r = hm_err_errno(err, errno, "plug TAP %s into bridge %s", tap, n->bridge);
	_cleanup_free_ char *iso = xasprintf("/sys/class/net/%s/brport/isolated", tap);
	if (r == 0 && write_sys(iso, "1") < 0)
		r = hm_err_errno(err, errno, "isolate TAP %s on the bridge", tap);
	if (r == 0) {
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
		if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
		    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0))
			r = hm_err_errno(err, errno, "bring up TAP %s", tap);
	}
	if (r < 0)
		hm_net_tap_delete(n, tap);
	return r;
}

void hm_net_tap_delete(struct hm_net *n, const char *tap)
{
	(void)n;
	_cleanup_free_ char *sys = xasprintf("/sys/class/net/%s/tun_flags", tap);
	if (access(sys, F_OK) < 0)
		return; /* gone, or not a TAP: never touch what is not ours */
	int fd = tun_open(tap, NULL);
	if (fd < 0) {
		/* Still held open by a VMM: it goes when that process does. */
		log_debug("net", "TAP busy, left to its VMM", "tap=%s", tap);
		return;
	}
	ioctl(fd, TUNSETPERSIST, 0);
	close(fd);
}

void hm_net_reclaim(struct hm_net *n, const char *const *keep, size_t nkeep)
{
	if (!n->enabled)
		return;
	DIR *d = opendir("/sys/class/net");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, TAP_PREFIX, strlen(TAP_PREFIX)) != 0 &&
		    strncmp(e->d_name, TAP_PREFIX_BASE, strlen(TAP_PREFIX_BASE)) != 0)
			continue;
		bool kept = false;
		for (size_t i = 0; i < nkeep && !kept; i++)
			kept = strcmp(keep[i], e->d_name) == 0;
		if (kept)
			continue;
		_cleanup_free_ char *tun = xasprintf("/sys/class/net/%s/tun_flags", e->d_name);
		if (access(tun, F_OK) < 0)
			continue;
		log_info("net", "removing a TAP nobody owns", "tap=%s", e->d_name);
		hm_net_tap_delete(n, e->d_name);
	}
	closedir(d);
}

static uint64_t read_counter(const char *tap, const char *name)
{
	_cleanup_free_ char *p = xasprintf("/sys/class/net/%s/statistics/%s", tap, name);
	char buf[32] = "";
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return r > 0 ? strtoull(buf, NULL, 10) : 0;
}

void hm_net_tap_counters(const char *tap, struct hm_net_counters *ret)
{
	/* The TAP's transmit is what the guest receives, and the other way round. */
	ret->rx_bytes = read_counter(tap, "tx_bytes");
	ret->tx_bytes = read_counter(tap, "rx_bytes");
	ret->rx_packets = read_counter(tap, "tx_packets");
	ret->tx_packets = read_counter(tap, "rx_packets");
}
