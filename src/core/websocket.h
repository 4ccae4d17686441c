/*
 * RFC 6455 WebSocket framing over a connected blocking socket, once the
 * HTTP upgrade is done elsewhere (this module knows nothing of HTTP or
 * libmicrohttpd): the server side for the API's exec endpoint, the client
 * side (opts.client: masked sends) for the CLI. It reads whole messages
 * (reassembling fragments, answering pings, completing the close
 * handshake, refusing what the RFC calls a failure with the matching close
 * code) and sends whole frames. One thread reads; any number of threads may send (a mutex keeps
 * frames whole). The caller owns the fd: hm_ws_free does not close it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hm_err;
struct hm_ws;

enum {
	HM_WS_CONT = 0x0,
	HM_WS_TEXT = 0x1,
	HM_WS_BINARY = 0x2,
	HM_WS_CLOSE = 0x8,
	HM_WS_PING = 0x9,
	HM_WS_PONG = 0xa,
};

/* Close codes (RFC 6455 §7.4.1). */
enum {
	HM_WS_CLOSE_NORMAL = 1000,
	HM_WS_CLOSE_GOING_AWAY = 1001,
	HM_WS_CLOSE_PROTOCOL = 1002,
	HM_WS_CLOSE_UNSUPPORTED = 1003,
	HM_WS_CLOSE_NO_STATUS = 1005, /* never sent: the peer's close carried no code */
	HM_WS_CLOSE_ABNORMAL = 1006,  /* never sent: the connection ended without a close */
	HM_WS_CLOSE_INVALID_DATA = 1007,
	HM_WS_CLOSE_POLICY = 1008,
	HM_WS_CLOSE_TOO_BIG = 1009,
	HM_WS_CLOSE_INTERNAL = 1011,
};

#define HM_WS_DEFAULT_MAX_MESSAGE (1u << 20)
#define HM_WS_DEFAULT_IO_TIMEOUT  30000 /* ms */

struct hm_ws_opts {
	size_t max_message; /* bytes of one (reassembled) message; 0: the default, 1 MiB */
	/*
	 * How long a started message may stall, and a send may wait for the
	 * peer to take its bytes, in ms; 0: the default (30 s), < 0: forever.
	 * Waiting for the first byte of the next message never times out.
	 */
	int io_timeout_ms;
	bool client; /* the client end: mask every frame sent, refuse masked frames */
};

/* A whole message: data is owned by the caller (free it, or hm_ws_msg_clear). */
struct hm_ws_msg {
	int opcode;          /* HM_WS_TEXT (valid UTF-8) or HM_WS_BINARY */
	unsigned char *data; /* NUL-terminated after len bytes, for text's convenience */
	size_t len;
};

void hm_ws_msg_clear(struct hm_ws_msg *m);

/*
 * The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key: base64 of
 * SHA-1(key + the RFC's GUID). An owned string, or NULL when the key is not
 * the base64 of 16 bytes (answer the upgrade with 400).
 */
char *hm_ws_accept_key(const char *client_key);

/* Wrap a connected socket (opts may be NULL for the defaults). */
struct hm_ws *hm_ws_new(int fd, const struct hm_ws_opts *opts);
void hm_ws_free(struct hm_ws *ws);
/*
 * Bytes the peer sent before the socket was handed over (the HTTP layer
 * read them past the upgrade request): they are parsed before anything
 * read from the socket. At most 16 KiB, once, before the first read; -1
 * when they do not fit.
 */
int hm_ws_prime(struct hm_ws *ws, const void *data, size_t len);

/*
 * Block until a whole text or binary message has arrived. Returns 1 with
 * *out filled; 0 when the stream has ended (the peer's close was answered,
 * or the connection ended at a frame boundary: see hm_ws_peer_close_code);
 * -1 on failure, after sending the close frame the failure calls for (1002
 * protocol error, 1007 invalid UTF-8, 1009 too big) where one can still be
 * sent. After 0 or -1 the caller should stop reading and close the fd.
 */
int hm_ws_read_frame(struct hm_ws *ws, struct hm_ws_msg *out, struct hm_err **err);

/*
 * Send one unfragmented frame (a data opcode, or PING/PONG with at most 125
 * bytes). Safe from any thread. Fails once a close frame has been sent.
 */
int hm_ws_send(struct hm_ws *ws, int opcode, const void *data, size_t len, struct hm_err **err);

/*
 * Send the close frame (once; later calls do nothing and return 0). code 0
 * or HM_WS_CLOSE_NO_STATUS sends no code; reason (may be NULL) is cut to
 * fit 125 bytes at a UTF-8 boundary. Safe from any thread.
 */
int hm_ws_close(struct hm_ws *ws, uint16_t code, const char *reason);

/*
 * End the connection in order, within ms, before the caller closes the fd
 * (RFC 6455 §7.1.1): our close frame (1000, unless one went out already),
 * then the peer's frames read and dropped until its close or the end of the
 * stream, then our write side shut and what is still in flight drained. A
 * socket closed with unread bytes in it answers with a reset, and the reset
 * throws away what we sent that the peer had not taken yet: an exec's exit
 * code, a copy's last frames.
 */
void hm_ws_finish(struct hm_ws *ws, int ms);
/*
 * Read and drop the peer's frames until its close (answered), the end of the
 * stream, a failure, or ms: for a session whose last word is the peer's.
 */
void hm_ws_await_close(struct hm_ws *ws, int ms);

/* The fd to poll for input; check hm_ws_buffered first: bytes may already be read. */
int hm_ws_fd(const struct hm_ws *ws);
/* Bytes read from the socket but not yet consumed (poll would not see them). */
bool hm_ws_buffered(const struct hm_ws *ws);
/*
 * Wait up to timeout_ms (< 0: forever) for input: 1 when hm_ws_read_frame
 * has something to read, 0 on timeout, -1 on a poll error (errno set).
 */
int hm_ws_wait(const struct hm_ws *ws, int timeout_ms);

/* The code of the peer's close frame, HM_WS_CLOSE_ABNORMAL when it just went, 0 while open. */
uint16_t hm_ws_peer_close_code(const struct hm_ws *ws);
