/*
 * Tests of KFAC (src/mat/kron/) on a layout with a linear
 * layer with a bias, one without, a conv2d with a bias and an embedding:
 * every operation against a float64 dense reference built here from the README's Formulas
 * (Kronecker products in (o, j) order permuted to the canonical order by
 * this file's own code, tests/helpers/kref.c), LAPACK's dsyev / dgesv on
 * that reference for eigenpairs, inverses and powers, persistence (bit-
 * identical round trips), and KFAC as a CG preconditioner.
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
#include "kref.h"
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/op.h"

#define TOL 1e-10

static pspace_mat *make(const kref *k)
{
	pspace_mat *m = NULL;

	assert_int_equal(pspace_kfac_create(&m, k->layout, (const double *const *)k->A,
	                                    (const double *const *)k->G),
	                 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_KFAC);
	assert_int_equal(pspace_mat_dim(m), k->d);
	return m;
}

static double *dense_ref(const kref *k)
{
	double *F = malloc(k->d * k->d * sizeof(*F));

	assert_non_null(F);
	kref_dense(k->layout, (double *const *)k->A, (double *const *)k->G, 0, F);
	return F;
}

static double *dense_of(pspace_mat *m)
{
	size_t d = pspace_mat_dim(m);
	double *F = malloc(d * d * sizeof(*F));

	assert_non_null(F);
	assert_int_equal(pspace_mat_dense(m, NULL, F, d), 0);
	return F;
}

/* Dense of the pi- (or sqrt-) damped Kronecker product. */
static double *damped_ref(const kref *k, double l, int pi_on)
{
	double *Ad[KREF_MAXL], *Gd[KREF_MAXL];
	double *F = malloc(k->d * k->d * sizeof(*F));

	assert_non_null(F);
	kref_damp(k->layout, (double *const *)k->A, (double *const *)k->G, l, pi_on, Ad, Gd);
	kref_dense(k->layout, Ad, Gd, 0, F);
	for (size_t i = 0; i < k->n; i++) {
		free(Ad[i]);
		free(Gd[i]);
	}
	return F;
}

/* mm with k = 1 and 16 (ld > d, accumulating, alpha) against F. */
static void check_mm_many(pspace_mat *m, const double *F, size_t d)
{
	const uint32_t ks[] = {1, 16};

	for (int t = 0; t < 2; t++) {
		uint32_t k = ks[t];
		size_t ld = d + 5;
		double *X = fx_randv(k * ld, 500 + k), *Y = fx_randv(k * ld, 600 + k);
		double *Y0 = malloc(k * ld * sizeof(*Y0)), *Xc = malloc(k * d * sizeof(*Xc));
		double *R = malloc(k * d * sizeof(*R)), *got = malloc(k * d * sizeof(*got));

		assert_non_null(Y0);
		assert_non_null(Xc);
		assert_non_null(R);
		assert_non_null(got);
		memcpy(Y0, Y, k * ld * sizeof(*Y0));
		for (size_t j = 0; j < k; j++)
			memcpy(Xc + j * d, X + j * ld, d * sizeof(*Xc));
		fref_mm(F, d, k, Xc, R);
		assert_int_equal(pspace_mat_mm(m, NULL, k, -2.0, X, ld, 1.0, Y, ld), 0);
		for (size_t j = 0; j < k; j++)
			for (size_t i = 0; i < d; i++) {
				got[j * d + i] = Y[j * ld + i] - Y0[j * ld + i];
				R[j * d + i] *= -2.0;
			}
		assert_true(fx_relerr(got, R, k * d) < TOL);
		free(got);
		free(R);
		free(Xc);
		free(Y0);
		free(Y);
		free(X);
	}
}

/* ---- tests --------------------------------------------------------------------------- */

