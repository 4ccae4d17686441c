/*
 * Fuzz target: the JSON request bodies of every route that takes one, in
 * both dialects (the route tables of api/routes.c and api/ukc_routes.c),
 * through the entry points the server uses: the body decoded as the HTTP
 * layer decodes it (http.c parse_body: jansson, duplicate keys refused), then
 * checked against the route's schema in our OpenAPI document
 * (hm_body_fields_check: no field accepted and ignored). A body that passes
 * goes on to the route's own reader where it has one that runs apart from
 * the engine: a Hypeman create (hm_rest_parse_create, then the domain's
 * rules, hm_instance_create_check, which creates nothing), a volume
 * attachment (hm_rest_parse_attach), every other Hypeman body (update,
 * start with the domain's argv rules, standby, fork, snapshot, a
 * snapshot's restore or fork, volume, image, and an ingress through the
 * ingress service's pure checks, hm_route_check), the bulk reference lists of the
 * UKC routes without a {uuid} (ukc_body_refs), a UKC create in every form
 * (ukc_create_in, then the domain's rules for one from an image), each
 * item of a UKC instance or template update (ukc_update_in), a UKC volume
 * (ukc_volume_spec_in) and a UKC service group (ukc_group_spec_in). What
 * a reader accepts is checked against what it promises (one of uuid and
 * name per ref, sizes in range, owned values of the right shape). Input:
 * the route's index
 * among the body routes in the first byte, then the body. Checked: every
 * refusal carries an error of kind 400 with a message; nothing leaks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/dialect.h"
#include "api/fields.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/ukc.h"
#include "api/ukc_read.h"
#include "core/err.h"
#include "ingress/groups.h"
#include "image/images.h"
#include "core/tags.h"
#include "ingress/ingress.h"
#include "ingress/route.h"
#include "instance/command.h"
#include "instance/instances.h"
#include "instance/payload.h"
#include "vmm/accel.h"
#include "volume/volumes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct hm_route *body_routes[256];
static size_t nbody;

static void collect(void)
{
	for (size_t d = 0; d < hm_dialects_count; d++)
		for (size_t i = 0; i < *hm_dialects[d]->nroutes && nbody < 256; i++)
			if (hm_dialects[d]->routes[i].flags & HM_ROUTE_JSON_BODY)
				body_routes[nbody++] = &hm_dialects[d]->routes[i];
	if (nbody == 0)
		abort();
}

/* A refusal must say what was wrong, as a 400 (FUZZ_VERBOSE=1: printed, to check a corpus). */
static void refused(struct hm_err *err)
{
	if (getenv("FUZZ_VERBOSE") && err)
		fprintf(stderr, "refused: %s\n", err->msg);
	if (!err || err->kind != HM_ERR_INVALID || !err->msg || !err->msg[0])
		abort();
	hm_err_free(err);
}

static void one_ref(const struct ukc_ref *r)
{
	if (!r->uuid == !r->name)
		abort(); /* exactly one of them */
}

static void ukc_create(json_t *body)
{
	struct hm_err *err = NULL;
	struct ukc_create uc;
	if (ukc_create_in(body, &uc, &err) < 0) {
		refused(err);
		return;
	}
	if (uc.wait_ms < 0 || uc.wait_ms > UKC_WAIT_MAX_MS || (uc.wait_ms && !uc.autostart))
		abort();
	if (uc.from != UKC_FROM_IMAGE) {
		one_ref(&uc.source);
		if (uc.nvols || uc.c.image || uc.c.tags)
			abort(); /* a copy takes nothing from the request but its name */
		ukc_create_done(&uc);
		return;
	}
	if (!uc.c.image || uc.replicas < 0 || uc.replicas > UKC_MAX_REPLICAS ||
	    uc.nvols > HM_MAX_ATTACH || (uc.c.tags && !json_is_object(uc.c.tags)))
		abort();
	for (size_t i = 0; i < uc.nvols; i++) {
		const struct ukc_create_volume *v = &uc.vols[i];
		if (!v->at)
			abort();
		if (!v->is_new)
			one_ref(&v->ref);
		else if (v->spec.size_bytes <= 0 || (v->spec.size_bytes & ((1 << 20) - 1)) ||
		         uc.replicas > 0)
			abort(); /* a whole number of MiB, never for replicas */
		uc.c.volumes[i] = (struct hm_attach){ .volume = "v",
			                              .mount_path = v->at,
			                              .readonly = v->readonly };
	}
	uc.c.nvolumes = uc.nvols;
	if (uc.group == UKC_GROUP_EXISTING)
		one_ref(&uc.group_ref);
	else if (uc.group == UKC_GROUP_NEW && (uc.group_spec.persistent || !uc.group_spec.nsvcs))
		abort();
	uc.c.name = uc.name ? uc.name : "made-up";
	static const struct hm_accel_choice tcg = { .accel = HM_ACCEL_TCG };
	if (hm_instance_create_check(&uc.c, "/tmp", &tcg, &err) < 0)
		refused(err);
	ukc_create_done(&uc);
}

