/*
 * volume/volumes: the volume service (volumes.h). Creation order, so that
 * every failure leaves nothing: validate, build the disk in a fresh
 * volumes/.tmp/<id>.<random>/ directory (".tmp" is no volume id: ids cannot
 * start with a dot), then, under `claim`, insert the row (the id and name are
 * claimed there) and rename the directory to volumes/<id>; a failed insert or
 * rename removes the directory, a failed rename also the row. A delete, under
 * the same lock, removes the row and renames volumes/<id> into .tmp, and
 * removes that outside the lock: a create of the same id never meets a
 * half-removed folder, and no request waits on a removal.
 */
#include "volume/volumes.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/ext4.h"
#include "core/names.h"
#include "core/paths.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "store/attachments.h"
#include "store/volumes.h"

#define MAX_SIZE_GB     2048
#define MAX_ENTRIES     (1u << 20)
#define EXT4_OVERHEAD_N 95 /* an ext4 file system keeps ~5%: the content must fit in the rest */

struct hm_volumes {
	struct hm_store *st;
	char *dir;             /* DATA_DIR/volumes */
	pthread_mutex_t claim; /* a volume's row and folder change together (no I/O but renames) */
};

#define STAGING ".tmp" /* under dir: creates in progress, deletes being removed */

char *hm_volume_disk(const char *data_dir, const char *id)
{
	return xasprintf("%s/volumes/%s/data.ext4", data_dir, id);
}

int hm_volumes_open(struct hm_store *st, const struct hm_config *cfg, struct hm_volumes **ret,
                    struct hm_err **err)
{
	struct hm_volumes *v = xcalloc(1, sizeof(*v));
	v->st = st;
	v->dir = xasprintf("%s/volumes", cfg->data_dir);
	pthread_mutex_init(&v->claim, NULL);
	_cleanup_free_ char *tmp = xasprintf("%s/" STAGING, v->dir);
	_cleanup_free_ char *old = xasprintf("%s/tmp", v->dir); /* the staging folder before */
	/* What a crashed create or delete left is garbage: nothing names it. */
	hm_rm_rf(tmp, NULL);
	struct hm_volume_row none = { 0 };
	if (hm_store_volume_find(st, "tmp", &none, NULL) < 0)
		hm_rm_rf(old, NULL);
	hm_volume_row_done(&none);
	if (hm_mkdir_p(tmp, 0700, err) < 0) {
		hm_volumes_close(v);
		return -1;
	}
	*ret = v;
	return 0;
}

void hm_volumes_close(struct hm_volumes *v)
{
	if (!v)
		return;
	pthread_mutex_destroy(&v->claim);
	free(v->dir);
	free(v);
}

/* What a view holds (the view itself stays). */
static void view_done(struct hm_volume_view *v)
{
	free(v->id);
	free(v->uuid);
	free(v->name);
	free(v->created_at);
	json_decref(v->tags);
	for (size_t k = 0; k < v->nmounts; k++) {
		free(v->mounts[k].instance_id);
		free(v->mounts[k].instance_uuid);
		free(v->mounts[k].instance_name);
		free(v->mounts[k].mount_path);
	}
	free(v->mounts);
	memset(v, 0, sizeof(*v));
}

void hm_volume_view_free(struct hm_volume_view *v)
{
	hm_volume_views_free(v, 1);
}

void hm_volume_views_free(struct hm_volume_view *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		view_done(&v[i]);
	free(v);
}

/* The view of a row into *out, with where it is attached (the attachments table). */
static void view_of(struct hm_volumes *v, const struct hm_volume_row *r, struct hm_volume_view *out)
{
	json_t *tags = json_loads(r->tags ? r->tags : "{}", 0, NULL);
	*out = (struct hm_volume_view){
		.id = xstrdup(r->id),
		.uuid = r->uuid ? xstrdup(r->uuid) : NULL,
		.name = xstrdup(r->name),
		.created_at = xstrdup(r->created_at),
		.size_bytes = (int64_t)r->size_mb << 20,
		.tags = json_is_object(tags) ? tags : json_object(),
	};
	if (tags && !json_is_object(tags))
		json_decref(tags);
	struct hm_attachment_row *rows = NULL;
	size_t n = 0;
	if (hm_store_attachments_of_volume(v->st, r->id, &rows, &n, NULL) < 0)
		return;
	out->mounts = n ? xcalloc(n, sizeof(*out->mounts)) : NULL;
	for (size_t i = 0; i < n; i++)
		out->mounts[i] = (struct hm_volume_mount){
			.instance_id = TAKE_PTR(rows[i].instance_id),
			.instance_uuid = TAKE_PTR(rows[i].instance_uuid),
			.instance_name = TAKE_PTR(rows[i].instance_name),
			.mount_path = TAKE_PTR(rows[i].mount_path),
			.readonly = rows[i].readonly,
		};
	out->nmounts = n;
	hm_attachment_rows_free(rows, n);
}

