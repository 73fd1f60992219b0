/*
 * Dense and BlockDiag from gradient rows: F = (1/n) sum_rows r^T r, per
 * block (Dense: one block of d; BlockDiag: one block per layer, the layer's
 * slice of the rows), in RAM or out of core.
 *
 * Work is cut into passes over the source. A pass owns a run of tile rows,
 * in streaming order (block, tile row), possibly spanning several blocks:
 * for each block it touches, a segment of tile rows [tr0, tr1). Each tile
 * row has an f64 accumulator of its upper tiles only (its rows x the
 * columns from its diagonal tile to the block's end). The pass reads the
 * whole source once in batches of examples and adds X[:, rows]^T X[:, cols]
 * to them, then writes each of its tiles exactly once, scaled by 1/n, and
 * checkpoints. Passes = bands.
 *
 * Products: the pass's work is cut into items (a group of tile rows x a
 * chunk of columns), which exec.threads workers take and compute with
 * single-threaded BLIS into a scratch block, then add to the accumulators
 * (only the upper part: a group's lower rows skip the columns left of their
 * diagonal). When the stored precision is f32 or narrower, the batch is
 * converted to f32 and the products are sgemm over blocks of at most
 * F32_ROWS rows, each block's product added into the f64 accumulators:
 * twice the speed of dgemm. Error (to first order, u = 2^-24): an entry
 * differs from the exact (1/n) sum r_i r_j by at most
 * (F32_ROWS + 2) u (1/n) sum |r_i| |r_j| (rounding the rows to f32 and a
 * sum of at most F32_ROWS products in f32; the f64 sum across blocks adds
 * nothing at this order), below the f32 rounding of the stored value for
 * the diagonal up to that factor, and in practice ~sqrt(F32_ROWS) u.
 * An f64 matrix is computed with dgemm on the f64 rows.
 *
 * Writing: the tiles of a pass are filled and encoded on exec.threads
 * workers while this thread stores them in order (tile_pipe.c).
 *
 * Direct: when the whole input fits the budget as one batch (with no
 * smaller batch asked for), there is nothing to accumulate across batches:
 * one pass reads it, and each tile is computed (the same f32 blocks summed
 * in f64) by the worker that then encodes it. No accumulators are
 * allocated, zeroed or paged in, and the products overlap the writing.
 *
 * Memory: budget >= sum over the pass's accumulators + the workers'
 * scratch + one f64 tile + a batch x (8 K d + 4 K w (f32 copy) + adapter
 * bytes); the tile writer takes the tile and what the batch leaves when it
 * is freed (2 tiles and codecs per worker where that fits, else fewer). Passes are planned
 * greedily, each taking as many tile rows as fit with a batch of one example; the batch (when
 * automatic) then takes what the pass leaves. A matrix that fits whole is one pass: the in-RAM
 * build.
 *
 * Resume: an interrupted build (BUILDING, same blocks and tile edge) is
 * reopened and every pass whose tiles are all stored is skipped. A failed
 * build leaves the matrix BUILDING with its checkpointed passes; it is
 * only marked complete by the final pspace_writer_finish().
 */
#include <blis.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "build/dense_plan.h"
#include "common/error.h"
#include "common/mem.h"
#include "store/shard.h"

/* Reopens an interrupted build of the same shape, or says why it cannot. */
static int resume(pspace_writer **w, const pspace_build_target *t, pspace_kind kind,
                  const pspace_build_opts *o, const plan *p, const pspace_matrix_info *info)
{
	uint64_t *dims = NULL;
	int same, rc;

	if (info->state != PSPACE_STATE_BUILDING)
		return pspace_err_set(PSPACE_EEXIST, "matrix %s already exists (complete)",
		                      t->name);
	same = info->kind == kind && info->nblocks == p->nblocks &&
	       info->d == pspace_layout_dim(t->sub) && info->symmetric && info->tile == p->T &&
	       (o->write.tile == 0 || o->write.tile == info->tile);
	if (same) {
		dims = malloc(p->nblocks * sizeof(*dims));
		if (!dims)
			return pspace_err_set(PSPACE_ENOMEM, "out of memory");
		rc = pspace_store_blocks(t->s, t->name, dims, p->nblocks);
		if (rc != 0) {
			free(dims);
			return rc;
		}
		same = memcmp(dims, p->dims, p->nblocks * sizeof(*dims)) == 0;
		free(dims);
	}
	if (!same)
		return pspace_err_set(PSPACE_EEXIST,
		                      "matrix %s: an interrupted build of another kind, shape or "
		                      "tile edge exists; remove it first",
		                      t->name);
	return pspace_writer_resume(w, t->s, t->name);
}

