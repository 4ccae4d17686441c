/*
 * images: the pull queue, its workers and the conversion pipeline.
 *
 * Threads. HTTP handlers call hm_images_create/get/list/delete, which only
 * touch the store and the in-memory job list under `lock`. Pulls run on a
 * fixed pool of worker threads taking jobs from a FIFO queue; one pull
 * downloads its layers with up to DOWNLOADERS threads of its own. A job
 * lives in memory from the POST that queued it until its row says ready or
 * failed; its progress counters are read by GET without a lock (atomics).
 *
 * Disks. Conversion builds everything in $DATA_DIR/images/tmp/<random>/
 * and renames the finished directory to images/<digest hex>: a crash or a
 * failure at any point leaves at most a tmp directory, which the next start
 * removes. Two jobs that resolve to one digest take turns (`converting`),
 * and the second finds the disk made.
 */
#include "image/images.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/tags.h"
#include "core/xalloc.h"
#include "image/archive.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/unpack.h"
#include "store/images.h"

#define DOWNLOADERS 4

struct job {
	char *name; /* normalized reference: the row's key */
	char *platform;
	struct hm_image_ref ref;
	char *username, *password, *token; /* borrowed credentials, wiped when done */
	_Atomic uint64_t bytes_done;
	_Atomic uint64_t bytes_total;
	_Atomic int layers_done;
	_Atomic int layers_total;
	bool running;
	struct job *next; /* queue order */
	struct job *all;  /* every job in memory */
};

struct hm_images {
	struct hm_store *st;
	char *data_dir, *blobs_dir, *images_dir, *tmp_dir;
	char *unpack_helper, *insecure, *disk_format;
	long stall_timeout_s;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail; /* queued, not yet running */
	struct job *jobs;        /* all in-memory jobs */
	_Atomic bool stopping;
	pthread_t *threads;
	int nthreads;

	/* digests being converted right now (single flight) */
	char **converting;
	size_t nconverting;
	pthread_cond_t conv_cond;
	int importing; /* archives being read into blobs/ (no job yet): no collection meanwhile */
};

/* ---- small helpers ---- */

static const char *digest_hex(const char *digest)
{
	return digest + strlen("sha256:");
}

static char *blob_path(struct hm_images *im, const char *digest)
{
	return xasprintf("%s/%s", im->blobs_dir, digest_hex(digest));
}

static char *disk_dir(struct hm_images *im, const char *digest)
{
	return xasprintf("%s/%s", im->images_dir, digest_hex(digest));
}

/* The converted disk for `digest`, if it exists: sets *path and *format. */
static bool disk_exists(struct hm_images *im, const char *digest, char **path, char **format)
{
	static const char *const formats[] = { "erofs", "ext4" };
	_cleanup_free_ char *dir = disk_dir(im, digest);
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
		_cleanup_free_ char *p = xasprintf("%s/rootfs.%s", dir, formats[i]);
		if (access(p, R_OK) == 0) {
			if (path)
				*path = TAKE_PTR(p);
			if (format)
				*format = xstrdup(formats[i]);
			return true;
		}
	}
	return false;
}

static void wipe(char **s)
{
	if (*s) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->name);
	free(j->platform);
	hm_image_ref_done(&j->ref);
	wipe(&j->username);
	wipe(&j->password);
	wipe(&j->token);
	free(j);
}

/* Under lock. */
static struct job *job_find(struct hm_images *im, const char *name)
{
	for (struct job *j = im->jobs; j; j = j->all)
		if (strcmp(j->name, name) == 0)
			return j;
	return NULL;
}

/* Under lock: 0-based position among queued jobs, or -1 when running/not queued. */
static int queue_position(struct hm_images *im, const struct job *target)
{
	int pos = 0;
	for (struct job *j = im->head; j; j = j->next, pos++)
		if (j == target)
			return pos;
	return -1;
}

/* Under lock. */
static void job_unlink(struct hm_images *im, struct job *target)
{
	for (struct job **pp = &im->jobs; *pp; pp = &(*pp)->all) {
		if (*pp == target) {
			*pp = target->all;
			return;
		}
	}
}

/* ---- rows and JSON ---- */

static json_t *json_text_or(const char *text, json_t *dflt)
{
	json_t *j = text ? json_loads(text, 0, NULL) : NULL;
	if (!j)
		return dflt;
	json_decref(dflt);
	return j;
}

const char *hm_image_status_name(enum hm_image_status s)
{
	static const char *const names[] = {
		[HM_IMAGE_PENDING] = "pending",       [HM_IMAGE_PULLING] = "pulling",
		[HM_IMAGE_CONVERTING] = "converting", [HM_IMAGE_READY] = "ready",
		[HM_IMAGE_FAILED] = "failed",
	};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "failed";
}

static enum hm_image_status status_of(const char *text)
{
	for (enum hm_image_status s = HM_IMAGE_PENDING; s <= HM_IMAGE_FAILED; s++)
		if (text && strcmp(text, hm_image_status_name(s)) == 0)
			return s;
	return HM_IMAGE_FAILED;
}

static void view_done(struct hm_image_view *v)
{
	free(v->name);
	free(v->digest);
	free(v->platform);
	free(v->error);
	free(v->created_at);
	json_decref(v->config);
	json_decref(v->tags);
	memset(v, 0, sizeof(*v));
}

void hm_image_view_free(struct hm_image_view *v)
{
	hm_image_views_free(v, 1);
}

void hm_image_views_free(struct hm_image_view *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		view_done(&v[i]);
	free(v);
}

/* The view of a row into *v. `job` (under lock) adds queue position and progress. */
static void view_of(struct hm_images *im, const struct hm_image_row *r, struct job *job,
                    struct hm_image_view *v)
{
	*v = (struct hm_image_view){
		.name = xstrdup(r->name),
		.digest = xstrdup(r->digest ? r->digest : ""),
		.platform = r->platform ? xstrdup(r->platform) : NULL,
		.status = status_of(r->status),
		.error = r->error ? xstrdup(r->error) : NULL,
		.size_bytes = r->size_bytes,
		.queue_position = job ? queue_position(im, job) : -1,
		.config = json_text_or(r->config, json_object()),
		.tags = json_text_or(r->tags, json_object()),
		.created_at = xstrdup(r->created_at),
	};
	if (job) {
		v->in_flight = true;
		v->progress.layers_done = atomic_load(&job->layers_done);
		v->progress.layers_total = atomic_load(&job->layers_total);
		v->progress.bytes_done = (int64_t)atomic_load(&job->bytes_done);
		v->progress.bytes_total = (int64_t)atomic_load(&job->bytes_total);
	}
}

