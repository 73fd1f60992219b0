/*
 * Using a stored Cholesky factor (factor.c writes it): finding the factor
 * of a matrix and damping, triangular sweeps that read each tile once for
 * any number of vectors, solves (a forward and a backward sweep) and the
 * log-determinant from the diagonal tiles.
 */
#define BLIS_DISABLE_BLAS_DEFS
#include <blis.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/exec.h"
#include "mat/factor.h"
#include "pspace/mat.h"

/* The complete factors of a store, collected from one catalog snapshot. */
typedef struct names {
	char (*v)[PSPACE_NAME_MAX + 1];
	size_t n, cap;
} names;

static int collect(const pspace_matrix_info *info, void *ud)
{
	names *l = ud;

	if (info->kind != PSPACE_KIND_CHOLESKY || info->state != PSPACE_STATE_COMPLETE)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		if (!v)
			return pspace_err_set(PSPACE_ENOMEM, "factor lookup: out of memory");
		l->v = v;
		l->cap = cap;
	}
	memcpy(l->v[l->n++], info->name, sizeof(info->name));
	return 0;
}

int pspace_factor_lookup(char *out, size_t cap, pspace_store *s, uint64_t source_id, double damping)
{
	names l = {NULL, 0, 0};
	int rc = pspace_store_foreach(s, collect, &l), found = 0;

	for (size_t i = 0; rc == 0 && !found && i < l.n; i++) {
		pspace_reader *r = NULL;
		uint64_t id = 0;
		double dmp = 0;

		rc = pspace_reader_open(&r, s, l.v[i], 0);
		if (rc == 0)
			rc = pspace_factor_params(&id, &dmp, r);
		pspace_reader_close(r);
		/* A factor removed or damaged meanwhile is not a match, not a failure. */
		if (rc) {
			rc = 0;
			continue;
		}
		if (id == source_id && dmp == damping && strlen(l.v[i]) < cap) {
			strcpy(out, l.v[i]);
			found = 1;
		}
	}
	free(l.v);
	if (rc == 0 && !found)
		rc = pspace_err_set(PSPACE_ENOTFOUND, "no stored factor with damping %g", damping);
	return rc;
}

int pspace_factor_find(char *out, size_t cap, pspace_store *s, const char *source, double damping)
{
	pspace_matrix_info mi;
	int rc;

	if (!out || !s || !source)
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_find: NULL argument");
	rc = pspace_matrix_info_get(&mi, s, source);
	if (rc == 0)
		rc = pspace_factor_lookup(out, cap, s, mi.id, damping);
	if (rc == PSPACE_ENOTFOUND)
		rc = pspace_err_set(PSPACE_ENOTFOUND,
		                    "store %s: no stored factor of %s with damping %g",
		                    pspace_store_path(s), source, damping);
	return rc;
}

/*
 * One sweep's state: the reader, a decode buffer of one tile, BLIS threads.
 * A forward sweep may start at tile row i0 of the block (the rows of X
 * above it are zero); X then holds the block's rows from tile row i0 on.
 */
typedef struct sweep {
	pspace_reader *r;
	pspace_codec *codec;
	double *S;
	uint32_t T, k, i0;
	double *X;
	size_t ldx;
	rntm_t rn;
} sweep;

/* Decodes tile (i, j) of block @p b into s->S (row-major, ld = its columns). */
static int load(sweep *s, uint32_t b, uint32_t i, uint32_t j, uint32_t cols)
{
	pspace_tile_ref t;
	int rc = pspace_reader_tile(&t, s->r, b, i, j);

	if (rc == PSPACE_ENOTFOUND) {
		memset(s->S, 0, (size_t)s->T * cols * sizeof(double));
		return 0;
	}
	return rc ? rc : pspace_reader_decode(s->r, s->codec, &t, PSPACE_F64, s->S, cols);
}

