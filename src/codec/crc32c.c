/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used for the
 * tile checksum: a portable slicing-by-8 version, one using the SSE4.2
 * crc32 instruction on three interleaved streams, and two folding with
 * carry-less multiplication (pclmulqdq on 128-bit lanes, vpclmulqdq on
 * 512-bit ones), chosen at run time.
 */
#include "codec/crc32c.h"

#include <string.h>

#include "pspace/codec.h"

#include "codec/crc32c_shift.h"
#include "codec/crc32c_table.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pspace_crc32c_sw assumes a little-endian host"
#endif

uint32_t pspace_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff] ^
		      crc32c_table[5][(w >> 16) & 0xff] ^ crc32c_table[4][(w >> 24) & 0xff] ^
		      crc32c_table[3][(w >> 32) & 0xff] ^ crc32c_table[2][(w >> 40) & 0xff] ^
		      crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	return ~crc;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_HW 1
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#include "codec/crc32c_fold.h"
#include "codec/crc32c_lanes.h"

/*
 * The hardware path runs three streams of BLK bytes at once (the crc32
 * instruction has a latency of 3 cycles and a throughput of 1), then joins
 * them. The CRC register is linear over GF(2): running zero bytes through
 * it multiplies it by x^(8n) mod P, so stream a is shifted over 2*BLK
 * bytes and stream b over BLK bytes; the tables in crc32c_shift.h
 * multiply by x^(8*BLK) and x^(16*BLK) mod P (BLK = 2048).
 */
#define BLK 2048

/* x * K mod P for the constant K of @p t (see crc32c_shift.h): linear, so bytewise tables. */
static inline uint32_t shift(const uint32_t t[4][256], uint32_t x)
{
	return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw_run(uint32_t crc,
                                                                const unsigned char *p, size_t len)
{
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = _mm_crc32_u8(crc, *p++);
		len--;
	}
	while (len >= 3 * BLK) {
		uint64_t a = crc, b = 0, c = 0;
		uint64_t wa, wb, wc;

		for (size_t i = 0; i < BLK; i += 8) {
			if ((i & 63) == 0) {
				_mm_prefetch((const char *)p + 3 * BLK + i, _MM_HINT_T0);
				_mm_prefetch((const char *)p + 4 * BLK + i, _MM_HINT_T0);
				_mm_prefetch((const char *)p + 5 * BLK + i, _MM_HINT_T0);
			}
			memcpy(&wa, p + i, 8);
			memcpy(&wb, p + BLK + i, 8);
			memcpy(&wc, p + 2 * BLK + i, 8);
			a = _mm_crc32_u64(a, wa);
			b = _mm_crc32_u64(b, wb);
			c = _mm_crc32_u64(c, wc);
		}
		crc = shift(crc32c_shift2, (uint32_t)a) ^ shift(crc32c_shift1, (uint32_t)b) ^
		      (uint32_t)c;
		p += 3 * BLK;
		len -= 3 * BLK;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		crc = (uint32_t)_mm_crc32_u64(crc, w);
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		crc = _mm_crc32_u8(crc, *p++);
		len--;
	}
	return crc;
}

/*
 * The folding paths keep the message in 128-bit lanes and fold each lane
 * forward over the bytes that follow it (constants and their derivation in
 * crc32c_fold.h); what is left at the end is one lane X with
 * X x^32 = the CRC register (mod P). With X = H x^64 + L (H its low
 * quadword), crc32q(c, w) = c x^64 + w x^32 mod P gives
 * crc32q(crc32q(0, H), L) = H x^96 + L x^32 = X x^32: two crc32
 * instructions replace the Barrett reduction. The incoming register is
 * xored into the first 32 bits of the message (c x^n = those bits' place).
 */
#define CLMUL_TARGET  __attribute__((target("sse4.2,pclmul")))
#define VCLMUL_TARGET __attribute__((target("sse4.2,pclmul,avx512f,vpclmulqdq")))

/*
 * Prefetch distance of the folding loops in bytes: about one memory latency
 * ahead at ~13 GB/s. Measured on 1 GiB (noisy, shared machine): 5-35% over
 * no prefetch, 1024-4096 within noise of each other.
 */
#define PREFETCH 2048

#define FEAT_SSE42  1
#define FEAT_CLMUL  2
#define FEAT_VCLMUL 4

static atomic_int features = -1;

/*
 * cpuid leaf 1 ecx: SSE4.2 (bit 20), PCLMULQDQ (1), OSXSAVE (27); leaf 7
 * ebx: AVX512F (16), ecx: VPCLMULQDQ (10); and for the zmm registers the
 * OS's XSAVE support (XCR0: SSE, AVX, opmask and zmm state, mask 0xe6).
 */
