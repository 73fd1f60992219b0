/*
 * Building from layer tensors (README, Layer tensors and Formulas): the KFAC factors, and a row
 * source that turns the tensors into exact per-example gradients, so every
 * row builder (Dense, BlockDiag, Diag, QuasiDiag, LowRank, the EKFAC
 * update) also works from layer tensors.
 *
 * Per layer, with a_t = [x_t; 1] (bias) and g_t the output gradient of
 * output k at location t:
 *   per-example gradient   grad_x,k = sum_t g_t a_t^T  (weights (o, j), then bias o)
 *   KFAC                   A = (1/n) sum_x sum_t a_t a_t^T,
 *                          G = (1/n) sum_x sum_k sum_t g_t g_t^T / T
 *   embedding              grad[id_t, :] += g_t; A = diag((1/n) id counts), G as above.
 * The EKFAC update takes linear/conv layers straight from the tensors
 * (pspace_ekfac_update_add_layer_batch) and only embeddings as rows.
 * Layers without layer tensors (norm, generic, an embedding with a bias)
 * come as Jacobian rows in the batch (pspace_layer_batch.rows): the row
 * source copies them, so every kind but KFAC/EKFAC covers them too.
 */
#include <blis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "common/exec.h"
#include "mat/kron/ekfac_build.h"

int pspace_layer_has_tensors(const pspace_layer *L)
{
	switch (L->kind) {
	case PSPACE_LAYER_LINEAR:
	case PSPACE_LAYER_CONV1D:
	case PSPACE_LAYER_CONV2D: return 1;
	case PSPACE_LAYER_EMBEDDING: return !L->bias;
	default: return 0;
	}
}

/* The layers with want[i] have layer tensors (KFAC factors need them). */
static int check_layers(const pspace_layout *l, const unsigned char *want)
{
	for (size_t i = 0; i < pspace_layout_nlayers(l); i++) {
		const pspace_layer *L = pspace_layout_layer(l, i);

		if (!want[i] || pspace_layer_has_tensors(L))
			continue;
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "layer %s (%s) has no layer tensors, which KFAC and EKFAC "
		                      "need (build it from Jacobian rows)",
		                      L->name,
		                      L->kind == PSPACE_LAYER_EMBEDDING
		                          ? "an embedding with a bias"
		                          : pspace_layer_kind_name(L->kind));
	}
	return 0;
}

/* Checks the tensors (or, for a layer without tensors, the rows) of layer @p L in a batch. */
static int check_batch(const pspace_layer *L, const pspace_layer_batch *b)
{
	int emb = L->kind == PSPACE_LAYER_EMBEDDING;

	if (!pspace_layer_has_tensors(L))
		return b->rows ? 0
		               : pspace_err_set(PSPACE_EINVAL,
		                                "layer %s: a %s layer has no layer tensors and the "
		                                "source gave no Jacobian rows for it",
		                                L->name, pspace_layer_kind_name(L->kind));
	if (b->T == 0 || !b->grads || (emb ? !b->ids : !b->acts))
		return pspace_err_set(PSPACE_EINVAL,
		                      "layer %s: the source gave no %s, no gradients or T = 0",
		                      L->name, emb ? "ids" : "activations");
	return 0;
}

static int check_id(const pspace_layer *L, int64_t id, uint64_t x)
{
	if (id >= 0 && (uint64_t)id < L->shape[0])
		return 0;
	return pspace_err_set(PSPACE_EINVAL, "layer %s: example %llu: id %lld outside [0, %llu)",
	                      L->name, (unsigned long long)x, (long long)id,
	                      (unsigned long long)L->shape[0]);
}

/*
 * Row-major C (m x n) = alpha A^T B + beta C with A (kk x m), B (kk x n),
 * on @p threads BLIS threads.
 */
