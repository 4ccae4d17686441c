/*
 * hypeman-api: the daemon's entry point. It owns start-up and shutdown:
 *
 *   config -> data dir -> signing secret -> store -> image service ->
 *   instance service (adopts running VMs) -> HTTP server
 *
 * and tears them down in reverse on SIGTERM or SIGINT. The signals are
 * blocked before any thread starts and then waited for synchronously here,
 * so no handler runs asynchronously anywhere in the process.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "auth/secret.h"
#include "config/config.h"
#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "image/images.h"
#include "egress/ca.h"
#include "egress/egress.h"
#include "ingress/ingress.h"
#include "instance/instances.h"
#include "net/net.h"
#include "vmm/accel.h"
#include "volume/volumes.h"
#include "store/store.h"

/* The egress proxy asks the instances what a guest's requests to a host get. */
static size_t egress_policy(void *arg, const char *peer, const char *host, char **names,
                            char **values, size_t max)
{
	return hm_instances_egress_inject(arg, peer, host, names, values, max);
}

static int record_first_start(struct hm_store *st, struct hm_err **err)
{
	_cleanup_free_ char *v = NULL;
	_cleanup_err_ struct hm_err *lookup = NULL;
	if (hm_store_meta_get(st, "created_at", &v, &lookup) == 0)
		return 0;
	if (!hm_err_is(lookup, HM_ERR_NOT_FOUND)) {
		*err = TAKE_PTR(lookup);
		return -1;
	}
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	return hm_store_meta_set(st, "created_at", ts, err);
}

