/*
 * Tests of the tile codec's stored precisions: round trips in every stored
 * precision, source type, level and shuffle against references computed
 * here in double (tests/helpers/cref.c), special values, rounding ties,
 * the f16 scale and its underflow, and that Fisher tiles compress.
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

#include "cref.h"
#include "fixture.h"
#include "pspace/codec.h"

#include "codec/codec.h"

#define HDR PSPACE_TILE_HEADER_SIZE

static uint64_t rng; /* the generator of the test running */

static void roundtrip_all(enum cref_data kind)
{
	const pspace_dtype dtypes[] = {PSPACE_F64, PSPACE_F32, PSPACE_BF16, PSPACE_F16};
	const pspace_dtype srcs[] = {PSPACE_F32, PSPACE_F64};
	const int levels[] = {0, 1, 3, 19};
	pspace_codec *c = NULL;
	int count = 0;

	assert_int_equal(pspace_codec_create(&c), 0);
	for (size_t s = 0; s < CREF_NSHAPES; s++) {
		const struct cref_shape *sh = &cref_shapes[s];
		size_t n = (size_t)sh->rows * sh->cols;
		double *x = malloc(n * sizeof(*x));
		void *src = malloc((size_t)sh->rows * sh->src_ld * 8);

		assert_true(x && src);
		for (size_t t = 0; t < 2; t++) {
			cref_make_data(&rng, kind, srcs[t], sh, x, src);
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
						cref_check_roundtrip(
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
	rng = 1;
	roundtrip_all(CREF_UNIFORM);
}

static void test_codec_roundtrip_fisher(void **state)
{
	(void)state;
	rng = 2;
	roundtrip_all(CREF_FISHER);
}

/* Fisher tiles in f32 with shuffle should compress; the default options must use zstd. */
static void test_codec_fisher_compresses(void **state)
{
	const struct cref_shape sh = {256, 256, 256, 256};
	double *x = malloc(256 * 256 * sizeof(*x));
	float *src = malloc(256 * 256 * sizeof(*src));
	pspace_codec *c = NULL;
	pspace_codec_opts o;
	const void *tile;
	size_t len;
	pspace_tile_header h;

	(void)state;
	assert_true(x && src);
	rng = 3;
	cref_make_data(&rng, CREF_FISHER, PSPACE_F32, &sh, x, src);
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
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	/* zero planes in zstd; the exponent plane zstd or nibbles (codec 3) */
	assert_true(h.codec == PSPACE_CODEC_ZSTD_PLANES || h.codec == PSPACE_CODEC_PLANES);
	assert_int_equal(h.shuffle, 1);
	print_message("f32 Fisher tile, 16 low bits zeroed: %zu -> %zu bytes\n",
	              (size_t)256 * 256 * 4, len);
	pspace_codec_free(c);
	free(src);
	free(x);
}

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
				assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
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
				assert_true(out[7] == cref_stored(dtypes[d], st,
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
		assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
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
 * go to even, checked against cref_round_sig() / nearbyint() here.
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
		assert_int_equal(cref_scale_exp(20000.0), 0);
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
			assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
			assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, N), 0);
			for (size_t i = 0; i < n; i++) {
				double src = t ? x[i] : (double)xf[i];
				double ref = cref_stored(stored[d], st, src, h.scale_exp);

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
	rng = 13;
	for (uint32_t i = 0; i < n; i++) {
		/* ~1e-9, within a factor of 2: all in the binary16 normal range once scaled */
		x[i] = 1e-9 * (1.0 + fx_rng_open01(&rng)) * (i % 2 ? -1.0 : 1.0);
		xf[i] = (float)x[i];
	}
	assert_int_equal(pspace_codec_create(&c), 0);
	pspace_codec_opts_default(&o);
	o.dtype = PSPACE_F16;
	/* from f64 */
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F64, x, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
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
		x[i] = ldexp(1.0 + fx_rng_open01(&rng), -1060);
		maxabs = fmax(maxabs, x[i]);
	}
	assert_int_equal(pspace_tile_encode(c, &o, PSPACE_F64, x, 1, n, n, &tile, &len), 0);
	assert_int_equal(pspace_tile_parse(&h, tile, len), 0);
	assert_int_equal(h.scale_exp, cref_scale_exp(maxabs));
	assert_int_equal(h.scale_exp, 1074);
	assert_int_equal(pspace_tile_decode(c, tile, len, PSPACE_F64, y, n), 0);
	for (uint32_t i = 0; i < n; i++)
		assert_true(fabs(y[i] - x[i]) <= 0x1p-11 * fabs(x[i]) + 0x1p-1074);
	/* and huge values need a negative scale */
	for (uint32_t i = 0; i < n; i++)
		x[i] = ldexp(1.0 + fx_rng_open01(&rng), 1000);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_roundtrip_uniform),
	    cmocka_unit_test(test_codec_roundtrip_fisher),
	    cmocka_unit_test(test_codec_fisher_compresses),
	    cmocka_unit_test(test_codec_special_values),
	    cmocka_unit_test(test_codec_rounding_ties),
	    cmocka_unit_test(test_codec_f16_underflow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
