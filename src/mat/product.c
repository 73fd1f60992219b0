/*
 * Products of two stored matrices of the same kind, written to the store
 * as a new, non-symmetric matrix of that kind, tile by tile.
 *
 * Dense x Dense works out of core on bands of rows: the band of A (rows x
 * d) is gathered from A's tiles, then B is streamed once and each of its
 * tiles adds its contribution to the band of C = A B, whose tiles are then
 * written. BlockDiag x BlockDiag multiplies block by block in memory.
 * Both run inside the tile function of the writer, which asks for tiles
 * in streaming order (band after band, block after block).
 */
#include <blis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"
#include "mat/stored.h"

/* The output's tile edge: the option's, else A's. */
static void product_opts(const pspace_stored *a, const pspace_write_opts *opts,
                         pspace_write_opts *o)
{
	if (opts)
		*o = *opts;
	else
		pspace_write_opts_default(o);
	if (o->tile == 0)
		o->tile = a->t.info.tile;
}

/* ---- Dense x Dense ----------------------------------------------------------- */

typedef struct dprod {
	pspace_stored *a, *b;
	const pspace_exec *ex;
	uint64_t d;
	uint64_t H;             /* rows per band */
	uint64_t R0, h;         /* current band: rows [R0, R0 + h); h = 0 before the first */
	double *Aband;          /* h x d */
	double *Cband;          /* h x d */
	pthread_mutex_t *locks; /* one per column stripe of B's tiles */
	uint32_t nlocks, stripe;
} dprod;

/* Gathers the band's rows of A from a tile and, if it stands for its
 * transpose too, from that. Tiles write disjoint entries: no locking. */
static int gather_tile(void *ws, void *ud, const pspace_stream_tile *tl)
{
	const pspace_stream_tile *t = &tl[0];
	dprod *p = ud;
	const double *D = t->data;
	uint64_t lo = p->R0, hi = p->R0 + p->h;

	(void)ws;
	if (!D)
		return 0;
	for (uint32_t i = 0; i < t->rows; i++) {
		uint64_t r = t->r0 + i;

		if (r >= lo && r < hi)
			memcpy(p->Aband + (r - lo) * p->d + t->c0, D + (size_t)i * t->cols,
			       t->cols * sizeof(double));
	}
	if (!t->mirrored)
		return 0;
	for (uint32_t j = 0; j < t->cols; j++) {
		uint64_t r = t->c0 + j;
		double *row = p->Aband + (r - lo) * p->d + t->r0;

		if (r < lo || r >= hi)
			continue;
		for (uint32_t i = 0; i < t->rows; i++)
			row[i] = D[(size_t)i * t->cols + j];
	}
	return 0;
}

/* C[:, cols of tile] += A[:, rows of tile] D (and the transposed term). */
static int mul_tile(void *ws, void *ud, const pspace_stream_tile *tl)
{
	const pspace_stream_tile *t = &tl[0];
	dprod *p = ud;
	double one = 1.0, *D = (double *)t->data;
	dim_t h = (dim_t)p->h, d = (dim_t)p->d;
	rntm_t rn;

	(void)ws;
	if (!D)
		return 0;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(1, &rn);
	pthread_mutex_lock(&p->locks[t->c0 / p->stripe]);
	bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, h, t->cols, t->rows, &one,
	             p->Aband + t->r0, d, 1, D, t->cols, 1, &one, p->Cband + t->c0, d, 1, NULL,
	             &rn);
	pthread_mutex_unlock(&p->locks[t->c0 / p->stripe]);
	if (!t->mirrored)
		return 0;
	pthread_mutex_lock(&p->locks[t->r0 / p->stripe]);
	bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, h, t->rows, t->cols, &one, p->Aband + t->c0,
	             d, 1, D, t->cols, 1, &one, p->Cband + t->r0, d, 1, NULL, &rn);
	pthread_mutex_unlock(&p->locks[t->r0 / p->stripe]);
	return 0;
}

