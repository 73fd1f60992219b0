/*
 * Bad input through the tool ($PSPACE_TOOL, set by ctest), one case per
 * row of the README's "Bad input" table: non-finite or overflowing values,
 * wrong dtypes, trailing bytes, oversized layout files, a foreign
 * directory as the store, and expressions that are malformed, too deep or
 * not finite. Each error must name the file, element, matrix or column it
 * concerns, and a failed build must leave the store as it was. The results
 * of the expressions that parse are checked against float64 references
 * computed here from the Jacobian.
 */
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

#include "fixture.h"
#include "fref.h"
#include "pspace.h"

#define N 5
#define D 6 /* l1 linear 2x2 bias */

static char root[64];
static double J[N * D], F[D * D];

static const char *path(const char *name)
{
	return fx_path(root, "%s", name);
}

static int count_fn(const pspace_matrix_info *info, void *ud)
{
	(void)info;
	(*(int *)ud)++;
	return 0;
}

/* Matrices in store @p st (complete or not). */
static int store_count(const char *st)
{
	pspace_store *s = NULL;
	int n = 0;

	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_store_foreach(s, count_fn, &n), 0);
	pspace_store_close(s);
	return n;
}

/* J (1, N, D) as float64 .npy @p name with J[bad] = @p v (bad < 0: none). */
static void write_jac(const char *name, pspace_dtype t, int bad, double v)
{
	uint64_t shape[3] = {1, N, D};
	double Jb[N * D];

	memcpy(Jb, J, sizeof(Jb));
	if (bad >= 0)
		Jb[bad] = v;
	assert_int_equal(pspace_npy_write(path(name), t, 3, shape, Jb), 0);
}

static int setup(void **state)
{
	uint64_t rng = 7;

	(void)state;
	fx_dir_make(root, sizeof(root), "cli-bad");
	for (int i = 0; i < N * D; i++)
		J[i] = fx_rng_unif(&rng);
	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++) {
			double s = 0;

			for (int x = 0; x < N; x++)
				s += J[x * D + i] * J[x * D + j];
			F[i * D + j] = s / N;
		}
	fx_write_file(path("lay.txt"), "l1 linear 2x2 bias\n", 19);
	write_jac("ok.npy", PSPACE_F64, -1, 0);
	/* the store of the expression tests: F (f64), F/p (Diag) */
	if (fx_cli("build %s F --kind dense --precision f64 --layout %s --jacobian %s", path("E"),
	           path("lay.txt"), path("ok.npy")) != 0 ||
	    fx_cli("build %s F/p --kind diag --layout %s --jacobian %s", path("E"), path("lay.txt"),
	           path("ok.npy")) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (getenv("PSPACE_KEEP_TMP"))
		return 0;
	return fx_dir_remove(root);
}

/* Non-finite and too large values, every kind alike, naming file and element. */
static void test_cli_badinput_nonfinite(void **state)
{
	static const char *kinds[] = {"dense", "blockdiag", "diag", "quasidiag", "lowrank"};
	char st[128];

	(void)state;
	snprintf(st, sizeof(st), "%s", path("nf"));
	assert_int_equal(fx_cli("build %s ok --kind diag --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("ok.npy")),
	                 0);
	write_jac("nan.npy", PSPACE_F32, 2 * D + 3, NAN);
	write_jac("inf.npy", PSPACE_F64, 7, -INFINITY);
	write_jac("huge.npy", PSPACE_F64, 7, 1e200);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		assert_int_equal(fx_cli("build %s m --kind %s --layout %s --jacobian %s", st,
		                        kinds[i], path("lay.txt"), path("nan.npy")),
		                 1);
		fx_expect_stderr(path("nan.npy"));
		fx_expect_stderr("element 15 [0, 2, 3] is nan");
	}
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("inf.npy")),
	                 1);
	fx_expect_stderr("element 7 [0, 1, 1] is -inf");
	fx_expect_stderr("removed");
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("huge.npy")),
	                 1);
	fx_expect_stderr("element 7 [0, 1, 1] is 1e+200, beyond 2^511");
	/* nothing was left behind, not even an incomplete dense matrix */
	assert_int_equal(store_count(st), 1);
}

