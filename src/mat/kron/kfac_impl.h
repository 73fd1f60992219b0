/*
 * Internal: the KFAC matrix, shared by kfac.c (construction, products,
 * reductions, persistence, the table), kfac_solve.c (damped solve, factor
 * powers) and eigen.c (factor eigendecompositions, eigenpairs, KFAC ->
 * EKFAC). Each file uses only the ones after it in that list (kron.h).
 */
#ifndef PSPACE_SRC_MAT_KRON_KFAC_IMPL_H
#define PSPACE_SRC_MAT_KRON_KFAC_IMPL_H

#include <pthread.h>

#include "mat/kron/kron.h"

typedef struct pspace_kfac {
	pspace_mat base;
	size_t n;
	pspace_kron_layer *geo;
	double **R, **C;   /* per layer: row factor (nr entries when rdiag), column factor */
	double *trR, *trC; /* their traces */
	int sym;           /* every factor exactly symmetric */
	pspace_kfac_damping mode;
	pthread_mutex_t lock;
	int eig_ok; /* UR (NULL when rdiag), UC, sR, sC valid */
	double **UR, **UC, **sR, **sC;
	int chol_ok; /* LR, LC are the Cholesky factors for (chol_damp, chol_mode) */
	double chol_damp;
	pspace_kfac_damping chol_mode;
	double **LR, **LC; /* LR: the damped diagonal when rdiag */
} pspace_kfac;

static inline pspace_kfac *pspace_kfac_of(pspace_mat *m)
{
	return (pspace_kfac *)m;
}

/* ---- eigen.c --------------------------------------------------------------------- */

/**
 * Computes the factor eigendecompositions once (per layer UR, NULL for a
 * diagonal row factor, UC, sR, sC, ascending); afterwards they stay valid
 * and unchanged while @p f lives, on @p threads threads (>= 1; several
 * factors at once). Takes @p f's lock. ENOTSUP when the factors are not
 * symmetric (a product of KFACs).
 */
int pspace_kfac_eigen(pspace_kfac *f, int threads);
/** pspace_kfac_eigen() for a caller that holds @p f's lock. */
int pspace_kfac_eigen_locked(pspace_kfac *f, int threads);
/**
 * The layer blocks' eigenvalues W[l] = sR sC^T (nr x nc) into new arrays
 * (free with pspace_kron_free_ptrs); the eigendecompositions must exist.
 */
int pspace_kfac_eig_products(const pspace_kfac *f, double ***W);
/** pspace_kfac_eigen(), then pspace_kfac_eig_products(): *W NULL on failure. */
int pspace_kfac_eig_weights(pspace_kfac *f, int threads, double ***W);
/**
 * A new EKFAC with @p f's eigenbases and factor eigenvalues and the
 * diagonal @p S (nr x nc per layer, copied; NULL: sR sC^T, equal to @p f),
 * not updated, exact damping. The eigendecompositions must exist.
 */
int pspace_kfac_to_ekfac(pspace_mat **out, const pspace_kfac *f, const double *const *S);
/* Table entries. */
int pspace_kfac_eig_impl(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals,
                         double *evecs, size_t ld);
int pspace_kfac_eigvals_impl(pspace_mat *m, const pspace_exec *ex, double *evals);

/* ---- kfac_solve.c ------------------------------------------------------------------ */

/** Table entry: X = (M + damping I)^{-1} B, damped as f->mode says. */
int pspace_kfac_solve_impl(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                           const double *B, size_t ldb, double *X, size_t ldx);
/* Table entries: log det, diag of the inverse, square roots of M + damping I, damped as f->mode
 * says. */
int pspace_kfac_logdet_impl(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
int pspace_kfac_diaginv_impl(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
int pspace_kfac_sqrt_mm_impl(pspace_mat *m, const pspace_exec *ex, double damping, int cov,
                             uint32_t k, const double *Z, size_t ldz, double *X, size_t ldx);
/**
 * Factor arrays of (M + damping I)^p for PI / SQRT damping: per layer
 * (R + cr I)^p and (C + cc I)^p, new (free with pspace_kron_free_ptrs).
 */
int pspace_kfac_pow_factors(pspace_kfac *f, double p, double damping, double ***R, double ***C);
/**
 * (M + damping I)^p for exact damping: not a Kronecker product, so a new
 * EKFAC with diagonal (sR sC^T + damping)^p.
 */
int pspace_kfac_pow_exact(pspace_kfac *f, double p, double damping, pspace_mat **out);

#endif
