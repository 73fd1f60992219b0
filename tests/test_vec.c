/*
 * Tests of src/layout/vec.c: per-layer views, the compensated dot product
 * against long-double and exact references on ill-conditioned data, nrm2 at
 * the ends of the double range, the random generators' statistics and
 * determinism, and the plain BLAS-1 loops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "pspace.h"

static void test_vec_view_layer(void **state)
{
	/* a: 3x4 + 3 bias = 15 at 0; n: 5 + 5 at 15; e: 6x2 = 12 at 25; d = 37 */
	static const char text[] = "a linear 3x4 bias\nn norm 5 bias\ne embedding 6x2 nobias\n";
	pspace_layout *l = NULL;
	pspace_vec_view v;
	double x[37];

	(void)state;
	assert_int_equal(pspace_layout_parse(&l, text, "t"), 0);
	assert_int_equal(pspace_layout_dim(l), 37);
	for (int i = 0; i < 37; i++)
		x[i] = i;

	assert_int_equal(pspace_vec_view_layer(&v, l, 0, x), 0);
	assert_ptr_equal(v.weight, x);
	assert_int_equal(v.weight_size, 12);
	assert_ptr_equal(v.bias, x + 12);
	assert_int_equal(v.bias_size, 3);
	assert_true(v.weight[4 * 2 + 3] == 11.0); /* W[2][3], row-major */
	assert_true(v.bias[2] == 14.0);

	assert_int_equal(pspace_vec_view_layer(&v, l, 1, x), 0);
	assert_ptr_equal(v.weight, x + 15);
	assert_int_equal(v.weight_size, 5);
	assert_ptr_equal(v.bias, x + 20);
	assert_int_equal(v.bias_size, 5);

	assert_int_equal(pspace_vec_view_layer(&v, l, 2, x), 0);
	assert_ptr_equal(v.weight, x + 25);
	assert_int_equal(v.weight_size, 12);
	assert_null(v.bias);
	assert_int_equal(v.bias_size, 0);
	assert_true(v.weight[11] == 36.0);

	/* writes through a view land in the vector */
	assert_int_equal(pspace_vec_view_layer(&v, l, 1, x), 0);
	v.bias[0] = -1;
	assert_true(x[20] == -1.0);

	assert_int_equal(pspace_vec_view_layer(&v, l, 3, x), PSPACE_EINVAL);
	assert_int_equal(pspace_vec_view_layer(&v, NULL, 0, x), PSPACE_EINVAL);
	assert_int_equal(pspace_vec_view_layer(&v, l, 0, NULL), PSPACE_EINVAL);
	pspace_layout_free(l);
}

/* A small deterministic generator for test data, independent of vec.c. */
static uint64_t lcg_state;

static double lcg_uniform(void)
{
	lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(lcg_state >> 11) * 0x1p-53;
}

static double rel_err(double got, double ref)
{
	return fabs(got - ref) / fabs(ref);
}

static void test_vec_dot_exact_cases(void **state)
{
	double x[3], y[3];

	(void)state;
	/* sum with cancellation: exact answer 1, naive left-to-right gives 0 */
	x[0] = 1e16, x[1] = 1.0, x[2] = -1e16;
	y[0] = y[1] = y[2] = 1.0;
	assert_true(pspace_vec_dot(3, x, y) == 1.0);
	/* product rounding: (1 + 2^-30)(1 - 2^-30) - 1 = -2^-60 exactly */
	x[0] = 1 + 0x1p-30, x[1] = -1.0;
	y[0] = 1 - 0x1p-30, y[1] = 1.0;
	{
		long double ref = (long double)x[0] * y[0] + (long double)x[1] * y[1];

		assert_true(ref == -0x1p-60L); /* long double holds it exactly */
		assert_true(pspace_vec_dot(2, x, y) == -0x1p-60);
	}
	assert_true(pspace_vec_dot(0, x, y) == 0.0);
	/* non-finite entries still give the IEEE answer */
	x[0] = INFINITY, x[1] = 1, y[0] = 2, y[1] = 3;
	assert_true(isinf(pspace_vec_dot(2, x, y)) && pspace_vec_dot(2, x, y) > 0);
	x[0] = NAN;
	assert_true(isnan(pspace_vec_dot(2, x, y)));
}

