/*
 * Tests of the lazy operators (src/op): folding, evaluation of sums,
 * scalings, shifts, products and inverses over stored Dense/BlockDiag,
 * Identity and Implicit matrices; solves (direct and CG with every
 * preconditioner kind), Lanczos eigenpairs and norms, Hutchinson traces,
 * materialization into the store, describe() and dimension errors.
 *
 * Every number is checked against a float64 dense reference computed here
 * (plain loops, a Cholesky written here, LAPACKE_dsyev for eigenpairs),
 * never against the code under test. Matrices are stored in float32, so
 * the tolerance is a relative error of 1e-3.
 */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lapacke.h>

#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"
#include "pspace/vec.h"

#define D     700 /* not a multiple of the tile edge */
#define TILE  128
#define NT    ((D + TILE - 1) / TILE)
#define TILES (NT * (NT + 1) / 2) /* stored tiles of one symmetric matrix */
#define TOL   1e-3

/* ---- references, computed once --------------------------------------------- */

static double *RF, *RG; /* F = J1^T J1 / n1 (rank-deficient), G = J2^T J2 / n2 */

static uint64_t rng_state;

static double randn(void)
{
	uint64_t x;
	double u1, u2;

	for (;;) {
		x = (rng_state += 0x9e3779b97f4a7c15ull);
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
		u1 = ((x >> 11) + 0.5) / 9007199254740992.0;
		x = (rng_state += 0x9e3779b97f4a7c15ull);
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
		u2 = ((x >> 11) + 0.5) / 9007199254740992.0;
		return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
	}
}

static void fill_randn(double *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = randn();
}

/* M = J^T J / n for a random n x d J. */
static double *gram(uint64_t seed, size_t n, size_t d)
{
	double *J = malloc(n * d * sizeof(double)), *M = calloc(d * d, sizeof(double));

	assert_non_null(J);
	assert_non_null(M);
	rng_state = seed;
	fill_randn(J, n * d);
	for (size_t r = 0; r < n; r++)
		for (size_t i = 0; i < d; i++) {
			double a = J[r * d + i] / (double)n;

			for (size_t j = i; j < d; j++)
				M[i * d + j] += a * J[r * d + j];
		}
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < i; j++)
			M[i * d + j] = M[j * d + i];
	free(J);
	return M;
}

/* y = M x (M d x d) */
static void ref_mv(size_t d, const double *M, const double *x, double *y)
{
	for (size_t i = 0; i < d; i++) {
		double s = 0;

		for (size_t j = 0; j < d; j++)
			s += M[i * d + j] * x[j];
		y[i] = s;
	}
}

/* The reference of 2F - 0.5G + 1e-3 I. */
static double *ref_expr(void)
{
	double *R = malloc((size_t)D * D * sizeof(double));

	assert_non_null(R);
	for (size_t i = 0; i < (size_t)D * D; i++)
		R[i] = 2 * RF[i] - 0.5 * RG[i];
	for (size_t i = 0; i < D; i++)
		R[i * D + i] += 1e-3;
	return R;
}

/* X = (M + l I)^{-1} B for k columns, by a Cholesky written here. */
static void ref_solve(size_t d, const double *M, double l, size_t k, const double *B, double *X)
{
	double *L = malloc(d * d * sizeof(double));

	assert_non_null(L);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j <= i; j++) {
			double s = M[i * d + j] + (i == j ? l : 0);

			for (size_t p = 0; p < j; p++)
				s -= L[i * d + p] * L[j * d + p];
			if (i == j) {
				assert_true(s > 0);
				L[i * d + i] = sqrt(s);
			} else {
				L[i * d + j] = s / L[j * d + j];
			}
		}
	for (size_t c = 0; c < k; c++) {
		const double *b = B + c * d;
		double *x = X + c * d;

		for (size_t i = 0; i < d; i++) {
			double s = b[i];

			for (size_t p = 0; p < i; p++)
				s -= L[i * d + p] * x[p];
			x[i] = s / L[i * d + i];
		}
		for (size_t i = d; i-- > 0;) {
			double s = x[i];

			for (size_t p = i + 1; p < d; p++)
				s -= L[p * d + i] * x[p];
			x[i] = s / L[i * d + i];
		}
	}
	free(L);
}

static double rel_err(size_t n, const double *x, const double *ref)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		num += (x[i] - ref[i]) * (x[i] - ref[i]);
		den += ref[i] * ref[i];
	}
	return sqrt(num / (den > 0 ? den : 1));
}

/* Eigenvalues (ascending) and vectors (rows) of symmetric M by LAPACKE_dsyev. */
static void ref_eig(size_t d, const double *M, double *w, double *V)
{
	memcpy(V, M, d * d * sizeof(double));
	/* Column-major eigenvectors of the (symmetric) row-major matrix: rows of V. */
	assert_int_equal(
	    LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)d, V, (lapack_int)d, w), 0);
}

/* ---- per-test store with F and G --------------------------------------------- */