/* Block @p b of dimension @p n whose rows of X start at X + off. */
static int sweep_block(sweep *s, pspace_sweep what, uint32_t b, uint64_t n, uint64_t off)
{
	uint32_t nt = (uint32_t)((n + s->T - 1) / s->T);
	double one = 1.0, minus = -1.0;
	int rc = 0;

#define ROWS(i) ((dim_t)((uint64_t)(i)*s->T + s->T <= n ? s->T : n - (uint64_t)(i)*s->T))
#define XI(i)   (s->X + off + ((uint64_t)(i)-s->i0) * s->T)
	if (what == PSPACE_SWEEP_SOLVE_L) {
		/* Row i: X_i -= L_ij X_j (j < i), then X_i = L_ii^-1 X_i: file order. */
		for (uint32_t i = s->i0; rc == 0 && i < nt; i++)
			for (uint32_t j = s->i0; rc == 0 && j <= i; j++) {
				rc = load(s, b, i, j, (uint32_t)ROWS(j));
				if (rc)
					break;
				if (j < i)
					bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, ROWS(i),
					             s->k, ROWS(j), &minus, s->S, ROWS(j), 1, XI(j),
					             1, (inc_t)s->ldx, &one, XI(i), 1,
					             (inc_t)s->ldx, NULL, &s->rn);
				else
					bli_dtrsm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_NO_TRANSPOSE,
					             BLIS_NONUNIT_DIAG, ROWS(i), s->k, &one, s->S,
					             ROWS(i), 1, XI(i), 1, (inc_t)s->ldx, NULL,
					             &s->rn);
			}
		return rc;
	}
	/*
	 * Backward, row i from the last: L^-T: X_i = L_ii^-T X_i is final once
	 * the rows below have given their part, then X_j -= L_ij^T X_i. L X:
	 * X_i = L_ii X_i + sum_j L_ij X_j, the X_j (j < i) still untouched.
	 */
	for (uint32_t i = nt; rc == 0 && i-- > 0;)
		for (uint32_t j = i + 1; rc == 0 && j-- > 0;) {
			rc = load(s, b, i, j, (uint32_t)ROWS(j));
			if (rc)
				break;
			if (j == i && what == PSPACE_SWEEP_SOLVE_LT)
				bli_dtrsm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_TRANSPOSE,
				             BLIS_NONUNIT_DIAG, ROWS(i), s->k, &one, s->S, ROWS(i),
				             1, XI(i), 1, (inc_t)s->ldx, NULL, &s->rn);
			else if (j == i)
				bli_dtrmm_ex(BLIS_LEFT, BLIS_LOWER, BLIS_NO_TRANSPOSE,
				             BLIS_NONUNIT_DIAG, ROWS(i), s->k, &one, s->S, ROWS(i),
				             1, XI(i), 1, (inc_t)s->ldx, NULL, &s->rn);
			else if (what == PSPACE_SWEEP_SOLVE_LT)
				bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, ROWS(j), s->k,
				             ROWS(i), &minus, s->S, ROWS(j), 1, XI(i), 1,
				             (inc_t)s->ldx, &one, XI(j), 1, (inc_t)s->ldx, NULL,
				             &s->rn);
			else
				bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, ROWS(i), s->k,
				             ROWS(j), &one, s->S, ROWS(j), 1, XI(j), 1,
				             (inc_t)s->ldx, &one, XI(i), 1, (inc_t)s->ldx, NULL,
				             &s->rn);
		}
#undef XI
#undef ROWS
	return rc;
}

