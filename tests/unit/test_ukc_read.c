/*
 * Unit tests for the UKC dialect's request readers (api/ukc_read.c): a
 * create in each form and an update item become the typed structs the
 * handlers act on, with UKC's vocabulary translated (scale_to_zero, the
 * restart back-off, "k=v" tags, args as a string); everything refusable
 * without the engine is a 400 naming the field, before anything is made.
 * Run under ASan: what the structs own is let go by the _done calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "api/ukc.h"
#include "api/ukc_read.h"
#include "core/err.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		fail_msg("bad test JSON: %s: %s", text, e.text);
	return j;
}

static void create_from_image(void **state)
{
	(void)state;
	json_t *body = parse(
	    "{\"name\":\"web\",\"image\":{\"url\":\"busybox\"},\"memory_mb\":256,\"vcpus\":2,"
	    "\"args\":[\"sh\",\"-c\",\"true\"],\"env\":{\"A\":\"1\"},\"autostart\":true,"
	    "\"timeout_s\":3,\"scale_to_zero\":{\"policy\":\"idle\",\"stateful\":true,"
	    "\"cooldown_time_ms\":2500},\"restart_policy\":\"on_failure\",\"tags\":[\"k=v\",\"f\"],"
	    "\"hostname\":\"h1\",\"service_group\":{\"services\":[{\"port\":443,"
	    "\"destination_port\":8080,\"handlers\":[\"tls\",\"http\"]}],\"domains\":[{\"name\":"
	    "\"w\"}]},"
	    "\"volumes\":[{\"name\":\"data\",\"at\":\"/data\",\"readonly\":true},"
	    "{\"size_mb\":16,\"at\":\"/s\",\"tags\":[\"t=1\"]}]}");
	struct ukc_create uc;
	struct hm_err *err = NULL;
	assert_int_equal(ukc_create_in(body, &uc, &err), 0);
	assert_null(err);
	assert_int_equal(uc.from, UKC_FROM_IMAGE);
	assert_string_equal(uc.name, "web");
	assert_string_equal(uc.c.image, "busybox");
	assert_int_equal(uc.c.mem_bytes, 256LL << 20);
	assert_int_equal(uc.c.vcpus, 2);
	assert_false(uc.c.no_boot);
	assert_int_equal(uc.wait_ms, 3000);
	assert_int_equal(json_array_size(uc.c.cmd), 3);
	assert_string_equal(json_string_value(json_object_get(uc.c.env, "A")), "1");
	assert_true(uc.c.auto_standby_set);
	assert_true(uc.c.auto_standby.enabled);
	assert_true(uc.c.auto_standby.keep_connections);
	assert_false(uc.c.auto_standby.cold);
	assert_int_equal(uc.c.auto_standby.idle_ms, 2500);
	assert_int_equal(uc.c.restart.policy, HM_RESTART_ON_FAILURE);
	assert_int_equal(uc.c.restart.delay_ms, 5000);
	assert_true(uc.c.restart.doubling);
	assert_string_equal(json_string_value(json_object_get(uc.c.tags, "k")), "v");
	assert_string_equal(json_string_value(json_object_get(uc.c.tags, "f")), "");
	assert_string_equal(uc.c.hostname, "h1");
	assert_int_equal(uc.group, UKC_GROUP_NEW);
	assert_false(uc.group_spec.persistent);
	assert_int_equal(uc.group_spec.nsvcs, 1);
	assert_int_equal(uc.group_spec.svcs[0].port, 443);
	assert_int_equal(uc.group_spec.svcs[0].dest_port, 8080);
	assert_int_equal(uc.group_spec.ndomains, 1);
	assert_int_equal(uc.nvols, 2);
	assert_false(uc.vols[0].is_new);
	assert_string_equal(uc.vols[0].ref.name, "data");
	assert_null(uc.vols[0].ref.uuid);
	assert_string_equal(uc.vols[0].at, "/data");
	assert_true(uc.vols[0].readonly);
	assert_true(uc.vols[1].is_new);
	assert_int_equal(uc.vols[1].spec.size_bytes, 16LL << 20);
	assert_null(uc.vols[1].spec.name);
	assert_string_equal(json_string_value(json_object_get(uc.vols[1].spec.tags, "t")), "1");
	assert_int_equal(uc.c.nvolumes, 0); /* attached by the handler once each exists */
	ukc_create_done(&uc);
	json_decref(body);
}

