/*
 * Byte shuffle and unshuffle. The fixed-size versions are plain loops with
 * a constant element size so the compiler turns them into vector
 * permutations.
 */
#include "codec/shuffle.h"

#include <stdint.h>
#include <string.h>

static void shuffle2(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	uint8_t *restrict o0 = o, *restrict o1 = o + n;

	for (size_t i = 0; i < n; i++) {
		o0[i] = in[2 * i];
		o1[i] = in[2 * i + 1];
	}
}

static void shuffle4(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	uint8_t *restrict o0 = o, *restrict o1 = o + n, *restrict o2 = o + 2 * n;
	uint8_t *restrict o3 = o + 3 * n;

	for (size_t i = 0; i < n; i++) {
		o0[i] = in[4 * i];
		o1[i] = in[4 * i + 1];
		o2[i] = in[4 * i + 2];
		o3[i] = in[4 * i + 3];
	}
}

static void shuffle8(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *restrict e = in + 8 * i;

		o[i] = e[0];
		o[n + i] = e[1];
		o[2 * n + i] = e[2];
		o[3 * n + i] = e[3];
		o[4 * n + i] = e[4];
		o[5 * n + i] = e[5];
		o[6 * n + i] = e[6];
		o[7 * n + i] = e[7];
	}
}

/*
 * The unshuffles read each plane through its own pointer, so that planes
 * stored raw in a tile are read where they lie and only the decompressed
 * ones pass through a scratch buffer.
 */
#ifdef __SSE2__
/*
 * Unshuffling is on every read of a compressed tile: byte interleaves of
 * 16 elements at a time (SSE2 is part of x86-64), the tail in scalar code.
 */
#include <emmintrin.h>

#define LD(p)    _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

static void unshuffle2(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1];
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i a = LD(i0 + i), b = LD(i1 + i);

		ST(o + 2 * i, _mm_unpacklo_epi8(a, b));
		ST(o + 2 * i + 16, _mm_unpackhi_epi8(a, b));
	}
	for (; i < n; i++) {
		o[2 * i] = i0[i];
		o[2 * i + 1] = i1[i];
	}
}

static void unshuffle4(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1], *restrict i2 = pl[2];
	const uint8_t *restrict i3 = pl[3];
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i ab0 = _mm_unpacklo_epi8(LD(i0 + i), LD(i1 + i));
		__m128i ab1 = _mm_unpackhi_epi8(LD(i0 + i), LD(i1 + i));
		__m128i cd0 = _mm_unpacklo_epi8(LD(i2 + i), LD(i3 + i));
		__m128i cd1 = _mm_unpackhi_epi8(LD(i2 + i), LD(i3 + i));
		uint8_t *e = o + 4 * i;

		ST(e, _mm_unpacklo_epi16(ab0, cd0));
		ST(e + 16, _mm_unpackhi_epi16(ab0, cd0));
		ST(e + 32, _mm_unpacklo_epi16(ab1, cd1));
		ST(e + 48, _mm_unpackhi_epi16(ab1, cd1));
	}
	for (; i < n; i++) {
		o[4 * i] = i0[i];
		o[4 * i + 1] = i1[i];
		o[4 * i + 2] = i2[i];
		o[4 * i + 3] = i3[i];
	}
}

static void unshuffle8(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i p[8], q[8], r[8];
		uint8_t *e = o + 8 * i;

		for (int b = 0; b < 8; b++)
			p[b] = LD(pl[b] + i);
		for (int b = 0; b < 4; b++) { /* byte pairs (0,1) (2,3) (4,5) (6,7) */
			q[2 * b] = _mm_unpacklo_epi8(p[2 * b], p[2 * b + 1]);
			q[2 * b + 1] = _mm_unpackhi_epi8(p[2 * b], p[2 * b + 1]);
		}
		for (int h = 0; h < 2; h++) { /* 4-byte groups 0123 and 4567, elements lo/hi */
			r[4 * h] = _mm_unpacklo_epi16(q[4 * h], q[4 * h + 2]);
			r[4 * h + 1] = _mm_unpackhi_epi16(q[4 * h], q[4 * h + 2]);
			r[4 * h + 2] = _mm_unpacklo_epi16(q[4 * h + 1], q[4 * h + 3]);
			r[4 * h + 3] = _mm_unpackhi_epi16(q[4 * h + 1], q[4 * h + 3]);
		}
		for (int j = 0; j < 4; j++) { /* elements 4j..4j+3: 0123 beside 4567 */
			ST(e + 32 * j, _mm_unpacklo_epi32(r[j], r[4 + j]));
			ST(e + 32 * j + 16, _mm_unpackhi_epi32(r[j], r[4 + j]));
		}
	}
	for (; i < n; i++)
		for (int b = 0; b < 8; b++)
			o[8 * i + b] = pl[b][i];
}
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_UNSHUFFLE 1

