/*
 * Writing stored (tiled) matrices: one tile at a time from a tile
 * function, in streaming order (block, tile row, tile column), so the
 * matrix never has to exist in RAM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/stored.h"

/* Block dimensions of @p kind over @p layout: Dense one block of d, BlockDiag the layers. */
static int block_dims(pspace_kind kind, const pspace_layout *layout, uint32_t *nblocks,
                      uint64_t **dims)
{
	size_t n = kind == PSPACE_KIND_DENSE ? 1 : pspace_layout_nlayers(layout);

	*nblocks = 0;
	*dims = malloc(n * sizeof(**dims));
	if (!*dims)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	if (kind == PSPACE_KIND_DENSE)
		(*dims)[0] = pspace_layout_dim(layout);
	else
		for (size_t i = 0; i < n; i++)
			(*dims)[i] = pspace_layout_layer(layout, i)->size;
	*nblocks = (uint32_t)n;
	return 0;
}

static int call_fn(pspace_tile_fn fn, void *ud, uint64_t r0, uint64_t c0, uint32_t rows,
                   uint32_t cols, double *tile)
{
	int rc = fn(ud, r0, c0, rows, cols, tile);

	if (rc > 0 || (rc < 0 && rc < PSPACE_EBLIS))
		rc = pspace_err_set(PSPACE_EINVAL, "tile function returned %d", rc);
	return rc;
}

int pspace_stored_write(pspace_store *s, const char *name, pspace_kind kind,
                        const pspace_layout *layout, int symmetric, pspace_tile_fn fn, void *ud,
                        const pspace_write_opts *opts,
                        void (*progress)(void *ud, uint64_t done, uint64_t total))
{
	pspace_write_opts o;
	pspace_matrix_desc desc;
	pspace_matrix_info info;
	pspace_writer *w = NULL;
	uint64_t *dims = NULL, off = 0, total = 0, done = 0;
	uint32_t nblocks = 0, T;
	double *tile = NULL;
	char *text = NULL;
	int rc;

	if (!s || !name || !layout || !fn)
		return pspace_err_set(PSPACE_EINVAL,
		                      "writing a matrix: store, name, layout or tile "
		                      "function is NULL");
	if (kind != PSPACE_KIND_DENSE && kind != PSPACE_KIND_BLOCKDIAG)
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: kind %s is not a tiled kind", name,
		                      pspace_kind_name(kind));
	if (pspace_layout_dim(layout) == 0)
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: empty layout", name);
	if (opts)
		o = *opts;
	else
		pspace_write_opts_default(&o);
	rc = block_dims(kind, layout, &nblocks, &dims);
	if (rc != 0)
		return rc;
	rc = pspace_layout_text(&text, layout);
	if (rc != 0)
		goto out;
	memset(&desc, 0, sizeof(desc));
	desc.kind = kind;
	desc.d = pspace_layout_dim(layout);
	desc.nblocks = nblocks;
	desc.block_dims = dims;
	desc.tile = o.tile;
	desc.symmetric = symmetric;
	desc.codec = o.codec;
	desc.layout_text = text;
	rc = pspace_writer_begin(&w, s, name, &desc);
	if (rc == 0)
		rc = pspace_matrix_info_get(&info, s, name);
	if (rc != 0)
		goto out;
	T = info.tile;
	tile = malloc((size_t)T * T * sizeof(*tile));
	if (!tile) {
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory", name);
		goto out;
	}
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t nt = (dims[b] + T - 1) / T;

		total += symmetric ? nt * (nt + 1) / 2 : nt * nt;
	}
	for (uint32_t b = 0; b < nblocks; off += dims[b], b++) {
		uint32_t nt = (uint32_t)((dims[b] + T - 1) / T);

		for (uint32_t tr = 0; tr < nt; tr++) {
			uint64_t r = (uint64_t)tr * T;
			uint32_t rows = (uint32_t)(dims[b] - r < T ? dims[b] - r : T);

			for (uint32_t tc = symmetric ? tr : 0; tc < nt; tc++) {
				uint64_t c = (uint64_t)tc * T;
				uint32_t cols = (uint32_t)(dims[b] - c < T ? dims[b] - c : T);

				rc = call_fn(fn, ud, off + r, off + c, rows, cols, tile);
				if (rc == 0)
					rc = pspace_writer_put_tile(w, b, tr, tc, PSPACE_F64, tile,
					                            cols);
				if (rc != 0) {
					rc = pspace_err_prefix(rc, "matrix %s: tile (%u,%u,%u)",
					                       name, b, tr, tc);
					goto out;
				}
				if (progress)
					progress(ud, ++done, total);
			}
		}
	}
	rc = pspace_writer_finish(w);
	w = NULL;
out:
	if (w) {
		char msg[512];

		/* keep the detail of the failure, not of the clean-up */
		snprintf(msg, sizeof(msg), "%s", pspace_errdetail());
		pspace_writer_abort(w, 1);
		pspace_err_set(rc, "%s", msg);
	}
	free(tile);
	free(text);
	free(dims);
	return rc;
}

int pspace_tiled_write(pspace_store *s, const char *name, pspace_kind kind,
                       const pspace_layout *layout, pspace_tile_fn fn, void *ud,
                       const pspace_write_opts *opts,
                       void (*progress)(void *ud, uint64_t done, uint64_t total))
{
	return pspace_stored_write(s, name, kind, layout, 1, fn, ud, opts, progress);
}
