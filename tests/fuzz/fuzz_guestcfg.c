/*
 * Fuzz target: the config disk's parser (guest/config.c), which the guest
 * init runs on the disk the host wrote. Any bytes: parsed or refused with a
 * reason, never out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > HM_GUEST_AREA_SIZE)
		size = HM_GUEST_AREA_SIZE;
	char *buf = malloc(HM_GUEST_AREA_SIZE);
	memcpy(buf, data, size);
	struct hm_gcfg cfg;
	char why[256];
	if (hm_gcfg_parse(buf, size, &cfg, why, sizeof(why)) == 0) {
		for (size_t i = 0; i < cfg.argc; i++)
			(void)strlen(cfg.argv[i]);
		for (size_t i = 0; i < cfg.envc; i++)
			(void)strlen(cfg.env[i]);
		for (size_t i = 0; i < cfg.nvolumes; i++)
			(void)strlen(cfg.volume[i]);
	} else if (!memchr(why, '\0', sizeof(why))) {
		abort();
	}
	free(buf);
	return 0;
}
