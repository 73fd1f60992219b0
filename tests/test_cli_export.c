/*
 * CLI tests of `pspace export`: the built tool ($PSPACE_TOOL) writes the
 * matrices of a store this test makes with the library
 * (tests/helpers/clistore) as .npy files, checked against their float64
 * references and the library's own dense form, and as PNG pictures,
 * decoded with libpng. Stdout names what was written, nothing else.
 */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clistore.h"
#include "fixture.h"
#include "pspace.h"

#define D CLISTORE_D

static char root[64];
static char store[128];
static clistore_refs refs;

static int setup(void **state)
{
	(void)state;
	fx_dir_make(root, sizeof(root), "cli-export");
	snprintf(store, sizeof(store), "%s/s.store", root);
	return clistore_make(store, &refs);
}

static int teardown(void **state)
{
	(void)state;
	return fx_dir_remove(root);
}

/* ---- helpers: npy and png files ------------------------------------------------- */

static double *read_npy(const char *path, int ndim, const uint64_t *shape)
{
	pspace_npy *f;
	pspace_npy_info in;
	double *v;

	assert_int_equal(pspace_npy_open(&f, path), 0);
	assert_int_equal(pspace_npy_info_get(&in, f), 0);
	assert_int_equal(in.ndim, ndim);
	for (int i = 0; i < ndim; i++)
		assert_int_equal(in.shape[i], shape[i]);
	v = malloc(in.count * sizeof(double));
	assert_non_null(v);
	assert_int_equal(pspace_npy_read(f, 0, in.count, v), 0);
	pspace_npy_close(f);
	return v;
}

/* |got - ref| within float32 rounding of ref */
static void assert_close32(const double *got, const double *ref, size_t n)
{
	double scale = 0;

	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(ref[i]));
	for (size_t i = 0; i < n; i++)
		if (fabs(got[i] - ref[i]) > 1e-6 * scale + 1e-6 * fabs(ref[i])) {
			fprintf(stderr, "entry %zu: %.9g vs %.9g\n", i, got[i], ref[i]);
			fail();
		}
}

/* the library's own dense form, for a second comparison */
static void lib_dense(const char *name, double *Fout)
{
	pspace_store *s;
	pspace_mat *m;

	assert_int_equal(pspace_store_open(&s, store, NULL), 0);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_dense(m, NULL, Fout, D), 0);
	pspace_mat_free(m);
	pspace_store_close(s);
}

typedef struct image {
	uint32_t w, h;
	unsigned char *rgb;
} image;

