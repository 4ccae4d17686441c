/*
 * OCI and Docker schema2 manifests, indexes (manifest lists) and image
 * configs: parsed, validated and bounded. Nothing here does I/O.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hm_err;

#define HM_MAX_LAYERS 512
#define HM_CONFIG_MAX (8u << 20)

struct hm_oci_layer {
	char *digest;
	int64_t size;
	char *media_type;
};

struct hm_oci_manifest {
	char *config_digest;
	int64_t config_size;
	struct hm_oci_layer *layers;
	size_t nlayers;
	int64_t total_size; /* sum of layer sizes */
};

/* Whether `body` (served as `media_type`) is an index / manifest list. */
bool hm_manifest_is_index(const char *media_type, const char *body, size_t len);

/*
 * Pick the manifest for `platform` ("os/arch[/variant]") from an index.
 * No match: HM_ERR_NOT_FOUND naming the platforms that are there.
 */
int hm_index_select(const char *body, size_t len, const char *platform, char **ret_digest,
                    struct hm_err **err);

int hm_manifest_parse(const char *body, size_t len, struct hm_oci_manifest *ret,
                      struct hm_err **err);
void hm_manifest_done(struct hm_oci_manifest *m);

/*
 * The parts of an image config a VM needs, as the API shows them:
 * {"entrypoint": [..]|null, "cmd": [..]|null, "env": {K: V}, "working_dir":
 * ".."|null, "user": ".."|null, "platform": "os/arch[/variant]"}.
 */
int hm_image_config_parse(const char *body, size_t len, json_t **ret, struct hm_err **err);

/* "linux/amd64", "linux/arm64/v8": lowercase os/arch[/variant]. */
bool hm_platform_valid(const char *platform);
/* The host's platform in OCI terms, e.g. "linux/amd64". */
const char *hm_platform_host(void);
