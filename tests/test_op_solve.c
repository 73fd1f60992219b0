/*
 * Tests of the solves of the lazy operators (src/op): inverse nodes,
 * direct solves of Dense, scaled and shifted Dense, BlockDiag and
 * Identity, CG with every preconditioner kind (none, Identity, BlockDiag,
 * Dense, a folded c*M + s*I) and CG that does not converge.
 *
 * Every result is checked against a float64 dense solve (fref_solve, on
 * the reference of F, see oref.h), never against the code under test;
 * CG is checked against the direct solve after that was checked. Matrices
 * are stored in float32, so the tolerance is a relative error of 1e-3.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "oref.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define D   OREF_D
#define TOL 1e-3

static void test_op_inverse(void **state)
{
	oref *x = *state;
	pspace_op *inv, *gi;
	double *X = fx_randv(3 * D, 9), *Y = malloc(3 * D * sizeof(double));
	double ref[3 * D], t[D];
	const double l = 0.5;

	assert_non_null(Y);
	assert_int_equal(pspace_op_inverse(&inv, x->oF, l, NULL), 0);
	assert_int_equal(pspace_op_mm(inv, NULL, 3, 1.0, X, D, 0.0, Y, D), 0);
	fref_solve(x->RF, D, l, 3, X, ref);
	assert_true(fx_relerr(Y, ref, 3 * D) < TOL);
	/* G (F + l I)^{-1} x */
	assert_int_equal(pspace_op_product(&gi, x->oG, inv), 0);
	assert_int_equal(pspace_op_mv(gi, NULL, X, Y), 0);
	fref_mm(x->RG, D, 1, ref, t);
	assert_true(fx_relerr(Y, t, D) < TOL);
	pspace_op_free(gi);
	pspace_op_free(inv);
	free(Y);
	free(X);
}

/* A BlockDiag made of F's diagonal blocks (layers of 300, 250, 150). */
static pspace_mat *blockdiag_of_f(oref *x, double **ref)
{
	static const size_t sz[3] = {300, 250, 150};
	pspace_layout *ly;
	pspace_write_opts wo;
	pspace_mat *m;
	double *blocks[3];
	size_t off = 0;

	assert_int_equal(pspace_layout_parse(&ly,
	                                     "a generic 300 nobias\nb generic 250 nobias\n"
	                                     "c generic 150 nobias\n",
	                                     "test"),
	                 0);
	*ref = calloc((size_t)D * D, sizeof(double));
	assert_non_null(*ref);
	for (int b = 0; b < 3; b++) {
		blocks[b] = malloc(sz[b] * sz[b] * sizeof(double));
		assert_non_null(blocks[b]);
		for (size_t i = 0; i < sz[b]; i++)
			for (size_t j = 0; j < sz[b]; j++) {
				blocks[b][i * sz[b] + j] = x->RF[(off + i) * D + off + j];
				(*ref)[(off + i) * D + off + j] = x->RF[(off + i) * D + off + j];
			}
		off += sz[b];
	}
	oref_write_opts(&wo);
	assert_int_equal(
	    pspace_blockdiag_write(x->st.s, "B", ly, (const double *const *)blocks, &wo), 0);
	assert_int_equal(pspace_mat_open(&m, x->st.s, "B"), 0);
	for (int b = 0; b < 3; b++)
		free(blocks[b]);
	pspace_layout_free(ly);
	return m;
}

