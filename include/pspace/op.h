/*
 * pspace/op.h - lazy operators: expressions over matrices.
 *
 * An expression (sums, differences, scalings, identity shifts, products,
 * damped inverses) is built without touching any data. It is evaluated
 * only when a result is asked for (mv, mm, vTMv, trace, diag, norm, solve,
 * eig, dense, write). The stored matrices of its linear terms that share a
 * tiling (blocks, tile edge, symmetry) are streamed together in one pass,
 * so an mv, mm or vTMv reads each stored tile once, whatever the number of
 * stored matrices in the expression and the number of right-hand sides
 * (pspace_store_tiles_read() counts the reads). Scalings and shifts are
 * folded into the kernels and never applied to stored data.
 *
 * Nodes are reference counted: constructors take their own references to
 * their operands, so the caller may free operands right after building.
 * Each constructor gives *out one reference, the caller's
 * (pspace_op_free()); *out is NULL on failure.
 *
 * Limits: scales, shifts and dampings are finite numbers, an expression
 * is nested at most 4096 levels deep and stands for at most 65536 matrix
 * and identity terms once expanded (a node shared twice counts twice);
 * a constructor that would pass them returns PSPACE_EINVAL (build long
 * sums as balanced trees). A scalar result (trace, vTAv, norm, eigenvalue)
 * that is not finite is PSPACE_ENUMERIC, never a NaN or an infinity.
 *
 * Threads: a built expression is never changed, and evaluating it takes no
 * references, so several threads may evaluate one pspace_op at once when
 * its matrices allow it (pspace/mat.h: stored and factored kinds do,
 * Implicit ones if their callbacks do). Reference counts are not atomic:
 * building, pspace_op_ref() and pspace_op_free() must not run concurrently
 * on nodes or matrices they share. Options structs with out-fields
 * (pspace_solve_opts, pspace_trace_opts, pspace_eig_opts) belong to one call.
 */
#ifndef PSPACE_OP_H
#define PSPACE_OP_H

#include "pspace/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pspace_op pspace_op;

/* ---- building (no data touched) ----------------------------------------- */

/** A leaf: matrix @p m. */
PSPACE_API int pspace_op_mat(pspace_op **out, pspace_mat *m);
/** s * I of dimension d. */
PSPACE_API int pspace_op_identity(pspace_op **out, uint64_t d, double s);
/** s * A. */
PSPACE_API int pspace_op_scale(pspace_op **out, double s, pspace_op *a);
/** A + B. @return PSPACE_EDIM if dimensions differ. */
PSPACE_API int pspace_op_add(pspace_op **out, pspace_op *a, pspace_op *b);
/** A - B. */
PSPACE_API int pspace_op_sub(pspace_op **out, pspace_op *a, pspace_op *b);
/** A B (applied right to left: A (B x)). */
PSPACE_API int pspace_op_product(pspace_op **out, pspace_op *a, pspace_op *b);

/** How to solve (A + damping I) X = B. */
typedef enum pspace_solve_method {
	PSPACE_SOLVE_AUTO = 0,   /**< direct if A has one and it fits the budget, else CG */
	PSPACE_SOLVE_DIRECT = 1, /**< direct only (PSPACE_ENOTSUP / PSPACE_ENOMEM otherwise) */
	PSPACE_SOLVE_CG = 2,     /**< conjugate gradient */
} pspace_solve_method;

/** Solver options; NULL means the defaults. */
typedef struct pspace_solve_opts {
	pspace_solve_method method;
	double tol;          /**< CG: relative residual ||r|| / ||b||; default 1e-6 */
	uint32_t max_iter;   /**< CG: default 1000 */
	pspace_op *precond;  /**< CG: preconditioner P; (P + damping I)^{-1} is applied
	                          through P's direct solve. NULL: none */
	uint32_t iterations; /**< out: CG iterations used (largest over right-hand sides) */
	double residual;     /**< out: final relative residual (largest) */
} pspace_solve_opts;

/** Fills @p o with the defaults. */
PSPACE_API void pspace_solve_opts_default(pspace_solve_opts *o);

/** A node applying (A + damping I)^{-1}; opts are copied (precond referenced). */
PSPACE_API int pspace_op_inverse(pspace_op **out, pspace_op *a, double damping,
                                 const pspace_solve_opts *opts);