/* The tile edge: the interrupted build's when resuming, else the option's or the default. */
static uint32_t tile_edge(const pspace_build_target *t, const pspace_build_opts *o)
{
	pspace_matrix_info info;

	if (o->resume && pspace_matrix_info_get(&info, t->s, t->name) == 0 && info.tile)
		return info.tile;
	return o->write.tile ? o->write.tile : PSPACE_DEFAULT_TILE;
}

static int open_writer(pspace_writer **w, const pspace_build_target *t, pspace_kind kind,
                       const pspace_build_opts *o, const plan *p, int *resumed)
{
	pspace_matrix_info info;
	pspace_matrix_desc desc;
	char *text;
	int rc;

	*resumed = 0;
	if (pspace_matrix_info_get(&info, t->s, t->name) == 0) {
		if (!o->resume)
			return pspace_err_set(PSPACE_EEXIST, "matrix %s already exists%s", t->name,
			                      info.state == PSPACE_STATE_BUILDING
			                          ? " (an interrupted build: resume or remove it)"
			                          : "");
		*resumed = 1;
		return resume(w, t, kind, o, p, &info);
	}
	rc = pspace_layout_text(&text, t->sub);
	if (rc != 0)
		return rc;
	memset(&desc, 0, sizeof(desc));
	desc.kind = kind;
	desc.d = pspace_layout_dim(t->sub);
	desc.nblocks = p->nblocks;
	desc.block_dims = p->dims;
	desc.tile = p->T;
	desc.symmetric = 1;
	desc.codec = o->write.codec;
	desc.layout_text = text;
	rc = pspace_writer_begin(w, t->s, t->name, &desc);
	free(text);
	return rc;
}

/*
 * A sharded build (o->shard_count > 0): plans only the rank's tile rows,
 * and checks that an interrupted build to resume was the same rank's.
 */
static int shard_plan(plan *p, const pspace_build_target *t, const pspace_build_opts *o)
{
	pspace_shard_info si;
	pspace_matrix_info info;
	uint64_t *bounds;
	int rc;

	if (o->shard_rank >= o->shard_count || o->shard_count > PSPACE_SHARD_MAX)
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: shard %u of %u ranks", t->name,
		                      o->shard_rank, o->shard_count);
	bounds = malloc(((size_t)o->shard_count + 1) * sizeof(*bounds));
	if (!bounds)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	rc = pspace_shard_bounds(bounds, o->shard_count, p->dims, p->nblocks, p->T);
	p->ranged = 1;
	p->row_first = bounds[o->shard_rank];
	p->row_end = bounds[o->shard_rank + 1];
	free(bounds);
	if (rc != 0 || !o->resume || pspace_matrix_info_get(&info, t->s, t->name) != 0) {
		pspace_errclear();
		return rc;
	}
	rc = pspace_shard_info_get(&si, NULL, 0, t->s, t->name);
	if (rc == 0 && (si.nranks != o->shard_count || si.rank != o->shard_rank))
		rc = pspace_err_set(PSPACE_EEXIST,
		                    "matrix %s: the interrupted build is shard %u of %u ranks, not "
		                    "%u of %u",
		                    t->name, si.rank, si.nranks, o->shard_rank, o->shard_count);
	if (rc == PSPACE_ENOTFOUND)
		rc = pspace_err_set(
		    PSPACE_EEXIST,
		    "matrix %s: the interrupted build is not sharded; remove it first", t->name);
	return rc;
}

/* ---- one pass ---------------------------------------------------------------------- */

/* 1 when every tile of the pass is stored already (a resumed build). */
static int pass_done(pspace_writer *w, const plan *p, const pass *ps)
{
	for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
		const seg *sg = &p->segs[i];
		uint32_t nt = (uint32_t)((p->dims[sg->b] + p->T - 1) / p->T);

		for (uint32_t tr = sg->tr0; tr < sg->tr1; tr++)
			for (uint32_t tc = tr; tc < nt; tc++) {
				int has = pspace_writer_has_tile(w, sg->b, tr, tc);

				if (has <= 0)
					return has;
			}
	}
	return 1;
}

/*
 * One item: rows of tile rows [ta, tb) of a segment x block columns
 * [c_lo, c_hi), c_lo >= ta's first row. Tile rows that start at or right
 * of c_hi have nothing to add and are left out (tb is cut to them).
 */
