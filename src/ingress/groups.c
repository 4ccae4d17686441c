/*
 * ingress/groups: the service groups (see groups.h). This file owns their
 * rows (store/ingresses.h, `service_groups`: the spec as JSON with the
 * members' ids), the checks a new or changed group passes, and how a group
 * becomes rules of the proxy's table (ing_group_rules_add, called by
 * ing_reload). Changes run under the service's `mu`, as the ingresses':
 * the row, the listeners and the rule table move together.
 *
 * Members leave by hm_groups_detach, which the instance service calls for
 * every instance deleted (hm_instances_on_delete); a member id left over by
 * a daemon killed in between is skipped by the proxy and the views.
 */
#include "ingress/groups.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/json_cleanup.h"
#include "core/log.h"
#include "core/names.h"
#include "core/xalloc.h"
#include "ingress/internal.h"
#include "ingress/tls.h"
#include "store/ingresses.h"

void hm_group_view_free(struct hm_group_view *v)
{
	if (!v)
		return;
	hm_group_views_free(v, 1);
}

static void view_done(struct hm_group_view *v)
{
	free(v->uuid);
	free(v->name);
	free(v->created_at);
	for (size_t i = 0; i < v->nfqdns; i++)
		free(v->fqdns[i]);
	for (size_t i = 0; i < v->nmembers; i++)
		free(v->members[i]);
}

void hm_group_views_free(struct hm_group_view *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		view_done(&v[i]);
	free(v);
}

const char *hm_groups_domain(const struct hm_ingresses *ing)
{
	return ing->domain;
}

/* ---- the stored spec ---- */

static const char *const handler_names[] = { "tls", "http", "redirect" };

/* A view from a row; false when its spec cannot be read (never written so). */
static bool view_of(const struct hm_ingress_row *row, struct hm_group_view *v)
{
	*v = (struct hm_group_view){ .uuid = xstrdup(row->id),
		                     .name = xstrdup(row->name),
		                     .created_at = xstrdup(row->created_at) };
	_cleanup_json_ json_t *spec = json_loads(row->spec ? row->spec : "{}", 0, NULL);
	if (!spec)
		return false;
	size_t i;
	json_t *o;
	json_array_foreach (json_object_get(spec, "services"), i, o) {
		if (v->nsvcs == HM_GROUP_MAX_SERVICES)
			break;
		struct hm_svc *s = &v->svcs[v->nsvcs++];
		s->port = (int)json_integer_value(json_object_get(o, "port"));
		s->dest_port = (int)json_integer_value(json_object_get(o, "destination_port"));
		size_t k;
		json_t *h;
		json_array_foreach (json_object_get(o, "handlers"), k, h)
			for (unsigned b = 0; b < 3; b++)
				if (json_is_string(h) &&
				    strcmp(json_string_value(h), handler_names[b]) == 0)
					s->handlers |= 1u << b;
	}
	json_array_foreach (json_object_get(spec, "domains"), i, o)
		if (json_is_string(o) && v->nfqdns < HM_GROUP_MAX_DOMAINS)
			v->fqdns[v->nfqdns++] = xstrdup(json_string_value(o));
	json_array_foreach (json_object_get(spec, "instances"), i, o)
		if (json_is_string(o) && v->nmembers < HM_GROUP_MAX_MEMBERS)
			v->members[v->nmembers++] = xstrdup(json_string_value(o));
	v->soft_limit = (int)json_integer_value(json_object_get(spec, "soft_limit"));
	v->hard_limit = (int)json_integer_value(json_object_get(spec, "hard_limit"));
	v->persistent = json_is_true(json_object_get(spec, "persistent"));
	return true;
}

static char *spec_text(const struct hm_group_view *v)
{
	json_t *svcs = json_array(), *doms = json_array(), *members = json_array();
	for (size_t i = 0; i < v->nsvcs; i++) {
		json_t *h = json_array();
		for (unsigned b = 0; b < 3; b++)
			if (v->svcs[i].handlers & (1u << b))
				json_array_append_new(h, json_string(handler_names[b]));
		json_array_append_new(svcs, json_pack("{s:i,s:i,s:o}", "port", v->svcs[i].port,
		                                      "destination_port", v->svcs[i].dest_port,
		                                      "handlers", h));
	}
	for (size_t i = 0; i < v->nfqdns; i++)
		json_array_append_new(doms, json_string(v->fqdns[i]));
	for (size_t i = 0; i < v->nmembers; i++)
		json_array_append_new(members, json_string(v->members[i]));
	_cleanup_json_ json_t *o =
	    json_pack("{s:o,s:o,s:i,s:i,s:b,s:o}", "services", svcs, "domains", doms, "soft_limit",
	              v->soft_limit, "hard_limit", v->hard_limit, "persistent", v->persistent,
	              "instances", members);
	return json_dumps(o, JSON_COMPACT);
}

