/*
 * archive: OCI layout and docker-save tarballs, read in passes. Each pass
 * streams the tarball once with libarchive, skipping the data of members
 * it does not need (a seek for plain tar): the first collects the member
 * list, symlinks and the small index files; later ones read one small
 * member (a manifest, a config) or copy the layers into the cache while
 * hashing them. Nothing is extracted to disk except verified blobs.
 */
#include "image/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/paths.h"
#include "core/xalloc.h"
#include "image/manifest.h"
#include "image/ref.h"

#define SMALL_MAX   (8u << 20)
#define MAX_MEMBERS 100000

struct member {
	char *name;
	char *link; /* symlink target, already resolved to a member name; NULL for files */
};

struct listing {
	struct member *m;
	size_t n;
};

static void listing_done(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->m[i].name);
		free(l->m[i].link);
	}
	free(l->m);
}

/*
 * A member path by the one archive normaliser (core/paths.c), or NULL for a
 * path that is missing, names the root itself or escapes with "..".
 */
static char *norm_path(const char *p)
{
	char *out = p ? hm_path_clean(p) : NULL;
	if (out && !out[0]) {
		free(out);
		return NULL;
	}
	return out;
}

/* Resolve symlink `target` of member `name` to a member path (relative to name's dir). */
static char *resolve_link(const char *name, const char *target)
{
	if (target[0] == '/')
		return norm_path(target);
	const char *slash = strrchr(name, '/');
	_cleanup_free_ char *joined =
	    slash ? xasprintf("%.*s/%s", (int)(slash - name), name, target) : xstrdup(target);
	/* Allow ".." inside the archive by folding it here. */
	char *parts[256];
	size_t np = 0;
	char *save = NULL;
	for (char *t = strtok_r(joined, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (strcmp(t, ".") == 0)
			continue;
		if (strcmp(t, "..") == 0) {
			if (np == 0)
				return NULL; /* above the archive root */
			np--;
			continue;
		}
		if (np == 256)
			return NULL;
		parts[np++] = t;
	}
	if (np == 0)
		return NULL;
	size_t len = 0;
	for (size_t i = 0; i < np; i++)
		len += strlen(parts[i]) + 1;
	char *out = xmalloc(len);
	out[0] = '\0';
	for (size_t i = 0; i < np; i++) {
		if (i)
			strcat(out, "/");
		strcat(out, parts[i]);
	}
	return out;
}

static struct archive *open_archive(const char *path, struct hm_err **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		hm_err_set(err, HM_ERR_INVALID, "invalid_archive", "cannot read archive: %s",
		           archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

static int list_members(const char *path, struct listing *l, struct hm_err **err)
{
	struct archive *a = open_archive(path, err);
	if (!a)
		return -1;
	struct archive_entry *e;
	int r, ret = 0;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		mode_t type = archive_entry_filetype(e);
		if (type != AE_IFREG && type != AE_IFLNK && !archive_entry_hardlink(e))
			continue;
		char *name = norm_path(archive_entry_pathname(e));
		if (!name) {
			ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                 "archive member `%s` escapes the archive",
			                 archive_entry_pathname(e));
			break;
		}
		if (l->n == MAX_MEMBERS) {
			free(name);
			ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                 "archive has more than %d members", MAX_MEMBERS);
			break;
		}
		char *link = NULL;
		if (archive_entry_hardlink(e))
			link = norm_path(archive_entry_hardlink(e));
		else if (type == AE_IFLNK)
			link = resolve_link(name, archive_entry_symlink(e) ?: "");
		if ((archive_entry_hardlink(e) || type == AE_IFLNK) && !link) {
			ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                 "archive link `%s` points outside the archive", name);
			free(name);
			break;
		}
		l->m = xrealloc(l->m, (l->n + 1) * sizeof(*l->m));
		l->m[l->n].name = name;
		l->m[l->n++].link = link;
		archive_read_data_skip(a);
	}
	if (ret == 0 && r != ARCHIVE_EOF)
		ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive", "corrupt archive: %s",
		                 archive_error_string(a));
	archive_read_free(a);
	return ret;
}

/* Follow links (at most 16 hops) to the member that holds the data. */
static const char *resolve_member(const struct listing *l, const char *name)
{
	_cleanup_free_ char *n = norm_path(name);
	if (!n)
		return NULL;
	const char *cur = n;
	for (int hop = 0; hop < 16; hop++) {
		const struct member *m = NULL;
		for (size_t i = 0; i < l->n; i++)
			if (strcmp(l->m[i].name, cur) == 0)
				m = &l->m[i];
		if (!m)
			return NULL;
		if (!m->link)
			return m->name;
		cur = m->link;
	}
	return NULL;
}

