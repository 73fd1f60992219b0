/*
 * The EKFAC diagonal update (ekfac.c holds the matrix): between begin and
 * end, an accumulator per layer gathers sum (U_R^T V U_C)^2 over the
 * per-example (per-output) gradients V of the layer (nr x nc, kron.h),
 * either from full gradient rows or, for linear/conv layers, straight from
 * the layer tensors.
 *
 * Layer tensors: with a_t = [x_t; 1] (bias) and output gradients g_{k,t}
 * at the T locations, V_k = sum_t g_{k,t} a_t^T = G_k^T A (G_k: T x out,
 * A: T x a), so U_G^T V_k U_A = (G_k U_G)^T (A U_A) = Q_k^T P. P is computed
 * once per example and Q for all outputs at once (gemms over the batch),
 * then each (example, output) costs one out x a x T gemm and its square,
 * instead of the two dense transforms (2 out a (out + a)) of V_k. For
 * T = 1 the square is the rank one (q_k^2)(p^2)^T, and the sum over
 * outputs and examples is a single gemm: acc += W^T P2 with
 * W[x][o] = sum_k q_{k,x}[o]^2 and P2[x][c] = p_x[c]^2.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/ekfac_build.h"
#include "mat/kron/ekfac_impl.h"

int pspace_ekfac_update_begin(pspace_mat *m)
{
	pspace_ekfac *e;
	int rc = pspace_ekfac_check(m, "pspace_ekfac_update_begin");

	if (rc != 0)
		return rc;
	e = (pspace_ekfac *)m;
	pspace_kron_free_ptrs(e->acc, e->n);
	e->acc = pspace_kron_new_ptrs(e->n);
	for (size_t l = 0; e->acc && l < e->n; l++) {
		uint64_t cnt = e->geo[l].nr * e->geo[l].nc;

		e->acc[l] = calloc(cnt ? cnt : 1, sizeof(double));
		if (!e->acc[l]) {
			pspace_kron_free_ptrs(e->acc, e->n);
			e->acc = NULL;
		}
	}
	if (!e->acc)
		return pspace_err_set(PSPACE_ENOMEM, "EKFAC update: out of memory");
	return 0;
}

/* The EKFAC of @p m with an update under way, or an error naming @p fn. */
static int started(pspace_mat *m, const char *fn, pspace_ekfac **out)
{
	int rc = pspace_ekfac_check(m, fn);

	*out = NULL;
	if (rc != 0)
		return rc;
	if (!((pspace_ekfac *)m)->acc)
		return pspace_err_set(PSPACE_EINVAL, "%s: pspace_ekfac_update_begin not called",
		                      fn);
	*out = (pspace_ekfac *)m;
	return 0;
}

/* started(), and the geometry of layer @p layer (EINVAL when there is none). */
static int started_layer(pspace_mat *m, const char *fn, size_t layer, pspace_ekfac **out,
                         const pspace_kron_layer **g)
{
	int rc = started(m, fn, out);

	*g = NULL;
	if (rc != 0)
		return rc;
	if (layer >= (*out)->n)
		return pspace_err_set(PSPACE_EINVAL, "%s: layer %zu of %zu", fn, layer, (*out)->n);
	*g = &(*out)->geo[layer];
	return 0;
}

/* Adds the rows of layer @p l (G at its first parameter of row 0) in chunks of kc. */
static void add_rows(pspace_ekfac *e, int threads, size_t l, uint64_t rows, const double *G,
                     size_t ld, uint32_t kc, double *B, double *T)
{
	const pspace_kron_layer *g = &e->geo[l];
	uint64_t nc = g->nc;

	for (uint64_t j0 = 0; j0 < rows; j0 += kc) {
		uint32_t kk = (uint32_t)(rows - j0 < kc ? rows - j0 : kc);

		pspace_kron_gather(g, kk, G + j0 * ld, ld, B);
		pspace_kron_to_basis(g, kk, e->UR[l], e->UC[l], B, T, threads);
		for (uint64_t o = 0; o < g->nr; o++)
			for (uint32_t j = 0; j < kk; j++) {
				const double *b = B + (o * kk + j) * nc;
				double *a = e->acc[l] + o * nc;

				for (uint64_t c = 0; c < nc; c++)
					a[c] += b[c] * b[c];
			}
	}
}