/*
 * Ill-conditioned dot products: pairs (a, b) and (-a, b) whose products
 * cancel exactly, of magnitudes 1e-8 .. 1e8, shuffled among small "signal"
 * terms. The exact result is the sum of the signal products; the long-double
 * reference of those alone is accurate to ~1e-19.
 */
static void test_vec_dot_ill_conditioned(void **state)
{
	const size_t npair = 4000, nsig = 100, n = 2 * npair + nsig;
	double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double));
	double naive = 0, got;
	long double ref = 0;

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	for (int rep = 0; rep < 5; rep++) {
		lcg_state = 42 + (uint64_t)rep;
		for (size_t i = 0; i < npair; i++) {
			double a = (lcg_uniform() - 0.5) * pow(10.0, 16 * lcg_uniform() - 8);
			double b = (lcg_uniform() - 0.5) * pow(10.0, 4 * lcg_uniform() - 2);

			x[2 * i] = a, y[2 * i] = b;
			x[2 * i + 1] = -a, y[2 * i + 1] = b;
		}
		ref = 0;
		for (size_t i = 2 * npair; i < n; i++) {
			x[i] = lcg_uniform() * 1e-3 + 1e-3;
			y[i] = lcg_uniform() + 0.5;
			ref += (long double)x[i] * y[i];
		}
		/* shuffle (Fisher-Yates) so cancelling pairs are far apart */
		for (size_t i = n - 1; i > 0; i--) {
			size_t j = (size_t)(lcg_uniform() * (double)(i + 1));
			double t;

			t = x[i], x[i] = x[j], x[j] = t;
			t = y[i], y[i] = y[j], y[j] = t;
		}
		naive = 0;
		for (size_t i = 0; i < n; i++)
			naive += x[i] * y[i];
		got = pspace_vec_dot(n, x, y);
		/* the data really is ill-conditioned: plain summation fails */
		assert_true(rel_err(naive, (double)ref) > 1e-6);
		if (rel_err(got, (double)ref) > 1e-13)
			fail_msg("dot %.17g, reference %.17Lg (naive %.17g)", got, ref, naive);
	}
	free(y);
	free(x);
}

/* Well-conditioned random data: within a few ulps of the long-double sum. */
static void test_vec_dot_random(void **state)
{
	const size_t n = 100003;
	double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double));
	long double ref = 0;

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	lcg_state = 7;
	for (size_t i = 0; i < n; i++) {
		x[i] = lcg_uniform();
		y[i] = lcg_uniform() - 0.25;
		ref += (long double)x[i] * y[i];
	}
	assert_true(rel_err(pspace_vec_dot(n, x, y), (double)ref) < 1e-15);
	/* tails shorter than the lane count */
	for (size_t m = 1; m < 9; m++) {
		long double r = 0;

		for (size_t i = 0; i < m; i++)
			r += (long double)x[i] * y[i];
		assert_true(rel_err(pspace_vec_dot(m, x, y), (double)r) < 1e-15);
	}
	free(y);
	free(x);
}

