/*
 * errors: the one place an hm_err becomes an HTTP response. The body is
 * always {"code": ..., "message": ...}. Conflicts carry
 * `x-should-retry: false` because the official SDK otherwise retries every
 * 409, and none of ours can be fixed by retrying the same request.
 */
#include <jansson.h>

#include "api/request.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"

void hm_resp_error(struct hm_resp *resp, const struct hm_err *err)
{
	int status = hm_err_http_status(err);
	/* A message may quote what a client sent (a %ff in a path, a value cut by
	 * %.Ns mid-character): repaired to UTF-8, so the body is always JSON. */
	_cleanup_free_ char *msg = hm_utf8_sanitize(err && err->msg ? err->msg : "internal error");
	hm_resp_json(resp, status,
	             json_pack("{s:s,s:s}", "code", hm_err_code(err), "message", msg));
	if (status == 409)
		hm_resp_header(resp, "x-should-retry", "false");
	if (status == 401)
		hm_resp_header(resp, "WWW-Authenticate", "Bearer");
}
