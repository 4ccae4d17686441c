/*
 * Fuzz target: the JSON request bodies of every route that takes one, in
 * both dialects (the route tables of api/routes.c and api/ukc_routes.c),
 * through the entry points the server uses: the body decoded as the HTTP
 * layer decodes it (http.c parse_body: jansson, duplicate keys refused), then
 * checked against the route's schema in our OpenAPI document
 * (hm_body_fields_check: no field accepted and ignored). A body that passes
 * goes on to the route's own reader where it has one that runs apart from
 * the engine: a Hypeman create (hm_rest_parse_create, then the domain's
 * rules, hm_instance_create_check, which creates nothing), a volume
 * attachment (hm_rest_parse_attach), and the bulk reference lists of the
 * UKC routes without a {uuid} (ukc_body_refs). Input: the route's index
 * among the body routes in the first byte, then the body. Checked: every
 * refusal carries an error of kind 400 with a message; nothing leaks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/dialect.h"
#include "api/fields.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/ukc.h"
#include "core/err.h"
#include "instance/instances.h"
#include "vmm/accel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct hm_route *body_routes[256];
static size_t nbody;

static void collect(void)
{
	for (size_t d = 0; d < hm_dialects_count; d++)
		for (size_t i = 0; i < *hm_dialects[d]->nroutes && nbody < 256; i++)
			if (hm_dialects[d]->routes[i].flags & HM_ROUTE_JSON_BODY)
				body_routes[nbody++] = &hm_dialects[d]->routes[i];
	if (nbody == 0)
		abort();
}

/* A refusal must say what was wrong, as a 400 (FUZZ_VERBOSE=1: printed, to check a corpus). */
static void refused(struct hm_err *err)
{
	if (getenv("FUZZ_VERBOSE") && err)
		fprintf(stderr, "refused: %s\n", err->msg);
	if (!err || err->kind != HM_ERR_INVALID || !err->msg || !err->msg[0])
		abort();
	hm_err_free(err);
}

static void route_reader(const struct hm_route *r, json_t *body)
{
	struct hm_err *err = NULL;
	if (strcmp(r->method, "POST") == 0 && strcmp(r->pattern, "/instances") == 0) {
		struct hm_instance_create c = { 0 };
		static const struct hm_accel_choice tcg = { .accel = HM_ACCEL_TCG };
		if (hm_rest_parse_create(body, &c, &err) < 0 ||
		    hm_instance_create_check(&c, "/tmp", &tcg, &err) < 0)
			refused(err);
	} else if (strcmp(r->pattern, "/instances/{id}/volumes/{volumeId}") == 0 &&
	           strcmp(r->method, "POST") == 0) {
		struct hm_attach a = { .volume = "v" };
		if (hm_rest_parse_attach(body, &a, &err) < 0)
			refused(err);
	} else if (strncmp(r->pattern, "/v1/", 4) == 0 && !strchr(r->pattern, '{') &&
	           strcmp(r->method, "POST") != 0) {
		struct ukc_ref *refs = NULL;
		size_t n = 0;
		if (ukc_body_refs(body, &refs, &n, &err) < 0)
			refused(err);
		else if (n > UKC_MAX_REFS)
			abort();
		for (size_t i = 0; i < n; i++)
			if (!refs[i].uuid == !refs[i].name)
				abort(); /* exactly one of them */
		free(refs);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!nbody)
		collect();
	if (size < 1)
		return 0;
	const struct hm_route *r = body_routes[data[0] % nbody];
	json_error_t jerr;
	json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
	if (!body)
		return 0;
	struct hm_err *err = NULL;
	if (hm_body_fields_check(r->method, r->pattern, body, &err) < 0)
		refused(err);
	else
		route_reader(r, body);
	json_decref(body);
	return 0;
}
