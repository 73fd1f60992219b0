/*
 * Tests for the tile codec: round trips in every stored precision against
 * references computed here in double, the raw fallback and zero-copy
 * views, the zstd-planes layout read back independently, checksums,
 * truncation, crafted plane tables and garbage input, CRC-32C paths.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "pspace/codec.h"

#include "codec/codec.h"
#include "codec/crc32c.h"
#include "codec/shuffle.h"

#define HDR PSPACE_TILE_HEADER_SIZE

/* -- helpers ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static void rng_seed(uint64_t s)
{
	rng_state = s ? s : 1;
}

/* xorshift64* */
static uint64_t rng_u64(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

/* uniform in [0, 1) */
static double rng_unif(void)
{
	return (double)(rng_u64() >> 11) * 0x1p-53;
}

static double rng_gauss(void)
{
	double u1 = rng_unif(), u2 = rng_unif();

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint32_t rd_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* Bit-at-a-time CRC-32C: the independent reference for both library paths. */
static uint32_t crc32c_bitwise(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

/* Recomputes the checksum of a (possibly doctored) tile, the way the format says. */
static void fix_crc(unsigned char *tile, size_t len)
{
	uint32_t crc = crc32c_bitwise(0, tile, 24);

	crc = crc32c_bitwise(crc, tile + HDR, len - HDR);
	wr_le32(tile + 24, crc);
}

/* Rounds v to p significant bits, to nearest even (v normal, no overflow). */
static double round_sig(double v, int p)
{
	int k;
	double m;

	if (v == 0.0 || !isfinite(v))
		return v;
	m = frexp(v, &k);
	return ldexp(nearbyint(ldexp(m, p)), k - p);
}

/* Largest e with maxabs * 2^e < 2^15, found by walking, independent of the library. */
static int ref_scale_exp(double maxabs)
{
	int e = 0;

	if (maxabs == 0.0)
		return 0;
	while (ldexp(maxabs, e) >= 32768.0)
		e--;
	while (ldexp(maxabs, e + 1) < 32768.0)
		e++;
	return e;
}

/*
 * The value a source element x (exactly representable in src_type) must
 * come back as, at the stored precision, computed in double.
 */
static double ref_stored(pspace_dtype stored, pspace_dtype src_type, double x, int e)
{
	double s;

	switch (stored) {
	case PSPACE_F64: return x;
	case PSPACE_F32: return (double)(float)x;
	case PSPACE_BF16:
		/* from f64 the library goes via float, as documented */
		return round_sig((double)(float)x, 8);
	case PSPACE_F16:
		(void)src_type;
		s = ldexp(x, e);
		if (fabs(s) >= 0x1p-14)
			s = round_sig(s, 11);
		else
			s = ldexp(nearbyint(ldexp(s, 24)), -24); /* subnormal: unit 2^-24 */
		return ldexp(s, -e);
	default: return NAN;
	}
}

static void *xaligned(size_t align, size_t size)
{
	size_t sz = (size + align - 1) / align * align;
	void *p = aligned_alloc(align, sz ? sz : align);

	assert_non_null(p);
	return p;
}

/* -- CRC-32C ------------------------------------------------------------------- */

static void test_codec_crc32c_check_value(void **state)
{
	const char *s = "123456789";

	(void)state;
	assert_int_equal(pspace_crc32c(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_sw(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c_hw(0, s, 9), 0xe3069283u);
	assert_int_equal(crc32c_bitwise(0, s, 9), 0xe3069283u);
	assert_int_equal(pspace_crc32c(0, s, 0), 0);
	/* continuing from a previous value */
	assert_int_equal(pspace_crc32c(pspace_crc32c(0, s, 4), s + 4, 5), 0xe3069283u);
	assert_int_equal(pspace_crc32c_sw(pspace_crc32c_sw(0, s, 3), s + 3, 6), 0xe3069283u);
	print_message("crc32c: hardware path %s\n",
	              pspace_crc32c_hw_available() ? "available" : "not available");
}

static void test_codec_crc32c_hw_matches_sw(void **state)
{
	size_t cap = 40000;
	unsigned char *buf = malloc(cap + 16);

	(void)state;
	assert_non_null(buf);
	rng_seed(7);
	for (size_t i = 0; i < cap + 16; i++)
		buf[i] = (unsigned char)rng_u64();
	for (int t = 0; t < 400; t++) {
		size_t off = rng_u64() % 16;
		/* mostly short, some past the three-stream threshold (6144 bytes) */
		size_t len = (t % 4 == 0) ? rng_u64() % cap : rng_u64() % 300;
		uint32_t init = (t % 3 == 0) ? (uint32_t)rng_u64() : 0;
		uint32_t ref = crc32c_bitwise(init, buf + off, len);

		assert_int_equal(pspace_crc32c_sw(init, buf + off, len), ref);
		assert_int_equal(pspace_crc32c_hw(init, buf + off, len), ref);
		assert_int_equal(pspace_crc32c(init, buf + off, len), ref);
	}
	/* exact multiples of the three-stream block, and one byte either side */
	for (size_t len = 6143; len <= 6145 * 4; len += 6144) {
		for (size_t d = 0; d < 3; d++) {
			size_t l = len - 1 + d;
			uint32_t ref = crc32c_bitwise(0, buf + 3, l);

			assert_int_equal(pspace_crc32c_hw(0, buf + 3, l), ref);
			assert_int_equal(pspace_crc32c_sw(0, buf + 3, l), ref);
		}
	}
	free(buf);
}

/* -- shuffle ------------------------------------------------------------------- */

static void test_codec_shuffle_definition(void **state)
{
	const size_t sizes[] = {1, 2, 3, 4, 8};
	const size_t ns[] = {0, 1, 7, 64, 1001};

	(void)state;
	rng_seed(11);
	for (size_t a = 0; a < sizeof(sizes) / sizeof(sizes[0]); a++) {
		for (size_t b = 0; b < sizeof(ns) / sizeof(ns[0]); b++) {
			size_t es = sizes[a], n = ns[b], bytes = es * n;
			unsigned char *in = malloc(bytes + 1), *sh = malloc(bytes + 1);
			unsigned char *back = malloc(bytes + 1);

			assert_true(in && sh && back);
			for (size_t i = 0; i < bytes; i++)
				in[i] = (unsigned char)rng_u64();
			pspace_shuffle(sh, in, n, es);
			for (size_t i = 0; i < n; i++)
				for (size_t k = 0; k < es; k++)
					assert_int_equal(sh[k * n + i], in[i * es + k]);
			pspace_unshuffle(back, sh, n, es);
			assert_memory_equal(back, in, bytes);
			free(back);
			free(sh);
			free(in);
		}
	}
}

/* -- round trips --------------------------------------------------------------- */

struct shape {
	uint32_t rows, cols;
	size_t src_ld, dst_ld;
};

static const struct shape shapes[] = {
    {1, 1, 1, 1},         {37, 53, 53, 53},
    {53, 37, 37, 37},     {37, 53, 61, 64}, /* ld > cols on both sides */
    {256, 256, 256, 256},
};

enum data_kind { DATA_UNIFORM, DATA_FISHER };

/*
 * Fills a rows x cols block (leading dimension ld, padding set to a huge
 * value that must never be read) with uniform [-1, 1) values or a block of
 * a Fisher-like matrix F = G^T G / n, G an n x m Gaussian, m = max(rows,
 * cols), computed in double. Values are stored into @p x (double, exactly
 * what the source holds) and into @p src as src_type.
 */
static void make_data(enum data_kind kind, pspace_dtype src_type, const struct shape *sh, double *x,
                      void *src)
{
	uint32_t rows = sh->rows, cols = sh->cols;
	size_t m = rows > cols ? rows : cols, n = 2 * m;

	if (kind == DATA_UNIFORM) {
		for (size_t i = 0; i < (size_t)rows * cols; i++)
			x[i] = 2.0 * rng_unif() - 1.0;
	} else {
		double *g = malloc(n * m * sizeof(*g));

		assert_non_null(g);
		for (size_t i = 0; i < n * m; i++)
			g[i] = rng_gauss();
		for (size_t i = 0; i < rows; i++) {
			for (size_t j = 0; j < cols; j++) {
				double acc = 0.0;

				for (size_t k = 0; k < n; k++)
					acc += g[k * m + i] * g[k * m + j];
				x[i * cols + j] = acc / (double)n;
			}
		}
		free(g);
	}
	for (size_t i = 0; i < rows; i++) {
		for (size_t j = 0; j < sh->src_ld; j++) {
			double v = j < cols ? x[i * cols + j] : 1e30;

			if (src_type == PSPACE_F32) {
				((float *)src)[i * sh->src_ld + j] = (float)v;
				if (j < cols)
					x[i * cols + j] = (double)(float)v;
			} else {
				((double *)src)[i * sh->src_ld + j] = v;
			}
		}
	}
}

/*
 * Checks one decoded element y against the source value x.
 *
 * Exact check: y equals ref_stored() (the stored-precision value computed
 * here in double), converted to the decode type.
 *
 * Bounds, for finite normal-range x:
 * - bf16 keeps 8 significant bits; rounding to nearest is off by at most
 *   half a unit in the last place, 2^-8 * 2^k <= 2^-8 |x| for
 *   2^k <= |x| < 2^(k+1). Going f64 -> f32 -> bf16 rounds twice, but the
 *   second rounding can only reach the far neighbour when x sits within
 *   2^-24 |x| of a midpoint, which lies above 2^k (1 + 2^-8), so the error
 *   stays under 2^-8 |x|.
 * - f16 with scale: s = x 2^e with maxabs 2^e in [2^14, 2^15). If
 *   |s| >= 2^-14, binary16 keeps 11 significant bits: |err(s)| <= 2^-11 |s|.
 *   Below, the spacing is 2^-24: |err(s)| <= 2^-25. Scaling back by 2^-e is
 *   exact, and 2^-e <= maxabs 2^-14, so
 *       |y - x| <= 2^-11 |x| + 2^-25 2^-e <= 2^-11 |x| + maxabs 2^-39,
 *   inside the stated bound 2^-11 |x| + maxabs 2^-24. Decoding to f32 adds
 *   no error: an 11-bit significand scaled by a power of two is exact in
 *   float unless it falls below the float normal range (not in these data).
 */
static void check_elem(pspace_dtype stored, pspace_dtype src_type, pspace_dtype want, double x,
                       double y, int e, double maxabs, size_t idx)
{
	double ref = ref_stored(stored, src_type, x, e);

	if (want == PSPACE_F32)
		ref = (double)(float)ref;
	if (y != ref) {
		print_error(
		    "element %zu: stored %s from %s as %s: got %.17g, want %.17g (x %.17g)\n", idx,
		    pspace_dtype_name(stored), pspace_dtype_name(src_type), pspace_dtype_name(want),
		    y, ref, x);
		fail();
	}
	if (stored == PSPACE_BF16)
		assert_true(fabs(y - x) <= 0x1p-8 * fabs(x));
	if (stored == PSPACE_F16) {
		assert_true(fabs(y - x) <= 0x1p-11 * fabs(x) + maxabs * 0x1p-24);
		assert_true(fabs(y - x) <= 0x1p-11 * fabs(x) + maxabs * 0x1p-39);
	}
}

/* binary16 bits to double, by the definition of the format */
static double half_to_double(uint16_t h)
{
	int ex = (h >> 10) & 31, m = h & 1023;
	double v;

	if (ex == 31)
		v = m ? NAN : INFINITY;
	else if (ex == 0)
		v = ldexp(m, -24);
	else
		v = ldexp(1024 + m, ex - 25);
	return (h & 0x8000u) ? -v : v;
}

/* Plane table of a codec 2 tile as documented in tile_format.h: bit 31 = raw. */
struct planes_info {
	size_t es, n;
	uint32_t len[8];
	int raw[8];
};

/*
 * Reads a zstd-planes tile without the library: the table, each plane
 * (ZSTD_decompress or a copy), the unshuffle, the stored values as double
 * (f16 scaled back by 2^-e). Checks the table's consistency on the way.
 */
static void planes_read(const unsigned char *t, size_t len, struct planes_info *pi, double *vals)
{
	size_t es, n, off;
	unsigned char *sh, *el;
	int e = (int32_t)rd_le32(t + 20);

	assert_int_equal(t[6], PSPACE_CODEC_ZSTD_PLANES);
	assert_int_equal(t[7], 1); /* shuffle flag */
	es = t[5] == PSPACE_F64 ? 8 : t[5] == PSPACE_F32 ? 4 : 2;
	n = (size_t)rd_le32(t + 8) * rd_le32(t + 12);
	assert_true(len - HDR >= 4 * es);
	pi->es = es;
	pi->n = n;
	off = HDR + 4 * es;
	sh = malloc(es * n);
	el = malloc(es * n);
	assert_true(sh && el);
	for (size_t b = 0; b < es; b++) {
		uint32_t v = rd_le32(t + HDR + 4 * b);

		pi->raw[b] = (v >> 31) != 0;
		pi->len[b] = v & 0x7fffffffu;
		assert_true(off + pi->len[b] <= len);
		if (pi->raw[b]) {
			assert_int_equal(pi->len[b], n);
			memcpy(sh + b * n, t + off, n);
		} else {
			size_t r = ZSTD_decompress(sh + b * n, n, t + off, pi->len[b]);

			assert_false(ZSTD_isError(r));
			assert_int_equal(r, n);
			assert_true(pi->len[b] * 100 < 97 * n); /* the encoder's keep rule */
		}
		off += pi->len[b];
	}
	assert_int_equal(off, len);
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < es; b++)
			el[i * es + b] = sh[b * n + i];
	for (size_t i = 0; vals != NULL && i < n; i++) {
		const unsigned char *q = el + i * es;

		switch (t[5]) {
		case PSPACE_F64: memcpy(&vals[i], q, 8); break;
		case PSPACE_F32: {
			float f;

			memcpy(&f, q, 4);
			vals[i] = f;
			break;
		}
		case PSPACE_BF16: {
			uint32_t u = (uint32_t)(q[0] | q[1] << 8) << 16;
			float f;

			memcpy(&f, &u, 4);
			vals[i] = f;
			break;
		}
		default: vals[i] = ldexp(half_to_double((uint16_t)(q[0] | q[1] << 8)), -e); break;
		}
	}
	free(el);
	free(sh);
}

static void check_roundtrip(pspace_codec *c, const pspace_codec_opts *o, unsigned eflags,
                            pspace_dtype src_type, const struct shape *sh, const double *x,
                            const void *src)
{
	const void *tile = NULL, *view = NULL;
	size_t len = 0, n = (size_t)sh->rows * sh->cols;
	pspace_tile_header h;
	double maxabs = 0.0;
	int e = 0;
	unsigned char *copy;
	const pspace_dtype wants[] = {PSPACE_F32, PSPACE_F64};

	for (size_t i = 0; i < n; i++)
		maxabs = fmax(maxabs, fabs(x[i]));
	if (o->dtype == PSPACE_F16)
		e = ref_scale_exp(maxabs);

	assert_int_equal(pspace_tile_encode_ex(c, o, eflags, src_type, src, sh->rows, sh->cols,
	                                       sh->src_ld, &tile, &len),
	                 0);
	assert_true(len <= pspace_tile_bound(o, sh->rows, sh->cols));
	/* a private copy: the context's buffer is reused by view below */
	copy = xaligned(64, len);
	memcpy(copy, tile, len);

	assert_int_equal(pspace_tile_parse(copy, len, &h), 0);
	assert_int_equal(h.dtype, o->dtype);
	assert_int_equal(h.rows, sh->rows);
	assert_int_equal(h.cols, sh->cols);
	assert_int_equal(h.payload_len, len - HDR);
	assert_int_equal(h.scale_exp, e);
	assert_int_equal(pspace_tile_verify(copy, len), 0);
	if (o->level == 0)
		assert_int_equal(h.codec, PSPACE_CODEC_RAW);
	if (h.codec == PSPACE_CODEC_RAW)
		assert_int_equal(h.shuffle, 0);
	else
		assert_int_equal(h.shuffle, o->shuffle != 0);
	if (h.codec != PSPACE_CODEC_RAW)
		assert_int_equal(h.codec, o->shuffle && !(eflags & PSPACE_TILE_ENCODE_ONE_FRAME)
		                              ? PSPACE_CODEC_ZSTD_PLANES
		                              : PSPACE_CODEC_ZSTD);
	if (h.codec == PSPACE_CODEC_ZSTD_PLANES) {
		/* the layout as documented, read without the library's decoder */
		struct planes_info pi;
		double *vals = malloc(n * sizeof(*vals));

		assert_non_null(vals);
		planes_read(copy, len, &pi, vals);
		for (size_t i = 0; i < n; i++)
			assert_true(vals[i] == ref_stored(o->dtype, src_type, x[i], e));
		free(vals);
	}

	for (size_t w = 0; w < 2; w++) {
		pspace_dtype want = wants[w];
		size_t es = want == PSPACE_F32 ? 4 : 8;
		size_t dn = (size_t)sh->rows * sh->dst_ld;
		unsigned char *dst = xaligned(64, dn * es);

		memset(dst, 0xa5, dn * es);
		assert_int_equal(pspace_tile_decode(c, copy, len, want, dst, sh->dst_ld), 0);
		for (size_t i = 0; i < sh->rows; i++) {
			for (size_t j = 0; j < sh->dst_ld; j++) {
				size_t k = i * sh->dst_ld + j;

				if (j >= sh->cols) {
					/* padding untouched */
					for (size_t b = 0; b < es; b++)
						assert_int_equal(dst[k * es + b], 0xa5);
					continue;
				}
				check_elem(o->dtype, src_type, want, x[i * sh->cols + j],
				           want == PSPACE_F32 ? ((float *)dst)[k]
				                              : ((double *)dst)[k],
				           e, maxabs, i * sh->cols + j);
			}
		}
		free(dst);

		assert_int_equal(pspace_tile_view(c, copy, len, want, &view, &h), 0);
		assert_int_equal(h.rows, sh->rows);
		if (h.codec == PSPACE_CODEC_RAW && h.dtype == want)
			assert_ptr_equal(view, copy + HDR);
		else
			assert_true((const unsigned char *)view < copy ||
			            (const unsigned char *)view >= copy + len);
		for (size_t i = 0; i < n; i++)
			check_elem(o->dtype, src_type, want, x[i],
			           want == PSPACE_F32 ? ((const float *)view)[i]
			                              : ((const double *)view)[i],
			           e, maxabs, i);
	}
	free(copy);
}

static void roundtrip_all(enum data_kind kind)
{
	const pspace_dtype dtypes[] = {PSPACE_F64, PSPACE_F32, PSPACE_BF16, PSPACE_F16};
	const pspace_dtype srcs[] = {PSPACE_F32, PSPACE_F64};
	const int levels[] = {0, 1, 3, 19};
	pspace_codec *c = NULL;
	int count = 0;

	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const struct shape *sh = &shapes[s];
		size_t n = (size_t)sh->rows * sh->cols;
		double *x = malloc(n * sizeof(*x));
		void *src = malloc((size_t)sh->rows * sh->src_ld * 8);

		assert_true(x && src);
		for (size_t t = 0; t < 2; t++) {
			make_data(kind, srcs[t], sh, x, src);
			for (size_t d = 0; d < 4; d++) {
				for (size_t l = 0; l < 4; l++) {
					/* level 19 is slow on large tiles; small ones cover it */
					if (levels[l] == 19 && n > 4096)
						continue;
					/* shuffle 2: shuffled single frame (codec 1) */
					for (int shuf = 0; shuf < 3; shuf++) {
						pspace_codec_opts o;

						pspace_codec_opts_default(&o);
						o.dtype = dtypes[d];
						o.level = levels[l];
						o.shuffle = shuf != 0;
						check_roundtrip(
						    c, &o,
						    shuf == 2 ? PSPACE_TILE_ENCODE_ONE_FRAME : 0,
						    srcs[t], sh, x, src);
						count++;
					}
				}
			}
		}
		free(src);
		free(x);
	}
	print_message("%d round trips\n", count);
	pspace_codec_free(c);
}

static void test_codec_roundtrip_uniform(void **state)
{
	(void)state;
	rng_seed(1);
	roundtrip_all(DATA_UNIFORM);
}

static void test_codec_roundtrip_fisher(void **state)
{
	(void)state;
	rng_seed(2);
	roundtrip_all(DATA_FISHER);
}

/* Fisher tiles in f32 with shuffle should compress; the default options must use zstd. */
static void test_codec_fisher_compresses(void **state)
{
	const struct shape sh = {256, 256, 256, 256};
	double *x = malloc(256 * 256 * sizeof(*x));
	float *src = malloc(256 * 256 * sizeof(*src));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	pspace_tile_header h;

	(void)state;
	assert_true(x && src);
	rng_seed(3);
	make_data(DATA_FISHER, PSPACE_F32, &sh, x, src);
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(o.dtype, PSPACE_F32);
	assert_int_equal(o.level, 1);
	assert_int_equal(o.shuffle, 1);
	assert_true(o.min_ratio == 1.03);
	/* low bits of f32 Fisher entries are noise; zero them so zstd has something to find */
	for (size_t i = 0; i < 256 * 256; i++) {
		uint32_t u;

		memcpy(&u, &src[i], 4);
		u &= 0xffff0000u;
		memcpy(&src[i], &u, 4);
	}
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 256, 256, 256, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD_PLANES);
	assert_int_equal(h.shuffle, 1);
	print_message("f32 Fisher tile, 16 low bits zeroed: %zu -> %zu bytes\n",
	              (size_t)256 * 256 * 4, len);
	pspace_codec_free(c);
	free(src);
	free(x);
}

/* -- special values ------------------------------------------------------------- */

static void test_codec_special_values(void **state)
{
	const pspace_dtype dtypes[] = {PSPACE_F64, PSPACE_F32, PSPACE_BF16, PSPACE_F16};
	const double vals[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1.5, -2.25, 1e-3};
	const size_t nv = sizeof(vals) / sizeof(vals[0]);
	pspace_codec *c = NULL;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t d = 0; d < 4; d++) {
		for (int level = 0; level <= 3; level += 3) {
			for (int t = 0; t < 2; t++) {
				pspace_codec_opts o;
				float sf[8];
				double sd[8], out[8];
				const void *tile;
				size_t len;
				pspace_tile_header h;
				pspace_dtype st = t ? PSPACE_F64 : PSPACE_F32;

				pspace_codec_opts_default(&o);
				o.dtype = dtypes[d];
				o.level = level;
				for (size_t i = 0; i < nv; i++) {
					sf[i] = (float)vals[i];
					sd[i] = vals[i];
				}
				assert_int_equal(pspace_tile_encode(c, &o, st,
				                                    t ? (void *)sd : (void *)sf, 1,
				                                    (uint32_t)nv, nv, &tile, &len),
				                 0);
				assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
				/* maxabs ignores Inf and NaN: 2.25 -> e = 13 */
				assert_int_equal(h.scale_exp, dtypes[d] == PSPACE_F16 ? 13 : 0);
				assert_int_equal(
				    pspace_tile_decode(c, tile, len, PSPACE_F64, out, nv), 0);
				assert_true(out[0] == 0.0 && !signbit(out[0]));
				assert_true(out[1] == 0.0 && signbit(out[1]));
				assert_true(isinf(out[2]) && out[2] > 0);
				assert_true(isinf(out[3]) && out[3] < 0);
				assert_true(isnan(out[4]));
				assert_true(out[5] == 1.5);
				assert_true(out[6] == -2.25);
				/* what the source held: 1e-3 rounded to the source type */
				assert_true(out[7] == ref_stored(dtypes[d], st,
				                                 t ? sd[7] : (double)sf[7],
				                                 h.scale_exp));
			}
		}
	}
	/* a tile of nothing but Inf/NaN/zeros gets scale 0 */
	{
		pspace_codec_opts o;
		const float s[3] = {INFINITY, NAN, 0.0f};
		float out[3];
		const void *tile;
		size_t len;
		pspace_tile_header h;

		pspace_codec_opts_default(&o);
		o.dtype = PSPACE_F16;
		assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, s, 1, 3, 3, &tile, &len), 0);
		assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
		assert_int_equal(h.scale_exp, 0);
		assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, out, 3), 0);
		assert_true(isinf(out[0]) && isnan(out[1]) && out[2] == 0.0f);
	}
	/* NaNs whose payload sits in the low bits must not truncate to Inf */
	for (size_t d = 2; d < 4; d++) {
		pspace_codec_opts o;
		const uint32_t nb[2] = {0x7f800001u, 0xff800100u};
		double out[2];
		const void *tile;
		size_t len;

		pspace_codec_opts_default(&o);
		o.dtype = dtypes[d];
		assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, nb, 1, 2, 2, &tile, &len),
		                 0);
		assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, out, 2), 0);
		assert_true(isnan(out[0]) && isnan(out[1]));
	}
	/* lossless f32: bit patterns survive, NaN payloads included */
	{
		pspace_codec_opts o;
		uint32_t bits[4] = {0x7fc12345u, 0xffc00001u, 0x80000000u, 0x00000001u};
		uint32_t back[4];
		const void *tile;
		size_t len;

		pspace_codec_opts_default(&o);
		assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, bits, 2, 2, 2, &tile, &len),
		                 0);
		assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, back, 2), 0);
		assert_memory_equal(back, bits, sizeof(bits));
	}
	pspace_codec_free(c);
}

