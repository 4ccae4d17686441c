/*
 * core/websocket: RFC 6455 framing for either end (see websocket.h).
 * Reading goes through a small buffer: hm_ws_read_frame parses frame
 * headers from it and reads payloads straight into the message being
 * assembled, after checking the size bound, so a peer's declared length
 * never makes us allocate more than max_message. Every failure the RFC names
 * is answered with its close code before the function returns. Sending
 * builds the header on the stack and writes header and payload with one
 * sendmsg under the send mutex, so frames from different threads never
 * interleave; a send that cannot make progress for io_timeout_ms fails.
 */
#include "core/websocket.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/encoding.h"
#include "core/err.h"
#include "core/xalloc.h"

#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RBUF_SIZE   16384
#define CONTROL_MAX 125

struct hm_ws {
	int fd;
	size_t max_message;
	int io_timeout_ms;
	bool client; /* we mask what we send and refuse masked frames */
	pthread_mutex_t send_lock;
	bool close_sent; /* under send_lock */
	bool ended;      /* read side: the peer closed, the stream ended or failed */
	bool failed;
	uint16_t peer_code;
	unsigned char rbuf[RBUF_SIZE];
	size_t rpos, rlen;
};

void hm_ws_msg_clear(struct hm_ws_msg *m)
{
	free(m->data);
	m->data = NULL;
	m->len = 0;
	m->opcode = 0;
}

/* ---- the handshake ------------------------------------------------------------------------ */

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

