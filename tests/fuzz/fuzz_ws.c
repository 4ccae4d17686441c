/*
 * Fuzz target: WebSocket framing (src/core/websocket.c), the server end of
 * the API's exec sessions and the client end of the CLI's. Input: one byte
 * of options (bit 0: the client end; bits 1-7: how many of the following
 * bytes come as the HTTP layer's leftover, hm_ws_prime), then the peer's
 * bytes, sent over a socketpair whose far end is shut after them. Every
 * message read must be whole: text is valid UTF-8 and NUL-terminated, no
 * message is over the limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "core/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 60000) /* fits the socket buffer: the write never blocks */
		return 0;
	bool client = data[0] & 1;
	size_t prime = (size_t)(data[0] >> 1) * 8;
	data++;
	size--;
	if (prime > size)
		prime = size;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	size_t off = prime;
	while (off < size) {
		ssize_t w = write(sv[1], data + off, size - off);
		if (w <= 0)
			abort();
		off += (size_t)w;
	}
	shutdown(sv[1], SHUT_WR);
	struct hm_ws_opts opts = { .max_message = MAX_MESSAGE,
		                   .io_timeout_ms = 50,
		                   .client = client };
	struct hm_ws *ws = hm_ws_new(sv[0], &opts);
	if (prime == 0 || hm_ws_prime(ws, data, prime) == 0) {
		for (int i = 0; i < 1000; i++) {
			struct hm_ws_msg m = { 0 };
			struct hm_err *err = NULL;
			int r = hm_ws_read_frame(ws, &m, &err);
			hm_err_free(err);
			if (r != 1)
				break;
			if (m.len > MAX_MESSAGE || m.data[m.len] != '\0')
				abort();
			if (m.opcode != HM_WS_TEXT && m.opcode != HM_WS_BINARY)
				abort();
			hm_ws_msg_clear(&m);
		}
	}
	hm_ws_free(ws);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
