/*
 * Out-of-core Cholesky factor of a stored Dense or BlockDiag matrix plus
 * damping, written as a stored matrix of kind cholesky (README, "The
 * store": lower tiles of each block, arrays "source" and "damping").
 *
 * Left-looking by panels: a panel is as many tile columns of a block as
 * fit the memory budget, rows from its first column down. It is loaded
 * from the source (upper tiles, transposed), updated by every earlier
 * tile column of the factor, read back from the store one column at a
 * time, then factored tile column by tile column in memory (dgemm for the
 * updates inside the panel, dpotrf on the diagonal tile, dtrsm below it),
 * written and committed. Every update of an element runs in the same
 * order (tile column 0, 1, ...) with the same BLIS calls whatever the
 * panel width, so a run resumed from any committed column writes the same
 * factor bit for bit.
 */
#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/exec.h"
#include "mat/factor.h"
#include "mat/stored.h"
#include "pspace/mat.h"
#include "pspace/shard.h"

/* Doubles kept for the codec's buffers and the transposed tile on top of the panel. */
#define SLACK_TILES 5

void pspace_factor_opts_default(pspace_factor_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->dtype = PSPACE_F64;
}

/* What one factorization works with. */
typedef struct fctx {
	pspace_store *s;
	const char *name, *source;
	pspace_reader *src; /* the source, for the whole run */
	pspace_writer *w;
	pspace_codec *codec;
	const pspace_factor_opts *o;
	pspace_exec ex;
	rntm_t rn;
	uint32_t T, nblocks;
	uint64_t *bdim, *boff;
	double *P, *Lk, *S; /* panel (column-major), one factor column (row-major), one tile */
	uint64_t pcap;      /* doubles of P */
	uint64_t done;      /* columns committed, all blocks */
} fctx;

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * Decodes tile (@p row, @p col) of block @p b from @p r into @p dst
 * (row-major, leading dimension @p ld). A tile not stored is zero, which
 * the caller's buffer already holds.
 */
static int get_tile(fctx *c, pspace_reader *r, uint32_t b, uint32_t row, uint32_t col, double *dst,
                    size_t ld)
{
	pspace_tile_ref t;
	int rc = pspace_reader_tile(&t, r, b, row, col);

	if (rc == PSPACE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	return pspace_reader_decode(r, c->codec, &t, PSPACE_F64, dst, ld);
}

/* Rows of tile row @p i of a block of dimension @p n. */
static uint32_t tile_rows(const fctx *c, uint64_t n, uint64_t i)
{
	return (uint32_t)min_u64(c->T, n - i * c->T);
}

/*
 * Panel [J, J1) of block @p b: P holds rows [c0, n) of columns [c0, c1),
 * column-major with leading dimension R = n - c0. Loads it from the source
 * (stored tile (j, i) is the transpose of the wanted (i, j)) plus damping.
 */
static int panel_load(fctx *c, uint32_t b, uint64_t J, uint64_t J1)
{
	uint64_t n = c->bdim[b], nt = (n + c->T - 1) / c->T, c0 = J * c->T;
	uint64_t R = n - c0, c1 = min_u64(J1 * c->T, n);
	int rc = 0;

	memset(c->P, 0, R * (c1 - c0) * sizeof(double));
	for (uint64_t j = J; rc == 0 && j < J1; j++)
		for (uint64_t i = j; rc == 0 && i < nt; i++)
			rc = get_tile(c, c->src, b, (uint32_t)j, (uint32_t)i,
			              c->P + (i * c->T - c0) + (j * c->T - c0) * R, R);
	for (uint64_t i = 0; rc == 0 && i < c1 - c0; i++)
		c->P[i + i * R] += c->o->damping;
	return rc;
}

/* P -= L[c0:n, K] L[c0:c1, K]^T for every factor tile column K < J, read from the store. */
static int panel_update(fctx *c, uint32_t b, uint64_t J, uint64_t J1)
{
	uint64_t n = c->bdim[b], nt = (n + c->T - 1) / c->T, c0 = J * c->T;
	uint64_t R = n - c0, wc = min_u64(J1 * c->T, n) - c0;
	pspace_reader *r = NULL;
	double one = 1.0, minus = -1.0;
	int rc;

	if (J == 0)
		return 0;
	rc = pspace_reader_open(&r, c->s, c->name, PSPACE_READ_INCOMPLETE);
	for (uint64_t K = 0; rc == 0 && K < J; K++) {
		memset(c->Lk, 0, R * c->T * sizeof(double));
		for (uint64_t i = J; rc == 0 && i < nt; i++)
			rc = get_tile(c, r, b, (uint32_t)i, (uint32_t)K,
			              c->Lk + (i * c->T - c0) * c->T, c->T);
		if (rc == 0)
			bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)R, (dim_t)wc,
			             (dim_t)c->T, &minus, c->Lk, (inc_t)c->T, 1, c->Lk, (inc_t)c->T,
			             1, &one, c->P, 1, (inc_t)R, NULL, &c->rn);
	}
	pspace_reader_close(r);
	return rc;
}

