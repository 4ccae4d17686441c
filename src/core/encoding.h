/*
 * Byte encodings: base64url (RFC 4648 §5, unpadded, as JWT uses it), hex,
 * percent-decoding of URL components, UTF-8 checks and repair, logfmt
 * escaping of untrusted text, and the API's timestamps.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"

/* Encode `len` bytes as unpadded base64url; returns an owned string. */
char *hm_base64url_encode(const void *data, size_t len);
/* Encode `len` bytes as standard, padded base64 (RFC 4648 §4); an owned string. */
char *hm_base64_encode(const void *data, size_t len);

/* Decode unpadded (or padded) base64url; returns an owned buffer (NUL-terminated) or NULL if
 * malformed. */
unsigned char *hm_base64url_decode(const char *s, size_t slen, size_t *ret_len);

/* Lowercase hex of `len` bytes into an owned string. */
char *hm_hex_encode(const void *data, size_t len);

/*
 * Percent-decode `s` into an owned string. Returns NULL when an escape is
 * malformed or decodes to NUL, so a path segment can never smuggle a NUL.
 */
char *hm_percent_decode(const char *s, size_t len);

/* Percent-encode everything but RFC 3986 unreserved characters. */
char *hm_percent_encode(const char *s);

bool hm_utf8_valid(const unsigned char *p, size_t n);
/* s as valid UTF-8 (owned): every byte that is not part of a valid sequence becomes U+FFFD. */
char *hm_utf8_sanitize(const char *s);
/* s as the inside of a quoted logfmt value (owned): quote, backslash and newline
 * escaped, other control bytes and invalid UTF-8 as \xNN. One line, always. */
char *hm_logfmt_escape(const char *s);

/* Now as RFC 3339 UTC with milliseconds ("2026-01-02T03:04:05.678Z"); owned. */
char *hm_now_rfc3339(void);
/* The same for a time in milliseconds since the epoch (>= 0); owned. */
char *hm_rfc3339_of_ms(int64_t ms);
/* Milliseconds since the epoch of an RFC 3339 UTC time ("2026-01-02T03:04:05[.678]Z", as
 * hm_now_rfc3339 writes them); -1 for anything else. */
int64_t hm_rfc3339_ms(const char *s);
/* Milliseconds since the epoch, now. */
int64_t hm_now_ms(void);
/* Bytes as the API writes sizes: "2GB", "512MB", else "123B" (binary units). */
char *hm_human_size(int64_t b);
/* Bytes/s as the API writes rates, in bits: "1Gbps", "100Mbps", "8kbps", "12bps". */
char *hm_rate_text(int64_t bps);
