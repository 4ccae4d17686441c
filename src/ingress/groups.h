/*
 * Service groups: a set of published ports ("services"), each with its
 * handlers, the domains they answer for, per-instance connection limits,
 * and the instances behind them, as the Unikraft Cloud API's
 * /v1/services. They are routes of the ingress proxy (ingress.c): the
 * same listeners, certificates and connection holds as the Hypeman API's
 * ingresses, whose hostnames and ports they share and must not collide
 * with. A connection to a group goes to one of its members: a running one
 * under the soft limit (fewest connections first), else one asleep under
 * auto-standby (the connection wakes it), else a running one under the hard
 * limit; with none of these it is refused (503).
 *
 * Handlers as UKC has them: port 80 is plain HTTP (`http`, or `redirect`
 * to the group's 443), port 443 HTTP over TLS (`http` + `tls`), any other
 * port TLS only: the bytes after the handshake go to the instance as they
 * are, routed by the client's SNI. Limits count connections (a keep-alive
 * connection is one however many requests it carries).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct hm_err;
struct hm_ingresses;

enum { HM_SVC_TLS = 1, HM_SVC_HTTP = 2, HM_SVC_REDIRECT = 4 };

#define HM_GROUP_MAX_SERVICES 16
#define HM_GROUP_MAX_DOMAINS  16
#define HM_GROUP_MAX_MEMBERS  64
#define HM_GROUP_MAX_LIMIT    100000

struct hm_svc {
	int port;          /* published, 1..65535 */
	int dest_port;     /* the instance's, 1..65535 */
	unsigned handlers; /* HM_SVC_* */
};

struct hm_group_spec {
	struct hm_svc svcs[HM_GROUP_MAX_SERVICES];
	size_t nsvcs;
	/* As given: a name ending in `.` is a full domain name (the dot is
	 * dropped), any other is a label under the host's service domain. */
	const char *domains[HM_GROUP_MAX_DOMAINS];
	size_t ndomains;
	int soft_limit, hard_limit; /* connections per instance; 0: none */
	bool persistent;            /* false: deleted with its last member */
};

struct hm_group_view {
	char *uuid, *name, *created_at;
	struct hm_svc svcs[HM_GROUP_MAX_SERVICES];
	size_t nsvcs;
	char *fqdns[HM_GROUP_MAX_DOMAINS]; /* lowercase, no trailing dot */
	size_t nfqdns;
	int soft_limit, hard_limit;
	bool persistent;
	char *members[HM_GROUP_MAX_MEMBERS]; /* instance ids, oldest first */
	size_t nmembers;
};
void hm_group_view_free(struct hm_group_view *v);
void hm_group_views_free(struct hm_group_view *v, size_t n);

/* The service domain names without a trailing dot go under ("localhost"). */
const char *hm_groups_domain(const struct hm_ingresses *ing);

/*
 * A new group: 400 (the field named) for a bad port, handler mix, domain
 * or limit, or a TLS service whose domain no certificate covers; 409 for
 * a taken name, a hostname and port another route has, or a port that
 * serves another mode. With no domain, the group answers for
 * `<name>.<service domain>`. `where` prefixes messages ("" or
 * "service_group."). The group's ports are listened on before it exists.
 */
int hm_groups_create(struct hm_ingresses *ing, const char *name, const struct hm_group_spec *spec,
                     const char *where, struct hm_group_view **ret, struct hm_err **err);
/* By uuid, name or unique uuid prefix. */
int hm_groups_get(struct hm_ingresses *ing, const char *key, struct hm_group_view **ret,
                  struct hm_err **err);
/* Every group, oldest first. */
int hm_groups_list(struct hm_ingresses *ing, struct hm_group_view **ret, size_t *n,
                   struct hm_err **err);
/* The group instance_id is a member of (*ret NULL: none). */
int hm_groups_of(struct hm_ingresses *ing, const char *instance_id, struct hm_group_view **ret,
                 struct hm_err **err);
/* Replace a group's services, domains, limits (checked as create's); its members stay. */
int hm_groups_update(struct hm_ingresses *ing, const char *key, const struct hm_group_spec *spec,
                     struct hm_group_view **ret, struct hm_err **err);
/* 409 has_instances while it has members. */
int hm_groups_delete(struct hm_ingresses *ing, const char *key, struct hm_err **err);
/* Make instance_id a member (409 in_another_group when it is one elsewhere; full at
 * HM_GROUP_MAX_MEMBERS). */
int hm_groups_attach(struct hm_ingresses *ing, const char *key, const char *instance_id,
                     struct hm_err **err);
/* instance_id leaves its group, which goes when it was not persistent and is now empty. */
void hm_groups_detach(struct hm_ingresses *ing, const char *instance_id);