typedef struct fixture {
	char root[64], path[128];
	pspace_store *s;
	pspace_mat *F, *G;
	pspace_op *oF, *oG;
} fixture;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void write_opts(pspace_write_opts *o)
{
	pspace_write_opts_default(o);
	o->tile = TILE;
}

static int setup(void **state)
{
	fixture *x = calloc(1, sizeof(*x));
	pspace_store_opts so;
	pspace_write_opts wo;

	assert_non_null(x);
	snprintf(x->root, sizeof(x->root), "/tmp/pspace-test-op-XXXXXX");
	assert_non_null(mkdtemp(x->root));
	snprintf(x->path, sizeof(x->path), "%s/s", x->root);
	pspace_store_opts_default(&so);
	so.nosync = 1;
	assert_int_equal(pspace_store_open(&x->s, x->path, &so), 0);
	write_opts(&wo);
	assert_int_equal(pspace_dense_write(x->s, "F", NULL, D, RF, D, &wo), 0);
	assert_int_equal(pspace_dense_write(x->s, "G", NULL, D, RG, D, &wo), 0);
	assert_int_equal(pspace_mat_open(&x->F, x->s, "F"), 0);
	assert_int_equal(pspace_mat_open(&x->G, x->s, "G"), 0);
	assert_int_equal(pspace_op_mat(&x->oF, x->F), 0);
	assert_int_equal(pspace_op_mat(&x->oG, x->G), 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fixture *x = *state;

	pspace_op_free(x->oG);
	pspace_op_free(x->oF);
	pspace_mat_free(x->G);
	pspace_mat_free(x->F);
	pspace_store_close(x->s);
	nftw(x->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(x);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	RF = gram(11, 50, D);
	RG = gram(22, 900, D);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(RG);
	free(RF);
	return 0;
}

/* E = 2F - 0.5G + 1e-3 I, built from the fixture's leaves. */
static pspace_op *build_expr(fixture *x)
{
	pspace_op *a, *b, *c, *e, *i, *r;

	assert_int_equal(pspace_op_scale(&a, 2.0, x->oF), 0);
	assert_int_equal(pspace_op_scale(&b, 0.5, x->oG), 0);
	assert_int_equal(pspace_op_sub(&c, a, b), 0);
	assert_int_equal(pspace_op_identity(&i, D, 1e-3), 0);
	assert_int_equal(pspace_op_add(&e, c, i), 0);
	r = e;
	pspace_op_free(i);
	pspace_op_free(c);
	pspace_op_free(b);
	pspace_op_free(a);
	return r;
}

static void rand_batch(uint64_t seed, size_t k, size_t ld, double *X)
{
	rng_state = seed;
	for (size_t j = 0; j < k; j++)
		fill_randn(X + j * ld, D);
}

/* ---- the linear expression 2F - 0.5G + 1e-3 I ----------------------------------- */

static void test_op_linear_mm(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x);
	double *R = ref_expr();
	const uint32_t ks[] = {1, 3, 16};
	const size_t ld = D + 5;
	double *X = malloc(16 * ld * sizeof(double)), *Y = malloc(16 * ld * sizeof(double));
	double ref[D];

	assert_non_null(X);
	assert_non_null(Y);
	for (size_t t = 0; t < 3; t++) {
		uint32_t k = ks[t];
		uint64_t before;

		rand_batch(100 + k, k, ld, X);
		before = pspace_store_tiles_read(x->s);
		assert_int_equal(pspace_op_mm(e, NULL, k, 1.0, X, ld, 0.0, Y, ld), 0);
		/* One pass over F and one over G, whatever k. */
		assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
		for (uint32_t j = 0; j < k; j++) {
			ref_mv(D, R, X + j * ld, ref);
			assert_true(rel_err(D, Y + j * ld, ref) < TOL);
		}
	}
	/* mv */
	ref_mv(D, R, X, ref);
	assert_int_equal(pspace_op_mv(e, NULL, X, Y), 0);
	assert_true(rel_err(D, Y, ref) < TOL);

	/* E + F - 3G names F twice and G twice: still one pass over each. */
	pspace_op *e2, *e3, *g3;
	uint64_t before = pspace_store_tiles_read(x->s);

	assert_int_equal(pspace_op_add(&e2, e, x->oF), 0);
	assert_int_equal(pspace_op_scale(&g3, 3.0, x->oG), 0);
	assert_int_equal(pspace_op_sub(&e3, e2, g3), 0);
	assert_int_equal(pspace_op_mm(e3, NULL, 3, 1.0, X, ld, 0.0, Y, ld), 0);
	assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
	for (uint32_t j = 0; j < 3; j++) {
		double t[D];

		ref_mv(D, R, X + j * ld, ref);
		ref_mv(D, RF, X + j * ld, t);
		for (size_t i = 0; i < D; i++)
			ref[i] += t[i];
		ref_mv(D, RG, X + j * ld, t);
		for (size_t i = 0; i < D; i++)
			ref[i] -= 3 * t[i];
		assert_true(rel_err(D, Y + j * ld, ref) < TOL);
	}
	pspace_op_free(e3);
	pspace_op_free(g3);
	pspace_op_free(e2);
	free(Y);
	free(X);
	free(R);
	pspace_op_free(e);
}

static void test_op_linear_vtmv(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x);
	double *R = ref_expr();
	double *V = malloc(16 * D * sizeof(double)), out[16], ref[D], r;
	uint64_t before;

	assert_non_null(V);
	rand_batch(7, 16, D, V);
	assert_int_equal(pspace_op_vtmv(e, NULL, V, out), 0);
	ref_mv(D, R, V, ref);
	r = 0;
	for (size_t i = 0; i < D; i++)
		r += V[i] * ref[i];
	assert_true(fabs(out[0] - r) < TOL * fabs(r));
	for (uint32_t k = 3; k <= 16; k += 13) {
		before = pspace_store_tiles_read(x->s);
		assert_int_equal(pspace_op_vtmv_batch(e, NULL, k, V, D, out), 0);
		assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
		for (uint32_t j = 0; j < k; j++) {
			ref_mv(D, R, V + j * D, ref);
			r = 0;
			for (size_t i = 0; i < D; i++)
				r += V[j * D + i] * ref[i];
			assert_true(fabs(out[j] - r) < TOL * fabs(r));
		}
	}
	free(V);
	free(R);
	pspace_op_free(e);
}

