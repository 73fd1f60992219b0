/*
 * Tests of src/build/source_npy.c: the Jacobian source over uneven .npy
 * files against the concatenation built here; the layer source over two
 * directories against the arrays built here, and its shape errors naming
 * the file and the axis.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace.h"

/* Deterministic values with few significant bits, exact in float32. */
static double val(uint64_t i, uint64_t salt)
{
	return (double)((int64_t)((i * 2654435761u + salt * 40503u) % 2001) - 1000) / 64.0;
}

/* J[k][x][p] of the whole concatenation. */
static double jval(uint64_t k, uint64_t x, uint64_t p)
{
	return val(k * 100003 + x * 1009 + p, 7);
}

static void write_jac(const char *path, pspace_dtype dt, int ndim, uint32_t K, uint64_t x0,
                      uint64_t n, uint64_t d)
{
	double *buf = malloc((K * n * d + 1) * sizeof(double));
	uint64_t shape[3] = {K, n, d};

	assert_non_null(buf);
	for (uint64_t k = 0; k < K; k++)
		for (uint64_t x = 0; x < n; x++)
			for (uint64_t p = 0; p < d; p++)
				buf[(k * n + x) * d + p] = jval(k, x0 + x, p);
	assert_int_equal(pspace_npy_write(path, dt, ndim, ndim == 3 ? shape : shape + 1, buf), 0);
	free(buf);
}

static void check_jac_reads(const pspace_jac_source *src)
{
	const uint64_t n = src->examples, d = src->d;
	const uint32_t K = src->outputs;

	for (size_t extra = 0; extra <= 3; extra += 3) {
		size_t ld = (size_t)d + extra;
		double *out = malloc((K * n * ld + 1) * sizeof(double));

		assert_non_null(out);
		for (uint64_t x0 = 0; x0 <= n; x0++) {
			for (uint64_t nx = 0; x0 + nx <= n; nx++) {
				for (uint64_t i = 0; i < K * nx * ld; i++)
					out[i] = -12345.0;
				if (src->read(src->ud, x0, nx, out, ld) != 0)
					fail_msg("read %llu+%llu: %s", (unsigned long long)x0,
					         (unsigned long long)nx, pspace_errdetail());
				for (uint64_t k = 0; k < K; k++)
					for (uint64_t x = 0; x < nx; x++)
						for (uint64_t p = 0; p < ld; p++)
							assert_true(out[(k * nx + x) * ld + p] ==
							            (p < d ? jval(k, x0 + x, p)
							                   : -12345.0));
			}
		}
		assert_int_equal(src->read(src->ud, n, 1, out, ld), PSPACE_EINVAL);
		free(out);
	}
}