static struct hm_image_view *view_new(struct hm_images *im, const struct hm_image_row *r,
                                      struct job *job)
{
	struct hm_image_view *v = xcalloc(1, sizeof(*v));
	view_of(im, r, job, v);
	return v;
}

/* Read-modify-write the job's row. Any field argument may be NULL (unchanged). */
static int update_row(struct hm_images *im, const char *name, const char *status, const char *error,
                      const char *digest, const char *platform, const char *config,
                      int64_t size_bytes, struct hm_err **err)
{
	struct hm_image_row r = { 0 };
	if (hm_store_image_get(im->st, name, &r, err) < 0)
		return -1;
	if (status) {
		free(r.status);
		r.status = xstrdup(status);
		free(r.error);
		r.error = error ? xstrdup(error) : NULL;
	}
	if (digest) {
		free(r.digest);
		r.digest = xstrdup(digest);
	}
	if (platform) {
		free(r.platform);
		r.platform = xstrdup(platform);
	}
	if (config) {
		free(r.config);
		r.config = xstrdup(config);
	}
	if (size_bytes >= 0)
		r.size_bytes = size_bytes;
	int ret = hm_store_image_put(im->st, &r, err);
	hm_image_row_done(&r);
	return ret;
}

/* ---- conversion ---- */

static void conv_enter(struct hm_images *im, const char *digest)
{
	pthread_mutex_lock(&im->lock);
	for (;;) {
		bool busy = false;
		for (size_t i = 0; i < im->nconverting; i++)
			busy |= strcmp(im->converting[i], digest) == 0;
		if (!busy)
			break;
		pthread_cond_wait(&im->conv_cond, &im->lock);
	}
	im->converting = xrealloc(im->converting, (im->nconverting + 1) * sizeof(char *));
	im->converting[im->nconverting++] = xstrdup(digest);
	pthread_mutex_unlock(&im->lock);
}

static void conv_leave(struct hm_images *im, const char *digest)
{
	pthread_mutex_lock(&im->lock);
	for (size_t i = 0; i < im->nconverting; i++) {
		if (strcmp(im->converting[i], digest) == 0) {
			free(im->converting[i]);
			im->converting[i] = im->converting[--im->nconverting];
			break;
		}
	}
	pthread_cond_broadcast(&im->conv_cond);
	pthread_mutex_unlock(&im->lock);
}

static int make_disk(struct hm_images *im, const char *rootfs, const char *out, const char *format,
                     struct hm_err **err)
{
	if (strcmp(format, "ext4") == 0) {
		long long used = hm_du(rootfs);
		if (used < 0)
			return hm_err_errno(err, errno, "measure `%s`", rootfs);
		/* Content plus a margin for metadata; sparse, so unused space costs nothing. */
		long long mb = used * 3 / 2 / (1 << 20) + 32;
		_cleanup_free_ char *size = xasprintf("%lldM", mb);
		const char *argv[] = { "mkfs.ext4",    "-q", "-F",   "-b", "4096", "-O",
			               "^has_journal", "-d", rootfs, out,  size,   NULL };
		return hm_run(argv, NULL, NULL, err);
	}
	(void)im;
	const char *argv[] = { "mkfs.erofs", "--quiet", out, rootfs, NULL };
	return hm_run(argv, NULL, NULL, err);
}

/* Unpack and build the disk in `tmp`, then rename it to images/<hex>. */
static int build_disk(struct hm_images *im, const char *digest, const char *config_text,
                      const char *const *layers, size_t nlayers, const char *tmp,
                      struct hm_err **err)
{
	_cleanup_free_ char *final = disk_dir(im, digest);
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", tmp);
	_cleanup_free_ char *disk = xasprintf("%s/rootfs.%s", tmp, im->disk_format);
	_cleanup_free_ char *cfg_path = xasprintf("%s/config.json", tmp);
	struct hm_unpack_stats stats = { 0 };
	if (mkdir(rootfs, 0755) < 0)
		return hm_err_errno(err, errno, "create `%s`", rootfs);
	if (hm_unpack_layers(im->unpack_helper, rootfs, layers, nlayers, &stats, err) < 0)
		return hm_err_wrap(err, "unpack");
	if (make_disk(im, rootfs, disk, im->disk_format, err) < 0)
		return hm_err_wrap(err, "build %s disk", im->disk_format);
	/* The blobs it was made from, one hex digest a line: what collect_blobs keeps. */
	_cleanup_free_ char *layers_path = xasprintf("%s/layers", tmp);
	_cleanup_free_ char *list = xstrdup("");
	for (size_t i = 0; i < nlayers; i++) {
		const char *slash = strrchr(layers[i], '/');
		char *more = xasprintf("%s%s\n", list, slash ? slash + 1 : layers[i]);
		free(list);
		list = more;
	}
	if (hm_rm_rf(rootfs, err) < 0 ||
	    hm_write_file_atomic(cfg_path, config_text, strlen(config_text), 0644, err) < 0 ||
	    hm_write_file_atomic(layers_path, list, strlen(list), 0644, err) < 0)
		return -1;
	if (rename(tmp, final) < 0)
		return hm_err_errno(err, errno, "rename `%s` to `%s`", tmp, final);
	log_info("images", "converted", "digest=%s layers=%zu entries=%llu bytes=%llu format=%s",
	         digest, nlayers, (unsigned long long)stats.entries,
	         (unsigned long long)stats.bytes, im->disk_format);
	return 0;
}

/*
 * Build images/<hex> from a config blob and layer blobs already verified in
 * the cache. Returns 0 if the disk exists afterwards (made by us or found).
 */