static void ukc_update(json_t *item)
{
	struct hm_err *err = NULL;
	struct ukc_update u;
	if (ukc_update_in(item, &u, &err) < 0) {
		refused(err);
		return;
	}
	bool del = u.op == UKC_OP_DEL;
	switch (u.prop) {
	case UKC_PROP_IMAGE:
		if (!u.image || u.op != UKC_OP_SET)
			abort();
		break;
	case UKC_PROP_ARGS:
		if (del != !u.args || (u.args && !json_is_array(u.args)))
			abort();
		break;
	case UKC_PROP_ENV:
		if (del ? u.env != NULL : !json_is_object(u.env))
			abort();
		if (u.env_keys && (!del || !json_is_array(u.env_keys)))
			abort();
		break;
	case UKC_PROP_MEMORY:
		if (u.mem_bytes < (1 << 20) || u.op != UKC_OP_SET)
			abort();
		break;
	case UKC_PROP_VCPUS:
		if (u.vcpus < 1 || u.vcpus > 64 || u.op != UKC_OP_SET)
			abort();
		break;
	case UKC_PROP_TAGS:
		if ((!del && !u.tags) || (u.tags && !json_is_object(u.tags)))
			abort();
		break;
	case UKC_PROP_DELETE_LOCK:
	case UKC_PROP_SCALE_TO_ZERO:
		if (u.op == UKC_OP_ADD)
			abort();
		break;
	}
	ukc_update_done(&u);
}

/* Each item of a body that is an array of them, or the body itself. */
static void each_item(json_t *body, void (*fn)(json_t *))
{
	if (!json_is_array(body)) {
		fn(body);
		return;
	}
	size_t i;
	json_t *item;
	json_array_foreach (body, i, item)
		fn(item);
}

static void ukc_group(json_t *item)
{
	struct hm_err *err = NULL;
	struct hm_group_spec spec;
	if (!json_is_object(item))
		return;
	if (ukc_group_spec_in(item, "", &spec, &err) < 0)
		refused(err);
	else if (spec.nsvcs < 1 || spec.nsvcs > HM_GROUP_MAX_SERVICES ||
	         spec.ndomains > HM_GROUP_MAX_DOMAINS)
		abort();
}

static bool is(const struct hm_route *r, const char *method, const char *pattern)
{
	return strcmp(r->method, method) == 0 && strcmp(r->pattern, pattern) == 0;
}

static void compression_ok(bool compress, int level)
{
	if (compress && (level < 1 || level > 19))
		abort();
}

