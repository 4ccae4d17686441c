/*
 * What the ingress service's files share (private to src/ingress/): the
 * service itself, its rule table and listeners. ingress.c owns them and
 * the proxy; groups.c owns the service groups, which it compiles into
 * rules of the same table.
 *
 * Lock order: an instance's op lock (hm_instances_on_delete calls in under
 * it) → `mu` → `lock` → the connection set's (core/connset.h). Nothing here calls into the instance
 * service while holding `mu` or `lock`.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ingress/groups.h"

struct hm_err;
struct hm_instances;
struct hm_store;
struct hm_tls;
struct hm_connset;

struct rule {
	char *hostname;
	bool pattern;
	int port;
	bool tls;
	bool raw;        /* TLS only, no HTTP: the bytes after the handshake go as they are,
	                  * routed by SNI (a service group's tls-only service) */
	int redirect_to; /* a redirect rule: the HTTPS port to send clients to; else 0 */
	char *target;    /* an instance (an ingress's rule), or "" */
	int target_port;
	char *auth_header, *auth_value; /* NULL: none */
	/* A service group's rule: its name, members (instance ids) and limits. */
	char *group; /* NULL: an ingress's rule */
	char **members;
	size_t nmembers;
	int soft_limit, hard_limit;
};

struct listener {
	struct listener *next;
	int port;
	bool tls, raw;
	int fd;
	pthread_t thread;
	struct hm_ingresses *ing;
};

struct hm_ingresses {
	struct hm_store *st;
	struct hm_instances *instances;
	char *listen_addr;
	char *domain; /* service groups' domain for bare names */
	pthread_mutex_t mu;
	pthread_rwlock_t lock;
	struct rule *rules;
	size_t nrules;
	struct listener *listeners; /* under mu */
	struct hm_tls *tls;
	struct hm_connset *conns; /* the connections being served, so that close can end them */
};

/* Rebuild the rule table from the store: ingresses and service groups (under mu). */
int ing_reload(struct hm_ingresses *ing, struct hm_err **err);
/* Is a listener open on port (under mu)? */
bool ing_listening(struct hm_ingresses *ing, int port);
/* Open one (under mu): 409 port_unavailable when it cannot be bound. */
int ing_listen_on(struct hm_ingresses *ing, int port, bool tls, bool raw, struct hm_err **err);
/* Close the listeners no rule needs (under mu). */
void ing_prune_listeners(struct hm_ingresses *ing);
/* New rules against the table (skipping service group skip_group's) and
 * each other: 409 hostname_in_use, port_conflict (under mu). */
int ing_check_new(struct hm_ingresses *ing, const struct rule *nr, size_t nn,
                  const char *skip_group, struct hm_err **err);
void ing_rules_free(struct rule *r, size_t n);

/* groups.c: append the rules of one stored group spec. */
void ing_group_rules_add(struct rule **r, size_t *n, const char *name, const char *spec_text);
