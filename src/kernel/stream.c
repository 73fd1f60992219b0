/*
 * The streaming engine: one pass over the tiles of one or more stored tiled
 * matrices.
 *
 * The workers walk the readers' cursors (one reader, one read snapshot,
 * per matrix) in streaming order, which is the order of the file, so the
 * store file is read sequentially: each worker takes the next tile address
 * (with a pointer into the memory map for every matrix) from a small ring
 * it refills under a lock as it takes, views the tile with its own codec
 * (zero copy for raw tiles of the wanted type, else a decode into the
 * codec's buffer) and calls the kernel, so decoding and kernels of
 * different tiles overlap across the cores. The calling thread is worker
 * 0; W - 1 threads are created for the pass. With W = 1 the tiles reach the
 * kernel in streaming order. A kernel that takes row panels (kernel.panels,
 * one-matrix passes) gets each tile as panels of about PANEL_BYTES from
 * pspace_tile_panels_*: raw rows in place, byte-plane tiles unshuffled a
 * panel at a time, and the checksum folded in as the panels are used,
 * compared after the last one.
 *
 * Memory bound, independent of d (E = tile edge, n = matrices of the pass,
 * s = stored bytes per element, Q = QUEUE_PER_WORKER * W):
 *   heap   <= W * (n * E^2 * (8 + s) + kernel worker state)
 *             + (W + 1) * Q * (16 + 32 n)
 *   mapped <= (Q + W) * n * (E^2 * s + 2 R) + n * R resident pages of the
 *             tiles read from disk, when out of core (R = REGION_BYTES)
 * where W = min(ex->threads, tiles, budget / (n * E^2 * (8 + 2 s))): the
 * codec decodes into an E^2 buffer of the compute type (8 bytes at most)
 * after zstd output of E^2 * s. A matrix whose stored bytes exceed the
 * budget is "out of core": the worker that walks a tile into the ring asks
 * the kernel to read it ahead (MADV_WILLNEED), and its pages leave this
 * process (MADV_DONTNEED) once used, so the resident set stays within the
 * bound; the page cache itself is the kernel's to manage. They leave by
 * the 2 MiB region of the map (hold()): a region is dropped whole once the
 * walk has passed it and the workers have used every tile it holds. Tile
 * by tile, each drop of part of a huge page's mapping split it and flushed
 * the TLB of every core in the pass, about five times per huge page for
 * bf16 tiles (d = 32768 under a 1 GiB cap, Zen 5, A/B in turn: cold bf16
 * mv 0.20-0.24 s tile by tile, 0.18-0.21 s by the region, 0.18 s with no
 * drops at all; cold f32 0.42-0.49 -> 0.36-0.43 s; repeated mv f32
 * 0.36-0.39 -> 0.31-0.36 s, raw 0.38-0.42 -> 0.33-0.39 s).
 * A tile all in the page cache when walked (mincore) is left alone:
 * unmapping it would free no memory (the cache keeps it), only cost a TLB
 * shootdown now and page faults on the next pass; its region is dropped
 * only if it also holds tiles read from disk. (So are tiles the kernel's
 * own read-ahead reached before the walk did.)
 *
 * Out of core, a kernel that takes the tiles in any order (any_order: the
 * products) walks the file backwards every other pass over a matrix (the
 * pass's first: pspace_store_walk_back()), from the end of its last block,
 * the cursors merged largest address first: the pass begins where the last
 * one ended, in what the page cache still holds. The mincore() windows of
 * read_ahead() then lie below the tile.
 *
 * The first error stops the pass: the walk stops, workers drain the ring
 * without work, and the error is returned with the detail of the
 * failing tile (store, matrix, tile address).
 */
#include "kernel/stream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/error.h"
#include "common/exec.h"
#include "kernel/engine.h"
#include "kernel/pool.h"
#include "kernel/shard.h"
#include "store/reader.h"

#define QUEUE_PER_WORKER 4
/* Row panels of about this many bytes for kernels that take panels (L1 is 32-48 KiB). */
#define PANEL_BYTES 16384
#define CACHE_LINE  64
#define MSG_MAX     1024
/* Pages whose residency one mincore() call asks for (8 MiB of 4 KiB pages). */
#define RES_PAGES 2048
/* Regions of the map whose pages leave the process together: a huge page. */
#define REGION_SHIFT 21
#define REGION_BYTES ((uintptr_t)1 << REGION_SHIFT)
/* Regions of a matrix that can hold tiles in use at once (a count each). */
#define REGION_SLOTS 256
#define REGION_OPEN  (1u << 31) /* the walk is in the region */

/* ---- pspace_tiled --------------------------------------------------------- */

