/*
 * guestcfg: the host side of the config disk. Validates a guest config,
 * serializes it in the record format of docs/guest.md into a 1 MiB disk
 * image written atomically, and reads or clears the exit record the guest
 * init leaves at the end of that disk. The format's constants and the exit
 * record parser are shared with the init (guest/config.c).
 */
#include "boot/guestcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/encoding.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

struct writer {
	char *buf;
	size_t len;
};

/* Room kept at the end for the terminating record. */
#define END_RECORD "end 0:\n"

static int put(struct writer *w, const char *key, const char *value, struct hm_err **err)
{
	size_t vlen = strlen(value);
	char head[64];
	int n = snprintf(head, sizeof(head), "%s %zu:", key, vlen);
	size_t need = (size_t)n + vlen + 1;
	if (need > HM_GUEST_AREA_SIZE - (sizeof(END_RECORD) - 1) - w->len)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config is larger than the %u bytes of the config area",
		                  HM_GUEST_AREA_SIZE);
	memcpy(w->buf + w->len, head, (size_t)n);
	memcpy(w->buf + w->len + n, value, vlen);
	w->buf[w->len + (size_t)n + vlen] = '\n';
	w->len += need;
	return 0;
}

static size_t count(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static int invalid(struct hm_err **err, const char *what, const char *value)
{
	return hm_err_set(err, HM_ERR_INVALID, NULL, "guest config: invalid %s `%s`", what, value);
}

static bool valid_hostname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
			return false;
	return true;
}

static bool valid_cidr(const char *s)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		return false;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, ip, &a) != 1)
		return false;
	const char *p = slash + 1;
	if (!*p || strlen(p) > 2 || strspn(p, "0123456789") != strlen(p))
		return false;
	return atoi(p) <= 32;
}

static bool valid_mac(const char *s)
{
	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

static bool one_line(const char *s)
{
	return *s && !strchr(s, '\n');
}

static int validate(const struct hm_guest_config *c, struct hm_err **err)
{
	size_t argc = count(c->argv), envc = count(c->env), ndns = count(c->dns);
	if (argc == 0)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "guest config: no command to run");
	if (argc > HM_GUEST_MAX_ARGS)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config: %zu arguments, at most %d", argc,
		                  HM_GUEST_MAX_ARGS);
	if (envc > HM_GUEST_MAX_ENV)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config: %zu environment variables, at most %d", envc,
		                  HM_GUEST_MAX_ENV);
	if (ndns > HM_GUEST_MAX_DNS)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config: %zu nameservers, at most %d", ndns,
		                  HM_GUEST_MAX_DNS);
	for (size_t i = 0; i < envc; i++) {
		const char *eq = strchr(c->env[i], '=');
		if (!eq || eq == c->env[i])
			return invalid(err, "environment entry (want KEY=value)", c->env[i]);
	}
	for (size_t i = 0; i < ndns; i++) {
		unsigned char a[16];
		if (inet_pton(AF_INET, c->dns[i], a) != 1 && inet_pton(AF_INET6, c->dns[i], a) != 1)
			return invalid(err, "nameserver", c->dns[i]);
	}
	if (c->workdir && c->workdir[0] != '/')
		return invalid(err, "working directory (must be absolute)", c->workdir);
	if (c->user && !one_line(c->user))
		return invalid(err, "user", c->user);
	if (c->hostname && !valid_hostname(c->hostname))
		return invalid(err, "hostname", c->hostname);
	if (c->root && (c->root[0] != '/' || !one_line(c->root)))
		return invalid(err, "root device", c->root);
	if (c->rootfs && strcmp(c->rootfs, "erofs") != 0 && strcmp(c->rootfs, "ext4") != 0)
		return invalid(err, "root filesystem (erofs or ext4)", c->rootfs);
	if (c->overlay && strcmp(c->overlay, "tmpfs") != 0 &&
	    (c->overlay[0] != '/' || !one_line(c->overlay)))
		return invalid(err, "overlay device", c->overlay);
	if (c->net_ip && !valid_cidr(c->net_ip))
		return invalid(err, "net_ip (want A.B.C.D/prefix)", c->net_ip);
	struct in_addr gw;
	if (c->net_gw && inet_pton(AF_INET, c->net_gw, &gw) != 1)
		return invalid(err, "net_gw", c->net_gw);
	if (c->net_mac && !valid_mac(c->net_mac))
		return invalid(err, "net_mac", c->net_mac);
	if (c->agent && (!one_line(c->agent) || strchr(c->agent, '/')))
		return invalid(err, "agent port name", c->agent);
	if (c->egress_ca && (strncmp(c->egress_ca, "-----BEGIN CERTIFICATE-----", 27) != 0 ||
	                     strlen(c->egress_ca) > HM_GUEST_MAX_CA))
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config: egress_ca must be PEM certificates of at most %d "
		                  "bytes",
		                  HM_GUEST_MAX_CA);
	size_t nvol = count(c->volumes);
	if (nvol > HM_GUEST_MAX_VOLS)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "guest config: %zu volumes, at most %d", nvol, HM_GUEST_MAX_VOLS);
	for (size_t i = 0; i < nvol; i++) {
		const char *v = c->volumes[i];
		const char *sp = strchr(v, ' ');
		const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
		bool ok = one_line(v) && v[0] == '/' && sp && sp2 && sp2[1] == '/';
		if (ok && strncmp(sp, " ro ", 4) != 0 && strncmp(sp, " rw ", 4) != 0)
			ok = strncmp(sp, " overlay:/", 10) == 0 && sp2 > sp + 10;
		if (!ok)
			return invalid(err, "volume (want DEVICE ro|rw|overlay:UPPERDEV /path)", v);
	}
	return 0;
}

