/*
 * The CLI's command table. Each command lives in cli/cmd_<area>.c, parses
 * its own options with cli_getopt (which answers --help from the table)
 * and returns the process exit status: 0 success, 1 failure, 2 misuse.
 */
#pragma once

#include <getopt.h>

#include "client.h"

struct cli_cmd {
	const char *name;
	const char *args;    /* synopsis after the name, e.g. "IMAGE [COMMAND...]" */
	const char *summary; /* one line for `hypeman --help` */
	const char *help;    /* option lines for `hypeman NAME --help`; may be NULL */
	int (*fn)(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
};

/* getopt_long that also knows -h/--help (prints usage, exits 0) and misuse (exits 2). */
int cli_getopt(const struct cli_cmd *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);
void cli_cmd_usage(const struct cli_cmd *cmd, FILE *out);
/* Print "hypeman: <message>" for err and return 1. */
int cli_fail(struct hm_err *err);
/* Print "hypeman NAME: <message>" and the usage hint, return 2. */
int cli_misuse(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * For commands with subcommands (`hypeman volume ls`): with no argument or
 * --help print cmd's usage and return the exit status (2 or 0); otherwise
 * make *sub a copy of cmd named "<cmd> <argv[1]>" (its name in namebuf),
 * drop argv[0] so the subcommand sees itself as argv[0], and return -1.
 */
int cli_subcommand(const struct cli_cmd *cmd, int *argc, char ***argv, struct cli_cmd *sub,
                   char *namebuf, size_t namelen);
/* DELETE <collection>/<operand> for each operand, printing each one deleted; 1 if any failed. */
int cli_delete_each(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
                    const char *collection, const char *what);
/* 1536 -> "1.5 KiB". */
void cli_human_bytes(double v, char *out, size_t n);
/* An RFC 3339 time as "5m ago" ("-" when missing or unreadable); returns out. */
const char *cli_age(const char *rfc3339, char *out, size_t n);
/* The spelling in `choices` (NULL-terminated) that s matches ignoring case, or NULL. */
const char *cli_one_of(const char *s, const char *const *choices);
/* What --state takes: the states standby, restore and fork can leave an instance in. */
extern const char *const cli_target_states[];
/* Print a JSON value indented on stdout. */
void cli_print_json(json_t *j);
/* POST body (taken) to path, then print the answer: as JSON with --json, else
 * `plain` (NULL: the answer's id) on a line. The command's exit status. */
int cli_post_print(struct cli *c, const char *path, json_t *body, const char *plain);

int cmd_health(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_resources(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_info(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_version(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_pull(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_images(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_rmi(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_load(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_run(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_ps(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_logs(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_rm(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_exec(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_stop(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_start(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_standby(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_fork(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_inspect(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_stats(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_cp(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_snapshot(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_ingress(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