/* Factors the loaded, updated panel in memory, tile column by tile column. */
static int panel_factor(fctx *c, uint32_t b, uint64_t J, uint64_t J1)
{
	uint64_t n = c->bdim[b], c0 = J * c->T, R = n - c0;
	double one = 1.0, minus = -1.0;

	for (uint64_t j = J; j < J1; j++) {
		uint64_t cj = j * c->T - c0, tj = tile_rows(c, n, j);
		double *Djj = c->P + cj + cj * R;
		lapack_int info;

		for (uint64_t k = J; k < j; k++) {
			const double *Ak = c->P + cj + (k * c->T - c0) * R;

			bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)(R - cj), (dim_t)tj,
			             (dim_t)c->T, &minus, (double *)Ak, 1, (inc_t)R, (double *)Ak,
			             1, (inc_t)R, &one, Djj, 1, (inc_t)R, NULL, &c->rn);
		}
		info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)tj, Djj, (lapack_int)R);
		if (info > 0)
			return pspace_err_set(
			    PSPACE_ENUMERIC,
			    "matrix %s + %g I is not positive definite at pivot %llu; try "
			    "--damping",
			    c->source, c->o->damping,
			    (unsigned long long)(c->boff[b] + c0 + cj + (uint64_t)info - 1));
		if (info < 0)
			return pspace_err_set(PSPACE_ENUMERIC, "matrix %s: dpotrf argument %d",
			                      c->source, (int)-info);
		if (R - cj > tj)
			bli_dtrsm_ex(BLIS_RIGHT, BLIS_LOWER, BLIS_TRANSPOSE, BLIS_NONUNIT_DIAG,
			             (dim_t)(R - cj - tj), (dim_t)tj, &one, Djj, 1, (inc_t)R,
			             Djj + tj, 1, (inc_t)R, NULL, &c->rn);
	}
	return 0;
}

/* Writes the panel's tiles (i >= j) row-major, zeros above the diagonal, and commits them. */
static int panel_write(fctx *c, uint32_t b, uint64_t J, uint64_t J1)
{
	uint64_t n = c->bdim[b], nt = (n + c->T - 1) / c->T, c0 = J * c->T, R = n - c0;
	int rc = 0;

	for (uint64_t j = J; rc == 0 && j < J1; j++) {
		uint32_t tj = tile_rows(c, n, j);

		for (uint64_t i = j; rc == 0 && i < nt; i++) {
			uint32_t ri = tile_rows(c, n, i);
			const double *src = c->P + (i * c->T - c0) + (j * c->T - c0) * R;

			for (uint32_t a = 0; a < ri; a++)
				for (uint32_t e = 0; e < tj; e++)
					c->S[(size_t)a * tj + e] =
					    i == j && e > a ? 0.0 : src[a + (size_t)e * R];
			rc = pspace_writer_put_tile(c->w, b, (uint32_t)i, (uint32_t)j, PSPACE_F64,
			                            c->S, tj);
		}
	}
	if (rc == 0)
		rc = pspace_writer_checkpoint(c->w);
	return rc;
}

/* @return the first tile column of block @p b not wholly stored (nt when all are). */
static int first_missing(fctx *c, uint32_t b, uint64_t *out)
{
	uint64_t n = c->bdim[b], nt = (n + c->T - 1) / c->T;

	for (uint64_t j = 0; j < nt; j++)
		for (uint64_t i = j; i < nt; i++) {
			int rc = pspace_writer_has_tile(c->w, b, (uint32_t)i, (uint32_t)j);

			if (rc < 0)
				return rc;
			if (rc == 0) {
				*out = j;
				return 0;
			}
		}
	*out = nt;
	return 0;
}