/*
 * Values exactly halfway between two neighbours at the stored precision
 * (and, for f16, in the subnormal range of the scaled tile): rounding must
 * go to even, checked against round_sig() / nearbyint() here.
 */
static void test_codec_rounding_ties(void **state)
{
	enum { N = 3 * 1024 + 1 };
	double *x = malloc(N * sizeof(*x)), *y = malloc(N * sizeof(*y));
	float *xf = malloc(N * sizeof(*xf)), *yf = malloc(N * sizeof(*yf));
	pspace_codec *c = NULL;
	const pspace_dtype stored[] = {PSPACE_BF16, PSPACE_F16};

	(void)state;
	assert_true(x && y && xf && yf);
	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t d = 0; d < 2; d++) {
		int bits = stored[d] == PSPACE_BF16 ? 8 : 11;
		pspace_codec_opts o;
		pspace_tile_header h;
		const void *tile;
		size_t len, n = 0;

		/* normal-range ties: (2^(bits-1) + k + 1/2) 2^-bits, both signs */
		for (int k = 0; k < 1024; k++) {
			double t = ldexp((double)((1 << (bits - 1)) + k % (1 << (bits - 1))) + 0.5,
			                 -bits + k % 7);

			x[n++] = k % 2 ? -t : t;
		}
		/* f16 subnormal ties once scaled (e = 0 below): (k + 1/2) 2^-24 */
		for (int k = 0; k < 1024; k++)
			x[n++] = ldexp(k + 0.5, -24);
		/* near ties for f64 sources: off the midpoint by less than a float ulp */
		for (int k = 0; k < 1024; k++)
			x[n++] = ldexp(256.0 + k % 256 + 0.5 + (k % 2 ? 0x1p-30 : -0x1p-30), -8);
		x[n++] = 20000.0; /* maxabs: scale exponent 0 */
		assert_int_equal(n, N);
		assert_int_equal(ref_scale_exp(20000.0), 0);
		for (int t = 0; t < 2; t++) {
			pspace_dtype st = t ? PSPACE_F64 : PSPACE_F32;

			pspace_codec_opts_default(&o);
			o.dtype = stored[d];
			o.level = t; /* raw and zstd */
			for (size_t i = 0; i < n; i++)
				xf[i] = (float)x[i];
			assert_int_equal(pspace_tile_encode(c, &o, st, t ? (void *)x : (void *)xf,
			                                    1, N, N, &tile, &len),
			                 0);
			assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
			assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, N), 0);
			for (size_t i = 0; i < n; i++) {
				double src = t ? x[i] : (double)xf[i];
				double ref = ref_stored(stored[d], st, src, h.scale_exp);

				if (y[i] != ref) {
					print_error(
					    "%s from %s, element %zu: got %.17g want %.17g\n",
					    pspace_dtype_name(stored[d]), pspace_dtype_name(st), i,
					    y[i], ref);
					fail();
				}
			}
		}
	}
	pspace_codec_free(c);
	free(yf);
	free(xf);
	free(y);
	free(x);
}

