/*
 * Tests of the representations (src/mat): Dense and BlockDiag stored in
 * f32 and f64 (mv, mm for k = 1, 3, 16, vTMv, batched vTMv, trace, diag,
 * Frobenius norm, dense, direct damped solve, reopening, layouts), their
 * products, Identity and Implicit, and the error paths.
 *
 * Every expected value comes from a float64 dense computation written in
 * this file (products, sums, a Cholesky and a Gaussian elimination of its
 * own), never from the code under test. Matrices are F = J^T J / n from a
 * seeded generator, so they are symmetric positive semi-definite.
 */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/store.h"

/* ---- temporary stores ------------------------------------------------------- */

typedef struct tmpstore {
	char root[64];
	char path[128];
	pspace_store *s;
} tmpstore;

static void tmp_open(tmpstore *t)
{
	pspace_store_opts o;

	snprintf(t->root, sizeof(t->root), "/tmp/pspace-test-mat-XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->path, sizeof(t->path), "%s/s", t->root);
	pspace_store_opts_default(&o);
	o.nosync = 1;
	assert_int_equal(pspace_store_open(&t->s, t->path, &o), 0);
}

static void tmp_reopen(tmpstore *t)
{
	pspace_store_opts o;

	pspace_store_close(t->s);
	pspace_store_opts_default(&o);
	o.nosync = 1;
	assert_int_equal(pspace_store_open(&t->s, t->path, &o), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void tmp_close(tmpstore *t)
{
	pspace_store_close(t->s);
	nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- deterministic data and dense references --------------------------------- */

static uint64_t rng_state;

static double urand(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double *randv(size_t n, uint64_t seed)
{
	double *v = malloc(n * sizeof(*v));

	assert_non_null(v);
	rng_state = seed;
	for (size_t i = 0; i < n; i++)
		v[i] = urand();
	return v;
}

/* F = J^T J / n + shift I, d x d, J n x d. */
static double *gram(size_t d, size_t n, double shift, uint64_t seed)
{
	double *J = randv(n * d, seed), *F = calloc(d * d, sizeof(*F));

	assert_non_null(F);
	for (size_t x = 0; x < n; x++)
		for (size_t i = 0; i < d; i++) {
			double a = J[x * d + i] / (double)n;

			for (size_t j = i; j < d; j++)
				F[i * d + j] += a * J[x * d + j];
		}
	for (size_t i = 0; i < d; i++) {
		F[i * d + i] += shift;
		for (size_t j = 0; j < i; j++)
			F[i * d + j] = F[j * d + i];
	}
	free(J);
	return F;
}

/* The values the store holds at precision @p t. */
static double *stored_copy(const double *F, size_t n, pspace_dtype t)
{
	double *R = malloc(n * sizeof(*R));

	assert_non_null(R);
	for (size_t i = 0; i < n; i++)
		R[i] = t == PSPACE_F32 ? (double)(float)F[i] : F[i];
	return R;
}

/* Y = F X for k vectors ((k, d) row-major). */
static void ref_mm(const double *F, size_t d, size_t k, const double *X, double *Y)
{
	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < d; i++) {
			double s = 0;

			for (size_t l = 0; l < d; l++)
				s += F[i * d + l] * X[j * d + l];
			Y[j * d + i] = s;
		}
}

static double relerr(const double *got, const double *want, size_t n)
{
	double e = 0, w = 0;

	for (size_t i = 0; i < n; i++) {
		e += (got[i] - want[i]) * (got[i] - want[i]);
		w += want[i] * want[i];
	}
	return w > 0 ? sqrt(e / w) : sqrt(e);
}

static double relerr1(double got, double want)
{
	return fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
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
	ref_mm(A, d, k, X, R);
	r = relerr(R, B, k * d);
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

/* ---- the operations of one matrix against its dense reference ------------------ */

/*
 * Checks every operation of @p m against @p F (exact values; tolerance
 * @p tol) and the direct solve against @p Fs (the values as stored).
 */
static void check_ops(pspace_mat *m, const double *F, const double *Fs, size_t d, double tol)
{
	pspace_exec ex = {2, 0}, ex1 = {1, 0};
	static const uint32_t ks[] = {1, 3, 16};
	double *X = randv(16 * d, 77), *Y = malloc(16 * d * sizeof(double));
	double *R = malloc(16 * d * sizeof(double)), *D = malloc(d * d * sizeof(double));
	double *y1 = malloc(d * sizeof(double)), v, w, out[16];

	assert_non_null(Y);
	assert_non_null(R);
	assert_non_null(D);
	assert_non_null(y1);
	assert_int_equal(pspace_mat_dim(m), d);

	/* mv, and mm for k = 1, 3, 16 with alpha and accumulation into Y */
	assert_int_equal(pspace_mat_mv(m, &ex, X, Y), 0);
	ref_mm(F, d, 1, X, R);
	assert_true(relerr(Y, R, d) < tol);
	assert_int_equal(pspace_mat_mv(m, &ex1, X, y1), 0);
	assert_true(relerr(y1, R, d) < tol);
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		uint32_t k = ks[i];

		for (size_t j = 0; j < k * d; j++)
			Y[j] = 1.0;
		assert_int_equal(pspace_mat_mm(m, &ex, k, -0.5, X, d, Y, d), 0);
		ref_mm(F, d, k, X, R);
		for (size_t j = 0; j < k * d; j++)
			R[j] = 1.0 - 0.5 * R[j];
		assert_true(relerr(Y, R, k * d) < tol);
	}

	/* vTMv and batched vTMv */
	ref_mm(F, d, 16, X, R);
	assert_int_equal(pspace_mat_vtmv(m, &ex, X, &v), 0);
	w = 0;
	for (size_t i = 0; i < d; i++)
		w += X[i] * R[i];
	assert_true(relerr1(v, w) < tol);
	assert_int_equal(pspace_mat_vtmv_batch(m, &ex, 16, X, d, out), 0);
	for (size_t j = 0; j < 16; j++) {
		w = 0;
		for (size_t i = 0; i < d; i++)
			w += X[j * d + i] * R[j * d + i];
		assert_true(relerr1(out[j], w) < tol);
	}

	/* trace, diag, Frobenius, dense */
	w = 0;
	for (size_t i = 0; i < d; i++) {
		w += F[i * d + i];
		R[i] = F[i * d + i];
	}
	assert_int_equal(pspace_mat_trace(m, &ex, &v), 0);
	assert_true(relerr1(v, w) < tol);
	assert_int_equal(pspace_mat_diag(m, &ex, Y), 0);
	assert_true(relerr(Y, R, d) < tol);
	w = 0;
	for (size_t i = 0; i < d * d; i++)
		w += F[i] * F[i];
	assert_int_equal(pspace_mat_frobenius(m, &ex, &v), 0);
	assert_true(relerr1(v, sqrt(w)) < tol);
	assert_int_equal(pspace_mat_dense(m, &ex, D, d), 0);
	assert_true(relerr(D, F, d * d) < tol);

	/* direct damped solve, k = 1, 3, 16: against a Cholesky of the values as
	 * stored, and by the residual */
	if (Fs) {
		double *A = with_damping(Fs, d, 0.1);

		ref_cholesky_solve(A, d, 16, X, R);
		for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
			uint32_t k = ks[i];

			assert_int_equal(pspace_mat_solve(m, &ex, 0.1, k, X, d, Y, d), 0);
			assert_true(relerr(Y, R, k * d) < 1e-8);
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

/* ---- Dense ------------------------------------------------------------------------- */

static void dense_case(size_t d, uint32_t tile, pspace_dtype dt)
{
	tmpstore t;
	pspace_write_opts o;
	pspace_mat *m = NULL, *m2 = NULL;
	pspace_exec ex1 = {1, 0};
	double *F = gram(d, 40, 0.0, 1000 + d), *Fs = stored_copy(F, d * d, dt);
	double tol = dt == PSPACE_F32 ? 1e-3 : 1e-10;
	double *x = randv(d, 5), *y1 = malloc(d * sizeof(double)), *y2 = malloc(d * sizeof(double));

	assert_non_null(y1);
	assert_non_null(y2);
	tmp_open(&t);
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
	tmp_reopen(&t);
	assert_int_equal(pspace_mat_open(&m2, t.s, "F"), 0);
	assert_int_equal(pspace_mat_mv(m2, &ex1, x, y2), 0);
	assert_true(relerr(y2, y1, d) < 1e-14);
	pspace_mat_free(m2);

	tmp_close(&t);
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
	double *F = gram(d, 30, 0.0, 9), *X = randv(3 * d, 10), *Y = malloc(3 * d * sizeof(double));
	double *R = malloc(3 * d * sizeof(double));
	tmpstore t;

	(void)state;
	assert_non_null(Y);
	assert_non_null(R);
	ref_mm(F, d, 3, X, R);
	tmp_open(&t);
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
			assert_int_equal(pspace_mat_mm(m, &ex, 3, 1.0, X, d, Y, d), 0);
			assert_true(relerr(Y, R, 3 * d) < 1e-5);
		}
		pspace_mat_free(m);
	}
	tmp_close(&t);
	free(R);
	free(Y);
	free(X);
	free(F);
}

/* ---- BlockDiag ------------------------------------------------------------------- */

static const char *bd_layout_text = "# a small network\n"
                                    "fc    linear  20x15    bias\n"
                                    "conv  conv2d  4x3x3x3  bias\n"
                                    "bn    norm    7        bias\n"
                                    "head  linear  3x5      nobias\n";

static void blockdiag_case(pspace_dtype dt)
{
	tmpstore t;
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

		blocks[i] = gram(n, 12, 0.0, 50 + i);
		for (size_t r = 0; r < n; r++)
			for (size_t c = 0; c < n; c++)
				F[(ly->offset + r) * d + ly->offset + c] = blocks[i][r * n + c];
	}
	Fs = stored_copy(F, d * d, dt);

	tmp_open(&t);
	pspace_write_opts_default(&o);
	o.tile = 64;
	o.codec.dtype = dt;
	assert_int_equal(pspace_blockdiag_write(t.s, "B", l, (const double *const *)blocks, &o), 0);
	tmp_reopen(&t);
	assert_int_equal(pspace_mat_open(&m, t.s, "B"), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_BLOCKDIAG);
	/* layout round trip through the store */
	assert_true(pspace_layout_equal(pspace_mat_layout(m), l));
	t1 = pspace_layout_text(l);
	t2 = pspace_layout_text(pspace_mat_layout(m));
	assert_string_equal(t1, t2);
	free(t2);
	free(t1);
	check_ops(m, F, Fs, d, tol);
	pspace_mat_free(m);
	tmp_close(&t);
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

/* ---- tiled writes from a function ------------------------------------------------- */

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
	tmpstore t;
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
	tmp_open(&t);
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
	assert_true(relerr(D, F, d * d) < 1e-15);
	pspace_mat_free(m);
	pspace_layout_free(l);
	tmp_close(&t);
	free(D);
	free(F);
}

/* ---- direct solve: indefinite, singular, budget ------------------------------------ */

static void test_mat_solve_special(void **state)
{
	const size_t d = 257;
	tmpstore t;
	pspace_write_opts o;
	pspace_mat *m = NULL, *z = NULL;
	pspace_exec ex = {2, 0}, small = {2, 200 * 1024};
	double *F = gram(d, 40, 0.0, 3), *b = randv(d, 4), *x = malloc(d * sizeof(double));
	double *xr = malloc(d * sizeof(double)), *A;

	(void)state;
	assert_non_null(x);
	assert_non_null(xr);
	tmp_open(&t);
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
	assert_true(relerr(x, xr, d) < 1e-8);
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
	tmp_close(&t);
	free(xr);
	free(x);
	free(b);
	free(F);
}

/* ---- products ------------------------------------------------------------------------ */

static void test_mat_product_dense(void **state)
{
	const size_t d = 257;
	tmpstore t;
	pspace_write_opts o;
	pspace_mat *a = NULL, *b = NULL, *c = NULL;
	/* a budget that holds bands of 128 rows: three bands */
	pspace_exec ex = {2, 4 * 257 * 8 * 128};
	double *A = gram(d, 20, 0.1, 21), *B = gram(d, 30, 0.0, 22);
	double *C = calloc(d * d, sizeof(double)), *D = malloc(d * d * sizeof(double));
	double *x = randv(d, 8), *y = malloc(d * sizeof(double)), *yr = malloc(d * sizeof(double));

	(void)state;
	assert_non_null(C);
	assert_non_null(D);
	assert_non_null(y);
	assert_non_null(yr);
	for (size_t i = 0; i < d; i++)
		for (size_t l = 0; l < d; l++)
			for (size_t j = 0; j < d; j++)
				C[i * d + j] += A[i * d + l] * B[l * d + j];
	tmp_open(&t);
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
	assert_true(relerr(D, C, d * d) < 1e-3);
	/* the product is not symmetric: mv must use all its tiles */
	assert_int_equal(pspace_mat_mv(c, &ex, x, y), 0);
	ref_mm(C, d, 1, x, yr);
	assert_true(relerr(y, yr, d) < 1e-3);
	/* a budget below one band: ENOMEM */
	{
		pspace_exec tiny = {1, 1024};

		assert_int_equal(pspace_mat_product_write(t.s, "AB2", a, b, &tiny, NULL),
		                 PSPACE_ENOMEM);
	}
	pspace_mat_free(c);
	pspace_mat_free(b);
	pspace_mat_free(a);
	tmp_close(&t);
	free(yr);
	free(y);
	free(x);
	free(D);
	free(C);
	free(B);
	free(A);
}

static void test_mat_product_blockdiag(void **state)
{
	tmpstore t;
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

		ba[i] = gram(n, 10, 0.0, 70 + i);
		bb[i] = gram(n, 10, 0.3, 80 + i);
		for (size_t r = 0; r < n; r++)
			for (size_t q = 0; q < n; q++)
				for (size_t cc = 0; cc < n; cc++)
					C[(off + r) * d + off + cc] +=
					    ba[i][r * n + q] * bb[i][q * n + cc];
	}
	tmp_open(&t);
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
	assert_true(relerr(D, C, d * d) < 1e-12);
	pspace_mat_free(c);
	pspace_mat_free(b);
	pspace_mat_free(a);
	tmp_close(&t);
	for (size_t i = 0; i < nl; i++) {
		free(ba[i]);
		free(bb[i]);
	}
	free(D);
	free(C);
	pspace_layout_free(l);
}

/* ---- Identity and Implicit ------------------------------------------------------------ */

static void test_mat_identity(void **state)
{
	const size_t d = 37;
	pspace_mat *m = NULL;
	double *F = calloc(d * d, sizeof(double)), *X = randv(3 * d, 1);
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
	assert_true(relerr1(v, out[0]) < 1e-15);
	/* references */
	assert_ptr_equal(pspace_mat_ref(m), m);
	pspace_mat_free(m);
	assert_int_equal(pspace_mat_trace(m, NULL, &v), 0);
	assert_true(relerr1(v, 2.5 * d) < 1e-15);
	pspace_mat_free(m);
	pspace_mat_free(NULL);
	free(D);
	free(Y);
	free(X);
	free(F);
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
	tmpstore t;
	pspace_layout *l = NULL;
	pspace_mat *m = NULL, *r = NULL, *f = NULL;
	pspace_matrix_info info;
	double v, F[4] = {2, 1, 1, 2};

	(void)state;
	tmp_open(&t);
	assert_int_equal(pspace_identity_create(&m, 7, -1.5), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "I"), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "I"), PSPACE_EEXIST);
	assert_int_equal(pspace_store_info(t.s, "I", &info), 0);
	assert_int_equal(info.kind, PSPACE_KIND_IDENTITY);
	tmp_reopen(&t);
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
	tmp_close(&t);
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
	ref_mm(u->F, u->d, 1, x, y);
	return 0;
}

