/*
 * QuasiDiag (Ollivier 2015; README, Formulas): the diagonal of F plus, for every
 * layer with a bias, the cross terms c[o, j] between bias o and weight
 * (o, j). Per output neuron o the block over (W[o, 0..in), b[o]) is an
 * arrowhead matrix; layers without a bias are plain diagonal.
 *
 * Powers: M + l I is an arrowhead again (p = 1) and so is I (p = 0), but
 * the inverse of an arrowhead, or any other power, is dense within each
 * neuron block: pspace_mat_pow returns those two only and PSPACE_ENOTSUP
 * otherwise. Inverses are applied by the exact solve (pspace_mat_solve,
 * or lazily pspace_op_inverse). No pseudo-inverse and no product, for the
 * same reason.
 *
 * Persisted as a tileless entry holding the layout, the array "diag" (f64,
 * d) and, for each layer L with a bias, "cross.L" (f64, out x in).
 */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/quasidiag_impl.h"
#include "pspace/factored.h"

#define DIAG_ARRAY  "diag"
#define CROSS_ARRAY "cross."

/* Layer @p l's cross terms and, when it has them (a bias), its geometry; else NULL. */
static const double *cross_geom(const pspace_mat *m, size_t l, geom *g)
{
	const double *c = ((const quasidiag *)m)->cross[l];

	if (c)
		geom_of(m, l, g);
	return c;
}

/* One neuron of a layer with a bias: the parameters of its arrowhead block. */
typedef struct neuron {
	size_t layer;
	uint64_t o; /* index in the layer */
	const pspace_layer *L;
	const double *c;  /* its n cross terms; NULL before the first step */
	uint64_t n, w, b; /* weights, first weight parameter, bias parameter */
} neuron;

/*
 * Steps @p u (all zero to start) to the next neuron with cross terms, layer
 * by layer. @return 1, or 0 after the last one.
 */
static int next_neuron(const pspace_mat *m, neuron *u)
{
	size_t l = u->layer;
	uint64_t o = u->c ? u->o + 1 : 0;

	for (; l < ((const quasidiag *)m)->nlayers; l++, o = 0) {
		geom g;
		const double *c = cross_geom(m, l, &g);

		if (c && o < g.out) {
			*u = (neuron){l, o, g.L, c + o * g.in, g.in, g.off + o * g.in, g.boff + o};
			return 1;
		}
	}
	return 0;
}

/* sum_j c[j] x[j] over one neuron's n weights: the bias row of its arrowhead block. */
static double neuron_dot(const double *c, const double *x, uint64_t n)
{
	double s = 0;

	for (uint64_t j = 0; j < n; j++)
		s += c[j] * x[j];
	return s;
}

static void qd_destroy(pspace_mat *m)
{
	quasidiag *q = qd_of(m);

	for (size_t i = 0; q->cross && i < q->nlayers; i++)
		free(q->cross[i]);
	free(q->cross);
	free(q->diag);
}

static int qd_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                 size_t ldx, double *Y, size_t ldy)
{
	quasidiag *q = qd_of(m);

	(void)ex;
	for (uint32_t r = 0; r < k; r++) {
		const double *x = X + (size_t)r * ldx;
		double *y = Y + (size_t)r * ldy;

		for (uint64_t i = 0; i < m->d; i++)
			y[i] += alpha * q->diag[i] * x[i];
		for (neuron u = {.c = NULL}; next_neuron(m, &u);) {
			double *yw = y + u.w, xb = x[u.b];

			for (uint64_t j = 0; j < u.n; j++)
				yw[j] += alpha * u.c[j] * xb;
			y[u.b] += alpha * neuron_dot(u.c, x + u.w, u.n);
		}
	}
	return 0;
}

static int qd_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                         size_t ldv, double *out)
{
	quasidiag *q = qd_of(m);

	(void)ex;
	for (uint32_t r = 0; r < k; r++) {
		const double *x = V + (size_t)r * ldv;
		double s = 0;

		for (uint64_t i = 0; i < m->d; i++)
			s += q->diag[i] * x[i] * x[i];
		for (neuron u = {.c = NULL}; next_neuron(m, &u);)
			s += 2 * neuron_dot(u.c, x + u.w, u.n) * x[u.b];
		out[r] = s;
	}
	return 0;
}