#define LD64(p)    _mm512_loadu_si512((const void *)(p))
#define ST64(p, v) _mm512_storeu_si512((void *)(p), (v))

/*
 * 64 4-byte elements from their byte planes a (lowest) .. d, to @p e. The
 * byte and word interleaves work within 128-bit lanes, so lane L of e_j
 * holds elements 16 L + 4 j .. 16 L + 4 j + 3: a transposition of the
 * lanes puts them in order. Half the shuffles of the SSE2 loop a byte, and
 * a quarter of the stores.
 */
__attribute__((always_inline, target("avx512f,avx512bw"))) static inline void
interleave4_avx512(uint8_t *e, __m512i a, __m512i b, __m512i c, __m512i d)
{
	__m512i ab0 = _mm512_unpacklo_epi8(a, b), ab1 = _mm512_unpackhi_epi8(a, b);
	__m512i cd0 = _mm512_unpacklo_epi8(c, d), cd1 = _mm512_unpackhi_epi8(c, d);
	__m512i e0 = _mm512_unpacklo_epi16(ab0, cd0), e1 = _mm512_unpackhi_epi16(ab0, cd0);
	__m512i e2 = _mm512_unpacklo_epi16(ab1, cd1), e3 = _mm512_unpackhi_epi16(ab1, cd1);
	/* t0 = e0.0 e0.1 e1.0 e1.1, t1 = e2.0 e2.1 e3.0 e3.1, t2, t3 lanes 2, 3 */
	__m512i t0 = _mm512_shuffle_i64x2(e0, e1, 0x44), t1 = _mm512_shuffle_i64x2(e2, e3, 0x44);
	__m512i t2 = _mm512_shuffle_i64x2(e0, e1, 0xee), t3 = _mm512_shuffle_i64x2(e2, e3, 0xee);

	ST64(e, _mm512_shuffle_i64x2(t0, t1, 0x88)); /* e0.0 e1.0 e2.0 e3.0 */
	ST64(e + 64, _mm512_shuffle_i64x2(t0, t1, 0xdd));
	ST64(e + 128, _mm512_shuffle_i64x2(t2, t3, 0x88));
	ST64(e + 192, _mm512_shuffle_i64x2(t2, t3, 0xdd));
}

__attribute__((target("avx512f,avx512bw"))) static size_t
unshuffle4_avx512(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	size_t i = 0;

	for (; i + 64 <= n; i += 64)
		interleave4_avx512(o + 4 * i, LD64(pl[0] + i), LD64(pl[1] + i), LD64(pl[2] + i),
		                   LD64(pl[3] + i));
	return i;
}

__attribute__((target("avx512f,avx512bw"))) static size_t
unshuffle2_avx512(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
	const __m512i hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
	size_t i = 0;

	for (; i + 64 <= n; i += 64) {
		__m512i a = LD64(pl[0] + i), b = LD64(pl[1] + i);
		__m512i ab0 = _mm512_unpacklo_epi8(a, b), ab1 = _mm512_unpackhi_epi8(a, b);

		ST64(o + 2 * i, _mm512_permutex2var_epi64(ab0, lo, ab1));
		ST64(o + 2 * i + 64, _mm512_permutex2var_epi64(ab0, hi, ab1));
	}
	return i;
}

