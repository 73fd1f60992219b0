/*
 * Tests of log det(M + l I), diag((M + l I)^-1) and Gaussian samples
 * (pspace_mat_logdet, pspace_mat_diaginv, pspace_mat_sample and the lazy
 * pspace_op_* forms) on every kind at small d.
 *
 * References are float64 dense computations of this file: the matrix is
 * built by the test's own construction (kref for KFAC/EKFAC, the test's
 * arrays otherwise), then LAPACK dpotrf / dpotri directly: log det =
 * 2 sum log L_ii, the inverse's diagonal from dpotri. Samples: N = 20000
 * draws whose covariance must satisfy, entrywise, |C_hat - C| <=
 * 5 sqrt((C_ii C_jj + C_ij^2) / N). Estimates (SLQ, Hutchinson diagonal)
 * must lie within a few of their standard errors of the exact value.
 */
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "kref.h"
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/npy.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define NDRAWS 20000

/* ---- float64 references ------------------------------------------------------ */

/* Cholesky of F + l I (d x d) into a new array; asserts it is positive definite. */
static double *ref_chol(size_t d, const double *F, double l)
{
	double *L = malloc(d * d * sizeof(double));

	assert_non_null(L);
	memcpy(L, F, d * d * sizeof(double));
	for (size_t i = 0; i < d; i++)
		L[i * d + i] += l;
	assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)d, L, (lapack_int)d), 0);
	return L;
}

static double ref_logdet(size_t d, const double *F, double l)
{
	double *L = ref_chol(d, F, l), s = 0;

	for (size_t i = 0; i < d; i++)
		s += 2 * log(L[i * d + i]);
	free(L);
	return s;
}

/* (F + l I)^-1, both triangles, into a new array. */
static double *ref_inv(size_t d, const double *F, double l)
{
	double *L = ref_chol(d, F, l);

	assert_int_equal(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)d, L, (lapack_int)d), 0);
	for (size_t i = 0; i < d; i++)
		for (size_t j = i + 1; j < d; j++)
			L[i * d + j] = L[j * d + i];
	return L;
}

/* The sample covariance of the N rows of X (mean 0 known) against C, entrywise at 5 sigma. */
static void check_cov(size_t d, size_t N, const double *X, const double *C)
{
	double *S = calloc(d * d, sizeof(double));

	assert_non_null(S);
	for (size_t r = 0; r < N; r++)
		for (size_t i = 0; i < d; i++)
			for (size_t j = i; j < d; j++)
				S[i * d + j] += X[r * d + i] * X[r * d + j];
	for (size_t i = 0; i < d; i++)
		for (size_t j = i; j < d; j++) {
			double c = C[i * d + j], got = S[i * d + j] / (double)N;
			double bound = 5 * sqrt((C[i * d + i] * C[j * d + j] + c * c) / (double)N);

			if (!(fabs(got - c) <= bound))
				fail_msg("covariance (%zu, %zu): %g, want %g +- %g", i, j, got, c,
				         bound);
		}
	free(S);
}

/*
 * Checks every exact operation of @p m (dimension d, float64 reference
 * @p F) with damping @p l, on the matrix and on the lazy 2 M + 0.5 I.
 * @p Fd: the reference of M + l I as the kind damps it (NULL: F + l I).
 */
