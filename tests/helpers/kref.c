/*
 * Dense float64 references for KFAC and EKFAC from the definitions in the README's Formulas.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lapacke.h>

#include "fref.h"
#include "kref.h"

const char kref_layout_text[] = "# name kind shape bias\n"
                                "fc1   linear    5x4     bias\n"
                                "fc2   linear    3x5     nobias\n"
                                "conv  conv2d    3x2x2x2 bias\n"
                                "emb   embedding 6x3     nobias\n";

void kref_dims(const pspace_layer *L, size_t *nr, size_t *nc, size_t *in, int *emb)
{
	*emb = L->kind == PSPACE_LAYER_EMBEDDING;
	*nr = (size_t)L->shape[0];
	*in = (size_t)(L->weight_size / L->shape[0]);
	*nc = *in + (L->bias ? 1 : 0);
}

size_t kref_asize(const pspace_layer *L)
{
	size_t nr, nc, in;
	int emb;

	kref_dims(L, &nr, &nc, &in, &emb);
	return emb ? nr : nc * nc;
}

size_t kref_gsize(const pspace_layer *L)
{
	size_t nr, nc, in;
	int emb;

	kref_dims(L, &nr, &nc, &in, &emb);
	return emb ? nc * nc : nr * nr;
}

size_t kref_canon(const pspace_layer *L, size_t o, size_t c)
{
	size_t nr, nc, in;
	int emb;

	kref_dims(L, &nr, &nc, &in, &emb);
	/* weights (o, c) row-major, then the bias column after all weights */
	return c < in ? o * in + c : (size_t)L->weight_size + o;
}

void kref_spd(size_t n, uint64_t seed, double shift, double *M)
{
	size_t m = n + 2;
	double *J = fx_randv(m * n, seed);

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			double s = 0;

			for (size_t x = 0; x < m; x++)
				s += J[x * n + i] * J[x * n + j];
			M[i * n + j] = s / (double)m + (i == j ? shift : 0);
		}
	free(J);
}

void kref_init(kref *k, uint64_t seed, double shift)
{
	memset(k, 0, sizeof(*k));
	assert_int_equal(pspace_layout_parse(&k->layout, kref_layout_text, "kref"), 0);
	k->n = pspace_layout_nlayers(k->layout);
	k->d = (size_t)pspace_layout_dim(k->layout);
	assert_true(k->n <= KREF_MAXL);
	for (size_t l = 0; l < k->n; l++) {
		const pspace_layer *L = pspace_layout_layer(k->layout, l);
		size_t nr, nc, in;
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		k->A[l] = malloc(kref_asize(L) * sizeof(double));
		k->G[l] = malloc(kref_gsize(L) * sizeof(double));
		assert_non_null(k->A[l]);
		assert_non_null(k->G[l]);
		if (emb) {
			double *v = fx_randv(nr, seed + 10 * l);

			for (size_t i = 0; i < nr; i++)
				k->A[l][i] = 0.2 + fabs(v[i]) + shift;
			free(v);
			kref_spd(nc, seed + 10 * l + 1, shift, k->G[l]);
		} else {
			kref_spd(nc, seed + 10 * l, shift, k->A[l]);
			kref_spd(nr, seed + 10 * l + 1, shift, k->G[l]);
		}
	}
}

void kref_free(kref *k)
{
	for (size_t l = 0; l < k->n; l++) {
		free(k->A[l]);
		free(k->G[l]);
	}
	pspace_layout_free(k->layout);
	memset(k, 0, sizeof(*k));
}

/* Index in F of layer L's parameter (row o, column c). */
static size_t place(const pspace_layer *L, size_t nc, int plain, size_t o, size_t c)
{
	return (size_t)L->offset + (plain ? o * nc + c : kref_canon(L, o, c));
}