void ing_group_rules_add(struct rule **r, size_t *n, const char *name, const char *text)
{
	char none[1] = "";
	struct hm_ingress_row row = {
		.id = none, .name = (char *)name, .spec = (char *)text, .created_at = none
	};
	struct hm_group_view v;
	bool ok = view_of(&row, &v);
	for (size_t i = 0; ok && i < v.nsvcs; i++) {
		const struct hm_svc *s = &v.svcs[i];
		for (size_t d = 0; d < v.nfqdns; d++) {
			*r = xrealloc(*r, (*n + 1) * sizeof(**r));
			struct rule *nr = &(*r)[(*n)++];
			*nr = (struct rule){
				.hostname = xstrdup(v.fqdns[d]),
				.port = s->port,
				.tls = (s->handlers & HM_SVC_TLS) != 0,
				.raw = (s->handlers & HM_SVC_TLS) && !(s->handlers & HM_SVC_HTTP),
				.redirect_to = s->handlers & HM_SVC_REDIRECT ? s->dest_port : 0,
				.target = xstrdup(""),
				.target_port = s->dest_port,
				.group = xstrdup(name),
				.members = xcalloc(v.nmembers ? v.nmembers : 1, sizeof(char *)),
				.nmembers = v.nmembers,
				.soft_limit = v.soft_limit,
				.hard_limit = v.hard_limit,
			};
			for (size_t k = 0; k < v.nmembers; k++)
				nr->members[k] = xstrdup(v.members[k]);
		}
	}
	view_done(&v);
}

/* ---- checks ---- */

/* A hostname: dot-separated DNS labels, at most 253 bytes. */
static bool valid_host(const char *h)
{
	size_t len = strlen(h), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = h[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || h[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) ||
		      (c == '-' && label > 0)))
			return false;
		label++;
	}
	return true;
}

static int check_svc(const struct hm_svc *s, size_t i, const struct hm_group_spec *spec,
                     const char *where, struct hm_err **err)
{
	unsigned h = s->handlers;
	if (s->port < 1 || s->port > 65535 || s->dest_port < 1 || s->dest_port > 65535)
		return hm_err_set(
		    err, HM_ERR_INVALID, "invalid_field",
		    "%sservices[%zu]: `port` and `destination_port` must be from 1 to "
		    "65535",
		    where, i);
	const char *why = NULL;
	if (s->port == 80 && (!(h & HM_SVC_HTTP) || (h & HM_SVC_TLS)))
		why = "port 80 must have `http` and not `tls`";
	else if (s->port == 443 &&
	         ((h & (HM_SVC_HTTP | HM_SVC_TLS)) != (HM_SVC_HTTP | HM_SVC_TLS) ||
	          (h & HM_SVC_REDIRECT)))
		why = "port 443 must have `http` and `tls` (and no `redirect`)";
	else if (s->port != 80 && s->port != 443 && (!(h & HM_SVC_TLS) || (h & HM_SVC_HTTP)))
		why = "ports other than 80 and 443 must have `tls` and not `http`";
	else if (s->port != 80 && s->port != 443 && (h & HM_SVC_REDIRECT))
		why = "`redirect` is only for port 80 (to 443)";
	if (why)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_handlers", "%sservices[%zu]: %s",
		                  where, i, why);
	if (h & HM_SVC_REDIRECT) {
		bool has443 = false;
		for (size_t k = 0; k < spec->nsvcs; k++)
			has443 |= spec->svcs[k].port == 443;
		if (s->dest_port != 443 || !has443)
			return hm_err_set(
			    err, HM_ERR_INVALID, "invalid_handlers",
			    "%sservices[%zu]: `redirect` sends port 80 to 443: its "
			    "`destination_port` must be 443 and the group must publish "
			    "443",
			    where, i);
	}
	for (size_t k = 0; k < i; k++)
		if (spec->svcs[k].port == s->port)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "%sservices[%zu]: port %d is published twice", where, i,
			                  s->port);
	return 0;
}