static void check_exact(pspace_mat *m, size_t d, const double *F, double l, const double *Fd,
                        int samples)
{
	const double *R = Fd ? Fd : F;
	double rl = Fd ? 0 : l, v = 0, *out = malloc(d * sizeof(double));
	double *inv = ref_inv(d, R, rl), *X = NULL, *C = NULL;
	pspace_sample_opts so = {7, 0};
	pspace_est_opts eo;
	pspace_op *a = NULL, *two = NULL, *sh = NULL, *e = NULL;

	assert_non_null(out);
	assert_int_equal(pspace_mat_logdet(&v, m, NULL, l), 0);
	assert_true(fabs(v - ref_logdet(d, R, rl)) < 1e-9 * (1 + fabs(v)));
	assert_int_equal(pspace_mat_diaginv(out, m, NULL, l), 0);
	for (size_t i = 0; i < d; i++)
		assert_true(fabs(out[i] - inv[i * d + i]) < 1e-9 * inv[i * d + i]);
	/* the lazy form 2 M + 0.5 I folds to c M + s I: still exact */
	if (!Fd) {
		double *G = malloc(d * d * sizeof(double));

		assert_non_null(G);
		for (size_t i = 0; i < d * d; i++)
			G[i] = 2 * F[i];
		for (size_t i = 0; i < d; i++)
			G[i * d + i] += 0.5;
		assert_int_equal(pspace_op_mat(&a, m), 0);
		assert_int_equal(pspace_op_scale(&two, 2.0, a), 0);
		assert_int_equal(pspace_op_identity(&sh, d, 0.5), 0);
		assert_int_equal(pspace_op_add(&e, two, sh), 0);
		memset(&eo, 0, sizeof(eo));
		assert_int_equal(pspace_op_logdet(&v, e, NULL, l, &eo), 0);
		assert_int_equal(eo.exact, 1);
		assert_true(fabs(v - ref_logdet(d, G, l)) < 1e-9 * (1 + fabs(v)));
		assert_int_equal(pspace_op_diaginv(out, NULL, e, NULL, l, &eo), 0);
		assert_int_equal(eo.exact, 1);
		free(inv);
		inv = ref_inv(d, G, l);
		for (size_t i = 0; i < d; i++)
			assert_true(fabs(out[i] - inv[i * d + i]) < 1e-9 * inv[i * d + i]);
		free(inv);
		inv = ref_inv(d, R, rl);
		free(G);
	}
	if (samples) {
		X = malloc((size_t)NDRAWS * d * sizeof(double));
		C = malloc(d * d * sizeof(double));
		assert_non_null(X);
		assert_non_null(C);
		assert_int_equal(pspace_mat_sample(X, d, m, NULL, l, NDRAWS, &so), 0);
		check_cov(d, NDRAWS, X, inv);
		so.cov = 1;
		memcpy(C, R, d * d * sizeof(double));
		for (size_t i = 0; i < d; i++)
			C[i * d + i] += rl;
		if (e)
			assert_int_equal(pspace_op_sample(X, d, a, NULL, l, NDRAWS, &so), 0);
		else
			assert_int_equal(pspace_mat_sample(X, d, m, NULL, l, NDRAWS, &so), 0);
		check_cov(d, NDRAWS, X, C);
	}
	pspace_op_free(e);
	pspace_op_free(sh);
	pspace_op_free(two);
	pspace_op_free(a);
	free(C);
	free(X);
	free(inv);
	free(out);
}

/* A random SPD d x d: J^T J / m + shift I. */
static double *spd(size_t d, uint64_t seed, double shift)
{
	double *F = malloc(d * d * sizeof(double));

	assert_non_null(F);
	kref_spd(d, seed, shift, F);
	return F;
}

/* Diag and LowRank on a flat layout of d parameters (the matrix keeps a copy). */
static pspace_mat *diag_of(size_t d, const double *v)
{
	pspace_layout *ly;
	pspace_mat *m;

	assert_int_equal(pspace_layout_flat(&ly, d), 0);
	assert_int_equal(pspace_diag_create(&m, ly, v), 0);
	pspace_layout_free(ly);
	return m;
}

static pspace_mat *lowrank_of(size_t d, size_t r, const double *D)
{
	pspace_layout *ly;
	pspace_mat *m;

	assert_int_equal(pspace_layout_flat(&ly, d), 0);
	assert_int_equal(pspace_lowrank_create(&m, ly, r, D, d), 0);
	pspace_layout_free(ly);
	return m;
}

/* ---- the kinds --------------------------------------------------------------------- */

static void test_damped_identity(void **state)
{
	pspace_mat *m;
	double F[60 * 60];

	(void)state;
	memset(F, 0, sizeof(F));
	for (size_t i = 0; i < 60; i++)
		F[i * 60 + i] = 1.5;
	assert_int_equal(pspace_identity_create(&m, 60, 1.5), 0);
	check_exact(m, 60, F, 0.25, NULL, 1);
	pspace_mat_free(m);
}

