/*
 * Tests of the representations (src/mat) put together: products of Dense
 * and BlockDiag matrices, matrices written tile by tile from a kernel,
 * saving, Implicit, and the error paths.
 *
 * Every expected value comes from a float64 dense computation here or in
 * tests/helpers/fref.c, never from the code under test.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/store.h"

static int kernel_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                       double *tile)
{
	(void)ud;
	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++) {
			double di = (double)(r0 + i), dj = (double)(c0 + j);

			tile[i * cols + j] = exp(-fabs(di - dj) / 7.0);
		}
	return 0;
}

/* ud is the uint64_t[3] {calls, last done, last total}. */
static void count_progress(void *ud, uint64_t done, uint64_t total)
{
	uint64_t *p = ud;

	p[0]++;
	p[1] = done;
	p[2] = total;
}

static void test_mat_tiled_write(void **state)
{
	const size_t d = 200;
	fx_store t;
	pspace_layout *l = NULL;
	pspace_write_opts o;
	pspace_mat *m = NULL;
	uint64_t u[3] = {0, 0, 0};
	double *F = malloc(d * d * sizeof(double)), *D = malloc(d * d * sizeof(double));

	(void)state;
	assert_non_null(F);
	assert_non_null(D);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < d; j++)
			F[i * d + j] = exp(-fabs((double)i - (double)j) / 7.0);
	fx_store_open(&t, "mat");
	assert_int_equal(pspace_layout_flat(&l, d), 0);
	pspace_write_opts_default(&o);
	o.tile = 48;
	o.codec.dtype = PSPACE_F64;
	assert_int_equal(
	    pspace_tiled_write(t.s, "K", PSPACE_KIND_DENSE, l, kernel_tile, u, &o, count_progress),
	    0);
	/* ceil(200/48) = 5 tile rows: 15 upper-triangle tiles */
	assert_int_equal(u[0], 15);
	assert_int_equal(u[1], 15);
	assert_int_equal(u[2], 15);
	assert_int_equal(pspace_mat_open(&m, t.s, "K"), 0);
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	assert_true(fx_relerr(D, F, d * d) < 1e-15);
	pspace_mat_free(m);
	pspace_layout_free(l);
	fx_store_close(&t);
	free(D);
	free(F);
}

static void test_mat_product_dense(void **state)
{
	const size_t d = 257;
	fx_store t;
	pspace_write_opts o;
	pspace_mat *a = NULL, *b = NULL, *c = NULL;
	/* a budget that holds bands of 128 rows: three bands */
	pspace_exec ex = {2, 4 * 257 * 8 * 128};
	double *A = fref_gram(d, 20, 0.1, 21), *B = fref_gram(d, 30, 0.0, 22);
	double *C = calloc(d * d, sizeof(double)), *D = malloc(d * d * sizeof(double));
	double *x = fx_randv(d, 8), *y = malloc(d * sizeof(double)),
	       *yr = malloc(d * sizeof(double));

	(void)state;
	assert_non_null(C);
	assert_non_null(D);
	assert_non_null(y);
	assert_non_null(yr);
	for (size_t i = 0; i < d; i++)
		for (size_t l = 0; l < d; l++)
			for (size_t j = 0; j < d; j++)
				C[i * d + j] += A[i * d + l] * B[l * d + j];
	fx_store_open(&t, "mat");
	pspace_write_opts_default(&o);
	o.tile = 64;
	assert_int_equal(pspace_dense_write(t.s, "A", NULL, d, A, d, &o), 0);
	assert_int_equal(pspace_dense_write(t.s, "B", NULL, d, B, d, &o), 0);
	assert_int_equal(pspace_mat_open(&a, t.s, "A"), 0);
	assert_int_equal(pspace_mat_open(&b, t.s, "B"), 0);
	assert_int_equal(pspace_mat_product_write(t.s, "AB", a, b, &ex, NULL), 0);
	assert_int_equal(pspace_mat_open(&c, t.s, "AB"), 0);
	assert_int_equal(pspace_mat_kind(c), PSPACE_KIND_DENSE);
	assert_int_equal(pspace_mat_dense(c, &ex, D, d), 0);
	assert_true(fx_relerr(D, C, d * d) < 1e-3);
	/* the product is not symmetric: mv must use all its tiles */
	assert_int_equal(pspace_mat_mv(c, &ex, x, y), 0);
	fref_mm(C, d, 1, x, yr);
	assert_true(fx_relerr(y, yr, d) < 1e-3);
	/*
	 * A and B in f64 tiles of 16 (about 280 KiB each), bands of 16 rows
	 * (two of them, A's and the product's, in half of a 132 KiB budget):
	 * 17 bands, each a pass over A and one over B, both stored beyond the
	 * budget, so that the passes over each go forwards and backwards by turns
	 */
	{
		pspace_exec small = {2, 4 * 257 * 8 * 16};
		pspace_write_opts o64 = o;
		pspace_mat *a2 = NULL, *b2 = NULL, *c2 = NULL;

		o64.tile = 16;
		o64.codec.dtype = PSPACE_F64;
		assert_int_equal(pspace_dense_write(t.s, "A16", NULL, d, A, d, &o64), 0);
		assert_int_equal(pspace_dense_write(t.s, "B16", NULL, d, B, d, &o64), 0);
		assert_int_equal(pspace_mat_open(&a2, t.s, "A16"), 0);
		assert_int_equal(pspace_mat_open(&b2, t.s, "B16"), 0);
		assert_int_equal(pspace_mat_product_write(t.s, "AB16", a2, b2, &small, &o64), 0);
		assert_int_equal(pspace_mat_open(&c2, t.s, "AB16"), 0);
		assert_int_equal(pspace_mat_dense(c2, &ex, D, d), 0);
		assert_true(fx_relerr(D, C, d * d) < 1e-12);
		pspace_mat_free(c2);
		pspace_mat_free(b2);
		pspace_mat_free(a2);
	}
	/* a budget below one band: ENOMEM */
	{
		pspace_exec tiny = {1, 1024};

		assert_int_equal(pspace_mat_product_write(t.s, "AB2", a, b, &tiny, NULL),
		                 PSPACE_ENOMEM);
	}
	pspace_mat_free(c);
	pspace_mat_free(b);
	pspace_mat_free(a);
	fx_store_close(&t);
	free(yr);
	free(y);
	free(x);
	free(D);
	free(C);
	free(B);
	free(A);
}

