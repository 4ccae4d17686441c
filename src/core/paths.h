/*
 * Paths from untrusted archives (see paths.c).
 */
#pragma once

/*
 * Normalize a path found in an archive entry: leading "/" and "./" dropped,
 * "//" and "/./" collapsed, a trailing "/" dropped. An owned string, ""
 * for the root itself, or NULL when any component is "..". The one
 * normaliser of layer unpacking (image/unpack.c) and volume import
 * (volume/volumes.c).
 */
char *hm_path_clean(const char *p);