static void test_npy_jac_source(void **state)
{
	const uint64_t d = 7, ns[3] = {3, 1, 4};
	const char *paths[3];
	pspace_jac_source src;
	pspace_layout *lay = NULL, *lay_bad = NULL;
	uint64_t x0 = 0;

	(void)state;
	/* K = 2 over three uneven files, one of them float32 (values exact in f32). */
	for (int i = 0; i < 3; i++) {
		paths[i] = fx_path(fx_group_dir(), "J%d.npy", i);
		write_jac(paths[i], i == 1 ? PSPACE_F32 : PSPACE_F64, 3, 2, x0, ns[i], d);
		x0 += ns[i];
	}
	assert_int_equal(pspace_layout_parse(&lay, "a linear 1x6 bias\n", "layout.txt"), 0);
	assert_int_equal(pspace_jac_source_npy(&src, paths, 3, lay), 0);
	assert_int_equal(src.examples, 8);
	assert_int_equal(src.outputs, 2);
	assert_int_equal(src.d, 7);
	check_jac_reads(&src);
	pspace_jac_source_npy_close(&src);
	pspace_jac_source_npy_close(&src); /* zeroed: harmless */

	/* K = 1: (n, d) files, with a (1, n, d) file among them. */
	x0 = 0;
	for (int i = 0; i < 3; i++) {
		paths[i] = fx_path(fx_group_dir(), "J1_%d.npy", i);
		write_jac(paths[i], PSPACE_F64, i == 2 ? 3 : 2, 1, x0, ns[i], d);
		x0 += ns[i];
	}
	assert_int_equal(pspace_jac_source_npy(&src, paths, 3, NULL), 0);
	assert_int_equal(src.outputs, 1);
	assert_int_equal(src.examples, 8);
	check_jac_reads(&src);
	pspace_jac_source_npy_close(&src);

	/* Mismatches name the file and what differs. */
	paths[0] = fx_path(fx_group_dir(), "J0.npy");
	paths[1] = fx_path(fx_group_dir(), "J1_1.npy"); /* K = 1 */
	fx_expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT, "J1_1.npy",
	              "K = 1 outputs, but");
	assert_null(src.ud);
	paths[1] = fx_path(fx_group_dir(), "Jd.npy");
	write_jac(paths[1], PSPACE_F64, 3, 2, 0, 2, d + 1);
	fx_expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT, "Jd.npy",
	              "8 columns, but");
	assert_int_equal(pspace_layout_parse(&lay_bad, "a linear 2x4 bias\n", "layout.txt"), 0);
	fx_expect_err(pspace_jac_source_npy(&src, paths, 1, lay_bad), PSPACE_EFORMAT, "J0.npy",
	              "7 columns, but the layout has d = 10");
	{
		const uint64_t s1[] = {7};
		double z[7] = {0};

		paths[1] = fx_path(fx_group_dir(), "J1d.npy");
		assert_int_equal(pspace_npy_write(paths[1], PSPACE_F64, 1, s1, z), 0);
		fx_expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT,
		              "J1d.npy", "is not (K, n, d) or (n, d)");
	}
	paths[1] = fx_path(fx_group_dir(), "Jnone.npy");
	fx_expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_ENOTFOUND, "Jnone.npy",
	              NULL);
	assert_int_equal(pspace_jac_source_npy(&src, paths, 0, NULL), PSPACE_EINVAL);
	pspace_layout_free(lay);
	pspace_layout_free(lay_bad);
}

/*
 * Layout: fc linear 3x4 bias (in 4, out 3, T = 1);
 *         conv conv2d 2x2x2x2 bias (in_patch 8, out 2, T = 4);
 *         emb embedding 10x3 (ids < 10, dim 3, T = 2).
 * Global examples: dir 0 holds 0..2, dir 1 holds 3..4. K = 2.
 */
#define LK 2
static const char layer_layout[] = "fc   linear    3x4      bias\n"
                                   "conv conv2d    2x2x2x2  bias\n"
                                   "emb  embedding 10x3     nobias\n";

static double aval(int layer, uint64_t x, uint64_t t, uint64_t j)
{
	return val((uint64_t)layer * 7919 + x * 131 + t * 17 + j, 3);
}

static double gval(int layer, uint64_t k, uint64_t x, uint64_t t, uint64_t o)
{
	return val((uint64_t)layer * 7919 + k * 5003 + x * 131 + t * 17 + o, 5);
}

static int64_t idval(uint64_t x, uint64_t t)
{
	return (int64_t)((x * 7 + t * 3) % 10);
}

