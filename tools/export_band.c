/*
 * Rows of a matrix band by band within a memory budget, for export: stored
 * kinds (Dense, BlockDiag) decode the tiles crossing a band, taking the
 * lower half of symmetric matrices from the transposed upper tiles;
 * resident kinds multiply a block of unit vectors (pspace_mat_mm).
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

struct insp_band {
	pspace_mat *m;
	uint64_t d, c0, nc;
	/* tiled */
	pspace_reader *r;
	pspace_codec *codec;
	double *tile;
	uint32_t t, nblocks;
	int symmetric;
	uint64_t *boff; /* nblocks + 1 offsets */
	/* resident */
	double *X, *Y;
	uint64_t kmax;
	pspace_exec ex;
};

static int tiled_kind(pspace_store *s, pspace_mat *m)
{
	return s && pspace_mat_name(m) && insp_is_tiled(pspace_mat_kind(m));
}

/* Working memory per band row: the caller's double band and float row. */
static uint64_t per_row(uint64_t nc)
{
	return nc * sizeof(double);
}

uint64_t insp_band_min_mem(pspace_store *s, pspace_mat *m, uint64_t nc)
{
	uint64_t d = pspace_mat_dim(m);
	pspace_matrix_info mi;

	if (tiled_kind(s, m) && pspace_matrix_info_get(&mi, s, pspace_mat_name(m)) == 0)
		/* the decoded tile, the codec's scratch, one band row, one f32 row */
		return 3 * (uint64_t)mi.tile * mi.tile * sizeof(double) + per_row(nc) +
		       nc * sizeof(float);
	/* X and Y of one unit vector, one band row, one f32 row; plus a quarter for mm */
	return (2 * d * sizeof(double) + per_row(nc) + nc * sizeof(float)) * 4 / 3 + 1;
}

void insp_band_close(insp_band *b)
{
	if (!b)
		return;
	pspace_reader_close(b->r);
	pspace_codec_free(b->codec);
	free(b->tile);
	free(b->boff);
	free(b->X);
	free(b->Y);
	free(b);
}

int insp_band_open(insp_band **out, pspace_store *s, pspace_mat *m, uint64_t c0, uint64_t nc,
                   uint64_t mem, uint64_t *rows)
{
	insp_band *b = calloc(1, sizeof(*b));
	uint64_t need = insp_band_min_mem(s, m, nc), h;
	int rc = 0;

	*out = NULL;
	if (!b)
		return PSPACE_ENOMEM;
	b->m = m;
	b->d = pspace_mat_dim(m);
	b->c0 = c0;
	b->nc = nc;
	if (mem < need) {
		rc = PSPACE_ENOMEM;
		goto fail;
	}
	if (tiled_kind(s, m)) {
		const pspace_matrix_info *mi;

		rc = pspace_reader_open(&b->r, s, pspace_mat_name(m), 0);
		if (rc == 0)
			rc = pspace_codec_create(&b->codec);
		if (rc)
			goto fail;
		mi = pspace_reader_info(b->r);
		b->t = mi->tile;
		b->nblocks = mi->nblocks;
		b->symmetric = mi->symmetric;
		b->tile = malloc((size_t)b->t * b->t * sizeof(double));
		b->boff = malloc((b->nblocks + 1) * sizeof(uint64_t));
		if (!b->tile || !b->boff) {
			rc = PSPACE_ENOMEM;
			goto fail;
		}
		b->boff[0] = 0;
		for (uint32_t i = 0; i < b->nblocks; i++)
			b->boff[i + 1] = b->boff[i] + pspace_reader_block_dim(b->r, i);
		h = (mem - need) / per_row(nc) + 1;
	} else {
		uint64_t row = 2 * b->d * sizeof(double) + per_row(nc);

		h = (mem * 3 / 4 - nc * sizeof(float)) / row;
		h = h ? h : 1;
		b->ex.mem_budget = (size_t)(mem / 4 ? mem / 4 : 1);
	}
	if (h > *rows)
		h = *rows;
	*rows = h;
	if (!tiled_kind(s, m)) {
		b->kmax = h;
		b->X = malloc(h * b->d * sizeof(double));
		b->Y = malloc(h * b->d * sizeof(double));
		if (!b->X || !b->Y) {
			rc = PSPACE_ENOMEM;
			goto fail;
		}
	}
	*out = b;
	return 0;
fail:
	insp_band_close(b);
	return rc;
}