static int convert(struct hm_images *im, const char *digest, const char *config_text,
                   const char *const *layers, size_t nlayers, struct hm_err **err)
{
	conv_enter(im, digest);
	int ret = 0;
	if (!disk_exists(im, digest, NULL, NULL)) {
		_cleanup_free_ char *tmp =
		    xasprintf("%s/%s.XXXXXX", im->tmp_dir, digest_hex(digest));
		if (!mkdtemp(tmp)) {
			ret = hm_err_errno(err, errno, "create `%s`", tmp);
		} else {
			ret = build_disk(im, digest, config_text, layers, nlayers, tmp, err);
			if (ret < 0)
				hm_rm_rf(tmp, NULL);
		}
	}
	conv_leave(im, digest);
	if (ret < 0 && hm_err_errnum(err) == ENOSPC) {
		hm_err_recast(err, HM_ERR_INSUFFICIENT, "insufficient_storage");
	}
	return ret;
}

/* ---- pulling ---- */

struct fetch_ctx {
	struct hm_images *im;
	struct hm_registry *reg;
	struct job *job;
	const struct hm_oci_manifest *m;
	_Atomic size_t next;
	pthread_mutex_t lock;
	struct hm_err *first_err;
	_Atomic bool failed;
	uint64_t *done_per_layer;
};

struct progress_arg {
	struct fetch_ctx *ctx;
	size_t idx;
};

static void on_progress(void *ud, uint64_t bytes)
{
	struct progress_arg *pa = ud;
	uint64_t prev = pa->ctx->done_per_layer[pa->idx];
	pa->ctx->done_per_layer[pa->idx] = bytes;
	atomic_fetch_add(&pa->ctx->job->bytes_done, bytes - prev);
}

static void *fetch_worker(void *arg)
{
	struct fetch_ctx *c = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->m->nlayers || atomic_load(&c->failed))
			return NULL;
		const struct hm_oci_layer *l = &c->m->layers[i];
		_cleanup_free_ char *path = blob_path(c->im, l->digest);
		struct stat st;
		struct hm_err *err = NULL;
		if (stat(path, &st) == 0 && st.st_size == l->size) {
			atomic_fetch_add(&c->job->bytes_done, (uint64_t)l->size);
		} else {
			/* Progress restarts if a retry starts the blob over. */
			struct progress_arg pa = { c, i };
			if (hm_registry_blob(c->reg, l->digest, l->size, path, on_progress, &pa,
			                     &err) < 0) {
				atomic_fetch_sub(&c->job->bytes_done, c->done_per_layer[i]);
				c->done_per_layer[i] = 0;
				pthread_mutex_lock(&c->lock);
				if (!c->first_err)
					c->first_err = err;
				else
					hm_err_free(err);
				pthread_mutex_unlock(&c->lock);
				atomic_store(&c->failed, true);
				return NULL;
			}
		}
		atomic_fetch_add(&c->job->layers_done, 1);
	}
}

static int fetch_layers(struct hm_images *im, struct hm_registry *reg, struct job *job,
                        const struct hm_oci_manifest *m, struct hm_err **err)
{
	struct fetch_ctx c = { .im = im, .reg = reg, .job = job, .m = m };
	pthread_mutex_init(&c.lock, NULL);
	c.done_per_layer = xcalloc(m->nlayers + 1, sizeof(uint64_t));
	size_t n = m->nlayers < DOWNLOADERS ? m->nlayers : DOWNLOADERS;
	pthread_t th[DOWNLOADERS];
	size_t started = 0;
	for (; started < n; started++)
		if (pthread_create(&th[started], NULL, fetch_worker, &c) != 0)
			break;
	if (started == 0)
		fetch_worker(&c);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(c.done_per_layer);
	pthread_mutex_destroy(&c.lock);
	if (c.first_err) {
		hm_err_freep(err);
		*err = c.first_err;
		return -1;
	}
	return 0;
}

/* Fetch a small blob (the config) through the cache into memory. */
static int fetch_config(struct hm_images *im, struct hm_registry *reg, const char *digest,
                        int64_t size, char **ret, struct hm_err **err)
{
	_cleanup_free_ char *path = blob_path(im, digest);
	if (access(path, R_OK) != 0 &&
	    hm_registry_blob(reg, digest, size, path, NULL, NULL, err) < 0)
		return hm_err_wrap(err, "image config");
	return hm_read_file(path, HM_CONFIG_MAX, ret, NULL, err);
}

/* Everything one pull holds; released by pull_state_done whatever happened. */
struct pull_state {
	struct hm_registry *reg;
	char *body, *media_type, *digest;
	size_t len;
	struct hm_oci_manifest m;
	char *cfg_text, *cfg_json;
	json_t *cfg;
	char **layer_paths;
};

static void pull_state_done(struct pull_state *p)
{
	if (p->layer_paths)
		for (size_t i = 0; i < p->m.nlayers; i++)
			free(p->layer_paths[i]);
	free(p->layer_paths);
	json_decref(p->cfg);
	free(p->cfg_json);
	free(p->cfg_text);
	hm_manifest_done(&p->m);
	free(p->body);
	free(p->media_type);
	free(p->digest);
	hm_registry_close(p->reg);
}

/* Fetch the manifest for the job's reference, following an index to its platform. */
static int resolve_manifest(struct job *job, struct pull_state *p, struct hm_err **err)
{
	const char *reference = job->ref.digest ? job->ref.digest : job->ref.tag;
	if (hm_registry_manifest(p->reg, reference, &p->body, &p->len, &p->media_type, &p->digest,
	                         err) < 0)
		return -1;
	if (!hm_manifest_is_index(p->media_type, p->body, p->len))
		return 0;
	_cleanup_free_ char *pick = NULL;
	if (hm_index_select(p->body, p->len, job->platform, &pick, err) < 0)
		return -1;
	free(p->body);
	free(p->media_type);
	free(p->digest);
	p->body = p->media_type = p->digest = NULL;
	if (hm_registry_manifest(p->reg, pick, &p->body, &p->len, &p->media_type, &p->digest, err) <
	    0)
		return -1;
	if (hm_manifest_is_index(p->media_type, p->body, p->len))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_manifest",
		                  "index entry %s is itself an index", pick);
	return 0;
}

