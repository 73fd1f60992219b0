/*
 * pspace export --png: the picture the NNGeometry docs draw of each
 * representation. One pixel per entry, or the average over a block of
 * entries when d exceeds the image size, of the correlation magnitude
 * |F_ij| / sqrt(F_ii F_jj) (0 where a diagonal entry is 0), so the diagonal
 * is 1, the brightest colour of a viridis ramp; layer boundaries are red
 * lines. Streams: stored kinds read each tile once, resident kinds
 * multiply blocks of unit vectors, within the memory budget.
 */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

/* matplotlib's viridis at 0, 0.1, ..., 1 */
static const unsigned char viridis[11][3] = {
    {68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},  {42, 120, 142}, {33, 145, 140},
    {34, 168, 132}, {68, 191, 112}, {122, 209, 81}, {189, 223, 38}, {253, 231, 37},
};
static const unsigned char line_rgb[3] = {228, 26, 28};

static void colour(double v, unsigned char *rgb)
{
	double x;
	int k;

	if (!(v > 0))
		v = 0;
	if (v > 1)
		v = 1;
	x = v * 10.0;
	k = (int)x;
	if (k >= 10)
		k = 9;
	x -= k;
	for (int c = 0; c < 3; c++)
		rgb[c] =
		    (unsigned char)(viridis[k][c] + (viridis[k + 1][c] - viridis[k][c]) * x + 0.5);
}

typedef struct png_job {
	uint64_t o, n; /* index range drawn */
	uint32_t P;    /* image edge */
	uint32_t *pix; /* n: pixel of index o + i */
	double *isq;   /* d: 1 / sqrt(F_ii), 0 where F_ii <= 0 */
	double *acc;   /* P x P sums of |C| */
	uint64_t *cnt; /* P: indices per pixel */
} png_job;

static void add_entry(png_job *j, uint64_t i, uint64_t k, double v)
{
	j->acc[(size_t)j->pix[i - j->o] * j->P + j->pix[k - j->o]] +=
	    fabs(v) * j->isq[i] * j->isq[k];
}

/* Stored kinds: every tile once, mirrored for the lower half. */
static int accumulate_tiles(pspace_store *s, pspace_mat *m, png_job *j)
{
	pspace_reader *r = NULL;
	pspace_codec *codec = NULL;
	const pspace_matrix_info *mi;
	uint64_t *boff = NULL, hi = j->o + j->n, done_tiles = 0;
	double *T = NULL;
	tool_progress prog;
	int rc, done = 0;

	rc = pspace_reader_open(&r, s, pspace_mat_name(m), 0);
	if (rc == 0)
		rc = pspace_codec_create(&codec);
	if (rc)
		goto out;
	mi = pspace_reader_info(r);
	T = malloc((size_t)mi->tile * mi->tile * sizeof(double));
	boff = malloc(((size_t)mi->nblocks + 1) * sizeof(uint64_t));
	if (!T || !boff) {
		rc = PSPACE_ENOMEM;
		goto out;
	}
	boff[0] = 0;
	for (uint32_t b = 0; b < mi->nblocks; b++)
		boff[b + 1] = boff[b] + pspace_reader_block_dim(r, b);
	tool_progress_start(&prog, "png", mi->tiles);
	for (;;) {
		pspace_tile_ref t;
		pspace_tile_header h;
		uint64_t i0, j0;

		rc = pspace_reader_next(&t, &done, r);
		if (rc || done)
			break;
		tool_progress_update(&prog, ++done_tiles);
		rc = pspace_tile_parse(&h, t.data, t.len);
		if (rc == 0 && (h.rows > mi->tile || h.cols > mi->tile || t.block >= mi->nblocks))
			rc = PSPACE_ECORRUPT;
		if (rc)
			break;
		i0 = boff[t.block] + (uint64_t)t.row * mi->tile;
		j0 = boff[t.block] + (uint64_t)t.col * mi->tile;
		if (i0 >= hi || i0 + h.rows <= j->o || j0 >= hi || j0 + h.cols <= j->o)
			continue; /* outside the drawn range, and so is its mirror */
		rc = pspace_reader_decode(r, codec, &t, PSPACE_F64, T, h.cols);
		if (rc)
			break;
		for (uint64_t a = 0; a < h.rows; a++) {
			uint64_t i = i0 + a;

			if (i < j->o || i >= hi)
				continue;
			for (uint64_t b = 0; b < h.cols; b++) {
				uint64_t k = j0 + b;

				if (k < j->o || k >= hi)
					continue;
				add_entry(j, i, k, T[a * h.cols + b]);
				if (mi->symmetric && t.row != t.col)
					add_entry(j, k, i, T[a * h.cols + b]);
			}
		}
	}
	tool_progress_end(&prog);
out:
	free(boff);
	free(T);
	pspace_codec_free(codec);
	pspace_reader_close(r);
	return rc;
}

