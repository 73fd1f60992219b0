/*
 * Tests of Diag and QuasiDiag (src/mat/diag.c, src/mat/quasidiag.c): every
 * operation against a float64 dense matrix built here from the definition
 * in the README's Formulas (the diagonal, plus for QuasiDiag the cross terms between
 * weight (o, j) and bias o of each layer with a bias), the arrowhead solve
 * against an LU solve of the dense M + l I, powers and pseudo-inverses
 * against the eigendecomposition of the dense reference, persistence
 * (bit-identical after reopening), and each kind as a CG preconditioner
 * for a stored Dense solve.
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
#include "pspace/mat.h"

/* Linear, conv2d and norm layers with a bias, a linear layer without. */
static const char *LAYOUT = "fc1   linear 6x5     bias\n"
                            "conv1 conv2d 3x2x2x2 bias\n"
                            "fc2   linear 4x6     nobias\n"
                            "bn    norm   4       bias\n";
#define D 95

static pspace_layout *layout(void)
{
	pspace_layout *l;

	assert_int_equal(pspace_layout_parse(&l, LAYOUT, "test"), 0);
	assert_int_equal(pspace_layout_dim(l), D);
	return l;
}

static const char *detail(void)
{
	return pspace_errdetail();
}

/* ---- Diag ------------------------------------------------------------------------- */

/* v: entries in [0.1, 1.1). */
static double *diag_values(uint64_t seed)
{
	double *v = fx_randv(D, seed);

	for (size_t i = 0; i < D; i++)
		v[i] = 0.6 + 0.5 * v[i];
	return v;
}

static double *diag_dense(const double *v)
{
	double *F = calloc(D * D, sizeof(*F));

	assert_non_null(F);
	for (size_t i = 0; i < D; i++)
		F[i * D + i] = v[i];
	return F;
}

static void test_diag_ops(void **state)
{
	pspace_layout *ly = layout();
	double *v = diag_values(1), *F = diag_dense(v);
	pspace_mat *m;

	(void)state;
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	v[0] = 99; /* the constructor copied */
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_DIAG);
	assert_int_equal(pspace_mat_dim(m), D);
	assert_true(pspace_layout_equal(pspace_mat_layout(m), ly));
	fref_check_ops(m, F, D, 1e-13);
	fref_check_solve(m, F, D, 0.3, 1e-13);
	fref_check_solve(m, F, D, 0.0, 1e-13);
	fref_check_eig(m, F, D, 7, 1e-12);
	pspace_mat_free(m);
	free(F);
	free(v);
	pspace_layout_free(ly);
}

static void test_diag_zero_pivot(void **state)
{
	pspace_layout *ly = layout();
	double *v = diag_values(2), B[D], X[D];
	pspace_mat *m;

	(void)state;
	v[40] = -0.25; /* conv1's weight 4 */
	for (size_t i = 0; i < D; i++)
		B[i] = 1;
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	assert_int_equal(pspace_mat_solve(m, NULL, 0.25, 1, B, D, X, D), PSPACE_ENUMERIC);
	assert_non_null(strstr(detail(), "conv1"));
	assert_int_equal(pspace_mat_solve(m, NULL, 0.5, 1, B, D, X, D), 0);
	assert_true(fabs(X[40] - 4.0) < 1e-15);
	pspace_mat_free(m);
	free(v);
	pspace_layout_free(ly);
}

