/*
 * Lazy operators: folding an expression tree into its normal form
 * s I + sum_i c_i (F_i1 ... F_in), grouping its linear leaves by tiling,
 * applying a normal form to k right-hand sides (each group of stored
 * matrices in one pass of the engine), and describing it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"
#include "kernel/stream.h"
#include "mat/mat_impl.h"
#include "op/op_impl.h"

static int nomem(void)
{
	return pspace_err_set(PSPACE_ENOMEM, "op: out of memory while folding an expression");
}

static void term_free(op_term *t)
{
	size_t j;

	for (j = 0; j < t->n; j++)
		if (t->f[j].type == FACTOR_SUM)
			op_fold_free(t->f[j].sum);
	free(t->f);
	t->f = NULL;
	t->n = 0;
}

void op_fold_free(op_fold *f)
{
	size_t i;

	if (!f)
		return;
	for (i = 0; i < f->n; i++)
		term_free(&f->t[i]);
	free(f->t);
	free(f);
}

static int fold_new(op_fold **out, uint64_t d, size_t nterms)
{
	op_fold *f = calloc(1, sizeof(*f));

	*out = NULL;
	if (!f)
		return nomem();
	f->d = d;
	if (nterms) {
		f->t = calloc(nterms, sizeof(*f->t));
		if (!f->t) {
			free(f);
			return nomem();
		}
	}
	f->n = nterms;
	*out = f;
	return 0;
}

/* A fold of one term with one factor. */
static int fold_single(op_fold **out, uint64_t d, const op_factor *fac)
{
	int rc = fold_new(out, d, 1);

	if (rc)
		return rc;
	(*out)->t[0].c = 1.0;
	(*out)->t[0].n = 1;
	(*out)->t[0].f = malloc(sizeof(op_factor));
	if (!(*out)->t[0].f) {
		op_fold_free(*out);
		*out = NULL;
		return nomem();
	}
	(*out)->t[0].f[0] = *fac;
	return 0;
}

static void fold_scale(op_fold *f, double s)
{
	size_t i;

	f->s *= s;
	for (i = 0; i < f->n; i++)
		f->t[i].c *= s;
}

/* *a += sign * b, moving b's terms into a; frees b. */
static int fold_merge(op_fold *a, op_fold *b, double sign)
{
	op_term *t;
	size_t i;

	if (b->n) {
		t = realloc(a->t, (a->n + b->n) * sizeof(*t));
		if (!t) {
			op_fold_free(b);
			return nomem();
		}
		a->t = t;
		for (i = 0; i < b->n; i++) {
			a->t[a->n + i] = b->t[i];
			a->t[a->n + i].c *= sign;
		}
		a->n += b->n;
		b->n = 0;
	}
	a->s += sign * b->s;
	op_fold_free(b);
	return 0;
}

/*
 * The factor chain of one side of a product: the term itself when the side
 * is a single term without identity part (its coefficient goes to *c),
 * else one nested-sum factor owning the whole fold. Consumes @p f.
 */
static int side_chain(op_fold *f, double *c, op_factor **chain, size_t *n)
{
	if (f->n == 1 && f->s == 0.0) {
		*c = f->t[0].c;
		*chain = f->t[0].f;
		*n = f->t[0].n;
		f->t[0].f = NULL;
		f->t[0].n = 0;
		op_fold_free(f);
		return 0;
	}
	*chain = malloc(sizeof(op_factor));
	if (!*chain) {
		op_fold_free(f);
		return nomem();
	}
	memset(*chain, 0, sizeof(op_factor));
	(*chain)[0].type = FACTOR_SUM;
	(*chain)[0].sum = f;
	*c = 1.0;
	*n = 1;
	return 0;
}

static int fold_product(op_fold **out, op_fold *fa, op_fold *fb)
{
	op_factor *ca = NULL, *cb = NULL;
	size_t na = 0, nb = 0;
	double a = 1, b = 1;
	uint64_t d = fa->d;
	int rc;

	*out = NULL;
	/* An identity on either side is only a scaling of the other. */
	if (fa->n == 0) {
		fold_scale(fb, fa->s);
		op_fold_free(fa);
		*out = fb;
		return 0;
	}
	if (fb->n == 0) {
		fold_scale(fa, fb->s);
		op_fold_free(fb);
		*out = fa;
		return 0;
	}
	rc = side_chain(fa, &a, &ca, &na);
	if (rc) {
		op_fold_free(fb);
		return rc;
	}
	rc = side_chain(fb, &b, &cb, &nb);
	if (rc)
		goto out;
	rc = fold_new(out, d, 1);
	if (rc)
		goto out;
	(*out)->t[0].c = a * b;
	(*out)->t[0].f = realloc(ca, (na + nb) * sizeof(op_factor));
	if (!(*out)->t[0].f) {
		op_fold_free(*out);
		*out = NULL;
		rc = nomem();
		goto out;
	}
	ca = NULL;
	memcpy((*out)->t[0].f + na, cb, nb * sizeof(op_factor));
	(*out)->t[0].n = na + nb;
	free(cb);
	return 0;
out:
	if (cb) {
		op_term t = {1, nb, cb};

		term_free(&t);
	}
	if (ca) {
		op_term t = {1, na, ca};

		term_free(&t);
	}
	return rc;
}

