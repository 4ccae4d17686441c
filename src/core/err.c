/*
 * err: the error object (see err.h for the convention) and the one table
 * that maps error kinds to HTTP statuses and default API codes.
 */
#include "core/err.h"

#include <errno.h>
#include <stdbool.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

static const struct {
	int status;
	const char *code;
	const char *name;
} kinds[] = {
	[HM_ERR_INTERNAL] = { 500, "internal_error", "internal" },
	[HM_ERR_INVALID] = { 400, "invalid_request", "invalid" },
	[HM_ERR_UNAUTHORIZED] = { 401, "Unauthorized", "unauthorized" },
	[HM_ERR_FORBIDDEN] = { 403, "Forbidden", "forbidden" },
	[HM_ERR_NOT_FOUND] = { 404, "not_found", "not found" },
	[HM_ERR_METHOD] = { 405, "method_not_allowed", "method not allowed" },
	[HM_ERR_CONFLICT] = { 409, "conflict", "conflict" },
	[HM_ERR_TOO_LARGE] = { 413, "payload_too_large", "too large" },
	[HM_ERR_MEDIA_TYPE] = { 415, "unsupported_media_type", "unsupported media type" },
	[HM_ERR_UNAVAILABLE] = { 503, "unavailable", "unavailable" },
	[HM_ERR_TIMEOUT] = { 504, "timeout", "timeout" },
	[HM_ERR_NOT_IMPLEMENTED] = { 501, "not_implemented", "not implemented" },
	[HM_ERR_INSUFFICIENT] = { 507, "insufficient_storage", "insufficient resources" },
};

static struct hm_err *err_replace(struct hm_err **err, enum hm_err_kind kind, const char *code,
                                  int errnum, char *msg)
{
	if (!err) {
		free(msg);
		return NULL;
	}
	hm_err_free(*err);
	struct hm_err *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->code = code;
	e->errnum = errnum;
	e->msg = msg;
	*err = e;
	return e;
}

int hm_err_set(struct hm_err **err, enum hm_err_kind kind, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	err_replace(err, kind, code, 0, msg);
	return -1;
}

int hm_err_errno(struct hm_err **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, strerror(errnum));
	free(ctx);
	/* Out of disk is the host's state, not our bug: 507, whoever hit it. */
	bool full = errnum == ENOSPC || errnum == EDQUOT;
	err_replace(err, full ? HM_ERR_INSUFFICIENT : HM_ERR_INTERNAL,
	            full ? "insufficient_storage" : NULL, errnum, msg);
	return -1;
}

int hm_err_recast(struct hm_err **err, enum hm_err_kind kind, const char *code)
{
	if (err && *err) {
		(*err)->kind = kind;
		(*err)->code = code;
	}
	return -1;
}

int hm_err_errnum(struct hm_err *const *err)
{
	return err && *err ? (*err)->errnum : 0;
}

const char *hm_err_message(struct hm_err *const *err, const char *none)
{
	return err && *err && (*err)->msg ? (*err)->msg : none;
}

bool hm_err_is_kind(struct hm_err *const *err, enum hm_err_kind kind)
{
	return err && *err && (*err)->kind == kind;
}

void hm_err_set_errnum(struct hm_err **err, int errnum)
{
	if (err && *err)
		(*err)->errnum = errnum;
}

int hm_err_wrap(struct hm_err **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

void hm_err_free(struct hm_err *err)
{
	if (!err)
		return;
	free(err->msg);
	free(err);
}

int hm_err_http_status(const struct hm_err *err)
{
	if (!err || (size_t)err->kind >= sizeof(kinds) / sizeof(kinds[0]))
		return 500;
	return kinds[err->kind].status;
}

const char *hm_err_code(const struct hm_err *err)
{
	if (!err || (size_t)err->kind >= sizeof(kinds) / sizeof(kinds[0]))
		return "internal_error";
	return err->code ? err->code : kinds[err->kind].code;
}

const char *hm_err_kind_name(enum hm_err_kind kind)
{
	if ((size_t)kind >= sizeof(kinds) / sizeof(kinds[0]))
		return "unknown";
	return kinds[kind].name;
}

bool hm_err_is(const struct hm_err *err, enum hm_err_kind kind)
{
	return err && err->kind == kind;
}
