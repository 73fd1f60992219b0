/*
 * The 16-lane mm kernel on AMX tiles (see amx16.h for the accuracy).
 *
 * AMX multiplies tile registers of 16 rows x 64 bytes: TDPBF16PS adds to an
 * f32 tile C (16 x 16) the product of A (16 x 32 bf16) and B (32 x 16 bf16
 * stored as 16 rows of element pairs), 16 x 16 x 32 multiply-adds in one
 * instruction. A row panel of the stored bf16 tile T is laid out, 64 rows
 * at a time, twice: row-major (the A operand of the direct product
 * Y_r = T X_c, whose B operand is X's parts in element pairs, made once a
 * pass) and in row pairs (the B operand of the mirrored product, computed
 * transposed: Y_c^T = X_r^T T, whose A operand is X's parts vector-major).
 * The mirrored product accumulates in a 16 x cols transposed buffer across
 * the panels of a tile and is transposed into yc after the last one.
 *
 * Tile registers: one configuration, all eight 16 x 64 bytes. Direct: C of
 * four row groups (0-3), T (4), X's parts (5-7). Mirrored: C of two column
 * blocks (0, 1), X's parts for a 32-row chunk (2-4), T's two blocks (5, 6).
 */
#include "kernel/amx16.h"

#include <stdlib.h>
#include <string.h>

#include "common/amx.h"

#if PSPACE_HAVE_AMX
#include <immintrin.h>
#endif

#define LANES 16
#define KCH   32 /* the reduction chunk of one tile product */

void pspace_amx16_x_free(pspace_amx16_x *ax)
{
	free(ax->v);
	free(ax->t);
	memset(ax, 0, sizeof(*ax));
}

size_t pspace_amx16_scratch_bytes(uint32_t edge)
{
	size_t cp = ((size_t)edge + KCH - 1) / KCH * KCH;

	/* T row-major and in row pairs, the transposed accumulator, one C, 3 parts
	 * of X zero padded */
	return 2 * PSPACE_AMX16_ROWS * cp * sizeof(uint16_t) + cp * LANES * sizeof(float) +
	       LANES * LANES * sizeof(float) + 3 * LANES * KCH * sizeof(uint16_t) + 64;
}

#if PSPACE_HAVE_AMX
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

typedef struct tilecfg {
	uint8_t palette, start_row;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} tilecfg;

/* bf16 (in the low 16 bits of 32-bit lanes, or 16 of them) back to f32 */
AMX_TARGET static inline __m512 widen(__m256i h)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* x = h + m + l, each part rounded to nearest bf16 */
AMX_TARGET static inline void split3(__m512 x, __m256i *h, __m256i *m, __m256i *l)
{
	__m512 r;

	*h = (__m256i)_mm512_cvtneps_pbh(x);
	r = _mm512_sub_ps(x, widen(*h));
	*m = (__m256i)_mm512_cvtneps_pbh(r);
	r = _mm512_sub_ps(r, widen(*m));
	*l = (__m256i)_mm512_cvtneps_pbh(r);
}

