/*
 * What the files of the instance service share (private to src/instance/):
 * the service and live-VM records, and the steps that lifecycle operations
 * are made of. instances.c owns create, boot, stop and delete; standby.c
 * standby, restore and fork; snapshots.c the snapshot objects.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot/kernel.h"
#include "instance/instances.h"
#include "instance/state.h"
#include "net/net.h"
#include "vmm/vmm.h"

struct hm_attach;
struct hm_config;
struct hm_err;
struct hm_images;
struct hm_instance_row;
struct hm_net;
struct hm_store;
struct hm_vm;
struct hm_vmm_ops;

#define MAX_VOLUMES 8
/* The ranges of an instance's sizes (a create's and an update's). */
#define INST_MIN_MEM   (64LL << 20)
#define INST_MAX_MEM   (1LL << 40)
#define INST_MAX_VCPUS 64
/* Under the instances folder: folders of deletes under way (no id starts with a dot). */
#define DELETED_DIR ".deleted"

/*
 * A VM the service runs, with its monitor thread. Its VMM is talked to only
 * under vm_lock, by the monitor or by the one operation the instance's op
 * lock admits; what that talk learns is published (pub_lock, a leaf lock:
 * in->lock or vm_lock may be held when it is taken, nothing is taken under
 * it), and every reader (get, list, wait, ingress) reads the publication:
 * no read waits on the VMM or on an operation holding vm_lock.
 */
struct live {
	struct live *next;
	char *id;
	char *dir;
	struct hm_vm *vm;
	pthread_mutex_t vm_lock;
	pthread_mutex_t pub_lock;
	struct {
		enum hm_vm_state vm_state; /* EXITED only once the end is recorded */
		char *error;               /* why Unknown */
		int exit_code;             /* with EXITED: the guest's report, -1 without */
		char *exit_message, *stopped_at;
	} pub;
	pthread_t thread;
	bool joined; /* the monitor has ended: by the op holding the op lock, or at close */
	int wake[2]; /* written to stop the monitor without finalising */
	atomic_bool started;
	atomic_bool exited;
	atomic_int refs; /* the list's one, plus one per request using it */
	struct hm_agent *agent;
	json_t *after_hello;   /* sent by the monitor right after its hello, or NULL */
	atomic_bool greeted;   /* the monitor has connected (or given up) and sent those */
	atomic_int stop_asked; /* 0; STOP_ASKED_USER by a user's stop; _FORCED once it kills */
	double born_ms;        /* inst_mono_ms when the record was made */
	atomic_llong
	    boot_us; /* from then to the program's start, when this record saw it; 0: not */
	int64_t vmm_start_us, vmm_load_us; /* its VMM's, as the backend measured (0: not) */
	atomic_int conns;                  /* holds our edges have open on it (conns.c) */
	atomic_bool draining;              /* new holds are refused (conns.c) */
	atomic_bool sleeping;              /* an auto standby is under way (idle.c) */
	atomic_llong last_io_ms;           /* unix ms a byte last moved on a hold; 0: none */
	atomic_llong requests;             /* HTTP requests our edges passed to it */
	struct hm_instances *in;
};

struct hm_instances {
	struct hm_store *st;
	struct hm_images *images;
	const struct hm_config *cfg;
	const struct hm_vmm_ops *vmm;
	const struct hm_accel_choice *accel; /* borrowed: the daemon's one decision */
	char *dir;
	struct hm_kernel kernel;
	char *boot_error; /* why instances cannot boot, or NULL */
	char *initrd;
	long tsc_khz;
	struct hm_net *net; /* borrowed */
	char *egress_ca;    /* the egress proxy's CA (PEM), for the guests' trust stores; or NULL */
	pthread_mutex_t lock;
	pthread_mutex_t vol_lock;     /* volume claims: held from the check to the row insert */
	struct op_lock *op_locks;     /* under lock: one per instance with an operation running */
	pthread_mutex_t changes_lock; /* a leaf: guards changes, for changes_cond's waiters */
	pthread_cond_t changes_cond;
	unsigned long changes;
	char *mem_dir; /* tmpfs folder for the RAM of cold-booted VMs, or NULL (memory.c) */
	struct live *lives;
	/* Under lock: instances whose row is being written to say a VMM runs,
	 * before their record is listed (inst_live_begin); readers take one
	 * with a row saying so and no record as on its way, not as lost. */
	char coming[16][32];
	int ncoming;
	struct hm_sup *sup;         /* supervise.c */
	struct hm_idle *idle;       /* idle.c */
	struct inst_bases *bases;   /* bases.c; NULL: BASE_BOOT=off, or no kernel */
	struct inst_warm *warm;     /* warm.c; NULL: WARM_RESTORES=0, or a backend without */
	struct inst_spares *spares; /* spare.c; NULL: SPARE_FORKS=0, or a backend without */
	int workers;                /* under changes_lock: stop_begin's threads still running */
	/* Told of each instance deleted (hm_instances_on_delete); under changes_lock. */
	void (*on_delete)(void *arg, const char *id);
	void *on_delete_arg;
};

