/*
 * Tests of the store against damage (src/store): a corrupted tile, a
 * truncated file, a foreign format version, and a build killed with
 * SIGKILL. Tile values come from tests/helpers/sref.c.
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

static void test_store_corrupt_tile(void **state)
{
	sref_spec a = {"A", PSPACE_KIND_DENSE, 1, {300}, 128, 1, 20, NULL};
	sref_spec b = {"B", PSPACE_KIND_DENSE, 1, {200}, 64, 1, 21, NULL};
	uint8_t needle[256];
	pspace_reader *r;
	pspace_codec *c;
	pspace_tile_ref t;
	pspace_store *s;
	char data[160];
	float buf[128 * 128];
	fx_store tmp;
	(void)state;

	fx_store_dir(&tmp, "store");
	s = sref_open(tmp.path, 0);
	assert_int_equal(sref_write(s, &a), 0);
	assert_int_equal(sref_write(s, &b), 0);
	assert_int_equal(pspace_reader_open(&r, s, "A", 0), 0);
	assert_int_equal(pspace_reader_tile(&t, r, 0, 0, 1), 0);
	assert_true(t.len > PSPACE_TILE_HEADER_SIZE + 1000);
	memcpy(needle, (const uint8_t *)t.data + PSPACE_TILE_HEADER_SIZE + 512, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(s);

	snprintf(data, sizeof(data), "%s/data.mdb", tmp.path);
	assert_int_equal(fx_flip_in_file(data, needle, sizeof(needle)), 1);

	s = sref_open(tmp.path, 0);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_open(&r, s, "A", 0), 0);
	assert_int_equal(pspace_reader_tile(&t, r, 0, 0, 1), 0);
	assert_int_equal(pspace_reader_decode(r, c, &t, PSPACE_F32, buf, 128), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "matrix A"));
	assert_non_null(strstr(pspace_errdetail(), "(0,0,1)"));
	assert_non_null(strstr(pspace_errdetail(), tmp.path));
	{
		const void *p;

		assert_int_equal(pspace_reader_view(r, c, &t, PSPACE_F32, &p, NULL),
		                 PSPACE_ECORRUPT);
	}
	/* the other tiles of A and all of B are fine */
	assert_int_equal(pspace_reader_tile(&t, r, 0, 0, 0), 0);
	assert_int_equal(pspace_reader_decode(r, c, &t, PSPACE_F32, buf, 128), 0);
	pspace_reader_close(r);
	pspace_codec_free(c);
	SREF_CHECK(s, &b, 0);
	pspace_store_close(s);
	fx_dir_remove(tmp.root);
}

static void test_store_truncated(void **state)
{
	sref_spec a = {"A", PSPACE_KIND_DENSE, 1, {700}, 128, 1, 30, NULL};
	pspace_store *s = NULL;
	char data[160], lock[160];
	struct stat st;
	off_t sizes[4];
	fx_store t;
	(void)state;

	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &a), 0);
	pspace_store_close(s);
	snprintf(data, sizeof(data), "%s/data.mdb", t.path);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", t.path);
	assert_int_equal(stat(data, &st), 0);
	assert_true(st.st_size > 1 << 20);
	sizes[0] = st.st_size / 2;
	sizes[1] = st.st_size - 4096;
	sizes[2] = 100;
	sizes[3] = 0;
	/* shrinking only: each size is below the one before */
	for (int i = 0; i < 4; i++) {
		int rc;

		if (i == 1)
			continue; /* larger than the half: covered by the half */
		assert_int_equal(truncate(data, sizes[i]), 0);
		unlink(lock);
		s = NULL;
		rc = pspace_store_open(&s, t.path, NULL);
		if (rc != PSPACE_ECORRUPT)
			print_error("size %lld: rc %d %s\n", (long long)sizes[i], rc,
			            pspace_errdetail());
		assert_int_equal(rc, PSPACE_ECORRUPT);
		assert_null(s);
		assert_non_null(strstr(pspace_errdetail(), "data.mdb"));
	}
	fx_dir_remove(t.root);
}

