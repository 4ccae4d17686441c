/*
 * Request body fields against our OpenAPI document: the document is the one
 * list of what each body may hold, so a field we do not honour cannot be
 * accepted and ignored. A key the route's schema does not list is a 400
 * unknown_field; a key the schema lists under `x-refused` (an upstream field
 * not built yet, with the reason) is a 400 unsupported_field unless its value
 * is its default (null, false, "", 0, or an empty or all-default object or
 * array). Objects are checked where their schema lists `properties`, arrays
 * element by element; maps (`additionalProperties` only) hold any keys. A
 * `oneOf` is checked against the alternative whose `type` matches the value
 * (a body that may be one item or an array of them, a string or an object). A
 * schema of no properties, or a route that documents no body, takes an
 * empty object at most.
 */
#pragma once

#include <jansson.h>

struct hm_err;

/* Check body against the requestBody schema of `method pattern` in the spec. */
int hm_body_fields_check(const char *method, const char *pattern, json_t *body,
                         struct hm_err **err);

/* The requestBody schema of `method pattern` (borrowed), or NULL when it has none. */
json_t *hm_body_schema(const char *method, const char *pattern);
