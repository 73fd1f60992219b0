/*
 * Tests of `pspace eval` and `pspace build`, run through the built tool
 * ($PSPACE_TOOL, set by ctest) on stores this program makes with the
 * library; every number is checked against a float64 reference computed
 * here from the same arrays (LAPACKE for eigenvalues).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace.h"

#define D      66 /* fc1 linear 6x7 bias (48) + fc2 linear 3x6 nobias (18) */
#define OUTCAP 65536

static char tmpdir[256], store[300];
static const char layout_text[] = "fc1 linear 6x7 bias\nfc2 linear 3x6 nobias\n";
static double F[D * D], G[D * D], Kd[D * D], E[D * D]; /* E = 2F - G + 1e-3 I */
static char out[OUTCAP];

/* ---- helpers ------------------------------------------------------------------------ */

/* Runs the tool with @p fmt (a shell fragment), stdout+stderr into out[];
 * @return the exit status. */
static int run_tool(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_tool(const char *fmt, ...)
{
	const char *tool = getenv("PSPACE_TOOL");
	char args[2048], cmd[2600];
	va_list ap;
	FILE *p;
	size_t n;
	int st;

	assert_non_null(tool);
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", tool, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, OUTCAP - 1, p);
	out[n] = '\0';
	st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void expect_out(const char *want)
{
	if (!strstr(out, want))
		fail_msg("output lacks \"%s\":\n%s", want, out);
}

static const char *path(const char *name)
{
	static char buf[4][400];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmpdir, name);
	return buf[i];
}

static uint64_t rng_state = 12345;

static double randn(void)
{
	uint64_t a, b;
	double u1, u2;

	a = (rng_state += 0x9e3779b97f4a7c15ull);
	a = (a ^ (a >> 30)) * 0xbf58476d1ce4e5b9ull;
	a = (a ^ (a >> 27)) * 0x94d049bb133111ebull;
	a ^= a >> 31;
	b = (rng_state += 0x9e3779b97f4a7c15ull);
	b = (b ^ (b >> 30)) * 0xbf58476d1ce4e5b9ull;
	b = (b ^ (b >> 27)) * 0x94d049bb133111ebull;
	b ^= b >> 31;
	u1 = ((double)(a >> 11) + 0.5) / 9007199254740992.0;
	u2 = ((double)(b >> 11) + 0.5) / 9007199254740992.0;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* S = scale * M M^T / m + shift I for a random d x m M. */
static void random_spd(double *S, int d, int m, double scale, double shift)
{
	double *M = malloc(sizeof(double) * (size_t)d * (size_t)m);

	for (int i = 0; i < d * m; i++)
		M[i] = randn();
	for (int i = 0; i < d; i++)
		for (int j = 0; j < d; j++) {
			double s = 0;
			for (int k = 0; k < m; k++)
				s += M[i * m + k] * M[j * m + k];
			S[i * d + j] = scale * s / m + (i == j ? shift : 0.0);
		}
	free(M);
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
	double *x;

	assert_int_equal(pspace_npy_open(&f, path(name)), 0);
	assert_int_equal(pspace_npy_info_of(f)->count, count);
	if (dtype)
		*dtype = pspace_npy_info_of(f)->dtype;
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

/* max |a - b| / max |b| */
static double rel_err(const double *a, const double *b, size_t n)
{
	double e = 0, m = 0;

	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs(a[i] - b[i]));
		m = fmax(m, fabs(b[i]));
	}
	return m > 0 ? e / m : e;
}

/* The line @p i (0-based) of out[] as a number. */
static double out_number(int line)
{
	const char *p = out;
	char *end;
	double v;

	for (int i = 0; i < line; i++) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	v = strtod(p, &end);
	assert_true(end != p);
	return v;
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

static int count_fn(const pspace_matrix_info *info, void *ud)
{
	(void)info;
	(*(int *)ud)++;
	return 0;
}

static int store_count(const char *st)
{
	pspace_store *s = NULL;
	int n = 0;

	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_store_foreach(s, count_fn, &n), 0);
	pspace_store_close(s);
	return n;
}

/* ---- the eval store: Dense F, G (f64 tiles), KFAC K, a small Dense S --------------- */

/* KFAC reference: per layer G (x) A in (o, j) order, bias column last, in
 * canonical order (weights row-major, then bias). */
static void kfac_dense(const int *out_, const int *in_, const int *bias, double **A, double **Gf,
                       int nl, double *Out, int d)
{
	int off = 0;

	memset(Out, 0, sizeof(double) * (size_t)d * (size_t)d);
	for (int l = 0; l < nl; l++) {
		int o_n = out_[l], in = in_[l], a = in + bias[l];
		for (int o = 0; o < o_n; o++)
			for (int j = 0; j < a; j++)
				for (int o2 = 0; o2 < o_n; o2++)
					for (int j2 = 0; j2 < a; j2++) {
						int r = off + (j < in ? o * in + j : o_n * in + o);
						int c =
						    off + (j2 < in ? o2 * in + j2 : o_n * in + o2);
						Out[r * d + c] =
						    Gf[l][o * o_n + o2] * A[l][j * a + j2];
					}
		off += o_n * in + (bias[l] ? o_n : 0);
	}
}

static int setup(void **state)
{
	pspace_store *s = NULL;
	pspace_layout *lay = NULL;
	pspace_write_opts wo;
	pspace_mat *k = NULL;
	static const int outs[2] = {6, 3}, ins[2] = {7, 6}, bias[2] = {1, 0};
	double a1[8 * 8], g1[6 * 6], a2[6 * 6], g2[3 * 3], S[10 * 10];
	double *A[2] = {a1, a2}, *Gf[2] = {g1, g2};
	FILE *f;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pspace-test-cli-eval-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(store, sizeof(store), "%s/eval.store", tmpdir);
	f = fopen(path("layout.txt"), "w");
	fputs(layout_text, f);
	fclose(f);
	random_spd(F, D, D, 1.0, 0.5);
	random_spd(G, D, D, 0.2, 0.1);
	for (int i = 0; i < D * D; i++)
		E[i] = 2 * F[i] - G[i] + (i % (D + 1) == 0 ? 1e-3 : 0.0);
	random_spd(a1, 8, 10, 1.0, 0.1);
	random_spd(g1, 6, 10, 1.0, 0.1);
	random_spd(a2, 6, 10, 1.0, 0.1);
	random_spd(g2, 3, 10, 1.0, 0.1);
	kfac_dense(outs, ins, bias, A, Gf, 2, Kd, D);
	random_spd(S, 10, 10, 1.0, 0.1);

	if (pspace_layout_parse(&lay, layout_text, "layout") || pspace_store_open(&s, store, NULL))
		return -1;
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
	char cmd[300];

	(void)state;
	if (getenv("PSPACE_KEEP_TMP")) /* debugging: keep the stores and files */
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

#define EXPR "'2*F - G + 1e-3*I'"

/* ---- eval ----------------------------------------------------------------------------- */

static void test_cli_eval_mv_mm(void **state)
{
	double x[3 * D], y[3 * D], *got;
	pspace_dtype dt;

	(void)state;
	for (int i = 0; i < 3 * D; i++)
		x[i] = randn();
	write_vecs("x.npy", 1, 1, x);
	write_vecs("X.npy", 2, 3, x);
	for (int j = 0; j < 3; j++)
		matvec(E, D, x + j * D, y + j * D);

	assert_int_equal(
	    run_tool("eval %s " EXPR " mv --in %s --out %s", store, path("x.npy"), path("y.npy")),
	    0);
	got = read_npy("y.npy", D, &dt);
	assert_int_equal(dt, PSPACE_F64);
	assert_true(rel_err(got, y, D) < 1e-12);
	free(got);

	assert_int_equal(run_tool("eval %s " EXPR " mv --in %s --out %s --out-dtype f32", store,
	                          path("x.npy"), path("y32.npy")),
	                 0);
	got = read_npy("y32.npy", D, &dt);
	assert_int_equal(dt, PSPACE_F32);
	assert_true(rel_err(got, y, D) < 1e-6);
	free(got);

	assert_int_equal(run_tool("eval %s " EXPR " mm --in %s --out %s --threads 2", store,
	                          path("X.npy"), path("Y.npy")),
	                 0);
	got = read_npy("Y.npy", 3 * D, NULL);
	assert_true(rel_err(got, y, 3 * D) < 1e-12);
	free(got);

	/* no --out: printed, one value a line */
	assert_int_equal(run_tool("eval %s " EXPR " mv --in %s", store, path("x.npy")), 0);
	for (int i = 0; i < D; i += 13)
		assert_true(fabs(out_number(i) - y[i]) <= 1e-8 * fabs(y[i]) + 1e-12);
}

static void test_cli_eval_scalars(void **state)
{
	double v[2 * D], Ev[D], want[2], tr = 0, fro = 0, w[D];

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
	assert_int_equal(run_tool("eval %s " EXPR " vtmv --in %s", store, path("v.npy")), 0);
	assert_true(fabs(out_number(0) - want[0]) <= 1e-8 * fabs(want[0]));
	assert_int_equal(run_tool("eval %s " EXPR " vtmv --in %s", store, path("V.npy")), 0);
	assert_true(fabs(out_number(0) - want[0]) <= 1e-8 * fabs(want[0]));
	assert_true(fabs(out_number(1) - want[1]) <= 1e-8 * fabs(want[1]));

	for (int i = 0; i < D; i++)
		tr += E[i * D + i];
	for (int i = 0; i < D * D; i++)
		fro += E[i] * E[i];
	fro = sqrt(fro);
	assert_int_equal(run_tool("eval %s " EXPR " trace", store), 0);
	assert_true(fabs(out_number(0) - tr) <= 1e-8 * tr);
	expect_out("\nexact\n");
	assert_int_equal(run_tool("eval %s " EXPR " trace --json", store), 0);
	expect_out("\"exact\":true");
	expect_out("\"trace\":");
	assert_int_equal(out[0], '{');

	assert_int_equal(run_tool("eval %s " EXPR " norm --ord fro", store), 0);
	assert_true(fabs(out_number(0) - fro) <= 1e-8 * fro);
	eigvals_desc(E, D, w);
	assert_int_equal(run_tool("eval %s " EXPR " norm --ord 2", store), 0);
	assert_true(fabs(out_number(0) - w[0]) <= 1e-6 * w[0]);
	assert_int_equal(run_tool("eval %s " EXPR " norm --ord -2 --maxiter 66", store), 0);
	assert_true(fabs(out_number(0) - w[D - 1]) <= 1e-6 * w[0]);
}

static void test_cli_eval_diag_dense(void **state)
{
	double dg[D], *got;

	(void)state;
	for (int i = 0; i < D; i++)
		dg[i] = E[i * D + i];
	assert_int_equal(run_tool("eval %s " EXPR " diag --out %s", store, path("dg.npy")), 0);
	got = read_npy("dg.npy", D, NULL);
	assert_true(rel_err(got, dg, D) < 1e-12);
	free(got);

	assert_int_equal(run_tool("eval %s " EXPR " dense --out %s", store, path("E.npy")), 0);
	got = read_npy("E.npy", D * D, NULL);
	assert_true(rel_err(got, E, D * D) < 1e-12);
	free(got);

	/* 66 x 66 doubles are 34848 bytes: refused under a 16 KiB budget */
	assert_int_equal(
	    run_tool("eval %s " EXPR " dense --out %s --mem 16K", store, path("E2.npy")), 1);
	expect_out("memory budget");
	assert_int_equal(access(path("E2.npy"), F_OK), -1);
	assert_int_equal(run_tool("eval %s " EXPR " dense", store), 2);
	expect_out("--out");
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

static void test_cli_eval_solve(void **state)
{
	double b[D], A2[D * D], *x;
	unsigned it_plain, it_pre;

	(void)state;
	for (int i = 0; i < D; i++)
		b[i] = randn();
	write_vecs("b.npy", 1, 1, b);

	/* two stored matrices: CG */
	assert_int_equal(run_tool("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s "
	                          "--out %s",
	                          store, path("b.npy"), path("x.npy")),
	                 0);
	expect_out("cg: ");
	expect_out("relative residual");
	assert_int_equal(sscanf(out, "cg: %u iterations", &it_plain), 1);
	x = read_npy("x.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);

	/* CG preconditioned by F (its direct solve), and by the KFAC */
	assert_int_equal(run_tool("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s "
	                          "--out %s --precond F",
	                          store, path("b.npy"), path("xp.npy")),
	                 0);
	assert_int_equal(sscanf(out, "cg: %u iterations", &it_pre), 1);
	assert_true(it_pre < it_plain);
	x = read_npy("xp.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);
	assert_int_equal(run_tool("eval %s " EXPR " solve --damping 0.1 --tol 1e-10 --in %s "
	                          "--out %s --precond 'K + 0*I' --json",
	                          store, path("b.npy"), path("xk.npy")),
	                 0);
	expect_out("\"method\":\"cg\"");
	x = read_npy("xk.npy", D, NULL);
	assert_true(residual(E, 0.1, x, b) < 1e-8);
	free(x);

	/* c*M + s*I: direct */
	for (int i = 0; i < D * D; i++)
		A2[i] = 2 * F[i] + (i % (D + 1) == 0 ? 0.5 : 0.0);
	assert_int_equal(run_tool("eval %s '2*F + 0.5*I' solve --damping 0.1 --in %s --out %s",
	                          store, path("b.npy"), path("xd.npy")),
	                 0);
	expect_out("direct");
	x = read_npy("xd.npy", D, NULL);
	assert_true(residual(A2, 0.1, x, b) < 1e-10);
	free(x);
}

static void test_cli_eval_product_kfac(void **state)
{
	double x[D], t[D], y[D], FK[D * D], tr = 0, est, se, *got;

	(void)state;
	for (int i = 0; i < D; i++)
		x[i] = randn();
	write_vecs("xp.npy", 1, 1, x);
	matvec(G, D, x, t);
	matvec(F, D, t, y);
	assert_int_equal(
	    run_tool("eval %s 'F*G' mv --in %s --out %s", store, path("xp.npy"), path("yp.npy")),
	    0);
	got = read_npy("yp.npy", D, NULL);
	assert_true(rel_err(got, y, D) < 1e-12);
	free(got);

	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++)
			tr += F[i * D + j] * G[j * D + i];
	assert_int_equal(run_tool("eval %s 'F*G' trace --probes 200 --seed 7", store), 0);
	expect_out("estimated");
	est = out_number(0);
	se = strtod(strstr(out, "standard error ") + 15, NULL);
	assert_true(se > 0);
	assert_true(fabs(est - tr) <= 4 * se);

	/* a stored Dense with a resident KFAC */
	for (int i = 0; i < D * D; i++)
		FK[i] = F[i] + 3 * Kd[i];
	matvec(FK, D, x, y);
	assert_int_equal(run_tool("eval %s 'F + 3*K' mv --in %s --out %s", store, path("xp.npy"),
	                          path("yk.npy")),
	                 0);
	got = read_npy("yk.npy", D, NULL);
	assert_true(rel_err(got, y, D) < 1e-10);
	free(got);
	tr = 0;
	for (int i = 0; i < D; i++)
		tr += Kd[i * D + i];
	assert_int_equal(run_tool("eval %s K trace", store), 0);
	if (fabs(out_number(0) - tr) > 1e-8 * tr)
		fail_msg("trace of K: %.17g, want %.17g", out_number(0), tr);
}

static void test_cli_eval_eig(void **state)
{
	double w[D], *V, Ev[D];

	(void)state;
	eigvals_desc(E, D, w);
	assert_int_equal(run_tool("eval %s " EXPR " eig --k 3 --out %s", store, path("V.npy")), 0);
	for (int i = 0; i < 3; i++)
		assert_true(fabs(out_number(i) - w[i]) <= 1e-7 * w[0]);
	V = read_npy("V.npy", 3 * D, NULL);
	for (int i = 0; i < 3; i++) {
		double r = 0;
		matvec(E, D, V + i * D, Ev);
		for (int p = 0; p < D; p++)
			r += (Ev[p] - w[i] * V[i * D + p]) * (Ev[p] - w[i] * V[i * D + p]);
		assert_true(sqrt(r) < 1e-5 * w[0]);
	}
	free(V);
	assert_int_equal(run_tool("eval %s " EXPR " eig --json", store), 0);
	expect_out("\"eigenvalues\":[");
}

static void test_cli_eval_errors(void **state)
{
	double x5[5] = {1, 2, 3, 4, 5};
	uint64_t five = 5;

	(void)state;
	assert_int_equal(run_tool("eval %s '2*F - * G' trace", store), 2);
	expect_out("pspace: eval: syntax error at column 7 in '2*F - * G': expected a name, "
	           "number, I or '('");
	expect_out("Try 'pspace eval --help'");
	assert_int_equal(run_tool("eval %s '(F + G' trace", store), 2);
	expect_out("column 7");
	expect_out("expected ')'");
	assert_int_equal(run_tool("eval %s 'F G' trace", store), 2);
	expect_out("column 3");
	assert_int_equal(run_tool("eval %s '2 + F' trace", store), 2);
	expect_out("c*I");

	assert_int_equal(run_tool("eval %s '2*F - H' trace", store), 1);
	expect_out("pspace: eval: store ");
	expect_out(store);
	expect_out("has no matrix 'H'");

	assert_int_equal(run_tool("eval %s 'F + 2*S' trace", store), 1);
	expect_out("dimension mismatch");
	expect_out("'F' is 66 x 66");
	expect_out("'2*S' is 10 x 10");

	assert_int_equal(pspace_npy_write(path("x5.npy"), PSPACE_F64, 1, &five, x5), 0);
	assert_int_equal(
	    run_tool("eval %s F mv --in %s --out %s", store, path("x5.npy"), path("y5.npy")), 1);
	expect_out(path("x5.npy"));
	expect_out("has shape (5,), expected (66,) for d = 66");
	assert_int_equal(run_tool("eval %s F mv --in %s", store, path("nonexistent.npy")), 1);
	expect_out(path("nonexistent.npy"));

	assert_int_equal(run_tool("eval %s F mv --out %s", store, path("y.npy")), 2);
	expect_out("mv needs --in");
	assert_int_equal(run_tool("eval %s F frob", store), 2);
	expect_out("unknown operation 'frob'");
	assert_int_equal(run_tool("eval %s F", store), 2);
	assert_int_equal(run_tool("eval %s F norm --ord 3", store), 2);
	assert_int_equal(run_tool("eval %s F trace", path("no.store")), 1);
	expect_out(path("no.store"));
	assert_int_equal(run_tool("eval --help"), 0);
	expect_out("usage: pspace eval STORE EXPR OP");
	/* diag of a product has no exact form */
	assert_int_equal(run_tool("eval %s 'F*G' diag --out %s", store, path("pd.npy")), 1);
	expect_out("pspace: eval: diag of 'F*G'");
}

/* ---- build ---------------------------------------------------------------------------- */

#define BD 21 /* l1 linear 3x4 bias (15) + l2 linear 2x3 nobias (6) */
#define BK 2
#define BN 30

static const char blayout[] = "# test layout\nl1 linear 3x4 bias\nl2 linear 2x3 nobias\n";

static void write_text(const char *name, const char *text)
{
	FILE *f = fopen(path(name), "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void check_built(const char *st, const char *name, pspace_kind kind, const double *want,
                        int blocks_only, int diag_only, double tol)
{
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	double got[BD * BD], ref[BD * BD];

	for (int i = 0; i < BD; i++)
		for (int j = 0; j < BD; j++) {
			int same = (i < 15) == (j < 15);
			ref[i * BD + j] = (diag_only && i != j) || (blocks_only && !same)
			                      ? 0.0
			                      : want[i * BD + j];
		}
	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_kind(m), kind);
	assert_int_equal(pspace_mat_dim(m), BD);
	assert_int_equal(pspace_mat_dense(m, NULL, got, BD), 0);
	if (rel_err(got, ref, BD * BD) > tol)
		fail_msg("%s: relative error %g", name, rel_err(got, ref, BD * BD));
	pspace_mat_free(m);
	pspace_store_close(s);
}

static void test_cli_eval_build_jacobian(void **state)
{
	static double J[BK * BN * BD], Fr[BD * BD];
	uint64_t shape[3] = {BK, BN, BD}, s1[3] = {BK, 10, BD}, s2[3] = {BK, 20, BD};
	double *J1 = malloc(sizeof(double) * BK * 10 * BD),
	       *J2 = malloc(sizeof(double) * BK * 20 * BD);
	char st[400];
	static const struct {
		const char *kind;
		pspace_kind k;
		int blocks, diag;
	} kinds[] = {{"dense", PSPACE_KIND_DENSE, 0, 0},
	             {"blockdiag", PSPACE_KIND_BLOCKDIAG, 1, 0},
	             {"diag", PSPACE_KIND_DIAG, 0, 1},
	             {"lowrank", PSPACE_KIND_LOWRANK, 0, 0}};

	(void)state;
	snprintf(st, sizeof(st), "%s", path("build.store"));
	for (int i = 0; i < BK * BN * BD; i++)
		J[i] = randn() * (1 + i % 3);
	memset(Fr, 0, sizeof(Fr));
	for (int k = 0; k < BK; k++)
		for (int x = 0; x < BN; x++) {
			const double *r = J + ((size_t)k * BN + x) * BD;
			for (int i = 0; i < BD; i++)
				for (int j = 0; j < BD; j++)
					Fr[i * BD + j] += r[i] * r[j] / BN;
		}
	for (int k = 0; k < BK; k++) {
		memcpy(J1 + k * 10 * BD, J + ((size_t)k * BN) * BD, sizeof(double) * 10 * BD);
		memcpy(J2 + k * 20 * BD, J + ((size_t)k * BN + 10) * BD, sizeof(double) * 20 * BD);
	}
	assert_int_equal(pspace_npy_write(path("J.npy"), PSPACE_F64, 3, shape, J), 0);
	assert_int_equal(pspace_npy_write(path("J1.npy"), PSPACE_F64, 3, s1, J1), 0);
	assert_int_equal(pspace_npy_write(path("J2.npy"), PSPACE_F64, 3, s2, J2), 0);
	write_text("blayout.txt", blayout);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		assert_int_equal(
		    run_tool("build %s %s --kind %s --layout %s --jacobian %s --tile 8", st,
		             kinds[i].kind, kinds[i].kind, path("blayout.txt"), path("J.npy")),
		    0);
		expect_out("d = 21, n = 30 examples x 2 outputs");
		check_built(st, kinds[i].kind, kinds[i].k, Fr, kinds[i].blocks, kinds[i].diag,
		            1e-6);
	}
	/* two files, concatenated along examples; f64 tiles are exact */
	assert_int_equal(run_tool("build %s two --kind dense --layout %s --jacobian %s --jacobian "
	                          "%s --precision f64 --json",
	                          st, path("blayout.txt"), path("J1.npy"), path("J2.npy")),
	                 0);
	expect_out("\"examples\":30");
	expect_out("\"compression_ratio\":");
	check_built(st, "two", PSPACE_KIND_DENSE, Fr, 0, 0, 1e-12);
	/* the name exists now */
	assert_int_equal(run_tool("build %s two --kind dense --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("J.npy")),
	                 1);
	expect_out("'two'");
	free(J1);
	free(J2);
}

/* Layer tensors of the build layout: KFAC against its factors computed
 * here, BlockDiag against the per-example gradients g [a; 1]^T. */
static void test_cli_eval_build_layers(void **state)
{
	enum { N = 12 };
	static const int outs[2] = {3, 2}, ins[2] = {4, 3}, bias[2] = {1, 0};
	static const char *names[2] = {"l1", "l2"};
	double acts[2][N * 4], grads[2][BK * N * 3], A1[5 * 5], A2[3 * 3], G1[3 * 3], G2[2 * 2];
	double *A[2] = {A1, A2}, *Gf[2] = {G1, G2}, Kref[BD * BD], Bref[BD * BD], row[BD];
	char st[400], dir[400], file[500];

	(void)state;
	snprintf(st, sizeof(st), "%s", path("layers.store"));
	snprintf(dir, sizeof(dir), "%s", path("tensors"));
	assert_int_equal(mkdir(dir, 0700), 0);
	write_text("blayout.txt", blayout);
	memset(A1, 0, sizeof(A1));
	memset(A2, 0, sizeof(A2));
	memset(G1, 0, sizeof(G1));
	memset(G2, 0, sizeof(G2));
	memset(Bref, 0, sizeof(Bref));
	for (int l = 0; l < 2; l++) {
		uint64_t sa[2] = {N, (uint64_t)ins[l]}, sg[3] = {BK, N, (uint64_t)outs[l]};
		int a = ins[l] + bias[l];

		for (int i = 0; i < N * ins[l]; i++)
			acts[l][i] = randn();
		for (int i = 0; i < BK * N * outs[l]; i++)
			grads[l][i] = randn();
		snprintf(file, sizeof(file), "%s/%s.acts.npy", dir, names[l]);
		assert_int_equal(pspace_npy_write(file, PSPACE_F64, 2, sa, acts[l]), 0);
		snprintf(file, sizeof(file), "%s/%s.grads.npy", dir, names[l]);
		assert_int_equal(pspace_npy_write(file, PSPACE_F64, 3, sg, grads[l]), 0);
		for (int x = 0; x < N; x++)
			for (int j = 0; j < a; j++)
				for (int j2 = 0; j2 < a; j2++) {
					double u = j < ins[l] ? acts[l][x * ins[l] + j] : 1.0;
					double v = j2 < ins[l] ? acts[l][x * ins[l] + j2] : 1.0;
					A[l][j * a + j2] += u * v / N;
				}
		for (int k = 0; k < BK; k++)
			for (int x = 0; x < N; x++)
				for (int o = 0; o < outs[l]; o++)
					for (int o2 = 0; o2 < outs[l]; o2++)
						Gf[l][o * outs[l] + o2] +=
						    grads[l][(k * N + x) * outs[l] + o] *
						    grads[l][(k * N + x) * outs[l] + o2] / N;
	}
	kfac_dense(outs, ins, bias, A, Gf, 2, Kref, BD);
	/* BlockDiag: the exact per-example gradients, layer by layer */
	for (int k = 0; k < BK; k++)
		for (int x = 0; x < N; x++) {
			int off = 0;
			for (int l = 0; l < 2; l++) {
				const double *g = grads[l] + (k * N + x) * outs[l];
				for (int o = 0; o < outs[l]; o++) {
					for (int j = 0; j < ins[l]; j++)
						row[off + o * ins[l] + j] =
						    g[o] * acts[l][x * ins[l] + j];
					if (bias[l])
						row[off + outs[l] * ins[l] + o] = g[o];
				}
				off += outs[l] * ins[l] + (bias[l] ? outs[l] : 0);
			}
			for (int i = 0; i < BD; i++)
				for (int j = 0; j < BD; j++)
					Bref[i * BD + j] += row[i] * row[j] / N;
		}
	assert_int_equal(run_tool("build %s k --kind kfac --layout %s --layer-tensors %s", st,
	                          path("blayout.txt"), dir),
	                 0);
	expect_out("n = 12 examples x 2 outputs");
	check_built(st, "k", PSPACE_KIND_KFAC, Kref, 0, 0, 1e-10);
	assert_int_equal(run_tool("build %s b --kind blockdiag --layout %s --layer-tensors %s "
	                          "--precision f64",
	                          st, path("blayout.txt"), dir),
	                 0);
	check_built(st, "b", PSPACE_KIND_BLOCKDIAG, Bref, 1, 0, 1e-10);
	/* a missing tensor file is named */
	snprintf(file, sizeof(file), "%s/l2.grads.npy", dir);
	assert_int_equal(unlink(file), 0);
	assert_int_equal(run_tool("build %s c --kind kfac --layout %s --layer-tensors %s", st,
	                          path("blayout.txt"), dir),
	                 1);
	expect_out("l2.grads.npy");
	assert_int_equal(store_count(st), 2);
}

static void test_cli_eval_build_model(void **state)
{
	char st[400];
	pspace_refnet_opts ro;
	pspace_refnet *net = NULL;
	pspace_jac_source js;
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	uint64_t d;
	double *Jr, *Fr, *got, tr = 0;

	(void)state;
	snprintf(st, sizeof(st), "%s", path("model.store"));
	memset(&ro, 0, sizeof(ro));
	ro.spec = "mlp:6,5,3";
	ro.examples = 20;
	ro.variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	ro.seed = 1;
	assert_int_equal(pspace_refnet_create(&net, &ro), 0);
	d = pspace_layout_dim(pspace_refnet_layout(net));
	assert_int_equal(d, 6 * 5 + 5 + 5 * 3 + 3);
	assert_int_equal(pspace_refnet_jacobian(net, &js), 0);
	Jr = malloc(sizeof(double) * js.outputs * js.examples * d);
	Fr = calloc(d * d, sizeof(double));
	got = malloc(sizeof(double) * d * d);
	assert_int_equal(js.read(js.ud, 0, js.examples, Jr, d), 0);
	for (uint64_t r = 0; r < js.outputs * js.examples; r++)
		for (uint64_t i = 0; i < d; i++)
			for (uint64_t j = 0; j < d; j++)
				Fr[i * d + j] += Jr[r * d + i] * Jr[r * d + j] / 20.0;

	static const char *kinds[] = {"kfac", "ekfac", "dense"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(run_tool("build %s %s --kind %s --model mlp:6,5,3 --examples 20 "
		                          "--variant classif_logits --seed 1",
		                          st, kinds[i], kinds[i]),
		                 0);
		expect_out("d = 53, n = 20 examples");
	}
	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	for (int i = 0; i < 3; i++) {
		pspace_kind k;
		assert_int_equal(pspace_mat_open(&m, s, kinds[i]), 0);
		assert_int_equal(pspace_kind_parse(kinds[i], &k), 0);
		assert_int_equal(pspace_mat_kind(m), k);
		assert_int_equal(pspace_mat_dim(m), d);
		assert_true(pspace_layout_equal(pspace_mat_layout(m), pspace_refnet_layout(net)));
		if (i == 2) {
			assert_int_equal(pspace_mat_dense(m, NULL, got, d), 0);
			for (uint64_t p = 0; p < d; p++)
				tr += got[p * d + p];
			assert_true(tr > 0);
			for (uint64_t p = 0; p < d; p++)
				for (uint64_t q = 0; q < d; q++)
					assert_true(got[p * d + q] == got[q * d + p]);
			assert_true(rel_err(got, Fr, d * d) < 1e-6);
		}
		pspace_mat_free(m);
	}
	pspace_store_close(s);
	/* a layout file that is not the network's */
	write_text("other.txt", "fc1 linear 5x6 bias\n");
	assert_int_equal(run_tool("build %s bad --kind dense --model mlp:6,5,3 --examples 20 "
	                          "--layout %s",
	                          st, path("other.txt")),
	                 1);
	expect_out(path("other.txt"));
	assert_int_equal(store_count(st), 3);
	free(got);
	free(Fr);
	free(Jr);
	pspace_refnet_free(net);
}

static void test_cli_eval_build_malformed(void **state)
{
	char st[400];
	static const char fortran[] =
	    "{'descr': '<f8', 'fortran_order': True, 'shape': (30, 21), }";
	double J[30 * 21], *J20 = calloc(30 * 20, sizeof(double));
	uint64_t shape[2] = {30, 21}, shape20[2] = {30, 20};
	char hdr[128];
	FILE *f;
	int before;

	(void)state;
	snprintf(st, sizeof(st), "%s", path("bad.store"));
	for (int i = 0; i < 30 * 21; i++)
		J[i] = randn();
	write_text("blayout.txt", blayout);
	/* a store holding one matrix already */
	assert_int_equal(pspace_npy_write(path("ok.npy"), PSPACE_F64, 2, shape, J), 0);
	assert_int_equal(run_tool("build %s ok --kind diag --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("ok.npy")),
	                 0);
	before = store_count(st);
	assert_int_equal(before, 1);

	/* Fortran order, header written by hand */
	memset(hdr, ' ', sizeof(hdr));
	memcpy(hdr, "\x93NUMPY\x01\x00", 8);
	hdr[8] = 118;
	hdr[9] = 0;
	memcpy(hdr + 10, fortran, strlen(fortran));
	hdr[127] = '\n';
	f = fopen(path("fortran.npy"), "wb");
	assert_int_equal(fwrite(hdr, 1, 128, f), 128);
	assert_int_equal(fwrite(J, sizeof(double), 30 * 21, f), 30 * 21);
	fclose(f);
	assert_int_equal(run_tool("build %s m --kind dense --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("fortran.npy")),
	                 1);
	expect_out(path("fortran.npy"));
	expect_out("pspace: build: ");

	/* truncated: the header promises 30 x 21 doubles */
	assert_int_equal(truncate(path("ok.npy"), 128 + 8 * 100), 0);
	assert_int_equal(run_tool("build %s m --kind dense --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("ok.npy")),
	                 1);
	expect_out(path("ok.npy"));

	/* d = 20 for a layout of 21 */
	assert_int_equal(pspace_npy_write(path("d20.npy"), PSPACE_F64, 2, shape20, J20), 0);
	assert_int_equal(run_tool("build %s m --kind blockdiag --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("d20.npy")),
	                 1);
	expect_out(path("d20.npy"));

	/* a layout file with a bad line */
	write_text("badlayout.txt", "l1 linear 3x4 bias\nl2 lineer 2x3 nobias\n");
	assert_int_equal(run_tool("build %s m --kind dense --layout %s --jacobian %s", st,
	                          path("badlayout.txt"), path("J.npy")),
	                 1);
	expect_out("badlayout.txt:2");

	/* usage errors */
	assert_int_equal(run_tool("build %s m --layout %s --jacobian %s", st, path("blayout.txt"),
	                          path("J.npy")),
	                 2);
	expect_out("--kind");
	assert_int_equal(run_tool("build %s m --kind dense --model mlp:6,5,3 --examples 5 "
	                          "--jacobian %s",
	                          st, path("J.npy")),
	                 2);
	assert_int_equal(run_tool("build %s m --kind sparse --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("J.npy")),
	                 2);
	assert_int_equal(run_tool("build %s m --kind kfac --layout %s --jacobian %s", st,
	                          path("blayout.txt"), path("J.npy")),
	                 1);
	expect_out("layer tensors");
	assert_int_equal(run_tool("build --help"), 0);
	expect_out("mixed:SPEC");

	/* none of the failures added a matrix */
	assert_int_equal(store_count(st), before);
	free(J20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_eval_mv_mm),
	    cmocka_unit_test(test_cli_eval_scalars),
	    cmocka_unit_test(test_cli_eval_diag_dense),
	    cmocka_unit_test(test_cli_eval_solve),
	    cmocka_unit_test(test_cli_eval_product_kfac),
	    cmocka_unit_test(test_cli_eval_eig),
	    cmocka_unit_test(test_cli_eval_errors),
	    cmocka_unit_test(test_cli_eval_build_jacobian),
	    cmocka_unit_test(test_cli_eval_build_layers),
	    cmocka_unit_test(test_cli_eval_build_model),
	    cmocka_unit_test(test_cli_eval_build_malformed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
