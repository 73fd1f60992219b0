/*
 * Tests of the builders (src/build) from Jacobian rows: every Jacobian
 * kind built from an in-memory source (tests/helpers/lref.c, not the npy
 * one) against a float64 reference computed from the same numbers:
 * F = (1/n) sum_rows r r^T, its layer blocks, its diagonal and the
 * QuasiDiag cross terms. Out-of-core Dense (several bands; each tile
 * written once; one source pass per band), uneven batches, failing
 * sources, a build killed with SIGKILL and resumed. Layer tensors, KFAC,
 * EKFAC and Mixed are in test_build_layers.c.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "build/build_impl.h"
#include "fixture.h"
#include "fref.h"
#include "lref.h"
#include "pspace/build.h"
#include "pspace/factored.h"

typedef struct prog {
	uint64_t total, done, calls;
} prog;

static void on_progress(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	prog *p = ud;

	(void)stage;
	p->total = total;
	p->done = done;
	p->calls++;
}

static void test_build_dense_ram(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	pspace_matrix_info info;
	double *F;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 20, 2, LREF_JD, 1);
	F = fref_rows_gram(j.J, 40, LREF_JD, 20);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_int_equal(j.passes, 1);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(info.tiles, 7 * 8 / 2);
	assert_true(fref_stored_relerr(t.s, "F", F, LREF_JD) < 1e-13);
	/* f32 storage (the default codec) */
	o.write.codec.dtype = PSPACE_F32;
	assert_int_equal(pspace_build_jacobian(t.s, "F32", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "F32", F, LREF_JD) < 1e-6);
	/* the name is taken */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	free(F);
	free(j.J);
	/* d = 300 on 3 threads: column chunks of the accumulator in parallel */
	{
		pspace_layout *flat = NULL;

		assert_int_equal(pspace_layout_flat(&flat, 300), 0);
		lref_jsrc_init(&j, &src, 10, 1, 300, 9);
		F = fref_rows_gram(j.J, 10, 300, 10);
		o.write.codec.dtype = PSPACE_F64;
		o.write.tile = 64;
		o.exec.threads = 3;
		assert_int_equal(pspace_build_jacobian(t.s, "big", flat, &src, &o), 0);
		assert_true(fref_stored_relerr(t.s, "big", F, 300) < 1e-13);
		pspace_layout_free(flat);
		free(F);
		free(j.J);
	}
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_dense_outofcore(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	pspace_matrix_info info;
	prog pr = {0, 0, 0};
	double *F;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 20, 2, LREF_JD, 2);
	F = fref_rows_gram(j.J, 40, LREF_JD, 20);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 20; /* one read per pass */
	/* a tile (512 B), one example (800 B) and about two tile rows of accumulator */
	o.exec.mem_budget = 512 + 2 * LREF_JD * 8 + 2 * 8 * 8 * LREF_JD;
	o.progress = on_progress;
	o.progress_ud = &pr;
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_true(j.passes >= 3);
	assert_int_equal(j.reads, j.passes);
	assert_int_equal(pr.total, j.passes * 20);
	assert_int_equal(pr.done, pr.total);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.tiles, 28); /* each tile once */
	assert_true(fref_stored_relerr(t.s, "F", F, LREF_JD) < 1e-13);
	/* a budget below one tile row: refused, nothing left behind */
	o.exec.mem_budget = 2000;
	assert_int_equal(pspace_build_jacobian(t.s, "G", l, &src, &o), PSPACE_ENOMEM);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "G"), PSPACE_ENOTFOUND);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_blockdiag(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	double *F;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 13, 3, LREF_JD, 3);
	F = fref_rows_gram(j.J, 39, LREF_JD, 13);
	lref_keep_blocks(l, F);
	lref_opts_f64(&o, PSPACE_KIND_BLOCKDIAG);
	o.write.tile = 4;
	assert_int_equal(pspace_build_jacobian(t.s, "B", l, &src, &o), 0);
	assert_int_equal(j.passes, 1);
	assert_true(fref_stored_relerr(t.s, "B", F, LREF_JD) < 1e-13);
	/* out of core: blocks split over passes */
	j.passes = 0;
	o.exec.mem_budget = 128 + 3 * LREF_JD * 8 + 2 * 8 * 4 * 25;
	assert_int_equal(pspace_build_jacobian(t.s, "B2", l, &src, &o), 0);
	assert_true(j.passes >= 3);
	assert_true(fref_stored_relerr(t.s, "B2", F, LREF_JD) < 1e-13);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_batches(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	const uint64_t sizes[3] = {1, 7, 23};
	const char *names[3] = {"b1", "b7", "bn"};
	double *F, *D[3];

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 23, 2, LREF_JD, 4);
	F = fref_rows_gram(j.J, 46, LREF_JD, 23);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	for (int i = 0; i < 3; i++) {
		j.reads = 0;
		o.batch = sizes[i];
		assert_int_equal(pspace_build_jacobian(t.s, names[i], l, &src, &o), 0);
		assert_int_equal(j.reads, (23 + sizes[i] - 1) / sizes[i]);
		D[i] = fref_stored_dense(t.s, names[i], LREF_JD);
		assert_true(fref_dist(D[i], F, LREF_JD * LREF_JD) /
		                fref_norm(F, LREF_JD * LREF_JD) <
		            1e-13);
	}
	assert_true(fref_dist(D[0], D[1], LREF_JD * LREF_JD) / fref_norm(F, LREF_JD * LREF_JD) <
	            1e-14);
	assert_true(fref_dist(D[0], D[2], LREF_JD * LREF_JD) / fref_norm(F, LREF_JD * LREF_JD) <
	            1e-14);
	for (int i = 0; i < 3; i++)
		free(D[i]);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_diag_quasidiag(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	double *F, *Q, *Dg;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 11, 2, LREF_JD, 5);
	F = fref_rows_gram(j.J, 22, LREF_JD, 11);
	Dg = calloc(LREF_JD * LREF_JD, sizeof(*Dg));
	Q = calloc(LREF_JD * LREF_JD, sizeof(*Q));
	for (uint64_t p = 0; p < LREF_JD; p++)
		Dg[p * LREF_JD + p] = Q[p * LREF_JD + p] = F[p * LREF_JD + p];
	/* cross terms bias o - weight (o, j) of the layers with a bias */
	for (size_t li = 0; li < pspace_layout_nlayers(l); li++) {
		const pspace_layer *L = pspace_layout_layer(l, li);
		uint64_t out = L->shape[0], in = L->weight_size / out;

		for (uint64_t oo = 0; L->bias && oo < out; oo++)
			for (uint64_t jj = 0; jj < in; jj++) {
				uint64_t b = L->offset + L->weight_size + oo,
				         w = L->offset + oo * in + jj;

				Q[b * LREF_JD + w] = Q[w * LREF_JD + b] = F[b * LREF_JD + w];
			}
	}
	lref_opts_f64(&o, PSPACE_KIND_DIAG);
	o.batch = 4;
	assert_int_equal(pspace_build_jacobian(t.s, "D", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "D", Dg, LREF_JD) < 1e-13);
	o.kind = PSPACE_KIND_QUASIDIAG;
	assert_int_equal(pspace_build_jacobian(t.s, "Q", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "Q", Q, LREF_JD) < 1e-13);
	o.kind = PSPACE_KIND_LOWRANK;
	assert_int_equal(pspace_build_jacobian(t.s, "L", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "L", F, LREF_JD) < 1e-12);
	/* LowRank rows beyond the budget: stored tile row by tile row all the same */
	o.exec.mem_budget = 22 * LREF_JD * 8 - 1;
	assert_int_equal(pspace_build_jacobian(t.s, "L2", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "L2", F, LREF_JD) < 1e-12);
	/* not even a band of 8 rows and the tile writer fit: refused */
	o.exec.mem_budget = 8 * LREF_JD * 8;
	assert_int_equal(pspace_build_jacobian(t.s, "L3", l, &src, &o), PSPACE_ENOMEM);
	assert_non_null(strstr(pspace_errdetail(), "LowRank"));
	free(Q);
	free(Dg);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_source_fails(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	pspace_matrix_info info;
	pspace_mat *m = NULL;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 20, 2, LREF_JD, 6);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 5;
	o.exec.mem_budget = 512 + 2 * LREF_JD * 8 + 2 * 8 * 8 * LREF_JD;
	j.fail_at = 2; /* second pass, second batch */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EIO);
	assert_non_null(strstr(pspace_errdetail(), "F"));
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), PSPACE_EINCOMPLETE);
	/* in RAM */
	j.passes = 0;
	j.fail_at = 1;
	o.exec.mem_budget = 0;
	assert_int_equal(pspace_build_jacobian(t.s, "G", l, &src, &o), PSPACE_EIO);
	assert_int_not_equal(pspace_mat_open(&m, t.s, "G"), 0);
	/* factored kinds leave nothing */
	j.passes = 0;
	o.kind = PSPACE_KIND_DIAG;
	assert_int_equal(pspace_build_jacobian(t.s, "D", l, &src, &o), PSPACE_EIO);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "D"), PSPACE_ENOTFOUND);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_kill_resume(void **state)
{
	fx_store t;
	lref_jsrc j;
	pspace_jac_source src;
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_build_opts o;
	pspace_matrix_info info;
	pspace_mat *m = NULL;
	int fds[2], status;
	uint64_t total;
	pid_t pid;
	double *F, *R;
	char c;

	(void)state;
	fx_store_open(&t, "build");
	lref_jsrc_init(&j, &src, 20, 2, LREF_JD, 7);
	F = fref_rows_gram(j.J, 40, LREF_JD, 20);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 20;
	o.exec.mem_budget = 512 + 2 * LREF_JD * 8 + 2 * 8 * 8 * LREF_JD;
	/* how many passes a whole build takes */
	assert_int_equal(pspace_build_jacobian(t.s, "ref", l, &src, &o), 0);
	total = j.passes;
	assert_true(total >= 3);
	pspace_store_close(t.s); /* no LMDB environment across fork */
	t.s = NULL;
	t.s = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		j.passes = 0;
		j.stop_pass = 3; /* two bands written and checkpointed */
		j.fd = fds[1];
		fx_store_reopen(&t);
		pspace_build_jacobian(t.s, "F", l, &src, &o);
		_exit(2);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);
	fx_store_reopen(&t);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), PSPACE_EINCOMPLETE);
	assert_true(fref_stored_relerr(t.s, "ref", F, LREF_JD) < 1e-13); /* the store is fine */
	/* without resume: refused; with: the remaining bands only */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	j.passes = 0;
	o.resume = 1;
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_int_equal(j.passes, total - 2);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "F"), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(info.tiles, 28);
	R = fref_stored_dense(t.s, "ref", LREF_JD);
	assert_true(fref_stored_relerr(t.s, "F", R, LREF_JD) < 1e-15);
	/* a complete matrix is not resumed */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	free(R);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	fx_store_close(&t);
}

