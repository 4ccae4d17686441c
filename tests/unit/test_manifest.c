/*
 * Tests for image/manifest: index platform selection, manifest validation
 * (digests, sizes, media types, schema version), image config decoding,
 * and the platform grammar.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "image/manifest.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static const char INDEX[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":["
    "{\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
    "\"variant\":\"v8\"}},"
    "{\"digest\":\"" D2 "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}"
    "]}";

static void test_index_select(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	char *d = NULL;
	assert_true(hm_manifest_is_index(NULL, INDEX, strlen(INDEX)));
	assert_int_equal(hm_index_select(INDEX, strlen(INDEX), "linux/amd64", &d, &err), 0);
	assert_string_equal(d, D2);
	free(d);
	/* arm64 matches the v8 variant entry */
	assert_int_equal(hm_index_select(INDEX, strlen(INDEX), "linux/arm64", &d, &err), 0);
	assert_string_equal(d, D1);
	free(d);
	assert_int_equal(hm_index_select(INDEX, strlen(INDEX), "linux/s390x", &d, &err), -1);
	assert_int_equal(err->kind, HM_ERR_NOT_FOUND);
	assert_non_null(strstr(err->msg, "linux/arm64/v8, linux/amd64"));
	hm_err_free(err);
}

static const char MANIFEST[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
    "\",\"size\":100},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2
    "\",\"size\":10},"
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D3
    "\",\"size\":20}]}";

static void test_manifest_parse(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	struct hm_oci_manifest m;
	assert_false(hm_manifest_is_index(NULL, MANIFEST, strlen(MANIFEST)));
	assert_int_equal(hm_manifest_parse(MANIFEST, strlen(MANIFEST), &m, &err), 0);
	assert_string_equal(m.config_digest, D1);
	assert_int_equal(m.nlayers, 2);
	assert_string_equal(m.layers[1].digest, D3);
	assert_int_equal(m.total_size, 30);
	hm_manifest_done(&m);
}

static void expect_bad(const char *json, const char *needle)
{
	struct hm_err *err = NULL;
	struct hm_oci_manifest m;
	assert_int_equal(hm_manifest_parse(json, strlen(json), &m, &err), -1);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	if (!strstr(err->msg, needle))
		fail_msg("message `%s` lacks `%s`", err->msg, needle);
	hm_err_free(err);
}

static void test_manifest_bad(void **state)
{
	(void)state;
	expect_bad("[", "not valid JSON");
	expect_bad("{\"schemaVersion\":1}", "schema 1");
	expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:12\",\"size\":1},"
	           "\"layers\":[]}",
	           "config descriptor");
	expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},"
	           "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
	           "\"digest\":\"" D2 "\",\"size\":-5}]}",
	           "invalid digest or size");
	expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},"
	           "\"layers\":[{\"mediaType\":\"application/x-evil\",\"digest\":\"" D2
	           "\",\"size\":5}]}",
	           "unsupported media type `application/x-evil`");
	expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1}}",
	           "missing layers");
}

static void test_config(void **state)
{
	(void)state;
	const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
	                  "\"Env\":[\"PATH=/bin\",\"A=b=c\",\"broken\",\"=x\"],"
	                  "\"Cmd\":[\"/bin/sh\",\"-c\",\"echo\"],\"WorkingDir\":\"/app\","
	                  "\"User\":\"1000:1000\"}}";
	struct hm_err *err = NULL;
	json_t *j = NULL;
	assert_int_equal(hm_image_config_parse(cfg, strlen(cfg), &j, &err), 0);
	assert_true(json_is_null(json_object_get(j, "entrypoint")));
	assert_int_equal(json_array_size(json_object_get(j, "cmd")), 3);
	json_t *env = json_object_get(j, "env");
	assert_int_equal(json_object_size(env), 2);
	assert_string_equal(json_string_value(json_object_get(env, "A")), "b=c");
	assert_string_equal(json_string_value(json_object_get(j, "working_dir")), "/app");
	assert_string_equal(json_string_value(json_object_get(j, "user")), "1000:1000");
	assert_string_equal(json_string_value(json_object_get(j, "platform")), "linux/amd64");
	json_decref(j);
	assert_int_equal(hm_image_config_parse("[1]", 3, &j, &err), -1);
	hm_err_free(err);
}

static void test_platform(void **state)
{
	(void)state;
	assert_true(hm_platform_valid("linux/amd64"));
	assert_true(hm_platform_valid("linux/arm64/v8"));
	assert_false(hm_platform_valid("linux"));
	assert_false(hm_platform_valid("linux/"));
	assert_false(hm_platform_valid("Linux/amd64"));
	assert_false(hm_platform_valid("linux/amd64/v1/x"));
	assert_false(hm_platform_valid("/amd64"));
	assert_string_equal(hm_platform_host(), "linux/amd64");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_select), cmocka_unit_test(test_manifest_parse),
		cmocka_unit_test(test_manifest_bad), cmocka_unit_test(test_config),
		cmocka_unit_test(test_platform),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
