/*
 * Tests of evaluating lazy operators (src/op): mm, mv, vTMv, trace, diag,
 * Frobenius norm and dense of the linear expression 2F - 0.5G + 1e-3 I
 * over stored Dense matrices (one pass over each leaf, counted with
 * pspace_store_tiles_read), products with Hutchinson traces, Lanczos
 * eigenpairs and 2- and -2-norms, thread and tile-edge independence,
 * memory budgets, and an Implicit matrix.
 *
 * Every number is checked against a float64 dense reference (plain loops
 * and LAPACK in fref.h, on the references of oref.h), never against the
 * code under test. Matrices are stored in float32, so the tolerance is a
 * relative error of 1e-3.
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
#include "fref.h"
#include "oref.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define D     OREF_D
#define TILES OREF_TILES
#define TOL   1e-3

/* ---- the linear expression 2F - 0.5G + 1e-3 I ----------------------------------- */

static void test_op_linear_mm(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x);
	double *R = oref_expr_dense(x);
	const uint32_t ks[] = {1, 3, 16};
	const size_t ld = D + 5;
	double *X = NULL, *Y = malloc(16 * ld * sizeof(double));
	double ref[D];

	assert_non_null(Y);
	for (size_t t = 0; t < 3; t++) {
		uint32_t k = ks[t];
		uint64_t before;

		free(X);
		X = fx_randv(k * ld, 100 + k);
		before = pspace_store_tiles_read(x->st.s);
		assert_int_equal(pspace_op_mm(e, NULL, k, 1.0, X, ld, 0.0, Y, ld), 0);
		/* One pass over F and one over G, whatever k. */
		assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
		for (uint32_t j = 0; j < k; j++) {
			fref_mm(R, D, 1, X + j * ld, ref);
			assert_true(fx_relerr(Y + j * ld, ref, D) < TOL);
		}
	}
	/* mv */
	fref_mm(R, D, 1, X, ref);
	assert_int_equal(pspace_op_mv(e, NULL, X, Y), 0);
	assert_true(fx_relerr(Y, ref, D) < TOL);

	/* E + F - 3G names F twice and G twice: still one pass over each. */
	pspace_op *e2, *e3, *g3;
	uint64_t before = pspace_store_tiles_read(x->st.s);

	assert_int_equal(pspace_op_add(&e2, e, x->oF), 0);
	assert_int_equal(pspace_op_scale(&g3, 3.0, x->oG), 0);
	assert_int_equal(pspace_op_sub(&e3, e2, g3), 0);
	assert_int_equal(pspace_op_mm(e3, NULL, 3, 1.0, X, ld, 0.0, Y, ld), 0);
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
	for (uint32_t j = 0; j < 3; j++) {
		double t[D];

		fref_mm(R, D, 1, X + j * ld, ref);
		fref_mm(x->RF, D, 1, X + j * ld, t);
		for (size_t i = 0; i < D; i++)
			ref[i] += t[i];
		fref_mm(x->RG, D, 1, X + j * ld, t);
		for (size_t i = 0; i < D; i++)
			ref[i] -= 3 * t[i];
		assert_true(fx_relerr(Y + j * ld, ref, D) < TOL);
	}
	pspace_op_free(e3);
	pspace_op_free(g3);
	pspace_op_free(e2);
	free(Y);
	free(X);
	free(R);
	pspace_op_free(e);
}

/* v^T R v */
static double ref_vtmv(const double *R, const double *v)
{
	double Rv[D], r = 0;

	fref_mm(R, D, 1, v, Rv);
	for (size_t i = 0; i < D; i++)
		r += v[i] * Rv[i];
	return r;
}

static void test_op_linear_vtmv(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x);
	double *R = oref_expr_dense(x);
	double *V = fx_randv(16 * D, 7), out[16], r;
	uint64_t before;

	assert_int_equal(pspace_op_vtmv(e, NULL, V, out), 0);
	r = ref_vtmv(R, V);
	assert_true(fabs(out[0] - r) < TOL * fabs(r));
	for (uint32_t k = 3; k <= 16; k += 13) {
		before = pspace_store_tiles_read(x->st.s);
		assert_int_equal(pspace_op_vtmv_batch(e, NULL, k, V, D, out), 0);
		assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
		for (uint32_t j = 0; j < k; j++) {
			r = ref_vtmv(R, V + j * D);
			assert_true(fabs(out[j] - r) < TOL * fabs(r));
		}
	}
	free(V);
	free(R);
	pspace_op_free(e);
}