static void test_diag_transforms(void **state)
{
	pspace_layout *ly = layout();
	double *v = diag_values(3), *w = diag_values(4), *F = diag_dense(v), *Fw = diag_dense(w);
	double *P = malloc(D * D * sizeof(*P));
	const double ps[] = {-1, -0.5, 0.5, 2, 3.5};
	pspace_mat *m, *b, *r;

	(void)state;
	assert_non_null(P);
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	for (size_t t = 0; t < sizeof(ps) / sizeof(ps[0]); t++) {
		assert_int_equal(pspace_mat_pow(&r, m, ps[t], 0.1), 0);
		assert_int_equal(pspace_mat_kind(r), PSPACE_KIND_DIAG);
		assert_true(pspace_layout_equal(pspace_mat_layout(r), ly));
		fref_pow(F, D, ps[t], 0.1, P);
		fref_check_dense(r, P, D, 1e-12);
		pspace_mat_free(r);
	}
	assert_int_equal(pspace_mat_inverse(&r, m, 0.2), 0);
	fref_pow(F, D, -1, 0.2, P);
	fref_check_dense(r, P, D, 1e-12);
	pspace_mat_free(r);
	/* p < 0 needs v + l > 0 */
	assert_int_equal(pspace_mat_pow(&r, m, -1, -0.5), PSPACE_ENUMERIC);
	assert_null(r);
	/* pinv: entries <= 0.6 dropped, zeros never inverted */
	v[5] = 0;
	pspace_mat_free(m);
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	free(F);
	F = diag_dense(v);
	assert_int_equal(pspace_mat_pinv(&r, m, 0.6), 0);
	fref_pinv(F, D, 0.6, P);
	fref_check_dense(r, P, D, 1e-12);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pinv(&r, m, -1.0), 0);
	fref_pinv(F, D, -1.0, P);
	fref_check_dense(r, P, D, 1e-12);
	pspace_mat_free(r);
	/* scale */
	assert_int_equal(pspace_mat_scale(&r, m, -2.5), 0);
	for (size_t i = 0; i < D * D; i++)
		P[i] = -2.5 * F[i];
	fref_check_dense(r, P, D, 1e-15);
	pspace_mat_free(r);
	/* product, against the dense product */
	assert_int_equal(pspace_diag_create(&b, ly, w), 0);
	assert_int_equal(pspace_mat_product(&r, m, b), 0);
	kref_matmul(D, F, Fw, P);
	fref_check_dense(r, P, D, 1e-15);
	pspace_mat_free(r);
	pspace_mat_free(b);
	pspace_mat_free(m);
	free(P);
	free(Fw);
	free(F);
	free(w);
	free(v);
	pspace_layout_free(ly);
}

/* Ties: equal entries come in parameter order, eigenvectors are unit vectors. */
static void test_diag_eig_ties(void **state)
{
	pspace_layout *ly = layout();
	double v[D], ev[4], V[4 * D];
	pspace_mat *m;

	(void)state;
	for (size_t i = 0; i < D; i++)
		v[i] = 1;
	v[7] = v[3] = 5;
	v[50] = 3;
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	assert_int_equal(pspace_mat_eig(m, NULL, 4, ev, V, D), 0);
	assert_true(ev[0] == 5 && ev[1] == 5 && ev[2] == 3 && ev[3] == 1);
	assert_true(V[3] == 1 && V[D + 7] == 1 && V[2 * D + 50] == 1 && V[3 * D + 0] == 1);
	pspace_mat_free(m);
	pspace_layout_free(ly);
}

static void test_diag_persist(void **state)
{
	pspace_layout *ly = layout();
	double *v = diag_values(5), *F = diag_dense(v), *J = fx_randv(3 * D, 6);
	fx_store t;
	pspace_mat *m, *o;
	uint32_t it;

	(void)state;
	fx_store_open(&t, "diag");
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	o = fref_check_roundtrip(m, &t, "diag", 0.1, 1);
	fref_check_ops(o, F, D, 1e-13);
	pspace_mat_free(o);
	/* As a preconditioner for F + J^T J (a rank-3 perturbation): converges. */
	for (size_t x = 0; x < 3; x++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				F[i * D + j] += J[x * D + i] * J[x * D + j];
	it = fref_check_precond(m, &t, "dense", F, D, 0.05);
	assert_true(it <= 10); /* exact up to rank 3: a handful of iterations */
	pspace_mat_free(m);
	fx_store_close(&t);
	free(J);
	free(F);
	free(v);
	pspace_layout_free(ly);
}

/* ---- QuasiDiag -------------------------------------------------------------------- */

typedef struct qd {
	double *diag;
	double *cross[4];
	double *F; /* dense reference */
} qd;

/*
 * Diagonal in [1, 2) (bias entries in [3, 4)), cross terms in [-0.3, 0.3):
 * every arrowhead is positive definite. F from the definition: F[w][w] =
 * diag, F[w][b] = F[b][w] = c[o][j] for w = weight (o, j), b = bias o.
 */
static void qd_make(qd *q, const pspace_layout *ly, uint64_t seed)
{
	q->diag = fx_randv(D, seed);
	for (size_t i = 0; i < D; i++)
		q->diag[i] = 1.5 + 0.5 * q->diag[i];
	q->F = calloc(D * D, sizeof(double));
	assert_non_null(q->F);
	for (size_t l = 0; l < 4; l++) {
		const pspace_layer *L = pspace_layout_layer(ly, l);
		uint64_t out = L->shape[0], in = L->weight_size / out;

		q->cross[l] = NULL;
		if (!L->bias)
			continue;
		q->cross[l] = fx_randv(out * in, seed * 10 + l);
		for (size_t i = 0; i < out * in; i++)
			q->cross[l][i] *= 0.3;
		for (size_t i = 0; i < out; i++)
			q->diag[L->offset + L->weight_size + i] += 2;
		for (uint64_t o = 0; o < out; o++)
			for (uint64_t j = 0; j < in; j++) {
				size_t w = L->offset + o * in + j,
				       b = L->offset + L->weight_size + o;

				q->F[w * D + b] = q->F[b * D + w] = q->cross[l][o * in + j];
			}
	}
	for (size_t i = 0; i < D; i++)
		q->F[i * D + i] = q->diag[i];
}

static void qd_free(qd *q)
{
	for (size_t l = 0; l < 4; l++)
		free(q->cross[l]);
	free(q->diag);
	free(q->F);
}

static pspace_mat *qd_create(const qd *q, const pspace_layout *ly)
{
	pspace_mat *m;

	assert_int_equal(pspace_quasidiag_create(&m, ly, q->diag, (const double *const *)q->cross),
	                 0);
	return m;
}

static void test_diag_quasi_ops(void **state)
{
	pspace_layout *ly = layout();
	pspace_mat *m;
	qd q;

	(void)state;
	qd_make(&q, ly, 11);
	m = qd_create(&q, ly);
	q.cross[0][3] = 1e9; /* the constructor copied: F holds the value */
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_QUASIDIAG);
	fref_check_ops(m, q.F, D, 1e-13);
	fref_check_solve(m, q.F, D, 0.2, 1e-12);
	fref_check_solve(m, q.F, D, 0.0, 1e-12);
	fref_check_solve(m, q.F, D, -0.5, 1e-11); /* negative, M + l I still nonsingular */
	fref_check_eig(m, q.F, D, 12, 1e-11);
	pspace_mat_free(m);
	qd_free(&q);
	pspace_layout_free(ly);
}

