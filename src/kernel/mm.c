/*
 * The mm kernel: Y += sum_i alpha_i M_i X for k right-hand sides in one
 * pass over the tiles of one or more stored matrices of the same tiling.
 *
 * Tile (r, c) of rows x cols adds T X[c-rows] to Y[r-rows] and, when it is
 * mirrored (symmetric, off the diagonal), T^T X[r-rows] to Y[c-rows], both
 * from the same view of the tile. f32 tiles: the X slices are converted to
 * float in worker-local buffers (k x tile) and multiplied by the fused
 * kernel (k <= FUSED_MAX_K: both products in one sweep of the tile) or BLIS
 * sgemm; f64 tiles use dgemm/dgemv on the doubles directly. Results are
 * accumulated in double. With one f32 matrix and the fused kernel, tiles
 * come in row panels of a few rows (the engine's panels: read from memory
 * or decoded once, used from L1), and from WIDE_MIN_K vectors on with
 * AVX-512 the vectors sit in the 16 lanes of a register (element-major).
 *
 * Y is shared: a worker sums the direct products of consecutive tiles of
 * one tile row (streaming order walks a row at a time) in a local double
 * accumulator and adds it to Y when its row changes or the pass ends; the
 * mirrored products are added tile by tile. Each addition holds the mutex
 * of its row band (PSPACE_STRIPES stripes, band index modulo their number), so memory per
 * worker is O(tile * k), never O(d); the 16-lane kernel adds one float copy
 * of X for the pass (d x 16 floats, half of X with 16 vectors), shared by
 * the workers, whose tile bookkeeping is then contiguous (results
 * element-major until they are added to Y).
 */
#include <blis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codec/convert.h"
#include "common/error.h"
#include "common/mem.h"
#include "kernel/amx16.h"
#include "kernel/engine.h"
#include "kernel/fused.h"
#include "kernel/stream.h"

/* Up to this many right-hand sides, f32 tiles go through the fused kernel
 * (one sweep per tile row for both products; measured faster than two
 * BLIS calls up to k = 16 with 256-edge tiles); above, BLIS sgemm. */
#define FUSED_MAX_K 16
/*
 * Lanes of the 16-lane fused kernel (AVX-512), used in panels from this many
 * vectors on: its cost does not depend on k, the few-vector kernel's grows
 * with it. d = 32768 (Zen 5), the few-vector kernel against the 16-lane
 * one: k = 4 1.36x (f32 store 1.37x) faster, k = 5 1.0-1.25x, k = 6 even,
 * k = 7 up to 1.2x slower.
 */
#define WIDE       16
#define WIDE_MIN_K 6
/*
 * Row panels of the 16-lane kernel: enough rows (64 of a 512-column f32
 * tile, in L2) that each column block's x and y chunks, loaded into L1,
 * serve many row groups (fused.c).
 */
#define WIDE_PANEL_BYTES ((size_t)128 << 10)

typedef struct mm_ctx {
	const pspace_tiled *t;
	double *alpha; /* one per matrix: a copy, away from the caller's stack */
	size_t n;
	uint32_t k, edge;
	const double *X;
	size_t ldx;
	double *Y;
	size_t ldy;
	uint64_t *band_base; /* per block: global index of its first tile row */
	int panels;          /* one f32 matrix, fused kernel: tiles come in row panels */
	int wide;            /* panels with the 16-lane kernel: float vectors element-major */
	float *xw;           /* wide: X as float, element-major (d x WIDE), made once a pass */
	int amx;             /* wide, a bf16 matrix, on AMX: xw's bf16 parts in ax */
	pspace_amx16_x ax;
	pspace_stripe locks[PSPACE_STRIPES];
} mm_ctx;

