/*
 * Tests of the zstd-planes tiles (codec 2): round trips in every stored
 * precision, the plane layout read back without the library
 * (tests/helpers/cref.c), corruption of a tile with both kinds of plane,
 * and plane tables that disagree with the planes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cref.h"
#include "fixture.h"
#include "pspace/codec.h"

#include "codec/codec.h"

#define HDR PSPACE_TILE_HEADER_SIZE

static uint64_t rng; /* the generator of the test running */

/* Every stored precision, both sources, shapes from 1x1 to 512x512, levels 1 and -1. */
static void test_codec_planes_roundtrip(void **state)
{
	static const struct cref_shape psh[] = {
	    {1, 1, 1, 1}, {37, 53, 53, 53}, {37, 53, 61, 64}, {512, 512, 512, 512}};
	const pspace_dtype dtypes[] = {PSPACE_F64, PSPACE_F32, PSPACE_BF16, PSPACE_F16};
	const pspace_dtype srcs[] = {PSPACE_F32, PSPACE_F64};
	pspace_codec *c = NULL;
	int planes = 0, count = 0;

	(void)state;
	rng = 17;
	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t s = 0; s < sizeof(psh) / sizeof(psh[0]); s++) {
		const struct cref_shape *sh = &psh[s];
		size_t n = (size_t)sh->rows * sh->cols;
		double *x = malloc(n * sizeof(*x));
		void *src = malloc((size_t)sh->rows * sh->src_ld * 8);

		assert_true(x && src);
		for (size_t t = 0; t < 2; t++) {
			cref_make_data(&rng, CREF_FISHER, srcs[t], sh, x, src);
			for (size_t d = 0; d < 4; d++) {
				for (int level = -1; level <= 1; level += 2) {
					pspace_codec_opts o;
					const void *tile;
					size_t len;

					pspace_codec_opts_default(&o);
					o.dtype = dtypes[d];
					o.level = level;
					cref_check_roundtrip(c, &o, 0, srcs[t], sh, x, src);
					count++;
					assert_int_equal(
					    pspace_tile_encode(c, &o, srcs[t], src, sh->rows,
					                       sh->cols, sh->src_ld, &tile, &len),
					    0);
					planes += ((const unsigned char *)tile)[6] ==
					          PSPACE_CODEC_ZSTD_PLANES;
					/* 1x1: every plane raw, so the whole tile is raw */
					if (n == 1)
						assert_int_equal(((const unsigned char *)tile)[6],
						                 PSPACE_CODEC_RAW);
				}
			}
		}
		free(src);
		free(x);
	}
	print_message("%d round trips, %d as zstd planes\n", count, planes);
	assert_true(planes >= 16); /* the larger Fisher tiles compress in every precision */
	pspace_codec_free(c);
}

/* f32 Fisher data: the low mantissa plane is noise (raw), the exponent plane compresses. */
static void test_codec_planes_layout(void **state)
{
	const struct cref_shape sh = {256, 256, 256, 256};
	const size_t n = 256 * 256;
	double *x = malloc(n * sizeof(*x));
	float *src = malloc(n * sizeof(*src));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	struct cref_planes pi;

	(void)state;
	assert_true(x && src);
	rng = 19;
	cref_make_data(&rng, CREF_FISHER, PSPACE_F32, &sh, x, src);
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 256, 256, 256, &tile, &len), 0);
	cref_planes_read(tile, len, &pi, NULL);
	print_message("f32 planes: %s%u %s%u %s%u %s%u of %zu bytes each\n",
	              pi.raw[0] ? "raw " : "zstd ", pi.len[0], pi.raw[1] ? "raw " : "zstd ",
	              pi.len[1], pi.raw[2] ? "raw " : "zstd ", pi.len[2],
	              pi.raw[3] ? "raw " : "zstd ", pi.len[3], n);
	assert_int_equal(pi.es, 4);
	assert_true(pi.raw[0]); /* lowest mantissa byte: noise */
	assert_int_equal(pi.len[0], n);
	assert_false(pi.raw[3]); /* sign and exponent */
	assert_true(pi.len[3] < n / 2);
	/* all-zero low planes compress too: bf16 of a tile of small integers */
	for (size_t i = 0; i < n; i++)
		src[i] = (float)(i % 5);
	o.dtype = PSPACE_BF16;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 256, 256, 256, &tile, &len), 0);
	cref_planes_read(tile, len, &pi, NULL);
	assert_int_equal(pi.es, 2);
	assert_false(pi.raw[0] || pi.raw[1]);
	pspace_codec_free(c);
	free(src);
	free(x);
}

