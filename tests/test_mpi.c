/*
 * Sharded stores over MPI ranks: `mpirun -n P pspace build/eval` for
 * P = 1, 2, 3, 4 (--oversubscribe) on a Dense F and a BlockDiag G of
 * d = 600 (tile 64: ten tile rows, two or more per rank), checked against
 * the single-process tool on a whole store and against float64 references
 * (F = (1/n) J^T J, G its layer blocks): mv, mm, trace, diag, norm, eig,
 * direct and CG solves, vtmv and the lazy 2*F - G + 1e-3*I, and a Diag
 * built on rank 0 and copied to every shard. A rank killed mid-build
 * leaves every shard readable and the matrix incomplete, and --resume
 * completes it; a store of P shards is refused with another P; ls, info
 * and verify report a sharded store as a whole. Skipped when the tool was
 * built without MPI or mpirun is missing ($PSPACE_MPIEXEC, set by CMake).
 */
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
#include "fref.h"
#include "pspace/npy.h"

#define D     600
#define D0    496 /* fc1 */
#define N     800
#define MAX_P 4

static const char layout[] = "fc1 linear 16x30 bias\nfc2 linear 8x12 bias\n";

static struct {
	char root[64];
	const char *mpiexec, *tool;
	double *J, *F, *G, *x, *X; /* X: 3 x D */
	double w[D], *V;           /* eigenpairs of F, decreasing */
} g;

static const char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char out[FX_OUT_CAP], err[FX_OUT_CAP];

static void slurp(FILE *f, char *buf, size_t cap)
{
	size_t n = 0, r;

	while (n + 1 < cap && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0)
		n += r;
	buf[n] = '\0';
}

/*
 * Runs a shell command (printf-style) in the test's directory: its stdout
 * into out[], its stderr into err[]. @return its exit status.
 */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096], body[3584];
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "cd '%s' && %s 2>stderr.txt", g.root, body);
	p = popen(cmd, "r");
	assert_non_null(p);
	slurp(p, out, sizeof(out));
	st = pclose(p);
	p = fopen(at("stderr.txt"), "r");
	assert_non_null(p);
	slurp(p, err, sizeof(err));
	fclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* @return 1 if the last command printed @p s on stdout or stderr. */
static int said(const char *s)
{
	if (strstr(out, s) || strstr(err, s))
		return 1;
	print_message("expected \"%s\" in:\n%s\n%s\n", s, out, err);
	return 0;
}

/*
 * Under AddressSanitizer, the ranks run without its leak check: Open MPI
 * leaves allocations of its unloaded components behind at exit.
 */
static const char *no_leaks(void)
{
	static char env[512];
	const char *asan = getenv("ASAN_OPTIONS");

	if (!asan)
		return "";
	snprintf(env, sizeof(env), "ASAN_OPTIONS='%s:detect_leaks=0'", asan);
	return env;
}

