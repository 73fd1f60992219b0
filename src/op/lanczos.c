/*
 * Lazy operators: Lanczos with full reorthogonalization for symmetric
 * operators. Each step is one mv (one pass over each stored matrix); the
 * Lanczos basis stays in RAM (steps x d doubles, bounded by the memory
 * budget), and the tridiagonal eigenproblem goes to LAPACK (dstev).
 *
 * Extreme eigenvalues (top-k, the 2-norm) converge in a few dozen steps
 * when they are separated. The -2-norm (smallest |eigenvalue|) is
 * extreme for semi-definite matrices, but its relative accuracy on a
 * nearly singular matrix needs many steps (up to d): raise max_iter.
 */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

typedef struct lanczos {
	uint64_t d;
	uint32_t m, cap;       /* steps done, most steps */
	double *Q;             /* cap x d basis */
	double *alpha, *beta;  /* T: diagonal and off-diagonal */
	double *theta, *Z, *e; /* Ritz values (ascending), vectors (m x m, column-major) */
	double anorm;
} lanczos;

/* Ritz pairs of T_m. */
static int ritz(lanczos *l)
{
	lapack_int info;
	uint32_t m = l->m;

	memcpy(l->theta, l->alpha, m * sizeof(double));
	if (m > 1)
		memcpy(l->e, l->beta, (m - 1) * sizeof(double));
	info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', (lapack_int)m, l->theta, l->e, l->Z,
	                     (lapack_int)m);
	if (info != 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "op: Lanczos: LAPACKE_dstev failed (info %d) on a %u x %u "
		                      "tridiagonal matrix",
		                      (int)info, (unsigned)m, (unsigned)m);
	return 0;
}

/* Residual norm of Ritz pair c: |beta_m * last component of its vector|. */
static double ritz_res(const lanczos *l, uint32_t c)
{
	return fabs(l->beta[l->m - 1] * l->Z[(size_t)c * l->m + l->m - 1]);
}

/* Index of the Ritz value the mode asks for (TOP: i-th largest). */
static uint32_t target(const lanczos *l, op_lanczos_mode mode, uint32_t i)
{
	uint32_t c, best = 0;

	if (mode == LANCZOS_TOP)
		return l->m - 1 - i;
	if (mode == LANCZOS_MAXABS)
		return fabs(l->theta[0]) > fabs(l->theta[l->m - 1]) ? 0 : l->m - 1;
	for (c = 1; c < l->m; c++)
		if (fabs(l->theta[c]) < fabs(l->theta[best]))
			best = c;
	return best;
}

static int converged(const lanczos *l, op_lanczos_mode mode, uint32_t k, double tol)
{
	double scale = fmax(fabs(l->theta[0]), fabs(l->theta[l->m - 1]));
	uint32_t i, n = mode == LANCZOS_TOP ? k : 1, c;

	if (scale == 0.0)
		return l->beta[l->m - 1] == 0.0;
	for (i = 0; i < n; i++) {
		c = target(l, mode, i);
		if (mode == LANCZOS_MINABS) {
			if (ritz_res(l, c) > tol * fmax(fabs(l->theta[c]), 1e-10 * scale))
				return 0;
		} else if (ritz_res(l, c) > tol * scale) {
			return 0;
		}
	}
	return 1;
}

/* w -= (q_i . w) q_i for the i <= j basis vectors, twice; @return the correction on q_j. */
static double reorth(const lanczos *l, uint32_t j, double *w)
{
	double h, hj = 0;
	uint32_t i;
	int pass;

	for (pass = 0; pass < 2; pass++)
		for (i = 0; i <= j; i++) {
			const double *q = l->Q + (size_t)i * l->d;

			h = pspace_vec_dot(l->d, q, w);
			pspace_vec_axpy(l->d, -h, q, w);
			if (i == j)
				hj += h;
		}
	return hj;
}

/* A fresh random start for q_{j+1}, orthogonal to q_0..q_j. @return 0 when none is left. */
static int restart(const lanczos *l, uint32_t j, uint64_t seed, double *w)
{
	double n;
	int tries;

	for (tries = 0; tries < 4; tries++) {
		pspace_vec_randn(l->d, seed * 7919 + j * 104729 + (uint64_t)tries, w);
		reorth(l, j, w);
		n = pspace_vec_nrm2(l->d, w);
		if (n > 1e-8 * sqrt((double)l->d)) {
			pspace_vec_scale(l->d, 1.0 / n, w);
			return 1;
		}
	}
	return 0;
}

