/*
 * HS256 JSON Web Tokens as Hypeman uses them: claims `sub`, `iat`, `exp`
 * and an optional `permissions` array of scopes. A token without
 * `permissions` has full access; `*` also grants everything.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct hm_err;

/* What a verified token lets its bearer do. */
struct hm_principal {
	char *sub;
	bool all;      /* no permissions claim, or it contains "*" */
	char **scopes; /* NULL-terminated */
};

/* Sign `claims` (borrowed) with `secret`; returns an owned token string. */
char *hm_jwt_sign(const char *secret, json_t *claims);

/*
 * Verify `token` against `secret` at time `now`: structure, alg HS256,
 * signature (constant time), exp/nbf when present, and that it is an API
 * token (not a registry or builder token). On success fills *ret.
 * Failures are HM_ERR_UNAUTHORIZED with a message safe to show a client.
 */
int hm_jwt_verify(const char *secret, const char *token, time_t now, struct hm_principal **ret,
                  struct hm_err **err);

bool hm_principal_has_scope(const struct hm_principal *p, const char *scope);
void hm_principal_free(struct hm_principal *p);

/* The scopes the API knows, NULL-terminated (for minting and `--list-scopes`). */
extern const char *const hm_known_scopes[];
bool hm_scope_is_known(const char *scope);

/* Upper bound on a token we are willing to parse. */
#define HM_JWT_MAX_LEN 8192
