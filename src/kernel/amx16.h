/*
 * Internal: the 16-lane mm kernel on AMX tiles (Intel Advanced Matrix
 * Extensions: bf16 products accumulated in f32) for matrices stored as
 * bf16, on the same element-major vectors as pspace_fused16_f32().
 *
 * Accuracy: the tile's values are bf16; each f32 vector element is
 * split into three bf16 parts, x = xh + xm + xl (each rounded to nearest;
 * together x to 2^-24 relative), and the three products a xh, a xm, a xl
 * are exact in f32 and accumulated in f32, AMX rounding once per pair of
 * products: a result over n elements is within about (1.5 n + 1) u sum
 * |a_i| |x_i| (u = 2^-24), against n u for the f32 FMA kernel. AMX treats
 * values below 2^-126 as zero, which adds at most n 2^-126 to a result.
 * f32 tiles would need three parts of the tile and six products; measured
 * slower than the FMA kernel on this class of machine, they are not done.
 */
#ifndef PSPACE_SRC_KERNEL_AMX16_H
#define PSPACE_SRC_KERNEL_AMX16_H

#include <stddef.h>
#include <stdint.h>

/* Rows of a tile converted to bf16 parts at a time. */
#define PSPACE_AMX16_ROWS 64

/** The bf16 parts of the pass's vectors, made once a pass. */
typedef struct pspace_amx16_x {
	uint16_t *v; /* 3 parts, each [dpad / 2][16][2]: element pairs interleaved */
	uint16_t *t; /* 3 parts, each [16][dpad]: vector-major */
	size_t dpad; /* d rounded up to 32, plus 64 elements of zeros */
} pspace_amx16_x;

/**
 * Makes @p ax from @p xw (d x 16 floats, element-major, as for
 * pspace_fused16_f32()). @return 0, or -1 when AMX cannot run here or
 * memory ran out (no detail set: the caller keeps the FMA kernel).
 */
int pspace_amx16_x_make(pspace_amx16_x *ax, const float *xw, uint64_t d);
void pspace_amx16_x_free(pspace_amx16_x *ax);

/** Bytes of the per-thread scratch of pspace_amx16_f32() for tiles of @p edge columns. */
size_t pspace_amx16_scratch_bytes(uint32_t edge);

/**
 * pspace_fused16_f32() on AMX, for a row panel of bf16 values (rows x
 * cols, ld = cols) of the tile at global rows r0.. and columns c0..
 * (c0 even): yr[16 i + j] = sum_p T[i][p] X[c0 + p][j] and, if @p mirrored,
 * the mirrored product sum_i T[i][p] X[r0 + i][j] added to a 16 x cols
 * transposed accumulator in @p scratch, which @p first (the tile's first
 * panel) zeroes and @p last (its last) adds to yc[16 p + j]. Call only when
 * pspace_amx_available() (common/amx.h).
 */
void pspace_amx16_bf16(const uint16_t *T, uint32_t rows, uint32_t cols, uint64_t r0, uint64_t c0,
                       const pspace_amx16_x *ax, float *yr, float *yc, int mirrored, int first,
                       int last, void *scratch);

#endif
