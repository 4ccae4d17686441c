/*
 * Structured logging in logfmt to stderr:
 *
 *   ts=2026-11-22T14:03:07.123Z level=info comp=api msg="listening" addr=127.0.0.1:8080
 *
 * `comp` names the module; the message is free text; extra key=value pairs
 * follow through the printf-style tail ("addr=%s"). Library code logs at
 * debug; the caller that handles an error logs it once.
 */
#pragma once

#include <stdbool.h>

enum hm_log_level { HM_LOG_DEBUG = 0, HM_LOG_INFO, HM_LOG_WARN, HM_LOG_ERROR };

void hm_log_set_level(enum hm_log_level level);
/* Parse "debug|info|warn|error"; returns -1 for anything else. */
int hm_log_level_parse(const char *s, enum hm_log_level *out);
bool hm_log_enabled(enum hm_log_level level);

void hm_log(enum hm_log_level level, const char *comp, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(comp, msg, ...) hm_log(HM_LOG_DEBUG, comp, msg, "" __VA_ARGS__)
#define log_info(comp, msg, ...)  hm_log(HM_LOG_INFO, comp, msg, "" __VA_ARGS__)
#define log_warn(comp, msg, ...)  hm_log(HM_LOG_WARN, comp, msg, "" __VA_ARGS__)
#define log_error(comp, msg, ...) hm_log(HM_LOG_ERROR, comp, msg, "" __VA_ARGS__)