int pspace_tiled_open(pspace_tiled *t, pspace_store *s, const char *name)
{
	uint64_t off = 0;
	int rc;

	memset(t, 0, sizeof(*t));
	t->s = s;
	rc = pspace_matrix_info_get(&t->info, s, name);
	if (rc != 0)
		goto out;
	if (t->info.state != PSPACE_STATE_COMPLETE) {
		rc = pspace_err_set(PSPACE_EINCOMPLETE, "store %s: matrix %s is incomplete",
		                    pspace_store_path(s), name);
		goto out;
	}
	if (t->info.nblocks == 0 || t->info.tile == 0) {
		rc = pspace_err_set(PSPACE_EINVAL, "store %s: matrix %s (%s) holds no tiles",
		                    pspace_store_path(s), name, pspace_kind_name(t->info.kind));
		goto out;
	}
	t->block_dim = malloc(t->info.nblocks * sizeof(*t->block_dim));
	t->block_off = malloc(t->info.nblocks * sizeof(*t->block_off));
	if (!t->block_dim || !t->block_off) {
		rc = pspace_err_set(PSPACE_ENOMEM, "store %s: matrix %s: out of memory",
		                    pspace_store_path(s), name);
		goto out;
	}
	rc = pspace_store_blocks(s, name, t->block_dim, t->info.nblocks);
	if (rc != 0)
		goto out;
	for (uint32_t b = 0; b < t->info.nblocks; b++) {
		t->block_off[b] = off;
		off += t->block_dim[b];
	}
	if (off != t->info.d)
		rc = pspace_err_set(PSPACE_ECORRUPT,
		                    "store %s: matrix %s: block dims sum to %llu, not d = %llu",
		                    pspace_store_path(s), name, (unsigned long long)off,
		                    (unsigned long long)t->info.d);
	if (rc == 0)
		rc = pspace_tiled_shard_open(t);
out:
	if (rc != 0)
		pspace_tiled_close(t);
	return rc;
}

void pspace_tiled_close(pspace_tiled *t)
{
	if (!t)
		return;
	free(t->block_trow);
	free(t->block_off);
	free(t->block_dim);
	memset(t, 0, sizeof(*t));
}

uint64_t pspace_tiled_count(const pspace_tiled *t)
{
	return t->info.tiles;
}

int pspace_tiled_same(const pspace_tiled *a, const pspace_tiled *b)
{
	int same = a->info.d == b->info.d && a->info.nblocks == b->info.nblocks &&
	           a->info.tile == b->info.tile && a->info.symmetric == b->info.symmetric &&
	           a->sharded == b->sharded && a->row_first == b->row_first &&
	           a->row_end == b->row_end;

	for (uint32_t j = 0; same && j < a->info.nblocks; j++)
		same = a->block_dim[j] == b->block_dim[j];
	return same;
}

/* Tiles per row of block @p b. */
static uint64_t block_tiles(const pspace_tiled *t, uint32_t b)
{
	return (t->block_dim[b] + t->info.tile - 1) / t->info.tile;
}

/* ---- execution settings --------------------------------------------------- */

int pspace_stream_threads(const pspace_exec *ex)
{
	pspace_exec e;

	pspace_exec_resolve(ex, &e);
	return e.threads;
}

size_t pspace_stream_budget(const pspace_exec *ex)
{
	pspace_exec e;

	pspace_exec_resolve(ex, &e);
	return e.mem_budget;
}

/* ---- the engine ----------------------------------------------------------- */

/*
 * A tile of the ring: its address, then one pspace_tile_ref per matrix. Bit
 * i of cached: the tile of matrix i (i < 32) was in the page cache when
 * walked; of held: it is counted in its regions (hold()).
 */
typedef struct item_hdr {
	_Alignas(pspace_tile_ref) uint32_t block; /* sizeof: the refs after it stay aligned */
	uint32_t row, col, cached, held;
} item_hdr;

typedef struct engine {
	const pspace_tiled *const *t;
	size_t n;
	pspace_reader **r;
	pspace_dtype *want;
	const pspace_stream_kernel *k;
	void *ud;
	size_t item_size;
	int ooc;
	int back; /* the walk goes backwards (see step_all) */
	uintptr_t page;
	uint32_t bfirst, blast;
	/* written per tile, away from what workers read: the ring, under ring_mu */
	_Alignas(CACHE_LINE) pthread_mutex_t ring_mu;
	unsigned char *ring; /* tiles walked ahead: cap items from head, count of them */
	size_t cap, head, count;
	/* the walk, under walk_mu */
	_Alignas(CACHE_LINE) pthread_mutex_t walk_mu;
	unsigned char *walked; /* the tile being walked */
	int walk_end;          /* the walk has ended (or failed) */
	int started;           /* step_all: the cursors are positioned */
	pspace_tile_ref *cur;
	int *done;
	int *cur_cached;            /* per matrix: cur's tile was all in the page cache */
	uint32_t db, dr;            /* step_diagonal: the next block and row */
	uintptr_t *res_lo, *res_hi; /* per matrix: pages whose residency is in res_vec */
	unsigned char *res_vec;     /* per matrix, RES_PAGES bytes of mincore() */
	/* out of core: per matrix, REGION_SLOTS counts of tiles read from disk, walked and not
	 * yet used in a region (slot: region mod REGION_SLOTS; + REGION_OPEN while the walk is
	 * in it), or NULL; 1 + the region the walk is in (0: none); the map's bounds */
	atomic_uint *reg;
	uintptr_t *reg_open, *map_lo, *map_hi;
	_Alignas(CACHE_LINE) atomic_int failed;
	pthread_mutex_t err_mu;
	int err;
	char msg[MSG_MAX];
} engine;

typedef struct worker {
	engine *e;
	pspace_codec **codec;
	pspace_stream_tile *tiles;
	int *verified; /* per matrix: 0 while a raw tile's checksum is still to check */
	unsigned char *item;
	void *ws;
	int inited;
} worker;

