/*
 * Test helper for the reference-network tests: creating a network, its
 * dimension and number of classes, and its Jacobian rows.
 */
#ifndef PSPACE_TESTS_RREF_H
#define PSPACE_TESTS_RREF_H

#include <stdint.h>

#include "pspace.h"

/**
 * A reference network from @p spec with activation @p act, @p n examples,
 * Fisher variant @p v (@p mc Monte-Carlo samples), @p seed and
 * @p same (every example the same input). Fails the test (naming the
 * detail) if it cannot be made. Caller frees.
 */
pspace_refnet *rref_make(const char *spec, const char *act, uint64_t n, pspace_variant v,
                         uint32_t mc, uint64_t seed, int same);
/** The number of parameters of @p net. */
uint64_t rref_dim(const pspace_refnet *net);
/** The number of outputs (classes) of @p net: the last layer's first dimension. */
uint32_t rref_nclasses(const pspace_refnet *net);
/**
 * The Jacobian rows of examples [x0, x0 + nx), (K, nx, d) row-major
 * (malloc'd; @p K gets the outputs), read through pspace_refnet_jacobian.
 */
double *rref_rows(pspace_refnet *net, uint64_t x0, uint64_t nx, uint32_t *K);

/** The step of the central differences. */
#define RREF_FD_H 1e-5

/**
 * The logits of example @p x with parameter @p p of @p theta moved by
 * +RREF_FD_H (into @p fp) and by -RREF_FD_H (into @p fm), through
 * pspace_refnet_forward; @p theta is restored.
 */
void rref_fd_logits(pspace_refnet *net, double *theta, uint64_t x, uint64_t p, double *fp,
                    double *fm);

#endif
