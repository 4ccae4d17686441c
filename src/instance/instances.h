/*
 * The instance service: the domain model of an instance (an image booted
 * as a VM) and its state machine. It owns each instance's folder, its row in
 * the store, and the live VMM handle with the monitor thread that listens to
 * the guest agent and notices the VMM's exit.
 *
 * State is derived, never stored: from the row's phase and what the VM's
 * monitor and operations published (enum hm_state, state.h). Verbs take
 * typed requests and answer typed views; each API dialect under src/api/
 * parses and renders its own shapes.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "instance/state.h"

struct hm_accel_choice;
struct hm_config;
struct hm_net;
struct hm_err;
struct hm_images;
struct hm_instances;
struct hm_log_stream;
struct hm_store;

/* Open the service: find the kernel, build the initrd, re-adopt VMs that
 * still run. A missing kernel is not fatal: creates then fail with 503.
 * Every VM runs under `accel` (borrowed; it outlives the service), on the
 * backend `vmm` (NULL: QEMU; the unit tests pass their fake). */
struct hm_vmm_ops;
int hm_instances_open(struct hm_store *st, struct hm_images *images, struct hm_net *net,
                      const struct hm_config *cfg, const struct hm_accel_choice *accel,
                      const struct hm_vmm_ops *vmm, struct hm_instances **ret, struct hm_err **err);
/* Stop monitoring; VMs keep running and are re-adopted by the next start. */
void hm_instances_close(struct hm_instances *in);
/* The egress proxy's CA certificate (PEM, copied): the config disk of each
 * instance with mediated egress carries it into the guest's trust store. */
void hm_instances_set_egress_ca(struct hm_instances *in, const char *pem);
/* Why instances cannot boot on this host (borrowed), or NULL when they can. */
const char *hm_instances_boot_error(const struct hm_instances *in);

#define HM_MAX_ATTACH 8

/*
 * Auto-standby (instance/idle.c): a running instance with no connection
 * through our ingresses for idle_ms goes to standby; the next connection
 * through one restores it.
 */
struct hm_auto_standby {
	bool enabled;
	int64_t idle_ms;
	/* Idle means no byte moved on any connection (they stay open across the
	 * standby, and a client's next bytes wake it); else: no connection open. */
	bool keep_connections;
	/* Stateless: the VM is stopped (not saved) when idle, and the next
	 * connection boots it again (a cold start, its memory gone). */
	bool cold;
};
/* Stopped by the idle controller under a stateless policy (so that a
 * connection boots it): asleep, as a standby is, for whoever shows it. */
bool hm_auto_standby_asleep_cold(const struct hm_auto_standby *p, enum hm_state state,
                                 int stop_reason);
#define HM_AUTO_STANDBY_MIN_MS 1000
#define HM_AUTO_STANDBY_MAX_MS (7LL * 24 * 3600 * 1000)

/* A volume attached to an instance (a create's, or one attached later). */
struct hm_attach {
	const char *volume;     /* its id or name */
	const char *mount_path; /* absolute, clean, not a system directory */
	bool readonly;
	bool overlay;          /* read-only volume under a writable overlay of its own */
	int64_t overlay_bytes; /* with overlay; 0: 1 GiB */
};

/* Mediated egress (network.egress): off, or through the host's egress proxy
 * with direct TCP refused (all) or refused on ports 80 and 443 only. */
enum hm_egress_mode { HM_EGRESS_OFF, HM_EGRESS_ALL, HM_EGRESS_HTTP_HTTPS_ONLY };

/*
 * Credential brokering (a create's `credentials`, instance/credentials.c):
 * the guest's variable `env` holds a placeholder (mock-<env>); the real value,
 * the request env's `source`, stays on the host (the instance's secrets
 * file), and the egress proxy sets `header: format` (its ${value} replaced)
 * on the HTTPS requests to the hosts named (exact names or *.domain; none:
 * every host).
 */
#define HM_MAX_CREDENTIALS  16
#define HM_MAX_INJECT       8
#define HM_MAX_INJECT_HOSTS 32
struct hm_credential_inject {
	const char *hosts[HM_MAX_INJECT_HOSTS];
	size_t nhosts;
	const char *header, *format;
};
struct hm_credential {
	const char *env;    /* the guest's variable */
	const char *source; /* the request env key holding the real value */
	struct hm_credential_inject inject[HM_MAX_INJECT];
	size_t ninject;
};

