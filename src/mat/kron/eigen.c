/*
 * KFAC's factor eigendecompositions and what is built on them: the exact
 * eigenpairs of a KFAC (eig, eigvals) and the conversion of a KFAC into an
 * EKFAC (its eigenbases, with S = sR sC^T or a given diagonal).
 *
 * The decompositions are computed once, on first use (exact damping, pow,
 * eig, EKFAC), under the matrix's mutex, and are immutable afterwards. The
 * factors are decomposed on several threads at once, each factor by one
 * single-threaded LAPACK call (pspace_kron_each): BLIS threads inside one
 * call would need its process-wide thread setting.
 */
#include <lapacke.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/ekfac_impl.h"
#include "mat/kron/kfac_impl.h"

/* U (column p = eigenvector p) and ascending s of the symmetric n x n M. */
static int syev(uint64_t n, const double *M, double *U, double *s, const char *who, const char *fac)
{
	lapack_int info;

	if (n == 0)
		return 0;
	memcpy(U, M, n * n * sizeof(*U));
	info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, U, (lapack_int)n, s);
	if (info < 0)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "layer %s: LAPACK dsyevd failed on factor %s (info %d)", who,
		                      fac, (int)info);
	if (info > 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "layer %s: eigendecomposition of factor %s did not converge "
		                      "(dsyevd info %d)",
		                      who, fac, (int)info);
	return 0;
}

/* Task 2 l (row factor) or 2 l + 1 (column factor) of pspace_kfac_eigen_locked(). */
static int eigen_task(void *ud, size_t i)
{
	pspace_kfac *f = ud;
	size_t l = i / 2;
	const pspace_kron_layer *g = &f->geo[l];

	if (i % 2 == 0)
		return g->rdiag ? 0
		                : syev(g->nr, f->R[l], f->UR[l], f->sR[l], g->name,
		                       pspace_kron_rname(g));
	return syev(g->nc, f->C[l], f->UC[l], f->sC[l], g->name, pspace_kron_cname(g));
}

int pspace_kfac_eigen_locked(pspace_kfac *f, int threads)
{
	uint64_t *size = NULL;
	size_t *order = NULL;
	int rc = 0;

	if (f->eig_ok)
		return 0;
	if (!f->sym)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "KFAC: the factors are not symmetric (a product of KFACs): "
		                      "no eigendecomposition");
	if (!f->UR) {
		f->UR = pspace_kron_new_ptrs(f->n);
		f->UC = pspace_kron_new_ptrs(f->n);
		f->sR = pspace_kron_new_ptrs(f->n);
		f->sC = pspace_kron_new_ptrs(f->n);
		if (!f->UR || !f->UC || !f->sR || !f->sC)
			return pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
	}
	size = calloc(2 * f->n + 1, sizeof(*size));
	order = calloc(2 * f->n + 1, sizeof(*order));
	if (!size || !order) {
		rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
		goto out;
	}
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		uint64_t nr = g->nr, nc = g->nc;

		f->sR[l] = pspace_kron_alloc(nr);
		f->UC[l] = pspace_kron_alloc(nc * nc);
		f->sC[l] = pspace_kron_alloc(nc);
		if (!g->rdiag)
			f->UR[l] = pspace_kron_alloc(nr * nr);
		if (!f->sR[l] || !f->UC[l] || !f->sC[l] || (!g->rdiag && !f->UR[l]))
			rc = pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", g->name);
		else if (g->rdiag)
			memcpy(f->sR[l], f->R[l], nr * sizeof(double));
		/* a diagonal row factor is its own decomposition: size 0 runs last */
		size[2 * l] = g->rdiag ? 0 : nr;
		size[2 * l + 1] = nc;
	}
	if (rc == 0) {
		/* the largest first, so that the last ones to finish are small */
		pspace_kron_order(2 * f->n, size, order);
		rc = pspace_kron_each(2 * f->n, order, threads, eigen_task, f);
	}
out:
	for (size_t l = 0; rc != 0 && l < f->n; l++) {
		free(f->sR[l]), f->sR[l] = NULL;
		free(f->UR[l]), f->UR[l] = NULL;
		free(f->sC[l]), f->sC[l] = NULL;
		free(f->UC[l]), f->UC[l] = NULL;
	}
	free(order);
	free(size);
	if (rc == 0)
		f->eig_ok = 1;
	return rc;
}

int pspace_kfac_eigen(pspace_kfac *f, int threads)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = pspace_kfac_eigen_locked(f, threads);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int pspace_kfac_eig_products(const pspace_kfac *f, double ***out)
{
	double **W = pspace_kron_new_ptrs(f->n);

	*out = NULL;
	if (!W)
		return pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
	for (size_t l = 0; l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		W[l] = pspace_kron_alloc(g->nr * g->nc);
		if (!W[l]) {
			pspace_kron_free_ptrs(W, f->n);
			return pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
		}
		for (uint64_t o = 0; o < g->nr; o++)
			for (uint64_t c = 0; c < g->nc; c++)
				W[l][o * g->nc + c] = f->sR[l][o] * f->sC[l][c];
	}
	*out = W;
	return 0;
}

int pspace_kfac_eig_weights(pspace_kfac *f, int threads, double ***W)
{
	int rc = pspace_kfac_eigen(f, threads);

	*W = NULL;
	if (rc == 0)
		rc = pspace_kfac_eig_products(f, W);
	return rc;
}

int pspace_kfac_eig_impl(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals,
                         double *evecs, size_t ld)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double **W = NULL;
	int rc = pspace_kfac_eig_weights(f, pspace_kron_threads(ex), &W);

	if (rc == 0)
		rc = pspace_kron_eig_top(f->geo, f->n, m->d, (const double *const *)f->UR,
		                         (const double *const *)f->UC, (const double *const *)W, k,
		                         evals, evecs, ld);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

int pspace_kfac_eigvals_impl(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double **W = NULL;
	int rc = pspace_kfac_eig_weights(f, pspace_kron_threads(ex), &W);

	if (rc == 0)
		rc = pspace_kron_eig_all(f->geo, f->n, m->d, (const double *const *)W, evals);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

/* ---- KFAC -> EKFAC --------------------------------------------------------------------- */

int pspace_kfac_to_ekfac(pspace_mat **out, const pspace_kfac *f, const double *const *S)
{
	return pspace_ekfac_build(out, f->base.layout, (const double *const *)f->UR,
	                          (const double *const *)f->UC, (const double *const *)f->sR,
	                          (const double *const *)f->sC, S, 0, PSPACE_KFAC_DAMP_EXACT);
}

int pspace_ekfac_from_kfac(pspace_mat **out, pspace_mat *kfac)
{
	return pspace_ekfac_from_kfac_ex(out, kfac, NULL);
}

int pspace_ekfac_from_kfac_ex(pspace_mat **out, pspace_mat *kfac, const pspace_exec *ex)
{
	pspace_kfac *f;
	int rc;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_ekfac_from_kfac: out is NULL");
	*out = NULL;
	if (!kfac)
		return pspace_err_set(PSPACE_EINVAL, "pspace_ekfac_from_kfac: matrix is NULL");
	if (pspace_mat_kind(kfac) != PSPACE_KIND_KFAC)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_ekfac_from_kfac: a %s matrix is not KFAC",
		                      pspace_kind_name(pspace_mat_kind(kfac)));
	f = pspace_kfac_of(kfac);
	rc = pspace_kfac_eigen(f, pspace_kron_threads(ex));
	if (rc != 0)
		return rc;
	return pspace_kfac_to_ekfac(out, f, NULL);
}
