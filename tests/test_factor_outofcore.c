/*
 * Out-of-core Cholesky test: the factor of a stored Dense matrix beyond
 * the memory cap (a cgroup limit that also bounds the page cache), built
 * within a small budget, killed part way and resumed, equals LAPACK's
 * float64 factor to rounding; a direct solve and the log determinant
 * through the stored factor, under the cap, equal LAPACK's. At d = 8192
 * the matrix (f64) is 1.8 times the cap, matrix and factor together 3.6
 * times, and the factorization (13 panels) reads about 1 GiB of factor
 * tiles back.
 *
 * F = G G^T / m with G a d x m Gaussian (m = 256 << d, rows scaled over
 * four decades as gradients of layers of different scales), so F is
 * singular and only F + l I is factored, as a Fisher is. F is stored
 * tile by tile from G (f64 tiles, edge 256): it never exists in RAM while
 * the capped children run. A first child drops the page cache, enters a
 * cgroup capped at CAP and runs pspace_factor_write within BUDGET until a
 * third of the columns are committed, then kills itself; a second one
 * resumes it to the end and solves k right-hand sides, the log
 * determinant and the inverse's diagonal through the stored factor
 * (pspace_mat_solve, _logdet, _diaginv beyond the in-memory factor's budget), handing the results
 * back in shared memory. The parent then forms F + l I in RAM, factors it with LAPACK dpotrf and
 * compares the stored factor tile by tile (in units of sqrt(A_ii), which bounds every |L_ij|), the
 * solves with dpotrs, the log determinant with 2 sum log L_ii and the inverse's diagonal with
 * dpotri.
 *
 * Needs root and a cgroup v1 memory controller; skipped (with the reason)
 * otherwise, and under AddressSanitizer (its shadow memory does not fit the
 * cap). PSPACE_FACTOR_OOC_D overrides d (then the size check is not made).
 */
#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "memcap.h"
#include "pspace.h"

#define MIB    ((uint64_t)1 << 20)
#define CAP    (128 * MIB)
#define BUDGET (48 * MIB)
#define TILE   256
#define RANK   256
#define NRHS   4
#define DAMP   1e-3
/*
 * Allowed above the budget in a capped child: the LMDB write transaction's
 * dirty pages (one panel's factor tiles, f64: the panel is the budget less
 * one factor column, 30 MiB here), G (shared with the parent, counted in
 * RssAnon: 16 MiB), the codec's scratch and the runtime (libraries, BLIS's
 * packing buffers, thread stacks), as in test_outofcore.
 */
#define OVERHEAD (BUDGET / 2 + 40 * MIB)
/* Largest |L_ij - Lref_ij| / sqrt(A_ii) allowed: cond(F + l I) ~ 1e4, f64. */
#define TOL 1e-10

#define CHECK(cond, ...) MEMCAP_CHECK("factor-out-of-core", cond, __VA_ARGS__)

/* The matrix: F = G G^T / RANK, G d x RANK row-major. */
typedef struct lowrank {
	uint64_t d;
	double *g;
} lowrank;

/* What the children hand back (shared memory), and what they were given. */
typedef struct shared {
	const lowrank *lr;
	const double *b;     /* NRHS x d right-hand sides */
	char cgroup[512];    /* the killed child's group, for its progress callback */
	uint64_t columns[2]; /* columns committed when each child finished */
	uint64_t panels[2];  /* panels each child committed */
	double peak[2];      /* peak anonymous memory of each child, MiB */
	double group[2];     /* peak of each capped group (incl. page cache), MiB */
	double seconds[3];   /* killed run, resumed run, solve + logdet + diaginv */
	double logdet;
	double x[]; /* NRHS x d solutions, then d: diag((F + l I)^-1) */
} shared;

/* The store's directory (the capped children read it too). */
static char store_dir[64];

static void lowrank_init(lowrank *lr, uint64_t d)
{
	lr->d = d;
	lr->g = malloc(sizeof(double) * RANK * d);
	assert_non_null(lr->g);
	pspace_vec_randn(RANK * d, 13, lr->g);
	for (uint64_t p = 0; p < d; p++)
		pspace_vec_scale(RANK, pow(10.0, -(double)(p * 4 / d) / 2.0), lr->g + p * RANK);
}

/* rows x cols of F at (r0, c0) into @p out (leading dimension @p ld) by BLIS dgemm. */
static void lowrank_block(const lowrank *lr, uint64_t r0, uint64_t c0, uint64_t rows, uint64_t cols,
                          double *out, size_t ld)
{
	double alpha = 1.0 / RANK, beta = 0.0;

	bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)rows, (dim_t)cols, RANK, &alpha,
	          lr->g + r0 * RANK, RANK, 1, lr->g + c0 * RANK, RANK, 1, &beta, out, (inc_t)ld, 1);
}

