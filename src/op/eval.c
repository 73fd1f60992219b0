/*
 * Lazy operators: evaluation. Every request folds the expression into its
 * normal form (op_impl.h) and reads each stored tile once: the stored
 * matrices of one tiling in one pass of the engine, resident kinds through
 * their own operations, with the coefficients as alpha (never a scaled
 * copy of stored data); products and inverses through k x d temporaries.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

static int check_rows(const pspace_op *a, const void *X, size_t ldx, const char *what)
{
	if (!a || !X)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL %s", a ? what : "operator");
	if (ldx < a->d)
		return pspace_err_set(PSPACE_EDIM, "op: leading dimension %zu of %s below d = %llu",
		                      ldx, what, (unsigned long long)a->d);
	return 0;
}

int pspace_op_mm(pspace_op *a, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                 size_t ldx, double beta, double *Y, size_t ldy)
{
	op_fold *f = NULL;
	int rc;

	rc = check_rows(a, X, ldx, "X");
	if (rc == 0)
		rc = check_rows(a, Y, ldy, "Y");
	if (rc || k == 0)
		return rc;
	if (alpha == 0.0) {
		pspace_vec_scale_rows(a->d, k, beta, Y, ldy);
		return 0;
	}
	/* beta == 0: the fold overwrites Y without reading it. */
	if (beta != 0.0)
		pspace_vec_scale_rows(a->d, k, beta, Y, ldy);
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_fold_apply(f, ex, k, alpha, X, ldx, Y, ldy, beta != 0.0);
	op_fold_free(f);
	return rc;
}

int pspace_op_mv(pspace_op *a, const pspace_exec *ex, const double *x, double *y)
{
	return pspace_op_mm(a, ex, 1, 1.0, x, a ? a->d : 0, 0.0, y, a ? a->d : 0);
}

/* out[j] += V_j^T W_j (W: k x d, ld d). */
static void dots(uint64_t d, uint32_t k, const double *V, size_t ldv, const double *W, double *out)
{
	for (uint32_t j = 0; j < k; j++)
		out[j] += pspace_vec_dot(d, V + (size_t)j * ldv, W + (size_t)j * d);
}

int pspace_op_vtmv_batch(pspace_op *a, const pspace_exec *ex, uint32_t k, const double *V,
                         size_t ldv, double *out)
{
	op_leaves l;
	op_fold *f = NULL;
	double *W = NULL, *tmp = NULL;
	size_t i;
	uint32_t j;
	int rc;

	memset(&l, 0, sizeof(l));
	rc = check_rows(a, V, ldv, "V");
	if (rc || k == 0)
		return rc;
	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL output");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	memset(out, 0, k * sizeof(*out));
	rc = op_fold_leaves(f, &l);
	if (rc)
		goto out;
	if (!op_fold_is_linear(f) || l.ngroups > 0) {
		W = malloc((size_t)k * f->d * sizeof(double));
		if (!W) {
			rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for vtmv_batch");
			goto out;
		}
	}
	if (!op_fold_is_linear(f)) {
		/* W = A V in one mm, then the k dot products. */
		rc = op_fold_apply(f, ex, k, 1.0, V, ldv, W, f->d, 0);
		if (rc == 0)
			dots(f->d, k, V, ldv, W, out);
		goto out;
	}
	/* Stored matrices: W = sum c_i M_i V, one pass per group, whatever k. */
	if (l.ngroups) {
		memset(W, 0, (size_t)k * f->d * sizeof(double));
		rc = op_groups_apply(&l, ex, k, 1.0, V, ldv, W, f->d);
		if (rc)
			goto out;
		dots(f->d, k, V, ldv, W, out);
	}
	/* Resident kinds: their own vTMv, which may need no d-vectors at all. */
	if (op_leaves_resident(&l) < l.n) {
		tmp = malloc(k * sizeof(double));
		if (!tmp) {
			rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for vtmv_batch");
			goto out;
		}
	}
	for (i = op_leaves_resident(&l); i < l.n; i++) {
		rc = pspace_mat_vtmv_batch(l.m[i], ex, k, V, ldv, tmp);
		if (rc)
			goto out;
		for (j = 0; j < k; j++)
			out[j] += l.c[i] * tmp[j];
	}
	for (j = 0; j < k && f->s != 0.0; j++) {
		const double *v = V + (size_t)j * ldv;

		out[j] += f->s * pspace_vec_dot(f->d, v, v);
	}
out:
	if (rc == 0)
		rc = op_check_finite(out, k, "v^T A v");
	free(tmp);
	free(W);
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}

