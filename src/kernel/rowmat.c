/*
 * Passes over a stored row matrix D (r x d, see rowmat.h).
 *
 * The row passes run on the streaming engine. f32 tiles are multiplied in
 * float by BLIS (the vector slices converted per tile into worker-local
 * buffers) and accumulated in double, as the mm kernel does; f64 tiles
 * directly. A tile's rows beyond r (padding of the last tile row) are cut
 * off before any product. Results shared by the workers: the r-sized ones
 * (U, row norms) are summed per worker and merged when the pass ends; the
 * d-sized ones (Y, column sums) are added tile by tile under the mutex of
 * the tile's column strip (PSPACE_STRIPES stripes), since streaming order puts the
 * tiles of one strip a whole tile row apart.
 */
#include "kernel/rowmat.h"

#include <blis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/error.h"
#include "kernel/engine.h"

typedef struct rm_ctx {
	const pspace_tiled *t;
	uint64_t r;
	uint32_t k, edge;
	double alpha;
	const double *X; /* project: the vectors; expand: U (k x r) */
	size_t ldx;
	double *out; /* project: U; expand: Y; sumsq: rowsq; read: D */
	size_t ldo;
	double *colsq;
	pspace_stripe locks[PSPACE_STRIPES];
} rm_ctx;

typedef struct rm_ws {
	rntm_t rntm;
	double *acc; /* project: k x r; sumsq: r */
	double *yd;  /* k x edge doubles */
	float *xf;   /* k x edge floats: the vector slice */
	float *yf;   /* k x edge floats: one product */
	int has_uf;
	uint32_t uf_row; /* expand: the tile row whose U slice xf holds */
} rm_ws;

int pspace_rowmat_check(const pspace_tiled *t, uint64_t r)
{
	if (t->info.nblocks != 1 || t->info.symmetric || r == 0 || r > t->info.d)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s: %llu rows are not a row matrix of "
		                      "%u block(s) of d = %llu%s",
		                      pspace_store_path(t->s), t->info.name, (unsigned long long)r,
		                      t->info.nblocks, (unsigned long long)t->info.d,
		                      t->info.symmetric ? ", symmetric" : "");
	return 0;
}

/* Rows of tile @p st that belong to D (the padding of the last tile row cut off). */
static uint32_t live_rows(const rm_ctx *c, const pspace_stream_tile *st)
{
	if (st->r0 >= c->r)
		return 0;
	return c->r - st->r0 < st->rows ? (uint32_t)(c->r - st->r0) : st->rows;
}

static void ctx_init(rm_ctx *c, const pspace_tiled *t, uint64_t r, uint32_t k)
{
	memset(c, 0, sizeof(*c));
	c->t = t;
	c->r = r;
	c->k = k;
	c->edge = t->info.tile;
	pspace_stripes_init(c->locks);
}

static void ctx_destroy(rm_ctx *c)
{
	pspace_stripes_destroy(c->locks);
}

static int ws_init(void *ws, void *ud, size_t acc)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;
	size_t ke = (size_t)(c->k ? c->k : 1) * c->edge;

	bli_rntm_init(&w->rntm);
	bli_rntm_set_num_threads(1, &w->rntm);
	w->acc = acc ? calloc(acc, sizeof(double)) : NULL;
	w->yd = malloc(ke * sizeof(double));
	w->xf = malloc(ke * sizeof(float));
	w->yf = malloc(ke * sizeof(float));
	if ((acc && !w->acc) || !w->yd || !w->xf || !w->yf)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "row matrix: out of memory for worker scratch");
	return 0;
}

static void ws_free(void *ws, void *ud)
{
	rm_ws *w = ws;

	(void)ud;
	free(w->yf);
	free(w->xf);
	free(w->yd);
	free(w->acc);
}