/* Materialized KFAC = the block of the README's Formulas in both bias orders. */
static void test_kfac_dense_orders(void **state)
{
	kref k;
	pspace_mat *m;
	double *F, *G, *P, *Fp;
	uint64_t *perm;
	size_t d;

	(void)state;
	kref_init(&k, 11, 0.1);
	d = k.d;
	assert_int_equal(d, 25 + 15 + 27 + 18);
	m = make(&k);
	F = dense_ref(&k);
	G = dense_of(m);
	assert_true(fx_relerr(G, F, d * d) < 1e-14);

	/* Interleaved (split_weight_bias=False) order: the plain Kronecker blocks. */
	perm = malloc(d * sizeof(*perm));
	P = malloc(d * d * sizeof(*P));
	Fp = malloc(d * d * sizeof(*Fp));
	assert_non_null(perm);
	assert_non_null(P);
	assert_non_null(Fp);
	assert_int_equal(pspace_layout_interleave_perm(k.layout, perm), 0);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < d; j++)
			P[i * d + j] = G[perm[i] * d + perm[j]];
	kref_dense(k.layout, k.A, k.G, 1, Fp);
	assert_true(fx_relerr(P, Fp, d * d) < 1e-14);
	/* The bias order matters: the plain blocks differ from the canonical ones. */
	assert_true(fx_relerr(G, Fp, d * d) > 0.1);

	free(Fp);
	free(P);
	free(perm);
	free(G);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_kfac_ops(void **state)
{
	kref k;
	pspace_mat *m;
	double *F;

	(void)state;
	kref_init(&k, 21, 0.05);
	m = make(&k);
	F = dense_ref(&k);
	fref_check_ops(m, F, k.d, TOL);
	check_mm_many(m, F, k.d);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_kfac_eig(void **state)
{
	kref k;
	pspace_mat *m;
	pspace_op *o;
	double *F, *w, *V, *got, *U, nrm;
	const uint32_t kk = 12;
	size_t d;

	(void)state;
	kref_init(&k, 31, 0.05);
	d = k.d;
	m = make(&k);
	F = dense_ref(&k);
	fref_check_eig(m, F, d, kk, 1e-10);

	/* Eigenvectors up to sign against dsyev's, where the eigenvalue is simple. */
	w = malloc(d * sizeof(*w));
	V = malloc(d * d * sizeof(*V));
	got = malloc(kk * sizeof(*got));
	U = malloc(kk * d * sizeof(*U));
	assert_non_null(w);
	assert_non_null(V);
	assert_non_null(got);
	assert_non_null(U);
	fref_eigh(F, d, w, V);
	assert_int_equal(pspace_mat_eig(m, NULL, kk, got, U, d), 0);
	for (uint32_t i = 0; i < kk; i++) {
		double gap = i > 0 ? w[i - 1] - w[i] : INFINITY, dot = 0;

		if (w[i] - w[i + 1] < gap)
			gap = w[i] - w[i + 1];
		if (gap < 1e-6 * w[0])
			continue;
		for (size_t j = 0; j < d; j++)
			dot += U[i * d + j] * V[i * d + j];
		assert_true(fabs(fabs(dot) - 1) < 1e-8);
	}

	/* 2- and -2-norms by Lanczos on the operator. */
	assert_int_equal(pspace_op_mat(&o, m), 0);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[0]) <= 1e-6 * w[0]);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_MINUS2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[d - 1]) <= 1e-6 * w[0]);
	pspace_op_free(o);

	free(U);
	free(got);
	free(V);
	free(w);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
}

/* pspace_mat_solve(m, l) against (Fd)^-1 B. */
static void check_solve_vs(pspace_mat *m, double l, const double *Fd, size_t d)
{
	const size_t k = 5;
	double *B = fx_randv(k * d, 700), *X = malloc(k * d * sizeof(*X));
	double *R = malloc(k * d * sizeof(*R));

	assert_non_null(X);
	assert_non_null(R);
	fref_solve(Fd, d, 0.0, k, B, R);
	for (uint32_t kk = 1; kk <= k; kk += 4) {
		assert_int_equal(pspace_mat_solve(m, NULL, l, kk, B, d, X, d), 0);
		assert_true(fx_relerr(X, R, kk * d) < TOL);
	}
	free(R);
	free(X);
	free(B);
}