enum hm_net_want {
	HM_NET_DEFAULT, /* a network where the host has one */
	HM_NET_ON,      /* asked for: where the host has none, a 400 */
	HM_NET_OFF,
};

/*
 * What happens when an instance's program ends (or its VM dies) without a
 * user's stop: never, always, or on a failure (a code other than 0, or no
 * exit report). Restarts come after a delay; in a sequence of them each is
 * counted, and a run of stable_ms ends the sequence. A user's start, stop or
 * delete ends it too.
 */
enum hm_restart { HM_RESTART_NEVER, HM_RESTART_ALWAYS, HM_RESTART_ON_FAILURE };
#define HM_RESTART_DELAY_CAP_MS (5 * 60 * 1000)
struct hm_restart_policy {
	enum hm_restart policy;
	int64_t first_ms; /* before the first restart of a sequence */
	int64_t delay_ms; /* before the second */
	bool doubling;    /* each later delay twice the one before (up to the cap) */
	int max_attempts; /* restarts in one sequence; 0: no limit */
	int64_t stable_ms;
};
/* Where a sequence stands (hm_restart_status_done frees it). */
struct hm_restart_status {
	int attempts;                            /* restarts made in this sequence */
	char *last_attempt_at, *next_attempt_at; /* RFC 3339, or NULL */
	const char *blocked; /* "manual_stop", "max_attempts_exceeded" or NULL */
};
void hm_restart_status_done(struct hm_restart_status *st);
const char *hm_restart_name(enum hm_restart r); /* never | always | on_failure */

/*
 * A create, typed: what each dialect fills from its own request, and what
 * the domain checks (ranges, the name and env rules, mount paths, the
 * runtime) before it does anything. Strings and containers are borrowed for
 * the call. Sizes are bytes and rates bytes/s; 0 means the default.
 */
struct hm_instance_create {
	const char *name, *image;
	int vcpus;                        /* 0: 2 */
	int64_t mem_bytes, overlay_bytes; /* 0: 1 GiB, 10 GiB */
	json_t *env;                      /* {NAME: "value"}, or NULL */
	json_t *cmd, *entrypoint;         /* ["arg", ...], or NULL: the image's */
	json_t *tags;                     /* {"key": "value"}, or NULL */
	enum hm_net_want network;
	enum hm_egress_mode egress;
	struct hm_credential credentials[HM_MAX_CREDENTIALS];
	size_t ncredentials;
	int64_t download_bps, upload_bps; /* 0: the instance's share of the host's */
	int64_t disk_bps;                 /* 0: unlimited */
	struct hm_attach volumes[HM_MAX_ATTACH];
	size_t nvolumes;
	const char *hypervisor; /* a runtime of GET /capabilities; NULL: the default */
	bool no_boot;           /* make it Stopped (disks ready, never started); a start boots it */
	struct hm_restart_policy restart; /* zero: never */
	bool auto_standby_set;            /* auto_standby is the policy (else: none) */
	struct hm_auto_standby auto_standby;
	bool delete_on_stop;  /* deleted once its VM ends, however (not with a restart policy) */
	bool delete_lock;     /* deletes are refused until it is unset */
	const char *hostname; /* the guest's; NULL: the instance's name */
};

/* A volume as an instance has it attached. */
struct hm_view_attach {
	char *volume_id, *mount_path;
	char *volume_name, *volume_uuid; /* NULL if the volume is gone meanwhile */
	bool readonly;
};

/*
 * An instance as the domain shows it, whichever dialect renders it: its
 * state derived now (from its record and its VM's publication; no VMM is
 * asked), sizes in bytes, rates in bytes/s, times as RFC 3339 text. Owned;
 * hm_instance_view_free releases it.
 */
