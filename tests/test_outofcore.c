/*
 * Out-of-core test: a stored Dense matrix several times larger than the
 * memory cap (a cgroup limit that also bounds the page cache) gives correct
 * mv, mm, trace, Frobenius norm and CG solve within a small memory budget.
 *
 * F = J^T J / n with J an n x d matrix (n = 32), so every reference has a
 * closed form computed from J alone in float64: F x = J^T (J x) / n,
 * tr F = ||J||_F^2 / n, ||F||_F = ||J J^T||_F / n, and Woodbury for
 * (F + l I)^{-1} b. The matrix itself never exists in RAM: its tiles are
 * generated one at a time.
 *
 * Needs root and a cgroup v1 memory controller; skipped (with the reason)
 * otherwise, and under AddressSanitizer, whose shadow memory does not fit a
 * tight cap (the Release build of the suite runs it).
 */
#include <blis.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "memcap.h"
#include "pspace.h"

#define NEX    32
#define MIB    ((uint64_t)1 << 20)
#define CAP    (160 * MIB)
#define BUDGET (32 * MIB)

typedef struct lowrank {
	uint64_t d;
	double *j; /* NEX x d, row-major */
} lowrank;

static void lowrank_init(lowrank *lr, uint64_t d)
{
	lr->d = d;
	lr->j = malloc(sizeof(double) * NEX * d);
	assert_non_null(lr->j);
	pspace_vec_randn(NEX * d, 7, lr->j);
	/* layers of different scales, as in real gradients */
	for (uint64_t x = 0; x < NEX; x++)
		for (uint64_t p = 0; p < d; p++)
			lr->j[x * d + p] *= pow(10.0, -(double)(p * 4 / d) / 2.0);
}

/* tile = J[:, r0:r0+rows]^T J[:, c0:c0+cols] / n */
static int lowrank_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                        double *tile)
{
	const lowrank *lr = ud;
	double alpha = 1.0 / NEX, beta = 0.0;

	bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, rows, cols, NEX, &alpha, lr->j + r0, 1,
	          (inc_t)lr->d, lr->j + c0, (inc_t)lr->d, 1, &beta, tile, cols, 1);
	return 0;
}

/* y = F x = J^T (J x) / n, in double */
static void lowrank_mv(const lowrank *lr, const double *x, double *y)
{
	double jx[NEX];

	for (int a = 0; a < NEX; a++)
		jx[a] = pspace_vec_dot(lr->d, lr->j + (uint64_t)a * lr->d, x) / NEX;
	memset(y, 0, sizeof(double) * lr->d);
	for (int a = 0; a < NEX; a++)
		pspace_vec_axpy(lr->d, jx[a], lr->j + (uint64_t)a * lr->d, y);
}

/* Solves the small dense system A z = r (n x n, Gaussian elimination with
 * partial pivoting) in place. */
static void small_solve(int n, double *a, double *r)
{
	for (int c = 0; c < n; c++) {
		int p = c;
		for (int i = c + 1; i < n; i++)
			if (fabs(a[i * n + c]) > fabs(a[p * n + c]))
				p = i;
		for (int j = 0; j < n; j++) {
			double t = a[c * n + j];
			a[c * n + j] = a[p * n + j];
			a[p * n + j] = t;
		}
		double t = r[c];
		r[c] = r[p];
		r[p] = t;
		for (int i = c + 1; i < n; i++) {
			double f = a[i * n + c] / a[c * n + c];
			for (int j = c; j < n; j++)
				a[i * n + j] -= f * a[c * n + j];
			r[i] -= f * r[c];
		}
	}
	for (int c = n - 1; c >= 0; c--) {
		for (int j = c + 1; j < n; j++)
			r[c] -= a[c * n + j] * r[j];
		r[c] /= a[c * n + c];
	}
}

/* x = (F + l I)^{-1} b by Woodbury: (b - J^T (n l I + J J^T)^{-1} J b) / l */
static void lowrank_solve(const lowrank *lr, double l, const double *b, double *x)
{
	double gram[NEX * NEX], z[NEX];

	for (int a = 0; a < NEX; a++) {
		for (int c = 0; c < NEX; c++)
			gram[a * NEX + c] = pspace_vec_dot(lr->d, lr->j + (uint64_t)a * lr->d,
			                                   lr->j + (uint64_t)c * lr->d);
		gram[a * NEX + a] += NEX * l;
		z[a] = pspace_vec_dot(lr->d, lr->j + (uint64_t)a * lr->d, b);
	}
	small_solve(NEX, gram, z);
	pspace_vec_copy(lr->d, b, x);
	for (int a = 0; a < NEX; a++)
		pspace_vec_axpy(lr->d, -z[a], lr->j + (uint64_t)a * lr->d, x);
	pspace_vec_scale(lr->d, 1.0 / l, x);
}