/* A NULL cross array (or NULL cross) means zero cross terms: plain diagonal. */
static void test_diag_quasi_null_cross(void **state)
{
	pspace_layout *ly = layout();
	const double *cr[4] = {NULL, NULL, NULL, NULL};
	pspace_mat *m;
	qd q;

	(void)state;
	qd_make(&q, ly, 12);
	cr[1] = q.cross[1];
	assert_int_equal(pspace_quasidiag_create(&m, ly, q.diag, cr), 0);
	for (size_t l = 0; l < 4; l += 3) {
		const pspace_layer *L = pspace_layout_layer(ly, l);

		for (size_t i = L->offset; i < L->offset + L->size; i++)
			for (size_t j = L->offset; j < L->offset + L->size; j++)
				if (i != j)
					q.F[i * D + j] = 0;
	}
	fref_check_ops(m, q.F, D, 1e-13);
	fref_check_solve(m, q.F, D, 0.1, 1e-12);
	pspace_mat_free(m);
	assert_int_equal(pspace_quasidiag_create(&m, ly, q.diag, NULL), 0);
	for (size_t i = 0; i < D * D; i++)
		q.F[i] = i % (D + 1) == 0 ? q.diag[i / D] : 0;
	fref_check_ops(m, q.F, D, 1e-13);
	pspace_mat_free(m);
	qd_free(&q);
	pspace_layout_free(ly);
}

static void test_diag_quasi_singular(void **state)
{
	pspace_layout *ly = layout();
	const pspace_layer *bn = pspace_layout_layer(ly, 3);
	double B[D], X[D];
	pspace_mat *m;
	qd q;

	(void)state;
	qd_make(&q, ly, 13);
	for (size_t i = 0; i < D; i++)
		B[i] = 1;
	/* bn neuron 2: weight 1, cross 1, bias 1: Schur complement 1 - 1/1 = 0. */
	q.diag[bn->offset + 2] = 1;
	q.diag[bn->offset + 4 + 2] = 1;
	q.cross[3][2] = 1;
	m = qd_create(&q, ly);
	for (size_t i = 0; i < D; i++)
		X[i] = 7;
	assert_int_equal(pspace_mat_solve(m, NULL, 0, 1, B, D, X, D), PSPACE_ENUMERIC);
	assert_non_null(strstr(detail(), "bn"));
	assert_non_null(strstr(detail(), "neuron 2"));
	for (size_t i = 0; i < D; i++) /* nothing written */
		assert_true(X[i] == 7);
	assert_int_equal(pspace_mat_solve(m, NULL, 0.5, 1, B, D, X, D), 0);
	pspace_mat_free(m);
	/* A zero diagonal pivot: fc2 (no bias) weight 3 with damping -diag. */
	q.cross[3][2] = 0.1;
	m = qd_create(&q, ly);
	assert_int_equal(pspace_mat_solve(m, NULL, -q.diag[pspace_layout_layer(ly, 2)->offset + 3],
	                                  1, B, D, X, D),
	                 PSPACE_ENUMERIC);
	assert_non_null(strstr(detail(), "fc2"));
	pspace_mat_free(m);
	qd_free(&q);
	pspace_layout_free(ly);
}