static void test_kfac_solve(void **state)
{
	const double ls[] = {0.1, 0.01, 0.1, 0.0};
	kref k;
	pspace_mat *m;
	double *F, *Fd;

	(void)state;
	kref_init(&k, 41, 0.05);
	m = make(&k);
	F = dense_ref(&k);
	/* pi damping is the default; alternate values exercise the factor cache. */
	for (int t = 0; t < 4; t++) {
		Fd = damped_ref(&k, ls[t], 1);
		check_solve_vs(m, ls[t], Fd, k.d);
		free(Fd);
	}
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_SQRT), 0);
	Fd = damped_ref(&k, 0.1, 0);
	check_solve_vs(m, 0.1, Fd, k.d);
	free(Fd);
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_EXACT), 0);
	fref_check_solve(m, F, k.d, 0.1, TOL);
	fref_check_solve(m, F, k.d, 0.003, 1e-9);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
}

/* dense(pow(m, p, l)) against P. */
static void check_pow(pspace_mat *m, double p, double l, const double *P, size_t d,
                      pspace_kind want)
{
	pspace_mat *q = NULL;
	double *G;

	assert_int_equal(pspace_mat_pow(&q, m, p, l), 0);
	assert_int_equal(pspace_mat_kind(q), want);
	G = dense_of(q);
	assert_true(fx_relerr(G, P, d * d) < TOL);
	free(G);
	pspace_mat_free(q);
}

static void test_kfac_pow(void **state)
{
	const double ps[] = {2, -1, -2, 0.5};
	kref k;
	pspace_mat *m, *inv;
	double *F, *Fd, *P;
	size_t d;

	(void)state;
	kref_init(&k, 51, 0.05);
	d = k.d;
	m = make(&k);
	F = dense_ref(&k);
	P = malloc(d * d * sizeof(*P));
	assert_non_null(P);
	Fd = damped_ref(&k, 0.2, 1);
	for (int t = 0; t < 4; t++) {
		fref_pow(Fd, d, ps[t], 0.0, P);
		check_pow(m, ps[t], 0.2, P, d, PSPACE_KIND_KFAC);
	}
	fref_pow(F, d, 3, 0.0, P);
	check_pow(m, 3, 0.0, P, d, PSPACE_KIND_KFAC);
	/* The inverse as a matrix agrees with the solve. */
	assert_int_equal(pspace_mat_inverse(&inv, m, 0.2), 0);
	{
		double *X = fx_randv(4 * d, 55), *Y1 = calloc(4 * d, sizeof(double));
		double *Y2 = malloc(4 * d * sizeof(double)), *R = malloc(4 * d * sizeof(double));

		assert_non_null(Y1);
		assert_non_null(Y2);
		assert_non_null(R);
		assert_int_equal(pspace_mat_mm(inv, NULL, 4, 1.0, X, d, 0.0, Y1, d), 0);
		assert_int_equal(pspace_mat_solve(m, NULL, 0.2, 4, X, d, Y2, d), 0);
		assert_true(fx_relerr(Y1, Y2, 4 * d) < TOL);
		/* inv keeps pi damping: its undamped solve multiplies by Fd. */
		assert_int_equal(pspace_mat_solve(inv, NULL, 0.0, 4, X, d, Y2, d), 0);
		fref_mm(Fd, d, 4, X, R);
		assert_true(fx_relerr(Y2, R, 4 * d) < TOL);
		free(R);
		free(Y2);
		free(Y1);
		free(X);
	}
	pspace_mat_free(inv);
	free(Fd);

	/* Exact damping: (F + l I)^p is an EKFAC. */
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_EXACT), 0);
	fref_pow(F, d, -1, 0.1, P);
	check_pow(m, -1, 0.1, P, d, PSPACE_KIND_EKFAC);
	fref_pow(F, d, 0.5, 0.1, P);
	check_pow(m, 0.5, 0.1, P, d, PSPACE_KIND_EKFAC);
	free(P);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_kfac_product_scale(void **state)
{
	kref k1, k2;
	pspace_mat *a, *b, *ab, *s, *inv, *id;
	double *F1, *F2, *P, *G, *X, *Y;
	size_t d;

	(void)state;
	kref_init(&k1, 61, 0.05);
	kref_init(&k2, 71, 0.3);
	d = k1.d;
	a = make(&k1);
	b = make(&k2);
	F1 = dense_ref(&k1);
	F2 = dense_ref(&k2);
	P = malloc(d * d * sizeof(*P));
	assert_non_null(P);

	/* A B, not symmetric: mm and dense work, solve/eig do not. */
	kref_matmul(d, F1, F2, P);
	assert_int_equal(pspace_mat_product(&ab, a, b), 0);
	assert_int_equal(pspace_mat_kind(ab), PSPACE_KIND_KFAC);
	G = dense_of(ab);
	assert_true(fx_relerr(G, P, d * d) < TOL);
	free(G);
	X = fx_randv(3 * d, 81);
	Y = calloc(3 * d, sizeof(*Y));
	G = malloc(3 * d * sizeof(*G));
	assert_non_null(Y);
	assert_non_null(G);
	assert_int_equal(pspace_mat_mm(ab, NULL, 3, 1.0, X, d, 0.0, Y, d), 0);
	fref_mm(P, d, 3, X, G);
	assert_true(fx_relerr(Y, G, 3 * d) < TOL);
	assert_int_equal(pspace_mat_solve(ab, NULL, 0.1, 3, X, d, Y, d), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_eigvals(ab, NULL, Y), PSPACE_ENOTSUP);
	free(G);

	/* M M^-1 = I, and products of commuting factors stay solvable. */
	assert_int_equal(pspace_mat_inverse(&inv, a, 0.0), 0);
	assert_int_equal(pspace_mat_product(&id, a, inv), 0);
	G = dense_of(id);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < d; j++)
			assert_true(fabs(G[i * d + j] - (i == j)) < 1e-10);
	assert_int_equal(pspace_mat_solve(id, NULL, 0.0, 3, X, d, Y, d), 0);
	assert_true(fx_relerr(Y, X, 3 * d) < 1e-10);
	free(G);

	/* s M */
	assert_int_equal(pspace_mat_scale(&s, a, -2.5), 0);
	for (size_t i = 0; i < d * d; i++)
		P[i] = -2.5 * F1[i];
	fref_check_ops(s, P, d, TOL);

	pspace_mat_free(s);
	pspace_mat_free(id);
	pspace_mat_free(inv);
	pspace_mat_free(ab);
	free(Y);
	free(X);
	free(P);
	free(F2);
	free(F1);
	pspace_mat_free(b);
	pspace_mat_free(a);
	kref_free(&k2);
	kref_free(&k1);
}

