/*
 * Dense and BlockDiag from gradient rows: F = (1/n) sum_rows r^T r, per
 * block (Dense: one block of d; BlockDiag: one block per layer, the layer's
 * slice of the rows), in RAM or out of core.
 *
 * Work is cut into passes over the source. A pass owns a run of tile rows,
 * in streaming order (block, tile row), possibly spanning several blocks:
 * for each block it touches, a segment of tile rows [tr0, tr1), i.e. rows
 * [r0, r1) of the block, and an f64 accumulator of (r1 - r0) x (nb - r0)
 * entries (the band and everything right of it: the upper tiles of those
 * tile rows). The pass reads the whole source once in batches of examples
 * and adds acc += X[:, r0:r1]^T X[:, r0:nb] (BLIS dgemm on column chunks
 * of each segment, on exec.threads workers), then writes each of its
 * tiles exactly once, scaled by 1/n, and checkpoints. Passes = bands.
 *
 * Memory: budget >= sum over the pass's segments of 8 h w (accumulators)
 * + 8 T^2 (one tile) + batch x (8 K d + adapter bytes). Passes are planned
 * greedily, each taking as many tile rows as fit with a batch of one
 * example; the batch (when automatic) then takes what the pass leaves.
 * A matrix that fits whole is one pass: the in-RAM build.
 *
 * Resume: an interrupted build (BUILDING, same blocks and tile edge) is
 * reopened and every pass whose tiles are all stored is skipped. A failed
 * build leaves the matrix BUILDING with its checkpointed passes; it is
 * only marked complete by the final pspace_writer_finish().
 */
#include <blis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"

typedef struct seg {
	uint32_t b, tr0, tr1; /* block, tile rows [tr0, tr1) */
	uint64_t r0, h, w;    /* rows [r0, r0 + h) of the block, acc is h x w (w = nb - r0) */
	uint64_t col;         /* column of the rows where the block's row r0 is */
	double *acc;
} seg;

typedef struct pass {
	size_t first, nseg; /* segments [first, first + nseg) of the plan */
	uint64_t bytes;     /* accumulator bytes */
} pass;

typedef struct plan {
	uint32_t T, nblocks;
	uint64_t *dims, *offs; /* block dims and offsets within the matrix */
	seg *segs;
	size_t nsegs, cap_segs;
	pass *passes;
	size_t npasses, cap_passes;
	uint64_t max_bytes, ntiles;
} plan;

static void plan_free(plan *p)
{
	free(p->dims);
	free(p->offs);
	free(p->segs);
	free(p->passes);
}

static int grow(void **a, size_t *cap, size_t need, size_t size)
{
	void *n;
	size_t c = *cap ? *cap : 8;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	n = realloc(*a, c * size);
	if (!n)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory planning the build");
	*a = n;
	*cap = c;
	return 0;
}

static uint64_t tile_len(uint64_t nb, uint32_t T, uint32_t t)
{
	uint64_t s = (uint64_t)t * T;

	return nb - s < T ? nb - s : T;
}

/* Splits the blocks into passes of at most @p accmax accumulator bytes. */
static int plan_make(plan *p, const char *name, uint64_t coff, uint64_t accmax)
{
	pass cur = {0, 0, 0};
	int rc;

	for (uint32_t b = 0; b < p->nblocks; b++) {
		uint64_t nb = p->dims[b];
		uint32_t nt = (uint32_t)((nb + p->T - 1) / p->T);

		p->ntiles += (uint64_t)nt * (nt + 1) / 2;
		for (uint32_t tr = 0; tr < nt; tr++) {
			uint64_t r0 = (uint64_t)tr * p->T, rows = tile_len(nb, p->T, tr);
			seg *last = cur.nseg ? &p->segs[p->nsegs - 1] : NULL;
			int extend = last && last->b == b;
			uint64_t add = 8 * rows * (extend ? last->w : nb - r0);

			if (cur.nseg && cur.bytes + add > accmax) {
				rc = grow((void **)&p->passes, &p->cap_passes, p->npasses + 1,
				          sizeof(pass));
				if (rc != 0)
					return rc;
				p->passes[p->npasses++] = cur;
				if (cur.bytes > p->max_bytes)
					p->max_bytes = cur.bytes;
				cur = (pass){p->nsegs, 0, 0};
				extend = 0;
				add = 8 * rows * (nb - r0);
			}
			if (add > accmax)
				return pspace_err_set(
				    PSPACE_ENOMEM,
				    "matrix %s: one tile row (%llu x %llu) of block %u needs %llu "
				    "bytes, more than the %llu bytes of the memory budget left for "
				    "accumulators",
				    name, (unsigned long long)rows, (unsigned long long)(nb - r0),
				    b, (unsigned long long)add, (unsigned long long)accmax);
			if (extend) {
				last->tr1 = tr + 1;
				last->h += rows;
			} else {
				rc = grow((void **)&p->segs, &p->cap_segs, p->nsegs + 1,
				          sizeof(seg));
				if (rc != 0)
					return rc;
				p->segs[p->nsegs++] = (seg){
				    b, tr, tr + 1, r0, rows, nb - r0, coff + p->offs[b] + r0, NULL};
				cur.nseg++;
			}
			cur.bytes += add;
		}
	}
	if (cur.nseg) {
		rc = grow((void **)&p->passes, &p->cap_passes, p->npasses + 1, sizeof(pass));
		if (rc != 0)
			return rc;
		p->passes[p->npasses++] = cur;
		if (cur.bytes > p->max_bytes)
			p->max_bytes = cur.bytes;
	}
	return 0;
}

