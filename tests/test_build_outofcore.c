/*
 * Out-of-core build test: a Dense build under a memory cap (a cgroup limit
 * that also bounds the page cache) of a matrix 4x larger than the cap
 * completes and equals the in-RAM build.
 *
 * The gradients are a low-rank in-memory Jacobian source: J, n = 32
 * examples x K = 1 output x d = 20000 parameters, Gaussian with layers of
 * different scales (as tests/test_outofcore.c), read() copying rows. The
 * parent builds "F_ram" in one pass (no cap, a budget that holds the whole
 * d x d f64 accumulator); a child drops the page cache, enters a cgroup
 * capped at CAP and builds "F_cap" in the same store within BUDGET, in many
 * passes over the source, sampling its peak anonymous memory. The parent
 * then compares F_cap with F_ram tile by tile, and both with the closed
 * form J[:, rows]^T J[:, cols] / n (plain float64 loops) on a few tiles.
 *
 * Differences are measured against the natural scale of each entry,
 * sqrt(F_ii F_jj) >= |F_ij| (Cauchy-Schwarz), with F_ii from J: a plain
 * relative difference is meaningless for the entries that cancel to ~0.
 *
 * Tile edge 256, not the default 512: the builder's smallest band is one
 * tile row, T x d f64 (512: 78 MiB at d = 20000, over the budget).
 *
 * Needs root and a cgroup v1 memory controller; skipped (with the reason)
 * otherwise, and under AddressSanitizer (its shadow memory does not fit the
 * cap). PSPACE_BUILD_OOC_D overrides d (then the 4x check is not made).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "memcap.h"
#include "pspace.h"

#define NEX    32
#define MIB    ((uint64_t)1 << 20)
#define CAP    (128 * MIB)
#define BUDGET (48 * MIB)
#define TILE   256
/*
 * Allowed above the budget in the capped child: the LMDB write
 * transaction's dirty pages (one pass's tiles as f32 before its
 * checkpoint, at most BUDGET / 2), J (shared with the parent, counted in
 * RssAnon), the codec's scratch, and the runtime (libraries, two thread
 * stacks, malloc arenas), as in test_outofcore.
 */
#define OVERHEAD (BUDGET / 2 + 40 * MIB)
/* Largest difference allowed, in units of sqrt(F_ii F_jj): f32 storage rounds at 6e-8. */
#define TOL 1e-6

typedef struct lowrank {
	uint64_t d;
	double *j;    /* NEX x d, row-major */
	double *diag; /* diag(F) = sum_x J[x, p]^2 / n */
} lowrank;

static void lowrank_init(lowrank *lr, uint64_t d)
{
	lr->d = d;
	lr->j = malloc(sizeof(double) * NEX * d);
	lr->diag = calloc(d, sizeof(double));
	assert_non_null(lr->j);
	assert_non_null(lr->diag);
	pspace_vec_randn(NEX * d, 7, lr->j);
	/* layers of different scales, as in real gradients */
	for (uint64_t x = 0; x < NEX; x++)
		for (uint64_t p = 0; p < d; p++) {
			double v = lr->j[x * d + p] * pow(10.0, -(double)(p * 4 / d) / 2.0);

			lr->j[x * d + p] = v;
			lr->diag[p] += v * v / NEX;
		}
}

/* pspace_jac_source.read: K = 1, rows copied. */
static int lowrank_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	const lowrank *lr = ud;

	for (uint64_t x = 0; x < nx; x++)
		memcpy(out + x * ld, lr->j + (x0 + x) * lr->d, sizeof(double) * lr->d);
	return 0;
}

/* Counts the passes: the Dense builder reports (pass * n + done, passes * n). */
typedef struct passes {
	uint64_t n, total;
} passes;

static void count_passes(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	passes *p = ud;

	(void)stage;
	(void)done;
	p->total = total / p->n;
}

static int build(const char *dir, const char *name, const lowrank *lr, size_t budget,
                 uint64_t batch, uint64_t *npasses, double *seconds)
{
	pspace_jac_source src = {NEX, 1, lr->d, lowrank_read, (void *)lr};
	pspace_store *s = NULL;
	pspace_layout *layout = NULL;
	pspace_build_opts o;
	passes p = {NEX, 0};
	double t0 = memcap_now();
	int rc;

	pspace_build_opts_default(&o);
	o.write.tile = TILE;
	o.exec.threads = 2;
	o.exec.mem_budget = budget;
	o.batch = batch;
	o.progress = count_passes;
	o.progress_ud = &p;
	rc = pspace_store_open(&s, dir, NULL);
	if (rc == 0)
		rc = pspace_layout_flat(&layout, lr->d);
	if (rc == 0)
		rc = pspace_build_jacobian(s, name, layout, &src, &o);
	pspace_layout_free(layout);
	pspace_store_close(s);
	*npasses = p.total;
	*seconds = memcap_now() - t0;
	return rc;
}

#define CHECK(cond, ...) MEMCAP_CHECK("build-out-of-core", cond, __VA_ARGS__)

