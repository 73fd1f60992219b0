/*
 * Tests of the pspace tool, run as a separate program ($PSPACE_TOOL, set by
 * ctest): exit codes, messages, and the demo's store and images read back
 * through the library.
 */
#include <math.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	fx_dir_make(tmpdir, sizeof(tmpdir), "tool");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return fx_dir_remove(tmpdir);
}

static void test_tool_version(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "--version"), 0);
	assert_non_null(strstr(out, "pspace " PSPACE_VERSION_STRING));
	assert_non_null(strstr(out, "store format version 1"));
	assert_non_null(strstr(out, "kernels: "));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "version --json"), 0);
	assert_non_null(strstr(out, "\"format_version\": 1"));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "--blis-arch haswell --version"),
	                 0);
	assert_non_null(strstr(out, "kernels: haswell (requested"));
}

static void test_tool_usage_errors(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "frobnicate"), 2);
	assert_non_null(strstr(out, "pspace: unknown command 'frobnicate'"));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "--blis-arch pentium version"), 2);
	assert_non_null(strstr(out, "pentium"));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "demo --params"), 2);
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "%s", ""), 2);
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "--help"), 0);
	assert_non_null(strstr(out, "demo"));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "demo --help"), 0);
}

/* Every option each command had before its options became a table, as a
 * line of its --help; the option parser's common rules. */
static void test_tool_options(void **state)
{
	static const struct {
		const char *cmd, *opts;
	} cmds[] = {
	    {"", "--blis-arch NAME,--version"},
	    {"build", "--kind KIND,--jacobian FILE,--layer-tensors DIR,--model SPEC,--examples N,"
	              "--variant V,--activation A,--seed S,--layout FILE,--precision P,--tile N,"
	              "--level Z,--no-shuffle,--mem SIZE,--threads N,--batch N,--resume,--json"},
	    {"demo", "--params N,--examples N,--variant V,--model SPEC,--mixed SPEC,--seed S,"
	             "--vectors K,--out DIR,--size PX,--no-png,--mem SIZE,--threads N,--json"},
	    {"eval", "--in FILE,--out FILE,--out-dtype T,--damping L,--ord O,--k K,--probes P,"
	             "--seed S,--tol T,--maxiter N,--precond EXPR,--method M,--threads N,"
	             "--mem SIZE,--json"},
	    {"export", "--npy OUT,--block LAYER,--diag,--factors,--png OUT,--size PX,"
	               "--layer LAYER,--no-lines,--mem SIZE"},
	    {"ls", "--json"},
	    {"info", "--json"},
	    {"stat", "--json"},
	    {"verify", "--json"},
	    {"rm", ""},
	    {"compact", ""},
	    {"version", "--json"},
	};
	char out[8192], err[1024], want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *p = cmds[i].opts;

		assert_int_equal(
		    fx_run_tool(out, sizeof(out), err, sizeof(err), "%s --help", cmds[i].cmd), 0);
		assert_string_equal(err, "");
		snprintf(want, sizeof(want), "usage: pspace%s%s ", *cmds[i].cmd ? " " : "",
		         cmds[i].cmd);
		assert_int_equal(strncmp(out, want, strlen(want)), 0);
		assert_non_null(strstr(out, "\n  -h, --help "));
		while (*p) {
			size_t n = strcspn(p, ",");

			snprintf(want, sizeof(want), "\n  %.*s ", (int)n, p);
			if (!strstr(out, want))
				fail_msg("'pspace %s --help' lacks the option line '%.*s':\n%s",
				         cmds[i].cmd, (int)n, p, out);
			p += n + (p[n] == ',');
		}
	}
	/* values as --name VALUE or --name=VALUE; bounds named */
	assert_int_equal(fx_run_tool(out, sizeof(out), err, sizeof(err), "demo --vectors=65"), 2);
	assert_string_equal(err, "pspace: demo: --vectors needs an integer in [1, 64], not '65'\n"
	                         "Try 'pspace demo --help'.\n");
	assert_int_equal(fx_run_tool(out, sizeof(out), err, sizeof(err), "build s n --kind"), 2);
	assert_non_null(strstr(err, "pspace: build: --kind needs a value"));
	assert_int_equal(fx_run_tool(out, sizeof(out), err, sizeof(err), "--bogus ls"), 2);
	assert_non_null(strstr(err, "pspace: unknown option '--bogus'\nTry 'pspace --help'."));
	assert_string_equal(out, "");
}