static void test_kfac_roundtrip(void **state)
{
	kref k1, k2;
	fx_store t;
	pspace_mat *m, *o, *b, *ab, *o2;
	double *Fd;

	(void)state;
	fx_store_open(&t, "kfac");
	kref_init(&k1, 91, 0.05);
	kref_init(&k2, 92, 0.05);
	m = make(&k1);
	b = make(&k2);
	/* The damping mode is stored with the matrix. */
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_SQRT), 0);
	o = fref_check_roundtrip(m, &t, "kfac", 0.1, 1);
	Fd = damped_ref(&k1, 0.1, 0);
	check_solve_vs(o, 0.1, Fd, k1.d);
	free(Fd);
	pspace_mat_free(o);
	/* A non-symmetric product round-trips too. */
	assert_int_equal(pspace_mat_product(&ab, m, b), 0);
	o2 = fref_check_roundtrip(ab, &t, "prod", -1, 1);
	pspace_mat_free(o2);

	pspace_mat_free(ab);
	pspace_mat_free(b);
	pspace_mat_free(m);
	kref_free(&k2);
	kref_free(&k1);
	fx_store_close(&t);
}

static void test_kfac_precond(void **state)
{
	kref k;
	fx_store t;
	pspace_mat *m;
	double *F, *E;
	size_t d;

	(void)state;
	fx_store_open(&t, "kfac");
	kref_init(&k, 101, 0.05);
	d = k.d;
	m = make(&k);
	/* Target: the KFAC matrix plus a full SPD perturbation. */
	F = dense_ref(&k);
	E = malloc(d * d * sizeof(*E));
	assert_non_null(E);
	kref_spd(d, 102, 0.0, E);
	for (size_t i = 0; i < d * d; i++)
		F[i] += 0.05 * E[i];
	fref_check_precond(m, &t, "F", F, d, 0.1);
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_EXACT), 0);
	fref_check_precond(m, &t, "F", F, d, 0.1);
	free(E);
	free(F);
	pspace_mat_free(m);
	kref_free(&k);
	fx_store_close(&t);
}

