/*
 * Byte shuffle: splits n elements of es bytes into es byte planes, so that
 * the similar high-order bytes of floating-point numbers sit together
 * before compression.
 */
#ifndef PSPACE_SRC_CODEC_SHUFFLE_H
#define PSPACE_SRC_CODEC_SHUFFLE_H

#include <stddef.h>

/**
 * out[b*n + i] = in[i*es + b] for i < n, b < es. Specialized for es = 2, 4
 * and 8; any es >= 1 works. @p out and @p in must not overlap.
 */
void pspace_shuffle(void *restrict out, const void *restrict in, size_t n, size_t es);

/** The inverse: out[i*es + b] = in[b*n + i]. */
void pspace_unshuffle(void *restrict out, const void *restrict in, size_t n, size_t es);

/** Element sizes up to this have a pointer per plane in pspace_unshuffle(). */
#define PSPACE_SHUFFLE_MAX_ES 8

/**
 * The inverse with each plane at its own address: out[i*es + b] =
 * planes[b][i]. The planes may lie anywhere (also inside one another's
 * buffers) but must not overlap @p out.
 */
void pspace_unshuffle_planes(void *restrict out, const void *const *planes, size_t n, size_t es);

/**
 * The planes (low byte, high byte) of @p n bfloat16 values unshuffled and
 * widened to float in one pass: out[i] has the bits planes[1][i] << 24 |
 * planes[0][i] << 16, exactly the bfloat16 value.
 */
void pspace_unshuffle_bf16_f32(float *restrict out, const void *const *planes, size_t n);

#endif