/* Resident kinds: rows band by band through mm with unit vectors. */
static int accumulate_bands(pspace_store *s, pspace_mat *m, png_job *j, uint64_t mem)
{
	insp_band *b = NULL;
	uint64_t h = j->n;
	double *band = NULL;
	tool_progress prog;
	int rc = insp_band_open(&b, s, m, j->o, j->n, mem, &h);

	if (rc)
		return rc;
	band = malloc(h * j->n * sizeof(double));
	if (!band) {
		insp_band_close(b);
		return PSPACE_ENOMEM;
	}
	tool_progress_start(&prog, "png", j->n);
	for (uint64_t r0 = j->o; rc == 0 && r0 < j->o + j->n; r0 += h) {
		uint64_t hh = j->o + j->n - r0 < h ? j->o + j->n - r0 : h;

		rc = insp_band_get(b, r0, hh, band);
		for (uint64_t a = 0; rc == 0 && a < hh; a++)
			for (uint64_t c = 0; c < j->n; c++)
				add_entry(j, r0 + a, j->o + c, band[a * j->n + c]);
		tool_progress_update(&prog, r0 + hh - j->o);
	}
	tool_progress_end(&prog);
	free(band);
	insp_band_close(b);
	return rc;
}

/* Writes the RGB image to @p path + ".tmp", then renames. */
static int write_png(const char *path, const unsigned char *rgb, uint32_t w, uint32_t h)
{
	char tmp[4096];
	png_structp png = NULL;
	png_infop info = NULL;
	FILE *f;
	volatile int ok = 0; /* set after setjmp */

	int renamed = tool_out_tmp(tmp, sizeof(tmp), path);

	f = fopen(tmp, "wb");
	if (!f)
		return -1;
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	if (png)
		info = png_create_info_struct(png);
	if (png && info && setjmp(png_jmpbuf(png)) == 0) {
		png_init_io(png, f);
		png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		             PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
		png_write_info(png, info);
		for (uint32_t y = 0; y < h; y++)
			png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
		png_write_end(png, NULL);
		ok = 1;
	}
	png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
	if (fclose(f) != 0)
		ok = 0;
	if (ok && (!renamed || rename(tmp, path) == 0))
		return 0;
	if (renamed)
		remove(tmp);
	return -1;
}

static void draw(const png_job *j, const pspace_layout *L, int lines, unsigned char *rgb)
{
	uint32_t P = j->P;

	for (uint32_t y = 0; y < P; y++)
		for (uint32_t x = 0; x < P; x++) {
			double n = (double)j->cnt[y] * (double)j->cnt[x];

			colour(n > 0 ? j->acc[(size_t)y * P + x] / n : 0,
			       rgb + ((size_t)y * P + x) * 3);
		}
	if (!lines || !L)
		return;
	for (size_t l = 1; l < pspace_layout_nlayers(L); l++) {
		uint64_t off = pspace_layout_layer(L, l)->offset;
		uint32_t p;

		if (off <= j->o || off >= j->o + j->n)
			continue;
		p = j->pix[off - j->o];
		for (uint32_t q = 0; q < P; q++) {
			if (q == p)
				continue; /* keep the diagonal */
			memcpy(rgb + ((size_t)p * P + q) * 3, line_rgb, 3);
			memcpy(rgb + ((size_t)q * P + p) * 3, line_rgb, 3);
		}
	}
}

int insp_png_export(pspace_store *s, pspace_mat *m, const char *name, const char *layer,
                    uint32_t px, int lines, uint64_t mem, const char *out)
{
	return insp_png_write(s, m, name, layer, px, lines, mem, out, stdout);
}

