/*
 * Tests of nibble planes (codec 3): the coder against the bytes it coded
 * (every length up to past a vector block, escapes anywhere, both the
 * vector and the portable decoder), the encoder's choice of plane kind on
 * data of known entropy, Fisher-like tiles read back by the test's own
 * reader of the documented layout (helpers/cref.c), and malformed nibble
 * planes with valid checksums rejected naming the plane.
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

#include "codec/nibble.h"
#include "cref.h"
#include "fixture.h"
#include "pspace/codec.h"

#define HDR PSPACE_TILE_HEADER_SIZE

static uint64_t rng = 1;

/* A byte drawn from @p ncommon values most of the time, any byte with probability @p rare. */
static uint8_t draw(unsigned ncommon, double rare)
{
	if (fx_rng_unif(&rng) < rare)
		return (uint8_t)(fx_rng_u64(&rng) & 0xff);
	return (uint8_t)(0x30 + fx_rng_u64(&rng) % ncommon);
}

/*
 * Codes @p p both ways (the same plane) and decodes it both ways: the
 * bytes come back; a room one byte short is refused. @return the plane length.
 */
static size_t roundtrip(const uint8_t *p, size_t n)
{
	pspace_plane_stats st;
	size_t cap = pspace_nibble_size(n, n), len;
	uint8_t *z = malloc(cap), *z2 = malloc(cap), *a = malloc(n + 1), *b = malloc(n + 1);

	assert_true(z && z2 && a && b);
	pspace_plane_sample(&st, p, n);
	pspace_plane_dict(&st);
	len = pspace_nibble_encode(z, cap, p, n, st.dict, st.ncodes);
	assert_true(len >= pspace_nibble_size(n, 0) && len <= cap);
	assert_int_equal(pspace_nibble_encode_portable(z2, cap, p, n, st.dict, st.ncodes), len);
	assert_memory_equal(z, z2, len);
	assert_int_equal(pspace_nibble_encode(z2, len, p, n, st.dict, st.ncodes), len);
	assert_int_equal(pspace_nibble_encode_portable(z2, len, p, n, st.dict, st.ncodes), len);
	assert_memory_equal(z, z2, len);
	assert_int_equal(pspace_nibble_encode(z2, len - 1, p, n, st.dict, st.ncodes), 0);
	assert_int_equal(pspace_nibble_encode_portable(z2, len - 1, p, n, st.dict, st.ncodes), 0);
	a[n] = b[n] = 0xa5;
	assert_int_equal(pspace_nibble_decode(a, n, z, len), 0);
	assert_int_equal(pspace_nibble_decode_portable(b, n, z, len), 0);
	assert_memory_equal(a, p, n);
	assert_memory_equal(b, p, n);
	assert_int_equal(a[n], 0xa5); /* nothing written past the plane */
	assert_int_equal(b[n], 0xa5);
	/* one byte short or long: the escape count no longer matches */
	assert_int_equal(pspace_nibble_decode(a, n, z, len - 1), -1);
	assert_int_equal(pspace_nibble_decode_portable(a, n, z, len - 1), -1);
	if (len < cap) {
		assert_int_equal(pspace_nibble_decode(a, n, z, len + 1), -1);
		assert_int_equal(pspace_nibble_decode_portable(a, n, z, len + 1), -1);
	}
	free(b);
	free(a);
	free(z2);
	free(z);
	return len;
}

static void test_codec_nibble_roundtrip(void **state)
{
	static const size_t sizes[] = {1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4097};
	uint8_t *p = malloc(200000);

	(void)state;
	assert_non_null(p);
	rng = 41;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n = sizes[s];

		for (unsigned ncommon = 1; ncommon <= 20; ncommon += 3) {
			for (int r = 0; r < 3; r++) {
				double rare = r == 0 ? 0.0 : r == 1 ? 0.05 : 0.6;

				for (size_t i = 0; i < n; i++)
					p[i] = draw(ncommon, rare);
				roundtrip(p, n);
			}
		}
	}
	/* escapes only, and escapes at both ends of every vector block */
	for (size_t i = 0; i < 200; i++)
		p[i] = (uint8_t)i;
	roundtrip(p, 200);
	{
		size_t e = 0;

		for (size_t i = 0; i < 256; i++)
			p[i] = (i % 64 == 0 || i % 64 == 63 || i % 32 == 31) ? (uint8_t)(0xc0 + e++)
			                                                     : (uint8_t)(i % 15);
		assert_int_equal(e, 12);
		assert_int_equal(roundtrip(p, 256), pspace_nibble_size(256, 12));
	}
	/* a sampled plane (beyond 64 KiB): bytes the sample missed become escapes */
	for (size_t i = 0; i < 200000; i++)
		p[i] = draw(14, i % 2048 >= 256 && i % 997 == 0 ? 1.0 : 0.0);
	roundtrip(p, 200000);
	free(p);
}

