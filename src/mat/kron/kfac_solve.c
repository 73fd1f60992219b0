/*
 * KFAC's damped solve and powers.
 *
 * Cache, under the matrix's mutex (a CG preconditioner calls solve every
 * iteration): the Cholesky factors of the damped factors for the last
 * damping value and mode. Exact damping goes through the factor
 * eigendecompositions (eigen.c).
 */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/kfac_impl.h"

/* ---- damped solve ------------------------------------------------------------------ */

/* Cholesky factor L (row-major lower) of M + c I, n x n. */
static int chol(const pspace_kron_layer *g, const char *fac, uint64_t n, const double *M, double c,
                double **out)
{
	double *L = pspace_kron_alloc(n * n);
	lapack_int info;

	*out = NULL;
	if (!L)
		return pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", g->name);
	memcpy(L, M, n * n * sizeof(*L));
	for (uint64_t i = 0; i < n; i++)
		L[i * n + i] += c;
	/* Column-major upper of a row-major array is its row-major lower. */
	info = n ? LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)n, L, (lapack_int)n) : 0;
	if (info != 0) {
		free(L);
		return pspace_err_set(
		    PSPACE_ENUMERIC,
		    "layer %s: damped factor %s + %.6g I is not positive definite "
		    "(dpotrf info %d)",
		    g->name, fac, c, (int)info);
	}
	*out = L;
	return 0;
}

/* The damped factors of pspace_kfac_solve_impl() to factor: per layer R + cr I, C + cc I. */
typedef struct chol_job {
	pspace_kfac *f;
	double *cr, *cc;
} chol_job;

/* Task 2 l (row factor) or 2 l + 1 (column factor) of chol_locked(). */
static int chol_task(void *ud, size_t i)
{
	chol_job *j = ud;
	pspace_kfac *f = j->f;
	size_t l = i / 2;
	const pspace_kron_layer *g = &f->geo[l];

	if (i % 2 == 0)
		return g->rdiag
		           ? 0
		           : chol(g, pspace_kron_rname(g), g->nr, f->R[l], j->cr[l], &f->LR[l]);
	return chol(g, pspace_kron_cname(g), g->nc, f->C[l], j->cc[l], &f->LC[l]);
}

/*
 * Factors the damped factors for (damping, mode) unless cached, several at
 * once on @p threads threads; caller holds the lock.
 */
static int chol_locked(pspace_kfac *f, double damping, int threads)
{
	chol_job j = {f, NULL, NULL};
	uint64_t *size = NULL;
	size_t *order = NULL;
	int rc = 0;

	if (f->chol_ok && f->chol_damp == damping && f->chol_mode == f->mode)
		return 0;
	f->chol_ok = 0;
	pspace_kron_free_ptrs(f->LR, f->n);
	pspace_kron_free_ptrs(f->LC, f->n);
	rc = pspace_kron_new_pair(f->n, "KFAC", &f->LR, &f->LC);
	if (rc != 0)
		return rc;
	j.cr = calloc(f->n + 1, sizeof(double));
	j.cc = calloc(f->n + 1, sizeof(double));
	size = calloc(2 * f->n + 1, sizeof(*size));
	order = calloc(2 * f->n + 1, sizeof(*order));
	if (!j.cr || !j.cc || !size || !order)
		rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		rc = pspace_kron_damp_split(g, f->mode, damping, f->trR[l], f->trC[l], &j.cr[l],
		                            &j.cc[l]);
		if (rc == 0 && g->rdiag) {
			f->LR[l] = pspace_kron_alloc(g->nr);
			if (!f->LR[l])
				rc = pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory",
				                    g->name);
			for (uint64_t o = 0; rc == 0 && o < g->nr; o++) {
				f->LR[l][o] = f->R[l][o] + j.cr[l];
				if (!(f->LR[l][o] > 0))
					rc = pspace_err_set(PSPACE_ENUMERIC,
					                    "layer %s: damped diagonal factor A + "
					                    "%.6g has entry %llu = %g <= 0",
					                    g->name, j.cr[l], (unsigned long long)o,
					                    f->LR[l][o]);
			}
		}
		size[2 * l] = g->rdiag ? 0 : g->nr;
		size[2 * l + 1] = g->nc;
	}
	if (rc == 0) {
		pspace_kron_order(2 * f->n, size, order);
		rc = pspace_kron_each(2 * f->n, order, threads, chol_task, &j);
	}
	if (rc == 0) {
		f->chol_ok = 1;
		f->chol_damp = damping;
		f->chol_mode = f->mode;
	}
	free(order);
	free(size);
	free(j.cc);
	free(j.cr);
	return rc;
}

