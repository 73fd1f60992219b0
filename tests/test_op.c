/*
 * Tests of building lazy operators (src/op): describe() of folded
 * expressions, dimension errors, and materializing an expression into the
 * store. Evaluation is in test_op_eval.c, solves and inverse nodes in
 * test_op_solve.c, the one-pass promise in test_op_pass.c.
 *
 * F and G are stored Dense (f32 tiles, see oref.h); written results are
 * checked against the float64 dense reference within a relative error of
 * 1e-3, never against the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "oref.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define D   OREF_D
#define TOL 1e-3

static void test_op_describe(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x), *p, *i1, *s, *inv, *q;
	char buf[256];
	int n;

	n = pspace_op_describe(e, buf, sizeof(buf));
	assert_string_equal(buf, "2*F - 0.5*G + 0.001*I");
	assert_int_equal(n, (int)strlen(buf));
	/* Truncation reports the length needed, like snprintf. */
	assert_int_equal(pspace_op_describe(e, buf, 5), n);
	assert_string_equal(buf, "2*F ");

	assert_int_equal(pspace_op_identity(&i1, D, 1.0), 0);
	assert_int_equal(pspace_op_add(&s, x->oF, i1), 0);
	assert_int_equal(pspace_op_product(&p, s, x->oG), 0);
	pspace_op_describe(p, buf, sizeof(buf));
	assert_string_equal(buf, "(F + I)*G");
	assert_int_equal(pspace_op_inverse(&inv, x->oF, 0.25, NULL), 0);
	assert_int_equal(pspace_op_product(&q, x->oG, inv), 0);
	pspace_op_describe(q, buf, sizeof(buf));
	assert_string_equal(buf, "G*(F + 0.25*I)^-1");
	pspace_op_free(q);
	pspace_op_free(inv);
	pspace_op_free(p);
	pspace_op_free(s);
	pspace_op_free(i1);
	pspace_op_free(e);
}

static void test_op_write(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x);
	pspace_write_opts wo;
	pspace_mat *m;
	double *R = oref_expr_dense(x), *Dn = malloc((size_t)D * D * sizeof(double));
	uint64_t before;

	assert_non_null(Dn);
	oref_write_opts(&wo);
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_op_write(e, NULL, x->st.s, "E", &wo), 0);
	/* One mm per tile row: NT passes over F and G. */
	assert_true(pspace_store_tiles_read(x->st.s) - before <=
	            (uint64_t)OREF_NT * 2 * OREF_TILES);
	assert_int_equal(pspace_mat_open(&m, x->st.s, "E"), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_DENSE);
	assert_int_equal(pspace_mat_dim(m), D);
	assert_int_equal(pspace_mat_dense(m, NULL, Dn, D), 0);
	assert_true(fx_relerr(Dn, R, (size_t)D * D) < TOL);
	assert_int_equal(pspace_op_write(e, NULL, x->st.s, "E", &wo), PSPACE_EEXIST);
	/* F G is not symmetric: a symmetric Dense cannot hold it */
	pspace_op *fg;
	assert_int_equal(pspace_op_product(&fg, x->oF, x->oG), 0);
	assert_int_equal(pspace_op_write(fg, NULL, x->st.s, "FG", &wo), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "product"));
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, x->st.s, "FG"),
	                 PSPACE_ENOTFOUND);
	pspace_op_free(fg);
	pspace_mat_free(m);
	free(Dn);
	free(R);
	pspace_op_free(e);
}

static void test_op_edim(void **state)
{
	oref *x = *state;
	pspace_op *small, *r = (pspace_op *)1;
	pspace_solve_opts so;
	double v[D], y[D];

	assert_int_equal(pspace_op_identity(&small, 10, 1.0), 0);
	assert_int_equal(pspace_op_add(&r, x->oF, small), PSPACE_EDIM);
	assert_null(r);
	assert_int_equal(pspace_op_sub(&r, small, x->oF), PSPACE_EDIM);
	assert_int_equal(pspace_op_product(&r, x->oF, small), PSPACE_EDIM);
	assert_int_equal(pspace_op_mm(x->oF, NULL, 1, 1.0, v, D - 1, 0.0, y, D), PSPACE_EDIM);
	pspace_solve_opts_default(&so);
	so.precond = small;
	memset(v, 0, sizeof(v));
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.1, 1, v, D, &so, y, D), PSPACE_EDIM);
	assert_int_equal(pspace_op_inverse(&r, x->oF, 0.1, &so), PSPACE_EDIM);
	assert_int_equal(pspace_op_dim(small), 10);
	pspace_op_free(small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_op_describe, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_write, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_edim, oref_setup, oref_teardown),
	};

	return cmocka_run_group_tests(tests, oref_group_setup, oref_group_teardown);
}