/* out[j * ldo + off + i] += a * buf[j * edge + i] under the lock of strip @p strip. */
static void add_locked(rm_ctx *c, uint32_t strip, double *out, size_t ldo, uint64_t off,
                       uint32_t len, double a, const double *buf)
{
	pthread_mutex_t *mu = pspace_stripe_mu(c->locks, strip);

	pthread_mutex_lock(mu);
	for (uint32_t j = 0; j < c->k; j++) {
		double *y = out + j * ldo + off;
		const double *b = buf + (size_t)j * c->edge;

		for (uint32_t i = 0; i < len; i++)
			y[i] += a * b[i];
	}
	pthread_mutex_unlock(mu);
}

/* ---- project: U = X D^T ---------------------------------------------------------- */

static int project_init(void *ws, void *ud)
{
	rm_ctx *c = ud;

	return ws_init(ws, ud, (size_t)c->k * c->r);
}

/* acc[j, r0 + i] += sum_p T[i][p] X[j, c0 + p]: the k vectors are rows, times T^T. */
static int project_tile(void *ws, void *ud, const pspace_stream_tile *st)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;
	uint32_t m = live_rows(c, st), n = st->cols, k = c->k;
	double *acc = w->acc + st->r0;

	if (m == 0 || !st->data)
		return 0;
	if (st->dtype == PSPACE_F64) {
		double one = 1.0;

		bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, m, n, &one,
		             (double *)c->X + st->c0, (inc_t)c->ldx, 1, (double *)st->data, 1,
		             (inc_t)n, &one, acc, (inc_t)c->r, 1, NULL, &w->rntm);
		return 0;
	}
	{
		float one = 1.0f, zero = 0.0f;

		for (uint32_t j = 0; j < k; j++)
			for (uint32_t p = 0; p < n; p++)
				w->xf[(size_t)j * n + p] = (float)c->X[j * c->ldx + st->c0 + p];
		bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, m, n, &one, w->xf, n, 1,
		             (float *)st->data, 1, (inc_t)n, &zero, w->yf, m, 1, NULL, &w->rntm);
		for (uint32_t j = 0; j < k; j++)
			for (uint32_t i = 0; i < m; i++)
				acc[j * c->r + i] += w->yf[(size_t)j * m + i];
	}
	return 0;
}

static int project_finish(void *ws, void *ud)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;

	for (size_t i = 0; i < (size_t)c->k * c->r; i++)
		c->out[i] += w->acc[i];
	return 0;
}

int pspace_rowmat_project(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, uint32_t k,
                          const double *X, size_t ldx, double *U)
{
	pspace_stream_kernel kern = {
	    .worker_size = sizeof(rm_ws),
	    .worker_init = project_init,
	    .tile = project_tile,
	    .finish = project_finish,
	    .worker_free = ws_free,
	    .any_order = 1,
	};
	rm_ctx c;
	int rc = pspace_rowmat_check(t, r);

	if (rc != 0)
		return rc;
	ctx_init(&c, t, r, k);
	c.X = X;
	c.ldx = ldx;
	c.out = U;
	memset(U, 0, (size_t)k * r * sizeof(*U));
	rc = pspace_stream_run(t, ex, &kern, &c);
	ctx_destroy(&c);
	return rc;
}

/* ---- expand: Y += alpha U D -------------------------------------------------------- */

static int expand_init(void *ws, void *ud)
{
	return ws_init(ws, ud, 0);
}

/* Y[j, c0 + p] += alpha sum_i U[j, r0 + i] T[i][p]. */
static int expand_tile(void *ws, void *ud, const pspace_stream_tile *st)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;
	uint32_t m = live_rows(c, st), n = st->cols, k = c->k;
	const double *u = c->X + st->r0;

	if (m == 0 || !st->data)
		return 0;
	if (st->dtype == PSPACE_F64) {
		double one = 1.0, zero = 0.0;

		bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, n, m, &one, (double *)u,
		             (inc_t)c->r, 1, (double *)st->data, (inc_t)n, 1, &zero, w->yd, c->edge,
		             1, NULL, &w->rntm);
	} else {
		float one = 1.0f, zero = 0.0f;

		/* consecutive tiles share a tile row: convert its U slice once */
		if (!w->has_uf || w->uf_row != st->row) {
			for (uint32_t j = 0; j < k; j++)
				for (uint32_t i = 0; i < m; i++)
					w->xf[(size_t)j * c->edge + i] = (float)u[j * c->r + i];
			w->has_uf = 1;
			w->uf_row = st->row;
		}
		bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, n, m, &one, w->xf, c->edge, 1,
		             (float *)st->data, (inc_t)n, 1, &zero, w->yf, c->edge, 1, NULL,
		             &w->rntm);
		for (uint32_t j = 0; j < k; j++)
			for (uint32_t p = 0; p < n; p++)
				w->yd[(size_t)j * c->edge + p] = w->yf[(size_t)j * c->edge + p];
	}
	add_locked(c, st->col, c->out, c->ldo, st->c0, n, c->alpha, w->yd);
	return 0;
}

