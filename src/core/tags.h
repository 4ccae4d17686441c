/*
 * User tags (the API's `tags` object on images, instances, volumes...):
 * at most 50 entries, keys 1-128 and values 0-256 characters from
 * [A-Za-z0-9 _.:/=+@-]. Filters are AND-ed key=value matches.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct hm_err;

#define HM_TAGS_MAX 50

/* Validate a tags object; failures are HM_ERR_INVALID "invalid_tags" naming the bad entry. */
int hm_tags_validate(json_t *tags, struct hm_err **err);
/* Does `tags` contain every key=value of `filter`? (NULL filter: yes) */
bool hm_tags_match(json_t *tags, json_t *filter);
