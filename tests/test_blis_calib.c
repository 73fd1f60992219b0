/*
 * Tests of the BLIS kernel choice by measurement (src/common/blis_calib.c):
 * the candidates a CPU can run, the calibration in forked children, the
 * per-CPU cache file (written, read back, garbled ones ignored and
 * rewritten), and the precedence of the overrides, through the library and
 * through `pspace --version` in a separate process. Nothing here depends on
 * which kernel set wins on the machine.
 */
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

#include <blis.h>
#include <cmocka.h>

#include "common/blis_arch.h"
#include "common/blis_calib.h"
#include "fixture.h"
#include "pspace.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	fx_dir_make(tmpdir, sizeof(tmpdir), "blis-calib");
	unsetenv("BLIS_ARCH_TYPE");
	unsetenv("PSPACE_BLIS_ARCH");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return fx_dir_remove(tmpdir);
}

static int listed(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

static void test_blis_calib_candidates(void **state)
{
	const uint32_t avx2 = PSPACE_CPU_SSSE3 | PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_AVX2;
	const pspace_cpu spr = {PSPACE_CPU_INTEL, 6, 0x8f, avx2 | PSPACE_CPU_AVX512};
	const pspace_cpu zen5 = {PSPACE_CPU_AMD, 0x1a, 0x02, avx2 | PSPACE_CPU_AVX512};
	const pspace_cpu zen2 = {PSPACE_CPU_AMD, 0x17, 0x31, avx2};
	const pspace_cpu knl = {PSPACE_CPU_INTEL, 6, 0x57, avx2 | PSPACE_CPU_AVX512ER};
	const pspace_cpu snb = {PSPACE_CPU_INTEL, 6, 0x2a, PSPACE_CPU_SSSE3 | PSPACE_CPU_AVX};
	const pspace_cpu none = {PSPACE_CPU_OTHER, 0, 0, 0};
	const char *c[PSPACE_BLIS_MAX_CANDIDATES];
	int n;

	(void)state;
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &spr);
	assert_int_equal(n, 5);
	assert_true(listed(c, n, "skx") && listed(c, n, "haswell") && listed(c, n, "zen3"));
	assert_false(listed(c, n, "knl") || listed(c, n, "generic"));
	/* BLIS would say generic on Zen 5: never a candidate when others run */
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &zen5);
	assert_true(listed(c, n, "skx") && listed(c, n, "zen3"));
	assert_false(listed(c, n, "generic"));
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &zen2);
	assert_int_equal(n, 4);
	assert_true(listed(c, n, "zen2") && listed(c, n, "haswell"));
	assert_false(listed(c, n, "skx"));
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &knl);
	assert_true(listed(c, n, "knl") && listed(c, n, "haswell"));
	assert_false(listed(c, n, "skx"));
	/* BLIS's own choice always competes */
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &snb);
	assert_int_equal(n, 1);
	assert_string_equal(c[0], "sandybridge");
	n = pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, &none);
	assert_int_equal(n, 1);
	assert_string_equal(c[0], "generic");
	/* room for fewer */
	assert_int_equal(pspace_blis_candidates(c, 2, &spr), 2);
}

/* This CPU's candidates, for the checks below. */
static int my_candidates(const char **c, pspace_cpu *cpu)
{
	pspace_cpu_query(cpu);
	return pspace_blis_candidates(c, PSPACE_BLIS_MAX_CANDIDATES, cpu);
}

/* In a child: BLIS initialized behind pspace's back first, then
 * pspace_init(): the measurement must notice and fall back to the rules.
 * The parent's BLIS stays untouched for the other tests. */
