/*
 * Base64 (RFC 4648 §4, the standard alphabet, padded) for the agent
 * channel's binary payloads: exec output and stdin. libc only, no
 * allocation; shared with the host's unit tests.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Encoded length of n bytes, without the NUL. */
#define HM_GB64_LEN(n) ((((n) + 2) / 3) * 4)

/* Encode in[0..len) into out (HM_GB64_LEN(len) + 1 bytes, NUL-terminated). Returns the length. */
size_t hm_gb64_encode(const void *in, size_t len, char *out);

/*
 * Decode in[0..len) into out (cap bytes). Padding is optional but must be
 * right when present; characters outside the alphabet, a length that leaves
 * one stray character, non-zero bits in the last character's unused part or
 * output beyond cap are refused. out may be in (decoding in place). Returns
 * the decoded length, or -1.
 */
ssize_t hm_gb64_decode(const char *in, size_t len, void *out, size_t cap);
