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
 * matrix are applied together, so each stored matrix is streamed once per
 * evaluation.
 *
 * The tree is immutable once built; a fold borrows pointers from the tree
 * and lives no longer than the evaluation that made it.
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

struct pspace_op {
	int refs;
	op_type type;
	uint64_t d;
	double s;               /* IDENT: scale; SCALE: factor; INVERSE: damping */
	pspace_mat *m;          /* MAT: referenced */
	pspace_op *a, *b;       /* operands: referenced */
	pspace_solve_opts opts; /* INVERSE: copied, opts.precond referenced */
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
 * For a linear fold: the distinct matrices and their summed coefficients.
 * *mats and *coefs are malloc'd (caller frees); *n may be 0.
 */
int op_fold_leaves(const op_fold *f, pspace_mat ***mats, double **coefs, size_t *n);

/**
 * Y = alpha A X (accumulate == 0) or Y += alpha A X, k right-hand sides.
 * X and Y must not overlap.
 */
int op_fold_apply(const op_fold *f, const pspace_exec *ex, uint32_t k, double alpha,
                  const double *X, size_t ldx, double *Y, size_t ldy, int accumulate);

/** Writes the text of @p f at buf + *pos (bounded by cap), advancing *pos. */
void op_fold_describe(const op_fold *f, char *buf, size_t cap, size_t *pos);

/**
 * Preconditioned CG on (A + damping I) X = B, all k columns together (one
 * mm per iteration); @p precond may be NULL.
 */
int op_cg(const op_fold *A, const pspace_exec *ex, double damping, uint32_t k, const double *B,
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

/** @return the memory budget of @p ex (NULL or 0: the default). */
size_t op_budget(const pspace_exec *ex);

/** Per-vector scratch bytes a fold application may need (k = 1), for budgeting. */
size_t op_fold_scratch(const op_fold *f);

#endif
