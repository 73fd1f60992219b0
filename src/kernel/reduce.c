/*
 * Kernels that reduce or copy tiles: diag and trace (diagonal tiles only,
 * looked up directly), the squared Frobenius norm (every tile, mirrored
 * tiles twice) of one matrix or of a linear combination of matrices of the
 * same tiling, and materializing a block or the whole matrix as dense.
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
	pspace_stream_kernel k = {.tile = frob_tile, .any_order = 1};

	return run_sum(t, ex, &k, out);
}

/* ---- Frobenius norm of a linear combination ------------------------------- */

typedef struct comb_ctx {
	const double *alpha; /* one per matrix */
	size_t n;
	uint32_t edge;
	double *diag; /* NULL, or d entries */
	double frob2, trace;
} comb_ctx;

typedef struct comb_ws {
	double *c; /* edge x edge: the combined tile */
	double frob2, trace;
} comb_ws;

static int comb_init(void *ws, void *ud)
{
	comb_ws *w = ws;
	const comb_ctx *c = ud;

	w->c = malloc((size_t)c->edge * c->edge * sizeof(double));
	if (!w->c)
		return pspace_err_set(PSPACE_ENOMEM, "stream: out of memory for a %u x %u tile",
		                      c->edge, c->edge);
	return 0;
}

static void comb_free(void *ws, void *ud)
{
	(void)ud;
	free(((comb_ws *)ws)->c);
}

/* C = sum_i alpha_i T_i over one tile address (ld = cols). @return 0 if all absent. */
void pspace_stripes_init(pspace_stripe *s)
{
	for (int i = 0; i < PSPACE_STRIPES; i++)
		pthread_mutex_init(&s[i].mu, NULL);
}

void pspace_stripes_destroy(pspace_stripe *s)
{
	for (int i = 0; i < PSPACE_STRIPES; i++)
		pthread_mutex_destroy(&s[i].mu);
}

int pspace_stream_combine(const pspace_stream_tile *tiles, size_t n, const double *alpha, double *C)
{
	size_t len = (size_t)tiles[0].rows * tiles[0].cols;
	int any = 0;

	memset(C, 0, len * sizeof(*C));
	for (size_t i = 0; i < n; i++) {
		const double a = alpha[i];

		if (!tiles[i].data || a == 0.0)
			continue;
		any = 1;
		if (tiles[i].dtype == PSPACE_F64) {
			const double *p = tiles[i].data;

			for (size_t e = 0; e < len; e++)
				C[e] += a * p[e];
		} else {
			const float *p = tiles[i].data;

			for (size_t e = 0; e < len; e++)
				C[e] += a * (double)p[e];
		}
	}
	return any;
}

static int comb_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	comb_ws *w = ws;
	comb_ctx *c = ud;
	const pspace_stream_tile *st = &tiles[0];
	size_t len = (size_t)st->rows * st->cols;
	double s = 0.0;

	if (!pspace_stream_combine(tiles, c->n, c->alpha, w->c))
		return 0;
	for (size_t e = 0; e < len; e++)
		s += w->c[e] * w->c[e];
	w->frob2 += st->mirrored ? 2.0 * s : s;
	if (st->row == st->col) {
		for (uint32_t i = 0; i < st->rows; i++) {
			double v = w->c[(size_t)i * st->cols + i];

			w->trace += v;
			/* each diagonal tile is handed to one worker only */
			if (c->diag)
				c->diag[st->r0 + i] = v;
		}
	}
	return 0;
}

static int comb_finish(void *ws, void *ud)
{
	comb_ws *w = ws;
	comb_ctx *c = ud;

	c->frob2 += w->frob2;
	c->trace += w->trace;
	return 0;
}

int pspace_stream_frob2_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                              const pspace_exec *ex, double *frob2, double *trace, double *diag)
{
	pspace_stream_kernel k = {
	    .worker_size = sizeof(comb_ws),
	    .worker_init = comb_init,
	    .tile = comb_tile,
	    .finish = comb_finish,
	    .worker_free = comb_free,
	    .want = 0,
	    .any_order = 1,
	};
	comb_ctx c = {alpha, n, 0, diag, 0.0, 0.0};
	pspace_exec ex2;
	size_t per;
	int rc;

	if (!t || n == 0 || !t[0] || !t[0]->block_dim || !alpha || !frob2 || !trace)
		return pspace_err_set(PSPACE_EINVAL, "stream: no matrix or no output");
	c.edge = t[0]->info.tile;
	if (diag)
		memset(diag, 0, t[0]->info.d * sizeof(*diag));
	/* The combined tile of each worker counts against the budget too. */
	ex2.threads = pspace_stream_threads(ex);
	ex2.mem_budget = pspace_stream_budget(ex);
	per = (size_t)c.edge * c.edge * sizeof(double);
	if (ex2.mem_budget / per < (size_t)ex2.threads)
		ex2.threads = ex2.mem_budget / per ? (int)(ex2.mem_budget / per) : 1;
	rc = pspace_stream_multi(t, n, &ex2, &k, &c);
	*frob2 = rc == 0 ? c.frob2 : 0.0;
	*trace = rc == 0 ? c.trace : 0.0;
	return rc;
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