/*
 * Fisher-like rows for the precision test: example x, output k: row r =
 * s_x (g_k + mu) with per-example scales s_x lognormal (sigma 1.5),
 * per-column scales over five decades, a common mean direction mu (so the
 * off-diagonal sums cancel in part) and Gaussian g, generated on demand
 * from (x, k) so that 10^5 rows need no memory.
 */
#define PREC_D 96
#define PREC_K 4

static void prec_row(uint64_t x, uint32_t k, double *r)
{
	uint64_t st = 0x9e3779b97f4a7c15ULL ^ (x * PREC_K + k) * 0xbf58476d1ce4e5b9ULL, sx = x + 7;
	double s = exp(1.5 * fx_rng_normal(&sx));

	for (size_t i = 0; i < PREC_D; i++) {
		double col = pow(10.0, -3.0 + 5.0 * (double)i / (PREC_D - 1));
		double mu = (i % 3 == 0 ? 1.0 : -0.5);

		r[i] = s * col * (fx_rng_normal(&st) + mu);
	}
}

static int prec_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	(void)ud;
	for (uint32_t k = 0; k < PREC_K; k++)
		for (uint64_t x = 0; x < nx; x++)
			prec_row(x0 + x, k, out + ((uint64_t)k * nx + x) * ld);
	return 0;
}

