/*
 * A client for the OCI distribution API (what docker.io, ghcr.io and
 * Debian's docker-registry speak), pull side only. One hm_registry serves
 * one repository for one pull: it remembers the bearer token it earned
 * from the registry's WWW-Authenticate challenge and may be used from
 * several threads at once (parallel layer downloads).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hm_err;
struct hm_image_ref;
struct hm_registry;

/* Borrowed for one pull; never stored or logged. */
struct hm_registry_creds {
	const char *username;
	const char *password;
	const char *token; /* a ready bearer token: used as is */
};

struct hm_registry_opts {
	const char *insecure;       /* comma list of plain-HTTP registries besides loopback */
	long connect_timeout_s;     /* default 15 */
	long stall_timeout_s;       /* abort a transfer making no progress this long; default 30 */
	int attempts;               /* tries per request on network errors and 5xx; default 4 */
	long backoff_ms;            /* first retry delay, doubled each time; default 250 */
	const _Atomic bool *cancel; /* when it turns true, transfers stop (HM_ERR_UNAVAILABLE) */
};

#define HM_MANIFEST_MAX (4u << 20)

/* Progress of a blob download: bytes so far for this blob. */
typedef void hm_blob_progress_fn(void *userdata, uint64_t bytes);

int hm_registry_open(const struct hm_image_ref *ref, const struct hm_registry_creds *creds,
                     const struct hm_registry_opts *opts, struct hm_registry **ret,
                     struct hm_err **err);
void hm_registry_close(struct hm_registry *r);

/*
 * Fetch the manifest (or index) named by `reference` (a tag or a digest).
 * Sets *body and *len (owned, NUL-terminated), *media_type (owned) and
 * *digest: the sha256 of the bytes received, which must equal `reference`
 * when that is a digest. Unknown repository or tag: HM_ERR_NOT_FOUND.
 */
int hm_registry_manifest(struct hm_registry *r, const char *reference, char **body, size_t *len,
                         char **media_type, char **digest, struct hm_err **err);

/*
 * Download blob `digest` into `dest` (written to a temporary file next to
 * it, verified against the digest while it streams, fsynced and renamed
 * into place). `expected_size` < 0 means unknown.
 */
int hm_registry_blob(struct hm_registry *r, const char *digest, int64_t expected_size,
                     const char *dest, hm_blob_progress_fn *progress, void *userdata,
                     struct hm_err **err);