static void gemm_tn(uint64_t m, uint64_t n, uint64_t kk, double alpha, const double *A,
                    uint64_t lda, const double *B, uint64_t ldb, double beta, double *C,
                    uint64_t ldc, int threads)
{
	rntm_t rn;

	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(threads, &rn);
	bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)kk, &alpha,
	             (double *)A, (inc_t)lda, 1, (double *)B, (inc_t)ldb, 1, &beta, C, (inc_t)ldc,
	             1, NULL, &rn);
}

/* ---- per-example gradients as rows -------------------------------------------------- */

typedef struct lrows {
	const pspace_layout *l;
	const pspace_layer_source *src;
	pspace_layer_batch *batch;
} lrows;

/* Layer @p L's slice of the K nx rows from its tensors, at column @p coff of @p out. */
static int layer_rows(const pspace_layer *L, const pspace_layer_batch *b, uint32_t K, uint64_t x0,
                      uint64_t nx, double *out, size_t ld, uint64_t coff)
{
	uint64_t T = b->T, out_dim = L->kind == PSPACE_LAYER_EMBEDDING ? L->shape[1] : L->shape[0];
	uint64_t in = L->kind == PSPACE_LAYER_EMBEDDING ? 0 : L->weight_size / L->shape[0];
	int rc = check_batch(L, b);

	if (rc == 0 && !pspace_layer_has_tensors(L)) {
		for (uint64_t r = 0; r < (uint64_t)K * nx; r++)
			memcpy(out + r * ld + coff, b->rows + r * L->size, L->size * sizeof(*out));
		return 0;
	}
	for (uint32_t k = 0; rc == 0 && k < K; k++)
		for (uint64_t x = 0; rc == 0 && x < nx; x++) {
			const double *g = b->grads + ((uint64_t)k * nx + x) * T * out_dim;
			double *row = out + ((uint64_t)k * nx + x) * ld + coff;

			if (L->kind == PSPACE_LAYER_EMBEDDING) {
				memset(row, 0, L->size * sizeof(*row));
				for (uint64_t t = 0; rc == 0 && t < T; t++) {
					int64_t id = b->ids[x * T + t];

					rc = check_id(L, id, x0 + x);
					for (uint64_t e = 0; rc == 0 && e < out_dim; e++)
						row[(uint64_t)id * out_dim + e] +=
						    g[t * out_dim + e];
				}
				continue;
			}
			gemm_tn(out_dim, in, T, 1.0, g, out_dim, b->acts + x * T * in, in, 0.0, row,
			        in, 1);
			for (uint64_t o = 0; L->bias && o < out_dim; o++) {
				double s = 0;

				for (uint64_t t = 0; t < T; t++)
					s += g[t * out_dim + o];
				row[L->weight_size + o] = s;
			}
		}
	return pspace_err_prefix(rc, "layer %s", L->name);
}

/* A bad value among the @p n at @p v of layer @p L's @p what, for a source that is not .npy. */
static int check_values(const pspace_layer *L, const char *what, const double *v, size_t n)
{
	size_t bad = v ? pspace_values_bad(v, n) : n;

	return bad == n ? 0
	                : pspace_value_err(v[bad], "layer-tensor source: layer %s: %s element %zu",
	                                   L->name, what, bad);
}

/*
 * Reads examples [x0, x0 + nx) of @p src into @p batch; a code it should not
 * return is EINVAL. The values of a source other than the .npy directories
 * (which check theirs, naming the file) are checked here.
 */
