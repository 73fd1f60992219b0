/*
 * Tests of LowRank (src/mat/lowrank.c): F = D^T D built here as a dense
 * float64 matrix, for r < d, r = d and r > d; the exact damped solve
 * against an LU solve of F + l I, including vectors in the null space of
 * D (where (F + l I)^-1 v = v / l) and the cached factor across damping
 * values; powers, pseudo-inverse and eigenpairs against LAPACK's dsyev on
 * the dense F; persistence; and LowRank as a CG preconditioner.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/mat.h"

static const char *LAYOUT = "fc1 linear 5x4 bias\n"
                            "fc2 linear 3x5 nobias\n";
#define D 40

static pspace_layout *layout(void)
{
	pspace_layout *l;

	assert_int_equal(pspace_layout_parse(&l, LAYOUT, "test"), 0);
	assert_int_equal(pspace_layout_dim(l), D);
	return l;
}

/* D (r x d, leading dimension ld = d + 2) and F = D^T D. */
typedef struct lr {
	uint64_t r;
	double *Dm;
	double *F;
} lr;

static void lr_make(lr *x, uint64_t r, uint64_t seed)
{
	const size_t ld = D + 2;

	x->r = r;
	x->Dm = fx_randv(r * ld, seed);
	x->F = calloc(D * D, sizeof(double));
	assert_non_null(x->F);
	for (size_t k = 0; k < r; k++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				x->F[i * D + j] += x->Dm[k * ld + i] * x->Dm[k * ld + j];
}

static pspace_mat *lr_create(const lr *x, const pspace_layout *ly)
{
	pspace_mat *m;

	assert_int_equal(pspace_lowrank_create(&m, ly, x->r, x->Dm, D + 2), 0);
	return m;
}

static void lr_free(lr *x)
{
	free(x->Dm);
	free(x->F);
}

static void test_lowrank_ops(void **state)
{
	const uint64_t rs[] = {7, D, 60};
	pspace_layout *ly = layout();

	(void)state;
	for (int c = 0; c < 3; c++) {
		pspace_mat *m;
		lr x;

		lr_make(&x, rs[c], 10 + c);
		m = lr_create(&x, ly);
		x.Dm[0] += 1; /* the constructor copied */
		assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_LOWRANK);
		fref_check_ops(m, x.F, D, 1e-12);
		fref_check_solve(m, x.F, D, 0.1, 1e-10);
		fref_check_solve(m, x.F, D, 2.0, 1e-11);
		fref_check_eig(m, x.F, D, rs[c] < 30 ? (uint32_t)rs[c] + 5 : 10, 1e-10);
		pspace_mat_free(m);
		lr_free(&x);
	}
	pspace_layout_free(ly);
}

/* Gram-Schmidt of v against the rows of D, twice: v ends in the null space of D. */
static void to_null_space(const lr *x, double *v)
{
	const size_t ld = D + 2;
	double *Q = malloc(x->r * D * sizeof(*Q));
	size_t q = 0;

	assert_non_null(Q);
	for (size_t k = 0; k < x->r; k++) {
		double *u = Q + q * D, n = 0;

		memcpy(u, x->Dm + k * ld, D * sizeof(*u));
		for (int pass = 0; pass < 2; pass++)
			for (size_t p = 0; p < q; p++) {
				double s = 0;

				for (size_t i = 0; i < D; i++)
					s += u[i] * Q[p * D + i];
				for (size_t i = 0; i < D; i++)
					u[i] -= s * Q[p * D + i];
			}
		for (size_t i = 0; i < D; i++)
			n += u[i] * u[i];
		if (n < 1e-20)
			continue;
		for (size_t i = 0; i < D; i++)
			u[i] /= sqrt(n);
		q++;
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t p = 0; p < q; p++) {
			double s = 0;

			for (size_t i = 0; i < D; i++)
				s += v[i] * Q[p * D + i];
			for (size_t i = 0; i < D; i++)
				v[i] -= s * Q[p * D + i];
		}
	free(Q);
}

