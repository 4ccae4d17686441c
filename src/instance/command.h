/*
 * What an instance runs, by Docker's rules: the program's argv from the
 * image's entrypoint/cmd and the request's overrides, its environment from
 * the image's and the request's, and the validation of each piece.
 */
#pragma once

#include <jansson.h>

struct hm_err;

/*
 * argv = entrypoint + cmd, where
 *   entrypoint = req_entrypoint if given (an empty array clears it), else the image's;
 *   cmd        = req_cmd if given; else the image's cmd, unless req_entrypoint was
 *                given (docker run --entrypoint drops the image's CMD).
 * A string (shell form) entrypoint or cmd becomes ["/bin/sh", "-c", string].
 * Any argument may be NULL (absent). An empty result is HM_ERR_INVALID.
 * *ret is a new array of strings.
 */
int hm_command_argv(json_t *img_entrypoint, json_t *img_cmd, json_t *req_entrypoint,
                    json_t *req_cmd, json_t **ret, struct hm_err **err);

/* Validate an argv override (`what`: "cmd" or "entrypoint"): an array of strings,
 * bounded in count and size, no NUL bytes. */
int hm_command_check_args(json_t *v, const char *what, struct hm_err **err);

/* Validate an env object: keys like POSIX names (no '=', not empty), string values,
 * bounded. */
int hm_command_check_env(json_t *env, struct hm_err **err);

/* The image's env overlaid by the request's (either may be NULL): a new object. */
json_t *hm_command_env(json_t *img_env, json_t *req_env);
