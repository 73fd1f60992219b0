/*
 * Tests of damaged LMDB structure (src/store/pages.c, the tile digest, the
 * tool's fault guard): bits flipped in meta, branch, leaf and overflow pages
 * of a small store; every command must exit cleanly (status 0 or 1, never
 * a signal or an assertion) and a result it prints must be right. Tile
 * values come from tests/helpers/sref.c, the trace reference from
 * sref_value() in float64.
 */
#include <lmdb.h>
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
#include "pspace/codec.h"
#include "pspace/mat.h"
#include "pspace/store.h"
#include "sref.h"

#define PS 4096

/* A dense symmetric matrix of 153 tiles of 64 x 64: two leaf pages under a branch. */
static sref_spec spec = {"A", PSPACE_KIND_DENSE, 1, {1050}, 64, 1, 7, "fc linear 35x30 nobias\n"};

static uint8_t *base_data;
static size_t base_len;
static double trace_ref;
static char root[64];

static int setup(void **state)
{
	char path[128], data[160];
	pspace_store *s;
	FILE *f;
	(void)state;

	fx_dir_make(root, sizeof(root), "damage");
	snprintf(path, sizeof(path), "%s/base", root);
	s = sref_open(path, 0);
	if (sref_write(s, &spec) != 0)
		return -1;
	pspace_store_close(s);
	trace_ref = 0;
	for (uint64_t i = 0; i < spec.dims[0]; i++)
		trace_ref += (double)sref_value(spec.seed, spec.sym, 0, i, i);
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	f = fopen(data, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	base_len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	base_data = malloc(base_len);
	if (!base_data || fread(base_data, 1, base_len, f) != base_len)
		return -1;
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(base_data);
	return fx_dir_remove(root);
}

static uint16_t u16at(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Page @p i's flags if its header is a live-looking page header, else 0. */
static unsigned page_kind(size_t i)
{
	const uint8_t *p = base_data + i * PS;
	uint64_t pgno;

	memcpy(&pgno, p, 8);
	return pgno == i ? u16at(p + 10) : 0;
}

/* Offset of node @p n of page @p i. */
static size_t node_off(size_t i, unsigned n)
{
	return i * PS + u16at(base_data + i * PS + 16 + 2 * n);
}

/* A tiles leaf page (nodes with 20-byte keys), the last one if @p last. */
static size_t tiles_leaf(int last)
{
	size_t found = 0;

	for (size_t i = 2; i < base_len / PS; i++)
		if (page_kind(i) == 2 && u16at(base_data + node_off(i, 0) + 6) == 20) {
			const uint8_t *k = base_data + node_off(i, 0) + 8;

			/* the current pages: matrix id 1 (stale copies are alike) */
			if (k[7] == 1) {
				found = i;
				if (!last)
					break;
			}
		}
	return found;
}

/* Writes the base store with the bit @p bit of byte @p off flipped as store "S". */
static const char *damaged(size_t off, uint8_t bit)
{
	static char path[128];
	char data[160];

	snprintf(path, sizeof(path), "%s/S", root);
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	mkdir(path, 0777);
	unlink(data);
	snprintf(data, sizeof(data), "%s/lock.mdb", path);
	unlink(data);
	base_data[off] ^= bit;
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	fx_write_file(data, base_data, base_len);
	base_data[off] ^= bit;
	return path;
}

/* Every command exits 0 or 1 and names the store when it fails; a trace printed is right. */
static void check_commands(const char *S, size_t off, uint8_t bit)
{
	static const char *cmds[][2] = {
	    {"ls", ""}, {"verify", ""}, {"eval", " A trace"}, {"info", " A"}, {"stat", ""}};
	int st;

	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "%s %s%s", cmds[c][0], S, cmds[c][1]);
		st = fx_cli("%s", cmd);
		if (st != 0 && st != 1)
			fail_msg("byte %zu bit %#x: '%s' exit %d:\n%s", off, bit, cmd, st, fx_err);
		if (st == 1 && !strstr(fx_err, S))
			fail_msg("byte %zu bit %#x: '%s' fails without naming the store:\n%s", off,
			         bit, cmd, fx_err);
		if (st == 0 && c == 2 && fx_relerr1(strtod(fx_out, NULL), trace_ref) > 1e-6)
			fail_msg("byte %zu bit %#x: trace %s, expected %.9g", off, bit, fx_out,
			         trace_ref);
	}
}

static void flip_and_check(size_t off, uint8_t bit)
{
	check_commands(damaged(off, bit), off, bit);
}

static void test_store_damage_meta(void **state)
{
	/* magic, version, page size, free root, main root, last page, txnid */
	static const size_t fields[] = {16, 20, 40, 81, 131, 138, 144};
	(void)state;

	assert_int_equal(page_kind(0) & 8, 8);
	for (int m = 0; m < 2; m++)
		for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
			flip_and_check((size_t)m * PS + fields[f], f == 6 ? 1 : 0x10);
	/* a page size LMDB would accept is refused at open, naming the file */
	assert_int_equal(fx_cli("ls %s", damaged(41, 0x01)), 1);
	fx_expect_stderr("meta page 0 gives page size");
	fx_expect_stderr("data.mdb");
}