static int qd_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	double s = 0;

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		s += qd_of(m)->diag[i];
	*out = s;
	return 0;
}

static int qd_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	(void)ex;
	memcpy(out, qd_of(m)->diag, m->d * sizeof(*out));
	return 0;
}

static int qd_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	quasidiag *q = qd_of(m);
	double s = 0, c2 = 0;

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		s += q->diag[i] * q->diag[i];
	for (size_t l = 0; l < q->nlayers; l++) {
		const pspace_layer *L = pspace_layout_layer(m->layout, l);

		if (q->cross[l])
			for (uint64_t i = 0; i < L->weight_size; i++)
				c2 += q->cross[l][i] * q->cross[l][i];
	}
	*out = s + 2 * c2;
	return 0;
}

static int qd_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	quasidiag *q = qd_of(m);

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++) {
		memset(out + i * ld, 0, m->d * sizeof(*out));
		out[i * ld + i] = q->diag[i];
	}
	for (neuron u = {.c = NULL}; next_neuron(m, &u);)
		for (uint64_t j = 0; j < u.n; j++)
			out[(u.w + j) * ld + u.b] = out[u.b * ld + u.w + j] = u.c[j];
	return 0;
}

/*
 * Exact solve of (M + l I) X = B. Per neuron the arrowhead block is solved
 * through the Schur complement of the weight diagonal:
 *   s_b = (v_b - sum_j c_j v_j / (d_j + l)) / (d_b + l - sum_j c_j^2 / (d_j + l)),
 *   s_j = (v_j - c_j s_b) / (d_j + l).
 * Every pivot is checked before anything is written.
 */
static int qd_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                    const double *B, size_t ldb, double *X, size_t ldx)
{
	quasidiag *q = qd_of(m);
	double *schur = NULL;
	uint64_t nb = 0;
	int rc = 0;

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		if (q->diag[i] + damping == 0) {
			const pspace_layer *L =
			    pspace_layout_layer(m->layout, pspace_layout_layer_of(m->layout, i));

			return pspace_err_set(PSPACE_ENUMERIC,
			                      "layer %s: quasidiag solve: zero pivot at parameter "
			                      "%llu of the layer (diagonal %g, damping %g)",
			                      L->name, (unsigned long long)(i - L->offset),
			                      q->diag[i], damping);
		}
	for (size_t l = 0; l < q->nlayers; l++)
		if (q->cross[l])
			nb += pspace_layout_layer(m->layout, l)->bias_size;
	schur = malloc((nb ? nb : 1) * sizeof(*schur));
	if (!schur)
		return pspace_err_set(PSPACE_ENOMEM, "quasidiag solve: out of memory");
	/* The Schur complements, once for all right-hand sides. */
	nb = 0;
	for (neuron u = {.c = NULL}; next_neuron(m, &u);) {
		const double *dw = q->diag + u.w;
		double s = q->diag[u.b] + damping;

		for (uint64_t j = 0; j < u.n; j++)
			s -= u.c[j] * u.c[j] / (dw[j] + damping);
		if (s == 0 || !isfinite(s)) {
			rc = pspace_err_set(PSPACE_ENUMERIC,
			                    "layer %s: quasidiag solve: neuron %llu is singular "
			                    "(Schur complement %g, damping %g)",
			                    u.L->name, (unsigned long long)u.o, s, damping);
			goto out;
		}
		schur[nb++] = s;
	}
	for (uint32_t r = 0; r < k; r++) {
		const double *b = B + (size_t)r * ldb;
		double *x = X + (size_t)r * ldx;

		for (uint64_t i = 0; i < m->d; i++)
			x[i] = b[i] / (q->diag[i] + damping);
		nb = 0;
		for (neuron u = {.c = NULL}; next_neuron(m, &u);) {
			const double *dw = q->diag + u.w, *bw = b + u.w;
			double *xw = x + u.w, sb = b[u.b];

			for (uint64_t j = 0; j < u.n; j++)
				sb -= u.c[j] * bw[j] / (dw[j] + damping);
			sb /= schur[nb++];
			x[u.b] = sb;
			for (uint64_t j = 0; j < u.n; j++)
				xw[j] = (bw[j] - u.c[j] * sb) / (dw[j] + damping);
		}
	}
out:
	free(schur);
	return rc;
}

