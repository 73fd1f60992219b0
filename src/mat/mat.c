/*
 * The representation interface: public wrappers (argument checks, then a
 * call through the kind's table) and generic fallbacks. Reference counting
 * and properties are in base.c (below every kind), opening a stored matrix
 * of any kind in open.c (above every kind).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"
#include "pspace/vec.h"

int pspace_mat_save(pspace_mat *m, pspace_store *s, const char *name)
{
	if (!m || !s || !name)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_mat_save: matrix, store or name is NULL");
	if (!m->vt->save) {
		if (m->name)
			return pspace_err_set(PSPACE_ENOTSUP,
			                      "matrix %s: a %s matrix is already stored; "
			                      "nothing to save",
			                      m->name, pspace_kind_name(m->vt->kind));
		return pspace_err_set(PSPACE_ENOTSUP, "a %s matrix cannot be saved",
		                      pspace_kind_name(m->vt->kind));
	}
	return m->vt->save(m, s, name);
}

/* ---- argument checks ---------------------------------------------------------- */

static int check_mat(const pspace_mat *m, const char *fn)
{
	if (!m)
		return pspace_err_set(PSPACE_EINVAL, "%s: matrix is NULL", fn);
	return 0;
}

static int check_batch(const pspace_mat *m, const char *fn, const char *what, const void *p,
                       size_t ld)
{
	if (!p)
		return pspace_err_set(PSPACE_EINVAL, "%s: %s is NULL", fn, what);
	if (ld < m->d)
		return pspace_err_set(PSPACE_EINVAL,
		                      "%s: leading dimension of %s is %zu < d = %llu", fn, what, ld,
		                      (unsigned long long)m->d);
	return 0;
}

static int unsupported(const pspace_mat *m, const char *op)
{
	if (m->name)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "matrix %s: %s is not supported for %s matrices", m->name, op,
		                      pspace_kind_name(m->vt->kind));
	return pspace_err_set(PSPACE_ENOTSUP, "%s is not supported for %s matrices", op,
	                      pspace_kind_name(m->vt->kind));
}

/* ---- operations --------------------------------------------------------------- */

int pspace_mat_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                  size_t ldx, double beta, double *Y, size_t ldy)
{
	pspace_exec e;
	int rc;

	rc = check_mat(m, "pspace_mat_mm");
	if (rc == 0 && k > 0)
		rc = check_batch(m, "pspace_mat_mm", "X", X, ldx);
	if (rc == 0 && k > 0)
		rc = check_batch(m, "pspace_mat_mm", "Y", Y, ldy);
	if (rc != 0 || k == 0 || m->d == 0)
		return rc;
	/* The kinds accumulate; beta is applied here once, as gemm does. */
	pspace_vec_scale_rows(m->d, k, beta, Y, ldy);
	if (alpha == 0.0)
		return 0;
	pspace_exec_resolve(ex, &e);
	return m->vt->mm(m, &e, k, alpha, X, ldx, Y, ldy);
}

int pspace_mat_mv(pspace_mat *m, const pspace_exec *ex, const double *x, double *y)
{
	int rc = check_mat(m, "pspace_mat_mv");

	if (rc == 0 && (!x || !y))
		rc = pspace_err_set(PSPACE_EINVAL, "pspace_mat_mv: x or y is NULL");
	if (rc != 0)
		return rc;
	return pspace_mat_mm(m, ex, 1, 1.0, x, m->d, 0.0, y, m->d);
}

/* vTMv of k vectors from one mm pass: out[j] = V_j . (M V_j). */
static int vtmv_from_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                        size_t ldv, double *out)
{
	double *Y = calloc((size_t)k * m->d, sizeof(*Y));
	int rc;

	if (!Y)
		return pspace_err_set(PSPACE_ENOMEM, "vTMv: out of memory for %u vectors of %llu",
		                      k, (unsigned long long)m->d);
	rc = m->vt->mm(m, ex, k, 1.0, V, ldv, Y, m->d);
	for (uint32_t j = 0; rc == 0 && j < k; j++) {
		const double *v = V + (size_t)j * ldv, *y = Y + (size_t)j * m->d;
		double s = 0;

		for (uint64_t i = 0; i < m->d; i++)
			s += v[i] * y[i];
		out[j] = s;
	}
	free(Y);
	return rc;
}