int hm_guestcfg_write(const char *path, const struct hm_guest_config *c, struct hm_err **err)
{
	if (validate(c, err) < 0)
		return -1;
	_cleanup_free_ char *buf = xcalloc(1, HM_GUEST_CFG_SIZE);
	struct writer w = { buf, 0 };
	memcpy(buf, HM_GUEST_CFG_MAGIC, sizeof(HM_GUEST_CFG_MAGIC) - 1);
	w.len = sizeof(HM_GUEST_CFG_MAGIC) - 1;
	for (size_t i = 0; c->argv[i]; i++)
		if (put(&w, "arg", c->argv[i], err) < 0)
			return -1;
	for (size_t i = 0; c->env && c->env[i]; i++)
		if (put(&w, "env", c->env[i], err) < 0)
			return -1;
	for (size_t i = 0; c->dns && c->dns[i]; i++)
		if (put(&w, "dns", c->dns[i], err) < 0)
			return -1;
	for (size_t i = 0; c->volumes && c->volumes[i]; i++)
		if (put(&w, "volume", c->volumes[i], err) < 0)
			return -1;
	const struct {
		const char *key, *value;
	} singles[] = {
		{ "workdir", c->workdir },     { "user", c->user },
		{ "hostname", c->hostname },   { "root", c->root },
		{ "rootfs", c->rootfs },       { "overlay", c->overlay },
		{ "net_ip", c->net_ip },       { "net_gw", c->net_gw },
		{ "net_mac", c->net_mac },     { "agent", c->agent },
		{ "egress_ca", c->egress_ca },
	};
	for (size_t i = 0; i < ARRAY_SIZE(singles); i++)
		if (singles[i].value && put(&w, singles[i].key, singles[i].value, err) < 0)
			return -1;
	memcpy(buf + w.len, END_RECORD, sizeof(END_RECORD) - 1);
	if (hm_write_file_atomic(path, buf, HM_GUEST_CFG_SIZE, 0600, err) < 0)
		return hm_err_wrap(err, "write guest config");
	return 0;
}

int hm_guestcfg_read_exit(const char *path, int *ret_code, char **ret_message, struct hm_err **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return hm_err_errno(err, errno, "open config disk `%s`", path);
	_cleanup_free_ char *rec = xmalloc(HM_GUEST_EXIT_SIZE);
	size_t len = 0;
	while (len < HM_GUEST_EXIT_SIZE) {
		ssize_t n = pread(fd, rec + len, HM_GUEST_EXIT_SIZE - len,
		                  (off_t)(HM_GUEST_EXIT_OFFSET + len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hm_err_errno(err, errno, "read the exit record of `%s`", path);
		if (n == 0)
			return hm_err_set(err, HM_ERR_INTERNAL, NULL,
			                  "config disk `%s` is shorter than %u bytes", path,
			                  HM_GUEST_CFG_SIZE);
		len += (size_t)n;
	}
	_cleanup_free_ char *msg = xmalloc(HM_GUEST_EXIT_SIZE);
	char why[256];
	int code = 0;
	int r = hm_gexit_parse(rec, HM_GUEST_EXIT_SIZE, &code, msg, HM_GUEST_EXIT_SIZE, why,
	                       sizeof(why));
	if (r < 0)
		return hm_err_set(err, HM_ERR_INTERNAL, NULL, "exit record of `%s`: %s", path, why);
	if (r == 0)
		return 0;
	*ret_code = code;
	if (ret_message) /* the guest wrote it: valid UTF-8 or it would be a null in the API */
		*ret_message = hm_utf8_sanitize(msg);
	return 1;
}

int hm_guestcfg_clear_exit(const char *path, struct hm_err **err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return hm_err_errno(err, errno, "open config disk `%s`", path);
	_cleanup_free_ char *zero = xcalloc(1, HM_GUEST_EXIT_SIZE);
	size_t done = 0;
	while (done < HM_GUEST_EXIT_SIZE) {
		ssize_t n = pwrite(fd, zero + done, HM_GUEST_EXIT_SIZE - done,
		                   (off_t)(HM_GUEST_EXIT_OFFSET + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hm_err_errno(err, errno, "clear the exit record of `%s`", path);
		done += (size_t)n;
	}
	if (fsync(fd) < 0)
		return hm_err_errno(err, errno, "sync `%s`", path);
	return 0;
}
