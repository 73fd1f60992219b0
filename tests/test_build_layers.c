/*
 * Tests of the builders (src/build) from layer tensors: rows, KFAC and
 * EKFAC against the KFAC factors from their definitions and the EKFAC
 * diagonal from the factors' eigenvectors (LAPACK dsyev in
 * tests/helpers/lref.c), KFAC against BlockDiag, and Mixed specifications
 * and builds.
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

/* conv (T = 3 patches of 4), linear (T = 1), embedding (T = 2 ids). */
static const char *LLAYOUT = "c1  conv1d    3x2x2 bias\n"
                             "fc  linear    2x3   nobias\n"
                             "emb embedding 5x2   nobias\n";
#define LD 31

static void test_build_layers_rows(void **state)
{
	fx_store t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = lref_parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	double *R, *F, *Dg;

	(void)state;
	assert_int_equal(pspace_layout_dim(l), LD);
	fx_store_open(&t, "build");
	lref_src_init(&ls, &src, l, 9, 2, T, 0, 11);
	R = lref_rows(&ls);
	F = fref_rows_gram(R, 18, LD, 9);
	lref_opts_f64(&o, PSPACE_KIND_BLOCKDIAG);
	o.batch = 4;
	assert_int_equal(pspace_build_layers(t.s, "D", l, &src, &o), 0);
	o.kind = PSPACE_KIND_DENSE;
	assert_int_equal(pspace_build_layers(t.s, "full", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "full", F, LD) < 1e-13);
	Dg = calloc(LD * LD, sizeof(*Dg));
	for (uint64_t p = 0; p < LD; p++)
		Dg[p * LD + p] = F[p * LD + p];
	o.kind = PSPACE_KIND_DIAG;
	assert_int_equal(pspace_build_layers(t.s, "diag", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "diag", Dg, LD) < 1e-13);
	lref_keep_blocks(l, F);
	assert_true(fref_stored_relerr(t.s, "D", F, LD) < 1e-13);
	/* QuasiDiag: only c1 has a bias */
	{
		const pspace_layer *L = pspace_layout_layer(l, 0);
		double *Fd = fref_rows_gram(R, 18, LD, 9);

		for (uint64_t oo = 0; oo < 3; oo++)
			for (uint64_t jj = 0; jj < 4; jj++) {
				uint64_t b = L->weight_size + oo, w = oo * 4 + jj;

				Dg[b * LD + w] = Dg[w * LD + b] = Fd[b * LD + w];
			}
		o.kind = PSPACE_KIND_QUASIDIAG;
		assert_int_equal(pspace_build_layers(t.s, "qd", l, &src, &o), 0);
		assert_true(fref_stored_relerr(t.s, "qd", Dg, LD) < 1e-13);
		free(Fd);
	}
	free(Dg);
	free(F);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_kfac_ekfac(void **state)
{
	fx_store t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = lref_parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	pspace_mat *m = NULL;
	double *R, *K, *E;

	(void)state;
	fx_store_open(&t, "build");
	lref_src_init(&ls, &src, l, 10, 2, T, 0, 21);
	R = lref_rows(&ls);
	K = lref_kfac(&ls);
	lref_opts_f64(&o, PSPACE_KIND_KFAC);
	o.batch = 3;
	assert_int_equal(pspace_build_layers(t.s, "K", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "K", K, LD) < 1e-12);
	E = lref_ekfac(&ls, R, 20);
	o.kind = PSPACE_KIND_EKFAC;
	assert_int_equal(pspace_build_layers(t.s, "E", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "E", E, LD) < 1e-10);
	assert_int_equal(pspace_mat_open(&m, t.s, "E"), 0);
	assert_int_equal(pspace_ekfac_is_updated(m), 1);
	pspace_mat_free(m);
	/* KFAC from Jacobian rows: not possible */
	{
		lref_jsrc j;
		pspace_jac_source js;
		pspace_matrix_info info;
		double *E4 = malloc(LD * LD * sizeof(*E4));

		lref_jsrc_init(&j, &js, 10, 2, LD, 1);
		memcpy(j.J, R, 20 * LD * sizeof(double));
		o.kind = PSPACE_KIND_KFAC;
		assert_int_equal(pspace_build_jacobian(t.s, "K2", l, &js, &o), PSPACE_ENOTSUP);
		/* EKFAC update from rows 2 R: S (and the matrix) times 4, in place */
		j.scale = 2.0;
		o.kind = PSPACE_KIND_EKFAC;
		assert_int_equal(pspace_build_jacobian(t.s, "E", l, &js, &o), 0);
		for (uint64_t i = 0; i < LD * LD; i++)
			E4[i] = 4 * E[i];
		assert_true(fref_stored_relerr(t.s, "E", E4, LD) < 1e-10);
		assert_int_equal(pspace_matrix_info_get(&info, t.s, "E.updating"),
		                 PSPACE_ENOTFOUND);
		/* the update needs an EKFAC */
		assert_int_equal(pspace_build_jacobian(t.s, "K", l, &js, &o), PSPACE_EINVAL);
		assert_int_equal(pspace_build_jacobian(t.s, "none", l, &js, &o), PSPACE_ENOTFOUND);
		free(E4);
		free(j.J);
	}
	free(E);
	free(K);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	fx_store_close(&t);
}

/* Two linear layers, T = 1, every example the same input. */
static const char *SLAYOUT = "l1 linear 4x3 bias\n"
                             "l2 linear 2x4 bias\n";
#define SD 26

static void test_build_kfac_blockdiag(void **state)
{
	fx_store t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = lref_parse(SLAYOUT);
	const uint64_t T[2] = {1, 1};
	pspace_build_opts o;
	double *B, *K, *E, *F;

	(void)state;
	fx_store_open(&t, "build");
	/* same input: KFAC = BlockDiag */
	lref_src_init(&ls, &src, l, 12, 3, T, 1, 31);
	lref_opts_f64(&o, PSPACE_KIND_KFAC);
	assert_int_equal(pspace_build_layers(t.s, "K", l, &src, &o), 0);
	o.kind = PSPACE_KIND_BLOCKDIAG;
	assert_int_equal(pspace_build_layers(t.s, "B", l, &src, &o), 0);
	B = fref_stored_dense(t.s, "B", SD);
	K = fref_stored_dense(t.s, "K", SD);
	assert_true(fref_dist(B, K, SD * SD) / fref_norm(B, SD * SD) < 1e-10);
	free(B);
	free(K);
	lref_src_free(&ls);
	/* different inputs: EKFAC at least as close to BlockDiag as KFAC */
	lref_src_init(&ls, &src, l, 12, 3, T, 0, 41);
	o.kind = PSPACE_KIND_KFAC;
	assert_int_equal(pspace_build_layers(t.s, "K2", l, &src, &o), 0);
	o.kind = PSPACE_KIND_EKFAC;
	assert_int_equal(pspace_build_layers(t.s, "E2", l, &src, &o), 0);
	o.kind = PSPACE_KIND_BLOCKDIAG;
	assert_int_equal(pspace_build_layers(t.s, "B2", l, &src, &o), 0);
	B = fref_stored_dense(t.s, "B2", SD);
	K = fref_stored_dense(t.s, "K2", SD);
	E = fref_stored_dense(t.s, "E2", SD);
	{
		double *R = lref_rows(&ls);

		F = fref_rows_gram(R, 36, SD, 12);
		lref_keep_blocks(l, F);
		assert_true(fref_dist(B, F, SD * SD) / fref_norm(F, SD * SD) < 1e-13);
		free(R);
	}
	assert_true(fref_dist(E, B, SD * SD) <= fref_dist(K, B, SD * SD));
	assert_true(fref_dist(K, B, SD * SD) > 1e-6); /* not trivially */
	free(F);
	free(E);
	free(K);
	free(B);
	lref_src_free(&ls);
	pspace_layout_free(l);
	fx_store_close(&t);
}

static void test_build_mixed_spec(void **state)
{
	pspace_layout *l = lref_parse(lref_jlayout);
	pspace_kind k[3];

	(void)state;
	assert_int_equal(pspace_mixed_spec_parse("linear=ekfac;*=blockdiag", l, k), 0);
	assert_int_equal(k[0], PSPACE_KIND_EKFAC);
	assert_int_equal(k[1], PSPACE_KIND_BLOCKDIAG);
	assert_int_equal(k[2], PSPACE_KIND_EKFAC);
	/* name beats kind beats '*', whatever the order */
	assert_int_equal(pspace_mixed_spec_parse(" fc2 = diag ; linear,norm=kfac; *=dense", l, k),
	                 0);
	assert_int_equal(k[0], PSPACE_KIND_KFAC);
	assert_int_equal(k[1], PSPACE_KIND_KFAC);
	assert_int_equal(k[2], PSPACE_KIND_DIAG);
	assert_int_equal(pspace_mixed_spec_parse("linear=lowrank", l, k), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "bn"));
	assert_int_equal(pspace_mixed_spec_parse("lineer=kfac;*=diag", l, k), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "lineer"));
	assert_int_equal(pspace_mixed_spec_parse("*=mixed", l, k), PSPACE_EINVAL);
	assert_int_equal(pspace_mixed_spec_parse("*", l, k), PSPACE_EINVAL);
	assert_int_equal(pspace_mixed_spec_parse("", l, k), PSPACE_EINVAL);
	pspace_layout_free(l);
}

