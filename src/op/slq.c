/*
 * Lazy operators: stochastic Lanczos quadrature for log det(A + l I).
 * For a Rademacher probe z (||z||^2 = d), m Lanczos steps from z / ||z||
 * give a tridiagonal T = Y diag(theta) Y^T, and z^T log(A + l I) z is
 * approximated by the m-point Gauss quadrature d sum_k Y[0][k]^2 log theta_k;
 * the mean over probes estimates the trace of log(A + l I), its sample
 * standard deviation / sqrt(probes) is the standard error reported (the
 * quadrature error is small next to it once m passes a few dozen steps
 * for a well-conditioned matrix). The probes of a batch share one mm per
 * step; each keeps its Lanczos basis for full reorthogonalization, so a
 * batch is as large as the memory budget allows.
 */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

/* Work of one batch of b probes of m steps: bases Q (b, m, d), W (b, d), T's entries. */
typedef struct slq_work {
	uint64_t d;
	uint32_t m, b;
	double *Q, *W, *alpha, *beta, *theta, *e, *Y;
	uint32_t *len;
} slq_work;

/* One probe's quadrature from its tridiagonal T (n steps): d sum_k Y[0][k]^2 log theta_k. */
static int quadrature(slq_work *w, uint32_t j, double *out)
{
	uint32_t n = w->len[j];
	double s = 0;
	lapack_int info;

	memcpy(w->theta, w->alpha + (size_t)j * w->m, n * sizeof(double));
	if (n > 1)
		memcpy(w->e, w->beta + (size_t)j * w->m, (n - 1) * sizeof(double));
	info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', (lapack_int)n, w->theta, w->e, w->Y,
	                     (lapack_int)n);
	if (info != 0)
		return pspace_err_set(PSPACE_ENUMERIC, "op: SLQ: LAPACKE_dstev failed (info %d)",
		                      (int)info);
	for (uint32_t k = 0; k < n; k++) {
		double y0 = w->Y[(size_t)k * n];

		if (!(w->theta[k] > 0))
			return pspace_err_set(
			    PSPACE_ENUMERIC,
			    "op: SLQ log-determinant: Ritz value %g: the matrix plus "
			    "damping is not positive definite; add damping",
			    w->theta[k]);
		s += y0 * y0 * log(w->theta[k]);
	}
	*out = (double)w->d * s;
	return 0;
}

/* Lanczos step i of every probe of the batch: W holds A q_i; writes q_{i+1}. */
static void step(slq_work *w, uint32_t b, uint32_t i, double damping)
{
	uint64_t d = w->d;

	for (uint32_t j = 0; j < b; j++) {
		double *Qj = w->Q + (size_t)j * w->m * d, *q = Qj + (size_t)i * d;
		double *v = w->W + (size_t)j * d, a, nb;

		if (w->len[j] <= i)
			continue; /* broke down earlier: an exact quadrature already */
		pspace_vec_axpy(d, damping, q, v);
		a = pspace_vec_dot(d, q, v);
		w->alpha[(size_t)j * w->m + i] = a;
		/* full reorthogonalization, twice (classical Gram-Schmidt) */
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t t = 0; t <= i; t++) {
				const double *qt = Qj + (size_t)t * d;

				pspace_vec_axpy(d, -pspace_vec_dot(d, qt, v), qt, v);
			}
		nb = pspace_vec_nrm2(d, v);
		if (i + 1 == w->m)
			continue;
		if (!(nb > 1e-12 * (fabs(a) > 0 ? fabs(a) : 1))) {
			w->len[j] = i + 1;
			memset(q + d, 0, d * sizeof(double));
			continue;
		}
		w->beta[(size_t)j * w->m + i] = nb;
		for (uint64_t p = 0; p < d; p++)
			q[d + p] = v[p] / nb;
	}
}

int op_slq_logdet(const op_fold *A, const pspace_exec *ex, double damping, uint32_t probes,
                  uint32_t steps, uint64_t seed, double *est, double *se)
{
	slq_work w;
	uint64_t d = A->d;
	size_t per;
	uint32_t batch, done = 0, b;
	double mean = 0, m2 = 0, v = 0, delta;
	int rc = 0;

	memset(&w, 0, sizeof(w));
	if (probes == 0 || steps == 0)
		return pspace_err_set(PSPACE_EINVAL, "op: SLQ with 0 probes or steps");
	w.d = d;
	w.m = steps > d ? (uint32_t)d : steps;
	per = ((size_t)w.m + 1) * d * sizeof(double) + op_fold_scratch(A);
	batch = op_budget(ex) / per > probes ? probes : (uint32_t)(op_budget(ex) / per);
	batch = batch ? batch : 1;
	w.Q = malloc((size_t)batch * w.m * d * sizeof(double));
	w.W = malloc((size_t)batch * d * sizeof(double));
	w.alpha = calloc((size_t)batch * w.m, sizeof(double));
	w.beta = calloc((size_t)batch * w.m, sizeof(double));
	w.theta = malloc(w.m * sizeof(double));
	w.e = malloc(w.m * sizeof(double));
	w.Y = malloc((size_t)w.m * w.m * sizeof(double));
	w.len = malloc(batch * sizeof(uint32_t));
	if (!w.Q || !w.W || !w.alpha || !w.beta || !w.theta || !w.e || !w.Y || !w.len) {
		rc = pspace_err_set(PSPACE_ENOMEM,
		                    "op: SLQ: out of memory for %u probes of %u steps",
		                    (unsigned)batch, (unsigned)w.m);
		goto out;
	}
	while (done < probes) {
		b = probes - done < batch ? probes - done : batch;
		for (uint32_t j = 0; j < b; j++) {
			double *q = w.Q + (size_t)j * w.m * d;

			pspace_vec_rademacher(d, op_probe_seed(seed, done + j), q);
			pspace_vec_scale(d, 1.0 / sqrt((double)d), q);
			w.len[j] = w.m;
		}
		for (uint32_t i = 0; i < w.m; i++) {
			/* the i-th basis vectors of the b probes lie m * d apart */
			rc = op_fold_apply(A, ex, b, 1.0, w.Q + (size_t)i * d, (size_t)w.m * d, w.W,
			                   d, 0);
			if (rc)
				goto out;
			step(&w, b, i, damping);
		}
		for (uint32_t j = 0; j < b; j++) {
			rc = quadrature(&w, j, &v);
			if (rc)
				goto out;
			delta = v - mean;
			mean += delta / (double)(done + j + 1);
			m2 += delta * (v - mean);
		}
		done += b;
	}
	*est = mean;
	*se = probes > 1 ? sqrt(m2 / (double)(probes - 1) / (double)probes) : INFINITY;
out:
	free(w.len);
	free(w.Y);
	free(w.e);
	free(w.theta);
	free(w.beta);
	free(w.alpha);
	free(w.W);
	free(w.Q);
	return rc;
}
