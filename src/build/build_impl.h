/*
 * Internal: what the builders share. Every builder but KFAC reads
 * per-example (per-output) gradient rows through one interface, the row
 * source, whether they come from Jacobian .npy files or are computed from
 * layer tensors; and builds either a whole matrix or one layer's part of a
 * Mixed (a "slice": the columns [coff, coff + dim(sub)) of the rows, with
 * the sub-layout of that part).
 */
#ifndef PSPACE_SRC_BUILD_BUILD_IMPL_H
#define PSPACE_SRC_BUILD_BUILD_IMPL_H

#include "pspace/build.h"
#include "pspace/source.h"

#include "common/error.h"

/**
 * Per-example gradient rows, K per example: read() fills rows
 * out[(k * nx + x) * ld + p] for examples [x0, x0 + nx) and at least the
 * columns [c0, c1) (other columns may be left untouched).
 */
typedef struct pspace_rows {
	uint64_t n;
	uint32_t K;
	uint64_t d;
	/** Extra working bytes read() needs per example of a batch (adapters). */
	uint64_t extra_per_example;
	int (*read)(void *ud, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1, double *out,
	            size_t ld);
	void *ud;
	/**
	 * Optional (layer-tensor sources): adds, for examples [x0, x0 + nx) and
	 * the columns [c0, c0 + dim of their layers), sum_k g^2 of the
	 * per-example gradients to diag[] and, where cross[i] is not NULL,
	 * sum_k g_b[o] g_W[o, j] to cross[i] (layer i of those columns), straight
	 * from the tensors without forming the rows. NULL: Diag and QuasiDiag
	 * read rows.
	 */
	int (*qd_add)(void *ud, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1, double *diag,
	              double **cross, int threads);
	uint64_t reads; /**< read() calls so far (statistics) */
} pspace_rows;

/** What a builder writes: a matrix @p name over the columns of @p sub starting at @p coff. */
typedef struct pspace_build_target {
	pspace_store *s;
	const char *name;
	const pspace_layout *sub; /**< layout of the matrix (the whole one, or one layer) */
	uint64_t coff;            /**< first column of the rows that belongs to it */
} pspace_build_target;

/** The options with the execution settings resolved (threads >= 1, budget > 0). */
void pspace_build_opts_resolve(const pspace_build_opts *in, pspace_build_opts *out);

/** Calls the progress callback, if any. */
void pspace_build_progress(const pspace_build_opts *o, const char *stage, uint64_t done,
                           uint64_t total);

/** Reads a batch, turning a positive or unknown code into PSPACE_EINVAL, with context. */
int pspace_rows_read(pspace_rows *r, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1,
                     double *out);

/**
 * Examples per batch: o->batch, or (auto) what fits @p avail bytes at
 * K d doubles (plus the adapter's extra and the caller's own @p also bytes)
 * per example; at least 1, at most n.
 * *X: a new buffer for the K nx rows of a batch (the caller frees it).
 * @return 0 or PSPACE_ENOMEM (naming matrix @p what) when one example or
 * the buffer does not fit.
 */
int pspace_rows_batch(const pspace_rows *r, const pspace_build_opts *o, uint64_t avail,
                      uint64_t also, const char *what, uint64_t *nx, double **X);

/**
 * Largest magnitude a value read from a build input may have: 2^511, so that
 * its square, and a sum of 2^511 such squares, is a finite double.
 */
#define PSPACE_INPUT_MAX 0x1p511

/**
 * The first of @p n input values that is NaN, infinite or beyond
 * PSPACE_INPUT_MAX in magnitude: @return its index, or @p n if every value
 * is fine. One vectorizable pass over blocks of values.
 */
size_t pspace_values_bad(const double *v, size_t n);

/**
 * The error for a bad input value @p v (see pspace_values_bad): "<where>
 * is nan (inputs must be finite)" or "is 1e+200, beyond 2^511 (its square
 * overflows)", with <where> from @p fmt. @return PSPACE_ENUMERIC.
 */
int pspace_value_err(double v, const char *fmt, ...) PSPACE_PRINTF(2, 3);

/**
 * @return 1 if @p src is a source made by pspace_jac_source_npy() (which
 * checks its values itself, naming the file), else 0.
 */
int pspace_jac_source_is_npy(const pspace_jac_source *src);

/** @return 1 if @p src was made by pspace_layer_source_dirs() (which checks its values), else 0. */
int pspace_layer_source_is_dirs(const pspace_layer_source *src);

/* ---- writing tiles with the encoding on workers (tile_pipe.c) --------------------------- */

typedef struct pspace_tile_addr {
	uint32_t block, row, col;
} pspace_tile_addr;

