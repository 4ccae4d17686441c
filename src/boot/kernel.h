/*
 * The guest kernel the host boots: an uncompressed vmlinux (PVH) with the
 * modules the initrd carries, as scripts/kernel.sh lays it out in
 * $DATA_DIR/system/kernel/current.
 */
#pragma once

struct hm_err;

struct hm_kernel {
	char *dir;     /* holds vmlinux, load.order, modules/ */
	char *vmlinux; /* dir/vmlinux */
	char *version; /* the kernel release from dir/VERSION, or "unknown" */
};

/*
 * Find the kernel in configured_dir (may be NULL) or else
 * data_dir/system/kernel/current, and check it is complete. A missing or
 * incomplete kernel is HM_ERR_UNAVAILABLE naming the path and the fix.
 */
int hm_kernel_find(const char *configured_dir, const char *data_dir, struct hm_kernel *ret,
                   struct hm_err **err);

void hm_kernel_done(struct hm_kernel *k);
