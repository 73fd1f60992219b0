/*
 * Parameter vectors: per-layer views and BLAS-1 operations on double arrays.
 *
 * The plain operations are simple loops for the compiler to vectorize. The
 * dot product is Ogita-Rump-Oishi Dot2 (error-free products and sums, as if
 * computed in twice the working precision) over four independent lanes, so
 * CG and Lanczos get accurate inner products at any d. The Euclidean norm
 * takes one pass and rescales by a power of two only when the plain sum of
 * squares overflows or underflows. Random vectors come from xoshiro256**
 * seeded through splitmix64: the same seed gives the same vector on every
 * run, and a shorter vector is a prefix of a longer one.
 */
#include "pspace/vec.h"

#include "common/error.h"

#include <float.h>
#include <math.h>

int pspace_vec_view_layer(pspace_vec_view *out, const pspace_layout *l, size_t layer, double *v)
{
	const pspace_layer *ly;

	if (out == NULL || v == NULL || l == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_vec_view_layer: NULL argument");
	ly = pspace_layout_layer(l, layer);
	if (ly == NULL)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_vec_view_layer: layer %zu out of range (%zu layers)",
		                      layer, pspace_layout_nlayers(l));
	out->weight = v + ly->offset;
	out->weight_size = ly->weight_size;
	out->bias = ly->bias_size ? v + ly->offset + ly->weight_size : NULL;
	out->bias_size = ly->bias_size;
	return 0;
}

/* Error-free sum: s + e == a + b exactly (Knuth's TwoSum, no branch). */
static inline void two_sum(double a, double b, double *s, double *e)
{
	double x = a + b, z = x - a;

	*e = (a - (x - z)) + (b - z);
	*s = x;
}

#if defined(FP_FAST_FMA) || defined(__FMA__)
/* Error-free product with a hardware FMA. */
static inline void two_prod(double a, double b, double *p, double *e)
{
	*p = a * b;
	*e = fma(a, b, -*p);
}
#else
/*
 * Error-free product by Dekker's splitting. Without hardware FMA the
 * compiler cannot contract these expressions, so the splitting is exact.
 */
static inline void split(double a, double *hi, double *lo)
{
	double c = 134217729.0 * a; /* 2^27 + 1 */

	*hi = c - (c - a);
	*lo = a - *hi;
}

static inline void two_prod(double a, double b, double *p, double *e)
{
	double ah, al, bh, bl;

	*p = a * b;
	split(a, &ah, &al);
	split(b, &bh, &bl);
	*e = al * bl - (((*p - ah * bh) - al * bh) - ah * bl);
}
#endif

#define LANES 4

double pspace_vec_dot(uint64_t n, const double *x, const double *y)
{
	double p[LANES] = {0}, s[LANES] = {0}, h, r, q, tot, err = 0;
	uint64_t i = 0, nb = n - n % LANES;

	for (; i < nb; i += LANES) {
		for (int j = 0; j < LANES; j++) {
			two_prod(x[i + j], y[i + j], &h, &r);
			two_sum(p[j], h, &p[j], &q);
			s[j] += q + r;
		}
	}
	for (; i < n; i++) {
		two_prod(x[i], y[i], &h, &r);
		two_sum(p[0], h, &p[0], &q);
		s[0] += q + r;
	}
	tot = p[0];
	for (int j = 1; j < LANES; j++) {
		two_sum(tot, p[j], &tot, &q);
		err += q;
	}
	for (int j = 0; j < LANES; j++)
		err += s[j];
	tot += err;
	if (!isfinite(tot)) {
		/* Inf or overflow make the error terms NaN: give the plain sum. */
		tot = 0;
		for (i = 0; i < n; i++)
			tot += x[i] * y[i];
	}
	return tot;
}