/* Who asked a VM to stop: a user (forced: with no grace), or the daemon itself
 * (an idle instance's stateless scale to zero). */
enum { STOP_ASKED_USER = 1, STOP_ASKED_FORCED = 2, STOP_ASKED_PLATFORM = 3 };

/*
 * One lifecycle operation at a time per instance (start, stop, standby,
 * restore, fork, snapshot, delete, volume changes): the second waits. The
 * find variant resolves key, takes the instance's lock and reads its row
 * again, since the first operation may have changed or removed it.
 */
void inst_op_lock(struct hm_instances *in, const char *id);
void inst_op_unlock(struct hm_instances *in, const char *id);
int inst_find_locked(struct hm_instances *in, const char *key, struct hm_instance_row *row,
                     struct hm_err **err);

/* Monotonic milliseconds. */
double inst_mono_ms(void);
/* $DATA_DIR/instances/<id>[/rel], newly allocated. */
char *inst_path(struct hm_instances *in, const char *id, const char *rel);
/* Append one logfmt line to the instance's logs/hypeman.log. */
void inst_oplog(struct hm_instances *in, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The guest's hostname: the one asked for at create, else the instance's name (borrowed). */
const char *inst_hostname(const struct hm_instance_row *row, json_t *spec);
/* The network object of a spec when it is enabled, else NULL (borrowed). */
json_t *inst_spec_net(json_t *spec);
/* Rotate the instance's logs that are past the cap (LOG_MAX_BYTES). */
void inst_logs_trim(struct hm_instances *in, const char *id);
/* The VM is gone: remove its TAP and upload limit (the address stays). */
void inst_drop_tap(struct hm_instances *in, const char *id);

/* The TAP device name of an instance. */
void inst_tap_of(const char *id, char tap[HM_NET_TAP_MAX]);
/* The limits of a network object: download on tap (when given), upload by address. */
int inst_apply_limits(struct hm_instances *in, const char *id, json_t *net, const char *tap,
                      struct hm_err **err);
/* create.c: attachments checked and in their stored form ([{id, mount_path,
 * readonly, ...}], owned; see there); and claimed: each resolved to a volume
 * and its sharing checked (under vol_lock, from the check to the row's write). */
int inst_attachments(const struct hm_attach *a, size_t n, json_t **ret, struct hm_err **err);
int inst_claim_volumes(struct hm_instances *in, json_t *vols, struct hm_err **err);
/* 0 when this daemon's backend runs `runtime` (a row's hypervisor; NULL:
 * qemu); else 409 hypervisor_unavailable naming what (an instance, a snapshot). */
int inst_check_runtime(struct hm_instances *in, const char *runtime, const char *what,
                       struct hm_err **err);
/* attachments.c: the attachments table made to mirror spec's `volumes` (on
 * every write of them; a volume gone meanwhile fails the foreign key: 409). */
int inst_sync_attachments(struct hm_instances *in, const char *id, json_t *spec,
                          struct hm_err **err);
/* reconcile.c: at open, what the last daemon left (see there). */
void inst_adopt_all(struct hm_instances *in);

/* The live list (under in->lock for find/start/detach). */
struct live *inst_live_find(struct hm_instances *in, const char *id);
/* The live record with a reference taken, or NULL; inst_live_free drops one. */
struct live *inst_live_get(struct hm_instances *in, const char *id);
void inst_live_free(struct live *l);
/* Monitor vm (taken over) for id; `started`: the program already runs;
 * after_hello (taken; may be NULL): a message to send once connected. Under lock. */
void inst_live_start(struct hm_instances *in, const char *id, struct hm_vm *vm, bool started,
                     json_t *after_hello);
/*
 * Write row (its phase, pid and times set by the caller: a VMM runs for it
 * now), then list vm's record (inst_live_start): the row first, so that
 * an end the monitor sees at once is recorded on it, and the instance
 * marked as coming meanwhile, so that a reader that finds the new row
 * before the record shows the VMM's state, never Unknown. On a failed
 * write nothing is listed and vm and after_hello stay the caller's: -1.
 */
int inst_live_begin(struct hm_instances *in, struct hm_instance_row *row, struct hm_vm *vm,
                    bool started, json_t *after_hello, struct hm_err **err);
/* The record with a reference taken, or NULL with *coming: whether one is
 * on its way (inst_live_begin between its row write and its listing). */
struct live *inst_live_get_or_coming(struct hm_instances *in, const char *id, bool *coming);
/*
 * Unlink a live record and stop its monitor; the caller then owns it. Takes
 * in->lock itself and joins the monitor with it released (a monitor can take
 * seconds to notice, and every other request needs that lock).
 */
struct live *inst_live_take(struct hm_instances *in, const char *id);
/* Stop l's monitor (without recording an end) and leave l listed: its VMM
 * is about to go and readers keep the published state meanwhile. */
void inst_live_silence(struct live *l);

/*
 * Publish what the VMM was seen to be (the caller holds l->vm_lock, or is
 * the monitor before anyone else can reach it); error says why for UNKNOWN.
 * Wakes waiters. inst_live_refresh asks the VMM (under vm_lock) and
 * publishes its answer: after an operation that failed half-way.
 */
void inst_live_publish(struct live *l, enum hm_vm_state s, const char *error);
void inst_live_refresh(struct live *l);
/* What is published (copied; free the strings with inst_live_view_done). */
struct live_view {
	enum hm_vm_state vm_state;
	char *error;
	int exit_code;
	char *exit_message, *stopped_at;
};
void inst_live_view(struct live *l, struct live_view *v);
void inst_live_view_done(struct live_view *v);
/* A counter bumped at every publication (and inst_changed: a row's phase that
 * waiters look for), and a wait of at most ms for it to move past seen. */
void inst_changed(struct hm_instances *in);
unsigned long inst_changes(struct hm_instances *in);
void inst_changes_wait(struct hm_instances *in, unsigned long seen, long ms);

/* The row's spec, parsed (a new reference; an empty object if it has none). */
json_t *inst_spec_of(const struct hm_instance_row *r);
/* The view of a row, with its state derived now (hm_instance_view_free). */
struct hm_instance_view *inst_view(struct hm_instances *in, const struct hm_instance_row *r);
/* An instance's state now, derived from its row and its VM's publication. */
struct inst_status {
	enum hm_state state;
	char *error;        /* why Unknown */
	int exit_code;      /* Stopped: the guest's report, -1 without */
	char *exit_message; /* Stopped */
	char *stopped_at;   /* Stopped: when (the row's, or the monitor's fresher record) */
	int64_t boot_us;    /* the running VM's boot, VMM up to program start; 0: not seen */
	int64_t vmm_start_us, vmm_load_us; /* the running VMM's start and state load; 0: not */
	bool stopping;                     /* a stop was asked of the running VM */
	bool draining;                     /* it takes no new connections */
};
void inst_status_of(struct hm_instances *in, const struct hm_instance_row *r,
                    struct inst_status *st);
void inst_status_done(struct inst_status *st);
/* Just the derived state. */
enum hm_state inst_state(struct hm_instances *in, const struct hm_instance_row *row);

/* create.c, for create and update alike: the spec's argv, full_env, workdir
 * and user from its asked-for cmd, entrypoint and env over the image's
 * config; the vcpus range; a size in bytes within [min, max] (0: dflt),
 * `what` naming it in the domain's words. */
/*
 * Credential brokering (credentials.c): a create's policy checked against
 * its env and egress; its stored form (no values); whether a key is a
 * credential's source or guest variable in that stored form; the request
 * env split into what the guest sees (sources out, placeholders in) and the
 * secrets {source: value}; the instance's secrets file written whole (0600),
 * read (NULL: none), and merged into (a rotation). Host patterns: exact
 * names or *.domain (subdomains only).
 */
int inst_credentials_check(const struct hm_credential *c, size_t n, json_t *env,
                           enum hm_egress_mode egress, struct hm_err **err);
int inst_credential_value_check(const char *key, json_t *v, struct hm_err **err);
json_t *inst_credentials_json(const struct hm_credential *c, size_t n);
bool inst_credential_source(json_t *creds, const char *key);
bool inst_credential_guest_var(json_t *creds, const char *key);
json_t *inst_credentials_split_env(json_t *creds, json_t *env, json_t **secrets);
int inst_secrets_write(struct hm_instances *in, const char *id, json_t *secrets,
                       struct hm_err **err);
json_t *inst_secrets_read(struct hm_instances *in, const char *id);
int inst_secrets_rotate(struct hm_instances *in, const char *id, json_t *set, struct hm_err **err);
bool inst_host_pattern_ok(const char *p);
bool inst_host_matches(const char *pattern, const char *host);
/* The egress proxy's variables into spec.full_env, when spec.network has a proxy. */
void inst_spec_proxy_env(json_t *spec);
int inst_spec_command(json_t *spec, json_t *cfg, struct hm_err **err);
int inst_vcpus_check(int vcpus, struct hm_err **err);
int inst_size_check(const char *what, int64_t v, int64_t dflt, int64_t min, int64_t max,
                    int64_t *ret, struct hm_err **err);
/* A sparse ext4 file of `bytes` at path. */
int inst_make_overlay(const char *path, int64_t bytes, struct hm_err **err);
/* (Re)write the config disk from the spec, with no exit record. */
int inst_write_config(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                      const char *rootfs, struct hm_err **err);
/*
 * Start the instance's VMM on its disks (TAP, limits too). With
 * restore_from, load that saved state onto the instance's memory file
 * instead of booting: the VM is then paused. Undoes itself on failure.
 */
int inst_spawn_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                  const char *root_disk, const char *restore_from, struct hm_vm **ret_vm,
                  struct hm_err **err);