static int detect_features(void)
{
	unsigned a, b, c, d, xlo = 0, xhi = 0;
	int f = 0;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (c & (1u << 20))
		f |= FEAT_SSE42;
	if ((f & FEAT_SSE42) && (c & (1u << 1)))
		f |= FEAT_CLMUL;
	if ((f & FEAT_CLMUL) && (c & (1u << 27))) {
		__asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
		if ((xlo & 0xe6) == 0xe6 && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
		    (b & (1u << 16)) && (c & (1u << 10)))
			f |= FEAT_VCLMUL;
	}
	(void)xhi;
	return f;
}

static int get_features(void)
{
	int f = atomic_load_explicit(&features, memory_order_relaxed);

	if (f < 0) {
		f = detect_features();
		atomic_store_explicit(&features, f, memory_order_relaxed);
	}
	return f;
}

static inline void prefetch(const unsigned char *p)
{
	/* computed as an integer: the address may lie past the buffer (prefetch tolerates it) */
	_mm_prefetch((const char *)((uintptr_t)p + PREFETCH), _MM_HINT_T0);
}

/* @p k holds the constant pair of a fold (crc32c_fold.h): lo in quadword 0, hi in quadword 1. */
CLMUL_TARGET static inline __m128i fold16(__m128i x, __m128i k)
{
	return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

CLMUL_TARGET static inline __m128i pair16(uint32_t lo, uint32_t hi)
{
	return _mm_set_epi64x((long long)hi, (long long)lo);
}

/* Folds the 16-byte blocks left after lane @p x, reduces it, and runs the last bytes. */
CLMUL_TARGET static uint32_t clmul_finish(__m128i x, const unsigned char *p, size_t len)
{
	const __m128i k16 = pair16(CRC32C_FOLD16_LO, CRC32C_FOLD16_HI);
	uint64_t crc;

	for (; len >= 16; p += 16, len -= 16)
		x = _mm_xor_si128(fold16(x, k16), _mm_loadu_si128((const __m128i *)p));
	crc = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
	crc = _mm_crc32_u64(crc, (uint64_t)_mm_extract_epi64(x, 1));
	return crc32c_hw_run((uint32_t)crc, p, len);
}

/* Four 128-bit lanes, 64 bytes per step; from 64 bytes on (shorter: crc32c_hw_run). */
CLMUL_TARGET static uint32_t crc32c_clmul_run(uint32_t crc, const unsigned char *p, size_t len)
{
	const __m128i k64 = pair16(CRC32C_FOLD64_LO, CRC32C_FOLD64_HI);
	__m128i x0, x1, x2, x3, x;

	if (len < 64)
		return crc32c_hw_run(crc, p, len);
	x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
	x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	x2 = _mm_loadu_si128((const __m128i *)(p + 32));
	x3 = _mm_loadu_si128((const __m128i *)(p + 48));
	for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
		prefetch(p);
		x0 = _mm_xor_si128(fold16(x0, k64), _mm_loadu_si128((const __m128i *)p));
		x1 = _mm_xor_si128(fold16(x1, k64), _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = _mm_xor_si128(fold16(x2, k64), _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = _mm_xor_si128(fold16(x3, k64), _mm_loadu_si128((const __m128i *)(p + 48)));
	}
	x = _mm_xor_si128(fold16(x0, pair16(CRC32C_FOLD48_LO, CRC32C_FOLD48_HI)),
	                  fold16(x1, pair16(CRC32C_FOLD32_LO, CRC32C_FOLD32_HI)));
	x = _mm_xor_si128(
	    x, _mm_xor_si128(fold16(x2, pair16(CRC32C_FOLD16_LO, CRC32C_FOLD16_HI)), x3));
	return clmul_finish(x, p, len);
}

/* The four 128-bit lanes of @p z, 48, 32, 16 and 0 bytes before the end of what it holds, as one.
 */
VCLMUL_TARGET static inline __m128i fold512(__m512i z)
{
	__m128i x = _mm_xor_si128(
	    fold16(_mm512_extracti32x4_epi32(z, 0), pair16(CRC32C_FOLD48_LO, CRC32C_FOLD48_HI)),
	    fold16(_mm512_extracti32x4_epi32(z, 1), pair16(CRC32C_FOLD32_LO, CRC32C_FOLD32_HI)));

	return _mm_xor_si128(x, _mm_xor_si128(fold16(_mm512_extracti32x4_epi32(z, 2),
	                                             pair16(CRC32C_FOLD16_LO, CRC32C_FOLD16_HI)),
	                                      _mm512_extracti32x4_epi32(z, 3)));
}

/*
 * Four zmm registers (16 lanes), 256 bytes per step, from 64-byte aligned
 * loads; from 768 bytes on (shorter: crc32c_clmul_run, as fast there).
 */
VCLMUL_TARGET static uint32_t crc32c_vclmul_run(uint32_t crc, const unsigned char *p, size_t len)
{
	const __m512i k256 = crc32c_lanes_pair(CRC32C_FOLD256_LO, CRC32C_FOLD256_HI);
	const __m512i k64 = crc32c_lanes_k64();
	size_t head = (size_t)(-(uintptr_t)p & 63);
	__m512i z0, z1, z2, z3, z;

	if (len < 768)
		return crc32c_clmul_run(crc, p, len);
	crc = crc32c_hw_run(crc, p, head);
	p += head;
	len -= head;
	z0 = _mm512_xor_si512(_mm512_load_si512(p),
	                      _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc)));
	z1 = _mm512_load_si512(p + 64);
	z2 = _mm512_load_si512(p + 128);
	z3 = _mm512_load_si512(p + 192);
	for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
		prefetch(p);
		prefetch(p + 64);
		prefetch(p + 128);
		prefetch(p + 192);
		z0 = crc32c_lanes_fold(z0, k256, _mm512_load_si512(p));
		z1 = crc32c_lanes_fold(z1, k256, _mm512_load_si512(p + 64));
		z2 = crc32c_lanes_fold(z2, k256, _mm512_load_si512(p + 128));
		z3 = crc32c_lanes_fold(z3, k256, _mm512_load_si512(p + 192));
	}
	z = crc32c_lanes_fold(z0, crc32c_lanes_pair(CRC32C_FOLD192_LO, CRC32C_FOLD192_HI), z3);
	z = _mm512_xor_si512(
	    z, crc32c_lanes_fold(z1, crc32c_lanes_pair(CRC32C_FOLD128_LO, CRC32C_FOLD128_HI),
	                         crc32c_lanes_fold(z2, k64, _mm512_setzero_si512())));
	for (; len >= 64; p += 64, len -= 64)
		z = crc32c_lanes_fold(z, k64, _mm512_load_si512(p));
	return clmul_finish(fold512(z), p, len);
}
#endif