int pspace_rowmat_expand(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, uint32_t k,
                         double alpha, const double *U, double *Y, size_t ldy)
{
	pspace_stream_kernel kern = {
	    .worker_size = sizeof(rm_ws),
	    .worker_init = expand_init,
	    .tile = expand_tile,
	    .worker_free = ws_free,
	    .any_order = 1,
	};
	rm_ctx c;
	int rc = pspace_rowmat_check(t, r);

	if (rc != 0)
		return rc;
	ctx_init(&c, t, r, k);
	c.alpha = alpha;
	c.X = U;
	c.out = Y;
	c.ldo = ldy;
	rc = pspace_stream_run(t, ex, &kern, &c);
	ctx_destroy(&c);
	return rc;
}

/* ---- sums of squares ------------------------------------------------------------------ */

static int sumsq_init(void *ws, void *ud)
{
	rm_ctx *c = ud;

	return ws_init(ws, ud, c->r);
}

static double elem(const pspace_stream_tile *st, size_t i)
{
	return st->dtype == PSPACE_F64 ? ((const double *)st->data)[i]
	                               : (double)((const float *)st->data)[i];
}

static int sumsq_tile(void *ws, void *ud, const pspace_stream_tile *st)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;
	uint32_t m = live_rows(c, st), n = st->cols;

	if (m == 0 || !st->data)
		return 0;
	memset(w->yd, 0, n * sizeof(*w->yd));
	for (uint32_t i = 0; i < m; i++) {
		double s = 0;

		for (uint32_t p = 0; p < n; p++) {
			double v = elem(st, (size_t)i * n + p);

			s += v * v;
			w->yd[p] += v * v;
		}
		w->acc[st->r0 + i] += s;
	}
	if (c->colsq)
		add_locked(c, st->col, c->colsq, 0, st->c0, n, 1.0, w->yd);
	return 0;
}

static int sumsq_finish(void *ws, void *ud)
{
	rm_ws *w = ws;
	rm_ctx *c = ud;

	for (uint64_t i = 0; c->out && i < c->r; i++)
		c->out[i] += w->acc[i];
	return 0;
}

int pspace_rowmat_sumsq(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, double *rowsq,
                        double *colsq)
{
	pspace_stream_kernel kern = {
	    .worker_size = sizeof(rm_ws),
	    .worker_init = sumsq_init,
	    .tile = sumsq_tile,
	    .finish = sumsq_finish,
	    .worker_free = ws_free,
	    .any_order = 1,
	};
	rm_ctx c;
	int rc = pspace_rowmat_check(t, r);

	if (rc != 0)
		return rc;
	ctx_init(&c, t, r, 1);
	c.out = rowsq;
	c.colsq = colsq;
	if (rowsq)
		memset(rowsq, 0, r * sizeof(*rowsq));
	if (colsq)
		memset(colsq, 0, t->info.d * sizeof(*colsq));
	rc = pspace_stream_run(t, ex, &kern, &c);
	ctx_destroy(&c);
	return rc;
}

/* ---- the whole of D --------------------------------------------------------------------- */

static int read_tile(void *ws, void *ud, const pspace_stream_tile *st)
{
	rm_ctx *c = ud;
	uint32_t m = live_rows(c, st), n = st->cols;

	(void)ws;
	for (uint32_t i = 0; st->data && i < m; i++)
		for (uint32_t p = 0; p < n; p++)
			c->out[(st->r0 + i) * c->ldo + st->c0 + p] = elem(st, (size_t)i * n + p);
	return 0;
}