/** Takes a reference for the caller; @return @p a (NULL for NULL). */
PSPACE_API pspace_op *pspace_op_ref(pspace_op *a);
/**
 * Releases the caller's handle: drops its reference, and the node goes
 * with the last one (with the references it holds on operands and
 * matrices). NULL is accepted.
 */
PSPACE_API void pspace_op_free(pspace_op *a);
/** @return the dimension d. */
PSPACE_API uint64_t pspace_op_dim(const pspace_op *a);

/**
 * Describes the folded expression ("2*F - 0.5*G + 0.001*I") into @p buf.
 * @return the length it needed (like snprintf).
 */
PSPACE_API int pspace_op_describe(const pspace_op *a, char *buf, size_t cap);

/* ---- evaluating ------------------------------------------------------------ */

/**
 * Y = alpha A X + beta Y for k right-hand sides, in one pass over each
 * stored matrix: BLAS gemm's contract, as pspace_mat_mm(). X and Y are
 * (k, d) row-major with leading dimensions ldx, ldy >= d and must not
 * overlap. With beta == 0, Y is not read (NaN or garbage in Y is
 * ignored); with alpha == 0, A and X are not applied.
 * @return 0, PSPACE_EINVAL (NULL argument), PSPACE_EDIM (ldx or ldy < d),
 * or an error of a matrix in the expression.
 */
PSPACE_API int pspace_op_mm(pspace_op *a, const pspace_exec *ex, uint32_t k, double alpha,
                            const double *X, size_t ldx, double beta, double *Y, size_t ldy);
/** y = A x (y is overwritten, not read). */
PSPACE_API int pspace_op_mv(pspace_op *a, const pspace_exec *ex, const double *x, double *y);
/** *out = v^T A v. */
PSPACE_API int pspace_op_vtmv(pspace_op *a, const pspace_exec *ex, const double *v, double *out);
/** out[j] = V_j^T A V_j, one pass. */
PSPACE_API int pspace_op_vtmv_batch(pspace_op *a, const pspace_exec *ex, uint32_t k,
                                    const double *V, size_t ldv, double *out);

/** Trace options: Hutchinson estimate where no exact form exists. */
typedef struct pspace_trace_opts {
	uint32_t probes; /**< Rademacher probes; default 64 */
	uint64_t seed;   /**< default 1 */
	int exact;       /**< out: 1 if the result is exact, 0 if estimated */
	double stderr_;  /**< out: standard error of the estimate (0 if exact) */
} pspace_trace_opts;

/** *out = trace(A): exact for linear combinations, Hutchinson otherwise. */
PSPACE_API int pspace_op_trace(pspace_op *a, const pspace_exec *ex, pspace_trace_opts *opts,
                               double *out);
/** out[0..d) = diag(A) (overwritten): exact for linear combinations, else PSPACE_ENOTSUP. */
PSPACE_API int pspace_op_diag(pspace_op *a, const pspace_exec *ex, double *out);

/** Norms. */
typedef enum pspace_norm_ord {
	PSPACE_NORM_FRO = 0,    /**< Frobenius */
	PSPACE_NORM_2 = 2,      /**< largest singular value (Lanczos) */
	PSPACE_NORM_MINUS2 = -2 /**< smallest singular value (Lanczos) */
} pspace_norm_ord;

/** Lanczos options; NULL means the defaults. */
typedef struct pspace_eig_opts {
	uint32_t max_iter;   /**< Lanczos steps (passes); default min(d, 300) */
	double tol;          /**< relative residual of Ritz pairs; default 1e-8 */
	uint64_t seed;       /**< start vector; default 1 */
	uint32_t iterations; /**< out: steps used */
} pspace_eig_opts;

/**
 * *out = the norm of A. Frobenius: exact, at any d, from one pass reading
 * together the stored matrices of a linear combination of one tiling plus
 * a shift and diagonal resident terms (or one resident matrix with them);
 * any other expression through the dense d x d matrix when it fits
 * ex->mem_budget, else PSPACE_ENOTSUP (the detail says why). 2 and -2 use
 * Lanczos (A must be symmetric).
 */
PSPACE_API int pspace_op_norm(pspace_op *a, const pspace_exec *ex, pspace_norm_ord ord,
                              pspace_eig_opts *opts, double *out);

/**
 * Top-k eigenpairs of symmetric A by Lanczos with full reorthogonalization:
 * evals[0..k) in decreasing order, evecs (k, d) row-major (ld >= d; NULL to
 * skip). @p opts: NULL for the defaults; its out-fields are filled.
 */
