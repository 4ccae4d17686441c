/*
 * System commands: `health`, `resources`, `info` and `version`.
 */
#include <stdbool.h>
#include <stdio.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/version.h"

static int no_operands(const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, NULL, NULL) != -1)
		;
	if (optind < argc)
		return cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
	return 0;
}

int cmd_health(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	if (no_operands(cmd, argc, argv))
		return 2;
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *j = NULL;
	if (cli_call(c, "GET", "/health", NULL, &j, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output)
		cli_print_json(j);
	else
		printf("%s\n", json_string_value(json_object_get(j, "status")) ?: "unknown");
	json_decref(j);
	return 0;
}

int cmd_resources(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	if (no_operands(cmd, argc, argv))
		return 2;
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *j = NULL;
	if (cli_call(c, "GET", "/resources", NULL, &j, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(j);
		json_decref(j);
		return 0;
	}
	printf("%-8s %12s %12s %12s %12s\n", "RESOURCE", "CAPACITY", "LIMIT", "ALLOCATED",
	       "AVAILABLE");
	static const char *const kinds[] = { "cpu", "memory", "disk", "network" };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		json_t *r = json_object_get(j, kinds[i]);
		if (!r)
			continue;
		const char *keys[] = { "capacity", "effective_limit", "allocated", "available" };
		char cols[4][32];
		for (size_t k = 0; k < 4; k++) {
			json_int_t v = json_integer_value(json_object_get(r, keys[k]));
			if (i == 0)
				snprintf(cols[k], sizeof(cols[k]), "%lld", (long long)v);
			else
				cli_human_bytes((double)v, cols[k], sizeof(cols[k]));
		}
		printf("%-8s %12s %12s %12s %12s\n", kinds[i], cols[0], cols[1], cols[2], cols[3]);
	}
	json_decref(j);
	return 0;
}

int cmd_version(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	(void)c;
	if (no_operands(cmd, argc, argv))
		return 2;
	printf("hypeman %s\n", HM_VERSION);
	return 0;
}

/* `hypeman info`: GET /capabilities for people: the server, how guests run, the runtimes. */
int cmd_info(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	if (no_operands(cmd, argc, argv))
		return 2;
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *j = NULL;
	if (cli_call(c, "GET", "/capabilities", NULL, &j, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(j);
		json_decref(j);
		return 0;
	}
	json_t *srv = json_object_get(j, "server"), *host = json_object_get(j, "host");
	json_t *acc = json_object_get(j, "accelerator"), *net = json_object_get(j, "network");
	printf("Server:       hypeman-api %s (API %s)\n",
	       json_string_value(json_object_get(srv, "version")) ?: "?",
	       json_string_value(json_object_get(srv, "api_version")) ?: "?");
	printf("Host:         %s/%s\n", json_string_value(json_object_get(host, "os")) ?: "?",
	       json_string_value(json_object_get(host, "arch")) ?: "?");
	printf("Accelerator:  %s (%s)\n", json_string_value(json_object_get(acc, "name")) ?: "?",
	       json_string_value(json_object_get(acc, "reason")) ?: "");
	const char *gw = json_string_value(json_object_get(net, "gateway"));
	const char *subnet = json_string_value(json_object_get(net, "subnet"));
	if (gw)
		printf("Network:      %s, gateway %s, subnet %s\n",
		       json_string_value(json_object_get(net, "model")) ?: "?", gw, subnet ?: "?");
	else
		printf("Network:      none (NETWORK_ENABLED=false)\n");
	printf("Default:      %s\n",
	       json_string_value(json_object_get(json_object_get(j, "default_runtime"), "name"))
	           ?: "?");
	printf("\n%-18s %-9s %-5s %s\n", "RUNTIME", "AVAILABLE", "ACCEL", "FEATURES / WHY NOT");
	size_t i;
	json_t *r;
	json_array_foreach (json_object_get(j, "runtimes"), i, r) {
		bool ok = json_is_true(json_object_get(r, "available"));
		printf("%-18s %-9s %-5s ", json_string_value(json_object_get(r, "name")) ?: "?",
		       ok ? "yes" : "no",
		       json_string_value(json_object_get(r, "accelerator")) ?: "");
		if (!ok) {
			printf("%s\n", json_string_value(json_object_get(r, "reason")) ?: "");
			continue;
		}
		size_t f;
		json_t *feat;
		json_array_foreach (json_object_get(r, "features"), f, feat)
			printf("%s%s", f ? "," : "", json_string_value(feat) ?: "");
		printf("\n");
	}
	json_decref(j);
	return 0;
}