static void create_defaults(void **state)
{
	(void)state;
	json_t *body = parse("{\"image\":\"busybox\",\"service_group\":{\"name\":\"g\"}}");
	struct ukc_create uc;
	struct hm_err *err = NULL;
	assert_int_equal(ukc_create_in(body, &uc, &err), 0);
	assert_null(uc.name); /* made up by the handler */
	assert_int_equal(uc.c.mem_bytes, 128LL << 20);
	assert_int_equal(uc.c.vcpus, 1);
	assert_true(uc.c.no_boot); /* autostart defaults to false */
	assert_int_equal(uc.wait_ms, 0);
	assert_false(uc.c.auto_standby_set);
	assert_int_equal(uc.c.restart.policy, HM_RESTART_NEVER);
	assert_int_equal(uc.replicas, 0);
	assert_int_equal(uc.group, UKC_GROUP_EXISTING);
	assert_string_equal(uc.group_ref.name, "g");
	ukc_create_done(&uc);
	json_decref(body);
}

static void create_copies(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		enum ukc_create_from from;
		const char *uuid, *name;
	} ok[] = {
		{ "{\"branch_from\":{\"name\":\"src\"},\"autostart\":true,\"timeout_s\":-1}",
		  UKC_FROM_INSTANCE, NULL, "src" },
		{ "{\"template\":{\"uuid\":\"u-1\"},\"name\":\"n\",\"image\":null}",
		  UKC_FROM_TEMPLATE, "u-1", NULL },
		{ "{\"checkpoint\":{\"name\":\"c\"},\"branch_from\":null}", UKC_FROM_CHECKPOINT,
		  NULL, "c" },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		json_t *body = parse(ok[i].body);
		struct ukc_create uc;
		struct hm_err *err = NULL;
		assert_int_equal(ukc_create_in(body, &uc, &err), 0);
		assert_int_equal(uc.from, ok[i].from);
		if (ok[i].uuid)
			assert_string_equal(uc.source.uuid, ok[i].uuid);
		else
			assert_string_equal(uc.source.name, ok[i].name);
		if (i == 0)
			assert_int_equal(uc.wait_ms, UKC_WAIT_MAX_MS);
		assert_null(uc.c.image);
		ukc_create_done(&uc);
		json_decref(body);
	}
}