static void test_build_mixed(void **state)
{
	fx_store t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = lref_parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	pspace_matrix_info info;
	double *R, *F, *K, *E, *M;

	(void)state;
	fx_store_open(&t, "build");
	lref_src_init(&ls, &src, l, 8, 2, T, 0, 51);
	R = lref_rows(&ls);
	F = fref_rows_gram(R, 16, LD, 8);
	lref_keep_blocks(l, F);
	K = lref_kfac(&ls);
	E = lref_ekfac(&ls, R, 16);
	/* c1 EKFAC, fc BlockDiag, emb Diag */
	M = calloc(LD * LD, sizeof(*M));
	for (uint64_t i = 0; i < LD; i++)
		for (uint64_t j = 0; j < LD; j++) {
			size_t li = pspace_layout_layer_of(l, i);

			if (li != pspace_layout_layer_of(l, j))
				continue;
			M[i * LD + j] = li == 0   ? E[i * LD + j]
			                : li == 1 ? F[i * LD + j]
			                          : (i == j ? F[i * LD + j] : 0);
		}
	lref_opts_f64(&o, PSPACE_KIND_MIXED);
	o.mixed = "conv1d=ekfac;emb=diag;*=blockdiag";
	assert_int_equal(pspace_build_layers(t.s, "M", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "M", M, LD) < 1e-10);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "M/fc"), 0);
	assert_int_equal(info.kind, PSPACE_KIND_BLOCKDIAG);
	/* KFAC everywhere through Mixed equals KFAC */
	o.mixed = "*=kfac";
	assert_int_equal(pspace_build_layers(t.s, "MK", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "MK", K, LD) < 1e-12);
	/* from Jacobian rows: no KFAC parts, the others work */
	{
		lref_jsrc j;
		pspace_jac_source js;

		lref_jsrc_init(&j, &js, 8, 2, LD, 1);
		memcpy(j.J, R, 16 * LD * sizeof(double));
		assert_int_equal(pspace_build_jacobian(t.s, "MJ", l, &js, &o), PSPACE_ENOTSUP);
		assert_int_equal(pspace_matrix_info_get(&info, t.s, "MJ"), PSPACE_ENOTFOUND);
		o.mixed = "c1=dense;fc=lowrank;*=blockdiag";
		assert_int_equal(pspace_build_jacobian(t.s, "MJ", l, &js, &o), 0);
		assert_true(fref_stored_relerr(t.s, "MJ", F, LD) < 1e-12);
		free(j.J);
	}
	free(M);
	free(E);
	free(K);
	free(F);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	fx_store_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_layers_rows),    cmocka_unit_test(test_build_kfac_ekfac),
	    cmocka_unit_test(test_build_kfac_blockdiag), cmocka_unit_test(test_build_mixed_spec),
	    cmocka_unit_test(test_build_mixed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