static void test_op_linear_reductions(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x);
	double *R = oref_expr_dense(x), *Dn = malloc((size_t)D * D * sizeof(double));
	double diag[D], rdiag[D], tr = 0, rtr = 0, fro = 0, rfro;
	pspace_trace_opts to = {0};

	assert_non_null(Dn);
	for (size_t i = 0; i < D; i++) {
		rdiag[i] = R[i * D + i];
		rtr += R[i * D + i];
	}
	rfro = fref_norm(R, (size_t)D * D);

	assert_int_equal(pspace_op_trace(e, NULL, &to, &tr), 0);
	assert_int_equal(to.exact, 1);
	assert_true(to.stderr_ == 0);
	assert_true(fabs(tr - rtr) < TOL * fabs(rtr));
	assert_int_equal(pspace_op_diag(e, NULL, diag), 0);
	assert_true(fx_relerr(diag, rdiag, D) < TOL);
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - rfro) < TOL * rfro);
	assert_int_equal(pspace_op_dense(e, NULL, Dn, D), 0);
	assert_true(fx_relerr(Dn, R, (size_t)D * D) < TOL);

	/* A single leaf with a shift: ||3F + 0.5 I||_F by its closed form. */
	pspace_op *f3, *i5, *g;

	assert_int_equal(pspace_op_scale(&f3, 3.0, x->oF), 0);
	assert_int_equal(pspace_op_identity(&i5, D, 0.5), 0);
	assert_int_equal(pspace_op_add(&g, f3, i5), 0);
	rfro = 0;
	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < D; j++) {
			double v = 3 * x->RF[i * D + j] + (i == j ? 0.5 : 0);

			rfro += v * v;
		}
	rfro = sqrt(rfro);
	assert_int_equal(pspace_op_norm(g, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - rfro) < TOL * rfro);
	pspace_op_free(g);
	pspace_op_free(i5);
	pspace_op_free(f3);
	free(Dn);
	free(R);
	pspace_op_free(e);
}

/* ---- products and Hutchinson ------------------------------------------------------ */

/* tr(FG) = sum_ij F_ij G_ji */
static double ref_trace_fg(const oref *x)
{
	double r = 0;

	for (size_t i = 0; i < (size_t)D * D; i++)
		r += x->RF[i] * x->RG[i];
	return r;
}

static void test_op_product(void **state)
{
	oref *x = *state;
	pspace_op *p, *p2;
	double *X = fx_randv(3 * D, 3), *Y = malloc(3 * D * sizeof(double));
	double t1[D], ref[D], tr, rtr = ref_trace_fg(x);
	pspace_trace_opts to = {.probes = 64, .seed = 5};
	uint64_t before;

	assert_non_null(Y);
	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_op_mm(p, NULL, 3, 1.0, X, D, 0.0, Y, D), 0);
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
	for (int j = 0; j < 3; j++) {
		fref_mm(x->RG, D, 1, X + j * D, t1);
		fref_mm(x->RF, D, 1, t1, ref);
		assert_true(fx_relerr(Y + j * D, ref, D) < TOL);
	}
	/* Hutchinson within 4 standard errors. */
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_op_trace(p, NULL, &to, &tr), 0);
	/* 64 probes fit the budget: one mm, one pass over each matrix. */
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
	assert_int_equal(to.exact, 0);
	assert_true(to.stderr_ > 0);
	assert_true(to.stderr_ < 0.2 * fabs(rtr));
	assert_true(fabs(tr - rtr) < 4 * to.stderr_);
	assert_int_equal(pspace_op_diag(p, NULL, t1), PSPACE_ENOTSUP);

	/* 2*F*G - 0.5*F: the linear term stays exact in the trace. */
	pspace_op *f2, *fh;
	double rtr2 = 0;

	assert_int_equal(pspace_op_scale(&f2, 2.0, p), 0);
	assert_int_equal(pspace_op_scale(&fh, 0.5, x->oF), 0);
	assert_int_equal(pspace_op_sub(&p2, f2, fh), 0);
	for (size_t i = 0; i < D; i++)
		rtr2 += x->RF[i * D + i];
	rtr2 = 2 * rtr - 0.5 * rtr2;
	assert_int_equal(pspace_op_trace(p2, NULL, &to, &tr), 0);
	assert_true(fabs(tr - rtr2) < 4 * to.stderr_);
	pspace_op_free(p2);
	pspace_op_free(fh);
	pspace_op_free(f2);
	pspace_op_free(p);
	free(Y);
	free(X);
}