/*
 * Boot the instance: restored from a ready base of its shape where there is
 * one (then running, and *attach is the message its monitor must send right
 * after its hello), else cold (*attach NULL). spec's "booted_from" says
 * which. Undoes itself on failure.
 */
int inst_boot_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                 const char *root_disk, struct hm_vm **ret_vm, json_t **attach,
                 struct hm_err **err);
/* Under an instance's folder while its guest from a base is not yet up: the
 * attach (disk sizes) to send again if a restarted daemon adopts it then. */
#define INST_ATTACH_FILE "run/attach.json"
/* 64 random bytes in hex: the seed a waking or attaching guest mixes in. */
char *inst_seed_hex(void);
/* The attach message for the guest, with a fresh seed, from the kept one. */
json_t *inst_attach_msg(json_t *kept);
/* The guest kernel's command line, extra appended (" hypeman.base=1"). */
char *inst_cmdline(const struct hm_instances *in, const char *extra);
/* Wait (up to 2 s) until the monitor of id has connected and sent what it sends first. */
void inst_wait_greeted(struct hm_instances *in, const char *id);

/*
 * Start the instance's VMM for a restore from its saved state (TAP and
 * limits too) and leave it waiting for the state (vmm restore_prepare);
 * restore_load finishes it. Undoes itself on failure.
 */