typedef struct mm_ws {
	rntm_t rntm;
	/* the vectors are k x edge, or edge x WIDE (element-major) when c->wide */
	float *xc;    /* X at the tile's columns, as float (c->wide: c->xw instead) */
	float *xr;    /* X at the tile's rows, as float, cached per row (c->wide: c->xw) */
	float *yf;    /* one float product */
	float *yc;    /* the fused kernel's mirrored product */
	double *ysum; /* k x edge: the mirrored products of one tile address */
	double *acc;  /* k x edge: direct products of the current tile row */
	void *amx;    /* the AMX kernel's scratch (c->amx) */
	float *pf;    /* c->amx: a bf16 panel as f32, for tiles off the AMX kernel */
	int has_acc, has_xr, amx_tile;
	uint32_t ab, ar, arows, xb, xrow;
	uint64_t ar0;
} mm_ws;

/*
 * Y[off + i, j] += buf[j * edge + i] under the lock of band @p band (when
 * c->wide, add_wide() instead).
 */
static void add_to_y(mm_ctx *c, uint64_t band, uint64_t off, uint32_t len, const double *buf)
{
	pthread_mutex_t *mu = pspace_stripe_mu(c->locks, band);

	pthread_mutex_lock(mu);
	for (uint32_t j = 0; j < c->k; j++) {
		double *y = c->Y + j * c->ldy + off;
		const double *b = buf + (size_t)j * c->edge;

		for (uint32_t i = 0; i < len; i++)
			y[i] += b[i];
	}
	pthread_mutex_unlock(mu);
}

/*
 * Y[off + i, j] += a * src[i * WIDE + j] (element-major products, double
 * @p d or float @p f) under the lock of band @p band.
 */
static void add_wide(mm_ctx *c, uint64_t band, uint64_t off, uint32_t len, double a,
                     const double *d, const float *f)
{
	pthread_mutex_t *mu = pspace_stripe_mu(c->locks, band);

	pthread_mutex_lock(mu);
	pspace_wide_add(c->Y + off, c->ldy, c->k, len, a, d, f);
	pthread_mutex_unlock(mu);
}

static void flush_acc(mm_ctx *c, mm_ws *w)
{
	if (!w->has_acc)
		return;
	if (c->wide)
		add_wide(c, c->band_base[w->ab] + w->ar, w->ar0, w->arows, 1.0, w->acc, NULL);
	else
		add_to_y(c, c->band_base[w->ab] + w->ar, w->ar0, w->arows, w->acc);
	w->has_acc = 0;
}

static void to_float(const mm_ctx *c, uint64_t off, uint32_t len, float *dst)
{
	for (uint32_t j = 0; j < c->k; j++) {
		const double *x = c->X + j * c->ldx + off;
		float *d = dst + (size_t)j * c->edge;

		for (uint32_t i = 0; i < len; i++)
			d[i] = (float)x[i];
	}
}

/*
 * xw[p * WIDE + j] = X[j, p] as float for p < d, zero beyond k: the
 * vectors of the 16-lane kernel for the whole pass, made once (d x 64
 * bytes, half of X with 16 vectors) instead of for every tile from X's
 * columns, a strided transposition that took a tenth of the pass.
 */
static void make_xw(mm_ctx *c, uint64_t d)
{
	for (uint64_t p = 0; p < d; p++) {
		float *o = c->xw + p * WIDE;

		for (uint32_t j = 0; j < WIDE; j++)
			o[j] = j < c->k ? (float)c->X[j * c->ldx + p] : 0.0f;
	}
}

/* dst[i] += a * src[i] over len x WIDE, both element-major (lanes past k unused). */
static void axpy_wide(uint32_t len, double a, const float *src, double *dst)
{
	for (size_t i = 0; i < (size_t)len * WIDE; i++)
		dst[i] += a * src[i];
}

/* dst[j, i] += a * src[j, i] over k x len. */
static void axpy_f(const mm_ctx *c, uint32_t len, double a, const float *src, double *dst)
{
	for (uint32_t j = 0; j < c->k; j++)
		for (uint32_t i = 0; i < len; i++)
			dst[(size_t)j * c->edge + i] += a * src[(size_t)j * c->edge + i];
}