static void test_damped_diag(void **state)
{
	const size_t d = 80;
	double *v = fx_randv(d, 3), *F = calloc(d * d, sizeof(double)), x;
	pspace_mat *m;

	(void)state;
	assert_non_null(F);
	for (size_t i = 0; i < d; i++)
		F[i * d + i] = v[i] = v[i] * v[i] + 0.01 * (double)(i % 3);
	m = diag_of(d, v);
	check_exact(m, d, F, 0.1, NULL, 1);
	/* an entry at 0 without damping is singular: refused, naming what to do */
	v[5] = 0;
	pspace_mat_free(m);
	m = diag_of(d, v);
	fx_expect_err(pspace_mat_logdet(&x, m, NULL, 0), PSPACE_ENUMERIC, NULL, "add damping");
	pspace_mat_free(m);
	free(F);
	free(v);
}

/* Layout of the QuasiDiag test: a linear with a bias, a generic block, a linear without. */
static const char qd_layout[] = "fc1 linear 6x7 bias\n"
                                "g generic 9 nobias\n"
                                "fc2 linear 4x6 nobias\n";

static void test_damped_quasidiag(void **state)
{
	pspace_layout *ly;
	pspace_mat *m;
	uint64_t rng = 11;
	size_t d;
	double *v, *F, *cross[3] = {NULL, NULL, NULL};

	(void)state;
	assert_int_equal(pspace_layout_parse(&ly, qd_layout, "test"), 0);
	d = pspace_layout_dim(ly);
	v = malloc(d * sizeof(double));
	F = calloc(d * d, sizeof(double));
	cross[0] = malloc(6 * 7 * sizeof(double));
	assert_true(v && F && cross[0]);
	for (size_t i = 0; i < d; i++)
		F[i * d + i] = v[i] = 1 + fx_rng_unif(&rng) * 0.5;
	/* weight (o, j) at o * 7 + j, bias o at 42 + o; |cross| small enough to stay PD */
	for (size_t o = 0; o < 6; o++)
		for (size_t j = 0; j < 7; j++) {
			double c = 0.3 * fx_rng_unif(&rng);

			cross[0][o * 7 + j] = c;
			F[(o * 7 + j) * d + 42 + o] = F[(42 + o) * d + o * 7 + j] = c;
		}
	assert_int_equal(pspace_quasidiag_create(&m, ly, v, (const double *const *)cross), 0);
	check_exact(m, d, F, 0.05, NULL, 1);
	pspace_mat_free(m);
	free(cross[0]);
	free(F);
	free(v);
	pspace_layout_free(ly);
}

static void test_damped_lowrank(void **state)
{
	const size_t d = 70, r = 12;
	double *D = fx_randv(r * d, 5), *F = calloc(d * d, sizeof(double)), x;
	pspace_mat *m;

	(void)state;
	assert_non_null(F);
	for (size_t i = 0; i < d; i++)
		for (size_t j = 0; j < d; j++)
			for (size_t k = 0; k < r; k++)
				F[i * d + j] += D[k * d + i] * D[k * d + j];
	m = lowrank_of(d, r, D);
	check_exact(m, d, F, 0.3, NULL, 1);
	/* rank 12 < 70 without damping: singular */
	fx_expect_err(pspace_mat_logdet(&x, m, NULL, 0), PSPACE_ENUMERIC, NULL, "add damping");
	pspace_mat_free(m);
	/* r >= d: the d x d factor */
	free(D);
	free(F);
	D = fx_randv(40 * 30, 6);
	F = calloc(30 * 30, sizeof(double));
	assert_non_null(F);
	for (size_t i = 0; i < 30; i++)
		for (size_t j = 0; j < 30; j++)
			for (size_t k = 0; k < 40; k++)
				F[i * 30 + j] += D[k * 30 + i] * D[k * 30 + j];
	m = lowrank_of(30, 40, D);
	check_exact(m, 30, F, 0.0, NULL, 1);
	pspace_mat_free(m);
	free(F);
	free(D);
}