int inst_prepare_vm(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                    const char *root_disk, struct hm_vm **ret_vm, struct hm_err **err);

/* ---- spare.c: forks made ready before they are asked for ---- */

int inst_spare_open(struct hm_instances *in, int max);
void inst_spare_close(struct hm_instances *in);
/* Have a spare of source (a Running or Standby instance just forked) prepared. */
void inst_spare_later(struct hm_instances *in, const char *source);
/* source's spare, if it was made on what source is now (caller: source's op
 * lock; standby: source is in Standby): its VMM, waiting for its state, and
 * in id the fork's id, whose folder holds the fork's files at their sizes
 * (fill them in place; *filled: they hold a whole copy of a Standby
 * source's files already, which no one wrote since). NULL: none (a stale
 * one is ended). The caller owns the VMM and the folder. */
struct hm_vm *inst_spare_take(struct hm_instances *in, const struct hm_instance_row *source,
                              bool standby, char id[25], bool *filled);
/* End a spare that was taken and will not be used: its VMM and folder id. */
void inst_spare_discard(struct hm_instances *in, const char *id, struct hm_vm *vm);
/* The fork's row now owns the spare's folder id. */
void inst_spare_taken(struct hm_instances *in, const char *id);
/* End source's spare (its delete). */
void inst_spare_drop(struct hm_instances *in, const char *source);
/* At start: end the spares a dead daemon left. */
void inst_spare_sweep(struct hm_instances *in);

/* ---- warm.c: VMMs waiting for the restores of recent standbys ---- */

