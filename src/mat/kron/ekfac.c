/*
 * EKFAC (George et al. 2018): per layer, the eigenbases U_R, U_C of the
 * KFAC factors (kron.h: row and column factor; an embedding's diagonal A
 * has the identity basis, U_R NULL) and a diagonal S (nr x nc) in the
 * Kronecker-factored eigenbasis, so a layer applies as
 * V -> U_R [S .* (U_R^T V U_C)] U_C^T.
 *
 * Damping (solve, pow): exact by default, (S + l) (README, Formulas). The factor
 * eigenvalues sR, sC are kept too, so that pspace_kfac_set_damping() can
 * ask for KFAC's factor-wise damping: PI/SQRT add to S the increment that
 * damping each factor adds, (sR + cr)(sC + cc) - sR sC, so a not-updated
 * EKFAC damps exactly like the KFAC it came from.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/ekfac_impl.h"
#include "pspace/vec.h"

typedef pspace_ekfac ekfac;

static const pspace_mat_vtable ekfac_vt;

static ekfac *ekfac_of(pspace_mat *m)
{
	return (ekfac *)m;
}

static double *dup(const double *src, uint64_t cnt)
{
	double *p = pspace_kron_alloc(cnt);

	if (p && cnt)
		memcpy(p, src, cnt * sizeof(*p));
	return p;
}

static void ekfac_destroy(pspace_mat *m)
{
	ekfac *e = ekfac_of(m);

	pspace_kron_free_ptrs(e->UR, e->n);
	pspace_kron_free_ptrs(e->UC, e->n);
	pspace_kron_free_ptrs(e->sR, e->n);
	pspace_kron_free_ptrs(e->sC, e->n);
	pspace_kron_free_ptrs(e->S, e->n);
	pspace_kron_free_ptrs(e->acc, e->n);
	pspace_kron_free_ptrs(e->inv, e->n);
	pthread_mutex_destroy(&e->lock);
	free(e->geo);
}

void pspace_ekfac_drop_inverse(pspace_ekfac *e)
{
	pthread_mutex_lock(&e->lock);
	pspace_kron_free_ptrs(e->inv, e->n);
	e->inv = NULL;
	pthread_mutex_unlock(&e->lock);
}

/* An empty EKFAC on @p layout with per-layer pointer arrays allocated. */
static int ekfac_alloc(ekfac **out, const pspace_layout *layout, pspace_store *s, const char *name)
{
	pspace_mat *m;
	ekfac *e;
	size_t n;
	int rc =
	    pspace_mat_alloc(&m, sizeof(*e), &ekfac_vt, pspace_layout_dim(layout), layout, s, name);

	*out = NULL;
	if (rc != 0)
		return rc;
	e = ekfac_of(m);
	pthread_mutex_init(&e->lock, NULL);
	rc = pspace_kron_geometry(e->base.layout, "EKFAC", &e->geo, &n);
	e->n = pspace_layout_nlayers(e->base.layout);
	e->UR = pspace_kron_new_ptrs(e->n);
	e->UC = pspace_kron_new_ptrs(e->n);
	e->sR = pspace_kron_new_ptrs(e->n);
	e->sC = pspace_kron_new_ptrs(e->n);
	e->S = pspace_kron_new_ptrs(e->n);
	if (rc == 0 && (!e->UR || !e->UC || !e->sR || !e->sC || !e->S))
		rc = pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
	if (rc != 0) {
		pspace_mat_free(&e->base);
		return rc;
	}
	*out = e;
	return 0;
}

