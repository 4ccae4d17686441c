/*
 * A set of TCP connections our proxies serve, each on a detached thread of
 * its own, that their owner can end all at once: close shuts every
 * connection's client socket and far end (which wakes each read, write and
 * poll on them) and waits for the threads. The ingress proxy and the
 * egress proxy each own one.
 *
 * Locking: the set's mutex is a leaf (nothing is taken under it). It
 * guards the list, each connection's `up`, and `closing`; a socket is
 * closed under it, so that close never shuts a number reused meanwhile.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct hm_connset;

struct hm_conn {
	int fd;                      /* the client's */
	char peer[INET6_ADDRSTRLEN]; /* its address, or "" */
	void *arg;                   /* the owner's, per connection */
	struct hm_connset *set;
	int up;                        /* the far end once connected, else -1 (set's lock) */
	struct hm_conn *next, **pprev; /* on the set's list (set's lock) */
};

typedef void hm_conn_fn(struct hm_conn *c);

/* At most max connections at once, and at most max_per_peer from one client
 * address (so that one client cannot take everyone's room). */
struct hm_connset *hm_connset_new(int max, int max_per_peer);
/*
 * Serve an accepted fd (ss: from accept) on a new thread: fn(c), then both
 * sockets are closed and free_arg(arg) runs. false when it is not taken
 * (closing, full, its peer at its cap, no thread): fd is closed and arg
 * freed at once.
 */
bool hm_connset_spawn(struct hm_connset *s, int fd, const struct sockaddr_storage *ss, void *arg,
                      void (*free_arg)(void *), hm_conn_fn *fn);
/* c's far end, connected; -1 (the caller closes up) when the set is closing. */
int hm_conn_set_up(struct hm_conn *c, int up);
/* Close c's far end now. */
void hm_conn_drop_up(struct hm_conn *c);
/* End every connection, wait up to wait_ms for their threads. false: some
 * still run, and the set (and what they use) must be left alone. */
bool hm_connset_close(struct hm_connset *s, long wait_ms);
int hm_connset_count(struct hm_connset *s);

/* Send all n bytes (MSG_NOSIGNAL, riding out EINTR); -1 when the peer is gone. */
int hm_send_all(int fd, const void *p, size_t n);

/* accept4 on a listener, CLOEXEC, riding out EINTR, aborted connections and
 * running out of descriptors; -1 once the listener is shut down. */
int hm_accept(int lfd, struct sockaddr_storage *ss);