/* ---- eigenpairs and norms -------------------------------------------------------- */

static void test_op_eig(void **state)
{
	oref *x = *state;
	double *w = malloc(D * sizeof(double)), *V = malloc((size_t)D * D * sizeof(double));
	double *evecs = malloc(5 * D * sizeof(double)), ev[5], nrm;
	pspace_eig_opts eo = {.tol = 1e-8, .seed = 3};
	const uint32_t ks[] = {1, 5};

	assert_non_null(w);
	assert_non_null(V);
	assert_non_null(evecs);
	fref_eigh(x->RG, D, w, V); /* decreasing */
	for (int t = 0; t < 2; t++) {
		uint32_t k = ks[t];

		assert_int_equal(pspace_op_eig(x->oG, NULL, k, &eo, ev, evecs, D), 0);
		assert_true(eo.iterations > 0 && eo.iterations < D);
		for (uint32_t i = 0; i < k; i++) {
			const double *u = V + (size_t)i * D;
			double dot = 0;

			assert_true(fabs(ev[i] - w[i]) < TOL * w[0]);
			for (size_t p = 0; p < D; p++)
				dot += u[p] * evecs[i * D + p];
			assert_true(fabs(fabs(dot) - 1) < TOL);
		}
	}
	/* 2-norm of G; -2-norm of G (full rank: smallest eigenvalue). */
	assert_int_equal(pspace_op_norm(x->oG, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[0]) < TOL * w[0]);
	eo.max_iter = D;
	assert_int_equal(pspace_op_norm(x->oG, NULL, PSPACE_NORM_MINUS2, &eo, &nrm), 0);
	assert_true(fabs(nrm - w[D - 1]) < TOL * w[D - 1]);

	/* 2F - 0.5G + 1e-3 I is indefinite: 2-norm = max |eigenvalue|. */
	pspace_op *e = oref_expr(x);
	double *R = oref_expr_dense(x);

	fref_eigh(R, D, w, NULL);
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	double want = fmax(fabs(w[0]), fabs(w[D - 1]));

	assert_true(fabs(nrm - want) < TOL * want);
	free(R);
	pspace_op_free(e);
	free(evecs);
	free(V);
	free(w);
}

/* ---- threads, tile edges, budgets ---------------------------------------------------- */

