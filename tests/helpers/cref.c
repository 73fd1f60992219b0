/*
 * Codec references for the codec tests (see cref.h).
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

#include "cref.h"
#include "fixture.h"

#include "codec/codec.h"

#define HDR PSPACE_TILE_HEADER_SIZE

uint32_t cref_rd_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void cref_wr_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

uint32_t cref_crc32c(uint32_t crc, const void *buf, size_t len)
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

void cref_fix_crc(unsigned char *tile, size_t len)
{
	uint32_t crc = cref_crc32c(0, tile, 24);

	crc = cref_crc32c(crc, tile + HDR, len - HDR);
	cref_wr_le32(tile + 24, crc);
}

void cref_make_header(unsigned char *t, unsigned dtype, unsigned codec, unsigned flags,
                      uint32_t rows, uint32_t cols, uint32_t plen, int32_t e)
{
	memcpy(t, "PSTL", 4);
	t[4] = 1;
	t[5] = (unsigned char)dtype;
	t[6] = (unsigned char)codec;
	t[7] = (unsigned char)flags;
	cref_wr_le32(t + 8, rows);
	cref_wr_le32(t + 12, cols);
	cref_wr_le32(t + 16, plen);
	cref_wr_le32(t + 20, (uint32_t)e);
	cref_wr_le32(t + 24, 0);
	cref_wr_le32(t + 28, 0);
}

double cref_round_sig(double v, int p)
{
	int k;
	double m;

	if (v == 0.0 || !isfinite(v))
		return v;
	m = frexp(v, &k);
	return ldexp(nearbyint(ldexp(m, p)), k - p);
}

int cref_scale_exp(double maxabs)
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

double cref_stored(pspace_dtype stored, pspace_dtype src_type, double x, int e)
{
	double s;

	switch (stored) {
	case PSPACE_F64: return x;
	case PSPACE_F32: return (double)(float)x;
	case PSPACE_BF16:
		/* from f64 the library goes via float, as documented */
		return cref_round_sig((double)(float)x, 8);
	case PSPACE_F16:
		(void)src_type;
		s = ldexp(x, e);
		if (fabs(s) >= 0x1p-14)
			s = cref_round_sig(s, 11);
		else
			s = ldexp(nearbyint(ldexp(s, 24)), -24); /* subnormal: unit 2^-24 */
		return ldexp(s, -e);
	default: return NAN;
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

void *cref_aligned(size_t align, size_t size)
{
	size_t sz = (size + align - 1) / align * align;
	void *p = aligned_alloc(align, sz ? sz : align);

	assert_non_null(p);
	return p;
}

const struct cref_shape cref_shapes[] = {
    {1, 1, 1, 1},         {37, 53, 53, 53},
    {53, 37, 37, 37},     {37, 53, 61, 64}, /* ld > cols on both sides */
    {256, 256, 256, 256},
};
_Static_assert(sizeof(cref_shapes) / sizeof(cref_shapes[0]) == CREF_NSHAPES, "CREF_NSHAPES");