static void test_store_damage_branch(void **state)
{
	size_t br = 0;
	(void)state;

	for (size_t i = 2; i < base_len / PS && !br; i++)
		if (page_kind(i) == 1 && u16at(base_data + node_off(i, 1) + 6) == 20)
			br = i;
	assert_true(br > 0);
	flip_and_check(br * PS + 10, 0x02);             /* branch -> leaf */
	flip_and_check(br * PS + 12, 0x04);             /* lower */
	flip_and_check(br * PS + 14, 0x80);             /* upper */
	flip_and_check(br * PS + 17, 0x02);             /* node offset */
	flip_and_check(node_off(br, 0) + 1, 0x40);      /* child page number */
	flip_and_check(node_off(br, 1) + 0, 0x01);      /* child page number */
	flip_and_check(node_off(br, 1) + 6, 0x10);      /* key size */
	flip_and_check(node_off(br, 1) + 8 + 13, 0x10); /* separator key: tile row */
}

static void test_store_damage_leaf(void **state)
{
	size_t lf = tiles_leaf(0);
	(void)state;

	assert_true(lf > 0);
	flip_and_check(lf * PS + 10, 0x01);             /* leaf -> branch */
	flip_and_check(lf * PS + 12, 0x08);             /* lower */
	flip_and_check(lf * PS + 19, 0x01);             /* node offset */
	flip_and_check(node_off(lf, 3) + 2, 0x01);      /* data size */
	flip_and_check(node_off(lf, 3) + 4, 0x01);      /* flags: no longer big data */
	flip_and_check(node_off(lf, 3) + 6, 0x04);      /* key size */
	flip_and_check(node_off(lf, 3) + 8 + 15, 0x01); /* key: tile row */
	flip_and_check(node_off(lf, 3) + 8 + 20, 0x10); /* overflow page number */
}

static void test_store_damage_overflow(void **state)
{
	size_t lf = tiles_leaf(0), ov;
	(void)state;

	memcpy(&ov, base_data + node_off(lf, 2) + 8 + 20, 8);
	assert_int_equal(page_kind(ov), 4);
	flip_and_check(ov * PS + 0, 0x01);  /* page number */
	flip_and_check(ov * PS + 10, 0x04); /* overflow flag */
	flip_and_check(ov * PS + 12, 0x02); /* page count */
	flip_and_check(ov * PS + 16, 0x01); /* tile magic (the tile checksum's domain) */
}

/* A tile whose key moves to another matrix id vanishes: verify and the readers say so. */
static void test_store_damage_vanished(void **state)
{
	size_t lf = tiles_leaf(1), last, off;
	const char *S;
	(void)state;

	assert_true(lf > 0);
	last = (u16at(base_data + lf * PS + 12) - 16u) / 2 - 1;
	off = node_off(lf, (unsigned)last) + 8 + 7; /* id 1 -> 0x41: still the largest key */
	S = damaged(off, 0x40);
	assert_int_equal(fx_cli("verify %s", S), 1);
	fx_expect_stdout("CORRUPT");
	fx_expect_stdout("catalog records 153");
	/* the last tile is on the diagonal: the trace cannot go without it */
	assert_int_equal(fx_cli("eval %s A trace", S), 1);
	fx_expect_stderr("missing");
	assert_int_equal(fx_cli("export %s A --npy %s/a.npy", S, root), 1);
	fx_expect_stderr("corrupt");
	check_commands(S, off, 0x40);
	/* out of core, products walk forwards and backwards by turns: both ways miss it */
	{
		pspace_exec ex = {2, 4096};
		pspace_store *s;
		pspace_mat *m;
		double x[1050] = {0}, y[1050];

		assert_int_equal(pspace_store_open(&s, S, NULL), 0);
		assert_int_equal(pspace_mat_open(&m, s, "A"), 0);
		for (int pass = 0; pass < 2; pass++) {
			assert_int_equal(pspace_mat_mv(m, &ex, x, y), PSPACE_ECORRUPT);
			assert_non_null(strstr(pspace_errdetail(), "catalog records 153"));
		}
		pspace_mat_free(m);
		pspace_store_close(s);
	}
}

/* Records written before the digest existed are read (their tile count still checked). */
static void test_store_damage_old_record(void **state)
{
	char path[128];
	pspace_matrix_info info;
	pspace_store *s;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {1, "A"}, v;
	uint8_t *rec;
	uint32_t crc;
	(void)state;

	snprintf(path, sizeof(path), "%s/old", root);
	s = sref_open(path, 0);
	assert_int_equal(sref_write(s, &spec), 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "A"), 0);
	assert_int_equal(info.has_digest, 1);
	pspace_store_close(s);

	/* as pspace 0.3.0 wrote it: flags bit 1 clear, reserved field 0 */
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
	assert_int_equal(mdb_env_open(env, path, 0, 0664), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "catalog", 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	rec = malloc(v.mv_size);
	memcpy(rec, v.mv_data, v.mv_size);
	rec[36] &= (uint8_t)~2u;
	memset(rec + 52, 0, 4);
	crc = pspace_crc32c(0, rec, v.mv_size - 4);
	memcpy(rec + v.mv_size - 4, &crc, 4);
	v.mv_data = rec;
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(rec);

	s = sref_open(path, 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "A"), 0);
	assert_int_equal(info.has_digest, 0);
	SREF_CHECK(s, &spec, 0);
	pspace_store_close(s);
	assert_int_equal(fx_cli("verify %s", path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_store_damage_meta),
	    cmocka_unit_test(test_store_damage_branch),
	    cmocka_unit_test(test_store_damage_leaf),
	    cmocka_unit_test(test_store_damage_overflow),
	    cmocka_unit_test(test_store_damage_vanished),
	    cmocka_unit_test(test_store_damage_old_record),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