/* The store's directory (the capped child reads it too). */
static char store_dir[64];

/* memcap_run's entry point in the capped child (@p ud: the lowrank): builds F_cap within BUDGET,
 * checks the peak. */
static void capped_child(void *ud, const char *cgroup)
{
	const lowrank *lr = ud;
	uint64_t np = 0, peak;
	double secs;
	int rc;

	CHECK(memcap_sampler_start() == 0, "sampler");
	/* batches of 8 examples: the whole input as one batch would be one
	 * direct pass without accumulators; this tests the bands */
	rc = build(store_dir, "F_cap", lr, BUDGET, 8, &np, &secs);
	CHECK(rc == 0, "build F_cap: %s", pspace_strerror(rc));
	peak = memcap_sampler_stop();
	printf("build-out-of-core: F_cap under a %llu MiB cap, budget %llu MiB: %.1f s, %llu "
	       "passes; peak anonymous memory %.1f MiB, peak of the capped group (incl. page "
	       "cache) %.1f MiB\n",
	       (unsigned long long)(CAP / MIB), (unsigned long long)(BUDGET / MIB), secs,
	       (unsigned long long)np, (double)peak / MIB,
	       (double)memcap_read(cgroup, "memory.max_usage_in_bytes") / MIB);
	CHECK(np >= 8, "%llu passes: the budget should force many", (unsigned long long)np);
	CHECK(peak <= BUDGET + OVERHEAD,
	      "peak anonymous memory %.1f MiB exceeds budget + %llu MiB overhead",
	      (double)peak / MIB, (unsigned long long)(OVERHEAD / MIB));
	fflush(stdout);
	_exit(0);
}

/* The largest |a - b| / sqrt(F_ii F_jj) over a rows x cols tile at (r0, c0). */
static double tile_diff(const lowrank *lr, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                        const double *a, const double *b)
{
	double m = 0;

	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++) {
			double s = sqrt(lr->diag[r0 + i] * lr->diag[c0 + j]);
			double e = fabs(a[(size_t)i * cols + j] - b[(size_t)i * cols + j]) / s;

			m = e > m ? e : m;
		}
	return m;
}

/* ref = J[:, r0:r0+rows]^T J[:, c0:c0+cols] / n, plain float64 loops. */
static void closed_form(const lowrank *lr, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                        double *ref)
{
	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++) {
			double s = 0;

			for (int x = 0; x < NEX; x++)
				s += lr->j[(uint64_t)x * lr->d + r0 + i] *
				     lr->j[(uint64_t)x * lr->d + c0 + j];
			ref[(size_t)i * cols + j] = s / NEX;
		}
}

/* Reads one tile of matrix @p name as f64. */
static void read_tile(pspace_store *s, const char *name, uint32_t tr, uint32_t tc, double *out)
{
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	pspace_tile_ref t;
	pspace_tile_header h;

	assert_int_equal(pspace_reader_open(&r, s, name, 0), 0);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_tile(&t, r, 0, tr, tc), 0);
	assert_int_equal(pspace_tile_parse(&h, t.data, t.len), 0);
	assert_int_equal(pspace_reader_decode(r, c, &t, PSPACE_F64, out, h.cols), 0);
	pspace_codec_free(c);
	pspace_reader_close(r);
}

/* Compares F_cap with F_ram tile by tile, in streaming order. */
static void compare_all(pspace_store *s, const lowrank *lr)
{
	pspace_reader *ra = NULL, *rb = NULL;
	pspace_codec *c = NULL;
	double *a = malloc(sizeof(double) * TILE * TILE), *b = malloc(sizeof(double) * TILE * TILE);
	uint64_t tiles = 0, identical = 0;
	double worst = 0;

	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_open(&ra, s, "F_ram", 0), 0);
	assert_int_equal(pspace_reader_open(&rb, s, "F_cap", 0), 0);
	for (;;) {
		pspace_tile_ref ta, tb;
		pspace_tile_header h;
		int da = 0, db = 0;
		double e;

		assert_int_equal(pspace_reader_next(&ta, &da, ra), 0);
		assert_int_equal(pspace_reader_next(&tb, &db, rb), 0);
		assert_int_equal(da, db);
		if (da)
			break;
		if (ta.block != tb.block || ta.row != tb.row || ta.col != tb.col)
			fail_msg("tile %llu: F_ram has (%u,%u,%u), F_cap (%u,%u,%u)",
			         (unsigned long long)tiles, ta.block, ta.row, ta.col, tb.block,
			         tb.row, tb.col);
		assert_int_equal(pspace_tile_parse(&h, ta.data, ta.len), 0);
		assert_int_equal(pspace_reader_decode(ra, c, &ta, PSPACE_F64, a, h.cols), 0);
		assert_int_equal(pspace_reader_decode(rb, c, &tb, PSPACE_F64, b, h.cols), 0);
		e = tile_diff(lr, (uint64_t)ta.row * TILE, (uint64_t)ta.col * TILE, h.rows, h.cols,
		              a, b);
		if (e > TOL)
			fail_msg("tile (%u,%u): F_cap differs from F_ram by %.3g sqrt(F_ii F_jj)",
			         ta.row, ta.col, e);
		worst = e > worst ? e : worst;
		identical += memcmp(a, b, sizeof(double) * h.rows * h.cols) == 0;
		tiles++;
	}
	printf("build-out-of-core: %llu tiles compared, %llu bit-identical, largest difference "
	       "%.3g sqrt(F_ii F_jj)\n",
	       (unsigned long long)tiles, (unsigned long long)identical, worst);
	pspace_reader_close(rb);
	pspace_reader_close(ra);
	pspace_codec_free(c);
	free(b);
	free(a);
}

