/*
 * Internal: Kronecker-factored layer blocks, shared by KFAC and EKFAC.
 *
 * The folder src/mat/kron/ holds both kinds. Its files use only the ones
 * before them in this order (includes and calls; nothing calls back up):
 *
 *   kron.h, kron.c        shared factor code (this header; below it only
 *                         mat_impl.h and the layers under src/mat)
 *   ekfac_impl.h, ekfac.c the EKFAC matrix, built from eigenbases and a
 *                         diagonal (pspace_ekfac_build); knows nothing of KFAC
 *   ekfac_build.h, ekfac_update.c  the EKFAC diagonal update; ekfac_build.h
 *                         is the builders' only way in (src/build)
 *   kfac_impl.h           the KFAC matrix (struct and the entry points below)
 *   eigen.c               KFAC factor eigendecompositions, eigenpairs, and
 *                         KFAC -> EKFAC (pspace_ekfac_from_kfac)
 *   kfac_solve.c          KFAC damped solve and powers (exact damping through
 *                         eigen.c, an EKFAC for a power)
 *   kfac.c                KFAC construction, products, persistence and its
 *                         table, which points into kfac_solve.c and eigen.c
 *
 * mat.c reaches the two kinds only through their openers and tables.
 *
 * Every layer a Kronecker form covers is viewed as an nr x nc matrix V of
 * its parameters, and its block acts as (R (x) C) vec(V) = vec(R V C^T)
 * (vec row-major). Linear / conv layers: rows are outputs o (R = G,
 * nr = out), columns j = 0..a (C = A, nc = a = in (+1)), and the bias
 * column, last in V, sits after all the weights in the canonical parameter
 * order: V[o][j] = w[o * in + j] (j < in), V[o][in] = b[o]. Embedding
 * (num x dim): the roles are transposed, R = A is diagonal (nr = num) and
 * C = G (nc = dim), V[i][e] = w[i * dim + e].
 *
 * Work buffers hold k vectors of a layer as an (nr, k, nc) array B: the
 * same memory is the nr x (k nc) matrix [V_1 ... V_k] (for products on the
 * left) and the (nr k) x nc matrix stacking the rows of all V_j (for
 * products on the right), so one gemm per side handles all k vectors.
 */
#ifndef PSPACE_SRC_MAT_KRON_KRON_H
#define PSPACE_SRC_MAT_KRON_KRON_H

#include <stdlib.h>

#include "mat/mat_impl.h"
#include "pspace/factored.h"

/** Geometry of one layer's Kronecker block. */
typedef struct pspace_kron_layer {
	const char *name; /* the layer's name (points into the matrix's layout) */
	uint64_t off;     /* first parameter of the layer */
	uint64_t nr, nc;  /* V is nr x nc */
	uint64_t in;      /* weight columns: in (linear, conv), dim (embedding) */
	uint64_t wsize;   /* weight_size (the bias starts at off + wsize) */
	int bias;         /* column nc - 1 is the bias */
	int rdiag;        /* embedding: R = A is diagonal, A is the row factor */
} pspace_kron_layer;

/**
 * Geometry of every layer of @p layout (malloc'd array, *n entries).
 * Layers other than linear/conv1d/conv2d/embedding: PSPACE_ENOTSUP naming
 * the layer and @p what ("KFAC").
 */
int pspace_kron_geometry(const pspace_layout *layout, const char *what, pspace_kron_layer **out,
                         size_t *n);

/** Name of the row factor in messages and array names: G (embedding: A). */
static inline const char *pspace_kron_rname(const pspace_kron_layer *g)
{
	return g->rdiag ? "A" : "G";
}

/** Name of the column factor: A (embedding: G). */
static inline const char *pspace_kron_cname(const pspace_kron_layer *g)
{
	return g->rdiag ? "G" : "A";
}

/** Index, relative to the layer's first parameter, of V[o][c]. */
static inline uint64_t pspace_kron_index(const pspace_kron_layer *g, uint64_t o, uint64_t c)
{
	return c < g->in ? o * g->in + c : g->wsize + o;
}

/** malloc of @p n doubles (at least one, so 0 is not a failure). */
static inline double *pspace_kron_alloc(uint64_t n)
{
	return (double *)malloc((n ? n : 1) * sizeof(double));
}

/** Frees @p n arrays and the pointer array; NULL accepted. */
static inline void pspace_kron_free_ptrs(double **p, size_t n)
{
	if (!p)
		return;
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
}

/** A zeroed array of @p n pointers (at least one). */
static inline double **pspace_kron_new_ptrs(size_t n)
{
	return (double **)calloc(n ? n : 1, sizeof(double *));
}

