/*
 * Stored (tiled) matrices, the part Dense and BlockDiag share: opening,
 * operations forwarded to the streaming engine, and the direct damped
 * solve of each diagonal block through LAPACK.
 */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"
#include "mat/factor.h"
#include "mat/stored.h"
#include "pspace/mat.h"

/* ---- opening ---------------------------------------------------------------- */

/* The layout recorded with the matrix, or NULL (flat) when none was. */
static int load_layout(pspace_store *s, const pspace_matrix_info *info, pspace_layout **out)
{
	char *text = NULL;
	int rc;

	*out = NULL;
	if (info->layout_id == 0)
		return 0;
	rc = pspace_store_layout(&text, s, info->layout_id);
	if (rc == 0)
		rc = pspace_layout_parse(out, text, "stored layout");
	if (rc == PSPACE_EFORMAT)
		rc = PSPACE_ECORRUPT;
	free(text);
	return rc;
}

/* One block (vt->single_block, Dense) or one block per layer, of the layer's size. */
static int check_blocks(const pspace_stored *m)
{
	const pspace_tiled *t = &m->t;
	const pspace_layout *l = m->base.layout;
	size_t n = pspace_layout_nlayers(l);

	if (m->base.vt->single_block) {
		if (t->info.nblocks != 1)
			return pspace_err_set(PSPACE_ECORRUPT, "%s matrix with %u blocks",
			                      pspace_kind_name(m->base.vt->kind), t->info.nblocks);
		return 0;
	}
	if (t->info.nblocks != n)
		return pspace_err_set(PSPACE_ECORRUPT, "%u blocks but %zu layers in the layout",
		                      t->info.nblocks, n);
	for (size_t i = 0; i < n; i++)
		if (pspace_layout_layer(l, i)->size != t->block_dim[i])
			return pspace_err_set(
			    PSPACE_ECORRUPT, "block %zu has dimension %llu, layer %s has %llu", i,
			    (unsigned long long)t->block_dim[i], pspace_layout_layer(l, i)->name,
			    (unsigned long long)pspace_layout_layer(l, i)->size);
	return 0;
}

int pspace_stored_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info,
                       const pspace_mat_vtable *vt)
{
	pspace_tiled t;
	pspace_layout *layout = NULL;
	int rc;

	*out = NULL;
	memset(&t, 0, sizeof(t));
	if (info->kind != vt->kind)
		return pspace_err_set(PSPACE_ENOTSUP, "kind %s is not %s",
		                      pspace_kind_name(info->kind), pspace_kind_name(vt->kind));
	rc = pspace_tiled_open(&t, s, info->name);
	if (rc == 0)
		rc = load_layout(s, info, &layout);
	if (rc == 0)
		rc = pspace_mat_alloc(out, sizeof(pspace_stored), vt, t.info.d, layout, s,
		                      info->name);
	if (rc == PSPACE_EDIM)
		rc = PSPACE_ECORRUPT;
	if (rc != 0) {
		pspace_tiled_close(&t);
		goto out;
	}
	/* the matrix owns the handle from here: pspace_mat_free closes it */
	pspace_stored_of(*out)->t = t;
	rc = check_blocks(pspace_stored_of(*out));
	if (rc != 0) {
		pspace_mat_free(*out);
		*out = NULL;
	}
out:
	pspace_layout_free(layout);
	return rc;
}

const pspace_tiled *pspace_stored_tiled(const pspace_mat *m)
{
	return &((const pspace_stored *)m)->t;
}

void pspace_stored_destroy(pspace_mat *m)
{
	pspace_tiled_close(&pspace_stored_of(m)->t);
}

/* ---- streamed operations ----------------------------------------------------- */

int pspace_stored_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha,
                     const double *X, size_t ldx, double *Y, size_t ldy)
{
	return pspace_shard_mm(&pspace_stored_of(m)->t, ex, k, alpha, X, ldx, Y, ldy);
}

int pspace_stored_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return pspace_shard_trace(&pspace_stored_of(m)->t, ex, out);
}

int pspace_stored_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return pspace_shard_diag(&pspace_stored_of(m)->t, ex, out);
}

int pspace_stored_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return pspace_shard_frob2(&pspace_stored_of(m)->t, ex, out);
}

int pspace_stored_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	const pspace_tiled *t = &pspace_stored_of(m)->t;

	/* The stream writes the blocks only: with several, the rest is 0. */
	if (t->info.nblocks > 1)
		for (uint64_t i = 0; i < m->d; i++)
			memset(out + i * ld, 0, m->d * sizeof(*out));
	return pspace_shard_dense(t, ex, UINT32_MAX, out, ld);
}

/* ---- direct solve -------------------------------------------------------------- */

/* Bytes a direct solve of an n x n block needs: the block in double, the
 * pivots and LAPACK's sytrf workspace (n x 64). */
static uint64_t solve_bytes(uint64_t n)
{
	return n * n * sizeof(double) + n * (64 * sizeof(double) + sizeof(lapack_int));
}

/* The block, in double, with damping added to its diagonal. */
static int load_block(pspace_stored *m, const pspace_exec *ex, uint32_t b, double damping,
                      double *A)
{
	uint64_t n = m->t.block_dim[b];
	int rc = pspace_shard_dense(&m->t, ex, b, A, n);

	for (uint64_t i = 0; rc == 0 && i < n; i++)
		A[i * n + i] += damping;
	return rc;
}

/*
 * Factors symmetric A (column-major = row-major here) and solves the k
 * columns of X in place: Cholesky, else LDL^T, refusing singular blocks.
 */