void kref_dense(const pspace_layout *layout, double *const *A, double *const *G, int plain,
                double *F)
{
	size_t d = (size_t)pspace_layout_dim(layout);

	memset(F, 0, d * d * sizeof(*F));
	for (size_t l = 0; l < pspace_layout_nlayers(layout); l++) {
		const pspace_layer *L = pspace_layout_layer(layout, l);
		size_t nr, nc, in;
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		for (size_t o = 0; o < nr; o++)
			for (size_t c = 0; c < nc; c++)
				for (size_t o2 = 0; o2 < nr; o2++)
					for (size_t c2 = 0; c2 < nc; c2++) {
						double v;

						if (emb) /* A (x) G, A diagonal */
							v = o == o2 ? A[l][o] * G[l][c * nc + c2]
							            : 0;
						else /* G (x) A */
							v = G[l][o * nr + o2] * A[l][c * nc + c2];
						F[place(L, nc, plain, o, c) * d +
						  place(L, nc, plain, o2, c2)] = v;
					}
	}
}

void kref_ekfac_dense(const pspace_layout *layout, double *const *UR, double *const *UC,
                      double *const *S, double *F)
{
	size_t d = (size_t)pspace_layout_dim(layout);

	memset(F, 0, d * d * sizeof(*F));
	for (size_t l = 0; l < pspace_layout_nlayers(layout); l++) {
		const pspace_layer *L = pspace_layout_layer(layout, l);
		size_t nr, nc, in, ns;
		double *E;
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		ns = nr * nc;
		/* E[(o,c), (p,q)] = UR[o][p] UC[c][q]: the Kronecker eigenbasis. */
		E = malloc(ns * ns * sizeof(*E));
		assert_non_null(E);
		for (size_t o = 0; o < nr; o++)
			for (size_t c = 0; c < nc; c++)
				for (size_t p = 0; p < nr; p++)
					for (size_t q = 0; q < nc; q++)
						E[(o * nc + c) * ns + p * nc + q] =
						    (UR[l] ? UR[l][o * nr + p] : (o == p)) *
						    UC[l][c * nc + q];
		for (size_t i = 0; i < ns; i++)
			for (size_t j = 0; j < ns; j++) {
				double s = 0;

				for (size_t t = 0; t < ns; t++)
					s += E[i * ns + t] * S[l][t] * E[j * ns + t];
				F[place(L, nc, 0, i / nc, i % nc) * d +
				  place(L, nc, 0, j / nc, j % nc)] = s;
			}
		free(E);
	}
}

void kref_eigh(size_t n, const double *M, double *U, double *s)
{
	memcpy(U, M, n * n * sizeof(*U));
	assert_int_equal(
	    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, U, (lapack_int)n, s), 0);
}

void kref_damp(const pspace_layout *layout, double *const *A, double *const *G, double l, int pi_on,
               double **Ad, double **Gd)
{
	for (size_t i = 0; i < pspace_layout_nlayers(layout); i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);
		size_t nr, nc, in, na, ng;
		double ta = 0, tg = 0, pi = 1;
		int emb;

		kref_dims(L, &nr, &nc, &in, &emb);
		na = emb ? nr : nc;
		ng = emb ? nc : nr;
		for (size_t j = 0; j < na; j++)
			ta += emb ? A[i][j] : A[i][j * na + j];
		for (size_t j = 0; j < ng; j++)
			tg += G[i][j * ng + j];
		if (pi_on && ta != 0 && tg != 0)
			pi = sqrt((ta / (double)na) / (tg / (double)ng));
		Ad[i] = malloc(kref_asize(L) * sizeof(double));
		Gd[i] = malloc(kref_gsize(L) * sizeof(double));
		assert_non_null(Ad[i]);
		assert_non_null(Gd[i]);
		memcpy(Ad[i], A[i], kref_asize(L) * sizeof(double));
		memcpy(Gd[i], G[i], kref_gsize(L) * sizeof(double));
		for (size_t j = 0; j < na; j++)
			Ad[i][emb ? j : j * na + j] += pi * sqrt(l);
		for (size_t j = 0; j < ng; j++)
			Gd[i][j * ng + j] += sqrt(l) / pi;
	}
}

void kref_matmul(size_t n, const double *A, const double *B, double *C)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			double s = 0;

			for (size_t t = 0; t < n; t++)
				s += A[i * n + t] * B[t * n + j];
			C[i * n + j] = s;
		}
}