struct hm_instance_view {
	char *id, *name, *image;
	char *uuid; /* RFC 4122, stable for its life */
	enum hm_state state;
	char *state_error; /* why Unknown, or NULL */
	char *wake_error;  /* not running: why its last wake by traffic failed, or NULL */
	int vcpus;
	int64_t mem_bytes, overlay_bytes;
	int64_t disk_bps;                 /* 0: unlimited */
	json_t *env, *tags;               /* {k: "v"} (a reference each) */
	bool network;                     /* has an address on the default network */
	char *ip, *mac;                   /* with network */
	int64_t download_bps, upload_bps; /* with network; 0: none */
	struct hm_view_attach volumes[HM_MAX_ATTACH];
	size_t nvolumes;
	char *created_at, *started_at; /* started_at: NULL before its first boot */
	char *stopped_at;              /* Stopped only */
	int exit_code;                 /* Stopped with an exit report; else -1 */
	char *exit_message;            /* Stopped only, or NULL */
	char *hypervisor;              /* the runtime it was made on */
	json_t *command;               /* the argv the guest runs (a reference), or NULL */
	json_t *cmd;                   /* the cmd asked for (a reference), or NULL: the image's */
	struct hm_restart_policy restart;
	struct hm_restart_status restart_status;
	bool auto_standby_set; /* a policy was given (enabled or not) */
	struct hm_auto_standby auto_standby;
	bool delete_on_stop, delete_lock;
	bool template_;                 /* a template: never runs; forks are made from it */
	int stop_reason;                /* HM_STOP_* bits of the last stop (store/instances.h) */
	int start_count, restart_count; /* boots and restores; restarts by the policy */
	bool stopping;                  /* a stop was asked and the VM has not ended yet */
	bool draining;                  /* it takes no new connections (a drain is under way) */
	int64_t boot_us;                /* a running VM's boot: its VMM up to the program's start
	                                 * (0: not seen by this daemon, or restored) */
	int64_t vmm_start_us;           /* a running VM's VMM: from its spawn until it answered */
	int64_t vmm_load_us;            /* and, restored, the load of its saved state (0: not) */
	json_t *entrypoint;             /* the entrypoint asked for (a reference), or NULL */
	const char *boot;               /* the VM's last boot: "base" or "cold"; NULL: stopped */
};
void hm_instance_view_free(struct hm_instance_view *v);
/* An array of n views (hm_instances_list's). */
void hm_instance_views_free(struct hm_instance_view *v, size_t n);

/* The domain's rules for a create (the first thing hm_instances_create does), creating
 * nothing: for the parsers' fuzz target. */
int hm_instance_create_check(const struct hm_instance_create *req, const char *data_dir,
                             const struct hm_accel_choice *accel, struct hm_err **err);
/* Create: check, prepare disks, boot. *ret: the instance. */
int hm_instances_create(struct hm_instances *in, const struct hm_instance_create *req,
                        struct hm_instance_view **ret, struct hm_err **err);
/* By id, UUID, name or unique id prefix. */
int hm_instances_get(struct hm_instances *in, const char *key, struct hm_instance_view **ret,
                     struct hm_err **err);
/* Every instance that passes the filters (`state` and `tags` may be NULL),
 * oldest first: *ret holds *n views (hm_instance_views_free). */
int hm_instances_list(struct hm_instances *in, const enum hm_state *state, json_t *tags,
                      struct hm_instance_view **ret, size_t *n, struct hm_err **err);
/* Stop the VMM if any (graceful: the program gets SIGTERM and a few seconds,
 * as upstream; else it is killed at once), remove every file and the row. */
int hm_instances_delete(struct hm_instances *in, const char *key, bool graceful,
                        struct hm_err **err);
/*
 * Tell fn (one at a time; NULL: nobody) of every instance deleted, by any
 * path (the APIs, delete-on-stop), once its row is gone. fn runs under that
 * instance's op lock: it must not wait for an operation on the instance.
 */
void hm_instances_on_delete(struct hm_instances *in, void (*fn)(void *arg, const char *id),
                            void *arg);
/* POST /instances/{id}/stop: ask the guest init to stop the program (SIGTERM,
 * then SIGKILL after grace_ms: 0 kills it at once), then the ACPI power
 * button, then kill the VMM. Only from Running or Initializing (409). *ret: the instance. */
int hm_instances_stop(struct hm_instances *in, const char *key, int grace_ms /* <0: 5 s */,
                      struct hm_instance_view **ret, struct hm_err **err);
/* Make a Stopped instance a template (409 otherwise): from then on it never
 * runs (start, restore and updates of what it runs are refused) and forks
 * are made from it; it is deleted like any instance. */
int hm_instances_make_template(struct hm_instances *in, const char *key,
                               struct hm_instance_view **ret, struct hm_err **err);
/* The same stop, answered at once: the instance shows `stopping` until its VM
 * has ended, on a worker thread of the service (a failure is in its log).
 * With drain_ms > 0 it first drains (hm_instances_drain) for up to that long,
 * showing `draining`. */
int hm_instances_stop_begin(struct hm_instances *in, const char *key, int grace_ms, long drain_ms,
                            struct hm_instance_view **ret, struct hm_err **err);