/* A bf16 row panel as floats: rows x cols x 2 <= WIDE_PANEL_BYTES, or 4 rows (stream.c) */
static size_t amx_pf_bytes(uint32_t edge)
{
	size_t four = (size_t)4 * edge * sizeof(float);

	return WIDE_PANEL_BYTES * 2 > four ? WIDE_PANEL_BYTES * 2 : four;
}

static int mm_init(void *ws, void *ud)
{
	mm_ws *w = ws;
	mm_ctx *c = ud;
	size_t ke = (size_t)(c->wide ? WIDE : c->k) * c->edge;

	bli_rntm_init(&w->rntm);
	bli_rntm_set_num_threads(1, &w->rntm);
	/* the 16-lane kernel reads its vectors from c->xw */
	w->xc = c->wide ? NULL : malloc(ke * sizeof(float));
	w->xr = c->wide ? NULL : malloc(ke * sizeof(float));
	w->yf = malloc(ke * sizeof(float));
	w->yc = malloc(ke * sizeof(float));
	w->ysum = malloc(ke * sizeof(double));
	w->acc = malloc(ke * sizeof(double));
	w->amx = c->amx ? malloc(pspace_amx16_scratch_bytes(c->edge)) : NULL;
	w->pf = c->amx ? malloc(amx_pf_bytes(c->edge)) : NULL;
	if ((!c->wide && (!w->xc || !w->xr)) || !w->yf || !w->yc || !w->ysum || !w->acc ||
	    (c->amx && (!w->amx || !w->pf)))
		return pspace_err_set(PSPACE_ENOMEM, "stream mm: out of memory for %u x %u scratch",
		                      c->k, c->edge);
	return 0;
}

static void mm_free(void *ws, void *ud)
{
	mm_ws *w = ws;

	(void)ud;
	free(w->pf);
	free(w->amx);
	free(w->acc);
	free(w->ysum);
	free(w->yc);
	free(w->yf);
	free(w->xr);
	free(w->xc);
}

/* X at the tile's rows, as float, converted once per tile row. */
static void need_xr(mm_ctx *c, mm_ws *w, const pspace_stream_tile *st)
{
	if (!w->has_xr || w->xb != st->block || w->xrow != st->row) {
		to_float(c, st->r0, st->tile_rows, w->xr);
		w->has_xr = 1;
		w->xb = st->block;
		w->xrow = st->row;
	}
}

/* acc += a * T X[c0..] and, if mirrored, ysum += a * T^T X[r0..]: f32, fused. */
static void fused(mm_ctx *c, mm_ws *w, const pspace_stream_tile *st, double a)
{
	to_float(c, st->c0, st->cols, w->xc);
	if (st->mirrored) {
		need_xr(c, w, st);
		for (uint32_t j = 0; j < c->k; j++)
			memset(w->yc + (size_t)j * c->edge, 0, st->cols * sizeof(float));
	}
	pspace_fused_f32(st->data, st->rows, st->cols, c->k, c->edge, w->xc, w->xr, w->yf, w->yc,
	                 st->mirrored, NULL);
	axpy_f(c, st->rows, a, w->yf, w->acc);
	if (st->mirrored)
		axpy_f(c, st->cols, a, w->yc, w->ysum);
}

/*
 * One tile's product: acc += a * T X[c0..] when @p trans is 0, ysum += a *
 * T^T X[r0..] when it is 1 (the mirrored half of a symmetric tile). The k
 * right-hand sides are rows, so gemm multiplies them by T^T (trans 0: row
 * stride 1, column stride n) or by T (trans 1: row stride n, column stride 1).
 */
