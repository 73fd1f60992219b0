/*
 * Tests of the store (src/store): round trips, catalog, arrays, layouts,
 * errors, remove and compact. Damaged stores are in test_store_corrupt.c,
 * full maps and disks, concurrency and map growth in test_store_limits.c.
 *
 * Tile values come from a hash of (seed, block, row, col)
 * (tests/helpers/sref.c), so every check recomputes the expected value
 * independently of what was written.
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

static const sref_spec DENSE = {"dense", PSPACE_KIND_DENSE, 1, {1000}, 256, 1, 11, NULL};
static const sref_spec BDIAG = {"bdiag", PSPACE_KIND_BLOCKDIAG, 3, {300, 129, 57}, 128, 1, 12,
                                NULL};

static int collect(const pspace_matrix_info *info, void *ud)
{
	char *names = ud;

	strcat(names, info->name);
	strcat(names, ",");
	return 0;
}

static void test_store_roundtrip(void **state)
{
	static const char layout[] = "fc1 linear 10x10 bias\nfc2 linear 5x10 nobias\n";
	sref_spec a = DENSE, b = BDIAG;
	pspace_matrix_info ia, ib;
	pspace_store *s;
	fx_store t;
	char names[256] = "";
	char *text = NULL;
	(void)state;

	a.layout = layout;
	b.layout = layout;
	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &a), 0);
	assert_int_equal(sref_write(s, &b), 0);
	pspace_store_close(s);

	/* read-only: reads work, writes are refused */
	{
		pspace_store_opts o;
		pspace_matrix_desc d;
		pspace_writer *w = NULL;
		pspace_reader *r = NULL;
		pspace_tile_ref ref;
		int done = 0;

		pspace_store_opts_default(&o);
		o.readonly = 1;
		assert_int_equal(pspace_store_open(&s, t.path, &o), 0);
		SREF_CHECK(s, &b, 0);
		sref_desc(&a, &d);
		assert_int_equal(pspace_writer_begin(&w, s, "x", &d), PSPACE_EINVAL);
		assert_int_equal(pspace_store_remove(s, "dense"), PSPACE_EINVAL);
		/* seek lands on the first tile at or after the address */
		assert_int_equal(pspace_reader_open(&r, s, "bdiag", 0), 0);
		assert_int_equal(pspace_reader_seek(r, 0, 2, 3), 0);
		assert_int_equal(pspace_reader_next(&ref, &done, r), 0);
		assert_true(!done && ref.block == 1 && ref.row == 0 && ref.col == 0);
		assert_int_equal(pspace_reader_next(&ref, &done, r), 0);
		assert_true(!done && ref.block == 1 && ref.row == 0 && ref.col == 1);
		assert_int_equal(pspace_reader_seek(r, 2, 1, 0), 0);
		assert_int_equal(pspace_reader_next(&ref, &done, r), 0);
		assert_int_equal(done, 1);
		assert_int_equal(pspace_reader_tile(&ref, r, 0, 1, 0), PSPACE_ENOTFOUND);
		pspace_reader_close(r);
		pspace_store_close(s);
	}

	s = sref_open(t.path, 0);
	SREF_CHECK(s, &a, 0);
	SREF_CHECK(s, &b, 0);
	assert_int_equal(pspace_matrix_info_get(&ia, s, "dense"), 0);
	assert_int_equal(pspace_matrix_info_get(&ib, s, "bdiag"), 0);
	assert_int_equal(ia.state, PSPACE_STATE_COMPLETE);
	assert_true(ia.completed >= ia.created && ia.created > 0);
	assert_true(ia.id != ib.id);
	assert_true(ia.layout_id != 0);
	assert_true(ia.layout_id == ib.layout_id);
	assert_int_equal(ia.codec.dtype, PSPACE_F32);
	{
		uint64_t dims[3];

		assert_int_equal(pspace_store_blocks(s, "bdiag", dims, 3), 0);
		assert_true(dims[0] == 300 && dims[1] == 129 && dims[2] == 57);
		assert_int_equal(pspace_store_blocks(s, "bdiag", dims, 2), PSPACE_EINVAL);
	}
	assert_int_equal(pspace_store_layout(&text, s, ia.layout_id), 0);
	assert_string_equal(text, layout);
	free(text);
	assert_int_equal(pspace_store_foreach(s, collect, names), 0);
	assert_string_equal(names, "bdiag,dense,");

	/* The layout goes with its last user. */
	assert_int_equal(pspace_store_remove(s, "dense"), 0);
	assert_int_equal(pspace_store_layout(&text, s, ia.layout_id), 0);
	free(text);
	assert_int_equal(pspace_store_remove(s, "bdiag"), 0);
	assert_int_equal(pspace_store_layout(&text, s, ia.layout_id), PSPACE_ENOTFOUND);
	assert_null(text);
	{
		pspace_store_stat st;

		assert_int_equal(pspace_store_stat_get(&st, s), 0);
		assert_true(st.tile_entries == 0 && st.matrices == 0);
		assert_int_equal(st.format_version, PSPACE_FORMAT_VERSION);
		assert_true(st.file_bytes >= st.used_bytes && st.map_bytes >= st.used_bytes);
	}
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

