/*
 * The Unikraft Cloud dialect (everything under /v1), shared between its
 * files: ukc_routes.c (the route table and the dialect), ukc_envelope.c (the
 * envelope every answer wears, errors included, and the refs requests name
 * resources by), ukc_instance.c (the Instance object), ukc_instances.c (the
 * instance handlers).
 *
 * The envelope: {status: success|error|partial_success, message?, data,
 * errors?, op_time_us}. A request that cannot be read at all is a 4xx whose
 * envelope has `errors: [{status, message}]`; a request naming resources
 * answers 200 and says per resource: each entry of data.<kind> carries its
 * own status, and a failed one its message and an error number (8: no such
 * resource, which the official SDK turns into a 404).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json_cleanup.h"
#include "instance/state.h"

struct hm_err;
struct hm_instance_view;
struct hm_req;
struct hm_resp;

/* The error numbers of a failed entry. */
enum {
	UKC_ERR_OTHER = 1,     /* anything else: the message says what */
	UKC_ERR_NOT_FOUND = 8, /* no such resource */
};

/* A resource as a request names it: by exactly one of uuid and name. */
struct ukc_ref {
	const char *uuid, *name; /* borrowed from the request */
	json_t *item;            /* the body's item it came from (borrowed), or NULL */
};

/*
 * The refs of a bulk body: a JSON array of objects (one object is taken as
 * a list of one), each with exactly one of `uuid` and `name` as a string.
 * A body that breaks that is a 400 naming the item and field. *ret is
 * malloc'd (free it); at most UKC_MAX_REFS.
 */
#define UKC_MAX_REFS 256
int ukc_body_refs(json_t *body, struct ukc_ref **ret, size_t *n, struct hm_err **err);
/* One object's ref (item: the object): `where` ("item [0]: ", or "")
 * prefixes the 400 for a non-object, a non-string, both, or neither. */
int ukc_ref_of(json_t *item, const char *where, struct ukc_ref *r, struct hm_err **err);
/* The refs of the query: every `uuid=` and `name=`, in order. */
int ukc_query_refs(const struct hm_req *req, struct ukc_ref **ret, size_t *n, struct hm_err **err);
/* The by-uuid routes' one ref: the {uuid} path parameter. */
struct ukc_ref ukc_path_ref(const struct hm_req *req);
/* The key the domain looks the ref up by; its UUID form is checked (400 otherwise). */
int ukc_ref_check(const struct ukc_ref *r, struct hm_err **err);
/* Whether what the domain found by the ref's key is the one the ref names:
 * the same uuid (either case) or the same name, never an id or id prefix. */
bool ukc_ref_is(const struct ukc_ref *r, const char *uuid, const char *name);

/*
 * The answer to a request about resources: entries collected one by one,
 * then sent as data.<key> with the status their mix makes.
 */
struct ukc_batch {
	json_t *entries;
	size_t ok, failed;
};
void ukc_batch_init(struct ukc_batch *b);
/* A resource that was acted on: entry (taken) gets status "success". */
void ukc_batch_ok(struct ukc_batch *b, json_t *entry);
/* A resource that could not be: its ref, the error's message and number. */
void ukc_batch_fail(struct ukc_batch *b, const struct ukc_ref *ref, const struct hm_err *err);
/* Send the batch as data.<key> (frees it). */
int ukc_batch_reply(struct hm_resp *resp, struct ukc_batch *b, const char *key);

/* A successful answer with `data` (taken). */
int ukc_reply(struct hm_resp *resp, json_t *data);
/* The dialect's error answer and finishing touch (ukc_routes.c uses them). */
void ukc_render_error(struct hm_resp *resp, const struct hm_err *err);
void ukc_finish(struct hm_resp *resp, double elapsed_us);

/* An integer query parameter (the last one given), or dflt when absent; a
 * value that is not an integer in [min, max] is a 400 naming it. */
int ukc_query_int(const struct hm_req *req, const char *name, long long dflt, long long min,
                  long long max, long long *ret, struct hm_err **err);
/* A boolean query parameter (`true`/`false`, `1`/`0`), or dflt. */
int ukc_query_bool(const struct hm_req *req, const char *name, bool dflt, bool *ret,
                   struct hm_err **err);

/* The UKC state name for a domain state. */
const char *ukc_state_name(enum hm_state s);
/* The Instance object for a view; without details, only uuid, name and state
 * (req: for the service group it is in; NULL: not shown). */
json_t *ukc_instance(struct hm_req *req, const struct hm_instance_view *v, bool details);
/* The tags of a view ({k: v}) as UKC's list of strings ("k=v", or "k" for an empty v). */
json_t *ukc_tags_out(json_t *tags);
/* The UKC state of a view: its state, or stopping while a stop is under way. */
const char *ukc_view_state(const struct hm_instance_view *v);

/* ---- list queries: details, count, from, order, sortby, tags ---- */

struct ukc_list {
	bool details;     /* default true */
	long long count;  /* 0: all */
	const char *from; /* the uuid the page starts after, or NULL (borrowed) */
	bool desc;        /* newest first */
	json_t *tags;     /* {k: v} every one must have, or NULL (owned) */
};
/* A bad value is a 400 naming the parameter. */
int ukc_list_parse(const struct hm_req *req, struct ukc_list *q, struct hm_err **err);
void ukc_list_done(struct ukc_list *q);

/* ---- one verb over the resources a request names (ukc_each.c) ---- */

