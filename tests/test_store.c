/*
 * Tests of the store (src/store): round trips, catalog, arrays, layouts,
 * errors, corruption, truncation, version, full map and disk, kill during a
 * build, concurrent readers, map growth, remove and compact.
 *
 * Tile values come from a hash of (seed, block, row, col), so every check
 * recomputes the expected value independently of what was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#include "pspace/codec.h"
#include "pspace/store.h"

/* ---- temporary directories ---------------------------------------------- */

typedef struct tmpdir {
	char root[64];  /* mkdtemp directory */
	char path[128]; /* the store: root/s */
} tmpdir;

static void tmp_make(tmpdir *t)
{
	snprintf(t->root, sizeof(t->root), "/tmp/pspace-test-store-XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->path, sizeof(t->path), "%s/s", t->root);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void tmp_remove(tmpdir *t)
{
	nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- deterministic data --------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Element (i, j) of block b; odd seeds give compressible values. */
static float value(uint64_t seed, int sym, uint32_t b, uint64_t i, uint64_t j)
{
	uint64_t h;

	if (sym && i > j) {
		uint64_t t = i;

		i = j;
		j = t;
	}
	h = mix(seed ^ mix((uint64_t)b << 40 ^ mix(i * 1000003ull ^ j)));
	if (seed & 1)
		return (float)(h % 16) * 0.25f;
	return (float)((double)(int64_t)(h >> 11) / 9007199254740992.0 - 0.5);
}

typedef struct mspec {
	const char *name;
	pspace_kind kind;
	uint32_t nblocks;
	uint64_t dims[4];
	uint32_t tile;
	int sym;
	uint64_t seed;
	const char *layout;
} mspec;

static uint64_t spec_d(const mspec *m)
{
	uint64_t d = 0;

	for (uint32_t b = 0; b < m->nblocks; b++)
		d += m->dims[b];
	return d;
}

static uint32_t ntiles(const mspec *m, uint32_t b)
{
	return (uint32_t)((m->dims[b] + m->tile - 1) / m->tile);
}

static uint32_t edge(const mspec *m, uint32_t b, uint32_t idx)
{
	uint64_t left = m->dims[b] - (uint64_t)idx * m->tile;

	return (uint32_t)(left < m->tile ? left : m->tile);
}

static void fill(const mspec *m, uint32_t b, uint32_t r, uint32_t c, float *buf, size_t ld)
{
	uint32_t rows = edge(m, b, r), cols = edge(m, b, c);

	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++)
			buf[i * ld + j] = value(m->seed, m->sym, b, (uint64_t)r * m->tile + i,
			                        (uint64_t)c * m->tile + j);
}

/* Expected statistics, counted from the spec. */
static void expect_stats(const mspec *m, uint64_t *tiles, uint64_t *logical)
{
	*tiles = *logical = 0;
	for (uint32_t b = 0; b < m->nblocks; b++)
		for (uint32_t r = 0; r < ntiles(m, b); r++)
			for (uint32_t c = m->sym ? r : 0; c < ntiles(m, b); c++) {
				++*tiles;
				*logical += (uint64_t)edge(m, b, r) * edge(m, b, c) * 4;
			}
}

static void desc_of(const mspec *m, pspace_matrix_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->kind = m->kind;
	d->d = spec_d(m);
	d->nblocks = m->nblocks;
	d->block_dims = m->dims;
	d->tile = m->tile;
	d->symmetric = m->sym;
	pspace_codec_opts_default(&d->codec);
	d->codec.dtype = PSPACE_F32;
	d->layout_text = m->layout;
}

/* Puts tiles of @p m (all if limit < 0) in streaming order; @return first error. */
static int put_tiles(pspace_writer *w, const mspec *m, long limit, long *done)
{
	float *buf = malloc((size_t)m->tile * m->tile * sizeof(float));
	long n = 0;
	int rc = 0;

	if (!buf)
		return PSPACE_ENOMEM;
	for (uint32_t b = 0; b < m->nblocks && rc == 0; b++)
		for (uint32_t r = 0; r < ntiles(m, b) && rc == 0; r++)
			for (uint32_t c = m->sym ? r : 0; c < ntiles(m, b) && rc == 0; c++) {
				if (limit >= 0 && n >= limit)
					goto out;
				fill(m, b, r, c, buf, m->tile);
				rc = pspace_writer_put_tile(w, b, r, c, PSPACE_F32, buf, m->tile);
				if (rc == 0)
					n++;
			}
out:
	if (done)
		*done = n;
	free(buf);
	return rc;
}

static int write_matrix(pspace_store *s, const mspec *m)
{
	pspace_matrix_desc d;
	pspace_writer *w = NULL;
	int rc;

	desc_of(m, &d);
	rc = pspace_writer_begin(&w, s, m->name, &d);
	if (rc != 0)
		return rc;
	rc = put_tiles(w, m, -1, NULL);
	if (rc != 0) {
		pspace_writer_abort(w, 0);
		return rc;
	}
	return pspace_writer_finish(w);
}

/*
 * Reads matrix @p m back through reader_next and reader_tile and compares
 * every element exactly. @return 0, or -1 with a message in @p why.
 */
static int check_matrix(pspace_store *s, const mspec *m, int flags, char *why, size_t whylen)
{
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	const pspace_matrix_info *in;
	float *got = NULL, *want = NULL;
	uint64_t tiles, logical, count = 0, bytes = 0, lb = 0;
	long last = -1;
	int rc, done = 0, ret = -1;

	expect_stats(m, &tiles, &logical);
	rc = pspace_reader_open(&r, s, m->name, flags);
	if (rc != 0) {
		snprintf(why, whylen, "reader_open %s: %d %s", m->name, rc, pspace_errdetail());
		return -1;
	}
	in = pspace_reader_info(r);
	got = malloc((size_t)m->tile * m->tile * sizeof(float));
	want = malloc((size_t)m->tile * m->tile * sizeof(float));
	if (!got || !want || pspace_codec_create(&c) != 0)
		goto out;
	if (in->nblocks != m->nblocks || in->tile != m->tile || in->d != spec_d(m) ||
	    in->kind != m->kind || in->symmetric != m->sym) {
		snprintf(why, whylen, "%s: info does not match the spec", m->name);
		goto out;
	}
	for (uint32_t b = 0; b < m->nblocks; b++)
		if (pspace_reader_block_dim(r, b) != m->dims[b]) {
			snprintf(why, whylen, "%s: block %u dim", m->name, b);
			goto out;
		}
	for (;;) {
		pspace_tile_ref t, t2;
		long key;
		uint32_t rows, cols;

		rc = pspace_reader_next(r, &t, &done);
		if (rc != 0) {
			snprintf(why, whylen, "next: %s", pspace_errdetail());
			goto out;
		}
		if (done)
			break;
		key = ((long)t.block << 40) | ((long)t.row << 20) | t.col;
		if (key <= last || (m->sym && t.row > t.col) || t.block >= m->nblocks) {
			snprintf(why, whylen, "%s: tile (%u,%u,%u) out of order or below diagonal",
			         m->name, t.block, t.row, t.col);
			goto out;
		}
		last = key;
		rows = edge(m, t.block, t.row);
		cols = edge(m, t.block, t.col);
		rc = pspace_reader_decode(r, c, &t, PSPACE_F32, got, cols);
		if (rc != 0) {
			snprintf(why, whylen, "decode: %s", pspace_errdetail());
			goto out;
		}
		fill(m, t.block, t.row, t.col, want, cols);
		if (memcmp(got, want, (size_t)rows * cols * sizeof(float)) != 0) {
			snprintf(why, whylen, "%s: tile (%u,%u,%u) differs", m->name, t.block,
			         t.row, t.col);
			goto out;
		}
		rc = pspace_reader_tile(r, t.block, t.row, t.col, &t2);
		if (rc != 0 || t2.data != t.data || t2.len != t.len) {
			snprintf(why, whylen, "reader_tile (%u,%u,%u) disagrees with next", t.block,
			         t.row, t.col);
			goto out;
		}
		count++;
		bytes += t.len;
		lb += (uint64_t)rows * cols * 4;
	}
	if (!(flags & PSPACE_READ_INCOMPLETE) &&
	    (count != tiles || in->tiles != tiles || in->logical_bytes != logical ||
	     lb != logical || in->tile_bytes != bytes)) {
		snprintf(why, whylen,
		         "%s: %llu tiles read, %llu recorded, %llu expected; logical %llu/%llu",
		         m->name, (unsigned long long)count, (unsigned long long)in->tiles,
		         (unsigned long long)tiles, (unsigned long long)in->logical_bytes,
		         (unsigned long long)logical);
		goto out;
	}
	ret = 0;
out:
	pspace_codec_free(c);
	free(got);
	free(want);
	pspace_reader_close(r);
	return ret;
}

#define CHECK_MATRIX(s, m, flags)                                                                  \
	do {                                                                                       \
		char why_[512] = "";                                                               \
		int rc_ = check_matrix((s), (m), (flags), why_, sizeof(why_));                     \
		if (rc_ != 0)                                                                      \
			print_error("%s\n", why_);                                                 \
		assert_int_equal(rc_, 0);                                                          \
	} while (0)

static pspace_store *open_store(const char *path, size_t map_max)
{
	pspace_store_opts o;
	pspace_store *s = NULL;
	int rc;

	pspace_store_opts_default(&o);
	o.nosync = 1;
	o.map_max = map_max;
	rc = pspace_store_open(&s, path, &o);
	if (rc != 0)
		print_error("open %s: %s\n", path, pspace_errdetail());
	assert_int_equal(rc, 0);
	return s;
}

static const mspec DENSE = {"dense", PSPACE_KIND_DENSE, 1, {1000}, 256, 1, 11, NULL};
static const mspec BDIAG = {"bdiag", PSPACE_KIND_BLOCKDIAG, 3, {300, 129, 57}, 128, 1, 12, NULL};

/* ---- round trip ----------------------------------------------------------- */

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
	mspec a = DENSE, b = BDIAG;
	pspace_matrix_info ia, ib;
	pspace_store *s;
	tmpdir t;
	char names[256] = "";
	char *text = NULL;
	(void)state;

	a.layout = layout;
	b.layout = layout;
	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);
	assert_int_equal(write_matrix(s, &b), 0);
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
		CHECK_MATRIX(s, &b, 0);
		desc_of(&a, &d);
		assert_int_equal(pspace_writer_begin(&w, s, "x", &d), PSPACE_EINVAL);
		assert_int_equal(pspace_store_remove(s, "dense"), PSPACE_EINVAL);
		/* seek lands on the first tile at or after the address */
		assert_int_equal(pspace_reader_open(&r, s, "bdiag", 0), 0);
		assert_int_equal(pspace_reader_seek(r, 0, 2, 3), 0);
		assert_int_equal(pspace_reader_next(r, &ref, &done), 0);
		assert_true(!done && ref.block == 1 && ref.row == 0 && ref.col == 0);
		assert_int_equal(pspace_reader_next(r, &ref, &done), 0);
		assert_true(!done && ref.block == 1 && ref.row == 0 && ref.col == 1);
		assert_int_equal(pspace_reader_seek(r, 2, 1, 0), 0);
		assert_int_equal(pspace_reader_next(r, &ref, &done), 0);
		assert_int_equal(done, 1);
		assert_int_equal(pspace_reader_tile(r, 0, 1, 0, &ref), PSPACE_ENOTFOUND);
		pspace_reader_close(r);
		pspace_store_close(s);
	}

	s = open_store(t.path, 0);
	CHECK_MATRIX(s, &a, 0);
	CHECK_MATRIX(s, &b, 0);
	assert_int_equal(pspace_store_info(s, "dense", &ia), 0);
	assert_int_equal(pspace_store_info(s, "bdiag", &ib), 0);
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
	assert_int_equal(pspace_store_layout(s, ia.layout_id, &text), 0);
	assert_string_equal(text, layout);
	free(text);
	assert_int_equal(pspace_store_foreach(s, collect, names), 0);
	assert_string_equal(names, "bdiag,dense,");

	/* The layout goes with its last user. */
	assert_int_equal(pspace_store_remove(s, "dense"), 0);
	assert_int_equal(pspace_store_layout(s, ia.layout_id, &text), 0);
	free(text);
	assert_int_equal(pspace_store_remove(s, "bdiag"), 0);
	assert_int_equal(pspace_store_layout(s, ia.layout_id, &text), PSPACE_ENOTFOUND);
	assert_null(text);
	{
		pspace_store_stat st;

		assert_int_equal(pspace_store_stat_get(s, &st), 0);
		assert_true(st.tile_entries == 0 && st.matrices == 0);
		assert_int_equal(st.format_version, PSPACE_FORMAT_VERSION);
		assert_true(st.file_bytes >= st.used_bytes && st.map_bytes >= st.used_bytes);
	}
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- arrays --------------------------------------------------------------- */

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
	mspec m = {"kf", PSPACE_KIND_KFAC, 0, {0}, 0, 0, 5, NULL};
	pspace_matrix_desc d;
	pspace_writer *w;
	pspace_reader *r;
	pspace_array_info ai;
	pspace_matrix_info info;
	pspace_store *s;
	tmpdir t;
	double f64[24], g64[24];
	float f32[7], g32[24];
	int64_t i64[6], gi[6];
	double scalar = 3.25, gs;
	uint64_t sh3[3] = {2, 3, 4}, sh1[1] = {7}, sh2[2] = {2, 3};
	char names[128] = "";
	(void)state;

	for (int i = 0; i < 24; i++)
		f64[i] = value(7, 0, 0, (uint64_t)i, 1) * 1e3;
	for (int i = 0; i < 7; i++)
		f32[i] = value(8, 0, 0, (uint64_t)i, 2);
	for (int i = 0; i < 6; i++)
		i64[i] = (int64_t)(mix((uint64_t)i) >> 20) - ((int64_t)1 << 42);

	tmp_make(&t);
	s = open_store(t.path, 0);
	desc_of(&m, &d);
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

	s = open_store(t.path, 0);
	assert_int_equal(pspace_store_info(s, "kf", &info), 0);
	assert_int_equal(info.arrays, 4);
	assert_int_equal(info.array_bytes, 4 * 48 + 8 + 7 * 4 + 6 * 8 + 24 * 8);
	assert_int_equal(info.tiles, 0);
	assert_int_equal(pspace_reader_open(&r, s, "kf", 0), 0);
	assert_int_equal(pspace_reader_array_info(r, "cube", &ai), 0);
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
	assert_int_equal(pspace_reader_array_info(r, "scalar", &ai), 0);
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
	tmp_remove(&t);
}

