/*
 * The fused f32 tile kernel: portable C, AVX2+FMA and AVX-512 versions
 * chosen at run time. For each tile row, for each right-hand side, one sweep over the
 * row does the dot product of the direct product and the axpy of the
 * mirrored one, so the row is loaded once per vector from L1.
 */
#include "kernel/fused.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2 1

#include "codec/crc32c_lanes.h"
#endif

static void fused_c(const float *T, uint32_t rows, uint32_t cols, uint32_t k, size_t ld,
                    const float *xc, const float *xr, float *yr, float *yc, int mirrored)
{
	for (uint32_t i = 0; i < rows; i++) {
		const float *t = T + (size_t)i * cols;

		for (uint32_t j = 0; j < k; j++) {
			const float *x = xc + j * ld;
			float s = 0.0f;

			if (mirrored) {
				float *y = yc + j * ld, a = xr[j * ld + i];

				for (uint32_t p = 0; p < cols; p++) {
					s += t[p] * x[p];
					y[p] += t[p] * a;
				}
			} else {
				for (uint32_t p = 0; p < cols; p++)
					s += t[p] * x[p];
			}
			yr[j * ld + i] = s;
		}
	}
}

#ifdef HAVE_AVX2
__attribute__((target("avx2,fma"))) static float hsum(__m256 v)
{
	__m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	a = _mm_add_ps(a, _mm_movehl_ps(a, a));
	a = _mm_add_ss(a, _mm_movehdup_ps(a));
	return _mm_cvtss_f32(a);
}

/* One tile row against vector j (the tail rows of a tile). */
__attribute__((target("avx2,fma"))) static float row1(const float *t, uint32_t cols, const float *x,
                                                      float *y, float a, int mirrored)
{
	uint32_t c8 = cols & ~7u, p = 0;
	__m256 s0 = _mm256_setzero_ps(), av = _mm256_set1_ps(a);
	float s;

	for (; p < c8; p += 8) {
		__m256 tv = _mm256_loadu_ps(t + p);

		s0 = _mm256_fmadd_ps(tv, _mm256_loadu_ps(x + p), s0);
		if (mirrored)
			_mm256_storeu_ps(y + p, _mm256_fmadd_ps(tv, av, _mm256_loadu_ps(y + p)));
	}
	s = hsum(s0);
	for (; p < cols; p++) {
		s += t[p] * x[p];
		if (mirrored)
			y[p] += t[p] * a;
	}
	return s;
}

/*
 * Four tile rows at a time: each x and y chunk is loaded once for four
 * rows, so loads and stores stay below the FMAs.
 */
