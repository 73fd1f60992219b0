/*
 * Lazy operators: Hutchinson's trace estimator, tr(A) ~ mean_j z_j^T A z_j
 * over Rademacher probes z_j. The probes of a batch go through one mm
 * (one pass over each stored matrix per batch); the batch is as large as
 * the memory budget allows. The standard error is that of the mean.
 */
#include <math.h>
#include <stdlib.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

uint64_t op_probe_seed(uint64_t seed, uint64_t j)
{
	uint64_t x = seed ^ (j + 1) * 0x9e3779b97f4a7c15ull;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int op_hutchinson(const op_fold *A, const pspace_exec *ex, uint32_t probes, uint64_t seed,
                  double *est, double *se)
{
	size_t budget = op_budget(ex);
	size_t per = 2 * A->d * sizeof(double) + op_fold_scratch(A);
	uint32_t batch = probes, b, j, done = 0;
	double *Z = NULL, *W = NULL, mean = 0, m2 = 0, v, delta;
	int rc = 0;

	if (probes == 0)
		return pspace_err_set(PSPACE_EINVAL, "op: Hutchinson with 0 probes");
	if ((size_t)batch * per > budget)
		batch = budget / per > 0 ? (uint32_t)(budget / per) : 1;
	Z = malloc((size_t)batch * A->d * sizeof(double));
	W = malloc((size_t)batch * A->d * sizeof(double));
	if (!Z || !W) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for %u probes",
		                    (unsigned)batch);
		goto out;
	}
	while (done < probes) {
		b = probes - done < batch ? probes - done : batch;
		for (j = 0; j < b; j++)
			pspace_vec_rademacher(A->d, op_probe_seed(seed, done + j),
			                      Z + (size_t)j * A->d);
		rc = op_fold_apply(A, ex, b, 1.0, Z, A->d, W, A->d, 0);
		if (rc)
			goto out;
		for (j = 0; j < b; j++) {
			/* Welford: a running mean and sum of squared deviations. */
			v = pspace_vec_dot(A->d, Z + (size_t)j * A->d, W + (size_t)j * A->d);
			delta = v - mean;
			mean += delta / (double)(done + j + 1);
			m2 += delta * (v - mean);
		}
		done += b;
	}
	*est = mean;
	*se = probes > 1 ? sqrt(m2 / (double)(probes - 1) / (double)probes) : INFINITY;
out:
	free(W);
	free(Z);
	return rc;
}
