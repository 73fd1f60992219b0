/*
 * Internal: the streaming engine. Walks the tiles of stored tiled matrices
 * (Dense, BlockDiag) in streaming order (the order of the file), decodes
 * them on a pool of worker threads (raw tiles are used in place from the
 * memory map) and hands each to a kernel. Working memory is bounded by
 * ex->mem_budget, independent of d: a bounded ring of tiles in flight and
 * per-worker scratch of O(tile^2 + tile * k).
 */
#ifndef PSPACE_SRC_KERNEL_STREAM_H
#define PSPACE_SRC_KERNEL_STREAM_H

#include "pspace/common.h"
#include "pspace/store.h"

#include "codec/crc32c.h"

/** A stored tiled matrix as the engine sees it. */
typedef struct pspace_tiled {
	pspace_store *s;
	pspace_matrix_info info;
	uint64_t *block_dim; /**< info.nblocks entries */
	uint64_t *block_off; /**< global index of each block's first row */
	/**
	 * One rank's part of a sharded matrix of more than one rank
	 * (pspace/shard.h): its contributions are summed over the ranks
	 * (kernel/shard.h) and passes visit only its tile rows.
	 */
	int sharded;
	uint64_t row_first, row_end; /**< sharded: its tile rows, blocks one after another */
	uint64_t *block_trow;        /**< sharded: each block's first tile row; else NULL */
} pspace_tiled;

/** @return 1 if a pass over @p t visits tile row @p row of block @p block (sharded: its own). */
static inline int pspace_tiled_owns(const pspace_tiled *t, uint32_t block, uint32_t row)
{
	uint64_t i;

	if (!t->block_trow)
		return 1;
	i = t->block_trow[block] + row;
	return i >= t->row_first && i < t->row_end;
}

/** Reads the catalog record and block dims of complete matrix @p name. */
int pspace_tiled_open(pspace_tiled *t, pspace_store *s, const char *name);
/** Frees what pspace_tiled_open allocated; a zeroed struct is accepted. */
void pspace_tiled_close(pspace_tiled *t);
/** Number of stored tiles a full pass reads (symmetric: upper triangle). */
uint64_t pspace_tiled_count(const pspace_tiled *t);
/**
 * @return 1 if @p a and @p b have the same tiling (d, blocks and their
 * dimensions, tile edge, symmetry), so that pspace_stream_multi() can read
 * them together; else 0.
 */
int pspace_tiled_same(const pspace_tiled *a, const pspace_tiled *b);

/** One decoded tile handed to a kernel. */
typedef struct pspace_stream_tile {
	uint32_t block, row, col; /**< tile address */
	uint64_t r0, c0;          /**< global row / column of element (0,0) */
	uint32_t rows, cols;
	pspace_dtype dtype; /**< PSPACE_F32 or PSPACE_F64: type of data */
	const void *data;   /**< rows x cols, row-major, ld = cols; NULL = zero tile */
	uint32_t prow;      /**< a row panel (kernel.panels): data starts at this row of the
	                         tile, global row r0 + prow; 0 for a whole tile */
	uint32_t tile_rows; /**< rows of the whole tile (== rows for a whole tile) */
	int mirrored;       /**< symmetric and row != col: also stands for its transpose
	                         at (c0, r0) */
	/**
	 * Not NULL (kernel.checksums_rows, a raw tile read in place, rows in
	 * fours of whole 64-byte chunks): the kernel folds every row of each
	 * panel into it, in order, as it reads them (crc32c.h); the engine
	 * checks the tile's checksum from it after the last panel.
	 */
	pspace_crc32c_rows *crc;
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
	/**
	 * Decode type: PSPACE_F32, PSPACE_F64, or 0 = f64 for f64 tiles, f32
	 * otherwise; with panels, also the matrix's stored type (its values as
	 * stored, e.g. bf16, without a conversion).
	 */
	pspace_dtype want;
	/** Visit only diagonal tiles (row == col) of each block (looked up, not walked). */
	int diagonal_only;
	/**
	 * tile() takes row panels: in a one-matrix pass, a tile may come as
	 * consecutive calls on one worker, prow = 0 first, each panel starting
	 * where the previous one ended, until prow + rows == tile_rows. The
	 * engine verifies the tile after the last panel; a mismatch fails the
	 * pass, so results must not be used before the pass returns.
	 */
	int panels;
	/** Bytes of a row panel (panels only); 0 = the engine's default, sized for L1. */
	size_t panel_bytes;
	/** With panels: tile() can checksum the rows it reads (pspace_stream_tile.crc). */
	int checksums_rows;
	/**
	 * The result does not depend on the order of the tiles (beyond
	 * rounding): out of core, the engine may then walk the file backwards,
	 * every other pass over a matrix, to begin where the page cache still
	 * holds the last pass's end.
	 */
	int any_order;
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
 * For C = sum_i alpha[i] M_i over @p n matrices of the same tiling, in one
 * pass reading each tile of each matrix once: *frob2 = ||C||_F^2 (mirrored
 * tiles count twice), *trace = tr(C) and, when @p diag is not NULL,
 * diag[0..d) = diag(C). Working memory: one tile of doubles per worker
 * beyond the engine's own. @return 0, PSPACE_EDIM, or the first error.
 */
int pspace_stream_frob2_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                              const pspace_exec *ex, double *frob2, double *trace, double *diag);
/**
 * Writes block @p block (or the whole matrix when block == UINT32_MAX) as a
 * dense row-major array with leading dimension ld, both triangles filled.
 */
int pspace_stream_dense(const pspace_tiled *t, const pspace_exec *ex, uint32_t block, double *out,
                        size_t ld);

/* ---- a pass whose tiles a consumer pulls ---------------------------------- */

/**
 * A pass over matrices of the same tiling that hands out the tiles of
 * C = sum_i alpha[i] M_i one at a time, in streaming order, to a caller
 * that asks for them (a writer filling a new matrix tile by tile). The
 * pass runs on a thread of its own, a few tiles ahead of the caller, and
 * reads each stored tile of each matrix once.
 */
typedef struct pspace_stream_pull pspace_stream_pull;

/**
 * Starts the pass over the @p n matrices @p t (same tiling), which must
 * stay open until pspace_stream_pull_free(); @p t and @p alpha are copied.
 * Memory: at most 4 tiles of doubles ahead, within ex->mem_budget, and the
 * engine's memory for one worker. @return 0, PSPACE_EDIM, PSPACE_ENOMEM.
 */
int pspace_stream_pull_start(pspace_stream_pull **out, const pspace_tiled *const *t, size_t n,
                             const double *alpha, const pspace_exec *ex);

/**
 * Fills @p tile (rows x cols of that address, ld = cols) with tile
 * (@p block, @p row, @p col) of C. Addresses must be asked for in
 * streaming order (block, row, col increasing); stored tiles that are
 * skipped are dropped, and an address stored in no matrix gives zeros.
 * @return 0 or the error of the pass (detail names the tile).
 */
int pspace_stream_pull_tile(pspace_stream_pull *p, uint32_t block, uint32_t row, uint32_t col,
                            double *tile);

/** Stops the pass if it still runs, waits for its thread and frees @p p; NULL is accepted. */
void pspace_stream_pull_free(pspace_stream_pull *p);

#endif
