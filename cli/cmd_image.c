/*
 * Image commands: `pull` (queue a pull and follow it with a progress
 * line), `images` (a table) and `rmi`.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

static char *image_path(const char *name)
{
	_cleanup_free_ char *enc = hm_percent_encode(name);
	return xasprintf("/images/%s", enc);
}

/* One status line, rewritten in place on a terminal. */
static void show_progress(json_t *img, bool tty, char **last)
{
	const char *status = json_string_value(json_object_get(img, "status")) ?: "?";
	json_t *p = json_object_get(img, "progress");
	char line[256];
	json_t *qp = json_object_get(img, "queue_position");
	if (strcmp(status, "pending") == 0 && json_is_integer(qp)) {
		snprintf(line, sizeof(line), "pending (queue position %lld)",
		         (long long)json_integer_value(qp));
	} else if (strcmp(status, "pulling") == 0 && p &&
	           json_integer_value(json_object_get(p, "layers_total")) > 0) {
		char done[32], total[32];
		cli_human_bytes((double)json_integer_value(json_object_get(p, "bytes_done")), done,
		                sizeof(done));
		cli_human_bytes((double)json_integer_value(json_object_get(p, "bytes_total")),
		                total, sizeof(total));
		snprintf(line, sizeof(line), "pulling: %lld/%lld layers, %s / %s",
		         (long long)json_integer_value(json_object_get(p, "layers_done")),
		         (long long)json_integer_value(json_object_get(p, "layers_total")), done,
		         total);
	} else {
		snprintf(line, sizeof(line), "%s", status);
	}
	if (tty) {
		fprintf(stderr, "\r\033[K%s", line);
		fflush(stderr);
	} else if (!*last || strncmp(*last, line, strcspn(line, ":")) != 0) {
		/* Without a terminal, print each phase once. */
		fprintf(stderr, "%s\n", line);
	}
	free(*last);
	*last = xstrdup(line);
}

int cmd_pull(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "platform", required_argument, NULL, 'p' },
		{ "username", required_argument, NULL, 'u' },
		{ "password-stdin", no_argument, NULL, 'P' },
		{ "tag", required_argument, NULL, 't' },
		{ "detach", no_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 },
	};
	const char *platform = NULL, *username = NULL;
	bool pw_stdin = false, detach = false, quiet = false;
	json_t *tags = json_object();
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "dqt:", opts)) != -1) {
		switch (ch) {
		case 'p':
			platform = optarg;
			break;
		case 'u':
			username = optarg;
			break;
		case 'P':
			pw_stdin = true;
			break;
		case 'd':
			detach = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 't': {
			const char *eq = strchr(optarg, '=');
			if (!eq) {
				json_decref(tags);
				return cli_misuse(cmd, "--tag wants KEY=VALUE, got `%s`", optarg);
			}
			_cleanup_free_ char *k = xstrndup(optarg, (size_t)(eq - optarg));
			json_object_set_new(tags, k, json_string(eq + 1));
			break;
		}
		}
	}
	if (optind + 1 != argc) {
		json_decref(tags);
		return cli_misuse(cmd, "expected one IMAGE");
	}
	json_t *body = json_pack("{s:s}", "name", argv[optind]);
	if (platform)
		json_object_set_new(body, "platform", json_string(platform));
	if (json_object_size(tags))
		json_object_set(body, "tags", tags);
	json_decref(tags);
	if (username || pw_stdin) {
		char pw[8192] = "";
		if (pw_stdin && !fgets(pw, sizeof(pw), stdin)) {
			json_decref(body);
			return cli_misuse(cmd, "--password-stdin: nothing on stdin");
		}
		pw[strcspn(pw, "\r\n")] = '\0';
		const char *envpw = getenv("HYPEMAN_REGISTRY_PASSWORD");
		json_object_set_new(body, "credentials",
		                    json_pack("{s:s,s:s}", "username", username ? username : "",
		                              "password", pw_stdin ? pw : (envpw ? envpw : "")));
		explicit_bzero(pw, sizeof(pw));
	}

	_cleanup_err_ struct hm_err *err = NULL;
	json_t *img = NULL;
	int r = cli_call(c, "POST", "/images", body, &img, NULL, &err);
	json_decref(body);
	if (r < 0)
		return cli_fail(err);
	_cleanup_free_ char *name = xstrdup(json_string_value(json_object_get(img, "name")) ?: "");
	_cleanup_free_ char *path = image_path(name);
	bool tty = isatty(2) && !quiet;
	_cleanup_free_ char *last = NULL;
	if (!quiet && !detach)
		fprintf(stderr, "%s: ", name);
	if (!tty && !quiet && !detach)
		fprintf(stderr, "\n");
	while (!detach) {
		const char *st = json_string_value(json_object_get(img, "status")) ?: "";
		if (!quiet)
			show_progress(img, tty, &last);
		if (strcmp(st, "ready") == 0 || strcmp(st, "failed") == 0)
			break;
		struct timespec ts = { 0, 200 * 1000000L };
		nanosleep(&ts, NULL);
		json_decref(img);
		img = NULL;
		if (cli_call(c, "GET", path, NULL, &img, NULL, &err) < 0) {
			if (tty)
				fputc('\n', stderr);
			return cli_fail(err);
		}
	}
	if (tty)
		fputc('\n', stderr);
	const char *st = json_string_value(json_object_get(img, "status")) ?: "";
	int ret = 0;
	if (strcmp(st, "failed") == 0) {
		fprintf(stderr, "hypeman: pull %s failed: %s\n", name,
		        json_string_value(json_object_get(img, "error")) ?: "unknown error");
		ret = 1;
	} else if (c->json_output) {
		cli_print_json(img);
	} else if (detach) {
		printf("%s %s\n", name, st);
	} else {
		char size[32];
		cli_human_bytes((double)json_integer_value(json_object_get(img, "size_bytes")),
		                size, sizeof(size));
		printf("%s %s (%s)\n", name,
		       json_string_value(json_object_get(img, "digest")) ?: "", size);
	}
	json_decref(img);
	return ret;
}

