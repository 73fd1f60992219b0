/*
 * KFAC (Martens & Grosse 2015; Grosse & Martens 2016 for convolutions):
 * per layer, the block G (x) A (embedding: A (x) G with A diagonal), held
 * as the row factor R and column factor C of kron.h, so a layer applies as
 * V -> R V C^T. Products of two KFACs keep that form and need not be
 * symmetric: everything here computes R V C^T, never assumes C = C^T, and
 * the operations that need symmetric factors (solve, pow, eig, EKFAC)
 * return PSPACE_ENOTSUP on a non-symmetric one.
 *
 * This file: construction, products and reductions, new matrices by
 * scaling, product and power, damping mode, persistence, and the table
 * of the kind. Damped solve and factor powers are in kfac_solve.c, the
 * eigendecompositions in eigen.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/ekfac_build.h"
#include "mat/kron/kfac_impl.h"
#include "pspace/vec.h"

static const pspace_mat_vtable kfac_vt;

static void kfac_destroy(pspace_mat *m)
{
	pspace_kfac *f = pspace_kfac_of(m);

	pspace_kron_free_ptrs(f->R, f->n);
	pspace_kron_free_ptrs(f->C, f->n);
	pspace_kron_free_ptrs(f->UR, f->n);
	pspace_kron_free_ptrs(f->UC, f->n);
	pspace_kron_free_ptrs(f->sR, f->n);
	pspace_kron_free_ptrs(f->sC, f->n);
	pspace_kron_free_ptrs(f->LR, f->n);
	pspace_kron_free_ptrs(f->LC, f->n);
	free(f->trR);
	free(f->trC);
	free(f->geo);
	pthread_mutex_destroy(&f->lock);
}

static int exactly_symmetric(uint64_t n, const double *M)
{
	return pspace_kron_asym(n, M) == 0.0;
}

/*
 * A new KFAC on @p layout taking ownership of the per-layer factor arrays
 * R and C (freed on failure too), with damping @p mode.
 */
static int kfac_new(pspace_mat **out, const pspace_layout *layout, double **R, double **C,
                    pspace_kfac_damping mode, pspace_store *s, const char *name)
{
	size_t n = pspace_layout_nlayers(layout);
	pspace_mat *m;
	pspace_kfac *f;
	int rc =
	    pspace_mat_alloc(&m, sizeof(*f), &kfac_vt, pspace_layout_dim(layout), layout, s, name);

	*out = NULL;
	if (rc != 0) {
		pspace_kron_free_ptrs(R, n);
		pspace_kron_free_ptrs(C, n);
		return rc;
	}
	f = pspace_kfac_of(m);
	f->R = R;
	f->C = C;
	f->n = n;
	pthread_mutex_init(&f->lock, NULL);
	rc = pspace_kron_geometry(f->base.layout, "KFAC", &f->geo, &n);
	f->trR = calloc(f->n ? f->n : 1, sizeof(double));
	f->trC = calloc(f->n ? f->n : 1, sizeof(double));
	if (rc == 0 && (!f->trR || !f->trC))
		rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
	f->sym = 1;
	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		for (uint64_t i = 0; i < g->nr; i++)
			f->trR[l] += g->rdiag ? R[l][i] : R[l][i * g->nr + i];
		for (uint64_t i = 0; i < g->nc; i++)
			f->trC[l] += C[l][i * g->nc + i];
		if ((!g->rdiag && !exactly_symmetric(g->nr, R[l])) ||
		    !exactly_symmetric(g->nc, C[l]))
			f->sym = 0;
	}
	f->mode = mode;
	if (rc != 0) {
		pspace_mat_free(&f->base);
		return rc;
	}
	*out = &f->base;
	return 0;
}

/* Copies of the caller's factors, checked and made exactly symmetric. */
/* Checks factor @p fac of layer @p g (finite; a square one symmetric to 1e-8) and symmetrizes it.
 */
static int check_factor(const pspace_kron_layer *g, const char *fac, double *M, uint64_t n,
                        int diag)
{
	uint64_t cnt = diag ? n : n * n;
	double asym;

	for (uint64_t i = 0; i < cnt; i++)
		if (!isfinite(M[i]))
			return pspace_err_set(PSPACE_EINVAL,
			                      "layer %s: factor %s has a non-finite entry", g->name,
			                      fac);
	if (!diag) {
		asym = pspace_kron_asym(n, M);
		if (asym > 1e-8)
			return pspace_err_set(PSPACE_EINVAL,
			                      "layer %s: factor %s is not symmetric (relative "
			                      "asymmetry %.3g)",
			                      g->name, fac, asym);
		pspace_kron_symmetrize(n, M);
	}
	return 0;
}