static int read_batch(const pspace_layer_source *src, const pspace_layout *l, uint64_t x0,
                      uint64_t nx, pspace_layer_batch *batch)
{
	int rc = src->read(src->ud, x0, nx, batch);
	uint64_t K = src->outputs;

	if (rc > 0 || rc < PSPACE_EBLIS)
		rc = pspace_err_set(PSPACE_EINVAL, "layer-tensor source returned %d", rc);
	if (rc != 0 || pspace_layer_source_is_dirs(src))
		return rc;
	for (size_t i = 0; rc == 0 && i < pspace_layout_nlayers(l); i++) {
		const pspace_layer *L = pspace_layout_layer(l, i);
		const pspace_layer_batch *b = &batch[i];
		int emb = L->kind == PSPACE_LAYER_EMBEDDING;
		uint64_t od = emb ? L->shape[1] : L->shape[0];

		if (check_batch(L, b) != 0)
			continue; /* reported where the layer is used */
		if (!pspace_layer_has_tensors(L)) {
			rc = check_values(L, "rows", b->rows, (size_t)(K * nx * L->size));
			continue;
		}
		if (!emb)
			rc = check_values(L, "acts", b->acts,
			                  (size_t)(nx * b->T * (L->weight_size / L->shape[0])));
		if (rc == 0)
			rc = check_values(L, "grads", b->grads, (size_t)(K * nx * b->T * od));
	}
	return rc;
}

static int lrows_read(void *ud, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1, double *out,
                      size_t ld)
{
	lrows *q = ud;
	int rc = read_batch(q->src, q->l, x0, nx, q->batch);

	for (size_t i = 0; rc == 0 && i < pspace_layout_nlayers(q->l); i++) {
		const pspace_layer *L = pspace_layout_layer(q->l, i);

		if (L->offset + L->size > c0 && L->offset < c1)
			rc = layer_rows(L, &q->batch[i], q->src->outputs, x0, nx, out, ld,
			                L->offset);
	}
	return rc;
}

/*
 * Diag and QuasiDiag terms of a layer without layer tensors from its rows,
 * as the row builder forms them (cross: bias o times weight row o).
 */
static void rows_qd(const pspace_layer *L, const double *rows, uint64_t m, double *diag,
                    double *cross)
{
	uint64_t od = L->shape[0], in = od ? L->weight_size / od : 0;

	for (uint64_t r = 0; r < m; r++) {
		const double *w = rows + r * L->size, *bias = w + L->weight_size;

		for (uint64_t p = 0; p < L->size; p++)
			diag[p] += w[p] * w[p];
		for (uint64_t o = 0; cross && L->bias && o < od; o++)
			for (uint64_t j = 0; j < in; j++)
				cross[o * in + j] += bias[o] * w[o * in + j];
	}
}

/*
 * Diag and QuasiDiag terms of layer @p L for a batch: with one location
 * (T = 1) they factor, sum_x sum_k g_k[o]^2 a[j]^2 = (sum_k g^2)^T (a*a) and
 * the cross term (sum_k g^2)^T a, one gemm each instead of K nx gradient
 * rows; otherwise each per-example gradient is formed for this layer alone
 * (out x in, from a gemm over the T locations) and squared.
 */