static void raw_meta_put(const char *path, const char *key, const void *val, size_t len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, path, 0, 0664), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	if (strcmp(key, "--plain") == 0) {
		assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
		k.mv_size = 5;
	} else {
		assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	}
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void test_store_version(void **state)
{
	uint8_t v99[4] = {99, 0, 0, 0};
	pspace_store *s = NULL;
	fx_store t;
	char other[160];
	(void)state;

	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	pspace_store_close(s);
	raw_meta_put(t.path, "format", v99, 4);
	s = NULL;
	assert_int_equal(pspace_store_open(&s, t.path, NULL), PSPACE_EVERSION);
	assert_null(s);
	assert_non_null(strstr(pspace_errdetail(), "99"));
	assert_non_null(strstr(pspace_errdetail(), t.path));

	raw_meta_put(t.path, "magic", "not-pspace", 11);
	assert_int_equal(pspace_store_open(&s, t.path, NULL), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "not a pspace store"));

	/* a plain LMDB environment is not a store either */
	snprintf(other, sizeof(other), "%s/plain", t.root);
	assert_int_equal(mkdir(other, 0777), 0);
	raw_meta_put(other, "--plain", "x", 1);
	assert_int_equal(pspace_store_open(&s, other, NULL), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "not a pspace store"));
	fx_dir_remove(t.root);
}

static void test_store_kill(void **state)
{
	sref_spec a = {"A", PSPACE_KIND_DENSE, 1, {600}, 128, 1, 60, NULL};
	sref_spec b = {"B", PSPACE_KIND_BLOCKDIAG, 2, {1500, 700}, 128, 1, 62, NULL};
	pspace_matrix_info info;
	pspace_reader *r = NULL;
	pspace_writer *w = NULL;
	pspace_store *s;
	int fds[2];
	fx_store t;
	pid_t pid;
	char c;
	int status;
	(void)state;

	fx_store_dir(&t, "store");
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_matrix_desc d;

		close(fds[0]);
		setenv("PSPACE_TEST_TXN_BYTES", "300000", 1);
		if (pspace_store_open(&s, t.path, NULL) != 0 || sref_write(s, &a) != 0)
			_exit(20);
		sref_desc(&b, &d);
		if (pspace_writer_begin(&w, s, b.name, &d) != 0)
			_exit(21);
		/* about 5 checkpoints (raw 64 KiB tiles), then tell the parent */
		if (sref_put_tiles(w, &b, 25, NULL) != 0)
			_exit(22);
		if (write(fds[1], "x", 1) != 1)
			_exit(23);
		for (;;)
			if (sref_put_tiles(w, &b, -1, NULL) != 0)
				_exit(24);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	usleep(20000);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);

	s = sref_open(t.path, 0);
	SREF_CHECK(s, &a, 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "B"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_true(info.tiles >= 20);
	assert_int_equal(pspace_reader_open(&r, s, "B", 0), PSPACE_EINCOMPLETE);
	SREF_CHECK(s, &b, PSPACE_READ_INCOMPLETE);

	assert_int_equal(pspace_writer_resume(&w, s, "B"), 0);
	{
		float *buf = malloc(128 * 128 * sizeof(float));
		long missing = 0;

		for (uint32_t bl = 0; bl < b.nblocks; bl++)
			for (uint32_t i = 0; i < sref_ntiles(&b, bl); i++)
				for (uint32_t j = i; j < sref_ntiles(&b, bl); j++) {
					int has = pspace_writer_has_tile(w, bl, i, j);

					assert_true(has == 0 || has == 1);
					if (has)
						continue;
					missing++;
					sref_fill(&b, bl, i, j, buf, 128);
					assert_int_equal(pspace_writer_put_tile(
					                     w, bl, i, j, PSPACE_F32, buf, 128),
					                 0);
				}
		free(buf);
		(void)missing;
	}
	assert_int_equal(pspace_writer_finish(w), 0);
	SREF_CHECK(s, &b, 0);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_corrupt_tile),
	    cmocka_unit_test(test_store_truncated),
	    cmocka_unit_test(test_store_version),
	    cmocka_unit_test(test_store_kill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
