/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used for the
 * tile checksum: a portable slicing-by-8 version and one using the SSE4.2
 * crc32 instruction on three interleaved streams, chosen at run time.
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
#include <nmmintrin.h>

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

uint32_t pspace_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return pspace_crc32c_hw(crc, buf, len);
}