int op_fold_build(const pspace_op *a, op_fold **out)
{
	op_fold *fa = NULL, *fb = NULL;
	op_factor fac;
	int rc;

	*out = NULL;
	memset(&fac, 0, sizeof(fac));
	switch (a->type) {
	case OP_MAT:
		fac.type = FACTOR_MAT;
		fac.m = a->m;
		return fold_single(out, a->d, &fac);
	case OP_INVERSE:
		fac.type = FACTOR_INV;
		fac.inv = a;
		return fold_single(out, a->d, &fac);
	case OP_IDENT:
		rc = fold_new(out, a->d, 0);
		if (rc == 0)
			(*out)->s = a->s;
		return rc;
	case OP_SCALE:
		rc = op_fold_build(a->a, out);
		if (rc == 0)
			fold_scale(*out, a->s);
		return rc;
	case OP_ADD:
	case OP_SUB:
	case OP_PRODUCT: break;
	}
	rc = op_fold_build(a->a, &fa);
	if (rc)
		return rc;
	rc = op_fold_build(a->b, &fb);
	if (rc) {
		op_fold_free(fa);
		return rc;
	}
	if (a->type == OP_PRODUCT)
		return fold_product(out, fa, fb);
	rc = fold_merge(fa, fb, a->type == OP_SUB ? -1.0 : 1.0);
	if (rc) {
		op_fold_free(fa);
		return rc;
	}
	*out = fa;
	return 0;
}

int op_term_is_linear(const op_term *t)
{
	return t->n == 1 && t->f[0].type == FACTOR_MAT;
}

int op_fold_is_linear(const op_fold *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (!op_term_is_linear(&f->t[i]))
			return 0;
	return 1;
}

void op_leaves_free(op_leaves *l)
{
	free(l->g0);
	free(l->t);
	free(l->c);
	free(l->m);
	memset(l, 0, sizeof(*l));
}

/* Group of leaf @p i: the first earlier leaf of the same tiling names it. */
static size_t group_of(const op_leaves *l, const size_t *grp, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (l->t[j] && pspace_tiled_same(l->t[j], l->t[i]))
			return grp[j];
	return i;
}

/* Orders the leaves group after group (first appearance), resident ones last. */
static int order_groups(op_leaves *l)
{
	size_t *grp = NULL, *perm = NULL, i, j, cnt = 0;
	pspace_mat **m = NULL;
	double *c = NULL;
	const struct pspace_tiled **t = NULL;
	int rc = 0;

	grp = malloc(l->n * sizeof(*grp));
	perm = malloc(l->n * sizeof(*perm));
	m = malloc(l->n * sizeof(*m));
	c = malloc(l->n * sizeof(*c));
	t = malloc(l->n * sizeof(*t));
	l->g0 = malloc((l->n + 1) * sizeof(*l->g0));
	if (!grp || !perm || !m || !c || !t || !l->g0) {
		rc = nomem();
		goto out;
	}
	for (i = 0; i < l->n; i++)
		grp[i] = l->t[i] ? group_of(l, grp, i) : SIZE_MAX;
	/* Groups in the order of their first leaf; within one, the fold's order. */
	for (i = 0; i < l->n; i++) {
		if (grp[i] != i)
			continue;
		l->g0[l->ngroups++] = cnt;
		for (j = i; j < l->n; j++)
			if (grp[j] == i)
				perm[cnt++] = j;
	}
	l->g0[l->ngroups] = cnt;
	for (i = 0; i < l->n; i++)
		if (grp[i] == SIZE_MAX)
			perm[cnt++] = i;
	for (i = 0; i < l->n; i++) {
		m[i] = l->m[perm[i]];
		c[i] = l->c[perm[i]];
		t[i] = l->t[perm[i]];
	}
	memcpy(l->m, m, l->n * sizeof(*m));
	memcpy(l->c, c, l->n * sizeof(*c));
	memcpy(l->t, t, l->n * sizeof(*t));
out:
	free(t);
	free(c);
	free(m);
	free(perm);
	free(grp);
	return rc;
}

