/*
 * The image service: the domain behind /images. It owns the images table
 * rows' life cycle, the pull queue and its worker threads, the blob cache
 * ($DATA_DIR/blobs/sha256/<hex>, shared by all images) and the converted
 * disks ($DATA_DIR/images/<digest hex>/{rootfs.erofs|rootfs.ext4,config.json}).
 *
 *   pending -> pulling -> converting -> ready
 *                     \-> failed (error says why; nothing half-made is kept)
 *
 * A disk belongs to a manifest digest, so two names for one image share
 * it, and pulling an image again (or twice at once) converts it once.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "image/registry.h"

struct hm_err;
struct hm_store;
struct hm_images;

struct hm_images_opts {
	const char *data_dir;
	const char *unpack_helper; /* path of hypeman-unpack */
	const char *insecure;      /* extra plain-HTTP registries */
	int workers;               /* concurrent pulls; default 2 */
	long stall_timeout_s;      /* registry transfer stall limit */
	const char *disk_format;   /* "erofs" (default) or "ext4" */
};

int hm_images_start(struct hm_store *st, const struct hm_images_opts *opts, struct hm_images **ret,
                    struct hm_err **err);
/* Stop the workers (an in-flight pull is abandoned and re-queued at the next start). */
void hm_images_stop(struct hm_images *im);

struct hm_image_request {
	const char *name;
	const char *platform; /* NULL: the host's */
	struct hm_registry_creds creds;
	json_t *tags; /* borrowed; NULL: none */
};

/*
 * Queue a pull, or return the image when it is already ready or in
 * flight. *ret is the API's Image object.
 */
int hm_images_create(struct hm_images *im, const struct hm_image_request *req, json_t **ret,
                     struct hm_err **err);
int hm_images_get(struct hm_images *im, const char *name, json_t **ret, struct hm_err **err);
int hm_images_list(struct hm_images *im, json_t *tag_filter, json_t **ret, struct hm_err **err);
int hm_images_delete(struct hm_images *im, const char *name, struct hm_err **err);
/* POST /images/{name}/tag {target}: `target` (a reference with a tag) becomes a
 * local name for the ready image `name`'s content, without a pull; a target
 * that named other content moves. *ret: the target's Image. */
int hm_images_tag(struct hm_images *im, const char *name, const char *target, json_t **ret,
                  struct hm_err **err);

/*
 * Import an image from an OCI image layout directory or a `docker save`
 * tarball at `path` (synchronously). `name` overrides the reference the
 * archive carries. *ret is the Image object (ready).
 */
int hm_images_import(struct hm_images *im, const char *path, const char *name, json_t *tags,
                     json_t **ret, struct hm_err **err);

/* What the instance side needs from a ready image. */
struct hm_image_info {
	char *name;
	char *digest;
	char *disk_path; /* read-only root disk */
	char *disk_format;
	json_t *config; /* entrypoint, cmd, env, working_dir, user, platform */
};
int hm_images_resolve(struct hm_images *im, const char *name, struct hm_image_info *ret,
                      struct hm_err **err);
void hm_image_info_done(struct hm_image_info *info);
/*
 * hm_images_resolve, pulling the image first when it is not here (or failed
 * before, or is being pulled), as upstream's create does: waits up to
 * timeout_ms for the pull. A failed pull is the error, with the pull's
 * message (404 when the registry has no such image, else 503); a pull still
 * running at the deadline is a 504 and goes on.
 */
int hm_images_ensure(struct hm_images *im, const char *name, long timeout_ms,
                     struct hm_image_info *ret, struct hm_err **err);
