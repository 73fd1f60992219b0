/*
 * Internal: large working buffers (a build's batch of gradient rows, its
 * accumulators) backed by transparent huge pages where the kernel allows
 * them: a 1 GiB buffer is then paged in with 512 faults instead of 262144
 * (Linux THP in "madvise" mode gives huge pages only to advised ranges).
 */
#ifndef PSPACE_SRC_COMMON_MEM_H
#define PSPACE_SRC_COMMON_MEM_H

#include <stddef.h>

/**
 * @p bytes aligned to a cache line (64 bytes); from 4 MiB on, 2 MiB
 * aligned and advised MADV_HUGEPAGE (advice that fails is ignored). NULL
 * when out of memory. Free with free().
 */
void *pspace_alloc_big(size_t bytes);

#endif
