/*
 * Tests of the streaming engine and its kernels (src/kernel): mm with 1, 3
 * and 16 right-hand sides, diag, trace, Frobenius norm and dense export on
 * Dense and BlockDiag matrices (symmetric and not, f32 and f64 tiles, d not
 * a multiple of the tile edge), independence of thread count and tile
 * edge, one pass per evaluation (tile-read counter), several matrices in
 * one pass, a corrupted tile, and a small memory budget.
 *
 * Every expected value comes from a float64 dense computation on the
 * matrix the test generated, never from the code under test.
 */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "kernel/engine.h"
#include "kernel/stream.h"
#include "pspace/store.h"
#include "store/reader.h"

/* ---- random data ------------------------------------------------------------ */

/* F = G^T G / n, G n x d with column j scaled by exp(2 u_j): SPD-like, varied scales. */
static double *make_fisher(size_t d, size_t n, uint64_t seed)
{
	double *G = malloc(n * d * sizeof(double)), *F = calloc(d * d, sizeof(double));
	double *scale = malloc(d * sizeof(double));

	assert_non_null(G);
	assert_non_null(F);
	assert_non_null(scale);
	for (size_t j = 0; j < d; j++)
		scale[j] = exp(2.0 * fx_rng_unif(&seed));
	for (size_t x = 0; x < n; x++)
		for (size_t j = 0; j < d; j++)
			G[x * d + j] = fx_rng_unif(&seed) * scale[j];
	for (size_t x = 0; x < n; x++) {
		const double *g = G + x * d;

		for (size_t i = 0; i < d; i++) {
			double gi = g[i] / (double)n;

			for (size_t j = i; j < d; j++)
				F[i * d + j] += gi * g[j];
		}
	}
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < i; j++)
			F[i * d + j] = F[j * d + i];
	free(scale);
	free(G);
	return F;
}

/* ---- writing matrices -------------------------------------------------------- */

typedef struct mspec {
	const char *name;
	pspace_kind kind;
	uint32_t nblocks;
	uint64_t dims[4];
	uint32_t tile;
	int symmetric;
	pspace_dtype dtype;
	int level; /* zstd level, 0 = raw tiles, -1 = level 3 without the byte shuffle */
} mspec;

static uint64_t spec_d(const mspec *m)
{
	uint64_t d = 0;

	for (uint32_t b = 0; b < m->nblocks; b++)
		d += m->dims[b];
	return d;
}

/*
 * Stores the tiles of the diagonal blocks of the d x d matrix @p A (row-major).
 * @p omit (optional) returns 1 for tiles to leave out.
 */
static void put_matrix(pspace_store *s, const mspec *m, const double *A,
                       int (*omit)(uint32_t b, uint32_t r, uint32_t c))
{
	pspace_matrix_desc desc = {0};
	pspace_writer *w;
	uint64_t d = spec_d(m), off = 0;

	desc.kind = m->kind;
	desc.d = d;
	desc.nblocks = m->nblocks;
	desc.block_dims = m->dims;
	desc.tile = m->tile;
	desc.symmetric = m->symmetric;
	pspace_codec_opts_default(&desc.codec);
	desc.codec.dtype = m->dtype;
	desc.codec.level = m->level < 0 ? 3 : m->level;
	desc.codec.shuffle = m->level >= 0;
	assert_int_equal(pspace_writer_begin(&w, s, m->name, &desc), 0);
	for (uint32_t b = 0; b < m->nblocks; b++) {
		uint32_t nt = (uint32_t)((m->dims[b] + m->tile - 1) / m->tile);

		for (uint32_t r = 0; r < nt; r++)
			for (uint32_t c = m->symmetric ? r : 0; c < nt; c++) {
				const double *src = A + (off + (uint64_t)r * m->tile) * d + off +
				                    (uint64_t)c * m->tile;

				if (omit && omit(b, r, c))
					continue;
				assert_int_equal(
				    pspace_writer_put_tile(w, b, r, c, PSPACE_F64, src, d), 0);
			}
		off += m->dims[b];
	}
	assert_int_equal(pspace_writer_finish(w), 0);
}

/* @p v rounded to bf16 (nearest, ties to even; finite values only). */
static double bf16_round(double v)
{
	float f = (float)v;
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
	memcpy(&f, &u, sizeof(f));
	return (double)f;
}

/*
 * The matrix the store holds, as the reference sees it: entries outside the
 * diagonal blocks (and in skipped tiles) are zero, and f32 storage rounds.
 */
static double *stored_reference(const mspec *m, const double *A,
                                int (*omit)(uint32_t b, uint32_t r, uint32_t c))
{
	uint64_t d = spec_d(m), off = 0;
	double *R = calloc(d * d, sizeof(double));

	assert_non_null(R);
	for (uint32_t b = 0; b < m->nblocks; b++) {
		for (uint64_t i = 0; i < m->dims[b]; i++)
			for (uint64_t j = 0; j < m->dims[b]; j++) {
				uint32_t r = (uint32_t)(i / m->tile), c = (uint32_t)(j / m->tile);
				double v = A[(off + i) * d + off + j];

				if (omit && omit(b, r < c || !m->symmetric ? r : c,
				                 r < c || !m->symmetric ? c : r))
					continue;
				if (m->dtype == PSPACE_F32)
					v = (double)(float)v;
				if (m->dtype == PSPACE_BF16)
					v = bf16_round(v);
				R[(off + i) * d + off + j] = v;
			}
		off += m->dims[b];
	}
	return R;
}