/* Layer tensors: the same check, naming the grads file. */
static void test_cli_badinput_layer_tensors(void **state)
{
	uint64_t sa[2] = {N, 2}, sg[3] = {1, N, 2};
	double acts[N * 2], grads[N * 2];
	char st[128];

	(void)state;
	snprintf(st, sizeof(st), "%s", path("lt"));
	for (int i = 0; i < N * 2; i++) {
		acts[i] = J[i];
		grads[i] = J[i + 10];
	}
	grads[3] = NAN;
	assert_int_equal(mkdir(path("lt_in"), 0777), 0);
	assert_int_equal(pspace_npy_write(path("lt_in/l1.acts.npy"), PSPACE_F64, 2, sa, acts), 0);
	assert_int_equal(pspace_npy_write(path("lt_in/l1.grads.npy"), PSPACE_F64, 3, sg, grads), 0);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(fx_cli("build %s m --kind %s --layout %s --layer-tensors %s", st,
		                        k ? "kfac" : "blockdiag", path("lay.txt"), path("lt_in")),
		                 1);
		fx_expect_stderr(path("lt_in/l1.grads.npy"));
		fx_expect_stderr("element 3 [0, 1, 1] is nan");
	}
	assert_int_equal(store_count(st), 0);
}

/* F beyond the f32 range: an error naming the matrix and tile; f64 tiles hold it. */
static void test_cli_badinput_f32_overflow(void **state)
{
	char st[128];
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	double got[D * D];

	(void)state;
	snprintf(st, sizeof(st), "%s", path("ov"));
	write_jac("big.npy", PSPACE_F32, 7, 3e38);
	assert_int_equal(fx_cli("build %s big --kind dense --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("big.npy")),
	                 1);
	fx_expect_stderr("matrix big: tile (0,0,0): entry (1, 1)");
	fx_expect_stderr("--precision f64");
	assert_int_equal(fx_cli("build %s big --kind blockdiag --precision bf16 --layout %s "
	                        "--jacobian %s",
	                        st, path("lay.txt"), path("big.npy")),
	                 1);
	fx_expect_stderr("beyond the bf16 range");
	assert_int_equal(store_count(st), 0);
	assert_int_equal(fx_cli("build %s big --kind dense --precision f64 --layout %s "
	                        "--jacobian %s",
	                        st, path("lay.txt"), path("big.npy")),
	                 0);
	/* F[1][1] = (3e38 (as f32))^2 / N + the other examples' squares */
	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_mat_open(&m, s, "big"), 0);
	assert_int_equal(pspace_mat_dense(m, NULL, got, D), 0);
	{
		double v = (double)3e38f, want = v * v / N;

		for (int x = 1; x < N; x++)
			want += J[x * D + 1] * J[x * D + 1] / N;
		assert_true(fx_relerr1(got[1 * D + 1], want) < 1e-12);
	}
	pspace_mat_free(m);
	pspace_store_close(s);
}

/* Files that are not what they claim: dtype, trailing bytes, a device as layout, a foreign dir. */
static void test_cli_badinput_files(void **state)
{
	char st[128];
	uint64_t shape[3] = {1, N, D};
	double ones[N * D];
	FILE *f;

	(void)state;
	snprintf(st, sizeof(st), "%s", path("files"));
	for (int i = 0; i < N * D; i++)
		ones[i] = 1;
	assert_int_equal(pspace_npy_write(path("i8.npy"), PSPACE_I64, 3, shape, ones), 0);
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("i8.npy")),
	                 1);
	fx_expect_stderr(path("i8.npy"));
	fx_expect_stderr("expected float32 or float64");

	write_jac("trail.npy", PSPACE_F64, -1, 0);
	f = fopen(path("trail.npy"), "ab");
	assert_non_null(f);
	assert_int_equal(fwrite("0123456789ab", 1, 12, f), 12);
	fclose(f);
	assert_int_equal(fx_cli("build %s m --kind diag --layout %s --jacobian %s", st,
	                        path("lay.txt"), path("trail.npy")),
	                 1);
	fx_expect_stderr(path("trail.npy"));
	fx_expect_stderr("(12 trailing bytes)");

	assert_int_equal(
	    fx_cli("build %s m --kind diag --layout /dev/zero --jacobian %s", st, path("ok.npy")),
	    1);
	fx_expect_stderr("/dev/zero: more than 64 MiB");

	assert_int_equal(mkdir(path("foreign"), 0777), 0);
	fx_write_file(path("foreign/notes.txt"), "mine\n", 5);
	assert_int_equal(fx_cli("build %s m --kind diag --layout %s --jacobian %s", path("foreign"),
	                        path("lay.txt"), path("ok.npy")),
	                 1);
	fx_expect_stderr(path("foreign"));
	fx_expect_stderr("neither empty nor a pspace store");
	assert_int_equal(access(path("foreign/data.mdb"), F_OK), -1);
	/* an empty directory becomes a store */
	assert_int_equal(mkdir(path("empty"), 0777), 0);
	assert_int_equal(fx_cli("build %s m --kind diag --layout %s --jacobian %s", path("empty"),
	                        path("lay.txt"), path("ok.npy")),
	                 0);
	assert_int_equal(store_count(path("empty")), 1);
}

