/*
 * Tests of the representations (src/mat): Dense and BlockDiag stored in
 * f32 and f64 (mv, mm for k = 1, 3, 16, vTMv, batched vTMv, trace, diag,
 * Frobenius norm, dense, direct damped solve, reopening, layouts), solves
 * of special systems, and Identity. Products, tiled writes, saving,
 * Implicit and the error paths are in test_mat_compose.c.
 *
 * Every expected value comes from a float64 dense computation written in
 * this file or tests/helpers/fref.c (products, sums, a Cholesky and a
 * Gaussian elimination of its own), never from the code under test.
 * Matrices are F = J^T J / n from a seeded generator, so they are
 * symmetric positive semi-definite.
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

/* The values the store holds at precision @p t. */
static double *stored_copy(const double *F, size_t n, pspace_dtype t)
{
	double *R = malloc(n * sizeof(*R));

	assert_non_null(R);
	for (size_t i = 0; i < n; i++)
		R[i] = t == PSPACE_F32 ? (double)(float)F[i] : F[i];
	return R;
}

/* X = (A)^{-1} B by Cholesky, k right-hand sides; A SPD (d x d), copied. */
static void ref_cholesky_solve(const double *A0, size_t d, size_t k, const double *B, double *X)
{
	double *L = malloc(d * d * sizeof(*L));

	assert_non_null(L);
	memcpy(L, A0, d * d * sizeof(*L));
	for (size_t j = 0; j < d; j++) {
		double s = L[j * d + j];

		for (size_t l = 0; l < j; l++)
			s -= L[j * d + l] * L[j * d + l];
		assert_true(s > 0);
		L[j * d + j] = sqrt(s);
		for (size_t i = j + 1; i < d; i++) {
			double t = L[i * d + j];

			for (size_t l = 0; l < j; l++)
				t -= L[i * d + l] * L[j * d + l];
			L[i * d + j] = t / L[j * d + j];
		}
	}
	for (size_t c = 0; c < k; c++) {
		double *x = X + c * d;

		for (size_t i = 0; i < d; i++) {
			double t = B[c * d + i];

			for (size_t l = 0; l < i; l++)
				t -= L[i * d + l] * x[l];
			x[i] = t / L[i * d + i];
		}
		for (size_t i = d; i-- > 0;) {
			double t = x[i];

			for (size_t l = i + 1; l < d; l++)
				t -= L[l * d + i] * x[l];
			x[i] = t / L[i * d + i];
		}
	}
	free(L);
}

/* x = A^{-1} b by Gaussian elimination with partial pivoting (one rhs). */
static void ref_gauss_solve(const double *A0, size_t d, const double *b, double *x)
{
	double *A = malloc(d * (d + 1) * sizeof(*A));
	size_t w = d + 1;

	assert_non_null(A);
	for (size_t i = 0; i < d; i++) {
		memcpy(A + i * w, A0 + i * d, d * sizeof(*A));
		A[i * w + d] = b[i];
	}
	for (size_t c = 0; c < d; c++) {
		size_t p = c;

		for (size_t i = c + 1; i < d; i++)
			if (fabs(A[i * w + c]) > fabs(A[p * w + c]))
				p = i;
		assert_true(A[p * w + c] != 0);
		for (size_t j = 0; j < w && p != c; j++) {
			double t = A[c * w + j];

			A[c * w + j] = A[p * w + j];
			A[p * w + j] = t;
		}
		for (size_t i = c + 1; i < d; i++) {
			double f = A[i * w + c] / A[c * w + c];

			for (size_t j = c; j < w; j++)
				A[i * w + j] -= f * A[c * w + j];
		}
	}
	for (size_t i = d; i-- > 0;) {
		double t = A[i * w + d];

		for (size_t j = i + 1; j < d; j++)
			t -= A[i * w + j] * x[j];
		x[i] = t / A[i * w + i];
	}
	free(A);
}

