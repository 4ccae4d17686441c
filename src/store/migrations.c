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
	/* 2: images, keyed by normalized reference */
	"CREATE TABLE images ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  digest TEXT NOT NULL DEFAULT '',"
	"  platform TEXT,"
	"  status TEXT NOT NULL,"
	"  error TEXT,"
	"  size_bytes INTEGER,"
	"  config TEXT,"
	"  tags TEXT NOT NULL DEFAULT '{}',"
	"  created_at TEXT NOT NULL,"
	"  updated_at TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX images_digest ON images(digest);",
};

const size_t hm_migrations_count = sizeof(hm_migrations) / sizeof(hm_migrations[0]);
