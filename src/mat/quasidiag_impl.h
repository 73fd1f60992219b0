/*
 * Internal: QuasiDiag's state, shared by quasidiag.c (products, solves,
 * persistence) and quasidiag_eig.c (eigendecomposition).
 */
#ifndef PSPACE_SRC_MAT_QUASIDIAG_IMPL_H
#define PSPACE_SRC_MAT_QUASIDIAG_IMPL_H

#include "mat/mat_impl.h"

typedef struct quasidiag {
	pspace_mat base;
	double *diag; /* d entries */
	size_t nlayers;
	double **cross; /* per layer: out x in, NULL without bias */
} quasidiag;

static inline quasidiag *qd_of(pspace_mat *m)
{
	return (quasidiag *)m;
}

/* Layer @p i's neuron geometry: out neurons of in weights, parameters at off. */
typedef struct geom {
	const pspace_layer *L;
	uint64_t out, in, off, boff; /* boff: first bias parameter */
} geom;

static inline void geom_of(const pspace_mat *m, size_t i, geom *g)
{
	g->L = pspace_layout_layer(m->layout, i);
	g->out = g->L->shape[0];
	g->in = g->out ? g->L->weight_size / g->out : 0;
	g->off = g->L->offset;
	g->boff = g->off + g->L->weight_size;
}

/** All d eigenvalues, decreasing (the eigvals entry of QuasiDiag's table). */
int pspace_qd_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals);
/** The k largest eigenpairs (the eig entry of QuasiDiag's table). */
int pspace_qd_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                  size_t ld);

#endif