int pspace_crc32c_hw_available(void)
{
#ifdef HAVE_HW
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
	return 0;
#endif
}

uint32_t pspace_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
#ifdef HAVE_HW
	if (pspace_crc32c_hw_available())
		return ~crc32c_hw_run(~crc, buf, len);
#endif
	return pspace_crc32c_sw(crc, buf, len);
}

int pspace_crc32c_clmul_available(void)
{
#ifdef HAVE_HW
	return (get_features() & FEAT_CLMUL) ? 1 : 0;
#else
	return 0;
#endif
}

uint32_t pspace_crc32c_clmul(uint32_t crc, const void *buf, size_t len)
{
#ifdef HAVE_HW
	if (get_features() & FEAT_CLMUL)
		return ~crc32c_clmul_run(~crc, buf, len);
#endif
	return pspace_crc32c_hw(crc, buf, len);
}

int pspace_crc32c_vclmul_available(void)
{
#ifdef HAVE_HW
	return (get_features() & FEAT_VCLMUL) ? 1 : 0;
#else
	return 0;
#endif
}

uint32_t pspace_crc32c_vclmul(uint32_t crc, const void *buf, size_t len)
{
#ifdef HAVE_HW
	if (get_features() & FEAT_VCLMUL)
		return ~crc32c_vclmul_run(~crc, buf, len);
#endif
	return pspace_crc32c_clmul(crc, buf, len);
}

uint32_t pspace_crc32c(uint32_t crc, const void *buf, size_t len)
{
#ifdef HAVE_HW
	int f = get_features();

	if (len >= CRC32C_FOLD_MIN && (f & FEAT_VCLMUL))
		return ~crc32c_vclmul_run(~crc, buf, len);
	if (len >= CRC32C_FOLD_MIN && (f & FEAT_CLMUL))
		return ~crc32c_clmul_run(~crc, buf, len);
	if (f & FEAT_SSE42)
		return ~crc32c_hw_run(~crc, buf, len);
#endif
	return pspace_crc32c_sw(crc, buf, len);
}

/* a * b mod P over GF(2), bit-reflected as the CRC (bit 31 is x^0). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = (uint32_t)1 << 31, p = 0;

	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ 0x82f63b78u : b >> 1;
	}
	return p;
}

/* x^n mod P, bit-reflected as the CRC (square and multiply). */
static uint32_t xpow(uint64_t n)
{
	uint32_t p = (uint32_t)1 << 31, b = (uint32_t)1 << 30; /* 1 and x */

	while (n) {
		if (n & 1)
			p = multmodp(b, p);
		n >>= 1;
		if (n)
			b = multmodp(b, b);
	}
	return p;
}