static int copy_factor(const pspace_kron_layer *g, const char *fac, const double *src, uint64_t n,
                       int diag, double **out)
{
	uint64_t cnt = diag ? n : n * n;
	double *M;
	int rc;

	*out = NULL;
	if (!src)
		return pspace_err_set(PSPACE_EINVAL, "layer %s: factor %s is NULL", g->name, fac);
	M = pspace_kron_alloc(cnt);
	if (!M)
		return pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory for factor %s",
		                      g->name, fac);
	memcpy(M, src, cnt * sizeof(*M));
	rc = check_factor(g, fac, M, n, diag);
	if (rc != 0) {
		free(M);
		return rc;
	}
	*out = M;
	return 0;
}

int pspace_kfac_adopt(pspace_mat **out, const pspace_layout *layout, double **A, double **G)
{
	pspace_kron_layer *geo = NULL;
	double **R = NULL, **C = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = pspace_kron_geometry(layout, "KFAC", &geo, &n);
	if (rc == 0)
		rc = pspace_kron_new_pair(n, "KFAC", &R, &C);
	for (size_t l = 0; rc == 0 && l < n; l++) {
		const pspace_kron_layer *g = &geo[l];

		R[l] = g->rdiag ? A[l] : G[l];
		C[l] = g->rdiag ? G[l] : A[l];
		A[l] = G[l] = NULL;
		if (!R[l] || !C[l])
			rc = pspace_err_set(PSPACE_EINVAL, "layer %s: a factor is NULL", g->name);
		if (rc == 0)
			rc = check_factor(g, pspace_kron_rname(g), R[l], g->nr, g->rdiag);
		if (rc == 0)
			rc = check_factor(g, pspace_kron_cname(g), C[l], g->nc, 0);
	}
	free(geo);
	if (rc != 0) {
		pspace_kron_free_ptrs(R, n);
		pspace_kron_free_ptrs(C, n);
		return rc;
	}
	return kfac_new(out, layout, R, C, PSPACE_KFAC_DAMP_PI, NULL, NULL);
}

int pspace_kfac_create(pspace_mat **out, const pspace_layout *layout, const double *const *A,
                       const double *const *G)
{
	pspace_kron_layer *geo = NULL;
	double **R = NULL, **C = NULL;
	size_t n = 0;
	int rc;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_kfac_create: out is NULL");
	*out = NULL;
	if (!layout || !A || !G)
		return pspace_err_set(PSPACE_EINVAL, "pspace_kfac_create: NULL argument");
	rc = pspace_kron_geometry(layout, "KFAC", &geo, &n);
	if (rc != 0)
		return rc;
	rc = pspace_kron_new_pair(n, "KFAC", &R, &C);
	for (size_t l = 0; rc == 0 && l < n; l++) {
		const pspace_kron_layer *g = &geo[l];

		rc = copy_factor(g, pspace_kron_rname(g), g->rdiag ? A[l] : G[l], g->nr, g->rdiag,
		                 &R[l]);
		if (rc == 0)
			rc = copy_factor(g, pspace_kron_cname(g), g->rdiag ? G[l] : A[l], g->nc, 0,
			                 &C[l]);
	}
	free(geo);
	if (rc != 0) {
		pspace_kron_free_ptrs(R, n);
		pspace_kron_free_ptrs(C, n);
		return rc;
	}
	return kfac_new(out, layout, R, C, PSPACE_KFAC_DAMP_PI, NULL, NULL);
}

/* ---- products and reductions ---------------------------------------------------- */

/* B <- R B C^T (pspace_kron_apply). */
static void mul_chunk(void *ud, const pspace_kron_layer *g, size_t l, uint32_t k, double *B,
                      double *T, int threads)
{
	const pspace_kfac *f = ud;

	pspace_kron_mul(g, k, f->R[l], f->C[l], B, T, threads);
}

static int kfac_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                   size_t ldx, double *Y, size_t ldy)
{
	pspace_kfac *f = pspace_kfac_of(m);

	return pspace_kron_apply(f->geo, f->n, ex, "KFAC", k, X, ldx, alpha, 1, Y, ldy, mul_chunk,
	                         f);
}

static double rdiag_at(const pspace_kron_layer *g, const double *R, uint64_t o)
{
	return g->rdiag ? R[o] : R[o * g->nr + o];
}

static int kfac_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double s = 0;

	(void)ex;
	for (size_t l = 0; l < f->n; l++)
		s += f->trR[l] * f->trC[l];
	*out = s;
	return 0;
}

static int kfac_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	pspace_kfac *f = pspace_kfac_of(m);

	(void)ex;
	for (size_t l = 0; l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		for (uint64_t o = 0; o < g->nr; o++) {
			double r = rdiag_at(g, f->R[l], o);

			for (uint64_t c = 0; c < g->nc; c++)
				out[g->off + pspace_kron_index(g, o, c)] =
				    r * f->C[l][c * g->nc + c];
		}
	}
	return 0;
}

