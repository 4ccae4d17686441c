/*
 * core/names: name shapes and new ids (see names.h).
 */
#include "core/names.h"

#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "core/err.h"

int hm_name_check(const char *what, const char *name, struct hm_err **err)
{
	size_t n = name ? strlen(name) : 0;
	bool ok = n >= 1 && n <= 63 && name[0] != '-' && name[n - 1] != '-' &&
	          strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
	if (!ok)
		return hm_err_set(err, HM_ERR_INVALID, "invalid_name",
		                  "invalid %s name `%.80s`: use 1-63 lowercase letters, digits "
		                  "and dashes, not starting or ending with a dash",
		                  what, name ? name : "");
	return 0;
}

void hm_id_new(char out[25])
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char rnd[24];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
	out[0] = alnum[rnd[0] % 26];
	for (int i = 1; i < 24; i++)
		out[i] = alnum[rnd[i] % 36];
	out[24] = '\0';
}
