/*
 * Diag: F = diag(v), resident, every operation in closed form (README, Formulas).
 *
 * Persisted as a tileless entry holding the layout and one array "diag"
 * (f64, d entries).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"
#include "pspace/factored.h"

#define DIAG_ARRAY "diag"

typedef struct diagm {
	pspace_mat base;
	double *v; /* d entries */
} diagm;

static const double *vals(const pspace_mat *m)
{
	return ((const diagm *)m)->v;
}

/* The name of the layer holding parameter @p i, for error messages. */
static const char *layer_name(const pspace_mat *m, uint64_t i)
{
	const pspace_layer *L =
	    pspace_layout_layer(m->layout, pspace_layout_layer_of(m->layout, i));

	return L ? L->name : "?";
}

static void diag_destroy(pspace_mat *m)
{
	free(((diagm *)m)->v);
}

static int diag_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                   size_t ldx, double *Y, size_t ldy)
{
	const double *v = vals(m);

	(void)ex;
	for (uint32_t j = 0; j < k; j++) {
		const double *x = X + (size_t)j * ldx;
		double *y = Y + (size_t)j * ldy;

		for (uint64_t i = 0; i < m->d; i++)
			y[i] += alpha * v[i] * x[i];
	}
	return 0;
}

static int diag_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                           size_t ldv, double *out)
{
	const double *v = vals(m);

	(void)ex;
	for (uint32_t j = 0; j < k; j++) {
		const double *x = V + (size_t)j * ldv;
		double s = 0;

		for (uint64_t i = 0; i < m->d; i++)
			s += v[i] * x[i] * x[i];
		out[j] = s;
	}
	return 0;
}

static int diag_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	const double *v = vals(m);
	double s = 0;

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		s += v[i];
	*out = s;
	return 0;
}

static int diag_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	(void)ex;
	memcpy(out, vals(m), m->d * sizeof(*out));
	return 0;
}

static int diag_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	const double *v = vals(m);
	double s = 0;

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		s += v[i] * v[i];
	*out = s;
	return 0;
}

static int diag_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	const double *v = vals(m);

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++) {
		memset(out + i * ld, 0, m->d * sizeof(*out));
		out[i * ld + i] = v[i];
	}
	return 0;
}

static int diag_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                      const double *B, size_t ldb, double *X, size_t ldx)
{
	const double *v = vals(m);

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		if (v[i] + damping == 0)
			return pspace_err_set(PSPACE_ENUMERIC,
			                      "layer %s: diag solve: zero pivot at parameter %llu "
			                      "(entry %g, damping %g)",
			                      layer_name(m, i), (unsigned long long)i, v[i],
			                      damping);
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < m->d; i++)
			X[(size_t)j * ldx + i] = B[(size_t)j * ldb + i] / (v[i] + damping);
	return 0;
}

/* ENUMERIC naming the first entry with v + damping <= 0, else 0. */
static int check_pd(const pspace_mat *m, double damping)
{
	const double *v = vals(m);

	for (uint64_t i = 0; i < m->d; i++)
		if (!(v[i] + damping > 0))
			return pspace_err_set(PSPACE_ENUMERIC,
			                      "layer %s: diag: entry %g + damping %g at parameter "
			                      "%llu is not positive; add damping",
			                      layer_name(m, i), v[i], damping,
			                      (unsigned long long)i);
	return 0;
}

static int diag_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	const double *v = vals(m);
	double s = 0;
	int rc = check_pd(m, damping);

	(void)ex;
	for (uint64_t i = 0; rc == 0 && i < m->d; i++)
		s += log(v[i] + damping);
	*out = s;
	return rc;
}

static int diag_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	const double *v = vals(m);
	int rc = check_pd(m, damping);

	(void)ex;
	for (uint64_t i = 0; rc == 0 && i < m->d; i++)
		out[i] = 1.0 / (v[i] + damping);
	return rc;
}

