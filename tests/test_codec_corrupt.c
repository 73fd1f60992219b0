/*
 * Tests of the tile codec against damaged input: every bit flip and
 * truncation rejected by the checksum, crafted headers rejected by the
 * parser, zstd frames whose size disagrees with the header, and random
 * garbage (never a crash, never an accepted tile that is not one).
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
#include <zstd.h>

#include "cref.h"
#include "fixture.h"
#include "pspace/codec.h"

#include "codec/codec.h"

#define HDR PSPACE_TILE_HEADER_SIZE

static uint64_t rng; /* the generator of the test running */

static void test_codec_checksum_flip(void **state)
{
	float src[64];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	unsigned char *copy;
	pspace_tile_header h;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	/* compressible: a zstd tile */
	for (int i = 0; i < 64; i++)
		src[i] = (float)(i % 4);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 8, 8, 8, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD_PLANES);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	cref_flip_all(c, copy, len);
	free(copy);
	/* the same as one shuffled frame (codec 1) */
	assert_int_equal(pspace_tile_encode_ex(c, &o, PSPACE_TILE_ENCODE_ONE_FRAME, PSPACE_F32, src,
	                                       8, 8, 8, &tile, &len),
	                 0);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD);
	assert_int_equal(h.shuffle, 1);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	cref_flip_all(c, copy, len);
	free(copy);
	/* raw */
	o.level = 0;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 8, 8, 8, &tile, &len), 0);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	cref_flip_all(c, copy, len);
	free(copy);
	pspace_codec_free(c);
}

static void expect_corrupt(unsigned char *t, size_t len, const char *needle)
{
	pspace_tile_header h;

	cref_fix_crc(t, len);
	assert_int_equal(pspace_tile_parse(&h, t, len), PSPACE_ECORRUPT);
	if (strstr(pspace_errdetail(), needle) == NULL) {
		print_error("detail \"%s\" lacks \"%s\"\n", pspace_errdetail(), needle);
		fail();
	}
}

static void test_codec_parse_rejects(void **state)
{
	unsigned char t[HDR + 16];
	pspace_tile_header h;

	(void)state;
	/* a valid raw 2x2 f32 tile to start from */
	memset(t, 0, sizeof(t));
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	cref_fix_crc(t, sizeof(t));
	assert_int_equal(pspace_tile_parse(&h, t, sizeof(t)), 0);
	assert_int_equal(pspace_tile_verify(t, sizeof(t)), 0);

	t[0] = 'X';
	expect_corrupt(t, sizeof(t), "magic");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	t[4] = 2;
	expect_corrupt(t, sizeof(t), "version");
	cref_make_header(t, 5, 0, 0, 2, 2, 16, 0); /* i64 is not a tile type */
	expect_corrupt(t, sizeof(t), "dtype");
	cref_make_header(t, 0, 0, 0, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "dtype");
	cref_make_header(t, PSPACE_F32, 4, 0, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "codec");
	cref_make_header(t, PSPACE_F32, 3, 0, 2, 2, 16, 0); /* codec 3 is planes too */
	expect_corrupt(t, sizeof(t), "shuffle bit");
	cref_make_header(t, PSPACE_F32, 255, 1, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "codec");
	cref_make_header(t, PSPACE_F32, 2, 0, 2, 2, 16, 0); /* planes without the shuffle flag */
	expect_corrupt(t, sizeof(t), "shuffle bit");
	cref_make_header(t, PSPACE_F32, 2, 3, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "flags");
	cref_make_header(t, PSPACE_F32, 2, 1, 2, 2, 16, 0); /* 16 < table 16 + 4 planes */
	expect_corrupt(t, sizeof(t), "needs 20..32");
	cref_make_header(t, PSPACE_F32, 2, 1, 1, 1, 16, 0); /* 16 < 20 */
	expect_corrupt(t, sizeof(t), "zstd-planes tile payload");
	cref_make_header(t, PSPACE_BF16, 2, 1, 1, 2, 16, 0); /* 16 > table 8 + 2 planes of 2 */
	expect_corrupt(t, sizeof(t), "needs 10..12");
	cref_make_header(t, PSPACE_F64, 2, 1, 1, 1, 16, 0); /* 16 < 40 */
	expect_corrupt(t, sizeof(t), "needs 40..40");
	cref_make_header(t, PSPACE_F32, 1, 2, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "flags");
	cref_make_header(t, PSPACE_F32, 0, 1, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "raw");
	cref_make_header(t, PSPACE_F32, 0, 0, 0, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "empty");
	cref_make_header(t, PSPACE_F32, 1, 0, 0x10000, 0x10000, 16, 0); /* 2^32 elements */
	expect_corrupt(t, sizeof(t), "overflow");
	cref_make_header(t, PSPACE_F64, 1, 0, 0xffffffffu, 0xffffffffu, 16, 0);
	expect_corrupt(t, sizeof(t), "overflow");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 15, 0);
	expect_corrupt(t, sizeof(t), "payload length");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 0xffffffffu, 0);
	expect_corrupt(t, sizeof(t), "payload length");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 3, 16, 0);
	expect_corrupt(t, sizeof(t), "raw tile payload");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 3);
	expect_corrupt(t, sizeof(t), "scale");
	cref_make_header(t, PSPACE_F16, 1, 0, 2, 2, 16, 5000);
	expect_corrupt(t, sizeof(t), "scale");
	cref_make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	t[29] = 1;
	expect_corrupt(t, sizeof(t), "reserved");
	cref_make_header(t, PSPACE_F32, 1, 0, 2, 2, 0, 0);
	expect_corrupt(t, HDR, "empty payload");
	assert_int_equal(pspace_tile_parse(&h, t, 5), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "truncated"));
	assert_int_equal(pspace_tile_parse(&h, NULL, 0), PSPACE_ECORRUPT);
}

