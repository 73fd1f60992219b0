/*
 * Tests of the store at its limits (src/store): a full map, a full disk,
 * concurrent readers beside a writer, and map growth. Tile values come
 * from tests/helpers/sref.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace/codec.h"
#include "pspace/store.h"
#include "sref.h"

static void test_store_map_full(void **state)
{
	sref_spec a = {"small", PSPACE_KIND_DENSE, 1, {400}, 128, 1, 40, NULL};
	sref_spec b = {"big", PSPACE_KIND_DENSE, 1, {3000}, 256, 1, 42, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_writer *w;
	pspace_reader *r = NULL;
	pspace_store *s;
	float buf[256];
	fx_store t;
	int rc;
	(void)state;

	fx_store_dir(&t, "store");
	s = sref_open(t.path, (size_t)8 << 20);
	assert_int_equal(sref_write(s, &a), 0);
	sref_desc(&b, &d);
	assert_int_equal(pspace_writer_begin(&w, s, b.name, &d), 0);
	rc = sref_put_tiles(w, &b, -1, NULL);
	assert_int_equal(rc, PSPACE_EFULL);
	assert_non_null(strstr(pspace_errdetail(), t.path));
	/* the writer stays failed */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F32, buf, 256), PSPACE_EFULL);
	assert_int_equal(pspace_writer_finish(w), PSPACE_EFULL);
	/* what was committed before still reads */
	SREF_CHECK(s, &a, 0);
	pspace_store_close(s);

	s = sref_open(t.path, 0);
	SREF_CHECK(s, &a, 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "big"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_reader_open(&r, s, "big", 0), PSPACE_EINCOMPLETE);
	/* and with room again the build can be redone */
	assert_int_equal(pspace_store_remove(s, "big"), 0);
	b.dims[0] = 1000;
	assert_int_equal(sref_write(s, &b), 0);
	SREF_CHECK(s, &b, 0);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

static void test_store_disk_full(void **state)
{
	sref_spec a = {"first", PSPACE_KIND_DENSE, 1, {500}, 128, 1, 50, NULL};
	sref_spec b = {"second", PSPACE_KIND_DENSE, 1, {2500}, 256, 1, 52, NULL};
	pspace_store *s;
	fx_store t;
	pid_t pid;
	int status;
	(void)state;

	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &a), 0);
	pspace_store_close(s);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;
		struct stat st;
		char data[160];
		int rc;

		snprintf(data, sizeof(data), "%s/data.mdb", t.path);
		signal(SIGXFSZ, SIG_IGN);
		if (stat(data, &st) != 0)
			_exit(10);
		rl.rlim_cur = rl.rlim_max = (rlim_t)st.st_size + (2u << 20);
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(11);
		setenv("PSPACE_TEST_TXN_BYTES", "1000000", 1);
		if (pspace_store_open(&s, t.path, NULL) != 0)
			_exit(12);
		rc = sref_write(s, &b);
		if (rc != PSPACE_EFULL) {
			fprintf(stderr, "disk full child: rc %d %s\n", rc, pspace_errdetail());
			_exit(13);
		}
		pspace_store_close(s);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	s = sref_open(t.path, 0);
	SREF_CHECK(s, &a, 0);
	{
		pspace_matrix_info info;
		pspace_reader *r = NULL;

		assert_int_equal(pspace_matrix_info_get(&info, s, "second"), 0);
		assert_int_equal(info.state, PSPACE_STATE_BUILDING);
		assert_int_equal(pspace_reader_open(&r, s, "second", 0), PSPACE_EINCOMPLETE);
		SREF_CHECK(s, &b, PSPACE_READ_INCOMPLETE);
	}
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

typedef struct reader_job {
	pspace_store *s;
	const sref_spec *m;
	int passes;
	int result;
	char why[512];
} reader_job;