/** Elements of the row factor (nr for a diagonal one, else nr^2). */
static inline uint64_t pspace_kron_rsize(const pspace_kron_layer *g)
{
	return g->rdiag ? g->nr : g->nr * g->nr;
}

/**
 * B (nr, k, nc) <- V_j of the k vectors X_j (X points at the layer's first
 * parameter of vector 0; vector j at X + j * ldx).
 */
void pspace_kron_gather(const pspace_kron_layer *g, uint32_t k, const double *X, size_t ldx,
                        double *B);
/** Y_j[V[o][c]] (+)= alpha B[o][j][c]: adds when @p add, else overwrites. */
void pspace_kron_scatter(const pspace_kron_layer *g, uint32_t k, double alpha, const double *B,
                         int add, double *Y, size_t ldy);

/**
 * Row-major C = alpha op(A) op(B) + beta C (m x n, inner dimension kk),
 * through BLIS with @p threads threads. transa/transb: 0 or 1.
 */
void pspace_kron_gemm(int transa, int transb, uint64_t m, uint64_t n, uint64_t kk, double alpha,
                      const double *A, uint64_t lda, const double *B, uint64_t ldb, double beta,
                      double *C, uint64_t ldc, int threads);

/**
 * B <- R B C^T for the k vectors held in B (nr, k, nc); T is a work
 * buffer of the same size. R diagonal when g->rdiag (its nr entries).
 */
void pspace_kron_mul(const pspace_kron_layer *g, uint32_t k, const double *R, const double *C,
                     double *B, double *T, int threads);

/**
 * B <- U_R [ W .* (U_R^T B U_C) ] U_C^T for the k vectors held in B, with
 * W (nr x nc) applied to every vector; U_R NULL means the identity. T is a
 * work buffer of B's size.
 */
void pspace_kron_eig_mul(const pspace_kron_layer *g, uint32_t k, const double *UR, const double *UC,
                         const double *W, double *B, double *T, int threads);

/**
 * B <- U_R^T B U_C (into the eigenbasis; T a work buffer). U_R NULL: identity.
 */
void pspace_kron_to_basis(const pspace_kron_layer *g, uint32_t k, const double *UR,
                          const double *UC, double *B, double *T, int threads);

/**
 * Vectors per chunk so that @p bufs buffers of nr * k * nc doubles of the
 * largest layer fit in @p budget bytes (at least 1, at most @p k).
 */
uint32_t pspace_kron_chunk(const pspace_kron_layer *g, size_t n, uint32_t k, int bufs,
                           size_t budget);

/**
 * Work buffers for chunks of vectors: two (nr, kc, nc) arrays of the
 * largest layer, with kc = pspace_kron_chunk(g, n, k, 2, budget). @p what
 * names the caller in the error. On failure both are NULL.
 */
int pspace_kron_work(const pspace_kron_layer *g, size_t n, uint32_t k, size_t budget,
                     const char *what, uint32_t *kc, double **B, double **T);

/**
 * The operation on one layer's chunk of @p k vectors held in B (nr, k, nc),
 * in place; T is a work buffer of B's size. @p l is the layer's index.
 */
typedef void (*pspace_kron_chunk_fn)(void *ud, const pspace_kron_layer *g, size_t l, uint32_t k,
                                     double *B, double *T, int threads);

/**
 * Y (+)= alpha op_l(X) for the @p k vectors X_j (at X + j ldx) on every
 * layer of @p geo: each layer's part of the vectors is gathered into V
 * matrices in chunks that fit ex->mem_budget (pspace_kron_work, @p what
 * naming the caller), transformed by @p op and scattered into Y (added
 * when @p add, else written over). @return 0 or PSPACE_ENOMEM.
 */
int pspace_kron_apply(const pspace_kron_layer *geo, size_t n, const pspace_exec *ex,
                      const char *what, uint32_t k, const double *X, size_t ldx, double alpha,
                      int add, double *Y, size_t ldy, pspace_kron_chunk_fn op, void *ud);

/** Per layer U_R, U_C and W of the form U_R [W .* (U_R^T V U_C)] U_C^T. */
typedef struct pspace_kron_eig_form {
	double *const *UR; /* UR[l] NULL: identity */
	double *const *UC;
	double *const *W;
} pspace_kron_eig_form;

/** pspace_kron_chunk_fn applying the form @p ud (a pspace_kron_eig_form) with pspace_kron_eig_mul.
 */
void pspace_kron_eig_chunk(void *ud, const pspace_kron_layer *g, size_t l, uint32_t k, double *B,
                           double *T, int threads);