int pspace_ekfac_build(pspace_mat **out, const pspace_layout *layout, const double *const *UR,
                       const double *const *UC, const double *const *sR, const double *const *sC,
                       const double *const *S, int updated, pspace_kfac_damping mode)
{
	ekfac *e;
	int rc = ekfac_alloc(&e, layout, NULL, NULL);

	*out = NULL;
	if (rc != 0)
		return rc;
	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		uint64_t nr = g->nr, nc = g->nc;

		if (!g->rdiag && !(e->UR[l] = dup(UR[l], nr * nr)))
			rc = PSPACE_ENOMEM;
		e->UC[l] = dup(UC[l], nc * nc);
		e->sR[l] = dup(sR[l], nr);
		e->sC[l] = dup(sC[l], nc);
		e->S[l] = pspace_kron_alloc(nr * nc);
		if (rc != 0 || !e->UC[l] || !e->sR[l] || !e->sC[l] || !e->S[l]) {
			rc = pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
			break;
		}
		for (uint64_t o = 0; o < nr; o++)
			for (uint64_t c = 0; c < nc; c++)
				e->S[l][o * nc + c] = S ? S[l][o * nc + c] : sR[l][o] * sC[l][c];
	}
	e->updated = updated;
	e->mode = mode;
	if (rc != 0) {
		pspace_mat_free(&e->base);
		return rc;
	}
	*out = &e->base;
	return 0;
}

/* ---- products and reductions ----------------------------------------------------- */

int pspace_ekfac_work(const pspace_ekfac *e, const pspace_exec *ex, uint32_t k, uint32_t *kc,
                      double **B, double **T)
{
	return pspace_kron_work(e->geo, e->n, k, ex->mem_budget, "EKFAC", kc, B, T);
}

/*
 * Y = alpha U_R [W .* (U_R^T X U_C)] U_C^T per layer, added to Y (add) or
 * written over it.
 */
static int apply(ekfac *e, const pspace_exec *ex, double **W, uint32_t k, double alpha,
                 const double *X, size_t ldx, int add, double *Y, size_t ldy)
{
	pspace_kron_eig_form form = {e->UR, e->UC, W};

	return pspace_kron_apply(e->geo, e->n, ex, "EKFAC", k, X, ldx, alpha, add, Y, ldy,
	                         pspace_kron_eig_chunk, &form);
}

static int ekfac_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha, const double *X,
                    size_t ldx, double *Y, size_t ldy)
{
	ekfac *e = ekfac_of(m);

	return apply(e, ex, e->S, k, alpha, X, ldx, 1, Y, ldy);
}

static int ekfac_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	ekfac *e = ekfac_of(m);
	double s = 0;

	(void)ex;
	for (size_t l = 0; l < e->n; l++)
		for (uint64_t i = 0; i < e->geo[l].nr * e->geo[l].nc; i++)
			s += e->S[l][i];
	*out = s;
	return 0;
}

static int ekfac_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	ekfac *e = ekfac_of(m);
	double s = 0;

	(void)ex;
	for (size_t l = 0; l < e->n; l++)
		for (uint64_t i = 0; i < e->geo[l].nr * e->geo[l].nc; i++)
			s += e->S[l][i] * e->S[l][i];
	*out = s;
	return 0;
}

/* diag = (U_R .* U_R) S (U_C .* U_C)^T per layer. */
static int ekfac_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	ekfac *e = ekfac_of(m);
	double *R2 = NULL, *C2 = NULL, *T = NULL, *D = NULL;
	int rc = 0;

	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		uint64_t nr = g->nr, nc = g->nc;

		R2 = g->rdiag ? NULL : pspace_kron_alloc(nr * nr);
		C2 = pspace_kron_alloc(nc * nc);
		T = pspace_kron_alloc(nr * nc);
		D = pspace_kron_alloc(nr * nc);
		if ((!g->rdiag && !R2) || !C2 || !T || !D) {
			rc = pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", g->name);
			goto next;
		}
		for (uint64_t i = 0; i < nc * nc; i++)
			C2[i] = e->UC[l][i] * e->UC[l][i];
		pspace_kron_gemm(0, 1, nr, nc, nc, 1.0, e->S[l], nc, C2, nc, 0.0, T, nc,
		                 ex->threads);
		if (g->rdiag) {
			memcpy(D, T, nr * nc * sizeof(double));
		} else {
			for (uint64_t i = 0; i < nr * nr; i++)
				R2[i] = e->UR[l][i] * e->UR[l][i];
			pspace_kron_gemm(0, 0, nr, nc, nr, 1.0, R2, nr, T, nc, 0.0, D, nc,
			                 ex->threads);
		}
		pspace_kron_scatter(g, 1, 1.0, D, 0, out + g->off, 0);
	next:
		free(D);
		free(T);
		free(C2);
		free(R2);
	}
	return rc;
}

