/*
 * fuzz_store: any bytes as the data.mdb of a store. Opening either fails
 * with an error or gives a store whose catalog lists, and every matrix
 * (complete or not) reads: every tile decoded, every array copied, each
 * step an error or a result, never a crash. Small tiles and arrays only
 * (the inputs are a few pages).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "pspace/store.h"

#define MAX_NAMES 64
#define MAX_ELEMS (1u << 16)

typedef struct names {
	size_t n;
	char name[MAX_NAMES][PSPACE_NAME_MAX + 1];
} names;

static pspace_codec *codec;
static double scratch[MAX_ELEMS];

static int add_matrix(const pspace_matrix_info *info, void *ud)
{
	names *nm = ud;

	if (nm->n < MAX_NAMES)
		memcpy(nm->name[nm->n++], info->name, sizeof(info->name));
	return 0;
}

static int add_array(const char *name, const pspace_array_info *ai, void *ud)
{
	names *nm = ud;

	(void)ai;
	if (nm->n < MAX_NAMES)
		snprintf(nm->name[nm->n++], PSPACE_NAME_MAX + 1, "%s", name);
	return 0;
}

static void read_matrix(pspace_store *s, const char *name)
{
	static names arrays;
	pspace_matrix_info info;
	pspace_array_info ai;
	pspace_tile_header h;
	pspace_tile_ref t;
	pspace_reader *r = NULL;
	uint64_t dims[8];
	int done = 0;

	if (pspace_matrix_info_get(&info, s, name) != 0)
		return;
	(void)pspace_store_blocks(s, name, dims, 8);
	if (pspace_reader_open(&r, s, name, PSPACE_READ_INCOMPLETE) != 0)
		return;
	for (uint64_t i = 0; i < 4096; i++) {
		if (pspace_reader_next(&t, &done, r) != 0 || done)
			break;
		if (pspace_tile_parse(&h, t.data, t.len) == 0 &&
		    (uint64_t)h.rows * h.cols <= MAX_ELEMS)
			(void)pspace_reader_decode(r, codec, &t, PSPACE_F64, scratch, h.cols);
		(void)pspace_reader_tile(&t, r, t.block, t.row, t.col);
	}
	arrays.n = 0;
	if (pspace_reader_foreach_array(r, add_array, &arrays) == 0)
		for (size_t i = 0; i < arrays.n; i++)
			if (pspace_array_info_get(&ai, r, arrays.name[i]) == 0)
				(void)pspace_reader_array(r, arrays.name[i],
				                          ai.dtype == PSPACE_I64 ? PSPACE_I64
				                                                 : PSPACE_F64,
				                          scratch, MAX_ELEMS);
	pspace_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[96], file[128], lock[128];
	static names matrices;
	pspace_store_opts o;
	pspace_store *s = NULL;
	pspace_store_stat st;

	if (!codec && pspace_codec_create(&codec) != 0)
		abort();
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "%s/s", fuzz_dir());
		snprintf(file, sizeof(file), "%s/data.mdb", dir);
		snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
		if (mkdir(dir, 0700) != 0)
			abort();
	}
	unlink(lock);
	fuzz_write_file(file, data, size);
	pspace_store_opts_default(&o);
	o.create = 0;
	o.nosync = 1;
	o.map_max = 1 << 24; /* a small map is much faster to set up and tear down */
	if (pspace_store_open(&s, dir, &o) != 0)
		return 0;
	(void)pspace_store_stat_get(&st, s);
	matrices.n = 0;
	(void)pspace_store_foreach(s, add_matrix, &matrices);
	for (size_t i = 0; i < matrices.n; i++)
		read_matrix(s, matrices.name[i]);
	pspace_store_close(s);
	return 0;
}