static int diag_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                        const double *Z, size_t ldz, double *X, size_t ldx)
{
	const double *v = vals(m);
	int rc = check_pd(m, damping);

	(void)ex;
	for (uint32_t j = 0; rc == 0 && j < k; j++)
		for (uint64_t i = 0; i < m->d; i++) {
			double c = sqrt(v[i] + damping);

			X[(size_t)j * ldx + i] = (cov ? c : 1.0 / c) * Z[(size_t)j * ldz + i];
		}
	return rc;
}

static int diag_save(pspace_mat *m, pspace_store *s, const char *name)
{
	pspace_writer *w = NULL;
	uint64_t shape[1] = {m->d};
	int rc;

	rc = pspace_resident_save_begin(m, PSPACE_KIND_DIAG, s, name, &w);
	if (rc != 0)
		return rc;
	rc = pspace_writer_put_array(w, DIAG_ARRAY, PSPACE_F64, 1, shape, vals(m));
	return pspace_resident_save_end(w, rc);
}

static int diag_new(pspace_mat **out, const pspace_layout *layout, uint64_t d, double *v,
                    pspace_store *s, const char *name);

/* A new Diag of m's layout taking ownership of @p v (freed on failure). */
static int diag_like(const pspace_mat *m, double *v, pspace_mat **out)
{
	return diag_new(out, m->layout, m->d, v, NULL, NULL);
}

static double *alloc_d(const pspace_mat *m)
{
	double *v = malloc((m->d ? m->d : 1) * sizeof(*v));

	if (!v)
		pspace_err_set(PSPACE_ENOMEM, "out of memory for a diagonal of %llu",
		               (unsigned long long)m->d);
	return v;
}

static int diag_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	const double *v = vals(m);
	double *w;

	for (uint64_t i = 0; i < m->d; i++) {
		double c = v[i] + damping;

		if ((p < 0 && c <= 0) || (c < 0 && p != floor(p)))
			return pspace_err_set(PSPACE_ENUMERIC,
			                      "layer %s: diag pow %g: entry %g + damping %g at "
			                      "parameter %llu is not positive",
			                      layer_name(m, i), p, v[i], damping,
			                      (unsigned long long)i);
	}
	w = alloc_d(m);
	if (!w)
		return PSPACE_ENOMEM;
	for (uint64_t i = 0; i < m->d; i++)
		w[i] = pow(v[i] + damping, p);
	return diag_like(m, w, out);
}

/* A new Diag like @p m with the entries map(v, a). */
static int diag_map(pspace_mat *m, double (*map)(double v, double a), double a, pspace_mat **out)
{
	const double *v = vals(m);
	double *w = alloc_d(m);

	if (!w)
		return PSPACE_ENOMEM;
	for (uint64_t i = 0; i < m->d; i++)
		w[i] = map(v[i], a);
	return diag_like(m, w, out);
}

static double pinv_entry(double v, double threshold)
{
	/* Zero can never be inverted, whatever the threshold. */
	return v <= threshold || v == 0 ? 0.0 : 1.0 / v;
}

static double scale_entry(double v, double s)
{
	return s * v;
}

static int diag_pinv(pspace_mat *m, double threshold, pspace_mat **out)
{
	return diag_map(m, pinv_entry, threshold, out);
}

static int diag_scale(pspace_mat *m, double s, pspace_mat **out)
{
	return diag_map(m, scale_entry, s, out);
}

static int diag_product(pspace_mat *a, pspace_mat *b, pspace_mat **out)
{
	const double *va = vals(a), *vb = vals(b);
	double *w = alloc_d(a);

	if (!w)
		return PSPACE_ENOMEM;
	for (uint64_t i = 0; i < a->d; i++)
		w[i] = va[i] * vb[i];
	return diag_like(a, w, out);
}

/*
 * Sorts idx[0..n) by decreasing v[idx], ties by increasing index (a stable
 * merge sort of the identity permutation), so the order is reproducible.
 */