/* Dense blocks from the layer product applied to chunks of unit vectors. */
static int ekfac_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	ekfac *e = ekfac_of(m);
	double *B = NULL, *T = NULL;
	uint64_t big = 1;
	uint32_t kc;
	int rc;

	for (uint64_t i = 0; i < m->d; i++)
		memset(out + i * ld, 0, m->d * sizeof(*out));
	for (size_t l = 0; l < e->n; l++)
		if (e->geo[l].nr * e->geo[l].nc > big)
			big = e->geo[l].nr * e->geo[l].nc;
	rc = pspace_ekfac_work(e, ex, big > UINT32_MAX ? UINT32_MAX : (uint32_t)big, &kc, &B, &T);
	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		uint64_t ns = g->nr * g->nc, nc = g->nc;

		for (uint64_t j0 = 0; j0 < ns; j0 += kc) {
			uint32_t kk = (uint32_t)(ns - j0 < kc ? ns - j0 : kc);

			memset(B, 0, ns * kk * sizeof(double));
			for (uint32_t j = 0; j < kk; j++) {
				uint64_t u = j0 + j; /* unit vector at V[u / nc][u % nc] */

				B[((u / nc) * kk + j) * nc + u % nc] = 1.0;
			}
			pspace_kron_eig_mul(g, kk, e->UR[l], e->UC[l], e->S[l], B, T, ex->threads);
			for (uint64_t o = 0; o < g->nr; o++)
				for (uint32_t j = 0; j < kk; j++) {
					uint64_t u = j0 + j;
					uint64_t col =
					    g->off + pspace_kron_index(g, u / nc, u % nc);

					for (uint64_t c = 0; c < nc; c++)
						out[(g->off + pspace_kron_index(g, o, c)) * ld +
						    col] = B[(o * kk + j) * nc + c];
				}
		}
	}
	free(T);
	free(B);
	return rc;
}

/* ---- damping, solve, new matrices ----------------------------------------------------- */

/* W[l] = S + the damping increment of e->mode (see the top of this file). */
static int damped(const ekfac *e, double damping, double ***out)
{
	double **W = pspace_kron_new_ptrs(e->n);
	int rc = 0;

	*out = NULL;
	if (!W)
		return pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		double trr = 0, trc = 0, cr = 0, cc = 0;

		W[l] = pspace_kron_alloc(g->nr * g->nc);
		if (!W[l]) {
			rc = pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
			break;
		}
		for (uint64_t o = 0; o < g->nr; o++)
			trr += e->sR[l][o];
		for (uint64_t c = 0; c < g->nc; c++)
			trc += e->sC[l][c];
		if (e->mode != PSPACE_KFAC_DAMP_EXACT)
			rc = pspace_kron_damp_split(g, e->mode, damping, trr, trc, &cr, &cc);
		for (uint64_t o = 0; rc == 0 && o < g->nr; o++)
			for (uint64_t c = 0; c < g->nc; c++) {
				double r = e->sR[l][o], s = e->sC[l][c], inc;

				inc = e->mode == PSPACE_KFAC_DAMP_EXACT
				          ? damping
				          : (r + cr) * (s + cc) - r * s;
				W[l][o * g->nc + c] = e->S[l][o * g->nc + c] + inc;
			}
	}
	if (rc != 0)
		pspace_kron_free_ptrs(W, e->n);
	else
		*out = W;
	return rc;
}

/* W[l] = a copy of S[l]. */
static int copy_s(const ekfac *e, double ***out)
{
	double **W = pspace_kron_new_ptrs(e->n);

	*out = NULL;
	for (size_t l = 0; W && l < e->n; l++)
		if (!(W[l] = dup(e->S[l], e->geo[l].nr * e->geo[l].nc))) {
			pspace_kron_free_ptrs(W, e->n);
			W = NULL;
		}
	if (!W)
		return pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
	*out = W;
	return 0;
}

/*
 * W <- W^p: p < 0 needs W > 0, a fractional p needs W >= 0 (rounding-level
 * negatives, |w| <= 1e-13 of the largest, count as 0). ENUMERIC otherwise.
 */
