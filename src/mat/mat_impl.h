/*
 * Internal: the representation interface. Each kind is a table of
 * functions; operators call through the table and never switch on kinds.
 * A NULL entry means "not supported" (the public wrapper returns
 * PSPACE_ENOTSUP) except where a generic fallback is noted.
 */
#ifndef PSPACE_SRC_MAT_MAT_IMPL_H
#define PSPACE_SRC_MAT_MAT_IMPL_H

#include "pspace/mat.h"

struct pspace_tiled;

typedef struct pspace_mat_vtable {
	pspace_kind kind;
	/** Frees the kind's own state (not the base). */
	void (*destroy)(pspace_mat *m);
	/** Y += alpha M X, k right-hand sides, one pass. Required. */
	int (*mm)(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
	          size_t ldx, double *Y, size_t ldy);
	/** out[j] = V_j^T M V_j. NULL: computed from mm. */
	int (*vtmv_batch)(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
	                  size_t ldv, double *out);
	int (*trace)(pspace_mat *m, const pspace_exec *ex, double *out);
	int (*diag)(pspace_mat *m, const pspace_exec *ex, double *out);
	/** Squared Frobenius norm. */
	int (*frob2)(pspace_mat *m, const pspace_exec *ex, double *out);
	/** Dense d x d row-major. NULL: computed from mm with identity columns. */
	int (*dense)(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld);
	/** X = (M + damping I)^{-1} B, direct. */
	int (*solve)(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
	             const double *B, size_t ldb, double *X, size_t ldx);
	/** Product with a matrix of the same kind, written to the store. */
	int (*product_write)(pspace_store *s, const char *name, pspace_mat *a, pspace_mat *b,
	                     const pspace_exec *ex, const pspace_write_opts *opts);
	/**
	 * The streaming engine's view of a stored tiled matrix (Dense,
	 * BlockDiag), so operators can stream several matrices in one pass
	 * (pspace_stream_multi). NULL entry or result: not stored as tiles.
	 */
	const struct pspace_tiled *(*tiled)(const pspace_mat *m);
	/** Persists a resident matrix under @p name (pspace_mat_save). NULL: ENOTSUP. */
	int (*save)(pspace_mat *m, pspace_store *s, const char *name);
} pspace_mat_vtable;

/** The base every kind embeds first. */
struct pspace_mat {
	const pspace_mat_vtable *vt;
	int refs;
	uint64_t d;
	pspace_layout *layout; /* owned; never NULL */
	pspace_store *store;   /* stored kinds: not owned */
	char *name;            /* stored kinds: owned */
};

/**
 * Initializes the base: refs = 1, a copy of @p layout (or a flat layout of
 * d when NULL), name copied if not NULL. @return 0 or PSPACE_ENOMEM.
 */
int pspace_mat_base_init(pspace_mat *m, const pspace_mat_vtable *vt, uint64_t d,
                         const pspace_layout *layout, pspace_store *s, const char *name);

/** Opens stored kinds: each returns PSPACE_ENOTSUP for kinds it does not handle. */
int pspace_dense_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_blockdiag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_identity_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);

/** @return the engine's view of @p m if it is stored as tiles, else NULL. */
const struct pspace_tiled *pspace_mat_tiled(const pspace_mat *m);

/** Resolves the execution settings: threads >= 1, mem_budget > 0. */
void pspace_exec_resolve(const pspace_exec *in, pspace_exec *out);

#endif