/* -- raw fallback and views ------------------------------------------------------ */

static void test_codec_raw_fallback(void **state)
{
	const uint32_t rows = 64, cols = 64;
	uint32_t *bits = malloc((size_t)rows * cols * 4);
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile, *view;
	size_t len;
	pspace_tile_header h;
	unsigned char *aligned, *odd;

	(void)state;
	assert_non_null(bits);
	rng_seed(5);
	/* random bit patterns, finite: incompressible even after the shuffle */
	for (size_t i = 0; i < (size_t)rows * cols; i++) {
		uint32_t u = (uint32_t)rng_u64();

		if ((u & 0x7f800000u) == 0x7f800000u)
			u &= ~0x00800000u;
		bits[i] = u;
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, bits, rows, cols, cols, &tile, &len),
	                 0);
	assert_int_equal(len, HDR + (size_t)rows * cols * 4);
	assert_int_equal(((const unsigned char *)tile)[6], PSPACE_CODEC_RAW);
	assert_int_equal(((const unsigned char *)tile)[7], 0);
	assert_int_equal(rd_le32((const unsigned char *)tile + 16), (uint32_t)rows * cols * 4);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_RAW);

	aligned = xaligned(64, len);
	memcpy(aligned, tile, len);
	assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &view, &h), 0);
	assert_ptr_equal(view, aligned + HDR);
	assert_memory_equal(view, bits, (size_t)rows * cols * 4);

	/* misaligned by one byte: decoded into the context instead, same values */
	odd = xaligned(64, len + 1);
	memcpy(odd + 1, tile, len);
	assert_int_equal(pspace_tile_view(c, odd + 1, len, PSPACE_F32, &view, NULL), 0);
	assert_true((const unsigned char *)view < odd || (const unsigned char *)view > odd + len);
	assert_memory_equal(view, bits, (size_t)rows * cols * 4);
	/* and converted from a misaligned raw payload */
	{
		double *d = malloc((size_t)rows * cols * 8);

		assert_non_null(d);
		assert_int_equal(pspace_tile_decode(c, odd + 1, len, PSPACE_F64, d, cols), 0);
		for (size_t i = 0; i < (size_t)rows * cols; i++) {
			float f;

			memcpy(&f, &bits[i], 4);
			assert_true(d[i] == (double)f);
		}
		free(d);
	}

	/* a view of a compressed tile lives in the context and is reused */
	memset(bits, 0, (size_t)rows * cols * 4);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, bits, rows, cols, cols, &tile, &len),
	                 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD_PLANES);
	memcpy(aligned, tile, len);
	{
		const void *v1, *v2;

		assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &v1, NULL), 0);
		assert_int_equal(pspace_tile_view(c, aligned, len, PSPACE_F32, &v2, NULL), 0);
		assert_ptr_equal(v1, v2);
		for (size_t i = 0; i < (size_t)rows * cols; i++)
			assert_true(((const float *)v1)[i] == 0.0f);
	}
	free(odd);
	free(aligned);
	pspace_codec_free(c);
	free(bits);
}

