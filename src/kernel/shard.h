/*
 * Internal: the streaming engine's side of sharded stores (pspace/shard.h).
 * A sharded matrix's pass visits only its rank's tiles; the kernels below
 * add their contribution to the caller's result summed over the ranks with
 * the store's hook (a buffer zeroed, filled by the pass, summed, added), and
 * behave as the pspace_stream_* kernel of the same name otherwise. Every
 * rank must call them at the same points, which holds when every rank
 * evaluates the same thing: a rank's failure is passed to the sum so that
 * all fail alike.
 */
#ifndef PSPACE_SRC_KERNEL_SHARD_H
#define PSPACE_SRC_KERNEL_SHARD_H

#include "kernel/stream.h"
#include "pspace/shard.h"

/**
 * Reads the manifest of @p t (opened by pspace_tiled_open) and checks it
 * against the hooks of its store: sets t->sharded and its tile-row range.
 * @return 0; PSPACE_ENOTSUP for a sharded matrix in a store without hooks,
 * PSPACE_EINVAL when the ranks disagree or a sharded store holds a matrix
 * without a manifest; a manifest's error.
 */
int pspace_tiled_shard_open(pspace_tiled *t);

/**
 * Sums @p n doubles of @p buf over the ranks when @p t is sharded, with
 * this rank's result @p rc (see pspace_shard_hooks.sum). @return the
 * result of all ranks, or @p rc when @p t is not sharded.
 */
int pspace_tiled_sum(const pspace_tiled *t, double *buf, size_t n, int rc);

/** @return 0, or PSPACE_ENOTSUP naming @p what when @p t is sharded (it needs the whole matrix). */
int pspace_tiled_whole(const pspace_tiled *t, const char *what);

/* The kernels of kernel/stream.h, summed over the ranks for a sharded matrix. */
int pspace_shard_mm(const pspace_tiled *t, const pspace_exec *ex, uint32_t k, double alpha,
                    const double *X, size_t ldx, double *Y, size_t ldy);
int pspace_shard_mm_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                          const pspace_exec *ex, uint32_t k, const double *X, size_t ldx, double *Y,
                          size_t ldy);
int pspace_shard_diag(const pspace_tiled *t, const pspace_exec *ex, double *out);
int pspace_shard_trace(const pspace_tiled *t, const pspace_exec *ex, double *out);
int pspace_shard_frob2(const pspace_tiled *t, const pspace_exec *ex, double *out);
int pspace_shard_frob2_multi(const pspace_tiled *const *t, size_t n, const double *alpha,
                             const pspace_exec *ex, double *frob2, double *trace, double *diag);
int pspace_shard_dense(const pspace_tiled *t, const pspace_exec *ex, uint32_t block, double *out,
                       size_t ld);

#endif