__attribute__((target("avx2,fma"))) static void fused_avx2(const float *T, uint32_t rows,
                                                           uint32_t cols, uint32_t k, size_t ld,
                                                           const float *xc, const float *xr,
                                                           float *yr, float *yc, int mirrored)
{
	uint32_t c8 = cols & ~7u, i = 0;

	for (; i + 4 <= rows; i += 4) {
		const float *t0 = T + (size_t)i * cols, *t1 = t0 + cols, *t2 = t1 + cols,
		            *t3 = t2 + cols;

		for (uint32_t j = 0; j < k; j++) {
			const float *x = xc + j * ld, *xi = xr + j * ld + i;
			float *y = yc + j * ld;
			__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
			__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
			float r0, r1, r2, r3;
			uint32_t p = 0;

			if (mirrored) {
				__m256 a0 = _mm256_set1_ps(xi[0]), a1 = _mm256_set1_ps(xi[1]);
				__m256 a2 = _mm256_set1_ps(xi[2]), a3 = _mm256_set1_ps(xi[3]);

				for (; p < c8; p += 8) {
					__m256 xv = _mm256_loadu_ps(x + p),
					       yv = _mm256_loadu_ps(y + p);
					__m256 v0 = _mm256_loadu_ps(t0 + p),
					       v1 = _mm256_loadu_ps(t1 + p);
					__m256 v2 = _mm256_loadu_ps(t2 + p),
					       v3 = _mm256_loadu_ps(t3 + p);

					/* the next four rows, a line of each every 16 columns
					 * (never faults) */
					if (j == 0 && p % 16 == 0)
						for (int r = 0; r < 4; r++)
							_mm_prefetch(
							    (const char *)(t0 +
							                   (4 + r) * (size_t)cols +
							                   p),
							    _MM_HINT_T0);

					s0 = _mm256_fmadd_ps(v0, xv, s0);
					s1 = _mm256_fmadd_ps(v1, xv, s1);
					s2 = _mm256_fmadd_ps(v2, xv, s2);
					s3 = _mm256_fmadd_ps(v3, xv, s3);
					yv = _mm256_fmadd_ps(v0, a0, yv);
					yv = _mm256_fmadd_ps(v1, a1, yv);
					yv = _mm256_fmadd_ps(v2, a2, yv);
					yv = _mm256_fmadd_ps(v3, a3, yv);
					_mm256_storeu_ps(y + p, yv);
				}
			} else {
				for (; p < c8; p += 8) {
					__m256 xv = _mm256_loadu_ps(x + p);

					s0 = _mm256_fmadd_ps(_mm256_loadu_ps(t0 + p), xv, s0);
					s1 = _mm256_fmadd_ps(_mm256_loadu_ps(t1 + p), xv, s1);
					s2 = _mm256_fmadd_ps(_mm256_loadu_ps(t2 + p), xv, s2);
					s3 = _mm256_fmadd_ps(_mm256_loadu_ps(t3 + p), xv, s3);
				}
			}
			r0 = hsum(s0);
			r1 = hsum(s1);
			r2 = hsum(s2);
			r3 = hsum(s3);
			for (; p < cols; p++) {
				r0 += t0[p] * x[p];
				r1 += t1[p] * x[p];
				r2 += t2[p] * x[p];
				r3 += t3[p] * x[p];
				if (mirrored)
					y[p] += t0[p] * xi[0] + t1[p] * xi[1] + t2[p] * xi[2] +
					        t3[p] * xi[3];
			}
			yr[j * ld + i] = r0;
			yr[j * ld + i + 1] = r1;
			yr[j * ld + i + 2] = r2;
			yr[j * ld + i + 3] = r3;
		}
	}
	for (; i < rows; i++)
		for (uint32_t j = 0; j < k; j++)
			yr[j * ld + i] = row1(T + (size_t)i * cols, cols, xc + j * ld, yc + j * ld,
			                      mirrored ? xr[j * ld + i] : 0.0f, mirrored);
}
#endif

#ifdef HAVE_AVX2
/*
 * The AVX2 kernel's loop in 16 lanes, the last columns under a mask (no
 * scalar tail): half the instructions a column where the FMA units are
 * 512 bits wide (warm mv pass, d = 32768, raw tiles, AMD Zen 5: 0.078 ->
 * 0.071 s).
 *
 * With @p crc, each row is also folded into it as it is loaded (the first
 * vector's sweep), so a raw tile is checksummed on its one way from memory
 * instead of again from L1 after it: warm raw mv at d = 32768 (Zen 5),
 * alternated, 0.050-0.051 -> 0.043-0.045 s. The caller passes @p crc only when vpclmulqdq is there
 * and the rows come in fours of whole 64-byte chunks (no tail). Without
 * it the function runs on any AVX-512F CPU: vpclmulqdq is only in the
 * crc branches, which the compiler emits from the intrinsics alone.
 */
