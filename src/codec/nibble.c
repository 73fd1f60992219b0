/*
 * Nibble planes (nibble.h): sampling a plane, coding and decoding it. The
 * decoder expands 64 codes at a time into bytes and looks them up in the
 * dictionary with one byte shuffle; escapes are filled in with an expanding
 * load (AVX-512 VBMI2) or one by one (AVX2), a few per hundred bytes.
 */
#include "codec/nibble.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* Sampled planes: runs of this many bytes, one in every SAMPLE_EVERY. */
#define SAMPLE_RUN   256
#define SAMPLE_EVERY 8
#define SAMPLE_ALL   ((size_t)64 << 10)

#ifdef HAVE_X86
/*
 * What this CPU runs: 0 portable, 1 AVX2, 2 AVX-512 BW + VBMI2 (decode),
 * 3 and VBMI as well (encode). Racing first calls store the same value.
 */
static int cpu_level(void)
{
	static int level = -1;

	if (level < 0) {
		int l = 0;

		__builtin_cpu_init();
		if (__builtin_cpu_supports("avx2"))
			l = 1;
		if (l == 1 && __builtin_cpu_supports("avx512bw") &&
		    __builtin_cpu_supports("avx512vbmi2"))
			l = 2;
		if (l == 2 && __builtin_cpu_supports("avx512vbmi"))
			l = 3;
		level = l;
	}
	return level;
}
#endif

static void count(uint32_t h[4][256], const uint8_t *p, size_t n)
{
	size_t i = 0;

	/* four tables: consecutive equal bytes do not wait on one counter */
	for (; i + 4 <= n; i += 4) {
		h[0][p[i]]++;
		h[1][p[i + 1]]++;
		h[2][p[i + 2]]++;
		h[3][p[i + 3]]++;
	}
	for (; i < n; i++)
		h[0][p[i]]++;
}

/*
 * log2(c) for c >= 1: the exponent, plus log2(1 + m) for the mantissa m
 * in [0, 1) as 2 atanh(s) / ln 2 with s = m / (2 + m) < 1/3, three terms
 * of the series (error below 1e-4). A few cycles where libm's log2 takes
 * tens: a tile of noise asks 1024 of them.
 */
static double log2_approx(uint32_t c)
{
	int e = 31 - __builtin_clz(c);
	double m = (double)c / (double)(UINT32_C(1) << e) - 1.0, t = m / (2.0 + m), t2 = t * t;

	return e + 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 / 5.0)) * 1.4426950408889634;
}

void pspace_plane_sample(pspace_plane_stats *s, const uint8_t *p, size_t n)
{
	uint32_t h[4][256];
	double sum = 0.0;

	memset(h, 0, sizeof(h));
	memset(s, 0, sizeof(*s));
	if (n <= SAMPLE_ALL) {
		count(h, p, n);
	} else {
		for (size_t off = 0; off < n; off += SAMPLE_RUN * SAMPLE_EVERY)
			count(h, p + off, n - off < SAMPLE_RUN ? n - off : SAMPLE_RUN);
	}
	for (int v = 0; v < 256; v++) {
		uint32_t c = h[0][v] + h[1][v] + h[2][v] + h[3][v];

		s->count[v] = c;
		s->total += c;
		if (c > 0)
			sum += c * log2_approx(c);
	}
	/* H = log2 N - (1/N) sum c log2 c */
	if (s->total > 0)
		s->bits = log2_approx(s->total) - sum / s->total;
	if (s->bits < 0.0)
		s->bits = 0.0;
}

void pspace_plane_dict(pspace_plane_stats *s)
{
	uint32_t c[256];
	uint64_t top = 0;

	memcpy(c, s->count, sizeof(c));
	memset(s->dict, 0, sizeof(s->dict));
	s->ncodes = 0;
	while (s->ncodes < PSPACE_NIBBLE_ESC) {
		int best = -1;

		for (int v = 0; v < 256; v++)
			if (c[v] > 0 && (best < 0 || c[v] > c[best]))
				best = v;
		if (best < 0)
			break;
		s->dict[s->ncodes++] = (uint8_t)best;
		top += c[best];
		c[best] = 0;
	}
	s->escapes = s->total > 0 ? (double)(s->total - top) / (double)s->total : 0.0;
}

/*
 * Codes bytes [i, n) of the plane, given @p map (byte -> code) and the
 * escapes written so far, @p e; @return the plane length or 0 (no room).
 * Branch-free for the escapes: each byte is stored at the next escape slot
 * and the slot advances only for code 15 (a few per hundred, at random).
 */