/* ---- dense float64 reference computations -------------------------------------- */

/* Y[j] += alpha R X[j] for k vectors. */
static void ref_mm(const double *R, size_t d, size_t k, double alpha, const double *X, size_t ldx,
                   double *Y, size_t ldy)
{
	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < d; i++) {
			double s = 0.0;

			for (size_t l = 0; l < d; l++)
				s += R[i * d + l] * X[j * ldx + l];
			Y[j * ldy + i] += alpha * s;
		}
}

/* ||A - B|| / ||B - base|| over k x d (the error relative to the product). */
static double rel_err(const double *A, const double *B, const double *base, size_t k, size_t d,
                      size_t ld)
{
	double num = 0.0, den = 0.0;

	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < d; i++) {
			double e = A[j * ld + i] - B[j * ld + i];
			double p = B[j * ld + i] - (base ? base[j * ld + i] : 0.0);

			num += e * e;
			den += p * p;
		}
	return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

static double tol_of(pspace_dtype t)
{
	return t == PSPACE_F64 ? 1e-12 : 1e-5;
}

/* Opens @p name, runs mm with k vectors on @p threads, checks against R and one pass. */
static void check_mm_ex(pspace_store *s, const char *name, const double *R, size_t d, uint32_t k,
                        const pspace_exec *ex, double tol, double *out_y)
{
	pspace_tiled t;
	size_t ld = k > 1 ? d + 7 : d;
	double *X = fx_randv(k * ld, 100 + k);
	double *Y = fx_randv(k * ld, 200 + k);
	double *Yref = malloc(k * ld * sizeof(double)), *Y0 = malloc(k * ld * sizeof(double));
	uint64_t before;

	assert_non_null(Yref);
	assert_non_null(Y0);
	memcpy(Y0, Y, k * ld * sizeof(double));
	memcpy(Yref, Y, k * ld * sizeof(double));
	ref_mm(R, d, k, -1.5, X, ld, Yref, ld);

	assert_int_equal(pspace_tiled_open(&t, s, name), 0);
	before = pspace_store_tiles_read(s);
	assert_int_equal(pspace_stream_mm(&t, ex, k, -1.5, X, ld, Y, ld), 0);
	assert_int_equal(pspace_store_tiles_read(s) - before, pspace_tiled_count(&t));
	{
		double e = rel_err(Y, Yref, Y0, k, d, ld);

		if (!(e < tol))
			fail_msg("%s k=%u threads=%d budget=%zu: relative error %.3g >= %.3g", name,
			         k, ex->threads, ex->mem_budget, e, tol);
	}
	if (out_y)
		for (uint32_t j = 0; j < k; j++)
			memcpy(out_y + (size_t)j * d, Y + (size_t)j * ld, d * sizeof(double));
	pspace_tiled_close(&t);
	free(Y0);
	free(Yref);
	free(Y);
	free(X);
}

static void check_mm(pspace_store *s, const char *name, const double *R, size_t d, uint32_t k,
                     int threads, double tol, double *out_y)
{
	pspace_exec ex = {threads, 0};

	check_mm_ex(s, name, R, d, k, &ex, tol, out_y);
}

/* diag, trace, frob2 and dense (whole and per block) against R. */
static void check_reductions(pspace_store *s, const mspec *m, const double *R, int threads)
{
	pspace_exec ex = {threads, 0};
	uint64_t d = spec_d(m), off = 0;
	double tol = tol_of(m->dtype), tr = 0.0, fr = 0.0, v;
	double *diag = malloc(d * sizeof(double)), *D = malloc(d * (d + 3) * sizeof(double));
	pspace_tiled t;
	uint64_t before;

	assert_non_null(diag);
	assert_non_null(D);
	for (uint64_t i = 0; i < d; i++) {
		tr += R[i * d + i];
		for (uint64_t j = 0; j < d; j++)
			fr += R[i * d + j] * R[i * d + j];
	}
	assert_int_equal(pspace_tiled_open(&t, s, m->name), 0);

	assert_int_equal(pspace_stream_diag(&t, &ex, diag), 0);
	for (uint64_t i = 0; i < d; i++)
		assert_true(fabs(diag[i] - R[i * d + i]) <= tol * fabs(R[i * d + i]));
	assert_int_equal(pspace_stream_trace(&t, &ex, &v), 0);
	assert_true(fabs(v - tr) <= tol * fabs(tr) + 1e-300);
	before = pspace_store_tiles_read(s);
	assert_int_equal(pspace_stream_frob2(&t, &ex, &v), 0);
	assert_int_equal(pspace_store_tiles_read(s) - before, pspace_tiled_count(&t));
	assert_true(fabs(v - fr) <= tol * fr);

	/* the whole matrix, ld > d, both triangles */
	assert_int_equal(pspace_stream_dense(&t, &ex, UINT32_MAX, D, d + 3), 0);
	for (uint64_t i = 0; i < d; i++)
		for (uint64_t j = 0; j < d; j++)
			assert_true(D[i * (d + 3) + j] == R[i * d + j]);
	/* each block on its own */
	for (uint32_t b = 0; b < m->nblocks; b++) {
		uint64_t n = m->dims[b];

		before = pspace_store_tiles_read(s);
		assert_int_equal(pspace_stream_dense(&t, &ex, b, D, n), 0);
		for (uint64_t i = 0; i < n; i++)
			for (uint64_t j = 0; j < n; j++)
				assert_true(D[i * n + j] == R[(off + i) * d + off + j]);
		{
			uint64_t nt = (n + m->tile - 1) / m->tile;

			assert_int_equal(pspace_store_tiles_read(s) - before,
			                 m->symmetric ? nt * (nt + 1) / 2 : nt * nt);
		}
		off += n;
	}
	pspace_tiled_close(&t);
	free(D);
	free(diag);
}

