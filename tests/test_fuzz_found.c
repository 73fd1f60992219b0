/*
 * Regression tests of the fuzzers' findings (tests/fuzz/run.sh): every
 * input kept in tests/fuzz/findings/<target>/ goes through the same API
 * as its fuzz target and must give a result or a clean error. Store files
 * (fuzz_store) are opened, listed and read in a child process, so that a
 * crash inside LMDB fails the test instead of ending the suite.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
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

#include "fixture.h"
#include "pspace/store.h"

static int add_name(const pspace_matrix_info *info, void *ud)
{
	char(*names)[PSPACE_NAME_MAX + 1] = ud;

	for (int i = 0; i < 16; i++)
		if (!names[i][0]) {
			memcpy(names[i], info->name, sizeof(names[i]));
			break;
		}
	return 0;
}

/* What fuzz_store does with one file, in this process: 0, or 1 if the store opened. */
static int read_store(const char *dir)
{
	static char names[16][PSPACE_NAME_MAX + 1];
	static double scratch[1 << 16];
	pspace_store_opts o;
	pspace_store *s = NULL;
	pspace_codec *c = NULL;
	pspace_tile_header h;
	pspace_tile_ref t;

	pspace_store_opts_default(&o);
	o.create = 0;
	o.nosync = 1;
	if (pspace_store_open(&s, dir, &o) != 0)
		return 0;
	if (pspace_codec_create(&c) != 0)
		_exit(3);
	memset(names, 0, sizeof(names));
	(void)pspace_store_foreach(s, add_name, names);
	for (int i = 0; i < 16 && names[i][0]; i++) {
		pspace_reader *r = NULL;
		int done = 0;

		if (pspace_reader_open(&r, s, names[i], PSPACE_READ_INCOMPLETE) != 0)
			continue;
		while (pspace_reader_next(&t, &done, r) == 0 && !done)
			if (pspace_tile_parse(&h, t.data, t.len) == 0 &&
			    (uint64_t)h.rows * h.cols <= sizeof(scratch) / sizeof(scratch[0]))
				(void)pspace_reader_decode(r, c, &t, PSPACE_F64, scratch, h.cols);
		pspace_reader_close(r);
	}
	pspace_codec_free(c);
	pspace_store_close(s);
	return 1;
}

static void test_fuzz_found_store(void **state)
{
	const char *src = getenv("PSPACE_SOURCE_DIR");
	static char buf[1 << 20];
	char findings[512];
	struct dirent *de;
	unsigned inputs = 0, crashed = 0;
	fx_store t;
	DIR *d;

	(void)state;
	assert_non_null(src);
	snprintf(findings, sizeof(findings), "%s/tests/fuzz/findings/fuzz_store", src);
	d = opendir(findings);
	assert_non_null(d);
	fx_store_dir(&t, "fuzzfound");
	while ((de = readdir(d)) != NULL) {
		const char *in = fx_path(findings, "%s", de->d_name);
		FILE *f;
		size_t n;
		int status;
		pid_t pid;

		if (strncmp(de->d_name, "crash-", 6) != 0)
			continue;
		/* a fresh store directory holding the input as data.mdb */
		(void)fx_dir_remove(t.path);
		assert_int_equal(mkdir(t.path, 0700), 0);
		f = fopen(in, "rb");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf), f);
		assert_true(n > 0 && n < sizeof(buf));
		fclose(f);
		fx_write_file(fx_path(t.path, "data.mdb"), buf, n);
		inputs++;
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* a crash ends the child (not cmocka's handlers, inherited) */
			const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL};

			for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
				signal(sigs[i], SIG_DFL);
			_exit(read_store(t.path) ? 0 : 1);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status)) {
			crashed++;
			print_message("%s: signal %d\n", de->d_name, WTERMSIG(status));
		}
	}
	closedir(d);
	fx_store_close(&t);
	assert_true(inputs > 0);
	assert_int_equal(crashed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fuzz_found_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
