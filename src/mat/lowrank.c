/*
 * LowRank: F = D^T D with D (r x d) resident, D = J / sqrt(n) (README, Formulas).
 *
 * Products go through D: F X = D^T (D X), two BLIS gemms. The damped solve
 * is exact, null space of D included: for r < d and damping l != 0 by the
 * Woodbury identity (F + l I)^-1 v = (v - D^T (l I_r + D D^T)^-1 D v) / l
 * with a Cholesky factor of the r x r matrix; for r >= d (or l = 0) by a
 * Cholesky factor of the d x d matrix F + l I. Either factor is computed
 * once per damping value and cached (a CG preconditioner solves with the
 * same damping every iteration). l = 0 with r < d is singular: ENUMERIC.
 *
 * Powers, pseudo-inverse and eigenpairs use the thin SVD D = U diag(s) V^T
 * (LAPACK dgesdd): F = V diag(s^2) V^T. A result is again LowRank,
 * D' = diag(sqrt(lambda')) V^T, whenever it vanishes outside the span of V:
 * (F + l I)^p is LowRank when l = 0 and p > 0, or when V spans everything
 * (r >= d; then any l, p with F + l I positive semi-definite, definite for
 * p <= 0). Otherwise it has an identity part l^p I that LowRank cannot
 * hold: PSPACE_ENOTSUP (use pspace_op_inverse or pspace_mat_solve).
 * pinv keeps 1 / s^2 for s^2 > threshold, dropping singular values at
 * rounding level (s <= max(r, d) eps s_max) whatever the threshold. scale needs s >= 0
 * (D' = sqrt(s) D); a negative multiple is not of the form D^T D.
 *
 * Saved (pspace_mat_save) as a tileless entry holding the layout and the
 * array "D" (f64, r x d); built ones are stored as tiles (lowrank_stored.c).
 */
#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/lowrank.h"
#include "pspace/factored.h"

#define D_ARRAY "D"

/* A Cholesky factor of l I_r + D D^T (full = 0) or of D^T D + l I_d (full = 1). */
typedef struct lr_factor {
	int refs; /* under the matrix's lock */
	double l;
	int full;
	uint64_t n;
	double *L; /* n x n, lower triangle, column-major */
} lr_factor;

typedef struct lowrank {
	pspace_mat base;
	uint64_t r;
	double *D; /* r x d, ld = d */
	pthread_mutex_t lock;
	lr_factor *fac; /* the last damping's factor, or NULL */
} lowrank;

static lowrank *lr_of(pspace_mat *m)
{
	return (lowrank *)m;
}

static void factor_release(lowrank *q, lr_factor *f)
{
	int last;

	if (!f)
		return;
	pthread_mutex_lock(&q->lock);
	last = --f->refs == 0;
	pthread_mutex_unlock(&q->lock);
	if (last) {
		free(f->L);
		free(f);
	}
}

static void lr_destroy(pspace_mat *m)
{
	lowrank *q = lr_of(m);

	factor_release(q, q->fac);
	pthread_mutex_destroy(&q->lock);
	free(q->D);
}

/* C = alpha A B + beta C with general strides, on ex->threads BLIS threads. */
static void gemm(const pspace_exec *ex, uint64_t m, uint64_t n, uint64_t k, double alpha,
                 const double *A, size_t rsa, size_t csa, const double *B, size_t rsb, size_t csb,
                 double beta, double *C, size_t rsc, size_t csc)
{
	rntm_t rn;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(ex && ex->threads > 0 ? ex->threads : 1, &rn);
	bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
	             (double *)A, (inc_t)rsa, (inc_t)csa, (double *)B, (inc_t)rsb, (inc_t)csb,
	             &beta, C, (inc_t)rsc, (inc_t)csc, NULL, &rn);
}

/* T (k x r, ld r) = X D^T for k vectors X (ld ldx). */
static int project(lowrank *q, const pspace_exec *ex, uint32_t k, const double *X, size_t ldx,
                   double **T)
{
	uint64_t d = q->base.d;

	*T = malloc((size_t)k * q->r * sizeof(**T));
	if (!*T)
		return pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory for %u x %llu", k,
		                      (unsigned long long)q->r);
	gemm(ex, k, q->r, d, 1.0, X, ldx, 1, q->D, 1, d, 0.0, *T, q->r, 1);
	return 0;
}