/* pspace_tile_fn */
static int lowrank_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                        double *tile)
{
	lowrank_block(ud, r0, c0, rows, cols, tile, cols);
	return 0;
}

/* Child 1's progress: after a third of the columns, records its peak and kills itself. */
static void kill_at_third(void *ud, uint64_t done, uint64_t total)
{
	shared *sh = ud;

	sh->panels[0]++;
	if (done * 3 < total)
		return;
	sh->columns[0] = done;
	sh->peak[0] = (double)memcap_sampler_stop() / MIB;
	sh->group[0] = (double)memcap_read(sh->cgroup, "memory.max_usage_in_bytes") / MIB;
	raise(SIGTERM);
}

/* Child 2's progress: counts the panels. */
static void count_panels(void *ud, uint64_t done, uint64_t total)
{
	shared *sh = ud;

	(void)total;
	sh->panels[1]++;
	sh->columns[1] = done;
}

/* memcap_run's entry point of the first capped child: factors until killed. */
static void child_killed(void *ud, const char *cgroup)
{
	shared *sh = ud;
	pspace_exec ex = {2, BUDGET};
	pspace_factor_opts fo;
	pspace_store *s = NULL;
	int rc;

	snprintf(sh->cgroup, sizeof(sh->cgroup), "%s", cgroup);
	CHECK(memcap_sampler_start() == 0, "sampler");
	rc = pspace_store_open(&s, store_dir, NULL);
	CHECK(rc == 0, "open store %s: %s", store_dir, pspace_strerror(rc));
	pspace_factor_opts_default(&fo);
	fo.damping = DAMP;
	fo.progress = kill_at_third;
	fo.progress_ud = sh;
	rc = pspace_factor_write(s, "L", "F", &ex, &fo);
	CHECK(0, "factor returned %d (%s) instead of being killed", rc, pspace_strerror(rc));
}

/* The second capped child: resumes the factor, then solves and log det through it. */
static void child_resumed(void *ud, const char *cgroup)
{
	shared *sh = ud;
	uint64_t d = sh->lr->d;
	pspace_exec ex = {2, BUDGET};
	pspace_factor_opts fo;
	pspace_store *s = NULL;
	pspace_mat *f = NULL;
	double t0;
	int rc;

	CHECK(memcap_sampler_start() == 0, "sampler");
	rc = pspace_store_open(&s, store_dir, NULL);
	CHECK(rc == 0, "open store %s: %s", store_dir, pspace_strerror(rc));
	pspace_factor_opts_default(&fo);
	fo.damping = DAMP;
	fo.resume = 1;
	fo.progress = count_panels;
	fo.progress_ud = sh;
	t0 = memcap_now();
	rc = pspace_factor_write(s, "L", "F", &ex, &fo);
	CHECK(rc == 0, "resumed factor: %s", pspace_strerror(rc));
	sh->seconds[1] = memcap_now() - t0;
	/* d^2 doubles are far beyond the budget: both go through the stored factor */
	rc = pspace_mat_open(&f, s, "F");
	CHECK(rc == 0, "open F: %s", pspace_strerror(rc));
	rc = pspace_mat_solve(f, &ex, DAMP, NRHS, sh->b, d, sh->x, d);
	CHECK(rc == 0, "solve: %s", pspace_strerror(rc));
	rc = pspace_mat_logdet(&sh->logdet, f, &ex, DAMP);
	CHECK(rc == 0, "logdet: %s", pspace_strerror(rc));
	rc = pspace_mat_diaginv(sh->x + NRHS * d, f, &ex, DAMP);
	CHECK(rc == 0, "diaginv: %s", pspace_strerror(rc));
	sh->seconds[2] = memcap_now() - t0 - sh->seconds[1];
	pspace_mat_free(f);
	pspace_store_close(s);
	sh->peak[1] = (double)memcap_sampler_stop() / MIB;
	sh->group[1] = (double)memcap_read(cgroup, "memory.max_usage_in_bytes") / MIB;
	fflush(stdout);
	_exit(0);
}

/*
 * Compares stored factor "L" with @p A, whose lower triangle (row-major)
 * holds LAPACK's factor and whose diagonal was A_ii before: @p adiag.
 * @return the largest |L_ij - Lref_ij| / sqrt(A_ii).
 */