int pspace_mat_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                          size_t ldv, double *out)
{
	pspace_exec e;
	int rc;

	rc = check_mat(m, "pspace_mat_vtmv_batch");
	if (rc == 0 && k > 0)
		rc = check_batch(m, "pspace_mat_vtmv_batch", "V", V, ldv);
	if (rc == 0 && k > 0 && !out)
		rc = pspace_err_set(PSPACE_EINVAL, "pspace_mat_vtmv_batch: out is NULL");
	if (rc != 0 || k == 0)
		return rc;
	if (m->d == 0) {
		memset(out, 0, k * sizeof(*out));
		return 0;
	}
	pspace_exec_resolve(ex, &e);
	if (m->vt->vtmv_batch)
		return m->vt->vtmv_batch(m, &e, k, V, ldv, out);
	return vtmv_from_mm(m, &e, k, V, ldv, out);
}

int pspace_mat_vtmv(pspace_mat *m, const pspace_exec *ex, const double *v, double *out)
{
	int rc = check_mat(m, "pspace_mat_vtmv");

	if (rc != 0)
		return rc;
	return pspace_mat_vtmv_batch(m, ex, 1, v, m->d, out);
}

/*
 * What trace, diag and the Frobenius norm share: the checks, then the
 * kind's entry @p op (NULL: @p what is not supported) with defaults resolved.
 */
static int call_out_op(pspace_mat *m, const pspace_exec *ex, double *out, const char *fn,
                       int (*op)(pspace_mat *, const pspace_exec *, double *), const char *what)
{
	pspace_exec e;
	int rc = check_mat(m, fn);

	if (rc == 0 && !out)
		rc = pspace_err_set(PSPACE_EINVAL, "%s: out is NULL", fn);
	if (rc != 0)
		return rc;
	if (!op)
		return unsupported(m, what);
	pspace_exec_resolve(ex, &e);
	return op(m, &e, out);
}

int pspace_mat_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return call_out_op(m, ex, out, "pspace_mat_trace", m ? m->vt->trace : NULL, "trace");
}

int pspace_mat_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return call_out_op(m, ex, out, "pspace_mat_diag", m ? m->vt->diag : NULL, "diag");
}

int pspace_mat_frobenius(pspace_mat *m, const pspace_exec *ex, double *out)
{
	double f2 = 0;
	int rc = call_out_op(m, ex, out ? &f2 : NULL, "pspace_mat_frobenius",
	                     m ? m->vt->frob2 : NULL, "the Frobenius norm");

	if (rc == 0)
		*out = sqrt(f2 > 0 ? f2 : 0);
	return rc;
}

/*
 * Dense from mm on blocks of unit vectors: M e_j is column j of M, written
 * into column j of out. As many columns per pass as half the budget holds.
 */
static int dense_from_mm(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	uint64_t d = m->d, cols = ex->mem_budget / 2 / (2 * d * sizeof(double));
	double *E = NULL, *Y = NULL;
	int rc = 0;

	if (cols < 1)
		cols = 1;
	if (cols > d)
		cols = d;
	E = calloc(cols * d, sizeof(*E));
	Y = malloc(cols * d * sizeof(*Y));
	if (!E || !Y) {
		rc = pspace_err_set(PSPACE_ENOMEM, "dense: out of memory for %llu columns",
		                    (unsigned long long)cols);
		goto out;
	}
	for (uint64_t j0 = 0; j0 < d; j0 += cols) {
		uint64_t nc = d - j0 < cols ? d - j0 : cols;

		for (uint64_t j = 0; j < nc; j++)
			E[j * d + j0 + j] = 1.0;
		memset(Y, 0, nc * d * sizeof(*Y));
		rc = m->vt->mm(m, ex, (uint32_t)nc, 1.0, E, d, Y, d);
		for (uint64_t j = 0; j < nc; j++)
			E[j * d + j0 + j] = 0.0;
		if (rc != 0)
			goto out;
		for (uint64_t j = 0; j < nc; j++)
			for (uint64_t i = 0; i < d; i++)
				out[i * ld + j0 + j] = Y[j * d + i];
	}
out:
	free(Y);
	free(E);
	return rc;
}