/* The sample's statistics: a plane of 4 equal-frequency bytes has 2 bits, no escapes. */
static void test_codec_nibble_sample(void **state)
{
	uint8_t p[4000];
	pspace_plane_stats st;

	(void)state;
	for (size_t i = 0; i < sizeof(p); i++)
		p[i] = (uint8_t)(10 * (i % 4));
	pspace_plane_sample(&st, p, sizeof(p));
	pspace_plane_dict(&st);
	assert_true(fabs(st.bits - 2.0) < 0.01);
	assert_true(st.escapes == 0.0);
	assert_int_equal(st.ncodes, 4);
	assert_int_equal(st.dict[15], 0);
	for (size_t i = 0; i < sizeof(p); i++)
		p[i] = (uint8_t)(i % 32);
	pspace_plane_sample(&st, p, sizeof(p));
	pspace_plane_dict(&st);
	assert_true(fabs(st.bits - 5.0) < 0.01);
	assert_true(fabs(st.escapes - 17.0 / 32.0) < 1e-12);
	assert_int_equal(st.ncodes, 15);
	assert_int_equal(st.dict[0], 0); /* ties to the smaller byte */
	assert_int_equal(st.dict[14], 14);
	/* uneven counts: the entropy against libm's */
	rng = 53;
	for (int r = 0; r < 20; r++) {
		double h = 0.0;
		uint32_t cnt[256] = {0};

		for (size_t i = 0; i < sizeof(p); i++)
			cnt[p[i] = draw(1 + (unsigned)r * 12 % 200, r % 3 * 0.1)]++;
		for (int v = 0; v < 256; v++)
			if (cnt[v] > 0)
				h -= cnt[v] / 4000.0 * log2(cnt[v] / 4000.0);
		pspace_plane_sample(&st, p, sizeof(p));
		assert_true(fabs(st.bits - h) < 1e-3);
	}
}

/* Encodes @p src (rows x cols f32) with @p o; checks the tile by the test's reader. */
static void encode_read(pspace_codec *c, const pspace_codec_opts *o, const float *src,
                        uint32_t rows, uint32_t cols, struct cref_planes *pi, unsigned *codec)
{
	const void *tile;
	size_t len, n = (size_t)rows * cols;
	double *vals = malloc(n * sizeof(*vals));
	float *back = malloc(n * sizeof(*back));

	assert_true(vals && back);
	assert_int_equal(pspace_tile_encode(c, o, PSPACE_F32, src, rows, cols, cols, &tile, &len),
	                 0);
	*codec = ((const unsigned char *)tile)[6];
	cref_planes_read(tile, len, pi, vals);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, back, cols), 0);
	for (size_t i = 0; i < n; i++) {
		double want = o->dtype == PSPACE_F32 ? (double)src[i] : cref_round_sig(src[i], 8);

		assert_true(vals[i] == want);
		assert_true((double)back[i] == want);
	}
	free(back);
	free(vals);
}

/*
 * Which kind each plane gets: Fisher-like magnitudes (lognormal, random
 * signs) put the sign-and-exponent plane in nibbles and the mantissa
 * bytes raw; the same at level 10 gives zstd (codec 2); a plane of mostly
 * one byte stays zstd.
 */
static void test_codec_nibble_choice(void **state)
{
	enum { R = 200, C = 301, N = R * C }; /* odd n: a padding nibble */
	float *src = malloc(N * sizeof(*src));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	struct cref_planes pi;
	unsigned codec;

	(void)state;
	assert_non_null(src);
	rng = 43;
	for (size_t i = 0; i < N; i++)
		src[i] = (float)(exp(2.0 * fx_rng_normal(&rng)) *
		                 (fx_rng_unif(&rng) < 0.5 ? -1e-3 : 1e-3));
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	encode_read(c, &o, src, R, C, &pi, &codec);
	assert_int_equal(codec, PSPACE_CODEC_PLANES);
	assert_true(pi.raw[0] && pi.raw[1] && pi.raw[2]);
	assert_true(pi.nibble[3]);
	assert_true(pi.len[3] < N * 0.6);
	o.dtype = PSPACE_BF16;
	encode_read(c, &o, src, R, C, &pi, &codec);
	assert_int_equal(codec, PSPACE_CODEC_PLANES);
	assert_true(pi.raw[0] && pi.nibble[1]);
	/* the smallest tiles asked for: zstd */
	o.dtype = PSPACE_F32;
	o.level = 10;
	encode_read(c, &o, src, R, C, &pi, &codec);
	assert_int_equal(codec, PSPACE_CODEC_ZSTD_PLANES);
	assert_false(pi.raw[3] || pi.nibble[3]);
	/* mostly 1.0, some 2.0: far below 4 bits, zstd */
	o.level = 1;
	for (size_t i = 0; i < N; i++)
		src[i] = fx_rng_unif(&rng) < 0.05 ? 2.0f : 1.0f;
	encode_read(c, &o, src, R, C, &pi, &codec);
	assert_int_equal(codec, PSPACE_CODEC_ZSTD_PLANES);
	for (int b = 0; b < 4; b++)
		assert_false(pi.raw[b] || pi.nibble[b]);
	pspace_codec_free(c);
	free(src);
}