static void test_tool_runtime_error_names_store(void **state)
{
	char out[4096], args[512];

	(void)state;
	/* a regular file where the store directory should be */
	snprintf(args, sizeof(args), "demo /dev/null/store --params 64");
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "%s", args), 1);
	assert_non_null(strstr(out, "pspace: "));
	assert_non_null(strstr(out, "/dev/null/store"));
}

/* The cell in column @p col (1 = representation) of the demo table's row
 * for @p label, as a number; fails the test if the row is missing. */
static double table_cell(const char *out, const char *label, int col)
{
	char want[64];
	const char *row, *p;

	snprintf(want, sizeof(want), "\n| %-14s |", label);
	row = strstr(out, want);
	if (!row)
		fail_msg("the demo table has no row %s", label);
	p = row + 1;
	for (int c = 1; c < col; c++) {
		p = strchr(p + 1, '|');
		assert_non_null(p);
	}
	return strtod(p + 1, NULL);
}

/* Width and height from the IHDR chunk, after checking the PNG signature. */
static void png_size(const char *path, uint32_t *w, uint32_t *h)
{
	static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	unsigned char b[24];
	FILE *f = fopen(path, "rb");

	if (!f)
		fail_msg("no image %s", path);
	assert_int_equal(fread(b, 1, sizeof(b), f), sizeof(b));
	fclose(f);
	assert_memory_equal(b, sig, 8);
	assert_memory_equal(b + 12, "IHDR", 4);
	*w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
	*h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
}

/* The demo builds every representation of one Fisher into the store, prints
 * the table and writes one image each; the store is read back through the
 * library and the KFAC row's trace error recomputed from it. */