/* Both matrices against the closed form on a few tiles: corners, diagonal, the edge. */
static void compare_closed_form(pspace_store *s, const lowrank *lr)
{
	uint32_t nt = (uint32_t)((lr->d + TILE - 1) / TILE);
	const uint32_t at[][2] = {
	    {0, 0}, {0, nt - 1}, {nt / 2, nt / 2}, {nt / 3, nt / 2 + 1}, {nt - 1, nt - 1}};
	static const char *const names[] = {"F_ram", "F_cap"};
	double *ref = malloc(sizeof(double) * TILE * TILE),
	       *t = malloc(sizeof(double) * TILE * TILE);
	double worst = 0;

	assert_non_null(ref);
	assert_non_null(t);
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		uint64_t r0 = (uint64_t)at[k][0] * TILE, c0 = (uint64_t)at[k][1] * TILE;
		uint32_t rows = (uint32_t)(lr->d - r0 < TILE ? lr->d - r0 : TILE);
		uint32_t cols = (uint32_t)(lr->d - c0 < TILE ? lr->d - c0 : TILE);

		closed_form(lr, r0, c0, rows, cols, ref);
		for (int m = 0; m < 2; m++) {
			double e;

			read_tile(s, names[m], at[k][0], at[k][1], t);
			e = tile_diff(lr, r0, c0, rows, cols, t, ref);
			if (e > TOL)
				fail_msg("%s tile (%u,%u) differs from J^T J / n by %.3g "
				         "sqrt(F_ii F_jj)",
				         names[m], at[k][0], at[k][1], e);
			worst = e > worst ? e : worst;
		}
	}
	printf("build-out-of-core: %zu tiles of both against J_r^T J_c / n: largest difference "
	       "%.3g sqrt(F_ii F_jj)\n",
	       sizeof(at) / sizeof(at[0]), worst);
	free(t);
	free(ref);
}

static void test_build_outofcore_dense_under_cap(void **state)
{
	const char *env = getenv("PSPACE_BUILD_OOC_D");
	uint64_t d = env ? strtoull(env, NULL, 10) : 20000, np = 0;
	pspace_store *s = NULL;
	pspace_matrix_info ram, cap;
	lowrank lr;
	double secs;
	int st;

	(void)state;
	/* Known before the in-RAM build, so a skip costs nothing (the child checks again). */
	memcap_require("build-out-of-core");
	fx_dir_make(store_dir, sizeof(store_dir), "booc");
	lowrank_init(&lr, d);

	/* In RAM: one pass, the whole upper band of d x d f64 accumulators. */
	assert_int_equal(
	    build(store_dir, "F_ram", &lr, (size_t)(8 * d * d + 256 * MIB), 0, &np, &secs), 0);
	printf("build-out-of-core: F_ram in RAM (budget %.0f MiB): %.1f s, %llu pass(es)\n",
	       (double)(8 * d * d + 256 * MIB) / MIB, secs, (unsigned long long)np);
	assert_int_equal(np, 1);

	st = memcap_run(CAP, "build-out-of-core", capped_child, &lr);
	memcap_expect_child(st, CAP);

	assert_int_equal(pspace_store_open(&s, store_dir, NULL), 0);
	assert_int_equal(pspace_matrix_info_get(&ram, s, "F_ram"), 0);
	assert_int_equal(pspace_matrix_info_get(&cap, s, "F_cap"), 0);
	assert_int_equal(cap.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(cap.tiles, ram.tiles);
	printf("build-out-of-core: d = %llu, tile %u, stored F_cap %.1f MiB = %.2fx the %llu MiB "
	       "cap (F_ram %.1f MiB), %llu tiles\n",
	       (unsigned long long)d, TILE, (double)cap.tile_bytes / MIB,
	       (double)cap.tile_bytes / CAP, (unsigned long long)(CAP / MIB),
	       (double)ram.tile_bytes / MIB, (unsigned long long)cap.tiles);
	if (!env)
		assert_true(cap.tile_bytes >= 4 * CAP);
	compare_all(s, &lr);
	compare_closed_form(s, &lr);
	pspace_store_close(s);

	if (fx_dir_remove(store_dir) != 0)
		printf("build-out-of-core: could not remove %s\n", store_dir);
	free(lr.diag);
	free(lr.j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_outofcore_dense_under_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
