/*
 * Ingress rules as data: validation of what a client sends, and matching
 * a request's Host against hostnames, literal ("api.example.com") or
 * patterns ("{instance}.example.com": each {name} stands for one DNS
 * label). Pure functions, no I/O: the proxy (ingress.c) and the unit tests
 * use them.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct hm_err;

#define HM_ROUTE_MAX_RULES 64

/* One rule of an ingress: match hostname:port, send to instance:target_port. */
struct hm_ingress_rule {
	const char *hostname; /* a DNS name, or a pattern with {captures} */
	int port;             /* 1-65535 (a create's 0: 80) */
	const char *instance; /* a name or id, or {captures} of the hostname */
	int target_port;      /* 1-65535 */
	bool tls;             /* served over TLS with a certificate the user put there */
	bool redirect_http;   /* with tls: port 80 redirects to it */
	const char *auth_header, *auth_value; /* request_header_auth; NULL: none */
};

/*
 * Check an ingress's rules (1 to HM_ROUTE_MAX_RULES) and normalise them
 * into out (nrules of them): defaults filled in (port 80), hostnames
 * lowercased into hosts[i], which out[i].hostname points at; the other
 * strings stay the caller's. HM_ERR_INVALID naming `rules[i]` and the field
 * on any problem: a bad name or pattern, a {capture} the hostname lacks,
 * a port out of range, redirect_http without tls, a reserved or short auth
 * header, the same hostname and port twice.
 */
int hm_route_check(const struct hm_ingress_rule *rules, size_t nrules, struct hm_ingress_rule *out,
                   char (*hosts)[256], struct hm_err **err);

/* Is `hostname` a pattern (has a {capture})? */
bool hm_route_is_pattern(const char *hostname);

/*
 * Match host (lowercase, no port) against hostname. On a match of a
 * pattern, the target's {captures} are replaced in `target` and the result
 * written to out (outlen bytes). Returns true on a match.
 */
bool hm_route_match(const char *hostname, const char *host, const char *target, char *out,
                    size_t outlen);
