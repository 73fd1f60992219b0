/*
 * Tests of EKFAC (src/mat/kron/) on the KFAC test layout (linear with and
 * without a bias, conv2d with a bias, embedding): equal to KFAC right after
 * pspace_ekfac_from_kfac; the diagonal update from exact per-example
 * gradients generated here, against a float64 dense reference built in this
 * file from its own eigendecompositions of the factors (LAPACK dsyev) and
 * the definition of S and the properties in the README's Formulas (KFAC equals the true
 * block-diagonal Fisher when every example has the same single input;
 * EKFAC after the update is at least as close to it as KFAC); powers,
 * pseudo-inverse, damped solve, scaling, persistence and EKFAC as a CG
 * preconditioner.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "kref.h"
#include "pspace/factored.h"
#include "pspace/op.h"

#define TOL 1e-10
#define NEX 40 /* examples */

static double *dense_of(pspace_mat *m)
{
	size_t d = pspace_mat_dim(m);
	double *F = malloc(d * d * sizeof(*F));

	assert_non_null(F);
	assert_int_equal(pspace_mat_dense(m, NULL, F, d), 0);
	return F;
}

static pspace_mat *make_kfac(const kref *k)
{
	pspace_mat *m = NULL;

	assert_int_equal(pspace_kfac_create(&m, k->layout, (const double *const *)k->A,
	                                    (const double *const *)k->G),
	                 0);
	return m;
}

static pspace_mat *make_ekfac(pspace_mat *kfac)
{
	pspace_mat *e = NULL;

	assert_int_equal(pspace_ekfac_from_kfac(&e, kfac), 0);
	assert_int_equal(pspace_mat_kind(e), PSPACE_KIND_EKFAC);
	assert_int_equal(pspace_ekfac_is_updated(e), 0);
	return e;
}

/*
 * Exact per-example gradients: per layer, g = vec(delta a^T) in canonical
 * order with a = [x; 1] for a bias (embedding: one id, g[id, :] = delta);
 * rows of Gr (NEX x ld). Also the factors A = E[a a^T] (embedding: id
 * frequencies), G = E[delta delta^T] into k, and the true block-diagonal
 * Fisher (1/n) sum g g^T (cross-layer entries 0) into Ft. @p same: every
 * example has the same input per layer.
 */
static void gen(kref *k, uint64_t seed, int same, double *Gr, size_t ld, double *Ft)
{
	size_t d = k->d;

	memset(Gr, 0, NEX * ld * sizeof(*Gr));
	for (size_t l = 0; l < k->n; l++) {
		const pspace_layer *L = pspace_layout_layer(k->layout, l);
		size_t nr, nc, in;
		int emb;
		double *a, *dl;

		kref_dims(L, &nr, &nc, &in, &emb);
		a = fx_randv(NEX * nc, seed + 100 * l);
		dl = fx_randv(NEX * (emb ? nc : nr), seed + 100 * l + 1);
		memset(k->A[l], 0, kref_asize(L) * sizeof(double));
		memset(k->G[l], 0, kref_gsize(L) * sizeof(double));
		for (size_t x = 0; x < NEX; x++) {
			double *ax = a + (same ? 0 : x) * nc, *g = Gr + x * ld + L->offset;

			if (emb) {
				size_t id = (size_t)((ax[0] + 1) / 2 * (double)nr) % nr;
				const double *de = dl + x * nc;

				for (size_t e = 0; e < nc; e++)
					g[id * nc + e] = de[e];
				k->A[l][id] += 1.0 / NEX;
				for (size_t e = 0; e < nc; e++)
					for (size_t f = 0; f < nc; f++)
						k->G[l][e * nc + f] += de[e] * de[f] / NEX;
				continue;
			}
			if (L->bias)
				ax[in] = 1.0;
			for (size_t o = 0; o < nr; o++)
				for (size_t c = 0; c < nc; c++)
					g[kref_canon(L, o, c)] = dl[x * nr + o] * ax[c];
			for (size_t i = 0; i < nc; i++)
				for (size_t j = 0; j < nc; j++)
					k->A[l][i * nc + j] += ax[i] * ax[j] / NEX;
			for (size_t i = 0; i < nr; i++)
				for (size_t j = 0; j < nr; j++)
					k->G[l][i * nr + j] +=
					    dl[x * nr + i] * dl[x * nr + j] / NEX;
		}
		free(dl);
		free(a);
	}
	memset(Ft, 0, d * d * sizeof(*Ft));
	for (size_t l = 0; l < k->n; l++) {
		const pspace_layer *L = pspace_layout_layer(k->layout, l);

		for (size_t x = 0; x < NEX; x++) {
			const double *g = Gr + x * ld;

			for (size_t i = L->offset; i < L->offset + L->size; i++)
				for (size_t j = L->offset; j < L->offset + L->size; j++)
					Ft[i * d + j] += g[i] * g[j] / NEX;
		}
	}
}