/*
 * log det, diag of the inverse and square roots of M + l I, per neuron
 * from the Cholesky factor of its arrowhead block, weights first:
 * L = [D^1/2, 0; c^T D^-1/2, s^1/2] with D the damped weight diagonal and
 * s the Schur complement of qd_solve. *schur gets s for every neuron with
 * cross terms, in next_neuron() order (malloc'd); ENUMERIC unless M + l I
 * is positive definite (its diagonal and every s positive).
 */
static int qd_schur(pspace_mat *m, double damping, double **schur)
{
	quasidiag *q = qd_of(m);
	uint64_t nb = 0;

	*schur = NULL;
	for (uint64_t i = 0; i < m->d; i++)
		if (!(q->diag[i] + damping > 0))
			return pspace_err_set(
			    PSPACE_ENUMERIC,
			    "quasidiag: diagonal entry %llu plus damping %g is %g, "
			    "not positive; add damping",
			    (unsigned long long)i, damping, q->diag[i] + damping);
	for (size_t l = 0; l < q->nlayers; l++)
		if (q->cross[l])
			nb += pspace_layout_layer(m->layout, l)->bias_size;
	*schur = malloc((nb ? nb : 1) * sizeof(double));
	if (!*schur)
		return pspace_err_set(PSPACE_ENOMEM, "quasidiag: out of memory");
	nb = 0;
	for (neuron u = {.c = NULL}; next_neuron(m, &u);) {
		double sc = q->diag[u.b] + damping;

		for (uint64_t j = 0; j < u.n; j++)
			sc -= u.c[j] * u.c[j] / (q->diag[u.w + j] + damping);
		if (!(sc > 0)) {
			free(*schur);
			*schur = NULL;
			return pspace_err_set(
			    PSPACE_ENUMERIC,
			    "layer %s: quasidiag: neuron %llu plus damping %g is not "
			    "positive definite (Schur complement %g); add damping",
			    u.L->name, (unsigned long long)u.o, damping, sc);
		}
		(*schur)[nb++] = sc;
	}
	return 0;
}

static int qd_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	quasidiag *q = qd_of(m);
	double *schur, sum = 0;
	uint64_t nb = 0;
	int rc = qd_schur(m, damping, &schur);

	(void)ex;
	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < m->d; i++)
		sum += log(q->diag[i] + damping);
	for (neuron u = {.c = NULL}; next_neuron(m, &u); nb++)
		sum += log(schur[nb]) - log(q->diag[u.b] + damping);
	free(schur);
	*out = sum;
	return 0;
}

static int qd_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	quasidiag *q = qd_of(m);
	double *schur;
	uint64_t nb = 0;
	int rc = qd_schur(m, damping, &schur);

	(void)ex;
	if (rc != 0)
		return rc;
	for (uint64_t i = 0; i < m->d; i++)
		out[i] = 1.0 / (q->diag[i] + damping);
	for (neuron u = {.c = NULL}; next_neuron(m, &u); nb++) {
		out[u.b] = 1.0 / schur[nb];
		for (uint64_t j = 0; j < u.n; j++) {
			double dj = q->diag[u.w + j] + damping;

			out[u.w + j] += u.c[j] * u.c[j] / (dj * dj * schur[nb]);
		}
	}
	free(schur);
	return 0;
}

