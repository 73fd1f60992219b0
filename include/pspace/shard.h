/*
 * pspace/shard.h - sharded stores: a Dense or BlockDiag matrix cut into
 * contiguous ranges of tile rows, each range held by one rank in its own
 * ordinary store (STORE/shard-R-of-P/), with a manifest in every shard.
 *
 * The core library knows no message passing: a caller that runs several
 * ranks (libpspace_mpi, pspace/mpi.h) gives each rank's store a sum hook.
 * The stored tiled matrices of that store then add their contribution to
 * every product, trace, diagonal and norm across the ranks through it, so
 * every operator above (Lanczos, CG, Hutchinson, expressions) runs
 * unchanged with its vectors replicated on every rank.
 *
 * Threads: pspace_store_set_shard() before the store is used by several
 * threads; the hook is called from the thread that evaluates.
 */
#ifndef PSPACE_SHARD_H
#define PSPACE_SHARD_H

#include "pspace/common.h"
#include "pspace/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the manifest this pspace writes (and the only one it reads). */
#define PSPACE_SHARD_VERSION 1

/** Name of the small array holding a sharded matrix's manifest (README, "Sharded stores"). */
#define PSPACE_SHARD_ARRAY "pspace.shard"

/** Most ranks a manifest may name. */
#define PSPACE_SHARD_MAX 65536

/** What a rank's store needs to take part in a sharded evaluation. */
typedef struct pspace_shard_hooks {
	uint32_t rank;   /**< this rank, 0 .. nranks - 1 */
	uint32_t nranks; /**< ranks of the sharded store */
	/**
	 * Sums the @p n doubles of @p buf over the ranks, in place, giving every
	 * rank the same bits. Every rank calls it at the same point of an
	 * evaluation, with @p rc its own result so far (on failure @p buf is zero
	 * and the thread's error detail says why): @return 0 when every rank had
	 * 0, else on every rank the error of the lowest failed rank, with its
	 * detail (pspace_errdetail_set), so that all ranks fail alike.
	 */
	int (*sum)(void *ud, double *buf, size_t n, int rc);
	void *ud; /**< passed to sum; owned by the caller */
} pspace_shard_hooks;

/**
 * Makes @p s one rank's shard of a sharded store: its stored tiled
 * matrices must then carry a manifest of h->nranks ranks naming rank
 * h->rank, and reduce their contributions with h->sum. A copy of @p h is
 * kept; NULL removes the hooks. @return 0 or PSPACE_EINVAL.
 */
PSPACE_API int pspace_store_set_shard(pspace_store *s, const pspace_shard_hooks *h);

/** @return the hooks of @p s (borrowed, valid while it is open), or NULL if it has none. */
PSPACE_API const pspace_shard_hooks *pspace_store_shard(const pspace_store *s);

/** A sharded matrix's manifest, as stored in each shard. */
typedef struct pspace_shard_info {
	uint32_t version;   /**< PSPACE_SHARD_VERSION */
	uint32_t nranks;    /**< P */
	uint32_t rank;      /**< the rank whose shard this is */
	uint32_t tile;      /**< tile edge */
	uint64_t tile_rows; /**< tile rows of the whole matrix, its blocks one after another */
	uint64_t tiles;     /**< stored tiles of the whole matrix (upper triangles) */
	uint64_t first;     /**< this rank's tile rows: [first, end) */
	uint64_t end;
} pspace_shard_info;

/**
 * Cuts the tile rows of a symmetric tiled matrix (blocks @p dims, @p nblocks
 * of them, one after another, tile edge @p tile) into @p nranks contiguous
 * ranges holding about as many stored (upper-triangle) tiles each: rank r
 * owns tile rows [bounds[r], bounds[r + 1]) (@p bounds has nranks + 1
 * entries). A rank may own none when there are fewer tile rows than ranks.
 * @return 0 or PSPACE_EINVAL.
 */
PSPACE_API int pspace_shard_bounds(uint64_t *bounds, uint32_t nranks, const uint64_t *dims,
                                   uint32_t nblocks, uint32_t tile);

/**
 * Reads the manifest of matrix @p name of @p s (complete or not) into
 * @p out and, when @p bounds is not NULL, the nranks + 1 range bounds of
 * every rank into it (@p cap entries at most).
 * @return 0, PSPACE_ENOTFOUND (no such matrix, or a matrix that is not
 * sharded), PSPACE_EVERSION, PSPACE_ECORRUPT (a malformed manifest),
 * PSPACE_EINVAL (cap too small).
 */
PSPACE_API int pspace_shard_info_get(pspace_shard_info *out, uint64_t *bounds, size_t cap,
                                     pspace_store *s, const char *name);

/**
 * The directory of shard @p rank of @p nranks of sharded store @p path:
 * "path/shard-R-of-P" into @p buf of @p cap bytes.
 * @return 0, or PSPACE_EINVAL when it does not fit.
 */
PSPACE_API int pspace_shard_path(char *buf, size_t cap, const char *path, uint32_t rank,
                                 uint32_t nranks);

/**
 * Looks for shard directories in @p path: *nranks = P when it holds
 * shard-R-of-P directories of one P (0 when it holds none), *present =
 * how many of the P it holds (on a cluster, a node's STORE holds its own
 * ranks' shards only). @p path missing is no shards.
 * @return 0, PSPACE_ECORRUPT (shards of several P), PSPACE_EIO.
 */
PSPACE_API int pspace_shard_scan(uint32_t *nranks, uint32_t *present, const char *path);

#ifdef __cplusplus
}
#endif
#endif