/* ||A X - B|| / ||B|| over k right-hand sides. */
static double residual(const double *A, size_t d, size_t k, const double *X, const double *B)
{
	double *R = malloc(k * d * sizeof(*R));
	double r;

	assert_non_null(R);
	fref_mm(A, d, k, X, R);
	r = fx_relerr(R, B, k * d);
	free(R);
	return r;
}

static double *with_damping(const double *F, size_t d, double l)
{
	double *A = malloc(d * d * sizeof(*A));

	assert_non_null(A);
	memcpy(A, F, d * d * sizeof(*A));
	for (size_t i = 0; i < d; i++)
		A[i * d + i] += l;
	return A;
}

/*
 * Checks every operation of @p m against @p F (exact values; tolerance
 * @p tol) and the direct solve against @p Fs (the values as stored).
 */
static void check_ops(pspace_mat *m, const double *F, const double *Fs, size_t d, double tol)
{
	pspace_exec ex = {2, 0}, ex1 = {1, 0};
	static const uint32_t ks[] = {1, 3, 16};
	double *X = fx_randv(16 * d, 77), *Y = malloc(16 * d * sizeof(double));
	double *R = malloc(16 * d * sizeof(double)), *D = malloc(d * d * sizeof(double));
	double *y1 = malloc(d * sizeof(double)), v, w, out[16];

	assert_non_null(Y);
	assert_non_null(R);
	assert_non_null(D);
	assert_non_null(y1);
	assert_int_equal(pspace_mat_dim(m), d);

	/* mv, and mm for k = 1, 3, 16 with alpha and accumulation into Y */
	assert_int_equal(pspace_mat_mv(m, &ex, X, Y), 0);
	fref_mm(F, d, 1, X, R);
	assert_true(fx_relerr(Y, R, d) < tol);
	assert_int_equal(pspace_mat_mv(m, &ex1, X, y1), 0);
	assert_true(fx_relerr(y1, R, d) < tol);
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		uint32_t k = ks[i];

		for (size_t j = 0; j < k * d; j++)
			Y[j] = 1.0;
		assert_int_equal(pspace_mat_mm(m, &ex, k, -0.5, X, d, 1.0, Y, d), 0);
		fref_mm(F, d, k, X, R);
		for (size_t j = 0; j < k * d; j++)
			R[j] = 1.0 - 0.5 * R[j];
		assert_true(fx_relerr(Y, R, k * d) < tol);
	}
	fref_check_gemm(m, F, d, tol);

	/* vTMv and batched vTMv */
	fref_mm(F, d, 16, X, R);
	assert_int_equal(pspace_mat_vtmv(m, &ex, X, &v), 0);
	w = 0;
	for (size_t i = 0; i < d; i++)
		w += X[i] * R[i];
	assert_true(fx_relerr1(v, w) < tol);
	assert_int_equal(pspace_mat_vtmv_batch(m, &ex, 16, X, d, out), 0);
	for (size_t j = 0; j < 16; j++) {
		w = 0;
		for (size_t i = 0; i < d; i++)
			w += X[j * d + i] * R[j * d + i];
		assert_true(fx_relerr1(out[j], w) < tol);
	}

	/* trace, diag, Frobenius, dense */
	w = 0;
	for (size_t i = 0; i < d; i++) {
		w += F[i * d + i];
		R[i] = F[i * d + i];
	}
	assert_int_equal(pspace_mat_trace(m, &ex, &v), 0);
	assert_true(fx_relerr1(v, w) < tol);
	assert_int_equal(pspace_mat_diag(m, &ex, Y), 0);
	assert_true(fx_relerr(Y, R, d) < tol);
	w = 0;
	for (size_t i = 0; i < d * d; i++)
		w += F[i] * F[i];
	assert_int_equal(pspace_mat_frobenius(m, &ex, &v), 0);
	assert_true(fx_relerr1(v, sqrt(w)) < tol);
	assert_int_equal(pspace_mat_dense(m, &ex, D, d), 0);
	assert_true(fx_relerr(D, F, d * d) < tol);

	/* direct damped solve, k = 1, 3, 16: against a Cholesky of the values as
	 * stored, and by the residual */
	if (Fs) {
		double *A = with_damping(Fs, d, 0.1);

		ref_cholesky_solve(A, d, 16, X, R);
		for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
			uint32_t k = ks[i];

			assert_int_equal(pspace_mat_solve(m, &ex, 0.1, k, X, d, Y, d), 0);
			assert_true(fx_relerr(Y, R, k * d) < 1e-8);
			assert_true(residual(A, d, k, Y, X) < 1e-9);
		}
		free(A);
	}
	free(y1);
	free(D);
	free(R);
	free(Y);
	free(X);
}

