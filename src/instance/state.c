/*
 * The one table of instance state names (see state.h).
 */
#include "instance/state.h"

#include <stddef.h>
#include <string.h>

static const char *const names[HM_STATE_COUNT] = {
	[HM_STATE_CREATED] = "Created",   [HM_STATE_INITIALIZING] = "Initializing",
	[HM_STATE_RUNNING] = "Running",   [HM_STATE_PAUSED] = "Paused",
	[HM_STATE_SHUTDOWN] = "Shutdown", [HM_STATE_STANDBY] = "Standby",
	[HM_STATE_STOPPED] = "Stopped",   [HM_STATE_UNKNOWN] = "Unknown",
};

const char *hm_state_name(enum hm_state s)
{
	return (unsigned)s < HM_STATE_COUNT ? names[s] : names[HM_STATE_UNKNOWN];
}

bool hm_state_parse(const char *name, enum hm_state *ret)
{
	for (size_t i = 0; name && i < HM_STATE_COUNT; i++) {
		if (strcmp(name, names[i]) == 0) {
			*ret = (enum hm_state)i;
			return true;
		}
	}
	return false;
}