typedef struct item {
	const seg *sg;
	uint32_t ta, tb;
	uint64_t c_lo, c_hi;
} item;

/* What the workers share for one batch. */
typedef struct accjob {
	const plan *p;
	const item *it;
	size_t nit;
	atomic_size_t next;
	const double *X; /* f64 rows, ld d, columns [c0, c1) valid */
	const float *Xs; /* f32 copy of columns [c0, c1), ld c1 - c0 (f32 products) */
	uint64_t m, d, c0, c1;
	void **scratch; /* one block per worker */
} accjob;

/* Offset of tile row @p tr's accumulator within its segment's. */
static uint64_t row_off(const seg *sg, uint32_t T, uint32_t tr)
{
	uint64_t off = 0;

	for (uint32_t t = sg->tr0; t < tr; t++)
		off += tile_len(sg->nb, T, t) * (sg->nb - (uint64_t)t * T);
	return off;
}

/* Adds the item's product S (h x w, row-major; f32 or f64) to the accumulators. */
static void add_item(const plan *p, const item *it, const void *S, uint64_t w)
{
	const seg *sg = it->sg;
	uint64_t off = row_off(sg, p->T, it->ta), srow = 0;

	for (uint32_t tr = it->ta; tr < it->tb; tr++) {
		uint64_t r0 = (uint64_t)tr * p->T, rows = tile_len(sg->nb, p->T, tr);
		uint64_t ld = sg->nb - r0, from = r0 > it->c_lo ? r0 : it->c_lo;
		double *acc = sg->acc + off + (from - r0);

		for (uint64_t i = 0; i < rows; i++, srow++) {
			uint64_t s0 = srow * w + (from - it->c_lo), n = it->c_hi - from;

			if (p->f32) {
				const float *src = (const float *)S + s0;

				for (uint64_t j = 0; j < n; j++)
					acc[i * ld + j] += src[j];
			} else {
				const double *src = (const double *)S + s0;

				for (uint64_t j = 0; j < n; j++)
					acc[i * ld + j] += src[j];
			}
		}
		off += rows * ld;
	}
}

static void run_item(const accjob *j, const item *it, void *S, rntm_t *rn)
{
	const plan *p = j->p;
	const seg *sg = it->sg;
	uint64_t rows = 0, w = it->c_hi - it->c_lo, ra = sg->col + (uint64_t)it->ta * p->T;
	uint64_t ca = sg->col + it->c_lo;

	for (uint32_t tr = it->ta; tr < it->tb; tr++)
		rows += tile_len(sg->nb, p->T, tr);
	if (!p->f32) {
		double one = 1.0, zero = 0.0;

		bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)w, (dim_t)j->m,
		             &one, (double *)j->X + ra, (inc_t)j->d, 1, (double *)j->X + ca,
		             (inc_t)j->d, 1, &zero, S, (inc_t)w, 1, NULL, rn);
		add_item(p, it, S, w);
		return;
	}
	for (uint64_t k0 = 0; k0 < j->m; k0 += F32_ROWS) {
		uint64_t kb = j->m - k0 < F32_ROWS ? j->m - k0 : F32_ROWS, ld = j->c1 - j->c0;
		const float *X = j->Xs + k0 * ld;
		float one = 1.0f, zero = 0.0f;

		bli_sgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)w, (dim_t)kb,
		             &one, (float *)X + (ra - j->c0), (inc_t)ld, 1,
		             (float *)X + (ca - j->c0), (inc_t)ld, 1, &zero, S, (inc_t)w, 1, NULL,
		             rn);
		add_item(p, it, S, w);
	}
}

/*
 * Workers: each takes items and runs single-threaded BLIS on them. (BLIS's
 * own threading here is OpenMP, whose thread pool does not survive a fork.)
 */
typedef struct worker {
	accjob *j;
	void *S;
} worker;

static void *acc_worker(void *arg)
{
	worker *wk = arg;
	accjob *j = wk->j;
	rntm_t rn;
	size_t i;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(1, &rn);
	while ((i = atomic_fetch_add(&j->next, 1)) < j->nit)
		run_item(j, &j->it[i], wk->S, &rn);
	return NULL;
}