static void test_op_linear_reductions(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x);
	double *R = ref_expr(), *Dn = malloc((size_t)D * D * sizeof(double));
	double diag[D], rdiag[D], tr = 0, rtr = 0, fro = 0, rfro = 0;
	pspace_trace_opts to = {0};

	assert_non_null(Dn);
	for (size_t i = 0; i < D; i++) {
		rdiag[i] = R[i * D + i];
		rtr += R[i * D + i];
	}
	for (size_t i = 0; i < (size_t)D * D; i++)
		rfro += R[i] * R[i];
	rfro = sqrt(rfro);

	assert_int_equal(pspace_op_trace(e, NULL, &to, &tr), 0);
	assert_int_equal(to.exact, 1);
	assert_true(to.stderr_ == 0);
	assert_true(fabs(tr - rtr) < TOL * fabs(rtr));
	assert_int_equal(pspace_op_diag(e, NULL, diag), 0);
	assert_true(rel_err(D, diag, rdiag) < TOL);
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - rfro) < TOL * rfro);
	assert_int_equal(pspace_op_dense(e, NULL, Dn, D), 0);
	assert_true(rel_err((size_t)D * D, Dn, R) < TOL);

	/* A single leaf with a shift: ||3F + 0.5 I||_F by its closed form. */
	pspace_op *f3, *i5, *g;

	assert_int_equal(pspace_op_scale(&f3, 3.0, x->oF), 0);
	assert_int_equal(pspace_op_identity(&i5, D, 0.5), 0);
	assert_int_equal(pspace_op_add(&g, f3, i5), 0);
	rfro = 0;
	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < D; j++) {
			double v = 3 * RF[i * D + j] + (i == j ? 0.5 : 0);

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

static void test_op_describe(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x), *p, *i1, *s, *inv, *q;
	char buf[256];
	int n;

	n = pspace_op_describe(e, buf, sizeof(buf));
	assert_string_equal(buf, "2*F - 0.5*G + 0.001*I");
	assert_int_equal(n, (int)strlen(buf));
	/* Truncation reports the length needed, like snprintf. */
	assert_int_equal(pspace_op_describe(e, buf, 5), n);
	assert_string_equal(buf, "2*F ");

	assert_int_equal(pspace_op_identity(&i1, D, 1.0), 0);
	assert_int_equal(pspace_op_add(&s, x->oF, i1), 0);
	assert_int_equal(pspace_op_product(&p, s, x->oG), 0);
	pspace_op_describe(p, buf, sizeof(buf));
	assert_string_equal(buf, "(F + I)*G");
	assert_int_equal(pspace_op_inverse(&inv, x->oF, 0.25, NULL), 0);
	assert_int_equal(pspace_op_product(&q, x->oG, inv), 0);
	pspace_op_describe(q, buf, sizeof(buf));
	assert_string_equal(buf, "G*(F + 0.25*I)^-1");
	pspace_op_free(q);
	pspace_op_free(inv);
	pspace_op_free(p);
	pspace_op_free(s);
	pspace_op_free(i1);
	pspace_op_free(e);
}

/* ---- products, Hutchinson, inverse nodes ---------------------------------------- */

