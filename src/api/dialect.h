/*
 * API dialects: each API the daemon speaks over the one engine (the Hypeman
 * API at the root; the Unikraft Cloud API under /v1, api/ukc_*.c) is a
 * path prefix, its own route table, and its own error shape. The edge
 * (http.c) picks the dialect from the path before routing, so that even a
 * 404 or a 401 inside a dialect's prefix answers in that dialect's shape.
 */
#pragma once

#include <stddef.h>

struct hm_err;
struct hm_req;
struct hm_resp;
struct hm_route;

struct hm_dialect {
	const char *name;   /* "hypeman" */
	const char *prefix; /* "" for the root, else "/v1": a whole leading segment */
	const struct hm_route *routes;
	const size_t *nroutes;
	/* Fill resp for err, in this dialect's shape and status. */
	void (*render_error)(struct hm_resp *resp, const struct hm_err *err);
	/* Optional: the last touch on every response of the dialect, errors
	 * included, just before it is sent; elapsed_us is the request's time so
	 * far (the Unikraft Cloud envelope's op_time_us). */
	void (*finish)(struct hm_resp *resp, double elapsed_us);
};

/* The dialects served, the root one last (api/routes.c). */
extern const struct hm_dialect *const hm_dialects[];
extern const size_t hm_dialects_count;

/* The Hypeman API: {code,message} errors, at the root. */
extern const struct hm_dialect hm_dialect_hypeman;
/* The Unikraft Cloud API: the {status,data,...} envelope, under /v1 (api/ukc_routes.c). */
extern const struct hm_dialect hm_dialect_ukc;

/*
 * The dialect whose prefix the raw path starts with, as a whole segment
 * ("/v1" takes "/v1" and "/v1/x", not "/v10"); the first that matches in
 * list order, so a root dialect ("") goes last. NULL when none does.
 */
const struct hm_dialect *hm_dialect_pick(const struct hm_dialect *const *list, size_t n,
                                         const char *path);
