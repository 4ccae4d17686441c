/*
 * Schema migrations, oldest first. Migration i (1-based) moves the schema
 * from version i-1 to i. Never edit a released migration: add a new one.
 */
#pragma once

#include <stddef.h>

extern const char *const hm_migrations[];
extern const size_t hm_migrations_count;