static void test_op_product(void **state)
{
	fixture *x = *state;
	pspace_op *p, *p2;
	double *X = malloc(3 * D * sizeof(double)), *Y = malloc(3 * D * sizeof(double));
	double t1[D], ref[D], tr, rtr = 0;
	pspace_trace_opts to = {.probes = 64, .seed = 5};
	uint64_t before;

	assert_non_null(X);
	assert_non_null(Y);
	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	rand_batch(3, 3, D, X);
	before = pspace_store_tiles_read(x->s);
	assert_int_equal(pspace_op_mm(p, NULL, 3, 1.0, X, D, 0.0, Y, D), 0);
	assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
	for (int j = 0; j < 3; j++) {
		ref_mv(D, RG, X + j * D, t1);
		ref_mv(D, RF, t1, ref);
		assert_true(rel_err(D, Y + j * D, ref) < TOL);
	}
	/* tr(FG) = sum_ij F_ij G_ji; Hutchinson within 4 standard errors. */
	for (size_t i = 0; i < (size_t)D * D; i++)
		rtr += RF[i] * RG[i];
	before = pspace_store_tiles_read(x->s);
	assert_int_equal(pspace_op_trace(p, NULL, &to, &tr), 0);
	/* 64 probes fit the budget: one mm, one pass over each matrix. */
	assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
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
		rtr2 += RF[i * D + i];
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

static void test_op_inverse(void **state)
{
	fixture *x = *state;
	pspace_op *inv, *gi;
	double *X = malloc(3 * D * sizeof(double)), *Y = malloc(3 * D * sizeof(double));
	double ref[3 * D], t[D];
	const double l = 0.5;

	assert_non_null(X);
	assert_non_null(Y);
	rand_batch(9, 3, D, X);
	assert_int_equal(pspace_op_inverse(&inv, x->oF, l, NULL), 0);
	assert_int_equal(pspace_op_mm(inv, NULL, 3, 1.0, X, D, 0.0, Y, D), 0);
	ref_solve(D, RF, l, 3, X, ref);
	assert_true(rel_err(3 * D, Y, ref) < TOL);
	/* G (F + l I)^{-1} x */
	assert_int_equal(pspace_op_product(&gi, x->oG, inv), 0);
	assert_int_equal(pspace_op_mv(gi, NULL, X, Y), 0);
	ref_mv(D, RG, ref, t);
	assert_true(rel_err(D, Y, t) < TOL);
	pspace_op_free(gi);
	pspace_op_free(inv);
	free(Y);
	free(X);
}

/* ---- solves ---------------------------------------------------------------------- */

/* A BlockDiag made of F's diagonal blocks (layers of 300, 250, 150). */
static pspace_mat *blockdiag_of_f(fixture *x, double **ref)
{
	static const size_t sz[3] = {300, 250, 150};
	pspace_layout *ly;
	pspace_write_opts wo;
	pspace_mat *m;
	double *blocks[3];
	size_t off = 0;

	assert_int_equal(pspace_layout_parse(&ly,
	                                     "a generic 300 nobias\nb generic 250 nobias\n"
	                                     "c generic 150 nobias\n",
	                                     "test"),
	                 0);
	*ref = calloc((size_t)D * D, sizeof(double));
	assert_non_null(*ref);
	for (int b = 0; b < 3; b++) {
		blocks[b] = malloc(sz[b] * sz[b] * sizeof(double));
		assert_non_null(blocks[b]);
		for (size_t i = 0; i < sz[b]; i++)
			for (size_t j = 0; j < sz[b]; j++) {
				blocks[b][i * sz[b] + j] = RF[(off + i) * D + off + j];
				(*ref)[(off + i) * D + off + j] = RF[(off + i) * D + off + j];
			}
		off += sz[b];
	}
	write_opts(&wo);
	assert_int_equal(pspace_blockdiag_write(x->s, "B", ly, (const double *const *)blocks, &wo),
	                 0);
	assert_int_equal(pspace_mat_open(&m, x->s, "B"), 0);
	for (int b = 0; b < 3; b++)
		free(blocks[b]);
	pspace_layout_free(ly);
	return m;
}

static void test_op_solve_direct(void **state)
{
	fixture *x = *state;
	pspace_solve_opts so;
	pspace_op *e, *f2, *i1, *ob, *oi;
	pspace_mat *B, *I2;
	double *RB, *X = malloc(3 * D * sizeof(double)), *Y = malloc(3 * D * sizeof(double));
	double *ref = malloc(3 * D * sizeof(double));
	const double l = 0.3;

	assert_non_null(X);
	assert_non_null(Y);
	assert_non_null(ref);
	rand_batch(21, 3, D, X);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;

	/* Dense */
	assert_int_equal(pspace_op_solve(x->oF, NULL, l, 3, X, D, &so, Y, D), 0);
	ref_solve(D, RF, l, 3, X, ref);
	assert_true(rel_err(3 * D, Y, ref) < TOL);
	/* 2F + 0.1 I with damping 0.3 = 2 (F + 0.2 I): still direct. */
	assert_int_equal(pspace_op_scale(&f2, 2.0, x->oF), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 0.1), 0);
	assert_int_equal(pspace_op_add(&e, f2, i1), 0);
	assert_int_equal(pspace_op_solve(e, NULL, l, 3, X, D, &so, Y, D), 0);
	ref_solve(D, RF, 0.2, 3, X, ref);
	for (size_t i = 0; i < 3 * D; i++)
		ref[i] /= 2;
	assert_true(rel_err(3 * D, Y, ref) < TOL);
	/* BlockDiag */
	B = blockdiag_of_f(x, &RB);
	assert_int_equal(pspace_op_mat(&ob, B), 0);
	assert_int_equal(pspace_op_solve(ob, NULL, l, 3, X, D, &so, Y, D), 0);
	ref_solve(D, RB, l, 3, X, ref);
	assert_true(rel_err(3 * D, Y, ref) < TOL);
	/* Identity, as a node and as a matrix: (2 + l)^{-1} B exactly. */
	assert_int_equal(pspace_identity_create(&I2, D, 2.0), 0);
	assert_int_equal(pspace_op_mat(&oi, I2), 0);
	assert_int_equal(pspace_op_solve(oi, NULL, l, 3, X, D, &so, Y, D), 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(fabs(Y[i] - X[i] / (2 + l)) < 1e-12 * (1 + fabs(X[i])));
	assert_int_equal(pspace_op_solve(i1, NULL, l, 3, X, D, &so, Y, D), 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(fabs(Y[i] - X[i] / (0.1 + l)) < 1e-12 * (1 + fabs(X[i])));
	/* A product has no direct solve. */
	pspace_op *p;

	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	assert_int_equal(pspace_op_solve(p, NULL, l, 1, X, D, &so, Y, D), PSPACE_ENOTSUP);
	pspace_op_free(p);
	pspace_op_free(oi);
	pspace_mat_free(I2);
	pspace_op_free(ob);
	pspace_mat_free(B);
	free(RB);
	pspace_op_free(e);
	pspace_op_free(i1);
	pspace_op_free(f2);
	free(ref);
	free(Y);
	free(X);
}

/* CG on (F + l I) with preconditioner @p pre against the direct solve. */
static uint32_t check_cg(fixture *x, pspace_op *pre, uint32_t k, const double *X,
                         const double *direct)
{
	pspace_solve_opts so;
	double *Y = malloc((size_t)k * D * sizeof(double));
	uint64_t before = pspace_store_tiles_read(x->s);

	assert_non_null(Y);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.tol = 1e-9;
	so.precond = pre;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.5, k, X, D, &so, Y, D), 0);
	assert_true(so.iterations > 0);
	assert_true(so.residual <= 1e-9);
	/* One mm per iteration: at most one pass over F each (F's tiles only). */
	if (!pre)
		assert_true(pspace_store_tiles_read(x->s) - before <=
		            (uint64_t)so.iterations * TILES);
	assert_true(rel_err((size_t)k * D, Y, direct) < 1e-5);
	free(Y);
	return so.iterations;
}