/* x = L z (cov) or L^-T z per vector, L the arrowhead factor of qd_schur(). */
static int qd_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                      const double *Z, size_t ldz, double *X, size_t ldx)
{
	quasidiag *q = qd_of(m);
	double *schur;
	int rc = qd_schur(m, damping, &schur);

	(void)ex;
	if (rc != 0)
		return rc;
	for (uint32_t r = 0; r < k; r++) {
		const double *z = Z + (size_t)r * ldz;
		double *x = X + (size_t)r * ldx;
		uint64_t nb = 0;

		for (uint64_t i = 0; i < m->d; i++)
			x[i] = cov ? z[i] * sqrt(q->diag[i] + damping)
			           : z[i] / sqrt(q->diag[i] + damping);
		for (neuron u = {.c = NULL}; next_neuron(m, &u); nb++) {
			const double *dw = q->diag + u.w;
			double xb = cov ? sqrt(schur[nb]) * z[u.b] : z[u.b] / sqrt(schur[nb]);

			for (uint64_t j = 0; j < u.n; j++)
				if (cov)
					xb += u.c[j] * z[u.w + j] / sqrt(dw[j] + damping);
				else
					x[u.w + j] -= u.c[j] * xb / (dw[j] + damping);
			x[u.b] = xb;
		}
	}
	free(schur);
	return 0;
}

static int qd_save(pspace_mat *m, pspace_store *s, const char *name)
{
	quasidiag *q = qd_of(m);
	pspace_writer *w = NULL;
	uint64_t shape[2] = {m->d, 0};
	char an[PSPACE_NAME_MAX + 1];
	int rc;

	rc = pspace_resident_save_begin(m, PSPACE_KIND_QUASIDIAG, s, name, &w);
	if (rc != 0)
		return rc;
	rc = pspace_writer_put_array(w, DIAG_ARRAY, PSPACE_F64, 1, shape, q->diag);
	for (size_t l = 0; rc == 0 && l < q->nlayers; l++) {
		geom g;
		const double *c = cross_geom(m, l, &g);

		if (!c)
			continue;
		snprintf(an, sizeof(an), CROSS_ARRAY "%s", g.L->name);
		shape[0] = g.out;
		shape[1] = g.in;
		rc = pspace_writer_put_array(w, an, PSPACE_F64, 2, shape, c);
	}
	return pspace_resident_save_end(w, rc);
}

static const pspace_mat_vtable qd_vt;

/*
 * An empty QuasiDiag of @p layout: diag allocated (uninitialized), cross
 * arrays allocated and zeroed for the layers with a bias.
 */
static int qd_alloc(pspace_mat **out, const pspace_layout *layout, pspace_store *s,
                    const char *name)
{
	uint64_t d = pspace_layout_dim(layout);
	quasidiag *q;
	int rc = pspace_mat_alloc(out, sizeof(*q), &qd_vt, d, layout, s, name);

	if (rc != 0)
		return rc;
	q = qd_of(*out);
	q->nlayers = pspace_layout_nlayers(layout);
	q->diag = malloc((d ? d : 1) * sizeof(*q->diag));
	q->cross = calloc(q->nlayers ? q->nlayers : 1, sizeof(*q->cross));
	if (!q->diag || !q->cross)
		goto nomem;
	for (size_t l = 0; l < q->nlayers; l++) {
		const pspace_layer *L = pspace_layout_layer(layout, l);

		if (!L->bias)
			continue;
		q->cross[l] = calloc(L->weight_size ? L->weight_size : 1, sizeof(double));
		if (!q->cross[l])
			goto nomem;
	}
	return 0;
nomem:
	pspace_mat_free(*out);
	*out = NULL;
	return pspace_err_set(PSPACE_ENOMEM, "out of memory for a quasidiag of %llu parameters",
	                      (unsigned long long)d);
}

/* A new QuasiDiag with diagonal dmul * diag + dadd and cross terms cmul * cross. */
static int qd_map(pspace_mat *m, double dmul, double dadd, double cmul, pspace_mat **out)
{
	quasidiag *q = qd_of(m), *r;
	int rc = qd_alloc(out, m->layout, NULL, NULL);

	if (rc != 0)
		return rc;
	r = qd_of(*out);
	for (uint64_t i = 0; i < m->d; i++)
		r->diag[i] = dmul * q->diag[i] + dadd;
	for (size_t l = 0; l < q->nlayers; l++) {
		uint64_t n = pspace_layout_layer(m->layout, l)->weight_size;

		if (q->cross[l])
			for (uint64_t i = 0; i < n; i++)
				r->cross[l][i] = cmul * q->cross[l][i];
	}
	return 0;
}