static void argsort_desc(const double *v, uint64_t *idx, uint64_t *tmp, uint64_t n)
{
	uint64_t h = n / 2, i = 0, j = h, t = 0;

	if (n < 2)
		return;
	argsort_desc(v, idx, tmp, h);
	argsort_desc(v, idx + h, tmp, n - h);
	while (i < h && j < n)
		tmp[t++] = v[idx[j]] > v[idx[i]] ? idx[j++] : idx[i++];
	while (i < h)
		tmp[t++] = idx[i++];
	while (j < n)
		tmp[t++] = idx[j++];
	memcpy(idx, tmp, n * sizeof(*idx));
}

/* The k largest entries in decreasing order, with unit eigenvectors. */
static int diag_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                    size_t ld)
{
	const double *v = vals(m);
	uint64_t *idx = malloc(2 * m->d * sizeof(*idx));

	(void)ex;
	if (!idx)
		return pspace_err_set(PSPACE_ENOMEM, "diag eig: out of memory");
	for (uint64_t i = 0; i < m->d; i++)
		idx[i] = i;
	argsort_desc(v, idx, idx + m->d, m->d);
	for (uint64_t j = 0; j < k; j++) {
		evals[j] = v[idx[j]];
		if (evecs) {
			memset(evecs + j * ld, 0, m->d * sizeof(*evecs));
			evecs[j * ld + idx[j]] = 1.0;
		}
	}
	free(idx);
	return 0;
}

static int cmp_desc(const void *pa, const void *pb)
{
	double a = *(const double *)pa, b = *(const double *)pb;

	return (a < b) - (a > b);
}

static int diag_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	(void)ex;
	memcpy(evals, vals(m), m->d * sizeof(*evals));
	qsort(evals, m->d, sizeof(*evals), cmp_desc);
	return 0;
}

static const pspace_mat_vtable diag_vt = {
    .kind = PSPACE_KIND_DIAG,
    .destroy = diag_destroy,
    .mm = diag_mm,
    .vtmv_batch = diag_vtmv_batch,
    .trace = diag_trace,
    .diag = diag_diag,
    .is_diagonal = pspace_mat_always_diagonal,
    .frob2 = diag_frob2,
    .dense = diag_dense,
    .solve = diag_solve,
    .logdet = diag_logdet,
    .diaginv = diag_diaginv,
    .sqrt_mm = diag_sqrt_mm,
    .save = diag_save,
    .pow = diag_pow,
    .pinv = diag_pinv,
    .scale = diag_scale,
    .product = diag_product,
    .eig = diag_eig,
    .eigvals = diag_eigvals,
};

static int diag_new(pspace_mat **out, const pspace_layout *layout, uint64_t d, double *v,
                    pspace_store *s, const char *name)
{
	int rc = pspace_mat_alloc(out, sizeof(diagm), &diag_vt, d, layout, s, name);

	if (rc == 0)
		((diagm *)*out)->v = v;
	else
		free(v);
	return rc;
}

int pspace_diag_create(pspace_mat **out, const pspace_layout *layout, const double *diag)
{
	uint64_t d;
	double *v;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_diag_create: out is NULL");
	*out = NULL;
	if (!layout || !diag)
		return pspace_err_set(PSPACE_EINVAL, "pspace_diag_create: layout or diag is NULL");
	d = pspace_layout_dim(layout);
	v = malloc((d ? d : 1) * sizeof(*v));
	if (!v)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for a diagonal of %llu",
		                      (unsigned long long)d);
	memcpy(v, diag, d * sizeof(*v));
	return diag_new(out, layout, d, v, NULL, NULL);
}

int pspace_diag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	double *v = NULL;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_DIAG, &r, &layout);
	if (rc == 0)
		rc = pspace_resident_read(r, DIAG_ARRAY, info->d, &v);
	if (rc == 0) {
		rc = diag_new(out, layout, info->d, v, s, info->name);
		v = NULL;
	}
	free(v);
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}