static void test_op_solve_cg(void **state)
{
	fixture *x = *state;
	const uint32_t ks[] = {1, 3, 16};
	double *X = malloc(16 * D * sizeof(double)), *direct = malloc(16 * D * sizeof(double));
	double *ref = malloc(16 * D * sizeof(double)), *RB;
	pspace_solve_opts so;
	pspace_op *pi, *ob, *bh, *i1, *pe;
	pspace_mat *B;
	uint32_t it;

	assert_non_null(X);
	assert_non_null(direct);
	assert_non_null(ref);
	rand_batch(31, 16, D, X);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.5, 16, X, D, &so, direct, D), 0);
	ref_solve(D, RF, 0.5, 16, X, ref);
	assert_true(rel_err(16 * D, direct, ref) < TOL);

	for (int t = 0; t < 3; t++)
		check_cg(x, NULL, ks[t], X, direct);
	/* Identity, scaled */
	assert_int_equal(pspace_op_identity(&pi, D, 3.0), 0);
	check_cg(x, pi, 3, X, direct);
	/* BlockDiag of F's diagonal blocks */
	B = blockdiag_of_f(x, &RB);
	assert_int_equal(pspace_op_mat(&ob, B), 0);
	/* Block Jacobi need not beat plain CG on a low-rank + shift F: only converge. */
	check_cg(x, ob, 3, X, direct);
	/* Dense F itself: exact, so one or two iterations */
	it = check_cg(x, x->oF, 3, X, direct);
	assert_true(it <= 3);
	/* An expression folding to c*M + s*I: 0.5*B + 0.1*I */
	assert_int_equal(pspace_op_scale(&bh, 0.5, ob), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 0.1), 0);
	assert_int_equal(pspace_op_add(&pe, bh, i1), 0);
	check_cg(x, pe, 3, X, direct);

	pspace_op_free(pe);
	pspace_op_free(i1);
	pspace_op_free(bh);
	pspace_op_free(ob);
	pspace_mat_free(B);
	free(RB);
	pspace_op_free(pi);
	free(ref);
	free(direct);
	free(X);
}