int pspace_factor_sweep(pspace_reader *r, const pspace_exec *ex, pspace_sweep what, uint32_t k,
                        double *X, size_t ldx)
{
	const pspace_matrix_info *mi = pspace_reader_info(r);
	sweep s;
	pspace_exec e;
	uint64_t off = 0;
	int rc;

	memset(&s, 0, sizeof(s));
	if (mi->kind != PSPACE_KIND_CHOLESKY)
		return pspace_err_set(PSPACE_ENOTSUP, "matrix %s is a %s, not a Cholesky factor",
		                      mi->name, pspace_kind_name(mi->kind));
	pspace_exec_resolve(ex, &e);
	s.r = r;
	s.T = mi->tile;
	s.k = k;
	s.X = X;
	s.ldx = ldx;
	bli_rntm_init(&s.rn);
	bli_rntm_set_num_threads(e.threads, &s.rn);
	s.S = malloc((size_t)s.T * s.T * sizeof(double));
	rc = s.S ? pspace_codec_create(&s.codec)
	         : pspace_err_set(PSPACE_ENOMEM, "matrix %s: sweep: out of memory", mi->name);
	for (uint32_t b = 0; rc == 0 && b < mi->nblocks; b++) {
		uint64_t n = pspace_reader_block_dim(r, b);

		rc = sweep_block(&s, what, b, n, off);
		off += n;
	}
	pspace_codec_free(s.codec);
	free(s.S);
	return rc;
}

int pspace_factor_solve(pspace_store *s, const char *factor, const pspace_exec *ex, uint32_t k,
                        const double *B, size_t ldb, double *X, size_t ldx)
{
	pspace_reader *r = NULL;
	uint64_t d;
	int rc;

	if (!s || !factor || (k && (!B || !X)))
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_solve: NULL argument");
	rc = pspace_reader_open(&r, s, factor, 0);
	if (rc)
		return rc;
	d = pspace_reader_info(r)->d;
	if (ldb < d || ldx < d) {
		rc = pspace_err_set(PSPACE_EDIM,
		                    "matrix %s: solve: leading dimension below d = %llu", factor,
		                    (unsigned long long)d);
		goto out;
	}
	for (uint32_t j = 0; X != B && j < k; j++)
		memcpy(X + (size_t)j * ldx, B + (size_t)j * ldb, d * sizeof(double));
	if (k == 0)
		goto out;
	rc = pspace_factor_sweep(r, ex, PSPACE_SWEEP_SOLVE_L, k, X, ldx);
	if (rc == 0)
		rc = pspace_factor_sweep(r, ex, PSPACE_SWEEP_SOLVE_LT, k, X, ldx);
out:
	pspace_reader_close(r);
	return rc;
}

/*
 * Opens stored factor @p factor for reading into *r (NULL on failure).
 * @return 0, PSPACE_ENOTSUP (not a Cholesky factor), or a store error.
 */
static int open_factor(pspace_reader **r, pspace_store *s, const char *factor)
{
	const pspace_matrix_info *mi;
	int rc = pspace_reader_open(r, s, factor, 0);

	if (rc)
		return rc;
	mi = pspace_reader_info(*r);
	if (mi->kind == PSPACE_KIND_CHOLESKY)
		return 0;
	rc = pspace_err_set(PSPACE_ENOTSUP, "matrix %s is a %s, not a Cholesky factor", factor,
	                    pspace_kind_name(mi->kind));
	pspace_reader_close(*r);
	*r = NULL;
	return rc;
}

/*
 * diag(A^-1) with A = L L^T: A^-1 = L^-T L^-1, so entry c is the squared
 * norm of column c of L^-1. Columns are taken w at a time (whole tiles, as
 * many as half the budget holds, at least one tile): X = L^-1 E, E those
 * columns of the identity, by a forward sweep that starts at their first
 * tile row (L^-1 is lower triangular: the rows above are zero), so the
 * groups together read the factor's tiles about d / (3 w) times and cost
 * about d^3 / 3 flops.
 */
