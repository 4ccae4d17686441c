/*
 * The initrd every guest boots with: the static guest init as /init and the
 * kernel's modules with their load order (docs/guest.md, "Boot"), built once
 * per distinct set of inputs and cached by content hash.
 */
#pragma once

#include <stdbool.h>

struct hm_err;
struct hm_kernel;

/*
 * Make sure cache_dir holds the initrd for kernel k and the init binary
 * init_bin, building it if needed; *ret_path (owned by the caller) names it.
 * pci selects the machine's virtio transport: with pci false (microvm,
 * virtio-mmio) the virtio_pci* modules are left out.
 */
int hm_initrd_ensure(const struct hm_kernel *k, const char *init_bin, const char *cache_dir,
                     bool pci, char **ret_path, struct hm_err **err);
