/*
 * Running tools (mkfs.erofs, mkfs.ext4, helpers) as child processes:
 * posix_spawn, stdin from /dev/null, stdout+stderr captured (bounded),
 * waited for. The only place the daemon starts short-lived children.
 */
#pragma once

#include <stddef.h>

struct hm_err;

#define HM_SPAWN_OUTPUT_MAX (16u << 10)

/*
 * Run argv (argv[0] searched in PATH) to completion. *ret_output (if not
 * NULL) gets the last HM_SPAWN_OUTPUT_MAX bytes of its combined output;
 * *ret_status (if not NULL) its exit status. A non-zero exit is an error
 * (HM_ERR_INTERNAL) whose message quotes the tool's last output line.
 */
int hm_run(const char *const argv[], char **ret_output, int *ret_status, struct hm_err **err);

/* Is `prog` an executable found in PATH? */
int hm_which(const char *prog);
