/*
 * instance/command: the pure rules of what an instance runs (Docker's
 * entrypoint/cmd combination, env merging) and the validation of names,
 * argv and env, kept free of I/O so the unit tests cover every case.
 */
#include "instance/command.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

#define MAX_ARGS      4096
#define MAX_ARG_BYTES (128u << 10)
#define MAX_ENV       4096
#define MAX_ENV_BYTES (128u << 10)

static json_t *as_argv(json_t *v)
{
	if (json_is_string(v))
		return json_pack("[s,s,s]", "/bin/sh", "-c", json_string_value(v));
	if (json_is_array(v))
		return json_incref(v);
	return json_array();
}

int hm_command_argv(json_t *img_entrypoint, json_t *img_cmd, json_t *req_entrypoint,
                    json_t *req_cmd, json_t **ret, struct hm_err **err)
{
	bool ep_given = req_entrypoint && !json_is_null(req_entrypoint);
	bool cmd_given = req_cmd && !json_is_null(req_cmd);
	json_t *ep = as_argv(ep_given ? req_entrypoint : img_entrypoint);
	json_t *cmd = as_argv(cmd_given ? req_cmd : (ep_given ? NULL : img_cmd));
	json_t *argv = json_array();
	json_array_extend(argv, ep);
	json_array_extend(argv, cmd);
	json_decref(ep);
	json_decref(cmd);
	if (json_array_size(argv) == 0) {
		json_decref(argv);
		return hm_err_set(err, HM_ERR_INVALID, "missing_command",
		                  "nothing to run: the image has no entrypoint or cmd; give `cmd`");
	}
	size_t i;
	json_t *a;
	json_array_foreach (argv, i, a) {
		if (!json_is_string(a)) {
			json_decref(argv);
			return hm_err_set(err, HM_ERR_INVALID, "invalid_command",
			                  "the image's entrypoint/cmd holds a non-string");
		}
	}
	if (!*json_string_value(json_array_get(argv, 0))) {
		json_decref(argv);
		return hm_err_set(err, HM_ERR_INVALID, "invalid_command",
		                  "the program to run is an empty string");
	}
	*ret = argv;
	return 0;
}

int hm_command_check_args(json_t *v, const char *what, struct hm_err **err)
{
	if (!json_is_array(v))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` must be an array of strings", what);
	if (json_array_size(v) > MAX_ARGS)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` has more than %d arguments", what, MAX_ARGS);
	size_t i, total = 0;
	json_t *a;
	json_array_foreach (v, i, a) {
		if (!json_is_string(a))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`%s[%zu]` must be a string", what, i);
		size_t n = json_string_length(a);
		if (strlen(json_string_value(a)) != n)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`%s[%zu]` contains a NUL byte", what, i);
		total += n + 1;
	}
	if (total > MAX_ARG_BYTES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`%s` is larger than %u bytes", what, MAX_ARG_BYTES);
	return 0;
}

int hm_command_check_env(json_t *env, struct hm_err **err)
{
	if (!json_is_object(env))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`env` must be an object of strings");
	if (json_object_size(env) > MAX_ENV)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`env` has more than %d variables", MAX_ENV);
	const char *k;
	json_t *v;
	size_t total = 0;
	json_object_foreach (env, k, v) {
		if (!*k || strchr(k, '='))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env` key `%s` is not a valid variable name", k);
		if (!json_is_string(v))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env.%s` must be a string", k);
		if (strlen(json_string_value(v)) != json_string_length(v))
			return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
			                  "`env.%s` contains a NUL byte", k);
		total += strlen(k) + json_string_length(v) + 2;
	}
	if (total > MAX_ENV_BYTES)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_field",
		                  "`env` is larger than %u bytes", MAX_ENV_BYTES);
	return 0;
}

json_t *hm_command_env(json_t *img_env, json_t *req_env)
{
	json_t *env = json_object();
	const char *k;
	json_t *v;
	if (json_is_object(img_env))
		json_object_foreach (img_env, k, v)
			if (json_is_string(v))
				json_object_set(env, k, v);
	if (json_is_object(req_env))
		json_object_foreach (req_env, k, v)
			if (json_is_string(v))
				json_object_set(env, k, v);
	return env;
}