/* Adds one batch's products on @p threads threads (@p scratch: one block each). */
static void accumulate(accjob *j, void **scratch, int threads)
{
	pthread_t tid[MAX_WORKERS];
	worker wk[MAX_WORKERS];
	int started = 0;

	atomic_init(&j->next, 0);
	for (int i = 0; i < threads; i++)
		wk[i] = (worker){j, scratch[i]};
	for (int i = 1; i < threads && (size_t)i < j->nit; i++)
		if (pthread_create(&tid[started], NULL, acc_worker, &wk[started + 1]) == 0)
			started++;
		else
			break; /* fewer workers: the work still gets done */
	acc_worker(&wk[0]);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

/* The pass's items, in streaming order. */
static int make_items(const plan *p, const pass *ps, item **out, size_t *n)
{
	size_t cap = 0, k = 0;
	item *it;

	for (int fill = 0; fill < 2; fill++) {
		for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
			const seg *sg = &p->segs[i];

			for (uint32_t ta = sg->tr0; ta < sg->tr1; ta += p->group) {
				uint32_t tb = ta + p->group < sg->tr1 ? ta + p->group : sg->tr1;

				for (uint64_t c = (uint64_t)ta * p->T; c < sg->nb; c += p->cols) {
					uint64_t hi = c + p->cols < sg->nb ? c + p->cols : sg->nb;
					uint32_t last = (uint32_t)((hi + p->T - 1) / p->T);

					if (fill)
						it[k] =
						    (item){sg, ta, tb < last ? tb : last, c, hi};
					k++;
				}
			}
		}
		if (!fill) {
			cap = k;
			k = 0;
			it = malloc((cap ? cap : 1) * sizeof(*it));
			if (!it)
				return pspace_err_set(PSPACE_ENOMEM, "out of memory");
		}
	}
	*out = it;
	*n = k;
	return 0;
}

/* The tiles of a pass, in streaming order, for the tile writer. */
typedef struct pass_tiles {
	const plan *p;
	pspace_tile_addr *addr;
	const seg **sg; /* the segment of each tile */
	uint64_t *off;  /* offset of its tile row's accumulator in the segment's */
	size_t n;
	double scale;
	double max;       /* the largest magnitude the stored precision holds */
	const char *prec; /* its name, for the error */
} pass_tiles;

/* What fill_direct() multiplies: the whole input as one batch. */
typedef struct direct_job {
	const pass_tiles *pt;
	const double *X; /* f64 rows, ld d, columns [c0, c1) valid */
	const float *Xs; /* f32 copy of columns [c0, c1), ld c1 - c0 (f32 products) */
	uint64_t m, d, c0, c1;
} direct_job;

static void pass_tiles_free(pass_tiles *pt)
{
	free(pt->addr);
	free(pt->sg);
	free(pt->off);
}

static int pass_tiles_make(pass_tiles *pt, const plan *p, const pass *ps, double scale)
{
	size_t n = 0, k = 0;

	memset(pt, 0, sizeof(*pt));
	pt->p = p;
	pt->scale = scale;
	for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
		const seg *sg = &p->segs[i];
		uint32_t nt = (uint32_t)((sg->nb + p->T - 1) / p->T);

		for (uint32_t tr = sg->tr0; tr < sg->tr1; tr++)
			n += nt - tr;
	}
	pt->addr = malloc((n ? n : 1) * sizeof(*pt->addr));
	pt->sg = malloc((n ? n : 1) * sizeof(*pt->sg));
	pt->off = malloc((n ? n : 1) * sizeof(*pt->off));
	if (!pt->addr || !pt->sg || !pt->off) {
		pass_tiles_free(pt);
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	}
	for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
		const seg *sg = &p->segs[i];
		uint32_t nt = (uint32_t)((sg->nb + p->T - 1) / p->T);
		uint64_t off = 0;

		for (uint32_t tr = sg->tr0; tr < sg->tr1; tr++) {
			for (uint32_t tc = tr; tc < nt; tc++, k++) {
				pt->addr[k] = (pspace_tile_addr){sg->b, tr, tc};
				pt->sg[k] = sg;
				pt->off[k] = off;
			}
			off += tile_len(sg->nb, p->T, tr) * (sg->nb - (uint64_t)tr * p->T);
		}
	}
	pt->n = k;
	return 0;
}

/*
 * The error for entry (i, j) of tile @p a holding @p v, beyond what the
 * stored precision holds: inputs are finite, so the sums overflowed.
 */
static int tile_overflow(const pass_tiles *pt, pspace_tile_addr a, uint64_t i, uint64_t j, double v)
{
	int f64 = pt->max == DBL_MAX;

	return pspace_err_set(PSPACE_ENUMERIC,
	                      "tile (%u,%u,%u): entry (%llu, %llu) is %g, beyond the %s range "
	                      "(%.6g)%s",
	                      a.block, a.row, a.col, (unsigned long long)i, (unsigned long long)j,
	                      v, pt->prec, pt->max,
	                      f64 ? ": scale the inputs down"
	                          : ": build at f64 precision (--precision f64) or scale the "
	                            "inputs down");
}