/* ---- tests ----------------------------------------------------------------------- */

/* k = 9: the 16-lane kernel with lanes to spare in its second half of 8 */
static const uint32_t ks[] = {1, 3, 9, 16};
#define NK (int)(sizeof(ks) / sizeof(ks[0]))

static void test_stream_mm_dense(void **state)
{
	static const pspace_dtype types[2] = {PSPACE_F32, PSPACE_F64};
	size_t d = 1000;
	double *F = make_fisher(d, 150, 1);
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	for (int ti = 0; ti < 2; ti++) {
		mspec m = {types[ti] == PSPACE_F32 ? "F32" : "F64",
		           PSPACE_KIND_DENSE,
		           1,
		           {1000},
		           128,
		           1,
		           types[ti],
		           3};
		double *R;

		put_matrix(ts.s, &m, F, NULL);
		R = stored_reference(&m, F, NULL);
		for (int ki = 0; ki < NK; ki++)
			for (int th = 1; th <= 3; th++)
				check_mm(ts.s, m.name, R, d, ks[ki], th, tol_of(m.dtype), NULL);
		/* above the fused kernel's limit: BLIS sgemm / dgemm */
		check_mm(ts.s, m.name, R, d, 20, 2, tol_of(m.dtype), NULL);
		check_reductions(ts.s, &m, R, 2);
		free(R);
	}
	fx_store_close(&ts);
	free(F);
}

static void test_stream_mm_blockdiag(void **state)
{
	static const pspace_dtype types[2] = {PSPACE_F32, PSPACE_F64};
	size_t d = 1000;
	double *F = make_fisher(d, 120, 2);
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	for (int ti = 0; ti < 2; ti++) {
		mspec m = {types[ti] == PSPACE_F32 ? "B32" : "B64",
		           PSPACE_KIND_BLOCKDIAG,
		           3,
		           {300, 129, 571},
		           64,
		           1,
		           types[ti],
		           ti == 0 ? 0 : 3};
		double *R;

		put_matrix(ts.s, &m, F, NULL);
		R = stored_reference(&m, F, NULL);
		for (int ki = 0; ki < NK; ki++)
			for (int th = 1; th <= 3; th += 2)
				check_mm(ts.s, m.name, R, d, ks[ki], th, tol_of(m.dtype), NULL);
		check_reductions(ts.s, &m, R, 3);
		check_reductions(ts.s, &m, R, 1);
		free(R);
	}
	fx_store_close(&ts);
	free(F);
}

/*
 * Tiles that mm takes in row panels, several per tile (edges 128 and 200;
 * the last tile row not a multiple of the panel): f32 raw (read in place)
 * and as byte planes, bf16 as byte planes and raw (converted), against the
 * float64 reference of the stored (rounded) matrix.
 */
static void test_stream_mm_panels(void **state)
{
	/* edges 512 and 299: several column blocks and panels of the 16-lane kernel, odd tails */
	/* HB: odd block offsets and widths (the AMX kernel pairs columns from an even one);
	 * HZ: bf16 tiles decoded whole (zstd without the shuffle) */
	static const mspec cases[9] = {
	    {"R128", PSPACE_KIND_DENSE, 1, {600}, 128, 1, PSPACE_F32, 0},
	    {"R512", PSPACE_KIND_DENSE, 1, {600}, 512, 1, PSPACE_F32, 0},
	    {"P299", PSPACE_KIND_DENSE, 1, {600}, 299, 1, PSPACE_F32, 3},
	    {"R200", PSPACE_KIND_DENSE, 1, {600}, 200, 1, PSPACE_F32, 0},
	    {"P200", PSPACE_KIND_DENSE, 1, {600}, 200, 1, PSPACE_F32, 3},
	    {"H3", PSPACE_KIND_DENSE, 1, {600}, 128, 1, PSPACE_BF16, 3},
	    {"H0", PSPACE_KIND_DENSE, 1, {600}, 128, 1, PSPACE_BF16, 0},
	    {"HB", PSPACE_KIND_BLOCKDIAG, 2, {301, 299}, 128, 1, PSPACE_BF16, 3},
	    {"HZ", PSPACE_KIND_DENSE, 1, {600}, 128, 1, PSPACE_BF16, -1},
	};
	size_t d = 600;
	double *F = make_fisher(d, 90, 4);
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	for (int ci = 0; ci < 9; ci++) {
		const mspec m = cases[ci];
		double *R;

		put_matrix(ts.s, &m, F, NULL);
		R = stored_reference(&m, F, NULL);
		/* f32 arithmetic on the stored values: 1e-7 to 4e-7 here; bf16 tiles,
		 * on AMX where there is AMX, within 1e-6 (without a vector element's
		 * third bf16 part, 2^-16 of it, they are at 1.9e-6) */
		double tol = m.dtype == PSPACE_BF16 ? 1e-6 : 1e-5;

		for (int ki = 0; ki < NK; ki++)
			for (int th = 1; th <= 2; th++)
				check_mm(ts.s, m.name, R, d, ks[ki], th, tol, NULL);
		check_mm(ts.s, m.name, R, d, 20, 2, tol, NULL);
		free(R);
	}
	fx_store_close(&ts);
	free(F);
}