static void test_op_solve_noconv(void **state)
{
	fixture *x = *state;
	pspace_solve_opts so;
	double *X = malloc(3 * D * sizeof(double)), *Y = malloc(3 * D * sizeof(double));

	assert_non_null(X);
	assert_non_null(Y);
	rand_batch(41, 3, D, X);
	for (size_t i = 0; i < 3 * D; i++)
		Y[i] = NAN;
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.max_iter = 2;
	so.tol = 1e-12;
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.01, 3, X, D, &so, Y, D), PSPACE_ENOCONV);
	assert_int_equal(so.iterations, 2);
	assert_true(so.residual > 1e-12 && isfinite(so.residual));
	assert_true(strlen(pspace_errdetail()) > 0);
	for (size_t i = 0; i < 3 * D; i++)
		assert_true(isfinite(Y[i]));
	free(Y);
	free(X);
}

/* ---- eigenpairs and norms -------------------------------------------------------- */

static void test_op_eig(void **state)
{
	fixture *x = *state;
	double *w = malloc(D * sizeof(double)), *V = malloc((size_t)D * D * sizeof(double));
	double *evecs = malloc(5 * D * sizeof(double)), ev[5], nrm;
	pspace_eig_opts eo = {.tol = 1e-8, .seed = 3};
	const uint32_t ks[] = {1, 5};

	assert_non_null(w);
	assert_non_null(V);
	assert_non_null(evecs);
	ref_eig(D, RG, w, V);
	for (int t = 0; t < 2; t++) {
		uint32_t k = ks[t];

		assert_int_equal(pspace_op_eig(x->oG, NULL, k, &eo, ev, evecs, D), 0);
		assert_true(eo.iterations > 0 && eo.iterations < D);
		for (uint32_t i = 0; i < k; i++) {
			const double *u = V + (size_t)(D - 1 - i) * D;
			double dot = 0;

			assert_true(fabs(ev[i] - w[D - 1 - i]) < TOL * w[D - 1]);
			for (size_t p = 0; p < D; p++)
				dot += u[p] * evecs[i * D + p];
			assert_true(fabs(fabs(dot) - 1) < TOL);
		}
	}
	/* 2-norm of G; -2-norm of G (full rank: smallest eigenvalue). */
	assert_int_equal(pspace_op_norm(x->oG, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[D - 1]) < TOL * w[D - 1]);
	eo.max_iter = D;
	assert_int_equal(pspace_op_norm(x->oG, NULL, PSPACE_NORM_MINUS2, &eo, &nrm), 0);
	assert_true(fabs(nrm - w[0]) < TOL * w[0]);

	/* 2F - 0.5G + 1e-3 I is indefinite: 2-norm = max |eigenvalue|. */
	pspace_op *e = build_expr(x);
	double *R = ref_expr();

	ref_eig(D, R, w, V);
	assert_int_equal(pspace_op_norm(e, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	double want = fmax(fabs(w[0]), fabs(w[D - 1]));

	assert_true(fabs(nrm - want) < TOL * want);
	free(R);
	pspace_op_free(e);
	free(evecs);
	free(V);
	free(w);
}

/* ---- materializing ----------------------------------------------------------------- */

static void test_op_write(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x);
	pspace_write_opts wo;
	pspace_mat *m;
	double *R = ref_expr(), *Dn = malloc((size_t)D * D * sizeof(double));
	uint64_t before;

	assert_non_null(Dn);
	write_opts(&wo);
	before = pspace_store_tiles_read(x->s);
	assert_int_equal(pspace_op_write(e, NULL, x->s, "E", &wo), 0);
	/* One mm per tile row: NT passes over F and G. */
	assert_true(pspace_store_tiles_read(x->s) - before <= (uint64_t)NT * 2 * TILES);
	assert_int_equal(pspace_mat_open(&m, x->s, "E"), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_DENSE);
	assert_int_equal(pspace_mat_dim(m), D);
	assert_int_equal(pspace_mat_dense(m, NULL, Dn, D), 0);
	assert_true(rel_err((size_t)D * D, Dn, R) < TOL);
	assert_int_equal(pspace_op_write(e, NULL, x->s, "E", &wo), PSPACE_EEXIST);
	/* F G is not symmetric: a symmetric Dense cannot hold it */
	pspace_op *fg;
	assert_int_equal(pspace_op_product(&fg, x->oF, x->oG), 0);
	assert_int_equal(pspace_op_write(fg, NULL, x->s, "FG", &wo), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "product"));
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, x->s, "FG"),
	                 PSPACE_ENOTFOUND);
	pspace_op_free(fg);
	pspace_mat_free(m);
	free(Dn);
	free(R);
	pspace_op_free(e);
}

/* ---- errors, threads, budgets, implicit matrices ------------------------------------ */

