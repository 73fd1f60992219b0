/*
 * Lazy operators: expression nodes, reference counts, building and
 * describing. Nothing here touches matrix data.
 */
#include <stdarg.h>
#include <stdio.h>
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

void pspace_solve_opts_default(pspace_solve_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->method = PSPACE_SOLVE_AUTO;
	o->tol = 1e-6;
	o->max_iter = 1000;
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

/* ---- describing ------------------------------------------------------------ */

static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...) PSPACE_PRINTF(4, 5);

static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(*pos < cap ? buf + *pos : NULL, *pos < cap ? cap - *pos : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos += (size_t)n;
}

static void describe_factor(const op_factor *f, char *buf, size_t cap, size_t *pos)
{
	const char *name;
	op_fold *inner = NULL;

	switch (f->type) {
	case FACTOR_MAT:
		name = pspace_mat_name(f->m);
		if (name)
			put(buf, cap, pos, "%s", name);
		else
			put(buf, cap, pos, "%s(%llu)", pspace_kind_name(pspace_mat_kind(f->m)),
			    (unsigned long long)pspace_mat_dim(f->m));
		break;
	case FACTOR_SUM:
		put(buf, cap, pos, "(");
		op_fold_describe(f->sum, buf, cap, pos);
		put(buf, cap, pos, ")");
		break;
	case FACTOR_INV:
		put(buf, cap, pos, "(");
		if (op_fold_build(f->inv->a, &inner) == 0) {
			inner->s += f->inv->s;
			op_fold_describe(inner, buf, cap, pos);
			op_fold_free(inner);
		} else {
			put(buf, cap, pos, "?");
		}
		put(buf, cap, pos, ")^-1");
		break;
	}
}

/* Writes " + 2*", " - ", "-0.5*" ... for coefficient c; first: no leading operator. */
static void describe_coef(double c, int first, int has_rest, char *buf, size_t cap, size_t *pos)
{
	double a = c < 0 ? -c : c;

	if (first)
		put(buf, cap, pos, "%s", c < 0 ? "-" : "");
	else
		put(buf, cap, pos, " %c ", c < 0 ? '-' : '+');
	if (a != 1.0 || !has_rest)
		put(buf, cap, pos, has_rest ? "%g*" : "%g", a);
}

void op_fold_describe(const op_fold *f, char *buf, size_t cap, size_t *pos)
{
	size_t i, j;

	for (i = 0; i < f->n; i++) {
		describe_coef(f->t[i].c, i == 0, 1, buf, cap, pos);
		for (j = 0; j < f->t[i].n; j++) {
			if (j)
				put(buf, cap, pos, "*");
			describe_factor(&f->t[i].f[j], buf, cap, pos);
		}
	}
	if (f->s != 0.0 || f->n == 0) {
		if (f->s == 0.0) {
			put(buf, cap, pos, "0");
			return;
		}
		describe_coef(f->s, f->n == 0, 1, buf, cap, pos);
		put(buf, cap, pos, "I");
	}
}

int pspace_op_describe(const pspace_op *a, char *buf, size_t cap)
{
	op_fold *f = NULL;
	size_t pos = 0;
	int rc;

	if (cap)
		buf[0] = '\0';
	if (!a)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL operand");
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	op_fold_describe(f, buf, cap, &pos);
	op_fold_free(f);
	if (pos > (size_t)0x7fffffff)
		return pspace_err_set(PSPACE_EINVAL, "op: description too long");
	return (int)pos;
}