static int compute_band(dprod *p, uint64_t R0)
{
	/* both fill their bands by tile address, under locks where they add: any order */
	pspace_stream_kernel gather = {.tile = gather_tile, .want = PSPACE_F64, .any_order = 1};
	pspace_stream_kernel mul = {.tile = mul_tile, .want = PSPACE_F64, .any_order = 1};
	int rc;

	p->R0 = R0;
	p->h = p->d - R0 < p->H ? p->d - R0 : p->H;
	memset(p->Aband, 0, p->h * p->d * sizeof(double));
	memset(p->Cband, 0, p->h * p->d * sizeof(double));
	rc = pspace_stream_run(&p->a->t, p->ex, &gather, p);
	if (rc == 0)
		rc = pspace_stream_run(&p->b->t, p->ex, &mul, p);
	return rc;
}

static int dprod_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                      double *tile)
{
	dprod *p = ud;
	int rc = 0;

	if (p->h == 0 || r0 < p->R0 || r0 >= p->R0 + p->h)
		rc = compute_band(p, r0);
	for (uint32_t i = 0; rc == 0 && i < rows; i++)
		memcpy(tile + (size_t)i * cols, p->Cband + (r0 - p->R0 + i) * p->d + c0,
		       cols * sizeof(double));
	return rc;
}

int pspace_dense_product_write(pspace_store *s, const char *name, pspace_mat *am, pspace_mat *bm,
                               const pspace_exec *ex, const pspace_write_opts *opts)
{
	dprod p = {0};
	pspace_write_opts o;
	uint64_t d = am->d, row_bytes = 2 * d * sizeof(double), avail = ex->mem_budget / 2;
	int rc;

	p.a = pspace_stored_of(am);
	p.b = pspace_stored_of(bm);
	p.ex = ex;
	p.d = d;
	rc = pspace_tiled_whole(&p.a->t, "product");
	if (rc == 0)
		rc = pspace_tiled_whole(&p.b->t, "product");
	if (rc != 0)
		return rc;
	product_opts(p.a, opts, &o);
	/* Bands of whole output tile rows, using half the budget (the engine
	 * takes its share for the tiles in flight). */
	p.H = avail / row_bytes;
	p.H = p.H >= d ? d : p.H / o.tile * o.tile;
	if (p.H == 0) {
		uint64_t rows = o.tile < d ? o.tile : d;
		char need[32], have[32];

		return pspace_err_set(PSPACE_ENOMEM,
		                      "product %s: one band of %llu rows of A and of the product "
		                      "needs %s, more than half the memory budget of %s",
		                      name, (unsigned long long)rows,
		                      pspace_fmt_bytes(need, sizeof(need), rows * row_bytes),
		                      pspace_fmt_bytes(have, sizeof(have), ex->mem_budget));
	}
	p.stripe = p.b->t.info.tile;
	p.nlocks = (uint32_t)((d + p.stripe - 1) / p.stripe);
	p.Aband = malloc(p.H * d * sizeof(double));
	p.Cband = malloc(p.H * d * sizeof(double));
	p.locks = malloc(p.nlocks * sizeof(*p.locks));
	if (!p.Aband || !p.Cband || !p.locks) {
		rc = pspace_err_set(PSPACE_ENOMEM, "product %s: out of memory", name);
		goto out;
	}
	for (uint32_t i = 0; i < p.nlocks; i++)
		pthread_mutex_init(&p.locks[i], NULL);
	rc = pspace_stored_write(s, name, PSPACE_KIND_DENSE, am->layout, 0, dprod_tile, &p, &o,
	                         NULL);
	for (uint32_t i = 0; i < p.nlocks; i++)
		pthread_mutex_destroy(&p.locks[i]);
out:
	free(p.locks);
	free(p.Cband);
	free(p.Aband);
	return rc;
}

/* ---- BlockDiag x BlockDiag ------------------------------------------------------ */

typedef struct bprod {
	pspace_stored *a, *b;
	const pspace_exec *ex;
	int64_t cur; /* block held in C, -1 for none */
	double *A, *B, *C;
} bprod;

