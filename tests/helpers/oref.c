/*
 * The stored F and G of the lazy operator tests (see oref.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "oref.h"

static double *RF, *RG;

int oref_group_setup(void **state)
{
	(void)state;
	RF = fref_gram(OREF_D, 50, 0.0, 11);
	RG = fref_gram(OREF_D, 900, 0.0, 22);
	return 0;
}

int oref_group_teardown(void **state)
{
	(void)state;
	free(RG);
	free(RF);
	RG = RF = NULL;
	return 0;
}

void oref_write_opts(pspace_write_opts *o)
{
	pspace_write_opts_default(o);
	o->tile = OREF_TILE;
}

int oref_setup(void **state)
{
	oref *x = calloc(1, sizeof(*x));
	pspace_write_opts wo;

	assert_non_null(x);
	assert_non_null(RF);
	x->RF = RF;
	x->RG = RG;
	fx_store_open(&x->st, "op");
	oref_write_opts(&wo);
	assert_int_equal(pspace_dense_write(x->st.s, "F", NULL, OREF_D, RF, OREF_D, &wo), 0);
	assert_int_equal(pspace_dense_write(x->st.s, "G", NULL, OREF_D, RG, OREF_D, &wo), 0);
	assert_int_equal(pspace_mat_open(&x->F, x->st.s, "F"), 0);
	assert_int_equal(pspace_mat_open(&x->G, x->st.s, "G"), 0);
	assert_int_equal(pspace_op_mat(&x->oF, x->F), 0);
	assert_int_equal(pspace_op_mat(&x->oG, x->G), 0);
	*state = x;
	return 0;
}

int oref_teardown(void **state)
{
	oref *x = *state;

	pspace_op_free(x->oG);
	pspace_op_free(x->oF);
	pspace_mat_free(x->G);
	pspace_mat_free(x->F);
	fx_store_close(&x->st);
	free(x);
	return 0;
}

pspace_op *oref_expr(const oref *x)
{
	pspace_op *a, *b, *c, *e, *i;

	assert_int_equal(pspace_op_scale(&a, 2.0, x->oF), 0);
	assert_int_equal(pspace_op_scale(&b, 0.5, x->oG), 0);
	assert_int_equal(pspace_op_sub(&c, a, b), 0);
	assert_int_equal(pspace_op_identity(&i, OREF_D, 1e-3), 0);
	assert_int_equal(pspace_op_add(&e, c, i), 0);
	pspace_op_free(i);
	pspace_op_free(c);
	pspace_op_free(b);
	pspace_op_free(a);
	return e;
}

double *oref_expr_dense(const oref *x)
{
	double *R = malloc((size_t)OREF_D * OREF_D * sizeof(*R));

	assert_non_null(R);
	for (size_t i = 0; i < (size_t)OREF_D * OREF_D; i++)
		R[i] = 2 * x->RF[i] - 0.5 * x->RG[i];
	for (size_t i = 0; i < OREF_D; i++)
		R[i * OREF_D + i] += 1e-3;
	return R;
}