static void test_stream_nonsymmetric(void **state)
{
	size_t d = 333;
	double *A = fx_randv(d * d, 3);
	fx_store ts;
	mspec m32 = {"N32", PSPACE_KIND_DENSE, 1, {333}, 64, 0, PSPACE_F32, 3};
	mspec m64 = {"N64", PSPACE_KIND_BLOCKDIAG, 2, {200, 133}, 64, 0, PSPACE_F64, 0};
	double *R32, *R64;
	(void)state;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m32, A, NULL);
	put_matrix(ts.s, &m64, A, NULL);
	R32 = stored_reference(&m32, A, NULL);
	R64 = stored_reference(&m64, A, NULL);
	for (int ki = 0; ki < NK; ki++) {
		check_mm(ts.s, "N32", R32, d, ks[ki], 2, tol_of(PSPACE_F32), NULL);
		check_mm(ts.s, "N64", R64, d, ks[ki], 3, tol_of(PSPACE_F64), NULL);
	}
	check_mm(ts.s, "N32", R32, d, 20, 3, tol_of(PSPACE_F32), NULL);
	check_reductions(ts.s, &m32, R32, 2);
	check_reductions(ts.s, &m64, R64, 1);
	free(R64);
	free(R32);
	fx_store_close(&ts);
	free(A);
}

/* Same matrix, tile edges 64/128/200 and 1..3 threads: same products within rounding. */
static void test_stream_invariance(void **state)
{
	static const uint32_t edges[3] = {64, 128, 200};
	size_t d = 700;
	uint32_t k = 3;
	double *F = make_fisher(d, 100, 4), *R = NULL, *first = malloc(k * d * sizeof(double));
	double *Yb = malloc(k * d * sizeof(double));
	fx_store ts;
	(void)state;

	assert_non_null(first);
	assert_non_null(Yb);
	fx_store_open(&ts, "stream");
	for (int e = 0; e < 3; e++) {
		char name[16];
		mspec m = {name, PSPACE_KIND_DENSE, 1, {700}, edges[e], 1, PSPACE_F32, 3};

		snprintf(name, sizeof(name), "E%u", edges[e]);
		put_matrix(ts.s, &m, F, NULL);
		if (!R)
			R = stored_reference(&m, F,
			                     NULL); /* f32 rounding does not depend on the edge */
		for (int th = 1; th <= 3; th++) {
			check_mm(ts.s, name, R, d, k, th, tol_of(PSPACE_F32),
			         e == 0 && th == 1 ? first : Yb);
			if (e || th > 1) {
				double er = rel_err(Yb, first, NULL, k, d, d);

				assert_true(er < 1e-6);
			}
		}
	}
	free(R);
	fx_store_close(&ts);
	free(Yb);
	free(first);
	free(F);
}

static int skip_f(uint32_t b, uint32_t r, uint32_t c)
{
	return b == 0 && ((r == 0 && c == 2) || (r == 3 && c == 3));
}

static int skip_g(uint32_t b, uint32_t r, uint32_t c)
{
	return (b == 0 && r == 1 && c == 4) || (b == 1 && r == 0 && c == 0);
}

/*
 * Block-diagonal F (f32) and G (f64 at zstd level @p g_level) of d = 500 in
 * one store, tiles of 64, each missing tiles the other has, and R = 2 F -
 * 0.5 G as stored, in float64.
 */
typedef struct pair {
	size_t d;
	double alpha[2];
	double *F, *G, *RF, *RG, *R;
	fx_store ts;
} pair;

static void pair_open(pair *p, int g_level)
{
	mspec mf = {"F", PSPACE_KIND_BLOCKDIAG, 2, {400, 100}, 64, 1, PSPACE_F32, 3};
	mspec mg = {"G", PSPACE_KIND_BLOCKDIAG, 2, {400, 100}, 64, 1, PSPACE_F64, g_level};
	size_t d = 500;

	p->d = d;
	p->alpha[0] = 2.0;
	p->alpha[1] = -0.5;
	p->F = make_fisher(d, 80, 5);
	p->G = make_fisher(d, 90, 6);
	p->R = malloc(d * d * sizeof(double));
	assert_non_null(p->R);
	fx_store_open(&p->ts, "stream");
	put_matrix(p->ts.s, &mf, p->F, skip_f);
	put_matrix(p->ts.s, &mg, p->G, skip_g);
	p->RF = stored_reference(&mf, p->F, skip_f);
	p->RG = stored_reference(&mg, p->G, skip_g);
	for (size_t i = 0; i < d * d; i++)
		p->R[i] = p->alpha[0] * p->RF[i] + p->alpha[1] * p->RG[i];
}

