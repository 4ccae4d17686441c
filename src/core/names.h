/*
 * core/names: the rules every named object of the daemon shares (instances,
 * volumes, ingresses, snapshots): a user-chosen name's shape, and the ids the
 * daemon makes up.
 */
#pragma once

#include <stdbool.h>

struct hm_err;

/*
 * A name: ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$, at most 63 bytes (a DNS label,
 * so a name can be a hostname). 400 invalid_name naming `what` ("instance",
 * "volume", ...) otherwise.
 */
int hm_name_check(const char *what, const char *name, struct hm_err **err);

/* A new CUID2-style id: 24 lowercase alphanumerics, starting with a letter. */
void hm_id_new(char out[25]);

/* A new random (version 4) RFC 4122 UUID, lowercase: "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
void hm_uuid_new(char out[37]);
/* Whether s is a UUID in that text form (any version, either case). */
bool hm_uuid_is(const char *s);
