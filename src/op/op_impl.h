/*
 * Internal: expression nodes and their normal form.
 *
 * An expression tree (struct pspace_op) is folded, on every evaluation,
 * into a normal form (op_fold):
 *
 *     A = s I + sum_i c_i F_i1 F_i2 ... F_in
 *
 * where each factor F is a matrix leaf, an inverse node, or a nested sum
 * (a product whose operand is itself a sum is kept as one factor rather
 * than distributed, so no matrix is streamed more often than the
 * expression names it). Scalings multiply into c_i, identities into s.
 * Terms made of one matrix leaf are "linear" terms; the terms of the same
 * matrix are summed, and the stored matrices of the same tiling among them
 * form a group that is streamed in one pass (pspace_stream_multi), so each
 * stored tile is read once per evaluation.
 *
 * The tree is immutable once built; a fold borrows pointers from the tree
 * and lives no longer than the evaluation that made it.
 *
 * Files of src/op and what each calls, lowest first (no circle: an inverse
 * factor reaches the solver through the pointer its node carries):
 *   fold.c        normal form, grouping, applying it, describing it
 *   cg.c          conjugate gradient on a fold                 -> fold.c
 *   solve.c       direct-or-CG choice, option defaults         -> fold.c, cg.c
 *   expr.c        building nodes (an inverse node gets op_solve) -> solve.c
 *   hutchinson.c, lanczos.c, slq.c                            -> fold.c
 *   eval.c        mm, vTMv, trace, diag, dense, eig            -> fold.c,
 *                                                  hutchinson.c, lanczos.c
 *   norm.c        norms (Frobenius in one pass)                -> fold.c, eval.c,
 *                                                               lanczos.c
 *   write.c       materializing into the store                 -> fold.c, eval.c
 *   damped.c      log det, diag of the inverse, samples        -> fold.c, solve.c,
 *                                                               slq.c, hutchinson.c
 */
#ifndef PSPACE_SRC_OP_OP_IMPL_H
#define PSPACE_SRC_OP_OP_IMPL_H

#include "pspace/op.h"

typedef enum op_type {
	OP_MAT = 1,
	OP_IDENT = 2,
	OP_SCALE = 3,
	OP_ADD = 4,
	OP_SUB = 5,
	OP_PRODUCT = 6,
	OP_INVERSE = 7,
} op_type;

/**
 * @return 0, or PSPACE_ENUMERIC naming @p what ("trace") if one of the @p n
 * results at @p v is not finite (a matrix or input beyond double range).
 */
int op_check_finite(const double *v, size_t n, const char *what);

/**
 * X = (a + damping I)^{-1} B for k right-hand sides (op_solve, solve.c):
 * how an inverse node is applied.
 */
typedef int (*op_solve_fn)(const pspace_op *a, const pspace_exec *ex, double damping, uint32_t k,
                           const double *B, size_t ldb, double *X, size_t ldx,
                           pspace_solve_opts *opts);

/**
 * Limits of an expression, checked as it is built: its nesting (every
 * walk over the tree recurses, so this bounds their stack) and its terms
 * once expanded (a node may be shared, so a small tree can stand for a
 * huge sum).
 */
#define OP_MAX_DEPTH 4096
#define OP_MAX_TERMS 65536

struct pspace_op {
	int refs;
	op_type type;
	uint32_t depth; /* longest path to a leaf, 1 for a leaf */
	uint64_t terms; /* matrix and identity leaves once expanded; an inverse counts 1 */
	uint64_t d;
	double s;               /* IDENT: scale; SCALE: factor; INVERSE: damping */
	pspace_mat *m;          /* MAT: referenced */
	pspace_op *a, *b;       /* operands: referenced */
	pspace_solve_opts opts; /* INVERSE: copied, opts.precond referenced */
	op_solve_fn solve;      /* INVERSE: applies it */
};

typedef enum op_factor_type {
	FACTOR_MAT = 1, /* a matrix leaf */
	FACTOR_INV = 2, /* an inverse node: (inv->a + inv->s I)^{-1} */
	FACTOR_SUM = 3, /* a nested sum (owned) */
} op_factor_type;

struct op_fold;

typedef struct op_factor {
	op_factor_type type;
	pspace_mat *m;        /* FACTOR_MAT (borrowed) */
	const pspace_op *inv; /* FACTOR_INV (borrowed) */
	struct op_fold *sum;  /* FACTOR_SUM (owned) */
} op_factor;

/** One term c * f[0] f[1] ... f[n-1], applied right to left. */
typedef struct op_term {
	double c;
	size_t n;
	op_factor *f; /* owned */
} op_term;

/** s I + sum of terms. */
typedef struct op_fold {
	uint64_t d;
	double s;
	size_t n;
	op_term *t; /* owned, except in views (op_fold_view) */
} op_fold;

/** Folds @p a into a new normal form *out. @return 0 or PSPACE_ENOMEM. */
int op_fold_build(const pspace_op *a, op_fold **out);
/** Frees a fold made by op_fold_build; NULL is accepted. */
void op_fold_free(op_fold *f);
/** @return 1 if term @p t is a single matrix leaf. */
int op_term_is_linear(const op_term *t);
/** @return 1 if every term of @p f is linear (s I + sum c_i M_i). */
int op_fold_is_linear(const op_fold *f);

/**
 * The linear terms of a fold: the distinct matrices with their summed
 * coefficients (those summing to 0 left out), ordered so that the matrices
 * stored with one tiling (pspace_tiled_same) are adjacent: group j is
 * m[g0[j] .. g0[j + 1]), and m[g0[ngroups] .. n) are the matrices not
 * stored as tiles (resident kinds), applied through their own table.
 */
