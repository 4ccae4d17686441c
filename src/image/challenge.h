/*
 * The parameters of a registry's WWW-Authenticate challenge (see challenge.c).
 */
#pragma once

/* Longest challenge read; a longer one has no parameters. */
#define HM_CHALLENGE_MAX 8192

/*
 * The value of parameter `name` (ASCII case-insensitive) of the challenge
 * `header` (`Scheme name=value, name="quoted \"value\""`): an owned string
 * with escapes undone, or NULL when it is absent or the challenge is
 * malformed before it.
 */
char *hm_challenge_param(const char *header, const char *name);
