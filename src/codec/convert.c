/*
 * Precision conversion kernels. Each kernel is a simple loop over a
 * contiguous run of elements with branch-free bodies (selects, not jumps),
 * so the compiler can vectorize it; pspace_convert_block() picks the
 * kernel once and calls it per row.
 *
 * Nothing here depends on denormal support in the FPU: a program that
 * turns on flush-to-zero still gets correct F16 and BF16 values.
 */
#include "codec/convert.h"

#include <math.h>
#include <string.h>

#include "common/error.h"

typedef void (*cvt_fn)(void *restrict dst, const void *restrict src, size_t n, double s1,
                       double s2);

static inline uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint64_t f64_bits(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static inline double bits_f64(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* -- bfloat16 ---------------------------------------------------------------- */

/* Round to nearest even on the upper 16 bits; NaN stays NaN (made quiet). */
static inline uint16_t f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
	uint32_t nan = (u >> 16) | 0x0040u;

	return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

static inline float bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

/* -- IEEE binary16 ------------------------------------------------------------- */

/*
 * The binary16 conversions pick among candidate results with bit masks
 * instead of ?: so that no floating-point operation sits on one arm of a
 * branch: with the default -ftrapping-math GCC will not if-convert such an
 * arm, and the loop would not vectorize.
 */
static inline uint32_t sel32(uint32_t c, uint32_t a, uint32_t b)
{
	uint32_t m = (uint32_t)0 - c; /* c is 0 or 1 */

	return (a & m) | (b & ~m);
}

static inline uint64_t sel64(uint64_t c, uint64_t a, uint64_t b)
{
	uint64_t m = (uint64_t)0 - c;

	return (a & m) | (b & ~m);
}

/*
 * float -> binary16, round to nearest even (after F. Giesen's
 * float_to_half_fast3_rtne). Results below 2^-14 are subnormal: adding
 * 0.5 puts the binary16 subnormal unit 2^-24 in the last place of the
 * float, so the FPU's own rounding does the work.
 */
static inline uint16_t f32_to_f16(float f)
{
	const uint32_t f16max = (uint32_t)(127 + 16) << 23; /* 2^16: Inf from here */
	const uint32_t f16min = (uint32_t)(127 - 14) << 23; /* 2^-14: smallest normal */
	const float magic = 0.5f;
	uint32_t u = f32_bits(f);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	uint32_t infnan = sel32(a > 0x7f800000u, 0x7e00u | ((a >> 13) & 0x3ffu), 0x7c00u);
	uint32_t sub = f32_bits(bits_f32(a) + magic) - f32_bits(magic);
	uint32_t nrm = (a - ((uint32_t)(127 - 15) << 23) + 0xfffu + ((a >> 13) & 1)) >> 13;
	uint32_t o = sel32(a >= f16max, infnan, sel32(a < f16min, sub, nrm));

	return (uint16_t)(o | sign);
}

/* double -> binary16, round to nearest even, in one rounding step. */
static inline uint16_t f64_to_f16(double d)
{
	const uint64_t f16max = (uint64_t)(1023 + 16) << 52;
	const uint64_t f16min = (uint64_t)(1023 - 14) << 52;
	const double magic = 0x1p28; /* its last place is 2^-24 */
	uint64_t u = f64_bits(d);
	uint64_t sign = (u >> 48) & 0x8000u;
	uint64_t a = u & 0x7fffffffffffffffu;
	uint64_t infnan = sel64(a > 0x7ff0000000000000u, 0x7e00u | ((a >> 42) & 0x3ffu), 0x7c00u);
	uint64_t sub = f64_bits(bits_f64(a) + magic) - f64_bits(magic);
	uint64_t nrm =
	    (a - ((uint64_t)(1023 - 15) << 52) + (((uint64_t)1 << 41) - 1) + ((a >> 42) & 1)) >> 42;
	uint64_t o = sel64(a >= f16max, infnan, sel64(a < f16min, sub, nrm));

	return (uint16_t)(o | sign);
}

/*
 * binary16 -> float, exact: significand (with the hidden bit for normals)
 * times 2^(exponent - 25), the power built from bits; no subnormal floats
 * involved, so flush-to-zero modes do not matter.
 */
static inline float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t em = h & 0x7fffu;
	uint32_t ex = em >> 10;
	uint32_t normal = ex != 0;
	uint32_t sig = (em & 0x3ffu) | (normal << 10);
	uint32_t pw = ((ex + !normal) - 25 + 127) << 23; /* 2^(e-25), e = max(ex, 1) */
	uint32_t fin = f32_bits((float)(int32_t)sig * bits_f32(pw));
	uint32_t infnan = (em << 13) | 0x7f800000u;

	return bits_f32(sel32(ex == 31, infnan, fin) | sign);
}

/* -- kernels: s1, s2 are the scale factors (1 when unused) -------------------- */

static void cvt_f32_f64(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	double *restrict d = dst;
	const float *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = s[i];
}

static void cvt_f64_f32(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	float *restrict d = dst;
	const double *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = (float)s[i];
}

static void cvt_f32_bf16(void *restrict dst, const void *restrict src, size_t n, double s1,
                         double s2)
{
	uint16_t *restrict d = dst;
	const float *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = f32_to_bf16(s[i]);
}

/* Via float, as documented: a double rounding, within 2^-8 relative all the same. */
static void cvt_f64_bf16(void *restrict dst, const void *restrict src, size_t n, double s1,
                         double s2)
{
	uint16_t *restrict d = dst;
	const double *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = f32_to_bf16((float)s[i]);
}

static void cvt_bf16_f32(void *restrict dst, const void *restrict src, size_t n, double s1,
                         double s2)
{
	float *restrict d = dst;
	const uint16_t *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = bf16_to_f32(s[i]);
}

static void cvt_bf16_f64(void *restrict dst, const void *restrict src, size_t n, double s1,
                         double s2)
{
	double *restrict d = dst;
	const uint16_t *restrict s = src;

	(void)s1; /* no scale for these types */
	(void)s2;
	for (size_t i = 0; i < n; i++)
		d[i] = bf16_to_f32(s[i]);
}

/*
 * float x times 2^e (|x 2^e| < 2^15 for finite x) is exact in double and,
 * for every value that binary16 does not flush to zero, exact in float
 * too, so the float rounding below is the only one.
 */
static void cvt_f32_f16(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	uint16_t *restrict d = dst;
	const float *restrict s = src;

	for (size_t i = 0; i < n; i++)
		d[i] = f32_to_f16((float)((double)s[i] * s1 * s2));
}

/* Scaling up is exact (s1 brings the smallest values up first, s2 is 1 or large). */
static void cvt_f64_f16(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	uint16_t *restrict d = dst;
	const double *restrict s = src;

	for (size_t i = 0; i < n; i++)
		d[i] = f64_to_f16(s[i] * s1 * s2);
}

static void cvt_f16_f32(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	float *restrict d = dst;
	const uint16_t *restrict s = src;

	if (s2 == 1.0 && s1 >= 0x1p-102 && s1 <= 0x1p111) {
		/*
		 * 2^-e with e in [-111, 102]: every finite binary16 value times
		 * 2^-e is a normal float (2^-24 2^-102 >= 2^-126, 65504 2^111 <
		 * 2^127), so one float multiply is exact.
		 */
		float sf = (float)s1;

		for (size_t i = 0; i < n; i++)
			d[i] = f16_to_f32(s[i]) * sf;
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = (float)((double)f16_to_f32(s[i]) * s1 * s2);
	}
}

static void cvt_f16_f64(void *restrict dst, const void *restrict src, size_t n, double s1,
                        double s2)
{
	double *restrict d = dst;
	const uint16_t *restrict s = src;

	if (s2 == 1.0) {
		for (size_t i = 0; i < n; i++)
			d[i] = (double)f16_to_f32(s[i]) * s1;
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = (double)f16_to_f32(s[i]) * s1 * s2;
	}
}

/*
 * Splits 2^k into two normal doubles 2^k1 * 2^k2, |k1| <= 1022, applied
 * smaller factor first: scaling up a denormal is exact, and scaling down
 * rounds only once, at the end.
 */
static void scale_factors(int32_t k, double *s1, double *s2)
{
	int32_t big = k > 1022 ? 1022 : (k < -1022 ? -1022 : k);

	*s1 = ldexp(1.0, k - big);
	*s2 = ldexp(1.0, big);
	if (k - big == 0) {
		/* the common case: one factor, s2 == 1 selects the short loops */
		*s1 = *s2;
		*s2 = 1.0;
	}
}

static cvt_fn pick_kernel(pspace_dtype dst, pspace_dtype src)
{
	if (src == PSPACE_F32) {
		switch (dst) {
		case PSPACE_F64: return cvt_f32_f64;
		case PSPACE_BF16: return cvt_f32_bf16;
		case PSPACE_F16: return cvt_f32_f16;
		default: return NULL;
		}
	}
	if (src == PSPACE_F64) {
		switch (dst) {
		case PSPACE_F32: return cvt_f64_f32;
		case PSPACE_BF16: return cvt_f64_bf16;
		case PSPACE_F16: return cvt_f64_f16;
		default: return NULL;
		}
	}
	if (dst == PSPACE_F32) {
		switch (src) {
		case PSPACE_BF16: return cvt_bf16_f32;
		case PSPACE_F16: return cvt_f16_f32;
		default: return NULL;
		}
	}
	if (dst == PSPACE_F64) {
		switch (src) {
		case PSPACE_BF16: return cvt_bf16_f64;
		case PSPACE_F16: return cvt_f16_f64;
		default: return NULL;
		}
	}
	return NULL;
}

int pspace_convert_block(pspace_dtype dst_type, void *dst, size_t dst_ld, pspace_dtype src_type,
                         const void *src, size_t src_ld, uint32_t rows, uint32_t cols,
                         int32_t scale_exp)
{
	size_t des = pspace_dtype_size(dst_type);
	size_t ses = pspace_dtype_size(src_type);
	double s1 = 1.0, s2 = 1.0;
	cvt_fn fn = NULL;
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (dst_type == src_type && (src_type == PSPACE_F32 || src_type == PSPACE_F64)) {
		if (dst_ld == cols && src_ld == cols) {
			memcpy(d, s, (size_t)rows * cols * des);
		} else {
			for (uint32_t r = 0; r < rows; r++)
				memcpy(d + r * dst_ld * des, s + r * src_ld * ses,
				       (size_t)cols * des);
		}
		return 0;
	}
	fn = pick_kernel(dst_type, src_type);
	if (fn == NULL)
		return pspace_err_set(PSPACE_EINVAL, "no conversion from %s to %s",
		                      pspace_dtype_name(src_type), pspace_dtype_name(dst_type));
	if (dst_type == PSPACE_F16)
		scale_factors(scale_exp, &s1, &s2);
	else if (src_type == PSPACE_F16)
		scale_factors(-scale_exp, &s1, &s2);
	if (dst_ld == cols && src_ld == cols) {
		fn(d, s, (size_t)rows * cols, s1, s2);
	} else {
		for (uint32_t r = 0; r < rows; r++)
			fn(d + r * dst_ld * des, s + r * src_ld * ses, cols, s1, s2);
	}
	return 0;
}

/*
 * Non-negative IEEE values order like their bit patterns: an integer max
 * vectorizes. Signed, as the sign bit is cleared: x86-64's baseline (SSE2)
 * has no unsigned compares, and no 64-bit ones at all, so the f64 scan is
 * also built for AVX2 (4x faster there; chosen when the library loads).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif

SCAN_CLONES static uint32_t maxabs_bits_f32(const float *restrict s, size_t n)
{
	int32_t m = 0;

	for (size_t i = 0; i < n; i++) {
		int32_t a = (int32_t)(f32_bits(s[i]) & 0x7fffffffu);

		a = a < 0x7f800000 ? a : 0;
		m = a > m ? a : m;
	}
	return (uint32_t)m;
}

SCAN_CLONES static uint64_t maxabs_bits_f64(const double *restrict s, size_t n)
{
	int64_t m = 0;

	for (size_t i = 0; i < n; i++) {
		int64_t a = (int64_t)(f64_bits(s[i]) & 0x7fffffffffffffffu);

		a = a < 0x7ff0000000000000 ? a : 0;
		m = a > m ? a : m;
	}
	return (uint64_t)m;
}

SCAN_CLONES static int has_inf_f32(const float *restrict s, size_t n)
{
	int32_t any = 0;

	for (size_t i = 0; i < n; i++)
		any |= (int32_t)(f32_bits(s[i]) & 0x7fffffffu) == 0x7f800000;
	return any;
}

int pspace_convert_has_inf_f32(const float *s, size_t n)
{
	return has_inf_f32(s, n);
}

double pspace_convert_maxabs(pspace_dtype t, const void *src, size_t ld, uint32_t rows,
                             uint32_t cols)
{
	/* a contiguous block is one run */
	size_t nrun = ld == cols ? 1 : rows;
	size_t len = ld == cols ? (size_t)rows * cols : cols;
	double m = 0.0;

	for (size_t r = 0; r < nrun; r++) {
		double v = 0.0;

		if (t == PSPACE_F32)
			v = bits_f32(maxabs_bits_f32((const float *)src + r * ld, len));
		else if (t == PSPACE_F64)
			v = bits_f64(maxabs_bits_f64((const double *)src + r * ld, len));
		m = v > m ? v : m;
	}
	return m;
}

int32_t pspace_f16_scale_exp(double maxabs)
{
	int k = 0;

	if (!(maxabs > 0.0) || !isfinite(maxabs))
		return 0;
	/* maxabs = f 2^k with f in [0.5, 1): f 2^(k+e) < 2^15 iff k + e <= 15 */
	(void)frexp(maxabs, &k);
	return 15 - k;
}
