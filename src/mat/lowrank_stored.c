/*
 * LowRank stored as tiles: F = D^T D with the r x d rows D kept in the
 * store (r <= d), the first ceil(r / E) tile rows of a one-block,
 * non-symmetric tiling of d with the Dense tile format, codec and
 * precisions (README, Store format), plus the array "rows" (r, f64) and
 * the layout. Every operation streams D once or twice (src/kernel/rowmat.c):
 *
 *   mm, solve, sqrt_mm   U = D X (a pass), then Y += D^T U' (a second pass)
 *   vtmv                 ||D v||^2 (one pass)
 *   trace, diag          row / column sums of squares (one pass)
 *   Gram G = D D^T       one pass over the column strips, cached with its
 *                        eigendecomposition G = Q^T diag(lambda) Q
 *   frob2                ||G||_F^2
 *   solve                Woodbury: (F + l I)^-1 B = (B - D^T Q^T diag(1 /
 *                        (lambda + l)) Q D B) / l; for r = d and l = 0,
 *                        D^T Q^T diag(lambda^-2) Q D B
 *   logdet               determinant lemma: sum log(lambda + l) + (d - r) log l
 *   diaginv              (1 - ||diag(lambda + l)^-1/2 Q D e_i||^2) / l, a strip pass
 *   eig                  lambda, V = D^T Q^T diag(lambda^-1/2) (one pass)
 *   sqrt_mm              a Z + D^T Q^T diag(c / lambda) Q D Z, c = b - a (README)
 *
 * One eigendecomposition serves every damping (no factor per damping value).
 * Eigenvalues at rounding level (<= max(r, d) eps lambda_max) count as zero
 * where a direction is needed (eig, sqrt_mm), as the resident SVD's do.
 * The r x r matrices (G and Q) must fit ex->mem_budget, else PSPACE_ENOMEM.
 *
 * When D as doubles fits a quarter of the budget it is read once into a
 * resident LowRank (lowrank.c) that then serves every call: small matrices
 * stay fast; pow, pinv and scale (no execution settings) do so within the
 * default budget, and are PSPACE_ENOTSUP beyond. The test hook
 * PSPACE_TEST_LOWRANK_STREAM (set when the matrix is opened) makes every
 * streaming operation stream however small D is.
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
#include "common/exec.h"
#include "kernel/rowmat.h"
#include "mat/lowrank.h"

typedef struct lrs {
	pspace_mat base;
	pspace_tiled t;
	uint64_t r;
	pthread_mutex_t lock; /* guards the caches below; once set they never change */
	double *G;            /* r x r Gram matrix D D^T */
	double *lam;          /* its eigenvalues, decreasing */
	double *Q;            /* r x r: row i is the eigenvector of lam[i] */
	uint64_t kept;        /* eigenvalues above rounding level */
	pspace_mat *res;      /* resident copy of D, when it fits */
	int stream;           /* test hook: never use the resident copy for what streams */
} lrs;

static lrs *lrs_of(pspace_mat *m)
{
	return (lrs *)m;
}

static void lrs_destroy(pspace_mat *m)
{
	lrs *q = lrs_of(m);

	pspace_mat_free(q->res);
	free(q->Q);
	free(q->lam);
	free(q->G);
	pthread_mutex_destroy(&q->lock);
	pspace_tiled_close(&q->t);
}

/* C (m x n, ld n) = alpha A B with A (m x k) and B (k x n) given by strides. */
static void gemm(const pspace_exec *ex, uint64_t m, uint64_t n, uint64_t k, double alpha,
                 const double *A, size_t rsa, size_t csa, const double *B, size_t rsb, size_t csb,
                 double *C)
{
	double zero = 0.0;
	rntm_t rn;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(ex->threads > 0 ? ex->threads : 1, &rn);
	bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha,
	             (double *)A, (inc_t)rsa, (inc_t)csa, (double *)B, (inc_t)rsb, (inc_t)csb,
	             &zero, C, (inc_t)n, 1, NULL, &rn);
}

static void *alloc_doubles(size_t n, const char *what, int *rc)
{
	double *p = malloc((n ? n : 1) * sizeof(double));

	if (!p)
		*rc = pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory for %s (%zu doubles)",
		                     what, n);
	return p;
}

/* ---- the resident copy ------------------------------------------------------------- */

/*
 * The resident LowRank holding D when its doubles fit a quarter of @p budget
 * (read on first use, then kept), else NULL with *rc = 0.
 */