int inst_warm_open(struct hm_instances *in, int max);
void inst_warm_close(struct hm_instances *in);
/* After id's standby: prepare a VMM for its restore, in the background. */
void inst_warm_later(struct hm_instances *in, const char *id);
/* Under row's op lock: its waiting VMM if one was made on its current files
 * (a stale one is ended), else NULL. The caller loads it or ends it. */
struct hm_vm *inst_warm_take(struct hm_instances *in, const struct hm_instance_row *row,
                             const char *root_disk);
/* Under id's op lock: end its waiting VMM, if any (a delete, a new payload). */
void inst_warm_drop(struct hm_instances *in, const char *id);

/* ---- bases.c: pre-booted base VMs ---- */

/* What a base's saved devices fix; a boot uses a base of exactly its shape. */
struct inst_shape {
	int vcpus;
	uint64_t mem_bytes;
	char disks[HM_VM_MAX_DISKS + 1]; /* 'r' or 'w' per disk, in order */
	bool nic;
	enum hm_accel accel;
};
struct inst_base;
void inst_shape_of(const struct hm_vm_spec *vs, struct inst_shape *sh);
/* Adopt the data dir's bases, start the builder, and ask for the default shapes. */
int inst_bases_open(struct hm_instances *in, const struct inst_shape *defaults, size_t n,
                    struct hm_err **err);
void inst_bases_close(struct hm_instances *in);
/* A ready base of sh, held until inst_base_put; NULL when none (one is then asked for). */
struct inst_base *inst_base_get(struct hm_instances *in, const struct inst_shape *sh);
/* Let go of b; broken: a restore from it failed, so it is dropped. */
void inst_base_put(struct hm_instances *in, struct inst_base *b, bool broken);
const char *inst_base_memory(const struct inst_base *b);
const char *inst_base_state(const struct inst_base *b);
/* The size of placeholder disk i that the guest saw when the base was saved. */
uint64_t inst_base_disk_bytes(const struct inst_base *b, size_t i);
/* Cold-boot a Stopped instance (start's work; by_policy: a restart's); *rowp is updated. */
int inst_boot_again(struct hm_instances *in, struct hm_instance_row *rowp, json_t *cmd, json_t *ep,
                    bool by_policy, struct hm_instance_view **ret, struct hm_err **err);
/* conns.c: mark l draining and wait (no lock held) until its holds are
 * closed, its VM ended or timeout_ms passed: 0 drained, 1 timed out. */
int inst_drain_live(struct hm_instances *in, struct live *l, const char *id, long timeout_ms);
/* Until every worker thread (hm_instances_stop_begin's) has ended. */
void inst_workers_wait(struct hm_instances *in);
/* Delete's work, under the op lock the caller holds (and keeps). */
int inst_delete_held(struct hm_instances *in, struct hm_instance_row *row, bool graceful,
                     struct hm_err **err);

/* ---- supervise.c: restart policies and delete-on-stop ---- */

struct hm_sup;
struct hm_restart_policy;
struct hm_restart_status;
struct hm_auto_standby;
/* idle.c: auto-standby, its thread and the policy in a spec. */
void inst_idle_open(struct hm_instances *in);
void inst_idle_close(struct hm_instances *in);
void inst_spec_auto_standby(json_t *spec, struct hm_auto_standby *ret);
json_t *inst_auto_standby_json(const struct hm_auto_standby *p);
int inst_auto_standby_check(const struct hm_auto_standby *p, struct hm_err **err);
void inst_sup_open(struct hm_instances *in);
void inst_sup_close(struct hm_instances *in);
/* After every monitor has ended (a VM that ends during the close still
 * reports to the supervisor, which by then acts on nothing). */
void inst_sup_free(struct hm_instances *in);
/* A VM ended (its end recorded): by a user's stop or not, after ran_ms of running. */
void inst_sup_exited(struct hm_instances *in, const char *id, int exit_code, bool by_user,
                     double ran_ms);
/* A user's operation ends the sequence: why (shown) or NULL (forgotten). Under the op lock. */
void inst_sup_block(struct hm_instances *in, const char *id, const char *why);
/* An instance's last failed wake (msg NULL: it woke), kept in memory until one
 * succeeds; inst_wake_error: a copy, or NULL. */
void inst_wake_error_set(struct hm_instances *in, const char *id, const char *msg);
char *inst_wake_error(struct hm_instances *in, const char *id);
/* The idle controller's stop of a stateless instance (stop_reason: the platform's). */
int inst_stop_idle(struct hm_instances *in, const char *id, struct hm_err **err);