static void read_png(const char *path, image *im)
{
	FILE *f = fopen(path, "rb");
	png_structp png;
	png_infop info;

	assert_non_null(f);
	png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	info = png_create_info_struct(png);
	assert_true(png && info);
	if (setjmp(png_jmpbuf(png)))
		fail_msg("libpng error reading %s", path);
	png_init_io(png, f);
	png_read_info(png, info);
	im->w = png_get_image_width(png, info);
	im->h = png_get_image_height(png, info);
	assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
	assert_int_equal(png_get_bit_depth(png, info), 8);
	im->rgb = malloc((size_t)im->w * im->h * 3);
	assert_non_null(im->rgb);
	for (uint32_t y = 0; y < im->h; y++)
		png_read_row(png, im->rgb + (size_t)y * im->w * 3, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	fclose(f);
}

static const unsigned char *px(const image *im, uint32_t y, uint32_t x)
{
	return im->rgb + ((size_t)y * im->w + x) * 3;
}

static int is_rgb(const unsigned char *p, int r, int g, int b)
{
	return p[0] == r && p[1] == g && p[2] == b;
}

/* export --npy of @p name, in memory and streamed, against @p ref and the library */
static void check_npy_export(const char *name, const double *ref)
{
	static double lib[D * D];
	const uint64_t shape[2] = {D, D};
	const char *mems[] = {"", "--mem 4K"};
	char file[400];

	lib_dense(name, lib);
	assert_close32(lib, ref, D * D);
	for (int i = 0; i < 2; i++) {
		double *got;

		snprintf(file, sizeof(file), "%s/%s%d.npy", root, name, i);
		assert_int_equal(fx_cli("export '%s' %s --npy '%s' %s", store, name, file, mems[i]),
		                 0);
		fx_expect_stdout(i ? "streamed" : "float32");
		got = read_npy(file, 2, shape);
		assert_close32(got, ref, D * D);
		assert_close32(got, lib, D * D);
		free(got);
	}
}

static void test_cli_export_npy(void **state)
{
	(void)state;
	check_npy_export("dense", refs.dense);
	check_npy_export("bd", refs.bd);
	check_npy_export("kfac", refs.kfac);
	check_npy_export("ekfac", refs.kfac);
	{
		static double Fd[D * D];

		memset(Fd, 0, sizeof(Fd));
		for (int i = 0; i < D; i++)
			Fd[i * D + i] = refs.diag[i];
		check_npy_export("diag", Fd);
	}
}

static void test_cli_export_diag_block(void **state)
{
	const char *names[] = {"dense", "bd", "kfac"};
	const double *want[] = {refs.dense, refs.bd, refs.kfac};
	char file[400];

	(void)state;
	for (int k = 0; k < 3; k++) {
		uint64_t d1 = D, b2[2] = {8, 8}, b1[2] = {16, 16};
		double ref[D], blk[16 * 16], *got;

		snprintf(file, sizeof(file), "%s/%s.diag.npy", root, names[k]);
		assert_int_equal(fx_cli("export '%s' %s --npy '%s' --diag", store, names[k], file),
		                 0);
		got = read_npy(file, 1, &d1);
		for (int i = 0; i < D; i++)
			ref[i] = want[k][i * D + i];
		assert_close32(got, ref, D);
		free(got);

		/* fc2: rows/cols 16..24; fc1 streamed */
		snprintf(file, sizeof(file), "%s/%s.fc2.npy", root, names[k]);
		assert_int_equal(
		    fx_cli("export '%s' %s --npy '%s' --block fc2", store, names[k], file), 0);
		got = read_npy(file, 2, b2);
		for (int i = 0; i < 8; i++)
			for (int j = 0; j < 8; j++)
				blk[i * 8 + j] = want[k][(16 + i) * D + 16 + j];
		assert_close32(got, blk, 64);
		free(got);
		snprintf(file, sizeof(file), "%s/%s.fc1.npy", root, names[k]);
		assert_int_equal(
		    fx_cli("export '%s' %s --npy '%s' --block fc1 --mem 3K", store, names[k], file),
		    0);
		got = read_npy(file, 2, b1);
		for (int i = 0; i < 16; i++)
			for (int j = 0; j < 16; j++)
				blk[i * 16 + j] = want[k][i * D + j];
		assert_close32(got, blk, 256);
		free(got);
	}
}

static void test_cli_export_factors(void **state)
{
	char dir[400], file[480];
	uint64_t s4[2] = {4, 4}, s2[2] = {2, 2};
	double *got;
	int lines;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kfac.factors", root);
	assert_int_equal(fx_cli("export '%s' kfac --npy '%s' --factors", store, dir), 0);
	/* stdout: the files written, one a line; the count on stderr */
	lines = 0;
	for (char *p = fx_out, *nl; (nl = strchr(p, '\n')); p = nl + 1, lines++) {
		*nl = '\0';
		assert_int_equal(strncmp(p, dir, strlen(dir)), 0);
		assert_string_equal(p + strlen(p) - 4, ".npy");
		assert_int_equal(access(p, R_OK), 0);
		*nl = '\n';
	}
	assert_true(lines >= 4);
	fx_expect_stdout("A.fc1.npy");
	snprintf(file, sizeof(file), "pspace: export: %d arrays written to %s/\n", lines, dir);
	assert_string_equal(fx_err, file);
	snprintf(file, sizeof(file), "%s/A.fc1.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, refs.A1, sizeof(refs.A1));
	free(got);
	snprintf(file, sizeof(file), "%s/G.fc1.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, refs.G1, sizeof(refs.G1));
	free(got);
	snprintf(file, sizeof(file), "%s/A.fc2.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, refs.A2, sizeof(refs.A2));
	free(got);
	snprintf(file, sizeof(file), "%s/G.fc2.npy", dir);
	got = read_npy(file, 2, s2);
	assert_memory_equal(got, refs.G2, sizeof(refs.G2));
	free(got);
	/* stored kinds have no factors */
	assert_int_equal(fx_cli("export '%s' dense --npy '%s' --factors", store, dir), 1);
	fx_expect_stderr("matrix dense");
	fx_expect_stderr("--factors");
}

static void check_png(const char *name, const double *ref)
{
	char file[400];
	image im;

	snprintf(file, sizeof(file), "%s/%s.png", root, name);
	assert_int_equal(fx_cli("export '%s' %s --png '%s'", store, name, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, D);
	assert_int_equal(im.h, D);
	for (uint32_t i = 0; i < D; i++) {
		/* correlation 1: viridis' brightest */
		assert_true(is_rgb(px(&im, i, i), 253, 231, 37));
		/* the layer boundary at parameter 16: a red line in row and column 16 */
		if (i != 16) {
			assert_true(is_rgb(px(&im, 16, i), 228, 26, 28));
			assert_true(is_rgb(px(&im, i, 16), 228, 26, 28));
		}
	}
	/* off the lines: |C| < 1 is not the brightest; zero blocks are the darkest */
	for (uint32_t i = 0; i < D; i++)
		for (uint32_t j = 0; j < D; j++) {
			double c;

			if (i == j || i == 16 || j == 16)
				continue;
			c = fabs(ref[i * D + j]) / sqrt(ref[i * D + i] * ref[j * D + j]);
			if (c < 0.95)
				assert_false(is_rgb(px(&im, i, j), 253, 231, 37));
			if (c == 0)
				assert_true(is_rgb(px(&im, i, j), 68, 1, 84));
		}
	free(im.rgb);
}

static void test_cli_export_png(void **state)
{
	char file[400];
	image im;

	(void)state;
	check_png("dense", refs.dense);
	check_png("bd", refs.bd);
	check_png("kfac", refs.kfac);

	/* one layer: 16 x 16, no lines, diagonal brightest */
	snprintf(file, sizeof(file), "%s/fc1.png", root);
	assert_int_equal(fx_cli("export '%s' dense --png '%s' --layer fc1", store, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, 16);
	assert_int_equal(im.h, 16);
	for (uint32_t i = 0; i < 16; i++)
		assert_true(is_rgb(px(&im, i, i), 253, 231, 37));
	free(im.rgb);

	/* downsampled: 12 x 12 pixels of 2 x 2 entries */
	snprintf(file, sizeof(file), "%s/small.png", root);
	assert_int_equal(fx_cli("export '%s' kfac --png '%s' --size 12 --mem 64K", store, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, 12);
	assert_int_equal(im.h, 12);
	free(im.rgb);
}

static void test_cli_export_errors(void **state)
{
	char file[400];

	(void)state;
	snprintf(file, sizeof(file), "%s/err.npy", root);
	assert_int_equal(fx_cli("export '%s/nostore' dense --npy '%s'", root, file), 1);
	fx_expect_stderr("nostore");
	assert_int_equal(fx_cli("export '%s' nosuch --npy '%s'", store, file), 1);
	fx_expect_stderr("nosuch");
	/* usage errors */
	assert_int_equal(fx_cli("export '%s' dense", store), 2);
	fx_expect_stderr("Try 'pspace export --help'");
	assert_int_equal(fx_cli("export '%s' dense --npy a.npy --png b.png", store), 2);
	assert_int_equal(fx_cli("export '%s' dense --npy a.npy --diag --factors", store), 2);
	assert_int_equal(fx_cli("export '%s' dense --png a.png --size 0", store), 2);
	fx_expect_stderr("--size needs an integer in [1, 16384], not '0'");
	assert_int_equal(fx_cli("export '%s' dense --npy a.npy --mem lots", store), 2);
	fx_expect_stderr("--mem needs a size like 512M or 4G, not 'lots'");
	assert_int_equal(fx_cli("export '%s' dense --npy a.npy --size 64", store), 2);
	fx_expect_stderr("go with --png");
	assert_int_equal(fx_cli("export --help"), 0);
	fx_expect_stdout("--factors");
	fx_expect_stdout("  --npy OUT");
	fx_expect_stdout("  --png OUT");
	/* too big for --mem: not even one band of rows fits */
	assert_int_equal(fx_cli("export '%s' dense --npy '%s' --mem 1K", store, file), 1);
	fx_expect_stderr("matrix dense");
	fx_expect_stderr(file);
	fx_expect_stderr("--mem");
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(fx_cli("export '%s' kfac --npy '%s' --mem 100", store, file), 1);
	fx_expect_stderr("matrix kfac");
	/* PNG of a missing layer; --block of a missing layer */
	assert_int_equal(fx_cli("export '%s' dense --png '%s/x.png' --layer fc9", store, root), 1);
	fx_expect_stderr("matrix dense");
	fx_expect_stderr("fc9");
	assert_int_equal(fx_cli("export '%s' bd --npy '%s' --block fc9", store, file), 1);
	fx_expect_stderr("matrix bd");
	fx_expect_stderr("fc9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_export_npy),     cmocka_unit_test(test_cli_export_diag_block),
	    cmocka_unit_test(test_cli_export_factors), cmocka_unit_test(test_cli_export_png),
	    cmocka_unit_test(test_cli_export_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
