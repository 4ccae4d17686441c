/*
 * Instance endpoints: POST/GET /instances, GET/DELETE /instances/{id}
 * ({id} is an id, a name or a unique id prefix) and GET
 * /instances/{id}/logs as Server-Sent Events. The work is the instance
 * service's (instance/instances.h); this file maps HTTP to its calls.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/request.h"
#include "api/validate.h"
#include "core/err.h"
#include "instance/instances.h"
#include "instance/logs.h"

int hm_h_instances_create(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *inst = NULL;
	if (hm_instances_create(hm_req_services(req)->instances, hm_req_json(req), &inst, err) < 0)
		return -1;
	return hm_resp_json(resp, 201, inst);
}

int hm_h_instances_list(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *q = hm_req_query(req, "state");
	enum hm_state state;
	if (q && !hm_state_parse(q, &state))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_state",
		                  "unknown state `%.40s` (one of Created, Initializing, "
		                  "Running, Paused, Shutdown, Stopped, Standby, Unknown)",
		                  q);
	json_t *filter = hm_query_deep_object(req, "tags");
	json_t *list = NULL;
	int r = hm_instances_list(hm_req_services(req)->instances, q ? &state : NULL, filter, &list,
	                          err);
	json_decref(filter);
	if (r < 0)
		return -1;
	return hm_resp_json(resp, 200, list);
}

int hm_h_instances_get(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *inst = NULL;
	if (hm_instances_get(hm_req_services(req)->instances, hm_req_param(req, "id"), &inst, err) <
	    0)
		return -1;
	return hm_resp_json(resp, 200, inst);
}

static int query_bool(struct hm_req *req, const char *name, bool dflt, bool *ret,
                      struct hm_err **err)
{
	const char *v = hm_req_query(req, name);
	if (!v || !*v) {
		*ret = dflt;
		return 0;
	}
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*ret = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*ret = false;
	else
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`%s` must be true or false", name);
	return 0;
}

int hm_h_instances_delete(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	bool graceful = true;
	if (query_bool(req, "graceful_shutdown", true, &graceful, err) < 0 ||
	    hm_instances_delete(hm_req_services(req)->instances, hm_req_param(req, "id"), graceful,
	                        err) < 0)
		return -1;
	resp->status = 204;
	return 0;
}

static ssize_t logs_read(void *cls, char *buf, size_t max)
{
	return hm_log_stream_read(cls, buf, max);
}

static void logs_free(void *cls)
{
	hm_log_stream_close(cls);
}

int hm_h_instances_logs(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	long tail = 100;
	const char *t = hm_req_query(req, "tail");
	if (t && *t) {
		char *end;
		errno = 0;
		tail = strtol(t, &end, 10);
		if (errno || *end || tail < 0 || tail > 1000000)
			return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
			                  "`tail` must be an integer from 0 to 1000000");
	}
	bool follow = false;
	if (query_bool(req, "follow", false, &follow, err) < 0)
		return -1;
	struct hm_log_stream *s = NULL;
	if (hm_instances_logs(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                      hm_req_query(req, "source"), tail, follow, &s, err) < 0)
		return -1;
	resp->status = 200;
	resp->content_type = "text/event-stream";
	resp->stream_read = logs_read;
	resp->stream_free = logs_free;
	resp->stream_cls = s;
	hm_resp_header(resp, "Cache-Control", "no-cache");
	hm_resp_header(resp, "X-Accel-Buffering", "no");
	return 0;
}

int hm_h_instances_stop(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *inst = NULL;
	if (hm_instances_stop(hm_req_services(req)->instances, hm_req_param(req, "id"), &inst,
	                      err) < 0)
		return -1;
	return hm_resp_json(resp, 200, inst);
}

int hm_h_instances_start(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *inst = NULL;
	if (hm_instances_start(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                       hm_req_json(req), &inst, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, inst);
}

int hm_h_instances_update(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *inst = NULL;
	if (hm_instances_update(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                        hm_req_json(req), &inst, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, inst);
}

/* Go-style durations as upstream takes them: "60s", "500ms", "2m", "1m30s". */
static int parse_duration_ms(const char *s, long *ret)
{
	long total = 0;
	const char *p = s;
	if (!*p)
		return -1;
	while (*p) {
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		if (errno || end == p || v < 0)
			return -1;
		double mult;
		if (strncmp(end, "ms", 2) == 0) {
			mult = 1;
			end += 2;
		} else if (*end == 's') {
			mult = 1000;
			end++;
		} else if (*end == 'm') {
			mult = 60000;
			end++;
		} else if (*end == 'h') {
			mult = 3600000;
			end++;
		} else {
			return -1;
		}
		total += (long)(v * mult);
		if (total > 24L * 3600000)
			return -1;
		p = end;
	}
	*ret = total;
	return 0;
}

#define WAIT_MAX_MS (5L * 60 * 1000)

int hm_h_instances_wait(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	const char *q = hm_req_query(req, "state");
	if (!q || !*q)
		return hm_err_set(err, HM_ERR_INVALID, "missing_field", "`state` is required");
	enum hm_state state;
	if (!hm_state_parse(q, &state))
		return hm_err_set(err, HM_ERR_INVALID, "invalid_state", "unknown state `%.40s`", q);
	long timeout_ms = 60000;
	const char *t = hm_req_query(req, "timeout");
	if (t && *t && parse_duration_ms(t, &timeout_ms) < 0)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_query",
		                  "`timeout` must be a duration such as 30s, 500ms or 2m");
	if (timeout_ms > WAIT_MAX_MS)
		timeout_ms = WAIT_MAX_MS;
	json_t *out = NULL;
	if (hm_instances_wait(hm_req_services(req)->instances, hm_req_param(req, "id"), state,
	                      timeout_ms, &out, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, out);
}

int hm_h_instances_stats(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	json_t *out = NULL;
	if (hm_instances_stats(hm_req_services(req)->instances, hm_req_param(req, "id"), &out,
	                       err) < 0)
		return -1;
	return hm_resp_json(resp, 200, out);
}

int hm_h_instances_stat(struct hm_req *req, struct hm_resp *resp, struct hm_err **err)
{
	bool follow = false;
	if (query_bool(req, "follow_links", false, &follow, err) < 0)
		return -1;
	json_t *out = NULL;
	if (hm_instances_stat(hm_req_services(req)->instances, hm_req_param(req, "id"),
	                      hm_req_query(req, "path"), follow, &out, err) < 0)
		return -1;
	return hm_resp_json(resp, 200, out);
}