int pspace_ekfac_update_add(pspace_mat *m, const pspace_exec *ex, uint64_t rows,
                            const double *grads, size_t ld)
{
	double *B = NULL, *T = NULL;
	pspace_exec x;
	pspace_ekfac *e;
	uint32_t kc;
	int rc = started(m, "pspace_ekfac_update_add", &e);

	if (rc != 0)
		return rc;
	if (rows == 0)
		return 0;
	if (!grads || ld < m->d)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_ekfac_update_add: gradients NULL or ld %zu < d %llu",
		                      ld, (unsigned long long)m->d);
	pspace_exec_resolve(ex, &x);
	rc = pspace_ekfac_work(e, &x, rows > UINT32_MAX ? UINT32_MAX : (uint32_t)rows, &kc, &B, &T);
	for (size_t l = 0; rc == 0 && l < e->n; l++)
		add_rows(e, x.threads, l, rows, grads + e->geo[l].off, ld, kc, B, T);
	free(T);
	free(B);
	return rc;
}

int pspace_ekfac_update_add_rows_layer(pspace_mat *m, const pspace_exec *ex, size_t layer,
                                       uint64_t rows, const double *grads, size_t ld)
{
	const char *fn = "pspace_ekfac_update_add_rows_layer";
	const pspace_kron_layer *g;
	double *B, *T;
	pspace_exec x;
	pspace_ekfac *e;
	uint32_t kc;
	int rc = started_layer(m, fn, layer, &e, &g);

	if (rc != 0)
		return rc;
	if (rows == 0)
		return 0;
	if (!grads || ld < g->nr * g->nc)
		return pspace_err_set(PSPACE_EINVAL, "%s: gradients NULL or ld %zu too small", fn,
		                      ld);
	pspace_exec_resolve(ex, &x);
	kc = pspace_kron_chunk(g, 1, rows > UINT32_MAX ? UINT32_MAX : (uint32_t)rows, 2,
	                       x.mem_budget);
	B = malloc((size_t)g->nr * g->nc * kc * sizeof(double));
	T = malloc((size_t)g->nr * g->nc * kc * sizeof(double));
	if (B && T)
		add_rows(e, x.threads, layer, rows, grads, ld, kc, B, T);
	else
		rc =
		    pspace_err_set(PSPACE_ENOMEM, "EKFAC update: out of memory for %u vectors", kc);
	free(T);
	free(B);
	return rc;
}

/*
 * Adds examples [0, nx) of layer @p l's tensors (acts: nx * T rows of in,
 * grads: row (k * ldk + x) * T + t of out, i.e. ldk examples per output),
 * into buffers sized for nx examples: P (nx T x a), Q (K nx T x out), and
 * M (out x a, T > 1) or W (nx x out, T = 1).
 */
static void add_tensors(pspace_ekfac *e, int threads, size_t l, uint32_t K, uint64_t nx,
                        uint64_t ldk, uint64_t T, const double *acts, const double *grads,
                        double *P, double *Q, double *M)
{
	const pspace_kron_layer *g = &e->geo[l];
	uint64_t out = g->nr, a = g->nc, in = g->in, rows = nx * T;
	double *acc = e->acc[l];

	/* P = [X 1] U_A, the activations built in Q's space first when it is larger. */
	for (uint64_t i = 0; i < rows; i++) {
		memcpy(M + i * a, acts + i * in, in * sizeof(double));
		if (g->bias)
			M[i * a + in] = 1.0;
	}
	pspace_kron_gemm(0, 0, rows, a, a, 1.0, M, a, e->UC[l], a, 0.0, P, a, threads);
	/* Q_k = G_k U_G for every output. */
	for (uint32_t k = 0; k < K; k++)
		pspace_kron_gemm(0, 0, rows, out, out, 1.0, grads + (uint64_t)k * ldk * T * out,
		                 out, e->UR[l], out, 0.0, Q + (uint64_t)k * rows * out, out,
		                 threads);
	if (T == 1) {
		/* acc += W^T P2: W (nx x out) in M, P2 = P .* P in place. */
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t o = 0; o < out; o++) {
				double s = 0;

				for (uint32_t k = 0; k < K; k++) {
					double q = Q[((uint64_t)k * nx + x) * out + o];

					s += q * q;
				}
				M[x * out + o] = s;
			}
		for (uint64_t i = 0; i < nx * a; i++)
			P[i] *= P[i];
		pspace_kron_gemm(1, 0, out, a, nx, 1.0, M, out, P, a, 1.0, acc, a, threads);
		return;
	}
	for (uint32_t k = 0; k < K; k++)
		for (uint64_t x = 0; x < nx; x++) {
			pspace_kron_gemm(1, 0, out, a, T, 1.0, Q + ((uint64_t)k * nx + x) * T * out,
			                 out, P + x * T * a, a, 0.0, M, a, threads);
			for (uint64_t i = 0; i < out * a; i++)
				acc[i] += M[i] * M[i];
		}
}

