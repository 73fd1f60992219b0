/*
 * Internal error helpers: set and extend the per-thread detail message.
 */
#ifndef PSPACE_SRC_COMMON_ERROR_H
#define PSPACE_SRC_COMMON_ERROR_H

#include "pspace/common.h"

#if defined(__GNUC__)
#define PSPACE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PSPACE_PRINTF(a, b)
#endif

/** Replaces the thread's detail message; @return @p code, for `return pspace_err_set(...)`. */
int pspace_err_set(int code, const char *fmt, ...) PSPACE_PRINTF(2, 3);

/**
 * Prepends context ("store /x: matrix F, tile (0,1,2): ") to the thread's
 * detail message; @return @p code. A no-op for code 0.
 */
int pspace_err_prefix(int code, const char *fmt, ...) PSPACE_PRINTF(2, 3);

/** Maps an errno value to a pspace code (ENOSPC -> EFULL, ENOMEM, ENOENT...). */
int pspace_err_from_errno(int e);

#endif
