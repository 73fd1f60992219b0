/*
 * Lazy operators: solving (A + damping I) X = B, the choice between a
 * direct solve and CG. Direct when A folds to c M + s I with M a matrix
 * whose direct solve fits the budget; otherwise preconditioned conjugate
 * gradient (cg.c), the preconditioner applied through its own direct
 * solve. op_solve is also how inverse nodes are applied (expr.c gives it
 * to them).
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

void pspace_solve_opts_default(pspace_solve_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->method = PSPACE_SOLVE_AUTO;
	o->tol = 1e-6;
	o->max_iter = 1000;
}

/* X = B / shift. */
static int solve_shift(uint64_t d, double shift, uint32_t k, const double *B, size_t ldb, double *X,
                       size_t ldx)
{
	uint32_t j;
	uint64_t i;

	if (shift == 0.0)
		return pspace_err_set(PSPACE_ENUMERIC, "op: solve with the zero matrix");
	for (j = 0; j < k; j++)
		for (i = 0; i < d; i++)
			X[(size_t)j * ldx + i] = B[(size_t)j * ldb + i] / shift;
	return 0;
}

/*
 * Direct path: A = c M + s I, so (A + l I)^{-1} = (M + (s + l)/c I)^{-1} / c.
 * @return 1 when the fold has no such form, else 0 or an error.
 */
static int solve_direct(const op_fold *f, const pspace_exec *ex, double damping, uint32_t k,
                        const double *B, size_t ldb, double *X, size_t ldx)
{
	op_leaves l;
	uint32_t j;
	int rc;

	if (f->n == 0)
		return solve_shift(f->d, f->s + damping, k, B, ldb, X, ldx);
	if (!op_fold_is_linear(f))
		return 1;
	rc = op_fold_leaves(f, &l);
	if (rc)
		return rc;
	if (l.n != 1) {
		rc = l.n == 0 ? solve_shift(f->d, f->s + damping, k, B, ldb, X, ldx) : 1;
		goto out;
	}
	rc = pspace_mat_solve(l.m[0], ex, (f->s + damping) / l.c[0], k, B, ldb, X, ldx);
	if (rc)
		goto out;
	for (j = 0; j < k; j++)
		pspace_vec_scale(f->d, 1.0 / l.c[0], X + (size_t)j * ldx);
out:
	op_leaves_free(&l);
	return rc;
}

/* The preconditioner of CG: (P + damping I)^{-1} through P's direct solve. */
typedef struct precond_ctx {
	const pspace_op *P;
	const pspace_exec *ex;
	double damping;
} precond_ctx;

static int precond_apply(void *ud, uint32_t k, const double *R, size_t ldr, double *Z, size_t ldz)
{
	const precond_ctx *p = ud;
	pspace_solve_opts po;

	pspace_solve_opts_default(&po);
	po.method = PSPACE_SOLVE_DIRECT;
	return op_solve(p->P, p->ex, p->damping, k, R, ldr, Z, ldz, &po);
}

int op_solve(const pspace_op *a, const pspace_exec *ex, double damping, uint32_t k, const double *B,
             size_t ldb, double *X, size_t ldx, pspace_solve_opts *opts)
{
	pspace_solve_opts o = *opts;
	precond_ctx pc = {o.precond, ex, damping};
	op_fold *f = NULL;
	char what[256];
	int rc;

	if (o.tol <= 0)
		o.tol = 1e-6;
	if (o.max_iter == 0)
		o.max_iter = 1000;
	if (o.precond && o.precond->d != a->d)
		return pspace_err_set(
		    PSPACE_EDIM, "op: preconditioner of dimension %llu for an operator of %llu",
		    (unsigned long long)o.precond->d, (unsigned long long)a->d);
	if (k == 0)
		return 0;
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	o.iterations = 0;
	o.residual = 0;
	if (o.method != PSPACE_SOLVE_CG) {
		rc = solve_direct(f, ex, damping, k, B, ldb, X, ldx);
		if (rc == 1 && o.method == PSPACE_SOLVE_DIRECT) {
			pspace_op_describe(a, what, sizeof(what));
			rc = pspace_err_set(PSPACE_ENOTSUP,
			                    "op: no direct solve for %s (needs the form c*M + s*I)",
			                    what);
		}
		if (rc <= 0 && !(o.method == PSPACE_SOLVE_AUTO &&
		                 (rc == PSPACE_ENOTSUP || rc == PSPACE_ENOMEM)))
			goto out;
		pspace_errclear();
	}
	rc = op_cg(f, ex, damping, o.precond ? precond_apply : NULL, &pc, k, B, ldb, X, ldx, &o);
out:
	opts->iterations = o.iterations;
	opts->residual = o.residual;
	op_fold_free(f);
	return rc;
}

int pspace_op_solve(pspace_op *a, const pspace_exec *ex, double damping, uint32_t k,
                    const double *B, size_t ldb, pspace_solve_opts *opts, double *X, size_t ldx)
{
	pspace_solve_opts o;
	int rc;

	if (!a || !B || !X)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to solve");
	if (ldb < a->d || ldx < a->d)
		return pspace_err_set(PSPACE_EDIM, "op: solve: leading dimension below d = %llu",
		                      (unsigned long long)a->d);
	if (opts)
		o = *opts;
	else
		pspace_solve_opts_default(&o);
	rc = op_solve(a, ex, damping, k, B, ldb, X, ldx, &o);
	if (opts) {
		opts->iterations = o.iterations;
		opts->residual = o.residual;
	}
	return rc;
}
