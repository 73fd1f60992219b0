/*
 * Tests of the out-of-core Cholesky factor (pspace_factor_write, the
 * `pspace factor` tool) and of its use: direct solves, log det and samples
 * of stored matrices beyond the memory budget.
 *
 * References are float64 dense computations of this file from the arrays
 * the stored matrices were written from: LAPACK dpotrf of F + l I (the
 * factor, to rounding), dposv (solves), 2 sum log L_ii (log det). Budgets
 * are small so that a factorization takes several panels.
 */
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/npy.h"
#include "pspace/store.h"

#define TILE 64
#define MEM  ((size_t)1 << 20) /* a panel of 2 to 7 tile columns at d = 500 */

/* F = G G^T / m + 0.05 I with G d x m uniform (seeded): positive definite, row-major. */
static double *spd(size_t d, uint64_t seed)
{
	size_t m = d / 2;
	double *G = fx_randv(d * m, seed), *F = calloc(d * d, sizeof(double));

	assert_non_null(F);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j <= i; j++) {
			double s = 0;

			for (size_t k = 0; k < m; k++)
				s += G[i * m + k] * G[j * m + k];
			F[i * d + j] = F[j * d + i] = s / (double)m + (i == j ? 0.05 : 0.0);
		}
	free(G);
	return F;
}

/* The lower Cholesky factor of F + l I (row-major, zeros above), by LAPACK. */
static double *ref_chol(size_t d, const double *F, double l)
{
	double *L = malloc(d * d * sizeof(double));

	assert_non_null(L);
	memcpy(L, F, d * d * sizeof(double));
	for (size_t i = 0; i < d; i++)
		L[i * d + i] += l;
	assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)d, L, (lapack_int)d), 0);
	for (size_t i = 0; i < d; i++)
		for (size_t j = i + 1; j < d; j++)
			L[i * d + j] = 0;
	return L;
}

/*
 * Reads stored factor @p name into a d x d row-major array (0 outside the
 * blocks), checking its record: kind, not symmetric, f64 tiles, no tile
 * above the diagonal of a block, and the arrays naming @p source and @p l.
 */
static double *read_factor(pspace_store *s, const char *name, const char *source, double l)
{
	pspace_reader *r;
	pspace_codec *c;
	pspace_tile_ref t;
	pspace_matrix_info si;
	const pspace_matrix_info *mi;
	double *L, dmp = -1;
	int64_t id = -1;
	int done = 0;

	assert_int_equal(pspace_matrix_info_get(&si, s, source), 0);
	assert_int_equal(pspace_reader_open(&r, s, name, 0), 0);
	assert_int_equal(pspace_codec_create(&c), 0);
	mi = pspace_reader_info(r);
	assert_int_equal(mi->kind, PSPACE_KIND_CHOLESKY);
	assert_string_equal(pspace_kind_name(mi->kind), "cholesky");
	assert_int_equal(mi->symmetric, 0);
	assert_int_equal(mi->codec.dtype, PSPACE_F64);
	assert_int_equal(pspace_reader_array(r, "source", PSPACE_I64, &id, 1), 0);
	assert_int_equal(pspace_reader_array(r, "damping", PSPACE_F64, &dmp, 1), 0);
	assert_int_equal((uint64_t)id, si.id);
	assert_true(dmp == l);
	L = calloc(mi->d * mi->d, sizeof(double));
	assert_non_null(L);
	for (;;) {
		uint64_t r0, c0, n, off = 0;
		double tile[TILE * TILE];
		uint32_t rows, cols;

		assert_int_equal(pspace_reader_next(&t, &done, r), 0);
		if (done)
			break;
		for (uint32_t b = 0; b < t.block; b++)
			off += pspace_reader_block_dim(r, b);
		n = pspace_reader_block_dim(r, t.block);
		assert_true(t.row >= t.col);
		r0 = (uint64_t)t.row * TILE;
		c0 = (uint64_t)t.col * TILE;
		rows = (uint32_t)(n - r0 < TILE ? n - r0 : TILE);
		cols = (uint32_t)(n - c0 < TILE ? n - c0 : TILE);
		r0 += off;
		c0 += off;
		assert_int_equal(pspace_reader_decode(r, c, &t, PSPACE_F64, tile, cols), 0);
		for (uint32_t a = 0; a < rows; a++)
			memcpy(L + (r0 + a) * mi->d + c0, tile + (size_t)a * cols,
			       cols * sizeof(double));
	}
	pspace_codec_free(c);
	pspace_reader_close(r);
	return L;
}

static void write_dense(pspace_store *s, const char *name, size_t d, const double *F)
{
	pspace_write_opts wo;

	pspace_write_opts_default(&wo);
	wo.tile = TILE;
	wo.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_dense_write(s, name, NULL, d, F, d, &wo), 0);
}

