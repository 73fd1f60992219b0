/*
 * Tests of the tile codec's pieces and contract: CRC-32C (every library
 * path against a bitwise reference), the byte shuffle by its definition,
 * the raw fallback and zero-copy views, argument checks and the size
 * bound. Round trips, precision, corruption and the zstd-planes layout
 * are in test_codec_precision.c, test_codec_corrupt.c and
 * test_codec_planes.c.
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
#include "codec/crc32c.h"
#include "codec/shuffle.h"

#define HDR PSPACE_TILE_HEADER_SIZE

static uint64_t rng; /* the generator of the test running */

static void test_codec_crc32c_check_value(void **state)
{
	const char *s = "123456789";

	(void)state;
	assert_int_equal(pspace_crc32c(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_sw(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_hw(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_clmul(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_vclmul(0, s, 9), 0xe3069283u);
	assert_int_equal(cref_crc32c(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c(0, s, 0), 0);
	/* continuing from a previous value */
	assert_int_equal(pspace_crc32c(pspace_crc32c(0, s, 4), s + 4, 5), 0xe3069283u);
	assert_int_equal(pspace_crc32c_sw(pspace_crc32c_sw(0, s, 3), s + 3, 6), 0xe3069283u);
	print_message("crc32c: hardware path %s, pclmulqdq %s, vpclmulqdq %s\n",
	              pspace_crc32c_hw_available() ? "available" : "not available",
	              pspace_crc32c_clmul_available() ? "available" : "not available",
	              pspace_crc32c_vclmul_available() ? "available" : "not available");
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

/*
 * @p fn against pspace_crc32c_sw (itself checked against the bitwise
 * reference above): every length 0..1024 at every alignment 0..63, random
 * lengths up to 4 MiB, random initial values, and a CRC continued across
 * random splits (pieces on either side of the folding thresholds).
 */
static void crc_fold_check(crc_fn fn)
{
	size_t cap = 4u << 20;
	unsigned char *mem = malloc(cap + 64), *buf;

	assert_non_null(mem);
	rng = 13;
	for (size_t i = 0; i < cap + 64; i++)
		mem[i] = (unsigned char)fx_rng_u64(&rng);
	/* a 64-byte aligned base, so that buf + a is at alignment a */
	buf = mem + (64 - ((uintptr_t)mem & 63)) % 64;
	for (size_t a = 0; a < 64; a++) {
		for (size_t len = 0; len <= 1024; len++) {
			uint32_t init = (uint32_t)fx_rng_u64(&rng);

			assert_int_equal(fn(init, buf + a, len),
			                 pspace_crc32c_sw(init, buf + a, len));
		}
	}
	for (int t = 0; t < 48; t++) {
		size_t a = fx_rng_u64(&rng) % 64;
		size_t len =
		    (t % 2 == 0) ? fx_rng_u64(&rng) % (cap - 64) : fx_rng_u64(&rng) % 20000;
		uint32_t init = (uint32_t)fx_rng_u64(&rng);

		assert_int_equal(fn(init, buf + a, len), pspace_crc32c_sw(init, buf + a, len));
	}
	for (int t = 0; t < 200; t++) {
		size_t a = fx_rng_u64(&rng) % 64;
		size_t len = fx_rng_u64(&rng) % ((t % 4 == 0) ? cap - 64 : 3000);
		size_t cut = len == 0 ? 0 : fx_rng_u64(&rng) % (len + 1);
		uint32_t init = (uint32_t)fx_rng_u64(&rng);
		uint32_t ref = pspace_crc32c_sw(init, buf + a, len);

		assert_int_equal(fn(fn(init, buf + a, cut), buf + a + cut, len - cut), ref);
	}
	free(mem);
}

static void test_codec_crc32c_clmul_matches_sw(void **state)
{
	(void)state;
	if (!pspace_crc32c_clmul_available())
		print_message("crc32c: no pclmulqdq, checking its fallback\n");
	crc_fold_check(pspace_crc32c_clmul);
}

static void test_codec_crc32c_vclmul_matches_sw(void **state)
{
	(void)state;
	if (!pspace_crc32c_vclmul_available()) {
		print_message("crc32c: no vpclmulqdq/AVX-512 on this CPU, skipped\n");
		skip();
	}
	crc_fold_check(pspace_crc32c_vclmul);
}

/*
 * Rows folded four at a time into four lanes (pspace_crc32c_rows, what the
 * tile kernel does as it reads a raw tile) give the CRC of the rows in
 * order: row lengths from one chunk to a 512-float row, one to 130 groups,
 * continuing a CRC (a tile's header) or from zero.
 */
static void test_codec_crc32c_rows_matches_sw(void **state)
{
	const size_t row_bytes[] = {64, 192, 256, 2048, 64, 2048};
	const size_t groups[] = {1, 2, 3, 7, 130, 128};
	size_t cap = 4 * 2048 * 130;
	unsigned char *buf = malloc(cap + 1);

	(void)state;
	if (!pspace_crc32c_rows_available()) {
		free(buf);
		print_message("crc32c: no vpclmulqdq/AVX-512 on this CPU, skipped\n");
		skip();
	}
	assert_non_null(buf);
	rng = 17;
	for (size_t i = 0; i < cap + 1; i++)
		buf[i] = (unsigned char)fx_rng_u64(&rng);
	for (size_t t = 0; t < sizeof(row_bytes) / sizeof(row_bytes[0]); t++)
		for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
			size_t rb = row_bytes[t], n = 4 * rb * groups[g];
			const unsigned char *rows = buf + (t & 1); /* unaligned rows too */
			uint32_t init = g & 1 ? 0 : (uint32_t)fx_rng_u64(&rng);
			pspace_crc32c_rows s;

			if (n > cap)
				continue;
			pspace_crc32c_rows_init(&s, rb);
			assert_int_equal(pspace_crc32c_rows_finish(&s, init), init);
			for (size_t i = 0; i < groups[g]; i++)
				pspace_crc32c_rows_fold4(&s, rows + 4 * rb * i);
			assert_int_equal(pspace_crc32c_rows_finish(&s, init),
			                 pspace_crc32c_sw(init, rows, n));
			/* one flipped bit anywhere changes it */
			buf[(t & 1) + n / 3] ^= 0x10;
			pspace_crc32c_rows_init(&s, rb);
			for (size_t i = 0; i < groups[g]; i++)
				pspace_crc32c_rows_fold4(&s, rows + 4 * rb * i);
			assert_int_equal(pspace_crc32c_rows_finish(&s, init),
			                 pspace_crc32c_sw(init, rows, n));
			buf[(t & 1) + n / 3] ^= 0x10;
			assert_int_not_equal(pspace_crc32c_rows_finish(&s, init),
			                     pspace_crc32c_sw(init, rows, n));
		}
	free(buf);
}

static void test_codec_crc32c_dispatch_matches_sw(void **state)
{
	(void)state;
	crc_fold_check(pspace_crc32c);
}

/* The CRC of A and B joined from theirs equals the CRC of A followed by B (the bitwise reference).
 */
static void test_codec_crc32c_combine(void **state)
{
	size_t cap = 1u << 20;
	unsigned char *buf = malloc(cap);

	(void)state;
	assert_non_null(buf);
	rng = 11;
	for (size_t i = 0; i < cap; i++)
		buf[i] = (unsigned char)fx_rng_u64(&rng);
	for (int t = 0; t < 100; t++) {
		size_t len = fx_rng_u64(&rng) % ((t % 4 == 0) ? cap : 3000);
		size_t cut = fx_rng_u64(&rng) % (len + 1);
		uint32_t a = pspace_crc32c(0, buf, cut), b = pspace_crc32c(0, buf + cut, len - cut);

		assert_int_equal(pspace_crc32c_combine(a, b, len - cut), cref_crc32c(0, buf, len));
	}
	assert_int_equal(pspace_crc32c_combine(0xe3069283u, 0, 0), 0xe3069283u);
	free(buf);
}

static void test_codec_crc32c_hw_matches_sw(void **state)
{
	size_t cap = 40000;
	unsigned char *buf = malloc(cap + 16);

	(void)state;
	assert_non_null(buf);
	rng = 7;
	for (size_t i = 0; i < cap + 16; i++)
		buf[i] = (unsigned char)fx_rng_u64(&rng);
	for (int t = 0; t < 400; t++) {
		size_t off = fx_rng_u64(&rng) % 16;
		/* mostly short, some past the three-stream threshold (6144 bytes) */
		size_t len = (t % 4 == 0) ? fx_rng_u64(&rng) % cap : fx_rng_u64(&rng) % 300;
		uint32_t init = (t % 3 == 0) ? (uint32_t)fx_rng_u64(&rng) : 0;
		uint32_t ref = cref_crc32c(init, buf + off, len);

		assert_int_equal(pspace_crc32c_sw(init, buf + off, len), ref);
		assert_int_equal(pspace_crc32c_hw(init, buf + off, len), ref);
		assert_int_equal(pspace_crc32c(init, buf + off, len), ref);
	}
	/* exact multiples of the three-stream block, and one byte either side */
	for (size_t len = 6143; len <= 6145 * 4; len += 6144) {
		for (size_t d = 0; d < 3; d++) {
			size_t l = len - 1 + d;
			uint32_t ref = cref_crc32c(0, buf + 3, l);

			assert_int_equal(pspace_crc32c_hw(0, buf + 3, l), ref);
			assert_int_equal(pspace_crc32c_sw(0, buf + 3, l), ref);
		}
	}
	free(buf);
}

static void test_codec_shuffle_definition(void **state)
{
	const size_t sizes[] = {1, 2, 3, 4, 8};
	/* the vector loops take 64 elements at a time: below, at and past them */
	const size_t ns[] = {0, 1, 7, 63, 64, 65, 128, 1001, 4113};

	(void)state;
	rng = 11;
	for (size_t a = 0; a < sizeof(sizes) / sizeof(sizes[0]); a++) {
		for (size_t b = 0; b < sizeof(ns) / sizeof(ns[0]); b++) {
			size_t es = sizes[a], n = ns[b], bytes = es * n;
			unsigned char *in = malloc(bytes + 1), *sh = malloc(bytes + 1);
			unsigned char *back = malloc(bytes + 1);

			assert_true(in && sh && back);
			for (size_t i = 0; i < bytes; i++)
				in[i] = (unsigned char)fx_rng_u64(&rng);
			pspace_shuffle(sh, in, n, es);
			for (size_t i = 0; i < n; i++)
				for (size_t k = 0; k < es; k++)
					assert_int_equal(sh[k * n + i], in[i * es + k]);
			pspace_unshuffle(back, sh, n, es);
			assert_memory_equal(back, in, bytes);
			free(back);
			free(sh);
			free(in);
		}
	}
}

/* bf16 planes widened to float: the bits hi << 24 | lo << 16, for every length class */
static void test_codec_unshuffle_bf16_f32(void **state)
{
	const size_t ns[] = {0, 1, 63, 64, 65, 130, 4113};

	(void)state;
	rng = 12;
	for (size_t b = 0; b < sizeof(ns) / sizeof(ns[0]); b++) {
		size_t n = ns[b];
		unsigned char *lo = malloc(n + 1), *hi = malloc(n + 1);
		float *out = malloc((n + 1) * sizeof(float));
		const void *planes[2] = {lo, hi};

		assert_true(lo && hi && out);
		for (size_t i = 0; i < n; i++) {
			lo[i] = (unsigned char)fx_rng_u64(&rng);
			hi[i] = (unsigned char)fx_rng_u64(&rng);
		}
		pspace_unshuffle_bf16_f32(out, planes, n);
		for (size_t i = 0; i < n; i++) {
			uint32_t u;

			memcpy(&u, &out[i], sizeof(u));
			assert_int_equal(u, (uint32_t)hi[i] << 24 | (uint32_t)lo[i] << 16);
		}
		free(out);
		free(hi);
		free(lo);
	}
}

static void test_codec_raw_fallback(void **state)
{
	const uint32_t rows = 64, cols = 64;
	uint32_t *bits = malloc((size_t)rows * cols * 4);
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile, *view;
	size_t len;
	pspace_tile_header h;
	unsigned char *aligned, *odd;

	(void)state;
	assert_non_null(bits);
	rng = 5;
	/* random bit patterns, finite: incompressible even after the shuffle */
	for (size_t i = 0; i < (size_t)rows * cols; i++) {
		uint32_t u = (uint32_t)fx_rng_u64(&rng);

		if ((u & 0x7f800000u) == 0x7f800000u)
			u &= ~0x00800000u;
		bits[i] = u;
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, bits, rows, cols, cols, &tile, &len),
	                 0);
	assert_int_equal(len, HDR + (size_t)rows * cols * 4);
	assert_int_equal(((const unsigned char *)tile)[6], PSPACE_CODEC_RAW);
	assert_int_equal(((const unsigned char *)tile)[7], 0);
	assert_int_equal(cref_rd_le32((const unsigned char *)tile + 16), (uint32_t)rows * cols * 4);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_RAW);

	aligned = cref_aligned(64, len);
	memcpy(aligned, tile, len);
	assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &view, &h), 0);
	assert_ptr_equal(view, aligned + HDR);
	assert_memory_equal(view, bits, (size_t)rows * cols * 4);

	/* misaligned by one byte: decoded into the context instead, same values */
	odd = cref_aligned(64, len + 1);
	memcpy(odd + 1, tile, len);
	assert_int_equal(pspace_tile_view(c, odd + 1, len, PSPACE_F32, &view, NULL), 0);
	assert_true((const unsigned char *)view < odd || (const unsigned char *)view > odd + len);
	assert_memory_equal(view, bits, (size_t)rows * cols * 4);
	/* and converted from a misaligned raw payload */
	{
		double *d = malloc((size_t)rows * cols * 8);

		assert_non_null(d);
		assert_int_equal(pspace_tile_decode(c, odd + 1, len, PSPACE_F64, d, cols), 0);
		for (size_t i = 0; i < (size_t)rows * cols; i++) {
			float f;

			memcpy(&f, &bits[i], 4);
			assert_true(d[i] == (double)f);
		}
		free(d);
	}

	/* a view of a compressed tile lives in the context and is reused */
	memset(bits, 0, (size_t)rows * cols * 4);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, bits, rows, cols, cols, &tile, &len),
	                 0);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD_PLANES);
	memcpy(aligned, tile, len);
	{
		const void *v1, *v2;

		assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &v1, NULL), 0);
		assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &v2, NULL), 0);
		assert_ptr_equal(v1, v2);
		for (size_t i = 0; i < (size_t)rows * cols; i++)
			assert_true(((const float *)v1)[i] == 0.0f);
	}
	free(odd);
	free(aligned);
	pspace_codec_free(c);
	free(bits);
}