static void test_op_threads(void **state)
{
	oref *x = *state;
	pspace_op *e = oref_expr(x);
	pspace_exec e1 = {1, 0}, e2 = {2, 0};
	double *X = fx_randv(3 * D, 51), *Y1 = malloc(3 * D * sizeof(double));
	double *Y2 = malloc(3 * D * sizeof(double));

	assert_non_null(Y1);
	assert_non_null(Y2);
	assert_int_equal(pspace_op_mm(e, &e1, 3, 1.0, X, D, 0.0, Y1, D), 0);
	assert_int_equal(pspace_op_mm(e, &e2, 3, 1.0, X, D, 0.0, Y2, D), 0);
	assert_true(fx_relerr(Y2, Y1, 3 * D) < 1e-12);

	/* The same F and G stored with tile edge 100: equal within float rounding. */
	pspace_write_opts wo;
	pspace_mat *f100, *g100;
	pspace_op *of, *og, *a, *b, *c, *i1, *e100;

	oref_write_opts(&wo);
	wo.tile = 100;
	assert_int_equal(pspace_dense_write(x->st.s, "F100", NULL, D, x->RF, D, &wo), 0);
	assert_int_equal(pspace_dense_write(x->st.s, "G100", NULL, D, x->RG, D, &wo), 0);
	assert_int_equal(pspace_mat_open(&f100, x->st.s, "F100"), 0);
	assert_int_equal(pspace_mat_open(&g100, x->st.s, "G100"), 0);
	assert_int_equal(pspace_op_mat(&of, f100), 0);
	assert_int_equal(pspace_op_mat(&og, g100), 0);
	assert_int_equal(pspace_op_scale(&a, 2.0, of), 0);
	assert_int_equal(pspace_op_scale(&b, 0.5, og), 0);
	assert_int_equal(pspace_op_sub(&c, a, b), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 1e-3), 0);
	assert_int_equal(pspace_op_add(&e100, c, i1), 0);
	assert_int_equal(pspace_op_mm(e100, &e2, 3, 1.0, X, D, 0.0, Y2, D), 0);
	assert_true(fx_relerr(Y2, Y1, 3 * D) < 1e-6);
	pspace_op_free(e100);
	pspace_op_free(i1);
	pspace_op_free(c);
	pspace_op_free(b);
	pspace_op_free(a);
	pspace_op_free(og);
	pspace_op_free(of);
	pspace_mat_free(g100);
	pspace_mat_free(f100);
	free(Y2);
	free(Y1);
	free(X);
	pspace_op_free(e);
}

/* Hutchinson batches follow the memory budget: one pass per batch. */
static void test_op_budget(void **state)
{
	oref *x = *state;
	pspace_op *p;
	pspace_exec ex = {0, 30 * D * sizeof(double)};
	pspace_trace_opts to = {.probes = 64, .seed = 9};
	uint64_t before;
	double tr, rtr = ref_trace_fg(x);

	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_op_trace(p, &ex, &to, &tr), 0);
	/* 3 vectors of d per probe (probe, image, chain temporary): 10 per batch, 7 batches. */
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 7 * 2 * TILES);
	assert_true(fabs(tr - rtr) < 4 * to.stderr_);

	/* Frobenius of a linear combination of matrices of one tiling: one pass
	 * at any budget; of a product it needs the dense matrix, refused above it. */
	pspace_op *e = oref_expr(x);
	double *R = oref_expr_dense(x), rfro = fref_norm(R, (size_t)D * D);

	free(R);
	before = pspace_store_tiles_read(x->st.s);
	assert_int_equal(pspace_op_norm(e, &ex, PSPACE_NORM_FRO, NULL, &tr), 0);
	assert_int_equal(pspace_store_tiles_read(x->st.s) - before, 2 * TILES);
	assert_true(fabs(tr - rfro) < TOL * rfro);
	assert_int_equal(pspace_op_norm(p, &ex, PSPACE_NORM_FRO, NULL, &tr), PSPACE_ENOTSUP);
	assert_true(strstr(pspace_errdetail(), "budget") != NULL);

	/* F's direct solve does not fit the budget: DIRECT refuses, AUTO runs CG. */
	pspace_solve_opts so;
	double *b = fx_randv(D, 61), *y = malloc(D * sizeof(double));
	double *ref = malloc(D * sizeof(double));

	assert_non_null(y);
	assert_non_null(ref);
	fref_solve(x->RF, D, 0.5, 1, b, ref);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;
	assert_int_equal(pspace_op_solve(x->oF, &ex, 0.5, 1, b, D, &so, y, D), PSPACE_ENOMEM);
	so.method = PSPACE_SOLVE_AUTO;
	so.tol = 1e-8;
	assert_int_equal(pspace_op_solve(x->oF, &ex, 0.5, 1, b, D, &so, y, D), 0);
	assert_true(so.iterations > 0);
	assert_true(fx_relerr(y, ref, D) < TOL);
	free(ref);
	free(y);
	free(b);
	pspace_op_free(e);
	pspace_op_free(p);
}

/* ---- implicit matrices ---------------------------------------------------------------- */

typedef struct imp {
	size_t d;
	const double *M;
} imp;

