/*
 * Internal: what the stored LowRank (lowrank_stored.c, rows as tiles) takes
 * from the resident one (lowrank.c, rows in memory).
 */
#ifndef PSPACE_SRC_MAT_LOWRANK_H
#define PSPACE_SRC_MAT_LOWRANK_H

#include "mat/mat_impl.h"

/** The array of a LowRank stored as tiles that holds its row count (f64, one value). */
#define PSPACE_LOWRANK_ROWS "rows"

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

/**
 * Begins a LowRank stored as tiles of its @p rows x d rows (d = the
 * layout's dimension, rows <= d): one block of d, not symmetric, tile edge
 * @p tile, @p codec. Tile row i holds rows [i E, i E + E); rows of the
 * last tile row beyond @p rows must be zero. Then put the tiles and end
 * with pspace_lowrank_store_end(). @return 0 or pspace_writer_begin's error.
 */
int pspace_lowrank_store_begin(pspace_writer **w, pspace_store *s, const char *name,
                               const pspace_layout *layout, uint32_t tile,
                               const pspace_codec_opts *codec);

/**
 * Ends what pspace_lowrank_store_begin() began: records @p rows and
 * finishes @p w when @p rc is 0, else removes the partial matrix. @p w may
 * be NULL. @return the first error, or 0.
 */
int pspace_lowrank_store_end(pspace_writer *w, uint64_t rows, int rc);

#endif