/* KFAC (pi and exact damping) and the EKFAC made from it. */
static void test_damped_kfac_ekfac(void **state)
{
	kref k;
	pspace_mat *m, *e;
	double *F, *Fd, *Ad[KREF_MAXL], *Gd[KREF_MAXL];
	const double l = 0.2;

	(void)state;
	kref_init(&k, 21, 0.1);
	F = malloc(k.d * k.d * sizeof(double));
	Fd = malloc(k.d * k.d * sizeof(double));
	assert_true(F && Fd);
	kref_dense(k.layout, k.A, k.G, 0, F);
	assert_int_equal(pspace_kfac_create(&m, k.layout, (const double *const *)k.A,
	                                    (const double *const *)k.G),
	                 0);
	/* pi damping (the default): the damped factors' Kronecker product */
	kref_damp(k.layout, k.A, k.G, l, 1, Ad, Gd);
	kref_dense(k.layout, Ad, Gd, 0, Fd);
	check_exact(m, k.d, F, l, Fd, 1);
	/* exact damping: F + l I */
	assert_int_equal(pspace_kfac_set_damping(m, PSPACE_KFAC_DAMP_EXACT), 0);
	check_exact(m, k.d, F, l, NULL, 1);
	assert_int_equal(pspace_ekfac_from_kfac(&e, m), 0);
	check_exact(e, k.d, F, l, NULL, 1);
	pspace_mat_free(e);
	pspace_mat_free(m);
	for (size_t i = 0; i < k.n; i++) {
		free(Ad[i]);
		free(Gd[i]);
	}
	free(Fd);
	free(F);
	kref_free(&k);
}

/* Dense and BlockDiag in a store (float64 tiles), and Mixed of Diag and LowRank parts. */
static void test_damped_stored_mixed(void **state)
{
	const size_t d = 90, n1 = 50, n2 = 40;
	fx_store st;
	pspace_write_opts wo;
	pspace_layout *ly, *l1, *l2;
	pspace_mat *m, *parts[2];
	double *F = spd(d, 31, 0.05), *B = calloc(d * d, sizeof(double)), *blocks[2];
	double *v = fx_randv(n1, 8), *D = fx_randv(5 * n2, 9), x;
	pspace_exec ex = {0};

	(void)state;
	assert_non_null(B);
	fx_store_open(&st, "damped");
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	wo.tile = 32;
	assert_int_equal(pspace_dense_write(st.s, "F", NULL, d, F, d, &wo), 0);
	assert_int_equal(pspace_mat_open(&m, st.s, "F"), 0);
	check_exact(m, d, F, 0.01, NULL, 1);
	/* beyond the memory budget: refused, so the operator layer estimates */
	ex.mem_budget = 4096;
	fx_expect_err(pspace_mat_logdet(&x, m, &ex, 0.01), PSPACE_ENOMEM, NULL, "memory budget");
	pspace_mat_free(m);

	assert_int_equal(
	    pspace_layout_parse(&ly, "a generic 50 nobias\nb generic 40 nobias\n", "test"), 0);
	blocks[0] = spd(n1, 32, 0.1);
	blocks[1] = spd(n2, 33, 0.1);
	for (size_t i = 0; i < n1; i++)
		memcpy(B + i * d, blocks[0] + i * n1, n1 * sizeof(double));
	for (size_t i = 0; i < n2; i++)
		memcpy(B + (n1 + i) * d + n1, blocks[1] + i * n2, n2 * sizeof(double));
	assert_int_equal(pspace_blockdiag_write(st.s, "B", ly, (const double *const *)blocks, &wo),
	                 0);
	assert_int_equal(pspace_mat_open(&m, st.s, "B"), 0);
	check_exact(m, d, B, 0.0, NULL, 1);
	pspace_mat_free(m);

	/* Mixed: Diag on a, LowRank on b */
	assert_int_equal(pspace_layout_parse(&l1, "a generic 50 nobias\n", "test"), 0);
	assert_int_equal(pspace_layout_parse(&l2, "b generic 40 nobias\n", "test"), 0);
	memset(B, 0, d * d * sizeof(double));
	for (size_t i = 0; i < n1; i++)
		B[i * d + i] = v[i] = v[i] * v[i] + 0.1;
	for (size_t i = 0; i < n2; i++)
		for (size_t j = 0; j < n2; j++)
			for (size_t k = 0; k < 5; k++)
				B[(n1 + i) * d + n1 + j] += D[k * n2 + i] * D[k * n2 + j];
	assert_int_equal(pspace_diag_create(&parts[0], l1, v), 0);
	assert_int_equal(pspace_lowrank_create(&parts[1], l2, 5, D, n2), 0);
	assert_int_equal(pspace_mixed_create(&m, ly, parts), 0);
	check_exact(m, d, B, 0.2, NULL, 1);
	pspace_mat_free(m);
	pspace_mat_free(parts[1]);
	pspace_mat_free(parts[0]);
	pspace_layout_free(l2);
	pspace_layout_free(l1);
	pspace_layout_free(ly);
	free(blocks[1]);
	free(blocks[0]);
	free(D);
	free(v);
	free(B);
	free(F);
	fx_store_close(&st);
}