__attribute__((target("avx512f,vpclmulqdq"))) static void
fused_avx512(const float *T, uint32_t rows, uint32_t cols, uint32_t k, size_t ld, const float *xc,
             const float *xr, float *yr, float *yc, int mirrored, pspace_crc32c_rows *crc)
{
	const __m512i k64 = crc32c_lanes_k64();
	uint32_t c16 = cols & ~15u, i = 0;
	__mmask16 tail = (__mmask16)((1u << (cols - c16)) - 1u);

	for (; i + 4 <= rows; i += 4) {
		const float *t0 = T + (size_t)i * cols, *t1 = t0 + cols, *t2 = t1 + cols,
		            *t3 = t2 + cols;

		for (uint32_t j = 0; j < k; j++) {
			const float *x = xc + j * ld, *xi = xr + j * ld + i;
			float *y = yc + j * ld;
			__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
			__m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
			__m512 a0 = _mm512_set1_ps(mirrored ? xi[0] : 0.0f);
			__m512 a1 = _mm512_set1_ps(mirrored ? xi[1] : 0.0f);
			__m512 a2 = _mm512_set1_ps(mirrored ? xi[2] : 0.0f);
			__m512 a3 = _mm512_set1_ps(mirrored ? xi[3] : 0.0f);
			__m512i z[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
			                _mm512_setzero_si512(), _mm512_setzero_si512()};

			if (j == 0 && crc)
				crc32c_lanes_begin(crc, z);
			for (uint32_t p = 0; p < cols; p += 16) {
				__mmask16 m = p < c16 ? (__mmask16)0xffff : tail;
				__m512 xv = _mm512_maskz_loadu_ps(m, x + p);
				__m512 v0 = _mm512_maskz_loadu_ps(m, t0 + p);
				__m512 v1 = _mm512_maskz_loadu_ps(m, t1 + p);
				__m512 v2 = _mm512_maskz_loadu_ps(m, t2 + p);
				__m512 v3 = _mm512_maskz_loadu_ps(m, t3 + p);

				/* the next four rows, a line of each (never faults) */
				if (j == 0)
					for (int r = 0; r < 4; r++)
						_mm_prefetch(
						    (const char *)(t0 + (4 + r) * (size_t)cols + p),
						    _MM_HINT_T0);
				if (j == 0 && crc) {
					z[0] =
					    crc32c_lanes_fold(z[0], k64, _mm512_castps_si512(v0));
					z[1] =
					    crc32c_lanes_fold(z[1], k64, _mm512_castps_si512(v1));
					z[2] =
					    crc32c_lanes_fold(z[2], k64, _mm512_castps_si512(v2));
					z[3] =
					    crc32c_lanes_fold(z[3], k64, _mm512_castps_si512(v3));
				}
				s0 = _mm512_fmadd_ps(v0, xv, s0);
				s1 = _mm512_fmadd_ps(v1, xv, s1);
				s2 = _mm512_fmadd_ps(v2, xv, s2);
				s3 = _mm512_fmadd_ps(v3, xv, s3);
				if (mirrored) {
					__m512 yv = _mm512_maskz_loadu_ps(m, y + p);

					yv = _mm512_fmadd_ps(v0, a0, yv);
					yv = _mm512_fmadd_ps(v1, a1, yv);
					yv = _mm512_fmadd_ps(v2, a2, yv);
					yv = _mm512_fmadd_ps(v3, a3, yv);
					_mm512_mask_storeu_ps(y + p, m, yv);
				}
			}
			if (j == 0 && crc)
				crc32c_lanes_end(crc, z);
			yr[j * ld + i] = _mm512_reduce_add_ps(s0);
			yr[j * ld + i + 1] = _mm512_reduce_add_ps(s1);
			yr[j * ld + i + 2] = _mm512_reduce_add_ps(s2);
			yr[j * ld + i + 3] = _mm512_reduce_add_ps(s3);
		}
	}
	if (i < rows)
		fused_avx2(T + (size_t)i * cols, rows - i, cols, k, ld, xc, xr + i, yr + i, yc,
		           mirrored);
}
#endif

void pspace_fused_f32(const float *T, uint32_t rows, uint32_t cols, uint32_t k, size_t ld,
                      const float *xc, const float *xr, float *yr, float *yc, int mirrored,
                      pspace_crc32c_rows *crc)
{
#ifdef HAVE_AVX2
	static int have = -1;

	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
		if (have && __builtin_cpu_supports("avx512f"))
			have = 2;
	}
	if (have == 2) {
		fused_avx512(T, rows, cols, k, ld, xc, xr, yr, yc, mirrored, crc);
		return;
	}
	if (have) {
		fused_avx2(T, rows, cols, k, ld, xc, xr, yr, yc, mirrored);
		return;
	}
#endif
	fused_c(T, rows, cols, k, ld, xc, xr, yr, yc, mirrored);
}

#ifdef HAVE_AVX2
/*
 * Columns per sweep of the 16-lane kernel: the x and y chunks of that many
 * columns (2 x 8 KiB) stay in L1 while every row group of the panel passes
 * over them; a whole tile row's chunks (2 x 32 KiB) would be read from L2
 * once per row group, as often as the FMAs they feed.
 */
#define WIDE_COLS 128