static int count_arrays(const char *name, const pspace_array_info *info, void *ud)
{
	char *names = ud;

	(void)info;
	strcat(names, name);
	strcat(names, ",");
	return 0;
}

static void test_store_arrays(void **state)
{
	sref_spec m = {"kf", PSPACE_KIND_KFAC, 0, {0}, 0, 0, 5, NULL};
	pspace_matrix_desc d;
	pspace_writer *w;
	pspace_reader *r;
	pspace_array_info ai;
	pspace_matrix_info info;
	pspace_store *s;
	fx_store t;
	double f64[24], g64[24];
	float f32[7], g32[24];
	int64_t i64[6], gi[6];
	double scalar = 3.25, gs;
	uint64_t sh3[3] = {2, 3, 4}, sh1[1] = {7}, sh2[2] = {2, 3};
	char names[128] = "";
	(void)state;

	for (int i = 0; i < 24; i++)
		f64[i] = sref_value(7, 0, 0, (uint64_t)i, 1) * 1e3;
	for (int i = 0; i < 7; i++)
		f32[i] = sref_value(8, 0, 0, (uint64_t)i, 2);
	for (int i = 0; i < 6; i++)
		i64[i] = (int64_t)(fx_rng_u64(&(uint64_t){(uint64_t)i}) >> 20) - ((int64_t)1 << 42);

	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	sref_desc(&m, &d);
	d.d = 100;
	assert_int_equal(pspace_writer_begin(&w, s, "kf", &d), 0);
	assert_int_equal(pspace_writer_put_array(w, "scalar", PSPACE_F64, 0, NULL, &scalar), 0);
	assert_int_equal(pspace_writer_put_array(w, "vec", PSPACE_F32, 1, sh1, f32), 0);
	assert_int_equal(pspace_writer_put_array(w, "ids", PSPACE_I64, 2, sh2, i64), 0);
	assert_int_equal(pspace_writer_put_array(w, "cube", PSPACE_F64, 3, sh3, f64), 0);
	/* replaced: the statistics count it once */
	assert_int_equal(pspace_writer_put_array(w, "cube", PSPACE_F64, 3, sh3, f64), 0);
	assert_int_equal(pspace_writer_put_array(w, "bad", PSPACE_BF16, 1, sh1, f32),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F32, f32, 1), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_finish(w), 0);
	pspace_store_close(s);

	s = sref_open(t.path, 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "kf"), 0);
	assert_int_equal(info.arrays, 4);
	assert_int_equal(info.array_bytes, 4 * 48 + 8 + 7 * 4 + 6 * 8 + 24 * 8);
	assert_int_equal(info.tiles, 0);
	assert_int_equal(pspace_reader_open(&r, s, "kf", 0), 0);
	assert_int_equal(pspace_array_info_get(&ai, r, "cube"), 0);
	assert_int_equal(ai.dtype, PSPACE_F64);
	assert_int_equal(ai.ndim, 3);
	assert_true(ai.shape[0] == 2 && ai.shape[1] == 3 && ai.shape[2] == 4 && ai.count == 24);
	assert_int_equal(pspace_reader_array(r, "cube", PSPACE_F64, g64, 24), 0);
	assert_memory_equal(g64, f64, sizeof(f64));
	assert_int_equal(pspace_reader_array(r, "cube", PSPACE_F32, g32, 24), 0);
	for (int i = 0; i < 24; i++)
		assert_true(g32[i] == (float)f64[i]);
	assert_int_equal(pspace_reader_array(r, "cube", PSPACE_F64, g64, 23), PSPACE_EINVAL);
	assert_int_equal(pspace_reader_array(r, "scalar", PSPACE_F64, &gs, 1), 0);
	assert_true(gs == 3.25);
	assert_int_equal(pspace_array_info_get(&ai, r, "scalar"), 0);
	assert_true(ai.ndim == 0 && ai.count == 1);
	assert_int_equal(pspace_reader_array(r, "vec", PSPACE_F32, g32, 7), 0);
	assert_memory_equal(g32, f32, sizeof(f32));
	assert_int_equal(pspace_reader_array(r, "vec", PSPACE_F64, g64, 7), 0);
	for (int i = 0; i < 7; i++)
		assert_true(g64[i] == (double)f32[i]);
	assert_int_equal(pspace_reader_array(r, "ids", PSPACE_I64, gi, 6), 0);
	assert_memory_equal(gi, i64, sizeof(i64));
	assert_int_equal(pspace_reader_array(r, "ids", PSPACE_F64, g64, 6), 0);
	for (int i = 0; i < 6; i++)
		assert_true(g64[i] == (double)i64[i]);
	assert_int_equal(pspace_reader_array(r, "nope", PSPACE_F64, g64, 6), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "nope"));
	assert_int_equal(pspace_reader_foreach_array(r, count_arrays, names), 0);
	assert_string_equal(names, "cube,ids,scalar,vec,");
	pspace_reader_close(r);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