static int pow_all(const ekfac *e, double **W, double p)
{
	int frac = p != floor(p);

	for (size_t l = 0; l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		uint64_t cnt = g->nr * g->nc;
		double big = 0;

		for (uint64_t i = 0; i < cnt; i++)
			big = fabs(W[l][i]) > big ? fabs(W[l][i]) : big;
		for (uint64_t i = 0; i < cnt; i++) {
			double x = W[l][i];

			if (frac && x < 0 && x >= -1e-13 * big)
				x = 0;
			if ((p < 0 && !(x > 0)) || (frac && x < 0))
				return pspace_err_set(PSPACE_ENUMERIC,
				                      "layer %s: damped EKFAC eigenvalue %g (entry "
				                      "%llu): no power %g",
				                      g->name, x, (unsigned long long)i, p);
			W[l][i] = pow(x, p);
		}
	}
	return 0;
}

static int ekfac_set_damping(pspace_mat *m, pspace_kfac_damping mode)
{
	ekfac *e = ekfac_of(m);

	/* Under the lock: a solve compares the mode with its cached inverse's. */
	pthread_mutex_lock(&e->lock);
	e->mode = mode;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static int ekfac_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                       const double *B, size_t ldb, double *X, size_t ldx)
{
	ekfac *e = ekfac_of(m);
	double **W = NULL;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	if (!e->inv || e->inv_damping != damping || e->inv_mode != e->mode) {
		rc = damped(e, damping, &W);
		if (rc == 0)
			rc = pow_all(e, W, -1.0);
		if (rc == 0) {
			pspace_kron_free_ptrs(e->inv, e->n);
			e->inv = W;
			e->inv_damping = damping;
			e->inv_mode = e->mode;
		} else {
			pspace_kron_free_ptrs(W, e->n);
		}
	}
	if (rc == 0)
		rc = apply(e, ex, e->inv, k, 1.0, B, ldb, 0, X, ldx);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* A new EKFAC with e's bases and the diagonal W (taken over), s sR. */
static int ekfac_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	ekfac *e = ekfac_of(m);
	double **W = NULL;
	int rc = damped(e, damping, &W);

	(void)ex;
	if (rc == 0)
		rc = pspace_kron_logdet(e->geo, e->n, (const double *const *)W, out);
	pspace_kron_free_ptrs(W, e->n);
	return rc;
}

static int ekfac_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	ekfac *e = ekfac_of(m);
	double **W = NULL;
	int rc = damped(e, damping, &W);

	(void)ex;
	if (rc == 0)
		rc = pspace_kron_diaginv(e->geo, e->n, (const double *const *)e->UR,
		                         (const double *const *)e->UC, (const double *const *)W,
		                         out);
	pspace_kron_free_ptrs(W, e->n);
	return rc;
}

static int ekfac_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov, uint32_t k,
                         const double *Z, size_t ldz, double *X, size_t ldx)
{
	ekfac *e = ekfac_of(m);
	pspace_kron_eig_form form;
	double **W = NULL;
	int rc = damped(e, damping, &W);

	if (rc == 0)
		rc = pspace_kron_sqrt_weights(e->geo, e->n, cov, W);
	form = (pspace_kron_eig_form){e->UR, e->UC, W};
	if (rc == 0)
		rc = pspace_kron_apply(e->geo, e->n, ex, "EKFAC", k, Z, ldz, 1.0, 0, X, ldx,
		                       pspace_kron_eig_chunk, &form);
	pspace_kron_free_ptrs(W, e->n);
	return rc;
}

static int derive(ekfac *e, double **W, double s, int updated, pspace_mat **out)
{
	double **sR = pspace_kron_new_ptrs(e->n);
	int rc = 0;

	for (size_t l = 0; sR && l < e->n; l++) {
		sR[l] = dup(e->sR[l], e->geo[l].nr);
		if (!sR[l]) {
			rc = pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
			break;
		}
		pspace_vec_scale(e->geo[l].nr, s, sR[l]);
	}
	if (!sR)
		rc = pspace_err_set(PSPACE_ENOMEM, "EKFAC: out of memory");
	if (rc == 0)
		rc = pspace_ekfac_build(out, e->base.layout, (const double *const *)e->UR,
		                        (const double *const *)e->UC, (const double *const *)sR,
		                        (const double *const *)e->sC, (const double *const *)W,
		                        updated, PSPACE_KFAC_DAMP_EXACT);
	pspace_kron_free_ptrs(sR, e->n);
	pspace_kron_free_ptrs(W, e->n);
	return rc;
}