static void test_vec_nrm2_range(void **state)
{
	double x[1001];

	(void)state;
	x[0] = 3e300, x[1] = 4e300;
	assert_true(rel_err(pspace_vec_nrm2(2, x), 5e300) < 1e-15);
	x[0] = 3e-300, x[1] = -4e-300;
	assert_true(rel_err(pspace_vec_nrm2(2, x), 5e-300) < 1e-15);
	/* subnormal entries: 3e-310 and 4e-310 are only stored to ~1e-14 */
	x[0] = 3e-310, x[1] = 4e-310;
	assert_true(rel_err(pspace_vec_nrm2(2, x), 5e-310) < 1e-12);
	/* a thousand huge and a thousand tiny entries: sqrt(1000) * v */
	for (int i = 0; i < 1000; i++)
		x[i] = (i % 2 ? -1 : 1) * 1e300;
	assert_true(rel_err(pspace_vec_nrm2(1000, x), sqrt(1000.0) * 1e300) < 1e-14);
	for (int i = 0; i < 1000; i++)
		x[i] = 1e-300;
	assert_true(rel_err(pspace_vec_nrm2(1000, x), sqrt(1000.0) * 1e-300) < 1e-14);
	/* mixed: the tiny ones do not matter next to the huge one */
	x[1000] = 1e300;
	assert_true(rel_err(pspace_vec_nrm2(1001, x), 1e300) < 1e-15);
	/* a norm beyond DBL_MAX overflows to inf, as it must */
	x[0] = x[1] = 1.5e308;
	assert_true(isinf(pspace_vec_nrm2(2, x)));
	/* ordinary values against long double */
	{
		long double s = 0;

		lcg_state = 3;
		for (int i = 0; i < 1001; i++) {
			x[i] = lcg_uniform() - 0.5;
			s += (long double)x[i] * x[i];
		}
		assert_true(rel_err(pspace_vec_nrm2(1001, x), (double)sqrtl(s)) < 1e-14);
	}
	assert_true(pspace_vec_nrm2(0, x) == 0.0);
	x[0] = x[1] = 0;
	assert_true(pspace_vec_nrm2(2, x) == 0.0);
	x[1] = INFINITY;
	assert_true(isinf(pspace_vec_nrm2(2, x)));
	x[1] = NAN;
	assert_true(isnan(pspace_vec_nrm2(2, x)));
}

static void test_vec_blas1(void **state)
{
	const uint64_t n = 37;
	double x[37], y[37], z[37];

	(void)state;
	for (uint64_t i = 0; i < n; i++) {
		x[i] = (double)i - 10.5;
		y[i] = 2.0 * (double)i;
	}
	pspace_vec_axpy(n, -0.5, x, y);
	for (uint64_t i = 0; i < n; i++)
		assert_true(y[i] == 2.0 * (double)i - 0.5 * ((double)i - 10.5));
	pspace_vec_copy(n, x, z);
	assert_memory_equal(x, z, sizeof(x));
	pspace_vec_scale(n, 4.0, z);
	for (uint64_t i = 0; i < n; i++)
		assert_true(z[i] == 4.0 * x[i]);
	/* |i - 10.5| summed: 0.5..10.5 (11 terms, 60.5) + 0.5..25.5 (26 terms, 338) */
	assert_true(pspace_vec_nrm1(n, x) == 398.5);
	assert_true(pspace_vec_nrminf(n, x) == 25.5);
	x[3] = -100;
	assert_true(pspace_vec_nrminf(n, x) == 100.0);
	x[5] = NAN;
	assert_true(isnan(pspace_vec_nrminf(n, x)));
	pspace_vec_zero(n, z);
	for (uint64_t i = 0; i < n; i++)
		assert_true(z[i] == 0.0);
	assert_true(pspace_vec_nrm1(0, z) == 0.0 && pspace_vec_nrminf(0, z) == 0.0);
}

static void test_vec_randn_statistics(void **state)
{
	const uint64_t n = 400000;
	double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double));
	double m1 = 0, m2 = 0, m4 = 0, c1 = 0, cs = 0, in1 = 0;

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	pspace_vec_randn(n, 2024, x);
	pspace_vec_randn(n, 2025, y);
	for (uint64_t i = 0; i < n; i++) {
		m1 += x[i];
		m2 += x[i] * x[i];
		m4 += x[i] * x[i] * x[i] * x[i];
		in1 += fabs(x[i]) < 1.0;
		if (i > 0)
			c1 += x[i] * x[i - 1];
		cs += x[i] * y[i];
	}
	m1 /= (double)n, m2 /= (double)n, m4 /= (double)n, in1 /= (double)n;
	c1 /= (double)(n - 1), cs /= (double)n;
	/* 5-sigma bands for N(0,1): var(x) = 1, var(x^2) = 2, var(x^4) = 96 */
	assert_true(fabs(m1) < 5 / sqrt((double)n));
	assert_true(fabs(m2 - 1) < 5 * sqrt(2.0 / (double)n));
	assert_true(fabs(m4 - 3) < 5 * sqrt(96.0 / (double)n));
	/* P(|x| < 1) = erf(1/sqrt 2) = 0.682689... */
	assert_true(fabs(in1 - 0.6826894921370859) < 5 * sqrt(0.6827 * 0.3173 / (double)n));
	/* consecutive entries and different seeds are uncorrelated */
	assert_true(fabs(c1) < 5 / sqrt((double)n));
	assert_true(fabs(cs) < 5 / sqrt((double)n));
	free(y);
	free(x);
}