int op_lanczos(const op_fold *A, const pspace_exec *ex, op_lanczos_mode mode, uint32_t k,
               double *evals, double *evecs, size_t ld, pspace_eig_opts *opts)
{
	uint64_t d = A->d, seed = opts ? opts->seed : 1;
	uint32_t max_iter = opts && opts->max_iter ? opts->max_iter : 300, need, i, c, r;
	double tol = opts && opts->tol > 0 ? opts->tol : 1e-8, *w = NULL, nrm;
	size_t fit;
	lanczos l;
	int rc = 0, done = 0, fresh = 0;

	memset(&l, 0, sizeof(l));
	l.d = d;
	need = mode == LANCZOS_TOP ? k : 1;
	if (max_iter > d)
		max_iter = (uint32_t)(d < UINT32_MAX ? d : UINT32_MAX);
	if (max_iter < need)
		max_iter = need;
	fit = op_budget(ex) / (d * sizeof(double));
	fit = fit > 2 ? fit - 2 : 0; /* w and the operator's own temporaries */
	if (fit < need + (need < d ? 1 : 0))
		return pspace_err_set(PSPACE_ENOMEM,
		                      "op: Lanczos: the memory budget of %zu bytes holds %zu "
		                      "vectors of dimension %llu, too few for %u eigenpairs",
		                      op_budget(ex), fit, (unsigned long long)d, (unsigned)need);
	l.cap = max_iter < fit ? max_iter : (uint32_t)fit;
	l.Q = malloc((size_t)l.cap * d * sizeof(double));
	w = malloc(d * sizeof(double));
	l.alpha = calloc(l.cap, sizeof(double));
	l.beta = calloc(l.cap, sizeof(double));
	l.theta = malloc(l.cap * sizeof(double));
	l.e = malloc(l.cap * sizeof(double));
	l.Z = malloc((size_t)l.cap * l.cap * sizeof(double));
	if (!l.Q || !w || !l.alpha || !l.beta || !l.theta || !l.e || !l.Z) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for %u Lanczos vectors",
		                    (unsigned)l.cap);
		goto out;
	}
	pspace_vec_randn(d, seed, l.Q);
	pspace_vec_scale(d, 1.0 / pspace_vec_nrm2(d, l.Q), l.Q);
	for (uint32_t j = 0; j < l.cap; j++) {
		double *q = l.Q + (size_t)j * d;

		rc = op_fold_apply(A, ex, 1, 1.0, q, d, w, d, 0);
		if (rc)
			goto out;
		l.alpha[j] = pspace_vec_dot(d, q, w);
		pspace_vec_axpy(d, -l.alpha[j], q, w);
		if (j > 0)
			pspace_vec_axpy(d, -l.beta[j - 1], q - d, w);
		l.alpha[j] += reorth(&l, j, w);
		nrm = pspace_vec_nrm2(d, w);
		l.anorm = fmax(l.anorm, fabs(l.alpha[j]) + nrm + (j ? l.beta[j - 1] : 0));
		/* An invariant subspace: T_m is exact; restart orthogonally if more is needed. */
		l.beta[j] = nrm <= 64 * DBL_EPSILON * l.anorm ? 0.0 : nrm;
		l.m = j + 1;
		fresh = 0;
		if (l.m >= need &&
		    (l.m <= 32 || l.m % 8 == 0 || l.m == l.cap || l.beta[j] == 0.0)) {
			rc = ritz(&l);
			if (rc)
				goto out;
			fresh = 1;
			if (converged(&l, mode, k, tol)) {
				done = 1;
				break;
			}
		}
		if (l.m == l.cap)
			break;
		if (l.beta[j] == 0.0) {
			if (!restart(&l, j, seed, w)) {
				done = 1; /* the whole space is spanned: T_m is exact */
				break;
			}
			memcpy(q + d, w, d * sizeof(double));
		} else {
			for (uint64_t p = 0; p < d; p++)
				q[d + p] = w[p] / l.beta[j];
		}
	}
	if (!fresh) {
		rc = ritz(&l);
		if (rc)
			goto out;
	}
	if (l.m < need) {
		rc = pspace_err_set(PSPACE_ENOCONV,
		                    "op: Lanczos: only %u steps possible for %u pairs",
		                    (unsigned)l.m, (unsigned)need);
		goto out;
	}
	for (i = 0; i < need; i++) {
		c = target(&l, mode, i);
		evals[i] = mode == LANCZOS_TOP ? l.theta[c] : fabs(l.theta[c]);
		if (mode != LANCZOS_TOP || !evecs)
			continue;
		double *x = evecs + (size_t)i * ld;

		memset(x, 0, d * sizeof(double));
		for (r = 0; r < l.m; r++)
			pspace_vec_axpy(d, l.Z[(size_t)c * l.m + r], l.Q + (size_t)r * d, x);
		pspace_vec_scale(d, 1.0 / pspace_vec_nrm2(d, x), x);
	}
	if (!done)
		rc = pspace_err_set(PSPACE_ENOCONV,
		                    "op: Lanczos did not converge to tolerance %g in %u steps "
		                    "(raise max_iter or the memory budget)",
		                    tol, (unsigned)l.m);
out:
	if (opts)
		opts->iterations = l.m;
	free(l.Z);
	free(l.e);
	free(l.theta);
	free(l.beta);
	free(l.alpha);
	free(w);
	free(l.Q);
	return rc;
}
