/*
 * Internal CRC-32C entry points. pspace_crc32c() (public, in
 * pspace/codec.h) picks the fastest; the paths are exposed so the tests
 * can check that they agree and the benchmarks can time each.
 */
#ifndef PSPACE_SRC_CODEC_CRC32C_H
#define PSPACE_SRC_CODEC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/** Portable slicing-by-8 CRC-32C; same contract as pspace_crc32c(). */
uint32_t pspace_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/** @return nonzero when the CPU has the SSE4.2 crc32 instruction. */
int pspace_crc32c_hw_available(void);

/**
 * CRC-32C with the SSE4.2 crc32 instruction; same contract as
 * pspace_crc32c(). Call only when pspace_crc32c_hw_available() is nonzero;
 * otherwise (or on non-x86 builds) it falls back to pspace_crc32c_sw().
 */
uint32_t pspace_crc32c_hw(uint32_t crc, const void *buf, size_t len);

/**
 * pspace_crc32c() uses a folding path (below) from this many bytes on and
 * the crc32 instruction below it (measured: at 64 bytes the 4-lane fold
 * already takes half the time of one crc32 stream).
 */
#define CRC32C_FOLD_MIN 64

/** @return nonzero when the CPU has pclmulqdq and SSE4.2. */
int pspace_crc32c_clmul_available(void);

/**
 * CRC-32C folding four 128-bit lanes with pclmulqdq (64 bytes a step),
 * finished with the crc32 instruction; same contract as pspace_crc32c().
 * Without pclmulqdq (or on non-x86 builds) it falls back to
 * pspace_crc32c_hw().
 */
uint32_t pspace_crc32c_clmul(uint32_t crc, const void *buf, size_t len);

/**
 * @return nonzero when the CPU has vpclmulqdq and AVX-512F and the OS
 * saves the zmm registers.
 */
int pspace_crc32c_vclmul_available(void);

/**
 * CRC-32C folding four zmm registers (16 lanes) with vpclmulqdq (256 bytes
 * a step) from 768 bytes on, shorter buffers and the rest as
 * pspace_crc32c_clmul(); same contract as pspace_crc32c(). Without
 * vpclmulqdq it falls back to pspace_crc32c_clmul().
 */
uint32_t pspace_crc32c_vclmul(uint32_t crc, const void *buf, size_t len);

/**
 * The CRC-32C of rows that another loop reads four at a time anyway (a
 * tile kernel loading each 64-byte chunk of rows i..i+3), folded as they
 * pass through its registers: four 512-bit lanes, lane r over rows r,
 * r + 4, r + 8, ... (vpclmulqdq, AVX-512). Rows of row_bytes, a multiple
 * of 64, in groups of four, in order. A kernel folds with the inline
 * helpers of crc32c_lanes.h; pspace_crc32c_rows_fold4() does the same.
 */
typedef struct pspace_crc32c_rows {
	unsigned char lane[4][64]; /* the lanes' fold states (loaded unaligned) */
	uint32_t over[3][2];       /* fold pairs over 1, 2, 3 rows (lo, hi: crc32c_fold.h) */
	size_t row_bytes;
	uint64_t groups; /* groups of four rows folded so far */
} pspace_crc32c_rows;

/** @return nonzero when pspace_crc32c_rows can be used (as pspace_crc32c_vclmul_available()). */
int pspace_crc32c_rows_available(void);

/** Starts @p s for rows of @p row_bytes (a nonzero multiple of 64). */
void pspace_crc32c_rows_init(pspace_crc32c_rows *s, size_t row_bytes);

/**
 * Folds the four consecutive rows at @p rows into @p s, as a kernel does
 * with crc32c_lanes.h (call only when pspace_crc32c_rows_available()).
 */
void pspace_crc32c_rows_fold4(pspace_crc32c_rows *s, const void *rows);

/**
 * @return the CRC-32C of the bytes @p crc was computed over (0: none)
 * followed by the rows folded into @p s (as pspace_crc32c(crc, rows, n)).
 */
uint32_t pspace_crc32c_rows_finish(const pspace_crc32c_rows *s, uint32_t crc);

/**
 * @return the CRC-32C of A followed by B, from @p crc1 = pspace_crc32c(0, A)
 * and @p crc2 = pspace_crc32c(0, B) of @p len2 bytes (O(log len2) steps).
 */
uint32_t pspace_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2);

#endif