static void tile_mm(mm_ctx *c, mm_ws *w, const pspace_stream_tile *st, double a, int trans)
{
	uint32_t m = st->rows, n = st->cols, k = c->k, e = c->edge;
	uint32_t nout = trans ? n : m, nin = trans ? m : n;
	inc_t rsb = trans ? n : 1, csb = trans ? 1 : n;
	trans_t tt = trans ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
	double *dst = trans ? w->ysum : w->acc;

	if (st->dtype == PSPACE_F64) {
		const double *T = st->data, *x = c->X + (trans ? st->r0 : st->c0);
		double one = 1.0;

		if (k == 1)
			bli_dgemv_ex(tt, BLIS_NO_CONJUGATE, m, n, &a, (double *)T, n, 1,
			             (double *)x, 1, &one, dst, 1, NULL, &w->rntm);
		else
			bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, nout, nin, &a,
			             (double *)x, (inc_t)c->ldx, 1, (double *)T, rsb, csb, &one,
			             dst, e, 1, NULL, &w->rntm);
		return;
	}
	{
		const float *T = st->data;
		float one = 1.0f, zero = 0.0f, *x = w->xc;

		if (trans) {
			need_xr(c, w, st);
			x = w->xr;
		} else {
			to_float(c, st->c0, n, w->xc);
		}
		if (k == 1)
			bli_sgemv_ex(tt, BLIS_NO_CONJUGATE, m, n, &one, (float *)T, n, 1, x, 1,
			             &zero, w->yf, 1, NULL, &w->rntm);
		else
			bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, k, nout, nin, &one, x, e,
			             1, (float *)T, rsb, csb, &zero, w->yf, e, 1, NULL, &w->rntm);
		axpy_f(c, nout, a, w->yf, dst);
	}
}

/* The accumulator of direct products follows the tile row of @p st. */
static void switch_acc(mm_ctx *c, mm_ws *w, const pspace_stream_tile *st)
{
	if (w->has_acc && w->ab == st->block && w->ar == st->row)
		return;
	flush_acc(c, w);
	if (c->wide)
		memset(w->acc, 0, (size_t)st->tile_rows * WIDE * sizeof(double));
	for (uint32_t j = 0; !c->wide && j < c->k; j++)
		memset(w->acc + (size_t)j * c->edge, 0, st->tile_rows * sizeof(double));
	w->has_acc = 1;
	w->ab = st->block;
	w->ar = st->row;
	w->ar0 = st->r0;
	w->arows = st->tile_rows;
}

/*
 * One row panel of an f32 tile of a one-matrix pass (the fused kernel):
 * the first panel sets up the tile's vectors, each panel adds its rows'
 * share of both products, the last one adds them to acc and Y.
 */