/*
 * The f32 products of Dense builds (f32 storage) against a float64
 * reference on m = 10^5 rows: every entry within the bound the builder
 * states, (F32_ROWS + 2) u (1/n) sum |r_i| |r_j| plus the f32 rounding of
 * the stored value, u = 2^-24, and in practice far inside it.
 */
static void test_build_dense_f32_products(void **state)
{
	const uint64_t n = 25000, d = PREC_D;
	const double u = ldexp(1.0, -24), rows_block = 1024;
	double *F = calloc(d * d, sizeof(double)), *A = calloc(d * d, sizeof(double));
	double r[PREC_D], *got, worst = 0, fro = 0, err = 0;
	pspace_jac_source src = {n, PREC_K, d, prec_read, NULL};
	pspace_layout *flat = NULL;
	pspace_build_opts o;
	fx_store t;

	(void)state;
	assert_non_null(F);
	assert_non_null(A);
	for (uint64_t x = 0; x < n; x++)
		for (uint32_t k = 0; k < PREC_K; k++) {
			prec_row(x, k, r);
			for (size_t i = 0; i < d; i++)
				for (size_t j = i; j < d; j++) {
					F[i * d + j] += r[i] * r[j];
					A[i * d + j] += fabs(r[i] * r[j]);
				}
		}
	fx_store_open(&t, "f32prod");
	assert_int_equal(pspace_layout_flat(&flat, d), 0);
	pspace_build_opts_default(&o);
	o.kind = PSPACE_KIND_DENSE;
	o.write.tile = 32;
	o.exec.threads = 2;
	assert_int_equal(o.write.codec.dtype, PSPACE_F32);
	assert_int_equal(pspace_build_jacobian(t.s, "F", flat, &src, &o), 0);
	got = fref_stored_dense(t.s, "F", d);
	for (size_t i = 0; i < d; i++)
		for (size_t j = i; j < d; j++) {
			double f = F[i * d + j] / (double)n, a = A[i * d + j] / (double)n;
			double e = fabs(got[i * d + j] - f);
			double bound = (rows_block + 2) * u * a + u * fabs(f);

			assert_true(e <= bound);
			worst = e / bound > worst ? e / bound : worst;
			fro += f * f;
			err += e * e;
		}
	/*
	 * In practice far inside: the worst entry at 0.0013-0.0042 of its bound
	 * and a relative Frobenius error of 2e-8-1.2e-7 with BLIS's haswell,
	 * zen3, skx and generic kernels; products summed in f32 over all 10^5
	 * rows instead of blocks reach 0.012-0.03 of the bound.
	 */
	assert_true(sqrt(err / fro) < 1e-6);
	assert_true(worst < 0.008);
	free(got);
	free(A);
	free(F);
	pspace_layout_free(flat);
	fx_store_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_dense_ram),
	    cmocka_unit_test(test_build_dense_f32_products),
	    cmocka_unit_test(test_build_dense_outofcore),
	    cmocka_unit_test(test_build_blockdiag),
	    cmocka_unit_test(test_build_batches),
	    cmocka_unit_test(test_build_diag_quasidiag),
	    cmocka_unit_test(test_build_source_fails),
	    cmocka_unit_test(test_build_kill_resume),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