static const char *bd_layout_text = "# a small network\n"
                                    "fc    linear  20x15    bias\n"
                                    "conv  conv2d  4x3x3x3  bias\n"
                                    "bn    norm    7        bias\n"
                                    "head  linear  3x5      nobias\n";

static void test_mat_product_blockdiag(void **state)
{
	fx_store t;
	pspace_write_opts o;
	pspace_layout *l = NULL;
	pspace_mat *a = NULL, *b = NULL, *c = NULL;
	double *ba[4], *bb[4], *C, *D;
	size_t d, nl;

	(void)state;
	assert_int_equal(pspace_layout_parse(&l, bd_layout_text, "test"), 0);
	d = pspace_layout_dim(l);
	nl = pspace_layout_nlayers(l);
	C = calloc(d * d, sizeof(double));
	D = malloc(d * d * sizeof(double));
	assert_non_null(C);
	assert_non_null(D);
	for (size_t i = 0; i < nl; i++) {
		const pspace_layer *ly = pspace_layout_layer(l, i);
		size_t n = ly->size, off = ly->offset;

		ba[i] = fref_gram(n, 10, 0.0, 70 + i);
		bb[i] = fref_gram(n, 10, 0.3, 80 + i);
		for (size_t r = 0; r < n; r++)
			for (size_t q = 0; q < n; q++)
				for (size_t cc = 0; cc < n; cc++)
					C[(off + r) * d + off + cc] +=
					    ba[i][r * n + q] * bb[i][q * n + cc];
	}
	fx_store_open(&t, "mat");
	pspace_write_opts_default(&o);
	o.tile = 64;
	o.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_blockdiag_write(t.s, "A", l, (const double *const *)ba, &o), 0);
	assert_int_equal(pspace_blockdiag_write(t.s, "B", l, (const double *const *)bb, &o), 0);
	assert_int_equal(pspace_mat_open(&a, t.s, "A"), 0);
	assert_int_equal(pspace_mat_open(&b, t.s, "B"), 0);
	assert_int_equal(pspace_mat_product_write(t.s, "AB", a, b, NULL, &o), 0);
	assert_int_equal(pspace_mat_open(&c, t.s, "AB"), 0);
	assert_int_equal(pspace_mat_kind(c), PSPACE_KIND_BLOCKDIAG);
	assert_int_equal(pspace_mat_dense(c, NULL, D, d), 0);
	assert_true(fx_relerr(D, C, d * d) < 1e-12);
	pspace_mat_free(c);
	pspace_mat_free(b);
	pspace_mat_free(a);
	fx_store_close(&t);
	for (size_t i = 0; i < nl; i++) {
		free(ba[i]);
		free(bb[i]);
	}
	free(D);
	free(C);
	pspace_layout_free(l);
}