static pspace_mat *resident(lrs *q, const pspace_exec *ex, size_t budget, int *rc)
{
	uint64_t d = q->base.d;
	pspace_mat *m;
	double *D;

	*rc = 0;
	if ((double)q->r * (double)d * sizeof(double) > (double)budget / 4)
		return NULL;
	pthread_mutex_lock(&q->lock);
	m = q->res;
	if (!m) {
		D = alloc_doubles(q->r * d, "the rows", rc);
		if (D)
			*rc = pspace_rowmat_read(&q->t, q->r, ex, D);
		if (D && *rc == 0)
			*rc = pspace_lowrank_adopt(&q->res, q->base.layout, q->r, D);
		else
			free(D);
		m = q->res;
	}
	pthread_mutex_unlock(&q->lock);
	return m;
}

/* The resident copy within ex's budget (NULL: stream). */
static pspace_mat *small(lrs *q, const pspace_exec *ex, int *rc)
{
	*rc = 0;
	return q->stream ? NULL : resident(q, ex, ex->mem_budget, rc);
}

/* ---- products ------------------------------------------------------------------------ */

static int lrs_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                  size_t ldx, double *Y, size_t ldy)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	double *U;
	int rc = 0;

	if (rm)
		return rm->vt->mm(rm, ex, k, alpha, X, ldx, Y, ldy);
	U = alloc_doubles((size_t)k * q->r, "D X", &rc);
	if (U)
		rc = pspace_rowmat_project(&q->t, q->r, ex, k, X, ldx, U);
	if (rc == 0)
		rc = pspace_rowmat_expand(&q->t, q->r, ex, k, alpha, U, Y, ldy);
	free(U);
	return rc;
}

static int lrs_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                          size_t ldv, double *out)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	double *U;
	int rc = 0;

	if (rm)
		return rm->vt->vtmv_batch(rm, ex, k, V, ldv, out);
	U = alloc_doubles((size_t)k * q->r, "D V", &rc);
	if (U)
		rc = pspace_rowmat_project(&q->t, q->r, ex, k, V, ldv, U);
	for (uint32_t j = 0; rc == 0 && j < k; j++) {
		double s = 0;

		for (uint64_t i = 0; i < q->r; i++)
			s += U[j * q->r + i] * U[j * q->r + i];
		out[j] = s;
	}
	free(U);
	return rc;
}

static int lrs_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	lrs *q = lrs_of(m);
	double *rowsq, s = 0;
	int rc = 0;

	rowsq = alloc_doubles(q->r, "the row norms", &rc);
	if (rowsq)
		rc = pspace_rowmat_sumsq(&q->t, q->r, ex, rowsq, NULL);
	for (uint64_t i = 0; rc == 0 && i < q->r; i++)
		s += rowsq[i];
	free(rowsq);
	*out = s;
	return rc;
}

static int lrs_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	lrs *q = lrs_of(m);

	return pspace_rowmat_sumsq(&q->t, q->r, ex, NULL, out);
}

/* ---- the Gram matrix and its eigendecomposition -------------------------------------- */

typedef struct gram_ctx {
	lrs *q;
	rntm_t rn;
} gram_ctx;

static int gram_strip(void *ud, uint64_t c0, uint32_t cols, const double *S)
{
	gram_ctx *c = ud;
	double one = 1.0;

	(void)c0;
	/* the lower triangle of G += S S^T */
	bli_dsyrk_ex(BLIS_LOWER, BLIS_NO_TRANSPOSE, (dim_t)c->q->r, (dim_t)cols, &one, (double *)S,
	             (inc_t)cols, 1, &one, c->q->G, (inc_t)c->q->r, 1, NULL, &c->rn);
	return 0;
}

