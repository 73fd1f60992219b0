/*
 * pspace/build.h - building Fisher matrices of every representation from
 * gradient sources (pspace/source.h) into a store.
 *
 * Data is streamed in batches of examples, never held whole. F is
 * normalized by the total number of examples n, whatever the batch sizes.
 *
 * Threads: a build runs its own worker threads (o->exec.threads) and reads
 * its source from the calling thread. Builds may run from several threads
 * at once, each with its own source; builds into one store take turns at
 * its writer (pspace/store.h: one writer per store at a time).
 */
#ifndef PSPACE_BUILD_H
#define PSPACE_BUILD_H

#include "pspace/common.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/source.h"
#include "pspace/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What to build and how. */
typedef struct pspace_build_opts {
	pspace_kind kind;  /**< dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac, mixed */
	const char *mixed; /**< for PSPACE_KIND_MIXED: the per-layer choice, e.g.
	                        "linear,conv1d,conv2d=ekfac;*=blockdiag" (README) */
	pspace_write_opts write; /**< tiles of Dense/BlockDiag: codec, tile edge */
	pspace_exec exec;        /**< threads and memory budget */
	uint64_t batch;          /**< examples per batch read from the source; 0 = auto */
	int resume;              /**< resume an interrupted Dense/BlockDiag build */
	/** Progress, if not NULL: (done, total) in units of work the builder chooses. */
	void (*progress)(void *ud, const char *stage, uint64_t done, uint64_t total);
	void *progress_ud;
	/**
	 * Sharded Dense/BlockDiag (pspace/shard.h): with shard_count > 0, write
	 * only the tiles of rank shard_rank's tile rows (pspace_shard_bounds),
	 * reading only the columns they need, and the manifest. Other kinds
	 * ignore them. 0: the whole matrix.
	 */
	uint32_t shard_rank, shard_count;
} pspace_build_opts;

/** Fills @p o with the defaults (dense, store tile defaults, all cores, 1 GiB). */
PSPACE_API void pspace_build_opts_default(pspace_build_opts *o);

/**
 * Builds matrix @p name of kind o->kind in @p s from Jacobian rows.
 * Dense and BlockDiag are built out of core when they exceed
 * o->exec.mem_budget: the source is read once per band of tile rows that
 * fits the budget and every tile is written once (a symmetric rank-k update
 * on BLIS kernels). The whole build is transactional: until it completes,
 * the matrix is reported incomplete. KFAC needs layer tensors
 * (PSPACE_ENOTSUP here). EKFAC: the diagonal update of the existing EKFAC
 * matrix @p name (built from layer tensors) from the exact per-example
 * gradients the rows are; the updated matrix replaces it.
 */
PSPACE_API int pspace_build_jacobian(pspace_store *s, const char *name, const pspace_layout *layout,
                                     const pspace_jac_source *src, const pspace_build_opts *o);

/**
 * Builds matrix @p name from layer tensors: KFAC, EKFAC (factors, their
 * eigendecomposition, then the diagonal update in a second pass over the
 * source), and Dense, BlockDiag, Diag, QuasiDiag, LowRank from the
 * per-example gradients the tensors define (sum_t g_t [a_t; 1]^T).
 * Layers without layer tensors (norm, generic) come as Jacobian rows in
 * the batches (pspace_layer_batch.rows): every kind but KFAC and EKFAC
 * takes them, and a Mixed gives them any part but kfac/ekfac (so a model
 * with norm layers gets KFAC for its other layers). @return 0, or
 * PSPACE_ENOTSUP naming the layer when KFAC/EKFAC is asked of a layer
 * without tensors, or the source's or the build's error.
 */
PSPACE_API int pspace_build_layers(pspace_store *s, const char *name, const pspace_layout *layout,
                                   const pspace_layer_source *src, const pspace_build_opts *o);

#ifdef __cplusplus
}
#endif
#endif