/* -- corruption ----------------------------------------------------------------- */

/* Every one-bit and one-byte flip and every truncation of a tile of up to 64 columns is rejected.
 */
static void flip_all(pspace_codec *c, const void *tile, size_t len)
{
	unsigned char *buf = xaligned(64, len);
	uint32_t rows = rd_le32((const unsigned char *)tile + 8);
	uint32_t cols = rd_le32((const unsigned char *)tile + 12);
	float *out = malloc((size_t)rows * 64 * sizeof(*out));
	const void *view;

	assert_non_null(out);
	assert_true(cols <= 64);

	for (size_t pos = 0; pos < len; pos++) {
		for (int m = 0; m < 2; m++) {
			memcpy(buf, tile, len);
			buf[pos] ^= m ? 0xff : 0x01;
			assert_int_equal(pspace_tile_decode(c, buf, len, PSPACE_F32, out, 64),
			                 PSPACE_ECORRUPT);
			if (pos >= HDR || (pos >= 24 && pos < 28))
				assert_non_null(strstr(pspace_errdetail(), "checksum"));
			assert_int_equal(pspace_tile_verify(buf, len), PSPACE_ECORRUPT);
		}
	}
	memcpy(buf, tile, len);
	for (size_t l = 0; l < len; l++) {
		assert_int_equal(pspace_tile_decode(c, buf, l, PSPACE_F32, out, 64),
		                 PSPACE_ECORRUPT);
		assert_int_equal(pspace_tile_view(c, buf, l, PSPACE_F64, &view, NULL),
		                 PSPACE_ECORRUPT);
	}
	assert_int_equal(pspace_tile_decode(c, buf, len, PSPACE_F32, out, 64), 0);
	free(out);
	free(buf);
}

