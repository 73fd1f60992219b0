/*
 * Test helper for the builders (lref.h): layer tensors in memory and their
 * float64 references.
 */
#include <lapacke.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "lref.h"

static uint64_t lref_in(const pspace_layer *L)
{
	return L->kind == PSPACE_LAYER_EMBEDDING ? 0 : L->weight_size / L->shape[0];
}

static uint64_t lref_out(const pspace_layer *L)
{
	return L->kind == PSPACE_LAYER_EMBEDDING ? L->shape[1] : L->shape[0];
}

static int lref_read(void *ud, uint64_t x0, uint64_t nx, pspace_layer_batch *b)
{
	lref_src *s = ud;

	for (size_t i = 0; i < pspace_layout_nlayers(s->l); i++) {
		const pspace_layer *L = pspace_layout_layer(s->l, i);
		uint64_t T = s->T[i], in = lref_in(L), out = lref_out(L);

		b[i].T = T;
		b[i].acts = NULL;
		b[i].ids = NULL;
		if (L->kind == PSPACE_LAYER_EMBEDDING) {
			memcpy(s->bids, s->ids + x0 * T, nx * T * sizeof(int64_t));
			b[i].ids = s->bids;
		} else {
			memcpy(s->bact[i], s->acts[i] + x0 * T * in, nx * T * in * sizeof(double));
			b[i].acts = s->bact[i];
		}
		for (uint32_t k = 0; k < s->K; k++)
			memcpy(s->bgrad[i] + k * nx * T * out,
			       s->grads[i] + (k * s->n + x0) * T * out,
			       nx * T * out * sizeof(double));
		b[i].grads = s->bgrad[i];
	}
	return 0;
}

/* Random tensors; @p same_input: every example has the same activations. */
void lref_src_init(lref_src *s, pspace_layer_source *src, const pspace_layout *l, uint64_t n,
                   uint32_t K, const uint64_t *T, int same_input, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->l = l;
	s->n = n;
	s->K = K;
	for (size_t i = 0; i < pspace_layout_nlayers(l); i++) {
		const pspace_layer *L = pspace_layout_layer(l, i);
		uint64_t in = lref_in(L), out = lref_out(L);

		s->T[i] = T[i];
		if (L->kind == PSPACE_LAYER_EMBEDDING) {
			s->ids = malloc(n * T[i] * sizeof(int64_t));
			s->bids = malloc(n * T[i] * sizeof(int64_t));
			for (uint64_t j = 0; j < n * T[i]; j++)
				s->ids[j] = (int64_t)((j * 7 + seed) % L->shape[0]);
		} else {
			s->acts[i] = fx_randv(n * T[i] * in, seed + 10 * i);
			s->bact[i] = malloc(n * T[i] * in * sizeof(double));
			for (uint64_t x = 1; same_input && x < n; x++)
				memcpy(s->acts[i] + x * T[i] * in, s->acts[i],
				       T[i] * in * sizeof(double));
		}
		s->grads[i] = fx_randv(K * n * T[i] * out, seed + 10 * i + 1);
		s->bgrad[i] = malloc(K * n * T[i] * out * sizeof(double));
	}
	src->examples = n;
	src->outputs = K;
	src->read = lref_read;
	src->ud = s;
}

void lref_src_free(lref_src *s)
{
	for (int i = 0; i < 3; i++) {
		free(s->acts[i]);
		free(s->grads[i]);
		free(s->bact[i]);
		free(s->bgrad[i]);
	}
	free(s->ids);
	free(s->bids);
}

/* Per-example gradient rows (K n x d) from the tensors, by the definition. */
double *lref_rows(const lref_src *s)
{
	uint64_t d = pspace_layout_dim(s->l);
	double *R = calloc(s->K * s->n * d, sizeof(*R));

	assert_non_null(R);
	for (size_t i = 0; i < pspace_layout_nlayers(s->l); i++) {
		const pspace_layer *L = pspace_layout_layer(s->l, i);
		uint64_t T = s->T[i], in = lref_in(L), out = lref_out(L);

		for (uint32_t k = 0; k < s->K; k++)
			for (uint64_t x = 0; x < s->n; x++) {
				double *r = R + (k * s->n + x) * d + L->offset;
				const double *g = s->grads[i] + (k * s->n + x) * T * out;

				for (uint64_t t = 0; t < T; t++) {
					if (L->kind == PSPACE_LAYER_EMBEDDING) {
						int64_t id = s->ids[x * T + t];

						for (uint64_t e = 0; e < out; e++)
							r[id * out + e] += g[t * out + e];
						continue;
					}
					const double *a = s->acts[i] + (x * T + t) * in;

					for (uint64_t o = 0; o < out; o++) {
						for (uint64_t j = 0; j < in; j++)
							r[o * in + j] += g[t * out + o] * a[j];
						if (L->bias)
							r[L->weight_size + o] += g[t * out + o];
					}
				}
			}
	}
	return R;
}

