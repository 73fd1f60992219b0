/*
 * Internal: the streaming engine. Walks the tiles of stored tiled matrices
 * (Dense, BlockDiag) in streaming order (the order of the file), decodes
 * them on a pool of worker threads (raw tiles are used in place from the
 * memory map) and hands each to a kernel. Working memory is bounded by
 * ex->mem_budget, independent of d: a bounded queue of tiles in flight and
 * per-worker scratch of O(tile^2 + tile * k).
 */
#ifndef PSPACE_SRC_KERNEL_STREAM_H
#define PSPACE_SRC_KERNEL_STREAM_H

#include "pspace/common.h"
#include "pspace/store.h"

/** A stored tiled matrix as the engine sees it. */
typedef struct pspace_tiled {
	pspace_store *s;
	pspace_matrix_info info;
	uint64_t *block_dim; /**< info.nblocks entries */
	uint64_t *block_off; /**< global index of each block's first row */
} pspace_tiled;

/** Reads the catalog record and block dims of complete matrix @p name. */
int pspace_tiled_open(pspace_tiled *t, pspace_store *s, const char *name);
/** Frees what pspace_tiled_open allocated; a zeroed struct is accepted. */
void pspace_tiled_close(pspace_tiled *t);
/** Number of stored tiles a full pass reads (symmetric: upper triangle). */
uint64_t pspace_tiled_count(const pspace_tiled *t);

/** One decoded tile handed to a kernel. */
typedef struct pspace_stream_tile {
	uint32_t block, row, col; /**< tile address */
	uint64_t r0, c0;          /**< global row / column of element (0,0) */
	uint32_t rows, cols;
	pspace_dtype dtype; /**< PSPACE_F32 or PSPACE_F64: type of data */
	const void *data;   /**< rows x cols, row-major, ld = cols; NULL = zero tile */
	int mirrored;       /**< symmetric and row != col: also stands for its transpose
	                         at (c0, r0) */
} pspace_stream_tile;

/**
 * A kernel: callbacks run on the worker threads. Each worker has its own
 * state of worker_size bytes (zeroed, then worker_init). tile() is called
 * concurrently on different workers with different tiles; finish() runs
 * once per worker, serially, after the last tile (merge results there).
 */
typedef struct pspace_stream_kernel {
	size_t worker_size;
	int (*worker_init)(void *ws, void *ud);
	/** @p tiles: one per matrix of the pass (pspace_stream_multi), same address. */
	int (*tile)(void *ws, void *ud, const pspace_stream_tile *tiles);
	int (*finish)(void *ws, void *ud);
	void (*worker_free)(void *ws, void *ud);
	/** Decode type: PSPACE_F32, PSPACE_F64, or 0 = f64 for f64 tiles, f32 otherwise. */
	pspace_dtype want;
	/** Visit only diagonal tiles (row == col) of each block (looked up, not walked). */
	int diagonal_only;
} pspace_stream_kernel;

/** One pass over the tiles of @p t. @return 0 or the first error (detail names the tile). */
int pspace_stream_run(const pspace_tiled *t, const pspace_exec *ex, const pspace_stream_kernel *k,
                      void *ud);

/**
 * One pass over @p n matrices with the same blocks, tile edge and symmetry,
 * reading each tile of each matrix once: tile() receives n tiles of the
 * same address (a tile absent from one matrix comes with data NULL).
 * @return PSPACE_EDIM when the tilings differ.
 */
int pspace_stream_multi(const pspace_tiled *const *t, size_t n, const pspace_exec *ex,
                        const pspace_stream_kernel *k, void *ud);

/* ---- kernels on top of the engine --------------------------------------- */

/** Y += alpha M X, k right-hand sides ((k, d) row-major), one pass; a mirrored
 * tile serves both of its products from one read. */
int pspace_stream_mm(const pspace_tiled *t, const pspace_exec *ex, uint32_t k, double alpha,
                     const double *X, size_t ldx, double *Y, size_t ldy);
/**
 * Y += sum_i alpha[i] M_i X for @p n matrices of the same tiling
 * (pspace_stream_multi), k right-hand sides, in one pass that reads each
 * tile of each matrix once. @return 0, PSPACE_EDIM, or the first error.
 */
int pspace_stream_mm_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                           const pspace_exec *ex, uint32_t k, const double *X, size_t ldx,
                           double *Y, size_t ldy);
/** out[0..d) = diag(M) (diagonal tiles only). */
int pspace_stream_diag(const pspace_tiled *t, const pspace_exec *ex, double *out);
/** *out = trace(M) (diagonal tiles only). */
int pspace_stream_trace(const pspace_tiled *t, const pspace_exec *ex, double *out);
/** *out = ||M||_F^2 (mirrored tiles count twice). */
int pspace_stream_frob2(const pspace_tiled *t, const pspace_exec *ex, double *out);
/**
 * Writes block @p block (or the whole matrix when block == UINT32_MAX) as a
 * dense row-major array with leading dimension ld, both triangles filled.
 */
int pspace_stream_dense(const pspace_tiled *t, const pspace_exec *ex, uint32_t block, double *out,
                        size_t ld);

#endif
