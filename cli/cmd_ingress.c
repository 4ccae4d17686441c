/*
 * hypeman ingress: create, ls and rm over /ingresses. A rule is written
 * HOST[:PORT]=INSTANCE:PORT (`api.example.com=web:8080`,
 * `{instance}.apps.example.com:8080={instance}:80`); --tls and
 * --redirect-http apply to every rule of the command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/xalloc.h"

/* "HOST[:PORT]=INSTANCE:PORT" into a rule object; NULL when malformed. */
static json_t *parse_rule(const char *s, bool tls, bool redirect)
{
	const char *eq = strchr(s, '=');
	if (!eq || eq == s)
		return NULL;
	_cleanup_free_ char *host = xstrndup(s, (size_t)(eq - s));
	long hport = tls ? 443 : 80;
	char *colon = strrchr(host, ':');
	if (colon && !strchr(colon, '}')) {
		char *end;
		hport = strtol(colon + 1, &end, 10);
		if (*end || end == colon + 1)
			return NULL;
		*colon = '\0';
	}
	const char *target = eq + 1;
	const char *tcolon = strrchr(target, ':');
	if (!tcolon || tcolon == target)
		return NULL;
	char *end;
	long tport = strtol(tcolon + 1, &end, 10);
	if (*end || end == tcolon + 1)
		return NULL;
	_cleanup_free_ char *inst = xstrndup(target, (size_t)(tcolon - target));
	return json_pack("{s:{s:s,s:I},s:{s:s,s:I},s:b,s:b}", "match", "hostname", host, "port",
	                 (json_int_t)hport, "target", "instance", inst, "port", (json_int_t)tport,
	                 "tls", tls, "redirect_http", redirect);
}

static int ing_create(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "rule", required_argument, NULL, 'r' },
		                              { "tls", no_argument, NULL, 'T' },
		                              { "redirect-http", no_argument, NULL, 'R' },
		                              { "tag", required_argument, NULL, 't' },
		                              { 0 } };
	const char *rules_s[64];
	int nrules = 0, bad = 0, ch;
	bool tls = false, redirect = false;
	json_t *tags = json_object();
	const char *name = NULL;
	/* Options may come before or after NAME. */
	while (!bad) {
		while (!bad && (ch = cli_getopt(cmd, argc, argv, "r:t:", opts)) != -1) {
			if (ch == 'r') {
				if (nrules == 64)
					bad = cli_misuse(cmd, "at most 64 rules");
				else
					rules_s[nrules++] = optarg;
			} else if (ch == 'T') {
				tls = true;
			} else if (ch == 'R') {
				redirect = true;
			} else if (ch == 't') {
				const char *eq = strchr(optarg, '=');
				if (!eq || eq == optarg) {
					bad = cli_misuse(cmd, "--tag wants KEY=VALUE");
				} else {
					_cleanup_free_ char *k =
					    xstrndup(optarg, (size_t)(eq - optarg));
					json_object_set_new(tags, k, json_string(eq + 1));
				}
			}
		}
		if (bad || optind >= argc)
			break;
		if (name) {
			bad = cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
			break;
		}
		name = argv[optind++];
	}
	if (!bad && (!name || nrules == 0))
		bad = cli_misuse(cmd,
		                 "expected NAME and at least one --rule HOST[:PORT]=INSTANCE:PORT");
	json_t *rules = json_array();
	for (int i = 0; !bad && i < nrules; i++) {
		json_t *r = parse_rule(rules_s[i], tls, redirect);
		if (!r)
			bad = cli_misuse(cmd, "rule `%s`: want HOST[:PORT]=INSTANCE:PORT",
			                 rules_s[i]);
		else
			json_array_append_new(rules, r);
	}
	if (bad) {
		json_decref(rules);
		json_decref(tags);
		return bad;
	}
	json_t *body = json_pack("{s:s,s:o,s:o}", "name", name, "rules", rules, "tags", tags);
	return cli_post_print(c, "/ingresses", body, NULL);
}

static int ing_ls(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, "", NULL) != -1)
		;
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *list = NULL;
	if (cli_call(c, "GET", "/ingresses", NULL, &list, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(list);
		json_decref(list);
		return 0;
	}
	printf("%-26s %-20s %s\n", "ID", "NAME", "RULES");
	size_t i, k;
	json_t *g, *r;
	json_array_foreach (list, i, g) {
		printf("%-26s %-20s", json_string_value(json_object_get(g, "id")) ?: "",
		       json_string_value(json_object_get(g, "name")) ?: "");
		json_array_foreach (json_object_get(g, "rules"), k, r) {
			json_t *m = json_object_get(r, "match"), *t = json_object_get(r, "target");
			printf("%s%s%s:%lld -> %s:%lld", k ? ", " : " ",
			       json_is_true(json_object_get(r, "tls")) ? "https://" : "",
			       json_string_value(json_object_get(m, "hostname")) ?: "",
			       (long long)json_integer_value(json_object_get(m, "port")),
			       json_string_value(json_object_get(t, "instance")) ?: "",
			       (long long)json_integer_value(json_object_get(t, "port")));
		}
		printf("\n");
	}
	json_decref(list);
	return 0;
}

int cmd_ingress(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_cmd sub;
	char name[64];
	int r = cli_subcommand(cmd, &argc, &argv, &sub, name, sizeof(name));
	if (r >= 0)
		return r;
	if (strcmp(argv[0], "create") == 0)
		return ing_create(c, &sub, argc, argv);
	if (strcmp(argv[0], "ls") == 0 || strcmp(argv[0], "list") == 0)
		return ing_ls(c, &sub, argc, argv);
	if (strcmp(argv[0], "rm") == 0)
		return cli_delete_each(c, &sub, argc, argv, "/ingresses", "INGRESS");
	return cli_misuse(cmd, "unknown subcommand `%s` (create, ls, rm)", argv[0]);
}
