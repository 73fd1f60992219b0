/*
 * pspace/factored.h - the factored and compact representations: Diag,
 * QuasiDiag, KFAC, EKFAC, LowRank and Mixed (README, Formulas): their constructors
 * and the calls specific to them (KFAC damping, the EKFAC diagonal update,
 * Mixed parts). They stay resident in RAM, are persisted with
 * pspace_mat_save() and reopened with pspace_mat_open(), and implement the
 * pspace_mat interface (mat.h), which also declares the operations making
 * new matrices (pspace_mat_pow, ...) and the exact eigendecompositions.
 *
 * Per-layer conventions. For layer L of a layout: "out" = shape[0], "in" =
 * weight_size / out (in * kh * kw for convolutions), "a" = in + 1 with a
 * bias, in without. All factor arrays are row-major doubles, copied by the
 * constructors (the caller keeps its own). Each constructor gives *out one
 * reference, the caller's (pspace_mat_free()); *out is NULL on failure.
 *
 * Threads: as every pspace_mat (pspace/mat.h): computations may run from
 * several threads at once (the caches of KFAC, EKFAC and LowRank are
 * guarded by a mutex of the matrix); pspace_kfac_set_damping() and the
 * pspace_ekfac_update_* sequence change the matrix and must not overlap
 * any other call on it.
 */
#ifndef PSPACE_FACTORED_H
#define PSPACE_FACTORED_H

#include "pspace/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Diag, QuasiDiag, LowRank -------------------------------------------- */

/** Diag: F = diag(diag[0..d)). */
PSPACE_API int pspace_diag_create(pspace_mat **out, const pspace_layout *layout,
                                  const double *diag);

/**
 * QuasiDiag (Ollivier 2015): the diagonal @p diag plus, for each layer L
 * with a bias, the cross terms cross[L][o * in + j] = F[(b_o), (W_oj)]
 * between bias o and weight (o, j). cross[L] is NULL (or cross itself NULL)
 * for layers without a bias; a NULL cross[L] for a layer with a bias means
 * zero cross terms.
 */
PSPACE_API int pspace_quasidiag_create(pspace_mat **out, const pspace_layout *layout,
                                       const double *diag, const double *const *cross);

/** LowRank: F = D^T D with D (rows x d) row-major, leading dimension ld. */
PSPACE_API int pspace_lowrank_create(pspace_mat **out, const pspace_layout *layout, uint64_t rows,
                                     const double *D, size_t ld);

/**
 * Writes a LowRank F = D^T D stored as tiles of its @p rows x d rows D
 * (rows <= d = the layout's dimension) under @p name, as `pspace build
 * --kind lowrank` stores one: @p fn fills the part of D at rows [r0, r0 +
 * nr), columns [c0, c0 + nc) (row-major, ld = nc), one tile at a time in
 * streaming order (memory: one tile), so D never has to exist in RAM.
 * pspace_mat_open() gives it back; its operations stream the tiles.
 * @param opts  tile edge and codec (NULL: the store's defaults).
 * @return 0, PSPACE_EINVAL (rows 0 or beyond d), PSPACE_EEXIST, fn's error,
 * or a store error; on failure nothing stays under @p name.
 */
PSPACE_API int pspace_lowrank_write(pspace_store *s, const char *name, const pspace_layout *layout,
                                    uint64_t rows, pspace_tile_fn fn, void *ud,
                                    const pspace_write_opts *opts);

/* ---- KFAC and EKFAC -------------------------------------------------------- */

/** Damping of KFAC's inverse, solve and powers (README, Formulas). Ids are stored. */
typedef enum pspace_kfac_damping {
	PSPACE_KFAC_DAMP_PI = 0,    /**< (A + pi sqrt(l) I) (x) (G + sqrt(l)/pi I) (default) */
	PSPACE_KFAC_DAMP_SQRT = 1,  /**< the same with pi = 1 */
	PSPACE_KFAC_DAMP_EXACT = 2, /**< (G (x) A + l I), through the factor eigenbases */
} pspace_kfac_damping;

/**
 * KFAC: per layer, the input factor A and the output-gradient factor G.
 * Linear / conv1d / conv2d: A is a x a, G is out x out, and the layer
 * block is G (x) A in the (o, j) order with the bias column last (j runs
 * over a); in the canonical parameter order (weights, then bias) the block
 * is permuted accordingly. Embedding (num x dim): A is diagonal, given as
 * its num entries (id counts / n), G is dim x dim, and the block is
 * A (x) G. Other layer kinds have no KFAC form: PSPACE_ENOTSUP naming the
 * layer (use Mixed).
 */
PSPACE_API int pspace_kfac_create(pspace_mat **out, const pspace_layout *layout,
                                  const double *const *A, const double *const *G);

