/*
 * Precision conversion between the computation types (F32, F64) and the
 * stored types (F64, F32, BF16, F16 with a power-of-two scale).
 */
#ifndef PSPACE_SRC_CODEC_CONVERT_H
#define PSPACE_SRC_CODEC_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/common.h"

/** Largest |e| a stored F16 scale exponent may have (finite doubles need -1009..1088). */
#define PSPACE_F16_SCALE_MAX 1100

/**
 * Converts a rows x cols row-major block from @p src_type (leading
 * dimension @p src_ld elements) to @p dst_type (leading dimension
 * @p dst_ld). One side must be F32 or F64 and the other a stored type
 * (F64, F32, BF16, F16). For F16, @p scale_exp is the tile's exponent e:
 * stored = value * 2^e on the way in, value = stored * 2^-e on the way out;
 * it is ignored otherwise. Rounding is to nearest even. Blocks must not
 * overlap.
 * @return 0, or PSPACE_EINVAL for an unsupported pair of types.
 */
int pspace_convert_block(pspace_dtype dst_type, void *dst, size_t dst_ld, pspace_dtype src_type,
                         const void *src, size_t src_ld, uint32_t rows, uint32_t cols,
                         int32_t scale_exp);

/** @return nonzero if one of the @p n floats at @p s is +-Inf. */
int pspace_convert_has_inf_f32(const float *s, size_t n);

/**
 * @return the largest finite |x| in a rows x cols block of F32 or F64
 * values (Inf and NaN are skipped), 0 if there is none.
 */
double pspace_convert_maxabs(pspace_dtype t, const void *src, size_t ld, uint32_t rows,
                             uint32_t cols);

/**
 * @return the F16 scale exponent for a tile whose largest finite |x| is
 * @p maxabs: the largest e with maxabs * 2^e < 2^15, or 0 when maxabs is 0.
 */
int32_t pspace_f16_scale_exp(double maxabs);

#endif
