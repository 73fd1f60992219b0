/*
 * Internal: what the stored LowRank (lowrank_stored.c, rows as tiles) takes
 * from the resident one (lowrank.c, rows in memory).
 */
#ifndef PSPACE_SRC_MAT_LOWRANK_H
#define PSPACE_SRC_MAT_LOWRANK_H

#include "mat/mat_impl.h"

/**
 * A resident LowRank of @p r rows over @p layout that takes ownership of
 * @p D (r x d, row-major, ld = d; freed on failure). @return 0 or
 * PSPACE_ENOMEM.
 */
int pspace_lowrank_adopt(pspace_mat **out, const pspace_layout *layout, uint64_t r, double *D);

/**
 * Opens a tileless LowRank entry (the layout and the f64 array "D", as
 * pspace_mat_save writes it) as a resident LowRank. @return 0,
 * PSPACE_ENOTSUP (another kind), PSPACE_ECORRUPT or a store error.
 */
int pspace_lowrank_open_arrays(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);

/**
 * Orthonormal rows spanning what the @p n orthonormal rows of @p Vt
 * (length d, ld @p ldv) leave out, written to rows n..k-1 of @p evecs
 * (ld @p ld). @return 0, PSPACE_ENOMEM or PSPACE_ENUMERIC.
 */
int pspace_lowrank_null_vectors(const double *Vt, size_t ldv, uint64_t n, uint64_t d, uint32_t k,
                                double *evecs, size_t ld);

#endif
