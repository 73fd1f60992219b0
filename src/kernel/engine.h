/*
 * Internal to src/kernel: the engine entry point behind pspace_stream_run
 * and pspace_stream_multi, with a range of blocks, and helpers the kernels
 * share.
 */
#ifndef PSPACE_SRC_KERNEL_ENGINE_H
#define PSPACE_SRC_KERNEL_ENGINE_H

#include <pthread.h>
#include <stdint.h>

#include "kernel/stream.h"

/** Mutexes a kernel's workers take to add into shared output, one per band modulo this. */
#define PSPACE_STRIPES 64

/**
 * A stripe of the output's locks, on a cache line of its own, so that
 * workers adding to different bands share no lines (nor with the fields
 * they read on every tile).
 */
typedef struct pspace_stripe {
	_Alignas(64) pthread_mutex_t mu;
} pspace_stripe;

/** Initializes the PSPACE_STRIPES mutexes at @p s. */
void pspace_stripes_init(pspace_stripe *s);
/** Destroys the PSPACE_STRIPES mutexes at @p s. */
void pspace_stripes_destroy(pspace_stripe *s);

/** @return the mutex of band @p band. */
static inline pthread_mutex_t *pspace_stripe_mu(pspace_stripe *s, uint64_t band)
{
	return &s[band % PSPACE_STRIPES].mu;
}

/**
 * One pass over blocks [@p bfirst, @p blast] of the @p n matrices @p t
 * (tilings checked by the caller or here). See pspace_stream_multi().
 */
int pspace_stream_blocks(const pspace_tiled *const *t, size_t n, const pspace_exec *ex,
                         const pspace_stream_kernel *k, void *ud, uint32_t bfirst, uint32_t blast);

/** @return the number of worker threads @p ex asks for (0 = online cores), at least 1. */
int pspace_stream_threads(const pspace_exec *ex);

/** @return the memory budget of @p ex in bytes (0 or NULL = 1 GiB). */
size_t pspace_stream_budget(const pspace_exec *ex);

/**
 * C = sum_i alpha[i] T_i over the @p n tiles of one address (a pass of
 * pspace_stream_multi), as doubles, rows x cols with ld = cols; absent
 * tiles count as zero. @return 1 if any tile was present, 0 if none (C is
 * zero then).
 */
int pspace_stream_combine(const pspace_stream_tile *tiles, size_t n, const double *alpha,
                          double *C);

#endif
