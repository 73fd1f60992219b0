/*
 * fuzz_seeds OUTDIR: writes the seed inputs that need the library to make
 * them: encoded tiles of every codec and precision (OUTDIR/fuzz_tile/) and
 * the data.mdb of a tiny store with a complete Dense, BlockDiag and Diag
 * and an incomplete Dense (OUTDIR/fuzz_store/). Run by tests/fuzz/run.sh
 * --seeds; the results are kept in tests/fuzz/corpus/.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "pspace/store.h"

/* Not a fuzz target, but fuzz_util.h declares it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	return 0;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "fuzz_seeds: %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	exit(1);
}

static void tiles(const char *dir)
{
	static const struct {
		const char *name;
		pspace_dtype dtype;
		int level, shuffle;
		uint32_t rows, cols;
		int smooth; /* 1: compressible values; 2: Fisher-like magnitudes (nibble planes) */
	} specs[] = {
	    {"raw_f32", PSPACE_F32, 0, 0, 3, 4, 0},
	    {"raw_f64", PSPACE_F64, 0, 0, 2, 2, 0},
	    {"zstd_f32", PSPACE_F32, 1, 0, 8, 8, 1},
	    {"zstd_shuf_f64", PSPACE_F64, 3, 0, 6, 5, 1},
	    {"planes_f32", PSPACE_F32, 1, 1, 16, 16, 1},
	    {"planes_f64", PSPACE_F64, 1, 1, 8, 8, 1},
	    {"planes_bf16", PSPACE_BF16, 1, 1, 8, 8, 1},
	    {"raw_f16", PSPACE_F16, 0, 0, 4, 4, 0},
	    {"planes_f16", PSPACE_F16, 1, 1, 8, 8, 1},
	    {"raw_bf16", PSPACE_BF16, 0, 0, 1, 3, 0},
	    {"nibble_f32", PSPACE_F32, 1, 1, 15, 17, 2},
	    {"nibble_bf16", PSPACE_BF16, 1, 1, 16, 16, 2},
	};
	pspace_codec *c = NULL;
	double v[256];
	char path[512];
	int rc;

	if ((rc = pspace_codec_create(&c)) != 0)
		die("codec", rc);
	for (size_t k = 0; k < sizeof(specs) / sizeof(specs[0]); k++) {
		pspace_codec_opts o;
		const void *enc;
		size_t len;

		pspace_codec_opts_default(&o);
		o.dtype = specs[k].dtype;
		o.level = specs[k].level;
		o.shuffle = specs[k].shuffle;
		o.min_ratio = 1.0;
		for (uint32_t i = 0; i < specs[k].rows * specs[k].cols; i++)
			v[i] = specs[k].smooth == 2 ? (i % 2 ? -1e-3 : 1e-3) * exp(4.0 * sin(1.0 + 0.7 * i))
			       : specs[k].smooth    ? (double)(i % 7) * 0.25
			                            : sin(1.0 + i) * 1e-3 * (i + 1);
		rc = pspace_tile_encode(c, &o, PSPACE_F64, v, specs[k].rows, specs[k].cols,
		                        specs[k].cols, &enc, &len);
		if (rc)
			die(specs[k].name, rc);
		snprintf(path, sizeof(path), "%s/%s", dir, specs[k].name);
		fuzz_write_file(path, enc, len);
	}
	pspace_codec_free(c);
}

static void matrix(pspace_store *s, const char *name, pspace_kind kind, uint32_t nblocks,
                   const uint64_t *dims, int level, int finish)
{
	pspace_matrix_desc d = {kind, 0, nblocks, dims, 2, 1, {0}, NULL};
	pspace_writer *w = NULL;
	double t[4];
	int rc;

	pspace_codec_opts_default(&d.codec);
	d.codec.level = level;
	for (uint32_t b = 0; b < nblocks; b++)
		d.d += dims[b];
	if (kind == PSPACE_KIND_DIAG) {
		d.nblocks = 0;
		d.block_dims = NULL;
		d.layout_text = "a linear 1x2 nobias\nb norm 1 bias\n";
	}
	if ((rc = pspace_writer_begin(&w, s, name, &d)) != 0)
		die(name, rc);
	if (kind == PSPACE_KIND_DIAG) {
		double diag[4] = {1, 2, 3, 4};
		uint64_t shape[1] = {4};

		if ((rc = pspace_writer_put_array(w, "diag", PSPACE_F64, 1, shape, diag)) != 0)
			die(name, rc);
	}
	for (uint32_t b = 0; b < d.nblocks; b++)
		for (uint32_t i = 0; i < (dims[b] + 1) / 2; i++)
			for (uint32_t j = i; j < (dims[b] + 1) / 2; j++) {
				for (int e = 0; e < 4; e++)
					t[e] = 1.0 + b + i + j + 0.5 * e;
				if ((rc = pspace_writer_put_tile(w, b, i, j, PSPACE_F64, t, 2)) !=
				    0)
					die(name, rc);
			}
	if (finish) {
		if ((rc = pspace_writer_finish(w)) != 0)
			die(name, rc);
	} else {
		if ((rc = pspace_writer_checkpoint(w)) != 0)
			die(name, rc);
		pspace_writer_abort(w, 0);
	}
}

static void store(const char *dir)
{
	static const uint64_t dense[1] = {4}, bd[2] = {3, 2}, diag[1] = {4};
	pspace_store_opts o;
	pspace_store *s = NULL;
	char path[512];
	int rc;

	snprintf(path, sizeof(path), "%s/store.tmp", dir);
	pspace_store_opts_default(&o);
	if ((rc = pspace_store_open(&s, path, &o)) != 0)
		die(path, rc);
	matrix(s, "F", PSPACE_KIND_DENSE, 1, dense, 0, 1);
	matrix(s, "B", PSPACE_KIND_BLOCKDIAG, 2, bd, 1, 1);
	matrix(s, "D", PSPACE_KIND_DIAG, 1, diag, 0, 1);
	matrix(s, "P", PSPACE_KIND_DENSE, 1, dense, 0, 0);
	pspace_store_close(s);
	snprintf(path, sizeof(path),
	         "mv '%s/store.tmp/data.mdb' '%s/tiny_store' && rm -rf '%s/store.tmp'", dir, dir,
	         dir);
	if (system(path) != 0)
		exit(1);
}

int main(int argc, char **argv)
{
	char dir[512];

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_seeds OUTDIR\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/fuzz_tile", argv[1]);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return 1;
	tiles(dir);
	snprintf(dir, sizeof(dir), "%s/fuzz_store", argv[1]);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return 1;
	store(dir);
	return 0;
}
