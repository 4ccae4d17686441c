/*
 * hypeman-token: mints API tokens for a hypeman-api daemon. It signs with
 * the same secret the daemon verifies with: JWT_SECRET when set, otherwise
 * the secret file in the data dir (which the daemon creates on its first
 * start). Scopes are checked against the vocabulary the API knows, so a
 * typo fails here rather than as a puzzling 403 later.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/jwt.h"
#include "auth/secret.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

static void usage(void)
{
	printf("Usage: hypeman-token [OPTIONS]\n"
	       "\n"
	       "Mint a bearer token for the hypeman API and print it.\n"
	       "\n"
	       "Options:\n"
	       "  --sub NAME          subject (who the token is for) (default: hypeman)\n"
	       "  --duration D        lifetime: 30s, 15m, 24h, 7d (default: 24h)\n"
	       "  --scopes A,B        limit the token to these scopes (default: full access)\n"
	       "  --list-scopes       print the scopes the API knows and exit\n"
	       "  --data-dir DIR      read the secret from DIR/jwt_secret [DATA_DIR]\n"
	       "                      (default /var/lib/hypeman); JWT_SECRET overrides it\n"
	       "  -h, --help          show this help\n"
	       "\n"
	       "Example:\n"
	       "  export HYPEMAN_API_KEY=$(hypeman-token --scopes instance:read,image:read)\n");
}

/* "90", "30s", "15m", "24h", "7d" -> seconds; -1 when malformed or out of range. */
static long long parse_duration(const char *s)
{
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v <= 0)
		return -1;
	long long mult;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else if (strcmp(end, "d") == 0)
		mult = 86400;
	else
		return -1;
	if (v > 10LL * 365 * 86400 / mult) /* ten years is plenty */
		return -1;
	return v * mult;
}

/* Split "a,b" into a JSON array of known scopes; NULL (message printed) on a bad one. */
static json_t *parse_scopes(const char *list)
{
	json_t *arr = json_array();
	_cleanup_free_ char *copy = xstrdup(list);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!hm_scope_is_known(tok)) {
			fprintf(stderr, "hypeman-token: unknown scope `%s` (see --list-scopes)\n",
			        tok);
			json_decref(arr);
			return NULL;
		}
		json_array_append_new(arr, json_string(tok));
	}
	if (json_array_size(arr) == 0) {
		fprintf(stderr, "hypeman-token: --scopes needs at least one scope\n");
		json_decref(arr);
		return NULL;
	}
	return arr;
}

int main(int argc, char **argv)
{
	const char *sub = "hypeman";
	const char *duration = "24h";
	const char *scopes = NULL;
	const char *data_dir = getenv("DATA_DIR");
	if (!data_dir || !*data_dir)
		data_dir = "/var/lib/hypeman";

	static const struct option opts[] = {
		{ "sub", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "scopes", required_argument, NULL, 'S' },
		{ "list-scopes", no_argument, NULL, 'L' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sub = optarg;
			break;
		case 'd':
			duration = optarg;
			break;
		case 'S':
			scopes = optarg;
			break;
		case 'D':
			data_dir = optarg;
			break;
		case 'L':
			for (size_t i = 0; hm_known_scopes[i]; i++)
				printf("%s\n", hm_known_scopes[i]);
			return 0;
		case 'h':
			usage();
			return 0;
		default:
			fprintf(stderr, "Try `hypeman-token --help`.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hypeman-token: unexpected argument `%s`\n", argv[optind]);
		return 2;
	}
	if (!*sub || strlen(sub) > 256) {
		fprintf(stderr, "hypeman-token: --sub must be 1 to 256 characters\n");
		return 2;
	}
	long long secs = parse_duration(duration);
	if (secs < 0) {
		fprintf(stderr,
		        "hypeman-token: invalid --duration `%s` (examples: 30s, 15m, 24h, 7d)\n",
		        duration);
		return 2;
	}

	_cleanup_free_ char *secret = NULL;
	const char *env_secret = getenv("JWT_SECRET");
	if (env_secret && *env_secret) {
		secret = xstrdup(env_secret);
	} else {
		_cleanup_err_ struct hm_err *err = NULL;
		if (hm_secret_load(data_dir, 0, &secret, &err) < 0) {
			fprintf(stderr, "hypeman-token: %s\n", err->msg);
			return 1;
		}
	}

	time_t now = time(NULL);
	json_t *claims = json_pack("{s:s,s:I,s:I}", "sub", sub, "iat", (json_int_t)now, "exp",
	                           (json_int_t)(now + secs));
	if (scopes) {
		json_t *arr = parse_scopes(scopes);
		if (!arr) {
			json_decref(claims);
			return 2;
		}
		json_object_set_new(claims, "permissions", arr);
	}
	_cleanup_free_ char *token = hm_jwt_sign(secret, claims);
	json_decref(claims);
	printf("%s\n", token);
	return 0;
}