/* Boot a Stopped instance again on its own overlay (writes persist), with
 * s's argv parts in place of its own where given (s NULL: as it was). */
struct hm_instance_start {
	json_t *cmd, *entrypoint; /* ["arg", ...], or NULL: as it was (borrowed) */
};
int hm_instances_start(struct hm_instances *in, const char *key, const struct hm_instance_start *s,
                       struct hm_instance_view **ret, struct hm_err **err);
/*
 * An update, typed; each part is optional and all are checked before any is
 * made. The env and tags parts apply in any state (env from the next boot);
 * the image, the command and the sizes only to a Stopped instance (409).
 */
struct hm_instance_update {
	json_t *env_set; /* {NAME: "value"}: merged in (with env_replace: the whole env) */
	bool env_replace;
	json_t *env_del;   /* ["NAME", ...]: removed */
	json_t *tags;      /* {"key": "value"}: the whole set */
	int delete_lock;   /* -1: unchanged; else 0 or 1 */
	const char *image; /* a new image (pulled when missing) */
	bool cmd_set;      /* cmd is the new cmd (NULL: the image's) */
	json_t *cmd;
	int vcpus;         /* 0: unchanged */
	int64_t mem_bytes; /* 0: unchanged */
	bool restart_set;  /* restart is the new policy */
	struct hm_restart_policy restart;
	bool auto_standby_set; /* auto_standby is the new policy */
	struct hm_auto_standby auto_standby;
};
int hm_instances_update(struct hm_instances *in, const char *key,
                        const struct hm_instance_update *u, struct hm_instance_view **ret,
                        struct hm_err **err);
/* GET /instances/{id}/wait: block until `state` (or a state it can no longer
 * leave) or timeout_ms. *ret: {state, state_error, timed_out}. */
struct hm_wait_result {
	enum hm_state state; /* where it is now */
	char *state_error;   /* why Unknown, or NULL (owned) */
	bool timed_out;
};
int hm_instances_wait(struct hm_instances *in, const char *key, enum hm_state state,
                      long timeout_ms, struct hm_wait_result *ret, struct hm_err **err);
/* GET /instances/{id}/stats: the VMM process's CPU and memory, the allocation. */
struct hm_instance_stats {
	char id[32];
	char name[64];
	double cpu_seconds;
	int64_t rss_bytes, vms_bytes; /* the VMM process's; 0 without one */
	uint64_t rx_bytes, tx_bytes;  /* on its TAP; 0 without one */
	uint64_t rx_packets, tx_packets;
	int conns;         /* connections open through our edges (ingresses, service groups) */
	int64_t requests;  /* HTTP requests they passed to this VM since it started */
	int vcpus;         /* allocated */
	int64_t mem_bytes; /* allocated */
};
int hm_instances_stats(struct hm_instances *in, const char *key, struct hm_instance_stats *ret,
                       struct hm_err **err);
/* GET /instances/{id}/stat: PathInfo from inside the guest (Running only). */
int hm_instances_stat(struct hm_instances *in, const char *key, const char *path, bool follow_links,
                      json_t **ret, struct hm_err **err);
/*
 * An exec (or other streamed agent) session on a Running instance (409
 * otherwise): messages sent carry the session's id; answers for it are
 * queued, readable on hm_exec_fd. Holds the instance's VM record alive.
 */
struct hm_exec;
int hm_instances_exec_open(struct hm_instances *in, const char *key, struct hm_exec **ret,
                           struct hm_err **err);
int hm_exec_fd(struct hm_exec *x);
int hm_exec_send(struct hm_exec *x, json_t *msg /* borrowed; "id" is set */, struct hm_err **err);
json_t *hm_exec_take(struct hm_exec *x, bool *ended);
void hm_exec_close(struct hm_exec *x);

/* Attach a->volume at a->mount_path to a stopped instance (409 otherwise);
 * used from its next start. *ret: the instance. */
int hm_instances_attach_volume(struct hm_instances *in, const char *key, const struct hm_attach *a,
                               struct hm_instance_view **ret, struct hm_err **err);
/* DELETE /instances/{id}/volumes/{volume}: on a stopped instance. */
int hm_instances_detach_volume(struct hm_instances *in, const char *key, const char *volume,
                               struct hm_instance_view **ret, struct hm_err **err);

