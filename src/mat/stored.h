/*
 * Internal: what the stored (tiled) kinds, Dense and BlockDiag, share:
 * the handle on the streaming engine, the operations that only forward to
 * it, the direct block solve, writing tiles, and the stored products.
 */
#ifndef PSPACE_SRC_MAT_STORED_H
#define PSPACE_SRC_MAT_STORED_H

#include <stdio.h>

#include "kernel/stream.h"
#include "mat/mat_impl.h"

/** Formats a byte count for messages ("3.2 MiB", "200 bytes"); @return @p buf. */
static inline const char *pspace_fmt_bytes(char *buf, size_t cap, uint64_t n)
{
	if (n >= ((uint64_t)1 << 20))
		snprintf(buf, cap, "%.1f MiB", (double)n / (1024.0 * 1024.0));
	else if (n >= 1024)
		snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
	else
		snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
	return buf;
}

/** A stored tiled matrix: the base, then the engine's view of it. */
typedef struct pspace_stored {
	pspace_mat base;
	pspace_tiled t;
} pspace_stored;

/** @return the stored matrix behind @p m (its kind must be Dense or BlockDiag). */
static inline pspace_stored *pspace_stored_of(pspace_mat *m)
{
	return (pspace_stored *)m;
}

/**
 * Opens stored matrix @p info with the table @p vt: the engine's handle
 * and the layout recorded in the catalog (a flat one if none). Checks that
 * there is one block when vt->single_block is set (Dense), else that the
 * blocks are the layers of the layout (BlockDiag).
 * @return 0, PSPACE_ECORRUPT, PSPACE_ENOMEM or a store error.
 */
int pspace_stored_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info,
                       const pspace_mat_vtable *vt);
/** @return the engine's handle (vtable tiled). */
const pspace_tiled *pspace_stored_tiled(const pspace_mat *m);
/** Frees the engine's handle (vtable destroy). */
void pspace_stored_destroy(pspace_mat *m);

/* Operations forwarded to the streaming engine (vtable entries). */
int pspace_stored_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha,
                     const double *X, size_t ldx, double *Y, size_t ldy);
int pspace_stored_trace(pspace_mat *m, const pspace_exec *ex, double *out);
int pspace_stored_diag(pspace_mat *m, const pspace_exec *ex, double *out);
int pspace_stored_frob2(pspace_mat *m, const pspace_exec *ex, double *out);
/** The whole matrix, row-major, entries outside the blocks 0 (vtable dense). */
int pspace_stored_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld);

/**
 * Direct damped solve, block by block (Dense: one block): Cholesky, or
 * Bunch-Kaufman LDL^T when not positive definite (LU for a non-symmetric
 * product). @return PSPACE_ENOMEM when a block does not fit ex->mem_budget,
 * PSPACE_ENUMERIC when a block is singular.
 */
int pspace_stored_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                        const double *B, size_t ldb, double *X, size_t ldx);

/*
 * log det, diag of the inverse and square roots of M + damping I through
 * the Cholesky factor of each block, computed in memory (stored_chol.c;
 * vtable entries). PSPACE_ENOMEM when a block's n^2 doubles do not fit
 * ex->mem_budget, PSPACE_ENUMERIC when a block is not positive definite,
 * PSPACE_ENOTSUP for a stored product (not symmetric).
 */
int pspace_stored_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
int pspace_stored_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
int pspace_stored_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                          const double *Z, size_t ldz, double *X, size_t ldx);

/**
 * Writes a Dense or BlockDiag matrix with tiles from @p fn, as
 * pspace_tiled_write(), storing every tile when @p symmetric is 0.
 * On failure the partial matrix is removed.
 */
int pspace_stored_write(pspace_store *s, const char *name, pspace_kind kind,
                        const pspace_layout *layout, int symmetric, pspace_tile_fn fn, void *ud,
                        const pspace_write_opts *opts,
                        void (*progress)(void *ud, uint64_t done, uint64_t total));

/** Dense x Dense, written out of core (vtable product_write of Dense). */
int pspace_dense_product_write(pspace_store *s, const char *name, pspace_mat *a, pspace_mat *b,
                               const pspace_exec *ex, const pspace_write_opts *opts);
/** BlockDiag x BlockDiag, block by block (vtable product_write of BlockDiag). */
int pspace_blockdiag_product_write(pspace_store *s, const char *name, pspace_mat *a, pspace_mat *b,
                                   const pspace_exec *ex, const pspace_write_opts *opts);

#endif