/* ---- estimates: a lazy sum of two matrices -------------------------------------------- */

static void test_damped_estimates(void **state)
{
	const size_t d = 120;
	const double l = 0.5;
	double *F = spd(d, 41, 0.0), *v = fx_randv(d, 42), *S = malloc(d * d * sizeof(double));
	double *out = malloc(d * sizeof(double)), *se = malloc(d * sizeof(double)), *inv, want, got;
	pspace_mat *dm, *lr;
	pspace_op *a, *b, *sum;
	pspace_est_opts eo;
	double *D = fx_randv(20 * d, 43);
	double *X = malloc(4 * d * sizeof(double));
	pspace_sample_opts so = {1, 0};

	(void)state;
	assert_true(S && out && se && X);
	memcpy(S, F, d * d * sizeof(double));
	for (size_t i = 0; i < d; i++)
		v[i] = v[i] * v[i];
	/* Diag v + LowRank D^T D: two matrices, no exact form */
	for (size_t i = 0; i < d; i++) {
		for (size_t j = 0; j < d; j++) {
			S[i * d + j] = 0;
			for (size_t k = 0; k < 20; k++)
				S[i * d + j] += D[k * d + i] * D[k * d + j];
		}
		S[i * d + i] += v[i];
	}
	dm = diag_of(d, v);
	lr = lowrank_of(d, 20, D);
	assert_int_equal(pspace_op_mat(&a, dm), 0);
	assert_int_equal(pspace_op_mat(&b, lr), 0);
	assert_int_equal(pspace_op_add(&sum, a, b), 0);

	memset(&eo, 0, sizeof(eo));
	eo.probes = 200;
	eo.steps = 40;
	eo.seed = 3;
	assert_int_equal(pspace_op_logdet(&got, sum, NULL, l, &eo), 0);
	want = ref_logdet(d, S, l);
	assert_int_equal(eo.exact, 0);
	assert_true(eo.stderr_ > 0);
	if (!(fabs(got - want) <= 4 * eo.stderr_))
		fail_msg("SLQ log det %g, exact %g, standard error %g", got, want, eo.stderr_);

	eo.probes = 400;
	assert_int_equal(pspace_op_diaginv(out, se, sum, NULL, l, &eo), 0);
	assert_int_equal(eo.exact, 0);
	inv = ref_inv(d, S, l);
	for (size_t i = 0; i < d; i++)
		if (!(fabs(out[i] - inv[i * d + i]) <= 5 * se[i] + 1e-8))
			fail_msg("diaginv[%zu] %g, exact %g, standard error %g", i, out[i],
			         inv[i * d + i], se[i]);
	/* no exact square root of a sum: refused */
	fx_expect_err(pspace_op_sample(X, d, sum, NULL, l, 4, &so), PSPACE_ENOTSUP, NULL,
	              "no exact sampling");
	free(inv);
	pspace_op_free(sum);
	pspace_op_free(b);
	pspace_op_free(a);
	pspace_mat_free(lr);
	pspace_mat_free(dm);
	free(X);
	free(D);
	free(se);
	free(out);
	free(S);
	free(v);
	free(F);
}

/* ---- the tool: pspace eval logdet, diaginv, sample ------------------------------------ */