/* Copies the part of stored tile (tr, tc) of block @p blk inside the band. */
static int tile_into(insp_band *b, uint32_t blk, uint32_t tr, uint32_t tc, uint64_t r0, uint64_t h,
                     double *out)
{
	uint64_t bo = b->boff[blk];
	int trans = b->symmetric && tc < tr;
	pspace_tile_ref ref;
	pspace_tile_header hd;
	uint64_t i0, i1, j0, j1;
	int rc;

	/* the stored tile: (tr, tc), or (tc, tr) transposed */
	rc = pspace_reader_tile(&ref, b->r, blk, trans ? tc : tr, trans ? tr : tc);
	if (rc == PSPACE_ENOTFOUND)
		return 0; /* never written: zeros */
	if (rc == 0)
		rc = pspace_tile_parse(&hd, ref.data, ref.len);
	if (rc == 0 && (hd.rows > b->t || hd.cols > b->t))
		rc = PSPACE_ECORRUPT;
	if (rc == 0)
		rc = pspace_reader_decode(b->r, b->codec, &ref, PSPACE_F64, b->tile, hd.cols);
	if (rc)
		return rc;
	/* global rows [i0, i1) and columns [j0, j1) of this (logical) tile in the band */
	i0 = bo + (uint64_t)tr * b->t;
	i1 = i0 + (trans ? hd.cols : hd.rows);
	j0 = bo + (uint64_t)tc * b->t;
	j1 = j0 + (trans ? hd.rows : hd.cols);
	for (uint64_t i = i0 > r0 ? i0 : r0; i < i1 && i < r0 + h; i++)
		for (uint64_t j = j0 > b->c0 ? j0 : b->c0; j < j1 && j < b->c0 + b->nc; j++) {
			uint64_t ti = i - i0, tj = j - j0;

			out[(i - r0) * b->nc + (j - b->c0)] =
			    trans ? b->tile[tj * hd.cols + ti] : b->tile[ti * hd.cols + tj];
		}
	return 0;
}

static int band_tiled(insp_band *b, uint64_t r0, uint64_t h, double *out)
{
	int rc = 0;

	for (uint32_t blk = 0; rc == 0 && blk < b->nblocks; blk++) {
		uint64_t bo = b->boff[blk], be = b->boff[blk + 1];
		uint64_t lr0, lr1, lc0, lc1;

		if (be <= r0 || bo >= r0 + h || be <= b->c0 || bo >= b->c0 + b->nc)
			continue;
		lr0 = (r0 > bo ? r0 : bo) - bo;
		lr1 = (r0 + h < be ? r0 + h : be) - bo;
		lc0 = (b->c0 > bo ? b->c0 : bo) - bo;
		lc1 = (b->c0 + b->nc < be ? b->c0 + b->nc : be) - bo;
		for (uint64_t tr = lr0 / b->t; rc == 0 && tr <= (lr1 - 1) / b->t; tr++)
			for (uint64_t tc = lc0 / b->t; rc == 0 && tc <= (lc1 - 1) / b->t; tc++)
				rc = tile_into(b, blk, (uint32_t)tr, (uint32_t)tc, r0, h, out);
	}
	return rc;
}

static int band_resident(insp_band *b, uint64_t r0, uint64_t h, double *out)
{
	int rc;

	memset(b->X, 0, h * b->d * sizeof(double));
	for (uint64_t j = 0; j < h; j++)
		b->X[j * b->d + r0 + j] = 1.0;
	/* M symmetric: row r0 + j of M is M e_(r0+j) */
	rc = pspace_mat_mm(b->m, &b->ex, (uint32_t)h, 1.0, b->X, b->d, 0.0, b->Y, b->d);
	if (rc)
		return rc;
	for (uint64_t j = 0; j < h; j++)
		memcpy(out + j * b->nc, b->Y + j * b->d + b->c0, b->nc * sizeof(double));
	return 0;
}

int insp_band_get(insp_band *b, uint64_t r0, uint64_t h, double *out)
{
	memset(out, 0, h * b->nc * sizeof(double));
	if (b->r)
		return band_tiled(b, r0, h, out);
	if (h > b->kmax)
		return PSPACE_EINVAL;
	return band_resident(b, r0, h, out);
}