/* Largest eigenvalue of a small symmetric matrix (n x n, destroyed) by
 * cyclic Jacobi rotations. */
static double small_max_eig(int n, double *a)
{
	for (int sweep = 0; sweep < 100; sweep++) {
		double off = 0;
		for (int p = 0; p < n; p++)
			for (int q = p + 1; q < n; q++)
				off += a[p * n + q] * a[p * n + q];
		if (off < 1e-30)
			break;
		for (int p = 0; p < n; p++)
			for (int q = p + 1; q < n; q++) {
				if (fabs(a[p * n + q]) < 1e-300)
					continue;
				double th = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
				double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
				double c = 1 / sqrt(t * t + 1), sn = t * c;
				for (int k = 0; k < n; k++) {
					double akp = a[k * n + p], akq = a[k * n + q];
					a[k * n + p] = c * akp - sn * akq;
					a[k * n + q] = sn * akp + c * akq;
				}
				for (int k = 0; k < n; k++) {
					double apk = a[p * n + k], aqk = a[q * n + k];
					a[p * n + k] = c * apk - sn * aqk;
					a[q * n + k] = sn * apk + c * aqk;
				}
			}
	}
	double m = a[0];
	for (int i = 1; i < n; i++)
		m = a[i * n + i] > m ? a[i * n + i] : m;
	return m;
}

#define CHECK(cond, ...) MEMCAP_CHECK("out-of-core", cond, __VA_ARGS__)

/* The store's directory (the capped child reads it too). */
static char store_dir[64];

/* memcap_run's entry point in the capped child (@p ud: the lowrank): every operation against the
 * closed forms. */
