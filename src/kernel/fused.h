/*
 * Internal: a fused f32 tile kernel for few right-hand sides. One read of
 * each tile row serves both products of a mirrored tile, which BLIS (two
 * separate calls, each packing the tile) cannot do.
 */
#ifndef PSPACE_SRC_KERNEL_FUSED_H
#define PSPACE_SRC_KERNEL_FUSED_H

#include <stddef.h>
#include <stdint.h>

#include "codec/crc32c.h"

/**
 * For a rows x cols row-major tile T (ld = cols) and k vectors stored with
 * stride @p ld: yr[j*ld + i] = sum_p T[i][p] xc[j*ld + p] and, if @p mirrored,
 * yc[j*ld + p] += sum_i T[i][p] xr[j*ld + i]. Overwrites yr, adds to yc (so
 * that a tile can come in row panels, T, xr and yr advanced by the panel's
 * first row). With @p crc (not NULL only when
 * pspace_crc32c_rows_available(), rows a multiple of 4 and cols of 16),
 * also folds the rows, in order, into that checksum as they are read.
 */
void pspace_fused_f32(const float *T, uint32_t rows, uint32_t cols, uint32_t k, size_t ld,
                      const float *xc, const float *xr, float *yr, float *yc, int mirrored,
                      pspace_crc32c_rows *crc);

/** @return nonzero when pspace_fused16_f32() can run (AVX-512F). */
int pspace_fused16_available(void);

/**
 * The fused kernel for up to 16 right-hand sides in the lanes of one
 * AVX-512 register (call only when pspace_fused16_available()): vectors
 * stored element-major, 16 floats per element (lanes beyond k zero):
 * yr[16 i + j] = sum_p T[i][p] xc[16 p + j] and, if @p mirrored,
 * yc[16 p + j] += sum_i T[i][p] xr[16 i + j]. Each element of T is loaded
 * once for both products and all 16 vectors.
 */
void pspace_fused16_f32(const float *T, uint32_t rows, uint32_t cols, const float *xc,
                        const float *xr, float *yr, float *yc, int mirrored);

/**
 * Element-major products back into vector-major Y: Y[j * ldy + i] += a *
 * src[16 i + j] for j < k <= 16, i < len, src the doubles @p d or, when
 * @p d is NULL, the floats @p f (AVX-512: eight rows transposed at a time).
 */
void pspace_wide_add(double *Y, size_t ldy, uint32_t k, uint32_t len, double a, const double *d,
                     const float *f);

#endif