/* A tile with both kinds of plane: bit flips and truncations anywhere are rejected. */
static void test_codec_planes_corrupt(void **state)
{
	float src[32 * 32];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	unsigned char *copy;
	struct cref_planes pi;

	(void)state;
	rng = 23;
	for (int i = 0; i < 32 * 32; i++) {
		uint32_t u =
		    0x3f800000u | (uint32_t)(i % 3) << 16 | (uint32_t)(fx_rng_u64(&rng) & 0xff);

		memcpy(&src[i], &u, 4);
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	for (int d = 0; d < 2; d++) {
		o.dtype = d ? PSPACE_F64 : PSPACE_F32;
		assert_int_equal(
		    pspace_tile_encode(c, &o, PSPACE_F32, src, 32, 32, 32, &tile, &len), 0);
		copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, tile, len);
		cref_planes_read(copy, len, &pi, NULL);
		/* f32: the noise byte raw (in f64 its 8 random bits straddle two planes) */
		assert_true(d || pi.raw[0]);
		assert_false(pi.raw[pi.es - 1]);
		cref_flip_all(c, copy, len);
		free(copy);
	}
	pspace_codec_free(c);
}

/* Decodes a doctored tile (checksum recomputed): ECORRUPT naming @p needle, for decode and view. */
static void expect_decode_corrupt(pspace_codec *c, unsigned char *t, size_t len, const char *needle)
{
	float out[16 * 16];
	const void *view;
	unsigned char *dup = malloc(len); /* exactly the tile: any overread is seen */

	assert_non_null(dup);
	memcpy(dup, t, len);
	cref_fix_crc(dup, len);
	assert_int_equal(pspace_tile_verify(dup, len), 0);
	assert_int_equal(pspace_tile_decode(c, dup, len, PSPACE_F32, out, 16), PSPACE_ECORRUPT);
	if (strstr(pspace_errdetail(), needle) == NULL) {
		print_error("detail \"%s\" lacks \"%s\"\n", pspace_errdetail(), needle);
		fail();
	}
	assert_int_equal(pspace_tile_view(c, dup, len, PSPACE_F64, &view, NULL), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), needle));
	free(dup);
}

/*
 * Plane tables that disagree with the planes, with a valid checksum: each
 * is rejected with ECORRUPT and a message saying which plane (the buffers
 * are exactly the tile's size, so ASan and valgrind see any overread).
 */
static void test_codec_planes_lengths(void **state)
{
	enum { N = 16 * 16 };
	float src[N];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len, tlen;
	unsigned char *good, *t;
	struct cref_planes pi;
	uint32_t l0, l3;

	(void)state;
	rng = 29;
	/* plane 0 noise (raw), planes 1-3 compressible */
	for (int i = 0; i < N; i++) {
		uint32_t u =
		    0x40000000u | (uint32_t)(i % 2) << 8 | (uint32_t)(fx_rng_u64(&rng) & 0xff);

		memcpy(&src[i], &u, 4);
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 16, 16, 16, &tile, &len), 0);
	good = malloc(len);
	assert_non_null(good);
	memcpy(good, tile, len);
	cref_planes_read(good, len, &pi, NULL);
	assert_true(pi.raw[0] && !pi.raw[1] && !pi.raw[2] && !pi.raw[3]);
	l0 = cref_rd_le32(good + HDR);
	l3 = cref_rd_le32(good + HDR + 12);
	t = malloc(2048);
	assert_non_null(t);