static void *reader_thread(void *arg)
{
	reader_job *j = arg;

	j->result = 0;
	for (int p = 0; p < j->passes && j->result == 0; p++)
		j->result = sref_check(j->s, j->m, 0, j->why, sizeof(j->why));
	return NULL;
}

static void test_store_concurrent(void **state)
{
	sref_spec a = {"A", PSPACE_KIND_DENSE, 1, {900}, 128, 1, 70, NULL};
	sref_spec b = {"B", PSPACE_KIND_DENSE, 1, {1200}, 128, 1, 72, NULL};
	sref_spec c = {"C", PSPACE_KIND_DENSE, 1, {1100}, 128, 1, 74, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_reader *early = NULL;
	pspace_writer *w;
	pspace_store *s;
	reader_job job;
	pthread_t th;
	fx_store t;
	pid_t pid;
	int status;
	(void)state;

	setenv("PSPACE_TEST_TXN_BYTES", "300000", 1);
	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &a), 0);

	/* threads: readers of A while B is built with checkpoints */
	job = (reader_job){.s = s, .m = &a, .passes = 4};
	assert_int_equal(pthread_create(&th, NULL, reader_thread, &job), 0);
	sref_desc(&b, &d);
	assert_int_equal(pspace_writer_begin(&w, s, b.name, &d), 0);
	assert_int_equal(sref_put_tiles(w, &b, 30, NULL), 0);
	assert_int_equal(pspace_reader_open(&early, s, "B", PSPACE_READ_INCOMPLETE), 0);
	assert_int_equal(sref_put_tiles(w, &b, -1, NULL), 0);
	assert_int_equal(pspace_writer_finish(w), 0);
	assert_int_equal(pspace_reader_info(early)->state, PSPACE_STATE_BUILDING);
	pspace_reader_close(early);
	assert_int_equal(pspace_matrix_info_get(&info, s, "B"), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (job.result != 0)
		print_error("reader thread: %s\n", job.why);
	assert_int_equal(job.result, 0);
	SREF_CHECK(s, &b, 0);
	pspace_store_close(s);

	/* processes: a child reads A and B with its own handle while C is built */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_store *cs;
		char why[512];

		if (pspace_store_open(&cs, t.path, NULL) != 0)
			_exit(30);
		for (int p = 0; p < 3; p++)
			if (sref_check(cs, &a, 0, why, sizeof(why)) != 0 ||
			    sref_check(cs, &b, 0, why, sizeof(why)) != 0) {
				fprintf(stderr, "child reader: %s\n", why);
				_exit(31);
			}
		pspace_store_close(cs);
		_exit(0);
	}
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &c), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	SREF_CHECK(s, &c, 0);
	pspace_store_close(s);
	unsetenv("PSPACE_TEST_TXN_BYTES");
	fx_dir_remove(t.root);
}

static void test_store_map_growth(void **state)
{
	sref_spec m = {"grow", PSPACE_KIND_DENSE, 1, {2000}, 256, 1, 80, NULL};
	pspace_store_stat st;
	pspace_store *s;
	fx_store t;
	(void)state;

	setenv("PSPACE_TEST_INITIAL_MAP", "1048576", 1);
	setenv("PSPACE_TEST_TXN_BYTES", "262144", 1);
	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(pspace_store_stat_get(&st, s), 0);
	assert_true(st.map_bytes <= 4u << 20); /* only the headroom of the first commit */
	assert_int_equal(sref_write(s, &m), 0);
	assert_int_equal(pspace_store_stat_get(&st, s), 0);
	assert_true(st.map_bytes > (8u << 20));
	SREF_CHECK(s, &m, 0);
	pspace_store_close(s);
	unsetenv("PSPACE_TEST_INITIAL_MAP");
	unsetenv("PSPACE_TEST_TXN_BYTES");

	s = sref_open(t.path, 0);
	SREF_CHECK(s, &m, 0);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_map_full),
	    cmocka_unit_test(test_store_disk_full),
	    cmocka_unit_test(test_store_concurrent),
	    cmocka_unit_test(test_store_map_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