int pspace_op_vtmv(pspace_op *a, const pspace_exec *ex, const double *v, double *out)
{
	return pspace_op_vtmv_batch(a, ex, 1, v, a ? a->d : 0, out);
}

/* ---- trace and diagonal ------------------------------------------------------ */

int pspace_op_trace(pspace_op *a, const pspace_exec *ex, pspace_trace_opts *opts, double *out)
{
	op_leaves l;
	double t, est = 0, se = 0;
	op_fold *f = NULL, rest;
	uint32_t probes = opts && opts->probes ? opts->probes : 64;
	uint64_t seed = opts ? opts->seed : 1;
	size_t i, j;
	int rc;

	memset(&rest, 0, sizeof(rest));
	memset(&l, 0, sizeof(l));
	if (!a || !out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to trace");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_fold_leaves(f, &l);
	if (rc)
		goto out;
	/* Terms without an exact trace go to Hutchinson, the others are exact. */
	rest.d = f->d;
	rest.t = malloc((f->n ? f->n : 1) * sizeof(op_term));
	if (!rest.t) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for trace");
		goto out;
	}
	*out = f->s * (double)f->d;
	for (i = 0; i < l.n; i++) {
		rc = pspace_mat_trace(l.m[i], ex, &t);
		if (rc == PSPACE_ENOTSUP) {
			for (j = 0; j < f->n; j++)
				if (op_term_is_linear(&f->t[j]) && f->t[j].f[0].m == l.m[i])
					rest.t[rest.n++] = f->t[j];
			pspace_errclear();
			rc = 0;
			continue;
		}
		if (rc)
			goto out;
		*out += l.c[i] * t;
	}
	for (j = 0; j < f->n; j++)
		if (!op_term_is_linear(&f->t[j]))
			rest.t[rest.n++] = f->t[j];
	if (rest.n) {
		rc = op_hutchinson(&rest, ex, probes, seed, &est, &se);
		if (rc)
			goto out;
		*out += est;
	}
	if (opts) {
		opts->exact = rest.n == 0;
		opts->stderr_ = se;
	}
	rc = op_check_finite(out, 1, "trace");
out:
	free(rest.t); /* a view: the terms belong to f */
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}

int pspace_op_diag(pspace_op *a, const pspace_exec *ex, double *out)
{
	op_leaves l;
	double *tmp = NULL;
	op_fold *f = NULL;
	size_t i;
	uint64_t p;
	int rc;

	memset(&l, 0, sizeof(l));
	if (!a || !out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to diag");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	if (!op_fold_is_linear(f)) {
		rc = pspace_err_set(PSPACE_ENOTSUP,
		                    "op: diag of a product or inverse has no exact form; "
		                    "materialize it (pspace_op_dense) or estimate it");
		goto out;
	}
	rc = op_fold_leaves(f, &l);
	if (rc)
		goto out;
	tmp = malloc(f->d * sizeof(double));
	if (!tmp) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for diag");
		goto out;
	}
	for (p = 0; p < f->d; p++)
		out[p] = f->s;
	for (i = 0; i < l.n; i++) {
		rc = pspace_mat_diag(l.m[i], ex, tmp);
		if (rc)
			goto out;
		for (p = 0; p < f->d; p++)
			out[p] += l.c[i] * tmp[p];
	}
out:
	free(tmp);
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}

/* ---- dense ------------------------------------------------------------------- */

uint32_t op_fold_unit_block(const op_fold *f, const pspace_exec *ex)
{
	size_t per = 2 * f->d * sizeof(double) + op_fold_scratch(f);
	size_t b = op_budget(ex) / (per ? per : 1);

	if (b < 1)
		b = 1;
	if (b > f->d)
		b = f->d;
	if (b > 4096)
		b = 4096;
	return (uint32_t)b;
}

int op_fold_unit_band(const op_fold *f, const pspace_exec *ex, uint64_t j0, uint32_t b, double *E,
                      double *Y)
{
	uint32_t jj;

	memset(E, 0, (size_t)b * f->d * sizeof(double));
	for (jj = 0; jj < b; jj++)
		E[(size_t)jj * f->d + j0 + jj] = 1.0;
	return op_fold_apply(f, ex, b, 1.0, E, f->d, Y, f->d, 0);
}