static int imp_vtmv(void *ud, const double *x, double *out)
{
	implicit_ud *u = ud;
	double *y = malloc(u->d * sizeof(double));

	u->vtmv_calls++;
	ref_mm(u->F, u->d, 1, x, y);
	*out = 0;
	for (size_t i = 0; i < u->d; i++)
		*out += x[i] * y[i];
	free(y);
	return 0;
}

static void test_mat_implicit(void **state)
{
	const size_t d = 60;
	double *F = gram(d, 10, 0.0, 31), *X = randv(3 * d, 32),
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
	ref_mm(F, d, 3, X, R);
	assert_int_equal(pspace_mat_mm(m, NULL, 3, 1.0, X, d, Y, d), 0);
	assert_true(relerr(Y, R, 3 * d) < 1e-14);
	assert_int_equal(u.mv_calls, 3);
	/* vTMv from mv, dense from mv on unit vectors */
	assert_int_equal(pspace_mat_vtmv_batch(m, NULL, 3, X, d, out), 0);
	for (size_t j = 0; j < 3; j++) {
		v = 0;
		for (size_t i = 0; i < d; i++)
			v += X[j * d + i] * R[j * d + i];
		assert_true(relerr1(out[j], v) < 1e-14);
	}
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	assert_true(relerr(D, F, d * d) < 1e-14);
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
	assert_true(relerr1(v, out[0]) < 1e-13);
	pspace_mat_free(m2);
	pspace_mat_free(m);
	free(D);
	free(Y);
	free(R);
	free(X);
	free(F);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void test_mat_errors(void **state)
{
	const size_t d = 70;
	tmpstore t;
	pspace_mat *m = NULL, *a = NULL, *b = NULL, *id = NULL;
	pspace_layout *l = NULL;
	pspace_writer *w = NULL;
	pspace_matrix_desc desc;
	double *F = gram(d, 5, 0.0, 1), *G = gram(d + 1, 5, 0.0, 2), *x = randv(d + 1, 3);
	double y[71];

	(void)state;
	tmp_open(&t);
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
	assert_int_equal(pspace_store_info(t.s, "bad", &(pspace_matrix_info){0}), PSPACE_ENOTFOUND);
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
	assert_int_equal(pspace_mat_mm(a, NULL, 2, 1.0, x, d - 1, y, d), PSPACE_EINVAL);
	assert_int_equal(pspace_mat_mm(a, NULL, 1, 1.0, NULL, d, y, d), PSPACE_EINVAL);
	/* k = 0 is a no-op */
	assert_int_equal(pspace_mat_mm(a, NULL, 0, 1.0, NULL, 0, NULL, 0), 0);

	pspace_mat_free(id);
	pspace_mat_free(b);
	pspace_mat_free(a);
	pspace_layout_free(l);
	tmp_close(&t);
	free(x);
	free(G);
	free(F);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mat_dense_f32),
	    cmocka_unit_test(test_mat_dense_f64),
	    cmocka_unit_test(test_mat_dense_tiling),
	    cmocka_unit_test(test_mat_blockdiag_f32),
	    cmocka_unit_test(test_mat_blockdiag_f64),
	    cmocka_unit_test(test_mat_tiled_write),
	    cmocka_unit_test(test_mat_solve_special),
	    cmocka_unit_test(test_mat_product_dense),
	    cmocka_unit_test(test_mat_product_blockdiag),
	    cmocka_unit_test(test_mat_identity),
	    cmocka_unit_test(test_mat_save),
	    cmocka_unit_test(test_mat_implicit),
	    cmocka_unit_test(test_mat_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