/* The .npy at @p path: its shape into n x d and its values (malloc'd). */
static double *read_npy(const char *path, uint64_t *n, uint64_t *d)
{
	pspace_npy *f;
	pspace_npy_info info;
	double *x;

	assert_int_equal(pspace_npy_open(&f, path), 0);
	assert_int_equal(pspace_npy_info_get(&info, f), 0);
	*n = info.ndim == 2 ? info.shape[0] : 1;
	*d = info.shape[info.ndim - 1];
	x = malloc(info.count * sizeof(double));
	assert_non_null(x);
	assert_int_equal(pspace_npy_read(f, 0, info.count, x), 0);
	pspace_npy_close(f);
	return x;
}

static void test_damped_cli(void **state)
{
	const size_t d = 60;
	fx_store st;
	pspace_write_opts wo;
	double *F = spd(d, 51, 0.05), *G = spd(d, 52, 0.05), *inv, *y, v, want;
	uint64_t n, dd;

	(void)state;
	fx_store_open(&st, "dampedcli");
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_dense_write(st.s, "F", NULL, d, F, d, &wo), 0);
	assert_int_equal(pspace_dense_write(st.s, "G", NULL, d, G, d, &wo), 0);
	pspace_store_close(st.s);
	st.s = NULL;
	assert_int_equal(fx_cli("eval %s F logdet --damping 0.1", st.path), 0);
	fx_expect_stderr("pspace: eval: logdet: exact");
	want = ref_logdet(d, F, 0.1);
	v = strtod(fx_out, NULL);
	assert_true(fabs(v - want) < 1e-7 * fabs(want));
	for (size_t i = 0; i < d * d; i++)
		G[i] += F[i];
	assert_int_equal(
	    fx_cli("eval %s 'F + G' logdet --damping 0.1 --probes 200 --steps 30 --json", st.path),
	    0);
	fx_expect_stdout("\"method\":\"slq\"");
	assert_int_equal(
	    fx_cli("eval %s 'F + G' logdet --damping 0.1 --probes 200 --steps 30", st.path), 0);
	fx_expect_stderr("estimated (stochastic Lanczos quadrature, 200 probes), standard error");
	v = strtod(fx_out, NULL);
	want = ref_logdet(d, G, 0.1);
	assert_true(fabs(v - want) <= 4 * strtod(strstr(fx_err, "standard error") + 15, NULL));
	assert_int_equal(
	    fx_cli("eval %s F diaginv --damping 0.1 --out %s", st.path, fx_path(st.root, "di.npy")),
	    0);
	fx_expect_stderr("diaginv: exact");
	y = read_npy(fx_path(st.root, "di.npy"), &n, &dd);
	assert_true(n == 1 && dd == d);
	inv = ref_inv(d, F, 0.1);
	for (size_t i = 0; i < d; i++)
		assert_true(fabs(y[i] - inv[i * d + i]) < 1e-9 * inv[i * d + i]);
	free(y);
	assert_int_equal(fx_cli("eval %s F sample --damping 0.1 --count %d --seed 5 --out %s",
	                        st.path, NDRAWS, fx_path(st.root, "x.npy")),
	                 0);
	fx_expect_stderr("sample: exact, 20000 draws from N(0, (A + L I)^-1)");
	y = read_npy(fx_path(st.root, "x.npy"), &n, &dd);
	assert_true(n == NDRAWS && dd == d);
	check_cov(d, NDRAWS, y, inv);
	free(y);
	assert_int_equal(fx_cli("eval %s 'F + G' sample --damping 0.1 --out %s", st.path,
	                        fx_path(st.root, "x.npy")),
	                 1);
	fx_expect_stderr("no exact sampling");
	free(inv);
	free(G);
	free(F);
	fx_store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_damped_identity),   cmocka_unit_test(test_damped_diag),
	    cmocka_unit_test(test_damped_quasidiag),  cmocka_unit_test(test_damped_lowrank),
	    cmocka_unit_test(test_damped_kfac_ekfac), cmocka_unit_test(test_damped_stored_mixed),
	    cmocka_unit_test(test_damped_estimates),  cmocka_unit_test(test_damped_cli),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
