/*
 * Writing a LowRank stored as tiles of its rows (the format lowrank_stored.c
 * reads, README "Store format"): the catalog entry and the array of the row
 * count around the tiles, for the builder (build_lowrank.c) and for
 * pspace_lowrank_write(), which takes the rows from a tile function.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/lowrank.h"

int pspace_lowrank_store_begin(pspace_writer **w, pspace_store *s, const char *name,
                               const pspace_layout *layout, uint32_t tile,
                               const pspace_codec_opts *codec)
{
	pspace_matrix_desc desc;
	char *text = NULL;
	int rc;

	*w = NULL;
	rc = pspace_layout_text(&text, layout);
	if (rc != 0)
		return rc;
	memset(&desc, 0, sizeof(desc));
	desc.kind = PSPACE_KIND_LOWRANK;
	desc.d = pspace_layout_dim(layout);
	desc.nblocks = 1;
	desc.tile = tile;
	desc.codec = *codec;
	desc.layout_text = text;
	rc = pspace_writer_begin(w, s, name, &desc);
	free(text);
	return rc;
}

int pspace_lowrank_store_end(pspace_writer *w, uint64_t rows, int rc)
{
	double r = (double)rows;

	if (!w)
		return rc;
	if (rc == 0)
		rc = pspace_writer_put_array(w, PSPACE_LOWRANK_ROWS, PSPACE_F64, 1, (uint64_t[]){1},
		                             &r);
	if (rc != 0) {
		pspace_writer_abort(w, 1);
		return rc;
	}
	return pspace_writer_finish(w);
}

int pspace_lowrank_write(pspace_store *s, const char *name, const pspace_layout *layout,
                         uint64_t rows, pspace_tile_fn fn, void *ud, const pspace_write_opts *opts)
{
	pspace_write_opts o;
	pspace_writer *w = NULL;
	uint64_t d, nr, nc;
	double *T = NULL;
	uint32_t E;
	int rc;

	if (!s || !name || !layout || !fn)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_lowrank_write: store, name, layout or fn is NULL");
	d = pspace_layout_dim(layout);
	if (rows == 0 || rows > d)
		return pspace_err_set(
		    PSPACE_EINVAL,
		    "pspace_lowrank_write: matrix %s: %llu rows of %llu parameters "
		    "(stored LowRank needs 1..d rows)",
		    name, (unsigned long long)rows, (unsigned long long)d);
	if (opts)
		o = *opts;
	else
		pspace_write_opts_default(&o);
	E = o.tile ? o.tile : PSPACE_DEFAULT_TILE;
	nr = (rows + E - 1) / E;
	nc = (d + E - 1) / E;
	T = malloc((size_t)E * E * sizeof(*T));
	if (!T)
		return pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for a tile", name);
	rc = pspace_lowrank_store_begin(&w, s, name, layout, E, &o.codec);
	for (uint64_t i = 0; rc == 0 && i < nr; i++) {
		uint64_t r0 = i * E, tr = d - r0 < E ? d - r0 : E,
		         live = rows - r0 < tr ? rows - r0 : tr;

		for (uint64_t j = 0; rc == 0 && j < nc; j++) {
			uint64_t c0 = j * E;
			uint32_t cols = (uint32_t)(d - c0 < E ? d - c0 : E);

			/* the rows of the last tile row beyond D are zero */
			memset(T + live * cols, 0, (tr - live) * cols * sizeof(*T));
			rc = fn(ud, r0, c0, (uint32_t)live, cols, T);
			if (rc == 0)
				rc = pspace_writer_put_tile(w, 0, (uint32_t)i, (uint32_t)j,
				                            PSPACE_F64, T, cols);
		}
	}
	rc = pspace_lowrank_store_end(w, rows, rc);
	free(T);
	return pspace_err_prefix(rc, "matrix %s", name);
}
