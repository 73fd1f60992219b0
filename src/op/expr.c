/*
 * Lazy operators: expression nodes, reference counts and building. Nothing
 * here touches matrix data; an inverse node carries the solver that
 * applies it (op_solve), so that the fold can apply it without depending
 * on the solver's file.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"

static int node_new(pspace_op **out, op_type type, uint64_t d)
{
	pspace_op *n = calloc(1, sizeof(*n));

	if (!n)
		return pspace_err_set(PSPACE_ENOMEM, "op: out of memory for a node");
	n->refs = 1;
	n->type = type;
	n->depth = 1;
	n->terms = 1;
	n->d = d;
	*out = n;
	return 0;
}

/* Node @p n above operands @p a and @p b (NULL: none): its depth and terms, within the limits. */
static int node_limits(pspace_op **n, const pspace_op *a, const pspace_op *b)
{
	uint32_t da = a ? a->depth : 0, db = b ? b->depth : 0;

	(*n)->depth = 1 + (da > db ? da : db);
	if (a && (*n)->type != OP_INVERSE)
		(*n)->terms = a->terms + (b ? b->terms : 0);
	if ((*n)->depth <= OP_MAX_DEPTH && (*n)->terms <= OP_MAX_TERMS)
		return 0;
	pspace_op_free(*n);
	*n = NULL;
	if (da >= OP_MAX_DEPTH || db >= OP_MAX_DEPTH)
		return pspace_err_set(PSPACE_EINVAL,
		                      "op: expression nested deeper than %d levels (build a long "
		                      "sum as a balanced tree of sums)",
		                      OP_MAX_DEPTH);
	return pspace_err_set(PSPACE_EINVAL, "op: expression of more than %d terms when expanded",
	                      OP_MAX_TERMS);
}

/* A scale, shift or damping of the expression must be a finite number. */
static int check_scalar(double s, const char *what)
{
	if (isfinite(s))
		return 0;
	return pspace_err_set(PSPACE_EINVAL, "op: %s %g is not a finite number", what, s);
}

int pspace_op_mat(pspace_op **out, pspace_mat *m)
{
	int rc;

	*out = NULL;
	if (!m)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL matrix");
	rc = node_new(out, OP_MAT, pspace_mat_dim(m));
	if (rc)
		return rc;
	(*out)->m = pspace_mat_ref(m);
	return 0;
}

int pspace_op_identity(pspace_op **out, uint64_t d, double s)
{
	int rc;

	*out = NULL;
	if (d == 0)
		return pspace_err_set(PSPACE_EINVAL, "op: identity of dimension 0");
	rc = check_scalar(s, "identity scale");
	if (rc)
		return rc;
	rc = node_new(out, OP_IDENT, d);
	if (rc)
		return rc;
	(*out)->s = s;
	return 0;
}

int pspace_op_scale(pspace_op **out, double s, pspace_op *a)
{
	int rc;

	*out = NULL;
	if (!a)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL operand");
	rc = check_scalar(s, "scale factor");
	if (rc == 0)
		rc = node_new(out, OP_SCALE, a->d);
	if (rc)
		return rc;
	(*out)->s = s;
	(*out)->a = pspace_op_ref(a);
	return node_limits(out, a, NULL);
}

static int binary(pspace_op **out, op_type type, const char *what, pspace_op *a, pspace_op *b)
{
	int rc;

	*out = NULL;
	if (!a || !b)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL operand");
	if (a->d != b->d)
		return pspace_err_set(PSPACE_EDIM,
		                      "op: %s of a %llu x %llu and a %llu x %llu operator", what,
		                      (unsigned long long)a->d, (unsigned long long)a->d,
		                      (unsigned long long)b->d, (unsigned long long)b->d);
	rc = node_new(out, type, a->d);
	if (rc)
		return rc;
	(*out)->a = pspace_op_ref(a);
	(*out)->b = pspace_op_ref(b);
	return node_limits(out, a, b);
}

int pspace_op_add(pspace_op **out, pspace_op *a, pspace_op *b)
{
	return binary(out, OP_ADD, "sum", a, b);
}

int pspace_op_sub(pspace_op **out, pspace_op *a, pspace_op *b)
{
	return binary(out, OP_SUB, "difference", a, b);
}

int pspace_op_product(pspace_op **out, pspace_op *a, pspace_op *b)
{
	return binary(out, OP_PRODUCT, "product", a, b);
}

int pspace_op_inverse(pspace_op **out, pspace_op *a, double damping, const pspace_solve_opts *opts)
{
	int rc;

	*out = NULL;
	if (!a)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL operand");
	if (opts && opts->precond && opts->precond->d != a->d)
		return pspace_err_set(
		    PSPACE_EDIM, "op: preconditioner of dimension %llu for an operator of %llu",
		    (unsigned long long)opts->precond->d, (unsigned long long)a->d);
	rc = check_scalar(damping, "damping");
	if (rc == 0)
		rc = node_new(out, OP_INVERSE, a->d);
	if (rc)
		return rc;
	(*out)->s = damping;
	(*out)->a = pspace_op_ref(a);
	(*out)->solve = op_solve;
	if (opts)
		(*out)->opts = *opts;
	else
		pspace_solve_opts_default(&(*out)->opts);
	if ((*out)->opts.precond)
		pspace_op_ref((*out)->opts.precond);
	return node_limits(out, a, NULL);
}

pspace_op *pspace_op_ref(pspace_op *a)
{
	if (a)
		a->refs++;
	return a;
}

void pspace_op_free(pspace_op *a)
{
	if (!a || --a->refs > 0)
		return;
	pspace_op_free(a->opts.precond);
	pspace_op_free(a->b);
	pspace_op_free(a->a);
	pspace_mat_free(a->m);
	free(a);
}

uint64_t pspace_op_dim(const pspace_op *a)
{
	return a ? a->d : 0;
}