static void test_tool_demo(void **state)
{
	static const struct {
		const char *label, *name, *file;
		pspace_kind kind;
	} reps[] = {
	    {"Dense", "fisher_dense", "dense", PSPACE_KIND_DENSE},
	    {"BlockDiag", "fisher_blockdiag", "blockdiag", PSPACE_KIND_BLOCKDIAG},
	    {"Diag", "fisher_diag", "diag", PSPACE_KIND_DIAG},
	    {"QuasiDiag", "fisher_quasidiag", "quasidiag", PSPACE_KIND_QUASIDIAG},
	    {"LowRank", "fisher_lowrank", "lowrank", PSPACE_KIND_LOWRANK},
	    {"KFAC", "fisher_kfac", "kfac", PSPACE_KIND_KFAC},
	    {"EKFAC", "fisher_ekfac", "ekfac", PSPACE_KIND_EKFAC},
	    {"Mixed", "fisher_mixed", "mixed", PSPACE_KIND_MIXED},
	};
	char out[16384], args[1024], store[300], png[300], path[400];
	pspace_store *s = NULL;
	pspace_mat *dense = NULL, *kfac = NULL;
	pspace_matrix_info mi;
	unsigned long long d = 0;
	double trF, trK, want, got;
	const char *at;

	(void)state;
	snprintf(store, sizeof(store), "%s/demo.store", tmpdir);
	snprintf(png, sizeof(png), "%s/png", tmpdir);
	snprintf(args, sizeof(args), "demo '%s' --out '%s' --params 2000 --examples 100", store,
	         png);
	if (fx_run_tool(out, sizeof(out), NULL, 0, "%s", args) != 0)
		fail_msg("pspace %s failed:\n%s", args, out);
	at = strstr(out, "d = ");
	assert_non_null(at);
	assert_int_equal(sscanf(at, "d = %llu parameters", &d), 1);
	assert_true(d > 1500 && d < 2500);
	assert_non_null(strstr(out, store));
	assert_non_null(strstr(out, png));
	/* Dense is the reference; the others are approximations, or exact */
	for (int c = 4; c <= 6; c++)
		assert_true(table_cell(out, "Dense", c) == 0.0);
	assert_true(table_cell(out, "BlockDiag", 4) < 1.0);
	assert_true(table_cell(out, "LowRank", 4) < 1e-4); /* all K n rows: exact */

	assert_int_equal(pspace_store_open(&s, store, NULL), 0);
	for (size_t i = 0; i < sizeof(reps) / sizeof(reps[0]); i++) {
		uint32_t w, h;

		table_cell(out, reps[i].label, 1);
		assert_int_equal(pspace_matrix_info_get(&mi, s, reps[i].name), 0);
		assert_int_equal(mi.kind, reps[i].kind);
		assert_int_equal(mi.d, d);
		assert_int_equal(mi.state, PSPACE_STATE_COMPLETE);
		snprintf(path, sizeof(path), "%s/%s.png", png, reps[i].file);
		png_size(path, &w, &h);
		assert_int_equal(w, 512);
		assert_int_equal(h, 512);
	}
	/* the KFAC row's trace error, from the stored matrices */
	assert_int_equal(pspace_mat_open(&dense, s, "fisher_dense"), 0);
	assert_int_equal(pspace_mat_open(&kfac, s, "fisher_kfac"), 0);
	assert_int_equal(pspace_mat_trace(dense, NULL, &trF), 0);
	assert_int_equal(pspace_mat_trace(kfac, NULL, &trK), 0);
	want = fabs(trK - trF) / fabs(trF);
	got = table_cell(out, "KFAC", 6);
	assert_true(want > 0);
	if (fabs(got - want) > 6e-3 * want)
		fail_msg("KFAC trace rel. error printed %g, recomputed %g", got, want);
	pspace_mat_free(kfac);
	pspace_mat_free(dense);
	pspace_store_close(s);

	/* a rerun replaces the demo's matrices; JSON output */
	snprintf(args, sizeof(args),
	         "demo '%s' --no-png --params 300 --examples 20 --json --vectors 2", store);
	if (fx_run_tool(out, sizeof(out), NULL, 0, "%s", args) != 0)
		fail_msg("pspace %s failed:\n%s", args, out);
	assert_non_null(strstr(out, "\"representation\": \"EKFAC\""));
	assert_non_null(strstr(out, "\"mv_rel_err\": 0,"));
	assert_null(strstr(out, "| Dense"));
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "demo --params 0"), 2);
	assert_int_equal(fx_run_tool(out, sizeof(out), NULL, 0, "demo --variant nope"), 2);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *buf;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The README shows tests/example_api.c (which ctest builds and runs) as an
 * indented code block, line for line. */
static void test_tool_readme_example(void **state)
{
	const char *src = getenv("PSPACE_SOURCE_DIR");
	char path[1024], want[600];
	char *readme, *example, *line, *save = NULL, *at;

	(void)state;
	assert_non_null(src);
	snprintf(path, sizeof(path), "%s/README.md", src);
	readme = slurp(path);
	snprintf(path, sizeof(path), "%s/tests/example_api.c", src);
	example = slurp(path);
	at = readme;
	for (line = strtok_r(example, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		snprintf(want, sizeof(want), "\n    %s\n", line);
		char *hit = strstr(at, want);
		if (!hit)
			fail_msg("README.md does not show this line of tests/example_api.c (in "
			         "order): %s",
			         line);
		at = hit + strlen(want) - 1;
	}
	free(example);
	free(readme);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tool_version),
	    cmocka_unit_test(test_tool_usage_errors),
	    cmocka_unit_test(test_tool_options),
	    cmocka_unit_test(test_tool_runtime_error_names_store),
	    cmocka_unit_test(test_tool_demo),
	    cmocka_unit_test(test_tool_readme_example),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
