/*
 * Operations that make new resident matrices (powers, inverses, scalings,
 * products) and exact eigendecompositions: wrappers dispatching through the
 * representation table.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"
#include "pspace/mat.h"

static int unsupported(const pspace_mat *m, const char *op)
{
	return pspace_err_set(PSPACE_ENOTSUP, "%s is not available for a %s matrix%s%s", op,
	                      pspace_kind_name(m->vt->kind), m->name ? " " : "",
	                      m->name ? m->name : "");
}

static int check_out(pspace_mat *m, pspace_mat **out, const char *fn)
{
	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "%s: out is NULL", fn);
	*out = NULL;
	if (!m)
		return pspace_err_set(PSPACE_EINVAL, "%s: matrix is NULL", fn);
	return 0;
}

/* check_out(), then that @p m's kind has the operation @p op (@p has). */
static int check_op(pspace_mat *m, pspace_mat **out, const char *fn, int has, const char *op)
{
	int rc = check_out(m, out, fn);

	if (rc == 0 && !has)
		rc = unsupported(m, op);
	return rc;
}

int pspace_mat_pow(pspace_mat **out, pspace_mat *m, double p, double damping)
{
	int rc = check_out(m, out, "pspace_mat_pow");

	if (rc != 0)
		return rc;
	if (!isfinite(p) || !isfinite(damping))
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_pow: p = %g, damping = %g", p,
		                      damping);
	if (!m->vt->pow)
		return unsupported(m, "pow");
	return m->vt->pow(m, p, damping, out);
}

int pspace_mat_inverse(pspace_mat **out, pspace_mat *m, double damping)
{
	return pspace_mat_pow(out, m, -1.0, damping);
}

int pspace_mat_pinv(pspace_mat **out, pspace_mat *m, double threshold)
{
	int rc = check_op(m, out, "pspace_mat_pinv", m && m->vt->pinv, "pinv");

	return rc != 0 ? rc : m->vt->pinv(m, threshold, out);
}

int pspace_mat_scale(pspace_mat **out, pspace_mat *m, double s)
{
	int rc = check_op(m, out, "pspace_mat_scale", m && m->vt->scale,
	                  "scale (use pspace_op_scale for a lazy scaling)");

	return rc != 0 ? rc : m->vt->scale(m, s, out);
}

int pspace_mat_product(pspace_mat **out, pspace_mat *a, pspace_mat *b)
{
	int rc = check_out(a, out, "pspace_mat_product");

	if (rc != 0)
		return rc;
	if (!b)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_product: b is NULL");
	if (a->vt != b->vt)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "product of a %s and a %s matrix: both must be of the same "
		                      "kind (use pspace_op_product for a lazy product)",
		                      pspace_kind_name(a->vt->kind), pspace_kind_name(b->vt->kind));
	if (!pspace_layout_equal(a->layout, b->layout))
		return pspace_err_set(PSPACE_EDIM, "product of matrices with different layouts");
	if (!a->vt->product)
		return unsupported(a, "resident product (stored kinds: pspace_mat_product_write)");
	return a->vt->product(a, b, out);
}

int pspace_mat_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                   size_t ld)
{
	if (!m || !evals)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_eig: matrix or evals is NULL");
	if (k == 0 || k > m->d)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_eig: k = %u with d = %llu", k,
		                      (unsigned long long)m->d);
	if (evecs && ld < m->d)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_eig: ld %zu < d %llu", ld,
		                      (unsigned long long)m->d);
	if (!m->vt->eig)
		return unsupported(m, "exact eigendecomposition (use Lanczos: pspace_op_eig)");
	return m->vt->eig(m, ex, k, evals, evecs, ld);
}

int pspace_mat_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	if (!m || !evals)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_eigvals: matrix or evals is NULL");
	if (!m->vt->eigvals)
		return unsupported(m, "exact eigenvalues (use Lanczos: pspace_op_eig)");
	return m->vt->eigvals(m, ex, evals);
}