static int ekfac_pow(pspace_mat *m, double p, double damping, pspace_mat **out)
{
	ekfac *e = ekfac_of(m);
	double **W = NULL;
	int rc = damped(e, damping, &W);

	if (rc == 0)
		rc = pow_all(e, W, p);
	if (rc != 0) {
		pspace_kron_free_ptrs(W, e->n);
		return rc;
	}
	return derive(e, W, 1.0, e->updated, out);
}

/* A new EKFAC with e's bases, the diagonal map(S, a) entrywise and s sR (derive). */
static int derive_map(ekfac *e, double (*map)(double x, double a), double a, double s,
                      pspace_mat **out)
{
	double **W = NULL;
	int rc = copy_s(e, &W);

	if (rc != 0)
		return rc;
	for (size_t l = 0; l < e->n; l++)
		for (uint64_t i = 0; i < e->geo[l].nr * e->geo[l].nc; i++)
			W[l][i] = map(W[l][i], a);
	return derive(e, W, s, e->updated, out);
}

static double pinv_entry(double x, double threshold)
{
	return x <= threshold ? 0.0 : 1.0 / x;
}

static double scale_entry(double x, double s)
{
	return s * x;
}

static int ekfac_pinv(pspace_mat *m, double threshold, pspace_mat **out)
{
	return derive_map(ekfac_of(m), pinv_entry, threshold, 1.0, out);
}

static int ekfac_scale(pspace_mat *m, double s, pspace_mat **out)
{
	return derive_map(ekfac_of(m), scale_entry, s, s, out);
}

static int ekfac_eig(pspace_mat *m, const pspace_exec *ex, uint32_t k, double *evals, double *evecs,
                     size_t ld)
{
	ekfac *e = ekfac_of(m);

	(void)ex;
	return pspace_kron_eig_top(e->geo, e->n, m->d, (const double *const *)e->UR,
	                           (const double *const *)e->UC, (const double *const *)e->S, k,
	                           evals, evecs, ld);
}

static int ekfac_eigvals(pspace_mat *m, const pspace_exec *ex, double *evals)
{
	ekfac *e = ekfac_of(m);

	(void)ex;
	return pspace_kron_eig_all(e->geo, e->n, m->d, (const double *const *)e->S, evals);
}

/* ---- checks (ekfac_update.c: the diagonal update) ---------------------------------- */

int pspace_ekfac_check(const pspace_mat *m, const char *fn)
{
	if (!m)
		return pspace_err_set(PSPACE_EINVAL, "%s: matrix is NULL", fn);
	if (m->vt != &ekfac_vt)
		return pspace_err_set(PSPACE_EINVAL, "%s: a %s matrix is not EKFAC", fn,
		                      pspace_kind_name(m->vt->kind));
	return 0;
}

/* ---- persistence -------------------------------------------------------------------- */

#define UPDATED_ARRAY "updated"
#define DAMPING_ARRAY "damping"

/* Array name "<prefix><factor>.<layer>", e.g. "UG.fc1". */
static void aname(char *buf, size_t cap, const char *prefix, const char *fac,
                  const pspace_kron_layer *g)
{
	snprintf(buf, cap, "%s%s.%s", prefix, fac, g->name);
}