static int layer_qd(const pspace_layer *L, const pspace_layer_batch *b, uint32_t K, uint64_t x0,
                    uint64_t nx, double *diag, double *cross, int threads)
{
	uint64_t T = b->T, emb = L->kind == PSPACE_LAYER_EMBEDDING;
	uint64_t od = emb ? L->shape[1] : L->shape[0], in = emb ? 0 : L->weight_size / L->shape[0];
	uint64_t nw = emb ? L->size : od * in;
	double *g2 = NULL, *sq = NULL, *gr = NULL, *s = NULL;
	int rc = check_batch(L, b);

	if (rc != 0)
		goto out;
	if (!pspace_layer_has_tensors(L)) {
		rows_qd(L, b->rows, (uint64_t)K * nx, diag, cross);
		goto out;
	}
	if (!emb && T == 1) {
		uint64_t ng = nx * od, na = nx * in;

		g2 = calloc(ng > 0 ? ng : 1, sizeof(double));
		sq = malloc((na > 0 ? na : 1) * sizeof(double));
		if (!g2 || !sq) {
			rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t k = 0; k < K; k++)
			for (uint64_t i = 0; i < nx * od; i++) {
				double v = b->grads[(uint64_t)k * nx * od + i];

				g2[i] += v * v;
			}
		for (uint64_t i = 0; i < nx * in; i++)
			sq[i] = b->acts[i] * b->acts[i];
		gemm_tn(od, in, nx, 1.0, g2, od, sq, in, 1.0, diag, in, threads);
		if (cross)
			gemm_tn(od, in, nx, 1.0, g2, od, b->acts, in, 1.0, cross, in, threads);
		for (uint64_t x = 0; L->bias && x < nx; x++)
			for (uint64_t o = 0; o < od; o++)
				diag[L->weight_size + o] += g2[x * od + o];
		goto out;
	}
	gr = calloc(nw ? nw : 1, sizeof(double));
	s = calloc(od ? od : 1, sizeof(double));
	if (!gr || !s) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t k = 0; rc == 0 && k < K; k++)
		for (uint64_t x = 0; rc == 0 && x < nx; x++) {
			const double *g = b->grads + ((uint64_t)k * nx + x) * T * od;

			if (emb) {
				/* rows of the ids seen, squared once each, then zeroed again */
				for (uint64_t t = 0; rc == 0 && t < T; t++) {
					int64_t id = b->ids[x * T + t];

					rc = check_id(L, id, x0 + x);
					for (uint64_t e = 0; rc == 0 && e < od; e++)
						gr[(uint64_t)id * od + e] += g[t * od + e];
				}
				for (uint64_t t = 0; rc == 0 && t < T; t++) {
					double *row = gr + (uint64_t)b->ids[x * T + t] * od;
					double *dr = diag + (uint64_t)b->ids[x * T + t] * od;

					for (uint64_t e = 0; e < od; e++) {
						dr[e] += row[e] * row[e];
						row[e] = 0;
					}
				}
				continue;
			}
			gemm_tn(od, in, T, 1.0, g, od, b->acts + x * T * in, in, 0.0, gr, in, 1);
			for (uint64_t i = 0; i < nw; i++)
				diag[i] += gr[i] * gr[i];
			for (uint64_t o = 0; L->bias && o < od; o++) {
				double v = 0;

				for (uint64_t t = 0; t < T; t++)
					v += g[t * od + o];
				diag[L->weight_size + o] += v * v;
				for (uint64_t j = 0; cross && j < in; j++)
					cross[o * in + j] += v * gr[o * in + j];
			}
		}
out:
	free(s);
	free(gr);
	free(sq);
	free(g2);
	return pspace_err_prefix(rc, "layer %s", L->name);
}

static int lrows_qd_add(void *ud, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1, double *diag,
                        double **cross, int threads)
{
	lrows *q = ud;
	int rc = read_batch(q->src, q->l, x0, nx, q->batch);
	size_t li = 0;

	for (size_t i = 0; rc == 0 && i < pspace_layout_nlayers(q->l); i++) {
		const pspace_layer *L = pspace_layout_layer(q->l, i);

		if (L->offset < c0 || L->offset >= c1)
			continue;
		rc = layer_qd(L, &q->batch[i], q->src->outputs, x0, nx, diag + (L->offset - c0),
		              cross ? cross[li] : NULL, threads);
		li++;
	}
	return rc;
}

int pspace_rows_from_layers(pspace_rows *out, const pspace_layout *layout,
                            const pspace_layer_source *src)
{
	lrows *q;

	memset(out, 0, sizeof(*out));
	q = calloc(1, sizeof(*q));
	if (q)
		q->batch = calloc(pspace_layout_nlayers(layout), sizeof(*q->batch));
	if (!q || !q->batch) {
		free(q);
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	}
	q->l = layout;
	q->src = src;
	out->n = src->examples;
	out->K = src->outputs;
	out->d = pspace_layout_dim(layout);
	out->read = lrows_read;
	out->qd_add = lrows_qd_add;
	out->ud = q;
	return 0;
}

void pspace_rows_from_layers_close(pspace_rows *r)
{
	lrows *q = r->ud;

	if (q)
		free(q->batch);
	free(q);
	r->ud = NULL;
}

