/*
 * core/ext4: making a sparse ext4 disk image with mkfs.ext4 (e2fsprogs), the
 * one recipe for an instance's overlay and a volume's disk.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct hm_err;

/*
 * A new (O_EXCL) sparse file of `bytes` at path, formatted ext4 with no
 * reserved blocks and lazy init; `journal` false drops the journal (a
 * scratch layer); from_dir, when given, is copied in (mkfs.ext4 -d). `what`
 * names the disk in errors ("overlay disk"). The caller removes path on
 * failure.
 */
int hm_ext4_make(const char *path, int64_t bytes, bool journal, const char *from_dir,
                 const char *what, struct hm_err **err);
