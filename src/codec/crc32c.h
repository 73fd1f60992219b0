/*
 * Internal CRC-32C entry points. pspace_crc32c() (public, in
 * pspace/codec.h) picks the fastest; the two paths are exposed so the
 * tests can check that they agree.
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

#endif
