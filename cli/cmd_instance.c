/*
 * Instance commands, shaped like docker's: `run` (pull if needed, create,
 * then follow the program's output and exit with its exit code, or print
 * the id with -d), `ps`, `logs` (SSE decoded back to lines), `rm`, `stop`,
 * `start`, `standby` and `restore` (memory to disk and back), `fork`,
 * `inspect` and `stats`. `exec` has its own file (cmd_exec.c), snapshots
 * theirs (cmd_snapshot.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

static char *inst_path(const char *key, const char *rest)
{
	_cleanup_free_ char *enc = hm_percent_encode(key);
	return xasprintf("/instances/%s%s", enc, rest ? rest : "");
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Make sure `image` is pulled and ready: pull it (quietly but visibly) if not. */
static int ensure_image(struct cli *c, const char *image, bool quiet, struct hm_err **err)
{
	_cleanup_free_ char *enc = hm_percent_encode(image);
	_cleanup_free_ char *path = xasprintf("/images/%s", enc);
	json_t *img = NULL;
	struct hm_err *lookup = NULL;
	if (cli_call(c, "GET", path, NULL, &img, NULL, &lookup) < 0) {
		bool missing = lookup->kind == HM_ERR_NOT_FOUND;
		if (!missing) {
			*err = lookup;
			return -1;
		}
		hm_err_free(lookup);
		json_t *body = json_pack("{s:s}", "name", image);
		int r = cli_call(c, "POST", "/images", body, &img, NULL, err);
		json_decref(body);
		if (r < 0)
			return -1;
		if (!quiet)
			fprintf(stderr, "Unable to find image '%s' locally; pulling\n", image);
	}
	for (;;) {
		const char *st = json_string_value(json_object_get(img, "status")) ?: "";
		if (strcmp(st, "ready") == 0)
			break;
		if (strcmp(st, "failed") == 0) {
			hm_err_set(err, HM_ERR_INVALID, NULL, "pull %s failed: %s", image,
			           json_string_value(json_object_get(img, "error")) ?: "?");
			json_decref(img);
			return -1;
		}
		json_decref(img);
		img = NULL;
		sleep_ms(200);
		/* The server's own name for it: the normalized reference. */
		if (cli_call(c, "GET", path, NULL, &img, NULL, err) < 0)
			return -1;
	}
	json_decref(img);
	return 0;
}

/* SSE decoding: print each `data:` event's JSON string as a line. */
struct sse {
	char *buf;
	size_t len;
	FILE *out;
};

static int on_sse(const char *data, size_t len, void *userdata)
{
	struct sse *s = userdata;
	s->buf = xrealloc(s->buf, s->len + len + 1);
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	char *end;
	while ((end = strstr(s->buf, "\n\n"))) {
		*end = '\0';
		for (char *line = s->buf; line && *line;) {
			char *nl = strchr(line, '\n');
			if (nl)
				*nl = '\0';
			if (strncmp(line, "data: ", 6) == 0) {
				json_t *j = json_loads(line + 6, JSON_DECODE_ANY, NULL);
				if (json_is_string(j))
					fprintf(s->out, "%s\n", json_string_value(j));
				json_decref(j);
			}
			line = nl ? nl + 1 : NULL;
		}
		size_t used = (size_t)(end + 2 - s->buf);
		memmove(s->buf, end + 2, s->len - used + 1);
		s->len -= used;
	}
	fflush(s->out);
	return 0;
}

static int stream_logs(struct cli *c, const char *key, long tail, bool follow, const char *source,
                       struct hm_err **err)
{
	_cleanup_free_ char *q = xasprintf("/logs?tail=%ld&follow=%s&source=%s", tail,
	                                   follow ? "true" : "false", source);
	_cleanup_free_ char *path = inst_path(key, q);
	struct sse s = { .out = stdout };
	int r = cli_stream(c, path, on_sse, &s, err);
	free(s.buf);
	return r;
}