static void write_layer_dir(const char *dir, uint64_t x0, uint64_t n, int emb_float)
{
	double buf[512];
	int64_t ids[64];
	uint64_t i;

	mkdir(dir, 0700);
	/* fc: acts (n, 4), grads (K, n, 3) */
	{
		const uint64_t sa[] = {n, 4}, sg[] = {LK, n, 3};
		char p[256];

		for (i = 0; i < n * 4; i++)
			buf[i] = aval(0, x0 + i / 4, 0, i % 4);
		snprintf(p, sizeof(p), "%s/fc.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F32, 2, sa, buf), 0);
		for (i = 0; i < LK * n * 3; i++)
			buf[i] = gval(0, i / (n * 3), x0 + i / 3 % n, 0, i % 3);
		snprintf(p, sizeof(p), "%s/fc.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, sg, buf), 0);
	}
	/* conv: acts (n, 4, 8), grads (K, n, 4, 2) */
	{
		const uint64_t sa[] = {n, 4, 8}, sg[] = {LK, n, 4, 2};
		char p[256];

		for (i = 0; i < n * 32; i++)
			buf[i] = aval(1, x0 + i / 32, i / 8 % 4, i % 8);
		snprintf(p, sizeof(p), "%s/conv.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, sa, buf), 0);
		for (i = 0; i < LK * n * 8; i++)
			buf[i] = gval(1, i / (n * 8), x0 + i / 8 % n, i / 2 % 4, i % 2);
		snprintf(p, sizeof(p), "%s/conv.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F32, 4, sg, buf), 0);
	}
	/* emb: ids (n, 2) int64 (or float64 holding integers), grads (K, n, 2, 3) */
	{
		const uint64_t sa[] = {n, 2}, sg[] = {LK, n, 2, 3};
		char p[256];

		for (i = 0; i < n * 2; i++) {
			ids[i] = idval(x0 + i / 2, i % 2);
			buf[i] = (double)ids[i];
		}
		snprintf(p, sizeof(p), "%s/emb.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, emb_float ? PSPACE_F64 : PSPACE_I64, 2, sa,
		                                  emb_float ? (void *)buf : (void *)ids),
		                 0);
		for (i = 0; i < LK * n * 6; i++)
			buf[i] = gval(2, i / (n * 6), x0 + i / 6 % n, i / 3 % 2, i % 3);
		snprintf(p, sizeof(p), "%s/emb.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 4, sg, buf), 0);
	}
}

static void check_batch(const pspace_layer_batch *b, uint64_t x0, uint64_t nx)
{
	/* fc */
	assert_int_equal(b[0].T, 1);
	assert_null(b[0].ids);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t j = 0; j < 4; j++)
			assert_true(b[0].acts[x * 4 + j] == aval(0, x0 + x, 0, j));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t o = 0; o < 3; o++)
				assert_true(b[0].grads[(k * nx + x) * 3 + o] ==
				            gval(0, k, x0 + x, 0, o));
	/* conv */
	assert_int_equal(b[1].T, 4);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t t = 0; t < 4; t++)
			for (uint64_t j = 0; j < 8; j++)
				assert_true(b[1].acts[(x * 4 + t) * 8 + j] ==
				            aval(1, x0 + x, t, j));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t t = 0; t < 4; t++)
				for (uint64_t o = 0; o < 2; o++)
					assert_true(b[1].grads[((k * nx + x) * 4 + t) * 2 + o] ==
					            gval(1, k, x0 + x, t, o));
	/* emb */
	assert_int_equal(b[2].T, 2);
	assert_null(b[2].acts);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t t = 0; t < 2; t++)
			assert_int_equal(b[2].ids[x * 2 + t], idval(x0 + x, t));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t t = 0; t < 2; t++)
				for (uint64_t o = 0; o < 3; o++)
					assert_true(b[2].grads[((k * nx + x) * 2 + t) * 3 + o] ==
					            gval(2, k, x0 + x, t, o));
}

static void test_npy_layer_source(void **state)
{
	pspace_layout *lay = NULL;
	pspace_layer_source src;
	pspace_layer_batch b[3];
	const char *dirs[2];

	(void)state;
	dirs[0] = fx_path(fx_group_dir(), "L0");
	dirs[1] = fx_path(fx_group_dir(), "L1/"); /* a trailing slash is fine */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 3, 2, 1);
	assert_int_equal(pspace_layout_parse(&lay, layer_layout, "layout.txt"), 0);
	if (pspace_layer_source_dirs(&src, lay, dirs, 2) != 0)
		fail_msg("%s", pspace_errdetail());
	pspace_layout_free(lay); /* the source keeps what it needs */
	assert_int_equal(src.examples, 5);
	assert_int_equal(src.outputs, LK);
	/* Every window, growing and shrinking the buffers. */
	for (uint64_t x0 = 0; x0 <= 5; x0++)
		for (uint64_t nx = 1; x0 + nx <= 5; nx++) {
			if (src.read(src.ud, x0, nx, b) != 0)
				fail_msg("read %llu+%llu: %s", (unsigned long long)x0,
				         (unsigned long long)nx, pspace_errdetail());
			check_batch(b, x0, nx);
		}
	assert_int_equal(src.read(src.ud, 4, 2, b), PSPACE_EINVAL);
	pspace_layer_source_dirs_close(&src);
	pspace_layer_source_dirs_close(&src);
}