/* Each body is refused as a 400 whose message holds `says`. */
static void create_refused(void **state)
{
	(void)state;
	static const struct {
		const char *body, *says;
	} bad[] = {
		{ "[]", "CreateInstanceRequest" },
		{ "{}", "`image` is required" },
		{ "{\"image\":5}", "`image` is required" },
		{ "{\"image\":\"b\",\"memory_mb\":0}", "memory_mb" },
		{ "{\"image\":\"b\",\"vcpus\":65}", "vcpus" },
		{ "{\"image\":\"b\",\"args\":\"sh\"}", "`args`" },
		{ "{\"image\":\"b\",\"env\":[]}", "`env`" },
		{ "{\"image\":\"b\",\"timeout_s\":5}", "autostart" },
		{ "{\"image\":\"b\",\"scale_to_zero\":{\"notify_time_ms\":5}}", "notify_time_ms" },
		{ "{\"image\":\"b\",\"scale_to_zero\":{\"policy\":\"maybe\"}}", "policy" },
		{ "{\"image\":\"b\",\"scale_to_zero\":{\"policy\":\"on\"},\"features\":"
		  "[\"delete-on-stop\"]}",
		  "delete-on-stop" },
		{ "{\"image\":\"b\",\"restart_policy\":\"always\",\"features\":[\"delete_on_stop\"]"
		  "}",
		  "delete-on-stop" },
		{ "{\"image\":\"b\",\"restart_policy\":\"sometimes\"}", "restart_policy" },
		{ "{\"image\":\"b\",\"features\":[\"x\"]}", "features[0]" },
		{ "{\"image\":\"b\",\"tags\":[5]}", "tags" },
		{ "{\"image\":\"b\",\"replicas\":17}", "replicas" },
		{ "{\"image\":\"b\",\"replicas\":1,\"volumes\":[{\"size_mb\":1,\"at\":\"/d\"}]}",
		  "replicas" },
		{ "{\"image\":\"b\",\"volumes\":[{\"size_mb\":1,\"at\":\"/d\",\"uuid\":\"u\"}]}",
		  "gets its uuid" },
		{ "{\"image\":\"b\",\"volumes\":[{\"name\":\"v\"}]}", "`at` is required" },
		{ "{\"image\":\"b\",\"volumes\":[{\"at\":\"/d\"}]}", "`volumes[0]`" },
		{ "{\"image\":\"b\",\"volumes\":[{\"at\":\"/d\",\"uuid\":\"u\",\"name\":\"v\"}]}",
		  "one of `uuid` and `name`" },
		{ "{\"image\":\"b\",\"volumes\":[{\"at\":\"/d\",\"name\":5}]}", "`volumes[0]`" },
		{ "{\"image\":\"b\",\"volumes\":[{\"at\":\"/d\",\"size_mb\":0}]}", "volumes[0]" },
		{ "{\"image\":\"b\",\"volumes\":[{\"at\":\"/"
		  "d\",\"size_mb\":1,\"filesystem\":\"xfs\"}]}",
		  "volumes[0]: `filesystem`" },
		{ "{\"image\":\"b\",\"volumes\":{}}", "`volumes`" },
		{ "{\"image\":\"b\",\"service_group\":[]}", "`service_group`" },
		{ "{\"image\":\"b\",\"service_group\":{\"name\":\"g\",\"services\":[{\"port\":1}]}"
		  "}",
		  "not both" },
		{ "{\"image\":\"b\",\"service_group\":{\"name\":\"g\",\"domains\":[]}}",
		  "service_group.domains" },
		{ "{\"image\":\"b\",\"service_group\":{}}",
		  "`service_group`: `uuid` or `name` is required" },
		{ "{\"branch_from\":{\"name\":\"s\"},\"memory_mb\":5}", "cannot be combined" },
		{ "{\"branch_from\":{\"name\":\"s\"},\"template\":{\"name\":\"t\"}}",
		  "cannot be combined" },
		{ "{\"branch_from\":\"s\"}", "`branch_from` must be an object" },
		{ "{\"checkpoint\":{\"name\":\"c\",\"uuid\":\"u\"}}", "`checkpoint` must be" },
		{ "{\"template\":{\"name\":\"t\"},\"timeout_s\":1}", "autostart" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *body = parse(bad[i].body);
		struct ukc_create uc;
		struct hm_err *err = NULL;
		if (ukc_create_in(body, &uc, &err) != -1)
			fail_msg("accepted: %s", bad[i].body);
		assert_non_null(err);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		if (!strstr(err->msg, bad[i].says))
			fail_msg("%s: said `%s`, not `%s`", bad[i].body, err->msg, bad[i].says);
		hm_err_free(err);
		json_decref(body);
	}
}

static void update_read(void **state)
{
	(void)state;
	struct hm_err *err = NULL;
	struct ukc_update u;

	json_t *a = parse("{\"prop\":\"args\",\"op\":\"set\",\"value\":\" sh  -c\\ttrue \"}");
	assert_int_equal(ukc_update_in(a, &u, &err), 0);
	assert_int_equal(u.prop, UKC_PROP_ARGS);
	assert_int_equal(u.op, UKC_OP_SET);
	assert_int_equal(json_array_size(u.args), 3);
	assert_string_equal(json_string_value(json_array_get(u.args, 2)), "true");
	ukc_update_done(&u);
	json_decref(a);

	json_t *e = parse("{\"prop\":\"env\",\"op\":\"del\",\"value\":\"A\"}");
	assert_int_equal(ukc_update_in(e, &u, &err), 0);
	assert_int_equal(u.prop, UKC_PROP_ENV);
	assert_null(u.env);
	assert_int_equal(json_array_size(u.env_keys), 1);
	ukc_update_done(&u);
	json_decref(e);

	json_t *ea = parse("{\"prop\":\"env\",\"op\":\"del\"}");
	assert_int_equal(ukc_update_in(ea, &u, &err), 0);
	assert_null(u.env_keys); /* every one */
	ukc_update_done(&u);
	json_decref(ea);

	json_t *m = parse("{\"prop\":\"memory_mb\",\"op\":\"set\",\"value\":512}");
	assert_int_equal(ukc_update_in(m, &u, &err), 0);
	assert_int_equal(u.mem_bytes, 512LL << 20);
	ukc_update_done(&u);
	json_decref(m);

	json_t *t = parse("{\"prop\":\"tags\",\"op\":\"add\",\"value\":[\"a=b\"]}");
	assert_int_equal(ukc_update_in(t, &u, &err), 0);
	assert_string_equal(json_string_value(json_object_get(u.tags, "a")), "b");
	ukc_update_done(&u);
	json_decref(t);

	json_t *s =
	    parse("{\"prop\":\"scale_to_zero\",\"op\":\"set\",\"value\":{\"policy\":\"on\"}}");
	assert_int_equal(ukc_update_in(s, &u, &err), 0);
	assert_true(u.auto_standby.enabled);
	assert_true(u.auto_standby.cold); /* not stateful: a stop, a boot on wake */
	ukc_update_done(&u);
	json_decref(s);

	json_t *d = parse("{\"prop\":\"scale_to_zero\",\"op\":\"del\"}");
	assert_int_equal(ukc_update_in(d, &u, &err), 0);
	assert_false(u.auto_standby.enabled);
	ukc_update_done(&u);
	json_decref(d);
	assert_null(err);
}

static void update_refused(void **state)
{
	(void)state;
	static const struct {
		const char *item, *says;
	} bad[] = {
		{ "{}", "`prop` is required" },
		{ "{\"prop\":5,\"op\":\"set\"}", "prop" },
		{ "{\"prop\":\"env\"}", "`op` must be" },
		{ "{\"prop\":\"env\",\"op\":\"put\"}", "`op` must be" },
		{ "{\"prop\":\"colour\",\"op\":\"set\",\"value\":1}", "`prop` must be one of" },
		{ "{\"prop\":\"env\",\"op\":\"set\"}", "`value` is required" },
		{ "{\"prop\":\"image\",\"op\":\"add\",\"value\":\"b\"}", "image takes a set" },
		{ "{\"prop\":\"args\",\"op\":\"set\",\"value\":[1]}", "value[0]" },
		{ "{\"prop\":\"env\",\"op\":\"set\",\"value\":[]}", "env must be an object" },
		{ "{\"prop\":\"env\",\"op\":\"del\",\"value\":[\"A\",2]}", "value[1]" },
		{ "{\"prop\":\"vcpus\",\"op\":\"set\",\"value\":0}", "from 1 to 64" },
		{ "{\"prop\":\"memory_mb\",\"op\":\"set\",\"value\":1.5}", "memory_mb" },
		{ "{\"prop\":\"tags\",\"op\":\"set\",\"value\":{}}", "value" },
		{ "{\"prop\":\"delete_lock\",\"op\":\"add\",\"value\":true}", "set or a del" },
		{ "{\"prop\":\"delete_lock\",\"op\":\"set\",\"value\":1}", "boolean" },
		{ "{\"prop\":\"scale_to_zero\",\"op\":\"add\",\"value\":{}}", "set or a del" },
		{ "{\"prop\":\"scale_to_zero\",\"op\":\"set\",\"value\":3}", "must be an object" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *item = parse(bad[i].item);
		struct ukc_update u;
		struct hm_err *err = NULL;
		if (ukc_update_in(item, &u, &err) != -1)
			fail_msg("accepted: %s", bad[i].item);
		assert_int_equal(err->kind, HM_ERR_INVALID);
		if (!strstr(err->msg, bad[i].says))
			fail_msg("%s: said `%s`, not `%s`", bad[i].item, err->msg, bad[i].says);
		hm_err_free(err);
		json_decref(item);
	}
}

static void volume_spec(void **state)
{
	(void)state;
	json_t *body =
	    parse("{\"name\":\"v\",\"size_mb\":64,\"filesystem\":\"ext4\",\"tags\":[\"a\"]}");
	struct ukc_volume_spec s;
	struct hm_err *err = NULL;
	assert_int_equal(ukc_volume_spec_in(body, "", &s, &err), 0);
	assert_string_equal(s.name, "v");
	assert_int_equal(s.size_bytes, 64LL << 20);
	assert_non_null(json_object_get(s.tags, "a"));
	json_decref(s.tags);
	json_decref(body);
	json_t *none = parse("{\"name\":\"v\"}");
	assert_int_equal(ukc_volume_spec_in(none, "", &s, &err), -1);
	assert_non_null(strstr(err->msg, "`size_mb` is required"));
	assert_int_equal(strncmp(err->msg, "`size_mb`", 9), 0); /* no prefix with where "" */
	hm_err_free(err);
	json_decref(none);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_from_image), cmocka_unit_test(create_defaults),
		cmocka_unit_test(create_copies),     cmocka_unit_test(create_refused),
		cmocka_unit_test(update_read),       cmocka_unit_test(update_refused),
		cmocka_unit_test(volume_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
