/*
 * Internal: passes over a stored row matrix, an r x d matrix D held as the
 * first ceil(r / E) tile rows of a one-block, non-symmetric tiling of d
 * (E = tile edge; LowRank's rows, r <= d). Rows of the last tile row beyond
 * r are padding (stored zeros) and never read into a result. The tiles lie
 * in streaming order, a tile row at a time along d, so the row passes read
 * the file sequentially; the strip pass (all tile rows of one column strip
 * at a time) looks its tiles up.
 */
#ifndef PSPACE_SRC_KERNEL_ROWMAT_H
#define PSPACE_SRC_KERNEL_ROWMAT_H

#include "kernel/stream.h"

/**
 * Checks that @p t can hold @p r rows as a row matrix: one block, not
 * symmetric, 0 < r <= d. @return 0 or PSPACE_ECORRUPT naming the matrix.
 */
int pspace_rowmat_check(const pspace_tiled *t, uint64_t r);

/**
 * U = X D^T: U[j * r + i] = D_i . X_j for k vectors X ((k, d), ld @p ldx),
 * one pass (U is overwritten; k x r doubles per worker).
 * @return 0 or the first error (detail names the tile).
 */
int pspace_rowmat_project(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, uint32_t k,
                          const double *X, size_t ldx, double *U);

/**
 * Y += alpha U D: Y_j += alpha sum_i U[j * r + i] D_i for k vectors
 * ((k, d), ld @p ldy), one pass.
 */
int pspace_rowmat_expand(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, uint32_t k,
                         double alpha, const double *U, double *Y, size_t ldy);

/**
 * One pass: rowsq[i] = ||D_i||^2 (r entries) and colsq[p] = sum_i D_ip^2
 * (d entries); either may be NULL.
 */
int pspace_rowmat_sumsq(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, double *rowsq,
                        double *colsq);

/**
 * Called with the columns [c0, c0 + cols) of D as doubles: S is r x cols,
 * row-major, ld = cols (valid during the call). @return 0 or an error,
 * which stops the pass.
 */
typedef int (*pspace_rowmat_strip_fn)(void *ud, uint64_t c0, uint32_t cols, const double *S);

/**
 * One pass over the column strips of D (one tile column each, left to
 * right), each decoded whole: @p fn sees all r rows of it. Memory: a strip
 * of (r + E) x E doubles. @return 0, PSPACE_ENOMEM, or the first error.
 */
int pspace_rowmat_strips(const pspace_tiled *t, uint64_t r, const pspace_exec *ex,
                         pspace_rowmat_strip_fn fn, void *ud);

/** D as doubles into @p D (r x d, row-major, ld = d), one pass. */
int pspace_rowmat_read(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, double *D);

#endif
