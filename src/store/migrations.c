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
	/* 3: instances. `spec` is the JSON of what was asked for (sizes, env,
	 * argv overrides, tags); the rest is lifecycle the daemon must remember
	 * across restarts. Live state is never stored: it is derived. */
	"CREATE TABLE instances ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL UNIQUE,"
	"  image TEXT NOT NULL,"
	"  image_digest TEXT NOT NULL,"
	"  spec TEXT NOT NULL,"
	"  phase TEXT NOT NULL,"
	"  vmm_pid INTEGER,"
	"  exit_code INTEGER,"
	"  exit_message TEXT,"
	"  created_at TEXT NOT NULL,"
	"  started_at TEXT,"
	"  stopped_at TEXT"
	") STRICT;",
	/* 4: ingresses: `spec` is the validated rules and tags as JSON. */
	"CREATE TABLE ingresses ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL UNIQUE,"
	"  spec TEXT NOT NULL,"
	"  created_at TEXT NOT NULL"
	") STRICT;",
	/* 5: volumes: persistent disks that outlive instances. */
	"CREATE TABLE volumes ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL UNIQUE,"
	"  size_gb INTEGER NOT NULL,"
	"  tags TEXT NOT NULL DEFAULT '{}',"
	"  created_at TEXT NOT NULL"
	") STRICT;",
	/* 6: snapshots: immutable captures of an instance that outlive it. `meta`
	 * holds what bringing one back needs (image, spec, payload facts). */
	"CREATE TABLE snapshots ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT,"
	"  kind TEXT NOT NULL,"
	"  source_id TEXT NOT NULL,"
	"  source_name TEXT NOT NULL,"
	"  tags TEXT NOT NULL DEFAULT '{}',"
	"  meta TEXT NOT NULL,"
	"  created_at TEXT NOT NULL"
	") STRICT;"
	"CREATE UNIQUE INDEX snapshots_name ON snapshots(source_id, name);",
	/* 7: the hypervisor runtime an instance (and a snapshot's source) was made
	 * on, as asked for (`qemu`, `qemu-microvm`): adoption and restore check
	 * that this daemon's backend runs it. Rows from before ran QEMU's microvm. */
	"ALTER TABLE instances ADD COLUMN hypervisor TEXT NOT NULL DEFAULT 'qemu-microvm';"
	"ALTER TABLE snapshots ADD COLUMN hypervisor TEXT NOT NULL DEFAULT 'qemu-microvm';",
	/* 8: attachments, one row per volume an instance has, so that the database
	 * itself refuses to delete a volume still attached (and an instance's go
	 * with it). The instance's spec keeps the boot order; this mirrors it, and
	 * is filled from the specs of the instances that exist. */
	"CREATE TABLE attachments ("
	"  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,"
	"  volume_id TEXT NOT NULL REFERENCES volumes(id),"
	"  mount_path TEXT NOT NULL,"
	"  readonly INTEGER NOT NULL,"
	"  PRIMARY KEY (instance_id, volume_id)"
	") STRICT;"
	"CREATE INDEX attachments_by_volume ON attachments(volume_id);"
	"INSERT OR IGNORE INTO attachments(instance_id, volume_id, mount_path, readonly)"
	"  SELECT i.id, json_extract(v.value, '$.id'), json_extract(v.value, '$.mount_path'),"
	"         CASE WHEN json_extract(v.value, '$.readonly') THEN 1 ELSE 0 END"
	"  FROM instances i, json_each(i.spec, '$.volumes') v"
	"  WHERE json_extract(v.value, '$.id') IN (SELECT id FROM volumes);",
	/* 9: a UUID per instance (RFC 4122, random: version 4), its identity in the
	 * Unikraft Cloud API. Rows from before get one here. */
	"ALTER TABLE instances ADD COLUMN uuid TEXT;"
	"UPDATE instances SET uuid = lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))"
	"  || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'"
	"  || substr('89ab', 1 + abs(random() % 4), 1) || substr(lower(hex(randomblob(2))), 2)"
	"  || '-' || lower(hex(randomblob(6)));"
	"CREATE UNIQUE INDEX instances_uuid ON instances(uuid);",
	/* 10: how each instance's VM last stopped (a bitmask of who and how:
	 * store/instances.h), and how often it was started and restarted by its
	 * restart policy. */
	"ALTER TABLE instances ADD COLUMN stop_reason INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE instances ADD COLUMN start_count INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE instances ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;",
	/* 11: volumes get a UUID (their identity in the Unikraft Cloud API, as
	 * instances' in 9) and a size in MiB (UKC sizes volumes in MiB; size_gb
	 * stays, rounded up, for the rows' readers before). */
	"ALTER TABLE volumes ADD COLUMN uuid TEXT;"
	"UPDATE volumes SET uuid = lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))"
	"  || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'"
	"  || substr('89ab', 1 + abs(random() % 4), 1) || substr(lower(hex(randomblob(2))), 2)"
	"  || '-' || lower(hex(randomblob(6)));"
	"CREATE UNIQUE INDEX volumes_uuid ON volumes(uuid);"
	"ALTER TABLE volumes ADD COLUMN size_mb INTEGER NOT NULL DEFAULT 0;"
	"UPDATE volumes SET size_mb = size_gb * 1024;",
	/* 12: snapshots get a UUID too: they are the Unikraft Cloud API's
	 * checkpoints, named by uuid there. */
	"ALTER TABLE snapshots ADD COLUMN uuid TEXT;"
	"UPDATE snapshots SET uuid = lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))"
	"  || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'"
	"  || substr('89ab', 1 + abs(random() % 4), 1) || substr(lower(hex(randomblob(2))), 2)"
	"  || '-' || lower(hex(randomblob(6)));"
	"CREATE UNIQUE INDEX snapshots_uuid ON snapshots(uuid);",
	/* 13: the Unikraft Cloud API's service groups: published ports with
	 * their handlers, domains, limits and member instances (spec, JSON),
	 * routed by ingress/ as the ingresses are. The id is the group's UUID. */
	"CREATE TABLE service_groups ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL UNIQUE,"
	"  spec TEXT NOT NULL,"
	"  created_at TEXT NOT NULL"
	") STRICT;",
};

const size_t hm_migrations_count = sizeof(hm_migrations) / sizeof(hm_migrations[0]);