/* Computes G, lam, Q and kept (under q->lock). */
static int eig_compute(lrs *q, const pspace_exec *ex)
{
	uint64_t r = q->r, d = q->base.d;
	double *A = NULL, tol;
	gram_ctx gc = {q, {0}};
	lapack_int info;
	int rc = 0;

	if (2.0 * (double)r * (double)r * sizeof(double) > (double)ex->mem_budget)
		return pspace_err_set(
		    PSPACE_ENOMEM,
		    "lowrank %s: the %llu x %llu Gram matrix and its eigenvectors "
		    "need %.0f bytes, more than the memory budget of %zu bytes",
		    q->base.name ? q->base.name : "", (unsigned long long)r, (unsigned long long)r,
		    2.0 * (double)r * (double)r * 8, ex->mem_budget);
	q->G = calloc(r * r, sizeof(double));
	q->lam = alloc_doubles(r, "eigenvalues", &rc);
	A = alloc_doubles(r * r, "eigenvectors", &rc);
	if (!q->G && rc == 0)
		rc = pspace_err_set(PSPACE_ENOMEM, "lowrank: out of memory for the Gram matrix");
	bli_rntm_init(&gc.rn);
	bli_rntm_set_num_threads(ex->threads > 0 ? ex->threads : 1, &gc.rn);
	if (rc == 0)
		rc = pspace_rowmat_strips(&q->t, r, ex, gram_strip, &gc);
	if (rc != 0)
		goto out;
	for (uint64_t i = 0; i < r; i++)
		for (uint64_t j = 0; j < i; j++)
			q->G[j * r + i] = q->G[i * r + j];
	memcpy(A, q->G, r * r * sizeof(*A));
	/* column-major A: column j, i.e. row j of the row-major view, is eigenvector j */
	info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', (lapack_int)r, A, (lapack_int)r, q->lam);
	if (info != 0) {
		rc = pspace_err_set(PSPACE_ENUMERIC, "lowrank: LAPACKE_dsyevd failed (info %d)",
		                    (int)info);
		goto out;
	}
	for (uint64_t i = 0; i < r / 2; i++) {
		double t = q->lam[i];

		q->lam[i] = q->lam[r - 1 - i];
		q->lam[r - 1 - i] = t;
		for (uint64_t a = 0; a < r; a++) {
			t = A[i * r + a];
			A[i * r + a] = A[(r - 1 - i) * r + a];
			A[(r - 1 - i) * r + a] = t;
		}
	}
	tol = (double)(r > d ? r : d) * DBL_EPSILON * (q->lam[0] > 0 ? q->lam[0] : 0);
	q->kept = 0;
	for (uint64_t i = 0; i < r; i++) {
		if (q->lam[i] < 0)
			q->lam[i] = 0;
		if (q->lam[i] > tol)
			q->kept = i + 1;
	}
	q->Q = A;
	A = NULL;
out:
	free(A);
	if (rc != 0) {
		free(q->lam);
		free(q->G);
		q->lam = q->G = NULL;
	}
	return rc;
}

/* The cached eigendecomposition of G, computed on first use. */
static int need_eig(lrs *q, const pspace_exec *ex)
{
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	if (!q->Q)
		rc = eig_compute(q, ex);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static int lrs_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	lrs *q = lrs_of(m);
	double s = 0;
	int rc = need_eig(q, ex);

	for (uint64_t i = 0; rc == 0 && i < q->r * q->r; i++)
		s += q->G[i] * q->G[i];
	*out = s;
	return rc;
}

/* T (k x r) = T Q^T diag(f) Q in place, with scratch P (k x r). */
static void spectral(lrs *q, const pspace_exec *ex, uint32_t k, const double *f, double *T,
                     double *P)
{
	uint64_t r = q->r;

	gemm(ex, k, r, r, 1.0, T, r, 1, q->Q, 1, r, P);
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < r; i++)
			P[j * r + i] *= f[i];
	gemm(ex, k, r, r, 1.0, P, r, 1, q->Q, r, 1, T);
}

/*
 * Y = beta Y + D^T (D X Q^T diag(f) Q), k vectors: the two passes every
 * spectral function of F goes through (beta 0 or 1 only).
 */
static int through(lrs *q, const pspace_exec *ex, uint32_t k, const double *f, const double *X,
                   size_t ldx, double *Y, size_t ldy)
{
	double *T, *P = NULL;
	int rc = 0;

	T = alloc_doubles((size_t)k * q->r, "D X", &rc);
	if (T)
		P = alloc_doubles((size_t)k * q->r, "D X", &rc);
	if (P)
		rc = pspace_rowmat_project(&q->t, q->r, ex, k, X, ldx, T);
	if (rc == 0) {
		spectral(q, ex, k, f, T, P);
		rc = pspace_rowmat_expand(&q->t, q->r, ex, k, 1.0, T, Y, ldy);
	}
	free(P);
	free(T);
	return rc;
}

/* ---- damped solve, log det, diag of the inverse ----------------------------------------- */