char *hm_ws_accept_key(const char *client_key)
{
	/* base64 of 16 bytes: 22 characters and "==". */
	if (!client_key || strlen(client_key) != 24 || strcmp(client_key + 22, "==") != 0)
		return NULL;
	for (int i = 0; i < 22; i++)
		if (!b64_char(client_key[i]))
			return NULL;
	char in[24 + sizeof(WS_GUID)];
	memcpy(in, client_key, 24);
	memcpy(in + 24, WS_GUID, sizeof(WS_GUID));
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(in, 24 + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
		return NULL;
	char *out = xmalloc(4 * ((mdlen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
	return out;
}

/* ---- life ------------------------------------------------------------------------------- */

struct hm_ws *hm_ws_new(int fd, const struct hm_ws_opts *opts)
{
	struct hm_ws *ws = xcalloc(1, sizeof(*ws));
	ws->fd = fd;
	ws->max_message = opts && opts->max_message ? opts->max_message : HM_WS_DEFAULT_MAX_MESSAGE;
	ws->io_timeout_ms = !opts || opts->io_timeout_ms == 0 ? HM_WS_DEFAULT_IO_TIMEOUT
	                    : opts->io_timeout_ms < 0         ? -1
	                                                      : opts->io_timeout_ms;
	ws->client = opts && opts->client;
	pthread_mutex_init(&ws->send_lock, NULL);
	return ws;
}

int hm_ws_prime(struct hm_ws *ws, const void *data, size_t len)
{
	if (len > RBUF_SIZE - ws->rlen)
		return -1;
	memcpy(ws->rbuf + ws->rlen, data, len);
	ws->rlen += len;
	return 0;
}

void hm_ws_free(struct hm_ws *ws)
{
	if (!ws)
		return;
	pthread_mutex_destroy(&ws->send_lock);
	free(ws);
}

int hm_ws_fd(const struct hm_ws *ws)
{
	return ws->fd;
}

bool hm_ws_buffered(const struct hm_ws *ws)
{
	return ws->rpos < ws->rlen;
}

int hm_ws_wait(const struct hm_ws *ws, int timeout_ms)
{
	if (hm_ws_buffered(ws) || ws->ended)
		return 1;
	struct pollfd p = { .fd = ws->fd, .events = POLLIN };
	for (;;) {
		int r = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		return r > 0 ? 1 : 0;
	}
}

uint16_t hm_ws_peer_close_code(const struct hm_ws *ws)
{
	return ws->peer_code;
}

/* ---- sending ------------------------------------------------------------------------------ */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write iov[0..n) whole; non-blocking sends, so a stuck peer times out. */
static int send_iov(struct hm_ws *ws, struct iovec *iov, int n, struct hm_err **err)
{
	long long deadline = ws->io_timeout_ms < 0 ? -1 : now_ms() + ws->io_timeout_ms;
	bool is_socket = true;
	while (n > 0) {
		ssize_t w;
		if (is_socket) {
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
			w = sendmsg(ws->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno == ENOTSOCK) {
				is_socket = false;
				continue;
			}
		} else {
			w = writev(ws->fd, iov, n);
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int left = -1;
			if (deadline >= 0) {
				long long l = deadline - now_ms();
				if (l <= 0)
					return hm_err_set(
					    err, HM_ERR_TIMEOUT, "websocket_timeout",
					    "the WebSocket peer took nothing for %d ms",
					    ws->io_timeout_ms);
				left = (int)l;
			}
			struct pollfd p = { .fd = ws->fd, .events = POLLOUT };
			if (poll(&p, 1, left) < 0 && errno != EINTR)
				return hm_err_errno(err, errno, "poll the WebSocket");
			continue;
		}
		if (w < 0) {
			hm_err_errno(err, errno, "write to the WebSocket");
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		size_t done = (size_t)w;
		while (n > 0 && done >= iov[0].iov_len) {
			done -= iov[0].iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov[0].iov_base = (char *)iov[0].iov_base + done;
			iov[0].iov_len -= done;
		}
	}
	return 0;
}

static void unmask(unsigned char *p, size_t n, const unsigned char key[4])
{
	for (size_t i = 0; i < n; i++)
		p[i] ^= key[i & 3];
}

/* One frame, FIN set, masked if we are the client. The caller holds send_lock. */
static int send_frame_locked(struct hm_ws *ws, int opcode, const void *data, size_t len,
                             struct hm_err **err)
{
	unsigned char h[14];
	size_t hl = 2;
	h[0] = (unsigned char)(0x80 | (opcode & 0x0f));
	if (len < 126) {
		h[1] = (unsigned char)len;
	} else if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	unsigned char *masked = NULL;
	if (ws->client) {
		unsigned char key[4];
		if (getrandom(key, sizeof(key), 0) != sizeof(key))
			memset(key, 0x5a, sizeof(key)); /* masking is for proxies, not secrecy */
		h[1] |= 0x80;
		memcpy(h + hl, key, 4);
		hl += 4;
		if (len) {
			masked = xmalloc(len);
			memcpy(masked, data, len);
			unmask(masked, len, key);
			data = masked;
		}
	}
	struct iovec iov[2] = { { h, hl }, { (void *)data, len } };
	int r = send_iov(ws, iov, len ? 2 : 1, err);
	free(masked);
	return r;
}

int hm_ws_send(struct hm_ws *ws, int opcode, const void *data, size_t len, struct hm_err **err)
{
	if (opcode != HM_WS_TEXT && opcode != HM_WS_BINARY && opcode != HM_WS_PING &&
	    opcode != HM_WS_PONG)
		return hm_err_set(err, HM_ERR_INVALID, NULL, "WebSocket: cannot send opcode %#x",
		                  (unsigned)opcode);
	if ((opcode & 0x8) && len > CONTROL_MAX)
		return hm_err_set(err, HM_ERR_INVALID, NULL,
		                  "WebSocket: a control frame holds at most %d bytes", CONTROL_MAX);
	pthread_mutex_lock(&ws->send_lock);
	int r;
	if (ws->close_sent)
		r = hm_err_set(err, HM_ERR_UNAVAILABLE, "websocket_closed",
		               "the WebSocket is closing");
	else
		r = send_frame_locked(ws, opcode, data, len, err);
	pthread_mutex_unlock(&ws->send_lock);
	return r;
}

int hm_ws_close(struct hm_ws *ws, uint16_t code, const char *reason)
{
	unsigned char payload[CONTROL_MAX];
	size_t len = 0;
	if (code && code != HM_WS_CLOSE_NO_STATUS && code != HM_WS_CLOSE_ABNORMAL) {
		payload[0] = (unsigned char)(code >> 8);
		payload[1] = (unsigned char)code;
		len = 2;
		/* The reason, cut at a character boundary to fit. */
		const unsigned char *r = (const unsigned char *)(reason ? reason : "");
		size_t rl = strlen((const char *)r);
		for (size_t i = 0; i < rl;) {
			size_t l = hm_utf8_seq(r + i, rl - i);
			if (!l || len + l > sizeof(payload))
				break;
			memcpy(payload + len, r + i, l);
			len += l;
			i += l;
		}
	}
	pthread_mutex_lock(&ws->send_lock);
	int ret = 0;
	if (!ws->close_sent) {
		ws->close_sent = true;
		ret = send_frame_locked(ws, HM_WS_CLOSE, payload, len, NULL);
	}
	pthread_mutex_unlock(&ws->send_lock);
	return ret;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Fail the connection: send close `code` (once) and report. */
static int fail(struct hm_ws *ws, uint16_t code, struct hm_err **err, enum hm_err_kind kind,
                const char *ecode, const char *msg)
{
	ws->failed = ws->ended = true;
	if (code)
		hm_ws_close(ws, code, msg);
	return hm_err_set(err, kind, ecode, "WebSocket: %s", msg);
}

static int protocol_error(struct hm_ws *ws, struct hm_err **err, const char *msg)
{
	return fail(ws, HM_WS_CLOSE_PROTOCOL, err, HM_ERR_INVALID, "websocket_protocol", msg);
}

/*
 * Read at least one more byte from the socket into dst (up to cap). timed:
 * the message has started, so a stall longer than io_timeout_ms fails.
 * Returns the count, 0 at EOF, -1 with *err.
 */
static ssize_t read_some(struct hm_ws *ws, void *dst, size_t cap, bool timed, struct hm_err **err)
{
	for (;;) {
		if (timed && ws->io_timeout_ms >= 0) {
			struct pollfd p = { .fd = ws->fd, .events = POLLIN };
			int r = poll(&p, 1, ws->io_timeout_ms);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return hm_err_errno(err, errno, "poll the WebSocket");
			if (r == 0) {
				ws->failed = ws->ended = true;
				hm_ws_close(ws, HM_WS_CLOSE_POLICY, "timeout");
				return hm_err_set(err, HM_ERR_TIMEOUT, "websocket_timeout",
				                  "WebSocket: a message stalled for %d ms",
				                  ws->io_timeout_ms);
			}
		}
		ssize_t n = read(ws->fd, dst, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = { .fd = ws->fd, .events = POLLIN };
			poll(&p, 1, -1);
			continue;
		}
		if (n < 0) {
			ws->failed = ws->ended = true;
			hm_err_errno(err, errno, "read from the WebSocket");
			hm_err_recast(err, HM_ERR_UNAVAILABLE, NULL);
			return -1;
		}
		return n;
	}
}

/*
 * Exactly n bytes into dst, from the buffer first, then the socket (large
 * remainders straight into dst). Returns 1, 0 at EOF before the first
 * byte when eof_ok, -1 with *err.
 */
static int read_exact(struct hm_ws *ws, void *dst, size_t n, bool timed, bool eof_ok,
                      struct hm_err **err)
{
	unsigned char *d = dst;
	size_t got = 0;
	while (got < n) {
		if (ws->rpos < ws->rlen) {
			size_t k = ws->rlen - ws->rpos;
			if (k > n - got)
				k = n - got;
			memcpy(d + got, ws->rbuf + ws->rpos, k);
			ws->rpos += k;
			got += k;
			continue;
		}
		ws->rpos = ws->rlen = 0;
		ssize_t r;
		bool direct = n - got >= RBUF_SIZE;
		if (direct)
			r = read_some(ws, d + got, n - got, timed || got > 0, err);
		else
			r = read_some(ws, ws->rbuf, RBUF_SIZE, timed || got > 0, err);
		if (r < 0)
			return -1;
		if (r == 0) {
			ws->ended = true;
			ws->peer_code = HM_WS_CLOSE_ABNORMAL;
			if (eof_ok && got == 0 && !timed)
				return 0;
			ws->failed = true;
			return hm_err_set(err, HM_ERR_UNAVAILABLE, "websocket_eof",
			                  "WebSocket: the connection ended inside a frame");
		}
		if (direct)
			got += (size_t)r;
		else
			ws->rlen = (size_t)r;
	}
	return 1;
}

static bool close_code_valid(uint16_t c)
{
	if (c >= 3000 && c <= 4999)
		return true;
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014);
}

/* The peer's close frame: check it, answer it, end the stream. */
static int handle_close(struct hm_ws *ws, const unsigned char *p, size_t n, struct hm_err **err)
{
	uint16_t code = HM_WS_CLOSE_NO_STATUS;
	if (n == 1)
		return protocol_error(ws, err, "a close frame with a 1-byte payload");
	if (n >= 2) {
		code = (uint16_t)(p[0] << 8 | p[1]);
		if (!close_code_valid(code))
			return protocol_error(ws, err, "a close frame with an invalid code");
		if (!hm_utf8_valid(p + 2, n - 2))
			return fail(ws, HM_WS_CLOSE_INVALID_DATA, err, HM_ERR_INVALID,
			            "websocket_invalid_utf8", "a close reason that is not UTF-8");
	}
	ws->peer_code = code;
	ws->ended = true;
	/* Echo the code (none for none); a close we sent first already answers it. */
	hm_ws_close(ws, code == HM_WS_CLOSE_NO_STATUS ? 0 : code, NULL);
	return 0;
}

int hm_ws_read_frame(struct hm_ws *ws, struct hm_ws_msg *out, struct hm_err **err)
{
	memset(out, 0, sizeof(*out));
	if (ws->failed)
		return hm_err_set(err, HM_ERR_UNAVAILABLE, "websocket_failed",
		                  "WebSocket: the connection has failed");
	if (ws->ended)
		return 0;
	unsigned char *msg = NULL;
	size_t len = 0, cap = 0;
	int opcode = 0; /* of the message being assembled; 0: none yet */
	int r;
	for (;;) {
		unsigned char h[14];
		/* Before a message starts, waiting is not a stall and EOF is an end. */
		bool timed = opcode != 0;
		r = read_exact(ws, h, 2, timed, true, err);
		if (r <= 0)
			break;
		bool fin = h[0] & 0x80;
		int op = h[0] & 0x0f;
		if (h[0] & 0x70) {
			r = protocol_error(ws, err,
			                   "reserved bits set (no extension was negotiated)");
			break;
		}
		bool masked = h[1] & 0x80;
		if (masked == ws->client) {
			r = protocol_error(ws, err,
			                   ws->client ? "a masked frame from the server"
			                              : "an unmasked frame from the client");
			break;
		}
		uint64_t plen = h[1] & 0x7f;
		if (plen == 126) {
			if ((r = read_exact(ws, h + 2, 2, true, false, err)) < 0)
				break;
			plen = (uint64_t)h[2] << 8 | h[3];
		} else if (plen == 127) {
			if ((r = read_exact(ws, h + 2, 8, true, false, err)) < 0)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | h[2 + i];
			if (plen >> 63) {
				r = protocol_error(ws, err,
				                   "a 64-bit length with its high bit set");
				break;
			}
		}
		unsigned char key[4] = { 0 }; /* unmasking with zeros changes nothing */
		if (masked && (r = read_exact(ws, key, 4, true, false, err)) < 0)
			break;

		if (op & 0x8) {
			unsigned char ctl[CONTROL_MAX];
			if (op != HM_WS_CLOSE && op != HM_WS_PING && op != HM_WS_PONG) {
				r = protocol_error(ws, err, "an unknown control opcode");
				break;
			}
			if (!fin || plen > CONTROL_MAX) {
				r = protocol_error(ws, err,
				                   "a fragmented or oversized control frame");
				break;
			}
			if (plen && (r = read_exact(ws, ctl, (size_t)plen, true, false, err)) < 0)
				break;
			unmask(ctl, (size_t)plen, key);
			if (op == HM_WS_CLOSE) {
				r = handle_close(ws, ctl, (size_t)plen, err);
				break;
			}
			if (op == HM_WS_PING) {
				pthread_mutex_lock(&ws->send_lock);
				if (!ws->close_sent)
					send_frame_locked(ws, HM_WS_PONG, ctl, (size_t)plen, NULL);
				pthread_mutex_unlock(&ws->send_lock);
			}
			continue;
		}

		if (op == HM_WS_CONT) {
			if (!opcode) {
				r = protocol_error(ws, err,
				                   "a continuation frame outside a message");
				break;
			}
		} else if (op == HM_WS_TEXT || op == HM_WS_BINARY) {
			if (opcode) {
				r = protocol_error(ws, err,
				                   "a new message inside a fragmented one");
				break;
			}
			opcode = op;
		} else {
			r = protocol_error(ws, err, "an unknown data opcode");
			break;
		}
		if (plen > ws->max_message - len) {
			r = fail(ws, HM_WS_CLOSE_TOO_BIG, err, HM_ERR_TOO_LARGE,
			         "websocket_message_too_big", "message too big");
			break;
		}
		if (len + (size_t)plen + 1 > cap) {
			size_t want = cap ? cap : 4096;
			while (want < len + (size_t)plen + 1)
				want *= 2;
			if (want > ws->max_message + 1)
				want = ws->max_message + 1;
			msg = xrealloc(msg, want);
			cap = want;
		}
		if (plen && (r = read_exact(ws, msg + len, (size_t)plen, true, false, err)) < 0)
			break;
		unmask(msg + len, (size_t)plen, key);
		len += (size_t)plen;
		if (!fin)
			continue;
		if (opcode == HM_WS_TEXT && !hm_utf8_valid(msg, len)) {
			r = fail(ws, HM_WS_CLOSE_INVALID_DATA, err, HM_ERR_INVALID,
			         "websocket_invalid_utf8", "a text message that is not UTF-8");
			break;
		}
		if (!msg)
			msg = xmalloc(1);
		msg[len] = '\0';
		out->opcode = opcode;
		out->data = msg;
		out->len = len;
		return 1;
	}
	free(msg);
	return r < 0 ? -1 : 0;
}

/* See websocket.h. A frame that has started may take no longer than what is left. */
void hm_ws_await_close(struct hm_ws *ws, int ms)
{
	long long deadline = now_ms() + (ms < 0 ? 0 : ms);
	int saved = ws->io_timeout_ms;
	while (!ws->ended && !ws->failed) {
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		ws->io_timeout_ms = (int)left;
		if (!hm_ws_buffered(ws) && hm_ws_wait(ws, (int)left) <= 0)
			break;
		struct hm_ws_msg m = { 0 };
		int r = hm_ws_read_frame(ws, &m, NULL);
		hm_ws_msg_clear(&m);
		if (r <= 0)
			break; /* its close (answered already), the end, or a failure */
	}
	ws->io_timeout_ms = saved;
}

void hm_ws_finish(struct hm_ws *ws, int ms)
{
	long long deadline = now_ms() + (ms < 0 ? 0 : ms);
	hm_ws_close(ws, HM_WS_CLOSE_NORMAL, NULL);
	hm_ws_await_close(ws, ms);
	if (shutdown(ws->fd, SHUT_WR) < 0)
		return; /* not a socket, or gone: nothing is in flight */
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = { .fd = ws->fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		char sink[4096];
		ssize_t n = recv(ws->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			break;
	}
}
