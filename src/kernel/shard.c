/*
 * The streaming engine's side of sharded stores (kernel/shard.h): a
 * sharded matrix's manifest checked against its store's hooks, and the
 * kernels whose results are summed over the ranks.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"

int pspace_tiled_sum(const pspace_tiled *t, double *buf, size_t n, int rc)
{
	const pspace_shard_hooks *h;

	if (!t || !t->sharded)
		return rc;
	h = pspace_store_shard(t->s);
	if (rc != 0)
		memset(buf, 0, n * sizeof(*buf));
	return h->sum(h->ud, buf, n, rc);
}

int pspace_tiled_whole(const pspace_tiled *t, const char *what)
{
	if (!t->sharded)
		return 0;
	return pspace_err_set(PSPACE_ENOTSUP,
	                      "%s of matrix %s: not done on a sharded matrix (it needs the whole "
	                      "matrix on one rank)",
	                      what, t->info.name);
}

/* Y += Z, k rows of d. */
static void rows_add(uint64_t d, uint32_t k, const double *Z, double *Y, size_t ldy)
{
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < d; i++)
			Y[j * ldy + i] += Z[j * d + i];
}

/* A zeroed k x d buffer, or NULL with the error set. */
static double *zeros(uint64_t d, uint32_t k)
{
	double *Z = calloc((size_t)d * k + 1, sizeof(*Z));

	if (!Z)
		pspace_err_set(PSPACE_ENOMEM, "out of memory for %u vectors of %llu", k,
		               (unsigned long long)d);
	return Z;
}

int pspace_shard_mm_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                          const pspace_exec *ex, uint32_t k, const double *X, size_t ldx, double *Y,
                          size_t ldy)
{
	uint64_t d;
	double *Z;
	int rc;

	if (!t || n == 0 || !t[0] || !t[0]->sharded) {
		if (n == 1 && t && t[0])
			return pspace_stream_mm(t[0], ex, k, alpha[0], X, ldx, Y, ldy);
		return pspace_stream_mm_multi(t, n, alpha, ex, k, X, ldx, Y, ldy);
	}
	d = t[0]->info.d;
	Z = zeros(d, k);
	if (!Z)
		return PSPACE_ENOMEM;
	rc = n == 1 ? pspace_stream_mm(t[0], ex, k, alpha[0], X, ldx, Z, d)
	            : pspace_stream_mm_multi(t, n, alpha, ex, k, X, ldx, Z, d);
	rc = pspace_tiled_sum(t[0], Z, (size_t)d * k, rc);
	if (rc == 0)
		rows_add(d, k, Z, Y, ldy);
	free(Z);
	return rc;
}

int pspace_shard_mm(const pspace_tiled *t, const pspace_exec *ex, uint32_t k, double alpha,
                    const double *X, size_t ldx, double *Y, size_t ldy)
{
	const pspace_tiled *one[1] = {t};

	return pspace_shard_mm_multi(one, 1, &alpha, ex, k, X, ldx, Y, ldy);
}

int pspace_shard_diag(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	int rc = pspace_stream_diag(t, ex, out);

	return t && out ? pspace_tiled_sum(t, out, t->info.d, rc) : rc;
}

int pspace_shard_trace(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	int rc = pspace_stream_trace(t, ex, out);

	return out ? pspace_tiled_sum(t, out, 1, rc) : rc;
}

int pspace_shard_frob2(const pspace_tiled *t, const pspace_exec *ex, double *out)
{
	int rc = pspace_stream_frob2(t, ex, out);

	return out ? pspace_tiled_sum(t, out, 1, rc) : rc;
}

int pspace_shard_frob2_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                             const pspace_exec *ex, double *frob2, double *trace, double *diag)
{
	double two[2];
	int rc = pspace_stream_frob2_multi(t, n, alpha, ex, frob2, trace, diag);

	if (!t || n == 0 || !t[0] || !t[0]->sharded || !frob2 || !trace)
		return rc;
	two[0] = *frob2;
	two[1] = *trace;
	rc = pspace_tiled_sum(t[0], two, 2, rc);
	if (diag)
		rc = pspace_tiled_sum(t[0], diag, t[0]->info.d, rc);
	*frob2 = two[0];
	*trace = two[1];
	return rc;
}

int pspace_shard_dense(const pspace_tiled *t, const pspace_exec *ex, uint32_t block, double *out,
                       size_t ld)
{
	uint64_t dim = block == UINT32_MAX       ? t->info.d
	               : block < t->info.nblocks ? t->block_dim[block]
	                                         : 0;
	int rc = pspace_stream_dense(t, ex, block, out, ld);

	if (!t->sharded)
		return rc;
	if (ld == dim)
		return pspace_tiled_sum(t, out, (size_t)dim * dim, rc);
	/* the rows one at a time; every rank has the same rc to pass on from here */
	for (uint64_t i = 0; i < dim; i++)
		rc = pspace_tiled_sum(t, out + i * ld, dim, rc);
	return rc;
}