/* lambda_i + l > 0 for every i, and l > 0 unless D is square. */
static int check_damping(lrs *q, double l, const char *what)
{
	double lo = q->lam[q->r - 1] + l;

	if (q->r < q->base.d && !(l > 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank %s: D^T D has rank <= %llu < d = %llu: with damping "
		                      "%g it is %s; add damping",
		                      what, (unsigned long long)q->r, (unsigned long long)q->base.d,
		                      l, l == 0 ? "singular" : "not positive definite");
	if (!(lo > 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank %s: eigenvalue %g + damping %g is not positive",
		                      what, q->lam[q->r - 1], l);
	return 0;
}

static int lrs_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                     const double *B, size_t ldb, double *X, size_t ldx)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	uint64_t d = m->d;
	double *f = NULL, *T = NULL, *P = NULL;
	int rc;

	if (rm)
		return rm->vt->solve(rm, ex, damping, k, B, ldb, X, ldx);
	rc = need_eig(q, ex);
	if (rc == 0)
		rc = check_damping(q, damping, "solve");
	if (rc == 0)
		f = alloc_doubles(q->r, "the spectrum", &rc);
	if (f)
		T = alloc_doubles((size_t)k * q->r, "D B", &rc);
	if (T)
		P = alloc_doubles((size_t)k * q->r, "D B", &rc);
	if (P)
		rc = pspace_rowmat_project(&q->t, q->r, ex, k, B, ldb, T);
	if (rc != 0)
		goto out;
	for (uint64_t i = 0; i < q->r; i++)
		f[i] = damping != 0 ? 1.0 / (q->lam[i] + damping) : 1.0 / (q->lam[i] * q->lam[i]);
	spectral(q, ex, k, f, T, P);
	/* B is read (into T) before X is written: they may be the same */
	for (uint32_t j = 0; j < k; j++) {
		double *x = X + (size_t)j * ldx;

		if (damping == 0)
			memset(x, 0, d * sizeof(*x));
		else if (x != B + (size_t)j * ldb)
			memmove(x, B + (size_t)j * ldb, d * sizeof(*x));
	}
	rc = pspace_rowmat_expand(&q->t, q->r, ex, k, damping != 0 ? -1.0 : 1.0, T, X, ldx);
	for (uint32_t j = 0; rc == 0 && damping != 0 && j < k; j++)
		for (uint64_t i = 0; i < d; i++)
			X[(size_t)j * ldx + i] /= damping;
out:
	free(P);
	free(T);
	free(f);
	return rc;
}

static int lrs_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	double s = 0;
	int rc;

	if (rm)
		return rm->vt->logdet(rm, ex, damping, out);
	rc = need_eig(q, ex);
	if (rc == 0)
		rc = check_damping(q, damping, "log det");
	for (uint64_t i = 0; rc == 0 && i < q->r; i++)
		s += log(q->lam[i] + damping);
	if (rc == 0 && q->r < m->d)
		s += (double)(m->d - q->r) * log(damping);
	*out = s;
	return rc;
}

typedef struct diaginv_ctx {
	lrs *q;
	const pspace_exec *ex;
	double l;
	const double *w; /* per eigenvalue: the weight of its squared component */
	double *P;       /* r x E */
	double *out;
} diaginv_ctx;

static int diaginv_strip(void *ud, uint64_t c0, uint32_t cols, const double *S)
{
	diaginv_ctx *c = ud;
	uint64_t r = c->q->r;

	/* P = Q S: the components of the strip's columns along the eigenvectors */
	gemm(c->ex, r, cols, r, 1.0, c->q->Q, r, 1, S, cols, 1, c->P);
	for (uint32_t p = 0; p < cols; p++) {
		double s = 0;

		for (uint64_t i = 0; i < r; i++)
			s += c->w[i] * c->P[i * cols + p] * c->P[i * cols + p];
		c->out[c0 + p] = c->l != 0 ? (1.0 - s) / c->l : s;
	}
	return 0;
}

static int lrs_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	diaginv_ctx c = {q, ex, damping, NULL, NULL, out};
	double *w = NULL;
	int rc;

	if (rm)
		return rm->vt->diaginv(rm, ex, damping, out);
	rc = need_eig(q, ex);
	if (rc == 0)
		rc = check_damping(q, damping, "diaginv");
	if (rc == 0)
		w = alloc_doubles(q->r, "weights", &rc);
	if (w)
		c.P = alloc_doubles(q->r * q->t.info.tile, "a strip", &rc);
	if (rc != 0)
		goto out;
	/* (F + l I)^-1 = (I - D^T (l I + G)^-1 D) / l; for r = d and l = 0, D^T G^-2 D */
	for (uint64_t i = 0; i < q->r; i++)
		w[i] = damping != 0 ? 1.0 / (q->lam[i] + damping) : 1.0 / (q->lam[i] * q->lam[i]);
	c.w = w;
	rc = pspace_rowmat_strips(&q->t, q->r, ex, diaginv_strip, &c);
