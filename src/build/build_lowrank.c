/*
 * LowRank stored as tiles, from gradient rows in one pass: the rows D = J /
 * sqrt(n) (r = K n of them, over the columns [coff, coff + dim) of the
 * source's rows) go into a band of E rows; each full band (the last one
 * padded with zero rows) becomes one tile row of D, its tiles encoded on
 * the workers and stored in streaming order (src/mat/lowrank_stored.c reads
 * them). Memory: the band (E d values: floats for f32 tiles, whose values
 * the writer would round to float anyway, else doubles), the batch, the
 * tile writer's slots. The tile edge E is the requested one (--tile, else
 * the store's default), halved until the band takes at most half of the
 * budget, and no larger than the power of two above r (so a few rows are
 * not padded to 512). A value beyond the stored precision's range is an
 * error naming its row and parameter.
 *
 * With more rows than parameters (r > d) the rows stay a tileless entry
 * (build_factored.c): D^T D is the smaller matrix then.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "mat/lowrank.h"
#include "pspace/factored.h"

#define MIN_EDGE 8

typedef struct band {
	const pspace_build_target *t;
	uint64_t d, r;
	uint32_t E;
	double *B;      /* E x d, or NULL when Bf holds the band */
	float *Bf;      /* E x d, for f32 tiles */
	uint64_t fill;  /* rows in the band */
	uint64_t first; /* global index of its first row */
	uint32_t row;   /* its tile row */
	double scale, max;
	const char *prec;
	pspace_tile_addr *addr; /* the tile row's addresses */
	pspace_writer *w;
	const pspace_build_opts *o;
	size_t slots;
} band;

static int fill_tile(void *ud, size_t i, double *out, uint32_t *ncols, pspace_dtype *type,
                     void *scratch)
{
	const band *b = ud;
	uint64_t c0 = (uint64_t)b->addr[i].col * b->E;
	uint64_t rows =
	    b->d - (uint64_t)b->row * b->E < b->E ? b->d - (uint64_t)b->row * b->E : b->E;
	uint32_t cols = (uint32_t)(b->d - c0 < b->E ? b->d - c0 : b->E);

	(void)scratch;
	(void)type;
	*ncols = cols;
	for (uint64_t a = 0; a < rows; a++) {
		double *o = out + a * cols;

		if (a >= b->fill) {
			memset(o, 0, cols * sizeof(*o));
			continue;
		}
		if (b->B)
			memcpy(o, b->B + a * b->d + c0, cols * sizeof(*o));
		else
			for (uint32_t p = 0; p < cols; p++)
				o[p] = b->Bf[a * b->d + c0 + p];
	}
	return 0;
}

/* Stores the band as tile row b->row and empties it. */
static int flush(band *b)
{
	uint64_t nc = (b->d + b->E - 1) / b->E;
	int rc;

	for (uint64_t c = 0; c < nc; c++)
		b->addr[c] = (pspace_tile_addr){0, b->row, (uint32_t)c};
	rc = pspace_write_tiles(b->w, b->addr, (size_t)nc, b->E, b->o->exec.threads, b->slots, 0,
	                        fill_tile, b);
	b->first += b->fill;
	b->fill = 0;
	b->row++;
	return rc;
}

/* Appends the m rows of X (ld @p ld, from column coff) to the band, flushing full ones. */
static int add_rows(band *b, const double *X, uint64_t m, uint64_t ld)
{
	int rc = 0;

	for (uint64_t i = 0; rc == 0 && i < m; i++) {
		const double *src = X + i * ld + b->t->coff;
		int ok = 1;

		/* NaN compares false: one vectorizable test per value */
		for (uint64_t p = 0; p < b->d; p++)
			ok &= fabs(b->scale * src[p]) <= b->max;
		for (uint64_t p = 0; !ok && p < b->d; p++)
			if (!(fabs(b->scale * src[p]) <= b->max))
				return pspace_err_set(
				    PSPACE_ENUMERIC,
				    "row %llu, parameter %llu: %g is beyond the %s range (%.6g): "
				    "build at f64 precision or scale the inputs down",
				    (unsigned long long)(b->first + b->fill), (unsigned long long)p,
				    b->scale * src[p], b->prec, b->max);
		if (b->B)
			for (uint64_t p = 0; p < b->d; p++)
				b->B[b->fill * b->d + p] = b->scale * src[p];
		else
			for (uint64_t p = 0; p < b->d; p++)
				b->Bf[b->fill * b->d + p] = (float)(b->scale * src[p]);
		if (++b->fill == b->E)
			rc = flush(b);
	}
	return rc;
}