static int run(struct hm_config *cfg, struct hm_err **err)
{
	/* How guests run, decided once: every spawn and restore uses it. */
	struct hm_virt_facts facts;
	struct hm_accel_choice accel;
	hm_virt_probe(&facts);
	if (hm_accel_decide(cfg->accel, &facts, &accel, err) < 0)
		return -1;
	log_info("daemon", "accelerator", "accel=%s reason=\"%s\"", hm_accel_name(accel.accel),
	         accel.reason);

	if (hm_mkdir_p(cfg->data_dir, 0700, err) < 0)
		return hm_err_wrap(err, "create data dir");

	_cleanup_free_ char *secret = NULL;
	if (cfg->jwt_secret)
		secret = xstrdup(cfg->jwt_secret);
	else if (hm_secret_load(cfg->data_dir, 1, &secret, err) < 0)
		return -1;

	_cleanup_free_ char *db_path = xasprintf("%s/hypeman.db", cfg->data_dir);
	struct hm_store *store = NULL;
	if (hm_store_open(db_path, &store, err) < 0)
		return -1;
	if (record_first_start(store, err) < 0) {
		hm_store_close(store);
		return -1;
	}

	/* Helpers (hypeman-unpack) are installed next to this binary. */
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return hm_err_errno(err, errno, "readlink /proc/self/exe");
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	_cleanup_free_ char *unpack = xasprintf("%s/hypeman-unpack", self);
	struct hm_images_opts io = {
		.data_dir = cfg->data_dir,
		.unpack_helper = unpack,
		.insecure = cfg->insecure_registries,
		.workers = cfg->pull_workers,
		.stall_timeout_s = cfg->pull_stall_timeout_s,
		.disk_format = cfg->image_format,
	};
	struct hm_images *images = NULL;
	if (hm_images_start(store, &io, &images, err) < 0) {
		hm_store_close(store);
		return -1;
	}

	struct hm_net *net = NULL;
	if (hm_net_open(cfg, &net, err) < 0) {
		hm_images_stop(images);
		hm_store_close(store);
		return hm_err_wrap(err, "network");
	}
	struct hm_instances *instances = NULL;
	if (hm_instances_open(store, images, net, cfg, &accel, NULL, &instances, err) < 0) {
		hm_net_close(net);
		hm_images_stop(images);
		hm_store_close(store);
		return -1;
	}

	struct hm_volumes *volumes = NULL;
	if (hm_volumes_open(store, cfg, &volumes, err) < 0) {
		hm_instances_close(instances);
		hm_net_close(net);
		hm_images_stop(images);
		hm_store_close(store);
		return -1;
	}
	struct hm_ingresses *ingresses = NULL;
	if (hm_ingresses_open(store, instances, cfg, &ingresses, err) < 0) {
		hm_volumes_close(volumes);
		hm_instances_close(instances);
		hm_net_close(net);
		hm_images_stop(images);
		hm_store_close(store);
		return -1;
	}
	/* The egress proxy, on the bridge's gateway, for instances with mediated
	 * egress; its CA (made once, in the data dir) goes into their guests. */
	struct hm_egress *egress = NULL;
	struct hm_ca *ca = NULL;
	char gw[16], cidr[20];
	_cleanup_free_ char *ca_dir = xasprintf("%s/egress", cfg->data_dir);
	bool mediated = hm_net_enabled(net) && hm_net_subnet(net, gw, cidr) == 0;
	struct hm_egress_broker broker = {
		.upstream_ca = cfg->egress_upstream_ca,
		.policy = egress_policy,
		.arg = instances,
	};
	if (mediated && hm_ca_open(ca_dir, &ca, err) == 0) {
		broker.ca = ca;
		hm_instances_set_egress_ca(instances, hm_ca_pem(ca));
	}
	if (mediated &&
	    (!ca || hm_egress_open(gw, cfg->egress_port, cidr, &broker, &egress, err) < 0)) {
		hm_ca_free(ca);
		hm_ingresses_close(ingresses);
		hm_volumes_close(volumes);
		hm_instances_close(instances);
		hm_net_close(net);
		hm_images_stop(images);
		hm_store_close(store);
		return -1;
	}
	struct hm_services svc = {
		.cfg = cfg,
		.store = store,
		.images = images,
		.instances = instances,
		.ingresses = ingresses,
		.volumes = volumes,
		.net = net,
		.jwt_secret = secret,
		.started_at = time(NULL),
		.accel = &accel,
	};
	struct hm_api *api = NULL;
	if (hm_api_start(&svc, &api, err) < 0 ||
	    hm_net_protect_api(net, hm_api_port(api), err) < 0) {
		hm_api_stop(api);
		hm_egress_close(egress);
		hm_ca_free(ca);
		hm_ingresses_close(ingresses);
		hm_volumes_close(volumes);
		hm_instances_close(instances);
		hm_net_close(net);
		hm_images_stop(images);
		hm_store_close(store);
		return -1;
	}
	log_info("daemon", "listening", "addr=%s:%u data_dir=\"%s\" schema=%d", cfg->listen_addr,
	         hm_api_port(api), cfg->data_dir, hm_store_schema_version(store));

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig;
	while (sigwait(&set, &sig) != 0)
		;
	log_info("daemon", "shutting down", "signal=%s", sigabbrev_np(sig));
	hm_api_stop(api);
	if (!hm_egress_close(egress))
		log_warn("daemon", "egress tunnels still open at shutdown");
	else
		hm_ca_free(ca);
	if (!hm_ingresses_close(ingresses)) {
		/* A proxy thread still runs into the services: leave them to the exit. */
		log_warn("daemon", "stopped with ingress connections still open");
		return 0;
	}
	hm_volumes_close(volumes);
	hm_instances_close(instances); /* VMs keep running; the next start adopts them */
	hm_net_close(net);             /* so do the bridge, the rules and their TAPs */
	hm_images_stop(images);
	hm_store_close(store);
	log_info("daemon", "stopped");
	return 0;
}

int main(int argc, char **argv)
{
	/* Block before any thread exists so every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	umask(0022);

	struct hm_config cfg;
	_cleanup_err_ struct hm_err *err = NULL;
	int r = hm_config_load(&cfg, argc, argv, &err);
	if (r == HM_CONFIG_HELP) {
		hm_config_done(&cfg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "hypeman-api: %s\n", err->msg);
		hm_config_done(&cfg);
		return 2;
	}
	hm_log_set_level(cfg.log_level);
	r = run(&cfg, &err);
	if (r < 0)
		log_error("daemon", "fatal", "error=\"%s\"", err->msg);
	hm_config_done(&cfg);
	return r < 0 ? 1 : 0;
}