/* Dense, several panels: the factor is LAPACK's; log det and solves go through it. */
static void test_factor_dense(void **state)
{
	const size_t d = 500, k = 3;
	const double l = 0.25;
	double *F = spd(d, 1), *Lref = ref_chol(d, F, l), *L, *B = fx_randv(k * d, 2);
	double *X = malloc(k * d * sizeof(double)), *Xref = malloc(k * d * sizeof(double));
	double *A = malloc(d * d * sizeof(double)), ld = 0, ldref = 0;
	pspace_factor_opts fo;
	pspace_exec ex = {1, MEM};
	pspace_mat *m;
	char found[PSPACE_NAME_MAX + 1];
	fx_store st;

	(void)state;
	assert_non_null(X);
	assert_non_null(Xref);
	assert_non_null(A);
	fx_store_open(&st, "factor");
	write_dense(st.s, "F", d, F);
	pspace_factor_opts_default(&fo);
	fo.damping = l;
	assert_int_equal(pspace_factor_write(st.s, "F.chol", "F", &ex, &fo), 0);
	L = read_factor(st.s, "F.chol", "F", l);
	assert_true(fx_relerr(L, Lref, d * d) < 1e-13);
	assert_int_equal(pspace_factor_find(found, sizeof(found), st.s, "F", l), 0);
	assert_string_equal(found, "F.chol");
	fx_expect_err(pspace_factor_find(found, sizeof(found), st.s, "F", 0.5), PSPACE_ENOTFOUND,
	              NULL, "no stored factor");
	assert_int_equal(pspace_factor_write(st.s, "F.chol", "F", &ex, &fo), PSPACE_EEXIST);

	for (size_t i = 0; i < d; i++)
		ldref += 2 * log(Lref[i * d + i]);
	/* (F + l I) X = B by LAPACK: X = B^T column by column (rows of B are the k vectors) */
	memcpy(A, F, d * d * sizeof(double));
	for (size_t i = 0; i < d; i++)
		A[i * d + i] += l;
	memcpy(Xref, B, k * d * sizeof(double));
	assert_int_equal(LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', (lapack_int)d, (lapack_int)k, A,
	                               (lapack_int)d, Xref, (lapack_int)d),
	                 0);

	/* beyond the budget of the in-memory factor: the stored one is used */
	assert_int_equal(pspace_mat_open(&m, st.s, "F"), 0);
	ex.mem_budget = 64 * 1024;
	assert_int_equal(pspace_mat_logdet(&ld, m, &ex, l), 0);
	assert_true(fx_relerr1(ld, ldref) < 1e-12);
	assert_int_equal(pspace_mat_solve(m, &ex, l, (uint32_t)k, B, d, X, d), 0);
	assert_true(fx_relerr(X, Xref, k * d) < 1e-10);
	/* another damping has no factor: refused as before */
	fx_expect_err(pspace_mat_solve(m, &ex, 0.5, (uint32_t)k, B, d, X, d), PSPACE_ENOMEM, NULL,
	              "memory budget");
	memset(X, 0, k * d * sizeof(double));
	assert_int_equal(pspace_factor_solve(st.s, "F.chol", &ex, (uint32_t)k, B, d, X, d), 0);
	assert_true(fx_relerr(X, Xref, k * d) < 1e-10);
	/* the square roots that make samples, through the stored factor: L z
	 * (covariance form) and L^-T z (precision form: L^T x = z checked) */
	assert_int_equal(pspace_mat_sqrt_mm(X, d, m, &ex, l, 1, (uint32_t)k, B, d), 0);
	for (size_t r = 0; r < k; r++)
		for (size_t i = 0; i < d; i++) {
			double want = 0;

			for (size_t j = 0; j <= i; j++)
				want += Lref[i * d + j] * B[r * d + j];
			Xref[r * d + i] = want;
		}
	assert_true(fx_relerr(X, Xref, k * d) < 1e-12);
	assert_int_equal(pspace_mat_sqrt_mm(X, d, m, &ex, l, 0, (uint32_t)k, B, d), 0);
	for (size_t r = 0; r < k; r++)
		for (size_t j = 0; j < d; j++) {
			double got = 0;

			for (size_t i = j; i < d; i++)
				got += Lref[i * d + j] * X[r * d + i];
			Xref[r * d + j] = got;
		}
	assert_true(fx_relerr(Xref, B, k * d) < 1e-10);
	/* the inverse's diagonal through the stored factor (groups of one tile
	 * column at this budget, then of all of them), against LAPACK's inverse
	 * of the reference factor */
	memcpy(A, Lref, d * d * sizeof(double));
	assert_int_equal(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)d, A, (lapack_int)d), 0);
	for (size_t i = 0; i < d; i++)
		Xref[i] = A[i * d + i];
	assert_int_equal(pspace_mat_diaginv(X, m, &ex, l), 0);
	assert_true(fx_relerr(X, Xref, d) < 1e-11);
	memset(X, 0, d * sizeof(double));
	assert_int_equal(pspace_factor_diaginv(X, st.s, "F.chol", &(pspace_exec){1, 64 << 20}), 0);
	assert_true(fx_relerr(X, Xref, d) < 1e-11);
	pspace_mat_free(m);

	free(A);
	free(Xref);
	free(X);
	free(B);
	free(L);
	free(Lref);
	free(F);
	fx_store_close(&st);
}