static void test_lowrank_solve_null_space(void **state)
{
	pspace_layout *ly = layout();
	double *v = fx_randv(2 * D, 21), X[2 * D], R[2 * D], Dv = 0;
	pspace_mat *m;
	lr x;

	(void)state;
	lr_make(&x, 6, 22);
	m = lr_create(&x, ly);
	/* v0 purely in the null space: (F + l I)^-1 v0 = v0 / l exactly. */
	to_null_space(&x, v);
	for (size_t k = 0; k < 6; k++) {
		double s = 0;

		for (size_t i = 0; i < D; i++)
			s += x.Dm[k * (D + 2) + i] * v[i];
		Dv += s * s;
	}
	assert_true(sqrt(Dv) < 1e-12);
	for (size_t i = 0; i < D; i++) {
		R[i] = v[i] / 0.01;
		v[D + i] += 0.5 * v[i]; /* v1: both components */
	}
	assert_int_equal(pspace_mat_solve(m, NULL, 0.01, 2, v, D, X, D), 0);
	assert_true(fx_relerr(X, R, D) < 1e-10);
	fref_solve(x.F, D, 0.01, 1, v + D, R + D);
	assert_true(fx_relerr(X + D, R + D, D) < 1e-9);
	/* The cached factor follows the damping: 0.01, 0.3, 0.01 again, 0.3 in place. */
	fref_check_solve(m, x.F, D, 0.3, 1e-11);
	fref_check_solve(m, x.F, D, 0.01, 1e-9);
	memcpy(X, v, 2 * D * sizeof(double));
	assert_int_equal(pspace_mat_solve(m, NULL, 0.3, 2, X, D, X, D), 0);
	fref_solve(x.F, D, 0.3, 2, v, R);
	assert_true(fx_relerr(X, R, 2 * D) < 1e-11);
	/* Without damping F is singular for r < d. */
	assert_int_equal(pspace_mat_solve(m, NULL, 0, 1, v, D, X, D), PSPACE_ENUMERIC);
	/* Damping that leaves l I + D D^T indefinite. */
	assert_int_equal(pspace_mat_solve(m, NULL, -1e3, 1, v, D, X, D), PSPACE_ENUMERIC);
	pspace_mat_free(m);
	lr_free(&x);
	/* r > d: F is positive definite, the undamped solve works. */
	lr_make(&x, 55, 23);
	m = lr_create(&x, ly);
	fref_check_solve(m, x.F, D, 0, 1e-9);
	pspace_mat_free(m);
	lr_free(&x);
	free(v);
	pspace_layout_free(ly);
}

static void test_lowrank_transforms(void **state)
{
	pspace_layout *ly = layout();
	double *P = malloc(D * D * sizeof(*P));
	pspace_mat *m, *r;
	lr x;

	(void)state;
	assert_non_null(P);
	/* r < d: LowRank results only without damping and for p > 0. */
	lr_make(&x, 8, 31);
	m = lr_create(&x, ly);
	assert_int_equal(pspace_mat_pow(&r, m, 0.5, 0), 0);
	assert_int_equal(pspace_mat_kind(r), PSPACE_KIND_LOWRANK);
	assert_true(pspace_layout_equal(pspace_mat_layout(r), ly));
	fref_pow(x.F, D, 0.5, 0, P);
	fref_check_dense(r, P, D, 1e-10);
	fref_check_ops(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, 2, 0), 0);
	fref_pow(x.F, D, 2, 0, P);
	fref_check_dense(r, P, D, 1e-11);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, 1, 0), 0);
	fref_check_dense(r, x.F, D, 1e-15);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_inverse(&r, m, 0.1), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "pspace_mat_solve"));
	assert_int_equal(pspace_mat_pow(&r, m, 2, 0.1), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_pow(&r, m, -1, 0), PSPACE_ENUMERIC);
	/* pinv: all nonzero eigenvalues, then those above a threshold */
	assert_int_equal(pspace_mat_pinv(&r, m, 0), 0);
	fref_pinv(x.F, D, 0, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	{
		double w[D];

		fref_eigh(x.F, D, w, NULL);
		assert_int_equal(pspace_mat_pinv(&r, m, 0.5 * (w[3] + w[4])), 0);
		fref_pinv(x.F, D, 0.5 * (w[3] + w[4]), P);
		fref_check_dense(r, P, D, 1e-10);
		pspace_mat_free(r);
	}
	/* scale */
	assert_int_equal(pspace_mat_scale(&r, m, 2.5), 0);
	for (size_t i = 0; i < D * D; i++)
		P[i] = 2.5 * x.F[i];
	fref_check_dense(r, P, D, 1e-14);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_scale(&r, m, -1), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_product(&r, m, m), PSPACE_ENOTSUP);
	pspace_mat_free(m);
	lr_free(&x);

	/* r > d: V spans everything, any damped power is LowRank. */
	lr_make(&x, 50, 32);
	m = lr_create(&x, ly);
	assert_int_equal(pspace_mat_inverse(&r, m, 0.1), 0);
	fref_pow(x.F, D, -1, 0.1, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, -0.5, 0), 0);
	fref_pow(x.F, D, -0.5, 0, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, 1.5, 0.2), 0);
	fref_pow(x.F, D, 1.5, 0.2, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, 0.5, -1e4), PSPACE_ENUMERIC);
	pspace_mat_free(m);
	lr_free(&x);
	free(P);
	pspace_layout_free(ly);
}

