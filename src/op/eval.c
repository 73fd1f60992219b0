/*
 * Lazy operators: evaluation. Every request folds the expression into its
 * normal form (op_impl.h) and asks each matrix of it once: linear terms
 * through the representation's own one-pass operation with the
 * coefficient as alpha (never a scaled copy of stored data), products and
 * inverses through k x d temporaries.
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

int pspace_op_mm(pspace_op *a, const pspace_exec *ex, uint32_t k, const double *X, size_t ldx,
                 double *Y, size_t ldy)
{
	op_fold *f = NULL;
	int rc;

	rc = check_rows(a, X, ldx, "X");
	if (rc == 0)
		rc = check_rows(a, Y, ldy, "Y");
	if (rc || k == 0)
		return rc;
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_fold_apply(f, ex, k, 1.0, X, ldx, Y, ldy, 0);
	op_fold_free(f);
	return rc;
}

int pspace_op_mv(pspace_op *a, const pspace_exec *ex, const double *x, double *y)
{
	return pspace_op_mm(a, ex, 1, x, a ? a->d : 0, y, a ? a->d : 0);
}

int pspace_op_vtmv_batch(pspace_op *a, const pspace_exec *ex, uint32_t k, const double *V,
                         size_t ldv, double *out)
{
	pspace_mat **mats = NULL;
	double *coefs = NULL, *W = NULL, *tmp = NULL;
	op_fold *f = NULL;
	size_t nl = 0, i;
	uint32_t j;
	int rc;

	rc = check_rows(a, V, ldv, "V");
	if (rc || k == 0)
		return rc;
	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL output");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	if (!op_fold_is_linear(f)) {
		/* W = A V in one mm, then the k dot products. */
		W = malloc((size_t)k * f->d * sizeof(double));
		if (!W) {
			rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for vtmv_batch");
			goto out;
		}
		rc = op_fold_apply(f, ex, k, 1.0, V, ldv, W, f->d, 0);
		if (rc)
			goto out;
		for (j = 0; j < k; j++)
			out[j] = pspace_vec_dot(f->d, V + (size_t)j * ldv, W + (size_t)j * f->d);
		goto out;
	}
	rc = op_fold_leaves(f, &mats, &coefs, &nl);
	if (rc)
		goto out;
	tmp = malloc((size_t)k * sizeof(double));
	if (!tmp) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for vtmv_batch");
		goto out;
	}
	for (j = 0; j < k; j++) {
		const double *v = V + (size_t)j * ldv;

		out[j] = f->s != 0.0 ? f->s * pspace_vec_dot(f->d, v, v) : 0.0;
	}
	for (i = 0; i < nl; i++) {
		if (coefs[i] == 0.0)
			continue;
		rc = pspace_mat_vtmv_batch(mats[i], ex, k, V, ldv, tmp);
		if (rc)
			goto out;
		for (j = 0; j < k; j++)
			out[j] += coefs[i] * tmp[j];
	}
out:
	free(tmp);
	free(coefs);
	free(mats);
	free(W);
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
	pspace_mat **mats = NULL;
	double *coefs = NULL, t, est = 0, se = 0;
	op_fold *f = NULL, rest;
	uint32_t probes = opts && opts->probes ? opts->probes : 64;
	uint64_t seed = opts ? opts->seed : 1;
	size_t nl = 0, i, j;
	int rc;

	memset(&rest, 0, sizeof(rest));
	if (!a || !out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to trace");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	rc = op_fold_leaves(f, &mats, &coefs, &nl);
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
	for (i = 0; i < nl; i++) {
		if (coefs[i] == 0.0)
			continue;
		rc = pspace_mat_trace(mats[i], ex, &t);
		if (rc == PSPACE_ENOTSUP) {
			for (j = 0; j < f->n; j++)
				if (op_term_is_linear(&f->t[j]) && f->t[j].f[0].m == mats[i])
					rest.t[rest.n++] = f->t[j];
			pspace_errclear();
			rc = 0;
			continue;
		}
		if (rc)
			goto out;
		*out += coefs[i] * t;
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
out:
	free(rest.t); /* a view: the terms belong to f */
	free(coefs);
	free(mats);
	op_fold_free(f);
	return rc;
}

int pspace_op_diag(pspace_op *a, const pspace_exec *ex, double *out)
{
	pspace_mat **mats = NULL;
	double *coefs = NULL, *tmp = NULL;
	op_fold *f = NULL;
	size_t nl = 0, i;
	uint64_t p;
	int rc;

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
	rc = op_fold_leaves(f, &mats, &coefs, &nl);
	if (rc)
		goto out;
	tmp = malloc(f->d * sizeof(double));
	if (!tmp) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for diag");
		goto out;
	}
	for (p = 0; p < f->d; p++)
		out[p] = f->s;
	for (i = 0; i < nl; i++) {
		if (coefs[i] == 0.0)
			continue;
		rc = pspace_mat_diag(mats[i], ex, tmp);
		if (rc)
			goto out;
		for (p = 0; p < f->d; p++)
			out[p] += coefs[i] * tmp[p];
	}
out:
	free(tmp);
	free(coefs);
	free(mats);
	op_fold_free(f);
	return rc;
}