out:
	free(c.P);
	free(w);
	return rc;
}

/* ---- eigenpairs and square roots -------------------------------------------------------- */

static int lrs_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                   size_t ld)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	uint32_t n;
	double *W = NULL;
	int rc;

	if (rm)
		return rm->vt->eig(rm, ex, k, evals, evecs, ld);
	rc = need_eig(q, ex);
	if (rc != 0)
		return rc;
	n = (uint32_t)(q->kept < k ? q->kept : k);
	for (uint32_t i = 0; i < k; i++)
		evals[i] = i < q->r ? q->lam[i] : 0.0;
	if (!evecs)
		return 0;
	/* v_i = D^T q_i / sqrt(lambda_i): one pass for all of them */
	W = alloc_doubles((size_t)(n ? n : 1) * q->r, "eigenvectors", &rc);
	for (uint32_t i = 0; W && i < n; i++) {
		for (uint64_t a = 0; a < q->r; a++)
			W[i * q->r + a] = q->Q[i * q->r + a] / sqrt(q->lam[i]);
		memset(evecs + (size_t)i * ld, 0, m->d * sizeof(*evecs));
	}
	if (W && n)
		rc = pspace_rowmat_expand(&q->t, q->r, ex, n, 1.0, W, evecs, ld);
	if (rc == 0 && k > n)
		rc = pspace_lowrank_null_vectors(evecs, ld, n, m->d, k, evecs, ld);
	free(W);
	return rc;
}

static int lrs_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	return lrs_eig(m, ex, (uint32_t)m->d, evals, NULL, 0);
}

static int lrs_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                       const double *Z, size_t ldz, double *X, size_t ldx)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	double *f = NULL, a = 0;
	int rc;

	if (rm)
		return rm->vt->sqrt_mm(rm, ex, damping, cov, k, Z, ldz, X, ldx);
	rc = need_eig(q, ex);
	if (rc != 0)
		return rc;
	/* beyond the kept eigenvectors F + l I is l I: its square root a is needed */
	if (damping < 0 || (!cov && q->kept < m->d && damping == 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "lowrank: D^T D + %g I is not positive %sdefinite; add "
		                      "damping",
		                      damping, cov ? "semi-" : "");
	if (q->kept < m->d)
		a = cov ? sqrt(damping) : 1.0 / sqrt(damping);
	f = alloc_doubles(q->r, "the spectrum", &rc);
	for (uint64_t i = 0; f && i < q->r; i++) {
		double v = q->lam[i] + damping;

		f[i] = i < q->kept ? ((cov ? sqrt(v) : 1.0 / sqrt(v)) - a) / q->lam[i] : 0.0;
	}
	for (uint32_t j = 0; f && j < k; j++)
		for (uint64_t i = 0; i < m->d; i++)
			X[(size_t)j * ldx + i] = a * Z[(size_t)j * ldz + i];
	if (f)
		rc = through(q, ex, k, f, Z, ldz, X, ldx);
	free(f);
	return rc;
}

/* ---- dense, and what gives a new resident matrix ------------------------------------------- */

static int lrs_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	lrs *q = lrs_of(m);
	pspace_mat *rm = small(q, ex, &(int){0});
	uint64_t d = m->d;
	const uint32_t kb = 32;
	double *X, *Y = NULL;
	int rc = 0;

	if (rm)
		return rm->vt->dense(rm, ex, out, ld);
	/* F e_c for kb columns at a time: F is symmetric, so they are its rows */
	X = alloc_doubles((size_t)kb * d, "unit vectors", &rc);
	if (X)
		Y = alloc_doubles((size_t)kb * d, "columns", &rc);
	for (uint64_t c0 = 0; rc == 0 && c0 < d; c0 += kb) {
		uint32_t n = (uint32_t)(d - c0 < kb ? d - c0 : kb);

		memset(X, 0, (size_t)n * d * sizeof(*X));
		memset(Y, 0, (size_t)n * d * sizeof(*Y));
		for (uint32_t j = 0; j < n; j++)
			X[j * d + c0 + j] = 1.0;
		rc = lrs_mm(m, ex, n, 1.0, X, d, Y, d);
		for (uint32_t j = 0; rc == 0 && j < n; j++)
			memcpy(out + (c0 + j) * ld, Y + (size_t)j * d, d * sizeof(*out));
	}
	free(Y);
	free(X);
	return rc;
}