/* ---- argument errors ------------------------------------------------------ */

static void test_store_errors(void **state)
{
	mspec m = {"m", PSPACE_KIND_DENSE, 1, {300}, 128, 1, 3, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_writer *w = NULL;
	pspace_reader *r = NULL;
	pspace_store *s = NULL;
	pspace_store_opts o;
	float buf[128 * 128] = {0};
	tmpdir t;
	(void)state;

	tmp_make(&t);
	/* no store there, create off */
	pspace_store_opts_default(&o);
	o.create = 0;
	assert_int_equal(pspace_store_open(&s, t.path, &o), PSPACE_ENOTFOUND);
	assert_null(s);
	assert_non_null(strstr(pspace_errdetail(), t.path));

	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &m), 0);
	assert_int_equal(write_matrix(s, &m), PSPACE_EEXIST);
	assert_non_null(strstr(pspace_errdetail(), "matrix m "));

	assert_int_equal(pspace_store_info(s, "missing-one", &info), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-one"));
	assert_non_null(strstr(pspace_errdetail(), t.path));
	assert_int_equal(pspace_reader_open(&r, s, "missing-two", 0), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-two"));
	assert_null(r);
	assert_int_equal(pspace_store_remove(s, "missing-three"), PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "missing-three"));
	assert_int_equal(pspace_store_info(s, "", &info), PSPACE_EINVAL);

	m.name = "sym/with/slashes";
	desc_of(&m, &d);
	assert_int_equal(pspace_writer_begin(&w, s, m.name, &d), 0);
	assert_int_equal(pspace_writer_put_tile(w, 0, 1, 0, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "(0,1,0)"));
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 3, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_put_tile(w, 1, 0, 0, PSPACE_F32, buf, 128), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F32, buf, 100), PSPACE_EINVAL);
	/* a failed argument check leaves the writer usable */
	assert_int_equal(pspace_writer_has_tile(w, 0, 0, 1), 0);
	assert_int_equal(put_tiles(w, &m, -1, NULL), 0);
	assert_int_equal(pspace_writer_has_tile(w, 0, 0, 1), 1);
	/* a replaced tile is counted once */
	assert_int_equal(put_tiles(w, &m, 2, NULL), 0);
	/* a write transaction is held: the same thread cannot open another */
	assert_int_equal(pspace_store_remove(s, "m"), PSPACE_EBUSY);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	/* abort without remove: stays BUILDING */
	pspace_writer_abort(w, 0);
	assert_int_equal(pspace_store_info(s, m.name, &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_reader_open(&r, s, m.name, 0), PSPACE_EINCOMPLETE);
	assert_non_null(strstr(pspace_errdetail(), "incomplete"));
	assert_non_null(strstr(pspace_errdetail(), m.name));
	CHECK_MATRIX(s, &m, PSPACE_READ_INCOMPLETE);
	/* resume recounts and finishes */
	assert_int_equal(pspace_writer_resume(&w, s, m.name), 0);
	assert_int_equal(pspace_writer_finish(w), 0);
	CHECK_MATRIX(s, &m, 0);
	assert_int_equal(pspace_writer_resume(&w, s, m.name), PSPACE_EINVAL);
	assert_int_equal(pspace_writer_resume(&w, s, "nothing"), PSPACE_ENOTFOUND);

	/* abort with remove drops everything */
	m.name = "gone";
	desc_of(&m, &d);
	assert_int_equal(pspace_writer_begin(&w, s, m.name, &d), 0);
	assert_int_equal(put_tiles(w, &m, 3, NULL), 0);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	pspace_writer_abort(w, 1);
	assert_int_equal(pspace_store_info(s, "gone", &info), PSPACE_ENOTFOUND);

	/* bad descriptors */
	desc_of(&m, &d);
	d.d = 301;
	assert_int_equal(pspace_writer_begin(&w, s, "bad", &d), PSPACE_EINVAL);
	desc_of(&m, &d);
	d.codec.dtype = PSPACE_I64;
	assert_int_equal(pspace_writer_begin(&w, s, "bad", &d), PSPACE_EINVAL);
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- corruption ----------------------------------------------------------- */

static void flip_in_file(const char *file, const void *needle, size_t n)
{
	struct stat st;
	uint8_t *map, *hit, *again;
	int fd = open(file, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	hit = memmem(map, (size_t)st.st_size, needle, n);
	assert_non_null(hit);
	again = memmem(hit + 1, (size_t)st.st_size - (size_t)(hit + 1 - map), needle, n);
	assert_null(again);
	hit[n / 2] ^= 0x40;
	munmap(map, (size_t)st.st_size);
	close(fd);
}

static void test_store_corrupt_tile(void **state)
{
	mspec a = {"A", PSPACE_KIND_DENSE, 1, {300}, 128, 1, 20, NULL};
	mspec b = {"B", PSPACE_KIND_DENSE, 1, {200}, 64, 1, 21, NULL};
	uint8_t needle[256];
	pspace_reader *r;
	pspace_codec *c;
	pspace_tile_ref t;
	pspace_store *s;
	char data[160];
	float buf[128 * 128];
	tmpdir tmp;
	(void)state;

	tmp_make(&tmp);
	s = open_store(tmp.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);
	assert_int_equal(write_matrix(s, &b), 0);
	assert_int_equal(pspace_reader_open(&r, s, "A", 0), 0);
	assert_int_equal(pspace_reader_tile(r, 0, 0, 1, &t), 0);
	assert_true(t.len > PSPACE_TILE_HEADER_SIZE + 1000);
	memcpy(needle, (const uint8_t *)t.data + PSPACE_TILE_HEADER_SIZE + 512, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(s);

	snprintf(data, sizeof(data), "%s/data.mdb", tmp.path);
	flip_in_file(data, needle, sizeof(needle));

	s = open_store(tmp.path, 0);
	assert_int_equal(pspace_codec_create(&c), 0);
	assert_int_equal(pspace_reader_open(&r, s, "A", 0), 0);
	assert_int_equal(pspace_reader_tile(r, 0, 0, 1, &t), 0);
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
	assert_int_equal(pspace_reader_tile(r, 0, 0, 0, &t), 0);
	assert_int_equal(pspace_reader_decode(r, c, &t, PSPACE_F32, buf, 128), 0);
	pspace_reader_close(r);
	pspace_codec_free(c);
	CHECK_MATRIX(s, &b, 0);
	pspace_store_close(s);
	tmp_remove(&tmp);
}

/* ---- truncation ----------------------------------------------------------- */

static void test_store_truncated(void **state)
{
	mspec a = {"A", PSPACE_KIND_DENSE, 1, {700}, 128, 1, 30, NULL};
	pspace_store *s = NULL;
	char data[160], lock[160];
	struct stat st;
	off_t sizes[4];
	tmpdir t;
	(void)state;

	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);
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
	tmp_remove(&t);
}

/* ---- format version and magic --------------------------------------------- */

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
	tmpdir t;
	char other[160];
	(void)state;

	tmp_make(&t);
	s = open_store(t.path, 0);
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
	tmp_remove(&t);
}

/* ---- full map ------------------------------------------------------------- */

static void test_store_map_full(void **state)
{
	mspec a = {"small", PSPACE_KIND_DENSE, 1, {400}, 128, 1, 40, NULL};
	mspec b = {"big", PSPACE_KIND_DENSE, 1, {3000}, 256, 1, 42, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_writer *w;
	pspace_reader *r = NULL;
	pspace_store *s;
	float buf[256];
	tmpdir t;
	int rc;
	(void)state;

	tmp_make(&t);
	s = open_store(t.path, (size_t)8 << 20);
	assert_int_equal(write_matrix(s, &a), 0);
	desc_of(&b, &d);
	assert_int_equal(pspace_writer_begin(&w, s, b.name, &d), 0);
	rc = put_tiles(w, &b, -1, NULL);
	assert_int_equal(rc, PSPACE_EFULL);
	assert_non_null(strstr(pspace_errdetail(), t.path));
	/* the writer stays failed */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F32, buf, 256), PSPACE_EFULL);
	assert_int_equal(pspace_writer_finish(w), PSPACE_EFULL);
	/* what was committed before still reads */
	CHECK_MATRIX(s, &a, 0);
	pspace_store_close(s);

	s = open_store(t.path, 0);
	CHECK_MATRIX(s, &a, 0);
	assert_int_equal(pspace_store_info(s, "big", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_reader_open(&r, s, "big", 0), PSPACE_EINCOMPLETE);
	/* and with room again the build can be redone */
	assert_int_equal(pspace_store_remove(s, "big"), 0);
	b.dims[0] = 1000;
	assert_int_equal(write_matrix(s, &b), 0);
	CHECK_MATRIX(s, &b, 0);
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- full disk ------------------------------------------------------------ */

static void test_store_disk_full(void **state)
{
	mspec a = {"first", PSPACE_KIND_DENSE, 1, {500}, 128, 1, 50, NULL};
	mspec b = {"second", PSPACE_KIND_DENSE, 1, {2500}, 256, 1, 52, NULL};
	pspace_store *s;
	tmpdir t;
	pid_t pid;
	int status;
	(void)state;

	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);
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
		rc = write_matrix(s, &b);
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

	s = open_store(t.path, 0);
	CHECK_MATRIX(s, &a, 0);
	{
		pspace_matrix_info info;
		pspace_reader *r = NULL;

		assert_int_equal(pspace_store_info(s, "second", &info), 0);
		assert_int_equal(info.state, PSPACE_STATE_BUILDING);
		assert_int_equal(pspace_reader_open(&r, s, "second", 0), PSPACE_EINCOMPLETE);
		CHECK_MATRIX(s, &b, PSPACE_READ_INCOMPLETE);
	}
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- SIGKILL during a build ----------------------------------------------- */

static void test_store_kill(void **state)
{
	mspec a = {"A", PSPACE_KIND_DENSE, 1, {600}, 128, 1, 60, NULL};
	mspec b = {"B", PSPACE_KIND_BLOCKDIAG, 2, {1500, 700}, 128, 1, 62, NULL};
	pspace_matrix_info info;
	pspace_reader *r = NULL;
	pspace_writer *w = NULL;
	pspace_store *s;
	int fds[2];
	tmpdir t;
	pid_t pid;
	char c;
	int status;
	(void)state;

	tmp_make(&t);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_matrix_desc d;

		close(fds[0]);
		setenv("PSPACE_TEST_TXN_BYTES", "300000", 1);
		if (pspace_store_open(&s, t.path, NULL) != 0 || write_matrix(s, &a) != 0)
			_exit(20);
		desc_of(&b, &d);
		if (pspace_writer_begin(&w, s, b.name, &d) != 0)
			_exit(21);
		/* about 5 checkpoints (raw 64 KiB tiles), then tell the parent */
		if (put_tiles(w, &b, 25, NULL) != 0)
			_exit(22);
		if (write(fds[1], "x", 1) != 1)
			_exit(23);
		for (;;)
			if (put_tiles(w, &b, -1, NULL) != 0)
				_exit(24);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	usleep(20000);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);

	s = open_store(t.path, 0);
	CHECK_MATRIX(s, &a, 0);
	assert_int_equal(pspace_store_info(s, "B", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_true(info.tiles >= 20);
	assert_int_equal(pspace_reader_open(&r, s, "B", 0), PSPACE_EINCOMPLETE);
	CHECK_MATRIX(s, &b, PSPACE_READ_INCOMPLETE);

	assert_int_equal(pspace_writer_resume(&w, s, "B"), 0);
	{
		float *buf = malloc(128 * 128 * sizeof(float));
		long missing = 0;

		for (uint32_t bl = 0; bl < b.nblocks; bl++)
			for (uint32_t i = 0; i < ntiles(&b, bl); i++)
				for (uint32_t j = i; j < ntiles(&b, bl); j++) {
					int has = pspace_writer_has_tile(w, bl, i, j);

					assert_true(has == 0 || has == 1);
					if (has)
						continue;
					missing++;
					fill(&b, bl, i, j, buf, 128);
					assert_int_equal(pspace_writer_put_tile(
					                     w, bl, i, j, PSPACE_F32, buf, 128),
					                 0);
				}
		free(buf);
		(void)missing;
	}
	assert_int_equal(pspace_writer_finish(w), 0);
	CHECK_MATRIX(s, &b, 0);
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- concurrent readers --------------------------------------------------- */

typedef struct reader_job {
	pspace_store *s;
	const mspec *m;
	int passes;
	int result;
	char why[512];
} reader_job;

static void *reader_thread(void *arg)
{
	reader_job *j = arg;

	j->result = 0;
	for (int p = 0; p < j->passes && j->result == 0; p++)
		j->result = check_matrix(j->s, j->m, 0, j->why, sizeof(j->why));
	return NULL;
}

static void test_store_concurrent(void **state)
{
	mspec a = {"A", PSPACE_KIND_DENSE, 1, {900}, 128, 1, 70, NULL};
	mspec b = {"B", PSPACE_KIND_DENSE, 1, {1200}, 128, 1, 72, NULL};
	mspec c = {"C", PSPACE_KIND_DENSE, 1, {1100}, 128, 1, 74, NULL};
	pspace_matrix_desc d;
	pspace_matrix_info info;
	pspace_reader *early = NULL;
	pspace_writer *w;
	pspace_store *s;
	reader_job job;
	pthread_t th;
	tmpdir t;
	pid_t pid;
	int status;
	(void)state;

	setenv("PSPACE_TEST_TXN_BYTES", "300000", 1);
	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);

	/* threads: readers of A while B is built with checkpoints */
	job = (reader_job){.s = s, .m = &a, .passes = 4};
	assert_int_equal(pthread_create(&th, NULL, reader_thread, &job), 0);
	desc_of(&b, &d);
	assert_int_equal(pspace_writer_begin(&w, s, b.name, &d), 0);
	assert_int_equal(put_tiles(w, &b, 30, NULL), 0);
	assert_int_equal(pspace_reader_open(&early, s, "B", PSPACE_READ_INCOMPLETE), 0);
	assert_int_equal(put_tiles(w, &b, -1, NULL), 0);
	assert_int_equal(pspace_writer_finish(w), 0);
	assert_int_equal(pspace_reader_info(early)->state, PSPACE_STATE_BUILDING);
	pspace_reader_close(early);
	assert_int_equal(pspace_store_info(s, "B", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (job.result != 0)
		print_error("reader thread: %s\n", job.why);
	assert_int_equal(job.result, 0);
	CHECK_MATRIX(s, &b, 0);
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
			if (check_matrix(cs, &a, 0, why, sizeof(why)) != 0 ||
			    check_matrix(cs, &b, 0, why, sizeof(why)) != 0) {
				fprintf(stderr, "child reader: %s\n", why);
				_exit(31);
			}
		pspace_store_close(cs);
		_exit(0);
	}
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &c), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	CHECK_MATRIX(s, &c, 0);
	pspace_store_close(s);
	unsetenv("PSPACE_TEST_TXN_BYTES");
	tmp_remove(&t);
}

/* ---- map growth ----------------------------------------------------------- */

static void test_store_map_growth(void **state)
{
	mspec m = {"grow", PSPACE_KIND_DENSE, 1, {2000}, 256, 1, 80, NULL};
	pspace_store_stat st;
	pspace_store *s;
	tmpdir t;
	(void)state;

	setenv("PSPACE_TEST_INITIAL_MAP", "1048576", 1);
	setenv("PSPACE_TEST_TXN_BYTES", "262144", 1);
	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(pspace_store_stat_get(s, &st), 0);
	assert_true(st.map_bytes <= 4u << 20); /* only the headroom of the first commit */
	assert_int_equal(write_matrix(s, &m), 0);
	assert_int_equal(pspace_store_stat_get(s, &st), 0);
	assert_true(st.map_bytes > (8u << 20));
	CHECK_MATRIX(s, &m, 0);
	pspace_store_close(s);
	unsetenv("PSPACE_TEST_INITIAL_MAP");
	unsetenv("PSPACE_TEST_TXN_BYTES");

	s = open_store(t.path, 0);
	CHECK_MATRIX(s, &m, 0);
	pspace_store_close(s);
	tmp_remove(&t);
}

/* ---- remove, recreate, compact -------------------------------------------- */

static void test_store_remove_compact(void **state)
{
	mspec a = {"A", PSPACE_KIND_DENSE, 1, {800}, 128, 1, 90, NULL};
	mspec b = {"B", PSPACE_KIND_BLOCKDIAG, 2, {300, 200}, 64, 0, 91, NULL};
	pspace_store_stat st, st2;
	pspace_store *s, *s2;
	char out[160];
	tmpdir t;
	(void)state;

	tmp_make(&t);
	s = open_store(t.path, 0);
	assert_int_equal(write_matrix(s, &a), 0);
	assert_int_equal(write_matrix(s, &b), 0);
	assert_int_equal(pspace_store_remove(s, "A"), 0);
	a.seed = 93;
	a.dims[0] = 500;
	assert_int_equal(write_matrix(s, &a), 0);
	CHECK_MATRIX(s, &a, 0);
	CHECK_MATRIX(s, &b, 0);
	assert_int_equal(pspace_store_remove(s, "A"), 0);

	snprintf(out, sizeof(out), "%s/compact", t.root);
	assert_int_equal(pspace_store_compact(s, out), 0);
	assert_int_equal(pspace_store_compact(s, out), PSPACE_EEXIST);
	assert_int_equal(pspace_store_stat_get(s, &st), 0);
	s2 = open_store(out, 0);
	CHECK_MATRIX(s2, &b, 0);
	assert_int_equal(pspace_store_stat_get(s2, &st2), 0);
	assert_true(st2.file_bytes < st.file_bytes);
	assert_int_equal(st2.matrices, 1);
	assert_int_equal(st2.tile_entries, st.tile_entries);
	pspace_store_close(s2);
	pspace_store_close(s);
	tmp_remove(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_roundtrip),  cmocka_unit_test(test_store_arrays),
	    cmocka_unit_test(test_store_errors),     cmocka_unit_test(test_store_corrupt_tile),
	    cmocka_unit_test(test_store_truncated),  cmocka_unit_test(test_store_version),
	    cmocka_unit_test(test_store_map_full),   cmocka_unit_test(test_store_disk_full),
	    cmocka_unit_test(test_store_kill),       cmocka_unit_test(test_store_concurrent),
	    cmocka_unit_test(test_store_map_growth), cmocka_unit_test(test_store_remove_compact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