static void dense_case(size_t d, uint32_t tile, pspace_dtype dt)
{
	fx_store t;
	pspace_write_opts o;
	pspace_mat *m = NULL, *m2 = NULL;
	pspace_exec ex1 = {1, 0};
	double *F = fref_gram(d, 40, 0.0, 1000 + d), *Fs = stored_copy(F, d * d, dt);
	double tol = dt == PSPACE_F32 ? 1e-3 : 1e-10;
	double *x = fx_randv(d, 5), *y1 = malloc(d * sizeof(double)),
	       *y2 = malloc(d * sizeof(double));

	assert_non_null(y1);
	assert_non_null(y2);
	fx_store_open(&t, "mat");
	pspace_write_opts_default(&o);
	o.tile = tile;
	o.codec.dtype = dt;
	assert_int_equal(pspace_dense_write(t.s, "F", NULL, d, F, d, &o), 0);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_DENSE);
	assert_string_equal(pspace_mat_name(m), "F");
	assert_int_equal(pspace_layout_dim(pspace_mat_layout(m)), d);
	assert_int_equal(pspace_layout_nlayers(pspace_mat_layout(m)), 1);
	check_ops(m, F, Fs, d, tol);

	/* reopened from a reopened store: the same results */
	assert_int_equal(pspace_mat_mv(m, &ex1, x, y1), 0);
	pspace_mat_free(m);
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&m2, t.s, "F"), 0);
	assert_int_equal(pspace_mat_mv(m2, &ex1, x, y2), 0);
	assert_true(fx_relerr(y2, y1, d) < 1e-14);
	pspace_mat_free(m2);

	fx_store_close(&t);
	free(y2);
	free(y1);
	free(x);
	free(Fs);
	free(F);
}

static void test_mat_dense_f32(void **state)
{
	(void)state;
	dense_case(1000, 128, PSPACE_F32);
	dense_case(257, 64, PSPACE_F32);
}

static void test_mat_dense_f64(void **state)
{
	(void)state;
	dense_case(1000, 128, PSPACE_F64);
	dense_case(257, 64, PSPACE_F64);
}

/* Results do not depend on the tile edge or the thread count. */
static void test_mat_dense_tiling(void **state)
{
	const size_t d = 300;
	static const uint32_t tiles[] = {32, 64, 300, 512};
	double *F = fref_gram(d, 30, 0.0, 9), *X = fx_randv(3 * d, 10),
	       *Y = malloc(3 * d * sizeof(double));
	double *R = malloc(3 * d * sizeof(double));
	fx_store t;

	(void)state;
	assert_non_null(Y);
	assert_non_null(R);
	fref_mm(F, d, 3, X, R);
	fx_store_open(&t, "mat");
	for (size_t i = 0; i < sizeof(tiles) / sizeof(tiles[0]); i++) {
		pspace_write_opts o;
		pspace_mat *m;
		char name[32];

		pspace_write_opts_default(&o);
		o.tile = tiles[i];
		snprintf(name, sizeof(name), "F%u", tiles[i]);
		assert_int_equal(pspace_dense_write(t.s, name, NULL, d, F, d, &o), 0);
		assert_int_equal(pspace_mat_open(&m, t.s, name), 0);
		for (int threads = 1; threads <= 3; threads++) {
			pspace_exec ex = {threads, 0};

			memset(Y, 0, 3 * d * sizeof(double));
			assert_int_equal(pspace_mat_mm(m, &ex, 3, 1.0, X, d, 0.0, Y, d), 0);
			assert_true(fx_relerr(Y, R, 3 * d) < 1e-5);
		}
		pspace_mat_free(m);
	}
	fx_store_close(&t);
	free(R);
	free(Y);
	free(X);
	free(F);
}

