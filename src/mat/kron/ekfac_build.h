/*
 * Internal: what the builders need of the Kronecker kinds beyond the
 * public calls of pspace/factored.h (src/build includes this header, never
 * ekfac_impl.h or kfac_impl.h). Defined in ekfac_update.c and kfac.c.
 */
#ifndef PSPACE_SRC_MAT_KRON_EKFAC_BUILD_H
#define PSPACE_SRC_MAT_KRON_EKFAC_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/factored.h"

/**
 * pspace_ekfac_update_add() for layer @p layer alone (index in @p m's
 * layout): @p grads points at the layer's first parameter of row 0, row j
 * at grads + j * ld (ld >= the layer's size). Any layer kind (the builders
 * use it for embeddings). Same errors as pspace_ekfac_update_add(), and
 * PSPACE_EINVAL for a layer index out of range.
 */
int pspace_ekfac_update_add_rows_layer(pspace_mat *m, const pspace_exec *ex, size_t layer,
                                       uint64_t rows, const double *grads, size_t ld);

/**
 * pspace_kfac_create() taking the factor arrays (malloc'd) instead of
 * copying them, with the same checks (finite; symmetric to 1e-8, then
 * symmetrized): each A[l], G[l] taken is set to NULL and, on failure,
 * freed; the caller frees those still non-NULL.
 */
int pspace_kfac_adopt(pspace_mat **out, const pspace_layout *layout, double **A, double **G);

#endif
