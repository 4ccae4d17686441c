/*
 * hypeman volume: create, ls, rm and import (a tar or tar.gz becomes a new
 * volume's files), over /volumes. One command with subcommands, like
 * `docker volume`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

static int parse_gb(const struct cli_cmd *cmd, const char *s, long *gb)
{
	char *end;
	*gb = strtol(s, &end, 10);
	if (*end || end == s || *gb < 1)
		return cli_misuse(cmd, "--size wants a whole number of GB, e.g. --size 10");
	return 0;
}

/* "k=v" into tags; 2 (misuse) on a bad one. */
static int add_tag(const struct cli_cmd *cmd, json_t *tags, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv)
		return cli_misuse(cmd, "--tag wants KEY=VALUE");
	_cleanup_free_ char *k = strndup(kv, (size_t)(eq - kv));
	json_object_set_new(tags, k, json_string(eq + 1));
	return 0;
}

static void print_volume(struct cli *c, json_t *v)
{
	if (c->json_output)
		cli_print_json(v);
	else
		printf("%s\n", json_string_value(json_object_get(v, "id")) ?: "");
}

static int vol_create(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, bool import)
{
	static const struct option opts[] = { { "size", required_argument, NULL, 's' },
		                              { "tag", required_argument, NULL, 't' },
		                              { "id", required_argument, NULL, 'i' },
		                              { 0 } };
	long gb = 0;
	const char *id = NULL;
	json_t *tags = json_object();
	int ch, bad = 0;
	const char *operands[2];
	int nops = 0;
	/* Options may come before or after the operands, as with docker. */
	while (!bad) {
		while (!bad && (ch = cli_getopt(cmd, argc, argv, "s:t:", opts)) != -1) {
			if (ch == 's')
				bad = parse_gb(cmd, optarg, &gb);
			else if (ch == 't')
				bad = add_tag(cmd, tags, optarg);
			else if (ch == 'i')
				id = optarg;
		}
		if (bad || optind >= argc)
			break;
		if (nops == (import ? 2 : 1)) {
			bad = cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
			break;
		}
		operands[nops++] = argv[optind++];
	}
	if (!bad && gb == 0)
		bad = cli_misuse(cmd, "--size GB is required");
	if (!bad && nops != (import ? 2 : 1))
		bad = cli_misuse(cmd, import ? "expected NAME FILE" : "expected NAME");
	if (bad) {
		json_decref(tags);
		return bad;
	}
	const char *name = operands[0];
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *v = NULL;
	int r;
	if (!import) {
		json_t *body = json_pack("{s:s,s:I,s:o}", "name", name, "size_gb", (json_int_t)gb,
		                         "tags", tags);
		if (id)
			json_object_set_new(body, "id", json_string(id));
		r = cli_call(c, "POST", "/volumes", body, &v, NULL, &err);
		json_decref(body);
	} else {
		const char *file = operands[1];
		int fd =
		    strcmp(file, "-") == 0 ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			json_decref(tags);
			fprintf(stderr, "hypeman: %s: %s\n", file, strerror(errno));
			return 1;
		}
		_cleanup_free_ char *en = hm_percent_encode(name);
		char *path = xasprintf("/volumes/from-archive?name=%s&size_gb=%ld", en, gb);
		if (id) {
			_cleanup_free_ char *ei = hm_percent_encode(id);
			char *p2 = xasprintf("%s&id=%s", path, ei);
			free(path);
			path = p2;
		}
		const char *k;
		json_t *val;
		json_object_foreach (tags, k, val) {
			_cleanup_free_ char *ek = hm_percent_encode(k);
			_cleanup_free_ char *ev = hm_percent_encode(json_string_value(val));
			char *p2 = xasprintf("%s&tags[%s]=%s", path, ek, ev);
			free(path);
			path = p2;
		}
		json_decref(tags);
		r = cli_upload(c, path, fd, "application/gzip", &v, &err);
		free(path);
		close(fd);
	}
	if (r < 0)
		return cli_fail(err);
	print_volume(c, v);
	json_decref(v);
	return 0;
}

static int vol_ls(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "quiet", no_argument, NULL, 'q' }, { 0 } };
	bool quiet = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "q", opts)) != -1)
		if (ch == 'q')
			quiet = true;
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *list = NULL;
	if (cli_call(c, "GET", "/volumes", NULL, &list, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(list);
		json_decref(list);
		return 0;
	}
	if (!quiet)
		printf("%-26s %-24s %8s  %s\n", "ID", "NAME", "SIZE", "ATTACHED");
	size_t i;
	json_t *v;
	json_array_foreach (list, i, v) {
		if (quiet) {
			printf("%s\n", json_string_value(json_object_get(v, "id")) ?: "");
			continue;
		}
		printf("%-26s %-24s %6lldGB  %zu\n",
		       json_string_value(json_object_get(v, "id")) ?: "",
		       json_string_value(json_object_get(v, "name")) ?: "",
		       (long long)json_integer_value(json_object_get(v, "size_gb")),
		       json_array_size(json_object_get(v, "attachments")));
	}
	json_decref(list);
	return 0;
}

int cmd_volume(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_cmd sub;
	char name[64];
	int r = cli_subcommand(cmd, &argc, &argv, &sub, name, sizeof(name));
	if (r >= 0)
		return r;
	if (strcmp(argv[0], "create") == 0)
		return vol_create(c, &sub, argc, argv, false);
	if (strcmp(argv[0], "import") == 0)
		return vol_create(c, &sub, argc, argv, true);
	if (strcmp(argv[0], "ls") == 0 || strcmp(argv[0], "list") == 0)
		return vol_ls(c, &sub, argc, argv);
	if (strcmp(argv[0], "rm") == 0)
		return cli_delete_each(c, &sub, argc, argv, "/volumes", "VOLUME");
	return cli_misuse(cmd, "unknown subcommand `%s` (create, import, ls, rm)", argv[0]);
}