static int imp_mv_unused(void *ud, const double *x, double *y)
{
	(void)ud;
	(void)x;
	(void)y;
	return -1;
}

/* Identity persists and reopens; what cannot be saved says so. */
static void test_mat_save(void **state)
{
	fx_store t;
	pspace_layout *l = NULL;
	pspace_mat *m = NULL, *r = NULL, *f = NULL;
	pspace_matrix_info info;
	double v, F[4] = {2, 1, 1, 2};

	(void)state;
	fx_store_open(&t, "mat");
	assert_int_equal(pspace_identity_create(&m, 7, -1.5), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "I"), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "I"), PSPACE_EEXIST);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "I"), 0);
	assert_int_equal(info.kind, PSPACE_KIND_IDENTITY);
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&r, t.s, "I"), 0);
	assert_int_equal(pspace_mat_kind(r), PSPACE_KIND_IDENTITY);
	assert_int_equal(pspace_mat_dim(r), 7);
	assert_string_equal(pspace_mat_name(r), "I");
	assert_int_equal(pspace_mat_trace(r, NULL, &v), 0);
	assert_true(v == -1.5 * 7);
	assert_int_equal(pspace_layout_flat(&l, 7), 0);
	assert_true(pspace_layout_equal(pspace_mat_layout(r), l));
	/* a stored matrix is already saved; an implicit one cannot be */
	assert_int_equal(pspace_dense_write(t.s, "F", NULL, 2, F, 2, NULL), 0);
	assert_int_equal(pspace_mat_open(&f, t.s, "F"), 0);
	assert_int_equal(pspace_mat_save(f, t.s, "F2"), PSPACE_ENOTSUP);
	pspace_mat_free(f);
	pspace_mat_free(r);
	pspace_mat_free(m);
	assert_int_equal(pspace_implicit_create(&m, 7, imp_mv_unused, NULL, NULL), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "J"), PSPACE_ENOTSUP);
	pspace_mat_free(m);
	pspace_layout_free(l);
	fx_store_close(&t);
}

typedef struct implicit_ud {
	const double *F;
	size_t d;
	int mv_calls, vtmv_calls;
	int fail;
} implicit_ud;

static int imp_mv(void *ud, const double *x, double *y)
{
	implicit_ud *u = ud;

	u->mv_calls++;
	if (u->fail)
		return -1;
	fref_mm(u->F, u->d, 1, x, y);
	return 0;
}

static int imp_vtmv(void *ud, const double *x, double *out)
{
	implicit_ud *u = ud;
	double *y = malloc(u->d * sizeof(double));

	u->vtmv_calls++;
	fref_mm(u->F, u->d, 1, x, y);
	*out = 0;
	for (size_t i = 0; i < u->d; i++)
		*out += x[i] * y[i];
	free(y);
	return 0;
}

static void test_mat_implicit(void **state)
{
	const size_t d = 60;
	double *F = fref_gram(d, 10, 0.0, 31), *X = fx_randv(3 * d, 32),
	       *R = malloc(3 * d * sizeof(double));
	double *Y = calloc(3 * d, sizeof(double)), *D = malloc(d * d * sizeof(double)), out[3], v;
	implicit_ud u = {F, d, 0, 0, 0};
	pspace_mat *m = NULL, *m2 = NULL;

	(void)state;
	assert_non_null(R);
	assert_non_null(Y);
	assert_non_null(D);
	assert_int_equal(pspace_implicit_create(&m, d, imp_mv, NULL, &u), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_IMPLICIT);
	fref_mm(F, d, 3, X, R);
	assert_int_equal(pspace_mat_mm(m, NULL, 3, 1.0, X, d, 0.0, Y, d), 0);
	assert_true(fx_relerr(Y, R, 3 * d) < 1e-14);
	assert_int_equal(u.mv_calls, 3);
	/* vTMv from mv, dense from mv on unit vectors */
	assert_int_equal(pspace_mat_vtmv_batch(m, NULL, 3, X, d, out), 0);
	for (size_t j = 0; j < 3; j++) {
		v = 0;
		for (size_t i = 0; i < d; i++)
			v += X[j * d + i] * R[j * d + i];
		assert_true(fx_relerr1(out[j], v) < 1e-14);
	}
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	assert_true(fx_relerr(D, F, d * d) < 1e-14);
	/* what an implicit matrix cannot do */
	assert_int_equal(pspace_mat_trace(m, NULL, &v), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_diag(m, NULL, Y), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_frobenius(m, NULL, &v), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_solve(m, NULL, 0.1, 1, X, d, Y, d), PSPACE_ENOTSUP);
	/* a failing callback is reported, not ignored */
	u.fail = 1;
	assert_int_not_equal(pspace_mat_mv(m, NULL, X, Y), 0);
	u.fail = 0;

	/* with a vTMv callback, vTMv uses it */
	assert_int_equal(pspace_implicit_create(&m2, d, imp_mv, imp_vtmv, &u), 0);
	assert_int_equal(pspace_mat_vtmv(m2, NULL, X, &v), 0);
	assert_int_equal(u.vtmv_calls, 1);
	assert_true(fx_relerr1(v, out[0]) < 1e-13);
	pspace_mat_free(m2);
	pspace_mat_free(m);
	free(D);
	free(Y);
	free(R);
	free(X);
	free(F);
}

