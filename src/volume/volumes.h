/*
 * Volumes: persistent ext4 disks that outlive instances, as upstream's
 * /volumes. This module owns volumes/<id>/data.ext4 under the data dir
 * and the volumes table rows. A volume is made in volumes/tmp/ and renamed
 * into place, so a failed create leaves nothing; from an archive, the
 * tar.gz is unpacked (sizes bounded by size_gb, unsafe paths and special
 * files refused) into a scratch directory that mkfs.ext4 -d copies in.
 * Instances attach volumes at create (instance/instances.c checks and
 * records the attachment in the instance's spec); a volume's attachments
 * are read from there, and an attached volume cannot be deleted (409).
 */
#pragma once

#include <jansson.h>

struct hm_config;
struct hm_err;
struct hm_store;
struct hm_volumes;

/* The disk of volume `id` (an owned string): DATA_DIR/volumes/<id>/data.ext4. */
char *hm_volume_disk(const char *data_dir, const char *id);

int hm_volumes_open(struct hm_store *st, const struct hm_config *cfg, struct hm_volumes **ret,
                    struct hm_err **err);
void hm_volumes_close(struct hm_volumes *v);

/* POST /volumes {name, size_gb, id?, tags?}. */
int hm_volumes_create(struct hm_volumes *v, json_t *req, json_t **ret, struct hm_err **err);
/* POST /volumes/from-archive: name, size_gb, id, tags from the query; the archive at path. */
int hm_volumes_create_from_archive(struct hm_volumes *v, const char *name, const char *size_gb,
                                   const char *id, json_t *tags, const char *archive, json_t **ret,
                                   struct hm_err **err);
int hm_volumes_get(struct hm_volumes *v, const char *key, json_t **ret, struct hm_err **err);
int hm_volumes_list(struct hm_volumes *v, json_t *tags, json_t **ret, struct hm_err **err);
int hm_volumes_delete(struct hm_volumes *v, const char *key, struct hm_err **err);