/* A well-formed, checksummed zstd frame of the wrong size must be rejected. */
static void test_codec_zstd_size_mismatch(void **state)
{
	float data[20] = {0};
	unsigned char t[HDR + 256];
	pspace_codec *c = NULL;
	float out[20];
	size_t z;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	/* 4x4 tile, frame of 5x4 floats */
	z = ZSTD_compress(t + HDR, sizeof(t) - HDR, data, sizeof(data), 3);
	assert_false(ZSTD_isError(z));
	cref_make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
	cref_fix_crc(t, HDR + z);
	assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "tile needs 64"));
	/* and too short: 3x4 floats */
	z = ZSTD_compress(t + HDR, sizeof(t) - HDR, data, 48, 3);
	cref_make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
	cref_fix_crc(t, HDR + z);
	assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4), PSPACE_ECORRUPT);
	/* frame without a content size, too long: decompression itself must stop */
	{
		ZSTD_CCtx *cc = ZSTD_createCCtx();

		assert_non_null(cc);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
		z = ZSTD_compress2(cc, t + HDR, sizeof(t) - HDR, data, sizeof(data));
		assert_false(ZSTD_isError(z));
		ZSTD_freeCCtx(cc);
		cref_make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
		cref_fix_crc(t, HDR + z);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
	}
	/* frame without a content size, too short: caught by the exact size check */
	{
		ZSTD_CCtx *cc = ZSTD_createCCtx();

		assert_non_null(cc);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
		z = ZSTD_compress2(cc, t + HDR, sizeof(t) - HDR, data, 48);
		assert_false(ZSTD_isError(z));
		ZSTD_freeCCtx(cc);
		cref_make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
		cref_fix_crc(t, HDR + z);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
		assert_non_null(strstr(pspace_errdetail(), "decompressed to 48 bytes"));
	}
	/* two frames where one is expected */
	{
		size_t z1 = ZSTD_compress(t + HDR, 100, data, 32, 1);
		size_t z2 = ZSTD_compress(t + HDR + z1, 100, data, 32, 1);

		assert_false(ZSTD_isError(z1) || ZSTD_isError(z2));
		cref_make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)(z1 + z2), 0);
		cref_fix_crc(t, HDR + z1 + z2);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z1 + z2, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
	}
	pspace_codec_free(c);
}

