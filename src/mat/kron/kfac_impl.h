/*
 * Internal: the KFAC matrix, shared by kfac.c (construction, products,
 * reductions, persistence) and kfac_solve.c (eigendecompositions, damped
 * solve, powers).
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

/* Names of the row and column factors in messages and array names. */
static inline const char *pspace_kfac_rname(const pspace_kron_layer *g)
{
	return g->rdiag ? "A" : "G";
}

static inline const char *pspace_kfac_cname(const pspace_kron_layer *g)
{
	return g->rdiag ? "G" : "A";
}

/**
 * A new KFAC on @p layout taking ownership of the per-layer factor arrays
 * R and C (freed on failure too), with damping @p mode.
 */
int pspace_kfac_new(pspace_mat **out, const pspace_layout *layout, double **R, double **C,
                    pspace_kfac_damping mode, pspace_store *s, const char *name);

/* Work buffers for chunks of vectors: two (nr, kc, nc) arrays of the largest layer. */
int pspace_kfac_work(const pspace_kfac *f, const pspace_exec *ex, uint32_t k, uint32_t *kc,
                     double **B, double **T);

/* The vtable entries in kfac_solve.c. */
int pspace_kfac_solve_impl(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                           const double *B, size_t ldb, double *X, size_t ldx);
int pspace_kfac_pow_impl(pspace_mat *m, double p, double damping, pspace_mat **out);
int pspace_kfac_eig_impl(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals,
                         double *evecs, size_t ld);
int pspace_kfac_eigvals_impl(pspace_mat *m, const pspace_exec *ex, double *evals);

#endif