/* ---- opening the writer ------------------------------------------------------------- */

static int block_dims(pspace_kind kind, const pspace_layout *l, plan *p)
{
	p->nblocks = kind == PSPACE_KIND_DENSE ? 1 : (uint32_t)pspace_layout_nlayers(l);
	p->dims = malloc(p->nblocks * sizeof(*p->dims));
	p->offs = malloc(p->nblocks * sizeof(*p->offs));
	if (!p->dims || !p->offs)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	if (kind == PSPACE_KIND_DENSE) {
		p->dims[0] = pspace_layout_dim(l);
		p->offs[0] = 0;
		return 0;
	}
	for (uint32_t b = 0; b < p->nblocks; b++) {
		const pspace_layer *L = pspace_layout_layer(l, b);

		p->dims[b] = L->size;
		p->offs[b] = L->offset;
	}
	return 0;
}

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
 * Accumulation, threaded by hand: each segment's columns are cut into
 * chunks, and exec.threads workers (this thread one of them) take chunks
 * and run single-threaded BLIS on them. (BLIS's own threading here is
 * OpenMP, whose thread pool does not survive a fork.)
 */
typedef struct chunk {
	seg *sg;
	uint64_t c0, c1; /* columns of the segment's accumulator */
} chunk;

typedef struct accjob {
	const chunk *ch;
	size_t nch;
	atomic_size_t next;
	const double *X;
	uint64_t m, d;
	uint64_t T; /* tile edge */
} accjob;

static void *acc_worker(void *arg)
{
	accjob *j = arg;
	double one = 1.0;
	rntm_t rn;
	size_t i;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(1, &rn);
	while ((i = atomic_fetch_add(&j->next, 1)) < j->nch) {
		const chunk *c = &j->ch[i];
		const seg *sg = c->sg;
		double *X = (double *)j->X;
		/* Only the upper tiles are stored: the rows of the band in tile
		 * rows past the chunk's last tile column feed lower tiles only,
		 * so they are skipped (this halves the work of a single pass). */
		uint64_t need = ((sg->r0 + c->c1 - 1) / j->T + 1) * j->T - sg->r0;
		uint64_t h = need < sg->h ? need : sg->h;

		bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)h, (dim_t)(c->c1 - c->c0),
		             (dim_t)j->m, &one, X + sg->col, (inc_t)j->d, 1, X + sg->col + c->c0,
		             (inc_t)j->d, 1, &one, sg->acc + c->c0, (inc_t)sg->w, 1, NULL, &rn);
	}
	return NULL;
}

/* acc += X[:, band]^T X[:, band start..] for every chunk, on @p threads threads. */
static void accumulate(const chunk *ch, size_t nch, uint64_t m, const double *X, uint64_t d,
                       uint64_t T, int threads)
{
	accjob j = {ch, nch, 0, X, m, d, T};
	pthread_t tid[64];
	int started = 0;

	atomic_init(&j.next, 0);
	if (threads > 64)
		threads = 64;
	for (int i = 1; i < threads && (size_t)i < nch; i++, started++)
		if (pthread_create(&tid[started], NULL, acc_worker, &j) != 0)
			break; /* fewer workers: the work still gets done */
	acc_worker(&j);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

/* Cuts the pass's segments into about 2 chunks per thread each (at least 64 columns). */
static int make_chunks(const plan *p, const pass *ps, int threads, chunk **out, size_t *n)
{
	size_t cap = 0, k = 0;
	chunk *ch;

	for (size_t i = ps->first; i < ps->first + ps->nseg; i++)
		cap += 2 * (size_t)threads;
	ch = malloc(cap * sizeof(*ch));
	if (!ch)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
		seg *sg = &p->segs[i];
		uint64_t step = (sg->w + 2 * (uint64_t)threads - 1) / (2 * (uint64_t)threads);

		step = step < 64 ? 64 : step;
		for (uint64_t c = 0; c < sg->w && k < cap; c += step)
			ch[k++] = (chunk){sg, c, c + step < sg->w ? c + step : sg->w};
	}
	*out = ch;
	*n = k;
	return 0;
}