int pspace_mat_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	pspace_exec e;
	int rc = check_mat(m, "pspace_mat_dense");

	if (rc == 0)
		rc = check_batch(m, "pspace_mat_dense", "out", out, ld);
	if (rc != 0 || m->d == 0)
		return rc;
	pspace_exec_resolve(ex, &e);
	if (m->vt->dense)
		return m->vt->dense(m, &e, out, ld);
	return dense_from_mm(m, &e, out, ld);
}

int pspace_mat_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                     const double *B, size_t ldb, double *X, size_t ldx)
{
	pspace_exec e;
	int rc = check_mat(m, "pspace_mat_solve");

	if (rc == 0 && k > 0)
		rc = check_batch(m, "pspace_mat_solve", "B", B, ldb);
	if (rc == 0 && k > 0)
		rc = check_batch(m, "pspace_mat_solve", "X", X, ldx);
	if (rc == 0 && !isfinite(damping))
		rc = pspace_err_set(PSPACE_EINVAL, "pspace_mat_solve: damping is not finite");
	if (rc != 0)
		return rc;
	if (!m->vt->solve)
		return unsupported(m, "a direct solve (use CG: pspace_op_solve)");
	if (k == 0 || m->d == 0)
		return 0;
	pspace_exec_resolve(ex, &e);
	return m->vt->solve(m, &e, damping, k, B, ldb, X, ldx);
}

int pspace_mat_product_write(pspace_store *s, const char *name, pspace_mat *a, pspace_mat *b,
                             const pspace_exec *ex, const pspace_write_opts *opts)
{
	pspace_exec e;
	int rc;

	if (!s || !name)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_mat_product_write: store or name is NULL");
	rc = check_mat(a, "pspace_mat_product_write");
	if (rc == 0)
		rc = check_mat(b, "pspace_mat_product_write");
	if (rc != 0)
		return rc;
	if (a->vt->kind != b->vt->kind)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "product of a %s and a %s matrix: only products of two "
		                      "matrices of the same kind are supported",
		                      pspace_kind_name(a->vt->kind), pspace_kind_name(b->vt->kind));
	if (a->d != b->d)
		return pspace_err_set(PSPACE_EDIM,
		                      "product of matrices of dimensions %llu and %llu",
		                      (unsigned long long)a->d, (unsigned long long)b->d);
	if (!a->vt->product_write)
		return unsupported(a, "a stored product");
	pspace_exec_resolve(ex, &e);
	return a->vt->product_write(s, name, a, b, &e, opts);
}

int pspace_kfac_set_damping(pspace_mat *m, pspace_kfac_damping mode)
{
	int rc = check_mat(m, "pspace_kfac_set_damping");

	if (rc != 0)
		return rc;
	if (mode != PSPACE_KFAC_DAMP_PI && mode != PSPACE_KFAC_DAMP_SQRT &&
	    mode != PSPACE_KFAC_DAMP_EXACT)
		return pspace_err_set(PSPACE_EINVAL, "pspace_kfac_set_damping: unknown mode %d",
		                      (int)mode);
	if (!m->vt->set_damping)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "pspace_kfac_set_damping: a %s matrix is not KFAC or EKFAC",
		                      pspace_kind_name(m->vt->kind));
	return m->vt->set_damping(m, mode);
}