typedef struct op_leaves {
	size_t n;
	pspace_mat **m;
	double *c;
	const struct pspace_tiled **t; /* engine view of m[i]; NULL for resident kinds */
	size_t ngroups;
	size_t *g0; /* ngroups + 1 entries */
} op_leaves;

/** Fills @p l with the linear leaves of @p f (see op_leaves). @return 0 or PSPACE_ENOMEM. */
int op_fold_leaves(const op_fold *f, op_leaves *l);
/** Frees what op_fold_leaves allocated; a zeroed struct is accepted. */
void op_leaves_free(op_leaves *l);
/** @return the number of leaves of group @p g. */
static inline size_t op_group_size(const op_leaves *l, size_t g)
{
	return l->g0[g + 1] - l->g0[g];
}
/** @return the index of the first resident (not tiled) leaf. */
static inline size_t op_leaves_resident(const op_leaves *l)
{
	return l->g0[l->ngroups];
}

/**
 * Y += alpha sum c_i M_i X over the groups of @p l (not its resident
 * leaves): one pass of the engine per group, k right-hand sides.
 */
int op_groups_apply(const op_leaves *l, const pspace_exec *ex, uint32_t k, double alpha,
                    const double *X, size_t ldx, double *Y, size_t ldy);

/**
 * Y = alpha A X (accumulate == 0) or Y += alpha A X, k right-hand sides.
 * X and Y must not overlap.
 */
int op_fold_apply(const op_fold *f, const pspace_exec *ex, uint32_t k, double alpha,
                  const double *X, size_t ldx, double *Y, size_t ldy, int accumulate);

/** Z = P^{-1} R for @p k columns (a preconditioner); @p ud is the caller's. */
typedef int (*op_precond_fn)(void *ud, uint32_t k, const double *R, size_t ldr, double *Z,
                             size_t ldz);

/**
 * Preconditioned CG on (A + damping I) X = B, all k columns together (one
 * mm per iteration); @p precond may be NULL (none). opts->tol and
 * opts->max_iter must be set; iterations and residual are written back.
 */
int op_cg(const op_fold *A, const pspace_exec *ex, double damping, op_precond_fn precond, void *pud,
          uint32_t k, const double *B, size_t ldb, double *X, size_t ldx, pspace_solve_opts *opts);

/**
 * The solver behind pspace_op_solve and inverse nodes: X = (a + damping
 * I)^{-1} B, direct when @p a folds to c M + s I with M a matrix whose
 * direct solve fits the budget (per opts->method), else CG. @p opts is
 * not NULL; its out-fields are written.
 */
int op_solve(const pspace_op *a, const pspace_exec *ex, double damping, uint32_t k, const double *B,
             size_t ldb, double *X, size_t ldx, pspace_solve_opts *opts);

/** What op_lanczos computes. */
typedef enum op_lanczos_mode {
	LANCZOS_TOP = 0,    /* k algebraically largest eigenpairs */
	LANCZOS_MAXABS = 1, /* largest |eigenvalue| */
	LANCZOS_MINABS = 2, /* smallest |eigenvalue| */
} op_lanczos_mode;

/**
 * Lanczos with full reorthogonalization on symmetric A. TOP: evals[0..k)
 * decreasing, evecs (k, d) if not NULL. MAXABS / MINABS: evals[0] = the
 * |eigenvalue| (k ignored).
 */
int op_lanczos(const op_fold *A, const pspace_exec *ex, op_lanczos_mode mode, uint32_t k,
               double *evals, double *evecs, size_t ld, pspace_eig_opts *opts);

/**
 * Hutchinson estimate of trace(A) with @p probes Rademacher probes, run as
 * one mm per batch of probes. *se = standard error of the mean.
 */
int op_hutchinson(const op_fold *A, const pspace_exec *ex, uint32_t probes, uint64_t seed,
                  double *est, double *se);

/**
 * Stochastic Lanczos quadrature: *est ~ log det(A + damping I) from
 * @p probes Rademacher probes of @p steps Lanczos steps each, run in
 * batches (one mm per step); *se = standard error of the mean (slq.c).
 */
int op_slq_logdet(const op_fold *A, const pspace_exec *ex, double damping, uint32_t probes,
                  uint32_t steps, uint64_t seed, double *est, double *se);

/** @return the seed of probe @p j of a run seeded @p seed (hutchinson.c). */
uint64_t op_probe_seed(uint64_t seed, uint64_t j);

/** @return the memory budget of @p ex (NULL or 0: the default). */
size_t op_budget(const pspace_exec *ex);

/** Per-vector scratch bytes a fold application may need (k = 1), for budgeting. */
size_t op_fold_scratch(const op_fold *f);

/** Unit vectors per mm so that they, their images and the fold's temporaries fit the budget. */
uint32_t op_fold_unit_block(const op_fold *f, const pspace_exec *ex);

/**
 * Columns [j0, j0 + b) of A by one mm on unit vectors: E (b x d) is
 * scratch, Y (b x d) receives Y[jj][i] = A[i][j0 + jj] (eval.c).
 */
int op_fold_unit_band(const op_fold *f, const pspace_exec *ex, uint64_t j0, uint32_t b, double *E,
                      double *Y);

/** Writes A as a dense d x d row-major array with leading dimension @p ld (eval.c). */
int op_fold_dense(const op_fold *f, const pspace_exec *ex, double *out, size_t ld);

#endif