static double compare_factor(pspace_store *s, const double *A, const double *adiag, uint64_t d,
                             uint64_t *tiles)
{
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	double *t = malloc(sizeof(double) * TILE * TILE), worst = 0;

	assert_non_null(t);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_open(&r, s, "L", 0), 0);
	assert_int_equal(pspace_reader_info(r)->kind, PSPACE_KIND_CHOLESKY);
	*tiles = 0;
	for (;;) {
		pspace_tile_ref tr;
		pspace_tile_header h;
		int done = 0;

		assert_int_equal(pspace_reader_next(&tr, &done, r), 0);
		if (done)
			break;
		assert_true(tr.row >= tr.col);
		assert_int_equal(pspace_tile_parse(&h, tr.data, tr.len), 0);
		assert_int_equal(pspace_reader_decode(r, c, &tr, PSPACE_F64, t, h.cols), 0);
		for (uint32_t a = 0; a < h.rows; a++)
			for (uint32_t b = 0; b < h.cols; b++) {
				uint64_t i = (uint64_t)tr.row * TILE + a,
				         j = (uint64_t)tr.col * TILE + b;
				double want = j <= i ? A[i * d + j] : 0.0;
				double e = fabs(t[(size_t)a * h.cols + b] - want) / sqrt(adiag[i]);

				worst = e > worst ? e : worst;
			}
		(*tiles)++;
	}
	pspace_reader_close(r);
	pspace_codec_free(c);
	free(t);
	return worst;
}