/* Read member `name` (a resolved data member) fully into memory. */
static int read_member(const char *path, const char *name, char **ret, size_t *len,
                       struct hm_err **err)
{
	struct archive *a = open_archive(path, err);
	if (!a)
		return -1;
	struct archive_entry *e;
	int ret_code = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
	                          "archive member `%s` is missing", name);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		_cleanup_free_ char *n = norm_path(archive_entry_pathname(e));
		if (!n || strcmp(n, name) != 0 || archive_entry_filetype(e) != AE_IFREG ||
		    archive_entry_hardlink(e)) {
			archive_read_data_skip(a);
			continue;
		}
		int64_t size = archive_entry_size(e);
		if (size < 0 || size > SMALL_MAX) {
			ret_code = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                      "archive member `%s` is too large", name);
			break;
		}
		char *buf = xmalloc((size_t)size + 1);
		la_ssize_t got = archive_read_data(a, buf, (size_t)size);
		if (got != size) {
			free(buf);
			ret_code = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                      "cannot read archive member `%s`", name);
			break;
		}
		buf[size] = '\0';
		*ret = buf;
		*len = (size_t)size;
		hm_err_freep(err);
		ret_code = 0;
		break;
	}
	archive_read_free(a);
	return ret_code;
}

static int read_path(const char *path, const struct listing *l, const char *name, char **ret,
                     size_t *len, struct hm_err **err)
{
	const char *m = resolve_member(l, name);
	if (!m)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
		                  "archive member `%s` is missing", name);
	return read_member(path, m, ret, len, err);
}

static char *blob_member(const char *digest)
{
	return xasprintf("blobs/sha256/%s", digest + 7);
}

static char *sha256_of(const void *data, size_t len)
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	_cleanup_free_ char *hex = hm_hex_encode(md, 32);
	return xasprintf("sha256:%s", hex);
}

/* A job for the copy pass: member -> cache, with an expected digest or none. */
struct copy {
	const char *member;
	const char *want; /* expected digest, or NULL to compute */
	char *got;        /* digest computed */
};

static int copy_blobs(const char *path, struct copy *c, size_t n, const char *blobs_dir,
                      struct hm_err **err)
{
	struct archive *a = open_archive(path, err);
	if (!a)
		return -1;
	struct archive_entry *e;
	int ret = 0;
	char buf[1 << 16];
	while (ret == 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
		_cleanup_free_ char *name = norm_path(archive_entry_pathname(e));
		struct copy *hit[HM_MAX_LAYERS + 1];
		size_t nhit = 0;
		for (size_t i = 0; name && i < n && nhit < HM_MAX_LAYERS; i++)
			if (!c[i].got && strcmp(c[i].member, name) == 0)
				hit[nhit++] = &c[i];
		if (nhit == 0 || archive_entry_filetype(e) != AE_IFREG) {
			archive_read_data_skip(a);
			continue;
		}
		_cleanup_free_ char *tmp =
		    xasprintf("%s/import.part.%d.XXXXXX", blobs_dir, (int)getpid());
		int fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0) {
			ret = hm_err_errno(err, errno, "create `%s`", tmp);
			break;
		}
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		la_ssize_t got;
		while ((got = archive_read_data(a, buf, sizeof(buf))) > 0) {
			EVP_DigestUpdate(md, buf, (size_t)got);
			int w = hm_write_all(fd, buf, (size_t)got);
			if (w < 0) {
				ret = hm_err_errno(err, -w, "write `%s`", tmp);
				break;
			}
		}
		if (ret == 0 && got < 0)
			ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                 "cannot read archive member `%s`: %s", name,
			                 archive_error_string(a));
		unsigned char d[32];
		unsigned int dl = 0;
		EVP_DigestFinal_ex(md, d, &dl);
		EVP_MD_CTX_free(md);
		_cleanup_free_ char *hex = hm_hex_encode(d, 32);
		_cleanup_free_ char *digest = xasprintf("sha256:%s", hex);
		if (ret == 0 && fsync(fd) < 0)
			ret = hm_err_errno(err, errno, "fsync `%s`", tmp);
		close(fd);
		for (size_t i = 0; ret == 0 && i < nhit; i++) {
			if (hit[i]->want && strcmp(hit[i]->want, digest) != 0)
				ret = hm_err_set(err, HM_ERR_INVALID, "digest_mismatch",
				                 "archive blob `%s` does not match its digest %s "
				                 "(got %s)",
				                 name, hit[i]->want, digest);
			else
				hit[i]->got = xstrdup(digest);
		}
		_cleanup_free_ char *dest = xasprintf("%s/%s", blobs_dir, hex);
		if (ret == 0 && rename(tmp, dest) < 0)
			ret = hm_err_errno(err, errno, "rename `%s`", tmp);
		if (ret < 0)
			unlink(tmp);
	}
	archive_read_free(a);
	for (size_t i = 0; ret == 0 && i < n; i++)
		if (!c[i].got)
			ret = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                 "archive member `%s` is missing", c[i].member);
	return ret;
}

