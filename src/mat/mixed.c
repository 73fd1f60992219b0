/*
 * Mixed: block-diagonal across layers, one matrix of any kind per layer
 * (README, Formulas). Every operation dispatches to the parts on the layers' slices
 * of the vectors, through the public interface, so parts can be resident
 * or stored; an operation a part lacks fails naming the layer.
 *
 * Persistence: a tileless entry "<name>" with the layout and two arrays,
 *   "parts"  (i64, one byte per element): the parts' matrix names, each
 *            terminated by a 0, in layer order;
 *   "stored" (i64, one per layer): 1 where the part is a stored matrix
 *            (Dense, BlockDiag) that the Mixed only refers to, 0 where the
 *            part was saved with the Mixed.
 * Resident parts are saved first, each as its own matrix "<name>/<layer>";
 * stored parts cannot be copied and are recorded by name (they must live
 * in the same store, and must outlive the Mixed: removing "<name>" removes
 * neither kind of part). Its opener reopens every part by name (through the
 * function open.c hands it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"
#include "pspace/factored.h"

#define PARTS_ARRAY  "parts"
#define STORED_ARRAY "stored"

typedef struct mixed {
	pspace_mat base;
	size_t n;
	pspace_mat **parts; /* one reference each */
} mixed;

static mixed *mx_of(const pspace_mat *m)
{
	return (mixed *)m;
}

static const pspace_layer *layer(const pspace_mat *m, size_t i)
{
	return pspace_layout_layer(m->layout, i);
}

/* Prefixes the layer's name to a part's error. */
static int in_layer(const pspace_mat *m, size_t i, int rc)
{
	return pspace_err_prefix(rc, "layer %s", layer(m, i)->name);
}

static void mx_destroy(pspace_mat *m)
{
	mixed *x = mx_of(m);

	for (size_t i = 0; x->parts && i < x->n; i++)
		pspace_mat_free(x->parts[i]);
	free(x->parts);
}

static int mx_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                 size_t ldx, double *Y, size_t ldy)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		uint64_t off = layer(m, i)->offset;

		rc = in_layer(
		    m, i,
		    pspace_mat_mm(x->parts[i], ex, k, alpha, X + off, ldx, 1.0, Y + off, ldy));
	}
	return rc;
}

static int mx_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                         size_t ldv, double *out)
{
	mixed *x = mx_of(m);
	double *t = malloc(k * sizeof(*t));
	int rc = 0;

	if (!t)
		return pspace_err_set(PSPACE_ENOMEM, "mixed vTMv: out of memory");
	memset(out, 0, k * sizeof(*out));
	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		rc = in_layer(
		    m, i,
		    pspace_mat_vtmv_batch(x->parts[i], ex, k, V + layer(m, i)->offset, ldv, t));
		for (uint32_t j = 0; rc == 0 && j < k; j++)
			out[j] += t[j];
	}
	free(t);
	return rc;
}

/* *out = sum over the parts of @p part's scalar: what trace and frob2 add up. */
static int sum_parts(pspace_mat *m, const pspace_exec *ex,
                     int (*part)(pspace_mat *, const pspace_exec *, double *), double *out)
{
	mixed *x = mx_of(m);
	double s = 0, t = 0;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		rc = in_layer(m, i, part(x->parts[i], ex, &t));
		s += t;
	}
	*out = s;
	return rc;
}

static int mx_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return sum_parts(m, ex, pspace_mat_trace, out);
}

static int mx_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++)
		rc = in_layer(m, i, pspace_mat_diag(x->parts[i], ex, out + layer(m, i)->offset));
	return rc;
}

/* A part's squared Frobenius norm, through the public interface like every part call. */
static int part_frob2(pspace_mat *p, const pspace_exec *ex, double *out)
{
	double f = 0;
	int rc = pspace_mat_frobenius(p, ex, &f);

	*out = f * f;
	return rc;
}

static int mx_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	return sum_parts(m, ex, part_frob2, out);
}

static int mx_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (uint64_t r = 0; r < m->d; r++)
		memset(out + r * ld, 0, m->d * sizeof(*out));
	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		uint64_t off = layer(m, i)->offset;

		rc = in_layer(m, i, pspace_mat_dense(x->parts[i], ex, out + off * ld + off, ld));
	}
	return rc;
}

static int mx_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                    const double *B, size_t ldb, double *X, size_t ldx)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		uint64_t off = layer(m, i)->offset;

		rc = in_layer(
		    m, i,
		    pspace_mat_solve(x->parts[i], ex, damping, k, B + off, ldb, X + off, ldx));
	}
	return rc;
}

static int mx_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	mixed *x = mx_of(m);
	double s = 0, t = 0;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		rc = in_layer(m, i, pspace_mat_logdet(&t, x->parts[i], ex, damping));
		s += t;
	}
	*out = s;
	return rc;
}