static int factor_block(fctx *c, uint32_t b)
{
	uint64_t n = c->bdim[b], nt = (n + c->T - 1) / c->T, J = 0;
	int rc = first_missing(c, b, &J);

	c->done += min_u64(J * c->T, n);
	while (rc == 0 && J < nt) {
		uint64_t R = n - J * c->T, w = c->pcap / (R * c->T), J1;

		J1 = min_u64(J + (w ? w : 1), nt);
		rc = panel_load(c, b, J, J1);
		if (rc == 0)
			rc = panel_update(c, b, J, J1);
		if (rc == 0)
			rc = panel_factor(c, b, J, J1);
		if (rc == 0)
			rc = panel_write(c, b, J, J1);
		if (rc == 0) {
			c->done += min_u64(J1 * c->T, n) - J * c->T;
			if (c->o->progress)
				c->o->progress(c->o->progress_ud, c->done,
				               pspace_reader_info(c->src)->d);
		}
		J = J1;
	}
	return rc;
}

/* Stores the arrays naming the source and the damping. */
static int put_params(fctx *c, uint64_t source_id)
{
	uint64_t one = 1;
	int64_t id = (int64_t)source_id;
	int rc = pspace_writer_put_array(c->w, "source", PSPACE_I64, 1, &one, &id);

	if (rc == 0)
		rc = pspace_writer_put_array(c->w, "damping", PSPACE_F64, 1, &one, &c->o->damping);
	if (rc == 0)
		rc = pspace_writer_checkpoint(c->w);
	return rc;
}

int pspace_factor_params(uint64_t *source_id, double *damping, pspace_reader *r)
{
	int64_t id = 0;
	int rc;

	if (pspace_reader_info(r)->kind != PSPACE_KIND_CHOLESKY)
		return pspace_err_set(PSPACE_ENOTSUP, "matrix %s is a %s, not a Cholesky factor",
		                      pspace_reader_info(r)->name,
		                      pspace_kind_name(pspace_reader_info(r)->kind));
	rc = pspace_reader_array(r, "source", PSPACE_I64, &id, 1);
	if (rc == 0)
		rc = pspace_reader_array(r, "damping", PSPACE_F64, damping, 1);
	*source_id = (uint64_t)id;
	return rc;
}

/* Checks that @p name is an interrupted factor of this source with this damping. */
static int check_resume(fctx *c, const pspace_matrix_info *si)
{
	pspace_reader *r = NULL;
	uint64_t id = 0;
	double l = 0;
	int rc = pspace_reader_open(&r, c->s, c->name, PSPACE_READ_INCOMPLETE);

	if (rc == 0)
		rc = pspace_factor_params(&id, &l, r);
	if (rc == 0 && pspace_reader_info(r)->state != PSPACE_STATE_BUILDING)
		rc = pspace_err_set(PSPACE_EINVAL, "matrix %s is complete: nothing to resume",
		                    c->name);
	if (rc == 0 && (id != si->id || l != c->o->damping))
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "matrix %s is a factor of another matrix or damping (%g), not "
		                    "of %s + %g I",
		                    c->name, l, c->source, c->o->damping);
	if (rc == 0 && (pspace_reader_info(r)->tile != si->tile ||
	                pspace_reader_info(r)->nblocks != si->nblocks))
		rc = pspace_err_set(PSPACE_EINVAL, "matrix %s: tiling differs from %s", c->name,
		                    c->source);
	pspace_reader_close(r);
	return rc;
}

/* Opens the writer: a new factor, or the interrupted one for a resume. */
static int open_writer(fctx *c, const pspace_matrix_info *si)
{
	pspace_matrix_desc d;
	char *layout = NULL;
	int rc = 0;

	if (c->o->resume) {
		rc = check_resume(c, si);
		return rc ? rc : pspace_writer_resume(&c->w, c->s, c->name);
	}
	memset(&d, 0, sizeof(d));
	d.kind = PSPACE_KIND_CHOLESKY;
	d.d = si->d;
	d.nblocks = si->nblocks;
	d.block_dims = c->bdim;
	d.tile = si->tile;
	d.symmetric = 0;
	d.codec = si->codec;
	d.codec.dtype = c->o->dtype ? c->o->dtype : PSPACE_F64;
	if (si->layout_id)
		rc = pspace_store_layout(&layout, c->s, si->layout_id);
	d.layout_text = layout;
	if (rc == 0)
		rc = pspace_writer_begin(&c->w, c->s, c->name, &d);
	if (rc == 0) {
		rc = put_params(c, si->id);
		if (rc) {
			pspace_writer_abort(c->w, 1);
			c->w = NULL;
		}
	}
	free(layout);
	return rc;
}

