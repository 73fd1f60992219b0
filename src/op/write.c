/*
 * Lazy operators: materializing an expression into the store as a new
 * Dense matrix, tile by tile, never the whole matrix in RAM.
 *
 * A linear combination of stored Dense matrices of one tiling plus a
 * shift, written with that tile edge, takes its tiles from one pass that
 * reads each tile of each matrix once (pspace_stream_pull): tile (r, c)
 * of the result is sum_i c_i T_i, plus s on the diagonal of the diagonal
 * tiles. Anything else comes from row bands of A: rows [r0, r0 + h) of
 * symmetric A are the columns A E_r, computed by one mm with h unit
 * vectors, h as many tile rows as the memory budget holds, and kept while
 * the writer asks for the tiles of those rows. A stored Dense is
 * symmetric, so expressions with products are refused (the inverse of a
 * symmetric matrix is fine).
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/stream.h"
#include "op/op_impl.h"
#include "pspace/shard.h"

typedef struct write_ctx {
	const op_fold *f;
	const pspace_exec *ex;
	uint32_t edge; /* tile edge of the output */
	/* one pass over a group */
	pspace_stream_pull *pull;
	/* row bands */
	double *E, *Y;
	uint32_t cap;  /* rows the band buffers hold */
	uint64_t r0;   /* cached band: rows [r0, r0 + rows) */
	uint32_t rows; /* 0: none cached */
} write_ctx;

static int pull_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols, double *tile)
{
	write_ctx *w = ud;
	uint32_t row = (uint32_t)(r0 / w->edge), col = (uint32_t)(c0 / w->edge);
	int rc = pspace_stream_pull_tile(w->pull, 0, row, col, tile);

	if (rc == 0 && row == col)
		for (uint32_t i = 0; i < rows && i < cols; i++)
			tile[(size_t)i * cols + i] += w->f->s;
	return rc;
}

/* Band height: as many tile rows as the budget holds for unit vectors, at least one. */
static uint32_t band_rows(const write_ctx *w)
{
	uint32_t b = op_fold_unit_block(w->f, w->ex);

	return b < w->edge ? w->edge : b - b % w->edge;
}

static int band_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols, double *tile)
{
	write_ctx *w = ud;
	uint64_t d = w->f->d;
	uint32_t i, j;
	int rc;

	if (w->rows == 0 || r0 < w->r0 || r0 + rows > w->r0 + w->rows) {
		uint32_t h = w->cap ? w->cap : band_rows(w);

		if (!w->cap) {
			w->E = malloc((size_t)h * d * sizeof(double));
			w->Y = malloc((size_t)h * d * sizeof(double));
			if (!w->E || !w->Y)
				return pspace_err_set(PSPACE_ENOMEM,
				                      "op: out of memory for a band of %u rows", h);
			w->cap = h;
		}
		if (h > d - r0)
			h = (uint32_t)(d - r0);
		w->rows = 0;
		rc = op_fold_unit_band(w->f, w->ex, r0, h, w->E, w->Y);
		if (rc)
			return rc;
		w->r0 = r0;
		w->rows = h;
	}
	/* Y[i][c] = A[c][r0 + i] = A[r0 + i][c] by symmetry. */
	for (i = 0; i < rows; i++)
		for (j = 0; j < cols; j++)
			tile[(size_t)i * cols + j] = w->Y[(size_t)(r0 - w->r0 + i) * d + c0 + j];
	return 0;
}

/*
 * Starts the one pass when @p f is c_1 M_1 + ... + s I over stored
 * matrices of one tiling that a Dense output of edge w->edge shares, and
 * the map of @p s has room for the result while their readers are open
 * (the map cannot grow then). Leaves w->pull NULL otherwise.
 */
static int start_pull(write_ctx *w, const op_fold *f, pspace_store *s)
{
	const pspace_tiled *t0;
	pspace_store_stat st;
	uint64_t nt, need;
	op_leaves l;
	int rc;

	if (!op_fold_is_linear(f))
		return 0;
	rc = op_fold_leaves(f, &l);
	if (rc)
		return rc;
	if (l.ngroups != 1 || op_leaves_resident(&l) != l.n)
		goto out;
	t0 = l.t[0];
	if (t0->info.nblocks != 1 || !t0->info.symmetric || t0->info.tile != w->edge)
		goto out;
	nt = (t0->info.d + w->edge - 1) / w->edge;
	need = nt * (nt + 1) / 2 * ((uint64_t)w->edge * w->edge * sizeof(double) + 4096);
	if (pspace_store_stat_get(&st, s) != 0) {
		pspace_errclear();
		goto out;
	}
	if (st.map_bytes < st.used_bytes || st.map_bytes - st.used_bytes < 2 * need)
		goto out;
	rc = pspace_stream_pull_start(&w->pull, l.t, l.n, l.c, w->ex);
out:
	op_leaves_free(&l);
	return rc;
}

/* The layout of the first matrix named, if any (NULL: a flat one). */
static const pspace_layout *first_layout(const op_fold *f)
{
	for (size_t i = 0; i < f->n; i++)
		for (size_t j = 0; j < f->t[i].n; j++)
			if (f->t[i].f[j].type == FACTOR_MAT)
				return pspace_mat_layout(f->t[i].f[j].m);
	return NULL;
}

int pspace_op_write(pspace_op *a, const pspace_exec *ex, pspace_store *s, const char *name,
                    const pspace_write_opts *opts)
{
	op_fold *f = NULL;
	write_ctx w;
	size_t i;
	int rc;

	memset(&w, 0, sizeof(w));
	if (!a || !s || !name)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to write");
	if (pspace_store_shard(s) && pspace_store_shard(s)->nranks > 1)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "op: writing %s: store %s is one shard of a sharded store",
		                      name, pspace_store_path(s));
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	/* A stored Dense is symmetric (upper tiles only): a product of symmetric
	 * matrices is not, so it cannot be written this way. */
	for (i = 0; i < f->n; i++)
		if (f->t[i].n > 1) {
			rc =
			    pspace_err_set(PSPACE_ENOTSUP,
			                   "op: writing %s: the expression has a product, which is "
			                   "not symmetric in general; write products of two stored "
			                   "matrices with pspace_mat_product_write",
			                   name);
			goto out;
		}
	w.f = f;
	w.ex = ex;
	w.edge = opts && opts->tile ? opts->tile : PSPACE_DEFAULT_TILE;
	rc = start_pull(&w, f, s);
	if (rc)
		goto out;
	rc = pspace_tiled_write(s, name, PSPACE_KIND_DENSE, first_layout(f),
	                        w.pull ? pull_tile : band_tile, &w, opts, NULL);
	if (rc)
		pspace_err_prefix(rc, "op: writing %s", name);
out:
	pspace_stream_pull_free(w.pull);
	free(w.Y);
	free(w.E);
	op_fold_free(f);
	return rc;
}
