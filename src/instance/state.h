/*
 * An instance's state, as every dialect shows it: one enum and one table of
 * names (state.c). The names are the Hypeman API's; the domain compares
 * enums, and only a dialect's renderer or parser meets the strings.
 */
#pragma once

#include <stdbool.h>

enum hm_state {
	HM_STATE_CREATED,      /* a row, no VMM yet */
	HM_STATE_INITIALIZING, /* the VMM runs, the program has not started */
	HM_STATE_RUNNING,      /* the guest init reported the program started */
	HM_STATE_PAUSED,       /* the VMM holds the guest paused */
	HM_STATE_SHUTDOWN,     /* the guest powered off; its VMM is ending */
	HM_STATE_STANDBY,      /* no VMM; memory and device state on disk */
	HM_STATE_STOPPED,      /* no VMM; the exit is recorded */
	HM_STATE_UNKNOWN,      /* the VMM does not answer, or none is attached */
};
#define HM_STATE_COUNT 8

/* "Running" and so on; "Unknown" for a value out of range. */
const char *hm_state_name(enum hm_state s);
/* The state a name denotes (case-sensitive, as the API spells them); false for none. */
bool hm_state_parse(const char *name, enum hm_state *ret);