static char *default_name(const char *image)
{
	const char *base = strrchr(image, '/');
	base = base ? base + 1 : image;
	size_t n = strcspn(base, ":@");
	char clean[40];
	size_t k = 0;
	for (size_t i = 0; i < n && k < 24; i++) {
		char ch = base[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
			clean[k++] = ch;
		else if (k > 0 && clean[k - 1] != '-')
			clean[k++] = '-';
	}
	while (k > 0 && clean[k - 1] == '-')
		k--;
	clean[k] = '\0';
	unsigned char r[3];
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		memset(r, 0, sizeof(r));
	return xasprintf("%s%s%02x%02x%02x", clean, k ? "-" : "", r[0], r[1], r[2]);
}

int cmd_run(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "env", required_argument, NULL, 'e' },
		{ "entrypoint", required_argument, NULL, 'E' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "overlay-size", required_argument, NULL, 'o' },
		{ "tag", required_argument, NULL, 't' },
		{ "volume", required_argument, NULL, 'v' },
		{ "detach", no_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 },
	};
	const char *name = NULL, *entrypoint = NULL, *mem = NULL, *overlay = NULL;
	long cpus = 0;
	bool detach = false, quiet = false;
	json_t *env = json_object(), *tags = json_object(), *vols = json_array();
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "n:e:m:t:v:dq", opts)) != -1) {
		switch (ch) {
		case 'v': {
			/* VOLUME:/path[:ro], as docker's -v */
			const char *colon = strchr(optarg, ':');
			const char *ro = colon ? strstr(colon + 1, ":ro") : NULL;
			if (!colon || colon == optarg || colon[1] != '/' || (ro && ro[3])) {
				json_decref(env);
				json_decref(tags);
				json_decref(vols);
				return cli_misuse(cmd,
				                  "--volume wants VOLUME:/path or VOLUME:/path:ro");
			}
			_cleanup_free_ char *vol = xstrndup(optarg, (size_t)(colon - optarg));
			_cleanup_free_ char *path =
			    ro ? xstrndup(colon + 1, (size_t)(ro - colon - 1)) : xstrdup(colon + 1);
			json_array_append_new(vols, json_pack("{s:s,s:s,s:b}", "volume_id", vol,
			                                      "mount_path", path, "readonly",
			                                      ro != NULL));
			break;
		}
		case 'n':
			name = optarg;
			break;
		case 'E':
			entrypoint = optarg;
			break;
		case 'm':
			mem = optarg;
			break;
		case 'o':
			overlay = optarg;
			break;
		case 'd':
			detach = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'c': {
			char *end;
			cpus = strtol(optarg, &end, 10);
			if (*end || cpus < 1) {
				json_decref(env);
				json_decref(tags);
				json_decref(vols);
				return cli_misuse(cmd, "--cpus wants a positive integer");
			}
			break;
		}
		case 'e':
		case 't': {
			const char *eq = strchr(optarg, '=');
			json_t *into = ch == 'e' ? env : tags;
			if (!eq && ch == 'e') {
				/* -e NAME passes the variable from this environment, as docker
				 * does. */
				const char *v = getenv(optarg);
				if (v)
					json_object_set_new(into, optarg, json_string(v));
				break;
			}
			if (!eq) {
				json_decref(env);
				json_decref(tags);
				json_decref(vols);
				return cli_misuse(cmd, "--tag wants KEY=VALUE, got `%s`", optarg);
			}
			_cleanup_free_ char *k = xstrndup(optarg, (size_t)(eq - optarg));
			json_object_set_new(into, k, json_string(eq + 1));
			break;
		}
		}
	}
	if (optind >= argc) {
		json_decref(env);
		json_decref(tags);
		json_decref(vols);
		return cli_misuse(cmd, "expected an IMAGE");
	}
	const char *image = argv[optind++];
	_cleanup_err_ struct hm_err *err = NULL;
	if (ensure_image(c, image, quiet, &err) < 0) {
		json_decref(env);
		json_decref(tags);
		json_decref(vols);
		return cli_fail(err);
	}
	_cleanup_free_ char *gen = name ? NULL : default_name(image);
	json_t *body = json_pack("{s:s,s:s}", "name", name ? name : gen, "image", image);
	if (json_object_size(env))
		json_object_set(body, "env", env);
	if (json_object_size(tags))
		json_object_set(body, "tags", tags);
	if (json_array_size(vols))
		json_object_set(body, "volumes", vols);
	json_decref(env);
	json_decref(tags);
	json_decref(vols);
	if (entrypoint)
		json_object_set_new(body, "entrypoint",
		                    *entrypoint ? json_pack("[s]", entrypoint) : json_array());
	if (optind < argc) {
		json_t *cmdv = json_array();
		for (int i = optind; i < argc; i++)
			json_array_append_new(cmdv, json_string(argv[i]));
		json_object_set_new(body, "cmd", cmdv);
	}
	if (cpus)
		json_object_set_new(body, "vcpus", json_integer(cpus));
	if (mem)
		json_object_set_new(body, "size", json_string(mem));
	if (overlay)
		json_object_set_new(body, "overlay_size", json_string(overlay));
	json_t *inst = NULL;
	int r = cli_call(c, "POST", "/instances", body, &inst, NULL, &err);
	json_decref(body);
	if (r < 0)
		return cli_fail(err);
	_cleanup_free_ char *id = xstrdup(json_string_value(json_object_get(inst, "id")) ?: "");
	if (c->json_output && detach)
		cli_print_json(inst);
	else if (detach)
		printf("%s\n", id);
	json_decref(inst);
	if (detach)
		return 0;

	/* Attached: the program's output until it stops, then its exit code. */
	if (stream_logs(c, id, 1000000, true, "app", &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *path = inst_path(id, NULL);
	for (int tries = 0; tries < 50; tries++) {
		inst = NULL;
		if (cli_call(c, "GET", path, NULL, &inst, NULL, &err) < 0)
			return cli_fail(err);
		const char *st = json_string_value(json_object_get(inst, "state")) ?: "";
		if (strcmp(st, "Stopped") == 0) {
			json_t *code = json_object_get(inst, "exit_code");
			int rc = json_is_integer(code) ? (int)json_integer_value(code) : 1;
			const char *msg = json_string_value(json_object_get(inst, "exit_message"));
			if (rc != 0 && msg && !quiet)
				fprintf(stderr, "hypeman: %s: %s\n", id, msg);
			json_decref(inst);
			return rc > 255 ? 255 : rc;
		}
		json_decref(inst);
		sleep_ms(100);
	}
	fprintf(stderr, "hypeman: %s is still running (the log stream ended)\n", id);
	return 1;
}

int cmd_ps(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "all", no_argument, NULL, 'a' },
		                              { "quiet", no_argument, NULL, 'q' },
		                              { 0 } };
	bool all = false, quiet = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "aq", opts)) != -1) {
		if (ch == 'a')
			all = true;
		else if (ch == 'q')
			quiet = true;
	}
	if (optind != argc)
		return cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *list = NULL;
	if (cli_call(c, "GET", "/instances", NULL, &list, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(list);
		json_decref(list);
		return 0;
	}
	if (!quiet)
		printf("%-12s  %-24s %-36s %-13s %-16s %s\n", "ID", "NAME", "IMAGE", "STATE", "IP",
		       "CREATED");
	size_t i;
	json_t *in;
	json_array_foreach (list, i, in) {
		const char *state = json_string_value(json_object_get(in, "state")) ?: "?";
		if (!all && strcmp(state, "Stopped") == 0)
			continue;
		const char *id = json_string_value(json_object_get(in, "id")) ?: "";
		if (quiet) {
			printf("%s\n", id);
			continue;
		}
		const char *ip =
		    json_string_value(json_object_get(json_object_get(in, "network"), "ip"));
		char when[32];
		char st[40];
		json_t *code = json_object_get(in, "exit_code");
		if (strcmp(state, "Stopped") == 0 && json_is_integer(code))
			snprintf(st, sizeof(st), "Stopped (%lld)",
			         (long long)json_integer_value(code));
		else
			snprintf(st, sizeof(st), "%s", state);
		printf("%-12.12s  %-24s %-36s %-13s %-16s %s\n", id,
		       json_string_value(json_object_get(in, "name")) ?: "",
		       json_string_value(json_object_get(in, "image")) ?: "", st, ip ? ip : "-",
		       cli_age(json_string_value(json_object_get(in, "created_at")), when,
		               sizeof(when)));
	}
	json_decref(list);
	return 0;
}

