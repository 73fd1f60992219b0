/*
 * QuasiDiag's eigendecomposition: one (in + 1) x (in + 1) arrowhead block
 * per neuron of a layer with a bias (LAPACK dsyevd), the diagonal entries
 * of the other parameters as they are.
 */
#include <lapacke.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/exec.h"
#include "mat/quasidiag_impl.h"

/* One eigenvalue and where it came from. */
typedef struct eigent {
	double v;
	uint64_t block; /* neuron block number, or UINT64_MAX for a diagonal entry */
	uint64_t idx;   /* index inside the block (ascending LAPACK order), or the parameter */
} eigent;

/* Numbering of blocks: layers in order, neurons in order, biased layers only. */
typedef struct blockpos {
	size_t layer;
	uint64_t o;
} blockpos;

/* Fills A (n x n, n = in + 1) with neuron o's arrowhead block. */
static void arrow_block(quasidiag *q, const geom *g, size_t l, uint64_t o, double *A)
{
	uint64_t n = g->in + 1;

	memset(A, 0, n * n * sizeof(*A));
	for (uint64_t j = 0; j < g->in; j++) {
		A[j * n + j] = q->diag[g->off + o * g->in + j];
		A[j * n + g->in] = A[g->in * n + j] = q->cross[l][o * g->in + j];
	}
	A[g->in * n + g->in] = q->diag[g->boff + o];
}

static int block_eig(const geom *g, uint64_t o, double *A, double *w, char jobz)
{
	lapack_int n = (lapack_int)(g->in + 1);
	lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz, 'U', n, A, n, w);

	if (info != 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "layer %s: quasidiag eig: LAPACKE_dsyevd failed (info %d) "
		                      "on neuron %llu",
		                      g->L->name, (int)info, (unsigned long long)o);
	return 0;
}

static int cmp_eigent(const void *pa, const void *pb)
{
	const eigent *a = pa, *b = pb;

	if (a->v != b->v)
		return (a->v < b->v) - (a->v > b->v);
	if (a->block != b->block)
		return (a->block > b->block) - (a->block < b->block);
	return (a->idx > b->idx) - (a->idx < b->idx);
}

static int cmp_by_block(const void *pa, const void *pb, void *ud)
{
	const eigent *e = ud;
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

	if (e[a].block != e[b].block)
		return (e[a].block > e[b].block) - (e[a].block < e[b].block);
	return (a > b) - (a < b);
}

/*
 * All d eigenvalues with their origin, sorted decreasing. Checks that the
 * largest block (and its workspace) fits the memory budget.
 */
static int all_eigs(pspace_mat *m, const pspace_exec *ex, eigent **outp, blockpos **posp)
{
	quasidiag *q = qd_of(m);
	eigent *e = malloc((m->d ? m->d : 1) * sizeof(*e));
	blockpos *pos = NULL;
	double *A = NULL, *w = NULL;
	uint64_t nblocks = 0, maxn = 1, t = 0, b = 0;
	pspace_exec x;
	int rc = 0;

	pspace_exec_resolve(ex, &x);
	*outp = NULL;
	*posp = NULL;
	for (size_t l = 0; l < q->nlayers; l++)
		if (q->cross[l]) {
			geom g;

			geom_of(m, l, &g);
			nblocks += g.out;
			if (g.in + 1 > maxn)
				maxn = g.in + 1;
			/* dsyevd with vectors: A, w and ~ 1 + 6n + 2n^2 doubles of work. */
			if ((double)(3 * (g.in + 1) * (g.in + 1) + 8 * (g.in + 1)) *
			        sizeof(double) >
			    (double)x.mem_budget) {
				free(e);
				return pspace_err_set(
				    PSPACE_ENOTSUP,
				    "layer %s: quasidiag eig: neuron blocks of %llu "
				    "exceed the memory budget of %zu bytes",
				    g.L->name, (unsigned long long)(g.in + 1), x.mem_budget);
			}
		}
	pos = malloc((nblocks ? nblocks : 1) * sizeof(*pos));
	A = malloc(maxn * maxn * sizeof(*A));
	w = malloc(maxn * sizeof(*w));
	if (!e || !pos || !A || !w) {
		rc = pspace_err_set(PSPACE_ENOMEM, "quasidiag eig: out of memory");
		goto out;
	}
	for (size_t l = 0; l < q->nlayers; l++) {
		geom g;

		geom_of(m, l, &g);
		if (!q->cross[l]) {
			for (uint64_t i = 0; i < g.L->size; i++)
				e[t++] = (eigent){q->diag[g.off + i], UINT64_MAX, g.off + i};
			continue;
		}
		for (uint64_t o = 0; o < g.out; o++, b++) {
			pos[b] = (blockpos){l, o};
			arrow_block(q, &g, l, o, A);
			rc = block_eig(&g, o, A, w, 'N');
			if (rc != 0)
				goto out;
			for (uint64_t j = 0; j <= g.in; j++)
				e[t++] = (eigent){w[j], b, j};
		}
	}
	qsort(e, m->d, sizeof(*e), cmp_eigent);
	*outp = e;
	*posp = pos;
	e = NULL;
	pos = NULL;
out:
	free(w);
	free(A);
	free(pos);
	free(e);
	return rc;
}