static int imp_mv(void *ud, const double *x, double *y)
{
	const imp *m = ud;

	fref_mm(m->M, m->d, 1, x, y);
	return 0;
}

/* An Implicit stand-in: trace by Hutchinson, CG solves, the -2-norm, dense. */
static void test_op_implicit(void **state)
{
	const size_t d = 200;
	double *M = fref_gram(d, 400, 0.0, 77), *w = malloc(d * sizeof(double));
	double *Dn = malloc(d * d * sizeof(double)), *b = fx_randv(d, 5);
	double y[200], ref[200], tr, rtr = 0, nrm;
	imp u = {d, M};
	pspace_mat *m;
	pspace_op *o, *i1, *e;
	pspace_trace_opts to = {.probes = 200, .seed = 2};
	pspace_solve_opts so;

	(void)state;
	assert_non_null(w);
	assert_non_null(Dn);
	assert_int_equal(pspace_implicit_create(&m, d, imp_mv, NULL, &u), 0);
	assert_int_equal(pspace_op_mat(&o, m), 0);
	pspace_mat_free(m); /* the node holds its own reference */
	assert_int_equal(pspace_op_identity(&i1, d, 0.25), 0);
	assert_int_equal(pspace_op_add(&e, o, i1), 0);
	for (size_t i = 0; i < d; i++)
		rtr += M[i * d + i] + 0.25;
	assert_int_equal(pspace_op_trace(e, NULL, &to, &tr), 0);
	assert_int_equal(to.exact, 0);
	assert_true(fabs(tr - rtr) < 4 * to.stderr_ + 1e-9 * rtr);
	/* AUTO falls back to CG: Implicit has no direct solve. */
	pspace_solve_opts_default(&so);
	so.tol = 1e-10;
	assert_int_equal(pspace_op_solve(e, NULL, 0.0, 1, b, d, &so, y, d), 0);
	assert_true(so.iterations > 0);
	fref_solve(M, d, 0.25, 1, b, ref);
	assert_true(fx_relerr(y, ref, d) < 1e-8);
	/* -2 norm of the full-rank Gram matrix, vs dsyev (decreasing) */
	fref_eigh(M, d, w, NULL);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_MINUS2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[d - 1]) < 1e-6 * w[d - 1]);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[0]) < 1e-8 * w[0]);
	/* dense of the expression; Frobenius of the single leaf plus shift */
	assert_int_equal(pspace_op_dense(e, NULL, Dn, d), 0);
	for (size_t i = 0; i < d; i++)
		M[i * d + i] += 0.25;
	assert_true(fx_relerr(Dn, M, d * d) < 1e-12);

	/* (M + 0.25 I) M: dense through unit vectors, Frobenius through the dense. */
	pspace_op *p;
	double *P = calloc(d * d, sizeof(double)), rfro, fro;

	assert_non_null(P);
	assert_int_equal(pspace_op_product(&p, e, o), 0);
	for (size_t i = 0; i < d; i++)
		M[i * d + i] -= 0.25; /* the callback's matrix again */
	for (size_t i = 0; i < d; i++)
		for (size_t q = 0; q < d; q++)
			for (size_t j = 0; j < d; j++)
				P[i * d + j] += (M[i * d + q] + (i == q ? 0.25 : 0)) * M[q * d + j];
	rfro = fref_norm(P, d * d);
	assert_int_equal(pspace_op_dense(p, NULL, Dn, d), 0);
	assert_true(fx_relerr(Dn, P, d * d) < 1e-12);
	assert_int_equal(pspace_op_norm(p, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - rfro) < 1e-12 * rfro);
	pspace_op_free(p);
	free(P);
	free(b);
	free(Dn);
	free(w);
	free(M);
	pspace_op_free(e);
	pspace_op_free(i1);
	pspace_op_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_op_linear_mm, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_linear_vtmv, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_linear_reductions, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_product, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_eig, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_threads, oref_setup, oref_teardown),
	    cmocka_unit_test_setup_teardown(test_op_budget, oref_setup, oref_teardown),
	    cmocka_unit_test(test_op_implicit),
	};

	return cmocka_run_group_tests(tests, oref_group_setup, oref_group_teardown);
}