/* ---- dense ------------------------------------------------------------------- */

/* Unit vectors per mm so that they, their images and the fold's temporaries fit. */
static uint32_t unit_block(const op_fold *f, const pspace_exec *ex)
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

/*
 * Calls @p emit for column bands [j0, j0 + b) of A: Y (b x d) holds
 * Y[jj][i] = A[i][j0 + jj], computed with one mm on unit vectors.
 */
typedef int (*band_fn)(void *ud, uint64_t j0, uint32_t b, const double *Y);

static int unit_band(const op_fold *f, const pspace_exec *ex, uint64_t j0, uint32_t b, double *E,
                     double *Y)
{
	uint32_t jj;

	memset(E, 0, (size_t)b * f->d * sizeof(double));
	for (jj = 0; jj < b; jj++)
		E[(size_t)jj * f->d + j0 + jj] = 1.0;
	return op_fold_apply(f, ex, b, 1.0, E, f->d, Y, f->d, 0);
}

static int bands(const op_fold *f, const pspace_exec *ex, band_fn emit, void *ud)
{
	uint32_t b = unit_block(f, ex);
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

		rc = unit_band(f, ex, j0, bb, E, Y);
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

static int fold_dense(const op_fold *f, const pspace_exec *ex, double *out, size_t ld)
{
	pspace_mat **mats = NULL;
	double *coefs = NULL;
	dense_ctx c = {f->d, out, ld};
	size_t nl = 0, i;
	uint64_t p, q;
	int rc;

	if (!op_fold_is_linear(f)) {
		for (p = 0; p < f->d; p++)
			memset(out + p * ld, 0, f->d * sizeof(double));
		return bands(f, ex, dense_add, &c);
	}
	/* The first matrix writes in place; the others add through unit vectors. */
	rc = op_fold_leaves(f, &mats, &coefs, &nl);
	if (rc)
		goto out;
	if (nl == 0) {
		for (p = 0; p < f->d; p++)
			memset(out + p * ld, 0, f->d * sizeof(double));
	} else {
		rc = pspace_mat_dense(mats[0], ex, out, ld);
		if (rc)
			goto out;
		for (p = 0; p < f->d; p++)
			for (q = 0; q < f->d; q++)
				out[p * ld + q] *= coefs[0];
	}
	for (i = 1; i < nl; i++) {
		op_factor fac = {FACTOR_MAT, mats[i], NULL, NULL};
		op_term t = {coefs[i], 1, &fac};
		op_fold one = {f->d, 0.0, 1, &t};

		rc = bands(&one, ex, dense_add, &c);
		if (rc)
			goto out;
	}
	for (p = 0; p < f->d; p++)
		out[p * ld + p] += f->s;
out:
	free(coefs);
	free(mats);
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
	rc = fold_dense(f, ex, out, ld);
	op_fold_free(f);
	return rc;
}

/* ---- norms and eigenpairs ------------------------------------------------------ */

static int frobenius(const op_fold *f, const pspace_exec *ex, double *out)
{
	pspace_mat **mats = NULL;
	double *coefs = NULL, *D = NULL, fro = 0, tr = 0, sum = 0;
	size_t nl = 0, n2;
	int rc;

	rc = op_fold_leaves(f, &mats, &coefs, &nl);
	if (rc)
		return rc;
	if (op_fold_is_linear(f) && nl <= 1) {
		/* ||c M + s I||^2 = c^2 ||M||^2 + 2 c s tr M + s^2 d */
		if (nl == 1 && coefs[0] != 0.0) {
			rc = pspace_mat_frobenius(mats[0], ex, &fro);
			if (rc == 0 && f->s != 0.0)
				rc = pspace_mat_trace(mats[0], ex, &tr);
			if (rc)
				goto out;
			sum = coefs[0] * coefs[0] * fro * fro + 2 * coefs[0] * f->s * tr;
		}
		sum += f->s * f->s * (double)f->d;
		*out = sqrt(sum > 0 ? sum : 0);
		goto out;
	}
	if (f->d > 0 && f->d > (uint64_t)(op_budget(ex) / sizeof(double) / f->d)) {
		rc = pspace_err_set(PSPACE_ENOTSUP,
		                    "op: Frobenius norm of a combination of several matrices or a "
		                    "product needs the dense %llu x %llu matrix, above the memory "
		                    "budget of %zu bytes",
		                    (unsigned long long)f->d, (unsigned long long)f->d,
		                    op_budget(ex));
		goto out;
	}
	n2 = (size_t)f->d * f->d;
	D = malloc(n2 * sizeof(double));
	if (!D) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for a dense matrix");
		goto out;
	}
	rc = fold_dense(f, ex, D, f->d);
	if (rc)
		goto out;
	*out = pspace_vec_nrm2(n2, D);
out:
	free(D);
	free(coefs);
	free(mats);
	return rc;
}