static int mm_panel(mm_ctx *c, mm_ws *w, const pspace_stream_tile *st)
{
	double a = c->alpha[0];

	if (a == 0.0)
		return 0;
	if (st->prow == 0) {
		switch_acc(c, w, st);
		/* AMX pairs X's elements from an even column on */
		w->amx_tile = c->amx && st->c0 % 2 == 0;
		if (!c->wide)
			to_float(c, st->c0, st->cols, w->xc);
		if (st->mirrored) {
			if (!c->wide)
				need_xr(c, w, st);
			if (c->wide)
				memset(w->yc, 0, (size_t)st->cols * WIDE * sizeof(float));
			for (uint32_t j = 0; !c->wide && j < c->k; j++)
				memset(w->yc + (size_t)j * c->edge, 0, st->cols * sizeof(float));
		}
	}
	if (w->amx_tile) {
		pspace_amx16_bf16(st->data, st->rows, st->cols, st->r0 + st->prow, st->c0, &c->ax,
		                  w->yf + st->prow * WIDE, w->yc, st->mirrored, st->prow == 0,
		                  st->prow + st->rows >= st->tile_rows, w->amx);
	} else if (c->wide) {
		const float *T = st->data;

		/* bf16 rows (an AMX pass asks for them) for the FMA kernel, as f32 */
		if (c->amx) {
			int rc = pspace_convert_block(PSPACE_F32, w->pf, st->cols, PSPACE_BF16,
			                              st->data, st->cols, st->rows, st->cols, 0);

			if (rc != 0)
				return rc;
			T = w->pf;
		}
		pspace_fused16_f32(T, st->rows, st->cols, c->xw + (size_t)st->c0 * WIDE,
		                   c->xw + (size_t)(st->r0 + st->prow) * WIDE,
		                   w->yf + st->prow * WIDE, w->yc, st->mirrored);
	} else {
		pspace_fused_f32(st->data, st->rows, st->cols, c->k, c->edge, w->xc,
		                 w->xr + st->prow, w->yf + st->prow, w->yc, st->mirrored, st->crc);
	}
	if (st->prow + st->rows < st->tile_rows)
		return 0;
	if (c->wide)
		axpy_wide(st->tile_rows, a, w->yf, w->acc);
	else
		axpy_f(c, st->tile_rows, a, w->yf, w->acc);
	if (st->mirrored && c->wide) {
		add_wide(c, c->band_base[st->block] + st->col, st->c0, st->cols, a, NULL, w->yc);
	} else if (st->mirrored) {
		for (uint32_t j = 0; j < c->k; j++)
			memset(w->ysum + (size_t)j * c->edge, 0, st->cols * sizeof(double));
		axpy_f(c, st->cols, a, w->yc, w->ysum);
		add_to_y(c, c->band_base[st->block] + st->col, st->c0, st->cols, w->ysum);
	}
	return 0;
}

static int mm_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	mm_ws *w = ws;
	mm_ctx *c = ud;
	const pspace_stream_tile *st0 = &tiles[0];
	int mirrored = 0;

	if (c->panels)
		return mm_panel(c, w, st0);
	switch_acc(c, w, st0);
	for (size_t i = 0; i < c->n; i++) {
		if (!tiles[i].data || c->alpha[i] == 0.0)
			continue;
		if (tiles[i].mirrored && !mirrored) {
			for (uint32_t j = 0; j < c->k; j++)
				memset(w->ysum + (size_t)j * c->edge, 0,
				       st0->cols * sizeof(double));
			mirrored = 1;
		}
		if (tiles[i].dtype == PSPACE_F32 && c->k <= FUSED_MAX_K) {
			fused(c, w, &tiles[i], c->alpha[i]);
			continue;
		}
		tile_mm(c, w, &tiles[i], c->alpha[i], 0);
		if (tiles[i].mirrored)
			tile_mm(c, w, &tiles[i], c->alpha[i], 1);
	}
	if (mirrored)
		add_to_y(c, c->band_base[st0->block] + st0->col, st0->c0, st0->cols, w->ysum);
	return 0;
}

static int mm_finish(void *ws, void *ud)
{
	flush_acc(ud, ws);
	return 0;
}