/**
 * Fills tile @p i of the list into @p out (row-major, ld = its columns) and
 * sets *cols to its number of columns. The tile is f64 unless the function
 * sets *type to PSPACE_F32 and writes floats into @p out (room for edge^2
 * doubles), which spares the encoder a conversion. Called from several
 * worker threads at once, each with its own @p out and its own @p scratch
 * (the bytes pspace_write_tiles() was asked for; NULL if none).
 * @return 0, or an error with the detail set in the calling thread.
 */
typedef int (*pspace_tile_fill_fn)(void *ud, size_t i, double *out, uint32_t *cols,
                                   pspace_dtype *type, void *scratch);

/**
 * Stores the @p n tiles @p tiles with @p w in list order, each filled by
 * @p fill and encoded on one of @p threads worker threads into one of
 * @p slots buffers (8 edge^2 bytes and a codec each; at least 1; more
 * workers than slots are not started), while the calling thread (the
 * writer's) stores the encoded tiles in order. Each worker has @p scratch
 * bytes of its own for the fill function.
 * @return 0 or the first error (tiles before it are stored).
 */
int pspace_write_tiles(pspace_writer *w, const pspace_tile_addr *tiles, size_t n, uint32_t edge,
                       int threads, size_t slots, size_t scratch, pspace_tile_fill_fn fill,
                       void *ud);

/* ---- builders over rows (build_dense.c, build_factored.c) ------------------------------- */

/**
 * Dense (one block) or BlockDiag (one block per layer of t->sub), in RAM or
 * out of core in bands of tile rows, each tile written once; resumable.
 */
int pspace_build_tiled(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                       const pspace_build_opts *o);

/**
 * LowRank stored as tiles of its rows under t->name, in one pass over the
 * rows (build_lowrank.c); with more rows than parameters a tileless entry.
 */
int pspace_build_lowrank(const pspace_build_target *t, pspace_rows *r, const pspace_build_opts *o);

/** Diag, QuasiDiag or LowRank as a resident matrix (*out), not saved. */
int pspace_build_factored(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                          const pspace_build_opts *o, pspace_mat **out);

/** The EKFAC diagonal update of @p m from the rows (columns from t->coff), one pass. */
int pspace_build_ekfac_update(const pspace_build_target *t, pspace_mat *m, pspace_rows *r,
                              const pspace_build_opts *o);

/** Saves @p m under t->name replacing the stored matrix of that name (see build_factored.c). */
int pspace_build_replace(pspace_store *s, const char *name, pspace_mat *m);

/* ---- layer tensors (build_layers.c) ---------------------------------------------------- */

/**
 * @return 1 if layer @p L has layer tensors (linear, conv, an embedding
 * without bias), 0 if a layer-tensor source gives its Jacobian rows.
 */
int pspace_layer_has_tensors(const pspace_layer *L);

/**
 * A row source computing per-example gradients from layer tensors, and
 * copying the rows the source gives for layers without (free with _close).
 */
int pspace_rows_from_layers(pspace_rows *out, const pspace_layout *layout,
                            const pspace_layer_source *src);
void pspace_rows_from_layers_close(pspace_rows *r);

/**
 * The EKFAC diagonal update of @p m straight from layer tensors, one pass:
 * m's layer j is layer l0 + j of @p layout (the source's layout), for the
 * layers of t->sub. Linear/conv layers go through
 * pspace_ekfac_update_add_layer_batch, embeddings as gradient rows.
 */
int pspace_build_ekfac_update_layers(const pspace_build_target *t, pspace_mat *m,
                                     const pspace_layout *layout, size_t l0,
                                     const pspace_layer_source *src, const pspace_build_opts *o);

/* ---- Mixed (mixed_spec.c) ------------------------------------------------------------ */

/**
 * Parses a Mixed specification "sel,sel=kind;...;*=kind" into one kind per
 * layer of @p layout (kinds[nlayers]). A selector is a layer name, a layer
 * kind name or '*'; a layer name beats a kind, a kind beats '*'.
 * @return 0 or PSPACE_EINVAL naming the clause or the layer left without a kind.
 */
int pspace_mixed_spec_parse(const char *spec, const pspace_layout *layout, pspace_kind *kinds);

/**
 * Builds a Mixed matrix: each layer's part with its kind, saved as
 * "<name>/<layer>", then the Mixed itself. @p rows: the rows (always);
 * @p layers: the layer tensors, or NULL (KFAC/EKFAC parts then ENOTSUP,
 * as for a layer without layer tensors).
 */
int pspace_build_mixed(pspace_store *s, const char *name, const pspace_layout *layout,
                       pspace_rows *rows, const pspace_layer_source *layers,
                       const pspace_build_opts *o);

/** KFAC factors for the layers i with want[i] (from layer tensors), one pass. */
int pspace_build_kfac_factors(const pspace_layout *layout, const pspace_layer_source *src,
                              const unsigned char *want, const pspace_build_opts *o, double **A,
                              double **G);

#endif