static int lr_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                 size_t ldx, double *Y, size_t ldy)
{
	lowrank *q = lr_of(m);
	double *T;
	int rc = project(q, ex, k, X, ldx, &T);

	if (rc != 0)
		return rc;
	gemm(ex, k, m->d, q->r, alpha, T, q->r, 1, q->D, m->d, 1, 1.0, Y, ldy, 1);
	free(T);
	return 0;
}

static int lr_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                         size_t ldv, double *out)
{
	lowrank *q = lr_of(m);
	double *T;
	int rc = project(q, ex, k, V, ldv, &T);

	if (rc != 0)
		return rc;
	for (uint32_t j = 0; j < k; j++) {
		double s = 0;

		for (uint64_t i = 0; i < q->r; i++)
			s += T[(size_t)j * q->r + i] * T[(size_t)j * q->r + i];
		out[j] = s;
	}
	free(T);
	return 0;
}

static int lr_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	lowrank *q = lr_of(m);
	double s = 0;

	(void)ex;
	for (uint64_t i = 0; i < q->r * m->d; i++)
		s += q->D[i] * q->D[i];
	*out = s;
	return 0;
}

static int lr_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	lowrank *q = lr_of(m);

	(void)ex;
	memset(out, 0, m->d * sizeof(*out));
	for (uint64_t i = 0; i < q->r; i++)
		for (uint64_t j = 0; j < m->d; j++)
			out[j] += q->D[i * m->d + j] * q->D[i * m->d + j];
	return 0;
}

/* G = D D^T (r x r) when r <= d, else D^T D (d x d): the same nonzero spectrum. */
static int small_gram(lowrank *q, const pspace_exec *ex, double **G, uint64_t *n)
{
	uint64_t d = q->base.d;

	*n = q->r <= d ? q->r : d;
	*G = malloc(*n * *n * sizeof(**G));
	if (!*G)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "lowrank: out of memory for a %llu x %llu Gram",
		                      (unsigned long long)*n, (unsigned long long)*n);
	if (q->r <= d)
		gemm(ex, q->r, q->r, d, 1.0, q->D, d, 1, q->D, 1, d, 0.0, *G, q->r, 1);
	else
		gemm(ex, d, d, q->r, 1.0, q->D, 1, d, q->D, d, 1, 0.0, *G, d, 1);
	return 0;
}

static int lr_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	double *G, s = 0;
	uint64_t n;
	int rc = small_gram(lr_of(m), ex, &G, &n);

	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < n * n; i++)
		s += G[i] * G[i];
	free(G);
	*out = s;
	return 0;
}

static int lr_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	lowrank *q = lr_of(m);

	gemm(ex, m->d, m->d, q->r, 1.0, q->D, 1, m->d, q->D, m->d, 1, 0.0, out, ld, 1);
	return 0;
}

/* ---- solve -------------------------------------------------------------------- */

static int factor_new(lowrank *q, const pspace_exec *ex, double l, lr_factor **out)
{
	uint64_t d = q->base.d;
	lr_factor *f = NULL;
	lapack_int info;
	int full = q->r >= d || l == 0;
	uint64_t n = full ? d : q->r;

	*out = NULL;
	if (l == 0 && q->r < d)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank solve: D^T D has rank <= %llu < d = %llu, singular "
		                      "without damping",
		                      (unsigned long long)q->r, (unsigned long long)d);
	if ((double)n * (double)n * sizeof(double) > (double)ex->mem_budget)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "lowrank solve: a %llu x %llu factor exceeds the memory "
		                      "budget of %zu bytes",
		                      (unsigned long long)n, (unsigned long long)n, ex->mem_budget);
	f = calloc(1, sizeof(*f));
	if (f)
		f->L = malloc(n * n * sizeof(double));
	if (!f || !f->L) {
		if (f)
			free(f->L);
		free(f);
		return pspace_err_set(PSPACE_ENOMEM, "lowrank solve: out of memory");
	}
	f->l = l;
	f->full = full;
	f->n = n;
	if (full)
		gemm(ex, d, d, q->r, 1.0, q->D, 1, d, q->D, d, 1, 0.0, f->L, d, 1);
	else
		gemm(ex, q->r, q->r, d, 1.0, q->D, d, 1, q->D, 1, d, 0.0, f->L, q->r, 1);
	for (uint64_t i = 0; i < n; i++)
		f->L[i * n + i] += l;
	info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, f->L, (lapack_int)n);
	if (info != 0) {
		free(f->L);
		free(f);
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank solve: %s + %g I is not positive definite "
		                      "(Cholesky info %d)",
		                      full ? "D^T D" : "D D^T", l, (int)info);
	}
	*out = f;
	return 0;
}

