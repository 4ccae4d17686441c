/*
 * core/json_cleanup: a cleanup attribute for jansson references, so that a
 * json_t held for a scope is released however the scope ends.
 */
#pragma once

#include <jansson.h>

#include "core/cleanup.h"

static inline void hm_json_decrefp(json_t **p)
{
	json_decref(*p);
}
#define _cleanup_json_ _cleanup_(hm_json_decrefp)