/* KFAC factors of layer i by the definition: A (a x a, or num diagonal), G. */
void lref_factors(const lref_src *s, size_t i, double **Aout, double **Gout)
{
	const pspace_layer *L = pspace_layout_layer(s->l, i);
	uint64_t T = s->T[i], in = lref_in(L), out = lref_out(L), a = in + (L->bias ? 1 : 0);
	int emb = L->kind == PSPACE_LAYER_EMBEDDING;
	double *A = calloc(emb ? L->shape[0] : a * a, sizeof(*A)),
	       *G = calloc(out * out, sizeof(*G));

	for (uint64_t x = 0; x < s->n; x++)
		for (uint64_t t = 0; t < T; t++) {
			if (emb) {
				A[s->ids[x * T + t]] += 1.0 / (double)s->n;
				continue;
			}
			for (uint64_t p = 0; p < a; p++)
				for (uint64_t q = 0; q < a; q++) {
					double ap = p < in ? s->acts[i][(x * T + t) * in + p] : 1.0;
					double aq = q < in ? s->acts[i][(x * T + t) * in + q] : 1.0;

					A[p * a + q] += ap * aq / (double)s->n;
				}
		}
	for (uint32_t k = 0; k < s->K; k++)
		for (uint64_t x = 0; x < s->n; x++)
			for (uint64_t t = 0; t < T; t++) {
				const double *g = s->grads[i] + ((k * s->n + x) * T + t) * out;

				for (uint64_t p = 0; p < out; p++)
					for (uint64_t q = 0; q < out; q++)
						G[p * out + q] += g[p] * g[q] / (double)(s->n * T);
			}
	*Aout = A;
	*Gout = G;
}

/* Index in the layer of V[r][c] (rows: outputs, or embedding rows). */
static uint64_t lref_vidx(const pspace_layer *L, uint64_t r, uint64_t c)
{
	uint64_t in = L->kind == PSPACE_LAYER_EMBEDDING ? L->shape[1] : lref_in(L);

	return c < in ? r * in + c : L->weight_size + r;
}

/* Dense KFAC reference: per layer the Kronecker block in the canonical order. */
double *lref_kfac(const lref_src *s)
{
	uint64_t d = pspace_layout_dim(s->l);
	double *F = calloc(d * d, sizeof(*F));

	for (size_t i = 0; i < pspace_layout_nlayers(s->l); i++) {
		const pspace_layer *L = pspace_layout_layer(s->l, i);
		int emb = L->kind == PSPACE_LAYER_EMBEDDING;
		uint64_t nr = L->shape[0], nc = emb ? L->shape[1] : lref_in(L) + (L->bias ? 1 : 0);
		double *A, *G;

		lref_factors(s, i, &A, &G);
		for (uint64_t r = 0; r < nr; r++)
			for (uint64_t c = 0; c < nc; c++)
				for (uint64_t r2 = 0; r2 < nr; r2++)
					for (uint64_t c2 = 0; c2 < nc; c2++) {
						double v =
						    emb ? (r == r2 ? A[r] : 0) * G[c * nc + c2]
						        : G[r * nr + r2] * A[c * nc + c2];

						F[(L->offset + lref_vidx(L, r, c)) * d + L->offset +
						  lref_vidx(L, r2, c2)] = v;
					}
		free(A);
		free(G);
	}
	return F;
}

/* Eigenvectors (columns of U, row-major) of the symmetric n x n M. */
static double *lref_eigvecs(uint64_t n, const double *M)
{
	double *U = malloc(n * n * sizeof(*U)), *w = malloc(n * sizeof(*w));

	memcpy(U, M, n * n * sizeof(*U));
	assert_int_equal(
	    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, U, (lapack_int)n, w), 0);
	free(w);
	return U;
}