/*
 * Tile i of the pass, scaled (a diagonal tile made exactly symmetric from
 * its upper half); an entry beyond the stored precision's range is an error.
 */
/* Checks tile @p k (rows x cols, filled) against the stored precision's range. */
static int check_range(const pass_tiles *pt, size_t k, const double *tile, uint64_t rows,
                       uint64_t cols)
{
	int ok = 1;

	/* NaN compares false: one vectorizable test per entry */
	for (uint64_t i = 0; i < rows * cols; i++)
		ok &= fabs(tile[i]) <= pt->max;
	for (uint64_t i = 0; !ok && i < rows * cols; i++)
		if (!(fabs(tile[i]) <= pt->max))
			return tile_overflow(pt, pt->addr[k], i / cols, i % cols, tile[i]);
	return 0;
}

static int fill_tile(void *ud, size_t k, double *tile, uint32_t *ncols, pspace_dtype *type,
                     void *scratch)
{
	const pass_tiles *pt = ud;
	const plan *p = pt->p;
	const seg *sg = pt->sg[k];
	uint32_t tr = pt->addr[k].row, tc = pt->addr[k].col;
	uint64_t r0 = (uint64_t)tr * p->T, rows = tile_len(sg->nb, p->T, tr);
	uint64_t ld = sg->nb - r0, ac = (uint64_t)tc * p->T - r0, cols = tile_len(sg->nb, p->T, tc);
	const double *acc = sg->acc + pt->off[k];

	(void)scratch;
	(void)type;
	for (uint64_t i = 0; i < rows; i++)
		for (uint64_t j = 0; j < cols; j++) {
			uint64_t ii = i, jj = j;

			if (tc == tr && j < i) {
				ii = j;
				jj = i;
			}
			tile[i * cols + j] = pt->scale * acc[ii * ld + ac + jj];
		}
	*ncols = (uint32_t)cols;
	return check_range(pt, k, tile, rows, cols);
}

/*
 * An f32 product @p t (rows x cols) scaled in f64 and rounded to f32 in
 * place, as the f64 path would store it ((float)(scale * (double)t[i])); an
 * entry that does not fit f32 is an error.
 */
static int scale_f32(const pass_tiles *pt, size_t k, float *t, uint64_t rows, uint64_t cols)
{
	int ok = 1;

	for (uint64_t i = 0; i < rows * cols; i++) {
		float v = (float)(pt->scale * (double)t[i]);

		ok &= fabsf(v) <= FLT_MAX; /* NaN compares false */
		t[i] = v;
	}
	for (uint64_t i = 0; !ok && i < rows * cols; i++)
		if (!(fabsf(t[i]) <= FLT_MAX))
			return tile_overflow(pt, pt->addr[k], i / cols, i % cols, (double)t[i]);
	return 0;
}

/*
 * The tile filled straight from the batch, when the whole input is one
 * batch: X[:, rows]^T X[:, cols] over all m rows, in blocks of F32_ROWS
 * rows with f32 products (into @p scratch) summed in f64, as the
 * accumulators would have it; a diagonal tile is made exactly symmetric
 * from its upper half. With one block and f32 tiles stored, the product
 * goes to @p tile as f32, scaled there (the same values, without the f64
 * round trip and the encoder's conversion back).
 */