/* Records the first error with the calling thread's detail message. */
static void engine_fail(engine *e, int rc)
{
	pthread_mutex_lock(&e->err_mu);
	if (e->err == 0) {
		e->err = rc;
		snprintf(e->msg, sizeof(e->msg), "%s", pspace_errdetail());
	}
	pthread_mutex_unlock(&e->err_mu);
	atomic_store(&e->failed, 1);
}

static const pspace_tile_ref *item_refs(const unsigned char *item)
{
	return (const pspace_tile_ref *)(const void *)(item + sizeof(item_hdr));
}

/* Page range of a tile, rounded outward (safe: see the file comment). */
static void advise(const engine *e, const pspace_tile_ref *ref, int what)
{
	uintptr_t a = (uintptr_t)ref->data & ~(e->page - 1);
	uintptr_t b = ((uintptr_t)ref->data + ref->len + e->page - 1) & ~(e->page - 1);

	(void)madvise((void *)a, b - a, what);
}

/* ---- releasing tiles by the region (see the file comment) ---- */

static atomic_uint *region_slot(const engine *e, size_t i, uintptr_t r)
{
	return &e->reg[i * REGION_SLOTS + r % REGION_SLOTS];
}

/*
 * Region @p r of matrix @p i, its count now 0 (no tiles, the walk gone):
 * drops its pages from this process (within the map).
 */
