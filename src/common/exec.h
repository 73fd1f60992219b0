/*
 * Internal: execution settings with their defaults filled in.
 */
#ifndef PSPACE_SRC_COMMON_EXEC_H
#define PSPACE_SRC_COMMON_EXEC_H

#include "pspace/common.h"

/** Default working-memory budget: 1 GiB. */
#define PSPACE_DEFAULT_MEM_BUDGET ((size_t)1 << 30)

/**
 * Resolves the execution settings (@p in may be NULL): threads >= 1 (0 =
 * the online cores), mem_budget > 0 (0 = PSPACE_DEFAULT_MEM_BUDGET).
 */
void pspace_exec_resolve(const pspace_exec *in, pspace_exec *out);

#endif
