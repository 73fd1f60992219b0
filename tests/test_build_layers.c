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

/* The lref source of LLAYOUT's layers, plus Jacobian rows (K, n, 6) for a norm layer "bn". */
typedef struct norm_src {
	pspace_layer_source inner;
	const double *rows; /* (K, n, 6) */
	double *brows;      /* the batch's */
	uint64_t n;
	uint32_t K;
	int give_rows;
} norm_src;

static int norm_read(void *ud, uint64_t x0, uint64_t nx, pspace_layer_batch *b)
{
	norm_src *ns = ud;
	int rc = ns->inner.read(ns->inner.ud, x0, nx, b);

	for (uint32_t k = 0; k < ns->K; k++)
		memcpy(ns->brows + k * nx * 6, ns->rows + (k * ns->n + x0) * 6,
		       nx * 6 * sizeof(double));
	b[3].rows = ns->give_rows ? ns->brows : NULL;
	return rc;
}

/*
 * A layer without layer tensors (norm) given as Jacobian rows beside the
 * tensors of the others: Dense and the norm layer's Mixed parts against the
 * Gram of all rows, the other parts against their references; KFAC asked of
 * it, or rows missing, are errors naming it.
 */
static void test_build_layers_norm_rows(void **state)
{
	fx_store t;
	lref_src ls;
	norm_src ns;
	pspace_layer_source src;
	pspace_layout *l3 = lref_parse(LLAYOUT), *l;
	const uint64_t T[3] = {3, 1, 2}, n = 8, D = LD + 6;
	const uint32_t K = 2;
	pspace_build_opts o;
	double *R3, *R, *F, *E, *Kf, *M;
	char text[512];

	(void)state;
	snprintf(text, sizeof(text), "%sbn norm 3 bias\n", LLAYOUT);
	l = lref_parse(text);
	fx_store_open(&t, "build");
	lref_src_init(&ls, &ns.inner, l3, n, K, T, 0, 61);
	ns.rows = fx_randv(K * n * 6, 62);
	ns.brows = malloc(K * n * 6 * sizeof(double));
	ns.n = n;
	ns.K = K;
	ns.give_rows = 1;
	src.examples = n;
	src.outputs = K;
	src.read = norm_read;
	src.ud = &ns;
	R3 = lref_rows(&ls);
	R = malloc(K * n * D * sizeof(*R));
	for (uint64_t r = 0; r < K * n; r++) {
		memcpy(R + r * D, R3 + r * LD, LD * sizeof(double));
		memcpy(R + r * D + LD, ns.rows + r * 6, 6 * sizeof(double));
	}
	F = fref_rows_gram(R, K * n, D, (double)n);
	Kf = lref_kfac(&ls);
	E = lref_ekfac(&ls, R3, K * n);
	lref_opts_f64(&o, PSPACE_KIND_DENSE);
	assert_int_equal(pspace_build_layers(t.s, "D", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "D", F, D) < 1e-12);
	/* c1 EKFAC, fc KFAC, emb Diag, bn QuasiDiag (its diagonal and bias-weight pairs) */
	M = calloc(D * D, sizeof(*M));
	for (uint64_t i = 0; i < D; i++)
		for (uint64_t j = 0; j < D; j++) {
			size_t li = pspace_layout_layer_of(l, i);

			if (li != pspace_layout_layer_of(l, j))
				continue;
			if (li == 0)
				M[i * D + j] = E[i * LD + j];
			else if (li == 1)
				M[i * D + j] = Kf[i * LD + j];
			else if (li == 3 ? (i == j || i == j + 3 || j == i + 3) : i == j)
				M[i * D + j] = F[i * D + j];
		}
	lref_opts_f64(&o, PSPACE_KIND_MIXED);
	o.mixed = "conv1d=ekfac;fc=kfac;emb=diag;bn=quasidiag";
	assert_int_equal(pspace_build_layers(t.s, "M", l, &src, &o), 0);
	assert_true(fref_stored_relerr(t.s, "M", M, D) < 1e-10);
	o.mixed = "*=kfac";
	assert_int_equal(pspace_build_layers(t.s, "MK", l, &src, &o), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer bn: a norm layer has no layer tensors"));
	ns.give_rows = 0;
	o.mixed = "linear,conv1d=kfac;*=dense";
	assert_int_equal(pspace_build_layers(t.s, "MR", l, &src, &o), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "layer bn"));
	assert_non_null(strstr(pspace_errdetail(), "no Jacobian rows"));
	free(M);
	free(E);
	free(Kf);
	free(F);
	free(R);
	free(R3);
	free(ns.brows);
	free((void *)ns.rows);
	lref_src_free(&ls);
	pspace_layout_free(l);
	pspace_layout_free(l3);
	fx_store_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_layers_rows),
	    cmocka_unit_test(test_build_kfac_ekfac),
	    cmocka_unit_test(test_build_kfac_blockdiag),
	    cmocka_unit_test(test_build_mixed_spec),
	    cmocka_unit_test(test_build_mixed),
	    cmocka_unit_test(test_build_layers_norm_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
