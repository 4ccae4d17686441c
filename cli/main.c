/*
 * hypeman: the command-line client. Global options come first, then a
 * command from the table below (docker's shape: `hypeman run IMAGE`).
 * The table is the single list of commands: `hypeman --help` prints it and
 * `hypeman NAME --help` prints the entry's own help.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client.h"
#include "commands.h"
#include "core/err.h"
#include "core/xalloc.h"
#include "core/encoding.h"
#include "core/cleanup.h"

static const struct cli_cmd commands[] = {
	{ "run", "IMAGE [COMMAND [ARG...]]",
	  "Boot an image as a microVM (pulling it if needed) and follow its output",
	  "  -n, --name NAME        instance name (default: from the image)\n"
	  "  -e, --env KEY=VALUE    set an environment variable (repeatable; KEY alone\n"
	  "                         passes it from this shell)\n"
	  "  --entrypoint PROG      override the image's entrypoint (\"\" clears it)\n"
	  "  --cpus N               virtual CPUs (default 2)\n"
	  "  -m, --memory SIZE      guest memory, e.g. 512MB (default 1GB)\n"
	  "  --overlay-size SIZE    writable disk (default 10GB, sparse)\n"
	  "  -t, --tag KEY=VALUE    tag the instance (repeatable)\n"
	  "  -v, --volume VOL:/PATH[:ro]  attach a volume (repeatable)\n"
	  "  -d, --detach           print the instance id and return at once\n"
	  "  -q, --quiet            no pull messages\n"
	  "Attached, it exits with the program's exit code.\n",
	  cmd_run },
	{ "ps", "", "List instances (running ones; -a for all)",
	  "  -a, --all    include stopped instances\n"
	  "  -q, --quiet  print ids only\n",
	  cmd_ps },
	{ "logs", "INSTANCE", "Print an instance's logs",
	  "  -f, --follow         keep printing new lines until the instance stops\n"
	  "  -n, --tail N         start with the last N lines (default 100)\n"
	  "  -s, --source SOURCE  app (default: the program's console), vmm, hypeman\n",
	  cmd_logs },
	{ "rm", "INSTANCE...", "Delete instances (stopped ones; -f kills running ones)",
	  "  -f, --force  delete even if it is running (its VM is killed)\n", cmd_rm },
	{ "exec", "INSTANCE [COMMAND [ARG...]]", "Run a command in a running instance",
	  "  -i, --interactive      send this terminal's stdin to the command\n"
	  "  -t, --tty              give the command a terminal (raw mode here)\n"
	  "  -e, --env KEY=VALUE    set an environment variable (repeatable)\n"
	  "  -w, --workdir DIR      working directory in the guest (default /)\n"
	  "  -u, --user USER        run as USER[:GROUP] (default root)\n"
	  "  --timeout SECONDS      kill the command after this long (default: never)\n"
	  "COMMAND defaults to /bin/sh. Exits with the command's exit code.\n",
	  cmd_exec },
	{ "cp", "SRC DEST", "Copy files between this machine and an instance",
	  "  -L, --follow-link  follow a symlink at the source path in the instance\n"
	  "  -q, --quiet        no summary line\n"
	  "One of SRC and DEST is INSTANCE:PATH. A directory is copied whole; an\n"
	  "existing directory as DEST receives SRC inside it, as with docker cp.\n",
	  cmd_cp },
	{ "stop", "INSTANCE...", "Stop instances gracefully (SIGTERM, then SIGKILL after 10 s)",
	  "  --json  print each instance's record as JSON\n", cmd_stop },
	{ "start", "INSTANCE [COMMAND [ARG...]]",
	  "Start a stopped instance again (its writable disk is kept)",
	  "  --entrypoint PROG  override the entrypoint for this and later starts\n"
	  "COMMAND, when given, replaces the instance's cmd.\n",
	  cmd_start },
	{ "standby", "INSTANCE...", "Put running instances on standby (their memory saved to disk)",
	  "  --json  print each instance's record as JSON\n"
	  "`hypeman restore` resumes them where they left off.\n",
	  cmd_standby },
	{ "restore", "INSTANCE...", "Resume instances from standby",
	  "  --json  print each instance's record as JSON\n", cmd_restore },
	{ "fork", "SOURCE NAME", "Create a new instance NAME as a copy of instance SOURCE",
	  "  --from-running   allow a running SOURCE (else it must be stopped or on standby)\n"
	  "  --state STATE    the fork's state: Stopped, Standby or Running (default:\n"
	  "                   SOURCE's state)\n"
	  "  --json           print the new instance's record as JSON\n"
	  "Prints the new instance's id.\n",
	  cmd_fork },
	{ "inspect", "INSTANCE", "Print an instance's full record as JSON", NULL, cmd_inspect },
	{ "stats", "INSTANCE...", "Show CPU and memory use of running instances", NULL, cmd_stats },
	{ "volume", "create|import|ls|rm ...", "Manage volumes: persistent disks for instances",
	  "  create NAME --size GB [--id ID] [-t KEY=VALUE]   an empty ext4 volume\n"
	  "  import NAME FILE --size GB [...]                 a volume holding FILE's files\n"
	  "                                                   (tar or tar.gz; - reads stdin)\n"
	  "  ls [-q]                                          list volumes\n"
	  "  rm VOLUME...                                     delete volumes and their data\n",
	  cmd_volume },
	{ "snapshot", "create|ls|inspect|rm|restore|fork ...",
	  "Manage snapshots: saved instances to restore or fork from",
	  "  create [--kind KIND] [--name NAME] [--tag KEY=VALUE]... [--compress] INSTANCE\n"
	  "  ls [--instance INSTANCE] [--kind KIND] [-q]\n"
	  "  inspect SNAPSHOT\n"
	  "  rm SNAPSHOT...\n"
	  "  restore [--state STATE] INSTANCE SNAPSHOT\n"
	  "  fork [--state STATE] SNAPSHOT NAME\n"
	  "Run `hypeman snapshot SUBCOMMAND --help` for more on each.\n",
	  cmd_snapshot },
	{ "ingress", "create|ls|rm ...", "Route host ports to instances (HTTP, TLS)",
	  "  create NAME --rule HOST[:PORT]=INSTANCE:PORT [--rule ...] [--tls]\n"
	  "         [--redirect-http] [-t KEY=VALUE]\n"
	  "                            HOST may be a pattern: {instance}.apps.example.com\n"
	  "                            with INSTANCE {instance}; PORT defaults to 80 (443 with\n"
	  "                            --tls, whose certificate must be in INGRESS_CERT_DIR)\n"
	  "  ls                        list ingresses and their rules\n"
	  "  rm INGRESS...             delete ingresses\n",
	  cmd_ingress },
	{ "pull", "IMAGE", "Pull an image and convert it to a VM root disk",
	  "  --platform OS/ARCH   platform to pull (default: the host's)\n"
	  "  --username USER      registry user; password from --password-stdin\n"
	  "                       or HYPEMAN_REGISTRY_PASSWORD\n"
	  "  --password-stdin     read the registry password from stdin\n"
	  "  -t, --tag KEY=VALUE  tag the image (repeatable)\n"
	  "  -d, --detach         queue the pull and return at once\n"
	  "  -q, --quiet          no progress output\n",
	  cmd_pull },
	{ "images", "", "List images", "  -q, --quiet  print names only\n", cmd_images },
	{ "rmi", "IMAGE...", "Delete images", NULL, cmd_rmi },
	{ "load", "FILE|DIR", "Load an image from an OCI layout or a docker save archive",
	  "  -i, --input FILE  the archive (or give it as the argument)\n"
	  "  --name REF        name the image (when the archive does not, or has several)\n",
	  cmd_load },
	{ "health", "", "Check that the daemon is up", NULL, cmd_health },
	{ "resources", "", "Show host capacity and what is allocated against it", NULL,
	  cmd_resources },
	{ "info", "", "Show how this host runs guests: accelerator, runtimes, network", NULL,
	  cmd_info },
	{ "version", "", "Print the CLI version", NULL, cmd_version },
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: hypeman [OPTIONS] COMMAND [ARGS...]\n"
	             "\n"
	             "Run container images as microVMs.\n"
	             "\n"
	             "Options:\n"
	             "  --base-url URL   daemon address [HYPEMAN_BASE_URL] (default "
	             "http://localhost:8080)\n"
	             "  --api-key TOKEN  bearer token [HYPEMAN_API_KEY] (mint one with "
	             "hypeman-token)\n"
	             "  --json           print API responses as JSON\n"
	             "  -h, --help       show this help\n"
	             "\n"
	             "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun `hypeman COMMAND --help` for more on a command.\n");
}

int cli_subcommand(const struct cli_cmd *cmd, int *argc, char ***argv, struct cli_cmd *sub,
                   char *namebuf, size_t namelen)
{
	if (*argc < 2 || strcmp((*argv)[1], "--help") == 0 || strcmp((*argv)[1], "-h") == 0) {
		cli_cmd_usage(cmd, *argc < 2 ? stderr : stdout);
		return *argc < 2 ? 2 : 0;
	}
	*sub = *cmd;
	snprintf(namebuf, namelen, "%s %s", cmd->name, (*argv)[1]);
	sub->name = namebuf;
	(*argc)--;
	(*argv)++;
	return -1;
}

int cli_delete_each(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
                    const char *collection, const char *what)
{
	while (cli_getopt(cmd, argc, argv, "", NULL) != -1)
		;
	if (optind >= argc)
		return cli_misuse(cmd, "expected at least one %s", what);
	int ret = 0;
	for (int i = optind; i < argc; i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		_cleanup_free_ char *enc = hm_percent_encode(argv[i]);
		_cleanup_free_ char *path = xasprintf("%s/%s", collection, enc);
		if (cli_call(c, "DELETE", path, NULL, NULL, NULL, &err) < 0)
			ret = cli_fail(err);
		else
			printf("%s\n", argv[i]);
	}
	return ret;
}

void cli_human_bytes(double v, char *out, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t u = 0;
	while ((v >= 1024 || v <= -1024) && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

const char *cli_age(const char *rfc3339, char *out, size_t n)
{
	struct tm tm = { 0 };
	if (!rfc3339 || !strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(out, n, "-");
		return out;
	}
	long s = (long)difftime(time(NULL), timegm(&tm));
	if (s < 60)
		snprintf(out, n, "%lds ago", s < 0 ? 0 : s);
	else if (s < 3600)
		snprintf(out, n, "%ldm ago", s / 60);
	else if (s < 86400)
		snprintf(out, n, "%ldh ago", s / 3600);
	else
		snprintf(out, n, "%ldd ago", s / 86400);
	return out;
}

const char *const cli_target_states[] = { "Stopped", "Standby", "Running", NULL };

const char *cli_one_of(const char *s, const char *const *choices)
{
	for (; *choices; choices++)
		if (strcasecmp(s, *choices) == 0)
			return *choices;
	return NULL;
}

void cli_cmd_usage(const struct cli_cmd *cmd, FILE *out)
{
	fprintf(out, "Usage: hypeman %s%s%s%s\n\n%s.\n", cmd->name, cmd->help ? " [OPTIONS]" : "",
	        cmd->args[0] ? " " : "", cmd->args, cmd->summary);
	fprintf(out, "\nOptions:\n%s  -h, --help  show this help\n", cmd->help ? cmd->help : "");
}

int cli_getopt(const struct cli_cmd *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
	/* Prepend "+h" (stop at the first operand; know -h) to the command's own short options. */
	char so[64];
	snprintf(so, sizeof(so), "+:h%s", shortopts ? shortopts : "");
	static const struct option help_only[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	struct option merged[32];
	size_t n = 0;
	for (; longopts && longopts[n].name && n < 30; n++)
		merged[n] = longopts[n];
	merged[n++] = help_only[0];
	merged[n] = help_only[1];
	int ch = getopt_long(argc, argv, so, merged, NULL);
	if (ch == 'h') {
		cli_cmd_usage(cmd, stdout);
		exit(0);
	}
	if (ch == '?') {
		cli_misuse(cmd, "unknown option `%s`", argv[optind - 1]);
		exit(2);
	}
	if (ch == ':') {
		cli_misuse(cmd, "option `%s` needs a value", argv[optind - 1]);
		exit(2);
	}
	return ch;
}