static void test_codec_checksum_flip(void **state)
{
	float src[64];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	unsigned char *copy;
	pspace_tile_header h;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	/* compressible: a zstd tile */
	for (int i = 0; i < 64; i++)
		src[i] = (float)(i % 4);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 8, 8, 8, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD_PLANES);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	flip_all(c, copy, len);
	free(copy);
	/* the same as one shuffled frame (codec 1) */
	assert_int_equal(pspace_tile_encode_ex(c, &o, PSPACE_TILE_ENCODE_ONE_FRAME, PSPACE_F32, src,
	                                       8, 8, 8, &tile, &len),
	                 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.codec, PSPACE_CODEC_ZSTD);
	assert_int_equal(h.shuffle, 1);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	flip_all(c, copy, len);
	free(copy);
	/* raw */
	o.level = 0;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 8, 8, 8, &tile, &len), 0);
	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, tile, len);
	flip_all(c, copy, len);
	free(copy);
	pspace_codec_free(c);
}

/* Builds a header by hand (checksum fixed afterwards). */
static void make_header(unsigned char *t, unsigned dtype, unsigned codec, unsigned flags,
                        uint32_t rows, uint32_t cols, uint32_t plen, int32_t e)
{
	memcpy(t, "PSTL", 4);
	t[4] = 1;
	t[5] = (unsigned char)dtype;
	t[6] = (unsigned char)codec;
	t[7] = (unsigned char)flags;
	wr_le32(t + 8, rows);
	wr_le32(t + 12, cols);
	wr_le32(t + 16, plen);
	wr_le32(t + 20, (uint32_t)e);
	wr_le32(t + 24, 0);
	wr_le32(t + 28, 0);
}

static void expect_corrupt(unsigned char *t, size_t len, const char *needle)
{
	pspace_tile_header h;

	fix_crc(t, len);
	assert_int_equal(pspace_tile_parse(t, len, &h), PSPACE_ECORRUPT);
	if (strstr(pspace_errdetail(), needle) == NULL) {
		print_error("detail \"%s\" lacks \"%s\"\n", pspace_errdetail(), needle);
		fail();
	}
}

static void test_codec_parse_rejects(void **state)
{
	unsigned char t[HDR + 16];
	pspace_tile_header h;

	(void)state;
	/* a valid raw 2x2 f32 tile to start from */
	memset(t, 0, sizeof(t));
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	fix_crc(t, sizeof(t));
	assert_int_equal(pspace_tile_parse(t, sizeof(t), &h), 0);
	assert_int_equal(pspace_tile_verify(t, sizeof(t)), 0);

	t[0] = 'X';
	expect_corrupt(t, sizeof(t), "magic");
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	t[4] = 2;
	expect_corrupt(t, sizeof(t), "version");
	make_header(t, 5, 0, 0, 2, 2, 16, 0); /* i64 is not a tile type */
	expect_corrupt(t, sizeof(t), "dtype");
	make_header(t, 0, 0, 0, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "dtype");
	make_header(t, PSPACE_F32, 3, 0, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "codec");
	make_header(t, PSPACE_F32, 255, 1, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "codec");
	make_header(t, PSPACE_F32, 2, 0, 2, 2, 16, 0); /* planes without the shuffle flag */
	expect_corrupt(t, sizeof(t), "shuffle bit");
	make_header(t, PSPACE_F32, 2, 3, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "flags");
	make_header(t, PSPACE_F32, 2, 1, 2, 2, 16, 0); /* 16 < table 16 + 4 planes */
	expect_corrupt(t, sizeof(t), "needs 20..32");
	make_header(t, PSPACE_F32, 2, 1, 1, 1, 16, 0); /* 16 < 20 */
	expect_corrupt(t, sizeof(t), "zstd-planes tile payload");
	make_header(t, PSPACE_BF16, 2, 1, 1, 2, 16, 0); /* 16 > table 8 + 2 planes of 2 */
	expect_corrupt(t, sizeof(t), "needs 10..12");
	make_header(t, PSPACE_F64, 2, 1, 1, 1, 16, 0); /* 16 < 40 */
	expect_corrupt(t, sizeof(t), "needs 40..40");
	make_header(t, PSPACE_F32, 1, 2, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "flags");
	make_header(t, PSPACE_F32, 0, 1, 2, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "raw");
	make_header(t, PSPACE_F32, 0, 0, 0, 2, 16, 0);
	expect_corrupt(t, sizeof(t), "empty");
	make_header(t, PSPACE_F32, 1, 0, 0x10000, 0x10000, 16, 0); /* 2^32 elements */
	expect_corrupt(t, sizeof(t), "overflow");
	make_header(t, PSPACE_F64, 1, 0, 0xffffffffu, 0xffffffffu, 16, 0);
	expect_corrupt(t, sizeof(t), "overflow");
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 15, 0);
	expect_corrupt(t, sizeof(t), "payload length");
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 0xffffffffu, 0);
	expect_corrupt(t, sizeof(t), "payload length");
	make_header(t, PSPACE_F32, 0, 0, 2, 3, 16, 0);
	expect_corrupt(t, sizeof(t), "raw tile payload");
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 3);
	expect_corrupt(t, sizeof(t), "scale");
	make_header(t, PSPACE_F16, 1, 0, 2, 2, 16, 5000);
	expect_corrupt(t, sizeof(t), "scale");
	make_header(t, PSPACE_F32, 0, 0, 2, 2, 16, 0);
	t[29] = 1;
	expect_corrupt(t, sizeof(t), "reserved");
	make_header(t, PSPACE_F32, 1, 0, 2, 2, 0, 0);
	expect_corrupt(t, HDR, "empty payload");
	assert_int_equal(pspace_tile_parse(t, 5, &h), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "truncated"));
	assert_int_equal(pspace_tile_parse(NULL, 0, &h), PSPACE_ECORRUPT);
}