/*
 * A connection one of our edges (the ingress proxy) opens to an instance:
 * the instance's address, and a hold counted on its running VM until
 * hm_instances_conn_close. 409 when it is not running or has no network,
 * 503 draining while it drains (it takes no new connections).
 */
/*
 * For the egress proxy: the headers to set on a request it decrypted from
 * the guest at `peer` to `host` (the name it verified): the credentials of
 * the instance holding that address whose rules match the host, their
 * values read now (a rotation counts from the next call). At most max;
 * names[i] and values[i] are the caller's to free (values are secrets:
 * clear them). 0: none.
 */
size_t hm_instances_egress_inject(struct hm_instances *in, const char *peer, const char *host,
                                  char **names, char **values, size_t max);

struct hm_instance_conn;
int hm_instances_conn_open(struct hm_instances *in, const char *key, char ip[16],
                           struct hm_instance_conn **ret, struct hm_err **err);
void hm_instances_conn_close(struct hm_instance_conn *c);
/* An HTTP request passed on over the connection (counted on its VM). */
void hm_instances_conn_request(struct hm_instance_conn *c);
/* How long the VM a hold counts on has been up (a just-booted one's program
 * may not listen yet). */
double hm_instances_conn_age_ms(const struct hm_instance_conn *c);
/*
 * Bytes moved on c (inbound: from the client, about to be sent to the
 * instance): its activity is now. Bytes inbound to an instance that went to
 * standby with the connection held (keep_connections) wake it first and
 * return once it runs; -1 when it cannot be woken (end the connection).
 */
int hm_instances_conn_activity(struct hm_instance_conn *c, bool inbound);
/* What an edge balancing over instances weighs (no side effect; -1: no such id). */
struct hm_instance_load {
	bool running;  /* takes connections now */
	bool wakeable; /* asleep (or falling asleep) under auto-standby: a connection wakes it */
	int conns;     /* running: the connections open through our edges */
};
int hm_instances_load(struct hm_instances *in, const char *id, struct hm_instance_load *ret);
static inline void hm_instances_conn_closep(struct hm_instance_conn **c)
{
	hm_instances_conn_close(*c);
}
/* GET /instances/{id}/auto-standby/status: where the controller stands. */
struct hm_auto_standby_status {
	bool configured, enabled, eligible;
	const char *status, *reason; /* upstream's words (static) */
	int conns;                   /* connections open through our ingresses */
	int64_t idle_ms;
	int64_t idle_since_ms, last_activity_ms, next_standby_ms, hold_until_ms; /* unix; 0: none */
};
int hm_instances_auto_standby_status(struct hm_instances *in, const char *key,
                                     struct hm_auto_standby_status *ret, struct hm_err **err);
/* POST …/auto-standby/hold: no auto standby for one idle timeout from now
 * (each hold replaces the last); 409 instance_in_standby when it is in
 * standby or going there. */
int hm_instances_auto_standby_hold(struct hm_instances *in, const char *key,
                                   struct hm_auto_standby_status *ret, struct hm_err **err);
/*
 * A first start primed (UKC's stateful scale to zero): the running instance
 * goes to standby as soon as its program accepts on port (tried by the
 * auto-standby controller at each look, for up to timeout_ms), unless a
 * connection comes first. 409 when it does not run or its policy is not a
 * stateful auto-standby.
 */
int hm_instances_prime(struct hm_instances *in, const char *key, int port, long timeout_ms,
                       struct hm_err **err);
/* Refuse new connections to a running instance and wait until the ones open
 * are closed or timeout_ms passed (the instance still runs after); ended by
 * the VM's end or hm_instances_drain_end. */
int hm_instances_drain(struct hm_instances *in, const char *key, long timeout_ms,
                       struct hm_err **err);
void hm_instances_drain_end(struct hm_instances *in, const char *key);

/* What live instances hold: vcpus, memory and overlay bytes (for /resources). */
void hm_instances_allocated(struct hm_instances *in, int64_t *vcpus, int64_t *mem, int64_t *disk);

/* source: app | vmm | hypeman. */
int hm_instances_logs(struct hm_instances *in, const char *key, const char *source, long tail,
                      bool follow, struct hm_log_stream **ret, struct hm_err **err);

/* Bytes [offset, offset + limit) of the app log (offset < 0: from the end).
 * The window kept is [avail_start, avail_end); data holds [start, end). */
struct hm_log_range {
	char *data; /* owned, NUL-terminated after len */
	size_t len;
	int64_t avail_start, avail_end;
	int64_t start, end;
};
int hm_instances_log_range(struct hm_instances *in, const char *key, int64_t offset, int64_t limit,
                           struct hm_log_range *ret, struct hm_err **err);