static struct hm_volume_view *view_new(struct hm_volumes *v, const struct hm_volume_row *r)
{
	struct hm_volume_view *out = xcalloc(1, sizeof(*out));
	view_of(v, r, out);
	return out;
}

/* A caller's id: like a name (lowercase letters, digits, dashes), at most 63. */
static int check_id(const char *id, struct hm_err **err)
{
	if (hm_name_check("volume", id, NULL) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_id",
		                  "`id` must be lowercase letters, digits and dashes (at most 63), "
		                  "not starting or ending with a dash");
	return 0;
}

/* mkfs.ext4 on a sparse file of size bytes at path, copying `from` (a directory) in when given. */
static int make_disk(const char *path, int64_t size, const char *from, struct hm_err **err)
{
	return hm_ext4_make(path, size, true, from, "volume disk", err);
}

/*
 * Unpack the tar(.gz) at archive into dir. Refused (400, nothing kept):
 * absolute paths, "..", links that lead out, devices, fifos and sockets,
 * more than MAX_ENTRIES entries, and content over limit bytes.
 */
static int unpack(const char *archive, const char *dir, long long limit, struct hm_err **err)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	struct archive *w = archive_write_disk_new();
	/* Entries are rewritten to absolute paths under dir after their names are
	 * checked, so NOABSOLUTEPATHS cannot be used; SECURE_SYMLINKS keeps a
	 * link in the archive from redirecting a later entry out of dir. */
	archive_write_disk_set_options(w, ARCHIVE_EXTRACT_SECURE_NODOTDOT |
	                                      ARCHIVE_EXTRACT_SECURE_SYMLINKS |
	                                      ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
	                                      ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_UNLINK);
	int r = 0;
	if (archive_read_open_filename(a, archive, 1 << 16) != ARCHIVE_OK)
		r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive",
		               "not a tar or tar.gz archive: %s", archive_error_string(a));
	long long total = 0;
	unsigned entries = 0;
	struct archive_entry *e;
	while (r == 0) {
		int rc = archive_read_next_header(a, &e);
		if (rc == ARCHIVE_EOF)
			break;
		if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive", "archive: %s",
			               archive_error_string(a));
			break;
		}
		_cleanup_free_ char *name =
		    archive_entry_pathname(e) ? xstrdup(archive_entry_pathname(e)) : NULL;
		mode_t type = archive_entry_filetype(e);
		if (++entries > MAX_ENTRIES) {
			r = hm_err_set(err, HM_ERR_INVALID, "archive_too_large",
			               "the archive has more than %u entries", MAX_ENTRIES);
			break;
		}
		/* Read by components (core/paths.c), as layers are: absolute or with a
		 * ".." anywhere is refused. */
		_cleanup_free_ char *clean = name && name[0] != '/' ? hm_path_clean(name) : NULL;
		if (!clean) {
			r = hm_err_set(err, HM_ERR_INVALID, "unsafe_path",
			               "the archive entry `%.200s` points outside the volume",
			               name ? name : "?");
			break;
		}
		if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
			r = hm_err_set(
			    err, HM_ERR_INVALID, "unsupported_entry",
			    "the archive entry `%.200s` is not a file, directory or link", name);
			break;
		}
		_cleanup_free_ char *hl =
		    archive_entry_hardlink(e) ? xstrdup(archive_entry_hardlink(e)) : NULL;
		_cleanup_free_ char *hclean = hl && hl[0] != '/' ? hm_path_clean(hl) : NULL;
		if (hl && (!hclean || !*hclean)) {
			r = hm_err_set(err, HM_ERR_INVALID, "unsafe_path",
			               "the hard link `%.200s` points outside the volume", name);
			break;
		}
		total += archive_entry_size(e) > 0 ? archive_entry_size(e) : 0;
		if (total > limit) {
			r = hm_err_set(
			    err, HM_ERR_INVALID, "archive_too_large",
			    "the archive's content is larger than the volume (%lld bytes fit)",
			    limit);
			break;
		}
		_cleanup_free_ char *dst = xasprintf("%s/%s", dir, *clean ? clean : ".");
		archive_entry_set_pathname(e, dst);
		if (hl) {
			_cleanup_free_ char *hdst = xasprintf("%s/%s", dir, hclean);
			archive_entry_set_hardlink(e, hdst);
		}
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			r = hm_err_set(err, HM_ERR_INVALID, "unsafe_path",
			               "archive entry `%.200s`: %s", name, archive_error_string(w));
			break;
		}
		const void *buf;
		size_t size;
		la_int64_t off;
		while (r == 0 && (rc = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK)
				r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "write `%.200s`: %s",
				               name, archive_error_string(w));
		if (r == 0 && rc != ARCHIVE_EOF)
			r = hm_err_set(err, HM_ERR_INVALID, "invalid_archive", "archive: %s",
			               archive_error_string(a));
		if (r == 0 && archive_write_finish_entry(w) != ARCHIVE_OK)
			r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "finish `%.200s`: %s", name,
			               archive_error_string(w));
	}
	archive_read_free(a);
	archive_write_free(w);
	return r;
}