static const char *bd_layout_text = "# a small network\n"
                                    "fc    linear  20x15    bias\n"
                                    "conv  conv2d  4x3x3x3  bias\n"
                                    "bn    norm    7        bias\n"
                                    "head  linear  3x5      nobias\n";

static void blockdiag_case(pspace_dtype dt)
{
	fx_store t;
	pspace_write_opts o;
	pspace_layout *l = NULL;
	pspace_mat *m = NULL;
	double *blocks[4], *F, *Fs, tol = dt == PSPACE_F32 ? 1e-3 : 1e-10;
	size_t d, nl;
	char *t1, *t2;

	assert_int_equal(pspace_layout_parse(&l, bd_layout_text, "test"), 0);
	d = pspace_layout_dim(l);
	nl = pspace_layout_nlayers(l);
	assert_int_equal(d, 320 + 112 + 14 + 15);
	assert_int_equal(nl, 4);
	F = calloc(d * d, sizeof(*F));
	assert_non_null(F);
	for (size_t i = 0; i < nl; i++) {
		const pspace_layer *ly = pspace_layout_layer(l, i);
		size_t n = ly->size;

		blocks[i] = fref_gram(n, 12, 0.0, 50 + i);
		for (size_t r = 0; r < n; r++)
			for (size_t c = 0; c < n; c++)
				F[(ly->offset + r) * d + ly->offset + c] = blocks[i][r * n + c];
	}
	Fs = stored_copy(F, d * d, dt);

	fx_store_open(&t, "mat");
	pspace_write_opts_default(&o);
	o.tile = 64;
	o.codec.dtype = dt;
	assert_int_equal(pspace_blockdiag_write(t.s, "B", l, (const double *const *)blocks, &o), 0);
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&m, t.s, "B"), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_BLOCKDIAG);
	/* layout round trip through the store */
	assert_true(pspace_layout_equal(pspace_mat_layout(m), l));
	assert_int_equal(pspace_layout_text(&t1, l), 0);
	assert_int_equal(pspace_layout_text(&t2, pspace_mat_layout(m)), 0);
	assert_string_equal(t1, t2);
	free(t2);
	free(t1);
	check_ops(m, F, Fs, d, tol);
	pspace_mat_free(m);
	fx_store_close(&t);
	for (size_t i = 0; i < nl; i++)
		free(blocks[i]);
	free(Fs);
	free(F);
	pspace_layout_free(l);
}

static void test_mat_blockdiag_f32(void **state)
{
	(void)state;
	blockdiag_case(PSPACE_F32);
}

static void test_mat_blockdiag_f64(void **state)
{
	(void)state;
	blockdiag_case(PSPACE_F64);
}