static void pair_close(pair *p)
{
	fx_store_close(&p->ts);
	free(p->RG);
	free(p->RF);
	free(p->R);
	free(p->G);
	free(p->F);
}

/*
 * mm of alpha[0] F + alpha[1] G (matrices "F" and "G" of @p s) in one pass
 * that reads each tile once, with k vectors, against R.
 */
static void check_mm_multi(pspace_store *s, const double *alpha, const double *R, size_t d,
                           uint32_t k, const pspace_exec *ex)
{
	size_t ld = d + 1;
	double *X = fx_randv(k * ld, 7), *Y = fx_randv(k * ld, 8);
	double *Y0 = malloc(k * ld * sizeof(double)), *Yr = malloc(k * ld * sizeof(double));
	pspace_tiled tf, tg;
	const pspace_tiled *both[2] = {&tf, &tg};
	uint64_t before;

	assert_non_null(Y0);
	assert_non_null(Yr);
	memcpy(Y0, Y, k * ld * sizeof(double));
	memcpy(Yr, Y, k * ld * sizeof(double));
	ref_mm(R, d, k, 1.0, X, ld, Yr, ld);
	assert_int_equal(pspace_tiled_open(&tf, s, "F"), 0);
	assert_int_equal(pspace_tiled_open(&tg, s, "G"), 0);
	before = pspace_store_tiles_read(s);
	assert_int_equal(pspace_stream_mm_multi(both, 2, alpha, ex, k, X, ld, Y, ld), 0);
	assert_int_equal(pspace_store_tiles_read(s) - before,
	                 pspace_tiled_count(&tf) + pspace_tiled_count(&tg));
	assert_true(rel_err(Y, Yr, Y0, k, d, ld) < 1e-5);
	pspace_tiled_close(&tg);
	pspace_tiled_close(&tf);
	free(Yr);
	free(Y0);
	free(Y);
	free(X);
}

/* Two matrices in one pass: 2 F - 0.5 G, tiles missing from either, one read each. */
static void test_stream_multi(void **state)
{
	mspec mh = {"H", PSPACE_KIND_BLOCKDIAG, 2, {400, 100}, 128, 1, PSPACE_F32, 3};
	pair p;
	(void)state;

	pair_open(&p, 3);
	put_matrix(p.ts.s, &mh, p.G, NULL);
	for (int ki = 0; ki < NK; ki++) {
		pspace_exec ex = {3, 0};

		check_mm_multi(p.ts.s, p.alpha, p.R, p.d, ks[ki], &ex);
	}
	/* different tilings */
	{
		pspace_tiled tf, th;
		const pspace_tiled *both[2] = {&tf, &th};
		double x[500] = {0}, y[500] = {0};

		assert_int_equal(pspace_tiled_open(&tf, p.ts.s, "F"), 0);
		assert_int_equal(pspace_tiled_open(&th, p.ts.s, "H"), 0);
		assert_int_equal(pspace_stream_mm_multi(both, 2, p.alpha, NULL, 1, x, p.d, y, p.d),
		                 PSPACE_EDIM);
		assert_non_null(strstr(pspace_errdetail(), "H"));
		pspace_tiled_close(&th);
		pspace_tiled_close(&tf);
	}
	pair_close(&p);
}

/* ---- walking backwards ----------------------------------------------------------- */

#define MAX_WALK 256

/* The tile addresses of a walk, in the order met. */
typedef struct walk {
	size_t n;
	uint32_t a[MAX_WALK][3];
} walk;

static int record_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	walk *w = ud;

	(void)ws;
	assert_true(w->n < MAX_WALK);
	w->a[w->n][0] = tiles[0].block;
	w->a[w->n][1] = tiles[0].row;
	w->a[w->n][2] = tiles[0].col;
	w->n++;
	return 0;
}

/* Is @p b the walk @p a backwards (@p back) or the same? */
static int same_walk(const walk *a, const walk *b, int back)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(a->a[i], b->a[back ? b->n - 1 - i : i], sizeof(a->a[i])) != 0)
			return 0;
	return 1;
}

/* The reader's walk of @p name from its first tile, or backwards from the end of blocks < @p
 * back_from. */
static void reader_walk(pspace_store *s, const char *name, int back, uint32_t back_from, walk *w)
{
	pspace_reader *r;
	pspace_tile_ref t;
	int done = 0;

	w->n = 0;
	assert_int_equal(pspace_reader_open(&r, s, name, 0), 0);
	if (back)
		assert_int_equal(pspace_reader_seek_back(r, back_from), 0);
	for (;;) {
		assert_int_equal(pspace_reader_next_with(&t, &done, r, NULL, NULL), 0);
		if (done)
			break;
		assert_true(w->n < MAX_WALK);
		w->a[w->n][0] = t.block;
		w->a[w->n][1] = t.row;
		w->a[w->n][2] = t.col;
		w->n++;
	}
	pspace_reader_close(r);
}

/*
 * Out of core, a kernel that takes the tiles in any order gets every other
 * pass over a matrix backwards (one worker: the order of the walk), so that
 * it begins where the page cache holds the last pass's end; in core, or a
 * kernel that wants streaming order, always forwards. Products stay right
 * whichever way, for one matrix or two with tiles missing from either.
 */
