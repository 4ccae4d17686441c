/*
 * The guest init's JSON: a small, bounded parser for exactly the messages
 * the host sends on the agent channel (docs/guest.md, "The agent channel")
 * and the string escaper for what the init sends back. A message is one flat
 * object whose values are strings, integers (other numbers are recognised
 * but carry no value), booleans, null, arrays of strings, or objects whose
 * values are strings; anything nested deeper is refused. Parsing works in
 * place on the caller's buffer (decoded strings are never longer than their
 * JSON form) and allocates nothing: every limit is a constant below. libc
 * only, shared with the host's unit tests.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HM_GJSON_MAX_FIELDS 32   /* top-level keys of one message */
#define HM_GJSON_MAX_ITEMS  4096 /* array items plus object keys and values, all together */

enum hm_gjson_type {
	HM_GJSON_NULL = 1,
	HM_GJSON_BOOL,
	HM_GJSON_INT,    /* an integer that fits a long long */
	HM_GJSON_NUMBER, /* any other number (fraction, exponent, out of range): no value */
	HM_GJSON_STRING,
	HM_GJSON_ARRAY,  /* of strings */
	HM_GJSON_OBJECT, /* of strings */
};

struct hm_gjson_value {
	enum hm_gjson_type type;
	bool b;        /* BOOL */
	long long i;   /* INT */
	const char *s; /* STRING: NUL-terminated; a string holding NUL (\u0000) is refused */
	size_t len;    /* STRING: bytes; ARRAY: items; OBJECT: key/value pairs */
	/* ARRAY: len strings; OBJECT: items[2k] is a key, items[2k + 1] its value. */
	const char *const *items;
};

struct hm_gjson_field {
	const char *key;
	struct hm_gjson_value v;
};

/* A parsed message; about 33 KiB, so keep it static or on the heap. */
struct hm_gjson {
	struct hm_gjson_field fields[HM_GJSON_MAX_FIELDS];
	size_t nfields;
	const char *pool[HM_GJSON_MAX_ITEMS];
	size_t npool;
};

/*
 * Parse the object in buf[0..len) (no NUL needed; any bytes are safe),
 * decoding strings in place: buf is overwritten and *doc points into it.
 * Surrounding whitespace is allowed, anything else after the object is not.
 * Returns 0, or -1 with a static reason in *why (if why is not NULL).
 */
int hm_gjson_parse(char *buf, size_t len, struct hm_gjson *doc, const char **why);

/* The value of a top-level key (the first, if repeated), or NULL. */
const struct hm_gjson_value *hm_gjson_get(const struct hm_gjson *doc, const char *key);

/* The string value of key, or NULL when it is absent or not a string. */
const char *hm_gjson_str(const struct hm_gjson *doc, const char *key);

/* 1 and *out when key holds an integer, 0 when absent or null, -1 when it holds anything else. */
int hm_gjson_int(const struct hm_gjson *doc, const char *key, long long *out);

/* 1 and *out when key holds a boolean, 0 when absent or null, -1 when anything else. */
int hm_gjson_bool(const struct hm_gjson *doc, const char *key, bool *out);

/*
 * Write s[0..len) as the inside of a JSON string into out (cap bytes,
 * always NUL-terminated when cap > 0): quotes, backslashes and control
 * characters escaped, invalid UTF-8 bytes replaced by '?'. Output that does
 * not fit is cut at a character boundary. Returns the length written.
 * 6 * len + 1 bytes always suffice.
 */
size_t hm_gjson_escape(char *out, size_t cap, const char *s, size_t len);