/*
 * The updated EKFAC's dense reference: eigenbases of A and G by dsyev here,
 * S = (1/n) sum (U_R^T V U_C)^2 over the gradients.
 */
static double *ekfac_ref(const kref *k, const double *Gr, size_t ld)
{
	double *UR[KREF_MAXL], *UC[KREF_MAXL], *S[KREF_MAXL];
	double *F = malloc(k->d * k->d * sizeof(*F));

	assert_non_null(F);
	for (size_t l = 0; l < k->n; l++) {
		const pspace_layer *L = pspace_layout_layer(k->layout, l);
		const double *R, *C;
		size_t nr, nc, in;
		double *s;
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		R = emb ? NULL : k->G[l];
		C = emb ? k->G[l] : k->A[l];
		UR[l] = emb ? NULL : malloc(nr * nr * sizeof(double));
		UC[l] = malloc(nc * nc * sizeof(double));
		S[l] = calloc(nr * nc, sizeof(double));
		s = malloc((nr > nc ? nr : nc) * sizeof(double));
		assert_non_null(UC[l]);
		assert_non_null(S[l]);
		assert_non_null(s);
		if (R)
			kref_eigh(nr, R, UR[l], s);
		kref_eigh(nc, C, UC[l], s);
		for (size_t x = 0; x < NEX; x++) {
			const double *g = Gr + x * ld + L->offset;

			for (size_t p = 0; p < nr; p++)
				for (size_t q = 0; q < nc; q++) {
					double v = 0;

					for (size_t o = 0; o < nr; o++)
						for (size_t c = 0; c < nc; c++)
							v += (R ? UR[l][o * nr + p] : (o == p)) *
							     g[kref_canon(L, o, c)] *
							     UC[l][c * nc + q];
					S[l][p * nc + q] += v * v / NEX;
				}
		}
		free(s);
	}
	kref_ekfac_dense(k->layout, UR, UC, S, F);
	for (size_t l = 0; l < k->n; l++) {
		free(UR[l]);
		free(UC[l]);
		free(S[l]);
	}
	return F;
}

/* Runs the diagonal update over the gradients in two passes (rows 0..16, 17..NEX). */
static void update(pspace_mat *e, const double *Gr, size_t ld)
{
	pspace_exec ex = {1, 0};

	assert_int_equal(pspace_ekfac_update_begin(e), 0);
	assert_int_equal(pspace_ekfac_update_add(e, NULL, 17, Gr, ld), 0);
	assert_int_equal(pspace_ekfac_update_add(e, &ex, NEX - 17, Gr + 17 * ld, ld), 0);
	assert_int_equal(pspace_ekfac_update_end(e, NEX), 0);
	assert_int_equal(pspace_ekfac_is_updated(e), 1);
}

