/*
 * Fuzz target: what a registry sends (src/image/manifest.c): image
 * manifests, indexes and the platform choice among them, image configs.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "image/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct hm_err *err = NULL;
	struct hm_oci_manifest m = { 0 };
	if (hm_manifest_parse(body, size, &m, &err) == 0)
		hm_manifest_done(&m);
	hm_err_free(err);
	err = NULL;
	(void)hm_manifest_is_index("application/vnd.oci.image.index.v1+json", body, size);
	(void)hm_manifest_is_index(NULL, body, size);
	char *digest = NULL;
	if (hm_index_select(body, size, "linux/amd64", &digest, &err) == 0)
		free(digest);
	hm_err_free(err);
	err = NULL;
	json_t *cfg = NULL;
	if (hm_image_config_parse(body, size, &cfg, &err) == 0)
		json_decref(cfg);
	hm_err_free(err);
	return 0;
}
