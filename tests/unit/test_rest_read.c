/*
 * Unit tests for the Hypeman dialect's body readers other than create's
 * (api/h_instances.c, h_snapshots.c, h_volumes.c, h_images.c): each turns
 * its body into the domain's typed request, which is what the handler then
 * passes on, and refuses what is wrong as a 400 naming the field. The
 * domain no longer reads these bodies itself (start and standby took the
 * JSON before), so these readers are the whole of the checks a body gets
 * before the engine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "api/handlers.h"
#include "core/err.h"
#include "image/images.h"
#include "instance/instances.h"
#include "instance/payload.h"
#include "volume/volumes.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
	if (!j)
		fail_msg("bad test JSON: %s: %s", text, e.text);
	return j;
}

typedef int reader_fn(json_t *body, void *out, struct hm_err **err);

/* body is refused by fn as a 400 whose message holds says. */
static void refused(reader_fn *fn, const char *text, const char *says)
{
	json_t *body = parse(text);
	_Alignas(max_align_t) char out[4096];
	struct hm_err *err = NULL;
	if (fn(body, out, &err) != -1)
		fail_msg("accepted: %s", text);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	if (!strstr(err->msg, says))
		fail_msg("%s: said `%s`, not `%s`", text, err->msg, says);
	hm_err_free(err);
	json_decref(body);
}

/* Each reader as a reader_fn (a call through its own type, no cast). */
#define WRAP(fn, type)                                                                             \
	static int wrap_##fn(json_t *body, void *out, struct hm_err **err)                         \
	{                                                                                          \
		return fn(body, (type *)out, err);                                                 \
	}
WRAP(hm_rest_parse_update, struct hm_instance_update)
WRAP(hm_rest_parse_start, struct hm_instance_start)
WRAP(hm_rest_parse_standby, struct hm_payload_opts)
WRAP(hm_rest_parse_snapshot, struct hm_snapshot_create)
WRAP(hm_rest_parse_fork, struct hm_instance_fork)
WRAP(hm_rest_parse_bring, struct hm_snapshot_bring)
WRAP(hm_rest_parse_volume, struct hm_volume_create)
WRAP(hm_rest_parse_image, struct hm_image_request)
#define READER(fn) wrap_##fn

static void update_read(void **state)
{
	(void)state;
	json_t *b =
	    parse("{\"env\":{\"A\":\"1\"},\"restart_policy\":{\"policy\":\"on_failure\","
	          "\"backoff\":\"2s\",\"max_attempts\":3},\"auto_standby\":{\"enabled\":true,"
	          "\"idle_timeout\":\"90s\"}}");
	struct hm_instance_update u;
	struct hm_err *err = NULL;
	assert_int_equal(hm_rest_parse_update(b, &u, &err), 0);
	assert_ptr_equal(u.env_set, json_object_get(b, "env"));
	assert_false(u.env_replace);
	assert_int_equal(u.delete_lock, -1); /* unchanged */
	assert_true(u.restart_set);
	assert_int_equal(u.restart.policy, HM_RESTART_ON_FAILURE);
	assert_int_equal(u.restart.delay_ms, 2000);
	assert_int_equal(u.restart.max_attempts, 3);
	assert_true(u.auto_standby_set);
	assert_true(u.auto_standby.enabled);
	assert_int_equal(u.auto_standby.idle_ms, 90000);
	json_decref(b);
	reader_fn *fn = READER(hm_rest_parse_update);
	refused(fn, "[]", "JSON object");
	refused(fn, "{}", "nothing to update");
	refused(fn, "{\"env\":null}", "nothing to update");
	refused(fn, "{\"env\":[]}", "`env`");
	refused(fn, "{\"restart_policy\":{\"policy\":\"often\"}}", "restart_policy.policy");
	refused(fn, "{\"auto_standby\":{\"idle_timeout\":\"25h\"}}", "auto_standby.idle_timeout");
}

static void start_read(void **state)
{
	(void)state;
	struct hm_instance_start s;
	struct hm_err *err = NULL;
	assert_int_equal(hm_rest_parse_start(NULL, &s, &err), 0); /* no body: as it was */
	assert_null(s.cmd);
	json_t *nulls = parse("{\"cmd\":null,\"entrypoint\":null}");
	assert_int_equal(hm_rest_parse_start(nulls, &s, &err), 0);
	assert_null(s.cmd);
	assert_null(s.entrypoint);
	json_decref(nulls);
	json_t *b = parse("{\"cmd\":[\"echo\",\"hi\"]}");
	assert_int_equal(hm_rest_parse_start(b, &s, &err), 0);
	assert_ptr_equal(s.cmd, json_object_get(b, "cmd"));
	assert_null(s.entrypoint);
	json_decref(b);
	refused(READER(hm_rest_parse_start), "[1]", "JSON object");
}

