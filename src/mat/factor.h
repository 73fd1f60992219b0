/*
 * Internal: stored Cholesky factors (factor.c writes them, factor_solve.c
 * finds and applies them) as the stored kinds use them.
 */
#ifndef PSPACE_SRC_MAT_FACTOR_H
#define PSPACE_SRC_MAT_FACTOR_H

#include "pspace/common.h"
#include "pspace/store.h"

/**
 * Reads the source catalog id and damping recorded with the factor open
 * in @p r. @return 0, PSPACE_ENOTSUP (not a Cholesky factor) or a store error.
 */
int pspace_factor_params(uint64_t *source_id, double *damping, pspace_reader *r);

/**
 * Copies into @p out (@p cap bytes) the name of a complete factor of the
 * matrix with catalog id @p source_id and exactly damping @p damping.
 * @return 0 or PSPACE_ENOTFOUND (or a store error).
 */
int pspace_factor_lookup(char *out, size_t cap, pspace_store *s, uint64_t source_id,
                         double damping);

/** What pspace_factor_sweep() applies to the k columns of X. */
typedef enum pspace_sweep {
	PSPACE_SWEEP_SOLVE_L = 1,  /**< X <- L^-1 X (forward, in file order) */
	PSPACE_SWEEP_SOLVE_LT = 2, /**< X <- L^-T X (backward) */
	PSPACE_SWEEP_MUL_L = 3,    /**< X <- L X (backward) */
} pspace_sweep;

/**
 * Applies @p what to X ((k, d) row-major, leading dimension ldx) with the
 * factor open in @p r: one pass over its tiles for all k vectors.
 */
int pspace_factor_sweep(pspace_reader *r, const pspace_exec *ex, pspace_sweep what, uint32_t k,
                        double *X, size_t ldx);

#endif