/*
 * @p R rows (stride @p ld) over @p cols columns of the 16-lane kernel: per
 * column p, R broadcasts of T[r][p] serve both products: the R direct sums
 * (one register per row, the 16 right-hand sides in its lanes; started
 * from yr unless @p first) and the mirrored sum of column p. For R = 8 the
 * mirrored sum is two chains of 4 FMAs joined by an add: one chain of 8
 * dependent FMAs (32 cycles of latency for 8 cycles of throughput) kept
 * too few columns in flight (mm16 pass, d = 16384, raw tiles in the page
 * cache: 0.058 -> 0.053 s; four chains measured no better).
 */
__attribute__((always_inline, target("avx512f"))) static inline void
rows16(const float *T, size_t ld, uint32_t cols, const float *xc, const float *xr, float *yr,
       float *yc, int mirrored, int first, const int R)
{
	__m512 acc[8], xi[8];

	for (int r = 0; r < R; r++) {
		acc[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(yr + 16 * r);
		xi[r] = mirrored ? _mm512_loadu_ps(xr + 16 * r) : _mm512_setzero_ps();
	}
	if (mirrored) {
		for (uint32_t p = 0; p < cols; p++) {
			__m512 x = _mm512_loadu_ps(xc + 16 * (size_t)p);
			__m512 y = _mm512_loadu_ps(yc + 16 * (size_t)p);

			/* the next rows' lines, one per row every 16 columns (never faults) */
			if (p % 16 == 0)
				for (int r = 0; r < R; r++)
					_mm_prefetch((const char *)(T + (size_t)(R + r) * ld + p),
					             _MM_HINT_T0);

			if (R == 8) {
				__m512 y2 = _mm512_setzero_ps();

				for (int r = 0; r < 8; r += 2) {
					__m512 t = _mm512_set1_ps(T[(size_t)r * ld + p]);
					__m512 u = _mm512_set1_ps(T[(size_t)(r + 1) * ld + p]);

					acc[r] = _mm512_fmadd_ps(t, x, acc[r]);
					acc[r + 1] = _mm512_fmadd_ps(u, x, acc[r + 1]);
					y = _mm512_fmadd_ps(t, xi[r], y);
					y2 = _mm512_fmadd_ps(u, xi[r + 1], y2);
				}
				y = _mm512_add_ps(y, y2);
			} else {
				for (int r = 0; r < R; r++) {
					__m512 t = _mm512_set1_ps(T[(size_t)r * ld + p]);

					acc[r] = _mm512_fmadd_ps(t, x, acc[r]);
					y = _mm512_fmadd_ps(t, xi[r], y);
				}
			}
			_mm512_storeu_ps(yc + 16 * (size_t)p, y);
		}
	} else {
		for (uint32_t p = 0; p < cols; p++) {
			__m512 x = _mm512_loadu_ps(xc + 16 * (size_t)p);

			for (int r = 0; r < R; r++)
				acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(T[(size_t)r * ld + p]), x,
				                         acc[r]);
		}
	}
	for (int r = 0; r < R; r++)
		_mm512_storeu_ps(yr + 16 * r, acc[r]);
}

__attribute__((target("avx512f"))) static void fused16_avx512(const float *T, uint32_t rows,
                                                              uint32_t cols, const float *xc,
                                                              const float *xr, float *yr, float *yc,
                                                              int mirrored)
{
	for (uint32_t c0 = 0; c0 < cols; c0 += WIDE_COLS) {
		const float *t = T + c0, *x = xc + 16 * (size_t)c0;
		float *y = yc + 16 * (size_t)c0;
		uint32_t n = cols - c0 < WIDE_COLS ? cols - c0 : WIDE_COLS, i = 0;
		int first = c0 == 0;

		for (; i + 8 <= rows; i += 8)
			rows16(t + (size_t)i * cols, cols, n, x, xr + 16 * i, yr + 16 * i, y,
			       mirrored, first, 8);
		for (; i + 4 <= rows; i += 4)
			rows16(t + (size_t)i * cols, cols, n, x, xr + 16 * i, yr + 16 * i, y,
			       mirrored, first, 4);
		for (; i < rows; i++)
			rows16(t + (size_t)i * cols, cols, n, x, xr + 16 * i, yr + 16 * i, y,
			       mirrored, first, 1);
	}
}
#endif

int pspace_fused16_available(void)
{
#ifdef HAVE_AVX2
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
#else
	return 0;
#endif
}

void pspace_fused16_f32(const float *T, uint32_t rows, uint32_t cols, const float *xc,
                        const float *xr, float *yr, float *yc, int mirrored)
{
#ifdef HAVE_AVX2
	fused16_avx512(T, rows, cols, xc, xr, yr, yc, mirrored);
#else
	(void)T, (void)rows, (void)cols, (void)xc, (void)xr, (void)yr, (void)yc, (void)mirrored;
#endif
}