static void test_stream_walk_back(void **state)
{
	pspace_exec ooc = {1, 4096}, in_core = {1, 0};
	pspace_stream_kernel rec = {.tile = record_tile, .any_order = 1};
	walk fwd, back, b1, w[3], wg[2];
	pspace_tiled tf, tg;
	const pspace_tiled *both[2] = {&tf, &tg}, *one[1] = {&tf};
	pair p;
	(void)state;

	pair_open(&p, 0);

	/* the reader: backwards from the end, the forward walk reversed; from block 1, block 0's */
	reader_walk(p.ts.s, "F", 0, 0, &fwd);
	reader_walk(p.ts.s, "F", 1, 2, &back);
	/* 7 x 7 and 2 x 2 tiles: 28 + 3 upper ones, F lacks 2, G 2 others */
	assert_int_equal(fwd.n, 28 + 3 - 2);
	assert_true(same_walk(&fwd, &back, 1));
	reader_walk(p.ts.s, "F", 1, 1, &b1);
	assert_int_equal(b1.n, 28 - 2);
	for (size_t i = 0; i < b1.n; i++)
		assert_int_equal(b1.a[i][0], 0);
	back.n = b1.n;
	memcpy(back.a, fwd.a, sizeof(back.a));
	assert_true(same_walk(&back, &b1, 1));

	/* the engine on one worker: alternating out of core, forwards otherwise */
	assert_int_equal(pspace_tiled_open(&tf, p.ts.s, "F"), 0);
	assert_int_equal(pspace_tiled_open(&tg, p.ts.s, "G"), 0);
	for (int i = 0; i < 3; i++) {
		w[i].n = 0;
		assert_int_equal(pspace_stream_run(&tf, &ooc, &rec, &w[i]), 0);
	}
	assert_true(same_walk(&w[0], &w[1], 1));
	assert_true(same_walk(&w[0], &w[2], 0));
	assert_true(same_walk(&fwd, &w[0], 0) || same_walk(&fwd, &w[1], 0));
	/* passes over F and G in turn: each matrix alternates on its own */
	for (int i = 0; i < 2; i++) {
		w[i].n = wg[i].n = 0;
		assert_int_equal(pspace_stream_run(&tf, &ooc, &rec, &w[i]), 0);
		assert_int_equal(pspace_stream_run(&tg, &ooc, &rec, &wg[i]), 0);
	}
	assert_true(same_walk(&w[0], &w[1], 1));
	assert_true(same_walk(&wg[0], &wg[1], 1));
	for (int i = 0; i < 2; i++) {
		w[0].n = 0;
		assert_int_equal(pspace_stream_run(&tf, &in_core, &rec, &w[0]), 0);
		assert_true(same_walk(&fwd, &w[0], 0));
	}
	rec.any_order = 0;
	for (int i = 0; i < 2; i++) {
		w[0].n = 0;
		assert_int_equal(pspace_stream_run(&tf, &ooc, &rec, &w[0]), 0);
		assert_true(same_walk(&fwd, &w[0], 0));
	}
	/* a range of blocks: block 0 alone, one way and the other */
	rec.any_order = 1;
	for (int i = 0; i < 2; i++) {
		w[i].n = 0;
		assert_int_equal(pspace_stream_blocks(one, 1, &ooc, &rec, &w[i], 0, 0), 0);
	}
	assert_true(same_walk(&w[0], &w[1], 1));
	assert_true(same_walk(&b1, &w[0], 1) || same_walk(&b1, &w[1], 1));
	/* two matrices in one pass, their walks merged: every tile once, right */
	for (int i = 0; i < 2; i++) {
		w[i].n = 0;
		assert_int_equal(pspace_stream_blocks(both, 2, &ooc, &rec, &w[i], 0, 1), 0);
	}
	assert_int_equal(w[0].n, 28 + 3);
	assert_true(same_walk(&w[0], &w[1], 1));

	/* products out of core on one and on three workers, each twice: both ways */
	for (int i = 0; i < 4; i++) {
		pspace_exec ex = {i % 2 ? 3 : 1, 4096};
		uint32_t k = i < 2 ? 1 : 16;

		for (int pass = 0; pass < 2; pass++)
			check_mm_multi(p.ts.s, p.alpha, p.R, p.d, k, &ex);
		for (int pass = 0; pass < 2; pass++)
			check_mm_ex(p.ts.s, "F", p.RF, p.d, k, &ex, 1e-5, NULL);
	}
	pspace_tiled_close(&tg);
	pspace_tiled_close(&tf);
	pair_close(&p);
}

/*
 * A corrupted tile (raw: level 0, byte planes: level 3) fails the pass with
 * PSPACE_ECORRUPT naming it, whatever the threads.
 */