int cmd_logs(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "tail", required_argument, NULL, 'n' },
		{ "source", required_argument, NULL, 's' },
		{ 0 },
	};
	bool follow = false;
	long tail = 100;
	const char *source = "app";
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "fn:s:", opts)) != -1) {
		switch (ch) {
		case 'f':
			follow = true;
			break;
		case 's':
			source = optarg;
			break;
		case 'n': {
			char *end;
			tail = strtol(optarg, &end, 10);
			if (*end || tail < 0)
				return cli_misuse(cmd, "--tail wants a number of lines");
			break;
		}
		}
	}
	if (optind + 1 != argc)
		return cli_misuse(cmd, "expected one INSTANCE");
	_cleanup_err_ struct hm_err *err = NULL;
	if (stream_logs(c, argv[optind], tail, follow, source, &err) < 0)
		return cli_fail(err);
	return 0;
}

int cmd_rm(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "force", no_argument, NULL, 'f' }, { 0 } };
	bool force = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "f", opts)) != -1)
		if (ch == 'f')
			force = true;
	if (optind >= argc)
		return cli_misuse(cmd, "expected at least one INSTANCE");
	int ret = 0;
	for (int i = optind; i < argc; i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		_cleanup_free_ char *path = inst_path(argv[i], NULL);
		if (!force) {
			json_t *in = NULL;
			if (cli_call(c, "GET", path, NULL, &in, NULL, &err) < 0) {
				ret = cli_fail(err);
				continue;
			}
			_cleanup_free_ char *st =
			    xstrdup(json_string_value(json_object_get(in, "state")) ?: "");
			json_decref(in);
			bool stopped = strcmp(st, "Stopped") == 0 || strcmp(st, "Standby") == 0 ||
			               strcmp(st, "Created") == 0;
			if (!stopped) {
				fprintf(stderr,
				        "hypeman: %s is %s; stop it first or use `hypeman rm -f`\n",
				        argv[i], st);
				ret = 1;
				continue;
			}
		}
		if (cli_call(c, "DELETE", path, NULL, NULL, NULL, &err) < 0) {
			ret = cli_fail(err);
			continue;
		}
		printf("%s\n", argv[i]);
	}
	return ret;
}

