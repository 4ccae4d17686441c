/*
 * Scope-bound cleanup for locals (the systemd/crun idiom).
 *
 *   _cleanup_free_ char *p = NULL;          freed when p leaves scope
 *   _cleanup_close_ int fd = -1;            closed when fd leaves scope
 *   return TAKE_PTR(p);                      hands ownership out, leaving NULL behind
 *
 * Every helper here accepts the "empty" value (NULL, -1) so a local can be
 * declared at the top of a function and filled later.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(fn) __attribute__((cleanup(fn)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Define `name##p` that calls `fn` on a pointer-to-pointer if it is not NULL. */
#define DEFINE_CLEANUP_FUNC(type, fn)                                                              \
	static inline void fn##p(type *p)                                                          \
	{                                                                                          \
		if (*p)                                                                            \
			fn(*p);                                                                    \
	}

/* Return *ptr and set it to NULL: ownership moves to the caller. */
#define TAKE_PTR(ptr)                                                                              \
	({                                                                                         \
		__typeof__(ptr) *_pp = &(ptr);                                                     \
		__typeof__(ptr) _p = *_pp;                                                         \
		*_pp = NULL;                                                                       \
		_p;                                                                                \
	})

/* Return fd and set it to -1. */
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int *_pfd = &(fd);                                                                 \
		int _fd = *_pfd;                                                                   \
		*_pfd = -1;                                                                        \
		_fd;                                                                               \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