/* Y[j * ldy + i] += a * src[16 i + j]: the scalar version and the tail rows. */
static void wide_add_c(double *Y, size_t ldy, uint32_t k, uint32_t i0, uint32_t len, double a,
                       const double *d, const float *f)
{
	for (uint32_t i = i0; i < len; i++)
		for (uint32_t j = 0; j < k; j++)
			Y[j * ldy + i] +=
			    a * (d ? d[(size_t)i * 16 + j] : (double)f[(size_t)i * 16 + j]);
}

#ifdef HAVE_AVX2
/*
 * Eight rows of lanes j0..j0+7 (r[i] = lanes of row i0 + i) transposed into
 * columns: Y[(j0 + j) * ldy + i0 + i] += r[i][j] for j0 + j < k.
 */
__attribute__((always_inline, target("avx512f"))) static inline void
add8x8(double *Y, size_t ldy, uint32_t k, uint32_t j0, const __m512d r[8])
{
	const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
	const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
	__m512d t[8], u[8], col[8];

	for (int p = 0; p < 8; p += 2) {
		t[p] = _mm512_unpacklo_pd(r[p], r[p + 1]);     /* r_p0 r_q0 r_p2 r_q2 ... */
		t[p + 1] = _mm512_unpackhi_pd(r[p], r[p + 1]); /* r_p1 r_q1 r_p3 r_q3 ... */
	}
	/* rows 0-3 (u[0..3]) and 4-7 (u[4..7]) at lanes 0, 4 | 2, 6 | 1, 5 | 3, 7 */
	for (int h = 0; h < 8; h += 4) {
		u[h] = _mm512_permutex2var_pd(t[h], lo, t[h + 2]);
		u[h + 1] = _mm512_permutex2var_pd(t[h], hi, t[h + 2]);
		u[h + 2] = _mm512_permutex2var_pd(t[h + 1], lo, t[h + 3]);
		u[h + 3] = _mm512_permutex2var_pd(t[h + 1], hi, t[h + 3]);
	}
	for (int q = 0; q < 4; q++) {
		static const int first[4] = {0, 2, 1, 3}; /* the lane of u[q]'s low half */

		col[first[q]] = _mm512_shuffle_f64x2(u[q], u[q + 4], 0x44);
		col[first[q] + 4] = _mm512_shuffle_f64x2(u[q], u[q + 4], 0xEE);
	}
	for (uint32_t j = 0; j < 8 && j0 + j < k; j++) {
		double *y = Y + (size_t)(j0 + j) * ldy;

		_mm512_storeu_pd(y, _mm512_add_pd(_mm512_loadu_pd(y), col[j]));
	}
}

__attribute__((target("avx512f"))) static void wide_add_avx512(double *Y, size_t ldy, uint32_t k,
                                                               uint32_t len, double a,
                                                               const double *d, const float *f)
{
	const __m512d av = _mm512_set1_pd(a);
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		__m512d r[8], s[8];

		for (int p = 0; p < 8; p++) {
			size_t o = (size_t)(i + p) * 16;

			if (d) {
				r[p] = _mm512_loadu_pd(d + o);
				s[p] = _mm512_loadu_pd(d + o + 8);
			} else {
				__m512 v = _mm512_loadu_ps(f + o);

				r[p] = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
				s[p] = _mm512_cvtps_pd(_mm256_castpd_ps(
				    _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
			}
			r[p] = _mm512_mul_pd(av, r[p]);
			s[p] = _mm512_mul_pd(av, s[p]);
		}
		add8x8(Y + i, ldy, k, 0, r);
		if (k > 8)
			add8x8(Y + i, ldy, k, 8, s);
	}
	wide_add_c(Y, ldy, k, i, len, a, d, f);
}
#endif

void pspace_wide_add(double *Y, size_t ldy, uint32_t k, uint32_t len, double a, const double *d,
                     const float *f)
{
#ifdef HAVE_AVX2
	if (pspace_fused16_available()) {
		wide_add_avx512(Y, ldy, k, len, a, d, f);
		return;
	}
#endif
	wide_add_c(Y, ldy, k, 0, len, a, d, f);
}