/* Not positive definite: the global pivot in the message, nothing left behind. */
static void test_factor_not_pd(void **state)
{
	const size_t d = 300;
	double *F = spd(d, 3);
	pspace_factor_opts fo;
	pspace_exec ex = {1, MEM};
	pspace_matrix_info mi;
	fx_store st;

	(void)state;
	F[217 * d + 217] -= 100.0;
	fx_store_open(&st, "factor");
	write_dense(st.s, "F", d, F);
	pspace_factor_opts_default(&fo);
	fx_expect_err(pspace_factor_write(st.s, "L", "F", &ex, &fo), PSPACE_ENUMERIC, NULL,
	              "matrix F + 0 I is not positive definite at pivot 217; try --damping");
	assert_int_equal(pspace_matrix_info_get(&mi, st.s, "L"), PSPACE_ENOTFOUND);
	/* too small a budget for one tile column: refused before writing anything */
	ex.mem_budget = 100000;
	fx_expect_err(pspace_factor_write(st.s, "L", "F", &ex, &fo), PSPACE_ENOMEM, NULL,
	              "memory budget");
	assert_int_equal(pspace_matrix_info_get(&mi, st.s, "L"), PSPACE_ENOTFOUND);
	free(F);
	fx_store_close(&st);
}

/* BlockDiag: block by block, each LAPACK's factor of its block. */
static void test_factor_blockdiag(void **state)
{
	const size_t n1 = 200, n2 = 170, d = n1 + n2;
	const double l = 0.1;
	double *b1 = spd(n1, 4), *b2 = spd(n2, 5), *L1, *L2;
	double *Lref = calloc(d * d, sizeof(double)), *L;
	const double *blocks[2] = {b1, b2};
	pspace_factor_opts fo;
	pspace_exec ex = {1, MEM / 2};
	pspace_write_opts wo;
	pspace_layout *ly;
	fx_store st;

	(void)state;
	assert_non_null(Lref);
	fx_store_open(&st, "factor");
	assert_int_equal(
	    pspace_layout_parse(&ly, "a generic 200 nobias\nb generic 170 nobias\n", "test"), 0);
	pspace_write_opts_default(&wo);
	wo.tile = TILE;
	assert_int_equal(pspace_blockdiag_write(st.s, "B", ly, blocks, &wo), 0);
	/* the blocks are stored in f32 (the default): the factor is of those values, in f64 */
	for (size_t i = 0; i < n1 * n1; i++)
		b1[i] = (double)(float)b1[i];
	for (size_t i = 0; i < n2 * n2; i++)
		b2[i] = (double)(float)b2[i];
	L1 = ref_chol(n1, b1, l);
	L2 = ref_chol(n2, b2, l);
	for (size_t i = 0; i < n1; i++)
		memcpy(Lref + i * d, L1 + i * n1, n1 * sizeof(double));
	for (size_t i = 0; i < n2; i++)
		memcpy(Lref + (n1 + i) * d + n1, L2 + i * n2, n2 * sizeof(double));
	pspace_factor_opts_default(&fo);
	fo.damping = l;
	assert_int_equal(pspace_factor_write(st.s, "B.chol", "B", &ex, &fo), 0);
	L = read_factor(st.s, "B.chol", "B", l);
	assert_true(fx_relerr(L, Lref, d * d) < 1e-13);
	pspace_layout_free(ly);
	free(L);
	free(Lref);
	free(L2);
	free(L1);
	free(b2);
	free(b1);
	fx_store_close(&st);
}

/* SIGKILLs itself after the second committed panel. */
static void kill_at_two(void *ud, uint64_t done, uint64_t total)
{
	int *panels = ud;

	(void)done, (void)total;
	if (++*panels == 2)
		raise(SIGKILL);
}