/* A well-formed, checksummed zstd frame of the wrong size must be rejected. */
static void test_codec_zstd_size_mismatch(void **state)
{
	float data[20] = {0};
	unsigned char t[HDR + 256];
	pspace_codec *c = NULL;
	float out[20];
	size_t z;

	(void)state;
	assert_int_equal(pspace_codec_create(&c), 0);
	/* 4x4 tile, frame of 5x4 floats */
	z = ZSTD_compress(t + HDR, sizeof(t) - HDR, data, sizeof(data), 3);
	assert_false(ZSTD_isError(z));
	make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
	fix_crc(t, HDR + z);
	assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "tile needs 64"));
	/* and too short: 3x4 floats */
	z = ZSTD_compress(t + HDR, sizeof(t) - HDR, data, 48, 3);
	make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
	fix_crc(t, HDR + z);
	assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4), PSPACE_ECORRUPT);
	/* frame without a content size, too long: decompression itself must stop */
	{
		ZSTD_CCtx *cc = ZSTD_createCCtx();

		assert_non_null(cc);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
		z = ZSTD_compress2(cc, t + HDR, sizeof(t) - HDR, data, sizeof(data));
		assert_false(ZSTD_isError(z));
		ZSTD_freeCCtx(cc);
		make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
		fix_crc(t, HDR + z);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
	}
	/* frame without a content size, too short: caught by the exact size check */
	{
		ZSTD_CCtx *cc = ZSTD_createCCtx();

		assert_non_null(cc);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
		z = ZSTD_compress2(cc, t + HDR, sizeof(t) - HDR, data, 48);
		assert_false(ZSTD_isError(z));
		ZSTD_freeCCtx(cc);
		make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)z, 0);
		fix_crc(t, HDR + z);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
		assert_non_null(strstr(pspace_errdetail(), "decompressed to 48 bytes"));
	}
	/* two frames where one is expected */
	{
		size_t z1 = ZSTD_compress(t + HDR, 100, data, 32, 1);
		size_t z2 = ZSTD_compress(t + HDR + z1, 100, data, 32, 1);

		assert_false(ZSTD_isError(z1) || ZSTD_isError(z2));
		make_header(t, PSPACE_F32, 1, 0, 4, 4, (uint32_t)(z1 + z2), 0);
		fix_crc(t, HDR + z1 + z2);
		assert_int_equal(pspace_tile_decode(c, t, HDR + z1 + z2, PSPACE_F32, out, 4),
		                 PSPACE_ECORRUPT);
	}
	pspace_codec_free(c);
}

static void test_codec_garbage(void **state)
{
	unsigned char *buf = malloc(HDR + 4096);
	double *out = malloc(4096 * 8);
	pspace_codec *c = NULL;
	const void *view;
	pspace_tile_header h;
	unsigned char good[HDR + 4096];
	size_t good_len;

	(void)state;
	assert_true(buf && out);
	assert_int_equal(pspace_codec_create(&c), 0);
	rng_seed(9);
	/* fully random headers with a valid magic */
	for (int it = 0; it < 20000; it++) {
		size_t len = rng_u64() % (HDR + 256);

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)rng_u64();
		if (len >= 4)
			memcpy(buf, "PSTL", 4);
		(void)pspace_tile_parse(buf, len, &h);
		assert_int_not_equal(pspace_tile_decode(c, buf, len, PSPACE_F64, out, 4096), 0);
		assert_int_not_equal(pspace_tile_view(c, buf, len, PSPACE_F32, &view, &h), 0);
	}
	/* plausible headers with a correct checksum over garbage or mutated frames */
	{
		pspace_codec_opts o;
		const void *tile;
		float src[16 * 16];

		for (int i = 0; i < 256; i++)
			src[i] = (float)(i % 7) * 0.25f;
		pspace_codec_opts_default(&o);
		assert_int_equal(
		    pspace_tile_encode(c, &o, PSPACE_F32, src, 16, 16, 16, &tile, &good_len), 0);
		memcpy(good, tile, good_len);
	}
	for (int it = 0; it < 20000; it++) {
		size_t len;
		int rc;

		if (it % 2 == 0) {
			uint32_t rows = 1 + (uint32_t)(rng_u64() % 32);
			uint32_t cols = 1 + (uint32_t)(rng_u64() % 32);
			unsigned dtype = 1 + (unsigned)(rng_u64() % 4);
			uint32_t plen = (uint32_t)(rng_u64() % 512);

			len = HDR + plen;
			for (size_t i = HDR; i < len; i++)
				buf[i] = (unsigned char)rng_u64();
			unsigned codec = 1 + (unsigned)(it % 4 == 0);
			size_t es = dtype == PSPACE_F64 ? 8 : dtype == PSPACE_F32 ? 4 : 2;

			if (plen >= 4)
				wr_le32(buf + HDR, 0xfd2fb528u); /* zstd magic */
			if (codec == 2 && plen >= 4 * es) {
				/* a plane table that adds up, random raw bits, frames where due */
				size_t left = plen - 4 * es, off = HDR + 4 * es;

				for (size_t b = 0; b < es; b++) {
					uint32_t l = b + 1 < es ? (uint32_t)(rng_u64() % (left + 1))
					                        : (uint32_t)left;

					left -= l;
					if (l >= 4)
						wr_le32(buf + off, 0xfd2fb528u);
					off += l;
					wr_le32(buf + HDR + 4 * b,
					        l | (rng_u64() % 4 == 0 ? 0x80000000u : 0));
				}
			}
			make_header(buf, dtype, codec, codec == 2 ? 1 : (unsigned)(rng_u64() % 2),
			            rows, cols, plen,
			            dtype == PSPACE_F16 ? (int32_t)(rng_u64() % 41) - 20 : 0);
		} else {
			len = good_len;
			memcpy(buf, good, len);
			for (int k = 0; k < 1 + (int)(rng_u64() % 4); k++)
				buf[HDR + rng_u64() % (len - HDR)] ^=
				    (unsigned char)(1 + rng_u64() % 255);
		}
		fix_crc(buf, len);
		rc = pspace_tile_decode(c, buf, len, PSPACE_F64, out, 32);
		assert_true(rc == 0 || rc == PSPACE_ECORRUPT);
		rc = pspace_tile_view(c, buf, len, PSPACE_F32, &view, &h);
		assert_true(rc == 0 || rc == PSPACE_ECORRUPT);
	}
	pspace_codec_free(c);
	free(out);
	free(buf);
}

/* -- zstd planes (codec 2) ------------------------------------------------------- */

/* Every stored precision, both sources, shapes from 1x1 to 512x512, levels 1 and -1. */
static void test_codec_planes_roundtrip(void **state)
{
	static const struct shape psh[] = {
	    {1, 1, 1, 1}, {37, 53, 53, 53}, {37, 53, 61, 64}, {512, 512, 512, 512}};
	const pspace_dtype dtypes[] = {PSPACE_F64, PSPACE_F32, PSPACE_BF16, PSPACE_F16};
	const pspace_dtype srcs[] = {PSPACE_F32, PSPACE_F64};
	pspace_codec *c = NULL;
	int planes = 0, count = 0;

	(void)state;
	rng_seed(17);
	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t s = 0; s < sizeof(psh) / sizeof(psh[0]); s++) {
		const struct shape *sh = &psh[s];
		size_t n = (size_t)sh->rows * sh->cols;
		double *x = malloc(n * sizeof(*x));
		void *src = malloc((size_t)sh->rows * sh->src_ld * 8);

		assert_true(x && src);
		for (size_t t = 0; t < 2; t++) {
			make_data(DATA_FISHER, srcs[t], sh, x, src);
			for (size_t d = 0; d < 4; d++) {
				for (int level = -1; level <= 1; level += 2) {
					pspace_codec_opts o;
					const void *tile;
					size_t len;

					pspace_codec_opts_default(&o);
					o.dtype = dtypes[d];
					o.level = level;
					check_roundtrip(c, &o, 0, srcs[t], sh, x, src);
					count++;
					assert_int_equal(
					    pspace_tile_encode(c, &o, srcs[t], src, sh->rows,
					                       sh->cols, sh->src_ld, &tile, &len),
					    0);
					planes += ((const unsigned char *)tile)[6] ==
					          PSPACE_CODEC_ZSTD_PLANES;
					/* 1x1: every plane raw, so the whole tile is raw */
					if (n == 1)
						assert_int_equal(((const unsigned char *)tile)[6],
						                 PSPACE_CODEC_RAW);
				}
			}
		}
		free(src);
		free(x);
	}
	print_message("%d round trips, %d as zstd planes\n", count, planes);
	assert_true(planes >= 16); /* the larger Fisher tiles compress in every precision */
	pspace_codec_free(c);
}

