/*
 * Bad values from sources made through the API (not .npy files): the
 * builders refuse non-finite and too large values naming the output,
 * example and parameter (Jacobian rows) or the layer and tensor (layer
 * tensors), for every kind, and a dense build that fails on its input
 * leaves nothing while one failing on I/O stays resumable. The expression
 * limits of the operator layer (depth, expanded terms, finite scalars) and
 * a balanced sum of 60000 terms checked against its closed form.
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
#include "lref.h"
#include "pspace.h"

static void test_build_badinput_jacobian(void **state)
{
	static const pspace_kind kinds[] = {PSPACE_KIND_DENSE, PSPACE_KIND_BLOCKDIAG,
	                                    PSPACE_KIND_DIAG, PSPACE_KIND_QUASIDIAG,
	                                    PSPACE_KIND_LOWRANK};
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	pspace_matrix_info info;

	(void)state;
	fx_store_open(&t, "badinput");
	lref_jsrc_init(&j, &src, 12, 2, LREF_JD, 3);
	/* output 1, example 7, parameter 9 */
	j.J[(1 * 12 + 7) * LREF_JD + 9] = NAN;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		lref_opts_f64(&o, kinds[i]);
		o.batch = 5;
		fx_expect_err(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_ENUMERIC, NULL,
		              "output 1, example 7, parameter 9 is nan");
		assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), PSPACE_ENOTFOUND);
	}
	j.J[(1 * 12 + 7) * LREF_JD + 9] = -1e300;
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	fx_expect_err(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_ENUMERIC, NULL,
	              "is -1e+300, beyond 2^511");
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), PSPACE_ENOTFOUND);
	/* an I/O failure, out of core: kept for resume, and the message says so */
	j.J[(1 * 12 + 7) * LREF_JD + 9] = 0.5;
	o.batch = 5;
	o.exec.mem_budget = 512 + 2 * LREF_JD * 8 + 2 * 8 * 8 * LREF_JD;
	j.passes = 0;
	j.fail_at = 2;
	fx_expect_err(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EIO, NULL,
	              "left incomplete: resume");
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_badinput_layers(void **state)
{
	static const char text[] = "fc1 linear 3x4 bias\nfc2 linear 2x3 nobias\n";
	static const pspace_kind kinds[] = {PSPACE_KIND_KFAC, PSPACE_KIND_BLOCKDIAG,
	                                    PSPACE_KIND_DIAG};
	const uint64_t T[2] = {1, 2};
	pspace_layout *l = lref_parse(text);
	pspace_layer_source src;
	pspace_build_opts o;
	lref_src ls;
	fx_store t;

	(void)state;
	fx_store_open(&t, "badinput");
	lref_src_init(&ls, &src, l, 9, 2, T, 0, 5);
	ls.acts[1][4] = INFINITY; /* fc2: acts element 4 */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		lref_opts_f64(&o, kinds[i]);
		fx_expect_err(pspace_build_layers(t.s, "K", l, &src, &o), PSPACE_ENUMERIC, NULL,
		              "layer fc2: acts element 4 is inf");
	}
	lref_src_free(&ls);
	pspace_layout_free(l);
	fx_store_close(&t);
}

/* A balanced sum of leaves [i0, i1) of op @p x. */
static pspace_op *balanced(pspace_op *x, size_t i0, size_t i1)
{
	pspace_op *a, *b, *s = NULL;

	if (i1 - i0 == 1)
		return pspace_op_ref(x);
	a = balanced(x, i0, (i0 + i1) / 2);
	b = balanced(x, (i0 + i1) / 2, i1);
	assert_int_equal(pspace_op_add(&s, a, b), 0);
	pspace_op_free(a);
	pspace_op_free(b);
	return s;
}

static void test_build_badinput_op_limits(void **state)
{
	pspace_layout *l = lref_parse("a linear 2x2 bias\n");
	const double dg[6] = {1, 2, 3, 4, 5, 6};
	pspace_mat *m = NULL;
	pspace_op *x = NULL, *y = NULL, *s = NULL;
	double tr;
	int rc = 0, i;

	(void)state;
	assert_int_equal(pspace_diag_create(&m, l, dg), 0);
	assert_int_equal(pspace_op_mat(&x, m), 0);
	/* scalars must be finite */
	fx_expect_err(pspace_op_scale(&y, INFINITY, x), PSPACE_EINVAL, NULL, "not a finite");
	assert_null(y);
	fx_expect_err(pspace_op_identity(&y, 6, NAN), PSPACE_EINVAL, NULL, "not a finite");
	fx_expect_err(pspace_op_inverse(&y, x, NAN, NULL), PSPACE_EINVAL, NULL, "not a finite");
	/* a left-deep sum: refused past 4096 levels */
	s = pspace_op_ref(x);
	for (i = 0; i < 5000 && rc == 0; i++) {
		rc = pspace_op_add(&y, s, x);
		pspace_op_free(s);
		s = y;
	}
	fx_expect_err(rc, PSPACE_EINVAL, NULL, "nested deeper than 4096");
	assert_int_equal(i, 4096);
	pspace_op_free(s);
	/* a shared node doubled: refused past 65536 terms before it is expanded */
	s = pspace_op_ref(x);
	rc = 0;
	for (i = 0; i < 40 && rc == 0; i++) {
		rc = pspace_op_add(&y, s, s);
		pspace_op_free(s);
		s = y;
	}
	fx_expect_err(rc, PSPACE_EINVAL, NULL, "more than 65536 terms");
	assert_int_equal(i, 17);
	pspace_op_free(s);
	/* a balanced sum of 60000 terms works: trace 60000 * 21 */
	s = balanced(x, 0, 60000);
	assert_int_equal(pspace_op_trace(s, NULL, NULL, &tr), 0);
	assert_true(fx_relerr1(tr, 60000.0 * 21.0) < 1e-12);
	/* a non-finite result is an error, not a number */
	assert_int_equal(pspace_op_scale(&y, 1e300, s), 0);
	pspace_op_free(s);
	assert_int_equal(pspace_op_scale(&s, 1e300, y), 0);
	fx_expect_err(pspace_op_trace(s, NULL, NULL, &tr), PSPACE_ENUMERIC, NULL,
	              "trace inf is not finite");
	pspace_op_free(s);
	pspace_op_free(y);
	pspace_op_free(x);
	pspace_mat_free(m);
	pspace_layout_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_badinput_jacobian),
	    cmocka_unit_test(test_build_badinput_layers),
	    cmocka_unit_test(test_build_badinput_op_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
