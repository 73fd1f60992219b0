/*
 * Tests of `pspace eval`, run through the built tool ($PSPACE_TOOL, set by
 * ctest) on a store this program makes with the library; every number is
 * checked against a float64 reference computed here from the same arrays
 * (LAPACKE for eigenvalues). Results are data: stdout holds the values
 * only, how they were computed goes to stderr and into --json.
 */
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "kref.h"
#include "pspace.h"

#define D 66 /* fc1 linear 6x7 bias (48) + fc2 linear 3x6 nobias (18) */

static char root[64], store[128];
static const char layout_text[] = "fc1 linear 6x7 bias\nfc2 linear 3x6 nobias\n";
static double F[D * D], G[D * D], Kd[D * D], E[D * D]; /* E = 2F - G + 1e-3 I */
static uint64_t rng_state = 12345;

/* ---- helpers ------------------------------------------------------------------------ */

static const char *path(const char *name)
{
	return fx_path(root, "%s", name);
}

/*
 * Asserts that stdout is exactly @p n lines, each one number and nothing
 * else (what $(pspace eval ...) hands a script), and returns them in @p v.
 */
static void out_values(size_t n, double *v)
{
	const char *p = fx_out;

	for (size_t i = 0; i < n; i++) {
		char *end;

		v[i] = strtod(p, &end);
		if (end == p || *end != '\n')
			fail_msg("stdout line %zu is not one number:\n%s", i + 1, fx_out);
		p = end + 1;
	}
	if (*p)
		fail_msg("stdout has more than %zu lines:\n%s", n, fx_out);
}

/* The one value of a scalar result. */
static double out_scalar(void)
{
	double v;

	out_values(1, &v);
	return v;
}

static void write_vecs(const char *name, int ndim, uint64_t k, const double *x)
{
	uint64_t shape[2] = {k, D};

	assert_int_equal(ndim == 1 ? pspace_npy_write(path(name), PSPACE_F64, 1, shape + 1, x)
	                           : pspace_npy_write(path(name), PSPACE_F64, 2, shape, x),
	                 0);
}

/* Reads a whole .npy, checking its element count; malloc'd. */
static double *read_npy(const char *name, uint64_t count, pspace_dtype *dtype)
{
	pspace_npy *f = NULL;
	pspace_npy_info in;
	double *x;

	assert_int_equal(pspace_npy_open(&f, path(name)), 0);
	assert_int_equal(pspace_npy_info_get(&in, f), 0);
	assert_int_equal(in.count, count);
	if (dtype)
		*dtype = in.dtype;
	x = malloc(sizeof(double) * count);
	assert_int_equal(pspace_npy_read(f, 0, count, x), 0);
	pspace_npy_close(f);
	return x;
}

static void matvec(const double *A, int d, const double *x, double *y)
{
	for (int i = 0; i < d; i++) {
		double s = 0;
		for (int j = 0; j < d; j++)
			s += A[i * d + j] * x[j];
		y[i] = s;
	}
}