/* POST /instances/<key><action> for each operand, printing each one done (or its JSON). */
static int post_each(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
                     const char *action)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'J' }, { 0 } };
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "", opts)) != -1)
		if (ch == 'J')
			c->json_output = true;
	if (optind >= argc)
		return cli_misuse(cmd, "expected at least one INSTANCE");
	int ret = 0;
	for (int i = optind; i < argc; i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		_cleanup_free_ char *path = inst_path(argv[i], action);
		json_t *in = NULL;
		if (cli_call(c, "POST", path, NULL, &in, NULL, &err) < 0) {
			ret = cli_fail(err);
			continue;
		}
		if (c->json_output)
			cli_print_json(in);
		else
			printf("%s\n", argv[i]);
		json_decref(in);
	}
	return ret;
}

int cmd_stop(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	return post_each(c, cmd, argc, argv, "/stop");
}

int cmd_standby(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	return post_each(c, cmd, argc, argv, "/standby");
}

int cmd_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	return post_each(c, cmd, argc, argv, "/restore");
}

int cmd_fork(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "from-running", no_argument, NULL, 'R' },
		                              { "state", required_argument, NULL, 's' },
		                              { "json", no_argument, NULL, 'J' },
		                              { 0 } };
	bool from_running = false;
	const char *state = NULL;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "", opts)) != -1) {
		switch (ch) {
		case 'R':
			from_running = true;
			break;
		case 's':
			state = cli_one_of(optarg, cli_target_states);
			if (!state)
				return cli_misuse(cmd, "--state wants Stopped, Standby or Running");
			break;
		case 'J':
			c->json_output = true;
			break;
		}
	}
	if (optind + 2 != argc)
		return cli_misuse(cmd, "expected SOURCE NAME");
	json_t *body =
	    json_pack("{s:s,s:b}", "name", argv[optind + 1], "from_running", from_running);
	if (state)
		json_object_set_new(body, "target_state", json_string(state));
	_cleanup_free_ char *path = inst_path(argv[optind], "/fork");
	return cli_post_print(c, path, body, NULL);
}

