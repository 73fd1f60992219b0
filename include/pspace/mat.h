/*
 * pspace/mat.h - parameter-space matrices in every representation, behind
 * one interface.
 *
 * A pspace_mat is a d x d symmetric positive semi-definite matrix in some
 * representation (pspace_kind). Stored kinds (Dense, BlockDiag) stream
 * their tiles from a store on every operation and never need to fit in
 * RAM; factored kinds stay resident. Every operation is available on every
 * kind where it makes sense; others return PSPACE_ENOTSUP. Lazy
 * expressions over matrices are in pspace/op.h.
 *
 * Vectors are double arrays of length d; a batch of k vectors is a (k, d)
 * row-major array with leading dimension ld >= d (pspace/vec.h).
 * Matrices are reference counted: pspace_mat_ref() takes a reference,
 * pspace_mat_free() drops the caller's, and the matrix goes with the last
 * one (operators and Mixed matrices built on it hold their own).
 *
 * Threads: the computations (mm, mv, vTMv, trace, diag, Frobenius, dense,
 * solve, eig, the calls making new matrices, save) on one pspace_mat may
 * run from several threads at once. Stored kinds keep no state beyond
 * their store (itself shared safely) and stream through readers of their
 * own per call; resident kinds guard their caches (KFAC's factorizations,
 * EKFAC's inverse, LowRank's damped factor) with a mutex of the matrix.
 * An Implicit matrix is as thread-safe as its callbacks. Calls that
 * change a matrix (pspace_kfac_set_damping, the pspace_ekfac_update_*
 * sequence) must not overlap any other call on it. Reference counts are
 * not atomic: pspace_mat_ref(), pspace_mat_free() and the constructors
 * that take a reference (pspace_op_mat, pspace_mixed_create) must not run
 * concurrently on the same matrix.
 */
#ifndef PSPACE_MAT_H
#define PSPACE_MAT_H

#include "pspace/common.h"
#include "pspace/layout.h"
#include "pspace/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pspace_mat pspace_mat;

/* ---- opening, creating, writing ---------------------------------------- */

/**
 * Opens stored matrix @p name of any kind: *out holds one reference, the
 * caller's (pspace_mat_free()). The matrix uses @p s without owning it:
 * close the store only after freeing the matrix.
 * @return 0, PSPACE_ENOTFOUND, PSPACE_EINCOMPLETE, PSPACE_ENOTSUP (kind not
 * supported by this version), PSPACE_ECORRUPT.
 */
PSPACE_API int pspace_mat_open(pspace_mat **out, pspace_store *s, const char *name);

/** Options for writing a stored (tiled) matrix. NULL = defaults. */
typedef struct pspace_write_opts {
	pspace_codec_opts codec; /**< tile encoding (pspace_codec_opts_default) */
	uint32_t tile;           /**< tile edge; 0 = store default */
} pspace_write_opts;

/** Fills @p o with the defaults. */
PSPACE_API void pspace_write_opts_default(pspace_write_opts *o);

/**
 * Writes a Dense matrix from an in-memory d x d array @p F (row-major,
 * leading dimension @p ld; only the upper triangle is read) under @p name.
 * @param layout  optional (NULL: a flat layout of d parameters).
 */
PSPACE_API int pspace_dense_write(pspace_store *s, const char *name, const pspace_layout *layout,
                                  uint64_t d, const double *F, size_t ld,
                                  const pspace_write_opts *opts);

/**
 * Writes a BlockDiag matrix: one dense block per layer of @p layout;
 * blocks[i] is layer i's size x size row-major block (upper triangle read).
 */
PSPACE_API int pspace_blockdiag_write(pspace_store *s, const char *name,
                                      const pspace_layout *layout, const double *const *blocks,
                                      const pspace_write_opts *opts);

/**
 * Produces the tiles of a Dense or BlockDiag matrix on demand: fills the
 * rows x cols tile at global rows [r0, r0+rows), columns [c0, c0+cols)
 * (row-major, ld = cols). Lets callers write matrices that never exist in RAM.
 */
typedef int (*pspace_tile_fn)(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                              double *tile);