int insp_png_write(pspace_store *s, pspace_mat *m, const char *name, const char *layer, uint32_t px,
                   int lines, uint64_t mem, const char *out, FILE *report)
{
	const pspace_layout *L = pspace_mat_layout(m);
	const char *sp = pspace_store_path(s);
	uint64_t d = pspace_mat_dim(m), fixed;
	unsigned char *rgb = NULL;
	double *diag = NULL;
	pspace_exec ex = {0, 0};
	png_job j;
	int ret = EXIT_OK, rc;

	memset(&j, 0, sizeof(j));
	j.o = 0;
	j.n = d;
	if (layer) {
		size_t li;

		if (pspace_layout_find(&li, L, layer) != 0) {
			fprintf(stderr, "pspace: store %s: matrix %s: no layer '%s'\n", sp, name,
			        layer);
			return EXIT_RUNTIME;
		}
		j.o = pspace_layout_layer(L, li)->offset;
		j.n = pspace_layout_layer(L, li)->size;
	}
	j.P = (uint32_t)(j.n < px ? j.n : px);
	fixed = (uint64_t)j.P * j.P * (sizeof(double) + 3) + j.n * sizeof(uint32_t) +
	        2 * d * sizeof(double) + j.P * sizeof(uint64_t);
	if (pspace_mat_name(m) && insp_is_tiled(pspace_mat_kind(m))) {
		pspace_matrix_info mi;

		if (pspace_matrix_info_get(&mi, s, name) == 0) /* a decoded tile + codec scratch */
			fixed += 3 * (uint64_t)mi.tile * mi.tile * sizeof(double);
	}
	if (fixed >= mem) {
		char b1[32], b2[32];
		fprintf(stderr,
		        "pspace: store %s: matrix %s: a %ux%u image of d = %llu needs %s, more "
		        "than --mem %s\n",
		        sp, name, j.P, j.P, (unsigned long long)d,
		        tool_fmt_bytes(fixed, b1, sizeof(b1)), tool_fmt_bytes(mem, b2, sizeof(b2)));
		return EXIT_RUNTIME;
	}
	j.pix = malloc(j.n * sizeof(uint32_t));
	j.isq = malloc(d * sizeof(double));
	diag = malloc(d * sizeof(double));
	j.acc = calloc((size_t)j.P * j.P, sizeof(double));
	j.cnt = calloc(j.P, sizeof(uint64_t));
	rgb = malloc((size_t)j.P * j.P * 3);
	if (!j.pix || !j.isq || !diag || !j.acc || !j.cnt || !rgb) {
		ret = tool_fail(PSPACE_ENOMEM, "store %s: matrix %s: png", sp, name);
		goto out;
	}
	for (uint64_t i = 0; i < j.n; i++) {
		j.pix[i] = (uint32_t)(i * j.P / j.n);
		j.cnt[j.pix[i]]++;
	}
	ex.mem_budget = (size_t)(mem - fixed);
	rc = pspace_mat_diag(m, &ex, diag);
	for (uint64_t i = 0; rc == 0 && i < d; i++)
		j.isq[i] = diag[i] > 0 ? 1.0 / sqrt(diag[i]) : 0.0;
	free(diag);
	diag = NULL;
	if (rc == 0) {
		if (pspace_mat_name(m) && insp_is_tiled(pspace_mat_kind(m)))
			rc = accumulate_tiles(s, m, &j);
		else
			rc = accumulate_bands(s, m, &j, mem - fixed);
	}
	if (rc == PSPACE_ENOMEM && !*pspace_errdetail()) {
		fprintf(stderr, "pspace: store %s: matrix %s: --mem is too small to stream it\n",
		        sp, name);
		ret = EXIT_RUNTIME;
		goto out;
	}
	if (rc) {
		ret = tool_fail(rc, "store %s: matrix %s: png", sp, name);
		goto out;
	}
	draw(&j, L, lines && !layer, rgb);
	if (write_png(out, rgb, j.P, j.P) != 0) {
		fprintf(stderr, "pspace: cannot write %s: %s\n", out, strerror(errno));
		ret = EXIT_RUNTIME;
		goto out;
	}
	if (report)
		fprintf(report, "%s: %ux%u PNG of %s%s%s (d = %llu, %s per pixel)\n", out, j.P, j.P,
		        name, layer ? ", layer " : "", layer ? layer : "", (unsigned long long)d,
		        j.n == j.P ? "one entry" : "block average");
out:
	free(rgb);
	free(j.cnt);
	free(j.acc);
	free(diag);
	free(j.isq);
	free(j.pix);
	return ret;
}