/* The tool under mpirun -n P (P = 0: without mpirun), one thread per rank. */
static int tool(int P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tool(int P, const char *fmt, ...)
{
	char args[3072];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	if (P == 0)
		return sh("'%s' %s", g.tool, args);
	return sh("%s '%s' --allow-run-as-root --oversubscribe -n %d '%s' %s", no_leaks(),
	          g.mpiexec, P, g.tool, args);
}

static const char *at(const char *fmt, ...)
{
	static char buf[4][256];
	static int i;
	char rel[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", g.root, rel);
	return buf[i];
}

static double *load(const char *path, size_t count)
{
	pspace_npy *f = NULL;
	pspace_npy_info info;
	double *v = malloc(count * sizeof(*v));

	assert_non_null(v);
	assert_int_equal(pspace_npy_open(&f, path), 0);
	pspace_npy_info_get(&info, f);
	assert_int_equal(info.count, count);
	assert_int_equal(pspace_npy_read(f, 0, count, v), 0);
	pspace_npy_close(f);
	return v;
}

/* The scalars printed, one a line. */
static int scalars(double *v, int cap)
{
	int n = 0;
	char *p = out, *end;

	while (n < cap) {
		double x = strtod(p, &end);

		if (end == p)
			break;
		v[n++] = x;
		p = end;
	}
	return n;
}

static double dot(const double *a, const double *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static int setup(void **state)
{
	uint64_t shape[2] = {N, D}, s1[1] = {D}, s2[2] = {3, D};
	FILE *f;

	(void)state;
	g.mpiexec = getenv("PSPACE_MPIEXEC");
	g.tool = getenv("PSPACE_TOOL");
	if (!g.mpiexec || !*g.mpiexec || !g.tool)
		return 0;
	fx_dir_make(g.root, sizeof(g.root), "mpi");
	g.J = fx_randv((size_t)N * D, 11);
	for (size_t i = 0; i < (size_t)N * D; i++)
		g.J[i] = (g.J[i] - 0.5) * (1.0 + (double)(i % D) / D);
	g.F = fref_rows_gram(g.J, N, D, N);
	g.G = calloc((size_t)D * D, sizeof(double));
	g.V = malloc((size_t)D * D * sizeof(double));
	g.x = fx_randv(D, 12);
	g.X = fx_randv(3 * D, 13);
	if (!g.F || !g.G || !g.V)
		return -1;
	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < D; j++)
			if ((i < D0) == (j < D0))
				g.G[i * D + j] = g.F[i * D + j];
	fref_eigh(g.F, D, g.w, g.V);
	if (pspace_npy_write(at("J.npy"), PSPACE_F64, 2, shape, g.J) ||
	    pspace_npy_write(at("x.npy"), PSPACE_F64, 1, s1, g.x) ||
	    pspace_npy_write(at("X.npy"), PSPACE_F64, 2, s2, g.X))
		return -1;
	f = fopen(at("layout.txt"), "w");
	if (!f)
		return -1;
	fputs(layout, f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (g.root[0])
		fx_dir_remove(g.root);
	free(g.J);
	free(g.F);
	free(g.G);
	free(g.V);
	free(g.x);
	free(g.X);
	return 0;
}

static void need_mpi(void)
{
	if (!g.mpiexec || !*g.mpiexec)
		skip();
}

/* Builds F (dense), G (blockdiag) and D (diag) into @p store with P ranks (0: one process). */
static void build_all(int P, const char *store)
{
	static const char *const kinds[][2] = {{"F", "dense"}, {"G", "blockdiag"}, {"Dg", "diag"}};

	for (size_t i = 0; i < 3; i++)
		if (tool(
		        P,
		        "build %s %s --kind %s --layout %s --jacobian %s --tile 64 --precision f64 "
		        "--threads 1",
		        store, kinds[i][0], kinds[i][1], "layout.txt", "J.npy") != 0)
			fail_msg("P = %d: build %s: %s%s", P, kinds[i][0], out, err);
}

/* @return || a - b || / || b ||. */
static double rel(const double *a, const double *b, size_t n)
{
	return fx_relerr(a, b, n);
}

/* eval OP with --out: the result, P ranks and one process compared, and to @p ref. */
static void check_vec(int P, const char *S, const char *W, const char *expr, const char *op,
                      size_t count, const double *ref, double tol)
{
	double *a, *b;

	assert_int_equal(tool(P, "eval %s '%s' %s --out p.npy --threads 1", S, expr, op), 0);
	assert_int_equal(tool(0, "eval %s '%s' %s --out w.npy --threads 1", W, expr, op), 0);
	a = load(at("p.npy"), count);
	b = load(at("w.npy"), count);
	if (rel(a, b, count) > 1e-10 || rel(a, ref, count) > tol)
		fail_msg("P = %d: eval '%s' %s: %.3g from one process, %.3g from the reference", P,
		         expr, op, rel(a, b, count), rel(a, ref, count));
	free(a);
	free(b);
}

/* eval OP printing scalars: P ranks against one process and @p ref (n of them). */
static void check_scalars(int P, const char *S, const char *W, const char *expr, const char *op,
                          int n, const double *ref, double tol)
{
	double a[8], b[8];

	assert_int_equal(tool(P, "eval %s '%s' %s --threads 1", S, expr, op), 0);
	assert_int_equal(scalars(a, 8), n);
	assert_int_equal(tool(0, "eval %s '%s' %s --threads 1", W, expr, op), 0);
	assert_int_equal(scalars(b, 8), n);
	for (int i = 0; i < n; i++)
		if (fx_relerr1(a[i], b[i]) > 1e-8 || fx_relerr1(a[i], ref[i]) > tol)
			fail_msg("P = %d: eval '%s' %s [%d]: %.12g, one process %.12g, reference "
			         "%.12g",
			         P, expr, op, i, a[i], b[i], ref[i]);
}

static void test_mpi_build_eval(void **state)
{
	const char *W = "whole";
	double *ref = malloc(3 * D * sizeof(double)), *T = malloc((size_t)D * D * sizeof(double));
	double tr = 0, trg = 0, fro = 0, v[3] = {0, 0, 0};

	(void)state;
	need_mpi();
	assert_non_null(ref);
	assert_non_null(T);
	build_all(0, W);
	for (size_t i = 0; i < D; i++)
		tr += g.F[i * D + i];
	for (size_t i = 0; i < (size_t)D * D; i++) {
		T[i] = 2 * g.F[i] - g.G[i] + (i % (D + 1) == 0 ? 1e-3 : 0.0);
		trg += i % (D + 1) == 0 ? T[i] : 0.0;
		fro += g.F[i] * g.F[i];
	}
	for (int P = 1; P <= MAX_P; P++) {
		char S[32];

		snprintf(S, sizeof(S), "sharded%d", P);

		build_all(P, S);
		/* mv, mm, diag */
		fref_mm(g.F, D, 1, g.x, ref);
		check_vec(P, S, W, "F", "mv --in x.npy", D, ref, 1e-12);
		fref_mm(g.G, D, 3, g.X, ref);
		check_vec(P, S, W, "G", "mm --in X.npy", 3 * D, ref, 1e-12);
		for (size_t i = 0; i < D; i++)
			ref[i] = g.F[i * D + i];
		check_vec(P, S, W, "F", "diag", D, ref, 1e-12);
		/* the lazy expression, with a matrix copied to every shard */
		fref_mm(T, D, 1, g.x, ref);
		check_vec(P, S, W, "2*F - G + 1e-3*I", "mv --in x.npy", D, ref, 1e-12);
		v[0] = trg + tr;
		check_scalars(P, S, W, "2*F - G + 1e-3*I + Dg", "trace", 1, v, 1e-8);
		/* scalars */
		v[0] = tr;
		check_scalars(P, S, W, "F", "trace", 1, v, 1e-8);
		v[0] = sqrt(fro);
		check_scalars(P, S, W, "F", "norm", 1, v, 1e-8);
		for (int j = 0; j < 3; j++) {
			fref_mm(g.F, D, 1, g.X + j * D, ref);
			v[j] = dot(g.X + j * D, ref, D);
		}
		check_scalars(P, S, W, "F", "vtmv --in X.npy", 3, v, 1e-8);
		check_scalars(P, S, W, "F", "eig --k 2", 2, g.w, 1e-7);
		/* solves: direct per block, and CG on replicated vectors */
		fref_solve(g.F, D, 0.1, 1, g.x, ref);
		check_vec(P, S, W, "F", "solve --in x.npy --damping 0.1 --method direct", D, ref,
		          1e-10);
		check_vec(P, S, W, "F", "solve --in x.npy --damping 0.1 --method cg --tol 1e-10", D,
		          ref, 1e-8);
		fref_solve(g.G, D, 0.1, 1, g.x, ref);
		check_vec(P, S, W, "G", "solve --in x.npy --damping 0.1", D, ref, 1e-10);
	}
	free(T);
	free(ref);
}

static void test_mpi_kill_resume(void **state)
{
	const char *S = "killed";
	double v[1] = {0}, tr = 0;
	int rc;

	(void)state;
	need_mpi();
	for (size_t i = 0; i < D; i++)
		tr += g.F[i * D + i];
	/* rank 1 kills itself at its third pass (tile 16: 38 tile rows, a few a pass) */
	rc = sh(
	    "%s PSPACE_TEST_KILL_AT=1:3 '%s' --allow-run-as-root --oversubscribe -n 3 '%s' build "
	    "%s F --kind dense --layout %s --jacobian %s --tile 16 --precision f64 --mem 512K "
	    "--threads 1",
	    no_leaks(), g.mpiexec, g.tool, S, "layout.txt", "J.npy");
	assert_int_not_equal(rc, 0);
	/* every shard opens and verifies; the matrix is incomplete */
	assert_int_equal(tool(0, "verify %s", S), 0);
	assert_true(said("0 manifest problem(s)"));
	assert_int_equal(tool(0, "ls %s", S), 0);
	assert_true(said("building"));
	assert_int_not_equal(tool(3, "eval %s F trace", S), 0);
	assert_true(said("never completed"));
	/* --resume finishes it */
	assert_int_equal(tool(3,
	                      "build %s F --kind dense --layout %s --jacobian %s --tile 16 "
	                      "--precision f64 --mem 512K --threads 1 --resume",
	                      S, "layout.txt", "J.npy"),
	                 0);
	assert_int_equal(tool(0, "ls %s", S), 0);
	assert_true(said("complete"));
	assert_null(strstr(out, "building"));
	assert_int_equal(tool(3, "eval %s F trace", S), 0);
	assert_int_equal(scalars(v, 1), 1);
	assert_true(fx_relerr1(v[0], tr) < 1e-8);
	assert_int_equal(tool(0, "verify %s", S), 0);
}

static void test_mpi_mismatch(void **state)
{
	const char *S = "sharded4";

	(void)state;
	need_mpi();
	if (access(at("%s", S), F_OK) != 0)
		build_all(4, S);
	assert_int_not_equal(tool(2, "eval %s F trace", S), 0);
	assert_true(said("sharded over 4 ranks, not 2: run it with mpirun -n 4"));
	assert_int_not_equal(
	    tool(3, "build %s H --kind dense --layout %s --jacobian %s", S, "layout.txt", "J.npy"),
	    0);
	assert_true(said("sharded over 4 ranks, not 3"));
	/* the sharded store without mpirun: refused, not taken for a missing store */
	assert_int_not_equal(tool(0, "eval %s F trace", S), 0);
	assert_true(said("is sharded over 4 ranks"));
	assert_true(said("under mpirun -n 4"));
	assert_int_not_equal(
	    tool(0, "build %s H --kind dense --layout %s --jacobian %s", S, "layout.txt", "J.npy"),
	    0);
	assert_true(said("is sharded over 4 ranks"));
	assert_int_not_equal(access(at("%s/data.mdb", S), F_OK), 0);
	/* one shard alone, without mpirun */
	assert_int_not_equal(tool(0, "eval %s/shard-1-of-4 F trace", S), 0);
	assert_true(said("evaluate it under mpirun -n 4"));
	/* a whole store under mpirun */
	if (access(at("whole"), F_OK) != 0)
		build_all(0, "whole");
	assert_int_not_equal(tool(2, "eval whole F trace"), 0);
	assert_true(said("is a whole store"));
}

static void test_mpi_inspect(void **state)
{
	const char *S = "sharded3";
	char *p;

	(void)state;
	need_mpi();
	if (access(at("%s", S), F_OK) != 0)
		build_all(3, S);
	assert_int_equal(tool(0, "ls %s", S), 0);
	assert_true(said("sharded over 3 ranks"));
	assert_null(strstr(out, "building"));
	/* the whole Dense: ten tile rows, 55 upper tiles over the shards */
	assert_int_equal(tool(0, "info %s F", S), 0);
	assert_true(said("tiles      55 "));
	assert_true(said("shards     3"));
	p = strstr(out, "RANK");
	assert_non_null(p);
	assert_non_null(strstr(p, "complete"));
	assert_int_equal(tool(0, "info %s F --json", S), 0);
	assert_true(said("\"tile_row_end\": 10"));
	assert_int_equal(tool(0, "verify %s", S), 0);
	assert_true(said("shard 2 of 3"));
	assert_true(said("3 shards, 2 sharded matrices, 0 manifest problem(s)"));
	assert_int_equal(tool(0, "stat %s", S), 0);
	assert_true(said("shard 1 of 3"));
	/* commands on one store refuse a sharded one with a hint */
	assert_int_not_equal(tool(0, "rm %s F", S), 0);
	assert_true(said("is sharded over 3 ranks"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mpi_build_eval),
	    cmocka_unit_test(test_mpi_kill_resume),
	    cmocka_unit_test(test_mpi_mismatch),
	    cmocka_unit_test(test_mpi_inspect),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
