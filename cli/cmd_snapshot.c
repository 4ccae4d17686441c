/*
 * hypeman snapshot: create, ls, inspect, rm, restore and fork, over
 * /snapshots and /instances/{id}/snapshots. A Standby snapshot keeps an
 * instance's memory as well as its disks, a Stopped one its disks only.
 * Each subcommand has its own table entry, so `hypeman snapshot ls --help`
 * describes ls itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

static const char *const kinds[] = { "Standby", "Stopped", NULL };

static char *snap_path(const char *key, const char *rest)
{
	_cleanup_free_ char *enc = hm_percent_encode(key);
	return xasprintf("/snapshots/%s%s", enc, rest ? rest : "");
}

static char *inst_path(const char *key, const char *rest)
{
	_cleanup_free_ char *enc = hm_percent_encode(key);
	return xasprintf("/instances/%s%s", enc, rest ? rest : "");
}

/* The answer as JSON with --json, else its "id" on a line. */
/* The default kind: Standby for an instance whose memory there is to keep, Stopped otherwise. */
static int default_kind(struct cli *c, const char *key, const char **kind, struct hm_err **err)
{
	_cleanup_free_ char *path = inst_path(key, NULL);
	json_t *in = NULL;
	if (cli_call(c, "GET", path, NULL, &in, NULL, err) < 0)
		return -1;
	const char *st = json_string_value(json_object_get(in, "state")) ?: "";
	*kind = strcmp(st, "Running") == 0 || strcmp(st, "Standby") == 0 ? "Standby" : "Stopped";
	json_decref(in);
	return 0;
}

static int snap_create(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kind", required_argument, NULL, 'k' }, { "name", required_argument, NULL, 'n' },
		{ "tag", required_argument, NULL, 't' },  { "compress", no_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'J' },       { 0 }
	};
	const char *kind = NULL, *name = NULL;
	bool compress = false;
	json_t *tags = json_object();
	int ch, bad = 0;
	while (!bad && (ch = cli_getopt(cmd, argc, argv, "n:t:", opts)) != -1) {
		switch (ch) {
		case 'k':
			kind = cli_one_of(optarg, kinds);
			if (!kind)
				bad = cli_misuse(cmd, "--kind wants Standby or Stopped");
			break;
		case 'n':
			name = optarg;
			break;
		case 't': {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				bad = cli_misuse(cmd, "--tag wants KEY=VALUE, got `%s`", optarg);
				break;
			}
			_cleanup_free_ char *k = xstrndup(optarg, (size_t)(eq - optarg));
			json_object_set_new(tags, k, json_string(eq + 1));
			break;
		}
		case 'C':
			compress = true;
			break;
		case 'J':
			c->json_output = true;
			break;
		}
	}
	if (!bad && optind + 1 != argc)
		bad = cli_misuse(cmd, "expected one INSTANCE");
	if (bad) {
		json_decref(tags);
		return bad;
	}
	const char *key = argv[optind];
	_cleanup_err_ struct hm_err *err = NULL;
	if (!kind && default_kind(c, key, &kind, &err) < 0) {
		json_decref(tags);
		return cli_fail(err);
	}
	json_t *body = json_pack("{s:s}", "kind", kind);
	if (name)
		json_object_set_new(body, "name", json_string(name));
	if (json_object_size(tags))
		json_object_set(body, "tags", tags);
	json_decref(tags);
	if (compress)
		json_object_set_new(body, "compression",
		                    json_pack("{s:b,s:s}", "enabled", 1, "algorithm", "zstd"));
	_cleanup_free_ char *path = inst_path(key, "/snapshots");
	return cli_post_print(c, path, body, NULL);
}

/* Append "?key=value" (or "&key=value") to *path, value percent-encoded. */
static void add_query(char **path, const char *key, const char *value)
{
	_cleanup_free_ char *enc = hm_percent_encode(value);
	char *p = xasprintf("%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, enc);
	free(*path);
	*path = p;
}

static int snap_ls(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "instance", required_argument, NULL, 'i' },
		                              { "kind", required_argument, NULL, 'k' },
		                              { "quiet", no_argument, NULL, 'q' },
		                              { "json", no_argument, NULL, 'J' },
		                              { 0 } };
	const char *instance = NULL, *kind = NULL;
	bool quiet = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "q", opts)) != -1) {
		switch (ch) {
		case 'i':
			instance = optarg;
			break;
		case 'k':
			kind = cli_one_of(optarg, kinds);
			if (!kind)
				return cli_misuse(cmd, "--kind wants Standby or Stopped");
			break;
		case 'q':
			quiet = true;
			break;
		case 'J':
			c->json_output = true;
			break;
		}
	}
	if (optind != argc)
		return cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *id = NULL;
	if (instance) {
		/* The filter takes an id: ask for the instance's by whatever name we were given. */
		_cleanup_free_ char *ipath = inst_path(instance, NULL);
		json_t *in = NULL;
		if (cli_call(c, "GET", ipath, NULL, &in, NULL, &err) < 0)
			return cli_fail(err);
		id = xstrdup(json_string_value(json_object_get(in, "id")) ?: "");
		json_decref(in);
	}
	_cleanup_free_ char *path = xstrdup("/snapshots");
	if (id)
		add_query(&path, "source_instance_id", id);
	if (kind)
		add_query(&path, "kind", kind);
	json_t *list = NULL;
	if (cli_call(c, "GET", path, NULL, &list, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(list);
		json_decref(list);
		return 0;
	}
	if (!quiet)
		printf("%-12s  %-24s %-8s %-24s %10s  %s\n", "ID", "NAME", "KIND", "SOURCE", "SIZE",
		       "CREATED");
	size_t i;
	json_t *s;
	json_array_foreach (list, i, s) {
		const char *sid = json_string_value(json_object_get(s, "id")) ?: "";
		if (quiet) {
			printf("%s\n", sid);
			continue;
		}
		char size[32], when[32];
		cli_human_bytes((double)json_integer_value(json_object_get(s, "size_bytes")), size,
		                sizeof(size));
		printf("%-12.12s  %-24s %-8s %-24s %10s  %s\n", sid,
		       json_string_value(json_object_get(s, "name")) ?: "-",
		       json_string_value(json_object_get(s, "kind")) ?: "?",
		       json_string_value(json_object_get(s, "source_instance_name")) ?: "-", size,
		       cli_age(json_string_value(json_object_get(s, "created_at")), when,
		               sizeof(when)));
	}
	json_decref(list);
	return 0;
}