/* Writes the tiles of segment @p sg scaled by @p scale (diagonal tiles made exactly symmetric). */
static int write_seg(pspace_writer *w, const plan *p, const seg *sg, double scale, double *tile,
                     const char *name)
{
	uint64_t nb = p->dims[sg->b];
	uint32_t nt = (uint32_t)((nb + p->T - 1) / p->T);
	int rc = 0;

	for (uint32_t tr = sg->tr0; rc == 0 && tr < sg->tr1; tr++) {
		uint64_t ar = (uint64_t)tr * p->T - sg->r0, rows = tile_len(nb, p->T, tr);

		for (uint32_t tc = tr; rc == 0 && tc < nt; tc++) {
			uint64_t ac = (uint64_t)tc * p->T - sg->r0, cols = tile_len(nb, p->T, tc);

			for (uint64_t i = 0; i < rows; i++)
				for (uint64_t j = 0; j < cols; j++) {
					uint64_t ii = i, jj = j;

					if (tc == tr && j < i) {
						ii = j;
						jj = i;
					}
					tile[i * cols + j] =
					    scale * sg->acc[(ar + ii) * sg->w + ac + jj];
				}
			rc = pspace_writer_put_tile(w, sg->b, tr, tc, PSPACE_F64, tile, cols);
			if (rc != 0)
				rc = pspace_err_prefix(rc, "matrix %s: tile (%u,%u,%u)", name,
				                       sg->b, tr, tc);
		}
	}
	return rc;
}

static int run_pass(pspace_writer *w, const pspace_build_target *t, const plan *p, const pass *ps,
                    pspace_rows *r, const pspace_build_opts *o, double *acc, double *tile,
                    uint64_t pi, uint64_t npasses, const char *stage)
{
	uint64_t nx, used = ps->bytes + 8 * (uint64_t)p->T * p->T, c0 = UINT64_MAX, c1 = 0;
	uint64_t avail = o->exec.mem_budget > used ? o->exec.mem_budget - used : 0;
	double *X = NULL, *a = acc;
	chunk *ch = NULL;
	size_t nch = 0;
	int rc;

	rc = pspace_rows_batch(r, o, avail, t->name, &nx, &X);
	if (rc != 0)
		return rc;
	for (size_t i = ps->first; i < ps->first + ps->nseg; i++) {
		seg *sg = &p->segs[i];

		sg->acc = a;
		a += sg->h * sg->w;
		memset(sg->acc, 0, sg->h * sg->w * sizeof(double));
		c0 = sg->col < c0 ? sg->col : c0;
		c1 = sg->col + sg->w > c1 ? sg->col + sg->w : c1;
	}
	rc = make_chunks(p, ps, o->exec.threads, &ch, &nch);
	for (uint64_t x0 = 0; rc == 0 && x0 < r->n; x0 += nx) {
		uint64_t k = r->n - x0 < nx ? r->n - x0 : nx;

		rc = pspace_rows_read(r, x0, k, c0, c1, X);
		if (rc == 0)
			accumulate(ch, nch, k * r->K, X, r->d, p->T, o->exec.threads);
		if (rc == 0)
			pspace_build_progress(o, stage, pi * r->n + x0 + k, npasses * r->n);
	}
	free(ch);
	free(X);
	for (size_t i = ps->first; rc == 0 && i < ps->first + ps->nseg; i++)
		rc = write_seg(w, p, &p->segs[i], 1.0 / (double)r->n, tile, t->name);
	if (rc == 0)
		rc = pspace_writer_checkpoint(w);
	return rc;
}

int pspace_build_tiled(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                       const pspace_build_opts *o)
{
	plan p;
	pspace_writer *w = NULL;
	uint64_t fixed, accmax, todo = 0, done = 0;
	double *acc = NULL, *tile = NULL;
	unsigned char *skip = NULL;
	const char *stage = pspace_kind_name(kind);
	int resumed = 0, rc;

	memset(&p, 0, sizeof(p));
	rc = block_dims(kind, t->sub, &p);
	if (rc != 0)
		goto out;
	/* Budget: one tile and a batch of one example besides the accumulators. */
	p.T = tile_edge(t, o);
	fixed = 8 * (uint64_t)p.T * p.T + (uint64_t)r->K * r->d * 8 + r->extra_per_example;
	accmax = o->exec.mem_budget > fixed ? o->exec.mem_budget - fixed : 0;
	rc = plan_make(&p, t->name, t->coff, accmax);
	if (rc == 0)
		rc = open_writer(&w, t, kind, o, &p, &resumed);
	if (rc != 0)
		goto out;
	skip = calloc(p.npasses ? p.npasses : 1, 1);
	acc = malloc(p.max_bytes ? p.max_bytes : 8);
	tile = malloc(8 * (size_t)p.T * p.T);
	if (!skip || !acc || !tile) {
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
		rc = run_pass(w, t, &p, &p.passes[i], r, o, acc, tile, done++, todo, stage);
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

		/* keep the checkpointed passes (resumable) and the failure's detail */
		snprintf(msg, sizeof(msg), "%s", pspace_errdetail());
		pspace_writer_abort(w, 0);
		pspace_err_set(rc, "%s (matrix %s left incomplete: resume or remove it)", msg,
		               t->name);
	}
	free(tile);
	free(acc);
	free(skip);
	plan_free(&p);
	return rc;
}