/* Checks the source and the budget and allocates the panel. */
static int prepare(fctx *c, const pspace_matrix_info *si)
{
	uint64_t nmax = 0, T = si->tile, avail = c->ex.mem_budget / sizeof(double), need;
	char b1[32], b2[32];

	if (si->kind != PSPACE_KIND_DENSE && si->kind != PSPACE_KIND_BLOCKDIAG)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "matrix %s is a %s: only Dense and BlockDiag are factored",
		                      c->source, pspace_kind_name(si->kind));
	if (!si->symmetric)
		return pspace_err_set(PSPACE_ENOTSUP, "matrix %s is not symmetric (a product)",
		                      c->source);
	c->T = si->tile;
	c->nblocks = si->nblocks;
	c->bdim = calloc(si->nblocks + 1, sizeof(uint64_t));
	c->boff = calloc(si->nblocks + 1, sizeof(uint64_t));
	if (!c->bdim || !c->boff)
		return pspace_err_set(PSPACE_ENOMEM, "factor %s: out of memory", c->name);
	for (uint32_t b = 0; b < si->nblocks; b++) {
		c->bdim[b] = pspace_reader_block_dim(c->src, b);
		c->boff[b + 1] = c->boff[b] + c->bdim[b];
		nmax = c->bdim[b] > nmax ? c->bdim[b] : nmax;
	}
	/* One factor column, the transposed tile and codec room, then at least one panel column. */
	need = nmax * T + SLACK_TILES * T * T;
	if (avail < need + nmax * T)
		return pspace_err_set(
		    PSPACE_ENOMEM,
		    "factor of %s: a panel of one tile column (%llu x %llu) needs %s, more than "
		    "the memory budget of %s",
		    c->source, (unsigned long long)nmax, (unsigned long long)T,
		    pspace_fmt_bytes(b1, sizeof(b1), (need + nmax * T) * sizeof(double)),
		    pspace_fmt_bytes(b2, sizeof(b2), c->ex.mem_budget));
	c->pcap = min_u64(avail - need, nmax * nmax);
	c->P = malloc(c->pcap * sizeof(double));
	c->Lk = malloc(nmax * T * sizeof(double));
	c->S = malloc(T * T * sizeof(double));
	if (!c->P || !c->Lk || !c->S)
		return pspace_err_set(PSPACE_ENOMEM, "factor of %s: out of memory for the panel",
		                      c->source);
	return 0;
}

int pspace_factor_write(pspace_store *s, const char *name, const char *source,
                        const pspace_exec *ex, const pspace_factor_opts *opts)
{
	pspace_factor_opts o;
	fctx c;
	const pspace_matrix_info *si;
	pspace_shard_info sh;
	int rc;

	if (!s || !name || !source)
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_write: NULL argument");
	if (opts)
		o = *opts;
	else
		pspace_factor_opts_default(&o);
	if (!isfinite(o.damping))
		return pspace_err_set(PSPACE_EINVAL, "pspace_factor_write: damping is not finite");
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.name = name;
	c.source = source;
	c.o = &o;
	pspace_exec_resolve(ex, &c.ex);
	bli_rntm_init(&c.rn);
	bli_rntm_set_num_threads(c.ex.threads, &c.rn);
	rc = pspace_reader_open(&c.src, s, source, 0);
	if (rc)
		goto out;
	if (pspace_shard_info_get(&sh, NULL, 0, s, source) == 0 && sh.nranks > 1) {
		rc = pspace_err_set(PSPACE_ENOTSUP, "factor of %s: it is a sharded matrix", source);
		goto out;
	}
	pspace_errclear();
	si = pspace_reader_info(c.src);
	rc = prepare(&c, si);
	if (rc == 0)
		rc = pspace_codec_create(&c.codec);
	if (rc == 0)
		rc = open_writer(&c, si);
	for (uint32_t b = 0; rc == 0 && b < c.nblocks; b++)
		rc = factor_block(&c, b);
	if (rc == 0) {
		rc = pspace_writer_finish(c.w);
		c.w = NULL;
	}
	/* Not positive definite is final: the partial factor could never complete. */
	if (c.w)
		pspace_writer_abort(c.w, rc == PSPACE_ENUMERIC);
out:
	pspace_codec_free(c.codec);
	free(c.S);
	free(c.Lk);
	free(c.P);
	free(c.boff);
	free(c.bdim);
	pspace_reader_close(c.src);
	return rc;
}
