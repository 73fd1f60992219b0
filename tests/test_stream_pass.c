/*
 * Tests of the streaming engine's passes over a linear combination of
 * matrices of one tiling (src/kernel): pspace_stream_frob2_multi (squared
 * Frobenius norm, trace and diagonal of 2 F - 0.5 G) and the pull pass
 * (pspace_stream_pull_*) that hands out the combined tiles in streaming
 * order: every tile, every other tile, a tile stored in neither matrix, a
 * consumer that stops half way, and tilings that differ. Each stored tile
 * is read once per pass (pspace_store_tiles_read).
 *
 * F and G are symmetric, stored as f64 with some tiles left out; the
 * reference is the float64 dense matrix the store holds (zeros in the
 * missing tiles), computed here.
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
#include "kernel/stream.h"
#include "pspace/store.h"

#define D    300 /* not a multiple of the tile edge */
#define TILE 64
#define NT   ((D + TILE - 1) / TILE)
#define TOL  1e-12

static const double ALPHA[2] = {2.0, -0.5};

/* Tiles left out: (0,1) of both (so stored in neither), (2,4) of F, (0,0) of G. */
static int omit(int which, uint32_t r, uint32_t c)
{
	return (r == 0 && c == 1) || (which == 0 && r == 2 && c == 4) ||
	       (which == 1 && r == 0 && c == 0);
}

/* A random symmetric matrix with the omitted tiles (and their mirrors) zero. */
static double *make(int which, uint64_t seed)
{
	double *M = fx_randv((size_t)D * D, seed);

	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < D; j++) {
			uint32_t r = (uint32_t)(i / TILE), c = (uint32_t)(j / TILE);

			if (j < i)
				M[i * D + j] = M[j * D + i];
			if (omit(which, r < c ? r : c, r < c ? c : r))
				M[i * D + j] = 0.0;
		}
	return M;
}

static void put(pspace_store *s, const char *name, int which, const double *M, uint32_t tile)
{
	pspace_matrix_desc desc = {0};
	uint64_t dims[1] = {D};
	pspace_writer *w;
	uint32_t nt = (D + tile - 1) / tile;

	desc.kind = PSPACE_KIND_DENSE;
	desc.d = D;
	desc.nblocks = 1;
	desc.block_dims = dims;
	desc.tile = tile;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	desc.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_writer_begin(&w, s, name, &desc), 0);
	for (uint32_t r = 0; r < nt; r++)
		for (uint32_t c = r; c < nt; c++)
			if (tile != TILE || !omit(which, r, c))
				assert_int_equal(pspace_writer_put_tile(w, 0, r, c, PSPACE_F64,
				                                        M + (size_t)r * tile * D +
				                                            (size_t)c * tile,
				                                        D),
				                 0);
	assert_int_equal(pspace_writer_finish(w), 0);
}

typedef struct fixture {
	fx_store st;
	double *F, *G, *R; /* R = ALPHA[0] F + ALPHA[1] G */
	pspace_tiled tf, tg;
	const pspace_tiled *both[2];
} fixture;

static int setup(void **state)
{
	fixture *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	x->F = make(0, 11);
	x->G = make(1, 12);
	x->R = malloc((size_t)D * D * sizeof(double));
	assert_non_null(x->R);
	for (size_t i = 0; i < (size_t)D * D; i++)
		x->R[i] = ALPHA[0] * x->F[i] + ALPHA[1] * x->G[i];
	fx_store_open(&x->st, "stream-pass");
	put(x->st.s, "F", 0, x->F, TILE);
	put(x->st.s, "G", 1, x->G, TILE);
	put(x->st.s, "G50", 1, x->G, 50);
	assert_int_equal(pspace_tiled_open(&x->tf, x->st.s, "F"), 0);
	assert_int_equal(pspace_tiled_open(&x->tg, x->st.s, "G"), 0);
	x->both[0] = &x->tf;
	x->both[1] = &x->tg;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fixture *x = *state;

	pspace_tiled_close(&x->tg);
	pspace_tiled_close(&x->tf);
	fx_store_close(&x->st);
	free(x->R);
	free(x->G);
	free(x->F);
	free(x);
	return 0;
}

