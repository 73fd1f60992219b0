/*
 * Lazy operators: expression nodes, reference counts and building. Nothing
 * here touches matrix data; an inverse node carries the solver that
 * applies it (op_solve), so that the fold can apply it without depending
 * on the solver's file.
 */
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
	n->d = d;
	*out = n;
	return 0;
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
	rc = node_new(out, OP_SCALE, a->d);
	if (rc)
		return rc;
	(*out)->s = s;
	(*out)->a = pspace_op_ref(a);
	return 0;
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
	return 0;
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
	return 0;
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
