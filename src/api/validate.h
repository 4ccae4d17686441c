/*
 * Checks on request bodies shared by the handlers: each names the field
 * that is wrong, so a client sees `name must be a string`, not `bad request`.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct hm_err;

/* The body must be a JSON object. */
int hm_body_object(json_t *body, struct hm_err **err);

/*
 * body[key] as a string of at most `max` bytes. Absent or null: *ret = NULL,
 * an error only if `required`. Wrong type or too long: HM_ERR_INVALID.
 */
int hm_body_string(json_t *body, const char *key, bool required, size_t max, const char **ret,
                   struct hm_err **err);

/* body[key] as an object (or absent/null -> *ret = NULL). */
int hm_body_object_field(json_t *body, const char *key, json_t **ret, struct hm_err **err);

/* Gather deepObject query parameters `prefix[key]=value` into an object (NULL when none). */
struct hm_req;
json_t *hm_query_deep_object(const struct hm_req *req, const char *prefix);
