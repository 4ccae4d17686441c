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
#include <stddef.h>
#include <stdint.h>

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

enum hm_image_status {
	HM_IMAGE_PENDING,
	HM_IMAGE_PULLING,
	HM_IMAGE_CONVERTING,
	HM_IMAGE_READY,
	HM_IMAGE_FAILED,
};
/* "pending", "pulling", "converting", "ready", "failed". */
const char *hm_image_status_name(enum hm_image_status s);

/* An image as the domain shows it, whichever dialect renders it. Owned. */
struct hm_image_view {
	char *name, *digest; /* digest: "" until resolved */
	char *platform;      /* or NULL */
	enum hm_image_status status;
	char *error;        /* failed: why; else NULL */
	int64_t size_bytes; /* -1: unknown */
	int queue_position; /* -1: not queued */
	bool in_flight;     /* a pull is under way: progress says how far */
	struct {
		int layers_done, layers_total;
		int64_t bytes_done, bytes_total;
	} progress;
	json_t *config; /* {entrypoint, cmd, working_dir, env, ...}: the image's (never NULL) */
	json_t *tags;   /* {k: "v"} (never NULL) */
	char *created_at;
};
void hm_image_view_free(struct hm_image_view *v);
void hm_image_views_free(struct hm_image_view *v, size_t n);

/* Queue a pull, or return the image when it is already ready or in flight. */
int hm_images_create(struct hm_images *im, const struct hm_image_request *req,
                     struct hm_image_view **ret, struct hm_err **err);
int hm_images_get(struct hm_images *im, const char *name, struct hm_image_view **ret,
                  struct hm_err **err);
/* With tag_filter ({k: v}), those whose tags include it. */
int hm_images_list(struct hm_images *im, json_t *tag_filter, struct hm_image_view **ret, size_t *n,
                   struct hm_err **err);
int hm_images_delete(struct hm_images *im, const char *name, struct hm_err **err);
/*
 * hm_images_create, then wait up to timeout_ms for the pull to end, as a
 * create of an instance does (hm_images_ensure): *ret is the ready image. A
 * failed pull is the error (404 when the registry has no such image, else
 * 503); one still running at the deadline is a 504, and goes on.
 */
int hm_images_pull(struct hm_images *im, const struct hm_image_request *req, long timeout_ms,
                   struct hm_image_view **ret, struct hm_err **err);
/* POST /images/{name}/tag {target}: `target` (a reference with a tag) becomes a
 * local name for the ready image `name`'s content, without a pull; a target
 * that named other content moves. *ret: the target's view. */
int hm_images_tag(struct hm_images *im, const char *name, const char *target,
                  struct hm_image_view **ret, struct hm_err **err);

/*
 * Import an image from an OCI image layout directory or a `docker save`
 * tarball at `path` (synchronously). `name` overrides the reference the
 * archive carries. *ret is the image (ready).
 */
int hm_images_import(struct hm_images *im, const char *path, const char *name, json_t *tags,
                     struct hm_image_view **ret, struct hm_err **err);

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