void hm_archive_image_done(struct hm_archive_image *img)
{
	free(img->name);
	free(img->digest);
	free(img->config);
	for (size_t i = 0; i < img->nlayers; i++)
		free(img->layers[i]);
	free(img->layers);
	memset(img, 0, sizeof(*img));
}

/* The name a descriptor's annotations give, if it is a full reference. */
static char *annotated_name(json_t *desc)
{
	json_t *ann = json_object_get(desc, "annotations");
	const char *keys[] = { "io.containerd.image.name", "org.opencontainers.image.ref.name" };
	for (size_t i = 0; i < 2; i++) {
		const char *v = json_string_value(json_object_get(ann, keys[i]));
		if (v && (strchr(v, '/') || strchr(v, ':')))
			return xstrdup(v);
	}
	return NULL;
}

static int read_oci(const char *path, const struct listing *l, const char *platform,
                    const char *want_name, const char *blobs_dir, struct hm_archive_image *ret,
                    struct hm_err **err)
{
	_cleanup_free_ char *idx_text = NULL;
	size_t len;
	if (read_path(path, l, "index.json", &idx_text, &len, err) < 0)
		return -1;
	json_t *idx = json_loadb(idx_text, len, 0, NULL);
	json_t *list = json_object_get(idx, "manifests");
	if (!json_is_array(list) || json_array_size(list) == 0) {
		json_decref(idx);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
		                  "index.json lists no images");
	}
	json_t *pick = NULL;
	size_t i;
	json_t *d;
	json_array_foreach (list, i, d) {
		_cleanup_free_ char *n = annotated_name(d);
		const char *tag = json_string_value(json_object_get(
		    json_object_get(d, "annotations"), "org.opencontainers.image.ref.name"));
		if (want_name &&
		    ((n && strcmp(n, want_name) == 0) || (tag && strcmp(tag, want_name) == 0)))
			pick = d;
	}
	if (!pick && json_array_size(list) == 1)
		pick = json_array_get(list, 0);
	if (!pick) {
		json_decref(idx);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
		                  "the archive holds %zu images; name the one to load",
		                  json_array_size(list));
	}
	ret->name = annotated_name(pick);
	_cleanup_free_ char *digest =
	    xstrdup(json_string_value(json_object_get(pick, "digest")) ?: "");
	json_decref(idx);

	_cleanup_free_ char *body = NULL;
	for (int depth = 0;; depth++) {
		if (!hm_digest_valid(digest) || depth > 2)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			                  "index.json names an invalid manifest `%s`", digest);
		_cleanup_free_ char *member = blob_member(digest);
		free(body);
		body = NULL;
		if (read_path(path, l, member, &body, &len, err) < 0)
			return -1;
		_cleanup_free_ char *got = sha256_of(body, len);
		if (strcmp(got, digest) != 0)
			return hm_err_set(err, HM_ERR_INVALID, "digest_mismatch",
			                  "archive manifest %s does not match its digest", digest);
		if (!hm_manifest_is_index(NULL, body, len))
			break;
		free(digest);
		digest = NULL;
		if (hm_index_select(body, len, platform, &digest, err) < 0)
			return -1;
	}
	struct hm_oci_manifest m;
	if (hm_manifest_parse(body, len, &m, err) < 0)
		return -1;
	ret->digest = TAKE_PTR(digest);
	struct copy *c = xcalloc(m.nlayers + 1, sizeof(*c));
	char **members = xcalloc(m.nlayers + 1, sizeof(char *));
	int r = 0;
	for (size_t k = 0; k <= m.nlayers && r == 0; k++) {
		const char *dg = k < m.nlayers ? m.layers[k].digest : m.config_digest;
		_cleanup_free_ char *bm = blob_member(dg);
		const char *res = resolve_member(l, bm);
		if (!res)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			               "archive lacks blob %s", dg);
		members[k] = res ? xstrdup(res) : NULL;
		c[k].member = members[k];
		c[k].want = dg;
	}
	if (r == 0)
		r = copy_blobs(path, c, m.nlayers + 1, blobs_dir, err);
	if (r == 0) {
		_cleanup_free_ char *cfg_path = xasprintf("%s/%s", blobs_dir, m.config_digest + 7);
		r = hm_read_file(cfg_path, HM_CONFIG_MAX, &ret->config, NULL, err);
		ret->layers = xcalloc(m.nlayers + 1, sizeof(char *));
		for (size_t k = 0; r == 0 && k < m.nlayers; k++)
			ret->layers[ret->nlayers++] = xstrdup(m.layers[k].digest);
	}
	for (size_t k = 0; k <= m.nlayers; k++) {
		free(members[k]);
		free(c[k].got);
	}
	free(members);
	free(c);
	hm_manifest_done(&m);
	return r;
}