static int qd_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	if (p == 1)
		return qd_map(m, 1, damping, 1, out);
	if (p == 0)
		return qd_map(m, 0, 1, 0, out);
	return pspace_err_set(PSPACE_ENOTSUP,
	                      "quasidiag pow %g: only p = 1 and p = 0 are arrowhead matrices; "
	                      "for the inverse use the exact solve (pspace_mat_solve, or lazily "
	                      "pspace_op_inverse)",
	                      p);
}

static int qd_scale(pspace_mat *m, double s, pspace_mat **out)
{
	return qd_map(m, s, 0, s, out);
}

/* Diagonal when no layer has cross terms, i.e. none has a bias. */
static int qd_is_diagonal(const pspace_mat *m)
{
	const quasidiag *q = (const quasidiag *)m;

	for (size_t l = 0; l < q->nlayers; l++)
		if (q->cross[l])
			return 0;
	return 1;
}

static const pspace_mat_vtable qd_vt = {
    .kind = PSPACE_KIND_QUASIDIAG,
    .destroy = qd_destroy,
    .mm = qd_mm,
    .vtmv_batch = qd_vtmv_batch,
    .trace = qd_trace,
    .diag = qd_diag,
    .is_diagonal = qd_is_diagonal,
    .frob2 = qd_frob2,
    .dense = qd_dense,
    .solve = qd_solve,
    .logdet = qd_logdet,
    .diaginv = qd_diaginv,
    .sqrt_mm = qd_sqrt_mm,
    .save = qd_save,
    .pow = qd_pow,
    .scale = qd_scale,
    .eig = pspace_qd_eig,
    .eigvals = pspace_qd_eigvals,
};

int pspace_quasidiag_create(pspace_mat **out, const pspace_layout *layout, const double *diag,
                            const double *const *cross)
{
	quasidiag *q;
	int rc;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_quasidiag_create: out is NULL");
	*out = NULL;
	if (!layout || !diag)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_quasidiag_create: layout or diag is NULL");
	rc = qd_alloc(out, layout, NULL, NULL);
	if (rc != 0)
		return rc;
	q = qd_of(*out);
	memcpy(q->diag, diag, (*out)->d * sizeof(*diag));
	/* A NULL cross array of a layer with a bias means zero cross terms. */
	for (size_t l = 0; cross && l < q->nlayers; l++)
		if (q->cross[l] && cross[l])
			memcpy(q->cross[l], cross[l],
			       pspace_layout_layer(layout, l)->weight_size * sizeof(double));
	return 0;
}

int pspace_quasidiag_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	char an[PSPACE_NAME_MAX + 1];
	double *buf = NULL;
	quasidiag *q;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_QUASIDIAG, &r, &layout);
	if (rc == 0)
		rc = qd_alloc(out, layout, s, info->name);
	if (rc != 0)
		goto out;
	q = qd_of(*out);
	rc = pspace_resident_read(r, DIAG_ARRAY, info->d, &buf);
	if (rc == 0)
		memcpy(q->diag, buf, info->d * sizeof(*buf));
	free(buf);
	buf = NULL;
	for (size_t l = 0; rc == 0 && l < q->nlayers; l++) {
		const pspace_layer *L = pspace_layout_layer(layout, l);

		if (!q->cross[l])
			continue;
		snprintf(an, sizeof(an), CROSS_ARRAY "%s", L->name);
		rc = pspace_resident_read(r, an, L->weight_size, &buf);
		if (rc == 0)
			memcpy(q->cross[l], buf, L->weight_size * sizeof(*buf));
		free(buf);
		buf = NULL;
	}
out:
	if (rc != 0) {
		pspace_mat_free(*out);
		*out = NULL;
	}
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}