static void test_store_errors(void **state)
{
	sref_spec m = {"m", PSPACE_KIND_DENSE, 1, {300}, 128, 1, 3, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_writer *w = NULL;
	pspace_reader *r = NULL;
	pspace_store *s = NULL;
	pspace_store_opts o;
	float buf[128 * 128] = {0};
	fx_store t;
	(void)state;

	fx_store_dir(&t, "store");
	/* no store there, create off */
	pspace_store_opts_default(&o);
	o.create = 0;
	assert_int_equal(pspace_store_open(&s, t.path, &o), PSPACE_ENOTFOUND);
	assert_null(s);
	assert_non_null(strstr(pspace_errdetail(), t.path));

	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &m), 0);
	assert_int_equal(sref_write(s, &m), PSPACE_EEXIST);
	assert_non_null(strstr(pspace_errdetail(), "matrix m "));

	assert_int_equal(pspace_matrix_info_get(&info, s, "missing-one"), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-one"));
	assert_non_null(strstr(pspace_errdetail(), t.path));
	assert_int_equal(pspace_reader_open(&r, s, "missing-two", 0), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-two"));
	assert_null(r);
	assert_int_equal(pspace_store_remove(s, "missing-three"), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-three"));
	assert_int_equal(pspace_matrix_info_get(&info, s, ""), PSPACE_EINVAL);

	m.name = "sym/with/slashes";
	sref_desc(&m, &d);
	assert_int_equal(pspace_writer_begin(&w, s, m.name, &d), 0);
	assert_int_equal(pspace_writer_put_tile(w, 0, 1, 0, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "(0,1,0)"));
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 3, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_put_tile(w, 1, 0, 0, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F32, buf, 100), PSPACE_EINVAL);
	/* a failed argument check leaves the writer usable */
	assert_int_equal(pspace_writer_has_tile(w, 0, 0, 1), 0);
	assert_int_equal(sref_put_tiles(w, &m, -1, NULL), 0);
	assert_int_equal(pspace_writer_has_tile(w, 0, 0, 1), 1);
	/* a replaced tile is counted once */
	assert_int_equal(sref_put_tiles(w, &m, 2, NULL), 0);
	/* a write transaction is held: the same thread cannot open another */
	assert_int_equal(pspace_store_remove(s, "m"), PSPACE_EBUSY);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	/* abort without remove: stays BUILDING */
	pspace_writer_abort(w, 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, m.name), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_reader_open(&r, s, m.name, 0), PSPACE_EINCOMPLETE);
	assert_non_null(strstr(pspace_errdetail(), "incomplete"));
	assert_non_null(strstr(pspace_errdetail(), m.name));
	SREF_CHECK(s, &m, PSPACE_READ_INCOMPLETE);
	/* resume recounts and finishes */
	assert_int_equal(pspace_writer_resume(&w, s, m.name), 0);
	assert_int_equal(pspace_writer_finish(w), 0);
	SREF_CHECK(s, &m, 0);
	assert_int_equal(pspace_writer_resume(&w, s, m.name), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_resume(&w, s, "nothing"), PSPACE_ENOTFOUND);

	/* abort with remove drops everything */
	m.name = "gone";
	sref_desc(&m, &d);
	assert_int_equal(pspace_writer_begin(&w, s, m.name, &d), 0);
	assert_int_equal(sref_put_tiles(w, &m, 3, NULL), 0);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	pspace_writer_abort(w, 1);
	assert_int_equal(pspace_matrix_info_get(&info, s, "gone"), PSPACE_ENOTFOUND);

	/* bad descriptors */
	sref_desc(&m, &d);
	d.d = 301;
	assert_int_equal(pspace_writer_begin(&w, s, "bad", &d), PSPACE_EINVAL);
	sref_desc(&m, &d);
	d.codec.dtype = PSPACE_I64;
	assert_int_equal(pspace_writer_begin(&w, s, "bad", &d), PSPACE_EINVAL);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

/*
 * Tiles encoded by other threads' codecs (pspace_writer_encode_tile) and
 * stored by the writer (pspace_writer_put_encoded) read back exactly; an
 * encoded tile given at an address of another shape, or bytes that are
 * not a tile, are refused and leave the writer usable.
 */
static void test_store_put_encoded(void **state)
{
	sref_spec m = {"enc", PSPACE_KIND_DENSE, 1, {300}, 128, 1, 5, NULL};
	static double src[128 * 128], back[128 * 128];
	pspace_codec *c = NULL;
	pspace_matrix_desc d;
	pspace_writer *w = NULL;
	pspace_reader *r = NULL;
	pspace_tile_ref ref;
	pspace_store *s;
	const void *enc;
	size_t len;
	uint64_t rng = 99;
	fx_store t;

	(void)state;
	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	sref_desc(&m, &d);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_writer_begin(&w, s, m.name, &d), 0);
	for (uint32_t tr = 0; tr < 3; tr++)
		for (uint32_t tc = tr; tc < 3; tc++) {
			for (size_t i = 0; i < 128 * 128; i++)
				src[i] = (float)fx_rng_unif(&rng) + tr + 10 * tc; /* exact in f32 */
			assert_int_equal(pspace_writer_encode_tile(&enc, &len, w, c, 0, tr, tc,
			                                           PSPACE_F64, src, 128),
			                 0);
			if (tr == 0 && tc == 0) {
				/* a 128 x 128 tile where the 128 x 44 one goes */
				assert_int_equal(pspace_writer_put_encoded(w, 0, 0, 2, enc, len),
				                 PSPACE_EINVAL);
				assert_non_null(strstr(pspace_errdetail(), "(0,0,2)"));
				assert_int_equal(pspace_writer_put_encoded(w, 0, 0, 0, src, 64),
				                 PSPACE_EINVAL);
			}
			assert_int_equal(pspace_writer_put_encoded(w, 0, tr, tc, enc, len), 0);
		}
	assert_int_equal(pspace_writer_encode_tile(&enc, &len, w, c, 0, 2, 1, PSPACE_F64, src, 128),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_writer_finish(w), 0);
	assert_int_equal(pspace_reader_open(&r, s, m.name, 0), 0);
	rng = 99;
	for (uint32_t tr = 0; tr < 3; tr++)
		for (uint32_t tc = tr; tc < 3; tc++) {
			uint32_t cols = tc == 2 ? 44 : 128, rows = tr == 2 ? 44 : 128;

			for (size_t i = 0; i < 128 * 128; i++)
				src[i] = (float)fx_rng_unif(&rng) + tr + 10 * tc;
			assert_int_equal(pspace_reader_tile(&ref, r, 0, tr, tc), 0);
			assert_int_equal(pspace_reader_decode(r, c, &ref, PSPACE_F64, back, cols),
			                 0);
			for (uint32_t i = 0; i < rows; i++)
				for (uint32_t j = 0; j < cols; j++)
					assert_true(back[i * cols + j] == src[i * 128 + j]);
		}
	pspace_reader_close(r);
	pspace_codec_free(c);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

static void test_store_remove_compact(void **state)
{
	sref_spec a = {"A", PSPACE_KIND_DENSE, 1, {800}, 128, 1, 90, NULL};
	sref_spec b = {"B", PSPACE_KIND_BLOCKDIAG, 2, {300, 200}, 64, 0, 91, NULL};
	pspace_store_stat st, st2;
	pspace_store *s, *s2;
	char out[160];
	fx_store t;
	(void)state;

	fx_store_dir(&t, "store");
	s = sref_open(t.path, 0);
	assert_int_equal(sref_write(s, &a), 0);
	assert_int_equal(sref_write(s, &b), 0);
	assert_int_equal(pspace_store_remove(s, "A"), 0);
	a.seed = 93;
	a.dims[0] = 500;
	assert_int_equal(sref_write(s, &a), 0);
	SREF_CHECK(s, &a, 0);
	SREF_CHECK(s, &b, 0);
	assert_int_equal(pspace_store_remove(s, "A"), 0);

	snprintf(out, sizeof(out), "%s/compact", t.root);
	assert_int_equal(pspace_store_compact(s, out), 0);
	assert_int_equal(pspace_store_compact(s, out), PSPACE_EEXIST);
	assert_int_equal(pspace_store_stat_get(&st, s), 0);
	s2 = sref_open(out, 0);
	SREF_CHECK(s2, &b, 0);
	assert_int_equal(pspace_store_stat_get(&st2, s2), 0);
	assert_true(st2.file_bytes < st.file_bytes);
	assert_int_equal(st2.matrices, 1);
	assert_int_equal(st2.tile_entries, st.tile_entries);
	pspace_store_close(s2);
	pspace_store_close(s);
	fx_dir_remove(t.root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_roundtrip),      cmocka_unit_test(test_store_arrays),
	    cmocka_unit_test(test_store_errors),         cmocka_unit_test(test_store_put_encoded),
	    cmocka_unit_test(test_store_remove_compact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