/* The resident copy within the default budget, or PSPACE_ENOTSUP naming @p what. */
static int whole(lrs *q, const char *what, pspace_mat **rm)
{
	pspace_exec ex;
	int rc;

	pspace_exec_resolve(NULL, &ex);
	*rm = resident(q, &ex, ex.mem_budget, &rc);
	if (rc == 0 && !*rm)
		rc =
		    pspace_err_set(PSPACE_ENOTSUP,
		                   "lowrank %s: %s needs the %llu x %llu rows in memory, more "
		                   "than a quarter of the default budget of %zu bytes",
		                   q->base.name ? q->base.name : "", what, (unsigned long long)q->r,
		                   (unsigned long long)q->base.d, ex.mem_budget);
	return rc;
}

static int lrs_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	pspace_mat *rm;
	int rc = whole(lrs_of(m), "pow", &rm);

	return rc != 0 ? rc : rm->vt->pow(rm, p, damping, out);
}

static int lrs_pinv(pspace_mat *m, double threshold, pspace_mat **out)
{
	pspace_mat *rm;
	int rc = whole(lrs_of(m), "pinv", &rm);

	return rc != 0 ? rc : rm->vt->pinv(rm, threshold, out);
}

static int lrs_scale(pspace_mat *m, double s, pspace_mat **out)
{
	pspace_mat *rm;
	int rc = whole(lrs_of(m), "scale", &rm);

	return rc != 0 ? rc : rm->vt->scale(rm, s, out);
}

static const pspace_mat_vtable lrs_vt = {
    .kind = PSPACE_KIND_LOWRANK,
    .destroy = lrs_destroy,
    .mm = lrs_mm,
    .vtmv_batch = lrs_vtmv_batch,
    .trace = lrs_trace,
    .diag = lrs_diag,
    .frob2 = lrs_frob2,
    .dense = lrs_dense,
    .solve = lrs_solve,
    .logdet = lrs_logdet,
    .diaginv = lrs_diaginv,
    .sqrt_mm = lrs_sqrt_mm,
    .pow = lrs_pow,
    .pinv = lrs_pinv,
    .scale = lrs_scale,
    .eig = lrs_eig,
    .eigvals = lrs_eigvals,
};

/* ---- opening -------------------------------------------------------------------------------- */

static int open_tiled(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *rd = NULL;
	pspace_layout *layout = NULL;
	pspace_array_info ai;
	double rows = 0;
	lrs *q;
	int rc = pspace_resident_open_begin(s, info, PSPACE_KIND_LOWRANK, &rd, &layout);

	if (rc == 0)
		rc = pspace_array_info_get(&ai, rd, PSPACE_LOWRANK_ROWS);
	if (rc == 0 && ai.count != 1)
		rc = pspace_err_set(PSPACE_ECORRUPT, "array %s is not one number",
		                    PSPACE_LOWRANK_ROWS);
	if (rc == 0)
		rc = pspace_reader_array(rd, PSPACE_LOWRANK_ROWS, PSPACE_F64, &rows, 1);
	if (rc == 0 && !(rows >= 1 && rows <= (double)info->d && rows == floor(rows)))
		rc =
		    pspace_err_set(PSPACE_ECORRUPT, "array %s holds %g, not a row count in 1..%llu",
		                   PSPACE_LOWRANK_ROWS, rows, (unsigned long long)info->d);
	if (rc == 0)
		rc = pspace_mat_alloc(out, sizeof(*q), &lrs_vt, info->d, layout, s, info->name);
	if (rc != 0)
		goto out;
	q = lrs_of(*out);
	pthread_mutex_init(&q->lock, NULL);
	q->r = (uint64_t)rows;
	q->stream = getenv("PSPACE_TEST_LOWRANK_STREAM") != NULL;
	rc = pspace_tiled_open(&q->t, s, info->name);
	if (rc == 0)
		rc = pspace_rowmat_check(&q->t, q->r);
	if (rc != 0) {
		pspace_mat_free(*out);
		*out = NULL;
	}
out:
	pspace_layout_free(layout);
	pspace_reader_close(rd);
	return rc;
}

int pspace_lowrank_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	*out = NULL;
	if (info->nblocks == 0)
		return pspace_lowrank_open_arrays(out, s, info);
	return open_tiled(out, s, info);
}