/* The factor for damping @p l: the cached one, or a new one that replaces it. */
static int factor_get(lowrank *q, const pspace_exec *ex, double l, lr_factor **out)
{
	lr_factor *f = NULL, *old = NULL;
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	if (q->fac && q->fac->l == l) {
		f = q->fac;
		f->refs++;
	}
	pthread_mutex_unlock(&q->lock);
	if (!f) {
		rc = factor_new(q, ex, l, &f);
		if (rc != 0)
			return rc;
		f->refs = 2; /* the cache's and the caller's */
		pthread_mutex_lock(&q->lock);
		old = q->fac;
		q->fac = f;
		pthread_mutex_unlock(&q->lock);
		factor_release(q, old);
	}
	*out = f;
	return 0;
}

static int lr_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                    const double *B, size_t ldb, double *X, size_t ldx)
{
	lowrank *q = lr_of(m);
	lr_factor *f;
	double *T = NULL;
	lapack_int info = 0;
	int rc = factor_get(q, ex, damping, &f);

	if (rc != 0)
		return rc;
	if (!f->full)
		rc = project(q, ex, k, B, ldb, &T);
	if (rc != 0)
		goto out;
	for (uint32_t j = 0; j < k && X != B; j++)
		memcpy(X + (size_t)j * ldx, B + (size_t)j * ldb, m->d * sizeof(*X));
	if (f->full) {
		/* X (k x d row-major) is d x k column-major. */
		info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', (lapack_int)f->n, (lapack_int)k, f->L,
		                      (lapack_int)f->n, X, (lapack_int)ldx);
	} else {
		/* X = (B - T (l I + D D^T)^-1 D) / l with T = B D^T. */
		info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', (lapack_int)f->n, (lapack_int)k, f->L,
		                      (lapack_int)f->n, T, (lapack_int)q->r);
		if (info == 0) {
			gemm(ex, k, m->d, q->r, -1.0, T, q->r, 1, q->D, m->d, 1, 1.0, X, ldx, 1);
			for (uint32_t j = 0; j < k; j++)
				for (uint64_t i = 0; i < m->d; i++)
					X[(size_t)j * ldx + i] /= damping;
		}
	}
	if (info != 0)
		rc = pspace_err_set(PSPACE_ENUMERIC, "lowrank solve: LAPACKE_dpotrs info %d",
		                    (int)info);
out:
	free(T);
	factor_release(q, f);
	return rc;
}

/* ---- SVD-based operations ---------------------------------------------------- */

/*
 * Thin SVD of D: s[0..n) decreasing (n = min(r, d)) and, if Vt is not NULL,
 * the right singular vectors as rows of Vt (n x d). Row-major D is the
 * column-major d x r matrix D^T = V diag(s) U^T, whose left singular
 * vectors (column-major d x n) are exactly the rows of Vt.
 */