/* f32 Fisher data: the low mantissa plane is noise (raw), the exponent plane compresses. */
static void test_codec_planes_layout(void **state)
{
	const struct shape sh = {256, 256, 256, 256};
	const size_t n = 256 * 256;
	double *x = malloc(n * sizeof(*x));
	float *src = malloc(n * sizeof(*src));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	struct planes_info pi;

	(void)state;
	assert_true(x && src);
	rng_seed(19);
	make_data(DATA_FISHER, PSPACE_F32, &sh, x, src);
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 256, 256, 256, &tile, &len), 0);
	planes_read(tile, len, &pi, NULL);
	print_message("f32 planes: %s%u %s%u %s%u %s%u of %zu bytes each\n",
	              pi.raw[0] ? "raw " : "zstd ", pi.len[0], pi.raw[1] ? "raw " : "zstd ",
	              pi.len[1], pi.raw[2] ? "raw " : "zstd ", pi.len[2],
	              pi.raw[3] ? "raw " : "zstd ", pi.len[3], n);
	assert_int_equal(pi.es, 4);
	assert_true(pi.raw[0]); /* lowest mantissa byte: noise */
	assert_int_equal(pi.len[0], n);
	assert_false(pi.raw[3]); /* sign and exponent */
	assert_true(pi.len[3] < n / 2);
	/* all-zero low planes compress too: bf16 of a tile of small integers */
	for (size_t i = 0; i < n; i++)
		src[i] = (float)(i % 5);
	o.dtype = PSPACE_BF16;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 256, 256, 256, &tile, &len), 0);
	planes_read(tile, len, &pi, NULL);
	assert_int_equal(pi.es, 2);
	assert_false(pi.raw[0] || pi.raw[1]);
	pspace_codec_free(c);
	free(src);
	free(x);
}

/* A tile with both kinds of plane: bit flips and truncations anywhere are rejected. */
static void test_codec_planes_corrupt(void **state)
{
	float src[32 * 32];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	unsigned char *copy;
	struct planes_info pi;

	(void)state;
	rng_seed(23);
	for (int i = 0; i < 32 * 32; i++) {
		uint32_t u = 0x3f800000u | (uint32_t)(i % 3) << 16 | (uint32_t)(rng_u64() & 0xff);

		memcpy(&src[i], &u, 4);
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	for (int d = 0; d < 2; d++) {
		o.dtype = d ? PSPACE_F64 : PSPACE_F32;
		assert_int_equal(
		    pspace_tile_encode(c, &o, PSPACE_F32, src, 32, 32, 32, &tile, &len), 0);
		copy = malloc(len);
		assert_non_null(copy);
		memcpy(copy, tile, len);
		planes_read(copy, len, &pi, NULL);
		/* f32: the noise byte raw (in f64 its 8 random bits straddle two planes) */
		assert_true(d || pi.raw[0]);
		assert_false(pi.raw[pi.es - 1]);
		flip_all(c, copy, len);
		free(copy);
	}
	pspace_codec_free(c);
}

/* Decodes a doctored tile (checksum recomputed): ECORRUPT naming @p needle, for decode and view. */
static void expect_decode_corrupt(pspace_codec *c, unsigned char *t, size_t len, const char *needle)
{
	float out[16 * 16];
	const void *view;
	unsigned char *dup = malloc(len); /* exactly the tile: any overread is seen */

	assert_non_null(dup);
	memcpy(dup, t, len);
	fix_crc(dup, len);
	assert_int_equal(pspace_tile_verify(dup, len), 0);
	assert_int_equal(pspace_tile_decode(c, dup, len, PSPACE_F32, out, 16), PSPACE_ECORRUPT);
	if (strstr(pspace_errdetail(), needle) == NULL) {
		print_error("detail \"%s\" lacks \"%s\"\n", pspace_errdetail(), needle);
		fail();
	}
	assert_int_equal(pspace_tile_view(c, dup, len, PSPACE_F64, &view, NULL), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), needle));
	free(dup);
}

/*
 * Plane tables that disagree with the planes, with a valid checksum: each
 * is rejected with ECORRUPT and a message saying which plane (the buffers
 * are exactly the tile's size, so ASan and valgrind see any overread).
 */
static void test_codec_planes_lengths(void **state)
{
	enum { N = 16 * 16 };
	float src[N];
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len, tlen;
	unsigned char *good, *t;
	struct planes_info pi;
	uint32_t l0, l3;

	(void)state;
	rng_seed(29);
	/* plane 0 noise (raw), planes 1-3 compressible */
	for (int i = 0; i < N; i++) {
		uint32_t u = 0x40000000u | (uint32_t)(i % 2) << 8 | (uint32_t)(rng_u64() & 0xff);

		memcpy(&src[i], &u, 4);
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 16, 16, 16, &tile, &len), 0);
	good = malloc(len);
	assert_non_null(good);
	memcpy(good, tile, len);
	planes_read(good, len, &pi, NULL);
	assert_true(pi.raw[0] && !pi.raw[1] && !pi.raw[2] && !pi.raw[3]);
	l0 = rd_le32(good + HDR);
	l3 = rd_le32(good + HDR + 12);
	t = malloc(2048);
	assert_non_null(t);
#define FRESH() memcpy(t, good, len)
	/* raw plane whose length is not n */
	FRESH();
	wr_le32(t + HDR, l0 - 1);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw with 255 bytes");
	FRESH();
	wr_le32(t + HDR, l0 + 1);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw with 257 bytes");
	FRESH();
	wr_le32(t + HDR, 0xffffffffu);
	expect_decode_corrupt(c, t, len, "plane 0: stored raw");
	/* the raw plane called a zstd frame: n bytes is too long for a frame */
	FRESH();
	wr_le32(t + HDR, 256);
	expect_decode_corrupt(c, t, len, "plane 0: zstd frame of 256 bytes, must be 1..255");
	/* zstd plane of length 0 */
	FRESH();
	wr_le32(t + HDR + 12, 0);
	expect_decode_corrupt(c, t, len, "plane 3: zstd frame of 0 bytes");
	/* huge lengths: no wrap-around in the sum */
	FRESH();
	wr_le32(t + HDR + 12, 0x7fffffffu);
	expect_decode_corrupt(c, t, len, "plane 3: zstd frame of 2147483647 bytes");
	/* a zstd plane called raw */
	FRESH();
	wr_le32(t + HDR + 12, 0x80000000u | l3);
	expect_decode_corrupt(c, t, len, "plane 3: stored raw");
	/* sums off by one either way */
	FRESH();
	wr_le32(t + HDR + 12, l3 + 1);
	expect_decode_corrupt(c, t, len, "sum to");
	FRESH();
	wr_le32(t + HDR + 12, l3 - 1);
	expect_decode_corrupt(c, t, len, "sum to");
	/* a byte moved from one frame's length to another's: frames misaligned */
	FRESH();
	wr_le32(t + HDR + 4, rd_le32(good + HDR + 4) + 1);
	wr_le32(t + HDR + 8, rd_le32(good + HDR + 8) - 1);
	expect_decode_corrupt(c, t, len, "plane 1");
	/* the raw plane moved to the end: plane 3 begins with noise, not a frame */
	FRESH();
	{
		uint32_t lens[4];

		for (int b = 0; b < 4; b++)
			lens[b] = rd_le32(good + HDR + 4 * b);
		wr_le32(t + HDR, lens[1]);
		wr_le32(t + HDR + 4, lens[2]);
		wr_le32(t + HDR + 8, lens[3] & 0x7fffffffu);
		wr_le32(t + HDR + 12, lens[0]);
		/* only the table changes: plane 0's frame length now covers raw noise */
		expect_decode_corrupt(c, t, len, "plane 0: its");
	}
	/* a payload exactly as long as its table: caught by the header check */
	FRESH();
	tlen = HDR + 16;
	wr_le32(t + 16, 16);
	fix_crc(t, tlen);
	assert_int_equal(pspace_tile_decode(c, t, tlen, PSPACE_F32, src, 16), PSPACE_ECORRUPT);
	assert_non_null(strstr(pspace_errdetail(), "zstd-planes tile payload 16 bytes"));
	/* hand-made: valid frames of the wrong size, two frames in one slot */
	{
		unsigned char zero[300] = {0};
		size_t off = HDR + 16, z;

		/* plane 0: a frame of 255 bytes where 256 are needed; planes 1-3 raw */
		z = ZSTD_compress(t + off, 200, zero, 255, 1);
		assert_false(ZSTD_isError(z));
		wr_le32(t + HDR, (uint32_t)z);
		off += z;
		for (int b = 1; b < 4; b++) {
			wr_le32(t + HDR + 4 * b, 0x80000100u);
			memset(t + off, b, 256);
			off += 256;
		}
		make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
		expect_decode_corrupt(c, t, off, "plane 0 decompressed to 255 bytes");
		/* 257 bytes: decompression itself must stop */
		{
			unsigned char f[200];

			off = HDR + 16;
			z = ZSTD_compress(f, sizeof(f), zero, 257, 1);
			assert_false(ZSTD_isError(z));
			memmove(t + off + z, t + off + rd_le32(t + HDR), 3 * 256);
			memcpy(t + off, f, z);
		}
		wr_le32(t + HDR, (uint32_t)z);
		off += z + 3 * 256;
		make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
		expect_decode_corrupt(c, t, off, "plane 0: decompression failed");
		/* two frames of 128 bytes in plane 0's slot */
		{
			unsigned char rest[3 * 256];
			size_t z1, z2;

			memcpy(rest, t + HDR + 16 + z, sizeof(rest));
			off = HDR + 16;
			z1 = ZSTD_compress(t + off, 100, zero, 128, 1);
			z2 = ZSTD_compress(t + off + z1, 100, zero, 128, 1);
			assert_false(ZSTD_isError(z1) || ZSTD_isError(z2));
			wr_le32(t + HDR, (uint32_t)(z1 + z2));
			off += z1 + z2;
			memcpy(t + off, rest, sizeof(rest));
			off += sizeof(rest);
			make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
			expect_decode_corrupt(c, t, off, "not exactly one zstd frame");
			/* and the well-formed version decodes */
			off = HDR + 16;
			z = ZSTD_compress(t + off, 200, zero, 256, 1);
			wr_le32(t + HDR, (uint32_t)z);
			off += z;
			memcpy(t + off, rest, sizeof(rest));
			off += sizeof(rest);
			make_header(t, PSPACE_F32, 2, 1, 16, 16, (uint32_t)(off - HDR), 0);
			fix_crc(t, off);
			assert_int_equal(pspace_tile_decode(c, t, off, PSPACE_F32, src, 16), 0);
			for (int i = 0; i < N; i++) {
				uint32_t u;

				memcpy(&u, &src[i], 4);
				assert_int_equal(u, 0x03020100u);
			}
		}
	}
