/*
 * log: one logfmt line per event on stderr, written with a single write(2)
 * so lines from different threads never interleave.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = HM_LOG_INFO;
static const char *const names[] = { "debug", "info", "warn", "error" };

void hm_log_set_level(enum hm_log_level level)
{
	min_level = level;
}

int hm_log_level_parse(const char *s, enum hm_log_level *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum hm_log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = HM_LOG_WARN;
		return 0;
	}
	return -1;
}

bool hm_log_enabled(enum hm_log_level level)
{
	return (int)level >= min_level;
}

/* Append `s` as a logfmt quoted value, escaping quotes, backslashes and controls. */
static size_t put_quoted(char *buf, size_t pos, size_t cap, const char *s)
{
	if (pos < cap)
		buf[pos++] = '"';
	for (; *s && pos + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c == '\n') {
			buf[pos++] = '\\';
			buf[pos++] = 'n';
		} else if (c < 0x20) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\x%02x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	if (pos < cap)
		buf[pos++] = '"';
	return pos;
}

void hm_log(enum hm_log_level level, const char *comp, const char *msg, const char *kvfmt, ...)
{
	if (!hm_log_enabled(level))
		return;
	char buf[4096];
	const size_t cap = sizeof(buf) - 2;
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t pos = strftime(buf, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	pos += (size_t)snprintf(buf + pos, cap - pos,
	                        ".%03ldZ level=%s comp=%s msg=", (long)(tv.tv_usec / 1000),
	                        names[level], comp);
	pos = put_quoted(buf, pos, cap, msg);
	if (kvfmt && *kvfmt && pos + 1 < cap) {
		buf[pos++] = ' ';
		va_list ap;
		va_start(ap, kvfmt);
		int n = vsnprintf(buf + pos, cap - pos, kvfmt, ap);
		va_end(ap);
		if (n > 0)
			pos += (size_t)n < cap - pos ? (size_t)n : cap - pos - 1;
	}
	if (pos > cap)
		pos = cap;
	buf[pos++] = '\n';
	ssize_t r = write(STDERR_FILENO, buf, pos);
	(void)r;
}