int pspace_factor_diaginv(double *out, pspace_store *st, const char *factor, const pspace_exec *ex)
{
	const pspace_matrix_info *mi;
	pspace_reader *r = NULL;
	pspace_exec e;
	sweep s;
	uint64_t off = 0;
	int rc;

	memset(&s, 0, sizeof(s));
	if (!out || !st || !factor)
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_diaginv: NULL argument");
	rc = open_factor(&r, st, factor);
	if (rc)
		return rc;
	mi = pspace_reader_info(r);
	pspace_exec_resolve(ex, &e);
	s.r = r;
	s.T = mi->tile;
	bli_rntm_init(&s.rn);
	bli_rntm_set_num_threads(e.threads, &s.rn);
	s.S = malloc((size_t)s.T * s.T * sizeof(double));
	rc = s.S ? pspace_codec_create(&s.codec)
	         : pspace_err_set(PSPACE_ENOMEM, "matrix %s: diaginv: out of memory", factor);
	for (uint32_t b = 0; rc == 0 && b < mi->nblocks; b++) {
		uint64_t n = pspace_reader_block_dim(r, b), nt = (n + s.T - 1) / s.T;
		uint64_t wt = e.mem_budget / 2 / ((uint64_t)s.T * n * sizeof(double));

		wt = wt < 1 ? 1 : wt > nt ? nt : wt;
		for (uint64_t g = 0; rc == 0 && g < nt; g += wt) {
			uint64_t r0 = g * s.T, c1 = (g + wt) * s.T < n ? (g + wt) * s.T : n;
			uint64_t w = c1 - r0, rows = n - r0;

			s.i0 = (uint32_t)g;
			s.k = (uint32_t)w;
			s.ldx = rows;
			s.X = calloc(w * rows, sizeof(double));
			if (!s.X) {
				rc = pspace_err_set(PSPACE_ENOMEM,
				                    "matrix %s: diaginv: out of memory for %llu "
				                    "columns",
				                    factor, (unsigned long long)w);
				break;
			}
			for (uint64_t c = 0; c < w; c++)
				s.X[c * rows + c] = 1.0;
			/* sweep_block addresses the block's rows from off, X from r0 */
			rc = sweep_block(&s, PSPACE_SWEEP_SOLVE_L, b, n, 0);
			for (uint64_t c = 0; rc == 0 && c < w; c++) {
				const double *x = s.X + c * rows;
				double sum = 0;

				for (uint64_t i = c; i < rows; i++)
					sum += x[i] * x[i];
				out[off + r0 + c] = sum;
			}
			free(s.X);
			s.X = NULL;
		}
		off += n;
	}
	pspace_codec_free(s.codec);
	free(s.S);
	pspace_reader_close(r);
	return rc;
}

int pspace_factor_logdet(double *out, pspace_store *s, const char *factor)
{
	const pspace_matrix_info *mi;
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	pspace_tile_ref t;
	double *S = NULL, sum = 0;
	int rc;

	if (!out || !s || !factor)
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_logdet: NULL argument");
	*out = 0;
	rc = open_factor(&r, s, factor);
	if (rc)
		return rc;
	mi = pspace_reader_info(r);
	S = malloc((size_t)mi->tile * mi->tile * sizeof(double));
	rc = S ? pspace_codec_create(&c) : pspace_err_set(PSPACE_ENOMEM, "logdet: out of memory");
	for (uint32_t b = 0; rc == 0 && b < mi->nblocks; b++) {
		uint64_t n = pspace_reader_block_dim(r, b);

		for (uint64_t i = 0; rc == 0 && i * mi->tile < n; i++) {
			uint64_t ri = n - i * mi->tile < mi->tile ? n - i * mi->tile : mi->tile;

			rc = pspace_reader_tile(&t, r, b, (uint32_t)i, (uint32_t)i);
			if (rc == 0)
				rc = pspace_reader_decode(r, c, &t, PSPACE_F64, S, ri);
			for (uint64_t a = 0; rc == 0 && a < ri; a++)
				sum += 2.0 * log(S[a * ri + a]);
		}
	}
	if (rc == 0)
		*out = sum;
	pspace_codec_free(c);
	free(S);
	pspace_reader_close(r);
	return rc;
}