/**
 * Writes a Dense (@p kind PSPACE_KIND_DENSE) or BlockDiag matrix whose
 * tiles come from @p fn, one tile at a time (memory: one tile). Shows no
 * progress itself; @p progress, if not NULL, is called after each tile with
 * (done, total).
 */
PSPACE_API int pspace_tiled_write(pspace_store *s, const char *name, pspace_kind kind,
                                  const pspace_layout *layout, pspace_tile_fn fn, void *ud,
                                  const pspace_write_opts *opts,
                                  void (*progress)(void *ud, uint64_t done, uint64_t total));

/**
 * Persists resident matrix @p m (Identity; the factored kinds) in @p s
 * under @p name, so pspace_mat_open() gives it back.
 * @return 0, PSPACE_EEXIST, PSPACE_ENOTSUP (Implicit; stored kinds, which
 * already live in a store), or a store error.
 */
PSPACE_API int pspace_mat_save(pspace_mat *m, pspace_store *s, const char *name);

/** Creates s * I of dimension d (resident); *out holds the caller's reference. */
PSPACE_API int pspace_identity_create(pspace_mat **out, uint64_t d, double s);

/** User callback computing y = F x for an Implicit matrix. */
typedef int (*pspace_implicit_mv)(void *ud, const double *x, double *y);
/** Optional user callback computing x^T F x. */
typedef int (*pspace_implicit_vtmv)(void *ud, const double *x, double *out);

/**
 * Creates an Implicit matrix from callbacks (never stored). Only mv-based
 * operations work (mv, mm, vTMv, CG solve, Lanczos, Hutchinson trace).
 * @param vtmv  optional; NULL computes x . (F x).
 */
PSPACE_API int pspace_implicit_create(pspace_mat **out, uint64_t d, pspace_implicit_mv mv,
                                      pspace_implicit_vtmv vtmv, void *ud);

/** Takes a reference for the caller; @return @p m (NULL for NULL). */
PSPACE_API pspace_mat *pspace_mat_ref(pspace_mat *m);
/**
 * Releases the caller's handle: drops its reference, and the matrix goes
 * with the last one. NULL is accepted.
 */
PSPACE_API void pspace_mat_free(pspace_mat *m);

/* ---- properties ---------------------------------------------------------- */

/** @return the representation kind of @p m. */
PSPACE_API pspace_kind pspace_mat_kind(const pspace_mat *m);
/** @return the dimension d of @p m. */
PSPACE_API uint64_t pspace_mat_dim(const pspace_mat *m);
/**
 * @return the layout (borrowed, valid while @p m lives; never NULL: a flat
 * one when none was given).
 */
PSPACE_API const pspace_layout *pspace_mat_layout(const pspace_mat *m);
/**
 * @return the stored name (borrowed, valid while @p m lives), or NULL for
 * matrices opened from no store.
 */
PSPACE_API const char *pspace_mat_name(const pspace_mat *m);

/* ---- operations ---------------------------------------------------------- */

/**
 * Y = alpha M X + beta Y for k right-hand sides in one pass over the data:
 * BLAS gemm's contract, as pspace_op_mm(). X and Y are (k, d) row-major
 * with leading dimensions ldx, ldy >= d and must not overlap. With
 * beta == 0, Y is not read (NaN or garbage in Y is ignored); beta == 1
 * accumulates; with alpha == 0, M and X are not applied.
 * @return 0, PSPACE_EINVAL (NULL argument, ldx or ldy < d), or the
 * kind's error (a stored matrix: store and codec errors naming the tile).
 */
PSPACE_API int pspace_mat_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha,
                             const double *X, size_t ldx, double beta, double *Y, size_t ldy);
/** y = M x (y is overwritten, not read). */
PSPACE_API int pspace_mat_mv(pspace_mat *m, const pspace_exec *ex, const double *x, double *y);
/** *out = v^T M v. */
PSPACE_API int pspace_mat_vtmv(pspace_mat *m, const pspace_exec *ex, const double *v, double *out);
/** out[j] = V_j^T M V_j for the k vectors of V, in one pass. */
PSPACE_API int pspace_mat_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k,
                                     const double *V, size_t ldv, double *out);