static void test_op_solve_direct(void **state)
{
	oref *x = *state;
	pspace_solve_opts so;
	pspace_op *e, *f2, *i1, *ob, *oi;
	pspace_mat *B, *I2;
	double *RB, *X = fx_randv(3 * D, 21), *Y = malloc(3 * D * sizeof(double));
	double *ref = malloc(3 * D * sizeof(double));
	const double l = 0.3;

	assert_non_null(Y);
	assert_non_null(ref);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;

	/* Dense */
	assert_int_equal(pspace_op_solve(x->oF, NULL, l, 3, X, D, &so, Y, D), 0);
	fref_solve(x->RF, D, l, 3, X, ref);
	assert_true(fx_relerr(Y, ref, 3 * D) < TOL);
	/* 2F + 0.1 I with damping 0.3 = 2 (F + 0.2 I): still direct. */
	assert_int_equal(pspace_op_scale(&f2, 2.0, x->oF), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 0.1), 0);
	assert_int_equal(pspace_op_add(&e, f2, i1), 0);
	assert_int_equal(pspace_op_solve(e, NULL, l, 3, X, D, &so, Y, D), 0);
	fref_solve(x->RF, D, 0.2, 3, X, ref);
	for (size_t i = 0; i < 3 * D; i++)
		ref[i] /= 2;
	assert_true(fx_relerr(Y, ref, 3 * D) < TOL);
	/* BlockDiag */
	B = blockdiag_of_f(x, &RB);
	assert_int_equal(pspace_op_mat(&ob, B), 0);
	assert_int_equal(pspace_op_solve(ob, NULL, l, 3, X, D, &so, Y, D), 0);
	fref_solve(RB, D, l, 3, X, ref);
	assert_true(fx_relerr(Y, ref, 3 * D) < TOL);
	/* Identity, as a node and as a matrix: (2 + l)^{-1} B exactly. */
	assert_int_equal(pspace_identity_create(&I2, D, 2.0), 0);
	assert_int_equal(pspace_op_mat(&oi, I2), 0);
	assert_int_equal(pspace_op_solve(oi, NULL, l, 3, X, D, &so, Y, D), 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(fabs(Y[i] - X[i] / (2 + l)) < 1e-12 * (1 + fabs(X[i])));
	assert_int_equal(pspace_op_solve(i1, NULL, l, 3, X, D, &so, Y, D), 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(fabs(Y[i] - X[i] / (0.1 + l)) < 1e-12 * (1 + fabs(X[i])));
	/* A product has no direct solve. */
	pspace_op *p;

	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	assert_int_equal(pspace_op_solve(p, NULL, l, 1, X, D, &so, Y, D), PSPACE_ENOTSUP);
	pspace_op_free(p);
	pspace_op_free(oi);
	pspace_mat_free(I2);
	pspace_op_free(ob);
	pspace_mat_free(B);
	free(RB);
	pspace_op_free(e);
	pspace_op_free(i1);
	pspace_op_free(f2);
	free(ref);
	free(Y);
	free(X);
}

/* CG on (F + l I) with preconditioner @p pre against the direct solve. */
static uint32_t check_cg(oref *x, pspace_op *pre, uint32_t k, const double *X, const double *direct)
{
	pspace_solve_opts so;
	double *Y = malloc((size_t)k * D * sizeof(double));
	uint64_t before = pspace_store_tiles_read(x->st.s);

	assert_non_null(Y);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.tol = 1e-9;
	so.precond = pre;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.5, k, X, D, &so, Y, D), 0);
	assert_true(so.iterations > 0);
	assert_true(so.residual <= 1e-9);
	/* One mm per iteration: at most one pass over F each (F's tiles only). */
	if (!pre)
		assert_true(pspace_store_tiles_read(x->st.s) - before <=
		            (uint64_t)so.iterations * OREF_TILES);
	assert_true(fx_relerr(Y, direct, (size_t)k * D) < 1e-5);
	free(Y);
	return so.iterations;
}

static void test_op_solve_cg(void **state)
{
	oref *x = *state;
	const uint32_t ks[] = {1, 3, 16};
	double *X = fx_randv(16 * D, 31), *direct = malloc(16 * D * sizeof(double));
	double *ref = malloc(16 * D * sizeof(double)), *RB;
	pspace_solve_opts so;
	pspace_op *pi, *ob, *bh, *i1, *pe;
	pspace_mat *B;
	uint32_t it;

	assert_non_null(direct);
	assert_non_null(ref);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.5, 16, X, D, &so, direct, D), 0);
	fref_solve(x->RF, D, 0.5, 16, X, ref);
	assert_true(fx_relerr(direct, ref, 16 * D) < TOL);

	for (int t = 0; t < 3; t++)
		check_cg(x, NULL, ks[t], X, direct);
	/* Identity, scaled */
	assert_int_equal(pspace_op_identity(&pi, D, 3.0), 0);
	check_cg(x, pi, 3, X, direct);
	/* BlockDiag of F's diagonal blocks */
	B = blockdiag_of_f(x, &RB);
	assert_int_equal(pspace_op_mat(&ob, B), 0);
	/* Block Jacobi need not beat plain CG on a low-rank + shift F: only converge. */
	check_cg(x, ob, 3, X, direct);
	/* Dense F itself: exact, so one or two iterations */
	it = check_cg(x, x->oF, 3, X, direct);
	assert_true(it <= 3);
	/* An expression folding to c*M + s*I: 0.5*B + 0.1*I */
	assert_int_equal(pspace_op_scale(&bh, 0.5, ob), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 0.1), 0);
	assert_int_equal(pspace_op_add(&pe, bh, i1), 0);
	check_cg(x, pe, 3, X, direct);

	pspace_op_free(pe);
	pspace_op_free(i1);
	pspace_op_free(bh);
	pspace_op_free(ob);
	pspace_mat_free(B);
	free(RB);
	pspace_op_free(pi);
	free(ref);
	free(direct);
	free(X);
}

static void test_op_solve_noconv(void **state)
{
	oref *x = *state;
	pspace_solve_opts so;
	double *X = fx_randv(3 * D, 41), *Y = malloc(3 * D * sizeof(double));

	assert_non_null(Y);
	for (size_t i = 0; i < 3 * D; i++)
		Y[i] = NAN;
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.max_iter = 2;
	so.tol = 1e-12;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.01, 3, X, D, &so, Y, D), PSPACE_ENOCONV);
	assert_int_equal(so.iterations, 2);
	assert_true(so.residual > 1e-12 && isfinite(so.residual));
	assert_true(strlen(pspace_errdetail()) > 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(isfinite(Y[i]));
	free(Y);
	free(X);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_op_inverse, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_direct, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_cg, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_noconv, oref_setup, oref_teardown),
	};

	return cmocka_run_group_tests(tests, oref_group_setup, oref_group_teardown);
}