/* ---- KFAC factors ------------------------------------------------------------------- */

/*
 * Upper triangle of row-major C (n x n, row stride ldc) += alpha R^T R for a
 * dense R (rows x n): a rank update, half the flops of a gemm.
 */
static void syrk_tn(uint64_t n, uint64_t rows, double alpha, const double *R, double *C,
                    uint64_t ldc, int threads)
{
	double one = 1.0;
	rntm_t rn;

	if (n == 0 || rows == 0)
		return;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(threads, &rn);
	bli_dsyrk_ex(BLIS_UPPER, BLIS_TRANSPOSE, (dim_t)n, (dim_t)rows, &alpha, (double *)R,
	             (inc_t)n, 1, &one, C, (inc_t)ldc, 1, NULL, &rn);
}

/*
 * Adds one batch of layer @p L to the upper triangles of its factors (A's
 * leading in x in block through a rank update of its own row stride).
 */
static void add_factors(const pspace_layer *L, const pspace_layer_batch *b, uint32_t K, uint64_t nx,
                        double *A, double *G, int threads)
{
	uint64_t T = b->T, rows = nx * T;

	if (L->kind == PSPACE_LAYER_EMBEDDING) {
		uint64_t dim = L->shape[1];

		for (uint64_t i = 0; i < rows; i++)
			A[b->ids[i]] += 1.0;
		syrk_tn(dim, K * rows, 1.0 / (double)T, b->grads, G, dim, threads);
		return;
	}
	uint64_t out = L->shape[0], in = L->weight_size / out, a = in + (L->bias ? 1 : 0);

	syrk_tn(in, rows, 1.0, b->acts, A, a, threads);
	if (L->bias) {
		for (uint64_t i = 0; i < rows; i++)
			for (uint64_t j = 0; j < in; j++)
				A[j * a + in] += b->acts[i * in + j];
		A[in * a + in] += (double)rows;
	}
	syrk_tn(out, K * rows, 1.0 / (double)T, b->grads, G, out, threads);
}

/*
 * M = s * M for an n x n M of which the upper triangle holds the values,
 * in square blocks so that the mirrored writes stay in cache.
 */
static void sym_scale(uint64_t n, double *M, double s)
{
	const uint64_t B = 64;

	for (uint64_t i0 = 0; i0 < n; i0 += B)
		for (uint64_t j0 = i0; j0 < n; j0 += B)
			for (uint64_t i = i0; i < i0 + B && i < n; i++)
				for (uint64_t j = j0 > i ? j0 : i; j < j0 + B && j < n; j++)
					M[i * n + j] = M[j * n + i] = M[i * n + j] * s;
}

/*
 * Gradient rows (K nx) per batch beyond which a rank update runs no faster:
 * larger batches only cost memory (and the source's copying).
 */
#define ROWS_ENOUGH 2048

/*
 * Examples per batch of the factor pass: o->batch, or what fits half the
 * budget at the layer tensors of one example (T = 1 assumed: T is not known
 * before the first read), at most ROWS_ENOUGH gradient rows.
 */
static uint64_t tensor_batch(const pspace_build_opts *o, const pspace_layout *layout,
                             const unsigned char *want, uint32_t K, uint64_t n)
{
	uint64_t per = 0, nx;

	for (size_t i = 0; i < pspace_layout_nlayers(layout); i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);

		if (!want[i])
			continue;
		if (L->kind == PSPACE_LAYER_EMBEDDING)
			per += (1 + (uint64_t)K * L->shape[1]) * 8;
		else
			per += (L->weight_size / L->shape[0] + (uint64_t)K * L->shape[0]) * 8;
	}
	nx = o->batch ? o->batch : (per ? o->exec.mem_budget / 2 / per : n);
	if (!o->batch && nx > ROWS_ENOUGH / (K ? K : 1))
		nx = ROWS_ENOUGH / (K ? K : 1);
	return nx == 0 ? 1 : (nx > n ? n : nx);
}