static double sumsq(uint64_t n, const double *x)
{
	double s = 0;

	for (uint64_t i = 0; i < n; i++)
		s += x[i] * x[i];
	return s;
}

static int kfac_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double s = 0;

	(void)ex;
	for (size_t l = 0; l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];

		s += sumsq(pspace_kron_rsize(g), f->R[l]) * sumsq(g->nc * g->nc, f->C[l]);
	}
	*out = s;
	return 0;
}

static int kfac_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	pspace_kfac *f = pspace_kfac_of(m);

	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		memset(out + i * ld, 0, m->d * sizeof(*out));
	for (size_t l = 0; l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		const double *R = f->R[l], *C = f->C[l];

		for (uint64_t o = 0; o < g->nr; o++)
			for (uint64_t c = 0; c < g->nc; c++) {
				double *row =
				    out + (g->off + pspace_kron_index(g, o, c)) * ld + g->off;

				for (uint64_t p = g->rdiag ? o : 0; p < (g->rdiag ? o + 1 : g->nr);
				     p++) {
					double r = g->rdiag ? R[o] : R[o * g->nr + p];

					for (uint64_t q = 0; q < g->nc; q++)
						row[pspace_kron_index(g, p, q)] =
						    r * C[c * g->nc + q];
				}
			}
	}
	return 0;
}

/* New factor arrays: copies of a's, or a's times b's (b may be NULL). */
static int combine(const pspace_kfac *a, const pspace_kfac *b, double s, double ***Rout,
                   double ***Cout)
{
	double **R = pspace_kron_new_ptrs(a->n), **C = pspace_kron_new_ptrs(a->n);
	int rc = 0;

	if (!R || !C)
		rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
	for (size_t l = 0; rc == 0 && l < a->n; l++) {
		const pspace_kron_layer *g = &a->geo[l];
		uint64_t rs = pspace_kron_rsize(g), cs = g->nc * g->nc;

		R[l] = pspace_kron_alloc(rs);
		C[l] = pspace_kron_alloc(cs);
		if (!R[l] || !C[l]) {
			rc = pspace_err_set(PSPACE_ENOMEM, "KFAC: out of memory");
			break;
		}
		if (!b) {
			memcpy(R[l], a->R[l], rs * sizeof(double));
			memcpy(C[l], a->C[l], cs * sizeof(double));
			/* s G: G is the row factor except for embeddings. */
			pspace_vec_scale(g->rdiag ? cs : rs, s, g->rdiag ? C[l] : R[l]);
			continue;
		}
		if (g->rdiag)
			for (uint64_t o = 0; o < g->nr; o++)
				R[l][o] = a->R[l][o] * b->R[l][o];
		else
			pspace_kron_gemm(0, 0, g->nr, g->nr, g->nr, 1.0, a->R[l], g->nr, b->R[l],
			                 g->nr, 0.0, R[l], g->nr, 1);
		pspace_kron_gemm(0, 0, g->nc, g->nc, g->nc, 1.0, a->C[l], g->nc, b->C[l], g->nc,
		                 0.0, C[l], g->nc, 1);
		/* Products of commuting factors (powers of one KFAC) are symmetric up
		 * to rounding: make them exactly so, so that they stay solvable. */
		if (!g->rdiag && pspace_kron_asym(g->nr, R[l]) <= 1e-12)
			pspace_kron_symmetrize(g->nr, R[l]);
		if (pspace_kron_asym(g->nc, C[l]) <= 1e-12)
			pspace_kron_symmetrize(g->nc, C[l]);
	}
	if (rc != 0) {
		pspace_kron_free_ptrs(R, a->n);
		pspace_kron_free_ptrs(C, a->n);
		R = C = NULL;
	}
	*Rout = R;
	*Cout = C;
	return rc;
}

static int kfac_scale(pspace_mat *m, double s, pspace_mat **out)
{
	double **R, **C;
	int rc = combine(pspace_kfac_of(m), NULL, s, &R, &C);

	if (rc != 0)
		return rc;
	return kfac_new(out, m->layout, R, C, pspace_kfac_of(m)->mode, NULL, NULL);
}

static int kfac_product(pspace_mat *a, pspace_mat *b, pspace_mat **out)
{
	double **R, **C;
	int rc = combine(pspace_kfac_of(a), pspace_kfac_of(b), 1.0, &R, &C);

	if (rc != 0)
		return rc;
	return kfac_new(out, a->layout, R, C, pspace_kfac_of(a)->mode, NULL, NULL);
}

