/*
 * Diag, QuasiDiag and LowRank from gradient rows, and the EKFAC diagonal
 * update from them: one pass over the source each, in batches, over the
 * columns [coff, coff + dim) of the rows (the whole parameter vector, or
 * one layer of a Mixed).
 *
 * Memory: Diag d doubles; QuasiDiag d + the weights of the layers with a
 * bias; LowRank all K n rows of the slice (it is low rank because it keeps
 * them: refused with PSPACE_ENOMEM beyond the budget); plus the batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "pspace/factored.h"

typedef int (*batch_fn)(void *ud, const double *X, uint64_t m, uint64_t d);

/* Reads the whole source once, calling @p fn on each batch of K * nx rows. */
static int one_pass(const pspace_build_target *t, pspace_rows *r, const pspace_build_opts *o,
                    uint64_t reserved, const char *stage, batch_fn fn, void *ud)
{
	uint64_t nx, dd = pspace_layout_dim(t->sub);
	uint64_t avail = o->exec.mem_budget > reserved ? o->exec.mem_budget - reserved : 0;
	double *X;
	int rc = pspace_rows_batch(r, o, avail, 0, t->name, &nx, &X);

	if (rc != 0)
		return rc;
	for (uint64_t x0 = 0; rc == 0 && x0 < r->n; x0 += nx) {
		uint64_t k = r->n - x0 < nx ? r->n - x0 : nx;

		rc = pspace_rows_read(r, x0, k, t->coff, t->coff + dd, X);
		if (rc == 0)
			rc = fn(ud, X + t->coff, k * r->K, r->d);
		if (rc == 0)
			pspace_build_progress(o, stage, x0 + k, r->n);
	}
	free(X);
	return rc;
}

/* ---- Diag and QuasiDiag ---------------------------------------------------------------- */

typedef struct qd {
	const pspace_layout *l;
	double *diag;
	double **cross; /* per layer, NULL without a bias (or for Diag) */
} qd;

static int qd_batch(void *ud, const double *X, uint64_t m, uint64_t ld)
{
	qd *q = ud;
	uint64_t dd = pspace_layout_dim(q->l);

	for (uint64_t i = 0; i < m; i++) {
		const double *x = X + i * ld;

		for (uint64_t p = 0; p < dd; p++)
			q->diag[p] += x[p] * x[p];
		for (size_t li = 0; q->cross && li < pspace_layout_nlayers(q->l); li++) {
			const pspace_layer *L = pspace_layout_layer(q->l, li);
			const double *w = x + L->offset, *b = w + L->weight_size;
			uint64_t out = L->shape[0], in = out ? L->weight_size / out : 0;
			double *c = q->cross[li];

			if (!c)
				continue;
			for (uint64_t o = 0; o < out; o++)
				for (uint64_t j = 0; j < in; j++)
					c[o * in + j] += b[o] * w[o * in + j];
		}
	}
	return 0;
}

/* Diag / QuasiDiag straight from layer tensors (r->qd_add), batch by batch. */
static int qd_layers(const pspace_build_target *t, pspace_rows *r, const pspace_build_opts *o,
                     pspace_kind kind, qd *q)
{
	uint64_t dd = pspace_layout_dim(t->sub), nx = o->batch ? o->batch : 256;
	int rc = 0;

	if (nx > r->n)
		nx = r->n;
	for (uint64_t x0 = 0; rc == 0 && x0 < r->n; x0 += nx) {
		uint64_t k = r->n - x0 < nx ? r->n - x0 : nx;

		rc = r->qd_add(r->ud, x0, k, t->coff, t->coff + dd, q->diag, q->cross,
		               o->exec.threads);
		if (rc == 0)
			pspace_build_progress(o, pspace_kind_name(kind), x0 + k, r->n);
	}
	return rc;
}

static int build_qd(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                    const pspace_build_opts *o, pspace_mat **out)
{
	size_t nl = pspace_layout_nlayers(t->sub);
	uint64_t dd = pspace_layout_dim(t->sub), bytes = dd * 8;
	double inv = 1.0 / (double)r->n;
	qd q = {t->sub, calloc(dd, sizeof(double)), NULL};
	int rc = 0;

	if (q.diag && kind == PSPACE_KIND_QUASIDIAG) {
		q.cross = calloc(nl, sizeof(*q.cross));
		for (size_t i = 0; q.cross && i < nl; i++) {
			const pspace_layer *L = pspace_layout_layer(t->sub, i);

			if (!L->bias)
				continue;
			q.cross[i] = calloc(L->weight_size ? L->weight_size : 1, sizeof(double));
			bytes += 8 * L->weight_size;
			if (!q.cross[i])
				rc = PSPACE_ENOMEM;
		}
	}
	if (!q.diag || rc != 0 || (kind == PSPACE_KIND_QUASIDIAG && !q.cross)) {
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory", t->name);
		goto out;
	}
	if (r->qd_add)
		rc = qd_layers(t, r, o, kind, &q);
	else
		rc = one_pass(t, r, o, bytes, pspace_kind_name(kind), qd_batch, &q);
	if (rc != 0)
		goto out;
	for (uint64_t p = 0; p < dd; p++)
		q.diag[p] *= inv;
	for (size_t i = 0; q.cross && i < nl; i++)
		for (uint64_t j = 0; q.cross[i] && j < pspace_layout_layer(t->sub, i)->weight_size;
		     j++)
			q.cross[i][j] *= inv;
	if (kind == PSPACE_KIND_DIAG)
		rc = pspace_diag_create(out, t->sub, q.diag);
	else
		rc = pspace_quasidiag_create(out, t->sub, q.diag, (const double *const *)q.cross);
out:
	for (size_t i = 0; q.cross && i < nl; i++)
		free(q.cross[i]);
	free(q.cross);
	free(q.diag);
	return rc;
}