void pspace_vec_axpy(uint64_t n, double a, const double *x, double *y)
{
	for (uint64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

void pspace_vec_scale(uint64_t n, double a, double *x)
{
	for (uint64_t i = 0; i < n; i++)
		x[i] *= a;
}

void pspace_vec_scale_rows(uint64_t n, uint32_t k, double a, double *X, size_t ld)
{
	if (a == 1.0)
		return;
	for (uint32_t j = 0; j < k; j++) {
		if (a == 0.0)
			pspace_vec_zero(n, X + (size_t)j * ld);
		else
			pspace_vec_scale(n, a, X + (size_t)j * ld);
	}
}

void pspace_vec_copy(uint64_t n, const double *x, double *y)
{
	if (x == y)
		return;
	for (uint64_t i = 0; i < n; i++)
		y[i] = x[i];
}

void pspace_vec_zero(uint64_t n, double *x)
{
	for (uint64_t i = 0; i < n; i++)
		x[i] = 0.0;
}

double pspace_vec_nrm2(uint64_t n, const double *x)
{
	double ss[LANES] = {0}, mx[LANES] = {0}, sum = 0, m = 0, s1, s2;
	uint64_t i = 0, nb = n - n % LANES;
	int e;

	for (; i < nb; i += LANES) {
		for (int j = 0; j < LANES; j++) {
			double a = fabs(x[i + j]);

			ss[j] += a * a;
			mx[j] = a > mx[j] ? a : mx[j];
		}
	}
	for (; i < n; i++) {
		double a = fabs(x[i]);

		ss[0] += a * a;
		mx[0] = a > mx[0] ? a : mx[0];
	}
	for (int j = 0; j < LANES; j++) {
		sum += ss[j];
		m = mx[j] > m ? mx[j] : m;
	}
	if (isnan(sum))
		return sum;
	if (m == 0 || isinf(m))
		return m;
	/*
	 * Squares below 2^-1022 that were lost are < n 2^-1022, negligible
	 * against a sum >= 2^-900; a finite sum did not overflow.
	 */
	if (isfinite(sum) && sum >= 0x1p-900)
		return sqrt(sum);
	/*
	 * Rescale by 2^-e (exact) so the largest entry is in [0.5, 1). 2^-e
	 * itself may not be a double (e < -1022 for subnormal entries), so
	 * apply it as two halves.
	 */
	frexp(m, &e);
	s1 = ldexp(1.0, -(e / 2));
	s2 = ldexp(1.0, -(e - e / 2));
	for (int j = 0; j < LANES; j++)
		ss[j] = 0;
	for (i = 0; i < nb; i += LANES) {
		for (int j = 0; j < LANES; j++) {
			double a = x[i + j] * s1 * s2;

			ss[j] += a * a;
		}
	}
	for (; i < n; i++) {
		double a = x[i] * s1 * s2;

		ss[0] += a * a;
	}
	sum = 0;
	for (int j = 0; j < LANES; j++)
		sum += ss[j];
	return sqrt(sum) / s1 / s2;
}

double pspace_vec_nrminf(uint64_t n, const double *x)
{
	double m = 0;
	int nan = 0;

	for (uint64_t i = 0; i < n; i++) {
		double a = fabs(x[i]);

		nan |= a != a;
		m = a > m ? a : m;
	}
	return nan ? NAN : m;
}

double pspace_vec_nrm1(uint64_t n, const double *x)
{
	double s[LANES] = {0}, t = 0;
	uint64_t i = 0, nb = n - n % LANES;

	for (; i < nb; i += LANES) {
		for (int j = 0; j < LANES; j++)
			s[j] += fabs(x[i + j]);
	}
	for (; i < n; i++)
		s[0] += fabs(x[i]);
	for (int j = 0; j < LANES; j++)
		t += s[j];
	return t;
}

/* xoshiro256** (Blackman & Vigna), seeded from splitmix64. */
typedef struct rng {
	uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
	uint64_t x = seed;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* Uniform in (-1, 1) from the top 53 bits. */
static inline double rng_sym(rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1p-52 - 1.0;
}

void pspace_vec_randn(uint64_t n, uint64_t seed, double *x)
{
	rng r;
	uint64_t i = 0;

	rng_seed(&r, seed);
	/* Marsaglia's polar method: two normals per accepted pair. */
	while (i < n) {
		double u, v, q, f;

		do {
			u = rng_sym(&r);
			v = rng_sym(&r);
			q = u * u + v * v;
		} while (q >= 1.0 || q == 0.0);
		f = sqrt(-2.0 * log(q) / q);
		x[i++] = u * f;
		if (i < n)
			x[i++] = v * f;
	}
}

void pspace_vec_rademacher(uint64_t n, uint64_t seed, double *x)
{
	rng r;

	rng_seed(&r, seed);
	for (uint64_t i = 0; i < n; i += 64) {
		uint64_t bits = rng_next(&r), m = n - i < 64 ? n - i : 64;

		for (uint64_t j = 0; j < m; j++)
			x[i + j] = ((bits >> j) & 1) ? 1.0 : -1.0;
	}
}
