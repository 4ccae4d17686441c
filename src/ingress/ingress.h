/*
 * Ingresses: `hostname:port` on the host routed to `instance:port`, as
 * upstream's /ingresses. This module owns the ingresses (persisted in the
 * store), the listening sockets their ports need, and the HTTP reverse
 * proxy behind them: one thread per connection reads the request head,
 * matches its Host (a literal hostname before a pattern), checks the
 * rule's header auth, resolves the target instance's address at request
 * time, and then relays bytes both ways (so bodies, chunked transfers and
 * WebSocket upgrades pass through untouched). Listeners are opened when an
 * ingress needs a port and closed when none does; a restarted daemon opens
 * them again from the store.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ingress/route.h"

struct hm_config;
struct hm_err;
struct hm_instances;
struct hm_store;
struct hm_ingresses;

/* Load the ingresses and start listening (a port that cannot be bound is logged, not fatal). */
int hm_ingresses_open(struct hm_store *st, struct hm_instances *instances,
                      const struct hm_config *cfg, struct hm_ingresses **ret, struct hm_err **err);
/*
 * Stop listening, end the connections being served and wait (up to 10 s)
 * for their threads. false: some are still running, and `ing` with them; the
 * caller must then not free what they use (the instance service) either.
 */
bool hm_ingresses_close(struct hm_ingresses *ing);

/*
 * An ingress, typed: a create borrows its strings (struct hm_ingress_rule,
 * route.h: as given, checked and normalised here), a view owns them (as
 * stored: hostnames lowercase, defaults filled in). Each dialect reads and
 * renders its own shapes.
 */
struct hm_ingress_create {
	const char *name;
	struct hm_ingress_rule rules[HM_ROUTE_MAX_RULES];
	size_t nrules;
	json_t *tags; /* {k: "v"} (borrowed), or NULL */
};
struct hm_ingress_view {
	char *id, *name, *created_at;
	json_t *tags;                  /* {k: "v"} (a reference) */
	struct hm_ingress_rule *rules; /* nrules; their strings owned */
	size_t nrules;
};
void hm_ingress_view_free(struct hm_ingress_view *v);
void hm_ingress_views_free(struct hm_ingress_view *v, size_t n);

/* 400 bad rules, 409 name taken, hostname in use, or port not bindable. */
int hm_ingresses_create(struct hm_ingresses *ing, const struct hm_ingress_create *c,
                        struct hm_ingress_view **ret, struct hm_err **err);
int hm_ingresses_get(struct hm_ingresses *ing, const char *key, struct hm_ingress_view **ret,
                     struct hm_err **err);
/* Those with every tag of `tags` (NULL: all), oldest first: *ret holds *n. */
int hm_ingresses_list(struct hm_ingresses *ing, json_t *tags, struct hm_ingress_view **ret,
                      size_t *n, struct hm_err **err);
int hm_ingresses_delete(struct hm_ingresses *ing, const char *key, struct hm_err **err);