/* Planes of bf16 (low byte, high byte) into floats: two zero planes below. */
__attribute__((target("avx512f,avx512bw"))) static size_t
unshuffle_bf16_f32_avx512(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const __m512i z = _mm512_setzero_si512();
	size_t i = 0;

	for (; i + 64 <= n; i += 64)
		interleave4_avx512(o + 4 * i, z, z, LD64(pl[0] + i), LD64(pl[1] + i));
	return i;
}

static int have_avx512bw(void)
{
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("avx512bw") != 0;
	}
	return have;
}
#endif
#else
static void unshuffle2(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1];

	for (size_t i = 0; i < n; i++) {
		o[2 * i] = i0[i];
		o[2 * i + 1] = i1[i];
	}
}

static void unshuffle4(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1], *restrict i2 = pl[2];
	const uint8_t *restrict i3 = pl[3];

	for (size_t i = 0; i < n; i++) {
		o[4 * i] = i0[i];
		o[4 * i + 1] = i1[i];
		o[4 * i + 2] = i2[i];
		o[4 * i + 3] = i3[i];
	}
}

static void unshuffle8(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1], *restrict i2 = pl[2];
	const uint8_t *restrict i3 = pl[3], *restrict i4 = pl[4], *restrict i5 = pl[5];
	const uint8_t *restrict i6 = pl[6], *restrict i7 = pl[7];

	for (size_t i = 0; i < n; i++) {
		uint8_t *restrict e = o + 8 * i;

		e[0] = i0[i];
		e[1] = i1[i];
		e[2] = i2[i];
		e[3] = i3[i];
		e[4] = i4[i];
		e[5] = i5[i];
		e[6] = i6[i];
		e[7] = i7[i];
	}
}

#endif

void pspace_shuffle(void *restrict out, const void *restrict in, size_t n, size_t es)
{
	uint8_t *restrict o = out;
	const uint8_t *restrict s = in;

	switch (es) {
	case 2: shuffle2(o, s, n); break;
	case 4: shuffle4(o, s, n); break;
	case 8: shuffle8(o, s, n); break;
	default:
		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[b * n + i] = s[i * es + b];
		break;
	}
}

void pspace_unshuffle_planes(void *restrict out, const void *const *planes, size_t n, size_t es)
{
	uint8_t *restrict o = out;
	const uint8_t *const *pl = (const uint8_t *const *)planes;

#ifdef HAVE_AVX512_UNSHUFFLE
	const uint8_t *rest[4];

	if ((es == 2 || es == 4) && n >= 64 && have_avx512bw()) {
		size_t done = es == 2 ? unshuffle2_avx512(o, pl, n) : unshuffle4_avx512(o, pl, n);

		for (size_t b = 0; b < es; b++)
			rest[b] = pl[b] + done;
		o += done * es;
		pl = rest;
		n -= done;
	}
#endif
	switch (es) {
	case 2: unshuffle2(o, pl, n); break;
	case 4: unshuffle4(o, pl, n); break;
	case 8: unshuffle8(o, pl, n); break;
	default:
		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[i * es + b] = pl[b][i];
		break;
	}
}

void pspace_unshuffle(void *restrict out, const void *restrict in, size_t n, size_t es)
{
	const uint8_t *s = in;
	const void *planes[PSPACE_SHUFFLE_MAX_ES];

	if (es > PSPACE_SHUFFLE_MAX_ES) {
		uint8_t *restrict o = out;

		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[i * es + b] = s[b * n + i];
		return;
	}
	for (size_t b = 0; b < es; b++)
		planes[b] = s + b * n;
	pspace_unshuffle_planes(out, planes, n, es);
}

void pspace_unshuffle_bf16_f32(float *restrict out, const void *const *planes, size_t n)
{
	const uint8_t *restrict lo = planes[0], *restrict hi = planes[1];
	size_t i = 0;

#ifdef HAVE_AVX512_UNSHUFFLE
	if (have_avx512bw()) {
		const uint8_t *pl[2] = {lo, hi};

		i = unshuffle_bf16_f32_avx512((uint8_t *)out, pl, n);
	}
#endif
	for (; i < n; i++) {
		uint32_t u = (uint32_t)hi[i] << 24 | (uint32_t)lo[i] << 16;

		memcpy(out + i, &u, sizeof(u));
	}
}
