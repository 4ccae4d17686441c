/*
 * Volumes: persistent ext4 disks that outlive instances, as upstream's
 * /volumes. This module owns volumes/<id>/data.ext4 under the data dir
 * and the volumes table rows. A volume is made in volumes/tmp/ and renamed
 * into place, so a failed create leaves nothing; from an archive, the
 * tar.gz is unpacked (sizes bounded by size_gb, unsafe paths and special
 * files refused) into a scratch directory that mkfs.ext4 -d copies in.
 * The domain speaks hm_volume_create and hm_volume_view; each API dialect
 * parses and renders its own (api/h_volumes.c, api/ukc_volumes.c).
 * Instances attach volumes at create (instance/instances.c checks and
 * records the attachment in the instance's spec); a volume's attachments
 * are read from there, and an attached volume cannot be deleted (409).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct hm_config;
struct hm_err;
struct hm_store;
struct hm_volumes;

/* The disk of volume `id` (an owned string): DATA_DIR/volumes/<id>/data.ext4. */
char *hm_volume_disk(const char *data_dir, const char *id);

int hm_volumes_open(struct hm_store *st, const struct hm_config *cfg, struct hm_volumes **ret,
                    struct hm_err **err);
void hm_volumes_close(struct hm_volumes *v);

/* Where a volume is attached: to which instance, at what path, how. */
struct hm_volume_mount {
	char *instance_id, *instance_uuid, *instance_name;
	char *mount_path;
	bool readonly;
};

/* A volume as the domain shows it, whichever dialect renders it. Owned. */
struct hm_volume_view {
	char *id, *uuid, *name, *created_at;
	int64_t size_bytes; /* a whole number of MiB */
	json_t *tags;       /* {k: "v"} */
	struct hm_volume_mount *mounts;
	size_t nmounts;
};
void hm_volume_view_free(struct hm_volume_view *v);
void hm_volume_views_free(struct hm_volume_view *v, size_t n);

/* The sizes a volume may have. */
#define HM_VOLUME_MIN_BYTES (1LL << 20)
#define HM_VOLUME_MAX_BYTES (2048LL << 30)

/* What a create asks for; each dialect fills it from its own request. */
struct hm_volume_create {
	const char *name;       /* required; a name (core/names) */
	const char *id;         /* NULL: one is made up */
	int64_t size_bytes;     /* a whole number of MiB, HM_VOLUME_MIN_BYTES..MAX_BYTES */
	json_t *tags;           /* borrowed {k: "v"}; NULL: none */
	const char *archive;    /* a tar or tar.gz to fill it from (at most its size), or NULL */
	const char *size_field; /* how the dialect calls the size, for messages ("size_gb") */
};

/* Build the volume (an empty ext4 disk, or the archive's files). 400 for a
 * bad request, 409 for a taken name or id, 507 when the data dir lacks room. */
int hm_volumes_create(struct hm_volumes *v, const struct hm_volume_create *c,
                      struct hm_volume_view **ret, struct hm_err **err);
/* By id, uuid, name or unique id prefix. */
int hm_volumes_get(struct hm_volumes *v, const char *key, struct hm_volume_view **ret,
                   struct hm_err **err);
/* All, oldest first; with tags, those whose tags include all of them. */
int hm_volumes_list(struct hm_volumes *v, json_t *tags, struct hm_volume_view **ret, size_t *n,
                    struct hm_err **err);
/* An attached volume is a 409 in_use. */
int hm_volumes_delete(struct hm_volumes *v, const char *key, struct hm_err **err);
