/*
 * Tests of the one-pass promise of the lazy operators (include/pspace/op.h):
 * for E = 2 F - G + c I with F and G stored Dense of the same tiling, mv,
 * mm (any k), vTMv, the Frobenius norm and writing E into the store read
 * each tile of F and of G exactly once per evaluation, counted with
 * pspace_store_tiles_read(). F and G live in two stores, so that each
 * store's counter counts the reads of one matrix. mm keeps BLAS gemm's
 * contract (Y = alpha A X + beta Y, Y not read when beta = 0) in that pass.
 *
 * Numbers are checked against a float64 dense reference (plain loops,
 * here and in fref.h). Tiles are stored as f64, so the tolerance is 1e-12
 * relative. The Frobenius and write cases run under a memory budget far
 * below the stored size of F and G, so they really stream.
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
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define D     700 /* not a multiple of the tile edge */
#define TILE  128
#define NT    ((D + TILE - 1) / TILE)
#define TILES (NT * (NT + 1) / 2) /* stored tiles of one symmetric matrix */
#define SHIFT 0.25
#define TOL   1e-12

/* Far below the 2 x 3.9 MB of F and G (and below d x d doubles). */
static const pspace_exec SMALL = {2, 256 << 10};

typedef struct fixture {
	fx_store sf, sg;      /* F in sf, G in sg */
	double *RF, *RG, *RE; /* references; RE = 2 RF - RG + SHIFT I */
	pspace_mat *F, *G;
	pspace_op *oF, *oG, *E;
} fixture;

/* A random symmetric d x d matrix with entries in [-1, 1). */
static double *sym(uint64_t seed)
{
	double *M = fx_randv((size_t)D * D, seed);

	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < i; j++)
			M[i * D + j] = M[j * D + i];
	return M;
}

static void write_opts(pspace_write_opts *o, uint32_t tile)
{
	pspace_write_opts_default(o);
	o->tile = tile;
	o->codec.dtype = PSPACE_F64;
}

/* 2 F - G + SHIFT I from the leaves. */
static pspace_op *build_expr(pspace_op *oF, pspace_op *oG)
{
	pspace_op *f2, *c, *i, *e;

	assert_int_equal(pspace_op_scale(&f2, 2.0, oF), 0);
	assert_int_equal(pspace_op_sub(&c, f2, oG), 0);
	assert_int_equal(pspace_op_identity(&i, D, SHIFT), 0);
	assert_int_equal(pspace_op_add(&e, c, i), 0);
	pspace_op_free(i);
	pspace_op_free(c);
	pspace_op_free(f2);
	return e;
}

static int setup(void **state)
{
	fixture *x = calloc(1, sizeof(*x));
	pspace_write_opts wo;

	assert_non_null(x);
	x->RF = sym(1);
	x->RG = sym(2);
	x->RE = malloc((size_t)D * D * sizeof(double));
	assert_non_null(x->RE);
	for (size_t i = 0; i < (size_t)D * D; i++)
		x->RE[i] = 2 * x->RF[i] - x->RG[i];
	for (size_t i = 0; i < D; i++)
		x->RE[i * D + i] += SHIFT;
	fx_store_open(&x->sf, "op-pass-f");
	fx_store_open(&x->sg, "op-pass-g");
	write_opts(&wo, TILE);
	assert_int_equal(pspace_dense_write(x->sf.s, "F", NULL, D, x->RF, D, &wo), 0);
	assert_int_equal(pspace_dense_write(x->sg.s, "G", NULL, D, x->RG, D, &wo), 0);
	assert_int_equal(pspace_mat_open(&x->F, x->sf.s, "F"), 0);
	assert_int_equal(pspace_mat_open(&x->G, x->sg.s, "G"), 0);
	assert_int_equal(pspace_op_mat(&x->oF, x->F), 0);
	assert_int_equal(pspace_op_mat(&x->oG, x->G), 0);
	x->E = build_expr(x->oF, x->oG);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fixture *x = *state;

	pspace_op_free(x->E);
	pspace_op_free(x->oG);
	pspace_op_free(x->oF);
	pspace_mat_free(x->G);
	pspace_mat_free(x->F);
	fx_store_close(&x->sg);
	fx_store_close(&x->sf);
	free(x->RE);
	free(x->RG);
	free(x->RF);
	free(x);
	return 0;
}