static int mx_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++)
		rc = in_layer(
		    m, i, pspace_mat_diaginv(out + layer(m, i)->offset, x->parts[i], ex, damping));
	return rc;
}

static int mx_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                      const double *Z, size_t ldz, double *X, size_t ldx)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		uint64_t off = layer(m, i)->offset;

		rc = in_layer(m, i,
		              pspace_mat_sqrt_mm(X + off, ldx, x->parts[i], ex, damping, cov, k,
		                                 Z + off, ldz));
	}
	return rc;
}

/* ---- new Mixed matrices, part by part ------------------------------------------- */

typedef struct partop {
	int (*unary)(pspace_mat *m, double a, double b, pspace_mat **out);
	double a, b;
	const mixed *other; /* product: the right factor */
} partop;

static int pow_part(pspace_mat *m, double p, double l, pspace_mat **out)
{
	return pspace_mat_pow(out, m, p, l);
}

static int pinv_part(pspace_mat *m, double t, double unused, pspace_mat **out)
{
	(void)unused;
	return pspace_mat_pinv(out, m, t);
}

static int scale_part(pspace_mat *m, double s, double unused, pspace_mat **out)
{
	(void)unused;
	return pspace_mat_scale(out, m, s);
}

static int mx_map(pspace_mat *m, const partop *op, pspace_mat **out)
{
	mixed *x = mx_of(m);
	pspace_mat **np = calloc(x->n ? x->n : 1, sizeof(*np));
	int rc = 0;

	if (!np)
		return pspace_err_set(PSPACE_ENOMEM, "mixed: out of memory");
	for (size_t i = 0; rc == 0 && i < x->n; i++) {
		if (op->other)
			rc = pspace_mat_product(&np[i], x->parts[i], op->other->parts[i]);
		else
			rc = op->unary(x->parts[i], op->a, op->b, &np[i]);
		rc = in_layer(m, i, rc);
	}
	if (rc == 0)
		rc = pspace_mixed_create(out, m->layout, np);
	for (size_t i = 0; i < x->n; i++)
		pspace_mat_free(np[i]);
	free(np);
	return rc;
}

static int mx_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	partop op = {pow_part, p, damping, NULL};

	return mx_map(m, &op, out);
}

static int mx_pinv(pspace_mat *m, double threshold, pspace_mat **out)
{
	partop op = {pinv_part, threshold, 0, NULL};

	return mx_map(m, &op, out);
}

static int mx_scale(pspace_mat *m, double s, pspace_mat **out)
{
	partop op = {scale_part, s, 0, NULL};

	return mx_map(m, &op, out);
}

static int mx_product(pspace_mat *a, pspace_mat *b, pspace_mat **out)
{
	partop op = {NULL, 0, 0, mx_of(b)};

	return mx_map(a, &op, out);
}

/* ---- eigenvalues ------------------------------------------------------------------ */

static int cmp_desc(const void *pa, const void *pb)
{
	double a = *(const double *)pa, b = *(const double *)pb;

	return (a < b) - (a > b);
}

static int mx_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	mixed *x = mx_of(m);
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < x->n; i++)
		rc = in_layer(m, i,
		              pspace_mat_eigvals(x->parts[i], ex, evals + layer(m, i)->offset));
	if (rc == 0)
		qsort(evals, m->d, sizeof(*evals), cmp_desc);
	return rc;
}

/*
 * Top k: the top min(k, d_i) eigenpairs of each part, merged by value
 * (ties: earlier layer first). Memory: at most k x d for the parts'
 * eigenvectors, the size of the result.
 */