/* mm with k = 1 and 16 against F (and mm of a, then b, against F when b given). */
static void check_mm(pspace_mat *a, pspace_mat *b, const double *F, size_t d)
{
	const uint32_t ks[] = {1, 16};

	for (int t = 0; t < 2; t++) {
		uint32_t k = ks[t];
		double *X = fx_randv(k * d, 800 + k), *Y = calloc(k * d, sizeof(double));
		double *Z = calloc(k * d, sizeof(double)), *R = malloc(k * d * sizeof(double));

		assert_non_null(Y);
		assert_non_null(Z);
		assert_non_null(R);
		fref_mm(F, d, k, X, R);
		assert_int_equal(pspace_mat_mm(a, NULL, k, 1.0, X, d, 0.0, Y, d), 0);
		if (b) {
			assert_int_equal(pspace_mat_mm(b, NULL, k, 1.0, Y, d, 0.0, Z, d), 0);
			memcpy(Y, Z, k * d * sizeof(double));
		}
		assert_true(fx_relerr(Y, R, k * d) < TOL);
		free(R);
		free(Z);
		free(Y);
		free(X);
	}
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_ekfac_from_kfac(void **state)
{
	double *Ad[KREF_MAXL], *Gd[KREF_MAXL];
	kref k;
	pspace_mat *m, *e;
	double *F, *G, *X, *Y1, *Y2;
	size_t d;

	(void)state;
	kref_init(&k, 201, 0.05);
	d = k.d;
	m = make_kfac(&k);
	e = make_ekfac(m);
	F = malloc(d * d * sizeof(*F));
	assert_non_null(F);
	kref_dense(k.layout, k.A, k.G, 0, F);
	G = dense_of(e);
	assert_true(fx_relerr(G, F, d * d) < TOL);
	fref_check_ops(e, F, d, TOL);
	check_mm(e, NULL, F, d);
	fref_check_eig(e, F, d, 12, 1e-10);
	/* Exact damping by default: (S + l)^-1. */
	fref_check_solve(e, F, d, 0.1, TOL);

	/* Factor-wise damping on a not-updated EKFAC: the same as KFAC's. */
	X = fx_randv(3 * d, 202);
	Y1 = malloc(3 * d * sizeof(double));
	Y2 = malloc(3 * d * sizeof(double));
	assert_non_null(Y1);
	assert_non_null(Y2);
	for (int mode = PSPACE_KFAC_DAMP_PI; mode <= PSPACE_KFAC_DAMP_SQRT; mode++) {
		assert_int_equal(pspace_kfac_set_damping(e, (pspace_kfac_damping)mode), 0);
		kref_damp(k.layout, k.A, k.G, 0.1, mode == PSPACE_KFAC_DAMP_PI, Ad, Gd);
		kref_dense(k.layout, Ad, Gd, 0, G);
		fref_solve(G, d, 0.0, 3, X, Y1);
		assert_int_equal(pspace_mat_solve(e, NULL, 0.1, 3, X, d, Y2, d), 0);
		assert_true(fx_relerr(Y2, Y1, 3 * d) < TOL);
		for (size_t l = 0; l < k.n; l++) {
			free(Ad[l]);
			free(Gd[l]);
		}
	}
	free(Y2);
	free(Y1);
	free(X);
	free(G);
	free(F);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
}

/* Largest |a - b| over n entries, relative to the largest |a|. */
static double max_reldiff(const double *a, const double *b, size_t n)
{
	double big = 0, diff = 0;

	for (size_t i = 0; i < n; i++) {
		big = fabs(a[i]) > big ? fabs(a[i]) : big;
		diff = fabs(a[i] - b[i]) > diff ? fabs(a[i] - b[i]) : diff;
	}
	return big > 0 ? diff / big : diff;
}

/*
 * The factors are decomposed on several threads at once: with threads = 2
 * the conversion, its eigenvalues and products, and KFAC's Cholesky-damped
 * solve agree with threads = 1 to rounding and with the dense reference.
 */
static void test_ekfac_threads(void **state)
{
	pspace_exec one = {1, 0}, two = {2, 0};
	kref k;
	pspace_mat *m1, *m2, *e1 = NULL, *e2 = NULL;
	double *F, *G, *x, *y1, *y2, *v1, *v2;
	size_t d;

	(void)state;
	kref_init(&k, 211, 0.05);
	d = k.d;
	m1 = make_kfac(&k);
	m2 = make_kfac(&k);
	assert_int_equal(pspace_ekfac_from_kfac_ex(&e1, m1, &one), 0);
	assert_int_equal(pspace_ekfac_from_kfac_ex(&e2, m2, &two), 0);
	F = malloc(d * d * sizeof(*F));
	v1 = malloc(d * sizeof(*v1));
	v2 = malloc(d * sizeof(*v2));
	y1 = malloc(3 * d * sizeof(*y1));
	y2 = malloc(3 * d * sizeof(*y2));
	assert_non_null(F);
	assert_non_null(v1);
	assert_non_null(v2);
	assert_non_null(y1);
	assert_non_null(y2);
	kref_dense(k.layout, k.A, k.G, 0, F);
	G = dense_of(e2);
	assert_true(fx_relerr(G, F, d * d) < TOL);
	assert_int_equal(pspace_mat_eigvals(e1, &one, v1), 0);
	assert_int_equal(pspace_mat_eigvals(e2, &two, v2), 0);
	assert_true(max_reldiff(v1, v2, d) < 1e-13);
	x = fx_randv(3 * d, 212);
	assert_int_equal(pspace_mat_mm(e1, &one, 3, 1.0, x, d, 0.0, y1, d), 0);
	assert_int_equal(pspace_mat_mm(e2, &two, 3, 1.0, x, d, 0.0, y2, d), 0);
	assert_true(max_reldiff(y1, y2, 3 * d) < 1e-13);
	/* KFAC's exact eigenpairs and its Cholesky-damped solve, same again. */
	assert_int_equal(pspace_mat_eigvals(m1, &one, v1), 0);
	assert_int_equal(pspace_mat_eigvals(m2, &two, v2), 0);
	assert_true(max_reldiff(v1, v2, d) < 1e-13);
	assert_int_equal(pspace_kfac_set_damping(m1, PSPACE_KFAC_DAMP_PI), 0);
	assert_int_equal(pspace_kfac_set_damping(m2, PSPACE_KFAC_DAMP_PI), 0);
	assert_int_equal(pspace_mat_solve(m1, &one, 0.1, 3, x, d, y1, d), 0);
	assert_int_equal(pspace_mat_solve(m2, &two, 0.1, 3, x, d, y2, d), 0);
	assert_true(max_reldiff(y1, y2, 3 * d) < 1e-12);
	free(x);
	free(G);
	free(y2);
	free(y1);
	free(v2);
	free(v1);
	free(F);
	pspace_mat_free(e2);
	pspace_mat_free(e1);
	pspace_mat_free(m2);
	pspace_mat_free(m1);
	kref_free(&k);
}

static void test_ekfac_update(void **state)
{
	const size_t ld0 = 85 + 3;
	kref k;
	pspace_mat *m, *e;
	double *Gr, *Ft, *Fr, *Fk, *Fe, ek = 0, ee = 0;
	size_t d;

	(void)state;
	kref_init(&k, 301, 0.0);
	d = k.d;
	assert_int_equal(d + 3, ld0);
	Gr = malloc(NEX * ld0 * sizeof(*Gr));
	Ft = malloc(d * d * sizeof(*Ft));
	assert_non_null(Gr);
	assert_non_null(Ft);
	gen(&k, 302, 0, Gr, ld0, Ft);
	m = make_kfac(&k);
	e = make_ekfac(m);
	{
		/* a solve before the update caches (S + 0.1)^-1 of the old S: the
		 * update must drop it (checked by the solves below) */
		double *b = fx_randv(d, 303), *x = calloc(d, sizeof(double));
		assert_non_null(x);
		assert_int_equal(pspace_mat_solve(e, NULL, 0.1, 1, b, d, x, d), 0);
		free(x);
		free(b);
	}
	update(e, Gr, ld0);

	Fr = ekfac_ref(&k, Gr, ld0);
	fref_check_ops(e, Fr, d, TOL);
	check_mm(e, NULL, Fr, d);
	fref_check_eig(e, Fr, d, 12, 1e-10);
	fref_check_solve(e, Fr, d, 0.1, TOL);
	fref_check_solve(e, Fr, d, 0.3, TOL); /* another damping: a new inverse */
	fref_check_solve(e, Fr, d, 0.1, TOL);

	/* README, Formulas: EKFAC after the update is at least as close to the true
	 * block-diagonal Fisher as KFAC, and here strictly closer. */
	Fk = dense_of(m);
	Fe = dense_of(e);
	for (size_t i = 0; i < d * d; i++) {
		ek += (Fk[i] - Ft[i]) * (Fk[i] - Ft[i]);
		ee += (Fe[i] - Ft[i]) * (Fe[i] - Ft[i]);
	}
	assert_true(ee <= ek * (1 + 1e-12));
	assert_true(ee < 0.99 * ek);

	free(Fe);
	free(Fk);
	free(Fr);
	free(Ft);
	free(Gr);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
}

/* README, Formulas: KFAC equals the true block when every example has the same single input. */
static void test_ekfac_same_input(void **state)
{
	kref k;
	pspace_mat *m, *e;
	double *Gr, *Ft, *F;
	size_t d;

	(void)state;
	kref_init(&k, 401, 0.0);
	d = k.d;
	Gr = malloc(NEX * d * sizeof(*Gr));
	Ft = malloc(d * d * sizeof(*Ft));
	assert_non_null(Gr);
	assert_non_null(Ft);
	gen(&k, 402, 1, Gr, d, Ft);
	m = make_kfac(&k);
	F = dense_of(m);
	assert_true(fx_relerr(F, Ft, d * d) < TOL);
	free(F);
	e = make_ekfac(m);
	update(e, Gr, d);
	F = dense_of(e);
	assert_true(fx_relerr(F, Ft, d * d) < 1e-9);
	free(F);
	free(Ft);
	free(Gr);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_ekfac_pow_pinv(void **state)
{
	kref k;
	pspace_mat *m, *e, *p13, *p23, *q, *q2;
	double *Gr, *Ft, *Fr, *P, *w, *G, thr;
	size_t d;

	(void)state;
	kref_init(&k, 501, 0.0);
	d = k.d;
	Gr = malloc(NEX * d * sizeof(*Gr));
	Ft = malloc(d * d * sizeof(*Ft));
	P = malloc(d * d * sizeof(*P));
	w = malloc(d * sizeof(*w));
	assert_non_null(Gr);
	assert_non_null(Ft);
	assert_non_null(P);
	assert_non_null(w);
	gen(&k, 502, 0, Gr, d, Ft);
	m = make_kfac(&k);
	e = make_ekfac(m);
	update(e, Gr, d);
	Fr = ekfac_ref(&k, Gr, d);

	/* M^(1/3) M^(2/3) = M */
	assert_int_equal(pspace_mat_pow(&p13, e, 1.0 / 3, 0.0), 0);
	assert_int_equal(pspace_mat_pow(&p23, e, 2.0 / 3, 0.0), 0);
	assert_int_equal(pspace_mat_kind(p13), PSPACE_KIND_EKFAC);
	check_mm(p23, p13, Fr, d);
	/* damped powers */
	fref_pow(Fr, d, -1, 0.1, P);
	assert_int_equal(pspace_mat_pow(&q, e, -1, 0.1), 0);
	G = dense_of(q);
	assert_true(fx_relerr(G, P, d * d) < TOL);
	free(G);
	pspace_mat_free(q);
	fref_pow(Fr, d, 0.5, 0.1, P);
	assert_int_equal(pspace_mat_pow(&q, e, 0.5, 0.1), 0);
	G = dense_of(q);
	assert_true(fx_relerr(G, P, d * d) < TOL);
	free(G);
	pspace_mat_free(q);

	/* pinv with a threshold between two eigenvalues */
	fref_eigh(Fr, d, w, NULL);
	thr = 0.5 * (w[30] + w[31]);
	assert_true(w[30] - w[31] > 1e-8 * w[0]);
	fref_pinv(Fr, d, thr, P);
	assert_int_equal(pspace_mat_pinv(&q, e, thr), 0);
	G = dense_of(q);
	assert_true(fx_relerr(G, P, d * d) < TOL);
	free(G);
	/* its inverse does not exist; a damped one does */
	assert_int_equal(pspace_mat_pow(&q2, q, -1, 0.0), PSPACE_ENUMERIC);
	assert_int_equal(pspace_mat_solve(q, NULL, 0.0, 1, Gr, d, w, d), PSPACE_ENUMERIC);
	assert_int_equal(pspace_mat_solve(q, NULL, 0.5, 1, Gr, d, w, d), 0);
	pspace_mat_free(q);

	/* s M */
	assert_int_equal(pspace_mat_scale(&q, e, 3.0), 0);
	for (size_t i = 0; i < d * d; i++)
		P[i] = 3.0 * Fr[i];
	fref_check_ops(q, P, d, TOL);
	pspace_mat_free(q);

	pspace_mat_free(p23);
	pspace_mat_free(p13);
	free(Fr);
	free(w);
	free(P);
	free(Ft);
	free(Gr);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_ekfac_roundtrip(void **state)
{
	fx_store t;
	kref k;
	pspace_mat *m, *e, *e2, *o;
	double *Gr, *Ft;

	(void)state;
	fx_store_open(&t, "ekfac");
	kref_init(&k, 601, 0.0);
	Gr = malloc(NEX * k.d * sizeof(*Gr));
	Ft = malloc(k.d * k.d * sizeof(*Ft));
	assert_non_null(Gr);
	assert_non_null(Ft);
	gen(&k, 602, 0, Gr, k.d, Ft);
	m = make_kfac(&k);
	e = make_ekfac(m);
	e2 = make_ekfac(m);
	update(e, Gr, k.d);

	o = fref_check_roundtrip(e, &t, "ekfac", 0.1, 1);
	assert_int_equal(pspace_ekfac_is_updated(o), 1);
	pspace_mat_free(o);
	/* not updated, with pi damping */
	assert_int_equal(pspace_kfac_set_damping(e2, PSPACE_KFAC_DAMP_PI), 0);
	o = fref_check_roundtrip(e2, &t, "ekfac0", 0.1, 1);
	assert_int_equal(pspace_ekfac_is_updated(o), 0);
	pspace_mat_free(o);

	free(Ft);
	free(Gr);
	pspace_mat_free(e2);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
	fx_store_close(&t);
}

static void test_ekfac_precond(void **state)
{
	fx_store t;
	kref k;
	pspace_mat *m, *e;
	double *Gr, *Ft, *E;
	size_t d;

	(void)state;
	fx_store_open(&t, "ekfac");
	kref_init(&k, 701, 0.0);
	d = k.d;
	Gr = malloc(NEX * d * sizeof(*Gr));
	Ft = malloc(d * d * sizeof(*Ft));
	E = malloc(d * d * sizeof(*E));
	assert_non_null(Gr);
	assert_non_null(Ft);
	assert_non_null(E);
	gen(&k, 702, 0, Gr, d, Ft);
	m = make_kfac(&k);
	e = make_ekfac(m);
	update(e, Gr, d);
	/* Target: the true block-diagonal Fisher plus a full SPD perturbation. */
	kref_spd(d, 703, 0.0, E);
	for (size_t i = 0; i < d * d; i++)
		Ft[i] += 0.02 * E[i];
	fref_check_precond(e, &t, "F", Ft, d, 0.1);
	free(E);
	free(Ft);
	free(Gr);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
	fx_store_close(&t);
}

/*
 * pspace_ekfac_update_add_layer(_batch) from layer tensors against
 * pspace_ekfac_update_add on the gradient rows sum_t g a^T built here
 * (canonical order: weights (o, j) row-major, then bias o): fc1 (bias,
 * T = 1), fc2 (no bias, T = 3), conv (bias, T = 4); the embedding gets
 * nothing from either path.
 */
#define LX 5 /* examples */
#define LK 3 /* outputs */

static void test_ekfac_update_layer(void **state)
{
	const uint64_t Ts[3] = {1, 3, 4};
	pspace_exec small = {1, 4000}; /* the batch in chunks of two conv examples */
	double *acts[3], *grads[3], *R, *Fr, *Fl, *Fb, *gx, one[4];
	pspace_mat *m, *er, *el, *eb;
	size_t d;
	kref k;

	(void)state;
	kref_init(&k, 811, 0.05);
	d = k.d;
	m = make_kfac(&k);
	er = make_ekfac(m);
	el = make_ekfac(m);
	eb = make_ekfac(m);
	R = calloc((size_t)LX * LK * d, sizeof(*R));
	gx = malloc(LK * 4 * 5 * sizeof(*gx));
	assert_non_null(R);
	assert_non_null(gx);
	assert_int_equal(pspace_ekfac_update_begin(er), 0);
	assert_int_equal(pspace_ekfac_update_begin(el), 0);
	assert_int_equal(pspace_ekfac_update_begin(eb), 0);
	for (size_t l = 0; l < 3; l++) {
		const pspace_layer *L = pspace_layout_layer(k.layout, l);
		size_t nr, nc, in, T = (size_t)Ts[l];
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		acts[l] = fx_randv(LX * T * in, 820 + l);
		grads[l] = fx_randv(LK * LX * T * nr, 830 + l);
		for (size_t x = 0; x < LX; x++) {
			for (size_t kk = 0; kk < LK; kk++) {
				double *row = R + (x * LK + kk) * d + L->offset;
				const double *g = grads[l] + (kk * LX + x) * T * nr;

				for (size_t t = 0; t < T; t++)
					for (size_t o = 0; o < nr; o++)
						for (size_t c = 0; c < nc; c++)
							row[kref_canon(L, o, c)] +=
							    g[t * nr + o] *
							    (c < in ? acts[l][(x * T + t) * in + c]
							            : 1.0);
				/* this example's gradients, K x T x out */
				memcpy(gx + kk * T * nr, g, T * nr * sizeof(*gx));
			}
			assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, l, LK, T,
			                                               acts[l] + x * T * in, gx),
			                 0);
		}
		assert_int_equal(pspace_ekfac_update_add_layer_batch(eb, &small, l, LK, LX, T,
		                                                     acts[l], grads[l]),
		                 0);
	}
	assert_int_equal(pspace_ekfac_update_add(er, NULL, LX * LK, R, d), 0);
	/* errors: the embedding, a layer out of range, NULL tensors, not EKFAC, no begin */
	memset(one, 0, sizeof(one));
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 3, 1, 1, one, one),
	                 PSPACE_ENOTSUP);
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 4, 1, 1, one, one), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 0, 1, 1, NULL, one),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 0, 1, 1, one, NULL),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_add_layer_batch(el, NULL, 9, 1, 1, 1, one, one),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 0, 0, 1, NULL, NULL), 0);
	assert_int_equal(pspace_ekfac_update_add_layer(m, NULL, 0, 1, 1, one, one), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_add_layer(NULL, NULL, 0, 1, 1, one, one),
	                 PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_end(er, LX), 0);
	assert_int_equal(pspace_ekfac_update_end(el, LX), 0);
	assert_int_equal(pspace_ekfac_update_end(eb, LX), 0);
	assert_int_equal(pspace_ekfac_update_add_layer(el, NULL, 0, 1, 1, one, one), PSPACE_EINVAL);
	Fr = dense_of(er);
	Fl = dense_of(el);
	Fb = dense_of(eb);
	assert_true(fx_relerr(Fl, Fr, d * d) < 1e-12);
	assert_true(fx_relerr(Fb, Fr, d * d) < 1e-12);
	free(Fb);
	free(Fl);
	free(Fr);
	for (size_t l = 0; l < 3; l++) {
		free(acts[l]);
		free(grads[l]);
	}
	free(gx);
	free(R);
	pspace_mat_free(eb);
	pspace_mat_free(el);
	pspace_mat_free(er);
	pspace_mat_free(m);
	kref_free(&k);
}