/*
 * A spec checked and made into a view's fields (fqdns, services, limits),
 * for a group called name: 400 naming what is wrong.
 */
static int build(struct hm_ingresses *ing, const char *name, const struct hm_group_spec *spec,
                 const char *where, struct hm_group_view *v, struct hm_err **err)
{
	if (spec->nsvcs == 0 || spec->nsvcs > HM_GROUP_MAX_SERVICES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`services`: from 1 to %d services", where,
		                  HM_GROUP_MAX_SERVICES);
	if (spec->ndomains > HM_GROUP_MAX_DOMAINS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field", "%s`domains`: at most %d",
		                  where, HM_GROUP_MAX_DOMAINS);
	if (spec->soft_limit < 0 || spec->soft_limit > HM_GROUP_MAX_LIMIT || spec->hard_limit < 0 ||
	    spec->hard_limit > HM_GROUP_MAX_LIMIT)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`soft_limit` and `hard_limit` must be from 1 to %d", where,
		                  HM_GROUP_MAX_LIMIT);
	if (spec->soft_limit && spec->hard_limit && spec->soft_limit > spec->hard_limit)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "%s`soft_limit` (%d) cannot be over `hard_limit` (%d)", where,
		                  spec->soft_limit, spec->hard_limit);
	for (size_t i = 0; i < spec->nsvcs; i++)
		if (check_svc(&spec->svcs[i], i, spec, where, err) < 0)
			return -1;
	memcpy(v->svcs, spec->svcs, spec->nsvcs * sizeof(spec->svcs[0]));
	v->nsvcs = spec->nsvcs;
	v->soft_limit = spec->soft_limit;
	v->hard_limit = spec->hard_limit;
	v->persistent = spec->persistent;
	for (size_t i = 0; i < spec->ndomains || (i == 0 && spec->ndomains == 0); i++) {
		char *f;
		if (spec->ndomains == 0) {
			f = xasprintf("%s.%s", name, ing->domain);
		} else {
			const char *d = spec->domains[i];
			size_t len = strlen(d);
			f = len && d[len - 1] == '.' ? xstrndup(d, len - 1)
			                             : xasprintf("%s.%s", d, ing->domain);
		}
		for (char *p = f; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		bool twice = false;
		for (size_t k = 0; k < v->nfqdns; k++)
			twice |= strcmp(v->fqdns[k], f) == 0;
		if (!valid_host(f) || twice) {
			int r = hm_err_set(err, HM_ERR_INVALID, "invalid_domain",
			                   twice ? "%sdomains[%zu]: `%.260s` is given twice"
			                         : "%sdomains[%zu]: `%.260s` is not a domain name "
			                           "(DNS labels of a-z, 0-9 and -)",
			                   where, i, f);
			free(f);
			return r;
		}
		v->fqdns[v->nfqdns++] = f;
	}
	/* TLS needs a certificate the user put in the directory for every name. */
	hm_tls_reload(ing->tls, NULL);
	for (size_t i = 0; i < v->nsvcs; i++) {
		if (!(v->svcs[i].handlers & HM_SVC_TLS))
			continue;
		for (size_t k = 0; k < v->nfqdns; k++)
			if (!hm_tls_covers(ing->tls, v->fqdns[k]))
				return hm_err_set(err, HM_ERR_INVALID, "certificate_missing",
				                  "%sservices[%zu] (port %d) has `tls`, and no "
				                  "certificate in %s covers %s (put NAME.crt and "
				                  "NAME.key there)",
				                  where, i, v->svcs[i].port, hm_tls_dir(ing->tls),
				                  v->fqdns[k]);
	}
	return 0;
}

/*
 * Save v (a new row when insert, else its spec) and route it: its ports
 * listened on first, its rules checked against the others'. Under mu.
 */
static int commit(struct hm_ingresses *ing, const struct hm_group_view *v, bool insert,
                  struct hm_err **err)
{
	_cleanup_free_ char *text = spec_text(v);
	struct rule *nr = NULL;
	size_t nn = 0;
	ing_group_rules_add(&nr, &nn, v->name, text);
	int r = ing_check_new(ing, nr, nn, insert ? NULL : v->name, err);
	for (size_t k = 0; k < nn && r == 0; k++)
		if (!ing_listening(ing, nr[k].port))
			r = ing_listen_on(ing, nr[k].port, nr[k].tls, nr[k].raw, err);
	ing_rules_free(nr, nn);
	struct hm_ingress_row row = {
		.id = v->uuid, .name = v->name, .spec = text, .created_at = v->created_at
	};
	if (r == 0)
		r = insert ? hm_store_group_insert(ing->st, &row, err)
		           : hm_store_group_set_spec(ing->st, v->uuid, text, err);
	if (r == 0)
		r = ing_reload(ing, err);
	ing_prune_listeners(ing); /* what a failed change opened, or a change left unused */
	return r;
}