/* Tile reads of F and of G since the last call. */
typedef struct reads {
	uint64_t f, g;
} reads;

static reads count(const fixture *x, reads *last)
{
	reads now = {pspace_store_tiles_read(x->sf.s), pspace_store_tiles_read(x->sg.s)};
	reads r = {now.f - last->f, now.g - last->g};

	*last = now;
	return r;
}

static void assert_once(const fixture *x, reads *last)
{
	reads r = count(x, last);

	assert_int_equal(r.f, TILES);
	assert_int_equal(r.g, TILES);
}

/* ---- mv, mm, vTMv -------------------------------------------------------------- */

static void test_op_pass_mv(void **state)
{
	fixture *x = *state;
	double *v = fx_randv(D, 3), y[D], ref[D];
	reads last = {0, 0};

	count(x, &last);
	assert_int_equal(pspace_op_mv(x->E, NULL, v, y), 0);
	assert_once(x, &last);
	fref_mm(x->RE, D, 1, v, ref);
	assert_true(fx_relerr(y, ref, D) < TOL);
	/* the same under a small budget, single-threaded */
	assert_int_equal(pspace_op_mv(x->E, &(pspace_exec){1, 64 << 10}, v, y), 0);
	assert_once(x, &last);
	assert_true(fx_relerr(y, ref, D) < TOL);
	free(v);
}

static void test_op_pass_mm(void **state)
{
	fixture *x = *state;
	const uint32_t ks[] = {2, 5, 17};
	const size_t ld = D + 3;
	double *X = fx_randv(17 * ld, 4), *Y = malloc(17 * ld * sizeof(double)), ref[D];
	double out[17];
	reads last = {0, 0};

	assert_non_null(Y);
	count(x, &last);
	for (size_t t = 0; t < 3; t++) {
		uint32_t k = ks[t];

		assert_int_equal(pspace_op_mm(x->E, NULL, k, 1.0, X, ld, 0.0, Y, ld), 0);
		assert_once(x, &last);
		for (uint32_t j = 0; j < k; j++) {
			fref_mm(x->RE, D, 1, X + j * ld, ref);
			assert_true(fx_relerr(Y + j * ld, ref, D) < TOL);
		}
		assert_int_equal(pspace_op_mm(x->E, &SMALL, k, 1.0, X, ld, 0.0, Y, ld), 0);
		assert_once(x, &last);
		fref_mm(x->RE, D, 1, X + (k - 1) * ld, ref);
		assert_true(fx_relerr(Y + (k - 1) * ld, ref, D) < TOL);
	}
	/* vTMv of 5 vectors: one pass too. */
	assert_int_equal(pspace_op_vtmv_batch(x->E, NULL, 5, X, ld, out), 0);
	assert_once(x, &last);
	for (uint32_t j = 0; j < 5; j++) {
		double r = 0;

		fref_mm(x->RE, D, 1, X + j * ld, ref);
		for (size_t i = 0; i < D; i++)
			r += X[j * ld + i] * ref[i];
		assert_true(fabs(out[j] - r) < TOL * fabs(r) + 1e-9);
	}
	free(Y);
	free(X);
}

/*
 * Checks Y = alpha A X + beta Y for @p a (dense reference @p RA) against the
 * reference, with NaN in Y when beta = 0 (never read, as in BLAS) and the
 * padding of Y untouched. Stored reads: one pass when alpha != 0, none else.
 */
