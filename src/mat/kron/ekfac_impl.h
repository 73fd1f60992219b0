/*
 * Internal: the EKFAC matrix, shared by ekfac.c (construction, products,
 * reductions, persistence) and ekfac_update.c (the diagonal update); eigen.c
 * builds EKFACs from KFACs with pspace_ekfac_build().
 */
#ifndef PSPACE_SRC_MAT_KRON_EKFAC_IMPL_H
#define PSPACE_SRC_MAT_KRON_EKFAC_IMPL_H

#include <pthread.h>

#include "mat/kron/kron.h"

typedef struct pspace_ekfac {
	pspace_mat base;
	size_t n;
	pspace_kron_layer *geo;
	double **UR, **UC; /* eigenbases; UR[l] NULL for a diagonal row factor */
	double **sR, **sC; /* factor eigenvalues */
	double **S;        /* nr x nc diagonal in the eigenbasis */
	int updated;
	pspace_kfac_damping mode;
	double **acc; /* update accumulator between begin and end, else NULL */
	/* (S + damping)^-1 of the last solve, kept for the next one: a CG
	 * preconditioner solves with the same damping every iteration. */
	pthread_mutex_t lock;
	double **inv;
	double inv_damping;
	pspace_kfac_damping inv_mode;
} pspace_ekfac;

/**
 * A new EKFAC on @p layout from per-layer eigenbases (copied): UR[l]
 * (nr x nr, NULL for a diagonal row factor), UC[l] (nc x nc), factor
 * eigenvalues sR[l] (nr), sC[l] (nc), and diagonal S[l] (nr x nc; NULL:
 * sR sC^T).
 */
int pspace_ekfac_build(pspace_mat **out, const pspace_layout *layout, const double *const *UR,
                       const double *const *UC, const double *const *sR, const double *const *sC,
                       const double *const *S, int updated, pspace_kfac_damping mode);

/** Drops the cached inverse (S or the damping mode changed). */
void pspace_ekfac_drop_inverse(pspace_ekfac *e);

/** 0 if @p m is an EKFAC, else PSPACE_EINVAL naming @p fn. */
int pspace_ekfac_check(const pspace_mat *m, const char *fn);

/* Work buffers for chunks of vectors: two (nr, kc, nc) arrays of the largest layer. */
int pspace_ekfac_work(const pspace_ekfac *e, const pspace_exec *ex, uint32_t k, uint32_t *kc,
                      double **B, double **T);

#endif
