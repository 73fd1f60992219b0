/*
 * Stored (tiled) matrices: log det(M + l I), diag((M + l I)^-1) and the
 * square roots that turn normal vectors into samples, from the Cholesky
 * factor L L^T of each diagonal block plus damping, computed in memory one
 * block at a time (each block within the memory budget, as the direct
 * solve). log det = 2 sum log L_ii; the inverse's diagonal from the
 * inverse LAPACK dpotri forms from L; samples of N(0, (M + l I)^-1) are
 * L^-T z, those of N(0, M + l I) are L z. A block beyond the budget uses
 * a stored factor of the matrix with that damping (factor_solve.c), if
 * there is one, for log det, the inverse's diagonal and samples.
 */
#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"
#include "mat/factor.h"
#include "mat/stored.h"
#include "pspace/mat.h"

/* Called with block @p b's factor L (n x n, column-major lower) at parameters [off, off + n). */
typedef int (*factor_fn)(void *ud, pspace_mat *m, const pspace_exec *ex, uint32_t b, uint64_t off,
                         uint64_t n, double *L);

/*
 * Factors every block of M + damping I in turn and hands each factor to
 * @p fn. @p what names the operation in messages.
 */
static int each_factor(pspace_mat *mat, const pspace_exec *ex, double damping, const char *what,
                       factor_fn fn, void *ud)
{
	pspace_stored *m = pspace_stored_of(mat);
	const pspace_tiled *t = &m->t;
	uint64_t nmax = 0;
	double *A = NULL;
	char need[32], have[32];
	int rc = 0;

	if (!t->info.symmetric)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "matrix %s: a stored product is not symmetric: no %s",
		                      mat->name, what);
	for (uint32_t b = 0; b < t->info.nblocks; b++) {
		uint64_t n = t->block_dim[b];

		if ((double)n * (double)n * sizeof(double) > (double)ex->mem_budget)
			return pspace_err_set(
			    PSPACE_ENOMEM,
			    "matrix %s: %s: the Cholesky factor of block %u (%llu x %llu) needs "
			    "%s, "
			    "more than the memory budget of %s",
			    mat->name, what, b, (unsigned long long)n, (unsigned long long)n,
			    pspace_fmt_bytes(need, sizeof(need), n * n * sizeof(double)),
			    pspace_fmt_bytes(have, sizeof(have), ex->mem_budget));
		if ((uint64_t)(lapack_int)(n * n) != n * n)
			return pspace_err_set(PSPACE_ENOTSUP,
			                      "matrix %s: block %u too large for LAPACK", mat->name,
			                      b);
		nmax = n > nmax ? n : nmax;
	}
	A = malloc((nmax ? nmax * nmax : 1) * sizeof(*A));
	if (!A)
		return pspace_err_set(PSPACE_ENOMEM, "matrix %s: %s: out of memory", mat->name,
		                      what);
	for (uint32_t b = 0; rc == 0 && b < t->info.nblocks; b++) {
		uint64_t n = t->block_dim[b];
		lapack_int info;

		rc = pspace_shard_dense(t, ex, b, A, n);
		for (uint64_t i = 0; rc == 0 && i < n; i++)
			A[i * n + i] += damping;
		if (rc != 0)
			break;
		info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
		if (info != 0) {
			rc = pspace_err_set(
			    PSPACE_ENUMERIC,
			    "matrix %s: %s: block %u plus damping %g is not positive "
			    "definite (Cholesky pivot %d); add damping",
			    mat->name, what, b, damping, (int)info);
			break;
		}
		rc = fn(ud, mat, ex, b, t->block_off[b], n, A);
	}
	free(A);
	return rc;
}

static int logdet_block(void *ud, pspace_mat *m, const pspace_exec *ex, uint32_t b, uint64_t off,
                        uint64_t n, double *L)
{
	double *sum = ud;

	(void)m, (void)ex, (void)b, (void)off;
	for (uint64_t i = 0; i < n; i++)
		*sum += 2.0 * log(L[i * n + i]);
	return 0;
}

/*
 * Name of a stored factor of @p m with @p damping into @p out, after the
 * in-memory factor failed with PSPACE_ENOMEM. @return 0, or that error with
 * its message when there is none.
 */