/* A kind of resource: how a ref finds one, who it is, how it is let go. */
struct ukc_kind {
	const char *key; /* data.<key>: "instances", "volumes" */
	int (*resolve)(struct hm_req *req, const struct ukc_ref *r, void **ret,
	               struct hm_err **err);
	void (*identity)(const void *v, const char **uuid, const char **name);
	void (*free)(void *v);
};
/* What is done to one resource v (of the kind's type): fill entry (which
 * holds uuid and name already) or fail with err, which is that entry's. */
typedef int ukc_verb(struct hm_req *req, const void *v, json_t *opts, json_t *entry,
                     struct hm_err **err);
/* verb on each ref (its body item as the options, else shared_opts); the
 * answer is data.<key> with an entry per ref. */
int ukc_each(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
             const struct ukc_ref *refs, size_t n, json_t *shared_opts, ukc_verb *verb);
/* The refs of the body (bulk routes). */
int ukc_each_body(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
                  ukc_verb *verb, struct hm_err **err);
/* The path's {uuid}, the body (an object, or none) as the options (by-uuid routes). */
int ukc_each_path(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k,
                  ukc_verb *verb, struct hm_err **err);
/* The query's uuid= and name= (at least one), with opts. */
int ukc_each_query(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k, json_t *opts,
                   ukc_verb *verb, struct hm_err **err);
/* The path's {uuid} with {details} from the query (by-uuid gets). */
int ukc_each_get(struct hm_req *req, struct hm_resp *resp, const struct ukc_kind *k, ukc_verb *verb,
                 struct hm_err **err);
/* Where a page starts in a listing (uuids in the order listed): after q->from
 * (a 400 naming `what` when none has that uuid), else at 0. */
int ukc_page(const struct ukc_list *q, const char *const *uuids, size_t n, const char *what,
             size_t *first, struct hm_err **err);

/* ---- body fields (a request's JSON object; absent or null: the default) ---- */

/* body[key] as an integer in [min, max], or dflt; else a 400 naming key. */
int ukc_body_int(json_t *body, const char *key, long long dflt, long long min, long long max,
                 long long *ret, struct hm_err **err);
/* body[key] as a boolean, or false. */
int ukc_body_bool(json_t *body, const char *key, bool *ret, struct hm_err **err);
/* body[key] as a string (borrowed), or NULL. */
int ukc_body_str(json_t *body, const char *key, const char **ret, struct hm_err **err);
/* UKC's tags (["k=v", "k"]) at `field` as the domain's map ({"k": "v", "k": ""}):
 * *ret is new, or NULL when list is absent or null. */
int ukc_tags_in(json_t *list, const char *field, json_t **ret, struct hm_err **err);
/* A name as UKC makes one up: word-word-hex (malloc'd). */
char *ukc_random_name(void);

/* ---- instances (ukc_instance.c) ---- */

struct hm_instances;
/* Instances as a kind of resource (ukc_each): views of hm_instance_view. */
extern const struct ukc_kind ukc_instance_kind;
/* The instance a ref names, by its uuid or its name only (the domain's wider
 * lookup by id or id prefix is narrowed back): 404 not_found otherwise. */
int ukc_instance_resolve(struct hm_instances *in, const struct ukc_ref *r,
                         struct hm_instance_view **ret, struct hm_err **err);

/* ---- volumes (ukc_volumes.c) ---- */

struct hm_volumes;
struct hm_volume_view;
/* The volume a ref names, by its uuid or its name only: 404 not_found otherwise. */
int ukc_volume_resolve(struct hm_volumes *vs, const struct ukc_ref *r, struct hm_volume_view **ret,
                       struct hm_err **err);
/* The Volume object (its state from the instances it is attached to). */
json_t *ukc_volume(struct hm_instances *in, const struct hm_volume_view *v, bool details);
/* A new volume as a CreateVolumeRequest-shaped object says it (name, size_mb,
 * tags; the fixed quota_policy, filesystem, access_mode), read apart from
 * the engine; `where` prefixes messages ("volumes[0]: "). */
struct ukc_volume_spec {
	const char *name;   /* NULL: made up when it is made (borrowed) */
	int64_t size_bytes; /* a whole number of MiB */
	json_t *tags;       /* {k: v}, or NULL (owned: json_decref) */
};
int ukc_volume_spec_in(json_t *body, const char *where, struct ukc_volume_spec *ret,
                       struct hm_err **err);
/* Make it (a 409 when the name is taken, ...). */
int ukc_volume_make(struct hm_volumes *vs, const struct ukc_volume_spec *s,
                    struct hm_volume_view **ret, struct hm_err **err);

/* ---- service groups (ukc_services.c) ---- */

struct hm_ingresses;
struct hm_group_spec;
/* A group's fields from a request object (services, domains, soft_limit,
 * hard_limit), `where` prefixing messages; the spec borrows from obj. */
int ukc_group_spec_in(json_t *obj, const char *where, struct hm_group_spec *ret,
                      struct hm_err **err);
struct hm_group_view;
/* The group a ref names, by its uuid or its name only: 404 not_found otherwise. */
int ukc_group_resolve(struct hm_req *req, const struct ukc_ref *r, struct hm_group_view **ret,
                      struct hm_err **err);
/* The instance's `service_group` ({uuid, name, domains[{fqdn}]}) on o, when it is in one. */
void ukc_instance_group_out(struct hm_ingresses *ing, const char *instance_id, json_t *o);

/* ---- checkpoints (ukc_checkpoints.c): the engine's snapshots ---- */

struct hm_snapshot_view;
/* The checkpoint a ref names, by its uuid or its name only: 404 otherwise. */
int ukc_checkpoint_resolve(struct hm_instances *in, const struct ukc_ref *r,
                           struct hm_snapshot_view **ret, struct hm_err **err);