static int snap_inspect(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, "", NULL) != -1)
		;
	if (optind + 1 != argc)
		return cli_misuse(cmd, "expected one SNAPSHOT");
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *path = snap_path(argv[optind], NULL);
	json_t *snap = NULL;
	if (cli_call(c, "GET", path, NULL, &snap, NULL, &err) < 0)
		return cli_fail(err);
	cli_print_json(snap);
	json_decref(snap);
	return 0;
}

static int snap_rm(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	return cli_delete_each(c, cmd, argc, argv, "/snapshots", "SNAPSHOT");
}

/* --state and --json, the options restore and fork share; 0, or 2 on misuse. */
static int state_opts(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
                      const char **state)
{
	static const struct option opts[] = { { "state", required_argument, NULL, 's' },
		                              { "json", no_argument, NULL, 'J' },
		                              { 0 } };
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "", opts)) != -1) {
		if (ch == 's') {
			*state = cli_one_of(optarg, cli_target_states);
			if (!*state)
				return cli_misuse(cmd, "--state wants Stopped, Standby or Running");
		} else if (ch == 'J') {
			c->json_output = true;
		}
	}
	return 0;
}

static int snap_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	const char *state = NULL;
	int bad = state_opts(c, cmd, argc, argv, &state);
	if (bad)
		return bad;
	if (optind + 2 != argc)
		return cli_misuse(cmd, "expected INSTANCE SNAPSHOT");
	const char *key = argv[optind];
	_cleanup_free_ char *enc = hm_percent_encode(argv[optind + 1]);
	_cleanup_free_ char *rest = xasprintf("/snapshots/%s/restore", enc);
	_cleanup_free_ char *path = inst_path(key, rest);
	json_t *body = json_object();
	if (state)
		json_object_set_new(body, "target_state", json_string(state));
	return cli_post_print(c, path, body, key);
}

static int snap_fork(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	const char *state = NULL;
	int bad = state_opts(c, cmd, argc, argv, &state);
	if (bad)
		return bad;
	if (optind + 2 != argc)
		return cli_misuse(cmd, "expected SNAPSHOT NAME");
	json_t *body = json_pack("{s:s}", "name", argv[optind + 1]);
	if (state)
		json_object_set_new(body, "target_state", json_string(state));
	_cleanup_free_ char *path = snap_path(argv[optind], "/fork");
	return cli_post_print(c, path, body, NULL);
}

static const struct cli_cmd subs[] = {
	{ "snapshot create", "INSTANCE", "Snapshot an instance and print the snapshot's id",
	  "  --kind KIND          Standby (memory and disks; the default for a running or\n"
	  "                       standby instance) or Stopped (disks only; the default\n"
	  "                       otherwise)\n"
	  "  -n, --name NAME      name the snapshot\n"
	  "  -t, --tag KEY=VALUE  tag the snapshot (repeatable)\n"
	  "  --compress           compress the snapshot (zstd)\n"
	  "  --json               print the snapshot's record as JSON\n",
	  snap_create },
	{ "snapshot ls", "", "List snapshots",
	  "  --instance INSTANCE  only the snapshots of this instance\n"
	  "  --kind KIND          only Standby or only Stopped snapshots\n"
	  "  -q, --quiet          print ids only\n"
	  "  --json               print the list as JSON\n",
	  snap_ls },
	{ "snapshot inspect", "SNAPSHOT", "Print a snapshot's full record as JSON", NULL,
	  snap_inspect },
	{ "snapshot rm", "SNAPSHOT...", "Delete snapshots", NULL, snap_rm },
	{ "snapshot restore", "INSTANCE SNAPSHOT",
	  "Put an instance back to how it was when SNAPSHOT was taken",
	  "  --state STATE  leave it Stopped, Standby or Running (default: as the\n"
	  "                 snapshot's kind implies)\n"
	  "  --json         print the instance's record as JSON\n",
	  snap_restore },
	{ "snapshot fork", "SNAPSHOT NAME",
	  "Create a new instance NAME from a snapshot and print its id",
	  "  --state STATE  the new instance's state: Stopped, Standby or Running\n"
	  "                 (default: as the snapshot's kind implies)\n"
	  "  --json         print the new instance's record as JSON\n",
	  snap_fork },
};

int cmd_snapshot(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_cmd sub;
	char name[64];
	int r = cli_subcommand(cmd, &argc, &argv, &sub, name, sizeof(name));
	if (r >= 0)
		return r;
	const char *want = strcmp(argv[0], "list") == 0 ? "ls" : argv[0];
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(subs[i].name + strlen("snapshot "), want) == 0)
			return subs[i].fn(c, &subs[i], argc, argv);
	return cli_misuse(cmd, "unknown subcommand `%s` (create, ls, inspect, rm, restore, fork)",
	                  argv[0]);
}
