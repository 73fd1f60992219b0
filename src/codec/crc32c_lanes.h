/*
 * Inline pieces of pspace_crc32c_rows (crc32c.h) for a kernel's loop over
 * four rows: load the lanes before the group, fold each 64-byte chunk of
 * row r into lane r as the kernel loads it, store the lanes after. For
 * functions compiled with target("avx512f,vpclmulqdq"), called only when
 * pspace_crc32c_rows_available().
 */
#ifndef PSPACE_SRC_CODEC_CRC32C_LANES_H
#define PSPACE_SRC_CODEC_CRC32C_LANES_H

#include <immintrin.h>
#include <stdint.h>

#include "codec/crc32c.h"
#include "codec/crc32c_fold.h"

#define CRC32C_LANES_INLINE                                                                        \
	__attribute__((always_inline, target("avx512f,vpclmulqdq"))) static inline

/* Every 128-bit lane of @p z folded forward by the pair in @p k, xored with @p d. */
CRC32C_LANES_INLINE __m512i crc32c_lanes_fold(__m512i z, __m512i k, __m512i d)
{
	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(z, k, 0x00),
	                                 _mm512_clmulepi64_epi128(z, k, 0x11), d, 0x96);
}

/* A fold pair (lo, hi: crc32c_fold.h) in every 128-bit lane. */
CRC32C_LANES_INLINE __m512i crc32c_lanes_pair(uint32_t lo, uint32_t hi)
{
	return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* The pair of a 64-byte fold: the step from one chunk of a row to the next. */
CRC32C_LANES_INLINE __m512i crc32c_lanes_k64(void)
{
	return crc32c_lanes_pair(CRC32C_FOLD64_LO, CRC32C_FOLD64_HI);
}

/*
 * The lanes of @p s into @p z before a group of four rows: each moved over
 * the three rows between its last chunk and its next (zero before the
 * first group; folding zero by 64 bytes and adding the first chunk leaves
 * that chunk).
 */
CRC32C_LANES_INLINE void crc32c_lanes_begin(const pspace_crc32c_rows *s, __m512i z[4])
{
	__m512i k = crc32c_lanes_pair(s->over[2][0], s->over[2][1]);

	for (int r = 0; r < 4; r++)
		z[r] = s->groups == 0 ? _mm512_setzero_si512()
		                      : crc32c_lanes_fold(_mm512_loadu_si512(s->lane[r]), k,
		                                          _mm512_setzero_si512());
}

/* After the group: the lanes back into @p s. */
CRC32C_LANES_INLINE void crc32c_lanes_end(pspace_crc32c_rows *s, const __m512i z[4])
{
	for (int r = 0; r < 4; r++)
		_mm512_storeu_si512(s->lane[r], z[r]);
	s->groups++;
}

#endif