static void corrupt_level(int level)
{
	size_t d = 600;
	double *F = make_fisher(d, 60, 9);
	mspec m = {"C", PSPACE_KIND_DENSE, 1, {600}, 64, 1, PSPACE_F32, level};
	uint8_t needle[128];
	char data[192];
	pspace_reader *r;
	pspace_tile_ref ref;
	fx_store ts;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m, F, NULL);
	assert_int_equal(pspace_reader_open(&r, ts.s, "C", 0), 0);
	assert_int_equal(pspace_reader_tile(&ref, r, 0, 3, 6), 0);
	memcpy(needle, (const uint8_t *)ref.data + PSPACE_TILE_HEADER_SIZE + 1024, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(ts.s);
	ts.s = NULL;
	snprintf(data, sizeof(data), "%s/data.mdb", ts.path);
	fx_flip_in_file(data, needle, sizeof(needle));
	fx_store_reopen(&ts);

	for (int th = 1; th <= 3; th++)
		for (int ki = 0; ki < NK; ki++) {
			pspace_exec ex = {th, 0};
			uint32_t k = ks[ki];
			double *X = fx_randv(k * d, 1), *Y = fx_randv(k * d, 2);
			pspace_tiled t;
			double v;

			assert_int_equal(pspace_tiled_open(&t, ts.s, "C"), 0);
			assert_int_equal(pspace_stream_mm(&t, &ex, k, 1.0, X, d, Y, d),
			                 PSPACE_ECORRUPT);
			assert_non_null(strstr(pspace_errdetail(), "matrix C"));
			assert_non_null(strstr(pspace_errdetail(), "(0,3,6)"));
			assert_non_null(strstr(pspace_errdetail(), ts.path));
			assert_int_equal(pspace_stream_frob2(&t, &ex, &v), PSPACE_ECORRUPT);
			assert_non_null(strstr(pspace_errdetail(), "(0,3,6)"));
			/* the diagonal tiles are intact */
			assert_int_equal(pspace_stream_trace(&t, &ex, &v), 0);
			pspace_tiled_close(&t);
			free(Y);
			free(X);
		}
	fx_store_close(&ts);
	free(F);
}

static void test_stream_corrupt(void **state)
{
	(void)state;
	corrupt_level(0);
	corrupt_level(3);
}

/* A budget far below the matrix (and below one worker's codec scratch) still works. */
static void test_stream_small_budget(void **state)
{
	size_t d = 900;
	double *F = make_fisher(d, 50, 10), *R;
	mspec m = {"S", PSPACE_KIND_DENSE, 1, {900}, 128, 1, PSPACE_F32, 3};
	pspace_exec ex = {3, 64 << 10};
	pspace_tiled t;
	double v, fr = 0.0;
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m, F, NULL);
	R = stored_reference(&m, F, NULL);
	for (int ki = 0; ki < NK; ki++)
		check_mm_ex(ts.s, "S", R, d, ks[ki], &ex, 1e-5, NULL);
	assert_int_equal(pspace_tiled_open(&t, ts.s, "S"), 0);
	assert_int_equal(pspace_stream_frob2(&t, &ex, &v), 0);
	for (size_t i = 0; i < d * d; i++)
		fr += R[i] * R[i];
	assert_true(fabs(v - fr) < 1e-5 * fr);
	pspace_tiled_close(&t);
	free(R);
	fx_store_close(&ts);
	free(F);
}

/*
 * Thousands of small tiles out of core (stored bytes over the budget) on
 * three workers: the workers walk the cursors into the ring while the
 * others drain it, and every tile walked is read ahead, so a walk that
 * outran the ring's bound would show here (under ASan) or in the product.
 */
static void test_stream_many_tiles_out_of_core(void **state)
{
	size_t d = 1500;
	double *F = make_fisher(d, 40, 12), *R;
	mspec m = {"M", PSPACE_KIND_DENSE, 1, {1500}, 16, 1, PSPACE_F32, 0};
	pspace_exec ex = {3, 1 << 20};
	pspace_tiled t;
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m, F, NULL);
	R = stored_reference(&m, F, NULL);
	assert_int_equal(pspace_tiled_open(&t, ts.s, "M"), 0);
	assert_true(pspace_tiled_count(&t) > 4000);
	assert_true(t.info.tile_bytes > (uint64_t)ex.mem_budget);
	pspace_tiled_close(&t);
	for (int ki = 0; ki < NK; ki += 2)
		for (int pass = 0; pass < 3; pass++)
			check_mm_ex(ts.s, "M", R, d, ks[ki], &ex, 1e-5, NULL);
	free(R);
	fx_store_close(&ts);
	free(F);
}

/* ---- releasing the map ------------------------------------------------------------ */

/* KiB of this process's maps of @p file resident in it (Rss in /proc/self/smaps), or -1. */
static long long mapped_kib(const char *file)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[4096];
	long long kib = -1, v;
	int in = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			line[strcspn(line, "\n")] = '\0';
			in = strlen(line) >= strlen(file) &&
			     strcmp(line + strlen(line) - strlen(file), file) == 0;
		} else if (in && sscanf(line, "Rss: %lld kB", &v) == 1) {
			kib = (kib < 0 ? 0 : kib) + v;
		}
	}
	fclose(f);
	return kib;
}

/* Fraction of @p file's pages in the page cache (mincore), or -1. */
static double cached_share(const char *file)
{
	int fd = open(file, O_RDONLY);
	struct stat st;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n, in = 0;
	unsigned char *vec;
	void *p;

	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0)
		return -1;
	n = ((size_t)st.st_size + page - 1) / page;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	vec = malloc(n);
	close(fd);
	if (p == MAP_FAILED || !vec || mincore(p, (size_t)st.st_size, vec) != 0) {
		free(vec);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		in += vec[i] & 1;
	munmap(p, (size_t)st.st_size);
	free(vec);
	return (double)in / (double)n;
}

/*
 * Drops @p file's pages from the page cache (those not mapped; written
 * back first: the fixture's stores skip syncs). @return the share left.
 */