static void test_codec_args(void **state)
{
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	float src[4] = {1, 2, 3, 4}, dst[4];
	const void *tile = (const void *)1;
	size_t len = 1;

	(void)state;
	pspace_codec_free(NULL);
	assert_int_equal(pspace_codec_create(NULL), PSPACE_EINVAL);
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	o.dtype = PSPACE_I64;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_null(tile);
	assert_int_equal(len, 0);
	pspace_codec_opts_default(&o);
	o.level = 1000;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	o.level = 3;
	o.min_ratio = NAN;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_BF16, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 1, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 0, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(
	    pspace_tile_encode(c, &o, PSPACE_F32, src, 0x10000, 0x10000, 0x10000, &tile, &len),
	    PSPACE_EINVAL);
	/* NULL options mean the defaults */
	assert_int_equal(pspace_tile_encode(c, NULL, PSPACE_F32, src, 2, 2, 2, &tile, &len), 0);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F16, dst, 2), PSPACE_EINVAL);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, dst, 1), PSPACE_EINVAL);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, dst, 2), 0);
	assert_memory_equal(dst, src, sizeof(src));
	pspace_codec_free(c);
}

static void test_codec_bound(void **state)
{
	pspace_codec_opts o;

	(void)state;
	pspace_codec_opts_default(&o);
	o.level = 0;
	assert_int_equal(pspace_tile_bound(&o, 37, 53), HDR + 37 * 53 * 4);
	o.dtype = PSPACE_F16;
	assert_int_equal(pspace_tile_bound(&o, 37, 53), HDR + 37 * 53 * 2);
	o.dtype = PSPACE_F64;
	o.level = 3;
	assert_int_equal(pspace_tile_bound(&o, 256, 256), HDR + ZSTD_compressBound(256 * 256 * 8));
	assert_int_equal(pspace_tile_bound(&o, 0x10000, 0x10000), 0);
	assert_int_equal(pspace_tile_bound(NULL, 1, 1), HDR + ZSTD_compressBound(4));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_crc32c_check_value),
	    cmocka_unit_test(test_codec_crc32c_hw_matches_sw),
	    cmocka_unit_test(test_codec_crc32c_combine),
	    cmocka_unit_test(test_codec_crc32c_clmul_matches_sw),
	    cmocka_unit_test(test_codec_crc32c_vclmul_matches_sw),
	    cmocka_unit_test(test_codec_crc32c_rows_matches_sw),
	    cmocka_unit_test(test_codec_crc32c_dispatch_matches_sw),
	    cmocka_unit_test(test_codec_shuffle_definition),
	    cmocka_unit_test(test_codec_unshuffle_bf16_f32),
	    cmocka_unit_test(test_codec_raw_fallback),
	    cmocka_unit_test(test_codec_args),
	    cmocka_unit_test(test_codec_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