/* Decodes a doctored tile (checksum recomputed): ECORRUPT naming @p needle. */
static void expect_corrupt(pspace_codec *c, const unsigned char *t, size_t len, const char *needle)
{
	unsigned char *dup = malloc(len); /* exactly the tile: any overread is seen */
	float *out = malloc(16 * 17 * sizeof(*out));
	const void *view;

	assert_true(dup && out);
	memcpy(dup, t, len);
	cref_fix_crc(dup, len);
	if (pspace_tile_decode(c, dup, len, PSPACE_F32, out, 17) != PSPACE_ECORRUPT) {
		print_error("decoded: wanted \"%s\"\n", needle);
		fail();
	}
	if (strstr(pspace_errdetail(), needle) == NULL) {
		print_error("detail \"%s\" lacks \"%s\"\n", pspace_errdetail(), needle);
		fail();
	}
	assert_int_equal(pspace_tile_view(c, dup, len, PSPACE_F64, &view, NULL), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), needle));
	free(out);
	free(dup);
}

/*
 * A hand-made codec 3 tile of 15 x 17 f32 (odd n): planes 0-2 raw, plane
 * 3 nibbles with escapes. Each doctored version is rejected naming plane
 * 3; the checksum alone (unfixed) is caught as a mismatch.
 */
static void test_codec_nibble_corrupt(void **state)
{
	enum { N = 15 * 17 };
	unsigned char t[HDR + 16 + 3 * N + N], *q, *good;
	uint8_t top[N], dict[15];
	float out[N];
	pspace_codec *c = NULL;
	size_t off = HDR + 16, nl, len;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	rng = 47;
	for (int b = 0; b < 3; b++) {
		cref_wr_le32(t + HDR + 4 * b, 0x80000000u | N);
		for (size_t i = 0; i < N; i++)
			t[off + i] = (uint8_t)(fx_rng_u64(&rng) & 0xff);
		off += N;
	}
	for (int k = 0; k < 15; k++)
		dict[k] = (uint8_t)(0x38 + k);
	for (size_t i = 0; i < N; i++)
		top[i] = i % 9 == 4 ? (uint8_t)(0xb0 + i % 7) : dict[i % 15];
	nl = pspace_nibble_encode(t + off, N, top, N, dict, 15);
	assert_int_equal(nl, 16 + (N + 1) / 2 + (N + 4) / 9);
	cref_wr_le32(t + HDR + 12, 0x40000000u | (uint32_t)nl);
	len = off + nl;
	cref_make_header(t, PSPACE_F32, PSPACE_CODEC_PLANES, 1, 15, 17, (uint32_t)(len - HDR), 0);
	cref_fix_crc(t, len);
	if (pspace_tile_decode(c, t, len, PSPACE_F32, out, 17) != 0) {
		print_error("%s\n", pspace_errdetail());
		fail();
	}
	for (size_t i = 0; i < N; i++) {
		uint32_t u;

		memcpy(&u, &out[i], 4);
		assert_int_equal(u >> 24, top[i]);
		assert_int_equal(u & 0xffu, t[HDR + 16 + i]);
	}
	good = malloc(len);
	assert_non_null(good);
	memcpy(good, t, len);
	q = t + off;
	/* the checksum covers the nibble plane */
	q[20] ^= 1;
	assert_int_equal(pspace_tile_verify(t, len), PSPACE_ECORRUPT);
	/* an escape code more than there are escape bytes, and one fewer */
	memcpy(t, good, len);
	q[16] = (uint8_t)((q[16] & 0xf0) | 15);
	expect_corrupt(c, t, len, "plane 3: nibble plane");
	memcpy(t, good, len);
	assert_int_equal(q[16 + 2] & 0x0f, 15); /* element 4 is escaped: now code 0 */
	q[16 + 2] = (uint8_t)(q[16 + 2] & 0xf0);
	expect_corrupt(c, t, len, "plane 3: nibble plane");
	/* the reserved dictionary byte, the padding nibble of odd n */
	memcpy(t, good, len);
	q[15] = 1;
	expect_corrupt(c, t, len, "malformed");
	memcpy(t, good, len);
	q[16 + (N + 1) / 2 - 1] |= 0x10;
	expect_corrupt(c, t, len, "malformed");
	/* table lengths: shorter than dictionary and codes, or not below n */
	memcpy(t, good, len);
	cref_wr_le32(t + HDR + 12, 0x40000000u | (uint32_t)(16 + (N + 1) / 2 - 1));
	expect_corrupt(c, t, len, "plane 3: nibble plane of 143 bytes, must be 144..254");
	memcpy(t, good, len);
	cref_wr_le32(t + HDR + 12, 0x40000000u | N);
	expect_corrupt(c, t, len, "plane 3: nibble plane of 255 bytes");
	/* the nibble bit means nothing to codec 2: a zstd frame of 2^30 + nl bytes */
	memcpy(t, good, len);
	t[6] = PSPACE_CODEC_ZSTD_PLANES;
	expect_corrupt(c, t, len, "plane 3: zstd frame of");
	free(good);
	pspace_codec_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_nibble_roundtrip),
	    cmocka_unit_test(test_codec_nibble_sample),
	    cmocka_unit_test(test_codec_nibble_choice),
	    cmocka_unit_test(test_codec_nibble_corrupt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
