/*
 * pspace/vec.h - parameter vectors: plain double arrays of length d, with
 * per-layer views through a layout, and the usual BLAS-1 operations.
 *
 * Several vectors (right-hand sides) are stored one after another: vector j
 * of a batch X starts at X + j * ldx (ldx >= d), i.e. a (k, d) row-major
 * array, as numpy holds a stack of k vectors.
 *
 * Threads: these are pure functions of their arguments (no state), safe
 * from any number of threads on distinct output vectors.
 */
#ifndef PSPACE_VEC_H
#define PSPACE_VEC_H

#include "pspace/common.h"
#include "pspace/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A layer's part of a parameter vector. */
typedef struct pspace_vec_view {
	double *weight; /**< weight_size entries, row-major in the weight shape */
	uint64_t weight_size;
	double *bias; /**< bias_size entries; NULL without bias */
	uint64_t bias_size;
} pspace_vec_view;

/**
 * Fills @p out with the view of layer @p layer of vector @p v (pointers
 * into @p v). @return 0 or PSPACE_EINVAL.
 */
PSPACE_API int pspace_vec_view_layer(pspace_vec_view *out, const pspace_layout *l, size_t layer,
                                     double *v);

/** @return x . y over n entries (compensated summation). */
PSPACE_API double pspace_vec_dot(uint64_t n, const double *x, const double *y);
/** y += a x. */
PSPACE_API void pspace_vec_axpy(uint64_t n, double a, const double *x, double *y);
/** x *= a. */
PSPACE_API void pspace_vec_scale(uint64_t n, double a, double *x);
/**
 * X = a X for the k rows of n values of X (leading dimension ld), with
 * BLAS's beta convention: a == 0 writes zeros without reading X (NaN in X
 * is ignored), a == 1 leaves X untouched.
 */
PSPACE_API void pspace_vec_scale_rows(uint64_t n, uint32_t k, double a, double *X, size_t ld);
/** y = x. */
PSPACE_API void pspace_vec_copy(uint64_t n, const double *x, double *y);
/** x = 0. */
PSPACE_API void pspace_vec_zero(uint64_t n, double *x);
/** @return the Euclidean norm (scaled, no overflow). */
PSPACE_API double pspace_vec_nrm2(uint64_t n, const double *x);
/** @return the largest absolute entry. */
PSPACE_API double pspace_vec_nrminf(uint64_t n, const double *x);
/** @return the sum of absolute entries. */
PSPACE_API double pspace_vec_nrm1(uint64_t n, const double *x);
/** Fills x with standard normal numbers from a seeded generator (reproducible). */
PSPACE_API void pspace_vec_randn(uint64_t n, uint64_t seed, double *x);
/** Fills x with Rademacher (+1/-1) entries from a seeded generator. */
PSPACE_API void pspace_vec_rademacher(uint64_t n, uint64_t seed, double *x);

#ifdef __cplusplus
}
#endif
#endif