static void eigvals_desc(const double *A, int d, double *w)
{
	double *C = malloc(sizeof(double) * (size_t)d * (size_t)d);

	memcpy(C, A, sizeof(double) * (size_t)d * (size_t)d);
	assert_int_equal(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', d, C, d, w), 0);
	for (int i = 0; i < d / 2; i++) {
		double t = w[i];
		w[i] = w[d - 1 - i];
		w[d - 1 - i] = t;
	}
	free(C);
}

/* ---- the eval store: Dense F, G (f64 tiles), KFAC K, a small Dense S --------------- */

static int setup(void **state)
{
	pspace_store *s = NULL;
	pspace_layout *lay = NULL;
	pspace_write_opts wo;
	pspace_mat *k = NULL;
	double a1[8 * 8], g1[6 * 6], a2[6 * 6], g2[3 * 3], S[10 * 10];
	double *A[2] = {a1, a2}, *Gf[2] = {g1, g2};

	(void)state;
	fx_dir_make(root, sizeof(root), "cli-eval");
	snprintf(store, sizeof(store), "%s/eval.store", root);
	kref_spd(D, 1, 0.5, F);
	kref_spd(D, 2, 0.5, G);
	for (int i = 0; i < D * D; i++)
		G[i] *= 0.2;
	for (int i = 0; i < D * D; i++)
		E[i] = 2 * F[i] - G[i] + (i % (D + 1) == 0 ? 1e-3 : 0.0);
	kref_spd(8, 3, 0.1, a1);
	kref_spd(6, 4, 0.1, g1);
	kref_spd(6, 5, 0.1, a2);
	kref_spd(3, 6, 0.1, g2);
	kref_spd(10, 7, 0.1, S);

	if (pspace_layout_parse(&lay, layout_text, "layout") || pspace_store_open(&s, store, NULL))
		return -1;
	kref_dense(lay, A, Gf, 0, Kd);
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	wo.tile = 32;
	if (pspace_dense_write(s, "F", lay, D, F, D, &wo) ||
	    pspace_dense_write(s, "G", lay, D, G, D, &wo) ||
	    pspace_dense_write(s, "S", NULL, 10, S, 10, &wo) ||
	    pspace_kfac_create(&k, lay, (const double *const *)A, (const double *const *)Gf) ||
	    pspace_mat_save(k, s, "K"))
		return -1;
	pspace_mat_free(k);
	pspace_store_close(s);
	pspace_layout_free(lay);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (getenv("PSPACE_KEEP_TMP")) /* debugging: keep the stores and files */
		return 0;
	return fx_dir_remove(root);
}

#define EXPR "'2*F - G + 1e-3*I'"

/* ---- eval ----------------------------------------------------------------------------- */

static double randn(void)
{
	return fx_rng_normal(&rng_state);
}

static void test_cli_eval_mv_mm(void **state)
{
	double x[3 * D], y[3 * D], got1[D], *got;
	pspace_dtype dt;

	(void)state;
	for (int i = 0; i < 3 * D; i++)
		x[i] = randn();
	write_vecs("x.npy", 1, 1, x);
	write_vecs("X.npy", 2, 3, x);
	for (int j = 0; j < 3; j++)
		matvec(E, D, x + j * D, y + j * D);

	assert_int_equal(
	    fx_cli("eval %s " EXPR " mv --in %s --out %s", store, path("x.npy"), path("y.npy")), 0);
	assert_string_equal(fx_out, ""); /* the result is the file */
	got = read_npy("y.npy", D, &dt);
	assert_int_equal(dt, PSPACE_F64);
	assert_true(fx_relerr(got, y, D) < 1e-12);
	free(got);

	assert_int_equal(fx_cli("eval %s " EXPR " mv --in %s --out %s --out-dtype f32", store,
	                        path("x.npy"), path("y32.npy")),
	                 0);
	got = read_npy("y32.npy", D, &dt);
	assert_int_equal(dt, PSPACE_F32);
	assert_true(fx_relerr(got, y, D) < 1e-6);
	free(got);

	assert_int_equal(fx_cli("eval %s " EXPR " mm --in %s --out %s --threads 2", store,
	                        path("X.npy"), path("Y.npy")),
	                 0);
	got = read_npy("Y.npy", 3 * D, NULL);
	assert_true(fx_relerr(got, y, 3 * D) < 1e-12);
	free(got);

	/* no --out: printed, one value a line and nothing else */
	assert_int_equal(fx_cli("eval %s " EXPR " mv --in %s", store, path("x.npy")), 0);
	out_values(D, got1);
	assert_true(fx_relerr(got1, y, D) < 1e-8);
	assert_string_equal(fx_err, "");
}

static void test_cli_eval_scalars(void **state)
{
	double v[2 * D], Ev[D], want[2], got[2], tr = 0, fro = 0, w[D];

	(void)state;
	for (int i = 0; i < 2 * D; i++)
		v[i] = randn();
	write_vecs("v.npy", 1, 1, v);
	write_vecs("V.npy", 2, 2, v);
	for (int j = 0; j < 2; j++) {
		matvec(E, D, v + j * D, Ev);
		want[j] = 0;
		for (int i = 0; i < D; i++)
			want[j] += v[j * D + i] * Ev[i];
	}
	assert_int_equal(fx_cli("eval %s " EXPR " vtmv --in %s", store, path("v.npy")), 0);
	assert_true(fabs(out_scalar() - want[0]) <= 1e-8 * fabs(want[0]));
	assert_int_equal(fx_cli("eval %s " EXPR " vtmv --in %s", store, path("V.npy")), 0);
	out_values(2, got);
	assert_true(fabs(got[0] - want[0]) <= 1e-8 * fabs(want[0]));
	assert_true(fabs(got[1] - want[1]) <= 1e-8 * fabs(want[1]));

	for (int i = 0; i < D; i++)
		tr += E[i * D + i];
	for (int i = 0; i < D * D; i++)
		fro += E[i] * E[i];
	fro = sqrt(fro);
	/* the value alone on stdout, how it was computed on stderr */
	assert_int_equal(fx_cli("eval %s " EXPR " trace", store), 0);
	assert_true(fabs(out_scalar() - tr) <= 1e-8 * tr);
	assert_string_equal(fx_err, "pspace: eval: trace: exact\n");
	assert_int_equal(fx_cli("eval %s " EXPR " trace --json", store), 0);
	assert_int_equal(fx_out[0], '{');
	fx_expect_stdout("\"method\":\"exact\"");
	fx_expect_stdout("\"exact\":true");
	fx_expect_stdout("\"trace\":");
	assert_true(fabs(strtod(strstr(fx_out, "\"trace\":") + 8, NULL) - tr) <= 1e-8 * tr);
	assert_string_equal(fx_err, "");

	assert_int_equal(fx_cli("eval %s " EXPR " norm --ord fro", store), 0);
	assert_true(fabs(out_scalar() - fro) <= 1e-8 * fro);
	fx_expect_stderr("norm: exact");
	eigvals_desc(E, D, w);
	assert_int_equal(fx_cli("eval %s " EXPR " norm --ord 2", store), 0);
	assert_true(fabs(out_scalar() - w[0]) <= 1e-6 * w[0]);
	fx_expect_stderr("pspace: eval: norm: Lanczos, ");
	assert_int_equal(fx_cli("eval %s " EXPR " norm --ord -2 --maxiter 66", store), 0);
	assert_true(fabs(out_scalar() - w[D - 1]) <= 1e-6 * w[0]);
	assert_int_equal(fx_cli("eval %s " EXPR " norm --ord=2 --json", store), 0);
	fx_expect_stdout("\"method\":\"lanczos\"");
	fx_expect_stdout("\"iterations\":");
}

static void test_cli_eval_diag_dense(void **state)
{
	double dg[D], *got;

	(void)state;
	for (int i = 0; i < D; i++)
		dg[i] = E[i * D + i];
	assert_int_equal(fx_cli("eval %s " EXPR " diag --out %s", store, path("dg.npy")), 0);
	got = read_npy("dg.npy", D, NULL);
	assert_true(fx_relerr(got, dg, D) < 1e-12);
	free(got);

	assert_int_equal(fx_cli("eval %s " EXPR " dense --out %s", store, path("E.npy")), 0);
	got = read_npy("E.npy", D * D, NULL);
	assert_true(fx_relerr(got, E, D * D) < 1e-12);
	free(got);

	/* 66 x 66 doubles are 34848 bytes: refused under a 16 KiB budget */
	assert_int_equal(fx_cli("eval %s " EXPR " dense --out %s --mem 16K", store, path("E2.npy")),
	                 1);
	fx_expect_stderr("memory budget");
	assert_int_equal(access(path("E2.npy"), F_OK), -1);
	assert_int_equal(fx_cli("eval %s " EXPR " dense", store), 2);
	fx_expect_stderr("--out");
}

/* ||(A + l I) x - b|| / ||b|| */
static double residual(const double *A, double l, const double *x, const double *b)
{
	double Ax[D], r = 0, nb = 0;

	matvec(A, D, x, Ax);
	for (int i = 0; i < D; i++) {
		double e = Ax[i] + l * x[i] - b[i];
		r += e * e;
		nb += b[i] * b[i];
	}
	return sqrt(r / nb);
}

/* The iterations of "pspace: eval: solve: cg, N iterations, relative residual R" on stderr. */
static unsigned cg_iterations(void)
{
	unsigned it;
	double res;

	if (sscanf(fx_err, "pspace: eval: solve: cg, %u iterations, relative residual %lf", &it,
	           &res) != 2)
		fail_msg("stderr has no CG report:\n%s", fx_err);
	assert_true(res < 1e-9);
	return it;
}

static void test_cli_eval_solve(void **state)
{
	double b[D], A2[D * D], *x, xs[D];
	unsigned it_plain, it_pre;

	(void)state;
	for (int i = 0; i < D; i++)
		b[i] = randn();
	write_vecs("b.npy", 1, 1, b);

	/* two stored matrices: CG; the report on stderr, nothing on stdout */
	assert_int_equal(fx_cli("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s --out %s",
	                        store, path("b.npy"), path("x.npy")),
	                 0);
	assert_string_equal(fx_out, "");
	it_plain = cg_iterations();
	x = read_npy("x.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);

	/* without --out the solution is stdout, alone */
	assert_int_equal(fx_cli("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s", store,
	                        path("b.npy")),
	                 0);
	out_values(D, xs);
	assert_true(residual(E, 0.1, xs, b) < 1e-7);
	assert_int_equal(cg_iterations(), it_plain);

	/* CG preconditioned by F (its direct solve), and by the KFAC */
	assert_int_equal(fx_cli("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s "
	                        "--out %s --precond F",
	                        store, path("b.npy"), path("xp.npy")),
	                 0);
	it_pre = cg_iterations();
	assert_true(it_pre < it_plain);
	x = read_npy("xp.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);
	assert_int_equal(fx_cli("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s "
	                        "--out %s --precond 'K + 0*I' --json",
	                        store, path("b.npy"), path("xk.npy")),
	                 0);
	fx_expect_stdout("\"method\":\"cg\"");
	fx_expect_stdout("\"iterations\":");
	fx_expect_stdout("\"residual\":");
	assert_string_equal(fx_err, "");
	x = read_npy("xk.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);

	/* c*M + s*I: direct */
	for (int i = 0; i < D * D; i++)
		A2[i] = 2 * F[i] + (i % (D + 1) == 0 ? 0.5 : 0.0);
	assert_int_equal(fx_cli("eval %s '2*F + 0.5*I' solve --damping 0.1 --in %s --out %s", store,
	                        path("b.npy"), path("xd.npy")),
	                 0);
	assert_string_equal(fx_out, "");
	assert_string_equal(fx_err, "pspace: eval: solve: direct\n");
	x = read_npy("xd.npy", D, NULL);
	assert_true(residual(A2, 0.1, x, b) < 1e-10);
	free(x);
	assert_int_equal(fx_cli("eval %s '2*F + 0.5*I' solve --damping 0.1 --in %s --out %s --json",
	                        store, path("b.npy"), path("xd.npy")),
	                 0);
	fx_expect_stdout("\"method\":\"direct\"");
}

static void test_cli_eval_product_kfac(void **state)
{
	double x[D], t[D], y[D], FK[D * D], tr = 0, est, se, *got;
	unsigned probes;

	(void)state;
	for (int i = 0; i < D; i++)
		x[i] = randn();
	write_vecs("xp.npy", 1, 1, x);
	matvec(G, D, x, t);
	matvec(F, D, t, y);
	assert_int_equal(
	    fx_cli("eval %s 'F*G' mv --in %s --out %s", store, path("xp.npy"), path("yp.npy")), 0);
	got = read_npy("yp.npy", D, NULL);
	assert_true(fx_relerr(got, y, D) < 1e-12);
	free(got);

	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++)
			tr += F[i * D + j] * G[j * D + i];
	/* an estimate: the value on stdout, its standard error on stderr and in JSON */
	assert_int_equal(fx_cli("eval %s 'F*G' trace --probes 200 --seed 7", store), 0);
	est = out_scalar();
	if (sscanf(fx_err,
	           "pspace: eval: trace: estimated (Hutchinson, %u probes), standard error %lf",
	           &probes, &se) != 2)
		fail_msg("stderr has no estimate report:\n%s", fx_err);
	assert_int_equal(probes, 200);
	assert_true(se > 0);
	assert_true(fabs(est - tr) <= 4 * se);
	assert_int_equal(fx_cli("eval %s 'F*G' trace --probes 200 --seed 7 --json", store), 0);
	fx_expect_stdout("\"method\":\"hutchinson\"");
	fx_expect_stdout("\"exact\":false");
	fx_expect_stdout("\"probes\":200");
	assert_true(fabs(strtod(strstr(fx_out, "\"stderr\":") + 9, NULL) - se) <= 1e-8 * se);
	assert_true(fabs(strtod(strstr(fx_out, "\"trace\":") + 8, NULL) - est) <= 1e-8 * fabs(est));

	/* a stored Dense with a resident KFAC */
	for (int i = 0; i < D * D; i++)
		FK[i] = F[i] + 3 * Kd[i];
	matvec(FK, D, x, y);
	assert_int_equal(
	    fx_cli("eval %s 'F + 3*K' mv --in %s --out %s", store, path("xp.npy"), path("yk.npy")),
	    0);
	got = read_npy("yk.npy", D, NULL);
	assert_true(fx_relerr(got, y, D) < 1e-10);
	free(got);
	tr = 0;
	for (int i = 0; i < D; i++)
		tr += Kd[i * D + i];
	assert_int_equal(fx_cli("eval %s K trace", store), 0);
	est = out_scalar();
	if (fabs(est - tr) > 1e-8 * tr)
		fail_msg("trace of K: %.17g, want %.17g", est, tr);
	fx_expect_stderr("trace: exact");
}

static void test_cli_eval_eig(void **state)
{
	double w[D], got[3], *V, Ev[D];

	(void)state;
	eigvals_desc(E, D, w);
	assert_int_equal(fx_cli("eval %s " EXPR " eig --k 3 --out %s", store, path("V.npy")), 0);
	out_values(3, got);
	for (int i = 0; i < 3; i++)
		assert_true(fabs(got[i] - w[i]) <= 1e-7 * w[0]);
	fx_expect_stderr("pspace: eval: eig: Lanczos, ");
	V = read_npy("V.npy", 3 * D, NULL);
	for (int i = 0; i < 3; i++) {
		double r = 0;
		matvec(E, D, V + i * D, Ev);
		for (int p = 0; p < D; p++)
			r += (Ev[p] - w[i] * V[i * D + p]) * (Ev[p] - w[i] * V[i * D + p]);
		assert_true(sqrt(r) < 1e-5 * w[0]);
	}
	free(V);
	assert_int_equal(fx_cli("eval %s " EXPR " eig --json", store), 0);
	fx_expect_stdout("\"eigenvalues\":[");
	fx_expect_stdout("\"method\":\"lanczos\"");
}

static void test_cli_eval_errors(void **state)
{
	double x5[5] = {1, 2, 3, 4, 5};
	uint64_t five = 5;

	(void)state;
	assert_int_equal(fx_cli("eval %s '2*F - * G' trace", store), 2);
	fx_expect_stderr("pspace: eval: syntax error at column 7 in '2*F - * G': expected a name, "
	                 "number, I or '('");
	fx_expect_stderr("Try 'pspace eval --help'");
	assert_int_equal(fx_cli("eval %s '(F + G' trace", store), 2);
	fx_expect_stderr("column 7");
	fx_expect_stderr("expected ')'");
	assert_int_equal(fx_cli("eval %s 'F G' trace", store), 2);
	fx_expect_stderr("column 3");
	assert_int_equal(fx_cli("eval %s '2 + F' trace", store), 2);
	fx_expect_stderr("c*I");

	assert_int_equal(fx_cli("eval %s '2*F - H' trace", store), 1);
	fx_expect_stderr("pspace: eval: store ");
	fx_expect_stderr(store);
	fx_expect_stderr("has no matrix 'H'");

	assert_int_equal(fx_cli("eval %s 'F + 2*S' trace", store), 1);
	fx_expect_stderr("dimension mismatch");
	fx_expect_stderr("'F' is 66 x 66");
	fx_expect_stderr("'2*S' is 10 x 10");

	assert_int_equal(pspace_npy_write(path("x5.npy"), PSPACE_F64, 1, &five, x5), 0);
	assert_int_equal(
	    fx_cli("eval %s F mv --in %s --out %s", store, path("x5.npy"), path("y5.npy")), 1);
	fx_expect_stderr(path("x5.npy"));
	fx_expect_stderr("has shape (5,), expected (66,) for d = 66");
	assert_int_equal(fx_cli("eval %s F mv --in %s", store, path("nonexistent.npy")), 1);
	fx_expect_stderr(path("nonexistent.npy"));

	assert_int_equal(fx_cli("eval %s F mv --out %s", store, path("y.npy")), 2);
	fx_expect_stderr("mv needs --in");
	assert_int_equal(fx_cli("eval %s F frob", store), 2);
	fx_expect_stderr("unknown operation 'frob'");
	assert_int_equal(fx_cli("eval %s F", store), 2);
	fx_expect_stderr("pspace: eval: missing OP");
	assert_string_equal(fx_out, "");
	assert_int_equal(fx_cli("eval %s F norm --ord 3", store), 2);
	fx_expect_stderr("pspace: eval: --ord is fro, 2 or -2, not '3'");
	assert_int_equal(fx_cli("eval %s F solve --in %s --tol 0", store, path("x5.npy")), 2);
	fx_expect_stderr("--tol must be > 0");
	assert_int_equal(fx_cli("eval %s F trace --probes 1", store), 2);
	fx_expect_stderr("--probes needs an integer >= 2, not '1'");
	assert_int_equal(fx_cli("eval %s F trace --frobnicate", store), 2);
	fx_expect_stderr("unknown option '--frobnicate'");
	assert_int_equal(fx_cli("eval %s F trace", path("no.store")), 1);
	fx_expect_stderr(path("no.store"));
	assert_int_equal(fx_cli("eval --help"), 0);
	fx_expect_stdout("usage: pspace eval STORE EXPR OP");
	fx_expect_stdout("  --precond EXPR");
	/* diag of a product has no exact form */
	assert_int_equal(fx_cli("eval %s 'F*G' diag --out %s", store, path("pd.npy")), 1);
	fx_expect_stderr("pspace: eval: diag of 'F*G'");
}

/* An EXPR may start with '-'; "--" ends the options; --name=VALUE. */
static void test_cli_eval_arguments(void **state)
{
	double tr = 0;

	(void)state;
	for (int i = 0; i < D; i++)
		tr += F[i * D + i];
	assert_int_equal(fx_cli("eval %s '-F + 2*F' trace", store), 0);
	assert_true(fabs(out_scalar() - tr) <= 1e-8 * tr);
	assert_int_equal(fx_cli("eval --probes=8 %s -- '-F + 2*F' trace", store), 0);
	assert_true(fabs(out_scalar() - tr) <= 1e-8 * tr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_eval_mv_mm),        cmocka_unit_test(test_cli_eval_scalars),
	    cmocka_unit_test(test_cli_eval_diag_dense),   cmocka_unit_test(test_cli_eval_solve),
	    cmocka_unit_test(test_cli_eval_product_kfac), cmocka_unit_test(test_cli_eval_eig),
	    cmocka_unit_test(test_cli_eval_errors),       cmocka_unit_test(test_cli_eval_arguments),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