static double drop_file(const char *file)
{
	int fd = open(file, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	return cached_share(file);
}

/*
 * Out of core, the tiles a pass reads from disk leave this process's map
 * once used, by the 2 MiB region: after a cold pass over 18 MiB of tiles
 * (1176 of them, a region holds about 128) little of the map is still
 * resident in the process, forwards (a fresh handle's first pass) and
 * backwards (its second), on one worker and on three. The products stay
 * right. The map is advised MADV_RANDOM, so that page faults read no
 * further than the tile: otherwise the kernel's read-ahead can reach tiles
 * before the walk, which then finds them in the page cache and leaves them
 * mapped (as it does a matrix the page cache holds).
 */
static void test_stream_release(void **state)
{
	size_t d = 3072;
	double *F = make_fisher(d, 20, 14), *R;
	mspec m = {"C", PSPACE_KIND_DENSE, 1, {3072}, 64, 1, PSPACE_F32, 0};
	char data[160];
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m, F, NULL);
	R = stored_reference(&m, F, NULL);
	snprintf(data, sizeof(data), "%s/data.mdb", ts.path);
	for (int threads = 1; threads <= 3; threads += 2) {
		pspace_exec ex = {threads, 1 << 20};
		uintptr_t base;
		size_t size;

		/* unmapped by the close, all the file's pages can leave the page cache */
		pspace_store_close(ts.s);
		ts.s = NULL;
		(void)drop_file(data);
		fx_store_reopen(&ts);
		assert_true(pspace_store_map_range(ts.s, &base, &size));
		assert_int_equal(madvise((void *)base, size, MADV_RANDOM), 0);
		for (int pass = 0; pass < 2; pass++) {
			double share = drop_file(data);
			long long kib;

			check_mm_ex(ts.s, "C", R, d, pass ? 3 : 1, &ex, 1e-5, NULL);
			if (share < 0 || share > 0.25) {
				print_message("page cache kept %.0f%% of %s: release not checked\n",
				              100 * share, data);
				continue;
			}
			kib = mapped_kib(data);
			if (!(kib >= 0 && kib <= 4 * 1024))
				fail_msg("%d workers, pass %d: %lld KiB of %s still mapped after a "
				         "cold pass (cached before it: %.0f%%)",
				         threads, pass, kib, data, 100 * share);
		}
	}
	free(R);
	fx_store_close(&ts);
	free(F);
}

static int fail_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	(void)ws;
	(void)ud;
	if (tiles[0].row == 2 && tiles[0].col == 5)
		return PSPACE_ENUMERIC;
	return 0;
}

static void test_stream_errors(void **state)
{
	size_t d = 400;
	double *F = make_fisher(d, 20, 12);
	mspec m = {"M", PSPACE_KIND_DENSE, 1, {400}, 64, 1, PSPACE_F32, 3};
	pspace_matrix_desc desc = {0};
	pspace_writer *w;
	pspace_tiled t;
	double x[400] = {0}, y[400] = {0};
	fx_store ts;
	(void)state;

	fx_store_open(&ts, "stream");
	put_matrix(ts.s, &m, F, NULL);
	assert_int_equal(pspace_tiled_open(&t, ts.s, "nope"), PSPACE_ENOTFOUND);
	pspace_tiled_close(&t);

	desc.kind = PSPACE_KIND_DENSE;
	desc.d = 100;
	desc.nblocks = 1;
	desc.tile = 64;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	assert_int_equal(pspace_writer_begin(&w, ts.s, "building", &desc), 0);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	assert_int_equal(pspace_tiled_open(&t, ts.s, "building"), PSPACE_EINCOMPLETE);
	pspace_writer_abort(w, 1);

	assert_int_equal(pspace_tiled_open(&t, ts.s, "M"), 0);
	assert_int_equal(pspace_stream_mm(&t, NULL, 2, 1.0, x, 10, y, 10), PSPACE_EINVAL);
	assert_int_equal(pspace_stream_dense(&t, NULL, 1, F, d), PSPACE_EINVAL);
	assert_int_equal(pspace_stream_dense(&t, NULL, UINT32_MAX, F, d - 1), PSPACE_EINVAL);
	/* a kernel error stops the pass and names the tile */
	for (int th = 1; th <= 3; th++) {
		pspace_exec ex = {th, 0};
		pspace_stream_kernel k = {.tile = fail_tile};

		assert_int_equal(pspace_stream_run(&t, &ex, &k, NULL), PSPACE_ENUMERIC);
		assert_non_null(strstr(pspace_errdetail(), "(0,2,5)"));
	}
	pspace_tiled_close(&t);
	fx_store_close(&ts);
	free(F);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stream_mm_dense),
	    cmocka_unit_test(test_stream_mm_blockdiag),
	    cmocka_unit_test(test_stream_mm_panels),
	    cmocka_unit_test(test_stream_nonsymmetric),
	    cmocka_unit_test(test_stream_invariance),
	    cmocka_unit_test(test_stream_multi),
	    cmocka_unit_test(test_stream_walk_back),
	    cmocka_unit_test(test_stream_corrupt),
	    cmocka_unit_test(test_stream_small_budget),
	    cmocka_unit_test(test_stream_many_tiles_out_of_core),
	    cmocka_unit_test(test_stream_release),
	    cmocka_unit_test(test_stream_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