static void release(const engine *e, size_t i, uintptr_t r)
{
	uintptr_t a = r << REGION_SHIFT, b = a + REGION_BYTES;

	a = a < e->map_lo[i] ? e->map_lo[i] : a;
	b = b > e->map_hi[i] ? e->map_hi[i] : b;
	if (a < b)
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The walk over matrix @p i leaves the region it is in (the walker's). */
static void region_leave(engine *e, size_t i)
{
	uintptr_t r;

	if (!e->reg_open[i])
		return;
	r = e->reg_open[i] - 1;
	e->reg_open[i] = 0;
	if (atomic_fetch_sub(region_slot(e, i, r), REGION_OPEN) == REGION_OPEN)
		release(e, i, r);
}

/* The regions of the map that tile @p ref lies in: [*@p r0, *@p r1]. */
static void regions(const pspace_tile_ref *ref, uintptr_t *r0, uintptr_t *r1)
{
	*r0 = (uintptr_t)ref->data >> REGION_SHIFT;
	*r1 = ((uintptr_t)ref->data + (ref->len ? ref->len - 1 : 0)) >> REGION_SHIFT;
}

/*
 * The walker counts matrix @p i's tile @p ref, read from disk, in its
 * regions, entering them in the walk's direction; a region is released
 * when the walk has left it and its last such tile is used (unhold()).
 * @return 1, or 0 when a region's slot still counts another region's tiles
 * (or the walk comes back to a region not yet released: tiles out of
 * address order): the tile is then released alone. (A tile found in the
 * page cache is not counted: if a region it shares with tiles read from
 * disk is dropped under it, it is only mapped again.)
 */
static int hold(engine *e, size_t i, const pspace_tile_ref *ref)
{
	uintptr_t r0, r1;

	regions(ref, &r0, &r1);
	if (r1 - r0 + 1 >= REGION_SLOTS)
		return 0;
	for (uintptr_t r = r0; r <= r1; r++)
		if (r + 1 != e->reg_open[i] && atomic_load(region_slot(e, i, r)) != 0)
			return 0;
	for (uintptr_t k = 0; k <= r1 - r0; k++) {
		uintptr_t r = e->back ? r1 - k : r0 + k;
		atomic_uint *slot = region_slot(e, i, r);

		if (r + 1 != e->reg_open[i]) {
			region_leave(e, i);
			atomic_store(slot, REGION_OPEN);
			e->reg_open[i] = r + 1;
		}
		atomic_fetch_add(slot, 1);
	}
	return 1;
}

/* A worker has used matrix @p i's tile @p ref, counted by hold(). */
static void unhold(const engine *e, size_t i, const pspace_tile_ref *ref)
{
	uintptr_t r0, r1;

	regions(ref, &r0, &r1);
	for (uintptr_t r = r0; r <= r1; r++)
		if (atomic_fetch_sub(region_slot(e, i, r), 1) == 1)
			release(e, i, r);
}

/* Are all pages in [@p a, @p b) in the page cache? (0 when unknown) */
static int all_resident(const engine *e, uintptr_t a, uintptr_t b)
{
	unsigned char vec[256];

	while (a < b) {
		size_t len = b - a < sizeof(vec) * e->page ? b - a : sizeof(vec) * e->page;

		if (mincore((void *)a, len, vec) != 0)
			return 0;
		for (size_t p = 0; p < len / e->page; p++)
			if (!(vec[p] & 1))
				return 0;
		a += len;
	}
	return 1;
}

/* Prefixes the address of the tile of @p h to error @p rc (0 stays 0). */
static int at_tile(const engine *e, const item_hdr *h, int rc)
{
	const pspace_tiled *t0 = e->t[0];

	return pspace_err_prefix(rc, "store %s: matrix %s, tile (%u,%u,%u)",
	                         pspace_store_path(t0->s), t0->info.name, h->block, h->row, h->col);
}

/*
 * The tile of a one-matrix pass in row panels of about PANEL_BYTES, for a
 * kernel that takes them: each panel is used by the kernel while in L1 (a
 * raw tile is then checksummed from there, or by the kernel as it reads it
 * when it can, a byte-plane tile unshuffled into it). A checksum mismatch
 * shows only at the end and fails the pass.
 */
static int process_panels(worker *w, const item_hdr *h, const pspace_tile_ref *ref,
                          pspace_stream_tile *st)
{
	engine *e = w->e;
	int (*tile)(void *, void *, const pspace_stream_tile *) = e->k->tile;
	void *ws = w->ws, *ud = e->ud;
	pspace_codec *c = w->codec[0];
	pspace_tile_panels p;
	size_t bytes = e->k->panel_bytes ? e->k->panel_bytes : PANEL_BYTES;
	uint32_t rows = st->rows,
	         step = (uint32_t)(bytes / (st->cols * pspace_dtype_size(st->dtype)));
	int rc = pspace_reader_panels_open(e->r[0], c, ref, e->want[0], &p);

	if (rc == 0 && e->k->checksums_rows)
		st->crc = pspace_tile_panels_crc_rows(&p);
	step = step < 4 ? 4 : step & ~3u;
	st->tile_rows = rows;
	for (uint32_t r0 = 0; rc == 0 && r0 < rows; r0 += step) {
		st->prow = r0;
		st->rows = rows - r0 < step ? rows - r0 : step;
		rc = pspace_tile_panels_rows(&p, c, r0, st->rows, &st->data);
		if (rc == 0)
			rc = tile(ws, ud, st);
		rc = at_tile(e, h, rc);
	}
	if (rc == 0)
		rc = at_tile(e, h, pspace_tile_panels_finish(&p));
	st->crc = NULL; /* it was p's */
	return rc;
}

static void process(worker *w, const unsigned char *item)
{
	engine *e = w->e;
	const pspace_tiled *t0 = e->t[0];
	const item_hdr *h = (const item_hdr *)(const void *)item;
	const pspace_tile_ref *refs = item_refs(item);
	uint32_t edge = t0->info.tile;
	uint64_t dim = t0->block_dim[h->block];
	uint64_t rleft = dim - (uint64_t)h->row * edge, cleft = dim - (uint64_t)h->col * edge;
	int rc = 0;

	for (size_t i = 0; i < e->n; i++) {
		pspace_stream_tile *st = &w->tiles[i];

		st->block = h->block;
		st->row = h->row;
		st->col = h->col;
		st->r0 = t0->block_off[h->block] + (uint64_t)h->row * edge;
		st->c0 = t0->block_off[h->block] + (uint64_t)h->col * edge;
		st->rows = (uint32_t)(rleft < edge ? rleft : edge);
		st->cols = (uint32_t)(cleft < edge ? cleft : edge);
		st->prow = 0;
		st->tile_rows = st->rows;
		st->dtype = e->want[i];
		st->data = NULL;
		st->mirrored = t0->info.symmetric && h->row != h->col;
		st->crc = NULL;
		w->verified[i] = 1;
	}
	if (e->k->panels && e->n == 1 && refs[0].data) {
		rc = process_panels(w, h, &refs[0], &w->tiles[0]);
		goto done;
	}
	for (size_t i = 0; i < e->n && rc == 0; i++)
		if (refs[i].data)
			rc = pspace_reader_view_unverified(e->r[i], w->codec[i], &refs[i],
			                                   e->want[i], &w->tiles[i].data, NULL,
			                                   &w->verified[i]);
	if (rc == 0)
		rc = at_tile(e, h, e->k->tile(w->ws, e->ud, w->tiles));
	/* raw tiles are checksummed after the kernel, from the cache: a mismatch fails the pass */
	for (size_t i = 0; i < e->n; i++)
		if (refs[i].data && !w->verified[i] && rc == 0)
			rc = pspace_reader_verify(e->r[i], &refs[i]);
done:
	if (rc != 0)
		engine_fail(e, rc);
}

/* Out of core, the pages of @p item's tiles leave this process (see the file comment). */
static void used(engine *e, const unsigned char *item)
{
	const item_hdr *h = (const item_hdr *)(const void *)item;
	const pspace_tile_ref *refs = item_refs(item);

	if (!e->ooc)
		return;
	for (size_t i = 0; i < e->n; i++) {
		if (!refs[i].data)
			continue;
		if (i < 32 && (h->held >> i & 1))
			unhold(e, i, &refs[i]);
		else if (!(i < 32 && (h->cached >> i & 1)))
			advise(e, &refs[i], MADV_DONTNEED);
	}
}

/*
 * Out of core, a tile of this worker's share: is it all in the page cache?
 * (0 when unknown.) Asked of the kernel RES_PAGES pages at a time from the
 * tile's first page on, not per tile: the walk goes through the file in
 * order, so one mincore() serves the tiles of the next few MiB (two calls
 * a tile were a tenth of a warm mv pass). What is not in the cache is read
 * ahead as a whole window (MADV_WILLNEED), unless one worker does it all
 * (nothing to overlap the reading with) or the map is advised for huge
 * pages: the faults' own read-ahead then reads 2 MiB folios, mapped whole,
 * which MADV_WILLNEED (4 KiB pages) would spoil (cold raw mv under a 1 GiB
 * cap, d = 32768, Zen 5: 1.2-1.4 s with MADV_WILLNEED, 0.34-0.55 s with
 * huge pages alone).
 */
static int read_ahead(engine *e, size_t i, const pspace_tile_ref *ref)
{
	uintptr_t a = (uintptr_t)ref->data & ~(e->page - 1);
	uintptr_t b = ((uintptr_t)ref->data + ref->len + e->page - 1) & ~(e->page - 1);
	unsigned char *vec = e->res_vec + i * RES_PAGES;
	size_t win = RES_PAGES * e->page;
	int ask = e->cap > 1 && !pspace_store_map_huge(e->t[i]->s);

	if (!e->ooc || !pspace_tiled_owns(e->t[0], ref->block, ref->row))
		return 0;
	if (a < e->res_lo[i] || b > e->res_hi[i]) {
		/* the window from the tile on, in the direction of the walk */
		uintptr_t lo = e->back && b - a <= win ? b - win : a;
		int all = 1;

		e->res_lo[i] = e->res_hi[i] = 0;
		/* a tile larger than the window, or a window past the end of the mapping */
		if (b - a > win || mincore((void *)lo, win, vec) != 0) {
			all = all_resident(e, a, b);
			if (!all && ask)
				advise(e, ref, MADV_WILLNEED);
			return all;
		}
		e->res_lo[i] = lo;
		e->res_hi[i] = lo + win;
		for (size_t p = 0; p < RES_PAGES && all; p++)
			all = vec[p] & 1;
		if (!all && ask)
			(void)madvise((void *)lo, win, MADV_WILLNEED);
	}
	for (uintptr_t p = (a - e->res_lo[i]) / e->page; p < (b - e->res_lo[i]) / e->page; p++)
		if (!(vec[p] & 1))
			return 0;
	return 1;
}

typedef struct walked_ctx {
	engine *e;
	size_t i;
} walked_ctx;

/* Called with each tile a cursor steps to, before its header is read. */
static void walked(void *ud, const pspace_tile_ref *ref)
{
	walked_ctx *c = ud;

	c->e->cur_cached[c->i] = read_ahead(c->e, c->i, ref);
}

/*
 * The next tile of the diagonal (a kernel that wants diagonal tiles only),
 * looked up directly, into @p item. @return 0, 1 at the end, or an error.
 */
static int step_diagonal(engine *e, unsigned char *item)
{
	item_hdr *h = (item_hdr *)(void *)item;
	pspace_tile_ref *refs = (pspace_tile_ref *)(void *)(item + sizeof(item_hdr));

	while (e->db <= e->blast) {
		uint32_t b = e->db, r = e->dr, cached = 0;
		int any = 0;

		if (r >= block_tiles(e->t[0], b)) {
			e->db++;
			e->dr = 0;
			continue;
		}
		e->dr++;
		if (!pspace_tiled_owns(e->t[0], b, r))
			continue;
		for (size_t i = 0; i < e->n; i++) {
			int rc = pspace_reader_tile(&refs[i], e->r[i], b, r, r);

			if (rc == PSPACE_ENOTFOUND) {
				memset(&refs[i], 0, sizeof(refs[i]));
				pspace_errclear();
			} else if (rc != 0) {
				return rc;
			} else {
				any = 1;
				if (read_ahead(e, i, &refs[i]) && i < 32)
					cached |= 1u << i;
			}
		}
		if (any) {
			*h = (item_hdr){b, r, r, cached, 0};
			return 0;
		}
	}
	return 1;
}

static int addr_cmp(const pspace_tile_ref *a, const pspace_tile_ref *b)
{
	if (a->block != b->block)
		return a->block < b->block ? -1 : 1;
	if (a->row != b->row)
		return a->row < b->row ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return 0;
}

/*
 * Steps reader @p i to its next tile, marking it done past the last block
 * (backwards: before the first).
 * The tile is read ahead as the cursor reaches it (the cursors run one tile
 * ahead of the walk).
 */
static int advance(engine *e, size_t i)
{
	walked_ctx c = {e, i};
	int rc = pspace_reader_next_with(&e->cur[i], &e->done[i], e->r[i], walked, &c);

	if (rc == 0 && !e->done[i] &&
	    (e->back ? e->cur[i].block < e->bfirst : e->cur[i].block > e->blast))
		e->done[i] = 1;
	return rc;
}

/*
 * The next stored tile of any matrix into @p item: the cursors walk in
 * lockstep, merging keys. @return 0, 1 at the end, or an error.
 */
static int step_all(engine *e, unsigned char *item)
{
	item_hdr *h = (item_hdr *)(void *)item;
	pspace_tile_ref *refs = (pspace_tile_ref *)(void *)(item + sizeof(item_hdr));
	int rc = 0;

	for (size_t i = 0; !e->started && i < e->n && rc == 0; i++) {
		rc = e->back ? pspace_reader_seek_back(e->r[i], e->blast + 1)
		             : pspace_reader_seek(e->r[i], e->bfirst, 0, 0);
		if (rc == 0)
			rc = advance(e, i);
	}
	e->started = 1;
	while (rc == 0) {
		const pspace_tile_ref *min = NULL; /* the next tile: backwards, the largest */

		for (size_t i = 0; i < e->n; i++)
			if (!e->done[i] &&
			    (!min || addr_cmp(&e->cur[i], min) * (e->back ? -1 : 1) < 0))
				min = &e->cur[i];
		if (!min)
			return 1;
		*h = (item_hdr){min->block, min->row, min->col, 0, 0};
		for (size_t i = 0; i < e->n && rc == 0; i++) {
			if (!e->done[i] && e->cur[i].block == h->block && e->cur[i].row == h->row &&
			    e->cur[i].col == h->col) {
				refs[i] = e->cur[i];
				if (i < 32 && e->cur_cached[i])
					h->cached |= 1u << i;
				rc = advance(e, i);
			} else {
				memset(&refs[i], 0, sizeof(refs[i]));
			}
		}
		if (rc == 0 && pspace_tiled_owns(e->t[0], h->block, h->row))
			return 0;
	}
	return rc;
}

/* The walker counts the tiles of @p item read from disk in their regions (hold()). */
static void hold_item(engine *e, unsigned char *item)
{
	item_hdr *h = (item_hdr *)(void *)item;
	const pspace_tile_ref *refs = item_refs(item);

	for (size_t i = 0; i < e->n && i < 32; i++)
		if (refs[i].data && !(h->cached >> i & 1) && hold(e, i, &refs[i]))
			h->held |= 1u << i;
}

/*
 * Walks tiles into the ring until it is full or the walk ends (the caller
 * holds walk_mu), at most cap tiles a call. A tile is walked and read
 * ahead outside ring_mu: stepping the cursor reads the tile's header from
 * the map, which out of core can wait for the disk (and its read-around),
 * while the other workers go on taking what is in the ring.
 */
static void walk_ahead(engine *e)
{
	size_t count;

	pthread_mutex_lock(&e->ring_mu);
	count = e->count;
	pthread_mutex_unlock(&e->ring_mu);
	for (size_t walked = 0; !e->walk_end && count < e->cap && walked < e->cap; walked++) {
		unsigned char *it = e->walked;
		int rc = atomic_load(&e->failed) ? 1
		         : e->k->diagonal_only   ? step_diagonal(e, it)
		                                 : step_all(e, it);

		if (rc != 0) {
			if (rc != 1)
				engine_fail(e, rc);
			e->walk_end = 1;
			for (size_t i = 0; e->reg && i < e->n; i++)
				region_leave(e, i);
			break;
		}
		if (e->reg)
			hold_item(e, it);
		pthread_mutex_lock(&e->ring_mu);
		memcpy(e->ring + (e->head + e->count) % e->cap * e->item_size, it, e->item_size);
		count = ++e->count;
		pthread_mutex_unlock(&e->ring_mu);
	}
}

/*
 * The next tile of the pass into @p item, from the ring. The workers walk
 * the cursors into the ring themselves, instead of a producer thread: on
 * two cores a third thread was woken and preempted a worker every few
 * tiles, and the queue's mutex and condition variables cost a tenth of a
 * warm pass in futex calls. A taker that finds the walk free refills the
 * ring (cap tiles the first time, then about one a tile); one that finds
 * the ring empty waits for the walk. Out of core, the tiles walked are the
 * ones read ahead (MADV_WILLNEED), cap tiles before their use. @return 1
 * with a tile, 0 at the end of the pass.
 */
static int take(engine *e, unsigned char *item)
{
	for (;;) {
		int got = 0, end;

		pthread_mutex_lock(&e->ring_mu);
		if (e->count > 0) {
			memcpy(item, e->ring + e->head * e->item_size, e->item_size);
			e->head = (e->head + 1) % e->cap;
			e->count--;
			got = 1;
		}
		pthread_mutex_unlock(&e->ring_mu);
		/* with a tile in hand, walk only if no one else is; without, wait for the walk */
		if (got ? pthread_mutex_trylock(&e->walk_mu) == 0
		        : pthread_mutex_lock(&e->walk_mu) == 0) {
			walk_ahead(e);
			end = e->walk_end;
			pthread_mutex_unlock(&e->walk_mu);
			if (!got && end) {
				pthread_mutex_lock(&e->ring_mu);
				end = e->count == 0;
				pthread_mutex_unlock(&e->ring_mu);
				if (end)
					return 0;
			}
		}
		if (got)
			return 1;
	}
}

static void *worker_main(void *arg)
{
	worker *w = arg;

	while (take(w->e, w->item)) {
		if (!atomic_load(&w->e->failed))
			process(w, w->item);
		used(w->e, w->item);
	}
	return NULL;
}

static void worker_cleanup(worker *w, engine *e)
{
	if (w->inited && e->k->worker_free)
		e->k->worker_free(w->ws, e->ud);
	for (size_t i = 0; w->codec && i < e->n; i++)
		pspace_codec_free(w->codec[i]);
	free(w->codec);
	free(w->tiles);
	free(w->verified);
	free(w->item);
	free(w->ws);
}

/*
 * Zeroed memory on cache lines of its own: what a worker writes per tile
 * or panel must not share a line with another worker's (each write would
 * take the line from the other core).
 */
static void *line_alloc(size_t size)
{
	size_t n = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
	void *p = aligned_alloc(CACHE_LINE, n);

	if (p)
		memset(p, 0, n);
	return p;
}

static int worker_setup(worker *w, engine *e)
{
	int rc = 0;

	w->e = e;
	w->codec = calloc(e->n, sizeof(*w->codec));
	w->tiles = line_alloc(e->n * sizeof(*w->tiles));
	w->verified = line_alloc(e->n * sizeof(*w->verified));
	w->item = line_alloc(e->item_size);
	w->ws = line_alloc(e->k->worker_size ? e->k->worker_size : 1);
	if (!w->codec || !w->tiles || !w->verified || !w->item || !w->ws)
		return pspace_err_set(PSPACE_ENOMEM, "stream: out of memory for a worker");
	for (size_t i = 0; i < e->n && rc == 0; i++)
		rc = pspace_codec_create(&w->codec[i]);
	if (rc != 0)
		return rc;
	/* worker_free runs whenever worker_init ran, even if it failed half way. */
	w->inited = 1;
	if (e->k->worker_init)
		rc = e->k->worker_init(w->ws, e->ud);
	return rc;
}

static int check_tilings(const pspace_tiled *const *t, size_t n)
{
	const pspace_matrix_info *a = &t[0]->info;

	for (size_t i = 1; i < n; i++) {
		const pspace_matrix_info *b = &t[i]->info;

		if (!pspace_tiled_same(t[0], t[i]))
			return pspace_err_set(PSPACE_EDIM,
			                      "stream: matrices %s and %s are tiled differently "
			                      "(d %llu/%llu, %u/%u blocks, tile %u/%u, symmetric "
			                      "%d/%d, or block dims)",
			                      a->name, b->name, (unsigned long long)a->d,
			                      (unsigned long long)b->d, a->nblocks, b->nblocks,
			                      a->tile, b->tile, a->symmetric, b->symmetric);
	}
	return 0;
}

/*
 * Out of core, the region counts (hold()), when every matrix's map is
 * known; otherwise tiles are released one by one.
 */
static int regions_setup(engine *e)
{
	for (size_t i = 0; i < e->n; i++) {
		size_t size;

		if (!e->ooc || !pspace_store_map_range(e->t[i]->s, &e->map_lo[i], &size))
			return 0;
		e->map_hi[i] = e->map_lo[i] + size;
	}
	e->reg = calloc(e->n * REGION_SLOTS, sizeof(*e->reg));
	if (!e->reg)
		return pspace_err_set(PSPACE_ENOMEM, "stream: out of memory");
	for (size_t i = 0; i < e->n * REGION_SLOTS; i++)
		atomic_init(&e->reg[i], 0);
	return 0;
}

/* Worker count: threads asked for, capped by the tiles to do and by the budget. */
static size_t plan_workers(const engine *e, const pspace_exec *ex, uint32_t bfirst, uint32_t blast)
{
	const pspace_tiled *t0 = e->t[0];
	size_t w = (size_t)pspace_stream_threads(ex), per = 0;
	uint64_t tiles = 0;

	for (size_t i = 0; i < e->n; i++) {
		size_t s = pspace_dtype_size(e->t[i]->info.codec.dtype);

		per += (size_t)t0->info.tile * t0->info.tile * (8 + 2 * s);
	}
	if (e->k->diagonal_only) {
		for (uint32_t b = bfirst; b <= blast; b++)
			tiles += block_tiles(t0, b);
	} else {
		for (size_t i = 0; i < e->n; i++)
			tiles += e->t[i]->info.tiles;
	}
	if (tiles < w)
		w = tiles ? (size_t)tiles : 1;
	if (per && pspace_stream_budget(ex) / per < w)
		w = pspace_stream_budget(ex) / per ? pspace_stream_budget(ex) / per : 1;
	return w;
}

int pspace_stream_blocks(const pspace_tiled *const *t, size_t n, const pspace_exec *ex,
                         const pspace_stream_kernel *k, void *ud, uint32_t bfirst, uint32_t blast)
{
	engine e = {0};
	worker *w = NULL;
	pspace_threads th = {0};
	size_t nw = 0;
	uint64_t stored = 0;
	int rc = 0;

	if (!t || n == 0 || !k || !k->tile)
		return pspace_err_set(PSPACE_EINVAL, "stream: no matrix or no tile kernel");
	for (size_t i = 0; i < n; i++)
		if (!t[i] || !t[i]->s || !t[i]->block_dim)
			return pspace_err_set(PSPACE_EINVAL, "stream: matrix %zu is not open", i);
	if (blast >= t[0]->info.nblocks || bfirst > blast)
		return pspace_err_set(PSPACE_EINVAL,
		                      "stream: matrix %s: blocks %u..%u out of range",
		                      t[0]->info.name, bfirst, blast);
	rc = check_tilings(t, n);
	if (rc != 0)
		return rc;

	e.t = t;
	e.n = n;
	e.k = k;
	e.ud = ud;
	e.item_size = sizeof(item_hdr) + n * sizeof(pspace_tile_ref);
	e.page = (uintptr_t)sysconf(_SC_PAGESIZE);
	e.bfirst = e.db = bfirst;
	e.blast = blast;
	atomic_init(&e.failed, 0);
	pthread_mutex_init(&e.err_mu, NULL);
	pthread_mutex_init(&e.walk_mu, NULL);
	pthread_mutex_init(&e.ring_mu, NULL);
	for (size_t i = 0; i < n; i++)
		stored += t[i]->info.tile_bytes;
	e.ooc = stored > pspace_stream_budget(ex);
	e.back = e.ooc && k->any_order && !k->diagonal_only &&
	         pspace_store_walk_back(t[0]->s, t[0]->info.id);

	e.r = calloc(n, sizeof(*e.r));
	e.want = calloc(n, sizeof(*e.want));
	e.cur = calloc(n, sizeof(*e.cur));
	e.done = calloc(n, sizeof(*e.done));
	e.cur_cached = calloc(n, sizeof(*e.cur_cached));
	e.res_lo = calloc(n, sizeof(*e.res_lo));
	e.res_hi = calloc(n, sizeof(*e.res_hi));
	e.res_vec = e.ooc ? malloc(n * RES_PAGES) : NULL;
	e.map_lo = calloc(n, sizeof(*e.map_lo));
	e.map_hi = calloc(n, sizeof(*e.map_hi));
	e.reg_open = calloc(n, sizeof(*e.reg_open));
	if (!e.r || !e.want || !e.cur || !e.done || !e.cur_cached || !e.res_lo || !e.res_hi ||
	    (e.ooc && !e.res_vec) || !e.map_lo || !e.map_hi || !e.reg_open) {
		rc = pspace_err_set(PSPACE_ENOMEM, "stream: out of memory");
		goto out;
	}
	rc = regions_setup(&e);
	if (rc != 0)
		goto out;
	for (size_t i = 0; i < n && rc == 0; i++) {
		e.want[i] = k->want
		                ? k->want
		                : (t[i]->info.codec.dtype == PSPACE_F64 ? PSPACE_F64 : PSPACE_F32);
		rc = pspace_reader_open(&e.r[i], t[i]->s, t[i]->info.name, 0);
		if (rc == 0 && pspace_reader_info(e.r[i])->id != t[i]->info.id)
			rc = pspace_err_set(PSPACE_EINVAL,
			                    "store %s: matrix %s was replaced since it was opened",
			                    pspace_store_path(t[i]->s), t[i]->info.name);
	}
	if (rc != 0)
		goto out;

	nw = plan_workers(&e, ex, bfirst, blast);
	/* one worker: tiles reach the kernel in streaming order (pull.c relies on it) */
	e.cap = nw > 1 ? QUEUE_PER_WORKER * nw : 1;
	e.ring = malloc(e.cap * e.item_size);
	e.walked = malloc(e.item_size);
	w = calloc(nw, sizeof(*w));
	if (!w || !e.ring || !e.walked) {
		rc = pspace_err_set(PSPACE_ENOMEM, "stream: out of memory");
		goto out;
	}
	for (size_t i = 0; i < nw && rc == 0; i++)
		rc = worker_setup(&w[i], &e);
	if (rc != 0)
		goto out;
	/* the calling thread is worker 0 */
	if (nw > 1 && pspace_threads_start(&th, nw - 1, worker_main, w + 1, sizeof(*w)) != 0)
		pspace_errclear(); /* no thread: the calling thread does it all */
	worker_main(&w[0]);
	pspace_threads_join(&th);
	for (size_t i = 0; i < nw && !e.err && k->finish; i++) {
		rc = k->finish(w[i].ws, ud);
		if (rc != 0)
			engine_fail(&e, rc);
	}
	rc = e.err ? pspace_err_set(e.err, "%s", e.msg) : 0;
out:
	pspace_threads_join(&th);
	for (size_t i = nw; w && i-- > 0;)
		worker_cleanup(&w[i], &e);
	free(w);
	for (size_t i = n; e.r && i-- > 0;)
		pspace_reader_close(e.r[i]);
	free(e.walked);
	free(e.ring);
	free(e.reg);
	free(e.reg_open);
	free(e.map_hi);
	free(e.map_lo);
	free(e.res_vec);
	free(e.res_hi);
	free(e.res_lo);
	free(e.cur_cached);
	free(e.done);
	free(e.cur);
	free(e.want);
	free(e.r);
	pthread_mutex_destroy(&e.ring_mu);
	pthread_mutex_destroy(&e.walk_mu);
	pthread_mutex_destroy(&e.err_mu);
	return rc;
}

int pspace_stream_run(const pspace_tiled *t, const pspace_exec *ex, const pspace_stream_kernel *k,
                      void *ud)
{
	const pspace_tiled *one[1] = {t};

	if (!t || !t->block_dim)
		return pspace_err_set(PSPACE_EINVAL, "stream: matrix is not open");
	return pspace_stream_blocks(one, 1, ex, k, ud, 0, t->info.nblocks - 1);
}

int pspace_stream_multi(const pspace_tiled *const *t, size_t n, const pspace_exec *ex,
                        const pspace_stream_kernel *k, void *ud)
{
	if (!t || n == 0 || !t[0] || !t[0]->block_dim)
		return pspace_err_set(PSPACE_EINVAL, "stream: no matrices");
	return pspace_stream_blocks(t, n, ex, k, ud, 0, t[0]->info.nblocks - 1);
}