static void test_vec_randn_deterministic(void **state)
{
	double a[1001], b[1001], c[1001];

	(void)state;
	pspace_vec_randn(1001, 99, a);
	pspace_vec_randn(1001, 99, b);
	assert_memory_equal(a, b, sizeof(a));
	/* a shorter vector (odd length too) is a prefix of a longer one */
	pspace_vec_randn(7, 99, c);
	assert_memory_equal(a, c, 7 * sizeof(double));
	pspace_vec_randn(1001, 100, c);
	for (int i = 0; i < 1001; i++)
		assert_true(a[i] != c[i]);
	/* seed 0 works and is not all zeros */
	pspace_vec_randn(16, 0, c);
	assert_true(pspace_vec_nrm2(16, c) > 1.0);
}

static void test_vec_rademacher(void **state)
{
	const uint64_t n = 100001; /* not a multiple of 64 */
	double *x = malloc(n * sizeof(double)), *y = malloc(n * sizeof(double));
	double s = 0, c = 0, cs = 0;

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	pspace_vec_rademacher(n, 5, x);
	for (uint64_t i = 0; i < n; i++) {
		assert_true(x[i] == 1.0 || x[i] == -1.0);
		s += x[i];
		if (i > 0)
			c += x[i] * x[i - 1];
	}
	assert_true(fabs(s / (double)n) < 5 / sqrt((double)n));
	assert_true(fabs(c / (double)n) < 5 / sqrt((double)n));
	pspace_vec_rademacher(n, 5, y);
	assert_memory_equal(x, y, n * sizeof(double));
	pspace_vec_rademacher(77, 5, y);
	assert_memory_equal(x, y, 77 * sizeof(double));
	pspace_vec_rademacher(n, 6, y);
	for (uint64_t i = 0; i < n; i++)
		cs += x[i] * y[i];
	assert_true(fabs(cs / (double)n) < 5 / sqrt((double)n));
	free(y);
	free(x);
}

/* X = a X row by row; a = 0 writes zeros over NaN, a = 1 leaves X, padding untouched. */
static void test_vec_scale_rows(void **state)
{
	enum { N = 5, K = 3, LD = 7 };
	double X[K * LD];

	(void)state;
	for (double a = -2.0; a <= 2.0; a += 1.0) {
		for (int i = 0; i < K * LD; i++)
			X[i] = a == 0.0 ? NAN : 0.5 + i;
		pspace_vec_scale_rows(N, K, a, X, LD);
		for (int j = 0; j < K; j++)
			for (int i = 0; i < LD; i++) {
				int at = j * LD + i;

				if (i >= N && a == 0.0)
					assert_true(isnan(X[at]));
				else if (i >= N)
					assert_true(X[at] == 0.5 + at);
				else
					assert_true(X[at] == (a == 0.0 ? 0.0 : a * (0.5 + at)));
			}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vec_view_layer),
	    cmocka_unit_test(test_vec_dot_exact_cases),
	    cmocka_unit_test(test_vec_dot_ill_conditioned),
	    cmocka_unit_test(test_vec_dot_random),
	    cmocka_unit_test(test_vec_nrm2_range),
	    cmocka_unit_test(test_vec_blas1),
	    cmocka_unit_test(test_vec_randn_statistics),
	    cmocka_unit_test(test_vec_randn_deterministic),
	    cmocka_unit_test(test_vec_rademacher),
	    cmocka_unit_test(test_vec_scale_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