static int pull_steps(struct hm_images *im, struct job *job, struct pull_state *p,
                      struct hm_err **err)
{
	struct hm_registry_opts ro = {
		.insecure = im->insecure,
		.stall_timeout_s = im->stall_timeout_s,
		.cancel = &im->stopping,
	};
	struct hm_registry_creds creds = { job->username, job->password, job->token };
	if (hm_registry_open(&job->ref, &creds, &ro, &p->reg, err) < 0 ||
	    resolve_manifest(job, p, err) < 0 ||
	    hm_manifest_parse(p->body, p->len, &p->m, err) < 0 ||
	    update_row(im, job->name, NULL, NULL, p->digest, NULL, NULL, -1, err) < 0)
		return -1;
	atomic_store(&job->layers_total, (int)p->m.nlayers);
	atomic_store(&job->bytes_total, (uint64_t)p->m.total_size);

	if (fetch_config(im, p->reg, p->m.config_digest, p->m.config_size, &p->cfg_text, err) < 0 ||
	    hm_image_config_parse(p->cfg_text, strlen(p->cfg_text), &p->cfg, err) < 0)
		return -1;
	const char *cfg_platform = json_string_value(json_object_get(p->cfg, "platform"));
	p->cfg_json = json_dumps(p->cfg, JSON_COMPACT);
	if (update_row(im, job->name, NULL, NULL, NULL, cfg_platform ? cfg_platform : job->platform,
	               p->cfg_json, -1, err) < 0)
		return -1;

	if (disk_exists(im, p->digest, NULL, NULL)) {
		atomic_store(&job->layers_done, (int)p->m.nlayers);
		atomic_store(&job->bytes_done, (uint64_t)p->m.total_size);
	} else {
		if (fetch_layers(im, p->reg, job, &p->m, err) < 0 ||
		    update_row(im, job->name, "converting", NULL, NULL, NULL, NULL, -1, err) < 0)
			return -1;
		p->layer_paths = xcalloc(p->m.nlayers + 1, sizeof(char *));
		for (size_t i = 0; i < p->m.nlayers; i++)
			p->layer_paths[i] = blob_path(im, p->m.layers[i].digest);
		if (convert(im, p->digest, p->cfg_json, (const char *const *)p->layer_paths,
		            p->m.nlayers, err) < 0)
			return -1;
	}
	_cleanup_free_ char *disk = NULL;
	struct stat st;
	if (!disk_exists(im, p->digest, &disk, NULL) || stat(disk, &st) < 0)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "disk for %s vanished", p->digest);
	return update_row(im, job->name, "ready", NULL, NULL, NULL, NULL, (int64_t)st.st_size, err);
}

static int pull(struct hm_images *im, struct job *job, struct hm_err **err)
{
	struct pull_state p = { 0 };
	int r = pull_steps(im, job, &p, err);
	pull_state_done(&p);
	return r;
}

static void *worker(void *arg)
{
	struct hm_images *im = arg;
	for (;;) {
		pthread_mutex_lock(&im->lock);
		while (!im->head && !atomic_load(&im->stopping))
			pthread_cond_wait(&im->cond, &im->lock);
		if (atomic_load(&im->stopping)) {
			pthread_mutex_unlock(&im->lock);
			return NULL;
		}
		struct job *job = im->head;
		im->head = job->next;
		if (!im->head)
			im->tail = NULL;
		job->next = NULL;
		job->running = true;
		pthread_mutex_unlock(&im->lock);

		_cleanup_err_ struct hm_err *err = NULL;
		log_info("images", "pulling", "name=%s platform=%s", job->name, job->platform);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int r = update_row(im, job->name, "pulling", NULL, NULL, NULL, NULL, -1, &err);
		if (r == 0)
			r = pull(im, job, &err);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms =
		    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (r < 0 && atomic_load(&im->stopping)) {
			/* Leave the row as it is: the next start re-queues it. */
			log_info("images", "pull interrupted by shutdown", "name=%s", job->name);
		} else if (r < 0) {
			log_warn("images", "pull failed", "name=%s error=\"%s\"", job->name,
			         err->msg);
			_cleanup_err_ struct hm_err *e2 = NULL;
			if (update_row(im, job->name, "failed", err->msg, NULL, NULL, NULL, -1,
			               &e2) < 0)
				log_error("images", "cannot record failure", "name=%s error=\"%s\"",
				          job->name, e2->msg);
		} else {
			log_info("images", "ready", "name=%s ms=%.0f", job->name, ms);
		}
		pthread_mutex_lock(&im->lock);
		job_unlink(im, job);
		pthread_mutex_unlock(&im->lock);
		job_free(job);
	}
}

/* Under lock: append a job for row `name`. */
static struct job *enqueue(struct hm_images *im, const char *name, const struct hm_image_ref *ref,
                           const char *platform, const struct hm_registry_creds *creds)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->name = xstrdup(name);
	j->platform = xstrdup(platform);
	j->ref.registry = xstrdup(ref->registry);
	j->ref.repository = xstrdup(ref->repository);
	j->ref.tag = ref->tag ? xstrdup(ref->tag) : NULL;
	j->ref.digest = ref->digest ? xstrdup(ref->digest) : NULL;
	if (creds && creds->username && *creds->username)
		j->username = xstrdup(creds->username);
	if (creds && creds->password && *creds->password)
		j->password = xstrdup(creds->password);
	if (creds && creds->token && *creds->token)
		j->token = xstrdup(creds->token);
	if (im->tail)
		im->tail->next = j;
	else
		im->head = j;
	im->tail = j;
	j->all = im->jobs;
	im->jobs = j;
	pthread_cond_signal(&im->cond);
	return j;
}

/* ---- public API ---- */

static bool str_eq(const char *a, const char *b)
{
	return (!a || !*a) ? (!b || !*b) : (b && strcmp(a, b) == 0);
}