/** *out = trace(M). */
PSPACE_API int pspace_mat_trace(pspace_mat *m, const pspace_exec *ex, double *out);
/** out[0..d) = diag(M) (overwritten). */
PSPACE_API int pspace_mat_diag(pspace_mat *m, const pspace_exec *ex, double *out);
/** *out = ||M||_F. */
PSPACE_API int pspace_mat_frobenius(pspace_mat *m, const pspace_exec *ex, double *out);
/**
 * Writes M as a dense d x d row-major array (leading dimension ld): out is
 * overwritten; the caller provides the memory.
 */
PSPACE_API int pspace_mat_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld);
/**
 * Direct damped solve X = (M + damping I)^{-1} B, k right-hand sides
 * (X is overwritten).
 * Stored kinds: Cholesky (LDL^T when not positive definite) of each block
 * that fits ex->mem_budget, else PSPACE_ENOMEM (use CG: pspace_op_solve).
 * @return PSPACE_ENOTSUP for kinds with no direct solve (Implicit).
 */
PSPACE_API int pspace_mat_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                                const double *B, size_t ldb, double *X, size_t ldx);

/* ---- log-determinants, the inverse's diagonal, Gaussian samples ----------- */

/*
 * These are exact, never estimated: each kind that has a closed form or a
 * factorization in memory implements them; the others return
 * PSPACE_ENOTSUP (Implicit; a stored product, which is not symmetric), and
 * Dense and BlockDiag return PSPACE_ENOMEM when a block's Cholesky factor
 * (n^2 doubles) does not fit ex->mem_budget. pspace_op_logdet(),
 * pspace_op_diaginv() and pspace_op_sample() (pspace/op.h) take any
 * expression and estimate where no exact form exists.
 *
 * Per kind: Identity and Diag entrywise; QuasiDiag per neuron through the
 * Schur complement of its arrowhead block; KFAC and EKFAC through their
 * eigenbases and damped eigenvalues, damped as pspace_kfac_set_damping()
 * says (exact damping: the eigenvalues plus damping; pi / sqrt: the
 * products of the damped factors' eigenvalues); LowRank through the
 * r x r matrix damping I + D D^T (determinant lemma, Woodbury) and the thin
 * SVD of D; Dense and BlockDiag through the Cholesky factor of each block
 * plus damping, computed in memory; Mixed part by part.
 * M + damping I must be positive definite, else PSPACE_ENUMERIC (the
 * detail names the layer or block and suggests damping).
 */

/** *out = log det(M + damping I). */
PSPACE_API int pspace_mat_logdet(double *out, pspace_mat *m, const pspace_exec *ex, double damping);
/** out[0..d) = diag((M + damping I)^-1) (overwritten). */
PSPACE_API int pspace_mat_diaginv(double *out, pspace_mat *m, const pspace_exec *ex,
                                  double damping);

/** Options of pspace_mat_sample() and pspace_op_sample(); NULL means the defaults. */
typedef struct pspace_sample_opts {
	uint64_t seed; /**< draw j comes from pspace_vec_randn with a seed mixed from
	                    seed and j; default (NULL options) 1 */
	int cov;       /**< 0 (default): N(0, (M + damping I)^-1), the Laplace
	                    posterior of a precision M; 1: N(0, M + damping I) */
} pspace_sample_opts;

/**
 * X = S Z for the k vectors Z_j (rows of Z, leading dimension ldz), where
 * S S^T = (M + damping I)^-1 (@p cov 0) or M + damping I (@p cov 1): what
 * turns standard normal vectors into samples. X (k, d), leading dimension
 * ldx, is overwritten and must not overlap Z.
 */
PSPACE_API int pspace_mat_sqrt_mm(double *X, size_t ldx, pspace_mat *m, const pspace_exec *ex,
                                  double damping, int cov, uint32_t k, const double *Z, size_t ldz);

/**
 * @p n exact draws from N(0, (M + damping I)^-1) (opts->cov: N(0, M +
 * damping I)) as the rows of X (n, d), leading dimension ldx, overwritten.
 * The draws do not depend on ex (threads, budget): the same seed gives
 * the same rows.
 */