static void check_gemm(fixture *x, pspace_op *a, const double *RA)
{
	static const double ab[][2] = {{-0.5, 0.0}, {2.0, 0.25}, {1.0, 1.0}, {0.0, -2.0}};
	const uint32_t k = 3;
	const size_t ld = D + 1;
	double *X = fx_randv(k * ld, 5), *Y0 = fx_randv(k * ld, 6);
	double *Y = malloc(k * ld * sizeof(double)), ref[D], want[D];
	reads last = {0, 0}, r;

	assert_non_null(Y);
	count(x, &last);
	for (size_t t = 0; t < sizeof(ab) / sizeof(ab[0]); t++) {
		double alpha = ab[t][0], beta = ab[t][1];

		for (size_t i = 0; i < k * ld; i++)
			Y[i] = beta == 0.0 ? NAN : Y0[i];
		assert_int_equal(pspace_op_mm(a, NULL, k, alpha, X, ld, beta, Y, ld), 0);
		if (alpha != 0.0) {
			assert_once(x, &last);
		} else {
			r = count(x, &last);
			assert_int_equal(r.f + r.g, 0);
		}
		for (uint32_t j = 0; j < k; j++) {
			fref_mm(RA, D, 1, X + j * ld, ref);
			for (size_t i = 0; i < D; i++)
				want[i] =
				    alpha * ref[i] + (beta == 0.0 ? 0.0 : beta * Y0[j * ld + i]);
			assert_true(fx_relerr(Y + j * ld, want, D) < TOL);
			assert_true(beta == 0.0 ? isnan(Y[j * ld + D])
			                        : Y[j * ld + D] == Y0[j * ld + D]);
		}
	}
	free(Y);
	free(Y0);
	free(X);
}

/* pspace_op_mm is gemm: on the stored E, and on E plus a resident Diag. */
static void test_op_pass_mm_gemm(void **state)
{
	fixture *x = *state;
	double *dv = fx_randv(D, 7), *RS = malloc((size_t)D * D * sizeof(double));
	pspace_layout *l = NULL;
	pspace_mat *dm = NULL;
	pspace_op *od = NULL, *s = NULL;

	assert_non_null(RS);
	check_gemm(x, x->E, x->RE);
	memcpy(RS, x->RE, (size_t)D * D * sizeof(double));
	for (size_t i = 0; i < D; i++)
		RS[i * D + i] += dv[i];
	assert_int_equal(pspace_layout_flat(&l, D), 0);
	assert_int_equal(pspace_diag_create(&dm, l, dv), 0);
	assert_int_equal(pspace_op_mat(&od, dm), 0);
	assert_int_equal(pspace_op_add(&s, x->E, od), 0);
	check_gemm(x, s, RS);
	pspace_op_free(s);
	pspace_op_free(od);
	pspace_mat_free(dm);
	pspace_layout_free(l);
	free(RS);
	free(dv);
}

/* ---- the Frobenius norm ---------------------------------------------------------- */

