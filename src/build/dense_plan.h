/*
 * Internal: the plan of a Dense or BlockDiag build over rows (build_dense.c):
 * the blocks cut into segments of tile rows, grouped into passes whose f64
 * accumulators (upper tiles only) fit the budget, and the shape of the
 * workers' product items (dense_plan.c).
 */
#ifndef PSPACE_SRC_BUILD_DENSE_PLAN_H
#define PSPACE_SRC_BUILD_DENSE_PLAN_H

#include <stdint.h>

#include "build/build_impl.h"

/* Rows of an f32 product block (the error bound above scales with it). */
#define F32_ROWS 1024
/* Preferred item shape: rows (tile rows of at least this many rows) x columns. */
#define ITEM_ROWS   512
#define ITEM_COLS   2048
#define MAX_WORKERS 64
/* An encoding codec's buffers for a tile of edge E (f32 shuffled planes and zstd output). */
#define CODEC_BYTES(E) (12 * (uint64_t)(E) * (E))
/* Rows per batch from which the products run at their speed. */
#define BATCH_ROWS 1024

typedef struct seg {
	uint32_t b, tr0, tr1; /* block, tile rows [tr0, tr1) */
	uint64_t nb;          /* the block's dimension */
	uint64_t col;         /* column of the rows where the block starts */
	uint64_t bytes;       /* accumulator bytes */
	double *acc;          /* tile row by tile row: rows x (nb - its first row) */
} seg;

typedef struct pass {
	size_t first, nseg; /* segments [first, first + nseg) of the plan */
	uint64_t bytes;     /* accumulator bytes */
	uint64_t c0, c1;    /* columns of the rows the pass reads */
} pass;

typedef struct plan {
	uint32_t T, nblocks;
	int threads;           /* workers (at most MAX_WORKERS) */
	uint32_t group;        /* tile rows per item */
	uint64_t cols;         /* columns per item (a multiple of T) */
	int f32;               /* products in single precision */
	uint64_t *dims, *offs; /* block dims and offsets within the matrix */
	seg *segs;
	size_t nsegs, cap_segs;
	pass *passes;
	size_t npasses, cap_passes;
	uint64_t max_bytes, ntiles;
	/* ranged: only tile rows [row_first, row_end), the blocks' one after another (a shard's) */
	int ranged;
	uint64_t row_first, row_end;
} plan;

static inline uint64_t tile_len(uint64_t nb, uint32_t T, uint32_t t)
{
	uint64_t s = (uint64_t)t * T;

	return nb - s < T ? nb - s : T;
}

/* Bytes of one worker's scratch block. */
static inline uint64_t scratch_bytes(const plan *p)
{
	return (uint64_t)p->group * p->T * p->cols * (p->f32 ? 4 : 8);
}

/** Frees what the plan allocated (not @p p itself). */
void pspace_dense_plan_free(plan *p);

/** Sets the item shape (p->group, p->cols) for @p budget; needs p->T, p->threads. */
void pspace_dense_plan_items(plan *p, uint64_t budget);

/**
 * Bytes kept for a batch besides the accumulators: one example's, or (an
 * automatic batch) enough for BATCH_ROWS rows, within half the budget and
 * what the largest first tile row leaves besides @p base (the scratch).
 */
uint64_t pspace_dense_batch_reserve(const plan *p, const pspace_rows *r, const pspace_build_opts *o,
                                    uint64_t base);

/**
 * Splits the blocks into passes of at most @p accmax accumulator bytes
 * (@p coff: the column of the rows where the matrix starts).
 * @return 0, PSPACE_ENOMEM (a tile row alone exceeds @p accmax: the detail
 * names matrix @p name and the budget).
 */
int pspace_dense_plan_make(plan *p, const char *name, uint64_t coff, uint64_t accmax);

/** The blocks of @p kind over layout @p l (Dense: one). @return 0 or an error. */
int pspace_dense_block_dims(pspace_kind kind, const pspace_layout *l, plan *p);

#endif