static void test_codec_garbage(void **state)
{
	unsigned char *buf = malloc(HDR + 4096);
	double *out = malloc(4096 * 8);
	pspace_codec *c = NULL;
	const void *view;
	pspace_tile_header h;
	unsigned char good[HDR + 4096];
	size_t good_len;

	(void)state;
	assert_true(buf && out);
	assert_int_equal(pspace_codec_create(&c), 0);
	rng = 9;
	/* fully random headers with a valid magic */
	for (int it = 0; it < 20000; it++) {
		size_t len = fx_rng_u64(&rng) % (HDR + 256);

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)fx_rng_u64(&rng);
		if (len >= 4)
			memcpy(buf, "PSTL", 4);
		(void)pspace_tile_parse(&h, buf, len);
		assert_int_not_equal(pspace_tile_decode(c, buf, len, PSPACE_F64, out, 4096), 0);
		assert_int_not_equal(pspace_tile_view(c, buf, len, PSPACE_F32, &view, &h), 0);
	}
	/* plausible headers with a correct checksum over garbage or mutated frames */
	{
		pspace_codec_opts o;
		const void *tile;
		float src[16 * 16];

		for (int i = 0; i < 256; i++)
			src[i] = (float)(i % 7) * 0.25f;
		pspace_codec_opts_default(&o);
		assert_int_equal(
		    pspace_tile_encode(c, &o, PSPACE_F32, src, 16, 16, 16, &tile, &good_len), 0);
		memcpy(good, tile, good_len);
	}
	for (int it = 0; it < 20000; it++) {
		size_t len;
		int rc;

		if (it % 2 == 0) {
			uint32_t rows = 1 + (uint32_t)(fx_rng_u64(&rng) % 32);
			uint32_t cols = 1 + (uint32_t)(fx_rng_u64(&rng) % 32);
			unsigned dtype = 1 + (unsigned)(fx_rng_u64(&rng) % 4);
			uint32_t plen = (uint32_t)(fx_rng_u64(&rng) % 512);

			len = HDR + plen;
			for (size_t i = HDR; i < len; i++)
				buf[i] = (unsigned char)fx_rng_u64(&rng);
			unsigned codec = 1 + (unsigned)(it % 4 == 0);
			size_t es = dtype == PSPACE_F64 ? 8 : dtype == PSPACE_F32 ? 4 : 2;

			if (plen >= 4)
				cref_wr_le32(buf + HDR, 0xfd2fb528u); /* zstd magic */
			if (codec == 2 && plen >= 4 * es) {
				/* a plane table that adds up, random raw bits, frames where due */
				size_t left = plen - 4 * es, off = HDR + 4 * es;

				for (size_t b = 0; b < es; b++) {
					uint32_t l = b + 1 < es
					                 ? (uint32_t)(fx_rng_u64(&rng) % (left + 1))
					                 : (uint32_t)left;

					left -= l;
					if (l >= 4)
						cref_wr_le32(buf + off, 0xfd2fb528u);
					off += l;
					cref_wr_le32(
					    buf + HDR + 4 * b,
					    l | (fx_rng_u64(&rng) % 4 == 0 ? 0x80000000u : 0));
				}
			}
			cref_make_header(
			    buf, dtype, codec, codec == 2 ? 1 : (unsigned)(fx_rng_u64(&rng) % 2),
			    rows, cols, plen,
			    dtype == PSPACE_F16 ? (int32_t)(fx_rng_u64(&rng) % 41) - 20 : 0);
		} else {
			len = good_len;
			memcpy(buf, good, len);
			for (int k = 0; k < 1 + (int)(fx_rng_u64(&rng) % 4); k++)
				buf[HDR + fx_rng_u64(&rng) % (len - HDR)] ^=
				    (unsigned char)(1 + fx_rng_u64(&rng) % 255);
		}
		cref_fix_crc(buf, len);
		rc = pspace_tile_decode(c, buf, len, PSPACE_F64, out, 32);
		assert_true(rc == 0 || rc == PSPACE_ECORRUPT);
		rc = pspace_tile_view(c, buf, len, PSPACE_F32, &view, &h);
		assert_true(rc == 0 || rc == PSPACE_ECORRUPT);
	}
	pspace_codec_free(c);
	free(out);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_checksum_flip),
	    cmocka_unit_test(test_codec_parse_rejects),
	    cmocka_unit_test(test_codec_zstd_size_mismatch),
	    cmocka_unit_test(test_codec_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