static int svd(lowrank *q, double **s, double **Vt, uint64_t *n)
{
	uint64_t d = q->base.d;
	double *A = malloc(q->r * d * sizeof(*A)), *U = NULL, *W = NULL;
	lapack_int info;
	int rc = 0;

	*n = q->r < d ? q->r : d;
	*s = malloc(*n * sizeof(**s));
	if (Vt) {
		*Vt = NULL;
		U = malloc(*n * d * sizeof(*U));
		W = malloc(*n * q->r * sizeof(*W));
	}
	if (!A || !*s || (Vt && (!U || !W))) {
		rc = pspace_err_set(PSPACE_ENOMEM,
		                    "lowrank: out of memory for an SVD of %llu x %llu",
		                    (unsigned long long)q->r, (unsigned long long)d);
		goto out;
	}
	memcpy(A, q->D, q->r * d * sizeof(*A));
	info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, Vt ? 'S' : 'N', (lapack_int)d, (lapack_int)q->r, A,
	                      (lapack_int)d, *s, U, (lapack_int)d, W, (lapack_int)*n);
	if (info != 0) {
		rc = pspace_err_set(PSPACE_ENUMERIC, "lowrank: LAPACKE_dgesdd failed (info %d)",
		                    (int)info);
		goto out;
	}
	if (Vt) {
		*Vt = U;
		U = NULL;
	}
out:
	if (rc != 0) {
		free(*s);
		*s = NULL;
	}
	free(W);
	free(U);
	free(A);
	return rc;
}

/* ---- log det, diag of the inverse, square roots ------------------------------------- */

/* The cached factor of lr_solve, refusing l <= 0 where the null space of D makes F + l I singular.
 */
static int damped_factor(lowrank *q, const pspace_exec *ex, double l, lr_factor **f)
{
	*f = NULL;
	if (q->r < q->base.d && !(l > 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank: D^T D has rank <= %llu < d = %llu: with damping %g "
		                      "it is not positive definite; add damping",
		                      (unsigned long long)q->r, (unsigned long long)q->base.d, l);
	return factor_get(q, ex, l, f);
}

/* Determinant lemma: det(l I_d + D^T D) = l^(d - r) det(l I_r + D D^T). */
static int lr_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	lowrank *q = lr_of(m);
	lr_factor *f;
	double sum = 0;
	int rc = damped_factor(q, ex, damping, &f);

	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < f->n; i++)
		sum += 2.0 * log(f->L[i * f->n + i]);
	if (!f->full)
		sum += (double)(m->d - f->n) * log(damping);
	factor_release(q, f);
	*out = sum;
	return 0;
}

/*
 * Woodbury: diag((l I + D^T D)^-1)_i = (1 - ||L^-1 D e_i||^2) / l with L L^T
 * = l I_r + D D^T; for r >= d the inverse of the d x d factor (dpotri).
 */
static int lr_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	lowrank *q = lr_of(m);
	uint64_t d = m->d;
	lr_factor *f;
	double *Y = NULL, one = 1.0;
	lapack_int info = 0;
	int rc = damped_factor(q, ex, damping, &f);

	if (rc != 0)
		return rc;
	Y = malloc(f->n * (f->full ? f->n : d) * sizeof(*Y));
	if (!Y) {
		rc = pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
		goto out;
	}
	if (f->full) {
		memcpy(Y, f->L, f->n * f->n * sizeof(*Y));
		info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (lapack_int)f->n, Y, (lapack_int)f->n);
		for (uint64_t i = 0; info == 0 && i < d; i++)
			out[i] = Y[i * f->n + i];
	} else {
		rntm_t rn;

		bli_rntm_init(&rn);
		bli_rntm_set_num_threads(ex->threads > 0 ? ex->threads : 1, &rn);
		memcpy(Y, q->D, q->r * d * sizeof(*Y));
		bli_dtrsm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_NO_TRANSPOSE, BLIS_NONUNIT_DIAG,
		             (dim_t)q->r, (dim_t)d, &one, f->L, 1, (inc_t)q->r, Y, (inc_t)d, 1,
		             NULL, &rn);
		for (uint64_t i = 0; i < d; i++)
			out[i] = 1.0;
		for (uint64_t k = 0; k < q->r; k++)
			for (uint64_t i = 0; i < d; i++)
				out[i] -= Y[k * d + i] * Y[k * d + i];
		for (uint64_t i = 0; i < d; i++)
			out[i] /= damping;
	}
	if (info != 0)
		rc = pspace_err_set(PSPACE_ENUMERIC, "lowrank: LAPACKE_dpotri info %d", (int)info);
out:
	free(Y);
	factor_release(q, f);
	return rc;
}