uint32_t pspace_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2)
{
	return multmodp(xpow(8 * (uint64_t)len2), crc1) ^ crc2;
}

/* The fold pair over @p bytes (crc32c_fold.h): x^(D+31) and x^(D-33) mod P, D = 8 bytes. */
static void fold_pair(uint32_t k[2], uint64_t bytes)
{
	k[0] = xpow(8 * bytes + 31);
	k[1] = xpow(8 * bytes - 33);
}

int pspace_crc32c_rows_available(void)
{
	return pspace_crc32c_vclmul_available();
}

void pspace_crc32c_rows_init(pspace_crc32c_rows *s, size_t row_bytes)
{
	/* the pairs of the last row length this thread asked for: a pass asks for one or two */
	static _Thread_local size_t cached;
	static _Thread_local uint32_t pairs[3][2];

	if (cached != row_bytes) {
		fold_pair(pairs[0], row_bytes);
		fold_pair(pairs[1], 2 * (uint64_t)row_bytes);
		fold_pair(pairs[2], 3 * (uint64_t)row_bytes);
		cached = row_bytes;
	}
	memset(s->lane, 0, sizeof(s->lane));
	memcpy(s->over, pairs, sizeof(s->over));
	s->row_bytes = row_bytes;
	s->groups = 0;
}

#ifdef HAVE_HW
__attribute__((target("avx512f,vpclmulqdq"))) static void fold4(pspace_crc32c_rows *s,
                                                                const unsigned char *rows)
{
	const __m512i k64 = crc32c_lanes_k64();
	size_t rb = s->row_bytes;
	__m512i z[4];

	crc32c_lanes_begin(s, z);
	for (size_t o = 0; o < rb; o += 64)
		for (int r = 0; r < 4; r++)
			z[r] = crc32c_lanes_fold(z[r], k64, _mm512_loadu_si512(rows + r * rb + o));
	crc32c_lanes_end(s, z);
}

/*
 * The register of the rows folded into @p s, from zero: lane r ends 3 - r
 * rows before the last row's end, so it is moved over that many rows; the
 * four 128-bit pieces of their sum lie 48, 32, 16 and 0 bytes before the
 * end, reduced as at the end of crc32c_vclmul_run().
 */
VCLMUL_TARGET static uint32_t rows_reduce(const pspace_crc32c_rows *s)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i z = _mm512_loadu_si512(s->lane[3]);

	z = crc32c_lanes_fold(_mm512_loadu_si512(s->lane[0]),
	                      crc32c_lanes_pair(s->over[2][0], s->over[2][1]), z);
	z = crc32c_lanes_fold(_mm512_loadu_si512(s->lane[1]),
	                      crc32c_lanes_pair(s->over[1][0], s->over[1][1]), z);
	z = _mm512_xor_si512(z, crc32c_lanes_fold(_mm512_loadu_si512(s->lane[2]),
	                                          crc32c_lanes_pair(s->over[0][0], s->over[0][1]),
	                                          zero));
	return clmul_finish(fold512(z), NULL, 0);
}

/*
 * The register @p c moved over @p n bytes of zeros: c x^(8n) mod P =
 * crc32q(0, clmul(c, x^(8n-33) mod P)) (two 32-bit reflected values
 * multiply to their product times x, and crc32q(0, w) = w x^32).
 */
CLMUL_TARGET static uint32_t shift_bytes(uint32_t c, uint64_t n)
{
	static _Thread_local uint64_t cached_n;
	static _Thread_local uint32_t cached_k;
	__m128i p;

	if (cached_n != n) {
		cached_k = xpow(8 * n - 33);
		cached_n = n;
	}
	p = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)c), _mm_cvtsi32_si128((int)cached_k), 0);
	return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(p));
}
#endif

void pspace_crc32c_rows_fold4(pspace_crc32c_rows *s, const void *rows)
{
#ifdef HAVE_HW
	fold4(s, rows);
#else
	(void)s;
	(void)rows;
#endif
}

uint32_t pspace_crc32c_rows_finish(const pspace_crc32c_rows *s, uint32_t crc)
{
#ifdef HAVE_HW
	if (s->groups == 0)
		return crc;
	return ~(shift_bytes(~crc, 4 * s->groups * s->row_bytes) ^ rows_reduce(s));
#else
	(void)s;
	return crc;
#endif
}
