/*
 * Internal: writing a sharded matrix's manifest (src/store/shard.c; the
 * rest of sharded stores is public, pspace/shard.h).
 */
#ifndef PSPACE_SRC_STORE_SHARD_H
#define PSPACE_SRC_STORE_SHARD_H

#include "pspace/shard.h"

/**
 * Stores the manifest of rank @p rank of @p nranks under the matrix of
 * @p w: the ranges pspace_shard_bounds() gives for blocks @p dims
 * (@p nblocks) at tile edge @p tile. @return 0 or a store error.
 */
int pspace_shard_manifest_put(pspace_writer *w, uint32_t rank, uint32_t nranks,
                              const uint64_t *dims, uint32_t nblocks, uint32_t tile);

#endif