static int solve_sym(pspace_stored *m, const pspace_exec *ex, uint32_t b, double damping, double *A,
                     lapack_int *ipiv, uint32_t k, double *X, size_t ldx)
{
	lapack_int n = (lapack_int)m->t.block_dim[b], info;
	double anorm, rcond = 0;
	int rc;

	info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, A, n);
	if (info == 0) {
		info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', n, (lapack_int)k, A, n, X,
		                      (lapack_int)ldx);
		goto out;
	}
	if (info < 0)
		goto out;
	/* Not positive definite: Bunch-Kaufman on a fresh copy. */
	rc = load_block(m, ex, b, damping, A);
	if (rc != 0)
		return rc;
	anorm = LAPACKE_dlansy(LAPACK_COL_MAJOR, '1', 'L', n, A, n);
	info = LAPACKE_dsytrf(LAPACK_COL_MAJOR, 'L', n, A, n, ipiv);
	if (info > 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "direct solve: block %u is singular (zero pivot %d in LDL^T)"
		                      " with damping %g; add damping",
		                      b, (int)info, damping);
	if (info == 0)
		info = LAPACKE_dsycon(LAPACK_COL_MAJOR, 'L', n, A, n, ipiv, anorm, &rcond);
	if (info == 0 && !(rcond > (double)n * DBL_EPSILON))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "direct solve: block %u is singular to working precision "
		                      "(reciprocal condition %.3g) with damping %g; add damping",
		                      b, rcond, damping);
	if (info == 0)
		info = LAPACKE_dsytrs(LAPACK_COL_MAJOR, 'L', n, (lapack_int)k, A, n, ipiv, X,
		                      (lapack_int)ldx);
out:
	if (info != 0)
		return pspace_err_set(PSPACE_ENUMERIC, "direct solve: block %u: LAPACK error %d", b,
		                      (int)info);
	return 0;
}

/* Non-symmetric block (a stored product): LU. Row-major A is A^T in column
 * major, so solve with the transpose. */
static int solve_gen(uint32_t b, lapack_int n, double *A, lapack_int *ipiv, uint32_t k, double *X,
                     size_t ldx)
{
	lapack_int info = LAPACKE_dgetrf(LAPACK_COL_MAJOR, n, n, A, n, ipiv);

	if (info > 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "direct solve: block %u is singular (zero pivot %d in LU)", b,
		                      (int)info);
	if (info == 0)
		info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'T', n, (lapack_int)k, A, n, ipiv, X,
		                      (lapack_int)ldx);
	if (info != 0)
		return pspace_err_set(PSPACE_ENUMERIC, "direct solve: block %u: LAPACK error %d", b,
		                      (int)info);
	return 0;
}

int pspace_stored_solve(pspace_mat *mat, const pspace_exec *ex, double damping, uint32_t k,
                        const double *B, size_t ldb, double *X, size_t ldx)
{
	pspace_stored *m = pspace_stored_of(mat);
	const pspace_tiled *t = &m->t;
	uint64_t nmax = 0;
	double *A = NULL;
	lapack_int *ipiv = NULL;
	char fname[PSPACE_NAME_MAX + 1];
	int rc = 0;

	/* A stored factor of this matrix and damping: two sweeps over it, at any size. */
	if (pspace_factor_lookup(fname, sizeof(fname), t->s, t->info.id, damping) == 0)
		return pspace_factor_solve(t->s, fname, ex, k, B, ldb, X, ldx);
	pspace_errclear();
	/* Refuse before touching X if any block is too large. */
	for (uint32_t b = 0; b < t->info.nblocks; b++) {
		uint64_t n = t->block_dim[b];

		char need[32], have[32];

		if (solve_bytes(n) > ex->mem_budget)
			return pspace_err_set(
			    PSPACE_ENOMEM,
			    "matrix %s: direct solve of block %u (%llu x %llu) needs %s, more "
			    "than the memory budget of %s; CG (pspace_op_solve) works at any size",
			    mat->name, b, (unsigned long long)n, (unsigned long long)n,
			    pspace_fmt_bytes(need, sizeof(need), solve_bytes(n)),
			    pspace_fmt_bytes(have, sizeof(have), ex->mem_budget));
		if ((uint64_t)(lapack_int)n != n || (uint64_t)(lapack_int)(n * n) != n * n)
			return pspace_err_set(PSPACE_ENOTSUP,
			                      "matrix %s: block %u too large for LAPACK", mat->name,
			                      b);
		if (n > nmax)
			nmax = n;
	}
	A = malloc(nmax * nmax * sizeof(*A));
	ipiv = malloc(nmax * sizeof(*ipiv));
	if (!A || !ipiv) {
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: direct solve: out of memory",
		                    mat->name);
		goto out;
	}
	for (uint32_t j = 0; j < k; j++)
		if (X + j * ldx != B + j * ldb)
			memmove(X + j * ldx, B + j * ldb, mat->d * sizeof(*X));
	for (uint32_t b = 0; b < t->info.nblocks; b++) {
		uint64_t n = t->block_dim[b], off = t->block_off[b];

		rc = load_block(m, ex, b, damping, A);
		if (rc != 0)
			break;
		if (t->info.symmetric)
			rc = solve_sym(m, ex, b, damping, A, ipiv, k, X + off, ldx);
		else
			rc = solve_gen(b, (lapack_int)n, A, ipiv, k, X + off, ldx);
		if (rc != 0)
			break;
	}
	if (rc != 0)
		rc = pspace_err_prefix(rc, "matrix %s", mat->name);
out:
	free(ipiv);
	free(A);
	return rc;
}