static size_t encode_tail(uint8_t *dst, size_t cap, const uint8_t *p, size_t i, size_t n,
                          const uint8_t *map, size_t e)
{
	uint8_t *codes = dst + PSPACE_NIBBLE_DICT;
	size_t base = pspace_nibble_size(n, 0);

	for (; i < n; i += 2) {
		uint8_t a = map[p[i]], b = i + 1 < n ? map[p[i + 1]] : 0;

		codes[i / 2] = (uint8_t)(a | b << 4);
		if (cap - base - e < 2) { /* careful near the end of the room */
			if ((size_t)(a == PSPACE_NIBBLE_ESC) + (b == PSPACE_NIBBLE_ESC) >
			    cap - base - e)
				return 0;
			if (a == PSPACE_NIBBLE_ESC)
				dst[base + e++] = p[i];
			if (b == PSPACE_NIBBLE_ESC)
				dst[base + e++] = p[i + 1];
			continue;
		}
		dst[base + e] = p[i];
		e += a == PSPACE_NIBBLE_ESC;
		dst[base + e] = b == PSPACE_NIBBLE_ESC ? p[i + 1] : 0;
		e += b == PSPACE_NIBBLE_ESC;
	}
	return base + e;
}

#ifdef HAVE_X86
/*
 * 64 bytes at a time: the byte -> code map as four 64-entry tables
 * (vpermi2b over two pairs, chosen by the top bit), the codes packed two
 * to a byte, the escaped bytes compressed out in order (VBMI2).
 */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt"))) static size_t
encode_avx512(uint8_t *dst, size_t cap, const uint8_t *p, size_t n, const uint8_t *map)
{
	uint8_t *codes = dst + PSPACE_NIBBLE_DICT;
	size_t base = pspace_nibble_size(n, 0), e = 0, i = 0;
	const __m512i t0 = _mm512_loadu_si512(map), t1 = _mm512_loadu_si512(map + 64);
	const __m512i t2 = _mm512_loadu_si512(map + 128), t3 = _mm512_loadu_si512(map + 192);
	const __m512i escape = _mm512_set1_epi8(PSPACE_NIBBLE_ESC), low = _mm512_set1_epi16(0x0f);

	for (; i + 64 <= n; i += 64) {
		__m512i v = _mm512_loadu_si512(p + i);
		__m512i lo = _mm512_permutex2var_epi8(t0, v, t1),
		        hi = _mm512_permutex2var_epi8(t2, v, t3);
		__m512i c = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
		__mmask64 m = _mm512_cmpeq_epi8_mask(c, escape);
		/* word j = codes 2j (low byte) and 2j+1 (high byte) -> one byte */
		__m512i w = _mm512_or_si512(_mm512_and_si512(c, low), _mm512_srli_epi16(c, 4));

		_mm256_storeu_si256((__m256i *)(codes + i / 2), _mm512_cvtepi16_epi8(w));
		if (m != 0) {
			size_t k = (size_t)_mm_popcnt_u64(m);

			if (k > cap - base - e)
				return 0;
			_mm512_mask_compressstoreu_epi8(dst + base + e, m, v);
			e += k;
		}
	}
	return encode_tail(dst, cap, p, i, n, map, e);
}
#endif

/* pspace_nibble_encode(), with vector instructions if @p vec and the CPU has them. */
static size_t encode(uint8_t *dst, size_t cap, const uint8_t *p, size_t n, const uint8_t *dict,
                     unsigned ncodes, int vec)
{
	_Alignas(64) uint8_t map[256];

	if (cap < pspace_nibble_size(n, 0) || ncodes > PSPACE_NIBBLE_ESC)
		return 0;
	memset(map, PSPACE_NIBBLE_ESC, sizeof(map));
	memset(dst, 0, PSPACE_NIBBLE_DICT);
	/* backwards: a byte listed twice takes its first code */
	for (unsigned k = ncodes; k-- > 0;) {
		map[dict[k]] = (uint8_t)k;
		dst[k] = dict[k];
	}
#ifdef HAVE_X86
	if (vec && cpu_level() >= 3)
		return encode_avx512(dst, cap, p, n, map);
#endif
	(void)vec;
	return encode_tail(dst, cap, p, 0, n, map, 0);
}

size_t pspace_nibble_encode(uint8_t *dst, size_t cap, const uint8_t *p, size_t n,
                            const uint8_t *dict, unsigned ncodes)
{
	return encode(dst, cap, p, n, dict, ncodes, 1);
}

size_t pspace_nibble_encode_portable(uint8_t *dst, size_t cap, const uint8_t *p, size_t n,
                                     const uint8_t *dict, unsigned ncodes)
{
	return encode(dst, cap, p, n, dict, ncodes, 0);
}

