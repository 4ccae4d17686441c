/*
 * config: the config disk format of docs/guest.md, for both sides. Parses the
 * config area in place (values become NUL-terminated strings inside the
 * caller's buffer, arrays are fixed-size) and writes and parses the exit
 * record. Every read is bounded by the length given, so any bytes (a corrupt
 * disk, a fuzzer) give an error, never an overrun. libc only.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One record: key at buf[key..key+keylen), value at buf[val..val+vlen). */
struct rec {
	size_t key, keylen;
	size_t val, vlen;
};

static void seterr(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *errbuf, size_t errlen, const char *fmt, ...)
{
	if (!errbuf || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

static bool key_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/*
 * Read the record at *pos: `key SP len ':' value '\n'`. On success *pos is
 * past the '\n'. Returns 0 or -1 with errbuf filled.
 */
static int next_record(const char *buf, size_t len, size_t *pos, struct rec *r, char *errbuf,
                       size_t errlen)
{
	size_t p = *pos, start = *pos;
	r->key = p;
	while (p < len && p - start <= HM_GUEST_MAX_KEY && key_char((unsigned char)buf[p]))
		p++;
	r->keylen = p - start;
	if (p >= len) {
		seterr(errbuf, errlen, "record at offset %zu runs past the end of the area", start);
		return -1;
	}
	if (r->keylen == 0 || r->keylen > HM_GUEST_MAX_KEY || buf[p] != ' ') {
		seterr(errbuf, errlen, "malformed record key at offset %zu", start);
		return -1;
	}
	p++;
	size_t n = 0, digits = 0;
	while (p < len && buf[p] >= '0' && buf[p] <= '9') {
		if (++digits > 9) {
			seterr(errbuf, errlen, "record length too large at offset %zu", start);
			return -1;
		}
		n = n * 10 + (size_t)(buf[p] - '0');
		p++;
	}
	if (p >= len) {
		seterr(errbuf, errlen, "record at offset %zu runs past the end of the area", start);
		return -1;
	}
	if (digits == 0 || buf[p] != ':') {
		seterr(errbuf, errlen, "malformed record length at offset %zu", start);
		return -1;
	}
	p++;
	/* The value and its '\n' must fit: p + n < len, written without overflow. */
	if (n >= len - p) {
		seterr(errbuf, errlen,
		       "record at offset %zu (%zu bytes) runs past the end of the area", start, n);
		return -1;
	}
	r->val = p;
	r->vlen = n;
	if (buf[p + n] != '\n') {
		seterr(errbuf, errlen, "record at offset %zu does not end with a newline", start);
		return -1;
	}
	if (memchr(buf + p, '\0', n)) {
		seterr(errbuf, errlen, "record at offset %zu holds a NUL byte", start);
		return -1;
	}
	*pos = p + n + 1;
	return 0;
}

static bool key_is(const char *buf, const struct rec *r, const char *name)
{
	size_t n = strlen(name);
	return r->keylen == n && memcmp(buf + r->key, name, n) == 0;
}

int hm_gcfg_parse(char *buf, size_t len, struct hm_gcfg *cfg, char *errbuf, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->workdir = "/";
	cfg->hostname = "hypeman";
	cfg->root = "/dev/vdb";
	cfg->rootfs = "erofs";
	cfg->overlay = "/dev/vdc";
	cfg->agent = "hypeman.agent";

	const size_t mlen = sizeof(HM_GUEST_CFG_MAGIC) - 1;
	if (len < mlen || memcmp(buf, HM_GUEST_CFG_MAGIC, mlen) != 0) {
		seterr(errbuf, errlen, "no config magic (`HYPEMAN-CONFIG 1`) at the start");
		return -1;
	}
	/* Which single-valued keys were seen, to refuse repeats. */
	static const char *const singles[] = { "workdir", "user",    "hostname", "root",
		                               "rootfs",  "overlay", "net_ip",   "net_gw",
		                               "net_mac", "agent",   "egress_ca" };
	const char **slots[] = { &cfg->workdir, &cfg->user,    &cfg->hostname, &cfg->root,
		                 &cfg->rootfs,  &cfg->overlay, &cfg->net_ip,   &cfg->net_gw,
		                 &cfg->net_mac, &cfg->agent,   &cfg->egress_ca };
	_Static_assert(sizeof(singles) / sizeof(singles[0]) == sizeof(slots) / sizeof(slots[0]),
	               "one slot per key");
	bool seen[sizeof(singles) / sizeof(singles[0])] = { false };

	size_t pos = mlen;
	for (;;) {
		struct rec r;
		if (next_record(buf, len, &pos, &r, errbuf, errlen) < 0)
			return -1;
		if (key_is(buf, &r, "end"))
			break;
		char *v = buf + r.val;
		v[r.vlen] = '\0';
		if (key_is(buf, &r, "arg")) {
			if (cfg->argc >= HM_GUEST_MAX_ARGS) {
				seterr(errbuf, errlen, "more than %d arg records",
				       HM_GUEST_MAX_ARGS);
				return -1;
			}
			cfg->argv[cfg->argc++] = v;
			continue;
		}
		if (key_is(buf, &r, "env")) {
			if (cfg->envc >= HM_GUEST_MAX_ENV) {
				seterr(errbuf, errlen, "more than %d env records",
				       HM_GUEST_MAX_ENV);
				return -1;
			}
			cfg->env[cfg->envc++] = v;
			continue;
		}
		if (key_is(buf, &r, "volume")) {
			if (cfg->nvolumes >= HM_GUEST_MAX_VOLS) {
				seterr(errbuf, errlen, "more than %d volume records",
				       HM_GUEST_MAX_VOLS);
				return -1;
			}
			cfg->volume[cfg->nvolumes++] = v;
			continue;
		}
		if (key_is(buf, &r, "dns")) {
			if (cfg->ndns >= HM_GUEST_MAX_DNS) {
				seterr(errbuf, errlen, "more than %d dns records",
				       HM_GUEST_MAX_DNS);
				return -1;
			}
			cfg->dns[cfg->ndns++] = v;
			continue;
		}
		for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
			if (!key_is(buf, &r, singles[i]))
				continue;
			if (seen[i]) {
				seterr(errbuf, errlen, "key `%s` repeated at offset %zu",
				       singles[i], r.key);
				return -1;
			}
			seen[i] = true;
			*slots[i] = v;
			break;
		}
		/* Anything else is a key from a newer host: ignored. */
	}
	if (cfg->argc == 0) {
		seterr(errbuf, errlen, "no arg record: nothing to run");
		return -1;
	}
	cfg->argv[cfg->argc] = NULL;
	cfg->env[cfg->envc] = NULL;
	cfg->dns[cfg->ndns] = NULL;
	cfg->volume[cfg->nvolumes] = NULL;
	return 0;
}

void hm_gexit_format(char *out, int code, const char *message)
{
	memset(out, 0, HM_GUEST_EXIT_SIZE);
	size_t mlen = strlen(message);
	if (mlen > HM_GUEST_EXIT_MSG_MAX) {
		mlen = HM_GUEST_EXIT_MSG_MAX;
		/* Do not leave half a UTF-8 character at the end. */
		while (mlen > 0 && ((unsigned char)message[mlen] & 0xc0) == 0x80)
			mlen--;
	}
	char num[16];
	int nlen = snprintf(num, sizeof(num), "%d", code);
	/* Fits by construction: 15 + 20 + 12 + HM_GUEST_EXIT_MSG_MAX + 1 + 7 < 4096. */
	int n = snprintf(out, HM_GUEST_EXIT_SIZE, "%scode %d:%s\nmessage %zu:", HM_GUEST_EXIT_MAGIC,
	                 nlen, num, mlen);
	memcpy(out + n, message, mlen);
	memcpy(out + n + mlen, "\nend 0:\n", 8);
}

int hm_gexit_parse(const char *buf, size_t len, int *code, char *msg, size_t msglen, char *errbuf,
                   size_t errlen)
{
	if (len == 0 || buf[0] == '\0')
		return 0;
	const size_t mlen = sizeof(HM_GUEST_EXIT_MAGIC) - 1;
	if (len < mlen || memcmp(buf, HM_GUEST_EXIT_MAGIC, mlen) != 0) {
		seterr(errbuf, errlen, "no exit record magic (`HYPEMAN-EXIT 1`) at the start");
		return -1;
	}
	size_t pos = mlen;
	bool have_code = false;
	int c = 0;
	if (msglen > 0)
		msg[0] = '\0';
	for (;;) {
		struct rec r;
		if (next_record(buf, len, &pos, &r, errbuf, errlen) < 0)
			return -1;
		if (key_is(buf, &r, "end"))
			break;
		if (key_is(buf, &r, "code")) {
			if (r.vlen == 0 || r.vlen > 3) {
				seterr(errbuf, errlen, "bad exit code length %zu", r.vlen);
				return -1;
			}
			c = 0;
			for (size_t i = 0; i < r.vlen; i++) {
				char d = buf[r.val + i];
				if (d < '0' || d > '9') {
					seterr(errbuf, errlen, "exit code is not a decimal number");
					return -1;
				}
				c = c * 10 + (d - '0');
			}
			if (c > 255) {
				seterr(errbuf, errlen, "exit code %d out of range", c);
				return -1;
			}
			have_code = true;
		} else if (key_is(buf, &r, "message") && msglen > 0) {
			size_t n = r.vlen < msglen - 1 ? r.vlen : msglen - 1;
			memcpy(msg, buf + r.val, n);
			msg[n] = '\0';
		}
	}
	if (!have_code) {
		seterr(errbuf, errlen, "exit record has no code");
		return -1;
	}
	*code = c;
	return 1;
}