static void test_mat_errors(void **state)
{
	const size_t d = 70;
	fx_store t;
	pspace_mat *m = NULL, *a = NULL, *b = NULL, *id = NULL;
	pspace_layout *l = NULL;
	pspace_writer *w = NULL;
	pspace_matrix_desc desc;
	double *F = fref_gram(d, 5, 0.0, 1), *G = fref_gram(d + 1, 5, 0.0, 2),
	       *x = fx_randv(d + 1, 3);
	double y[71];

	(void)state;
	fx_store_open(&t, "mat");
	/* a missing name */
	assert_int_equal(pspace_mat_open(&m, t.s, "nosuch"), PSPACE_ENOTFOUND);
	assert_null(m);
	assert_non_null(strstr(pspace_errdetail(), "nosuch"));

	/* an incomplete matrix */
	memset(&desc, 0, sizeof(desc));
	desc.kind = PSPACE_KIND_DENSE;
	desc.d = d;
	desc.nblocks = 1;
	desc.tile = 32;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	assert_int_equal(pspace_writer_begin(&w, t.s, "half", &desc), 0);
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F64, F, d), 0);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	pspace_writer_abort(w, 0);
	assert_int_equal(pspace_mat_open(&m, t.s, "half"), PSPACE_EINCOMPLETE);
	assert_non_null(strstr(pspace_errdetail(), "half"));

	/* dimension mismatches */
	assert_int_equal(pspace_layout_flat(&l, d + 1), 0);
	assert_int_equal(pspace_dense_write(t.s, "bad", l, d, F, d, NULL), PSPACE_EDIM);
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, t.s, "bad"),
	                 PSPACE_ENOTFOUND);
	assert_int_equal(pspace_dense_write(t.s, "F", NULL, d, F, d, NULL), 0);
	assert_int_equal(pspace_dense_write(t.s, "G", l, d + 1, G, d + 1, NULL), 0);
	assert_int_equal(pspace_dense_write(t.s, "F", NULL, d, F, d, NULL), PSPACE_EEXIST);
	assert_int_equal(pspace_mat_open(&a, t.s, "F"), 0);
	assert_int_equal(pspace_mat_open(&b, t.s, "G"), 0);
	assert_int_equal(pspace_mat_product_write(t.s, "FG", a, b, NULL, NULL), PSPACE_EDIM);
	assert_int_equal(pspace_identity_create(&id, d, 1.0), 0);
	assert_int_equal(pspace_mat_product_write(t.s, "FI", a, id, NULL, NULL), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_product_write(t.s, "II", id, id, NULL, NULL), PSPACE_ENOTSUP);
	/* leading dimensions below d */
	assert_int_equal(pspace_mat_mm(a, NULL, 2, 1.0, x, d - 1, 0.0, y, d), PSPACE_EINVAL);
	assert_int_equal(pspace_mat_mm(a, NULL, 1, 1.0, NULL, d, 0.0, y, d), PSPACE_EINVAL);
	/* k = 0 is a no-op */
	assert_int_equal(pspace_mat_mm(a, NULL, 0, 1.0, NULL, 0, 0.0, NULL, 0), 0);

	pspace_mat_free(id);
	pspace_mat_free(b);
	pspace_mat_free(a);
	pspace_layout_free(l);
	fx_store_close(&t);
	free(x);
	free(G);
	free(F);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mat_tiled_write),       cmocka_unit_test(test_mat_product_dense),
	    cmocka_unit_test(test_mat_product_blockdiag), cmocka_unit_test(test_mat_save),
	    cmocka_unit_test(test_mat_implicit),          cmocka_unit_test(test_mat_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
