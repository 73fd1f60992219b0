/*
 * The plan of a Dense or BlockDiag build over rows: segments of tile rows,
 * passes within the accumulator budget, the item shape (dense_plan.h).
 */
#include <stdlib.h>
#include <string.h>

#include "build/dense_plan.h"
#include "common/error.h"

void pspace_dense_plan_free(plan *p)
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

/*
 * Item shape: ITEM_ROWS x ITEM_COLS where the workers' scratch takes at
 * most an eighth of the budget, smaller (down to one tile) where not.
 */
void pspace_dense_plan_items(plan *p, uint64_t budget)
{
	p->group = p->T >= ITEM_ROWS ? 1 : ITEM_ROWS / p->T;
	p->cols = ((ITEM_COLS + p->T - 1) / p->T) * p->T;
	while (scratch_bytes(p) * (uint64_t)p->threads > budget / 8 &&
	       (p->cols > p->T || p->group > 1)) {
		if (p->cols > p->T)
			p->cols = ((p->cols / p->T + 1) / 2) * p->T;
		else
			p->group = (p->group + 1) / 2;
	}
}

/*
 * Bytes kept for a batch besides the accumulators: one example, or when the
 * batch is automatic, enough examples for BATCH_ROWS rows (short products
 * waste BLIS's packing and the adds into the accumulators) up to half the
 * budget and to what the largest first tile row leaves (@p base:
 * the scratch). Fewer accumulators mean more passes over the
 * source, which costs less than slow products unless the source is slow.
 */
uint64_t pspace_dense_batch_reserve(const plan *p, const pspace_rows *r, const pspace_build_opts *o,
                                    uint64_t base)
{
	uint64_t per = (uint64_t)r->K * r->d * (p->f32 ? 12 : 8) + r->extra_per_example;
	uint64_t want = (BATCH_ROWS + r->K - 1) / (r->K ? r->K : 1), cap = o->exec.mem_budget / 2;
	uint64_t row = 0;

	/* never at the cost of the largest first tile row */
	for (uint32_t b = 0; b < p->nblocks; b++) {
		uint64_t nb = p->dims[b], h = nb < p->T ? nb : p->T;

		row = 8 * h * nb > row ? 8 * h * nb : row;
	}
	if (o->exec.mem_budget < base + row + cap)
		cap = o->exec.mem_budget > base + row ? o->exec.mem_budget - base - row : 0;
	want = want < r->n ? want : r->n;
	if (o->batch || want * per <= per || cap <= per)
		return per;
	return want * per < cap ? want * per : cap;
}

static int push_pass(plan *p, pass *cur)
{
	int rc;

	if (!cur->nseg)
		return 0;
	rc = grow((void **)&p->passes, &p->cap_passes, p->npasses + 1, sizeof(pass));
	if (rc != 0)
		return rc;
	p->passes[p->npasses++] = *cur;
	if (cur->bytes > p->max_bytes)
		p->max_bytes = cur->bytes;
	*cur = (pass){p->nsegs, 0, 0, UINT64_MAX, 0};
	return 0;
}

/* Splits the blocks into passes of at most @p accmax accumulator bytes. */
int pspace_dense_plan_make(plan *p, const char *name, uint64_t coff, uint64_t accmax)
{
	pass cur = {0, 0, 0, UINT64_MAX, 0};
	uint64_t gr = 0; /* tile row over all blocks */
	int rc;

	for (uint32_t b = 0; b < p->nblocks; b++) {
		uint64_t nb = p->dims[b];
		uint32_t nt = (uint32_t)((nb + p->T - 1) / p->T);

		for (uint32_t tr = 0; tr < nt; tr++, gr++) {
			uint64_t r0 = (uint64_t)tr * p->T, rows = tile_len(nb, p->T, tr);
			uint64_t add = 8 * rows * (nb - r0), col = coff + p->offs[b];
			seg *last;

			if (p->ranged && (gr < p->row_first || gr >= p->row_end))
				continue;
			p->ntiles += nt - tr;

			if (add > accmax)
				return pspace_err_set(
				    PSPACE_ENOMEM,
				    "matrix %s: one tile row (%llu x %llu) of block %u needs %llu "
				    "bytes, more than the %llu bytes of the memory budget left for "
				    "accumulators",
				    name, (unsigned long long)rows, (unsigned long long)(nb - r0),
				    b, (unsigned long long)add, (unsigned long long)accmax);
			if (cur.nseg && cur.bytes + add > accmax) {
				rc = push_pass(p, &cur);
				if (rc != 0)
					return rc;
			}
			last = cur.nseg ? &p->segs[p->nsegs - 1] : NULL;
			if (last && last->b == b && last->tr1 == tr) {
				last->tr1 = tr + 1;
				last->bytes += add;
			} else {
				rc = grow((void **)&p->segs, &p->cap_segs, p->nsegs + 1,
				          sizeof(seg));
				if (rc != 0)
					return rc;
				p->segs[p->nsegs++] = (seg){b, tr, tr + 1, nb, col, add, NULL};
				cur.nseg++;
			}
			cur.bytes += add;
			cur.c0 = col + r0 < cur.c0 ? col + r0 : cur.c0;
			cur.c1 = col + nb > cur.c1 ? col + nb : cur.c1;
		}
	}
	return push_pass(p, &cur);
}

int pspace_dense_block_dims(pspace_kind kind, const pspace_layout *l, plan *p)
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