/* Dense EKFAC reference with S from the per-example gradients @p R (rows x d). */
double *lref_ekfac(const lref_src *s, const double *R, uint64_t rows)
{
	uint64_t d = pspace_layout_dim(s->l);
	double *F = calloc(d * d, sizeof(*F));

	for (size_t i = 0; i < pspace_layout_nlayers(s->l); i++) {
		const pspace_layer *L = pspace_layout_layer(s->l, i);
		int emb = L->kind == PSPACE_LAYER_EMBEDDING;
		uint64_t nr = L->shape[0], nc = emb ? L->shape[1] : lref_in(L) + (L->bias ? 1 : 0);
		double *A, *G, *UR, *UC, *S = calloc(nr * nc, sizeof(double));

		lref_factors(s, i, &A, &G);
		UC = lref_eigvecs(nc, emb ? G : A);
		if (emb) {
			UR = calloc(nr * nr, sizeof(double));
			for (uint64_t r = 0; r < nr; r++)
				UR[r * nr + r] = 1;
		} else {
			UR = lref_eigvecs(nr, G);
		}
		/* S[p][q] = (1/n) sum_rows (UR^T V UC)[p][q]^2 */
		for (uint64_t x = 0; x < rows; x++)
			for (uint64_t p = 0; p < nr; p++)
				for (uint64_t q = 0; q < nc; q++) {
					double v = 0;

					for (uint64_t r = 0; r < nr; r++)
						for (uint64_t c = 0; c < nc; c++)
							v += UR[r * nr + p] *
							     R[x * d + L->offset +
							       lref_vidx(L, r, c)] *
							     UC[c * nc + q];
					S[p * nc + q] += v * v / (double)s->n;
				}
		/* block = sum_pq S[p][q] (u_p (x) w_q)(u_p (x) w_q)^T */
		for (uint64_t p = 0; p < nr; p++)
			for (uint64_t q = 0; q < nc; q++)
				for (uint64_t r = 0; r < nr; r++)
					for (uint64_t c = 0; c < nc; c++)
						for (uint64_t r2 = 0; r2 < nr; r2++)
							for (uint64_t c2 = 0; c2 < nc; c2++)
								F[(L->offset + lref_vidx(L, r, c)) *
								      d +
								  L->offset +
								  lref_vidx(L, r2, c2)] +=
								    S[p * nc + q] * UR[r * nr + p] *
								    UC[c * nc + q] *
								    UR[r2 * nr + p] *
								    UC[c2 * nc + q];
		free(A);
		free(G);
		free(UR);
		free(UC);
		free(S);
	}
	return F;
}

/* ---- Jacobian rows in memory ------------------------------------------------------ */

const char lref_jlayout[] = "fc1 linear 5x4 bias\n"
                            "bn  norm   5   bias\n"
                            "fc2 linear 3x5 nobias\n";

static int lref_jsrc_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	lref_jsrc *j = ud;

	j->reads++;
	if (x0 == 0)
		j->passes++;
	if (j->fail_at && j->passes == j->fail_at && x0 > 0)
		return PSPACE_EIO;
	if (j->stop_pass && (int)j->passes == j->stop_pass) {
		char c = 1;

		if (write(j->fd, &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	for (uint32_t k = 0; k < j->K; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t p = 0; p < j->d; p++)
				out[(k * nx + x) * ld + p] =
				    j->scale * j->J[(k * j->n + x0 + x) * j->d + p];
	return 0;
}

void lref_jsrc_init(lref_jsrc *j, pspace_jac_source *src, uint64_t n, uint32_t K, uint64_t d,
                    uint64_t seed)
{
	memset(j, 0, sizeof(*j));
	j->n = n;
	j->K = K;
	j->d = d;
	j->scale = 1.0;
	j->J = fx_randv(K * n * d, seed);
	/* columns of different scales */
	for (uint64_t r = 0; r < K * n; r++)
		for (uint64_t p = 0; p < d; p++)
			j->J[r * d + p] *= 1.0 + (double)(p % 7);
	src->examples = n;
	src->outputs = K;
	src->d = d;
	src->read = lref_jsrc_read;
	src->ud = j;
}

pspace_layout *lref_parse(const char *text)
{
	pspace_layout *l = NULL;

	assert_int_equal(pspace_layout_parse(&l, text, "test"), 0);
	return l;
}

void lref_keep_blocks(const pspace_layout *l, double *F)
{
	uint64_t d = pspace_layout_dim(l);

	for (uint64_t i = 0; i < d; i++)
		for (uint64_t j = 0; j < d; j++)
			if (pspace_layout_layer_of(l, i) != pspace_layout_layer_of(l, j))
				F[i * d + j] = 0;
}

void lref_opts_f64(pspace_build_opts *o, pspace_kind kind)
{
	pspace_build_opts_default(o);
	o->kind = kind;
	o->write.codec.dtype = PSPACE_F64;
	o->write.tile = 8;
	o->exec.threads = 2;
}