int pspace_stream_mm_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                           const pspace_exec *ex, uint32_t k, const double *X, size_t ldx,
                           double *Y, size_t ldy)
{
	mm_ctx *c = NULL;
	pspace_exec ex2;
	size_t per;
	uint64_t band = 0;
	int rc = 0, locks = 0;
	pspace_stream_kernel kern = {
	    .worker_size = sizeof(mm_ws),
	    .worker_init = mm_init,
	    .tile = mm_tile,
	    .finish = mm_finish,
	    .worker_free = mm_free,
	};

	if (!t || n == 0 || !t[0] || !t[0]->block_dim || !alpha)
		return pspace_err_set(PSPACE_EINVAL, "stream mm: no matrix");
	if (k == 0)
		return 0;
	if (!X || !Y || (k > 1 && (ldx < t[0]->info.d || ldy < t[0]->info.d)))
		return pspace_err_set(PSPACE_EINVAL,
		                      "stream mm: matrix %s: no X or Y, or leading dimension "
		                      "(%zu, %zu) < d = %llu",
		                      t[0]->info.name, ldx, ldy, (unsigned long long)t[0]->info.d);
	c = aligned_alloc(_Alignof(mm_ctx), sizeof(*c));
	if (c) {
		memset(c, 0, sizeof(*c));
		c->band_base = malloc(t[0]->info.nblocks * sizeof(*c->band_base));
		c->alpha = aligned_alloc(64, (n * sizeof(*c->alpha) + 63) / 64 * 64);
	}
	if (!c || !c->band_base || !c->alpha) {
		rc = pspace_err_set(PSPACE_ENOMEM, "stream mm: out of memory");
		goto out;
	}
	c->t = t[0];
	memcpy(c->alpha, alpha, n * sizeof(*c->alpha));
	c->n = n;
	c->k = k;
	c->edge = t[0]->info.tile;
	c->X = X;
	c->ldx = ldx;
	c->Y = Y;
	c->ldy = ldy;
	for (uint32_t b = 0; b < t[0]->info.nblocks; b++) {
		c->band_base[b] = band;
		band += (t[0]->block_dim[b] + c->edge - 1) / c->edge;
	}
	pspace_stripes_init(c->locks);
	locks = 1;
	c->panels = n == 1 && k <= FUSED_MAX_K && t[0]->info.codec.dtype != PSPACE_F64;
	kern.panels = c->panels;
	c->wide = c->panels && k >= WIDE_MIN_K && pspace_fused16_available();
	/* without room for the float copy of X, the k-major kernel does without */
	if (c->wide && !(c->xw = pspace_alloc_big((size_t)t[0]->info.d * WIDE * sizeof(float))))
		c->wide = 0;
	if (c->wide) {
		make_xw(c, t[0]->info.d);
		kern.panel_bytes = WIDE_PANEL_BYTES;
		/* bf16 tiles on AMX where there is AMX (amx16.h) */
		c->amx = t[0]->info.codec.dtype == PSPACE_BF16 &&
		         pspace_amx16_x_make(&c->ax, c->xw, t[0]->info.d) == 0;
		/* the bf16 rows as stored, without their conversion to f32 and back */
		if (c->amx)
			kern.want = PSPACE_BF16;
	}
	/* the few-vector kernel checksums raw rows as it reads them (fused.h) */
	kern.checksums_rows = c->panels && !c->wide;
	/* the products of the tiles are summed into Y under stripe locks, in any order */
	kern.any_order = 1;

	/* The scratch of each worker counts against the budget too. */
	ex2.threads = pspace_stream_threads(ex);
	ex2.mem_budget = pspace_stream_budget(ex);
	/* float vectors (xc, xr unless wide: c->xw), yf, yc, and acc, ysum in double */
	per = (size_t)c->edge * (c->wide ? WIDE : k) *
	          ((c->wide ? 2 : 4) * sizeof(float) + 2 * sizeof(double)) +
	      (c->amx ? pspace_amx16_scratch_bytes(c->edge) + amx_pf_bytes(c->edge) : 0);
	if (ex2.mem_budget / per < (size_t)ex2.threads)
		ex2.threads = ex2.mem_budget / per ? (int)(ex2.mem_budget / per) : 1;
	rc = pspace_stream_multi(t, n, &ex2, &kern, c);
out:
	if (locks)
		pspace_stripes_destroy(c->locks);
	if (c) {
		pspace_amx16_x_free(&c->ax);
		free(c->xw);
		free(c->alpha);
		free(c->band_base);
	}
	free(c);
	return rc;
}

int pspace_stream_mm(const pspace_tiled *t, const pspace_exec *ex, uint32_t k, double alpha,
                     const double *X, size_t ldx, double *Y, size_t ldy)
{
	const pspace_tiled *one[1] = {t};

	if (alpha == 0.0)
		return 0;
	return pspace_stream_mm_multi(one, 1, &alpha, ex, k, X, ldx, Y, ldy);
}
