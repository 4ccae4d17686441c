/*
 * The HS256 signing secret: JWT_SECRET when set, otherwise a random secret
 * created once in the data dir (`<data_dir>/jwt_secret`, mode 0600) and
 * shared by hypeman-api and hypeman-token.
 */
#pragma once

struct hm_err;

#define HM_SECRET_FILE    "jwt_secret"
#define HM_SECRET_MIN_LEN 16

/* Load the data dir's secret, creating it if `create` and it is missing. */
int hm_secret_load(const char *data_dir, int create, char **ret_secret, struct hm_err **err);
