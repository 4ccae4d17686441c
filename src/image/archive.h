/*
 * Offline images: read an image out of a tarball holding an OCI image
 * layout (`skopeo copy ... oci-archive:`, `docker save` since Docker 25)
 * or the classic `docker save` format (manifest.json + <id>/layer.tar),
 * verifying every blob and copying it into the blob cache. Member names
 * are resolved inside the archive's own namespace (symlinks included), so
 * an archive can never make us read a host file.
 */
#pragma once

#include <stddef.h>

struct hm_err;

struct hm_archive_image {
	char *name;    /* the reference the archive carries, or NULL */
	char *digest;  /* manifest digest (computed for the classic docker format) */
	char *config;  /* config blob, NUL-terminated */
	char **layers; /* layer digests, lowest first, now in the cache */
	size_t nlayers;
};

/*
 * Read the image for `platform` from the tarball at `path` (optionally
 * gzip-compressed). `want_name` picks one of several images in an OCI
 * layout (by its ref.name annotation); NULL takes the only one. Blobs are
 * written to `blobs_dir/<hex>`. Bad archives are HM_ERR_INVALID.
 */
int hm_archive_read(const char *path, const char *platform, const char *want_name,
                    const char *blobs_dir, struct hm_archive_image *ret, struct hm_err **err);
void hm_archive_image_done(struct hm_archive_image *img);