static int check_create(const struct hm_volume_create *c, struct hm_err **err)
{
	if (!c->name)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`name` is required");
	if (hm_name_check("volume", c->name, err) < 0)
		return -1;
	if (c->id && check_id(c->id, err) < 0)
		return -1;
	if (c->tags && !json_is_null(c->tags) && hm_tags_validate(c->tags, err) < 0)
		return -1;
	if (c->size_bytes < HM_VOLUME_MIN_BYTES || c->size_bytes > HM_VOLUME_MAX_BYTES ||
	    c->size_bytes % (1 << 20) != 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_size",
		                  "`%s`: a volume is a whole number of MiB from 1 MiB to %lld GiB",
		                  c->size_field ? c->size_field : "size",
		                  HM_VOLUME_MAX_BYTES >> 30);
	return 0;
}

/* Build in .tmp/, claim the row, move into place. */
int hm_volumes_create(struct hm_volumes *v, const struct hm_volume_create *c,
                      struct hm_volume_view **ret, struct hm_err **err)
{
	if (check_create(c, err) < 0)
		return -1;
	char gen[25];
	const char *id = c->id;
	if (!id) {
		hm_id_new(gen);
		id = gen;
	}
	int64_t size = c->size_bytes;
	/* The disk is sparse, but a volume is a promise of its size: refused when
	 * the data dir has not that much free. */
	struct statvfs sv;
	if (statvfs(v->dir, &sv) == 0 &&
	    (unsigned long long)sv.f_bavail * sv.f_frsize < (unsigned long long)size)
		return hm_err_set(err, HM_ERR_INSUFFICIENT, "insufficient_storage",
		                  "a %lld %s volume does not fit: %llu MB are free in %s",
		                  (long long)(size % (1LL << 30) ? size >> 20 : size >> 30),
		                  size % (1LL << 30) ? "MB" : "GB",
		                  (unsigned long long)sv.f_bavail * sv.f_frsize >> 20, v->dir);
	_cleanup_free_ char *work = xasprintf("%s/" STAGING "/%s.XXXXXX", v->dir, id);
	if (!mkdtemp(work))
		return hm_err_errno(err, errno, "create volume work dir");
	_cleanup_free_ char *disk = xasprintf("%s/data.ext4", work);
	int r = 0;
	if (c->archive) {
		_cleanup_free_ char *content = xasprintf("%s/content", work);
		r = hm_mkdir_p(content, 0755, err);
		if (r == 0)
			r = unpack(c->archive, content, size / 100 * EXT4_OVERHEAD_N, err);
		if (r == 0)
			r = make_disk(disk, size, content, err);
		if (r == 0)
			hm_rm_rf(content, NULL);
	} else {
		r = make_disk(disk, size, NULL, err);
	}
	_cleanup_free_ char *tags_text =
	    json_is_object(c->tags) ? json_dumps(c->tags, JSON_COMPACT) : xstrdup("{}");
	_cleanup_free_ char *created = hm_now_rfc3339();
	char uuid[37];
	hm_uuid_new(uuid);
	struct hm_volume_row row = { .id = (char *)id,
		                     .uuid = uuid,
		                     .name = (char *)c->name,
		                     .size_mb = size >> 20,
		                     .tags = tags_text,
		                     .created_at = created };
	_cleanup_free_ char *final = xasprintf("%s/%s", v->dir, id);
	pthread_mutex_lock(&v->claim);
	if (r == 0)
		r = hm_store_volume_insert(v->st, &row, err);
	if (r == 0 && rename(work, final) < 0) {
		r = hm_err_errno(err, errno, "move volume into place");
		hm_store_volume_delete(v->st, id, NULL);
	}
	pthread_mutex_unlock(&v->claim);
	if (r < 0) {
		hm_rm_rf(work, NULL);
		return -1;
	}
	log_info("volumes", "created", "id=%s name=%s size_mb=%lld from_archive=%s", id, c->name,
	         (long long)(size >> 20), c->archive ? "yes" : "no");
	*ret = view_new(v, &row); /* new: attached nowhere */
	return 0;
}