static void test_stream_pass_frob2(void **state)
{
	fixture *x = *state;
	double f2, tr, diag[D], rf2 = 0, rtr = 0, rdiag[D];
	const pspace_exec execs[] = {{1, 0}, {3, 0}, {2, 48 << 10}};
	uint64_t before;

	for (size_t i = 0; i < (size_t)D * D; i++)
		rf2 += x->R[i] * x->R[i];
	for (size_t i = 0; i < D; i++) {
		rdiag[i] = x->R[i * D + i];
		rtr += rdiag[i];
	}
	for (size_t e = 0; e < 3; e++) {
		before = pspace_store_tiles_read(x->st.s);
		assert_int_equal(
		    pspace_stream_frob2_multi(x->both, 2, ALPHA, &execs[e], &f2, &tr, diag), 0);
		assert_int_equal(pspace_store_tiles_read(x->st.s) - before,
		                 pspace_tiled_count(&x->tf) + pspace_tiled_count(&x->tg));
		assert_true(fabs(f2 - rf2) < TOL * rf2);
		assert_true(fabs(tr - rtr) < TOL * fabs(rf2));
		assert_true(fx_relerr(diag, rdiag, D) < TOL);
	}
	assert_int_equal(pspace_stream_frob2_multi(x->both, 2, ALPHA, NULL, &f2, &tr, NULL), 0);
	assert_true(fabs(f2 - rf2) < TOL * rf2);
}

/* Checks tile (r, c) of R against @p tile. */
static void check_tile(const fixture *x, uint32_t r, uint32_t c, const double *tile)
{
	uint32_t rows = D - r * TILE < TILE ? D - r * TILE : TILE;
	uint32_t cols = D - c * TILE < TILE ? D - c * TILE : TILE;

	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++)
			assert_true(fabs(tile[i * cols + j] -
			                 x->R[(size_t)(r * TILE + i) * D + c * TILE + j]) < 1e-13);
}

static void test_stream_pass_pull(void **state)
{
	fixture *x = *state;
	double *tile = malloc(TILE * TILE * sizeof(double));
	pspace_stream_pull *p;
	uint64_t before;
	const pspace_exec small = {4, 1}; /* one tile ahead */

	assert_non_null(tile);
	/* every upper tile, in order; (0,1) is in neither matrix: zeros */
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_stream_pull_start(&p, x->both, 2, ALPHA, NULL), 0);
	for (uint32_t r = 0; r < NT; r++)
		for (uint32_t c = r; c < NT; c++) {
			memset(tile, 0xff, TILE * TILE * sizeof(double));
			assert_int_equal(pspace_stream_pull_tile(p, 0, r, c, tile), 0);
			check_tile(x, r, c, tile);
		}
	pspace_stream_pull_free(p);
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before,
	                 pspace_tiled_count(&x->tf) + pspace_tiled_count(&x->tg));

	/* every other tile, with one slot ahead: the others are dropped */
	assert_int_equal(pspace_stream_pull_start(&p, x->both, 2, ALPHA, &small), 0);
	for (uint32_t r = 0, n = 0; r < NT; r++)
		for (uint32_t c = r; c < NT; c++, n++)
			if (n % 2) {
				assert_int_equal(pspace_stream_pull_tile(p, 0, r, c, tile), 0);
				check_tile(x, r, c, tile);
			}
	pspace_stream_pull_free(p);

	/* a consumer that stops after two tiles, and one that asks for none */
	assert_int_equal(pspace_stream_pull_start(&p, x->both, 2, ALPHA, &small), 0);
	assert_int_equal(pspace_stream_pull_tile(p, 0, 0, 0, tile), 0);
	check_tile(x, 0, 0, tile);
	assert_int_equal(pspace_stream_pull_tile(p, 0, 0, 2, tile), 0);
	check_tile(x, 0, 2, tile);
	pspace_stream_pull_free(p);
	assert_int_equal(pspace_stream_pull_start(&p, x->both, 2, ALPHA, NULL), 0);
	pspace_stream_pull_free(p);
	pspace_stream_pull_free(NULL);

	/* an address outside the matrix */
	assert_int_equal(pspace_stream_pull_start(&p, x->both, 2, ALPHA, NULL), 0);
	assert_int_equal(pspace_stream_pull_tile(p, 0, NT, NT, tile), PSPACE_EINVAL);
	pspace_stream_pull_free(p);
	free(tile);
}

static void test_stream_pass_tilings(void **state)
{
	fixture *x = *state;
	pspace_tiled t50;
	const pspace_tiled *mixed[2] = {&x->tf, &t50};
	pspace_stream_pull *p = (pspace_stream_pull *)1;
	double f2, tr;

	assert_int_equal(pspace_tiled_open(&t50, x->st.s, "G50"), 0);
	assert_int_equal(pspace_tiled_same(&x->tf, &x->tg), 1);
	assert_int_equal(pspace_tiled_same(&x->tf, &t50), 0);
	assert_int_equal(pspace_stream_pull_start(&p, mixed, 2, ALPHA, NULL), PSPACE_EDIM);
	assert_null(p);
	assert_non_null(strstr(pspace_errdetail(), "G50"));
	assert_int_equal(pspace_stream_frob2_multi(mixed, 2, ALPHA, NULL, &f2, &tr, NULL),
	                 PSPACE_EDIM);
	pspace_tiled_close(&t50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stream_pass_frob2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_pass_pull, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_pass_tilings, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