static int ekfac_save(pspace_mat *m, pspace_store *s, const char *name)
{
	ekfac *e = ekfac_of(m);
	pspace_writer *w = NULL;
	char an[PSPACE_LAYER_NAME_MAX + 8];
	int64_t upd = e->updated, mode = e->mode;
	uint64_t one = 1;
	int rc = pspace_resident_save_begin(m, PSPACE_KIND_EKFAC, s, name, &w);

	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];
		uint64_t shr[2] = {g->nr, g->nr}, shc[2] = {g->nc, g->nc}, shs[2] = {g->nr, g->nc};

		if (!g->rdiag) {
			aname(an, sizeof(an), "U", pspace_kron_rname(g), g);
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 2, shr, e->UR[l]);
		}
		aname(an, sizeof(an), "U", pspace_kron_cname(g), g);
		if (rc == 0)
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 2, shc, e->UC[l]);
		aname(an, sizeof(an), "s", pspace_kron_rname(g), g);
		if (rc == 0)
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 1, shr, e->sR[l]);
		aname(an, sizeof(an), "s", pspace_kron_cname(g), g);
		if (rc == 0)
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 1, shc, e->sC[l]);
		snprintf(an, sizeof(an), "S.%s", g->name);
		if (rc == 0)
			rc = pspace_writer_put_array(w, an, PSPACE_F64, 2, shs, e->S[l]);
	}
	if (rc == 0)
		rc = pspace_writer_put_array(w, UPDATED_ARRAY, PSPACE_I64, 1, &one, &upd);
	if (rc == 0)
		rc = pspace_writer_put_array(w, DAMPING_ARRAY, PSPACE_I64, 1, &one, &mode);
	return pspace_resident_save_end(w, rc);
}

int pspace_ekfac_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	char an[PSPACE_LAYER_NAME_MAX + 8];
	int64_t upd = 0, mode = 0;
	ekfac *e = NULL;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_EKFAC, &r, &layout);
	if (rc == 0) {
		rc = ekfac_alloc(&e, layout, s, info->name);
		if (rc == PSPACE_ENOTSUP)
			rc = PSPACE_ECORRUPT;
	}
	for (size_t l = 0; rc == 0 && l < e->n; l++) {
		const pspace_kron_layer *g = &e->geo[l];

		if (!g->rdiag) {
			aname(an, sizeof(an), "U", pspace_kron_rname(g), g);
			rc = pspace_resident_read(r, an, g->nr * g->nr, &e->UR[l]);
		}
		aname(an, sizeof(an), "U", pspace_kron_cname(g), g);
		if (rc == 0)
			rc = pspace_resident_read(r, an, g->nc * g->nc, &e->UC[l]);
		aname(an, sizeof(an), "s", pspace_kron_rname(g), g);
		if (rc == 0)
			rc = pspace_resident_read(r, an, g->nr, &e->sR[l]);
		aname(an, sizeof(an), "s", pspace_kron_cname(g), g);
		if (rc == 0)
			rc = pspace_resident_read(r, an, g->nc, &e->sC[l]);
		snprintf(an, sizeof(an), "S.%s", g->name);
		if (rc == 0)
			rc = pspace_resident_read(r, an, g->nr * g->nc, &e->S[l]);
	}
	if (rc == 0)
		rc = pspace_reader_array(r, UPDATED_ARRAY, PSPACE_I64, &upd, 1);
	if (rc == 0)
		rc = pspace_reader_array(r, DAMPING_ARRAY, PSPACE_I64, &mode, 1);
	if (rc == 0 &&
	    (upd < 0 || upd > 1 || mode < PSPACE_KFAC_DAMP_PI || mode > PSPACE_KFAC_DAMP_EXACT))
		rc = pspace_err_set(PSPACE_ECORRUPT, "bad updated flag %lld or damping mode %lld",
		                    (long long)upd, (long long)mode);
	if (rc == 0) {
		e->updated = (int)upd;
		e->mode = (pspace_kfac_damping)mode;
		*out = &e->base;
	} else if (e) {
		pspace_mat_free(&e->base);
	}
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}

static const pspace_mat_vtable ekfac_vt = {
    .kind = PSPACE_KIND_EKFAC,
    .destroy = ekfac_destroy,
    .mm = ekfac_mm,
    .trace = ekfac_trace,
    .diag = ekfac_diag,
    .frob2 = ekfac_frob2,
    .dense = ekfac_dense,
    .solve = ekfac_solve,
    .logdet = ekfac_logdet,
    .diaginv = ekfac_diaginv,
    .sqrt_mm = ekfac_sqrt_mm,
    .save = ekfac_save,
    .pow = ekfac_pow,
    .pinv = ekfac_pinv,
    .scale = ekfac_scale,
    .eig = ekfac_eig,
    .eigvals = ekfac_eigvals,
    .set_damping = ekfac_set_damping,
};
