/*
 * Dense: the whole d x d matrix as one block of tiles in the store,
 * symmetric (upper-triangle tiles only) unless it is a stored product.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/error.h"
#include "mat/stored.h"

static const pspace_mat_vtable dense_vt = {
    .kind = PSPACE_KIND_DENSE,
    .destroy = pspace_stored_destroy,
    .tiled = pspace_stored_tiled,
    .single_block = 1,
    .mm = pspace_stored_mm,
    .trace = pspace_stored_trace,
    .diag = pspace_stored_diag,
    .frob2 = pspace_stored_frob2,
    .dense = pspace_stored_dense,
    .solve = pspace_stored_solve,
    .logdet = pspace_stored_logdet,
    .diaginv = pspace_stored_diaginv,
    .sqrt_mm = pspace_stored_sqrt_mm,
    .product_write = pspace_dense_product_write,
};

int pspace_dense_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	return pspace_stored_open(out, s, info, &dense_vt);
}

/* Tiles of a row-major array whose upper triangle holds the matrix. */
typedef struct upper_src {
	const double *F;
	size_t ld;
} upper_src;

static int upper_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                      double *tile)
{
	const upper_src *u = ud;

	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++) {
			uint64_t r = r0 + i, c = c0 + j;

			tile[(size_t)i * cols + j] =
			    r <= c ? u->F[r * u->ld + c] : u->F[c * u->ld + r];
		}
	return 0;
}

int pspace_dense_write(pspace_store *s, const char *name, const pspace_layout *layout, uint64_t d,
                       const double *F, size_t ld, const pspace_write_opts *opts)
{
	pspace_layout *flat = NULL;
	upper_src u = {F, ld};
	int rc;

	if (!F || d == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_dense_write: no data or d = 0");
	if (ld < d)
		return pspace_err_set(PSPACE_EINVAL, "pspace_dense_write: ld %zu < d %llu", ld,
		                      (unsigned long long)d);
	if (layout && pspace_layout_dim(layout) != d)
		return pspace_err_set(
		    PSPACE_EDIM, "pspace_dense_write: layout has %llu parameters, d = %llu",
		    (unsigned long long)pspace_layout_dim(layout), (unsigned long long)d);
	if (!layout) {
		rc = pspace_layout_flat(&flat, d);
		if (rc != 0)
			return rc;
		layout = flat;
	}
	rc = pspace_stored_write(s, name, PSPACE_KIND_DENSE, layout, 1, upper_tile, &u, opts, NULL);
	pspace_layout_free(flat);
	return rc;
}
