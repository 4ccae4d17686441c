/*
 * Fuzz target: the guest end of the agent channel, as far as it reads the
 * host's bytes: one line through the init's JSON parser (guest/json.c) and
 * its request decoder (guest/request.c), which is everything that stands
 * between a request and the handlers that act on it. Checked: every
 * refusal says why; every accepted request holds only values its handler
 * may use as they are (ranges, lengths, shapes, data inside the buffer).
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/json.h"
#include "guest/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_str(const char *s, size_t max)
{
	if (!s)
		return;
	size_t n = strlen(s);
	CHECK(n >= 1 && n < max);
}

static bool is_hex(const char *s)
{
	for (; *s; s++)
		if (!strchr("0123456789abcdefABCDEF", *s))
			return false;
	return true;
}

static void check_accepted(const struct agent_req *r, const void *buf, size_t cap)
{
	CHECK(r->id >= 0 && r->type);
	CHECK(r->seed_len <= AGENT_SEED_MAX && r->unix_ms >= 0);
	switch (r->kind) {
	case AR_SIGNAL:
	case AR_KILL:
		CHECK(r->signal.sig >= 1 && r->signal.sig <= SIGRTMAX);
		break;
	case AR_STOP:
		CHECK(r->stop.timeout_ms >= 0 && r->stop.timeout_ms <= 24LL * 3600 * 1000);
		break;
	case AR_STAT:
		CHECK(r->id > 0);
		check_str(r->stat.path, AGENT_PATH_MAX);
		CHECK(r->stat.path);
		break;
	case AR_EXEC:
		CHECK(r->id > 0 && r->exec.argc >= 1 && r->exec.argv);
		for (size_t i = 0; i < r->exec.argc; i++)
			(void)strlen(r->exec.argv[i]);
		for (size_t i = 0; i < r->exec.nenv; i++) {
			CHECK(r->exec.env[2 * i][0] && !strchr(r->exec.env[2 * i], '='));
			(void)strlen(r->exec.env[2 * i + 1]);
		}
		CHECK(r->exec.rows >= 1 && r->exec.rows <= 65535);
		CHECK(r->exec.cols >= 1 && r->exec.cols <= 65535);
		CHECK(!r->exec.cwd || r->exec.cwd[0]);
		CHECK(!r->exec.user || r->exec.user[0]);
		break;
	case AR_STDIN:
	case AR_CP_DATA:
		CHECK(r->id > 0 && r->data.data == buf);
		CHECK(r->data.len <= cap && r->data.len <= AGENT_CP_CHUNK);
		break;
	case AR_RESIZE:
		CHECK(r->resize.rows >= 1 && r->resize.rows <= 65535);
		CHECK(r->resize.cols >= 1 && r->resize.cols <= 65535);
		break;
	case AR_CP_TO:
		CHECK(r->cp_to.path && r->cp_to.path[0] == '/');
		check_str(r->cp_to.path, AGENT_PATH_MAX);
		check_str(r->cp_to.name, AGENT_NAME_MAX + 1);
		CHECK(!r->cp_to.name ||
		      (!strchr(r->cp_to.name, '/') && strcmp(r->cp_to.name, ".") &&
		       strcmp(r->cp_to.name, "..")));
		CHECK(r->cp_to.mode >= -1 && r->cp_to.mode <= 07777);
		CHECK(r->cp_to.uid >= -1 && r->cp_to.uid < (long long)UINT32_MAX);
		CHECK(r->cp_to.gid >= -1 && r->cp_to.gid < (long long)UINT32_MAX);
		CHECK(!r->cp_to.has_mtime ||
		      (r->cp_to.mtime >= -AGENT_MTIME_MAX && r->cp_to.mtime <= AGENT_MTIME_MAX));
		break;
	case AR_CP_FROM:
		CHECK(r->cp_from.path && r->cp_from.path[0] == '/');
		check_str(r->cp_from.path, AGENT_PATH_MAX);
		break;
	case AR_IDENTITY:
		check_str(r->identity.hostname, 64);
		check_str(r->identity.ip, AGENT_ADDR_MAX);
		check_str(r->identity.gateway, AGENT_ADDR_MAX);
		check_str(r->identity.mac, AGENT_ADDR_MAX);
		check_str(r->identity.dns, AGENT_ADDR_MAX);
		CHECK(!r->identity.machine_id ||
		      (strlen(r->identity.machine_id) == 32 && is_hex(r->identity.machine_id)));
		break;
	case AR_ATTACH:
		CHECK(r->attach.ndisks <= AGENT_DISKS_MAX);
		break;
	case AR_HELLO:
	case AR_PING:
	case AR_STDIN_CLOSE:
	case AR_CP_END:
	case AR_CP_ABORT:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hm_gjson doc;
	static struct agent_req r;
	static char out[AGENT_CP_CHUNK];
	char *line = malloc(size ? size : 1);
	memcpy(line, data, size);
	const char *perr;
	if (hm_gjson_parse(line, size, &doc, &perr) == 0) {
		/* The first byte also picks a smaller data buffer sometimes: the cap is honoured.
		 */
		size_t cap = size && data[0] == ' ' ? 16 : sizeof(out);
		char why[256];
		int d = agent_req_decode(&doc, &r, out, cap, why, sizeof(why));
		if (d == 0)
			check_accepted(&r, out, cap);
		else {
			CHECK(d == AGENT_REQ_BAD_MESSAGE || d == AGENT_REQ_BAD_FIELD);
			CHECK(why[0] && strlen(why) < sizeof(why));
			CHECK(r.id >= 0);
			if (d == AGENT_REQ_BAD_FIELD)
				CHECK(r.type);
		}
		/* A tiny why buffer is cut, never overrun. */
		char small[4];
		(void)agent_req_decode(&doc, &r, out, cap, small, sizeof(small));
	}
	free(line);
	return 0;
}