/* Under lock: find or queue the pull of `name`; fills *row and *job (NULL when settled). */
static int create_locked(struct hm_images *im, const char *name, const struct hm_image_ref *ref,
                         const char *platform, const struct hm_image_request *req,
                         struct hm_image_row *row, struct job **job, struct hm_err **err)
{
	*job = job_find(im, name);
	if (*job) {
		if (!str_eq((*job)->username, req->creds.username) ||
		    !str_eq((*job)->password, req->creds.password) ||
		    !str_eq((*job)->token, req->creds.token))
			return hm_err_set(err, HM_ERR_CONFLICT, "conflict",
			                  "a pull of `%s` is already in flight with different "
			                  "credentials",
			                  name);
		return hm_store_image_get(im->st, name, row, err);
	}
	_cleanup_err_ struct hm_err *lookup = NULL;
	bool exists = hm_store_image_get(im->st, name, row, &lookup) == 0;
	if (!exists && !hm_err_is(lookup, HM_ERR_NOT_FOUND)) {
		*err = TAKE_PTR(lookup);
		return -1;
	}
	if (exists && strcmp(row->status, "ready") == 0 &&
	    disk_exists(im, row->digest, NULL, NULL)) {
		if (!req->tags)
			return 0;
		free(row->tags);
		row->tags = json_dumps(req->tags, JSON_COMPACT | JSON_SORT_KEYS);
		return hm_store_image_put(im->st, row, err);
	}
	/* New, failed earlier, or its disk went missing: (re)queue. */
	if (!exists) {
		row->name = xstrdup(name);
		row->created_at = hm_now_rfc3339();
		row->size_bytes = -1;
	}
	free(row->status);
	row->status = xstrdup("pending");
	free(row->error);
	row->error = NULL;
	if (!row->platform || strcmp(row->platform, platform) != 0) {
		free(row->platform);
		row->platform = xstrdup(platform);
	}
	if (req->tags || !row->tags) {
		free(row->tags);
		row->tags = req->tags ? json_dumps(req->tags, JSON_COMPACT | JSON_SORT_KEYS)
		                      : xstrdup("{}");
	}
	if (hm_store_image_put(im->st, row, err) < 0)
		return -1;
	*job = enqueue(im, name, ref, platform, &req->creds);
	return 0;
}

int hm_images_create(struct hm_images *im, const struct hm_image_request *req,
                     struct hm_image_view **ret, struct hm_err **err)
{
	struct hm_image_ref ref = { 0 };
	if (!req->name || !*req->name)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name", "name is required");
	if (hm_image_ref_parse(req->name, &ref, err) < 0)
		return -1;
	_cleanup_free_ char *name = hm_image_ref_string(&ref);
	const char *platform = req->platform ? req->platform : hm_platform_host();
	if (!hm_platform_valid(platform) ||
	    (strncmp(platform, "linux/amd64", 11) != 0 &&
	     strncmp(platform, "linux/arm64", 11) != 0) ||
	    (platform[11] != '\0' && platform[11] != '/')) {
		hm_image_ref_done(&ref);
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_platform",
		    "invalid platform `%s`: expected linux/amd64 or linux/arm64[/variant]",
		    platform);
	}
	if (hm_tags_validate(req->tags, err) < 0) {
		hm_image_ref_done(&ref);
		return -1;
	}

	pthread_mutex_lock(&im->lock);
	struct hm_image_row row = { 0 };
	struct job *job = NULL;
	int r = create_locked(im, name, &ref, platform, req, &row, &job, err);
	if (r == 0)
		*ret = view_new(im, &row, job);
	pthread_mutex_unlock(&im->lock);
	hm_image_row_done(&row);
	hm_image_ref_done(&ref);
	return r;
}

/* Accept the name as stored or in any form that normalizes to it. */
static char *normalize(const char *name, struct hm_err **err)
{
	struct hm_image_ref ref = { 0 };
	if (hm_image_ref_parse(name, &ref, err) < 0)
		return NULL;
	char *s = hm_image_ref_string(&ref);
	hm_image_ref_done(&ref);
	return s;
}

int hm_images_get(struct hm_images *im, const char *name, struct hm_image_view **ret,
                  struct hm_err **err)
{
	_cleanup_free_ char *n = normalize(name, err);
	if (!n)
		return -1;
	struct hm_image_row row = { 0 };
	pthread_mutex_lock(&im->lock);
	int r = hm_store_image_get(im->st, n, &row, err);
	if (r == 0)
		*ret = view_new(im, &row, job_find(im, n));
	pthread_mutex_unlock(&im->lock);
	hm_image_row_done(&row);
	return r;
}

int hm_images_list(struct hm_images *im, json_t *filter, struct hm_image_view **ret, size_t *n,
                   struct hm_err **err)
{
	struct hm_image_row *rows = NULL;
	size_t count = 0;
	pthread_mutex_lock(&im->lock);
	int r = hm_store_image_list(im->st, &rows, &count, err);
	if (r == 0) {
		struct hm_image_view *out = xcalloc(count ? count : 1, sizeof(*out));
		size_t k = 0;
		for (size_t i = 0; i < count; i++) {
			view_of(im, &rows[i], job_find(im, rows[i].name), &out[k]);
			if (hm_tags_match(out[k].tags, filter))
				k++;
			else
				view_done(&out[k]);
		}
		*ret = out;
		*n = k;
	}
	pthread_mutex_unlock(&im->lock);
	hm_image_rows_free(rows, count);
	return r;
}

static bool is_hex_digest(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/*
 * Under lock, after a delete: remove the blobs no disk was made from. Each
 * disk folder lists its layer blobs (build_disk); blobs are only a cache for
 * the next pull of the same layers, so one that no disk lists is garbage,
 * unless a pull, conversion or import is under way (it may be writing or
 * about to read one), in which case the next delete collects. A disk folder
 * without a list (made by an older hypeman) stops the collection: its
 * blobs cannot be told apart.
 */
static void collect_blobs(struct hm_images *im)
{
	if (im->jobs || im->nconverting || im->importing)
		return;
	DIR *d = opendir(im->images_dir);
	if (!d)
		return;
	char *keep = xstrdup("\n"); /* "\n<hex>\n<hex>\n...": lines of every list */
	bool complete = true;
	struct dirent *e;
	while (complete && (e = readdir(d))) {
		if (!is_hex_digest(e->d_name))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s/layers", im->images_dir, e->d_name);
		_cleanup_free_ char *text = NULL;
		if (hm_read_file(path, 1u << 20, &text, NULL, NULL) < 0) {
			complete = false;
			break;
		}
		char *more = xasprintf("%s%s", keep, text);
		free(keep);
		keep = more;
	}
	closedir(d);
	d = complete ? opendir(im->blobs_dir) : NULL;
	size_t removed = 0;
	long long bytes = 0;
	while (d && (e = readdir(d))) {
		if (!is_hex_digest(e->d_name))
			continue;
		char needle[68] = "\n";
		memcpy(needle + 1, e->d_name, 64);
		memcpy(needle + 65, "\n", 2);
		if (strstr(keep, needle))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
		    unlinkat(dirfd(d), e->d_name, 0) == 0) {
			removed++;
			bytes += (long long)st.st_blocks * 512;
		}
	}
	if (d)
		closedir(d);
	free(keep);
	if (!complete)
		log_info("images", "blobs not collected",
		         "reason=\"a disk made by an older hypeman lists no layers\"");
	else if (removed)
		log_info("images", "blobs collected", "count=%zu bytes=%lld", removed, bytes);
}