/* ---- the service ---- */

static int find_view(struct hm_ingresses *ing, const char *key, struct hm_group_view *v,
                     struct hm_err **err)
{
	struct hm_ingress_row row = { 0 };
	if (hm_store_group_find(ing->st, key, &row, err) < 0)
		return -1;
	view_of(&row, v);
	hm_ingress_row_done(&row);
	return 0;
}

static struct hm_group_view *copy_out(const struct hm_group_view *v)
{
	struct hm_group_view *o = xcalloc(1, sizeof(*o));
	*o = *v;
	o->uuid = xstrdup(v->uuid);
	o->name = xstrdup(v->name);
	o->created_at = xstrdup(v->created_at);
	for (size_t i = 0; i < v->nfqdns; i++)
		o->fqdns[i] = xstrdup(v->fqdns[i]);
	for (size_t i = 0; i < v->nmembers; i++)
		o->members[i] = xstrdup(v->members[i]);
	return o;
}

int hm_groups_create(struct hm_ingresses *ing, const char *name, const struct hm_group_spec *spec,
                     const char *where, struct hm_group_view **ret, struct hm_err **err)
{
	if (hm_name_check("service group", name, err) < 0)
		return -1;
	char uuid[37];
	hm_uuid_new(uuid);
	struct hm_group_view v = { .uuid = xstrdup(uuid),
		                   .name = xstrdup(name),
		                   .created_at = hm_now_rfc3339() };
	int r = build(ing, name, spec, where, &v, err);
	if (r == 0) {
		pthread_mutex_lock(&ing->mu);
		r = commit(ing, &v, true, err);
		pthread_mutex_unlock(&ing->mu);
	}
	if (r == 0) {
		log_info("ingress", "service group created", "uuid=%s name=%s", uuid, name);
		*ret = copy_out(&v);
	}
	view_done(&v);
	return r;
}

int hm_groups_get(struct hm_ingresses *ing, const char *key, struct hm_group_view **ret,
                  struct hm_err **err)
{
	struct hm_group_view v;
	if (find_view(ing, key, &v, err) < 0)
		return -1;
	*ret = copy_out(&v);
	view_done(&v);
	return 0;
}

int hm_groups_list(struct hm_ingresses *ing, struct hm_group_view **ret, size_t *n,
                   struct hm_err **err)
{
	struct hm_ingress_row *rows = NULL;
	size_t nr = 0;
	if (hm_store_group_list(ing->st, &rows, &nr, err) < 0)
		return -1;
	struct hm_group_view *v = xcalloc(nr ? nr : 1, sizeof(*v));
	for (size_t i = 0; i < nr; i++)
		view_of(&rows[i], &v[i]);
	hm_ingress_rows_free(rows, nr);
	*ret = v;
	*n = nr;
	return 0;
}