static int fill_direct(void *ud, size_t k, double *tile, uint32_t *ncols, pspace_dtype *type,
                       void *scratch)
{
	const direct_job *dj = ud;
	const pass_tiles *pt = dj->pt;
	const plan *p = pt->p;
	const seg *sg = pt->sg[k];
	uint32_t tr = pt->addr[k].row, tc = pt->addr[k].col;
	uint64_t rows = tile_len(sg->nb, p->T, tr), cols = tile_len(sg->nb, p->T, tc);
	uint64_t ra = sg->col + (uint64_t)tr * p->T, ca = sg->col + (uint64_t)tc * p->T;
	float *S = scratch;
	/* one block of f32 products and f32 tiles stored: the product is the tile */
	int f32out = p->f32 && dj->m <= F32_ROWS && pt->max == FLT_MAX;
	rntm_t rn;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(1, &rn);
	*ncols = (uint32_t)cols;
	if (!p->f32) {
		double one = 1.0, zero = 0.0;

		bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)cols,
		             (dim_t)dj->m, &one, (double *)dj->X + ra, (inc_t)dj->d, 1,
		             (double *)dj->X + ca, (inc_t)dj->d, 1, &zero, tile, (inc_t)cols, 1,
		             NULL, &rn);
	}
	for (uint64_t k0 = 0; p->f32 && k0 < dj->m; k0 += F32_ROWS) {
		uint64_t kb = dj->m - k0 < F32_ROWS ? dj->m - k0 : F32_ROWS, ld = dj->c1 - dj->c0;
		const float *X = dj->Xs + k0 * ld;
		float one = 1.0f, zero = 0.0f, *t = f32out ? (float *)(void *)tile : S;

		bli_sgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)cols, (dim_t)kb,
		             &one, (float *)X + (ra - dj->c0), (inc_t)ld, 1,
		             (float *)X + (ca - dj->c0), (inc_t)ld, 1, &zero, t, (inc_t)cols, 1,
		             NULL, &rn);
		if (f32out) {
			for (uint64_t i = 0; tr == tc && i < rows; i++)
				for (uint64_t j = 0; j < i; j++)
					t[i * cols + j] = t[j * cols + i];
			*type = PSPACE_F32;
			return scale_f32(pt, k, t, rows, cols);
		}
		for (uint64_t i = 0; i < rows * cols; i++)
			tile[i] = k0 ? tile[i] + S[i] : S[i];
	}
	for (uint64_t i = 0; tr == tc && i < rows; i++)
		for (uint64_t j = 0; j < i; j++)
			tile[i * cols + j] = tile[j * cols + i];
	for (uint64_t i = 0; i < rows * cols; i++)
		tile[i] *= pt->scale;
	return check_range(pt, k, tile, rows, cols);
}

/* Copies columns [c0, c1) of the m rows of @p X (ld d) to f32 (ld c1 - c0). */
static void to_f32(float *Xs, const double *X, uint64_t m, uint64_t d, uint64_t c0, uint64_t c1)
{
	uint64_t w = c1 - c0;

	for (uint64_t i = 0; i < m; i++)
		for (uint64_t j = 0; j < w; j++)
			Xs[i * w + j] = (float)X[i * d + c0 + j];
}

static int run_pass(pspace_writer *w, const pspace_build_target *t, const plan *p, const pass *ps,
                    pspace_rows *r, const pspace_build_opts *o, double *acc, void **scratch,
                    uint64_t pi, uint64_t npasses, const char *stage)
{
	uint64_t nx, used = ps->bytes + scratch_bytes(p) * (uint64_t)p->threads;
	uint64_t avail = o->exec.mem_budget > used ? o->exec.mem_budget - used : 0;
	uint64_t w32 = p->f32 ? (uint64_t)r->K * (ps->c1 - ps->c0) * 4 : 0;
	accjob j = {p, NULL, 0, 0, NULL, NULL, 0, r->d, ps->c0, ps->c1, scratch};
	double *X = NULL, *a = acc;
	float *Xs = NULL;
	item *it = NULL;
	pass_tiles pt;
	int rc;

	rc = pspace_rows_batch(r, o, avail, w32, t->name, &nx, &X);
	if (rc == 0 && p->f32 && !(Xs = pspace_alloc_big((size_t)(nx * w32 + 4))))
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for a batch of %llu",
		                    t->name, (unsigned long long)nx);
	for (size_t i = ps->first; rc == 0 && i < ps->first + ps->nseg; i++) {
		seg *sg = &p->segs[i];

		sg->acc = a;
		a += sg->bytes / 8;
		memset(sg->acc, 0, sg->bytes);
	}
	if (rc == 0)
		rc = make_items(p, ps, &it, &j.nit);
	j.it = it;
	j.X = X;
	j.Xs = Xs;
	for (uint64_t x0 = 0; rc == 0 && x0 < r->n; x0 += nx) {
		uint64_t k = r->n - x0 < nx ? r->n - x0 : nx;

		rc = pspace_rows_read(r, x0, k, ps->c0, ps->c1, X);
		if (rc != 0)
			break;
		j.m = k * r->K;
		if (p->f32)
			to_f32(Xs, X, j.m, r->d, ps->c0, ps->c1);
		accumulate(&j, scratch, p->threads);
		pspace_build_progress(o, stage, pi * r->n + x0 + k, npasses * r->n);
	}
	free(it);
	free(Xs);
	free(X);
	if (rc == 0)
		rc = pass_tiles_make(&pt, p, ps, 1.0 / (double)r->n);
	if (rc == 0) {
		pspace_dtype prec = o->write.codec.dtype;

		pt.max = prec == PSPACE_F32 ? FLT_MAX : prec == PSPACE_BF16 ? 0x1.fep127 : DBL_MAX;
		pt.prec = pspace_dtype_name(prec);
	}
	if (rc == 0) {
		/* the tile writer gets what the batch had: 2 slots per worker, or fewer */
		uint64_t tile = 8 * (uint64_t)p->T * p->T, slot = tile + CODEC_BYTES(p->T);
		uint64_t slots = (avail + tile) / slot;

		slots = slots < 2 * (uint64_t)p->threads ? slots : 2 * (uint64_t)p->threads;

		rc = pspace_write_tiles(w, pt.addr, pt.n, p->T, p->threads, (size_t)slots, 0,
		                        fill_tile, &pt);
		rc = pspace_err_prefix(rc, "matrix %s", t->name);
		pass_tiles_free(&pt);
	}
	if (rc == 0)
		rc = pspace_writer_checkpoint(w);
	return rc;
}