static int read_docker(const char *path, const struct listing *l, const char *blobs_dir,
                       struct hm_archive_image *ret, struct hm_err **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (read_path(path, l, "manifest.json", &text, &len, err) < 0)
		return -1;
	json_t *j = json_loadb(text, len, 0, NULL);
	json_t *first = json_array_get(j, 0);
	const char *cfg = json_string_value(json_object_get(first, "Config"));
	json_t *layers = json_object_get(first, "Layers");
	if (!cfg || !json_is_array(layers) || json_array_size(layers) > HM_MAX_LAYERS) {
		json_decref(j);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
		                  "manifest.json has no Config or Layers");
	}
	const char *tag = json_string_value(json_array_get(json_object_get(first, "RepoTags"), 0));
	ret->name = tag ? xstrdup(tag) : NULL;
	size_t n = json_array_size(layers);
	struct copy *c = xcalloc(n + 1, sizeof(*c));
	int r = 0;
	for (size_t k = 0; k <= n && r == 0; k++) {
		const char *p = k < n ? json_string_value(json_array_get(layers, k)) : cfg;
		const char *res = p ? resolve_member(l, p) : NULL;
		if (!res)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			               "archive member `%s` is missing", p ? p : "(null)");
		c[k].member = res;
	}
	if (r == 0)
		r = copy_blobs(path, c, n + 1, blobs_dir, err);
	json_decref(j);
	if (r == 0) {
		_cleanup_free_ char *cfg_path = xasprintf("%s/%s", blobs_dir, c[n].got + 7);
		size_t clen = 0;
		r = hm_read_file(cfg_path, HM_CONFIG_MAX, &ret->config, &clen, err);
		/* The classic format has no manifest: the digest of an equivalent OCI one. */
		json_t *ls = json_array();
		ret->layers = xcalloc(n + 1, sizeof(char *));
		for (size_t k = 0; k < n; k++) {
			_cleanup_free_ char *lp = xasprintf("%s/%s", blobs_dir, c[k].got + 7);
			struct stat st;
			json_array_append_new(
			    ls,
			    json_pack("{s:s,s:s,s:I}", "mediaType",
			              "application/vnd.oci.image.layer.v1.tar", "digest", c[k].got,
			              "size", (json_int_t)(stat(lp, &st) == 0 ? st.st_size : 0)));
			ret->layers[ret->nlayers++] = xstrdup(c[k].got);
		}
		json_t *man =
		    json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
		              "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
		              "application/vnd.oci.image.config.v1+json", "digest", c[n].got,
		              "size", (json_int_t)clen, "layers", ls);
		_cleanup_free_ char *mt = json_dumps(man, JSON_COMPACT);
		ret->digest = sha256_of(mt, strlen(mt));
		json_decref(man);
	}
	for (size_t k = 0; k <= n; k++)
		free(c[k].got);
	free(c);
	return r;
}

int hm_archive_read(const char *path, const char *platform, const char *want_name,
                    const char *blobs_dir, struct hm_archive_image *ret, struct hm_err **err)
{
	memset(ret, 0, sizeof(*ret));
	struct listing l = { 0 };
	int r = list_members(path, &l, err);
	if (r == 0) {
		if (resolve_member(&l, "index.json"))
			r = read_oci(path, &l, platform, want_name, blobs_dir, ret, err);
		else if (resolve_member(&l, "manifest.json"))
			r = read_docker(path, &l, blobs_dir, ret, err);
		else
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
			               "not an OCI image layout or docker save archive (no "
			               "index.json or manifest.json)");
	}
	listing_done(&l);
	if (r < 0)
		hm_archive_image_done(ret);
	return r;
}