static void test_kfac_errors(void **state)
{
	static const char bad[] = "fc linear 2x2 bias\nbn norm 4 bias\n";
	pspace_layout *lay;
	pspace_mat *m = NULL, *q = NULL, *id;
	kref k;
	double *A[2], *G[2], x[85], y[85];

	(void)state;
	/* Layers without a KFAC form */
	assert_int_equal(pspace_layout_parse(&lay, bad, "bad"), 0);
	A[0] = G[0] = A[1] = G[1] = x;
	assert_int_equal(
	    pspace_kfac_create(&m, lay, (const double *const *)A, (const double *const *)G),
	    PSPACE_ENOTSUP);
	assert_null(m);
	assert_non_null(strstr(pspace_errdetail(), "bn"));
	pspace_layout_free(lay);

	kref_init(&k, 111, 0.0);
	/* NULL and non-symmetric factors */
	memcpy(A, k.A, sizeof(A));
	k.A[1] = NULL;
	assert_int_equal(pspace_kfac_create(&m, k.layout, (const double *const *)k.A,
	                                    (const double *const *)k.G),
	                 PSPACE_EINVAL);
	k.A[1] = A[1];
	k.G[0][1] += 0.5;
	assert_int_equal(pspace_kfac_create(&m, k.layout, (const double *const *)k.A,
	                                    (const double *const *)k.G),
	                 PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "fc1"));
	k.G[0][1] -= 0.5;

	/* A singular factor: undamped solve and inverse fail, damped ones work. */
	memset(k.G[1], 0, 9 * sizeof(double));
	k.G[1][0] = 1.0;
	m = make(&k);
	for (size_t i = 0; i < k.d; i++)
		x[i] = 1.0;
	assert_int_equal(pspace_mat_solve(m, NULL, 0.0, 1, x, k.d, y, k.d), PSPACE_ENUMERIC);
	assert_non_null(strstr(pspace_errdetail(), "fc2"));
	assert_int_equal(pspace_mat_inverse(&q, m, 0.0), PSPACE_ENUMERIC);
	assert_null(q);
	assert_int_equal(pspace_mat_solve(m, NULL, 0.1, 1, x, k.d, y, k.d), 0);
	assert_int_equal(pspace_mat_solve(m, NULL, -0.1, 1, x, k.d, y, k.d), PSPACE_EINVAL);
	assert_int_equal(pspace_mat_pinv(&q, m, 0.0), PSPACE_ENOTSUP);

	/* Damping modes */
	assert_int_equal(pspace_kfac_set_damping(m, (pspace_kfac_damping)7), PSPACE_EINVAL);
	assert_int_equal(pspace_kfac_set_damping(NULL, PSPACE_KFAC_DAMP_PI), PSPACE_EINVAL);
	assert_int_equal(pspace_identity_create(&id, 4, 1.0), 0);
	assert_int_equal(pspace_kfac_set_damping(id, PSPACE_KFAC_DAMP_PI), PSPACE_ENOTSUP);
	assert_int_equal(pspace_ekfac_from_kfac(&q, id), PSPACE_EINVAL);
	pspace_mat_free(id);
	pspace_mat_free(m);
	kref_free(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kfac_dense_orders), cmocka_unit_test(test_kfac_ops),
	    cmocka_unit_test(test_kfac_eig),          cmocka_unit_test(test_kfac_solve),
	    cmocka_unit_test(test_kfac_pow),          cmocka_unit_test(test_kfac_product_scale),
	    cmocka_unit_test(test_kfac_roundtrip),    cmocka_unit_test(test_kfac_precond),
	    cmocka_unit_test(test_kfac_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