/* Bytes of the tile writer in a direct pass: per worker an f32 product and two slots. */
static uint64_t direct_fixed(const plan *p)
{
	uint64_t T2 = (uint64_t)p->T * p->T;

	return (uint64_t)p->threads * (4 * T2 + 2 * (8 * T2 + CODEC_BYTES(p->T)));
}

/*
 * A pass whose input is one batch: the rows read once, then every tile
 * computed by the worker that encodes it (fill_direct), with no
 * accumulators to fill, zero and page in.
 */
static int run_pass_direct(pspace_writer *w, const pspace_build_target *t, const plan *p,
                           const pass *ps, pspace_rows *r, const pspace_build_opts *o, uint64_t pi,
                           uint64_t npasses, const char *stage)
{
	uint64_t nx, w32 = p->f32 ? (uint64_t)r->K * (ps->c1 - ps->c0) * 4 : 0;
	direct_job dj = {NULL, NULL, NULL, 0, r->d, ps->c0, ps->c1};
	double *X = NULL;
	float *Xs = NULL;
	pass_tiles pt;
	int rc;

	rc = pspace_rows_batch(r, o, UINT64_MAX, w32, t->name, &nx, &X);
	if (rc == 0 && nx < r->n)
		rc = pspace_err_set(PSPACE_EINVAL, "matrix %s: a direct pass needs one batch",
		                    t->name);
	if (rc == 0 && p->f32 && !(Xs = pspace_alloc_big((size_t)(nx * w32 + 4))))
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for a batch of %llu",
		                    t->name, (unsigned long long)nx);
	if (rc == 0)
		rc = pspace_rows_read(r, 0, r->n, ps->c0, ps->c1, X);
	if (rc == 0 && p->f32)
		to_f32(Xs, X, r->n * r->K, r->d, ps->c0, ps->c1);
	if (rc == 0) {
		pspace_build_progress(o, stage, (pi + 1) * r->n, npasses * r->n);
		rc = pass_tiles_make(&pt, p, ps, 1.0 / (double)r->n);
	}
	if (rc == 0) {
		pspace_dtype prec = o->write.codec.dtype;

		pt.max = prec == PSPACE_F32 ? FLT_MAX : prec == PSPACE_BF16 ? 0x1.fep127 : DBL_MAX;
		pt.prec = pspace_dtype_name(prec);
		dj = (direct_job){&pt, X, Xs, r->n * r->K, r->d, ps->c0, ps->c1};
		rc = pspace_write_tiles(w, pt.addr, pt.n, p->T, p->threads, 2 * (size_t)p->threads,
		                        (size_t)4 * p->T * p->T, fill_direct, &dj);
		rc = pspace_err_prefix(rc, "matrix %s", t->name);
		pass_tiles_free(&pt);
	}
	free(Xs);
	free(X);
	if (rc == 0)
		rc = pspace_writer_checkpoint(w);
	return rc;
}

/*
 * 1 if a build that failed with @p rc could be finished by resuming it: the
 * failures of the machine (I/O, a full disk or map, memory, a busy or
 * failing store), not those of the input (malformed or non-finite values,
 * shapes), which would fail again.
 */
static int resumable(int rc)
{
	return rc == PSPACE_EIO || rc == PSPACE_EFULL || rc == PSPACE_ENOMEM ||
	       rc == PSPACE_EBUSY || rc == PSPACE_ESTORE;
}