static int mx_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                  size_t ld)
{
	mixed *x = mx_of(m);
	double **pv = calloc(x->n ? x->n : 1, sizeof(*pv)),
	       **pe = calloc(x->n ? x->n : 1, sizeof(*pe));
	uint32_t *kk = calloc(x->n ? x->n : 1, sizeof(*kk)),
	         *next = calloc(x->n ? x->n : 1, sizeof(*next));
	int rc = 0;

	if (!pv || !pe || !kk || !next) {
		rc = pspace_err_set(PSPACE_ENOMEM, "mixed eig: out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->n; i++) {
		uint64_t di = layer(m, i)->size;

		kk[i] = di < k ? (uint32_t)di : k;
		pe[i] = malloc(kk[i] * sizeof(double));
		if (evecs)
			pv[i] = malloc((size_t)kk[i] * di * sizeof(double));
		if (!pe[i] || (evecs && !pv[i])) {
			rc = pspace_err_set(PSPACE_ENOMEM, "mixed eig: out of memory");
			goto out;
		}
		rc = in_layer(m, i, pspace_mat_eig(x->parts[i], ex, kk[i], pe[i], pv[i], di));
		if (rc != 0)
			goto out;
	}
	for (uint32_t t = 0; t < k; t++) {
		size_t best = x->n;

		for (size_t i = 0; i < x->n; i++)
			if (next[i] < kk[i] &&
			    (best == x->n || pe[i][next[i]] > pe[best][next[best]]))
				best = i;
		evals[t] = pe[best][next[best]];
		if (evecs) {
			const pspace_layer *L = layer(m, best);

			memset(evecs + (size_t)t * ld, 0, m->d * sizeof(*evecs));
			memcpy(evecs + (size_t)t * ld + L->offset, pv[best] + next[best] * L->size,
			       L->size * sizeof(*evecs));
		}
		next[best]++;
	}
out:
	for (size_t i = 0; x->n && pv && pe && i < x->n; i++) {
		free(pv[i]);
		free(pe[i]);
	}
	free(next);
	free(kk);
	free(pe);
	free(pv);
	return rc;
}

/* ---- persistence -------------------------------------------------------------------- */

static int mx_save(pspace_mat *m, pspace_store *s, const char *name)
{
	mixed *x = mx_of(m);
	pspace_matrix_info info;
	pspace_writer *w = NULL;
	char **names = calloc(x->n ? x->n : 1, sizeof(*names));
	int64_t *stored = calloc(x->n ? x->n : 1, sizeof(*stored)), *bytes = NULL;
	uint64_t nbytes = 0, shape[1];
	size_t saved = 0;
	int rc = 0;

	if (!names || !stored) {
		rc = pspace_err_set(PSPACE_ENOMEM, "mixed save: out of memory");
		goto out;
	}
	if (pspace_matrix_info_get(&info, s, name) == 0) {
		rc = pspace_err_set(PSPACE_EEXIST, "matrix %s exists", name);
		goto out;
	}
	/* The parts first: one writer at a time per store. */
	for (size_t i = 0; i < x->n; i++) {
		pspace_mat *p = x->parts[i];
		const char *ln = layer(m, i)->name;

		if (p->vt->save) {
			if (asprintf(&names[i], "%s/%s", name, ln) < 0) {
				names[i] = NULL;
				rc = pspace_err_set(PSPACE_ENOMEM, "mixed save: out of memory");
				goto out;
			}
			rc = in_layer(m, i, pspace_mat_save(p, s, names[i]));
			if (rc != 0) {
				free(names[i]);
				names[i] = NULL;
				goto out;
			}
			saved = i + 1;
		} else if (p->name && p->store == s) {
			names[i] = strdup(p->name);
			stored[i] = 1;
			if (!names[i]) {
				rc = pspace_err_set(PSPACE_ENOMEM, "mixed save: out of memory");
				goto out;
			}
		} else {
			rc = pspace_err_set(
			    PSPACE_ENOTSUP, "layer %s: a %s part %s cannot be saved with a Mixed%s",
			    ln, pspace_kind_name(p->vt->kind), p->name ? p->name : "",
			    p->name ? " (it is stored in another store)" : "");
			goto out;
		}
		nbytes += strlen(names[i]) + 1;
	}
	bytes = malloc((nbytes ? nbytes : 1) * sizeof(*bytes));
	if (!bytes) {
		rc = pspace_err_set(PSPACE_ENOMEM, "mixed save: out of memory");
		goto out;
	}
	nbytes = 0;
	for (size_t i = 0; i < x->n; i++)
		for (const char *c = names[i];; c++) {
			bytes[nbytes++] = (unsigned char)*c;
			if (!*c)
				break;
		}
	rc = pspace_resident_save_begin(m, PSPACE_KIND_MIXED, s, name, &w);
	if (rc != 0)
		goto out;
	shape[0] = nbytes;
	rc = pspace_writer_put_array(w, PARTS_ARRAY, PSPACE_I64, 1, shape, bytes);
	shape[0] = x->n;
	if (rc == 0)
		rc = pspace_writer_put_array(w, STORED_ARRAY, PSPACE_I64, 1, shape, stored);
	rc = pspace_resident_save_end(w, rc);
out:
	/* On failure, no half-saved Mixed: remove the parts saved for it. */
	for (size_t i = 0; rc != 0 && i < saved; i++)
		if (names[i] && !stored[i])
			pspace_store_remove(s, names[i]);
	for (size_t i = 0; names && i < x->n; i++)
		free(names[i]);
	free(bytes);
	free(stored);
	free(names);
	return rc;
}

/* Diagonal when every part is: a Mixed has no entries across layers. */
static int mx_is_diagonal(const pspace_mat *m)
{
	const mixed *x = mx_of(m);

	for (size_t i = 0; i < x->n; i++)
		if (!pspace_mat_is_diagonal(x->parts[i]))
			return 0;
	return 1;
}

static const pspace_mat_vtable mx_vt = {
    .kind = PSPACE_KIND_MIXED,
    .destroy = mx_destroy,
    .mm = mx_mm,
    .vtmv_batch = mx_vtmv_batch,
    .trace = mx_trace,
    .diag = mx_diag,
    .is_diagonal = mx_is_diagonal,
    .frob2 = mx_frob2,
    .dense = mx_dense,
    .solve = mx_solve,
    .logdet = mx_logdet,
    .diaginv = mx_diaginv,
    .sqrt_mm = mx_sqrt_mm,
    .save = mx_save,
    .pow = mx_pow,
    .pinv = mx_pinv,
    .scale = mx_scale,
    .product = mx_product,
    .eig = mx_eig,
    .eigvals = mx_eigvals,
};

static int mx_new(pspace_mat **out, const pspace_layout *layout, pspace_mat *const *parts,
                  pspace_store *s, const char *name)
{
	size_t n = pspace_layout_nlayers(layout);
	mixed *x;
	int rc;

	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);

		if (!parts[i])
			return pspace_err_set(PSPACE_EINVAL, "layer %s: mixed part is NULL",
			                      L->name);
		if (parts[i]->d != L->size)
			return pspace_err_set(
			    PSPACE_EDIM,
			    "layer %s: mixed part of dimension %llu for a layer of "
			    "%llu parameters",
			    L->name, (unsigned long long)parts[i]->d, (unsigned long long)L->size);
	}
	rc = pspace_mat_alloc(out, sizeof(*x), &mx_vt, pspace_layout_dim(layout), layout, s, name);
	if (rc != 0)
		return rc;
	x = mx_of(*out);
	x->parts = calloc(n ? n : 1, sizeof(*x->parts));
	if (!x->parts) {
		pspace_mat_free(*out);
		*out = NULL;
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	}
	x->n = n;
	for (size_t i = 0; i < n; i++)
		x->parts[i] = pspace_mat_ref(parts[i]);
	return 0;
}

