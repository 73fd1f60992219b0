/*
 * Internal: the representation interface. Each kind is a table of
 * functions; operators call through the table and never switch on kinds.
 * A NULL entry means "not supported" (the public wrapper returns
 * PSPACE_ENOTSUP) except where a generic fallback is noted.
 */
#ifndef PSPACE_SRC_MAT_MAT_IMPL_H
#define PSPACE_SRC_MAT_MAT_IMPL_H

#include "common/exec.h"
#include "pspace/factored.h"
#include "pspace/mat.h"

struct pspace_tiled;

typedef struct pspace_mat_vtable {
	pspace_kind kind;
	/** Frees the kind's own state (not the base). */
	void (*destroy)(pspace_mat *m);
	/**
	 * Y += alpha M X, k right-hand sides, one pass. Required. The public
	 * pspace_mat_mm() applies its beta to Y before calling it.
	 */
	int (*mm)(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
	          size_t ldx, double *Y, size_t ldy);
	/** out[j] = V_j^T M V_j. NULL: computed from mm. */
	int (*vtmv_batch)(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
	                  size_t ldv, double *out);
	int (*trace)(pspace_mat *m, const pspace_exec *ex, double *out);
	int (*diag)(pspace_mat *m, const pspace_exec *ex, double *out);
	/**
	 * 1 when the representation can only hold a diagonal matrix (what
	 * its entries are does not matter), else 0. NULL: not diagonal.
	 * Operators use it to take diag() as the whole matrix.
	 */
	int (*is_diagonal)(const pspace_mat *m);
	/** Squared Frobenius norm. */
	int (*frob2)(pspace_mat *m, const pspace_exec *ex, double *out);
	/** Dense d x d row-major. NULL: computed from mm with identity columns. */
	int (*dense)(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld);
	/** X = (M + damping I)^{-1} B, direct. */
	int (*solve)(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
	             const double *B, size_t ldb, double *X, size_t ldx);
	/** *out = log det(M + damping I), exactly (pspace_mat_logdet). */
	int (*logdet)(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
	/** out = diag((M + damping I)^-1), exactly (pspace_mat_diaginv). */
	int (*diaginv)(pspace_mat *m, const pspace_exec *ex, double damping, double *out);
	/**
	 * X = S Z, k vectors, S S^T = (M + damping I)^-1 (cov 0) or M +
	 * damping I (cov 1) (pspace_mat_sqrt_mm; X and Z do not overlap).
	 */
	int (*sqrt_mm)(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
	               const double *Z, size_t ldz, double *X, size_t ldx);
	/** Product with a matrix of the same kind, written to the store. */
	int (*product_write)(pspace_store *s, const char *name, pspace_mat *a, pspace_mat *b,
	                     const pspace_exec *ex, const pspace_write_opts *opts);
	/**
	 * The streaming engine's view of a stored tiled matrix (Dense,
	 * BlockDiag), so operators can stream several matrices in one pass
	 * (pspace_stream_multi). NULL entry or result: not stored as tiles.
	 */
	const struct pspace_tiled *(*tiled)(const pspace_mat *m);
	/**
	 * Stored tiled kinds: 1 when the tiles form one block of d (Dense),
	 * 0 when they form one block per layer of the layout (BlockDiag).
	 */
	int single_block;
	/** Persists a resident matrix under @p name (pspace_mat_save). NULL: ENOTSUP. */
	int (*save)(pspace_mat *m, pspace_store *s, const char *name);

	/* Resident kinds (factored.h); NULL: PSPACE_ENOTSUP. */
	/** (M + damping I)^p as a new matrix. */
	int (*pow)(pspace_mat *m, double p, double damping, pspace_mat **out);
	/** Pseudo-inverse with eigenvalues <= threshold treated as 0. */
	int (*pinv)(pspace_mat *m, double threshold, pspace_mat **out);
	/** s M as a new matrix. */
	int (*scale)(pspace_mat *m, double s, pspace_mat **out);
	/** A B as a new matrix; b has the same kind and layout as a. */
	int (*product)(pspace_mat *a, pspace_mat *b, pspace_mat **out);
	/** k largest eigenpairs (evecs may be NULL). */
	int (*eig)(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
	           size_t ld);
	/** All d eigenvalues, decreasing. */
	int (*eigvals)(pspace_mat *m, const pspace_exec *ex, double *evals);
	/** Sets how solve and pow damp (pspace_kfac_set_damping; @p mode checked). */
	int (*set_damping)(pspace_mat *m, pspace_kfac_damping mode);
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
 * Allocates a zeroed matrix of @p size bytes (a kind's struct, which embeds
 * the base first) and initializes the base: refs = 1, table @p vt, a copy of
 * @p layout (or a flat layout of d when NULL), @p name copied if not NULL.
 * The caller fills its own fields and frees with pspace_mat_free(). Nothing
 * stays allocated on failure. @return 0, PSPACE_ENOMEM, or PSPACE_EDIM when
 * the layout's dimension is not @p d.
 */
int pspace_mat_alloc(pspace_mat **out, size_t size, const pspace_mat_vtable *vt, uint64_t d,
                     const pspace_layout *layout, pspace_store *s, const char *name);

/** Opens stored kinds: each returns PSPACE_ENOTSUP for kinds it does not handle. */
int pspace_dense_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_blockdiag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_identity_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);

/* Openers of the resident kinds (one per kind, registered in mat.c). */
int pspace_diag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_quasidiag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_lowrank_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_kfac_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
int pspace_ekfac_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
/** Opens a stored matrix by name (pspace_mat_open; handed to Mixed for its parts). */
typedef int (*pspace_mat_open_fn)(pspace_mat **out, pspace_store *s, const char *name);
int pspace_mixed_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info,
                      pspace_mat_open_fn open_part);

/*
 * Persisting resident kinds: a tileless catalog entry (nblocks = 0) with the
 * layout and small arrays (src/mat/resident.c).
 */
/** Begins saving @p m as @p kind under @p name; then put arrays, then pspace_writer_finish. */
int pspace_resident_save_begin(pspace_mat *m, pspace_kind kind, pspace_store *s, const char *name,
                               pspace_writer **w);
/**
 * Ends a save: finishes @p w when @p rc is 0, else removes what was begun.
 * @p w may be NULL (begin failed). @return the first error, or 0.
 */
int pspace_resident_save_end(pspace_writer *w, int rc);
/**
 * Opens the arrays of stored resident matrix @p info, which must be of
 * @p kind (else PSPACE_ENOTSUP, so that the opener table can try another
 * kind): a reader and its layout (a flat one when none was stored).
 * EFORMAT in a stored layout is ECORRUPT. On failure *r and *layout are NULL.
 */
int pspace_resident_open_begin(pspace_store *s, const pspace_matrix_info *info, pspace_kind kind,
                               pspace_reader **r, pspace_layout **layout);
/**
 * Reads array @p name as doubles into a new malloc'd buffer; checks its
 * element count equals @p count (ECORRUPT naming the array otherwise).
 */
int pspace_resident_read(pspace_reader *r, const char *name, uint64_t count, double **out);

/** The is_diagonal entry of kinds that are always diagonal: @return 1. */
int pspace_mat_always_diagonal(const pspace_mat *m);
/** @return 1 if @p m is diagonal by its representation (vtable is_diagonal), else 0. */
int pspace_mat_is_diagonal(const pspace_mat *m);

/** @return the engine's view of @p m if it is stored as tiles, else NULL. */
const struct pspace_tiled *pspace_mat_tiled(const pspace_mat *m);

#endif