/*
 * Calls @p emit for column bands [j0, j0 + b) of A: Y (b x d) holds
 * Y[jj][i] = A[i][j0 + jj], computed with one mm on unit vectors.
 */
typedef int (*band_fn)(void *ud, uint64_t j0, uint32_t b, const double *Y);

static int bands(const op_fold *f, const pspace_exec *ex, band_fn emit, void *ud)
{
	uint32_t b = op_fold_unit_block(f, ex);
	double *E = NULL, *Y = NULL;
	uint64_t j0;
	int rc = 0;

	E = malloc((size_t)b * f->d * sizeof(double));
	Y = malloc((size_t)b * f->d * sizeof(double));
	if (!E || !Y) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for %u unit vectors", b);
		goto out;
	}
	for (j0 = 0; j0 < f->d; j0 += b) {
		uint32_t bb = f->d - j0 < b ? (uint32_t)(f->d - j0) : b;

		rc = op_fold_unit_band(f, ex, j0, bb, E, Y);
		if (rc)
			goto out;
		rc = emit(ud, j0, bb, Y);
		if (rc)
			goto out;
	}
out:
	free(Y);
	free(E);
	return rc;
}

typedef struct dense_ctx {
	uint64_t d;
	double *out;
	size_t ld;
} dense_ctx;

static int dense_add(void *ud, uint64_t j0, uint32_t b, const double *Y)
{
	dense_ctx *c = ud;
	uint64_t i;
	uint32_t jj;

	for (i = 0; i < c->d; i++)
		for (jj = 0; jj < b; jj++)
			c->out[i * c->ld + j0 + jj] += Y[(size_t)jj * c->d + i];
	return 0;
}

int op_fold_dense(const op_fold *f, const pspace_exec *ex, double *out, size_t ld)
{
	op_leaves l;
	dense_ctx c = {f->d, out, ld};
	size_t i;
	uint64_t p, q;
	int rc;

	if (!op_fold_is_linear(f)) {
		for (p = 0; p < f->d; p++)
			memset(out + p * ld, 0, f->d * sizeof(double));
		return bands(f, ex, dense_add, &c);
	}
	/* The first matrix writes in place; the others add through unit vectors. */
	rc = op_fold_leaves(f, &l);
	if (rc)
		return rc;
	if (l.n == 0) {
		for (p = 0; p < f->d; p++)
			memset(out + p * ld, 0, f->d * sizeof(double));
	} else {
		rc = pspace_mat_dense(l.m[0], ex, out, ld);
		if (rc)
			goto out;
		for (p = 0; p < f->d; p++)
			for (q = 0; q < f->d; q++)
				out[p * ld + q] *= l.c[0];
	}
	for (i = 1; i < l.n; i++) {
		op_factor fac = {FACTOR_MAT, l.m[i], NULL, NULL};
		op_term t = {l.c[i], 1, &fac};
		op_fold one = {f->d, 0.0, 1, &t};

		rc = bands(&one, ex, dense_add, &c);
		if (rc)
			goto out;
	}
	for (p = 0; p < f->d; p++)
		out[p * ld + p] += f->s;
out:
	op_leaves_free(&l);
	return rc;
}

int pspace_op_dense(pspace_op *a, const pspace_exec *ex, double *out, size_t ld)
{
	op_fold *f = NULL;
	int rc;

	rc = check_rows(a, out, ld, "output");
	if (rc)
		return rc;
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_fold_dense(f, ex, out, ld);
	op_fold_free(f);
	return rc;
}

/* ---- eigenpairs ------------------------------------------------------------ */

int pspace_op_eig(pspace_op *a, const pspace_exec *ex, uint32_t k, pspace_eig_opts *opts,
                  double *evals, double *evecs, size_t ld)
{
	op_fold *f = NULL;
	int rc;

	if (!a || !evals)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to eig");
	if (k == 0 || k > a->d)
		return pspace_err_set(PSPACE_EINVAL,
		                      "op: %u eigenpairs of a matrix of dimension %llu",
		                      (unsigned)k, (unsigned long long)a->d);
	if (evecs && ld < a->d)
		return pspace_err_set(PSPACE_EDIM, "op: leading dimension %zu of evecs below d",
		                      ld);
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_lanczos(f, ex, LANCZOS_TOP, k, evals, evecs, ld, opts);
	if (rc == 0)
		rc = op_check_finite(evals, k, "eigenvalue");
	op_fold_free(f);
	return rc;
}
