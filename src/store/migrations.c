/*
 * migrations: the SQL that builds the schema, one step per array entry.
 */
#include "store/migrations.h"

const char *const hm_migrations[] = {
	/* 1: installation facts */
	"CREATE TABLE meta ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value TEXT NOT NULL"
	") STRICT;",
};

const size_t hm_migrations_count = sizeof(hm_migrations) / sizeof(hm_migrations[0]);