/* Under lock: a disk goes with the last name for its digest, unless a conversion holds it. */
static void drop_unused_disk(struct hm_images *im, const char *digest)
{
	_cleanup_err_ struct hm_err *err = NULL;
	if (hm_store_image_digest_refs(im->st, digest, &err) != 0)
		return;
	for (size_t i = 0; i < im->nconverting; i++)
		if (strcmp(im->converting[i], digest) == 0)
			return;
	_cleanup_free_ char *dir = disk_dir(im, digest);
	if (hm_rm_rf(dir, &err) < 0)
		log_warn("images", "cannot remove disk", "dir=\"%s\" error=\"%s\"", dir, err->msg);
}

int hm_images_tag(struct hm_images *im, const char *name, const char *target,
                  struct hm_image_view **ret, struct hm_err **err)
{
	_cleanup_free_ char *src = normalize(name, err);
	if (!src)
		return -1;
	struct hm_image_ref ref = { 0 };
	if (!target || hm_image_ref_parse(target, &ref, err) < 0)
		return target ? hm_err_wrap(err, "`target`")
		              : hm_err_set(err, HM_ERR_INVALID, "missing_field",
		                           "`target` is required");
	bool by_digest = ref.digest != NULL;
	_cleanup_free_ char *dst = hm_image_ref_string(&ref);
	hm_image_ref_done(&ref);
	if (by_digest)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		                  "`target` %s names a digest: a local tag needs a tag", dst);
	struct hm_image_row row = { 0 }, old = { 0 };
	_cleanup_free_ char *old_digest = NULL;
	pthread_mutex_lock(&im->lock);
	int r = hm_store_image_get(im->st, src, &row, err);
	if (r == 0 && strcmp(row.status, "ready") != 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "image_not_ready", "image `%s` is %s", src,
		               row.status);
	if (r == 0 && job_find(im, dst))
		r = hm_err_set(err, HM_ERR_CONFLICT, "conflict",
		               "image `%s` is being pulled; tag it when the pull ends", dst);
	if (r == 0 && strcmp(src, dst) != 0) {
		if (hm_store_image_get(im->st, dst, &old, NULL) == 0 && old.digest &&
		    strcmp(old.digest, row.digest) != 0)
			old_digest = xstrdup(old.digest);
		/* The same content under another name: the disk is shared by digest. */
		_cleanup_free_ char *now = hm_now_rfc3339();
		struct hm_image_row tagged = row;
		tagged.name = dst;
		tagged.created_at = old.created_at ? old.created_at : now;
		tagged.tags = old.tags ? old.tags : row.tags;
		r = hm_store_image_put(im->st, &tagged, err);
	}
	if (r == 0 && old_digest) {
		drop_unused_disk(im, old_digest); /* the name moved off the only image using it */
		collect_blobs(im);
	}
	struct hm_image_row out = { 0 };
	if (r == 0 && (r = hm_store_image_get(im->st, dst, &out, err)) == 0)
		*ret = view_new(im, &out, NULL);
	pthread_mutex_unlock(&im->lock);
	if (r == 0)
		log_info("images", "tagged", "source=%s target=%s digest=%s", src, dst, out.digest);
	hm_image_row_done(&out);
	hm_image_row_done(&row);
	hm_image_row_done(&old);
	return r;
}

int hm_images_delete(struct hm_images *im, const char *name, struct hm_err **err)
{
	_cleanup_free_ char *n = normalize(name, err);
	if (!n)
		return -1;
	struct hm_image_row row = { 0 };
	pthread_mutex_lock(&im->lock);
	int r = -1;
	if (job_find(im, n)) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "conflict",
		               "image `%s` is being pulled; delete it when the pull ends", n);
		goto out;
	}
	if (hm_store_image_get(im->st, n, &row, err) < 0 ||
	    hm_store_image_delete(im->st, n, err) < 0)
		goto out;
	r = 0;
	if (row.digest && *row.digest)
		drop_unused_disk(im, row.digest);
	log_info("images", "deleted", "name=%s", n);
	collect_blobs(im);
out:
	pthread_mutex_unlock(&im->lock);
	hm_image_row_done(&row);
	return r;
}

int hm_images_resolve(struct hm_images *im, const char *name, struct hm_image_info *ret,
                      struct hm_err **err)
{
	_cleanup_free_ char *n = normalize(name, err);
	if (!n)
		return -1;
	struct hm_image_row row = { 0 };
	if (hm_store_image_get(im->st, n, &row, err) < 0)
		return -1;
	int r = 0;
	memset(ret, 0, sizeof(*ret));
	if (strcmp(row.status, "ready") != 0) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "image_not_ready", "image `%s` is %s", n,
		               row.status);
	} else if (!disk_exists(im, row.digest, &ret->disk_path, &ret->disk_format)) {
		r = hm_err_set(err, HM_ERR_CONFLICT, "image_not_ready",
		               "image `%s` has no disk; pull it again", n);
	} else {
		ret->name = xstrdup(n);
		ret->digest = xstrdup(row.digest);
		ret->config = json_text_or(row.config, json_object());
	}
	hm_image_row_done(&row);
	return r;
}

/*
 * Wait up to timeout_ms for the pull of n (normalized) to end: 0 once it is
 * ready; a failed pull is the error, with the pull's message (404 when the
 * registry has no such image, else 503); a pull still running at the
 * deadline is a 504, and goes on.
 */