/* ---- LowRank ----------------------------------------------------------------------- */

typedef struct lr {
	double *D;
	uint64_t dd, rows;
	double scale;
} lr;

static int lr_batch(void *ud, const double *X, uint64_t m, uint64_t ld)
{
	lr *q = ud;

	for (uint64_t i = 0; i < m; i++, q->rows++)
		for (uint64_t p = 0; p < q->dd; p++)
			q->D[q->rows * q->dd + p] = q->scale * X[i * ld + p];
	return 0;
}

static int build_lowrank(const pspace_build_target *t, pspace_rows *r, const pspace_build_opts *o,
                         pspace_mat **out)
{
	uint64_t dd = pspace_layout_dim(t->sub), rows = (uint64_t)r->K * r->n;
	uint64_t bytes = rows * dd * 8;
	lr q = {NULL, dd, 0, 1.0 / sqrt((double)r->n)};
	int rc;

	if (bytes / 8 / dd != rows || bytes > o->exec.mem_budget)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "matrix %s: LowRank keeps all %llu x %llu rows (%llu bytes), "
		                      "more than the memory budget of %llu bytes",
		                      t->name, (unsigned long long)rows, (unsigned long long)dd,
		                      (unsigned long long)bytes,
		                      (unsigned long long)o->exec.mem_budget);
	q.D = malloc(bytes ? bytes : 8);
	if (!q.D)
		return pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for %llu bytes",
		                      t->name, (unsigned long long)bytes);
	rc = one_pass(t, r, o, bytes, "lowrank", lr_batch, &q);
	if (rc == 0)
		rc = pspace_lowrank_create(out, t->sub, rows, q.D, (size_t)dd);
	free(q.D);
	return rc;
}

int pspace_build_factored(const pspace_build_target *t, pspace_kind kind, pspace_rows *r,
                          const pspace_build_opts *o, pspace_mat **out)
{
	*out = NULL;
	if (kind == PSPACE_KIND_LOWRANK)
		return build_lowrank(t, r, o, out);
	if (kind == PSPACE_KIND_DIAG || kind == PSPACE_KIND_QUASIDIAG)
		return build_qd(t, kind, r, o, out);
	return pspace_err_set(PSPACE_EINVAL, "matrix %s: %s is not built from rows here", t->name,
	                      pspace_kind_name(kind));
}

/* ---- EKFAC diagonal update -------------------------------------------------------------- */

typedef struct upd {
	pspace_mat *m;
	const pspace_exec *ex;
} upd;

static int upd_batch(void *ud, const double *X, uint64_t m, uint64_t ld)
{
	upd *u = ud;

	return pspace_ekfac_update_add(u->m, u->ex, m, X, (size_t)ld);
}

int pspace_build_ekfac_update(const pspace_build_target *t, pspace_mat *m, pspace_rows *r,
                              const pspace_build_opts *o)
{
	upd u = {m, &o->exec};
	int rc = pspace_ekfac_update_begin(m);

	if (rc == 0)
		rc = one_pass(t, r, o, 0, "ekfac-update", upd_batch, &u);
	if (rc == 0)
		rc = pspace_ekfac_update_end(m, r->n);
	return pspace_err_prefix(rc, "EKFAC update of %s", t->name);
}

/*
 * The store has no rename: the new matrix is saved complete under
 * "<name>.updating" first, then the old one is removed and the new one
 * saved under @p name, then the copy removed. Between the removal and the
 * second save (a crash there) @p name is absent but "<name>.updating"
 * holds the complete updated matrix; at no time is a half-written matrix
 * visible under either name.
 */
int pspace_build_replace(pspace_store *s, const char *name, pspace_mat *m)
{
	char tmp[PSPACE_NAME_MAX + 1];
	pspace_matrix_info info;
	int rc;

	if (snprintf(tmp, sizeof(tmp), "%s.updating", name) >= (int)sizeof(tmp))
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: name too long to update in place",
		                      name);
	if (pspace_matrix_info_get(&info, s, tmp) == 0) {
		rc = pspace_store_remove(s, tmp);
		if (rc != 0)
			return pspace_err_prefix(rc, "removing the stale copy %s", tmp);
	}
	rc = pspace_mat_save(m, s, tmp);
	if (rc != 0)
		return pspace_err_prefix(rc, "matrix %s: saving the updated copy %s", name, tmp);
	rc = pspace_store_remove(s, name);
	if (rc != 0) {
		pspace_store_remove(s, tmp);
		return pspace_err_prefix(rc, "matrix %s: replacing it", name);
	}
	rc = pspace_mat_save(m, s, name);
	if (rc != 0)
		return pspace_err_prefix(
		    rc, "matrix %s: saving it (the updated matrix is kept as %s)", name, tmp);
	return pspace_err_prefix(pspace_store_remove(s, tmp), "removing the copy %s", tmp);
}