int pspace_rowmat_read(const pspace_tiled *t, uint64_t r, const pspace_exec *ex, double *D)
{
	pspace_stream_kernel kern = {.tile = read_tile, .any_order = 1};
	rm_ctx c;
	int rc = pspace_rowmat_check(t, r);

	if (rc != 0)
		return rc;
	ctx_init(&c, t, r, 0);
	c.out = D;
	c.ldo = t->info.d;
	/* tiles never written (none are, by the builder) are zero */
	memset(D, 0, r * t->info.d * sizeof(*D));
	rc = pspace_stream_run(t, ex, &kern, &c);
	ctx_destroy(&c);
	return rc;
}

/* ---- column strips ----------------------------------------------------------------------- */

/* madvise on the pages of a tile, rounded outward (out of core: see stream.c). */
static void advise(const pspace_tile_ref *ref, int what)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)ref->data & ~(page - 1);
	uintptr_t b = ((uintptr_t)ref->data + ref->len + page - 1) & ~(page - 1);

	(void)madvise((void *)a, b - a, what);
}

/* Asks the kernel to read the tiles of strip @p cj ahead (their lookups are cheap). */
static void prefetch(pspace_reader *rd, uint64_t nrow, uint64_t cj)
{
	for (uint64_t ti = 0; ti < nrow; ti++) {
		pspace_tile_ref ref;

		if (pspace_reader_tile(&ref, rd, 0, (uint32_t)ti, (uint32_t)cj) == 0)
			advise(&ref, MADV_WILLNEED);
		else
			pspace_errclear();
	}
}

int pspace_rowmat_strips(const pspace_tiled *t, uint64_t r, const pspace_exec *ex,
                         pspace_rowmat_strip_fn fn, void *ud)
{
	uint32_t E = t->info.tile;
	uint64_t d = t->info.d, nrow = (r + E - 1) / E, ncol = (d + E - 1) / E;
	int ooc = t->info.tile_bytes > pspace_stream_budget(ex);
	pspace_reader *rd = NULL;
	pspace_codec *codec = NULL;
	double *S = NULL;
	int rc = pspace_rowmat_check(t, r);

	if (rc != 0)
		return rc;
	S = malloc(nrow * E * E * sizeof(*S));
	if (!S) {
		rc = pspace_err_set(
		    PSPACE_ENOMEM, "store %s: matrix %s: out of memory for a strip of %llu x %u",
		    pspace_store_path(t->s), t->info.name, (unsigned long long)r, E);
		goto out;
	}
	rc = pspace_reader_open(&rd, t->s, t->info.name, 0);
	if (rc == 0)
		rc = pspace_codec_create(&codec);
	if (rc == 0)
		prefetch(rd, nrow, 0);
	for (uint64_t cj = 0; rc == 0 && cj < ncol; cj++) {
		uint32_t cols = (uint32_t)(d - cj * E < E ? d - cj * E : E);

		/* the next strip is read from disk while this one is decoded and used */
		if (cj + 1 < ncol)
			prefetch(rd, nrow, cj + 1);

		for (uint64_t ti = 0; rc == 0 && ti < nrow; ti++) {
			double *dst = S + ti * E * cols;
			uint32_t rows = (uint32_t)(d - ti * E < E ? d - ti * E : E);
			pspace_tile_ref ref;

			rc = pspace_reader_tile(&ref, rd, 0, (uint32_t)ti, (uint32_t)cj);
			if (rc == PSPACE_ENOTFOUND) {
				pspace_errclear();
				memset(dst, 0, (size_t)rows * cols * sizeof(*dst));
				rc = 0;
				continue;
			}
			if (rc == 0)
				rc = pspace_reader_decode(rd, codec, &ref, PSPACE_F64, dst, cols);
			if (rc == 0 && ooc)
				advise(&ref, MADV_DONTNEED);
		}
		if (rc == 0)
			rc = fn(ud, cj * E, cols, S);
	}
out:
	pspace_codec_free(codec);
	pspace_reader_close(rd);
	free(S);
	return rc;
}
