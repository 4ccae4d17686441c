/*
 * instance/memory: where a VM's RAM file lives.
 *
 * Guest RAM is always a shared file mapping (see standby.c), but a file on
 * a disk filesystem makes every first touch of a guest page a block
 * allocation: measured here, a cold boot took 36% longer than with
 * anonymous memory, against 11% with the file on tmpfs. So a cold-booted
 * VM runs on $HYPEMAN_MEMORY_DIR (default /dev/shm/hypeman-<hash of the
 * data dir>)/<id>.ram, when tmpfs has room for all of it, and standby
 * moves that file to the instance's folder (memory.ram), where it rests on
 * disk; a restored VM runs on memory.ram, whose pages are mostly allocated
 * already. The tmpfs folder holds a `data_dir` file naming its owner.
 *
 * Room: a VM is placed on tmpfs only if the free space covers its whole
 * size plus what the files already there may still grow by, so that VMs
 * placed there can never fill it (a full tmpfs would kill a VM with
 * SIGBUS on its next new page).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "instance/internal.h"
#include "instance/payload.h"

#define ROOM_MARGIN (64LL << 20)

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

char *inst_mem_dir_pick(const char *data_dir)
{
	const char *env = getenv("HYPEMAN_MEMORY_DIR");
	_cleanup_free_ char *dir = NULL;
	if (env) {
		if (!*env)
			return NULL; /* asked for none: RAM files stay in the instance folders */
		dir = xstrdup(env);
	} else {
		struct statfs sf;
		if (statfs("/dev/shm", &sf) < 0 || sf.f_type != TMPFS_MAGIC)
			return NULL;
		char real[4096];
		dir = xasprintf(
		    "/dev/shm/hypeman-%016llx",
		    (unsigned long long)fnv1a(realpath(data_dir, real) ? real : data_dir));
	}
	_cleanup_err_ struct hm_err *err = NULL;
	_cleanup_free_ char *owner = xasprintf("%s/data_dir", dir);
	if (hm_mkdir_p(dir, 0700, &err) < 0 ||
	    hm_write_file_atomic(owner, data_dir, strlen(data_dir), 0600, &err) < 0) {
		log_warn("instances", "no tmpfs for guest memory", "dir=%s error=\"%s\"", dir,
		         err ? err->msg : "?");
		return NULL;
	}
	return TAKE_PTR(dir);
}

char *inst_mem_tmpfs(struct hm_instances *in, const char *id)
{
	return in->mem_dir ? xasprintf("%s/%s.ram", in->mem_dir, id) : NULL;
}

char *inst_mem_current(struct hm_instances *in, const char *id)
{
	char *t = inst_mem_tmpfs(in, id);
	if (t && access(t, F_OK) == 0)
		return t;
	free(t);
	return inst_path(in, id, HM_PAYLOAD_MEMORY);
}

/* Bytes the RAM files in mem_dir may still grow by (their holes). */
static int64_t pending_growth(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int64_t total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".ram") == 0 &&
		    fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size > (off_t)st.st_blocks * 512)
			total += (int64_t)st.st_size - (int64_t)st.st_blocks * 512;
	}
	closedir(d);
	return total;
}

char *inst_mem_for_boot(struct hm_instances *in, const char *id, int64_t mem_bytes)
{
	_cleanup_free_ char *dir = inst_path(in, id, NULL);
	hm_payload_drop_memory(dir);
	char *t = inst_mem_tmpfs(in, id);
	if (!t)
		return inst_path(in, id, HM_PAYLOAD_MEMORY);
	unlink(t);
	struct statvfs sv;
	if (statvfs(in->mem_dir, &sv) == 0 &&
	    (int64_t)sv.f_bavail * (int64_t)sv.f_frsize - pending_growth(in->mem_dir) >=
	        mem_bytes + ROOM_MARGIN)
		return t;
	free(t);
	log_info("instances", "guest memory on disk", "id=%s reason=\"tmpfs has no room for it\"",
	         id);
	return inst_path(in, id, HM_PAYLOAD_MEMORY);
}

void inst_mem_reclaim(struct hm_instances *in, const char *const *keep, size_t n)
{
	if (!in->mem_dir)
		return;
	DIR *d = opendir(in->mem_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len <= 4 || strcmp(e->d_name + len - 4, ".ram") != 0)
			continue;
		bool kept = false;
		for (size_t i = 0; i < n && !kept; i++)
			kept =
			    strlen(keep[i]) == len - 4 && strncmp(keep[i], e->d_name, len - 4) == 0;
		if (!kept && unlinkat(dirfd(d), e->d_name, 0) == 0)
			log_info("instances", "reclaimed guest memory", "file=%s", e->d_name);
	}
	closedir(d);
}

void inst_mem_dir_release(struct hm_instances *in)
{
	if (!in->mem_dir)
		return;
	DIR *d = opendir(in->mem_dir);
	if (!d)
		return;
	bool in_use = false;
	struct dirent *e;
	while ((e = readdir(d)) && !in_use) {
		size_t n = strlen(e->d_name);
		in_use = n > 4 && strcmp(e->d_name + n - 4, ".ram") == 0;
	}
	closedir(d);
	if (in_use)
		return; /* VMs outlive the daemon: the next one finds their RAM here */
	_cleanup_free_ char *owner = xasprintf("%s/data_dir", in->mem_dir);
	unlink(owner);
	rmdir(in->mem_dir);
}
