/*
 * Tests of the store's map under limits (src/store/env.c, txn.c): every
 * command under an address-space limit (RLIMIT_AS, ulimit -v) far below the
 * 64 GiB a writable handle reserves without one, and a store whose files
 * are read-only. Tile values come from tests/helpers/sref.c; the commands
 * run the tool in a child.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace/store.h"
#include "sref.h"

/* 1400 x 1400 f32 in 128 x 128 tiles: about 4 MiB. */
static sref_spec spec = {"A", PSPACE_KIND_DENSE, 1, {1400}, 128, 1, 11, "fc linear 35x40 nobias\n"};

/*
 * Runs the tool with @p args in a child under an address-space limit of
 * @p as_bytes (0: none) and user @p uid (-1: unchanged).
 * @return its exit status, or 128 + signal.
 */
static int run_limited(size_t as_bytes, int uid, const char *args)
{
	const char *tool = getenv("PSPACE_TOOL");
	char cmd[1024];
	pid_t pid;
	int st;

	assert_non_null(tool);
	snprintf(cmd, sizeof(cmd), "'%s' %s >/dev/null 2>%s/err", tool, args, fx_group_dir());
	unlink(fx_path(fx_group_dir(), "err"));
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {as_bytes, as_bytes};

		if (uid >= 0 && (setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
			_exit(99);
		if (as_bytes && setrlimit(RLIMIT_AS, &rl) != 0)
			_exit(98);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(97);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The last run_limited() stderr. */
static const char *last_err(void)
{
	static char buf[4096];
	FILE *f = fopen(fx_path(fx_group_dir(), "err"), "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static void expect_ok(size_t as, int uid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void expect_ok(size_t as, int uid, const char *fmt, ...)
{
	char args[900];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	st = run_limited(as, uid, args);
	if (st != 0)
		fail_msg("'%s' exit %d: %s", args, st, last_err());
}

static void test_store_map_ulimit(void **state)
{
	const size_t limit = (size_t)1 << 30;
	char S[128];
	pspace_store *s;
	(void)state;

	snprintf(S, sizeof(S), "%s", fx_path(fx_group_dir(), "ulimit"));
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's shadow memory alone reserves terabytes of address space. */
	printf("test_store_map_ulimit: skipped under AddressSanitizer\n");
	skip();
#endif
	s = sref_open(S, 0);
	assert_int_equal(sref_write(s, &spec), 0);
	pspace_store_close(s);
	/* without the limit a writable handle reserves 64 GiB: it must not here */
	expect_ok(limit, -1, "ls %s", S);
	expect_ok(limit, -1, "info %s A", S);
	expect_ok(limit, -1, "stat %s", S);
	expect_ok(limit, -1, "verify %s", S);
	expect_ok(limit, -1, "eval %s A trace", S);
	expect_ok(limit, -1, "export %s A --npy %s", S, fx_path(fx_group_dir(), "a.npy"));
	expect_ok(limit, -1, "build %s F --kind dense --model mlp:20,20,5 --examples 10", S);
	expect_ok(limit, -1, "rm %s F", S);
	expect_ok(limit, -1, "compact %s %s", S, fx_path(fx_group_dir(), "ulimit2"));
	s = sref_open(S, 0);
	SREF_CHECK(s, &spec, 0);
	pspace_store_close(s);
}

/* A read-only store is read without its lock file; writing names the file. */
static void test_store_map_readonly(void **state)
{
	char S[128], lock[256];
	pspace_store_opts o;
	pspace_store *s = NULL;
	int uid = geteuid() == 0 ? 65534 : -1; /* root would ignore the permissions */
	(void)state;

	snprintf(S, sizeof(S), "%s", fx_path(fx_group_dir(), "ro"));
	s = sref_open(S, 0);
	assert_int_equal(sref_write(s, &spec), 0);
	pspace_store_close(s);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", S);
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(chmod(fx_group_dir(), 0777), 0); /* the child's stderr file */
	assert_int_equal(chmod(fx_path(S, "data.mdb"), 0444), 0);
	assert_int_equal(chmod(S, 0555), 0);

	expect_ok(0, uid, "ls %s", S);
	expect_ok(0, uid, "verify %s", S);
	expect_ok(0, uid, "eval %s A trace", S);
	{
		char args[512];

		snprintf(args, sizeof(args), "rm %s A", S);
		assert_int_equal(run_limited(0, uid, args), 1);
		if (!strstr(last_err(), "data.mdb: Permission denied"))
			fail_msg("the permission error names no file: %s", last_err());
	}
	/* the library, too: the read-only open needs no lock file */
	if (geteuid() != 0) {
		pspace_store_opts_default(&o);
		o.readonly = 1;
		o.create = 0;
		assert_int_equal(pspace_store_open(&s, S, &o), 0);
		SREF_CHECK(s, &spec, 0);
		pspace_store_close(s);
	}
	assert_int_equal(chmod(S, 0755), 0);
	assert_int_equal(chmod(fx_path(S, "data.mdb"), 0644), 0);
	assert_int_equal(access(lock, F_OK), -1); /* nothing created it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_map_ulimit),
	    cmocka_unit_test(test_store_map_readonly),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