int cmd_start(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "entrypoint", required_argument, NULL, 'E' },
		                              { 0 } };
	const char *entrypoint = NULL;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "", opts)) != -1)
		if (ch == 'E')
			entrypoint = optarg;
	if (optind >= argc)
		return cli_misuse(cmd, "expected INSTANCE [COMMAND [ARG...]]");
	json_t *body = json_object();
	if (entrypoint)
		json_object_set_new(body, "entrypoint",
		                    *entrypoint ? json_pack("[s]", entrypoint) : json_array());
	if (optind + 1 < argc) {
		json_t *cmdv = json_array();
		for (int i = optind + 1; i < argc; i++)
			json_array_append_new(cmdv, json_string(argv[i]));
		json_object_set_new(body, "cmd", cmdv);
	}
	_cleanup_free_ char *path = inst_path(argv[optind], "/start");
	return cli_post_print(c, path, body, argv[optind]);
}

int cmd_inspect(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, "", NULL) != -1)
		;
	if (optind + 1 != argc)
		return cli_misuse(cmd, "expected one INSTANCE");
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *path = inst_path(argv[optind], NULL);
	json_t *in = NULL;
	if (cli_call(c, "GET", path, NULL, &in, NULL, &err) < 0)
		return cli_fail(err);
	cli_print_json(in);
	json_decref(in);
	return 0;
}

int cmd_stats(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, "", NULL) != -1)
		;
	if (optind >= argc)
		return cli_misuse(cmd, "expected at least one INSTANCE");
	if (!c->json_output)
		printf("%-24s %10s %12s %12s %6s %12s\n", "NAME", "CPU (s)", "RSS", "VIRTUAL",
		       "VCPUS", "MEMORY");
	int ret = 0;
	for (int i = optind; i < argc; i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		_cleanup_free_ char *path = inst_path(argv[i], "/stats");
		json_t *s = NULL;
		if (cli_call(c, "GET", path, NULL, &s, NULL, &err) < 0) {
			ret = cli_fail(err);
			continue;
		}
		if (c->json_output) {
			cli_print_json(s);
			json_decref(s);
			continue;
		}
		char rss[32], vms[32], mem[32];
		cli_human_bytes((double)json_integer_value(json_object_get(s, "memory_rss_bytes")),
		                rss, sizeof(rss));
		cli_human_bytes((double)json_integer_value(json_object_get(s, "memory_vms_bytes")),
		                vms, sizeof(vms));
		cli_human_bytes(
		    (double)json_integer_value(json_object_get(s, "allocated_memory_bytes")), mem,
		    sizeof(mem));
		printf("%-24s %10.2f %12s %12s %6lld %12s\n",
		       json_string_value(json_object_get(s, "instance_name")) ?: argv[i],
		       json_number_value(json_object_get(s, "cpu_seconds")), rss, vms,
		       (long long)json_integer_value(json_object_get(s, "allocated_vcpus")), mem);
		json_decref(s);
	}
	return ret;
}