/* Dimensions of layer L's factors: A is a x a (an embedding's: its a diagonal entries), G g x g. */
static void factor_dims(const pspace_layer *L, uint64_t *a, uint64_t *g)
{
	int emb = L->kind == PSPACE_LAYER_EMBEDDING;

	*a = emb ? L->shape[0] : L->weight_size / L->shape[0] + (L->bias ? 1 : 0);
	*g = emb ? L->shape[1] : L->shape[0];
}

int pspace_build_kfac_factors(const pspace_layout *layout, const pspace_layer_source *src,
                              const unsigned char *want, const pspace_build_opts *o, double **A,
                              double **G)
{
	size_t nl = pspace_layout_nlayers(layout);
	pspace_layer_batch *batch = calloc(nl ? nl : 1, sizeof(*batch));
	uint64_t nx, n = src->examples;
	pspace_exec x;
	int rc = check_layers(layout, want);

	if (rc == 0 && !batch) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
		goto out;
	}
	pspace_exec_resolve(&o->exec, &x);
	for (size_t i = 0; rc == 0 && i < nl; i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);
		int emb = L->kind == PSPACE_LAYER_EMBEDDING;
		uint64_t a, g;

		if (!want[i])
			continue;
		factor_dims(L, &a, &g);
		A[i] = calloc(emb ? a : a * a, sizeof(double));
		G[i] = calloc(g * g, sizeof(double));
		if (!A[i] || !G[i])
			rc = pspace_err_set(PSPACE_ENOMEM,
			                    "layer %s: out of memory for the factors", L->name);
	}
	nx = tensor_batch(o, layout, want, src->outputs, n);
	for (uint64_t x0 = 0; rc == 0 && x0 < n; x0 += nx) {
		uint64_t k = n - x0 < nx ? n - x0 : nx;

		rc = pspace_err_prefix(read_batch(src, layout, x0, k, batch),
		                       "reading examples [%llu, %llu)", (unsigned long long)x0,
		                       (unsigned long long)(x0 + k));
		for (size_t i = 0; rc == 0 && i < nl; i++) {
			const pspace_layer *L = pspace_layout_layer(layout, i);

			if (!want[i])
				continue;
			rc = check_batch(L, &batch[i]);
			for (uint64_t j = 0;
			     rc == 0 && L->kind == PSPACE_LAYER_EMBEDDING && j < k * batch[i].T;
			     j++)
				rc = check_id(L, batch[i].ids[j], x0 + j / batch[i].T);
			if (rc == 0)
				add_factors(L, &batch[i], src->outputs, k, A[i], G[i], x.threads);
		}
		if (rc == 0)
			pspace_build_progress(o, "kfac", x0 + k, n);
	}
	for (size_t i = 0; rc == 0 && i < nl; i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);
		int emb = L->kind == PSPACE_LAYER_EMBEDDING;
		uint64_t a, g;

		if (!want[i])
			continue;
		factor_dims(L, &a, &g);
		if (emb)
			for (uint64_t j = 0; j < a; j++)
				A[i][j] /= (double)n;
		else
			sym_scale(a, A[i], 1.0 / (double)n);
		sym_scale(g, G[i], 1.0 / (double)n);
	}
out:
	if (rc != 0)
		for (size_t i = 0; i < nl; i++) {
			free(A[i]);
			free(G[i]);
			A[i] = G[i] = NULL;
		}
	free(batch);
	return rc;
}

/* ---- EKFAC diagonal update ---------------------------------------------------------- */

/*
 * Examples per batch of the update: o->batch, or what fits half the budget
 * at the tensors of layers [l0, l0 + ns) of one example plus the update's
 * work on them (the activations with their ones and P, Q; an embedding's
 * K gradient rows), at most ROWS_ENOUGH gradient rows. T is not known
 * before the first read: 1 is assumed.
 */