static void test_op_pass_norm(void **state)
{
	fixture *x = *state;
	double fro, want = fref_norm(x->RE, (size_t)D * D);
	reads last = {0, 0};

	count(x, &last);
	assert_int_equal(pspace_op_norm(x->E, &SMALL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_once(x, &last);
	assert_true(fabs(fro - want) < TOL * want);
	assert_int_equal(
	    pspace_op_norm(x->E, &(pspace_exec){1, 64 << 10}, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_once(x, &last);
	assert_true(fabs(fro - want) < TOL * want);
	assert_int_equal(pspace_op_norm(x->E, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_once(x, &last);
	assert_true(fabs(fro - want) < TOL * want);
}

/* E + Diag(w): a diagonal resident term goes through the diagonal, still one pass. */
static void test_op_pass_norm_diag(void **state)
{
	fixture *x = *state;
	double *w = fx_randv(D, 5), *R = malloc((size_t)D * D * sizeof(double)), fro, want;
	pspace_layout *flat;
	pspace_mat *dm;
	pspace_op *od, *e;
	reads last = {0, 0};

	assert_non_null(R);
	assert_int_equal(pspace_layout_flat(&flat, D), 0);
	assert_int_equal(pspace_diag_create(&dm, flat, w), 0);
	assert_int_equal(pspace_op_mat(&od, dm), 0);
	assert_int_equal(pspace_op_add(&e, x->E, od), 0);
	memcpy(R, x->RE, (size_t)D * D * sizeof(double));
	for (size_t i = 0; i < D; i++)
		R[i * D + i] += w[i];
	want = fref_norm(R, (size_t)D * D);
	count(x, &last);
	assert_int_equal(pspace_op_norm(e, &SMALL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_once(x, &last);
	assert_true(fabs(fro - want) < TOL * want);
	pspace_op_free(e);
	pspace_op_free(od);
	pspace_mat_free(dm);
	pspace_layout_free(flat);
	free(R);
	free(w);
}

/* What has no exact one-pass form: dense within the budget, refused beyond it. */
static void test_op_pass_norm_refused(void **state)
{
	fixture *x = *state;
	pspace_write_opts wo;
	pspace_mat *h, *lr;
	pspace_op *oh, *e, *olr, *e2;
	pspace_layout *flat;
	double *R = malloc((size_t)D * D * sizeof(double)), *Dm = fx_randv(3 * D, 6), fro, want;

	assert_non_null(R);
	/* F stored again with another tile edge: F and F100 are not read together. */
	write_opts(&wo, 100);
	assert_int_equal(pspace_dense_write(x->sg.s, "F100", NULL, D, x->RF, D, &wo), 0);
	assert_int_equal(pspace_mat_open(&h, x->sg.s, "F100"), 0);
	assert_int_equal(pspace_op_mat(&oh, h), 0);
	assert_int_equal(pspace_op_add(&e, x->E, oh), 0);
	for (size_t i = 0; i < (size_t)D * D; i++)
		R[i] = x->RE[i] + x->RF[i];
	want = fref_norm(R, (size_t)D * D);
	assert_int_equal(pspace_op_norm(e, &SMALL, PSPACE_NORM_FRO, NULL, &fro), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "different tilings"));
	assert_non_null(strstr(pspace_errdetail(), "budget"));
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - want) < TOL * want);

	/* A LowRank term is neither stored with F's tiling nor diagonal. */
	assert_int_equal(pspace_layout_flat(&flat, D), 0);
	assert_int_equal(pspace_lowrank_create(&lr, flat, 3, Dm, D), 0);
	assert_int_equal(pspace_op_mat(&olr, lr), 0);
	assert_int_equal(pspace_op_add(&e2, x->E, olr), 0);
	assert_int_equal(pspace_op_norm(e2, &SMALL, PSPACE_NORM_FRO, NULL, &fro), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "not diagonal"));
	memcpy(R, x->RE, (size_t)D * D * sizeof(double));
	for (size_t r = 0; r < 3; r++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				R[i * D + j] += Dm[r * D + i] * Dm[r * D + j];
	want = fref_norm(R, (size_t)D * D);
	assert_int_equal(pspace_op_norm(e2, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - want) < TOL * want);
	/* Alone with a shift it is exact without the dense matrix. */
	pspace_op *i1, *e3;

	assert_int_equal(pspace_op_identity(&i1, D, SHIFT), 0);
	assert_int_equal(pspace_op_add(&e3, olr, i1), 0);
	for (size_t i = 0; i < (size_t)D * D; i++)
		R[i] -= x->RE[i];
	for (size_t i = 0; i < D; i++)
		R[i * D + i] += SHIFT;
	want = fref_norm(R, (size_t)D * D);
	assert_int_equal(pspace_op_norm(e3, &SMALL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - want) < TOL * want);

	pspace_op_free(e3);
	pspace_op_free(i1);
	pspace_op_free(e2);
	pspace_op_free(olr);
	pspace_mat_free(lr);
	pspace_layout_free(flat);
	pspace_op_free(e);
	pspace_op_free(oh);
	pspace_mat_free(h);
	free(Dm);
	free(R);
}

/*
 * E + LowRank whose off-diagonal part is tiny next to its diagonal: still
 * not diagonal (a LowRank never is), so no one-pass form: refused under
 * the small budget, dense within the default one. Taken as diagonal it
 * would lose 2 <E, off-diagonal part>, about 1e-8 of ||A||_F here (the rows
 * follow the signs of E), far above TOL.
 */
static void test_op_pass_norm_near_diag(void **state)
{
	fixture *x = *state;
	const size_t rows = 3, at[3] = {5, 350, 699};
	const double a = 30, eps = 1e-7;
	double *Dm = calloc(rows * D, sizeof(double)), *R = malloc((size_t)D * D * sizeof(double));
	double fro, want;
	pspace_layout *flat;
	pspace_mat *lr;
	pspace_op *olr, *e;

	assert_non_null(Dm);
	assert_non_null(R);
	for (size_t r = 0; r < rows; r++) {
		for (size_t j = 0; j < D; j++)
			Dm[r * D + j] = x->RE[at[r] * D + j] < 0 ? -eps : eps;
		Dm[r * D + at[r]] = a;
	}
	assert_int_equal(pspace_layout_flat(&flat, D), 0);
	assert_int_equal(pspace_lowrank_create(&lr, flat, rows, Dm, D), 0);
	assert_int_equal(pspace_op_mat(&olr, lr), 0);
	assert_int_equal(pspace_op_add(&e, x->E, olr), 0);
	memcpy(R, x->RE, (size_t)D * D * sizeof(double));
	for (size_t r = 0; r < rows; r++)
		for (size_t i = 0; i < D; i++)
			for (size_t j = 0; j < D; j++)
				R[i * D + j] += Dm[r * D + i] * Dm[r * D + j];
	want = fref_norm(R, (size_t)D * D);
	assert_int_equal(pspace_op_norm(e, &SMALL, PSPACE_NORM_FRO, NULL, &fro), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "not diagonal"));
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - want) < TOL * want);
	pspace_op_free(e);
	pspace_op_free(olr);
	pspace_mat_free(lr);
	pspace_layout_free(flat);
	free(R);
	free(Dm);
}

/* Adds @p m to E and checks ||E + m||_F in one pass under the small budget; @p w = diag m. */
static void check_diagonal_term(fixture *x, pspace_mat *m, const double *w)
{
	double *R = malloc((size_t)D * D * sizeof(double)), fro, want;
	pspace_op *om, *e;
	reads last = {0, 0};

	assert_non_null(R);
	assert_int_equal(pspace_op_mat(&om, m), 0);
	assert_int_equal(pspace_op_add(&e, x->E, om), 0);
	memcpy(R, x->RE, (size_t)D * D * sizeof(double));
	for (size_t i = 0; i < D; i++)
		R[i * D + i] += w[i];
	want = fref_norm(R, (size_t)D * D);
	count(x, &last);
	assert_int_equal(pspace_op_norm(e, &SMALL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_once(x, &last);
	assert_true(fabs(fro - want) < TOL * want);
	pspace_op_free(e);
	pspace_op_free(om);
	free(R);
}

/*
 * Kinds that are diagonal by their representation also take the one-pass
 * form: a Mixed of a Diag and an Identity part, a QuasiDiag without biases.
 * A QuasiDiag with a bias has cross terms and is refused under the budget.
 */
static void test_op_pass_norm_diagonal_kinds(void **state)
{
	fixture *x = *state;
	double *w = fx_randv(D, 7), fro;
	pspace_layout *two, *part, *nobias, *bias;
	pspace_mat *dg, *id, *parts[2], *mx, *qd, *qb;
	pspace_op *oq, *e;

	assert_int_equal(
	    pspace_layout_parse(&two, "l1 linear 20x15 nobias\nl2 linear 20x20 nobias\n", "test"),
	    0);
	assert_int_equal(pspace_layout_parse(&part, "l1 linear 20x15 nobias\n", "test"), 0);
	assert_int_equal(pspace_diag_create(&dg, part, w), 0);
	assert_int_equal(pspace_identity_create(&id, 400, 1.5), 0);
	parts[0] = dg;
	parts[1] = id;
	assert_int_equal(pspace_mixed_create(&mx, two, parts), 0);
	for (size_t i = 300; i < D; i++)
		w[i] = 1.5;
	check_diagonal_term(x, mx, w);

	assert_int_equal(pspace_layout_parse(&nobias, "fc linear 20x35 nobias\n", "test"), 0);
	assert_int_equal(pspace_quasidiag_create(&qd, nobias, w, NULL), 0);
	check_diagonal_term(x, qd, w);

	assert_int_equal(pspace_layout_parse(&bias, "fc linear 20x34 bias\n", "test"), 0);
	assert_int_equal(pspace_quasidiag_create(&qb, bias, w, NULL), 0);
	assert_int_equal(pspace_op_mat(&oq, qb), 0);
	assert_int_equal(pspace_op_add(&e, x->E, oq), 0);
	assert_int_equal(pspace_op_norm(e, &SMALL, PSPACE_NORM_FRO, NULL, &fro), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "not diagonal"));

	pspace_op_free(e);
	pspace_op_free(oq);
	pspace_mat_free(qb);
	pspace_mat_free(qd);
	pspace_mat_free(mx);
	pspace_mat_free(id);
	pspace_mat_free(dg);
	pspace_layout_free(bias);
	pspace_layout_free(nobias);
	pspace_layout_free(part);
	pspace_layout_free(two);
	free(w);
}

/* ---- writing ---------------------------------------------------------------------- */

/* Opens @p name in @p s and checks it against RE. */
static void check_written(fixture *x, pspace_store *s, const char *name)
{
	double *Dn = malloc((size_t)D * D * sizeof(double));
	pspace_mat *m;

	assert_non_null(Dn);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_DENSE);
	assert_int_equal(pspace_mat_dim(m), D);
	assert_int_equal(pspace_mat_dense(m, NULL, Dn, D), 0);
	assert_true(fx_relerr(Dn, x->RE, (size_t)D * D) < TOL);
	pspace_mat_free(m);
	free(Dn);
}

static void test_op_pass_write(void **state)
{
	fixture *x = *state;
	pspace_write_opts wo;
	reads last = {0, 0};

	write_opts(&wo, TILE);
	count(x, &last);
	/* into F's store, under a small budget: tile by tile from one pass */
	assert_int_equal(pspace_op_write(x->E, &SMALL, x->sf.s, "E", &wo), 0);
	assert_once(x, &last);
	/* into G's store, default budget */
	assert_int_equal(pspace_op_write(x->E, NULL, x->sg.s, "E", &wo), 0);
	assert_once(x, &last);
	check_written(x, x->sf.s, "E");
	check_written(x, x->sg.s, "E");
	assert_int_equal(pspace_op_write(x->E, &SMALL, x->sf.s, "E", &wo), PSPACE_EEXIST);
}

/* Another tile edge than F's and G's: row bands, as tall as the budget allows. */
static void test_op_pass_write_bands(void **state)
{
	fixture *x = *state;
	pspace_write_opts wo;
	reads last = {0, 0}, r;
	const uint64_t rows100 = (D + 99) / 100;

	write_opts(&wo, 100);
	count(x, &last);
	/* The default budget holds all 700 unit vectors: one band, one pass. */
	assert_int_equal(pspace_op_write(x->E, NULL, x->sf.s, "E100", &wo), 0);
	assert_once(x, &last);
	check_written(x, x->sf.s, "E100");
	count(x, &last); /* E100's own tiles, read by the check */
	/* 256 KiB hold 23 unit vectors of 700 and their images: one tile row per band. */
	assert_int_equal(pspace_op_write(x->E, &SMALL, x->sf.s, "E100s", &wo), 0);
	r = count(x, &last);
	assert_int_equal(r.f, rows100 * TILES);
	assert_int_equal(r.g, rows100 * TILES);
	check_written(x, x->sf.s, "E100s");
	count(x, &last);
	/* 4 MiB hold 374 unit vectors of 700 and their images: bands of 300 rows, 3 passes. */
	assert_int_equal(pspace_op_write(x->E, &(pspace_exec){2, 4 << 20}, x->sf.s, "E100m", &wo),
	                 0);
	r = count(x, &last);
	assert_int_equal(r.f, 3 * TILES);
	assert_int_equal(r.g, 3 * TILES);
	check_written(x, x->sf.s, "E100m");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_op_pass_mv, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_mm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_mm_gemm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_norm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_norm_diag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_norm_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_norm_near_diag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_norm_diagonal_kinds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_pass_write_bands, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