/*
 * With the thin SVD D = U diag(s) V^T: S = V diag(b) V^T + a (I - V V^T),
 * b = (s^2 + l)^(1/2), a = l^(1/2) (cov; the inverse: -1/2), so
 * X = a Z + ((Z V) diag(b - a)) V^T. When V spans everything, a is unused.
 */
static int lr_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                      const double *Z, size_t ldz, double *X, size_t ldx)
{
	lowrank *q = lr_of(m);
	uint64_t d = m->d, n;
	double *s = NULL, *Vt = NULL, *T = NULL, a = 0;
	int rc = 0;

	if (damping < 0 || (!cov && q->r < d && damping == 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank: D^T D + %g I is not positive %sdefinite; add "
		                      "damping",
		                      damping, cov ? "semi-" : "");
	rc = svd(q, &s, &Vt, &n);
	if (rc == 0 && !(T = malloc((size_t)k * n * sizeof(*T))))
		rc = pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
	if (rc != 0)
		goto out;
	if (n < d)
		a = cov ? sqrt(damping) : 1.0 / sqrt(damping);
	for (uint64_t i = 0; i < n; i++) {
		double v = s[i] * s[i] + damping;

		if (!cov && !(v > 0)) {
			rc = pspace_err_set(PSPACE_ENUMERIC,
			                    "lowrank: eigenvalue %g + damping %g is not positive; "
			                    "add damping",
			                    s[i] * s[i], damping);
			goto out;
		}
		s[i] = (cov ? sqrt(v) : 1.0 / sqrt(v)) - a;
	}
	gemm(ex, k, n, d, 1.0, Z, ldz, 1, Vt, 1, d, 0.0, T, n, 1);
	for (uint32_t j = 0; j < k; j++) {
		for (uint64_t i = 0; i < n; i++)
			T[(size_t)j * n + i] *= s[i];
		for (uint64_t i = 0; i < d; i++)
			X[(size_t)j * ldx + i] = a * Z[(size_t)j * ldz + i];
	}
	gemm(ex, k, d, n, 1.0, T, n, 1, Vt, d, 1, 1.0, X, ldx, 1);
out:
	free(T);
	free(Vt);
	free(s);
	return rc;
}

static int lr_new(pspace_mat **out, const pspace_layout *layout, uint64_t d, uint64_t r, double *D,
                  pspace_store *s, const char *name);

/*
 * A new LowRank of m's layout with rows c[i] Vt[i] for the c[i] != 0
 * (at least one row, zero if all vanish). Takes nothing; frees nothing.
 */
static int from_svd(pspace_mat *m, const double *c, const double *Vt, uint64_t n, pspace_mat **out)
{
	uint64_t d = m->d, r = 0;
	double *D = calloc(n * d + d, sizeof(*D));

	if (!D)
		return pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
	for (uint64_t i = 0; i < n; i++) {
		if (c[i] == 0)
			continue;
		for (uint64_t j = 0; j < d; j++)
			D[r * d + j] = c[i] * Vt[i * d + j];
		r++;
	}
	return lr_new(out, m->layout, d, r ? r : 1, D, NULL, NULL);
}

static int lr_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	lowrank *q = lr_of(m);
	double *s = NULL, *Vt = NULL, *c = NULL;
	uint64_t n;
	int rc;

	if (p == 1 && damping == 0) {
		double *D = malloc(q->r * m->d * sizeof(*D));

		if (!D)
			return pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
		memcpy(D, q->D, q->r * m->d * sizeof(*D));
		return lr_new(out, m->layout, m->d, q->r, D, NULL, NULL);
	}
	/* Outside the span of V, (F + l I)^p is l^p I. */
	if (q->r < m->d && !(damping == 0 && p > 0)) {
		if (damping == 0)
			return pspace_err_set(
			    PSPACE_ENUMERIC,
			    "lowrank pow %g: D^T D has rank <= %llu < d = %llu and "
			    "is singular; use pinv or a damping",
			    p, (unsigned long long)q->r, (unsigned long long)m->d);
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "lowrank pow %g with damping %g: the result has an identity "
		                      "part and is not LowRank; use pspace_mat_solve or "
		                      "pspace_op_inverse",
		                      p, damping);
	}
	rc = svd(q, &s, &Vt, &n);
	if (rc != 0)
		return rc;
	c = malloc(n * sizeof(*c));
	if (!c) {
		rc = pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		double lam = s[i] * s[i] + damping;

		if (lam < 0 || (p <= 0 && lam == 0)) {
			rc = pspace_err_set(PSPACE_ENUMERIC,
			                    "lowrank pow %g: eigenvalue %g + damping %g is %s", p,
			                    s[i] * s[i], damping, lam < 0 ? "negative" : "zero");
			goto out;
		}
		c[i] = pow(lam, p / 2);
	}
	rc = from_svd(m, c, Vt, n, out);
