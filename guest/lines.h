/*
 * The agent channel's framing, the same at both ends (docs/guest.md, "The
 * agent channel"): bytes in, newline-terminated lines out. A line longer
 * than the buffer is dropped whole, up to and including its newline, so its
 * tail is never read as a line of its own; empty lines are skipped. The
 * caller owns the buffer (the guest's is static, the host's allocated);
 * nothing here allocates. libc only, shared by the guest init and the host.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct hm_lines {
	char *buf;      /* cap + 1 bytes: each line is handed out NUL-terminated */
	size_t cap;     /* the longest line kept */
	size_t len;     /* bytes of the line in progress */
	bool skip;      /* the line in progress is over cap: dropped up to its '\n' */
	size_t dropped; /* lines dropped for their length, all told */
};

/* One complete line (NUL-terminated, no '\n', 1..cap bytes). Returns false to stop. */
typedef bool (*hm_line_fn)(void *ctx, char *line, size_t len);

/* Frame into buf, which holds cap + 1 bytes. */
void hm_lines_init(struct hm_lines *l, char *buf, size_t cap);

/*
 * Take n more bytes; fn gets each line they complete, in order. Returns
 * false when fn stopped it (the rest of data is not taken), true otherwise.
 */
bool hm_lines_feed(struct hm_lines *l, const char *data, size_t n, hm_line_fn fn, void *ctx);