int cli_fail(struct hm_err *err)
{
	fprintf(stderr, "hypeman: %s\n", err && err->msg ? err->msg : "failed");
	return 1;
}

int cli_misuse(const struct cli_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "hypeman %s: ", cmd->name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry `hypeman %s --help`.\n", cmd->name);
	return 2;
}

void cli_print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

int cli_post_print(struct cli *c, const char *path, json_t *body, const char *plain)
{
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *ans = NULL;
	int r = cli_call(c, "POST", path, body, &ans, NULL, &err);
	json_decref(body);
	if (r < 0)
		return cli_fail(err);
	if (c->json_output)
		cli_print_json(ans);
	else
		printf("%s\n", plain ? plain : json_string_value(json_object_get(ans, "id")) ?: "");
	json_decref(ans);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = {
		.base_url = getenv("HYPEMAN_BASE_URL"),
		.api_key = getenv("HYPEMAN_API_KEY"),
	};
	static const struct option opts[] = {
		{ "base-url", required_argument, NULL, 'b' },
		{ "api-key", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			c.base_url = optarg;
			break;
		case 'k':
			c.api_key = optarg;
			break;
		case 'j':
			c.json_output = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try `hypeman --help`.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (!c.base_url || !*c.base_url)
		c.base_url = "http://localhost:8080";
	char base[1024];
	snprintf(base, sizeof(base), "%s", c.base_url);
	for (size_t l = strlen(base); l > 0 && base[l - 1] == '/'; l--)
		base[l - 1] = '\0';
	c.base_url = base;
	if (c.api_key && !*c.api_key)
		c.api_key = NULL;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		curl_global_init(CURL_GLOBAL_DEFAULT);
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		optind = 1; /* the command parses its own options from its argv */
		int r = commands[i].fn(&c, &commands[i], sub_argc, sub_argv);
		curl_global_cleanup();
		return r;
	}
	fprintf(stderr, "hypeman: unknown command `%s`\nTry `hypeman --help`.\n", name);
	return 2;
}