int pspace_op_norm(pspace_op *a, const pspace_exec *ex, pspace_norm_ord ord, pspace_eig_opts *opts,
                   double *out)
{
	op_fold *f = NULL;
	int rc;

	if (!a || !out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to norm");
	if (ord != PSPACE_NORM_FRO && ord != PSPACE_NORM_2 && ord != PSPACE_NORM_MINUS2)
		return pspace_err_set(PSPACE_EINVAL, "op: unknown norm order %d", (int)ord);
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	if (ord == PSPACE_NORM_FRO)
		rc = frobenius(f, ex, out);
	else
		rc = op_lanczos(f, ex, ord == PSPACE_NORM_2 ? LANCZOS_MAXABS : LANCZOS_MINABS, 1,
		                out, NULL, 0, opts);
	op_fold_free(f);
	return rc;
}

int pspace_op_eig(pspace_op *a, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                  size_t ld, pspace_eig_opts *opts)
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
	op_fold_free(f);
	return rc;
}

/* ---- writing into the store ------------------------------------------------------ */

/*
 * Tiles come from row bands of A: rows [r0, r0 + t) of symmetric A are
 * the columns A E_r, computed by one mm with t unit vectors and kept while
 * the writer asks for tiles of that band (one pass per tile row). A stored
 * Dense is symmetric, so expressions with products are refused (the
 * inverse of a symmetric matrix is fine). Future work: a linear
 * combination of matrices with one tiling
 * could combine tiles read once (pspace_stream_multi) instead.
 */
typedef struct write_ctx {
	const op_fold *f;
	const pspace_exec *ex;
	double *E, *Y;
	uint32_t cap;  /* rows the band buffers hold */
	uint64_t r0;   /* cached band */
	uint32_t rows; /* 0: none cached */
} write_ctx;

static int write_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                      double *tile)
{
	write_ctx *w = ud;
	uint32_t i, j;
	int rc;

	if (rows > w->cap) {
		free(w->Y);
		free(w->E);
		w->E = malloc((size_t)rows * w->f->d * sizeof(double));
		w->Y = malloc((size_t)rows * w->f->d * sizeof(double));
		w->cap = w->E && w->Y ? rows : 0;
		w->rows = 0;
		if (!w->cap)
			return pspace_err_set(PSPACE_ENOMEM, "op: out of memory for a tile band");
	}
	if (w->rows != rows || w->r0 != r0) {
		w->rows = 0;
		rc = unit_band(w->f, w->ex, r0, rows, w->E, w->Y);
		if (rc)
			return rc;
		w->r0 = r0;
		w->rows = rows;
	}
	/* Y[i][c] = A[c][r0 + i] = A[r0 + i][c] by symmetry. */
	for (i = 0; i < rows; i++)
		for (j = 0; j < cols; j++)
			tile[(size_t)i * cols + j] = w->Y[(size_t)i * w->f->d + c0 + j];
	return 0;
}

int pspace_op_write(pspace_op *a, const pspace_exec *ex, pspace_store *s, const char *name,
                    const pspace_write_opts *opts)
{
	const pspace_layout *layout = NULL;
	op_fold *f = NULL;
	write_ctx w;
	size_t i, j;
	int rc;

	memset(&w, 0, sizeof(w));
	if (!a || !s || !name)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to write");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	/* A stored Dense is symmetric (upper tiles only): a product of symmetric
	 * matrices is not, so it cannot be written this way. */
	for (i = 0; i < f->n; i++)
		if (f->t[i].n > 1) {
			op_fold_free(f);
			return pspace_err_set(
			    PSPACE_ENOTSUP,
			    "op: writing %s: the expression has a product, which is "
			    "not symmetric in general; write products of two stored "
			    "matrices with pspace_mat_product_write",
			    name);
		}
	/* The layout of the first matrix named, if any (a flat one otherwise). */
	for (i = 0; i < f->n && !layout; i++)
		for (j = 0; j < f->t[i].n && !layout; j++)
			if (f->t[i].f[j].type == FACTOR_MAT)
				layout = pspace_mat_layout(f->t[i].f[j].m);
	w.f = f;
	w.ex = ex;
	rc = pspace_tiled_write(s, name, PSPACE_KIND_DENSE, layout, write_tile, &w, opts, NULL);
	if (rc)
		pspace_err_prefix(rc, "op: writing %s", name);
	free(w.Y);
	free(w.E);
	op_fold_free(f);
	return rc;
}