int op_fold_leaves(const op_fold *f, op_leaves *l)
{
	size_t i, j, cnt = 0;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	l->m = malloc((f->n ? f->n : 1) * sizeof(*l->m));
	l->c = malloc((f->n ? f->n : 1) * sizeof(*l->c));
	l->t = malloc((f->n ? f->n : 1) * sizeof(*l->t));
	if (!l->m || !l->c || !l->t) {
		rc = nomem();
		goto out;
	}
	for (i = 0; i < f->n; i++) {
		if (!op_term_is_linear(&f->t[i]))
			continue;
		for (j = 0; j < cnt; j++)
			if (l->m[j] == f->t[i].f[0].m)
				break;
		if (j == cnt) {
			l->m[cnt] = f->t[i].f[0].m;
			l->c[cnt++] = 0.0;
		}
		l->c[j] += f->t[i].c;
	}
	/* Matrices whose terms cancel are not read at all. */
	for (i = 0, j = 0; i < cnt; i++)
		if (l->c[i] != 0.0) {
			l->m[j] = l->m[i];
			l->c[j] = l->c[i];
			l->t[j++] = pspace_mat_tiled(l->m[i]);
		}
	l->n = j;
	rc = order_groups(l);
out:
	if (rc)
		op_leaves_free(l);
	return rc;
}

/* ---- applying ------------------------------------------------------------- */

static void rows_zero(uint64_t d, uint32_t k, double *Y, size_t ldy)
{
	uint32_t j;

	for (j = 0; j < k; j++)
		memset(Y + (size_t)j * ldy, 0, d * sizeof(double));
}

static void rows_axpy(uint64_t d, uint32_t k, double a, const double *X, size_t ldx, double *Y,
                      size_t ldy)
{
	uint32_t j;
	uint64_t i;

	for (j = 0; j < k; j++) {
		const double *x = X + (size_t)j * ldx;
		double *y = Y + (size_t)j * ldy;

		for (i = 0; i < d; i++)
			y[i] += a * x[i];
	}
}

static int scratch(double **out, uint64_t d, uint32_t k)
{
	*out = malloc((size_t)d * k * sizeof(double));
	if (!*out)
		return pspace_err_set(PSPACE_ENOMEM, "op: out of memory for a %u x %llu temporary",
		                      (unsigned)k, (unsigned long long)d);
	return 0;
}

/* Y (+)= alpha F X for one factor. */
static int factor_apply(const op_factor *f, uint64_t d, const pspace_exec *ex, uint32_t k,
                        double alpha, const double *X, size_t ldx, double *Y, size_t ldy,
                        int accumulate)
{
	pspace_solve_opts so;
	double *T = NULL;
	int rc;

	switch (f->type) {
	case FACTOR_MAT:
		return pspace_mat_mm(f->m, ex, k, alpha, X, ldx, accumulate ? 1.0 : 0.0, Y, ldy);
	case FACTOR_SUM: return op_fold_apply(f->sum, ex, k, alpha, X, ldx, Y, ldy, accumulate);
	case FACTOR_INV: break;
	}
	so = f->inv->opts;
	if (!accumulate && alpha == 1.0)
		return f->inv->solve(f->inv->a, ex, f->inv->s, k, X, ldx, Y, ldy, &so);
	rc = scratch(&T, d, k);
	if (rc)
		return rc;
	rc = f->inv->solve(f->inv->a, ex, f->inv->s, k, X, ldx, T, d, &so);
	if (rc == 0) {
		if (!accumulate)
			rows_zero(d, k, Y, ldy);
		rows_axpy(d, k, alpha, T, d, Y, ldy);
	}
	free(T);
	return rc;
}