static void test_npy_layer_source_errors(void **state)
{
	pspace_layout *lay = NULL, *lay2 = NULL;
	pspace_layer_source src;
	pspace_layer_batch b[3];
	const char *dirs[2];
	char p[256];
	const uint64_t s_fc_bad[] = {3, 5}, s_g_bad[] = {LK, 3, 4}, s_g_n[] = {LK, 2, 3};
	const uint64_t s_conv_T[] = {3, 3, 8}, s_ids[] = {3, 2};
	double z[256] = {0};
	int64_t ids[6] = {0, 1, 2, 3, 10, 5};

	(void)state;
	assert_int_equal(pspace_layout_parse(&lay, layer_layout, "layout.txt"), 0);
	dirs[0] = fx_path(fx_group_dir(), "E0");
	dirs[1] = fx_path(fx_group_dir(), "E1");

	/* Missing directory / file. */
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_ENOTFOUND,
	              "E0/fc.acts.npy", NULL);
	assert_null(src.ud);

	/* fc acts with 5 columns instead of in = 4. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/fc.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 2, s_fc_bad, z), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/fc.acts.npy", "axis 1 is 5, expected 4");

	/* grads with K = 3 in one layer, 2 elsewhere. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.grads.npy", dirs[0]);
	{
		const uint64_t s[] = {3, 3, 4, 2};

		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 4, s, z), 0);
	}
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/conv.grads.npy", "axis 0 is 3, expected 2");

	/* fc grads with the wrong out. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/fc.grads.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_g_bad, z), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/fc.grads.npy", "axis 2 is 4, expected 3");
	/* ... and the wrong n. */
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_g_n, z), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/fc.grads.npy", "axis 1 is 2, expected 3");

	/* conv acts with T = 3 where the grads have T = 4. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_conv_T, z), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/conv.grads.npy", "axis 2 is 4, expected 3");

	/* n differs between layers of one directory. */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 0, 2, 0);
	snprintf(p, sizeof(p), "%s/emb.acts.npy", dirs[0]);
	{
		char q[256];

		snprintf(q, sizeof(q), "%s/emb.acts.npy", dirs[1]);
		assert_int_equal(rename(q, p), 0);
	}
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	              "E0/emb.acts.npy", "axis 0 is 2, expected 3");

	/* T of a layer differs between directories. */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.acts.npy", dirs[1]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_conv_T, z), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay, dirs, 2), PSPACE_EFORMAT,
	              "E1/conv.acts.npy", "axis 1 is 3, expected 4");

	/* Ids: float that is not an integer, and out of range (found when read). */
	write_layer_dir(dirs[1], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/emb.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_I64, 2, s_ids, ids), 0);
	assert_int_equal(pspace_layer_source_dirs(&src, lay, dirs, 2), 0);
	assert_int_equal(src.read(src.ud, 0, 2, b), 0);
	fx_expect_err(src.read(src.ud, 1, 3, b), PSPACE_EFORMAT, "E0/emb.acts.npy", "id 10");
	pspace_layer_source_dirs_close(&src);
	z[3] = 2.5;
	assert_int_equal(pspace_npy_write(p, PSPACE_F32, 2, s_ids, z), 0);
	assert_int_equal(pspace_layer_source_dirs(&src, lay, dirs, 2), 0);
	fx_expect_err(src.read(src.ud, 0, 3, b), PSPACE_EFORMAT, "E0/emb.acts.npy",
	              "not an integer");
	pspace_layer_source_dirs_close(&src);

	/* Norm layers have no layer tensors. */
	assert_int_equal(
	    pspace_layout_parse(&lay2, "fc linear 3x4 bias\nbn1 norm 3 bias\n", "layout.txt"), 0);
	fx_expect_err(pspace_layer_source_dirs(&src, lay2, dirs, 1), PSPACE_ENOTSUP, "bn1",
	              "Jacobian rows");
	pspace_layout_free(lay2);
	pspace_layout_free(lay);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_npy_jac_source),
	    cmocka_unit_test(test_npy_layer_source),
	    cmocka_unit_test(test_npy_layer_source_errors),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