/* Checks what the plane's length fixes; @return 0 and *e, its escape count, or -1. */
static int check_plane(const uint8_t *src, size_t n, size_t len, size_t *e)
{
	size_t base = pspace_nibble_size(n, 0);

	if (len < base || src[PSPACE_NIBBLE_ESC] != 0)
		return -1;
	if ((n & 1) != 0 && (src[base - 1] >> 4) != 0)
		return -1;
	*e = len - base;
	return 0;
}

/*
 * Bytes [i, n) of a plane, its escapes from @p ei on: the end of every
 * decoder. @return 0 when exactly the plane's @p e escapes were used, or -1.
 */
static int decode_tail(uint8_t *dst, size_t i, size_t n, const uint8_t *src, size_t ei, size_t e)
{
	const uint8_t *codes = src + PSPACE_NIBBLE_DICT, *esc = src + pspace_nibble_size(n, 0);

	for (; i < n; i++) {
		unsigned c = (codes[i / 2] >> (4 * (i & 1))) & 0xfu;

		if (c != PSPACE_NIBBLE_ESC) {
			dst[i] = src[c];
		} else {
			if (ei == e)
				return -1;
			dst[i] = esc[ei++];
		}
	}
	return ei == e ? 0 : -1;
}

int pspace_nibble_decode_portable(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
	size_t e;

	if (check_plane(src, n, len, &e) != 0)
		return -1;
	return decode_tail(dst, 0, n, src, 0, e);
}

#ifdef HAVE_X86
__attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt"))) static int
decode_avx512(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
	const uint8_t *codes = src + PSPACE_NIBBLE_DICT, *esc = src + pspace_nibble_size(n, 0);
	const __m512i dict = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)src));
	const __m512i low = _mm512_set1_epi16(0x0f), escape = _mm512_set1_epi8(PSPACE_NIBBLE_ESC);
	size_t e, ei = 0, i = 0;

	if (check_plane(src, n, len, &e) != 0)
		return -1;
	for (; i + 64 <= n; i += 64) {
		/* 32 code bytes -> 64 codes in order: low nibble, then high, per byte */
		__m512i w =
		    _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + i / 2)));
		__m512i c = _mm512_or_si512(_mm512_and_si512(w, low),
		                            _mm512_slli_epi16(_mm512_srli_epi16(w, 4), 8));
		__m512i v = _mm512_shuffle_epi8(dict, c);
		__mmask64 m = _mm512_cmpeq_epi8_mask(c, escape);

		if (m != 0) {
			size_t k = (size_t)_mm_popcnt_u64(m);

			if (k > e - ei)
				return -1;
			v = _mm512_mask_expandloadu_epi8(v, m, esc + ei);
			ei += k;
		}
		_mm512_storeu_si512(dst + i, v);
	}
	return decode_tail(dst, i, n, src, ei, e);
}

__attribute__((target("avx2,popcnt,bmi"))) static int decode_avx2(uint8_t *dst, size_t n,
                                                                  const uint8_t *src, size_t len)
{
	const uint8_t *codes = src + PSPACE_NIBBLE_DICT, *esc = src + pspace_nibble_size(n, 0);
	const __m256i dict = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)src));
	const __m256i low = _mm256_set1_epi16(0x0f), escape = _mm256_set1_epi8(PSPACE_NIBBLE_ESC);
	size_t e, ei = 0, i = 0;

	if (check_plane(src, n, len, &e) != 0)
		return -1;
	for (; i + 32 <= n; i += 32) {
		__m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(codes + i / 2)));
		__m256i c = _mm256_or_si256(_mm256_and_si256(w, low),
		                            _mm256_slli_epi16(_mm256_srli_epi16(w, 4), 8));
		uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(c, escape));

		_mm256_storeu_si256((__m256i *)(dst + i), _mm256_shuffle_epi8(dict, c));
		if (m == 0)
			continue;
		if ((size_t)_mm_popcnt_u32(m) > e - ei)
			return -1;
		for (; m != 0; m &= m - 1)
			dst[i + (size_t)__builtin_ctz(m)] = esc[ei++];
	}
	return decode_tail(dst, i, n, src, ei, e);
}
#endif

int pspace_nibble_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
#ifdef HAVE_X86
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2")
		           ? 2
		       : __builtin_cpu_supports("avx2") ? 1
		                                        : 0;
	}
	if (have == 2)
		return decode_avx512(dst, n, src, len);
	if (have == 1)
		return decode_avx2(dst, n, src, len);
#endif
	return pspace_nibble_decode_portable(dst, n, src, len);
}