PSPACE_API int pspace_mat_sample(double *X, size_t ldx, pspace_mat *m, const pspace_exec *ex,
                                 double damping, uint32_t n, const pspace_sample_opts *opts);

/**
 * Writes the product A B of two matrices of the same kind as a new stored
 * matrix @p name (not symmetric in general: all tiles are stored).
 * Dense x Dense streams B once per tile row of A; BlockDiag multiplies
 * block by block.
 */
PSPACE_API int pspace_mat_product_write(pspace_store *s, const char *name, pspace_mat *a,
                                        pspace_mat *b, const pspace_exec *ex,
                                        const pspace_write_opts *opts);

/* ---- operations that make new resident matrices -------------------------- */

/*
 * Each gives *out a new matrix holding one reference, the caller's (free it
 * with pspace_mat_free()); *out is NULL on failure. They apply to every
 * kind that has the result in closed form (the factored kinds of
 * pspace/factored.h, Identity); others return PSPACE_ENOTSUP (stored kinds:
 * use the lazy operators of pspace/op.h, pspace_op_inverse()).
 */

/**
 * (M + damping I)^p as a new matrix of the same kind. Diag, EKFAC: any
 * real p (p < 0 needs M + damping I positive definite). KFAC: integer
 * p, damped as set by pspace_kfac_set_damping() (exact damping returns an
 * EKFAC-like result: PSPACE_ENOTSUP for KFAC with exact damping and p != -1
 * is allowed to fail). LowRank: only where the result is D'^T D' again,
 * i.e. damping 0 and p > 0, or rows >= d (any p); otherwise (F + l I)^p
 * has an identity part and the call returns PSPACE_ENOTSUP (apply inverses
 * with pspace_mat_solve / pspace_op_inverse). QuasiDiag: p = 1 (M + l I)
 * and p = 0 only; the inverse of an arrowhead is not an arrowhead
 * (PSPACE_ENOTSUP: its exact solve is pspace_mat_solve). Mixed: part by
 * part, failing naming the layer whose part cannot.
 */
PSPACE_API int pspace_mat_pow(pspace_mat **out, pspace_mat *m, double p, double damping);
/** (M + damping I)^-1 as a new matrix: pspace_mat_pow(out, m, -1, damping). */
PSPACE_API int pspace_mat_inverse(pspace_mat **out, pspace_mat *m, double damping);
/**
 * Pseudo-inverse: eigenvalues <= @p threshold are treated as 0 (EKFAC, Diag,
 * LowRank, Mixed of those); zero eigenvalues (LowRank: singular values at
 * rounding level) are never inverted, whatever the threshold.
 */
PSPACE_API int pspace_mat_pinv(pspace_mat **out, pspace_mat *m, double threshold);
/** s M as a new matrix of the same kind (pspace_op_scale() for a lazy scaling). */
PSPACE_API int pspace_mat_scale(pspace_mat **out, pspace_mat *m, double s);
/**
 * A B as a new resident matrix of the kind of @p a and @p b, which must
 * have the same kind (else PSPACE_ENOTSUP) and layout (else PSPACE_EDIM):
 * KFAC (per layer G1 G2 (x) A1 A2), Diag. Stored kinds:
 * pspace_mat_product_write(); lazy: pspace_op_product().
 */
PSPACE_API int pspace_mat_product(pspace_mat **out, pspace_mat *a, pspace_mat *b);

/* ---- exact eigendecompositions ----------------------------------------------- */

/**
 * Exact eigendecomposition of a factored matrix: the @p k largest
 * eigenvalues in decreasing order and, if @p evecs is not NULL, their
 * eigenvectors as rows of a (k, d) array (leading dimension ld).
 * Stored kinds: PSPACE_ENOTSUP (use Lanczos: pspace_op_eig).
 */
PSPACE_API int pspace_mat_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals,
                              double *evecs, size_t ld);
/** All d eigenvalues in decreasing order (factored kinds). */
PSPACE_API int pspace_mat_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals);

/* ---- out-of-core Cholesky factors of stored matrices ---------------------- */