int hm_groups_of(struct hm_ingresses *ing, const char *instance_id, struct hm_group_view **ret,
                 struct hm_err **err)
{
	*ret = NULL;
	struct hm_group_view *all = NULL;
	size_t n = 0;
	if (hm_groups_list(ing, &all, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n && !*ret; i++)
		for (size_t k = 0; k < all[i].nmembers && !*ret; k++)
			if (strcmp(all[i].members[k], instance_id) == 0)
				*ret = copy_out(&all[i]);
	hm_group_views_free(all, n);
	return 0;
}

int hm_groups_update(struct hm_ingresses *ing, const char *key, const struct hm_group_spec *spec,
                     struct hm_group_view **ret, struct hm_err **err)
{
	struct hm_group_view old;
	if (find_view(ing, key, &old, err) < 0)
		return -1;
	struct hm_group_view v = { .uuid = xstrdup(old.uuid),
		                   .name = xstrdup(old.name),
		                   .created_at = xstrdup(old.created_at) };
	int r = build(ing, old.name, spec, "", &v, err);
	if (r == 0) {
		pthread_mutex_lock(&ing->mu);
		/* The members as they are now: an attach may have come in meanwhile. */
		struct hm_group_view now = { 0 };
		r = find_view(ing, old.uuid, &now, err);
		for (size_t i = 0; r == 0 && i < now.nmembers; i++)
			v.members[v.nmembers++] = TAKE_PTR(now.members[i]);
		now.nmembers = 0;
		view_done(&now);
		if (r == 0)
			r = commit(ing, &v, false, err);
		pthread_mutex_unlock(&ing->mu);
	}
	if (r == 0)
		*ret = copy_out(&v);
	view_done(&v);
	view_done(&old);
	return r;
}

/* Under mu. */
static int delete_locked(struct hm_ingresses *ing, const struct hm_group_view *v,
                         struct hm_err **err)
{
	int r = hm_store_group_delete(ing->st, v->uuid, err);
	if (r == 0)
		r = ing_reload(ing, err);
	ing_prune_listeners(ing);
	if (r == 0)
		log_info("ingress", "service group deleted", "uuid=%s name=%s", v->uuid, v->name);
	return r;
}

int hm_groups_delete(struct hm_ingresses *ing, const char *key, struct hm_err **err)
{
	struct hm_group_view v;
	if (find_view(ing, key, &v, err) < 0)
		return -1;
	pthread_mutex_lock(&ing->mu);
	struct hm_group_view now = { 0 };
	int r = find_view(ing, v.uuid, &now, err);
	if (r == 0 && now.nmembers > 0)
		r = hm_err_set(err, HM_ERR_CONFLICT, "has_instances",
		               "service group `%s` has %zu instance%s: delete them first (or "
		               "move them)",
		               v.name, now.nmembers, now.nmembers == 1 ? "" : "s");
	else if (r == 0)
		r = delete_locked(ing, &v, err);
	view_done(&now);
	pthread_mutex_unlock(&ing->mu);
	view_done(&v);
	return r;
}

int hm_groups_attach(struct hm_ingresses *ing, const char *key, const char *instance_id,
                     struct hm_err **err)
{
	struct hm_group_view *elsewhere = NULL;
	if (hm_groups_of(ing, instance_id, &elsewhere, err) < 0)
		return -1;
	if (elsewhere) {
		int r =
		    hm_err_set(err, HM_ERR_CONFLICT, "in_another_group",
		               "the instance is already in service group `%s`", elsewhere->name);
		hm_group_view_free(elsewhere);
		return r;
	}
	pthread_mutex_lock(&ing->mu);
	struct hm_group_view v = { 0 };
	int r = find_view(ing, key, &v, err);
	if (r == 0 && v.nmembers == HM_GROUP_MAX_MEMBERS)
		r = hm_err_set(err, HM_ERR_CONFLICT, "group_full",
		               "service group `%s` has %d instances already, the most it can",
		               v.name, HM_GROUP_MAX_MEMBERS);
	if (r == 0) {
		v.members[v.nmembers++] = xstrdup(instance_id);
		r = commit(ing, &v, false, err);
	}
	view_done(&v);
	pthread_mutex_unlock(&ing->mu);
	return r;
}

void hm_groups_detach(struct hm_ingresses *ing, const char *instance_id)
{
	_cleanup_err_ struct hm_err *err = NULL;
	struct hm_group_view *g = NULL;
	if (hm_groups_of(ing, instance_id, &g, &err) < 0 || !g) {
		if (err)
			log_warn("ingress", "service groups unreadable", "error=\"%s\"", err->msg);
		return;
	}
	pthread_mutex_lock(&ing->mu);
	struct hm_group_view v = { 0 };
	int r = find_view(ing, g->uuid, &v, &err);
	if (r == 0) {
		size_t k = 0;
		for (size_t i = 0; i < v.nmembers; i++) {
			if (strcmp(v.members[i], instance_id) == 0)
				free(v.members[i]);
			else
				v.members[k++] = v.members[i];
		}
		v.nmembers = k;
		r = k == 0 && !v.persistent ? delete_locked(ing, &v, &err)
		                            : commit(ing, &v, false, &err);
	}
	view_done(&v);
	pthread_mutex_unlock(&ing->mu);
	if (r < 0)
		log_warn("ingress", "service group member not removed",
		         "group=%s id=%s error=\"%s\"", g->name, instance_id, err->msg);
	hm_group_view_free(g);
}