/* A Running instance's memory and device state go to disk (compressed as
 * opts says; NULL: not) and its VMM ends; it is then in Standby (409 otherwise). */
struct hm_payload_opts;
int hm_instances_standby(struct hm_instances *in, const char *key,
                         const struct hm_payload_opts *opts, struct hm_instance_view **ret,
                         struct hm_err **err);
/* POST /instances/{id}/restore: a Standby instance runs on from where it was. */
int hm_instances_restore(struct hm_instances *in, const char *key, struct hm_instance_view **ret,
                         struct hm_err **err);
/* A fork: a copy with its own identity, named `name`, brought to target_state
 * ("Stopped", "Standby" or "Running"; NULL: the source's). A Running source
 * needs from_running (it is paused for the copy and runs on). */
struct hm_instance_fork {
	const char *name;
	const char *target_state;
	bool from_running;
};
int hm_instances_fork(struct hm_instances *in, const char *key, const struct hm_instance_fork *f,
                      struct hm_instance_view **ret, struct hm_err **err);

/*
 * Snapshots (instance/snapshots.c): immutable copies that outlive their
 * source. A Standby snapshot holds the memory and device state (of a
 * Running or Standby instance); a Stopped one the disks of a Stopped one.
 */
enum hm_snapshot_kind {
	HM_SNAPSHOT_STANDBY,
	HM_SNAPSHOT_STOPPED,
};
/* "Standby", "Stopped". */
const char *hm_snapshot_kind_name(enum hm_snapshot_kind k);

struct hm_snapshot_create {
	enum hm_snapshot_kind kind;
	const char *name; /* NULL: none; else a name, unique among the source's snapshots */
	json_t *tags;     /* borrowed {k: "v"}; NULL: none */
	bool compress;    /* zstd the memory (Standby only) */
	int level;        /* with compress: 1..19 */
};

/* A snapshot as the domain shows it. Owned. */
struct hm_snapshot_view {
	char *id, *uuid;
	char *name; /* or NULL */
	enum hm_snapshot_kind kind;
	json_t *tags; /* {k: "v"} */
	char *source_id, *source_name, *hypervisor, *created_at;
	int64_t size_bytes;                           /* on disk now */
	bool compressed;                              /* its memory is zstd-compressed */
	int level;                                    /* the level asked for, or 0 when not known */
	int64_t compressed_bytes, uncompressed_bytes; /* -1: not known */
	char *image;                                  /* what its source ran: the image, */
	int vcpus;                                    /* its vCPUs */
	int64_t mem_bytes;                            /* and its memory */
};
void hm_snapshot_view_free(struct hm_snapshot_view *v);
void hm_snapshot_views_free(struct hm_snapshot_view *v, size_t n);

/* What bringing a snapshot back asks for: a restore into its source, or a
 * fork into a new instance `name`. */
struct hm_snapshot_bring {
	const char *name;              /* fork: required */
	const char *target_state;      /* Stopped|Standby|Running; NULL: the kind's default */
	const char *target_hypervisor; /* NULL: the snapshot's */
};

int hm_snapshots_create(struct hm_instances *in, const char *key,
                        const struct hm_snapshot_create *c, struct hm_snapshot_view **ret,
                        struct hm_err **err);
/* Filters: NULL (or kind < 0) for any. */
int hm_snapshots_list(struct hm_instances *in, const char *source_id, int kind, const char *name,
                      json_t *tags, struct hm_snapshot_view **ret, size_t *n, struct hm_err **err);
/* By id, uuid, name or unique id prefix. */
int hm_snapshots_get(struct hm_instances *in, const char *key, struct hm_snapshot_view **ret,
                     struct hm_err **err);
int hm_snapshots_delete(struct hm_instances *in, const char *key, struct hm_err **err);
/* The instance `key` (Stopped or Standby) made again from its own snapshot. */
int hm_snapshots_restore(struct hm_instances *in, const char *key, const char *snapshot,
                         const struct hm_snapshot_bring *b, struct hm_instance_view **ret,
                         struct hm_err **err);
/* A new instance b->name from the snapshot. */
int hm_snapshots_fork(struct hm_instances *in, const char *snapshot,
                      const struct hm_snapshot_bring *b, struct hm_instance_view **ret,
                      struct hm_err **err);