static void test_blis_calib_blis_already_initialized(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	setenv("PSPACE_CACHE_DIR", fx_path(tmpdir, "early"), 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_blis_info b;
		const char *c[PSPACE_BLIS_MAX_CANDIDATES];
		pspace_cpu cpu;

		bli_init();
		if (pspace_blis_info_get(&b) != 0)
			_exit(2);
		if (my_candidates(c, &cpu) > 1 &&
		    strstr(b.reason, "not measured: BLIS was initialized") == NULL)
			_exit(3);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(access(fx_path(tmpdir, "early"), F_OK), -1); /* nothing cached */
}

/* Measured in this process (which has not initialized BLIS): every
 * candidate timed, the winner the fastest by the geometric mean. Then the
 * cache file written and read back, and garbled versions of it refused. */
static void test_blis_calib_measure_and_file(void **state)
{
	const char *c[PSPACE_BLIS_MAX_CANDIDATES];
	const char *ver = bli_info_get_version_str();
	pspace_blis_calib m, r;
	pspace_cpu cpu, other;
	char why[256], path[512], desc[256], home[512];
	int n = my_candidates(c, &cpu);

	(void)state;
	if (n < 2)
		skip(); /* nothing to choose between on this CPU */
	snprintf(home, sizeof(home), "%s", getenv("HOME") ? getenv("HOME") : "");
	assert_int_equal(pspace_blis_calibrate(&m, c, n, why, sizeof(why)), 0);
	print_message("calibration: %.3f s\n", m.seconds);
	assert_true(m.seconds < 5.0); /* about 0.2 s here: generous for loaded machines */
	assert_int_equal(m.n, n);
	assert_true(m.best >= 0 && m.best < n);
	for (int i = 0; i < n; i++) {
		assert_true(m.ts[i] > 0.0 && m.td[i] > 0.0);
		assert_true(m.ts[m.best] * m.td[m.best] <= m.ts[i] * m.td[i]);
	}
	pspace_blis_calib_describe(desc, sizeof(desc), &m);
	assert_true(strncmp(desc, m.name[m.best], strlen(m.name[m.best])) == 0);
	assert_non_null(strstr(desc, " 1.00"));
	assert_non_null(strstr(desc, "x slower"));

	setenv("PSPACE_CACHE_DIR", fx_path(tmpdir, "lib/sub"), 1);
	assert_int_equal(pspace_blis_cache_path(path, sizeof(path), &cpu, ver), 0);
	assert_non_null(strstr(path, "/lib/sub/blis-"));
	assert_non_null(strstr(path, ver));
	assert_int_equal(pspace_blis_cache_read(&r, path, &cpu, ver, c, n), -1); /* absent */
	assert_int_equal(pspace_blis_cache_write(&m, path, &cpu, ver, why, sizeof(why)), 0);
	assert_int_equal(pspace_blis_cache_read(&r, path, &cpu, ver, c, n), 0);
	assert_int_equal(r.n, n);
	assert_string_equal(r.name[r.best], m.name[m.best]);
	/* another CPU, another BLIS, fewer candidates: not this file */
	other = cpu;
	other.model ^= 1;
	assert_int_equal(pspace_blis_cache_read(&r, path, &other, ver, c, n), -1);
	assert_int_equal(pspace_blis_cache_read(&r, path, &cpu, "0.0.1", c, n), -1);
	assert_int_equal(pspace_blis_cache_read(&r, path, &cpu, ver, c, 1), -1);

	/* the path follows $XDG_CACHE_HOME, then $HOME */
	unsetenv("PSPACE_CACHE_DIR");
	setenv("XDG_CACHE_HOME", "/x/cache", 1);
	assert_int_equal(pspace_blis_cache_path(path, sizeof(path), &cpu, ver), 0);
	assert_true(strncmp(path, "/x/cache/pspace/blis-", 21) == 0);
	setenv("XDG_CACHE_HOME", "relative", 1); /* invalid: ignored */
	setenv("HOME", "/h", 1);
	assert_int_equal(pspace_blis_cache_path(path, sizeof(path), &cpu, ver), 0);
	assert_true(strncmp(path, "/h/.cache/pspace/blis-", 22) == 0);
	unsetenv("XDG_CACHE_HOME");
	unsetenv("HOME");
	assert_int_equal(pspace_blis_cache_path(path, sizeof(path), &cpu, ver), -1);
	if (home[0])
		setenv("HOME", home, 1);
}

/* Writes @p text as the cache file @p path. */
static void put(const char *path, const char *text)
{
	fx_write_file(path, text, strlen(text));
}

/* The kernel set `pspace --version` printed, into @p arch. */
static void printed_arch(char *arch, size_t cap)
{
	const char *k = strstr(fx_out, "kernels: ");
	size_t len;

	if (k == NULL)
		fail_msg("no kernels line:\n%s", fx_out);
	k += strlen("kernels: ");
	len = strcspn(k, " (");
	assert_true(len > 0 && len < cap);
	memcpy(arch, k, len);
	arch[len] = '\0';
}

/* The cache through the tool: a first process measures and saves, a
 * second reads it without measuring; a garbled file is measured over and
 * rewritten; overrides beat the cache. */
static void test_blis_calib_tool_cache(void **state)
{
	const char *c[PSPACE_BLIS_MAX_CANDIDATES];
	const char *dir = fx_path(tmpdir, "tool");
	char file[512], arch[32], first[32], expect[600];
	const char *garbled[] = {
	    "",
	    "\x01\x02 not a cache file\n",
	    "pspace-blis-calibration 1\n", /* truncated */
	    "pspace-blis-calibration 1\ncpu other 0 0 0\nblis 0.9.0\nchoice skx\n"
	    "time skx 0.001 0.002\n", /* another CPU */
	    NULL,                     /* this CPU, a name it cannot run */
	    NULL,                     /* this CPU, the choice not the fastest */
	    NULL,                     /* this CPU, a time that is not a number */
	};
	char bad[3][512], cpuline[160];
	pspace_cpu cpu;
	int n = my_candidates(c, &cpu);
	FILE *f;

	(void)state;
	if (n < 2)
		skip();
	setenv("PSPACE_CACHE_DIR", dir, 1);
	assert_int_equal(
	    pspace_blis_cache_path(file, sizeof(file), &cpu, bli_info_get_version_str()), 0);

	assert_int_equal(fx_cli("--version"), 0);
	fx_expect_stdout("measured on this CPU in ");
	snprintf(expect, sizeof(expect), "saved to %s)", file);
	fx_expect_stdout(expect);
	printed_arch(first, sizeof(first));
	assert_true(listed(c, n, first));
	assert_int_equal(access(file, R_OK), 0);

	assert_int_equal(fx_cli("--version"), 0);
	snprintf(expect, sizeof(expect), "kernels: %s (measured on this CPU: %s 1.00", first,
	         first);
	fx_expect_stdout(expect);
	snprintf(expect, sizeof(expect), "cached in %s)", file);
	fx_expect_stdout(expect);

	/* overrides beat the cache */
	setenv("BLIS_ARCH_TYPE", "haswell", 1);
	assert_int_equal(fx_cli("--version"), 0);
	fx_expect_stdout("kernels: haswell (set by BLIS_ARCH_TYPE=haswell)");
	unsetenv("BLIS_ARCH_TYPE");
	setenv("PSPACE_BLIS_ARCH", "zen3", 1);
	assert_int_equal(fx_cli("--version"), 0);
	fx_expect_stdout("kernels: zen3 (requested (PSPACE_BLIS_ARCH))");
	assert_int_equal(fx_cli("--blis-arch haswell --version"), 0);
	fx_expect_stdout("kernels: haswell (requested (--blis-arch))");
	setenv("PSPACE_BLIS_ARCH", "auto", 1);
	assert_int_equal(fx_cli("--version"), 0);
	fx_expect_stdout("cached in ");
	/* calibrate: measured again although cached */
	assert_int_equal(fx_cli("--blis-arch calibrate --version"), 0);
	fx_expect_stdout("saved to ");
	unsetenv("PSPACE_BLIS_ARCH");

	/* garbled files: measured over, rewritten, then read */
	f = fmemopen(cpuline, sizeof(cpuline), "w");
	assert_non_null(f);
	fprintf(f, "cpu %s %x %x %x\n",
	        cpu.vendor == PSPACE_CPU_INTEL ? "intel"
	        : cpu.vendor == PSPACE_CPU_AMD ? "amd"
	                                       : "other",
	        cpu.family, cpu.model, cpu.features);
	fclose(f);
	snprintf(bad[0], sizeof(bad[0]),
	         "pspace-blis-calibration 1\n%sblis %s\nchoice pentium\ntime pentium 0.001 0.002\n",
	         cpuline, bli_info_get_version_str());
	snprintf(bad[1], sizeof(bad[1]),
	         "pspace-blis-calibration 1\n%sblis %s\nchoice %s\ntime %s 0.002 0.002\n"
	         "time %s 0.001 0.001\n",
	         cpuline, bli_info_get_version_str(), c[0], c[0], c[1]);
	snprintf(bad[2], sizeof(bad[2]),
	         "pspace-blis-calibration 1\n%sblis %s\nchoice %s\ntime %s fast 0.002\n", cpuline,
	         bli_info_get_version_str(), c[0], c[0]);
	garbled[4] = bad[0];
	garbled[5] = bad[1];
	garbled[6] = bad[2];
	for (size_t g = 0; g < sizeof(garbled) / sizeof(garbled[0]); g++) {
		put(file, garbled[g]);
		assert_int_equal(fx_cli("--version"), 0);
		snprintf(expect, sizeof(expect), "saved to %s)", file);
		fx_expect_stdout(expect);
		printed_arch(arch, sizeof(arch));
		assert_true(listed(c, n, arch));
		assert_int_equal(fx_cli("--version"), 0);
		fx_expect_stdout("cached in ");
	}

	/* an unwritable cache directory: measured, used, not saved, no error */
	put(fx_path(tmpdir, "plain"), "a file, not a directory\n");
	setenv("PSPACE_CACHE_DIR", fx_path(tmpdir, "plain/sub"), 1);
	assert_int_equal(fx_cli("--version"), 0);
	fx_expect_stdout("; not saved: ");
	printed_arch(arch, sizeof(arch));
	assert_true(listed(c, n, arch));
	unsetenv("PSPACE_CACHE_DIR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blis_calib_candidates),
	    cmocka_unit_test(test_blis_calib_blis_already_initialized),
	    cmocka_unit_test(test_blis_calib_measure_and_file),
	    cmocka_unit_test(test_blis_calib_tool_cache),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