/* Rank-deficient D (repeated rows): zero singular values are handled. */
static void test_lowrank_rank_deficient(void **state)
{
	pspace_layout *ly = layout();
	double *P = malloc(D * D * sizeof(*P));
	pspace_mat *m, *r;
	lr x;

	(void)state;
	assert_non_null(P);
	lr_make(&x, 6, 41);
	memcpy(x.Dm + 3 * (D + 2), x.Dm, D * sizeof(double));
	memcpy(x.Dm + 4 * (D + 2), x.Dm + (D + 2), D * sizeof(double));
	memset(x.F, 0, D * D * sizeof(double));
	for (size_t k = 0; k < 6; k++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				x.F[i * D + j] += x.Dm[k * (D + 2) + i] * x.Dm[k * (D + 2) + j];
	m = lr_create(&x, ly);
	fref_check_ops(m, x.F, D, 1e-12);
	fref_check_solve(m, x.F, D, 0.05, 1e-10);
	fref_check_eig(m, x.F, D, 9, 1e-10);
	assert_int_equal(pspace_mat_pinv(&r, m, 0), 0);
	fref_pinv(x.F, D, 1e-8, P);
	fref_check_dense(r, P, D, 1e-9);
	pspace_mat_free(r);
	pspace_mat_free(m);
	lr_free(&x);
	free(P);
	pspace_layout_free(ly);
}

static void test_lowrank_persist(void **state)
{
	pspace_layout *ly = layout();
	double *J = fx_randv(2 * D, 51);
	fx_store t;
	pspace_mat *m, *o;
	uint32_t it;
	lr x;

	(void)state;
	fx_store_open(&t, "lowrank");
	lr_make(&x, 9, 52);
	m = lr_create(&x, ly);
	o = fref_check_roundtrip(m, &t, "lr", 0.1, 1);
	fref_check_ops(o, x.F, D, 1e-12);
	pspace_mat_free(o);
	/* Preconditioner for F + diag + a rank-2 term: converges to the direct solve. */
	for (size_t i = 0; i < D; i++) {
		x.F[i * D + i] += 0.2 + 0.1 * (double)(i % 3);
		for (size_t j = 0; j < D; j++)
			x.F[i * D + j] += 0.1 * (J[i] * J[j] + J[D + i] * J[D + j]);
	}
	it = fref_check_precond(m, &t, "dense", x.F, D, 0.05);
	assert_true(it < D);
	pspace_mat_free(m);
	lr_free(&x);
	fx_store_close(&t);
	free(J);
	pspace_layout_free(ly);
}

static void test_lowrank_errors(void **state)
{
	pspace_layout *ly = layout();
	double Dm[2 * D] = {0};
	pspace_mat *m = (pspace_mat *)&m;

	(void)state;
	assert_int_equal(pspace_lowrank_create(&m, ly, 2, Dm, D - 1), PSPACE_EINVAL);
	assert_null(m);
	assert_int_equal(pspace_lowrank_create(&m, ly, 0, Dm, D), PSPACE_EINVAL);
	assert_int_equal(pspace_lowrank_create(&m, NULL, 2, Dm, D), PSPACE_EINVAL);
	assert_int_equal(pspace_lowrank_create(&m, ly, 2, NULL, D), PSPACE_EINVAL);
	/* A zero factor: F = 0, solve is v / l. */
	assert_int_equal(pspace_lowrank_create(&m, ly, 2, Dm, D), 0);
	{
		double v[D], X[D];

		for (size_t i = 0; i < D; i++)
			v[i] = (double)i;
		assert_int_equal(pspace_mat_solve(m, NULL, 0.5, 1, v, D, X, D), 0);
		for (size_t i = 0; i < D; i++)
			assert_true(X[i] == 2.0 * (double)i);
	}
	pspace_mat_free(m);
	pspace_layout_free(ly);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lowrank_ops),
	    cmocka_unit_test(test_lowrank_solve_null_space),
	    cmocka_unit_test(test_lowrank_transforms),
	    cmocka_unit_test(test_lowrank_rank_deficient),
	    cmocka_unit_test(test_lowrank_persist),
	    cmocka_unit_test(test_lowrank_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