int pspace_mixed_create(pspace_mat **out, const pspace_layout *layout, pspace_mat *const *parts)
{
	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mixed_create: out is NULL");
	*out = NULL;
	if (!layout || !parts)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_mixed_create: layout or parts is NULL");
	return mx_new(out, layout, parts, NULL, NULL);
}

pspace_mat *pspace_mixed_part(const pspace_mat *m, size_t i)
{
	if (!m || m->vt->kind != PSPACE_KIND_MIXED || i >= mx_of(m)->n)
		return NULL;
	return mx_of(m)->parts[i];
}

int pspace_mixed_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info,
                      pspace_mat_open_fn open_part)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	pspace_array_info ai;
	pspace_mat **parts = NULL;
	int64_t *bytes = NULL;
	char *text = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_MIXED, &r, &layout);
	if (rc == 0)
		rc = pspace_array_info_get(&ai, r, PARTS_ARRAY);
	if (rc != 0)
		goto out;
	bytes = malloc((ai.count ? ai.count : 1) * sizeof(*bytes));
	text = malloc(ai.count + 1);
	n = pspace_layout_nlayers(layout);
	parts = calloc(n ? n : 1, sizeof(*parts));
	if (!bytes || !text || !parts) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
		goto out;
	}
	rc = pspace_reader_array(r, PARTS_ARRAY, PSPACE_I64, bytes, ai.count);
	if (rc != 0)
		goto out;
	/* Read everything before opening the parts (one read snapshot at a time). */
	pspace_reader_close(r);
	r = NULL;
	for (uint64_t i = 0; i < ai.count; i++) {
		if (bytes[i] < 0 || bytes[i] > 255) {
			rc = pspace_err_set(PSPACE_ECORRUPT, "array %s: not a string table",
			                    PARTS_ARRAY);
			goto out;
		}
		text[i] = (char)bytes[i];
	}
	text[ai.count] = 0;
	{
		const char *p = text, *end = text + ai.count;

		for (size_t i = 0; i < n; i++) {
			if (p >= end) {
				rc = pspace_err_set(PSPACE_ECORRUPT,
				                    "array %s names %zu parts for %zu layers",
				                    PARTS_ARRAY, i, n);
				goto out;
			}
			rc = pspace_err_prefix(open_part(&parts[i], s, p), "layer %s",
			                       pspace_layout_layer(layout, i)->name);
			if (rc != 0)
				goto out;
			p += strlen(p) + 1;
		}
	}
	rc = mx_new(out, layout, parts, s, info->name);
	if (rc == PSPACE_EDIM)
		rc = PSPACE_ECORRUPT;
out:
	for (size_t i = 0; parts && i < n; i++)
		pspace_mat_free(parts[i]);
	free(parts);
	free(text);
	free(bytes);
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}