#undef FRESH
	free(t);
	free(good);
	pspace_codec_free(c);
}

/* -- f16 scale --------------------------------------------------------------------- */

static void test_codec_f16_underflow(void **state)
{
	const uint32_t n = 1000;
	double *x = malloc(n * sizeof(*x)), *y = malloc(n * sizeof(*y));
	float *xf = malloc(n * sizeof(*xf)), *yf = malloc(n * sizeof(*yf));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	pspace_tile_header h;
	double maxabs;

	(void)state;
	assert_true(x && y && xf && yf);
	rng_seed(13);
	for (uint32_t i = 0; i < n; i++) {
		/* ~1e-9, within a factor of 2: all in the binary16 normal range once scaled */
		x[i] = 1e-9 * (1.0 + rng_unif()) * (i % 2 ? -1.0 : 1.0);
		xf[i] = (float)x[i];
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	o.dtype = PSPACE_F16;
	/* from f64 */
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F64, x, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_true(h.scale_exp > 40); /* 2^-30 ~ 1e-9 */
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, n), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fabs(y[i] - x[i]) <= 0x1p-11 * fabs(x[i]));
	/* from f32, decoded to f32 */
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, xf, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, yf, n), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fabs((double)yf[i] - (double)xf[i]) <= 0x1p-11 * fabs((double)xf[i]));
	/* extreme: f64 subnormals need a scale beyond 2^1022 */
	maxabs = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = ldexp(1.0 + rng_unif(), -1060);
		maxabs = fmax(maxabs, x[i]);
	}
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F64, x, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(tile, len, &h), 0);
	assert_int_equal(h.scale_exp, ref_scale_exp(maxabs));
	assert_int_equal(h.scale_exp, 1074);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, n), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fabs(y[i] - x[i]) <= 0x1p-11 * fabs(x[i]) + 0x1p-1074);
	/* and huge values need a negative scale */
	for (uint32_t i = 0; i < n; i++)
		x[i] = ldexp(1.0 + rng_unif(), 1000);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F64, x, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, n), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fabs(y[i] - x[i]) <= 0x1p-11 * fabs(x[i]));
	pspace_codec_free(c);
	free(yf);
	free(xf);
	free(y);
	free(x);
}

/* -- arguments and bounds ------------------------------------------------------------ */

static void test_codec_args(void **state)
{
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	float src[4] = {1, 2, 3, 4}, dst[4];
	const void *tile = (const void *)1;
	size_t len = 1;

	(void)state;
	pspace_codec_free(NULL);
	assert_int_equal(pspace_codec_create(NULL), PSPACE_EINVAL);
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	o.dtype = PSPACE_I64;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_null(tile);
	assert_int_equal(len, 0);
	pspace_codec_opts_default(&o);
	o.level = 1000;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	o.level = 3;
	o.min_ratio = NAN;
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	pspace_codec_opts_default(&o);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_BF16, src, 2, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 2, 2, 1, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F32, src, 0, 2, 2, &tile, &len),
	                 PSPACE_EINVAL);
	assert_int_equal(
	    pspace_tile_encode(c, &o, PSPACE_F32, src, 0x10000, 0x10000, 0x10000, &tile, &len),
	    PSPACE_EINVAL);
	/* NULL options mean the defaults */
	assert_int_equal(pspace_tile_encode(c, NULL, PSPACE_F32, src, 2, 2, 2, &tile, &len), 0);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F16, dst, 2), PSPACE_EINVAL);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, dst, 1), PSPACE_EINVAL);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F32, dst, 2), 0);
	assert_memory_equal(dst, src, sizeof(src));
	pspace_codec_free(c);
}

static void test_codec_bound(void **state)
{
	pspace_codec_opts o;

	(void)state;
	pspace_codec_opts_default(&o);
	o.level = 0;
	assert_int_equal(pspace_tile_bound(&o, 37, 53), HDR + 37 * 53 * 4);
	o.dtype = PSPACE_F16;
	assert_int_equal(pspace_tile_bound(&o, 37, 53), HDR + 37 * 53 * 2);
	o.dtype = PSPACE_F64;
	o.level = 3;
	assert_int_equal(pspace_tile_bound(&o, 256, 256), HDR + ZSTD_compressBound(256 * 256 * 8));
	assert_int_equal(pspace_tile_bound(&o, 0x10000, 0x10000), 0);
	assert_int_equal(pspace_tile_bound(NULL, 1, 1), HDR + ZSTD_compressBound(4));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_crc32c_check_value),
	    cmocka_unit_test(test_codec_crc32c_hw_matches_sw),
	    cmocka_unit_test(test_codec_shuffle_definition),
	    cmocka_unit_test(test_codec_roundtrip_uniform),
	    cmocka_unit_test(test_codec_roundtrip_fisher),
	    cmocka_unit_test(test_codec_fisher_compresses),
	    cmocka_unit_test(test_codec_special_values),
	    cmocka_unit_test(test_codec_rounding_ties),
	    cmocka_unit_test(test_codec_raw_fallback),
	    cmocka_unit_test(test_codec_checksum_flip),
	    cmocka_unit_test(test_codec_parse_rejects),
	    cmocka_unit_test(test_codec_zstd_size_mismatch),
	    cmocka_unit_test(test_codec_garbage),
	    cmocka_unit_test(test_codec_planes_roundtrip),
	    cmocka_unit_test(test_codec_planes_layout),
	    cmocka_unit_test(test_codec_planes_corrupt),
	    cmocka_unit_test(test_codec_planes_lengths),
	    cmocka_unit_test(test_codec_f16_underflow),
	    cmocka_unit_test(test_codec_args),
	    cmocka_unit_test(test_codec_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