static int bprod_load(bprod *p, uint32_t blk)
{
	uint64_t n = p->a->t.block_dim[blk];
	double one = 1.0, zero = 0.0;
	rntm_t rn;
	int rc;

	rc = pspace_stream_dense(&p->a->t, p->ex, blk, p->A, n);
	if (rc == 0)
		rc = pspace_stream_dense(&p->b->t, p->ex, blk, p->B, n);
	if (rc != 0)
		return rc;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(p->ex->threads, &rn);
	bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)n, (dim_t)n, (dim_t)n, &one, p->A,
	             (inc_t)n, 1, p->B, (inc_t)n, 1, &zero, p->C, (inc_t)n, 1, NULL, &rn);
	p->cur = blk;
	return 0;
}

static int bprod_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                      double *tile)
{
	bprod *p = ud;
	const pspace_tiled *t = &p->a->t;
	uint32_t blk = 0;
	uint64_t n, off;
	int rc = 0;

	while (blk + 1 < t->info.nblocks && r0 >= t->block_off[blk + 1])
		blk++;
	if (p->cur != (int64_t)blk)
		rc = bprod_load(p, blk);
	if (rc != 0)
		return rc;
	n = t->block_dim[blk];
	off = t->block_off[blk];
	for (uint32_t i = 0; i < rows; i++)
		memcpy(tile + (size_t)i * cols, p->C + (r0 - off + i) * n + (c0 - off),
		       cols * sizeof(double));
	return 0;
}

int pspace_blockdiag_product_write(pspace_store *s, const char *name, pspace_mat *am,
                                   pspace_mat *bm, const pspace_exec *ex,
                                   const pspace_write_opts *opts)
{
	bprod p = {.a = pspace_stored_of(am), .b = pspace_stored_of(bm), .ex = ex, .cur = -1};
	const pspace_tiled *ta = &p.a->t, *tb = &p.b->t;
	pspace_write_opts o;
	uint64_t nmax = 0;
	int rc;

	rc = pspace_tiled_whole(ta, "product");
	if (rc == 0)
		rc = pspace_tiled_whole(tb, "product");
	if (rc != 0)
		return rc;
	if (ta->info.nblocks != tb->info.nblocks)
		return pspace_err_set(PSPACE_EDIM, "product %s: %u blocks times %u blocks", name,
		                      ta->info.nblocks, tb->info.nblocks);
	for (uint32_t i = 0; i < ta->info.nblocks; i++) {
		uint64_t n = ta->block_dim[i];

		if (n != tb->block_dim[i])
			return pspace_err_set(PSPACE_EDIM,
			                      "product %s: block %u is %llu x %llu in A, %llu x "
			                      "%llu in B",
			                      name, i, (unsigned long long)n, (unsigned long long)n,
			                      (unsigned long long)tb->block_dim[i],
			                      (unsigned long long)tb->block_dim[i]);
		if (3 * n * n * sizeof(double) > ex->mem_budget) {
			char need[32], have[32];

			return pspace_err_set(
			    PSPACE_ENOMEM,
			    "product %s: block %u (%llu x %llu) needs %s for A, B and the "
			    "product, more than the memory budget of %s",
			    name, i, (unsigned long long)n, (unsigned long long)n,
			    pspace_fmt_bytes(need, sizeof(need), 3 * n * n * sizeof(double)),
			    pspace_fmt_bytes(have, sizeof(have), ex->mem_budget));
		}
		if (n > nmax)
			nmax = n;
	}
	product_opts(p.a, opts, &o);
	p.A = malloc(nmax * nmax * sizeof(double));
	p.B = malloc(nmax * nmax * sizeof(double));
	p.C = malloc(nmax * nmax * sizeof(double));
	if (!p.A || !p.B || !p.C)
		rc = pspace_err_set(PSPACE_ENOMEM, "product %s: out of memory", name);
	else
		rc = pspace_stored_write(s, name, PSPACE_KIND_BLOCKDIAG, am->layout, 0, bprod_tile,
		                         &p, &o, NULL);
	free(p.C);
	free(p.B);
	free(p.A);
	return rc;
}