int hm_volumes_get(struct hm_volumes *v, const char *key, struct hm_volume_view **ret,
                   struct hm_err **err)
{
	struct hm_volume_row row = { 0 };
	if (hm_store_volume_find(v->st, key, &row, err) < 0)
		return -1;
	*ret = view_new(v, &row);
	hm_volume_row_done(&row);
	return 0;
}

int hm_volumes_list(struct hm_volumes *v, json_t *tags, struct hm_volume_view **ret, size_t *n,
                    struct hm_err **err)
{
	struct hm_volume_row *rows = NULL;
	size_t count = 0;
	if (hm_store_volume_list(v->st, &rows, &count, err) < 0)
		return -1;
	struct hm_volume_view *out = xcalloc(count ? count : 1, sizeof(*out));
	size_t k = 0;
	for (size_t i = 0; i < count; i++) {
		view_of(v, &rows[i], &out[k]);
		if (!tags || hm_tags_match(out[k].tags, tags))
			k++;
		else
			view_done(&out[k]);
	}
	hm_volume_rows_free(rows, count);
	*ret = out;
	*n = k;
	return 0;
}

int hm_volumes_delete(struct hm_volumes *v, const char *key, struct hm_err **err)
{
	struct hm_volume_row row = { 0 };
	if (hm_store_volume_find(v->st, key, &row, err) < 0)
		return -1;
	struct hm_attachment_row *att = NULL;
	size_t natt = 0;
	int r = hm_store_attachments_of_volume(v->st, row.id, &att, &natt, err);
	if (r == 0 && natt > 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "in_use",
		               "volume `%s` is attached to instance %s: delete the instance first",
		               row.name, att[0].instance_id);
	hm_attachment_rows_free(att, natt);
	/* Row first: once it is gone nothing can attach it; then the disk, moved
	 * aside under the lock and removed outside it. */
	_cleanup_free_ char *dir = xasprintf("%s/%s", v->dir, row.id);
	_cleanup_free_ char *trash = xasprintf("%s/" STAGING "/deleted-%s.XXXXXX", v->dir, row.id);
	bool moved = false;
	if (r == 0) {
		pthread_mutex_lock(&v->claim);
		r = hm_store_volume_delete(v->st, row.id, err);
		moved = r == 0 && mkdtemp(trash) && rename(dir, trash) == 0;
		pthread_mutex_unlock(&v->claim);
	}
	if (r == 0) {
		hm_rm_rf(moved ? trash : dir, NULL);
		if (!moved)
			rmdir(trash);
		log_info("volumes", "deleted", "id=%s name=%s", row.id, row.name);
	}
	hm_volume_row_done(&row);
	return r;
}