static int await_pull(struct hm_images *im, const char *n, long timeout_ms, struct hm_err **err)
{
	for (long waited = 0;; waited += 100) {
		struct hm_image_row row = { 0 };
		if (hm_store_image_get(im->st, n, &row, err) < 0)
			return -1;
		bool failed = strcmp(row.status, "failed") == 0;
		bool ready = strcmp(row.status, "ready") == 0;
		_cleanup_free_ char *why =
		    failed ? xstrdup(row.error ? row.error : "failed") : NULL;
		hm_image_row_done(&row);
		if (ready)
			return 0;
		if (failed) /* the registry's "not found" stays a 404, as before this pulled */
			return hm_err_set(
			    err,
			    strcasestr(why, "not found") ? HM_ERR_NOT_FOUND : HM_ERR_UNAVAILABLE,
			    "image_pull_failed", "image `%s` could not be pulled: %s", n, why);
		if (waited >= timeout_ms)
			return hm_err_set(
			    err, HM_ERR_TIMEOUT, "image_pull_timeout",
			    "image `%s` is still being pulled after %ld s; the pull "
			    "goes on (GET /images/{name}), ask again once it is ready",
			    n, timeout_ms / 1000);
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int hm_images_ensure(struct hm_images *im, const char *name, long timeout_ms,
                     struct hm_image_info *ret, struct hm_err **err)
{
	_cleanup_err_ struct hm_err *first = NULL;
	if (hm_images_resolve(im, name, ret, &first) == 0)
		return 0;
	if (!hm_err_is(first, HM_ERR_NOT_FOUND) &&
	    !(first->code && strcmp(first->code, "image_not_ready") == 0)) {
		*err = TAKE_PTR(first);
		return -1;
	}
	/* Not here, or failed before, or in flight: a pull is queued (or joined). */
	struct hm_image_request req = { .name = name };
	struct hm_image_view *img = NULL;
	if (hm_images_create(im, &req, &img, err) < 0)
		return -1;
	_cleanup_free_ char *n = TAKE_PTR(img->name);
	hm_image_view_free(img);
	log_info("images", "pulling for a create", "name=%s", n);
	if (await_pull(im, n, timeout_ms, err) < 0)
		return -1;
	return hm_images_resolve(im, n, ret, err);
}

int hm_images_pull(struct hm_images *im, const struct hm_image_request *req, long timeout_ms,
                   struct hm_image_view **ret, struct hm_err **err)
{
	struct hm_image_view *img = NULL;
	if (hm_images_create(im, req, &img, err) < 0)
		return -1;
	_cleanup_free_ char *n = TAKE_PTR(img->name);
	hm_image_view_free(img);
	if (await_pull(im, n, timeout_ms, err) < 0)
		return -1;
	return hm_images_get(im, n, ret, err);
}

void hm_image_info_done(struct hm_image_info *info)
{
	free(info->name);
	free(info->digest);
	free(info->disk_path);
	free(info->disk_format);
	json_decref(info->config);
	memset(info, 0, sizeof(*info));
}

/* ---- life cycle ---- */

/* Remove what an interrupted run left: tmp dirs and partial blobs. */
static void sweep(struct hm_images *im)
{
	hm_rm_rf(im->tmp_dir, NULL);
	hm_mkdir_p(im->tmp_dir, 0700, NULL);
	DIR *d = opendir(im->blobs_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strstr(e->d_name, ".part.")) {
			_cleanup_free_ char *p = xasprintf("%s/%s", im->blobs_dir, e->d_name);
			unlink(p);
		}
	}
	closedir(d);
}

/* Re-queue rows a previous run left in flight. */
static void recover(struct hm_images *im)
{
	struct hm_image_row *rows = NULL;
	size_t n = 0;
	_cleanup_err_ struct hm_err *err = NULL;
	if (hm_store_image_list(im->st, &rows, &n, &err) < 0) {
		log_error("images", "cannot list images", "error=\"%s\"", err->msg);
		return;
	}
	pthread_mutex_lock(&im->lock);
	for (size_t i = 0; i < n; i++) {
		const char *s = rows[i].status;
		if (strcmp(s, "pending") && strcmp(s, "pulling") && strcmp(s, "converting"))
			continue;
		struct hm_image_ref ref = { 0 };
		_cleanup_err_ struct hm_err *e = NULL;
		if (hm_image_ref_parse(rows[i].name, &ref, &e) < 0)
			continue;
		enqueue(im, rows[i].name, &ref,
		        rows[i].platform ? rows[i].platform : hm_platform_host(), NULL);
		log_info("images", "re-queued interrupted pull", "name=%s", rows[i].name);
		hm_image_ref_done(&ref);
	}
	pthread_mutex_unlock(&im->lock);
	hm_image_rows_free(rows, n);
}

int hm_images_start(struct hm_store *st, const struct hm_images_opts *o, struct hm_images **ret,
                    struct hm_err **err)
{
	struct hm_images *im = xcalloc(1, sizeof(*im));
	im->st = st;
	im->data_dir = xstrdup(o->data_dir);
	im->blobs_dir = xasprintf("%s/blobs/sha256", o->data_dir);
	im->images_dir = xasprintf("%s/images", o->data_dir);
	im->tmp_dir = xasprintf("%s/images/tmp", o->data_dir);
	im->unpack_helper = xstrdup(o->unpack_helper);
	im->insecure = o->insecure ? xstrdup(o->insecure) : NULL;
	im->disk_format = xstrdup(o->disk_format ? o->disk_format : "erofs");
	im->stall_timeout_s = o->stall_timeout_s;
	pthread_mutex_init(&im->lock, NULL);
	pthread_cond_init(&im->cond, NULL);
	pthread_cond_init(&im->conv_cond, NULL);
	if (strcmp(im->disk_format, "erofs") == 0 && !hm_which("mkfs.erofs")) {
		log_warn("images", "mkfs.erofs not found; building ext4 disks instead");
		free(im->disk_format);
		im->disk_format = xstrdup("ext4");
	}
	if (hm_mkdir_p(im->blobs_dir, 0700, err) < 0 || hm_mkdir_p(im->tmp_dir, 0700, err) < 0) {
		hm_images_stop(im);
		return -1;
	}
	sweep(im);
	recover(im);
	im->nthreads = o->workers > 0 ? o->workers : 2;
	im->threads = xcalloc((size_t)im->nthreads, sizeof(pthread_t));
	for (int i = 0; i < im->nthreads; i++) {
		if (pthread_create(&im->threads[i], NULL, worker, im) != 0) {
			im->nthreads = i;
			hm_images_stop(im);
			return hm_err_errno(err, errno, "start image workers");
		}
	}
	*ret = im;
	return 0;
}

void hm_images_stop(struct hm_images *im)
{
	if (!im)
		return;
	pthread_mutex_lock(&im->lock);
	atomic_store(&im->stopping, true);
	pthread_cond_broadcast(&im->cond);
	pthread_mutex_unlock(&im->lock);
	for (int i = 0; i < im->nthreads; i++)
		pthread_join(im->threads[i], NULL);
	while (im->jobs) {
		struct job *j = im->jobs;
		im->jobs = j->all;
		job_free(j);
	}
	for (size_t i = 0; i < im->nconverting; i++)
		free(im->converting[i]);
	free(im->converting);
	free(im->threads);
	free(im->data_dir);
	free(im->blobs_dir);
	free(im->images_dir);
	free(im->tmp_dir);
	free(im->unpack_helper);
	free(im->insecure);
	free(im->disk_format);
	pthread_cond_destroy(&im->conv_cond);
	pthread_cond_destroy(&im->cond);
	pthread_mutex_destroy(&im->lock);
	free(im);
}

/* Under lock: claim `name` for a load the way a pull would, recording it as converting. */
static int claim_for_load(struct hm_images *im, const char *n, const char *digest,
                          const char *platform, const char *cfg_json, json_t *tags,
                          struct job **ret, struct hm_err **err)
{
	if (job_find(im, n))
		return hm_err_set(err, HM_ERR_CONFLICT, "conflict", "image `%s` is being pulled",
		                  n);
	struct hm_image_row row = { 0 };
	if (hm_store_image_get(im->st, n, &row, NULL) < 0) {
		row.name = xstrdup(n);
		row.created_at = hm_now_rfc3339();
	}
	free(row.status);
	row.status = xstrdup("converting");
	free(row.error);
	row.error = NULL;
	free(row.digest);
	row.digest = xstrdup(digest);
	free(row.platform);
	row.platform = xstrdup(platform);
	free(row.config);
	row.config = xstrdup(cfg_json);
	row.size_bytes = -1;
	if (tags || !row.tags) {
		free(row.tags);
		row.tags = tags ? json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
	}
	int r = hm_store_image_put(im->st, &row, err);
	hm_image_row_done(&row);
	if (r < 0)
		return -1;
	struct job *job = xcalloc(1, sizeof(*job));
	job->name = xstrdup(n);
	job->platform = xstrdup(platform);
	job->running = true;
	job->all = im->jobs;
	im->jobs = job;
	*ret = job;
	return 0;
}

/* Convert a read archive under the name `n`; the row ends ready or failed. */
static int load_archive(struct hm_images *im, const struct hm_archive_image *a, const char *n,
                        json_t *tags, struct hm_image_view **ret, struct hm_err **err)
{
	json_t *cfg = NULL;
	if (hm_image_config_parse(a->config, strlen(a->config), &cfg, err) < 0)
		return -1;
	_cleanup_free_ char *cfg_json = json_dumps(cfg, JSON_COMPACT);
	const char *p = json_string_value(json_object_get(cfg, "platform"));
	_cleanup_free_ char *platform = xstrdup(p ? p : hm_platform_host());
	json_decref(cfg);

	struct job *job = NULL;
	pthread_mutex_lock(&im->lock);
	int r = claim_for_load(im, n, a->digest, platform, cfg_json, tags, &job, err);
	pthread_mutex_unlock(&im->lock);
	if (r < 0)
		return -1;

	char **paths = xcalloc(a->nlayers + 1, sizeof(char *));
	for (size_t i = 0; i < a->nlayers; i++)
		paths[i] = blob_path(im, a->layers[i]);
	r = convert(im, a->digest, cfg_json, (const char *const *)paths, a->nlayers, err);
	for (size_t i = 0; i < a->nlayers; i++)
		free(paths[i]);
	free(paths);
	_cleanup_free_ char *disk = NULL;
	struct stat st;
	if (r == 0 && (!disk_exists(im, a->digest, &disk, NULL) || stat(disk, &st) < 0))
		r = hm_err_set(err, HM_ERR_INTERNAL, NULL, "disk for %s vanished", a->digest);
	if (r == 0)
		r = update_row(im, n, "ready", NULL, NULL, NULL, NULL, (int64_t)st.st_size, err);
	if (r < 0)
		update_row(im, n, "failed", hm_err_message(err, "load failed"), NULL, NULL, NULL,
		           -1, NULL);
	log_info("images", r == 0 ? "loaded" : "load failed", "name=%s digest=%s", n, a->digest);

	struct hm_image_row row = { 0 };
	pthread_mutex_lock(&im->lock);
	job_unlink(im, job);
	if (r == 0 && (r = hm_store_image_get(im->st, n, &row, err)) == 0)
		*ret = view_new(im, &row, NULL);
	pthread_mutex_unlock(&im->lock);
	hm_image_row_done(&row);
	job_free(job);
	return r;
}

int hm_images_import(struct hm_images *im, const char *path, const char *name, json_t *tags,
                     struct hm_image_view **ret, struct hm_err **err)
{
	if (hm_tags_validate(tags, err) < 0)
		return -1;
	struct hm_archive_image a = { 0 };
	pthread_mutex_lock(&im->lock);
	im->importing++;
	pthread_mutex_unlock(&im->lock);
	int rr = hm_archive_read(path, hm_platform_host(), name, im->blobs_dir, &a, err);
	pthread_mutex_lock(&im->lock);
	im->importing--; /* from here a load holds a job or has failed */
	pthread_mutex_unlock(&im->lock);
	if (rr < 0)
		return hm_err_wrap(err, "load");
	const char *use = name && *name ? name : a.name;
	struct hm_image_ref ref = { 0 };
	int r;
	if (!use)
		r = hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		               "the archive does not name its image; give a name");
	else
		r = hm_image_ref_parse(use, &ref, err);
	if (r == 0) {
		_cleanup_free_ char *n = hm_image_ref_string(&ref);
		r = load_archive(im, &a, n, tags, ret, err);
	}
	hm_image_ref_done(&ref);
	hm_archive_image_done(&a);
	return r;
}
