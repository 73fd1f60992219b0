/*
 * Kernels that reduce or copy tiles: diag and trace (diagonal tiles only,
 * looked up directly), the squared Frobenius norm (every tile, mirrored
 * tiles twice) and materializing a block or the whole matrix as dense.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/engine.h"
#include "kernel/stream.h"

/* Element (i, j) of a tile as double. */
static double at(const pspace_stream_tile *st, uint32_t i, uint32_t j)
{
	size_t o = (size_t)i * st->cols + j;

	return st->dtype == PSPACE_F64 ? ((const double *)st->data)[o]
	                               : (double)((const float *)st->data)[o];
}

/* ---- diag ----------------------------------------------------------------- */

static int diag_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	const pspace_stream_tile *st = &tiles[0];
	double *out = ud;

	(void)ws;
	if (!st->data)
		return 0;
	for (uint32_t i = 0; i < st->rows; i++)
		out[st->r0 + i] = at(st, i, i);
	return 0;
}

int pspace_stream_diag(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	pspace_stream_kernel k = {.tile = diag_tile, .diagonal_only = 1};

	if (!t || !t->block_dim || !out)
		return pspace_err_set(PSPACE_EINVAL, "stream diag: no matrix or no output");
	memset(out, 0, t->info.d * sizeof(*out));
	return pspace_stream_run(t, ex, &k, out);
}

/* ---- trace and Frobenius norm: per-worker partial sums --------------------- */

typedef struct sum_ctx {
	double total;
} sum_ctx;

static int trace_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	const pspace_stream_tile *st = &tiles[0];
	double *acc = ws, s = 0.0;

	(void)ud;
	if (!st->data)
		return 0;
	for (uint32_t i = 0; i < st->rows; i++)
		s += at(st, i, i);
	*acc += s;
	return 0;
}

static int frob_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	const pspace_stream_tile *st = &tiles[0];
	size_t len = (size_t)st->rows * st->cols;
	double *acc = ws, s = 0.0;

	(void)ud;
	if (!st->data)
		return 0;
	if (st->dtype == PSPACE_F64) {
		const double *p = st->data;

		for (size_t i = 0; i < len; i++)
			s += p[i] * p[i];
	} else {
		const float *p = st->data;

		for (size_t i = 0; i < len; i++)
			s += (double)p[i] * p[i];
	}
	*acc += st->mirrored ? 2.0 * s : s;
	return 0;
}

static int sum_finish(void *ws, void *ud)
{
	((sum_ctx *)ud)->total += *(double *)ws;
	return 0;
}

static int run_sum(const pspace_tiled *t, const pspace_exec *ex, pspace_stream_kernel *k,
                   double *out)
{
	sum_ctx c = {0.0};
	int rc;

	if (!t || !t->block_dim || !out)
		return pspace_err_set(PSPACE_EINVAL, "stream: no matrix or no output");
	k->worker_size = sizeof(double);
	k->finish = sum_finish;
	rc = pspace_stream_run(t, ex, k, &c);
	*out = rc == 0 ? c.total : 0.0;
	return rc;
}

int pspace_stream_trace(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	pspace_stream_kernel k = {.tile = trace_tile, .diagonal_only = 1};

	return run_sum(t, ex, &k, out);
}

int pspace_stream_frob2(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	pspace_stream_kernel k = {.tile = frob_tile};

	return run_sum(t, ex, &k, out);
}

/* ---- dense ------------------------------------------------------------------ */

typedef struct dense_ctx {
	double *out;
	size_t ld;
	uint64_t off; /* global index of out's (0, 0) */
} dense_ctx;

static int dense_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	const pspace_stream_tile *st = &tiles[0];
	dense_ctx *c = ud;
	uint64_t r0 = st->r0 - c->off, c0 = st->c0 - c->off;

	(void)ws;
	if (!st->data)
		return 0;
	for (uint32_t i = 0; i < st->rows; i++) {
		double *row = c->out + (r0 + i) * c->ld + c0;

		for (uint32_t j = 0; j < st->cols; j++)
			row[j] = at(st, i, j);
	}
	if (st->mirrored)
		for (uint32_t i = 0; i < st->rows; i++)
			for (uint32_t j = 0; j < st->cols; j++)
				c->out[(c0 + j) * c->ld + r0 + i] = at(st, i, j);
	return 0;
}

int pspace_stream_dense(const pspace_tiled *t, const pspace_exec *ex, uint32_t block, double *out,
                        size_t ld)
{
	pspace_stream_kernel k = {.tile = dense_tile};
	const pspace_tiled *one[1] = {t};
	dense_ctx c;
	uint32_t bfirst = 0, blast;
	uint64_t dim;

	if (!t || !t->block_dim || !out)
		return pspace_err_set(PSPACE_EINVAL, "stream dense: no matrix or no output");
	blast = t->info.nblocks - 1;
	dim = t->info.d;
	c.off = 0;
	if (block != UINT32_MAX) {
		if (block >= t->info.nblocks)
			return pspace_err_set(PSPACE_EINVAL,
			                      "stream dense: matrix %s has no block %u (%u blocks)",
			                      t->info.name, block, t->info.nblocks);
		bfirst = blast = block;
		dim = t->block_dim[block];
		c.off = t->block_off[block];
	}
	if (ld < dim)
		return pspace_err_set(PSPACE_EINVAL,
		                      "stream dense: leading dimension %zu < %llu columns", ld,
		                      (unsigned long long)dim);
	c.out = out;
	c.ld = ld;
	for (uint64_t i = 0; i < dim; i++)
		memset(out + i * ld, 0, dim * sizeof(*out));
	return pspace_stream_blocks(one, 1, ex, &k, &c, bfirst, blast);
}
