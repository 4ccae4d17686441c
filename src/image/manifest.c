/*
 * manifest: decoding of the distribution JSON documents. Every field that
 * later code relies on is checked here (digests well formed, sizes
 * non-negative, layer media types ones we can unpack), so a hostile
 * registry can only make a pull fail, never misbehave.
 */
#include "image/manifest.h"

#include <string.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "image/ref.h"

bool hm_manifest_is_index(const char *media_type, const char *body, size_t len)
{
	if (media_type &&
	    (strcmp(media_type, "application/vnd.oci.image.index.v1+json") == 0 ||
	     strcmp(media_type, "application/vnd.docker.distribution.manifest.list.v2+json") == 0))
		return true;
	json_t *j = json_loadb(body, len, 0, NULL);
	bool idx =
	    j && json_is_array(json_object_get(j, "manifests")) && !json_object_get(j, "layers");
	json_decref(j);
	return idx;
}

bool hm_platform_valid(const char *p)
{
	if (!p || strlen(p) > 64)
		return false;
	int parts = 1;
	size_t seg = 0;
	for (const char *c = p; *c; c++) {
		if (*c == '/') {
			if (seg == 0)
				return false;
			parts++;
			seg = 0;
			continue;
		}
		bool ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		          (parts == 3 && *c == '.');
		if (!ok)
			return false;
		seg++;
	}
	return seg > 0 && (parts == 2 || parts == 3);
}

const char *hm_platform_host(void)
{
#if defined(__x86_64__)
	return "linux/amd64";
#elif defined(__aarch64__)
	return "linux/arm64";
#else
	return "linux/unknown";
#endif
}

static char *platform_of(json_t *p)
{
	const char *os = json_string_value(json_object_get(p, "os"));
	const char *arch = json_string_value(json_object_get(p, "architecture"));
	const char *var = json_string_value(json_object_get(p, "variant"));
	if (!os || !arch)
		return NULL;
	return var && *var ? xasprintf("%s/%s/%s", os, arch, var) : xasprintf("%s/%s", os, arch);
}

int hm_index_select(const char *body, size_t len, const char *platform, char **ret_digest,
                    struct hm_err **err)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!j)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_manifest",
		                  "image index is not valid JSON: %s", jerr.text);
	json_t *list = json_object_get(j, "manifests");
	size_t i;
	json_t *m;
	char *best = NULL;
	_cleanup_free_ char *seen = xstrdup("");
	/* "linux/arm64" matches "linux/arm64/v8"; an exact variant match wins. */
	size_t plen = strlen(platform);
	json_array_foreach (list, i, m) {
		const char *d = json_string_value(json_object_get(m, "digest"));
		_cleanup_free_ char *p = platform_of(json_object_get(m, "platform"));
		if (!d || !hm_digest_valid(d) || !p)
			continue;
		char *s2 = xasprintf("%s%s%s", seen, *seen ? ", " : "", p);
		free(seen);
		seen = s2;
		if (strcmp(p, platform) == 0) {
			free(best);
			best = xstrdup(d);
			break;
		}
		if (!best && strncmp(p, platform, plen) == 0 && p[plen] == '/')
			best = xstrdup(d);
	}
	json_decref(j);
	if (!best)
		return hm_err_set(err, HM_ERR_NOT_FOUND, "platform_not_found",
		                  "platform %s not available (image has: %s)", platform,
		                  *seen ? seen : "none");
	*ret_digest = best;
	return 0;
}

static bool layer_type_ok(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(mt, ok[i]) == 0)
			return true;
	return false;
}

void hm_manifest_done(struct hm_oci_manifest *m)
{
	free(m->config_digest);
	for (size_t i = 0; i < m->nlayers; i++) {
		free(m->layers[i].digest);
		free(m->layers[i].media_type);
	}
	free(m->layers);
	memset(m, 0, sizeof(*m));
}

static int bad(struct hm_err **err, const char *what)
{
	return hm_err_set(err, HM_ERR_INVALID, "invalid_manifest", "image manifest: %s", what);
}

int hm_manifest_parse(const char *body, size_t len, struct hm_oci_manifest *ret,
                      struct hm_err **err)
{
	memset(ret, 0, sizeof(*ret));
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!j)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_manifest",
		                  "image manifest is not valid JSON: %s", jerr.text);
	int r = 0;
	json_t *cfg = json_object_get(j, "config");
	json_t *layers = json_object_get(j, "layers");
	const char *cd = json_string_value(json_object_get(cfg, "digest"));
	json_int_t cs = json_integer_value(json_object_get(cfg, "size"));
	if (json_integer_value(json_object_get(j, "schemaVersion")) != 2)
		r = bad(err, "schemaVersion must be 2 (schema 1 images are not supported)");
	else if (!cd || !hm_digest_valid(cd) || cs < 0 || cs > HM_CONFIG_MAX)
		r = bad(err, "missing or invalid config descriptor");
	else if (!json_is_array(layers) || json_array_size(layers) > HM_MAX_LAYERS)
		r = bad(err, "missing layers, or more than 512");
	if (r < 0) {
		json_decref(j);
		return r;
	}
	ret->config_digest = xstrdup(cd);
	ret->config_size = cs;
	ret->layers = xcalloc(json_array_size(layers) + 1, sizeof(*ret->layers));
	size_t i;
	json_t *l;
	json_array_foreach (layers, i, l) {
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *mt = json_string_value(json_object_get(l, "mediaType"));
		json_t *sz = json_object_get(l, "size");
		if (!d || !hm_digest_valid(d) || !json_is_integer(sz) ||
		    json_integer_value(sz) < 0) {
			r = bad(err, "a layer has a missing or invalid digest or size");
			break;
		}
		if (!mt || !layer_type_ok(mt)) {
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_manifest",
			               "image manifest: layer %s has unsupported media type `%s`",
			               d, mt ? mt : "(none)");
			break;
		}
		ret->layers[i].digest = xstrdup(d);
		ret->layers[i].media_type = xstrdup(mt);
		ret->layers[i].size = json_integer_value(sz);
		ret->total_size += ret->layers[i].size;
		ret->nlayers++;
	}
	json_decref(j);
	if (r < 0)
		hm_manifest_done(ret);
	return r;
}

static json_t *string_array(json_t *a)
{
	if (!json_is_array(a))
		return json_null();
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach (a, i, v) {
		if (json_is_string(v))
			json_array_append(out, v);
	}
	return out;
}

int hm_image_config_parse(const char *body, size_t len, json_t **ret, struct hm_err **err)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_config",
		                  "image config is not a JSON object");
	}
	json_t *c = json_object_get(j, "config");
	json_t *env = json_object();
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(c, "Env"), i, v) {
		const char *kv = json_string_value(v);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		if (!eq || eq == kv)
			continue;
		_cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
		json_object_set_new(env, k, json_string(eq + 1));
	}
	const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
	const char *user = json_string_value(json_object_get(c, "User"));
	_cleanup_free_ char *platform = platform_of(j);
	json_t *out = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "entrypoint",
	                        string_array(json_object_get(c, "Entrypoint")), "cmd",
	                        string_array(json_object_get(c, "Cmd")), "env", env, "working_dir",
	                        wd && *wd ? json_string(wd) : json_null(), "user",
	                        user && *user ? json_string(user) : json_null(), "platform",
	                        platform ? json_string(platform) : json_null());
	json_decref(j);
	*ret = out;
	return 0;
}
