/*
 * Tests of the pspace tool, run as a separate program ($PSPACE_TOOL, set by
 * ctest): exit codes, messages, and the demo's store read back through the
 * library.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace.h"

static char tmpdir[256];

/* Runs the tool with @p args (a shell fragment), stdout+stderr captured into
 * @p out; @return the exit status. */
static int run_tool(const char *args, char *out, size_t cap)
{
	const char *tool = getenv("PSPACE_TOOL");
	char cmd[1024];
	FILE *p;
	size_t n;
	int st;

	assert_non_null(tool);
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", tool, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pspace-test-tool-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

static void test_tool_version(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(run_tool("--version", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "pspace " PSPACE_VERSION_STRING));
	assert_non_null(strstr(out, "store format version 1"));
	assert_non_null(strstr(out, "kernels: "));
	assert_int_equal(run_tool("version --json", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"format_version\": 1"));
	assert_int_equal(run_tool("--blis-arch haswell --version", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "kernels: haswell (requested"));
}

static void test_tool_usage_errors(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(run_tool("frobnicate", out, sizeof(out)), 2);
	assert_non_null(strstr(out, "pspace: unknown command 'frobnicate'"));
	assert_int_equal(run_tool("--blis-arch pentium version", out, sizeof(out)), 2);
	assert_non_null(strstr(out, "pentium"));
	assert_int_equal(run_tool("demo --params", out, sizeof(out)), 2);
	assert_int_equal(run_tool("", out, sizeof(out)), 2);
	assert_int_equal(run_tool("--help", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "demo"));
	assert_int_equal(run_tool("demo --help", out, sizeof(out)), 0);
}

static void test_tool_runtime_error_names_store(void **state)
{
	char out[4096], args[512];

	(void)state;
	/* a regular file where the store directory should be */
	snprintf(args, sizeof(args), "demo /dev/null/store --params 64");
	assert_int_equal(run_tool(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "pspace: "));
	assert_non_null(strstr(out, "/dev/null/store"));
}

/* The demo stores F as f32 and bf16: the f32 copy must be symmetric-tiled
 * and the bf16 copy within bf16 rounding (2^-8 relative) of it. */
static void test_tool_demo_store(void **state)
{
	char out[8192], args[512], path[300];
	pspace_store *s = NULL;
	pspace_reader *r32 = NULL, *r16 = NULL;
	pspace_codec *c = NULL;
	pspace_tile_ref t32, t16;
	float *a, *b;
	int done = 0;
	uint64_t tiles = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/demo.store", tmpdir);
	snprintf(args, sizeof(args), "demo '%s' --params 700 --examples 64 --tile 128", path);
	assert_int_equal(run_tool(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "fisher_f32"));
	assert_non_null(strstr(out, "fisher_bf16"));

	assert_int_equal(pspace_store_open(&s, path, NULL), 0);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_open(&r32, s, "fisher_f32", 0), 0);
	assert_int_equal(pspace_reader_open(&r16, s, "fisher_bf16", 0), 0);
	assert_int_equal(pspace_reader_info(r32)->d, 700);
	assert_int_equal(pspace_reader_info(r32)->state, PSPACE_STATE_COMPLETE);
	a = malloc(128 * 128 * sizeof(float));
	b = malloc(128 * 128 * sizeof(float));
	for (;;) {
		assert_int_equal(pspace_reader_next(r32, &t32, &done), 0);
		if (done)
			break;
		assert_true(t32.row <= t32.col);
		assert_int_equal(pspace_reader_tile(r16, t32.block, t32.row, t32.col, &t16), 0);
		assert_int_equal(pspace_reader_decode(r32, c, &t32, PSPACE_F32, a, 128), 0);
		assert_int_equal(pspace_reader_decode(r16, c, &t16, PSPACE_F32, b, 128), 0);
		uint32_t rows = t32.row == 5 ? 700 - 5 * 128 : 128;
		uint32_t cols = t32.col == 5 ? 700 - 5 * 128 : 128;
		for (uint32_t i = 0; i < rows; i++)
			for (uint32_t j = 0; j < cols; j++) {
				double x = a[i * 128 + j], y = b[i * 128 + j];
				assert_true(fabs(x - y) <= ldexp(fabs(x), -8));
			}
		tiles++;
	}
	assert_int_equal(tiles, 6 * 7 / 2);
	free(a);
	free(b);
	pspace_reader_close(r16);
	pspace_reader_close(r32);
	pspace_codec_free(c);
	pspace_store_close(s);
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
	    cmocka_unit_test(test_tool_runtime_error_names_store),
	    cmocka_unit_test(test_tool_demo_store),
	    cmocka_unit_test(test_tool_readme_example),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