PSPACE_API int pspace_op_eig(pspace_op *a, const pspace_exec *ex, uint32_t k, pspace_eig_opts *opts,
                             double *evals, double *evecs, size_t ld);

/**
 * X = (A + damping I)^{-1} B: direct when A folds to c*M + s*I with M a
 * matrix that has a direct solve fitting the budget (then damping' =
 * (s + damping) / c), else CG (A must be symmetric positive definite
 * after damping). X is overwritten. @p opts: NULL for the defaults; its
 * out-fields (iterations, residual) are filled.
 */
PSPACE_API int pspace_op_solve(pspace_op *a, const pspace_exec *ex, double damping, uint32_t k,
                               const double *B, size_t ldb, pspace_solve_opts *opts, double *X,
                               size_t ldx);

/** Options of the estimators of pspace_op_logdet() and pspace_op_diaginv(); NULL: defaults. */
typedef struct pspace_est_opts {
	uint32_t probes; /**< Rademacher probes; 0: 64 */
	uint32_t steps;  /**< logdet (SLQ): Lanczos steps per probe; 0: min(d, 40) */
	uint64_t seed;   /**< probes' seed (NULL options: 1) */
	double tol;      /**< diaginv: CG relative residual of the probes' solves; 0: 1e-10 */
	int exact;       /**< out: 1 if the result is exact, 0 if estimated */
	double stderr_;  /**< out: standard error of the estimate (diaginv: the largest
	                      entry's), 0 if exact */
} pspace_est_opts;

/**
 * *out = log det(A + damping I). Exact when A folds to c M + s I (c > 0,
 * M one matrix with an exact form: pspace_mat_logdet) or to s I;
 * otherwise (sums of several matrices, products, inverses, Implicit,
 * Dense beyond the memory budget) estimated by stochastic Lanczos
 * quadrature: opts->probes Rademacher probes, opts->steps Lanczos steps
 * each (one mm per step for a batch of probes, full reorthogonalization),
 * with its standard error in opts->stderr_. A + damping I must be
 * symmetric positive definite (PSPACE_ENUMERIC when a Ritz value is not
 * positive).
 */
PSPACE_API int pspace_op_logdet(double *out, pspace_op *a, const pspace_exec *ex, double damping,
                                pspace_est_opts *opts);

/**
 * out[0..d) = diag((A + damping I)^-1). Exact in the cases
 * pspace_op_logdet() is; otherwise the Hutchinson-style estimate mean_j
 * z_j .* (A + damping I)^-1 z_j over Rademacher probes z_j, solved together
 * (pspace_op_solve: direct or CG to opts->tol); the standard error of
 * each entry goes to @p se (may be NULL), the largest to opts->stderr_.
 */
PSPACE_API int pspace_op_diaginv(double *out, double *se, pspace_op *a, const pspace_exec *ex,
                                 double damping, pspace_est_opts *opts);

/**
 * @p n exact draws from N(0, (A + damping I)^-1) (opts->cov: N(0, A +
 * damping I)) as the rows of X (n, d), leading dimension ldx: when A folds
 * to c M + s I with c > 0 (pspace_mat_sample on M), or to s I. Anything
 * else has no exact square root here: PSPACE_ENOTSUP saying so.
 */
PSPACE_API int pspace_op_sample(double *X, size_t ldx, pspace_op *a, const pspace_exec *ex,
                                double damping, uint32_t n, const pspace_sample_opts *opts);

/** Writes A as a dense d x d row-major array, overwriting out (the caller provides d*ld doubles).
 */
PSPACE_API int pspace_op_dense(pspace_op *a, const pspace_exec *ex, double *out, size_t ld);

/**
 * Materializes A into the store as a new Dense matrix @p name, tile by tile
 * (never all in RAM): a linear combination of stored Dense matrices of one
 * tiling plus a shift, written with their tile edge, is combined tile by
 * tile from one pass that reads each of their tiles once; anything else is
 * computed by mm on bands of unit vectors as wide as ex->mem_budget allows.
 * A product is refused (PSPACE_ENOTSUP): a stored Dense is symmetric.
 */
PSPACE_API int pspace_op_write(pspace_op *a, const pspace_exec *ex, pspace_store *s,
                               const char *name, const pspace_write_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