static void test_diag_quasi_transforms(void **state)
{
	pspace_layout *ly = layout();
	double *P = malloc(D * D * sizeof(*P));
	pspace_exec tiny = {1, 64};
	double ev[3];
	pspace_mat *m, *r;
	qd q;

	(void)state;
	assert_non_null(P);
	qd_make(&q, ly, 14);
	m = qd_create(&q, ly);
	/* p = 1: M + l I; p = 0: I; anything else is not an arrowhead. */
	assert_int_equal(pspace_mat_pow(&r, m, 1, 0.5), 0);
	assert_int_equal(pspace_mat_kind(r), PSPACE_KIND_QUASIDIAG);
	memcpy(P, q.F, D * D * sizeof(*P));
	for (size_t i = 0; i < D; i++)
		P[i * D + i] += 0.5;
	fref_check_dense(r, P, D, 1e-15);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, m, 0, 0.5), 0);
	for (size_t i = 0; i < D * D; i++)
		P[i] = i % (D + 1) == 0;
	fref_check_dense(r, P, D, 0);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_inverse(&r, m, 0.1), PSPACE_ENOTSUP);
	assert_non_null(strstr(detail(), "solve"));
	assert_int_equal(pspace_mat_pow(&r, m, 0.5, 0), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_pinv(&r, m, 0), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_product(&r, m, m), PSPACE_ENOTSUP);
	/* scale */
	assert_int_equal(pspace_mat_scale(&r, m, -1.5), 0);
	for (size_t i = 0; i < D * D; i++)
		P[i] = -1.5 * q.F[i];
	fref_check_dense(r, P, D, 1e-15);
	fref_check_ops(r, P, D, 1e-13);
	pspace_mat_free(r);
	/* Neuron blocks larger than the budget: ENOTSUP naming the layer. */
	assert_int_equal(pspace_mat_eig(m, &tiny, 3, ev, NULL, 0), PSPACE_ENOTSUP);
	assert_non_null(strstr(detail(), "fc1"));
	pspace_mat_free(m);
	qd_free(&q);
	free(P);
	pspace_layout_free(ly);
}

static void test_diag_quasi_persist(void **state)
{
	pspace_layout *ly = layout();
	double *J = fx_randv(4 * D, 15);
	fx_store t;
	pspace_mat *m, *o;
	uint32_t it;
	qd q;

	(void)state;
	fx_store_open(&t, "diag");
	qd_make(&q, ly, 16);
	m = qd_create(&q, ly);
	o = fref_check_roundtrip(m, &t, "qd", 0.1, 1);
	fref_check_ops(o, q.F, D, 1e-13);
	fref_check_eig(o, q.F, D, 5, 1e-11);
	pspace_mat_free(o);
	for (size_t x = 0; x < 4; x++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				q.F[i * D + j] += 0.5 * J[x * D + i] * J[x * D + j];
	it = fref_check_precond(m, &t, "dense", q.F, D, 0.05);
	assert_true(it <= 12);
	pspace_mat_free(m);
	qd_free(&q);
	fx_store_close(&t);
	free(J);
	pspace_layout_free(ly);
}

static void test_diag_errors(void **state)
{
	pspace_layout *ly = layout();
	double v[D] = {0};
	pspace_mat *m = (pspace_mat *)&m, *k;

	(void)state;
	assert_int_equal(pspace_diag_create(&m, NULL, v), PSPACE_EINVAL);
	assert_null(m);
	assert_int_equal(pspace_diag_create(&m, ly, NULL), PSPACE_EINVAL);
	assert_int_equal(pspace_quasidiag_create(&m, ly, NULL, NULL), PSPACE_EINVAL);
	assert_int_equal(pspace_diag_create(NULL, ly, v), PSPACE_EINVAL);
	/* product with another kind */
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	assert_int_equal(pspace_quasidiag_create(&k, ly, v, NULL), 0);
	assert_int_equal(pspace_mat_product(&(pspace_mat *){NULL}, m, k), PSPACE_ENOTSUP);
	pspace_mat_free(k);
	pspace_mat_free(m);
	pspace_layout_free(ly);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_diag_ops),
	    cmocka_unit_test(test_diag_zero_pivot),
	    cmocka_unit_test(test_diag_transforms),
	    cmocka_unit_test(test_diag_eig_ties),
	    cmocka_unit_test(test_diag_persist),
	    cmocka_unit_test(test_diag_quasi_ops),
	    cmocka_unit_test(test_diag_quasi_null_cross),
	    cmocka_unit_test(test_diag_quasi_singular),
	    cmocka_unit_test(test_diag_quasi_transforms),
	    cmocka_unit_test(test_diag_quasi_persist),
	    cmocka_unit_test(test_diag_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
