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

/*
 * Check one ingress creation request (name, rules, tags) and return the
 * normalized rules (defaults filled in: port 80, tls false, redirect_http
 * false; hostnames lowercased) in *rules. HM_ERR_INVALID with the field
 * named on any problem.
 */
int hm_route_validate(json_t *req, json_t **rules, struct hm_err **err);

/* Is `hostname` a pattern (has a {capture})? */
bool hm_route_is_pattern(const char *hostname);

/*
 * Match host (lowercase, no port) against hostname. On a match of a
 * pattern, the target's {captures} are replaced in `target` and the result
 * written to out (outlen bytes). Returns true on a match.
 */
bool hm_route_match(const char *hostname, const char *host, const char *target, char *out,
                    size_t outlen);