/** Options of pspace_factor_write(); NULL means the defaults. */
typedef struct pspace_factor_opts {
	double damping;     /**< factor M + damping I (default 0) */
	pspace_dtype dtype; /**< precision of the factor's tiles; 0 = PSPACE_F64 (default) */
	int resume;         /**< finish an interrupted factorization of that name */
	/** Called after each committed panel with (columns done, d); may be NULL. */
	void (*progress)(void *ud, uint64_t done, uint64_t total);
	void *progress_ud;
} pspace_factor_opts;

/** Fills @p o with the defaults: damping 0, f64 tiles, no resume, no progress. */
PSPACE_API void pspace_factor_opts_default(pspace_factor_opts *o);

/**
 * Writes the lower Cholesky factor L of stored matrix @p source + damping I
 * (a complete Dense or BlockDiag, symmetric; BlockDiag block by block) as
 * matrix @p name of kind PSPACE_KIND_CHOLESKY: a non-symmetric tiled matrix
 * with the source's blocks, tile edge and codec, holding the tiles on and
 * below the diagonal of each block (diagonal tiles with zeros above), and
 * two arrays: "source" (i64, the source's catalog id) and "damping" (f64).
 * A left-looking blocked algorithm: panels of as many tile columns as fit
 * ex->mem_budget, each updated by the factor's earlier columns read back
 * from the store, factored in memory (dpotrf, dtrsm, dgemm in f64) and
 * committed; so each factor tile is read about d / (panel width) times.
 * @return 0; PSPACE_ENUMERIC when the matrix plus damping is not positive
 * definite (the detail names the global pivot; the partial factor is
 * removed); PSPACE_ENOMEM when one tile column of the largest block does
 * not fit the budget (nothing written); PSPACE_EEXIST (@p name exists and
 * opts->resume is 0); PSPACE_EINVAL (resuming something that is not an
 * interrupted factor of @p source with this damping); PSPACE_ENOTSUP
 * (source not a symmetric Dense or BlockDiag); store errors, after which
 * the partial factor stays for opts->resume.
 */
PSPACE_API int pspace_factor_write(pspace_store *s, const char *name, const char *source,
                                   const pspace_exec *ex, const pspace_factor_opts *opts);

/**
 * Finds a complete stored Cholesky factor of matrix @p source (as it is
 * now: same catalog id) with exactly this @p damping and copies its name
 * into @p out (@p cap bytes, at least PSPACE_NAME_MAX + 1).
 * @return 0, PSPACE_ENOTFOUND (none, or no matrix @p source), PSPACE_EINVAL.
 */
PSPACE_API int pspace_factor_find(char *out, size_t cap, pspace_store *s, const char *source,
                                  double damping);

/**
 * Solves L L^T X = B with stored factor @p factor for k right-hand sides
 * (rows of B and X, leading dimensions ldb, ldx >= d), reading each tile
 * once per triangular sweep (forward, then backward) for all of them.
 * Memory: one tile of doubles beyond B and X. X may alias B.
 * @return 0, PSPACE_ENOTFOUND, PSPACE_ENOTSUP (not a factor), PSPACE_EDIM,
 * or a store error.
 */
PSPACE_API int pspace_factor_solve(pspace_store *s, const char *factor, const pspace_exec *ex,
                                   uint32_t k, const double *B, size_t ldb, double *X, size_t ldx);

/** *out = log det(L L^T) = 2 sum log L_ii of stored factor @p factor (diagonal tiles only). */
PSPACE_API int pspace_factor_logdet(double *out, pspace_store *s, const char *factor);

/**
 * out (d doubles) = diag((L L^T)^-1) for stored factor @p factor: the
 * squared column norms of L^-1, by forward sweeps over groups of columns
 * of the identity, each group as wide as half of @p ex's memory budget
 * holds (at least one tile column). The groups read the factor about
 * d / (3 w) times (w columns per group) and cost about d^3 / 3 flops. @return 0, PSPACE_ENOTFOUND,
 * PSPACE_ENOTSUP (not a factor), PSPACE_ENOMEM, PSPACE_EINVAL, or a store error naming the tile.
 */
PSPACE_API int pspace_factor_diaginv(double *out, pspace_store *s, const char *factor,
                                     const pspace_exec *ex);

#ifdef __cplusplus
}
#endif
#endif