/* (M + damping I)^p: powers of the damped factors, or with exact damping an EKFAC. */
static int kfac_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	pspace_kfac *f = pspace_kfac_of(m);
	double **R = NULL, **C = NULL;
	int rc;

	if (f->mode == PSPACE_KFAC_DAMP_EXACT)
		return pspace_kfac_pow_exact(f, p, damping, out);
	rc = pspace_kfac_pow_factors(f, p, damping, &R, &C);
	if (rc != 0)
		return rc;
	return kfac_new(out, m->layout, R, C, f->mode, NULL, NULL);
}

/* ---- damping mode, persistence ------------------------------------------------------- */

static int kfac_set_damping(pspace_mat *m, pspace_kfac_damping mode)
{
	pspace_kfac *f = pspace_kfac_of(m);

	pthread_mutex_lock(&f->lock);
	f->mode = mode;
	f->chol_ok = 0;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

#define DAMPING_ARRAY "damping"

static int kfac_save(pspace_mat *m, pspace_store *s, const char *name)
{
	pspace_kfac *f = pspace_kfac_of(m);
	pspace_writer *w = NULL;
	char an[PSPACE_LAYER_NAME_MAX + 8];
	int64_t mode = f->mode;
	uint64_t one = 1;
	int rc = pspace_resident_save_begin(m, PSPACE_KIND_KFAC, s, name, &w);

	for (size_t l = 0; rc == 0 && l < f->n; l++) {
		const pspace_kron_layer *g = &f->geo[l];
		uint64_t shr[2] = {g->nr, g->nr}, shc[2] = {g->nc, g->nc};

		snprintf(an, sizeof(an), "%s.%s", pspace_kron_rname(g), g->name);
		rc = pspace_writer_put_array(w, an, PSPACE_F64, g->rdiag ? 1 : 2, shr, f->R[l]);
		snprintf(an, sizeof(an), "%s.%s", pspace_kron_cname(g), g->name);
		if (rc == 0)
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 2, shc, f->C[l]);
	}
	if (rc == 0)
		rc = pspace_writer_put_array(w, DAMPING_ARRAY, PSPACE_I64, 1, &one, &mode);
	return pspace_resident_save_end(w, rc);
}

int pspace_kfac_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	pspace_kron_layer *geo = NULL;
	double **R = NULL, **C = NULL;
	char an[PSPACE_LAYER_NAME_MAX + 8];
	int64_t mode = 0;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_KFAC, &r, &layout);
	if (rc == 0) {
		rc = pspace_kron_geometry(layout, "KFAC", &geo, &n);
		if (rc == PSPACE_ENOTSUP)
			rc = PSPACE_ECORRUPT;
	}
	if (rc == 0)
		rc = pspace_kron_new_pair(n, "KFAC", &R, &C);
	for (size_t l = 0; rc == 0 && l < n; l++) {
		const pspace_kron_layer *g = &geo[l];

		snprintf(an, sizeof(an), "%s.%s", pspace_kron_rname(g), g->name);
		rc = pspace_resident_read(r, an, pspace_kron_rsize(g), &R[l]);
		snprintf(an, sizeof(an), "%s.%s", pspace_kron_cname(g), g->name);
		if (rc == 0)
			rc = pspace_resident_read(r, an, g->nc * g->nc, &C[l]);
	}
	if (rc == 0)
		rc = pspace_reader_array(r, DAMPING_ARRAY, PSPACE_I64, &mode, 1);
	if (rc == 0 && (mode < PSPACE_KFAC_DAMP_PI || mode > PSPACE_KFAC_DAMP_EXACT))
		rc = pspace_err_set(PSPACE_ECORRUPT, "unknown damping mode %lld", (long long)mode);
	if (rc == 0) {
		rc = kfac_new(out, layout, R, C, (pspace_kfac_damping)mode, s, info->name);
		R = C = NULL;
	}
	pspace_kron_free_ptrs(R, n);
	pspace_kron_free_ptrs(C, n);
	free(geo);
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}

static const pspace_mat_vtable kfac_vt = {
    .kind = PSPACE_KIND_KFAC,
    .destroy = kfac_destroy,
    .mm = kfac_mm,
    .trace = kfac_trace,
    .diag = kfac_diag,
    .frob2 = kfac_frob2,
    .dense = kfac_dense,
    .solve = pspace_kfac_solve_impl,
    .logdet = pspace_kfac_logdet_impl,
    .diaginv = pspace_kfac_diaginv_impl,
    .sqrt_mm = pspace_kfac_sqrt_mm_impl,
    .save = kfac_save,
    .pow = kfac_pow,
    .scale = kfac_scale,
    .product = kfac_product,
    .eig = pspace_kfac_eig_impl,
    .eigvals = pspace_kfac_eigvals_impl,
    .set_damping = kfac_set_damping,
};