#define FRESH() memcpy(t, good, len)
	/* raw plane whose length is not n */
	FRESH();
	cref_wr_le32(t + HDR, l0 - 1);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw with 255 bytes");
	FRESH();
	cref_wr_le32(t + HDR, l0 + 1);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw with 257 bytes");
	FRESH();
	cref_wr_le32(t + HDR, 0xffffffffu);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw");
	/* the raw plane called a zstd frame: n bytes is too long for a frame */
	FRESH();
	cref_wr_le32(t + HDR, 256);
	expect_decode_corrupt(c, t, len, "plane 0: zstd frame of 256 bytes, must be 1..255");
	/* zstd plane of length 0 */
	FRESH();
	cref_wr_le32(t + HDR + 12, 0);
	expect_decode_corrupt(c, t, len, "plane 3: zstd frame of 0 bytes");
	/* huge lengths: no wrap-around in the sum */
	FRESH();
	cref_wr_le32(t + HDR + 12, 0x7fffffffu);
	expect_decode_corrupt(c, t, len, "plane 3: zstd frame of 2147483647 bytes");
	/* a zstd plane called raw */
	FRESH();
	cref_wr_le32(t + HDR + 12, 0x80000000u | l3);
	expect_decode_corrupt(c, t, len, "plane 3: stored raw");
	/* sums off by one either way */
	FRESH();
	cref_wr_le32(t + HDR + 12, l3 + 1);
	expect_decode_corrupt(c, t, len, "sum to");
	FRESH();
	cref_wr_le32(t + HDR + 12, l3 - 1);
	expect_decode_corrupt(c, t, len, "sum to");
	/* a byte moved from one frame's length to another's: frames misaligned */
	FRESH();
	cref_wr_le32(t + HDR + 4, cref_rd_le32(good + HDR + 4) + 1);
	cref_wr_le32(t + HDR + 8, cref_rd_le32(good + HDR + 8) - 1);
	expect_decode_corrupt(c, t, len, "plane 1");
	/* the raw plane moved to the end: plane 3 begins with noise, not a frame */
	FRESH();
	{
		uint32_t lens[4];

		for (int b = 0; b < 4; b++)
			lens[b] = cref_rd_le32(good + HDR + 4 * b);
		cref_wr_le32(t + HDR, lens[1]);
		cref_wr_le32(t + HDR + 4, lens[2]);
		cref_wr_le32(t + HDR + 8, lens[3] & 0x7fffffffu);
		cref_wr_le32(t + HDR + 12, lens[0]);
		/* only the table changes: plane 0's frame length now covers raw noise */
		expect_decode_corrupt(c, t, len, "plane 0: its");
	}
	/* a payload exactly as long as its table: caught by the header check */
	FRESH();
	tlen = HDR + 16;
	cref_wr_le32(t + 16, 16);
	cref_fix_crc(t, tlen);
	assert_int_equal(pspace_tile_decode(c, t, tlen, PSPACE_F32, src, 16), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "zstd-planes tile payload 16 bytes"));
	/* hand-made: valid frames of the wrong size, two frames in one slot */
	{
		unsigned char zero[300] = {0};
		size_t off = HDR + 16, z;

		/* plane 0: a frame of 255 bytes where 256 are needed; planes 1-3 raw */
		z = ZSTD_compress(t + off, 200, zero, 255, 1);
		assert_false(ZSTD_isError(z));
		cref_wr_le32(t + HDR, (uint32_t)z);
		off += z;
		for (int b = 1; b < 4; b++) {
			cref_wr_le32(t + HDR + 4 * b, 0x80000100u);
			memset(t + off, b, 256);
			off += 256;
		}
		cref_make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
		expect_decode_corrupt(c, t, off, "plane 0 decompressed to 255 bytes");
		/* 257 bytes: decompression itself must stop */
		{
			unsigned char f[200];

			off = HDR + 16;
			z = ZSTD_compress(f, sizeof(f), zero, 257, 1);
			assert_false(ZSTD_isError(z));
			memmove(t + off + z, t + off + cref_rd_le32(t + HDR), 3 * 256);
			memcpy(t + off, f, z);
		}
		cref_wr_le32(t + HDR, (uint32_t)z);
		off += z + 3 * 256;
		cref_make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
		expect_decode_corrupt(c, t, off, "plane 0: decompression failed");
		/* two frames of 128 bytes in plane 0's slot */
		{
			unsigned char rest[3 * 256];
			size_t z1, z2;

			memcpy(rest, t + HDR + 16 + z, sizeof(rest));
			off = HDR + 16;
			z1 = ZSTD_compress(t + off, 100, zero, 128, 1);
			z2 = ZSTD_compress(t + off + z1, 100, zero, 128, 1);
			assert_false(ZSTD_isError(z1) || ZSTD_isError(z2));
			cref_wr_le32(t + HDR, (uint32_t)(z1 + z2));
			off += z1 + z2;
			memcpy(t + off, rest, sizeof(rest));
			off += sizeof(rest);
			cref_make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
			expect_decode_corrupt(c, t, off, "not exactly one zstd frame");
			/* and the well-formed version decodes */
			off = HDR + 16;
			z = ZSTD_compress(t + off, 200, zero, 256, 1);
			cref_wr_le32(t + HDR, (uint32_t)z);
			off += z;
			memcpy(t + off, rest, sizeof(rest));
			off += sizeof(rest);
			cref_make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
			cref_fix_crc(t, off);
			assert_int_equal(pspace_tile_decode(c, t, off, PSPACE_F32, src, 16), 0);
			for (int i = 0; i < N; i++) {
				uint32_t u;

				memcpy(&u, &src[i], 4);
				assert_int_equal(u, 0x03020100u);
			}
		}
	}
#undef FRESH
	free(t);
	free(good);
	pspace_codec_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_planes_roundtrip),
	    cmocka_unit_test(test_codec_planes_layout),
	    cmocka_unit_test(test_codec_planes_corrupt),
	    cmocka_unit_test(test_codec_planes_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