/** Sets how KFAC (or EKFAC's factors) damp; stored with the matrix. */
PSPACE_API int pspace_kfac_set_damping(pspace_mat *m, pspace_kfac_damping mode);

/**
 * EKFAC from a KFAC: eigendecomposes each factor (LAPACK dsyevd) and sets
 * the diagonal in the Kronecker-factored eigenbasis to S = s_G s_A^T, so the
 * new matrix equals the KFAC one until its diagonal is updated. Runs with
 * the default execution settings (pspace_ekfac_from_kfac_ex with NULL).
 */
PSPACE_API int pspace_ekfac_from_kfac(pspace_mat **out, pspace_mat *kfac);

/**
 * pspace_ekfac_from_kfac() with execution settings: ex->threads factors are
 * eigendecomposed at once (NULL: defaults). The result does not depend on
 * the thread count. @return 0 or error; *out is the caller's (free with
 * pspace_mat_free).
 */
PSPACE_API int pspace_ekfac_from_kfac_ex(pspace_mat **out, pspace_mat *kfac, const pspace_exec *ex);

/**
 * Diagonal update (George et al. 2018), in passes over per-example
 * gradients: begin() zeroes an accumulator; add() takes @p rows exact
 * per-example (per-output) gradients, each a full parameter vector (rows x d,
 * leading dimension ld), and adds (U_G^T grad U_A)^2 per layer; end()
 * divides by @p n (the number of examples) and replaces S, marking the
 * matrix updated. add() may be called any number of times between them.
 */
PSPACE_API int pspace_ekfac_update_begin(pspace_mat *m);
PSPACE_API int pspace_ekfac_update_add(pspace_mat *m, const pspace_exec *ex, uint64_t rows,
                                       const double *grads, size_t ld);
PSPACE_API int pspace_ekfac_update_end(pspace_mat *m, uint64_t n);
/**
 * Faster equivalent of pspace_ekfac_update_add() for layer tensors: adds
 * what update_add would for the @p K per-output gradients of layer
 * @p layer (index in the layout) of one example, grad_k = sum_t g_{k,t}
 * a_t^T with a_t = [x_t; 1] (the 1 only when the layer has a bias), without
 * forming them: (U_G^T grad_k U_A)^2 = ((G_k U_G)^T (A U_A))^2, and for
 * T = 1 the rank one (q_k^2)(p^2)^T. @p acts: T x in (row t = x_t, no bias
 * column); @p grads: K x T x out (g_{k,t}). Linear, conv1d and conv2d
 * layers; PSPACE_ENOTSUP for an embedding (use update_add), PSPACE_EINVAL
 * for a layer index out of range, a matrix that is not EKFAC or no
 * update_begin(). Other layers' accumulators are untouched.
 */
PSPACE_API int pspace_ekfac_update_add_layer(pspace_mat *m, const pspace_exec *ex, size_t layer,
                                             uint32_t K, uint64_t T, const double *acts,
                                             const double *grads);
/**
 * pspace_ekfac_update_add_layer() for @p nx examples at once, in the
 * layout of pspace_layer_batch: acts (nx, T, in), grads (K, nx, T, out).
 * The transforms run as gemms over the batch (and for T = 1 the whole
 * batch adds as one gemm), so this is the form builders use.
 */
PSPACE_API int pspace_ekfac_update_add_layer_batch(pspace_mat *m, const pspace_exec *ex,
                                                   size_t layer, uint32_t K, uint64_t nx,
                                                   uint64_t T, const double *acts,
                                                   const double *grads);
/** @return 1 if the EKFAC diagonal was updated (persisted), 0 if not, or an error. */
PSPACE_API int pspace_ekfac_is_updated(const pspace_mat *m);

/* ---- Mixed ----------------------------------------------------------------- */

/**
 * Mixed: a representation per layer (block-diagonal across layers). parts[i]
 * is a matrix of layer i's size (its own layout: that one layer); the new
 * matrix takes references. Typical: EKFAC for linear/conv layers,
 * BlockDiag or Diag for the rest.
 * pspace_mat_save() saves each resident part as its own matrix
 * "<name>/<layer>" and records stored parts (Dense, BlockDiag, which must
 * live in the same store) by name; pspace_mat_open() reopens them all.
 */
PSPACE_API int pspace_mixed_create(pspace_mat **out, const pspace_layout *layout,
                                   pspace_mat *const *parts);

/**
 * @return part @p i of a Mixed matrix (borrowed: valid while @p m lives;
 * pspace_mat_ref() it to keep it longer), or NULL when @p m is not Mixed
 * or i is out of range.
 */
PSPACE_API pspace_mat *pspace_mixed_part(const pspace_mat *m, size_t i);

#ifdef __cplusplus
}
#endif
#endif