/* B <- R_d^{-1} B C_d^{-1} with the cached Cholesky factors of KFAC @p ud (pspace_kron_apply). */
static void chol_chunk(void *ud, const pspace_kron_layer *g, size_t l, uint32_t k, double *B,
                       double *T, int threads)
{
	const pspace_kfac *f = ud;
	uint64_t nr = g->nr, nc = g->nc, w = (uint64_t)k * nc;

	(void)T;
	if (g->rdiag) {
		for (uint64_t o = 0; o < nr; o++)
			for (uint64_t c = 0; c < w; c++)
				B[o * w + c] /= f->LR[l][o];
	} else {
		pspace_kron_trsm(0, 0, nr, w, f->LR[l], nr, B, w, threads);
		pspace_kron_trsm(0, 1, nr, w, f->LR[l], nr, B, w, threads);
	}
	pspace_kron_trsm(1, 1, nr * k, nc, f->LC[l], nc, B, nc, threads);
	pspace_kron_trsm(1, 0, nr * k, nc, f->LC[l], nc, B, nc, threads);
}

/* W[l] = 1 / (sR sC^T + damping), ENUMERIC where that is 0. */
static int exact_weights(const pspace_kfac *f, double damping, double ***out)
{
	double **W = NULL;
	int rc = pspace_kfac_eig_products(f, &W);

	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		for (uint64_t i = 0; rc == 0 && i < g->nr * g->nc; i++) {
			double v = W[l][i] + damping;

			if (v == 0)
				rc = pspace_err_set(PSPACE_ENUMERIC,
				                    "layer %s: G (x) A + %g I is singular", g->name,
				                    damping);
			W[l][i] = 1.0 / v;
		}
	}
	if (rc != 0) {
		pspace_kron_free_ptrs(W, f->n);
		W = NULL;
	}
	*out = W;
	return rc;
}

int pspace_kfac_solve_impl(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                           const double *Bv, size_t ldb, double *X, size_t ldx)
{
	pspace_kfac *f = pspace_kfac_of(m);
	pspace_kron_eig_form form;
	pspace_kron_chunk_fn op = chol_chunk;
	void *ud = f;
	double **W = NULL;
	int rc;

	if (!f->sym)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "KFAC: the factors are not symmetric (a product of KFACs): "
		                      "no direct solve");
	pthread_mutex_lock(&f->lock);
	if (f->mode == PSPACE_KFAC_DAMP_EXACT) {
		rc = pspace_kfac_eigen_locked(f, pspace_kron_threads(ex));
		if (rc == 0)
			rc = exact_weights(f, damping, &W);
		/* the eigenbases exist only from here */
		form = (pspace_kron_eig_form){f->UR, f->UC, W};
		op = pspace_kron_eig_chunk;
		ud = &form;
	} else {
		rc = chol_locked(f, damping, pspace_kron_threads(ex));
	}
	if (rc == 0)
		rc =
		    pspace_kron_apply(f->geo, f->n, ex, "KFAC", k, Bv, ldb, 1.0, 0, X, ldx, op, ud);
	pthread_mutex_unlock(&f->lock);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

/* ---- log det, diag of the inverse, square roots -------------------------------------- */

/*
 * W[l] = the damped eigenvalues of every layer block: sR sC^T + damping
 * (exact damping), (sR + cr)(sC + cc)^T (pi, sqrt: the damped factors'),
 * into new arrays; the eigendecompositions are computed if needed.
 */
static int damped_weights(pspace_kfac *f, const pspace_exec *ex, double damping, double ***out)
{
	double **W = NULL;
	int rc = 0;

	*out = NULL;
	if (!f->sym)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "KFAC: the factors are not symmetric (a product of KFACs): "
		                      "no eigendecomposition");
	rc = pspace_kfac_eig_weights(f, pspace_kron_threads(ex), &W);
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		double cr = 0, cc = 0;

		if (f->mode != PSPACE_KFAC_DAMP_EXACT)
			rc = pspace_kron_damp_split(g, f->mode, damping, f->trR[l], f->trC[l], &cr,
			                            &cc);
		for (uint64_t o = 0; rc == 0 && o < g->nr; o++)
			for (uint64_t c = 0; c < g->nc; c++)
				W[l][o * g->nc + c] = f->mode == PSPACE_KFAC_DAMP_EXACT
				                          ? W[l][o * g->nc + c] + damping
				                          : (f->sR[l][o] + cr) * (f->sC[l][c] + cc);
	}
	if (rc != 0)
		pspace_kron_free_ptrs(W, f->n);
	else
		*out = W;
	return rc;
}