static void test_op_edim(void **state)
{
	fixture *x = *state;
	pspace_op *small, *r = (pspace_op *)1;
	pspace_solve_opts so;
	double v[D], y[D];

	assert_int_equal(pspace_op_identity(&small, 10, 1.0), 0);
	assert_int_equal(pspace_op_add(&r, x->oF, small), PSPACE_EDIM);
	assert_null(r);
	assert_int_equal(pspace_op_sub(&r, small, x->oF), PSPACE_EDIM);
	assert_int_equal(pspace_op_product(&r, x->oF, small), PSPACE_EDIM);
	assert_int_equal(pspace_op_mm(x->oF, NULL, 1, 1.0, v, D - 1, 0.0, y, D), PSPACE_EDIM);
	pspace_solve_opts_default(&so);
	so.precond = small;
	memset(v, 0, sizeof(v));
	assert_int_equal(pspace_op_solve(x->oF, NULL, 0.1, 1, v, D, &so, y, D), PSPACE_EDIM);
	assert_int_equal(pspace_op_inverse(&r, x->oF, 0.1, &so), PSPACE_EDIM);
	assert_int_equal(pspace_op_dim(small), 10);
	pspace_op_free(small);
}

static void test_op_threads(void **state)
{
	fixture *x = *state;
	pspace_op *e = build_expr(x);
	pspace_exec e1 = {1, 0}, e2 = {2, 0};
	double *X = malloc(3 * D * sizeof(double)), *Y1 = malloc(3 * D * sizeof(double));
	double *Y2 = malloc(3 * D * sizeof(double));

	assert_non_null(X);
	assert_non_null(Y1);
	assert_non_null(Y2);
	rand_batch(51, 3, D, X);
	assert_int_equal(pspace_op_mm(e, &e1, 3, 1.0, X, D, 0.0, Y1, D), 0);
	assert_int_equal(pspace_op_mm(e, &e2, 3, 1.0, X, D, 0.0, Y2, D), 0);
	assert_true(rel_err(3 * D, Y2, Y1) < 1e-12);

	/* The same F and G stored with tile edge 100: equal within float rounding. */
	pspace_write_opts wo;
	pspace_mat *f100, *g100;
	pspace_op *of, *og, *a, *b, *c, *i1, *e100;

	write_opts(&wo);
	wo.tile = 100;
	assert_int_equal(pspace_dense_write(x->s, "F100", NULL, D, RF, D, &wo), 0);
	assert_int_equal(pspace_dense_write(x->s, "G100", NULL, D, RG, D, &wo), 0);
	assert_int_equal(pspace_mat_open(&f100, x->s, "F100"), 0);
	assert_int_equal(pspace_mat_open(&g100, x->s, "G100"), 0);
	assert_int_equal(pspace_op_mat(&of, f100), 0);
	assert_int_equal(pspace_op_mat(&og, g100), 0);
	assert_int_equal(pspace_op_scale(&a, 2.0, of), 0);
	assert_int_equal(pspace_op_scale(&b, 0.5, og), 0);
	assert_int_equal(pspace_op_sub(&c, a, b), 0);
	assert_int_equal(pspace_op_identity(&i1, D, 1e-3), 0);
	assert_int_equal(pspace_op_add(&e100, c, i1), 0);
	assert_int_equal(pspace_op_mm(e100, &e2, 3, 1.0, X, D, 0.0, Y2, D), 0);
	assert_true(rel_err(3 * D, Y2, Y1) < 1e-6);
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
	fixture *x = *state;
	pspace_op *p;
	pspace_exec ex = {0, 30 * D * sizeof(double)};
	pspace_trace_opts to = {.probes = 64, .seed = 9};
	uint64_t before;
	double tr, rtr = 0;

	assert_int_equal(pspace_op_product(&p, x->oF, x->oG), 0);
	for (size_t i = 0; i < (size_t)D * D; i++)
		rtr += RF[i] * RG[i];
	before = pspace_store_tiles_read(x->s);
	assert_int_equal(pspace_op_trace(p, &ex, &to, &tr), 0);
	/* 3 vectors of d per probe (probe, image, chain temporary): 10 per batch, 7 batches. */
	assert_int_equal(pspace_store_tiles_read(x->s) - before, 7 * 2 * TILES);
	assert_true(fabs(tr - rtr) < 4 * to.stderr_);

	/* Frobenius of a linear combination of matrices of one tiling: one pass
	 * at any budget; of a product it needs the dense matrix, refused above it. */
	pspace_op *e = build_expr(x);
	double *R = ref_expr(), rfro = 0;

	for (size_t i = 0; i < (size_t)D * D; i++)
		rfro += R[i] * R[i];
	rfro = sqrt(rfro);
	free(R);
	before = pspace_store_tiles_read(x->s);
	assert_int_equal(pspace_op_norm(e, &ex, PSPACE_NORM_FRO, NULL, &tr), 0);
	assert_int_equal(pspace_store_tiles_read(x->s) - before, 2 * TILES);
	assert_true(fabs(tr - rfro) < TOL * rfro);
	assert_int_equal(pspace_op_norm(p, &ex, PSPACE_NORM_FRO, NULL, &tr), PSPACE_ENOTSUP);
	assert_true(strstr(pspace_errdetail(), "budget") != NULL);

	/* F's direct solve does not fit the budget: DIRECT refuses, AUTO runs CG. */
	pspace_solve_opts so;
	double *b = malloc(D * sizeof(double)), *y = malloc(D * sizeof(double));
	double *ref = malloc(D * sizeof(double));

	assert_non_null(b);
	assert_non_null(y);
	assert_non_null(ref);
	rand_batch(61, 1, D, b);
	ref_solve(D, RF, 0.5, 1, b, ref);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_DIRECT;
	assert_int_equal(pspace_op_solve(x->oF, &ex, 0.5, 1, b, D, &so, y, D), PSPACE_ENOMEM);
	so.method = PSPACE_SOLVE_AUTO;
	so.tol = 1e-8;
	assert_int_equal(pspace_op_solve(x->oF, &ex, 0.5, 1, b, D, &so, y, D), 0);
	assert_true(so.iterations > 0);
	assert_true(rel_err(D, y, ref) < TOL);
	free(ref);
	free(y);
	free(b);
	pspace_op_free(e);
	pspace_op_free(p);
}