static double trace_of(const double *A)
{
	double t = 0;

	for (int i = 0; i < D; i++)
		t += A[i * D + i];
	return t;
}

/* The scalar printed by `eval E '<expr>' trace` (asserts it succeeded). */
static double eval_trace(const char *args)
{
	assert_int_equal(fx_cli("eval %s %s trace", path("E"), args), 0);
	return strtod(fx_out, NULL);
}

/* Expressions: numbers, '/', '^-1', a leading '-', and the limits. */
static void test_cli_badinput_expr(void **state)
{
	static char big[130000];
	double x[D], y[D], Fx[D];
	uint64_t shape = D;
	pspace_npy *f = NULL;
	size_t n = 0;

	(void)state;
	/* F/2 divides; F/p is the stored Diag part; F/p/2 both */
	assert_true(fx_relerr1(eval_trace("'F/2'"), trace_of(F) / 2) < 1e-8);
	assert_true(fx_relerr1(eval_trace("'F/p'"), trace_of(F)) < 1e-8);
	assert_true(fx_relerr1(eval_trace("'F/p/2'"), trace_of(F) / 2) < 1e-8);
	assert_true(fx_relerr1(eval_trace("'2^-1*F'"), trace_of(F) / 2) < 1e-8);
	/* a leading '-': taken as the expression, and after '--' */
	assert_true(fx_relerr1(eval_trace("-F"), -trace_of(F)) < 1e-8);
	assert_true(fx_relerr1(eval_trace("-- --F"), trace_of(F)) < 1e-8);
	/* the README's (F + 0.1*I)^-1 * G, as mv against a solve */
	for (int i = 0; i < D; i++)
		x[i] = 1.0 + i;
	assert_int_equal(pspace_npy_write(path("x.npy"), PSPACE_F64, 1, &shape, x), 0);
	assert_int_equal(fx_cli("eval %s '(F + 0.1*I)^-1 * F' mv --in %s --out %s", path("E"),
	                        path("x.npy"), path("y.npy")),
	                 0);
	fref_mm(F, D, 1, x, Fx);
	fref_solve(F, D, 0.1, 1, Fx, x);
	assert_int_equal(pspace_npy_open(&f, path("y.npy")), 0);
	assert_int_equal(pspace_npy_read(f, 0, D, y), 0);
	pspace_npy_close(f);
	assert_true(fx_relerr(y, x, D) < 1e-6);

	/* numbers and results that are not finite */
	assert_int_equal(fx_cli("eval %s '1e309*F' trace", path("E")), 2);
	fx_expect_stderr("column 1 in '1e309*F': number beyond the range of a double");
	assert_int_equal(fx_cli("eval %s 'F/0' trace", path("E")), 2);
	fx_expect_stderr("division by zero");
	assert_int_equal(fx_cli("eval %s '1e300*1e300*F' trace", path("E")), 2);
	fx_expect_stderr("not a finite number");
	assert_int_equal(fx_cli("eval %s '1e300*(1e300*F)' trace", path("E")), 1);
	fx_expect_stderr("trace inf is not finite");
	assert_int_equal(fx_cli("eval %s 'F^2' trace", path("E")), 2);
	fx_expect_stderr("only the exponent -1");
	x[4] = NAN;
	assert_int_equal(pspace_npy_write(path("xnan.npy"), PSPACE_F64, 1, &shape, x), 0);
	assert_int_equal(fx_cli("eval %s F vtmv --in %s", path("E"), path("xnan.npy")), 1);
	fx_expect_stderr("xnan.npy: element 4 is nan");

	/* 60000 nested parentheses, a sum of 60000 terms: clean errors */
	for (int i = 0; i < 60000; i++)
		big[n++] = '(';
	big[n++] = 'F';
	for (int i = 0; i < 60000; i++)
		big[n++] = ')';
	/* too long for a command line of fx_cli: from a file */
	fx_write_file(path("deep.txt"), big, n);
	assert_int_equal(fx_cli("eval %s \"$(cat %s)\" trace", path("E"), path("deep.txt")), 2);
	fx_expect_stderr("nested deeper than 100");
	n = 0;
	for (int i = 0; i < 60000; i++) {
		big[n++] = i ? '+' : ' ';
		big[n++] = 'F';
	}
	fx_write_file(path("sum.txt"), big, n);
	assert_int_equal(fx_cli("eval %s \"$(cat %s)\" trace", path("E"), path("sum.txt")), 2);
	fx_expect_stderr("more than 1000 numbers and names");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_badinput_nonfinite),
	    cmocka_unit_test(test_cli_badinput_layer_tensors),
	    cmocka_unit_test(test_cli_badinput_f32_overflow),
	    cmocka_unit_test(test_cli_badinput_files),
	    cmocka_unit_test(test_cli_badinput_expr),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