static void test_factor_outofcore_dense_under_cap(void **state)
{
	const char *env = getenv("PSPACE_FACTOR_OOC_D");
	uint64_t d = env ? strtoull(env, NULL, 10) : 8192, tiles = 0, nt;
	size_t shbytes;
	pspace_store *s = NULL;
	pspace_layout *layout = NULL;
	pspace_write_opts wo;
	pspace_matrix_info fi, li;
	lowrank lr;
	shared *sh;
	double *A, *adiag, *xref, t0, worst, ldref = 0, peak;
	int st;

	(void)state;
	/* Known before writing the matrix, so a skip costs nothing (the children check again). */
	memcap_require("factor-out-of-core");
	fx_dir_make(store_dir, sizeof(store_dir), "fooc");
	lowrank_init(&lr, d);
	shbytes = sizeof(shared) + sizeof(double) * (NRHS + 1) * d;
	sh = mmap(NULL, shbytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, shbytes);
	sh->lr = &lr;
	sh->b = fx_randv(NRHS * d, 17);

	t0 = memcap_now();
	assert_int_equal(pspace_store_open(&s, store_dir, NULL), 0);
	assert_int_equal(pspace_layout_flat(&layout, d), 0);
	pspace_write_opts_default(&wo);
	wo.tile = TILE;
	wo.codec.dtype = PSPACE_F64;
	assert_int_equal(
	    pspace_tiled_write(s, "F", PSPACE_KIND_DENSE, layout, lowrank_tile, &lr, &wo, NULL), 0);
	assert_int_equal(pspace_matrix_info_get(&fi, s, "F"), 0);
	pspace_layout_free(layout);
	pspace_store_close(s);
	printf("factor-out-of-core: stored F (d = %llu, f64 tiles of %u) is %.1f MiB (%.1fx the "
	       "%llu MiB cap), written in %.1f s\n",
	       (unsigned long long)d, TILE, (double)fi.tile_bytes / MIB,
	       (double)fi.tile_bytes / CAP, (unsigned long long)(CAP / MIB), memcap_now() - t0);
	if (!env)
		assert_true(fi.tile_bytes >= 3 * CAP / 2);

	/* killed after a third of the columns (SIGTERM: an OOM kill would be SIGKILL) */
	t0 = memcap_now();
	st = memcap_run(CAP, "factor-out-of-core", child_killed, sh);
	sh->seconds[0] = memcap_now() - t0;
	if (st != -SIGTERM) {
		memcap_expect_child(st, CAP);
		fail_msg("the first capped child was not killed");
	}
	st = memcap_run(CAP, "factor-out-of-core", child_resumed, sh);
	memcap_expect_child(st, CAP);

	assert_int_equal(pspace_store_open(&s, store_dir, NULL), 0);
	assert_int_equal(pspace_matrix_info_get(&li, s, "L"), 0);
	assert_int_equal(li.state, PSPACE_STATE_COMPLETE);
	if (!env)
		assert_true(fi.tile_bytes + li.tile_bytes >= 3 * CAP);
	printf("factor-out-of-core: killed after %llu of %llu columns (%llu panels, %.1f s), "
	       "resumed (%llu panels, %.1f s), solve of %d vectors, log det and diag of the "
	       "inverse through it %.1f s; "
	       "budget %llu MiB, cap %llu MiB; factor %.1f MiB; "
	       "F and its factor together %.1fx the cap\n",
	       (unsigned long long)sh->columns[0], (unsigned long long)d,
	       (unsigned long long)sh->panels[0], sh->seconds[0], (unsigned long long)sh->panels[1],
	       sh->seconds[1], NRHS, sh->seconds[2], (unsigned long long)(BUDGET / MIB),
	       (unsigned long long)(CAP / MIB), (double)li.tile_bytes / MIB,
	       (double)(fi.tile_bytes + li.tile_bytes) / CAP);
	printf("factor-out-of-core: peak anonymous memory %.1f MiB (killed run), %.1f MiB "
	       "(resumed run, solve, logdet); peak of the capped groups (incl. page cache) %.1f, "
	       "%.1f MiB\n",
	       sh->peak[0], sh->peak[1], sh->group[0], sh->group[1]);
	peak = sh->peak[0] > sh->peak[1] ? sh->peak[0] : sh->peak[1];
	if (peak > (double)(BUDGET + OVERHEAD) / MIB)
		fail_msg("peak anonymous memory %.1f MiB exceeds budget + %llu MiB overhead", peak,
		         (unsigned long long)(OVERHEAD / MIB));
	assert_true(sh->columns[0] > 0 && sh->columns[0] < d);
	assert_int_equal(sh->columns[1], d);

	/* The reference: F + l I in RAM, LAPACK's factor in place (column-major 'U' on a
	 * symmetric row-major array: the row-major lower triangle holds L). */
	t0 = memcap_now();
	A = malloc(sizeof(double) * d * d);
	adiag = malloc(sizeof(double) * d);
	xref = malloc(sizeof(double) * NRHS * d);
	assert_non_null(A);
	assert_non_null(adiag);
	assert_non_null(xref);
	lowrank_block(&lr, 0, 0, d, d, A, d);
	for (uint64_t i = 0; i < d; i++) {
		A[i * d + i] += DAMP;
		adiag[i] = A[i * d + i];
	}
	assert_int_equal(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)d, A, (lapack_int)d), 0);
	for (uint64_t i = 0; i < d; i++)
		ldref += 2 * log(A[i * d + i]);
	memcpy(xref, sh->b, sizeof(double) * NRHS * d);
	assert_int_equal(LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', (lapack_int)d, NRHS, A,
	                                (lapack_int)d, xref, (lapack_int)d),
	                 0);
	printf("factor-out-of-core: LAPACK dpotrf of F + %g I in RAM: %.1f s\n", DAMP,
	       memcap_now() - t0);

	worst = compare_factor(s, A, adiag, d, &tiles);
	printf("factor-out-of-core: %llu factor tiles against LAPACK: largest |L_ij - Lref_ij| = "
	       "%.3g sqrt(A_ii); solve relative error %.3g; log det %.12g (LAPACK %.12g)\n",
	       (unsigned long long)tiles, worst, fx_relerr(sh->x, xref, NRHS * d), sh->logdet,
	       ldref);
	nt = (d + TILE - 1) / TILE;
	assert_int_equal(tiles, nt * (nt + 1) / 2);
	if (worst > TOL)
		fail_msg("the stored factor differs from LAPACK's by %.3g sqrt(A_ii)", worst);
	assert_true(fx_relerr(sh->x, xref, NRHS * d) < 1e-9);
	assert_true(fx_relerr1(sh->logdet, ldref) < 1e-12);
	/* the inverse's diagonal from LAPACK's factor (dpotri, in place) */
	assert_int_equal(LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', (lapack_int)d, A, (lapack_int)d), 0);
	for (uint64_t i = 0; i < d; i++)
		adiag[i] = A[i * d + i];
	printf("factor-out-of-core: diag of the inverse relative error %.3g\n",
	       fx_relerr(sh->x + NRHS * d, adiag, d));
	assert_true(fx_relerr(sh->x + NRHS * d, adiag, d) < 1e-10);
	pspace_store_close(s);

	if (fx_dir_remove(store_dir) != 0)
		printf("factor-out-of-core: could not remove %s\n", store_dir);
	free(xref);
	free(adiag);
	free(A);
	free((double *)sh->b);
	munmap(sh, shbytes);
	free(lr.g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_factor_outofcore_dense_under_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