void cref_make_data(uint64_t *rng, enum cref_data kind, pspace_dtype src_type,
                    const struct cref_shape *sh, double *x, void *src)
{
	uint32_t rows = sh->rows, cols = sh->cols;
	size_t m = rows > cols ? rows : cols, n = 2 * m;

	if (kind == CREF_UNIFORM) {
		for (size_t i = 0; i < (size_t)rows * cols; i++)
			x[i] = fx_rng_unif(rng);
	} else {
		double *g = malloc(n * m * sizeof(*g));

		assert_non_null(g);
		for (size_t i = 0; i < n * m; i++)
			g[i] = fx_rng_normal(rng);
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
 * Exact check: y equals cref_stored() (the stored-precision value computed
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
	double ref = cref_stored(stored, src_type, x, e);

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

/*
 * A nibble plane of @p n bytes, @p len stored at @p q, by its documented
 * layout: dictionary, codes two to a byte (low nibble first), then one
 * escape byte per code 15 in order.
 */
static void nibble_read(unsigned char *dst, size_t n, const unsigned char *q, size_t len)
{
	size_t half = (n + 1) / 2, esc = 16 + half;

	assert_true(len >= 16 + half && len < n);
	assert_int_equal(q[15], 0);
	for (size_t i = 0; i < n; i++) {
		unsigned code = i % 2 == 0 ? q[16 + i / 2] & 15u : q[16 + i / 2] >> 4;

		if (code < 15) {
			dst[i] = q[code];
		} else {
			assert_true(esc < len);
			dst[i] = q[esc++];
		}
	}
	if (n % 2 != 0)
		assert_int_equal(q[16 + half - 1] >> 4, 0);
	assert_int_equal(esc, len);
}

void cref_planes_read(const unsigned char *t, size_t len, struct cref_planes *pi, double *vals)
{
	size_t es, n, off;
	unsigned char *sh, *el;
	int e = (int32_t)cref_rd_le32(t + 20);

	assert_true(t[6] == PSPACE_CODEC_ZSTD_PLANES || t[6] == PSPACE_CODEC_PLANES);
	assert_int_equal(t[7], 1); /* shuffle flag */
	es = t[5] == PSPACE_F64 ? 8 : t[5] == PSPACE_F32 ? 4 : 2;
	n = (size_t)cref_rd_le32(t + 8) * cref_rd_le32(t + 12);
	assert_true(len - HDR >= 4 * es);
	pi->es = es;
	pi->n = n;
	off = HDR + 4 * es;
	sh = malloc(es * n);
	el = malloc(es * n);
	assert_true(sh && el);
	for (size_t b = 0; b < es; b++) {
		uint32_t v = cref_rd_le32(t + HDR + 4 * b);

		pi->raw[b] = (v >> 31) != 0;
		pi->nibble[b] = t[6] == PSPACE_CODEC_PLANES && v >> 30 == 1;
		pi->len[b] = pi->nibble[b] ? v & 0x3fffffffu : v & 0x7fffffffu;
		assert_true(off + pi->len[b] <= len);
		if (pi->raw[b]) {
			assert_int_equal(pi->len[b], n);
			memcpy(sh + b * n, t + off, n);
		} else if (pi->nibble[b]) {
			nibble_read(sh + b * n, n, t + off, pi->len[b]);
			assert_true(pi->len[b] * 100 < 97 * n); /* the encoder's keep rule */
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

void cref_check_roundtrip(pspace_codec *c, const pspace_codec_opts *o, unsigned eflags,
                          pspace_dtype src_type, const struct cref_shape *sh, const double *x,
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
		e = cref_scale_exp(maxabs);

	assert_int_equal(pspace_tile_encode_ex(c, o, eflags, src_type, src, sh->rows, sh->cols,
	                                       sh->src_ld, &tile, &len),
	                 0);
	assert_true(len <= pspace_tile_bound(o, sh->rows, sh->cols));
	/* a private copy: the context's buffer is reused by view below */
	copy = cref_aligned(64, len);
	memcpy(copy, tile, len);

	assert_int_equal(pspace_tile_parse(&h, copy, len), 0);
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
	if (h.codec != PSPACE_CODEC_RAW && (!o->shuffle || (eflags & PSPACE_TILE_ENCODE_ONE_FRAME)))
		assert_int_equal(h.codec, PSPACE_CODEC_ZSTD);
	if (h.codec != PSPACE_CODEC_RAW && o->shuffle && !(eflags & PSPACE_TILE_ENCODE_ONE_FRAME))
		assert_true(h.codec == PSPACE_CODEC_ZSTD_PLANES || h.codec == PSPACE_CODEC_PLANES);
	if (h.codec == PSPACE_CODEC_ZSTD_PLANES || h.codec == PSPACE_CODEC_PLANES) {
		/* the layout as documented, read without the library's decoder */
		struct cref_planes pi;
		double *vals = malloc(n * sizeof(*vals));

		assert_non_null(vals);
		cref_planes_read(copy, len, &pi, vals);
		for (size_t i = 0; i < n; i++)
			assert_true(vals[i] == cref_stored(o->dtype, src_type, x[i], e));
		free(vals);
	}

	for (size_t w = 0; w < 2; w++) {
		pspace_dtype want = wants[w];
		size_t es = want == PSPACE_F32 ? 4 : 8;
		size_t dn = (size_t)sh->rows * sh->dst_ld;
		unsigned char *dst = cref_aligned(64, dn * es);

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

void cref_flip_all(pspace_codec *c, const void *tile, size_t len)
{
	unsigned char *buf = cref_aligned(64, len);
	uint32_t rows = cref_rd_le32((const unsigned char *)tile + 8);
	uint32_t cols = cref_rd_le32((const unsigned char *)tile + 12);
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
			/* a deferred view either fails now or leaves the check to the caller */
			{
				int verified = -1,
				    rc = pspace_tile_view_unverified(c, buf, len, PSPACE_F32, &view,
				                                     NULL, &verified);

				assert_true(rc == PSPACE_ECORRUPT || (rc == 0 && verified == 0));
			}
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