static int stored_factor(pspace_mat *m, double damping, char *out, size_t cap)
{
	const pspace_tiled *t = &pspace_stored_of(m)->t;
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", pspace_errdetail());
	if (pspace_factor_lookup(out, cap, t->s, t->info.id, damping) == 0) {
		pspace_errclear();
		return 0;
	}
	return pspace_err_set(PSPACE_ENOMEM, "%s", msg);
}

int pspace_stored_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	char f[PSPACE_NAME_MAX + 1] = "";
	int rc;

	*out = 0;
	rc = each_factor(m, ex, damping, "log-determinant", logdet_block, out);
	/* Beyond the budget: the diagonal tiles of a stored factor, if there is one. */
	if (rc == PSPACE_ENOMEM)
		rc = stored_factor(m, damping, f, sizeof(f));
	if (rc == 0 && f[0])
		rc = pspace_factor_logdet(out, pspace_stored_of(m)->t.s, f);
	return rc;
}

static int diaginv_block(void *ud, pspace_mat *m, const pspace_exec *ex, uint32_t b, uint64_t off,
                         uint64_t n, double *L)
{
	double *out = ud;
	lapack_int info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (lapack_int)n, L, (lapack_int)n);

	(void)ex;
	if (info != 0)
		return pspace_err_set(
		    PSPACE_ENUMERIC, "matrix %s: diagonal of the inverse: block %u: dpotri info %d",
		    m->name, b, (int)info);
	for (uint64_t i = 0; i < n; i++)
		out[off + i] = L[i * n + i];
	return 0;
}

int pspace_stored_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	char f[PSPACE_NAME_MAX + 1] = "";
	int rc = each_factor(m, ex, damping, "diagonal of the inverse", diaginv_block, out);

	/* Beyond the budget: columns of the stored factor's inverse, if there is one. */
	if (rc == PSPACE_ENOMEM)
		rc = stored_factor(m, damping, f, sizeof(f));
	if (rc == 0 && f[0])
		rc = pspace_factor_diaginv(out, pspace_stored_of(m)->t.s, f, ex);
	return rc;
}

typedef struct sqrt_job {
	int cov;
	uint32_t k;
	double *X;
	size_t ldx;
} sqrt_job;

/* X's block rows <- L z (cov) or L^-T z, z already in X; all k vectors in one BLIS call. */
static int sqrt_block(void *ud, pspace_mat *m, const pspace_exec *ex, uint32_t b, uint64_t off,
                      uint64_t n, double *L)
{
	const sqrt_job *j = ud;
	double one = 1.0;
	rntm_t rn;

	(void)m, (void)b;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(ex->threads > 0 ? ex->threads : 1, &rn);
	/* The block of the k vectors is the n x k matrix with strides (1, ldx). */
	if (j->cov)
		bli_dtrmm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_NO_TRANSPOSE, BLIS_NONUNIT_DIAG, (dim_t)n,
		             (dim_t)j->k, &one, L, 1, (inc_t)n, j->X + off, 1, (inc_t)j->ldx, NULL,
		             &rn);
	else
		bli_dtrsm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_TRANSPOSE, BLIS_NONUNIT_DIAG, (dim_t)n,
		             (dim_t)j->k, &one, L, 1, (inc_t)n, j->X + off, 1, (inc_t)j->ldx, NULL,
		             &rn);
	return 0;
}

int pspace_stored_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                          const double *Z, size_t ldz, double *X, size_t ldx)
{
	sqrt_job j = {cov, k, X, ldx};
	char f[PSPACE_NAME_MAX + 1];
	pspace_reader *r = NULL;
	int rc;

	for (uint32_t i = 0; i < k; i++)
		memcpy(X + (size_t)i * ldx, Z + (size_t)i * ldz, m->d * sizeof(*X));
	rc = each_factor(m, ex, damping, "square root", sqrt_block, &j);
	/* Beyond the budget: one sweep over a stored factor for all k vectors. */
	if (rc == PSPACE_ENOMEM && stored_factor(m, damping, f, sizeof(f)) == 0) {
		rc = pspace_reader_open(&r, pspace_stored_of(m)->t.s, f, 0);
		if (rc == 0)
			rc = pspace_factor_sweep(
			    r, ex, cov ? PSPACE_SWEEP_MUL_L : PSPACE_SWEEP_SOLVE_LT, k, X, ldx);
		pspace_reader_close(r);
	}
	return rc;
}