/**
 * Two new pointer arrays of @p n (pspace_kron_new_ptrs), or PSPACE_ENOMEM
 * naming @p what with both NULL.
 */
int pspace_kron_new_pair(size_t n, const char *what, double ***R, double ***C);

/**
 * B <- B op(L)^{-1} (right) or op(L)^{-1} B (left) for row-major lower
 * triangular L (n x n) and B (m x n, or n x ncols on the left: m rows, n
 * columns of B as given), through BLIS trsm.
 */
void pspace_kron_trsm(int right, int trans, uint64_t m, uint64_t n, const double *L, uint64_t ldl,
                      double *B, uint64_t ldb, int threads);

/**
 * Damping split per factor: @p mode PI or SQRT gives R + cr I and C + cc I
 * with pi from the traces of A and G (README, Formulas; pi = 1 when either is 0 or
 * for SQRT). tr_r, tr_c: traces of R and C. EINVAL for damping < 0.
 */
int pspace_kron_damp_split(const pspace_kron_layer *g, pspace_kfac_damping mode, double damping,
                           double tr_r, double tr_c, double *cr, double *cc);

/**
 * The k largest values over all layers' value arrays W[l] (nr x nc, the
 * eigenvalues of the layer block in its Kronecker eigenbasis U_R (x) U_C),
 * decreasing, and if evecs is not NULL their eigenvectors (rows of evecs,
 * canonical order). UR[l] NULL: identity.
 */
int pspace_kron_eig_top(const pspace_kron_layer *geo, size_t n, uint64_t d, const double *const *UR,
                        const double *const *UC, const double *const *W, uint32_t k, double *evals,
                        double *evecs, size_t ld);

/** All d values of W[l] over the layers, decreasing. */
int pspace_kron_eig_all(const pspace_kron_layer *geo, size_t n, uint64_t d, const double *const *W,
                        double *evals);

/*
 * The damped eigen form: per layer the positive eigenvalues W[l] (nr x nc)
 * of a layer block in its Kronecker eigenbasis U_R (x) U_C (U_R NULL:
 * identity), as KFAC and EKFAC damp them. log det, the inverse's diagonal
 * and square roots follow from it exactly.
 */

/** *out = sum of log W[l] over the layers; ENUMERIC naming the layer where an entry is <= 0. */
int pspace_kron_logdet(const pspace_kron_layer *geo, size_t n, const double *const *W, double *out);

/**
 * out[0..d) = diag of the inverse: per layer (U_R.^2) (1 ./ W) (U_C.^2)^T,
 * in canonical parameter order. ENUMERIC where an entry of W is <= 0.
 */
int pspace_kron_diaginv(const pspace_kron_layer *geo, size_t n, const double *const *UR,
                        const double *const *UC, const double *const *W, double *out);

/**
 * W[l] <- W[l]^(1/2) (@p cov) or W[l]^(-1/2) in place: the weights of the
 * symmetric square root of the form or of its inverse. ENUMERIC for an
 * entry below 0 (cov; rounding-level negatives count as 0) or <= 0.
 */
int pspace_kron_sqrt_weights(const pspace_kron_layer *geo, size_t n, int cov, double **W);

/** Task @p i of a pspace_kron_each() run; @return 0 or a PSPACE_E* code (detail set). */
typedef int (*pspace_kron_task_fn)(void *ud, size_t i);

/**
 * Runs every task 0..n-1 of @p fn, on min(@p threads, n) threads: the
 * caller's and new pthreads (fewer if they cannot be created), each taking
 * the next task in @p order (NULL: 0..n-1; put the costliest first). The
 * tasks' LAPACK and BLAS-interface calls run single-threaded in their own
 * thread, so several factors are decomposed at once. @return 0, or the
 * code of the lowest-numbered failing task with its detail message moved
 * to the calling thread; PSPACE_ENOMEM (nothing run).
 */
int pspace_kron_each(size_t n, const size_t *order, int threads, pspace_kron_task_fn fn, void *ud);

/** order[0..n-1]: the indices by decreasing @p size (ties by index). */
void pspace_kron_order(size_t n, const uint64_t *size, size_t *order);

/** Threads of @p ex (NULL: defaults): >= 1, 0 meaning the online cores. */
int pspace_kron_threads(const pspace_exec *ex);

/** Relative asymmetry max |M - M^T| / max |M| of n x n @p M (0 for a zero M). */
double pspace_kron_asym(uint64_t n, const double *M);
/** M <- (M + M^T) / 2. */
void pspace_kron_symmetrize(uint64_t n, double *M);

#endif
