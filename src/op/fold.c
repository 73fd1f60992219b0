/*
 * Lazy operators: folding an expression tree into its normal form
 * s I + sum_i c_i (F_i1 ... F_in), and applying a normal form to k
 * right-hand sides.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
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

int op_fold_leaves(const op_fold *f, pspace_mat ***mats, double **coefs, size_t *n)
{
	size_t i, j, cnt = 0;

	*mats = NULL;
	*coefs = NULL;
	*n = 0;
	if (f->n == 0)
		return 0;
	*mats = malloc(f->n * sizeof(**mats));
	*coefs = malloc(f->n * sizeof(**coefs));
	if (!*mats || !*coefs) {
		free(*mats);
		free(*coefs);
		*mats = NULL;
		*coefs = NULL;
		return nomem();
	}
	for (i = 0; i < f->n; i++) {
		if (!op_term_is_linear(&f->t[i]))
			continue;
		for (j = 0; j < cnt; j++)
			if ((*mats)[j] == f->t[i].f[0].m)
				break;
		if (j == cnt) {
			(*mats)[cnt] = f->t[i].f[0].m;
			(*coefs)[cnt++] = 0.0;
		}
		(*coefs)[j] += f->t[i].c;
	}
	*n = cnt;
	return 0;
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
		if (!accumulate)
			rows_zero(d, k, Y, ldy);
		return pspace_mat_mm(f->m, ex, k, alpha, X, ldx, Y, ldy);
	case FACTOR_SUM: return op_fold_apply(f->sum, ex, k, alpha, X, ldx, Y, ldy, accumulate);
	case FACTOR_INV: break;
	}
	so = f->inv->opts;
	if (!accumulate && alpha == 1.0)
		return pspace_op_solve(f->inv->a, ex, f->inv->s, k, X, ldx, Y, ldy, &so);
	rc = scratch(&T, d, k);
	if (rc)
		return rc;
	rc = pspace_op_solve(f->inv->a, ex, f->inv->s, k, X, ldx, T, d, &so);
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

int op_fold_apply(const op_fold *f, const pspace_exec *ex, uint32_t k, double alpha,
                  const double *X, size_t ldx, double *Y, size_t ldy, int accumulate)
{
	pspace_mat **mats = NULL;
	double *coefs = NULL;
	size_t nl = 0, i;
	int rc;

	if (!accumulate)
		rows_zero(f->d, k, Y, ldy);
	if (f->s != 0.0 && alpha != 0.0)
		rows_axpy(f->d, k, alpha * f->s, X, ldx, Y, ldy);
	/* Each matrix once, whatever the number of terms naming it. */
	rc = op_fold_leaves(f, &mats, &coefs, &nl);
	if (rc)
		goto out;
	for (i = 0; i < nl; i++) {
		if (coefs[i] == 0.0)
			continue;
		rc = pspace_mat_mm(mats[i], ex, k, alpha * coefs[i], X, ldx, Y, ldy);
		if (rc)
			goto out;
	}
	for (i = 0; i < f->n; i++) {
		if (op_term_is_linear(&f->t[i]))
			continue;
		rc = chain_apply(&f->t[i], f->d, ex, k, alpha, X, ldx, Y, ldy);
		if (rc)
			goto out;
	}
out:
	free(coefs);
	free(mats);
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