int pspace_build_tiled(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                       const pspace_build_opts *o)
{
	plan p;
	pspace_writer *w = NULL;
	uint64_t fixed, accmax, tile, batch, per, todo = 0, done = 0;
	double *acc = NULL;
	void *scratch[MAX_WORKERS] = {NULL};
	unsigned char *skip = NULL;
	int nscratch = 0;
	const char *stage = pspace_kind_name(kind);
	int resumed = 0, direct, rc;

	memset(&p, 0, sizeof(p));
	rc = pspace_dense_block_dims(kind, t->sub, &p);
	if (rc != 0)
		goto out;
	/* Budget: the scratch and a batch (or the tile writer) besides the accumulators. */
	p.T = tile_edge(t, o);
	p.f32 = o->write.codec.dtype != PSPACE_F64;
	p.threads = o->exec.threads < MAX_WORKERS ? o->exec.threads : MAX_WORKERS;
	pspace_dense_plan_items(&p, o->exec.mem_budget);
	fixed = scratch_bytes(&p) * (uint64_t)p.threads;
	tile = 8 * (uint64_t)p.T * p.T;
	batch = pspace_dense_batch_reserve(&p, r, o, fixed + tile);
	fixed += tile + batch;
	accmax = o->exec.mem_budget > fixed ? o->exec.mem_budget - fixed : 0;
	/* The whole input in one batch: one direct pass, no accumulators. */
	per = (uint64_t)r->K * r->d * (p.f32 ? 12 : 8) + r->extra_per_example;
	direct = (o->batch == 0 || o->batch >= r->n) && o->exec.mem_budget > direct_fixed(&p) &&
	         r->n <= (o->exec.mem_budget - direct_fixed(&p)) / per;
	if (direct)
		accmax = UINT64_MAX;
	if (o->shard_count > 0)
		rc = shard_plan(&p, t, o);
	if (rc == 0)
		rc = pspace_dense_plan_make(&p, t->name, t->coff, accmax);
	if (rc == 0)
		rc = open_writer(&w, t, kind, o, &p, &resumed);
	if (rc == 0 && o->shard_count > 0 && !resumed)
		rc = pspace_shard_manifest_put(w, o->shard_rank, o->shard_count, p.dims, p.nblocks,
		                               p.T);
	if (rc == 0 && o->shard_count > 0 && !resumed)
		rc = pspace_writer_checkpoint(w);
	if (rc != 0)
		goto out;
	skip = calloc(p.npasses ? p.npasses : 1, 1);
	acc = direct ? NULL : pspace_alloc_big(p.max_bytes ? p.max_bytes : 8);
	while (!direct && nscratch < p.threads &&
	       (scratch[nscratch] = pspace_alloc_big(scratch_bytes(&p))))
		nscratch++;
	if (!skip || (!direct && (!acc || nscratch < p.threads))) {
		rc = pspace_err_set(PSPACE_ENOMEM,
		                    "matrix %s: out of memory for %llu bytes of "
		                    "accumulators",
		                    t->name, (unsigned long long)p.max_bytes);
		goto out;
	}
	for (size_t i = 0; i < p.npasses; i++) {
		if (resumed) {
			rc = pass_done(w, &p, &p.passes[i]);
			if (rc < 0)
				goto out;
			skip[i] = (unsigned char)rc;
			rc = 0;
		}
		todo += !skip[i];
	}
	for (size_t i = 0; i < p.npasses; i++) {
		if (skip[i])
			continue;
		rc = direct ? run_pass_direct(w, t, &p, &p.passes[i], r, o, done++, todo, stage)
		            : run_pass(w, t, &p, &p.passes[i], r, o, acc, scratch, done++, todo,
		                       stage);
		if (rc != 0)
			goto out;
	}
	rc = pspace_writer_finish(w);
	w = NULL;
	if (rc != 0)
		rc = pspace_err_prefix(rc, "matrix %s", t->name);
out:
	if (w) {
		char msg[512];
		int keep = resumable(rc);

		/*
		 * An interruption keeps the checkpointed passes for --resume; a failure
		 * on the input would fail again, so it removes the matrix.
		 */
		snprintf(msg, sizeof(msg), "%s", pspace_errdetail());
		pspace_writer_abort(w, !keep);
		pspace_err_set(rc, "%s (matrix %s %s)", msg, t->name,
		               keep ? "left incomplete: resume the build or remove it"
		                    : "removed: nothing was kept");
	}
	for (int i = 0; i < nscratch; i++)
		free(scratch[i]);
	free(acc);
	free(skip);
	pspace_dense_plan_free(&p);
	return rc;
}