int pspace_ekfac_update_add_layer_batch(pspace_mat *m, const pspace_exec *ex, size_t layer,
                                        uint32_t K, uint64_t nx, uint64_t T, const double *acts,
                                        const double *grads)
{
	const char *fn = "pspace_ekfac_update_add_layer";
	const pspace_kron_layer *g;
	double *P = NULL, *Q = NULL, *M = NULL;
	uint64_t out, a, per, xc, msz;
	pspace_exec x;
	pspace_ekfac *e;
	int rc = started_layer(m, fn, layer, &e, &g);

	if (rc != 0)
		return rc;
	if (g->rdiag)
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "%s: layer %s is an embedding (use pspace_ekfac_update_add)",
		                      fn, g->name);
	if (K == 0 || nx == 0 || T == 0)
		return 0;
	if (!acts || !grads)
		return pspace_err_set(PSPACE_EINVAL, "%s: layer %s: activations or gradients NULL",
		                      fn, g->name);
	out = g->nr;
	a = g->nc;
	if (T > UINT64_MAX / 8 / (a + (uint64_t)K * out + 1))
		return pspace_err_set(PSPACE_EINVAL, "%s: layer %s: T = %llu too large", fn,
		                      g->name, (unsigned long long)T);
	pspace_exec_resolve(ex, &x);
	/* Examples per chunk: P, Q and the activations with their ones within half the budget. */
	per = T * (2 * a + (uint64_t)K * out) * sizeof(double);
	xc = x.mem_budget / 2 / per;
	xc = xc == 0 ? 1 : (xc > nx ? nx : xc);
	msz = xc * T * a;
	if (T > 1 && out * a > msz)
		msz = out * a;
	if (T == 1 && xc * out > msz)
		msz = xc * out;
	P = pspace_kron_alloc(xc * T * a);
	Q = pspace_kron_alloc(xc * T * K * out);
	M = pspace_kron_alloc(msz);
	if (!P || !Q || !M)
		rc = pspace_err_set(PSPACE_ENOMEM, "%s: layer %s: out of memory", fn, g->name);
	for (uint64_t x0 = 0; rc == 0 && x0 < nx; x0 += xc) {
		uint64_t k = nx - x0 < xc ? nx - x0 : xc;

		add_tensors(e, x.threads, layer, K, k, nx, T, acts + x0 * T * g->in,
		            grads + x0 * T * out, P, Q, M);
	}
	free(M);
	free(Q);
	free(P);
	return rc;
}

int pspace_ekfac_update_add_layer(pspace_mat *m, const pspace_exec *ex, size_t layer, uint32_t K,
                                  uint64_t T, const double *acts, const double *grads)
{
	return pspace_ekfac_update_add_layer_batch(m, ex, layer, K, 1, T, acts, grads);
}

int pspace_ekfac_update_end(pspace_mat *m, uint64_t n)
{
	pspace_ekfac *e;
	int rc = started(m, "pspace_ekfac_update_end", &e);

	if (rc != 0)
		return rc;
	if (n == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_ekfac_update_end: n = 0");
	for (size_t l = 0; l < e->n; l++) {
		for (uint64_t i = 0; i < e->geo[l].nr * e->geo[l].nc; i++)
			e->acc[l][i] /= (double)n;
		free(e->S[l]);
		e->S[l] = e->acc[l];
		e->acc[l] = NULL;
	}
	free(e->acc);
	e->acc = NULL;
	e->updated = 1;
	pspace_ekfac_drop_inverse(e);
	return 0;
}

int pspace_ekfac_is_updated(const pspace_mat *m)
{
	int rc = pspace_ekfac_check(m, "pspace_ekfac_is_updated");

	return rc != 0 ? rc : ((const pspace_ekfac *)m)->updated;
}