out:
	free(c);
	free(Vt);
	free(s);
	return rc;
}

static int lr_pinv(pspace_mat *m, double threshold, pspace_mat **out)
{
	lowrank *q = lr_of(m);
	double *s = NULL, *Vt = NULL, tiny;
	uint64_t n;
	int rc = svd(q, &s, &Vt, &n);

	if (rc != 0)
		return rc;
	/*
	 * c overwrites s: 1/s keeps eigenvalue 1/s^2. Singular values at
	 * rounding level (<= max(r, d) eps s_max, numpy's rank rule) are zero
	 * whatever the threshold: they come from a rank-deficient D.
	 */
	tiny = (double)(q->r > m->d ? q->r : m->d) * DBL_EPSILON * (n ? s[0] : 0);
	for (uint64_t i = 0; i < n; i++)
		s[i] = s[i] * s[i] > threshold && s[i] > tiny ? 1.0 / s[i] : 0.0;
	rc = from_svd(m, s, Vt, n, out);
	free(Vt);
	free(s);
	return rc;
}

static int lr_scale(pspace_mat *m, double sc, pspace_mat **out)
{
	lowrank *q = lr_of(m);
	double *D, f;

	if (!(sc >= 0))
		return pspace_err_set(
		    PSPACE_ENOTSUP,
		    "lowrank scale %g: a negative multiple of D^T D is not LowRank; "
		    "use pspace_op_scale",
		    sc);
	D = malloc(q->r * m->d * sizeof(*D));
	if (!D)
		return pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory");
	f = sqrt(sc);
	for (uint64_t i = 0; i < q->r * m->d; i++)
		D[i] = f * q->D[i];
	return lr_new(out, m->layout, m->d, q->r, D, NULL, NULL);
}

/* Rows n..k-1 of the Q of a QR factorization of Vt^T. */
int pspace_lowrank_null_vectors(const double *Vt, size_t ldv, uint64_t n, uint64_t d, uint32_t k,
                                double *evecs, size_t ld)
{
	double *Q = calloc((size_t)k * d, sizeof(*Q)), *tau = malloc((n ? n : 1) * sizeof(*tau));
	lapack_int info;
	int rc = 0;

	if (!Q || !tau) {
		rc = pspace_err_set(PSPACE_ENOMEM, "lowrank eig: out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < n; i++)
		memcpy(Q + i * d, Vt + i * ldv, d * sizeof(*Q));
	info =
	    LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)n, Q, (lapack_int)d, tau);
	if (info == 0)
		info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)k, (lapack_int)n,
		                      Q, (lapack_int)d, tau);
	if (info != 0) {
		rc = pspace_err_set(PSPACE_ENUMERIC, "lowrank eig: QR failed (info %d)", (int)info);
		goto out;
	}
	for (uint64_t i = n; i < k; i++)
		memcpy(evecs + i * ld, Q + i * d, d * sizeof(*Q));
out:
	free(tau);
	free(Q);
	return rc;
}

static int lr_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                  size_t ld)
{
	double *s = NULL, *Vt = NULL;
	uint64_t n;
	int rc = svd(lr_of(m), &s, evecs ? &Vt : NULL, &n);

	(void)ex;
	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < k; i++)
		evals[i] = i < n ? s[i] * s[i] : 0.0;
	for (uint64_t i = 0; evecs && i < k && i < n; i++)
		memcpy(evecs + i * ld, Vt + i * m->d, m->d * sizeof(*evecs));
	if (evecs && k > n)
		rc = pspace_lowrank_null_vectors(Vt, m->d, n, m->d, k, evecs, ld);
	free(Vt);
	free(s);
	return rc;
}