static void test_mat_solve_special(void **state)
{
	const size_t d = 257;
	fx_store t;
	pspace_write_opts o;
	pspace_mat *m = NULL, *z = NULL;
	pspace_exec ex = {2, 0}, small = {2, 200 * 1024};
	double *F = fref_gram(d, 40, 0.0, 3), *b = fx_randv(d, 4), *x = malloc(d * sizeof(double));
	double *xr = malloc(d * sizeof(double)), *A;

	(void)state;
	assert_non_null(x);
	assert_non_null(xr);
	fx_store_open(&t, "mat");
	pspace_write_opts_default(&o);
	o.tile = 64;
	o.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_dense_write(t.s, "F", NULL, d, F, d, &o), 0);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), 0);

	/* negative damping makes F - 0.05 I indefinite: the LDL^T path, checked
	 * against Gaussian elimination and by the residual */
	A = with_damping(F, d, -0.05);
	assert_int_equal(pspace_mat_solve(m, &ex, -0.05, 1, b, d, x, d), 0);
	ref_gauss_solve(A, d, b, xr);
	assert_true(fx_relerr(x, xr, d) < 1e-8);
	assert_true(residual(A, d, 1, x, b) < 1e-9);
	free(A);

	/* in place (X == B) */
	memcpy(x, b, d * sizeof(double));
	assert_int_equal(pspace_mat_solve(m, &ex, 0.5, 1, x, d, x, d), 0);
	A = with_damping(F, d, 0.5);
	assert_true(residual(A, d, 1, x, b) < 1e-9);
	free(A);

	/* a budget smaller than the block: ENOMEM naming CG */
	assert_int_equal(pspace_mat_solve(m, &small, 0.1, 1, b, d, x, d), PSPACE_ENOMEM);
	assert_non_null(strstr(pspace_errdetail(), "CG"));

	/* singular without damping: a zero row and column */
	for (size_t i = 0; i < d; i++)
		F[i * d + 5] = F[5 * d + i] = 0;
	assert_int_equal(pspace_dense_write(t.s, "Z", NULL, d, F, d, &o), 0);
	assert_int_equal(pspace_mat_open(&z, t.s, "Z"), 0);
	assert_int_equal(pspace_mat_solve(z, &ex, 0.0, 1, b, d, x, d), PSPACE_ENUMERIC);
	assert_non_null(strstr(pspace_errdetail(), "singular"));
	/* and with damping it is fine */
	assert_int_equal(pspace_mat_solve(z, &ex, 0.2, 1, b, d, x, d), 0);
	A = with_damping(F, d, 0.2);
	assert_true(residual(A, d, 1, x, b) < 1e-9);
	free(A);
	/* F itself (rank 40 < d) without damping: singular to working precision */
	assert_int_equal(pspace_mat_solve(m, &ex, 0.0, 1, b, d, x, d), PSPACE_ENUMERIC);

	pspace_mat_free(z);
	pspace_mat_free(m);
	fx_store_close(&t);
	free(xr);
	free(x);
	free(b);
	free(F);
}

static void test_mat_identity(void **state)
{
	const size_t d = 37;
	pspace_mat *m = NULL;
	double *F = calloc(d * d, sizeof(double)), *X = fx_randv(3 * d, 1);
	double *Y = calloc(3 * d, sizeof(double)), *D = malloc(d * d * sizeof(double)), v, out[3];

	(void)state;
	assert_non_null(F);
	assert_non_null(Y);
	assert_non_null(D);
	for (size_t i = 0; i < d; i++)
		F[i * d + i] = 2.5;
	assert_int_equal(pspace_identity_create(&m, d, 2.5), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_IDENTITY);
	assert_null(pspace_mat_name(m));
	check_ops(m, F, NULL, d, 1e-14);
	/* solve X = B / (2.5 + 0.5) */
	assert_int_equal(pspace_mat_solve(m, NULL, 0.5, 3, X, d, Y, d), 0);
	for (size_t i = 0; i < 3 * d; i++)
		assert_true(fabs(Y[i] - X[i] / 3.0) < 1e-15);
	assert_int_equal(pspace_mat_solve(m, NULL, -2.5, 3, X, d, Y, d), PSPACE_ENUMERIC);
	assert_int_equal(pspace_mat_vtmv_batch(m, NULL, 3, X, d, out), 0);
	assert_int_equal(pspace_mat_vtmv(m, NULL, X, &v), 0);
	assert_true(fx_relerr1(v, out[0]) < 1e-15);
	/* references */
	assert_ptr_equal(pspace_mat_ref(m), m);
	pspace_mat_free(m);
	assert_int_equal(pspace_mat_trace(m, NULL, &v), 0);
	assert_true(fx_relerr1(v, 2.5 * d) < 1e-15);
	pspace_mat_free(m);
	pspace_mat_free(NULL);
	free(D);
	free(Y);
	free(X);
	free(F);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mat_dense_f32),     cmocka_unit_test(test_mat_dense_f64),
	    cmocka_unit_test(test_mat_dense_tiling),  cmocka_unit_test(test_mat_blockdiag_f32),
	    cmocka_unit_test(test_mat_blockdiag_f64), cmocka_unit_test(test_mat_solve_special),
	    cmocka_unit_test(test_mat_identity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