static void test_ekfac_errors(void **state)
{
	kref k;
	pspace_mat *m, *e, *p, *q = NULL;
	double x[85];

	(void)state;
	kref_init(&k, 801, 0.05);
	m = make_kfac(&k);
	e = make_ekfac(m);
	memset(x, 0, sizeof(x));
	assert_int_equal(pspace_ekfac_update_add(e, NULL, 1, x, 85), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_end(e, 1), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_begin(e), 0);
	assert_int_equal(pspace_ekfac_update_add(e, NULL, 1, x, 80), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_end(e, 0), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_is_updated(e), 0);
	assert_int_equal(pspace_ekfac_is_updated(m), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_update_begin(m), PSPACE_EINVAL);
	assert_int_equal(pspace_ekfac_is_updated(NULL), PSPACE_EINVAL);
	/* An EKFAC needs symmetric factors. */
	assert_int_equal(pspace_mat_product(&p, m, m), 0);
	assert_int_equal(pspace_ekfac_from_kfac(&q, p), 0); /* M M is symmetric */
	pspace_mat_free(q);
	pspace_mat_free(p);
	assert_int_equal(pspace_mat_pow(&q, e, -1, -10.0), PSPACE_ENUMERIC);
	assert_null(q);
	assert_int_equal(pspace_ekfac_from_kfac(&q, e), PSPACE_EINVAL);
	pspace_mat_free(e);
	pspace_mat_free(m);
	kref_free(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ekfac_from_kfac),  cmocka_unit_test(test_ekfac_update),
	    cmocka_unit_test(test_ekfac_same_input), cmocka_unit_test(test_ekfac_pow_pinv),
	    cmocka_unit_test(test_ekfac_roundtrip),  cmocka_unit_test(test_ekfac_precond),
	    cmocka_unit_test(test_ekfac_errors),     cmocka_unit_test(test_ekfac_update_layer),
	    cmocka_unit_test(test_ekfac_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