static int lr_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	return lr_eig(m, ex, (uint32_t)m->d, evals, NULL, 0);
}

static int lr_save(pspace_mat *m, pspace_store *s, const char *name)
{
	lowrank *q = lr_of(m);
	pspace_writer *w = NULL;
	uint64_t shape[2] = {q->r, m->d};
	int rc;

	rc = pspace_resident_save_begin(m, PSPACE_KIND_LOWRANK, s, name, &w);
	if (rc != 0)
		return rc;
	rc = pspace_writer_put_array(w, D_ARRAY, PSPACE_F64, 2, shape, q->D);
	return pspace_resident_save_end(w, rc);
}

static const pspace_mat_vtable lr_vt = {
    .kind = PSPACE_KIND_LOWRANK,
    .destroy = lr_destroy,
    .mm = lr_mm,
    .vtmv_batch = lr_vtmv_batch,
    .trace = lr_trace,
    .diag = lr_diag,
    .frob2 = lr_frob2,
    .dense = lr_dense,
    .solve = lr_solve,
    .logdet = lr_logdet,
    .diaginv = lr_diaginv,
    .sqrt_mm = lr_sqrt_mm,
    .save = lr_save,
    .pow = lr_pow,
    .pinv = lr_pinv,
    .scale = lr_scale,
    .eig = lr_eig,
    .eigvals = lr_eigvals,
};

/* Takes ownership of @p D (freed on failure). */
static int lr_new(pspace_mat **out, const pspace_layout *layout, uint64_t d, uint64_t r, double *D,
                  pspace_store *s, const char *name)
{
	lowrank *q;
	int rc = pspace_mat_alloc(out, sizeof(*q), &lr_vt, d, layout, s, name);

	if (rc != 0) {
		free(D);
		return rc;
	}
	q = lr_of(*out);
	pthread_mutex_init(&q->lock, NULL);
	q->r = r;
	q->D = D;
	return 0;
}

int pspace_lowrank_create(pspace_mat **out, const pspace_layout *layout, uint64_t rows,
                          const double *D, size_t ld)
{
	uint64_t d;
	double *C;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_lowrank_create: out is NULL");
	*out = NULL;
	if (!layout || !D)
		return pspace_err_set(PSPACE_EINVAL, "pspace_lowrank_create: layout or D is NULL");
	d = pspace_layout_dim(layout);
	if (rows == 0 || d == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_lowrank_create: %llu rows of %llu",
		                      (unsigned long long)rows, (unsigned long long)d);
	if (ld < d)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_lowrank_create: leading dimension %zu < d = %llu", ld,
		                      (unsigned long long)d);
	C = malloc(rows * d * sizeof(*C));
	if (!C)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for a %llu x %llu factor",
		                      (unsigned long long)rows, (unsigned long long)d);
	for (uint64_t i = 0; i < rows; i++)
		memcpy(C + i * d, D + i * ld, d * sizeof(*C));
	return lr_new(out, layout, d, rows, C, NULL, NULL);
}

int pspace_lowrank_adopt(pspace_mat **out, const pspace_layout *layout, uint64_t r, double *D)
{
	return lr_new(out, layout, pspace_layout_dim(layout), r, D, NULL, NULL);
}

int pspace_lowrank_open_arrays(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	pspace_array_info ai;
	double *D = NULL;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_LOWRANK, &r, &layout);
	if (rc == 0)
		rc = pspace_array_info_get(&ai, r, D_ARRAY);
	if (rc == 0 && (ai.ndim != 2 || ai.shape[1] != info->d || ai.shape[0] == 0))
		rc = pspace_err_set(PSPACE_ECORRUPT, "array %s is not (rows, %llu)", D_ARRAY,
		                    (unsigned long long)info->d);
	if (rc == 0)
		rc = pspace_resident_read(r, D_ARRAY, ai.count, &D);
	if (rc == 0) {
		rc = lr_new(out, layout, info->d, ai.shape[0], D, s, info->name);
		D = NULL;
	}
	free(D);
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}
