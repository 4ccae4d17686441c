/*
 * kernel: locate the guest kernel directory (vmlinux, load.order, modules/)
 * and check it is complete before anything tries to boot from it.
 */
#include "boot/kernel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cleanup.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/xalloc.h"

static int missing(struct hm_err **err, const char *path, const char *what)
{
	return hm_err_set(err, HM_ERR_UNAVAILABLE, "kernel_unavailable",
	                  "guest kernel: %s `%s` is missing; run `make setup` (or "
	                  "scripts/kernel.sh DATA_DIR/system/kernel) to fetch it",
	                  what, path);
}

int hm_kernel_find(const char *configured_dir, const char *data_dir, struct hm_kernel *ret,
                   struct hm_err **err)
{
	_cleanup_free_ char *dir = configured_dir && *configured_dir
	                               ? xstrdup(configured_dir)
	                               : xasprintf("%s/system/kernel/current", data_dir);
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return missing(err, dir, "directory");
	_cleanup_free_ char *vmlinux = xasprintf("%s/vmlinux", dir);
	if (stat(vmlinux, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
		return missing(err, vmlinux, "kernel image");
	_cleanup_free_ char *order = xasprintf("%s/load.order", dir);
	if (stat(order, &st) < 0 || !S_ISREG(st.st_mode))
		return missing(err, order, "module list");
	_cleanup_free_ char *mods = xasprintf("%s/modules", dir);
	if (stat(mods, &st) < 0 || !S_ISDIR(st.st_mode))
		return missing(err, mods, "module directory");

	_cleanup_free_ char *vfile = xasprintf("%s/VERSION", dir);
	char *version = NULL;
	struct hm_err *verr = NULL;
	if (hm_read_file(vfile, 256, &version, NULL, &verr) < 0) {
		hm_err_free(verr);
		version = xstrdup("unknown");
	}
	version[strcspn(version, "\r\n")] = '\0';

	ret->dir = TAKE_PTR(dir);
	ret->vmlinux = TAKE_PTR(vmlinux);
	ret->version = version;
	return 0;
}

void hm_kernel_done(struct hm_kernel *k)
{
	if (!k)
		return;
	free(k->dir);
	free(k->vmlinux);
	free(k->version);
	k->dir = k->vmlinux = k->version = NULL;
}
