/*
 * Lazy operators: preconditioned conjugate gradient on (A + damping I) X
 * = B for all right-hand sides together, so that every iteration is one
 * mm (one pass over each stored matrix). The preconditioner comes from the
 * caller (solve.c) as a function.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

/* CG state of the active columns, kept compact: column j is right-hand side idx[j]. */
typedef struct cg_state {
	uint64_t d;
	double *X, *R, *P, *Q, *Z; /* (k, d), ld = d; Z == R without preconditioner */
	double *bn, *rz, *res;     /* per active column */
	uint32_t *idx;
} cg_state;

static void swap_rows(double *A, uint64_t d, uint32_t i, uint32_t j)
{
	double *a = A + (size_t)i * d, *b = A + (size_t)j * d, t;
	uint64_t p;

	for (p = 0; p < d; p++) {
		t = a[p];
		a[p] = b[p];
		b[p] = t;
	}
}

static void swap_cols(cg_state *c, uint32_t i, uint32_t j)
{
	double t;
	uint32_t u;

	if (i == j)
		return;
	swap_rows(c->X, c->d, i, j);
	swap_rows(c->R, c->d, i, j);
	swap_rows(c->P, c->d, i, j);
	if (c->Z != c->R)
		swap_rows(c->Z, c->d, i, j);
	t = c->bn[i], c->bn[i] = c->bn[j], c->bn[j] = t;
	t = c->rz[i], c->rz[i] = c->rz[j], c->rz[j] = t;
	t = c->res[i], c->res[i] = c->res[j], c->res[j] = t;
	u = c->idx[i], c->idx[i] = c->idx[j], c->idx[j] = u;
}

/* Z = P^{-1} R through the caller's preconditioner, or Z = R. */
static int precondition(cg_state *c, op_precond_fn precond, void *pud, uint32_t na)
{
	int rc;

	if (!precond)
		return 0;
	rc = precond(pud, na, c->R, c->d, c->Z, c->d);
	return pspace_err_prefix(rc, "op: CG preconditioner");
}

/* Writes the finished columns [na, k) and the unfinished ones to the caller's X. */
static void cg_store(const cg_state *c, uint32_t k, double *X, size_t ldx, double *res)
{
	uint32_t j;

	for (j = 0; j < k; j++) {
		memcpy(X + (size_t)c->idx[j] * ldx, c->X + (size_t)j * c->d, c->d * sizeof(double));
		res[c->idx[j]] = c->res[j];
	}
}

int op_cg(const op_fold *A, const pspace_exec *ex, double damping, op_precond_fn precond, void *pud,
          uint32_t k, const double *B, size_t ldb, double *X, size_t ldx, pspace_solve_opts *o)
{
	op_fold Ad = *A; /* a view: A + damping I */
	cg_state c;
	double *res = NULL, worst = 0;
	uint32_t j, na = k, it = 0;
	size_t kd = (size_t)k * A->d;
	int rc = 0, started = 0;

	memset(&c, 0, sizeof(c));
	Ad.s += damping;
	c.d = A->d;
	c.X = calloc(kd, sizeof(double));
	/* Zeroed although B fills it below: GCC cannot tell and warns. */
	c.R = calloc(kd, sizeof(double));
	c.P = malloc(kd * sizeof(double));
	c.Q = malloc(kd * sizeof(double));
	c.Z = precond ? malloc(kd * sizeof(double)) : c.R;
	c.bn = malloc(k * sizeof(double));
	c.rz = malloc(k * sizeof(double));
	c.res = malloc(k * sizeof(double));
	c.idx = malloc(k * sizeof(uint32_t));
	res = malloc(k * sizeof(double));
	if (!c.X || !c.R || !c.P || !c.Q || !c.Z || !c.bn || !c.rz || !c.res || !c.idx || !res) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for CG on %u columns",
		                    (unsigned)k);
		goto out;
	}
	for (j = 0; j < k; j++) {
		memcpy(c.R + (size_t)j * c.d, B + (size_t)j * ldb, c.d * sizeof(double));
		c.bn[j] = pspace_vec_nrm2(c.d, c.R + (size_t)j * c.d);
		c.res[j] = 0.0;
		c.idx[j] = j;
	}
	started = 1;
	/* Zero right-hand sides are solved by X = 0. */
	for (j = na; j-- > 0;)
		if (c.bn[j] == 0.0)
			swap_cols(&c, j, --na);
	rc = precondition(&c, precond, pud, na);
	if (rc)
		goto out;
	for (j = 0; j < na; j++) {
		memcpy(c.P + (size_t)j * c.d, c.Z + (size_t)j * c.d, c.d * sizeof(double));
		c.rz[j] = pspace_vec_dot(c.d, c.R + (size_t)j * c.d, c.Z + (size_t)j * c.d);
		c.res[j] = 1.0;
	}
	while (na > 0 && it < o->max_iter) {
		rc = op_fold_apply(&Ad, ex, na, 1.0, c.P, c.d, c.Q, c.d, 0);
		if (rc)
			goto out;
		it++;
		for (j = 0; j < na; j++) {
			double *p = c.P + (size_t)j * c.d, *q = c.Q + (size_t)j * c.d;
			double pq = pspace_vec_dot(c.d, p, q), alpha;

			if (!(pq > 0.0)) {
				rc = pspace_err_set(
				    PSPACE_ENUMERIC,
				    "op: CG: A + %g I is not positive definite "
				    "(p^T A p = %g, right-hand side %u, iteration %u)",
				    damping, pq, (unsigned)c.idx[j], (unsigned)it);
				goto out;
			}
			alpha = c.rz[j] / pq;
			pspace_vec_axpy(c.d, alpha, p, c.X + (size_t)j * c.d);
			pspace_vec_axpy(c.d, -alpha, q, c.R + (size_t)j * c.d);
			c.res[j] = pspace_vec_nrm2(c.d, c.R + (size_t)j * c.d) / c.bn[j];
		}
		/* Converged columns leave the active set (and the next mm). */
		for (j = na; j-- > 0;)
			if (c.res[j] <= o->tol)
				swap_cols(&c, j, --na);
		if (na == 0)
			break;
		rc = precondition(&c, precond, pud, na);
		if (rc)
			goto out;
		for (j = 0; j < na; j++) {
			double *p = c.P + (size_t)j * c.d, *z = c.Z + (size_t)j * c.d;
			double rz = pspace_vec_dot(c.d, c.R + (size_t)j * c.d, z);
			double beta = rz / c.rz[j];
			uint64_t i;

			c.rz[j] = rz;
			for (i = 0; i < c.d; i++)
				p[i] = z[i] + beta * p[i];
		}
	}
out:
	if (started) {
		cg_store(&c, k, X, ldx, res);
		for (j = 0; j < k; j++)
			if (res[j] > worst)
				worst = res[j];
		o->iterations = it;
		o->residual = worst;
	}
	if (rc == 0 && na > 0)
		rc =
		    pspace_err_set(PSPACE_ENOCONV,
		                   "op: CG did not reach relative residual %g in %u iterations "
		                   "(%u of %u right-hand sides left, worst residual %g)",
		                   o->tol, (unsigned)o->max_iter, (unsigned)na, (unsigned)k, worst);
	free(res);
	free(c.idx);
	free(c.res);
	free(c.rz);
	free(c.bn);
	if (c.Z != c.R)
		free(c.Z);
	free(c.Q);
	free(c.P);
	free(c.R);
	free(c.X);
	return rc;
}
