/*
 * The error object every fallible function fills.
 *
 * Convention (crun's, with systemd's names): a function that can fail takes
 * `struct hm_err **err` as its last parameter and returns < 0 on failure
 * after filling *err, or >= 0 on success without touching it. The kind says
 * which HTTP status the failure maps to; `code` is the machine-readable
 * snake_case code of the API's {code,message} body. Only one place turns an
 * error into output: api/errors.c for the daemon, main() for the tools.
 */
#pragma once

#include <stdbool.h>

enum hm_err_kind {
	HM_ERR_INTERNAL = 0,    /* 500 */
	HM_ERR_INVALID,         /* 400 */
	HM_ERR_UNAUTHORIZED,    /* 401 */
	HM_ERR_FORBIDDEN,       /* 403 */
	HM_ERR_NOT_FOUND,       /* 404 */
	HM_ERR_METHOD,          /* 405 */
	HM_ERR_CONFLICT,        /* 409 */
	HM_ERR_TOO_LARGE,       /* 413 */
	HM_ERR_MEDIA_TYPE,      /* 415 */
	HM_ERR_UNAVAILABLE,     /* 503: a dependency (VMM, registry) cannot be reached */
	HM_ERR_TIMEOUT,         /* 504 */
	HM_ERR_NOT_IMPLEMENTED, /* 501 */
	HM_ERR_INSUFFICIENT,    /* 507: out of disk or another host resource */
};

struct hm_err {
	enum hm_err_kind kind;
	int errnum;       /* errno behind the failure, or 0 */
	const char *code; /* static string; NULL means the kind's default code */
	char *msg;        /* owned, human readable; context is prefixed by hm_err_wrap */
};

/*
 * Fill *err (if err is not NULL) and return -1. `code` may be NULL for the
 * kind's default. An already-set *err is replaced.
 */
int hm_err_set(struct hm_err **err, enum hm_err_kind kind, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An internal error caused by errno value `errnum`; ": <strerror>" is appended. */
int hm_err_errno(struct hm_err **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Give *err another kind (and code: NULL for the kind's default) after the
 * fact; nothing when err or *err is NULL. Returns -1. The one way to change
 * an error's kind outside err.c: callers may pass err == NULL.
 */
int hm_err_recast(struct hm_err **err, enum hm_err_kind kind, const char *code);
/* The errno behind *err (0 when none, or no error), NULL-safe. */
int hm_err_errnum(struct hm_err *const *err);
/* *err's message, or `none` when there is no error (NULL-safe). */
const char *hm_err_message(struct hm_err *const *err, const char *none);
/* Whether *err is of kind (false without an error), NULL-safe. */
bool hm_err_is_kind(struct hm_err *const *err, enum hm_err_kind kind);
/* Set the errno behind *err, NULL-safe. */
void hm_err_set_errnum(struct hm_err **err, int errnum);

/* Prefix context to *err's message ("context: message"); kind and code stay. Returns -1. */
int hm_err_wrap(struct hm_err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void hm_err_free(struct hm_err *err);
static inline void hm_err_freep(struct hm_err **err)
{
	if (*err)
		hm_err_free(*err);
	*err = (void *)0;
}
#define _cleanup_err_ __attribute__((cleanup(hm_err_freep)))

int hm_err_http_status(const struct hm_err *err);
const char *hm_err_code(const struct hm_err *err);
const char *hm_err_kind_name(enum hm_err_kind kind);
bool hm_err_is(const struct hm_err *err, enum hm_err_kind kind);
