/*
 * BlockDiag: one dense block per layer, each stored as tiles (upper
 * triangle only unless it is a stored product); entries across layers are 0.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/error.h"
#include "mat/stored.h"

static const pspace_mat_vtable blockdiag_vt = {
    .kind = PSPACE_KIND_BLOCKDIAG,
    .destroy = pspace_stored_destroy,
    .tiled = pspace_stored_tiled,
    .mm = pspace_stored_mm,
    .trace = pspace_stored_trace,
    .diag = pspace_stored_diag,
    .frob2 = pspace_stored_frob2,
    .dense = pspace_stored_dense,
    .solve = pspace_stored_solve,
    .logdet = pspace_stored_logdet,
    .diaginv = pspace_stored_diaginv,
    .sqrt_mm = pspace_stored_sqrt_mm,
    .product_write = pspace_blockdiag_product_write,
};

int pspace_blockdiag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	return pspace_stored_open(out, s, info, &blockdiag_vt);
}

/* Tiles of per-layer row-major blocks whose upper triangles hold the matrix. */
typedef struct blocks_src {
	const pspace_layout *layout;
	const double *const *blocks;
} blocks_src;

static int blocks_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                       double *tile)
{
	const blocks_src *b = ud;
	size_t li = pspace_layout_layer_of(b->layout, r0);
	const pspace_layer *l = pspace_layout_layer(b->layout, li);
	const double *F = b->blocks[li];
	uint64_t n = l->size;

	r0 -= l->offset;
	c0 -= l->offset;
	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++) {
			uint64_t r = r0 + i, c = c0 + j;

			tile[(size_t)i * cols + j] = r <= c ? F[r * n + c] : F[c * n + r];
		}
	return 0;
}

int pspace_blockdiag_write(pspace_store *s, const char *name, const pspace_layout *layout,
                           const double *const *blocks, const pspace_write_opts *opts)
{
	blocks_src src = {layout, blocks};

	if (!layout || !blocks)
		return pspace_err_set(PSPACE_EINVAL, "pspace_blockdiag_write: no layout or blocks");
	for (size_t i = 0; i < pspace_layout_nlayers(layout); i++)
		if (!blocks[i])
			return pspace_err_set(
			    PSPACE_EINVAL, "pspace_blockdiag_write: block %zu (layer %s) is NULL",
			    i, pspace_layout_layer(layout, i)->name);
	return pspace_stored_write(s, name, PSPACE_KIND_BLOCKDIAG, layout, 1, blocks_tile, &src,
	                           opts, NULL);
}