/* A factorization killed after two panels, resumed (with another budget): the same factor. */
static void test_factor_resume(void **state)
{
	const size_t d = 500;
	double *F = spd(d, 6), *Lfull, *Lres;
	pspace_factor_opts fo;
	pspace_exec ex = {1, MEM};
	pspace_matrix_info mi;
	fx_store st;
	int status, panels = 0;
	pid_t pid;

	(void)state;
	fx_store_open(&st, "factor");
	write_dense(st.s, "F", d, F);
	pspace_factor_opts_default(&fo);
	fo.damping = 0.5;
	assert_int_equal(pspace_factor_write(st.s, "full", "F", &ex, &fo), 0);
	Lfull = read_factor(st.s, "full", "F", 0.5);
	pspace_store_close(st.s);
	st.s = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_store *s;

		fo.progress = kill_at_two;
		fo.progress_ud = &panels;
		if (pspace_store_open(&s, st.path, NULL) == 0)
			pspace_factor_write(s, "part", "F", &ex, &fo);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	fx_store_reopen(&st);
	assert_int_equal(pspace_matrix_info_get(&mi, st.s, "part"), 0);
	assert_int_equal(mi.state, PSPACE_STATE_BUILDING);
	assert_true(mi.tiles > 0);
	/* a resume must match the source and damping it began with */
	fo.damping = 0.25;
	fo.resume = 1;
	fx_expect_err(pspace_factor_write(st.s, "part", "F", &ex, &fo), PSPACE_EINVAL, NULL,
	              "another matrix or damping");
	fo.damping = 0.5;
	ex.mem_budget = 3 * MEM;
	assert_int_equal(pspace_factor_write(st.s, "part", "F", &ex, &fo), 0);
	Lres = read_factor(st.s, "part", "F", 0.5);
	assert_memory_equal(Lres, Lfull, d * d * sizeof(double));
	free(Lres);
	free(Lfull);
	free(F);
	fx_store_close(&st);
}

/* Reads @p n doubles of .npy file @p path. */
static double *load_npy(const char *path, size_t n)
{
	pspace_npy *f;
	double *x = malloc(n * sizeof(double));

	assert_non_null(x);
	assert_int_equal(pspace_npy_open(&f, path), 0);
	assert_int_equal(pspace_npy_read(f, 0, n, x), 0);
	pspace_npy_close(f);
	return x;
}

/* The tool: pspace factor, ls, a direct solve of k right-hand sides through the factor. */
static void test_factor_cli(void **state)
{
	const size_t d = 400, k = 4;
	double *F = spd(d, 7), *B = fx_randv(k * d, 8), *A = malloc(d * d * sizeof(double)), *X;
	uint64_t shape[2] = {k, d};
	fx_store st;

	(void)state;
	assert_non_null(A);
	fx_store_open(&st, "factor");
	write_dense(st.s, "F", d, F);
	pspace_store_close(st.s);
	st.s = NULL;
	assert_int_equal(pspace_npy_write(fx_path(st.root, "b.npy"), PSPACE_F64, 2, shape, B), 0);

	assert_int_equal(fx_cli("factor %s F --damping 0.5 --mem 1M", st.path), 0);
	fx_expect_stdout("factored F + 0.5 I into F.chol.0.5 (cholesky, d = 400, f64 tiles");
	assert_int_equal(fx_cli("ls %s", st.path), 0);
	fx_expect_stdout("cholesky");
	assert_int_equal(fx_cli("factor %s F --damping 0.5", st.path), 1);
	fx_expect_stderr("exists");
	/* the in-memory direct solve does not fit 64K: the stored factor does */
	assert_int_equal(fx_cli("eval %s F solve --damping 0.5 --method direct --mem 64K --in %s "
	                        "--out %s",
	                        st.path, fx_path(st.root, "b.npy"), fx_path(st.root, "x.npy")),
	                 0);
	memcpy(A, F, d * d * sizeof(double));
	for (size_t i = 0; i < d; i++)
		A[i * d + i] += 0.5;
	assert_int_equal(LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', (lapack_int)d, (lapack_int)k, A,
	                               (lapack_int)d, B, (lapack_int)d),
	                 0);
	X = load_npy(fx_path(st.root, "x.npy"), k * d);
	assert_true(fx_relerr(X, B, k * d) < 1e-10);

	/* not positive definite: the pivot, exit 1, nothing left */
	F[5 * d + 5] -= 1000;
	fx_store_reopen(&st);
	write_dense(st.s, "G", d, F);
	pspace_store_close(st.s);
	st.s = NULL;
	assert_int_equal(fx_cli("factor %s G --mem 1M", st.path), 1);
	fx_expect_stderr("matrix G + 0 I is not positive definite at pivot 5; try --damping");
	assert_int_equal(fx_cli("info %s G.chol", st.path), 1);
	free(X);
	free(A);
	free(B);
	free(F);
	fx_store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_factor_dense),     cmocka_unit_test(test_factor_not_pd),
	    cmocka_unit_test(test_factor_blockdiag), cmocka_unit_test(test_factor_resume),
	    cmocka_unit_test(test_factor_cli),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