/* The tile edge: see the file comment. */
static uint32_t pick_edge(const pspace_build_opts *o, uint64_t d, uint64_t r, size_t esz)
{
	uint32_t E = o->write.tile ? o->write.tile : PSPACE_DEFAULT_TILE;
	uint32_t cap = MIN_EDGE;

	while (cap < r && cap < E)
		cap *= 2;
	if (E > cap)
		E = cap;
	while (E > MIN_EDGE && (double)E * (double)d * esz > (double)o->exec.mem_budget / 2)
		E /= 2;
	return E;
}

int pspace_build_lowrank(const pspace_build_target *t, pspace_rows *r, const pspace_build_opts *o)
{
	uint64_t d = pspace_layout_dim(t->sub), rows = (uint64_t)r->K * r->n, nx = 0, used;
	pspace_dtype prec = o->write.codec.dtype;
	size_t esz = prec == PSPACE_F32 ? sizeof(float) : sizeof(double);
	band b = {0};
	double *X = NULL;
	int rc = 0;

	if (rows > d) {
		pspace_mat *m = NULL;

		rc = pspace_build_factored(t, PSPACE_KIND_LOWRANK, r, o, &m);
		if (rc == 0)
			rc = pspace_mat_save(m, t->s, t->name);
		pspace_mat_free(m);
		return rc;
	}
	b.t = t;
	b.o = o;
	b.d = d;
	b.r = rows;
	b.E = pick_edge(o, d, rows, esz);
	b.scale = 1.0 / sqrt((double)r->n);
	b.max = prec == PSPACE_F32 ? FLT_MAX : prec == PSPACE_BF16 ? 0x1.fep127 : DBL_MAX;
	b.prec = pspace_dtype_name(prec);
	/* per slot a tile of doubles and the codec's buffers; two per worker */
	b.slots = 2 * (size_t)o->exec.threads;
	used = (uint64_t)b.E * d * esz + b.slots * 20 * (uint64_t)b.E * b.E;
	if ((double)used > (double)o->exec.mem_budget)
		return pspace_err_set(
		    PSPACE_ENOMEM,
		    "matrix %s: LowRank rows of %llu parameters need a band of %u "
		    "rows (%llu bytes with the tile writer), more than the memory "
		    "budget of %zu bytes",
		    t->name, (unsigned long long)d, b.E, (unsigned long long)used,
		    o->exec.mem_budget);
	if (esz == sizeof(float))
		b.Bf = malloc((size_t)b.E * d * sizeof(*b.Bf));
	else
		b.B = malloc((size_t)b.E * d * sizeof(*b.B));
	b.addr = malloc(((d + b.E - 1) / b.E) * sizeof(*b.addr));
	if ((!b.B && !b.Bf) || !b.addr) {
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for a band of %u rows",
		                    t->name, b.E);
		goto out;
	}
	rc = pspace_rows_batch(r, o, o->exec.mem_budget - used, 0, t->name, &nx, &X);
	if (rc == 0)
		rc = pspace_lowrank_store_begin(&b.w, t->s, t->name, t->sub, b.E, &o->write.codec);
	for (uint64_t x0 = 0; rc == 0 && x0 < r->n; x0 += nx) {
		uint64_t k = r->n - x0 < nx ? r->n - x0 : nx;

		rc = pspace_rows_read(r, x0, k, t->coff, t->coff + d, X);
		if (rc == 0)
			rc = add_rows(&b, X, k * r->K, r->d);
		if (rc == 0)
			pspace_build_progress(o, "lowrank", x0 + k, r->n);
	}
	if (rc == 0 && b.fill)
		rc = flush(&b);
	rc = pspace_lowrank_store_end(b.w, rows, rc);
	b.w = NULL;
out:
	free(X);
	free(b.addr);
	free(b.Bf);
	free(b.B);
	return pspace_err_prefix(rc, "matrix %s", t->name);
}