/* Y += alpha c F_1 ... F_n X: right to left through two temporaries. */
static int chain_apply(const op_term *t, uint64_t d, const pspace_exec *ex, uint32_t k,
                       double alpha, const double *X, size_t ldx, double *Y, size_t ldy)
{
	double *T[2] = {NULL, NULL};
	const double *cur = X;
	size_t ldc = ldx, i;
	int rc = 0, w = 0;

	if (t->n > 1) {
		rc = scratch(&T[0], d, k);
		if (rc)
			goto out;
	}
	if (t->n > 2) {
		rc = scratch(&T[1], d, k);
		if (rc)
			goto out;
	}
	for (i = t->n - 1; i > 0; i--) {
		rc = factor_apply(&t->f[i], d, ex, k, 1.0, cur, ldc, T[w], d, 0);
		if (rc)
			goto out;
		cur = T[w];
		ldc = d;
		w ^= 1;
	}
	rc = factor_apply(&t->f[0], d, ex, k, alpha * t->c, cur, ldc, Y, ldy, 1);
out:
	free(T[1]);
	free(T[0]);
	return rc;
}

int op_groups_apply(const op_leaves *l, const pspace_exec *ex, uint32_t k, double alpha,
                    const double *X, size_t ldx, double *Y, size_t ldy)
{
	double *a = NULL;
	int rc = 0;

	if (l->ngroups == 0 || alpha == 0.0)
		return 0;
	a = malloc(l->n * sizeof(*a));
	if (!a)
		return nomem();
	for (size_t i = 0; i < l->n; i++)
		a[i] = alpha * l->c[i];
	for (size_t g = 0; g < l->ngroups && rc == 0; g++)
		rc = pspace_shard_mm_multi(l->t + l->g0[g], op_group_size(l, g), a + l->g0[g], ex,
		                           k, X, ldx, Y, ldy);
	free(a);
	return rc;
}

int op_fold_apply(const op_fold *f, const pspace_exec *ex, uint32_t k, double alpha,
                  const double *X, size_t ldx, double *Y, size_t ldy, int accumulate)
{
	op_leaves l;
	size_t i;
	int rc;

	if (!accumulate)
		rows_zero(f->d, k, Y, ldy);
	if (f->s != 0.0 && alpha != 0.0)
		rows_axpy(f->d, k, alpha * f->s, X, ldx, Y, ldy);
	/* Each stored tile once, whatever the number of terms naming its matrix. */
	rc = op_fold_leaves(f, &l);
	if (rc)
		return rc;
	if (alpha != 0.0) {
		rc = op_groups_apply(&l, ex, k, alpha, X, ldx, Y, ldy);
		for (i = op_leaves_resident(&l); i < l.n && rc == 0; i++)
			rc = pspace_mat_mm(l.m[i], ex, k, alpha * l.c[i], X, ldx, 1.0, Y, ldy);
	}
	for (i = 0; i < f->n && rc == 0; i++) {
		if (op_term_is_linear(&f->t[i]))
			continue;
		rc = chain_apply(&f->t[i], f->d, ex, k, alpha, X, ldx, Y, ldy);
	}
	op_leaves_free(&l);
	return rc;
}

size_t op_fold_scratch(const op_fold *f)
{
	size_t i, j, most = 0, need;

	for (i = 0; i < f->n; i++) {
		need = f->t[i].n > 1 ? (f->t[i].n > 2 ? 2 : 1) : 0;
		for (j = 0; j < f->t[i].n; j++) {
			if (f->t[i].f[j].type == FACTOR_SUM)
				need += op_fold_scratch(f->t[i].f[j].sum);
			else if (f->t[i].f[j].type == FACTOR_INV)
				need += 6; /* solve temporaries (CG) */
		}
		if (need > most)
			most = need;
	}
	return most * f->d * sizeof(double);
}

size_t op_budget(const pspace_exec *ex)
{
	pspace_exec e;

	pspace_exec_resolve(ex, &e);
	return e.mem_budget;
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

static void fold_describe(const op_fold *f, char *buf, size_t cap, size_t *pos);

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
		fold_describe(f->sum, buf, cap, pos);
		put(buf, cap, pos, ")");
		break;
	case FACTOR_INV:
		put(buf, cap, pos, "(");
		if (op_fold_build(f->inv->a, &inner) == 0) {
			inner->s += f->inv->s;
			fold_describe(inner, buf, cap, pos);
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

static void fold_describe(const op_fold *f, char *buf, size_t cap, size_t *pos)
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
	fold_describe(f, buf, cap, &pos);
	op_fold_free(f);
	if (pos > (size_t)0x7fffffff)
		return pspace_err_set(PSPACE_EINVAL, "op: description too long");
	return (int)pos;
}

int op_check_finite(const double *v, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return pspace_err_set(PSPACE_ENUMERIC,
			                      "op: %s %s%g is not finite (the matrices or inputs "
			                      "exceed double range)",
			                      what, n > 1 ? "value " : "", v[i]);
	return 0;
}