int cmd_images(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = { { "quiet", no_argument, NULL, 'q' }, { 0 } };
	bool quiet = false;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "q", opts)) != -1)
		if (ch == 'q')
			quiet = true;
	if (optind != argc)
		return cli_misuse(cmd, "unexpected argument `%s`", argv[optind]);
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *list = NULL;
	if (cli_call(c, "GET", "/images", NULL, &list, NULL, &err) < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(list);
		json_decref(list);
		return 0;
	}
	if (!quiet)
		printf("%-50s %-11s %-19s %10s  %s\n", "NAME", "STATUS", "DIGEST", "SIZE",
		       "CREATED");
	size_t i;
	json_t *img;
	json_array_foreach (list, i, img) {
		const char *name = json_string_value(json_object_get(img, "name")) ?: "";
		if (quiet) {
			printf("%s\n", name);
			continue;
		}
		const char *digest = json_string_value(json_object_get(img, "digest")) ?: "";
		char size[32] = "-";
		json_t *sz = json_object_get(img, "size_bytes");
		if (json_is_integer(sz))
			cli_human_bytes((double)json_integer_value(sz), size, sizeof(size));
		printf("%-50s %-11s %-19.19s %10s  %s\n", name,
		       json_string_value(json_object_get(img, "status")) ?: "", digest, size,
		       json_string_value(json_object_get(img, "created_at")) ?: "");
	}
	json_decref(list);
	return 0;
}

int cmd_rmi(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	while (cli_getopt(cmd, argc, argv, NULL, NULL) != -1)
		;
	if (optind >= argc)
		return cli_misuse(cmd, "expected at least one IMAGE");
	int ret = 0;
	for (int i = optind; i < argc; i++) {
		_cleanup_err_ struct hm_err *err = NULL;
		_cleanup_free_ char *path = image_path(argv[i]);
		if (cli_call(c, "DELETE", path, NULL, NULL, NULL, &err) < 0)
			ret = cli_fail(err);
		else
			printf("deleted %s\n", argv[i]);
	}
	return ret;
}

/* A directory (an OCI layout) is sent as a tar stream made by tar(1). */
static pid_t tar_dir(const char *dir, int *ret_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	const char *argv[] = { "tar", "-C", dir, "-cf", "-", ".", NULL };
	pid_t pid;
	extern char **environ;
	int r = posix_spawnp(&pid, "tar", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (r != 0) {
		close(p[0]);
		return -1;
	}
	*ret_fd = p[0];
	return pid;
}

int cmd_load(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "name", required_argument, NULL, 'n' },
		{ 0 },
	};
	const char *input = NULL, *name = NULL;
	int ch;
	while ((ch = cli_getopt(cmd, argc, argv, "i:", opts)) != -1) {
		if (ch == 'i')
			input = optarg;
		else if (ch == 'n')
			name = optarg;
	}
	if (!input && optind < argc)
		input = argv[optind++];
	if (!input || optind != argc)
		return cli_misuse(cmd, "expected one FILE or DIRECTORY");
	struct stat st;
	if (stat(input, &st) < 0) {
		fprintf(stderr, "hypeman: cannot read `%s`: %s\n", input, strerror(errno));
		return 1;
	}
	int fd = -1;
	pid_t tar = -1;
	if (S_ISDIR(st.st_mode)) {
		tar = tar_dir(input, &fd);
		if (tar < 0) {
			fprintf(stderr, "hypeman: cannot run tar on `%s`\n", input);
			return 1;
		}
	} else {
		fd = open(input, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "hypeman: cannot open `%s`: %s\n", input, strerror(errno));
			return 1;
		}
	}
	_cleanup_free_ char *enc = name ? hm_percent_encode(name) : NULL;
	_cleanup_free_ char *path =
	    enc ? xasprintf("/images/load?name=%s", enc) : xstrdup("/images/load");
	_cleanup_err_ struct hm_err *err = NULL;
	json_t *img = NULL;
	fprintf(stderr, "loading %s...\n", input);
	int r = cli_upload(c, path, fd, "application/x-tar", &img, &err);
	close(fd);
	if (tar > 0) {
		int status;
		waitpid(tar, &status, 0);
		if (r == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
			json_decref(img);
			fprintf(stderr, "hypeman: tar of `%s` failed\n", input);
			return 1;
		}
	}
	if (r < 0)
		return cli_fail(err);
	if (c->json_output) {
		cli_print_json(img);
	} else {
		char size[32];
		cli_human_bytes((double)json_integer_value(json_object_get(img, "size_bytes")),
		                size, sizeof(size));
		printf("%s %s (%s)\n", json_string_value(json_object_get(img, "name")) ?: "",
		       json_string_value(json_object_get(img, "digest")) ?: "", size);
	}
	json_decref(img);
	return 0;
}