typedef struct imp {
	size_t d;
	const double *M;
} imp;

static int imp_mv(void *ud, const double *x, double *y)
{
	const imp *m = ud;

	ref_mv(m->d, m->M, x, y);
	return 0;
}

/* An Implicit stand-in: trace by Hutchinson, CG solves, the -2-norm, dense. */
static void test_op_implicit(void **state)
{
	const size_t d = 200;
	double *M = gram(77, 400, d), *w = malloc(d * sizeof(double));
	double *V = malloc(d * d * sizeof(double)), *Dn = malloc(d * d * sizeof(double));
	double b[200], y[200], ref[200], tr, rtr = 0, nrm;
	imp u = {d, M};
	pspace_mat *m;
	pspace_op *o, *i1, *e;
	pspace_trace_opts to = {.probes = 200, .seed = 2};
	pspace_solve_opts so;

	(void)state;
	assert_non_null(w);
	assert_non_null(V);
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
	rng_state = 5;
	fill_randn(b, d);
	pspace_solve_opts_default(&so);
	so.tol = 1e-10;
	assert_int_equal(pspace_op_solve(e, NULL, 0.0, 1, b, d, &so, y, d), 0);
	assert_true(so.iterations > 0);
	ref_solve(d, M, 0.25, 1, b, ref);
	assert_true(rel_err(d, y, ref) < 1e-8);
	/* -2 norm of the full-rank Gram matrix, vs dsyev */
	ref_eig(d, M, w, V);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_MINUS2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[0]) < 1e-6 * w[0]);
	assert_int_equal(pspace_op_norm(o, NULL, PSPACE_NORM_2, NULL, &nrm), 0);
	assert_true(fabs(nrm - w[d - 1]) < 1e-8 * w[d - 1]);
	/* dense of the expression; Frobenius of the single leaf plus shift */
	assert_int_equal(pspace_op_dense(e, NULL, Dn, d), 0);
	for (size_t i = 0; i < d; i++)
		M[i * d + i] += 0.25;
	assert_true(rel_err(d * d, Dn, M) < 1e-12);

	/* (M + 0.25 I) M: dense through unit vectors, Frobenius through the dense. */
	pspace_op *p;
	double *P = calloc(d * d, sizeof(double)), rfro = 0, fro;

	assert_non_null(P);
	assert_int_equal(pspace_op_product(&p, e, o), 0);
	for (size_t i = 0; i < d; i++)
		M[i * d + i] -= 0.25; /* the callback's matrix again */
	for (size_t i = 0; i < d; i++)
		for (size_t q = 0; q < d; q++)
			for (size_t j = 0; j < d; j++)
				P[i * d + j] += (M[i * d + q] + (i == q ? 0.25 : 0)) * M[q * d + j];
	for (size_t i = 0; i < d * d; i++)
		rfro += P[i] * P[i];
	rfro = sqrt(rfro);
	assert_int_equal(pspace_op_dense(p, NULL, Dn, d), 0);
	assert_true(rel_err(d * d, Dn, P) < 1e-12);
	assert_int_equal(pspace_op_norm(p, NULL, PSPACE_NORM_FRO, NULL, &fro), 0);
	assert_true(fabs(fro - rfro) < 1e-12 * rfro);
	pspace_op_free(p);
	free(P);
	free(Dn);
	free(V);
	free(w);
	free(M);
	pspace_op_free(e);
	pspace_op_free(i1);
	pspace_op_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_op_linear_mm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_linear_vtmv, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_linear_reductions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_describe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_product, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_inverse, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_direct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_cg, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_solve_noconv, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_eig, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_edim, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_op_budget, setup, teardown),
	    cmocka_unit_test(test_op_implicit),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