int pspace_kfac_logdet_impl(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double **W = NULL;
	int rc = damped_weights(f, ex, damping, &W);

	if (rc == 0)
		rc = pspace_kron_logdet(f->geo, f->n, (const double *const *)W, out);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

int pspace_kfac_diaginv_impl(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double **W = NULL;
	int rc = damped_weights(f, ex, damping, &W);

	if (rc == 0)
		rc = pspace_kron_diaginv(f->geo, f->n, (const double *const *)f->UR,
		                         (const double *const *)f->UC, (const double *const *)W,
		                         out);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

int pspace_kfac_sqrt_mm_impl(pspace_mat *m, const pspace_exec *ex, double damping, int cov,
                             uint32_t k, const double *Z, size_t ldz, double *X, size_t ldx)
{
	pspace_kfac *f = pspace_kfac_of(m);
	pspace_kron_eig_form form;
	double **W = NULL;
	int rc = damped_weights(f, ex, damping, &W);

	if (rc == 0)
		rc = pspace_kron_sqrt_weights(f->geo, f->n, cov, W);
	form = (pspace_kron_eig_form){f->UR, f->UC, W};
	if (rc == 0)
		rc = pspace_kron_apply(f->geo, f->n, ex, "KFAC", k, Z, ldz, 1.0, 0, X, ldx,
		                       pspace_kron_eig_chunk, &form);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

/* ---- new matrices ---------------------------------------------------------------------- */

/*
 * x^p for an eigenvalue x of a damped factor: p < 0 needs x > 0; a
 * fractional p needs x >= 0 (rounding-level negatives, |x| <= 1e-13 of the
 * largest, count as 0).
 */
static int powval(double x, double p, double big, const char *who, const char *fac, double *out)
{
	if (p != floor(p) && x < 0 && x >= -1e-13 * big)
		x = 0;
	if ((p < 0 && !(x > 0)) || (p != floor(p) && x < 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "layer %s: damped factor %s has eigenvalue %g: no power %g",
		                      who, fac, x, p);
	*out = pow(x, p);
	return 0;
}

/* U diag(f(s + c)) U^T, n x n, into a new array. */
static int factor_pow(const pspace_kron_layer *g, const char *fac, uint64_t n, const double *U,
                      const double *s, double c, double p, double **out)
{
	double *T = pspace_kron_alloc(n * n);
	double *M = pspace_kron_alloc(n * n);
	double big = 0;
	int rc = 0;

	*out = NULL;
	if (!T || !M) {
		rc = pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", g->name);
		goto out;
	}
	for (uint64_t i = 0; i < n; i++)
		big = fabs(s[i] + c) > big ? fabs(s[i] + c) : big;
	for (uint64_t q = 0; rc == 0 && q < n; q++) {
		double v = 0;

		rc = powval(s[q] + c, p, big, g->name, fac, &v);
		for (uint64_t i = 0; rc == 0 && i < n; i++)
			T[i * n + q] = U[i * n + q] * v;
	}
	if (rc != 0)
		goto out;
	pspace_kron_gemm(0, 1, n, n, n, 1.0, T, n, U, n, 0.0, M, n, 1);
	pspace_kron_symmetrize(n, M);
	*out = M;
	M = NULL;
out:
	free(M);
	free(T);
	return rc;
}

int pspace_kfac_pow_exact(pspace_kfac *f, double p, double damping, pspace_mat **out)
{
	double **W = NULL;
	/* pspace_mat_pow() takes no execution settings: the defaults */
	int rc = pspace_kfac_eig_weights(f, pspace_kron_threads(NULL), &W);

	*out = NULL;
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		uint64_t cnt = g->nr * g->nc;
		double big = 0;

		for (uint64_t i = 0; i < cnt; i++)
			big = fabs(W[l][i] + damping) > big ? fabs(W[l][i] + damping) : big;
		for (uint64_t i = 0; rc == 0 && i < cnt; i++)
			rc = powval(W[l][i] + damping, p, big, g->name, "G (x) A", &W[l][i]);
	}
	if (rc == 0)
		rc = pspace_kfac_to_ekfac(out, f, (const double *const *)W);
	pspace_kron_free_ptrs(W, f->n);
	return rc;
}

int pspace_kfac_pow_factors(pspace_kfac *f, double p, double damping, double ***Rout,
                            double ***Cout)
{
	double **R = NULL, **C = NULL;
	int rc = pspace_kfac_eigen(f, pspace_kron_threads(NULL));

	if (rc == 0)
		rc = pspace_kron_new_pair(f->n, "KFAC", &R, &C);
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		double cr, cc;

		rc = pspace_kron_damp_split(g, f->mode, damping, f->trR[l], f->trC[l], &cr, &cc);
		if (rc == 0 && g->rdiag) {
			double big = 0;

			R[l] = pspace_kron_alloc(g->nr);
			if (!R[l])
				rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
			for (uint64_t o = 0; rc == 0 && o < g->nr; o++)
				big = fabs(f->R[l][o] + cr) > big ? fabs(f->R[l][o] + cr) : big;
			for (uint64_t o = 0; rc == 0 && o < g->nr; o++)
				rc = powval(f->R[l][o] + cr, p, big, g->name, "A", &R[l][o]);
		} else if (rc == 0) {
			rc = factor_pow(g, pspace_kron_rname(g), g->nr, f->UR[l], f->sR[l], cr, p,
			                &R[l]);
		}
		if (rc == 0)
			rc = factor_pow(g, pspace_kron_cname(g), g->nc, f->UC[l], f->sC[l], cc, p,
			                &C[l]);
	}
	if (rc != 0) {
		pspace_kron_free_ptrs(R, f->n);
		pspace_kron_free_ptrs(C, f->n);
		R = C = NULL;
	}
	*Rout = R;
	*Cout = C;
	return rc;
}