void inst_sup_forget(struct hm_instances *in, const char *id);
void inst_sup_status(struct hm_instances *in, const char *id, struct hm_restart_status *ret);
/* The policy a spec holds (never when none); and its stored form. */
void inst_spec_restart(json_t *spec, struct hm_restart_policy *ret);
json_t *inst_restart_json(const struct hm_restart_policy *p);
/* The domain's rules for a policy (ranges). */
int inst_restart_check(const struct hm_restart_policy *p, struct hm_err **err);

/* ---- memory.c: where a VM's RAM file lives ---- */

/* Pick the tmpfs folder (at open); NULL when the host has none to use. */
char *inst_mem_dir_pick(const char *data_dir);
/* The RAM file a cold boot of mem_bytes should use: tmpfs when it fits, else
 * the instance's memory.ram. Removes every older RAM file of the instance. */
char *inst_mem_for_boot(struct hm_instances *in, const char *id, int64_t mem_bytes);
/* The RAM file the instance's VM runs on now (tmpfs or memory.ram). */
char *inst_mem_current(struct hm_instances *in, const char *id);
/* Its tmpfs RAM file's path (whether it exists or not), or NULL without tmpfs. */
char *inst_mem_tmpfs(struct hm_instances *in, const char *id);
/* At close: remove the tmpfs folder if no VM's RAM is in it. */
void inst_mem_dir_release(struct hm_instances *in);
/* Remove tmpfs RAM files of VMs that no longer run (keep: ids still running). */
void inst_mem_reclaim(struct hm_instances *in, const char *const *keep, size_t n);

/* ---- standby.c ---- */

/*
 * Start the VMM of an instance in Standby on its saved state and run it:
 * Running on success (*rowp updated, the saved state consumed). The guest
 * is sent an identity request: the clock, and with new_identity its own
 * MAC, address, hostname and machine-id (which then must succeed). On
 * failure nothing runs and the instance is still in Standby. prepared, when
 * not NULL, is a VMM already waiting for this state (inst_prepare_vm); it is
 * inst_wake's from the call, used or ended.
 */
int inst_wake(struct hm_instances *in, struct hm_instance_row *rowp, bool new_identity,
              struct hm_vm *prepared, struct hm_err **err);
/* Copies may not carry read-write volume attachments (409). */
int inst_check_forkable(json_t *spec, const char *name, struct hm_err **err);
/* Copy the payload of an instance (stopped, in standby or running) into dst. A
 * running one is paused for the save and the copy, then runs on. flags:
 * hm_payload_copy's. */
int inst_capture(struct hm_instances *in, const struct hm_instance_row *row, json_t *spec,
                 bool running, bool standby, const char *dst, unsigned flags,
                 unsigned long long *copied, struct hm_err **err);

/* A fork's spec from its source's: not a template, unlocked (a new reference). */
json_t *inst_copy_spec(json_t *spec);

/* Where a new instance's payload comes from (a fork of an instance or of a snapshot). */
struct inst_source {
	const char *name;       /* the source, for messages */
	const char *hypervisor; /* its runtime: the copy is made on the same one */
	const char *image, *image_digest;
	json_t *spec;               /* the source's spec (copied, given a new network) */
	const char *kind;           /* Standby (memory too) or Stopped (disks only) */
	const char *default_target; /* Stopped, Standby or Running */
	int (*fill)(void *ctx, const char *dst_dir, unsigned long long *copied,
	            struct hm_err **err);
	/* Optional, for a source with memory: make the files fill will write,
	 * at their sizes, and have fill fill them in place (so a VMM can start
	 * on them meanwhile). hm_payload_presize's returns. */
	int (*presize)(void *ctx, const char *dst_dir, struct hm_err **err);
	void *ctx;
	/* Optional: a spare (spare.c) to make the copy in, owned from the call:
	 * the copy's id, whose folder has its files presized (fill fills them
	 * in place), and its VMM waiting for the state. */
	const char *spare_id;
	struct hm_vm *spare_vm;
	bool spare_filled; /* its files are the copy already: no fill */
};

/* Make instance `name` from src, then bring it to target (NULL: src's default).
 * Leaves nothing behind on failure. *ret: the new Instance. */
int inst_new_from(struct hm_instances *in, const struct inst_source *src, const char *name,
                  const char *target, struct hm_instance_view **ret, struct hm_err **err);