static uint64_t update_batch(const pspace_build_opts *o, const pspace_layout *layout, size_t l0,
                             size_t ns, uint32_t K, uint64_t n)
{
	uint64_t per = 0, nx;

	for (size_t j = 0; j < ns; j++) {
		const pspace_layer *L = pspace_layout_layer(layout, l0 + j);

		if (L->kind == PSPACE_LAYER_EMBEDDING) {
			per += ((uint64_t)K * L->size + 1 + (uint64_t)K * L->shape[1]) * 8;
		} else {
			uint64_t out = L->shape[0], in = L->weight_size / out;

			per += (3 * in + 2 + 2 * (uint64_t)K * out) * 8;
		}
	}
	nx = o->batch ? o->batch : (per ? o->exec.mem_budget / 2 / per : n);
	if (!o->batch && nx > ROWS_ENOUGH / (K ? K : 1))
		nx = ROWS_ENOUGH / (K ? K : 1);
	return nx == 0 ? 1 : (nx > n ? n : nx);
}

int pspace_build_ekfac_update_layers(const pspace_build_target *t, pspace_mat *m,
                                     const pspace_layout *layout, size_t l0,
                                     const pspace_layer_source *src, const pspace_build_opts *o)
{
	size_t nl = pspace_layout_nlayers(layout), ns = pspace_layout_nlayers(t->sub);
	pspace_layer_batch *batch = calloc(nl ? nl : 1, sizeof(*batch));
	uint64_t n = src->examples, emb = 0, nx;
	uint32_t K = src->outputs;
	double *rows = NULL;
	int rc = batch ? 0 : pspace_err_set(PSPACE_ENOMEM, "out of memory");

	if (rc == 0 && l0 + ns > nl)
		rc = pspace_err_set(PSPACE_EINVAL, "layers [%zu, %zu) of %zu", l0, l0 + ns, nl);
	for (size_t j = 0; rc == 0 && j < ns; j++) {
		const pspace_layer *L = pspace_layout_layer(layout, l0 + j);

		if (L->kind == PSPACE_LAYER_EMBEDDING && L->size > emb)
			emb = L->size;
	}
	nx = update_batch(o, layout, l0, rc == 0 ? ns : 0, K, n);
	if (rc == 0 && emb && !(rows = malloc((size_t)(K * nx * emb) * sizeof(*rows))))
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory for a batch of %llu",
		                    (unsigned long long)nx);
	if (rc == 0)
		rc = pspace_ekfac_update_begin(m);
	for (uint64_t x0 = 0; rc == 0 && x0 < n; x0 += nx) {
		uint64_t k = n - x0 < nx ? n - x0 : nx;

		rc = pspace_err_prefix(read_batch(src, layout, x0, k, batch),
		                       "reading examples [%llu, %llu)", (unsigned long long)x0,
		                       (unsigned long long)(x0 + k));
		for (size_t j = 0; rc == 0 && j < ns; j++) {
			const pspace_layer *L = pspace_layout_layer(layout, l0 + j);
			const pspace_layer_batch *b = &batch[l0 + j];

			if (L->kind == PSPACE_LAYER_EMBEDDING) {
				rc = layer_rows(L, b, K, x0, k, rows, (size_t)L->size, 0);
				if (rc == 0)
					rc = pspace_ekfac_update_add_rows_layer(
					    m, &o->exec, j, K * k, rows, (size_t)L->size);
			} else {
				rc = check_batch(L, b);
				if (rc == 0)
					rc = pspace_ekfac_update_add_layer_batch(
					    m, &o->exec, j, K, k, b->T, b->acts, b->grads);
				rc = pspace_err_prefix(rc, "layer %s", L->name);
			}
		}
		if (rc == 0)
			pspace_build_progress(o, "ekfac-update", x0 + k, n);
	}
	if (rc == 0)
		rc = pspace_ekfac_update_end(m, n);
	free(rows);
	free(batch);
	return pspace_err_prefix(rc, "EKFAC update of %s", t->name);
}