/* 16 pairs (a[i], b[i]) as 32-bit lanes, a in the low half */
AMX_TARGET static inline __m512i pairs(__m256i a, __m256i b)
{
	return _mm512_or_si512(_mm512_cvtepu16_epi32(a),
	                       _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

AMX_TARGET static int x_make(pspace_amx16_x *ax, const float *xw, uint64_t d)
{
	size_t dpad = (size_t)(d + KCH - 1) / KCH * KCH + 2 * KCH, part = dpad * LANES;

	ax->dpad = dpad;
	ax->v = aligned_alloc(64, 3 * part * sizeof(uint16_t));
	ax->t = aligned_alloc(64, 3 * part * sizeof(uint16_t));
	if (!ax->v || !ax->t)
		return -1;
	memset(ax->v, 0, 3 * part * sizeof(uint16_t));
	memset(ax->t, 0, 3 * part * sizeof(uint16_t));
	for (uint64_t p = 0; p < d; p += 2) {
		__m256i e[2][3];
		uint16_t s[3][LANES];

		for (int k = 0; k < 2; k++) {
			__m512 x =
			    p + k < d ? _mm512_loadu_ps(xw + (p + k) * LANES) : _mm512_setzero_ps();

			split3(x, &e[k][0], &e[k][1], &e[k][2]);
		}
		for (int q = 0; q < 3; q++) {
			_mm512_storeu_si512(ax->v + q * part + p * LANES, pairs(e[0][q], e[1][q]));
			for (int k = 0; k < 2 && p + k < d; k++) {
				_mm256_storeu_si256((__m256i *)(void *)s[q], e[k][q]);
				for (int j = 0; j < LANES; j++)
					ax->t[q * part + (size_t)j * dpad + p + k] = s[q][j];
			}
		}
	}
	return 0;
}

/*
 * Rows [r, r + n) (n <= PSPACE_AMX16_ROWS) of the bf16 tile T, zero padded
 * to 64 rows and cp columns: @p a row-major (ld cp), @p v in row pairs
 * (ld 2 cp: element (2i + s, p) at v[i * 2 cp + 2 p + s]).
 */
AMX_TARGET static void convert(const uint16_t *T, uint32_t n, uint32_t cols, size_t cp, uint16_t *a,
                               uint16_t *v)
{
	for (uint32_t i = 0; i < PSPACE_AMX16_ROWS; i += 2) {
		const uint16_t *t0 = T + (size_t)i * cols, *t1 = t0 + cols;
		uint16_t *a0 = a + (size_t)i * cp, *a1 = a0 + cp, *vo = v + (size_t)i * cp;

		for (uint32_t p = 0; p < cp; p += LANES) {
			__mmask16 m = p + LANES <= cols ? 0xffff
			              : p < cols        ? (__mmask16)((1u << (cols - p)) - 1)
			                                : 0;
			__m256i h0 =
			    i < n ? _mm256_maskz_loadu_epi16(m, t0 + p) : _mm256_setzero_si256();
			__m256i h1 = i + 1 < n ? _mm256_maskz_loadu_epi16(m, t1 + p)
			                       : _mm256_setzero_si256();

			_mm256_storeu_si256((__m256i *)(void *)(a0 + p), h0);
			_mm256_storeu_si256((__m256i *)(void *)(a1 + p), h1);
			_mm512_storeu_si512(vo + 2 * p, pairs(h0, h1));
		}
	}
}

/* C group g += rows 16 g.. of a times X's chunk, its three parts in tiles 5-7 */
#define DIRECT_GROUP(g)                                                                            \
	do {                                                                                       \
		_tile_loadd(4, a + (size_t)(g)*LANES * cp + jc, cp * 2);                           \
		_tile_dpbf16ps(g, 4, 5);                                                           \
		_tile_dpbf16ps(g, 4, 6);                                                           \
		_tile_dpbf16ps(g, 4, 7);                                                           \
	} while (0)

/* Stores C group g into yr's rows 16 g.. (n rows in all). */
#define STORE_GROUP(g)                                                                             \
	do {                                                                                       \
		if ((g)*LANES < n) {                                                               \
			if ((g)*LANES + LANES <= n) {                                              \
				_tile_stored(g, yr + (size_t)(g)*LANES * LANES, LANES * 4);        \
			} else {                                                                   \
				_tile_stored(g, cbuf, LANES * 4);                                  \
				memcpy(yr + (size_t)(g)*LANES * LANES, cbuf,                       \
				       (n - (g)*LANES) * LANES * sizeof(float));                   \
			}                                                                          \
		}                                                                                  \
	} while (0)

AMX_TARGET static void amx_panel(const uint16_t *T, uint32_t rows, uint32_t cols, uint64_t r0,
                                 uint64_t c0, const pspace_amx16_x *ax, float *yr, float *yc,
                                 int mirrored, int first, int last, void *scratch)
{
	size_t cp = ((size_t)cols + KCH - 1) / KCH * KCH, part = ax->dpad * LANES;
	size_t blk = PSPACE_AMX16_ROWS * cp;
	uint16_t *a = (uint16_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63), *v = a + blk;
	float *ycT = (float *)(void *)(v + blk), *cbuf = ycT + cp * LANES;
	uint16_t *xpad = (uint16_t *)(void *)(cbuf + LANES * LANES);
	const uint16_t *xv = ax->v + c0 * LANES, *xt = ax->t;
	tilecfg cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int t = 0; t < 8; t++) {
		cfg.colsb[t] = 64;
		cfg.rows[t] = 16;
	}
	_tile_loadconfig(&cfg);
	if (mirrored && first)
		memset(ycT, 0, cp * LANES * sizeof(float));
	for (uint32_t r = 0; r < rows; r += PSPACE_AMX16_ROWS) {
		uint32_t n = rows - r < PSPACE_AMX16_ROWS ? rows - r : PSPACE_AMX16_ROWS;

		convert(T + (size_t)r * cols, n, cols, cp, a, v);
		/* direct: yr[16 i + j] = sum_p T[r + i][p] X[c0 + p][j] */
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
		for (size_t jc = 0; jc < cp; jc += KCH) {
			if (jc + KCH <= cols) {
				_tile_loadd(5, xv + jc * LANES, 64);
				_tile_loadd(6, xv + part + jc * LANES, 64);
				_tile_loadd(7, xv + 2 * part + jc * LANES, 64);
			} else {
				/* past the tile's columns: zeros (X there may not be finite);
				 * element 2 P + s of lane j at [32 P + 2 j + s] */
				size_t keep = (cols - jc) / 2 * 2 * LANES;

				for (int q = 0; q < 3; q++) {
					uint16_t *o = xpad + q * KCH * LANES;
					const uint16_t *s = xv + q * part + jc * LANES;

					memcpy(o, s, keep * sizeof(uint16_t));
					memset(o + keep, 0,
					       (KCH * LANES - keep) * sizeof(uint16_t));
					for (int j = 0; (cols - jc) % 2 && j < LANES; j++)
						o[keep + 2 * j] = s[keep + 2 * j];
				}
				_tile_loadd(5, xpad, 64);
				_tile_loadd(6, xpad + KCH * LANES, 64);
				_tile_loadd(7, xpad + 2 * KCH * LANES, 64);
			}
			DIRECT_GROUP(0);
			if (n > LANES)
				DIRECT_GROUP(1);
			if (n > 2 * LANES)
				DIRECT_GROUP(2);
			if (n > 3 * LANES)
				DIRECT_GROUP(3);
		}
		STORE_GROUP(0);
		STORE_GROUP(1);
		STORE_GROUP(2);
		STORE_GROUP(3);
		yr += (size_t)n * LANES;
		if (!mirrored)
			continue;
		/* mirrored, transposed: ycT[pc][j][p] += sum_i X[r0 + r + i][j] T[r + i][pc + p] */
		{
			const uint16_t *x0 = xt + r0 + r;
			size_t ld = ax->dpad;

			/* a chunk past the panel's rows reads zeros (X there may not be finite) */
			if (n % KCH != 0) {
				uint32_t c = n / KCH * KCH, keep = n - c;

				for (int q = 0; q < 3; q++)
					for (int j = 0; j < LANES; j++) {
						uint16_t *o = xpad + (size_t)(q * LANES + j) * KCH;

						memcpy(o, x0 + q * part + j * ld + c, keep * 2);
						memset(o + keep, 0, (KCH - keep) * 2);
					}
			}
			/* per 32-row chunk, X's parts in tiles 2-4; two column blocks at a
			 * time (C 0, 1; T 5, 6), two chains of dependent products */
			for (uint32_t ic = 0; ic * KCH < n; ic++) {
				const uint16_t *xs = x0 + ic * KCH, *vs = v + (size_t)ic * KCH * cp;
				size_t xl = ld;

				if ((ic + 1) * KCH > n) {
					xs = xpad;
					xl = KCH;
				}
				_tile_loadd(2, xs, xl * 2);
				_tile_loadd(3, xs + (xs == xpad ? LANES * KCH : part), xl * 2);
				_tile_loadd(4, xs + (xs == xpad ? 2 * LANES * KCH : 2 * part),
				            xl * 2);
				for (size_t pc = 0; pc < cp; pc += 2 * LANES) {
					float *c = ycT + pc * LANES;

					_tile_loadd(0, c, LANES * 4);
					_tile_loadd(1, c + LANES * LANES, LANES * 4);
					_tile_loadd(5, vs + 2 * pc, cp * 4);
					_tile_loadd(6, vs + 2 * pc + 2 * LANES, cp * 4);
					_tile_dpbf16ps(0, 2, 5);
					_tile_dpbf16ps(1, 2, 6);
					_tile_dpbf16ps(0, 3, 5);
					_tile_dpbf16ps(1, 3, 6);
					_tile_dpbf16ps(0, 4, 5);
					_tile_dpbf16ps(1, 4, 6);
					_tile_stored(0, c, LANES * 4);
					_tile_stored(1, c + LANES * LANES, LANES * 4);
				}
			}
		}
	}
	_tile_release();
	if (mirrored && last)
		for (uint32_t p = 0; p < cols; p++) {
			const float *s = ycT + (size_t)(p / LANES) * LANES * LANES + p % LANES;
			float *o = yc + (size_t)p * LANES;

			for (int j = 0; j < LANES; j++)
				o[j] += s[j * LANES];
		}
}
#endif

int pspace_amx16_x_make(pspace_amx16_x *ax, const float *xw, uint64_t d)
{
	memset(ax, 0, sizeof(*ax));
#if PSPACE_HAVE_AMX
	if (pspace_amx_available() && x_make(ax, xw, d) == 0)
		return 0;
#else
	(void)xw;
	(void)d;
#endif
	pspace_amx16_x_free(ax);
	return -1;
}

void pspace_amx16_bf16(const uint16_t *T, uint32_t rows, uint32_t cols, uint64_t r0, uint64_t c0,
                       const pspace_amx16_x *ax, float *yr, float *yc, int mirrored, int first,
                       int last, void *scratch)
{
#if PSPACE_HAVE_AMX
	amx_panel(T, rows, cols, r0, c0, ax, yr, yc, mirrored, first, last, scratch);
#else
	(void)T, (void)rows, (void)cols, (void)r0, (void)c0, (void)ax, (void)yr, (void)yc;
	(void)mirrored, (void)first, (void)last, (void)scratch;
#endif
}