static void capped_child(void *ud, const char *cgroup)
{
	const lowrank *lr = ud;
	pspace_exec ex = {2, BUDGET};
	pspace_store *s = NULL;
	pspace_mat *f = NULL;
	pspace_op *op = NULL;
	uint64_t d = lr->d;
	double *x = malloc(sizeof(double) * d * 4), *y = malloc(sizeof(double) * d * 4);
	double *want = malloc(sizeof(double) * d * 4);
	double v, ref;
	int rc;

	CHECK(x && y && want, "no memory for vectors");
	CHECK(memcap_sampler_start() == 0, "sampler");
	rc = pspace_store_open(&s, store_dir, NULL);
	CHECK(rc == 0, "open store %s: %s", store_dir, pspace_strerror(rc));
	rc = pspace_mat_open(&f, s, "F");
	CHECK(rc == 0, "open F: %s", pspace_strerror(rc));

	pspace_vec_randn(4 * d, 11, x);
	rc = pspace_mat_mv(f, &ex, x, y);
	CHECK(rc == 0, "mv: %s", pspace_strerror(rc));
	lowrank_mv(lr, x, want);
	CHECK(fx_relerr(y, want, d) < 1e-4, "mv relative error %g", fx_relerr(y, want, d));

	memset(y, 0, sizeof(double) * d * 4);
	rc = pspace_mat_mm(f, &ex, 4, 1.0, x, d, 0.0, y, d);
	CHECK(rc == 0, "mm: %s", pspace_strerror(rc));
	for (int j = 0; j < 4; j++) {
		lowrank_mv(lr, x + j * d, want);
		CHECK(fx_relerr(y + j * d, want, d) < 1e-4, "mm column %d error %g", j,
		      fx_relerr(y + j * d, want, d));
	}

	rc = pspace_mat_trace(f, &ex, &v);
	CHECK(rc == 0, "trace: %s", pspace_strerror(rc));
	ref = pspace_vec_dot(NEX * d, lr->j, lr->j) / NEX;
	CHECK(fabs(v - ref) <= 1e-4 * ref, "trace %.9g vs %.9g", v, ref);

	rc = pspace_mat_frobenius(f, &ex, &v);
	CHECK(rc == 0, "frobenius: %s", pspace_strerror(rc));
	ref = 0;
	for (int a = 0; a < NEX; a++)
		for (int c = 0; c < NEX; c++) {
			double g =
			    pspace_vec_dot(d, lr->j + (uint64_t)a * d, lr->j + (uint64_t)c * d);
			ref += g * g;
		}
	ref = sqrt(ref) / NEX;
	CHECK(fabs(v - ref) <= 1e-4 * ref, "frobenius %.9g vs %.9g", v, ref);

	/* 2-norm by Lanczos (one pass per step) vs the largest eigenvalue of
	 * the n x n Gram J J^T / n, which F shares. */
	{
		double gram[NEX * NEX];
		pspace_eig_opts eo = {0};
		pspace_op *fop = NULL;

		for (int a = 0; a < NEX; a++)
			for (int c = 0; c < NEX; c++)
				gram[a * NEX + c] = pspace_vec_dot(d, lr->j + (uint64_t)a * d,
				                                   lr->j + (uint64_t)c * d) /
				                    NEX;
		ref = small_max_eig(NEX, gram);
		eo.max_iter = 60;
		eo.tol = 1e-8;
		rc = pspace_op_mat(&fop, f);
		CHECK(rc == 0, "op");
		rc = pspace_op_norm(fop, &ex, PSPACE_NORM_2, &eo, &v);
		CHECK(rc == 0, "2-norm: %s", pspace_strerror(rc));
		CHECK(fabs(v - ref) <= 1e-4 * ref, "2-norm %.9g vs %.9g after %u steps", v, ref,
		      eo.iterations);
		pspace_op_free(fop);
	}

	/* The direct solve needs d^2 doubles: refused within the budget. */
	rc = pspace_mat_solve(f, &ex, 1e-3, 1, x, d, y, d);
	CHECK(rc == PSPACE_ENOMEM, "direct solve within a %llu MiB budget returned %d",
	      (unsigned long long)(BUDGET / MIB), rc);

	/* CG converges in at most rank + 1 steps on F + l I. */
	/* damping = mean diagonal: cond(F + l I) ~ 1e3, so f32 storage costs < 1e-4 */
	double l = pspace_vec_dot(NEX * d, lr->j, lr->j) / NEX / (double)d;
	pspace_solve_opts so;
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.tol = 1e-7;
	so.max_iter = 200;
	rc = pspace_op_mat(&op, f);
	CHECK(rc == 0, "op");
	rc = pspace_op_solve(op, &ex, l, 1, x, d, &so, y, d);
	CHECK(rc == 0, "CG solve: %s", pspace_strerror(rc));
	lowrank_solve(lr, l, x, want);
	CHECK(fx_relerr(y, want, d) < 1e-4, "CG solve error %g after %u iterations",
	      fx_relerr(y, want, d), so.iterations);

	uint64_t peak = memcap_sampler_stop();
	printf("out-of-core: d = %llu, cap %llu MiB, budget %llu MiB: peak anonymous memory "
	       "%.1f MiB, peak of the capped group (incl. page cache) %.1f MiB, CG %u "
	       "iterations\n",
	       (unsigned long long)d, (unsigned long long)(CAP / MIB),
	       (unsigned long long)(BUDGET / MIB), (double)peak / MIB,
	       (double)memcap_read(cgroup, "memory.max_usage_in_bytes") / MIB, so.iterations);
	/* Budget for tiles, plus the vectors and J this test holds, plus the
	 * fixed cost of the runtime (libraries, thread stacks). */
	uint64_t vectors = sizeof(double) * d * 12 + sizeof(double) * NEX * d;
	CHECK(peak <= BUDGET + vectors + 48 * MIB,
	      "peak anonymous memory %.1f MiB exceeds budget + vectors + 48 MiB",
	      (double)peak / MIB);
	pspace_op_free(op);
	pspace_mat_free(f);
	pspace_store_close(s);
	free(x);
	free(y);
	free(want);
	fflush(stdout);
	_exit(0);
}

static void test_outofcore_dense_under_cap(void **state)
{
	const char *env = getenv("PSPACE_OOC_D");
	uint64_t d = env ? strtoull(env, NULL, 10) : 20000;
	pspace_store *s = NULL;
	pspace_layout *layout = NULL;
	pspace_matrix_info info;
	lowrank lr;
	int st;

	(void)state;
#ifdef MEMCAP_UNDER_ASAN
	skip();
#endif
	fx_dir_make(store_dir, sizeof(store_dir), "ooc");
	lowrank_init(&lr, d);
	assert_int_equal(pspace_store_open(&s, store_dir, NULL), 0);
	assert_int_equal(pspace_layout_flat(&layout, d), 0);
	assert_int_equal(
	    pspace_tiled_write(s, "F", PSPACE_KIND_DENSE, layout, lowrank_tile, &lr, NULL, NULL),
	    0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "F"), 0);
	pspace_store_close(s);
	pspace_layout_free(layout);
	printf("out-of-core: stored F is %.1f MiB (%.1fx the %llu MiB cap)\n",
	       (double)info.tile_bytes / MIB, (double)info.tile_bytes / CAP,
	       (unsigned long long)(CAP / MIB));
	if (!env)
		assert_true(info.tile_bytes >= 4 * CAP);

	st = memcap_run(CAP, "out-of-core", capped_child, &lr);
	if (fx_dir_remove(store_dir) != 0)
		printf("out-of-core: could not remove %s\n", store_dir);
	free(lr.j);
	memcap_expect_child(st, CAP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_outofcore_dense_under_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