static void standby_and_snapshot_read(void **state)
{
	(void)state;
	struct hm_payload_opts o;
	struct hm_err *err = NULL;
	assert_int_equal(hm_rest_parse_standby(NULL, &o, &err), 0);
	assert_false(o.compress);
	json_t *b = parse("{\"compression\":{\"enabled\":true,\"level\":7}}");
	assert_int_equal(hm_rest_parse_standby(b, &o, &err), 0);
	assert_true(o.compress);
	assert_int_equal(o.level, 7);
	json_decref(b);
	reader_fn *fn = READER(hm_rest_parse_standby);
	refused(fn, "\"x\"", "JSON object");
	refused(fn, "{\"compression\":{\"enabled\":1}}", "boolean `enabled`");
	refused(fn, "{\"compression\":{\"enabled\":true,\"algorithm\":\"lz4\"}}", "use zstd");
	refused(fn, "{\"compression\":{\"enabled\":true,\"level\":20}}", "1 to 19");

	struct hm_snapshot_create c;
	json_t *s = parse("{\"kind\":\"Stopped\",\"name\":\"s1\",\"tags\":{\"a\":\"b\"}}");
	assert_int_equal(hm_rest_parse_snapshot(s, &c, &err), 0);
	assert_int_equal(c.kind, HM_SNAPSHOT_STOPPED);
	assert_string_equal(c.name, "s1");
	assert_false(c.compress);
	json_decref(s);
	fn = READER(hm_rest_parse_snapshot);
	refused(fn, "{}", "`kind` is required");
	refused(fn, "{\"kind\":\"Running\"}", "Standby or Stopped");
	refused(fn, "{\"kind\":\"Standby\",\"name\":3}", "`name`");
	refused(fn, "{\"kind\":\"Standby\",\"compression\":{\"enabled\":true,\"level\":0}}",
	        "compression.level");
}

static void fork_and_bring_read(void **state)
{
	(void)state;
	struct hm_instance_fork f;
	struct hm_err *err = NULL;
	json_t *b = parse("{\"name\":\"f\",\"target_state\":\"Standby\",\"from_running\":true}");
	assert_int_equal(hm_rest_parse_fork(b, &f, &err), 0);
	assert_string_equal(f.name, "f");
	assert_string_equal(f.target_state, "Standby");
	assert_true(f.from_running);
	json_decref(b);
	reader_fn *fn = READER(hm_rest_parse_fork);
	refused(fn, "null", "JSON object");
	refused(fn, "{\"name\":1}", "`name`");
	refused(fn, "{\"target_state\":2}", "target_state");
	refused(fn, "{\"from_running\":\"yes\"}", "from_running");

	struct hm_snapshot_bring sb;
	assert_int_equal(hm_rest_parse_bring(NULL, &sb, &err), 0);
	assert_null(sb.name);
	json_t *r = parse("{\"target_hypervisor\":\"qemu\"}");
	assert_int_equal(hm_rest_parse_bring(r, &sb, &err), 0);
	assert_string_equal(sb.target_hypervisor, "qemu");
	json_decref(r);
	fn = READER(hm_rest_parse_bring);
	refused(fn, "[]", "JSON object");
	refused(fn, "{\"target_hypervisor\":false}", "target_hypervisor");
}

static void volume_and_image_read(void **state)
{
	(void)state;
	struct hm_volume_create c;
	struct hm_err *err = NULL;
	json_t *b = parse("{\"name\":\"data\",\"size_gb\":2,\"id\":\"vol1\"}");
	assert_int_equal(hm_rest_parse_volume(b, &c, &err), 0);
	assert_string_equal(c.name, "data");
	assert_string_equal(c.id, "vol1");
	assert_int_equal(c.size_bytes, 2LL << 30);
	json_decref(b);
	reader_fn *fn = READER(hm_rest_parse_volume);
	refused(fn, "{\"size_gb\":1}", "`name` is required");
	refused(fn, "{\"name\":\"d\"}", "`size_gb` is required");
	refused(fn, "{\"name\":\"d\",\"size_gb\":0}", "size_gb");
	refused(fn, "{\"name\":\"d\",\"size_gb\":1,\"id\":5}", "must be strings");

	struct hm_image_request ir;
	json_t *i = parse("{\"name\":\"busybox\",\"credentials\":{\"username\":\"u\","
	                  "\"password\":\"p\"}}");
	assert_int_equal(hm_rest_parse_image(i, &ir, &err), 0);
	assert_string_equal(ir.name, "busybox");
	assert_string_equal(ir.creds.username, "u");
	assert_string_equal(ir.creds.password, "p");
	assert_null(ir.platform);
	json_decref(i);
	fn = READER(hm_rest_parse_image);
	refused(fn, "{}", "name");
	refused(fn, "{\"name\":\"b\",\"tags\":[]}", "tags");
	refused(fn, "{\"name\":\"b\",\"credentials\":{\"password\":5}}", "credentials");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(update_read),
		cmocka_unit_test(start_read),
		cmocka_unit_test(standby_and_snapshot_read),
		cmocka_unit_test(fork_and_bring_read),
		cmocka_unit_test(volume_and_image_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