/* The Hypeman routes' other readers (all but create and attach); true when r has one. */
static bool hypeman_reader(const struct hm_route *r, json_t *body)
{
	struct hm_err *err = NULL;
	if (is(r, "PATCH", "/instances/{id}")) {
		struct hm_instance_update u;
		if (hm_rest_parse_update(body, &u, &err) < 0)
			refused(err);
		else if ((u.env_set && !json_is_object(u.env_set)) ||
		         (!u.env_set && !u.restart_set && !u.auto_standby_set))
			abort(); /* something to do, of the right shape */
	} else if (is(r, "POST", "/instances/{id}/start")) {
		struct hm_instance_start st;
		if (hm_rest_parse_start(body, &st, &err) < 0 ||
		    (st.cmd && hm_command_check_args(st.cmd, "cmd", &err) < 0) ||
		    (st.entrypoint && hm_command_check_args(st.entrypoint, "entrypoint", &err) < 0))
			refused(err);
	} else if (is(r, "POST", "/instances/{id}/standby")) {
		struct hm_payload_opts o;
		if (hm_rest_parse_standby(body, &o, &err) < 0)
			refused(err);
		else
			compression_ok(o.compress, o.level);
	} else if (is(r, "POST", "/instances/{id}/fork")) {
		struct hm_instance_fork f;
		if (hm_rest_parse_fork(body, &f, &err) < 0)
			refused(err);
	} else if (is(r, "POST", "/instances/{id}/snapshots")) {
		struct hm_snapshot_create c;
		if (hm_rest_parse_snapshot(body, &c, &err) < 0)
			refused(err);
		else if (c.kind != HM_SNAPSHOT_STANDBY && c.kind != HM_SNAPSHOT_STOPPED)
			abort();
		else
			compression_ok(c.compress, c.level);
	} else if (is(r, "POST", "/instances/{id}/snapshots/{snapshotId}/restore") ||
	           is(r, "POST", "/snapshots/{snapshotId}/fork")) {
		struct hm_snapshot_bring b;
		if (hm_rest_parse_bring(body, &b, &err) < 0)
			refused(err);
	} else if (is(r, "POST", "/volumes")) {
		struct hm_volume_create c;
		if (hm_rest_parse_volume(body, &c, &err) < 0)
			refused(err);
		else if (!c.name || c.size_bytes < HM_VOLUME_MIN_BYTES ||
		         c.size_bytes > HM_VOLUME_MAX_BYTES)
			abort();
	} else if (is(r, "POST", "/images")) {
		struct hm_image_request ir;
		if (hm_rest_parse_image(body, &ir, &err) < 0)
			refused(err);
		else if (!ir.name)
			abort();
	} else if (is(r, "POST", "/ingresses")) {
		struct hm_ingress_create c;
		struct hm_ingress_rule out[HM_ROUTE_MAX_RULES];
		char hosts[HM_ROUTE_MAX_RULES][256];
		if (hm_rest_parse_ingress(body, &c, &err) < 0 ||
		    hm_route_check(c.rules, c.nrules, out, hosts, &err) < 0 ||
		    (c.tags && hm_tags_validate(c.tags, &err) < 0))
			refused(err);
		else
			for (size_t i = 0; i < c.nrules; i++)
				if (out[i].port < 1 || out[i].port > 65535 ||
				    out[i].target_port < 1 || out[i].target_port > 65535 ||
				    !out[i].instance || (out[i].redirect_http && !out[i].tls))
					abort();
	} else {
		return false;
	}
	return true;
}

static void route_reader(const struct hm_route *r, json_t *body)
{
	struct hm_err *err = NULL;
	if (hypeman_reader(r, body))
		return;
	if (strcmp(r->method, "POST") == 0 && strcmp(r->pattern, "/instances") == 0) {
		struct hm_instance_create c = { 0 };
		static const struct hm_accel_choice tcg = { .accel = HM_ACCEL_TCG };
		if (hm_rest_parse_create(body, &c, &err) < 0 ||
		    hm_instance_create_check(&c, "/tmp", &tcg, &err) < 0)
			refused(err);
	} else if (strcmp(r->pattern, "/instances/{id}/volumes/{volumeId}") == 0 &&
	           strcmp(r->method, "POST") == 0) {
		struct hm_attach a = { .volume = "v" };
		if (hm_rest_parse_attach(body, &a, &err) < 0)
			refused(err);
	} else if (strcmp(r->method, "POST") == 0 && strcmp(r->pattern, "/v1/instances") == 0) {
		ukc_create(body);
	} else if (strcmp(r->method, "POST") == 0 && strcmp(r->pattern, "/v1/volumes") == 0) {
		struct ukc_volume_spec spec;
		if (!json_is_object(body))
			return;
		if (ukc_volume_spec_in(body, "", &spec, &err) < 0)
			refused(err);
		else if (spec.size_bytes <= 0 || (spec.tags && !json_is_object(spec.tags)))
			abort();
		else
			json_decref(spec.tags);
	} else if (strcmp(r->method, "POST") == 0 && strcmp(r->pattern, "/v1/services") == 0) {
		each_item(body, ukc_group);
	} else if (strcmp(r->method, "PATCH") == 0 &&
	           strncmp(r->pattern, "/v1/instances", 13) == 0) {
		if (strchr(r->pattern, '{'))
			ukc_update(body);
		else
			each_item(body, ukc_update);
	}
	if (strncmp(r->pattern, "/v1/", 4) == 0 && !strchr(r->pattern, '{') &&
	    strcmp(r->method, "POST") != 0) {
		struct ukc_ref *refs = NULL;
		size_t n = 0;
		if (ukc_body_refs(body, &refs, &n, &err) < 0)
			refused(err);
		else if (n > UKC_MAX_REFS)
			abort();
		for (size_t i = 0; i < n; i++)
			one_ref(&refs[i]);
		free(refs);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!nbody)
		collect();
	if (size < 1)
		return 0;
	const struct hm_route *r = body_routes[data[0] % nbody];
	json_error_t jerr;
	json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
	if (!body)
		return 0;
	struct hm_err *err = NULL;
	if (hm_body_fields_check(r->method, r->pattern, body, &err) < 0)
		refused(err);
	else
		route_reader(r, body);
	json_decref(body);
	return 0;
}