int pspace_qd_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	eigent *e;
	blockpos *pos;
	int rc = all_eigs(m, ex, &e, &pos);

	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < m->d; i++)
		evals[i] = e[i].v;
	free(pos);
	free(e);
	return 0;
}

/*
 * Top k: the eigenvalues of every block first, then the eigenvectors of
 * only the blocks that hold one of the k largest (computed again with
 * vectors), so memory stays O(d + block^2).
 */
int pspace_qd_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                  size_t ld)
{
	quasidiag *q = qd_of(m);
	eigent *e = NULL;
	blockpos *pos = NULL;
	double *A = NULL, *w = NULL;
	uint32_t *ord = NULL;
	uint64_t maxn = 1, last = UINT64_MAX;
	geom g = {0};
	int rc = all_eigs(m, ex, &e, &pos);

	if (rc != 0)
		return rc;
	for (uint32_t t = 0; t < k; t++)
		evals[t] = e[t].v;
	if (!evecs)
		goto out;
	for (size_t l = 0; l < q->nlayers; l++) {
		geom_of(m, l, &g);
		if (q->cross[l] && g.in + 1 > maxn)
			maxn = g.in + 1;
	}
	A = malloc(maxn * maxn * sizeof(*A));
	w = malloc(maxn * sizeof(*w));
	ord = malloc(k * sizeof(*ord));
	if (!A || !w || !ord) {
		rc = pspace_err_set(PSPACE_ENOMEM, "quasidiag eig: out of memory");
		goto out;
	}
	/* Grouped by block, so a block holding several is decomposed once. */
	for (uint32_t t = 0; t < k; t++)
		ord[t] = t;
	qsort_r(ord, k, sizeof(*ord), cmp_by_block, e);
	for (uint32_t i = 0; i < k; i++) {
		uint32_t t = ord[i];
		double *v = evecs + (size_t)t * ld;
		uint64_t b = e[t].block, n;

		memset(v, 0, m->d * sizeof(*v));
		if (b == UINT64_MAX) {
			v[e[t].idx] = 1.0;
			continue;
		}
		if (b != last) {
			geom_of(m, pos[b].layer, &g);
			arrow_block(q, &g, pos[b].layer, pos[b].o, A);
			rc = block_eig(&g, pos[b].o, A, w, 'V');
			if (rc != 0)
				goto out;
			last = b;
		}
		/* Column idx of the column-major A is the eigenvector. */
		n = g.in + 1;
		for (uint64_t j = 0; j < g.in; j++)
			v[g.off + pos[b].o * g.in + j] = A[e[t].idx * n + j];
		v[g.boff + pos[b].o] = A[e[t].idx * n + g.in];
	}
out:
	free(ord);
	free(w);
	free(A);
	free(pos);
	free(e);
	return rc;
}
