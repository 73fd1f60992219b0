/*
 * Test helper for KFAC and EKFAC: the test layout (a linear with a bias, a
 * linear without, a conv2d with a bias, an embedding), random SPD factors,
 * and float64 dense references built from the definitions in the README's Formulas with this
 * file's own Kronecker products and bias permutation, independent of
 * src/mat/kron/kron.c.
 *
 * Per layer: "rows" are outputs o (nr = out) and "columns" j = 0..a with
 * the bias column last (nc = a); for an embedding rows are ids (nr = num,
 * A diagonal) and columns the dim (nc = dim, G). The layer block in (row,
 * column) order is G (x) A (embedding: A (x) G).
 */
#ifndef PSPACE_TESTS_KREF_H
#define PSPACE_TESTS_KREF_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/factored.h"

#define KREF_MAXL 8

/** The test layout text: fc1 linear 5x4 bias, fc2 linear 3x5 nobias, conv conv2d 3x2x2x2 bias, emb
 * embedding 6x3 nobias. */
extern const char kref_layout_text[];

/** Factors of a KFAC on a layout: A[l] (a x a; num entries for an embedding), G[l]. */
typedef struct kref {
	pspace_layout *layout;
	size_t n;
	size_t d;
	double *A[KREF_MAXL], *G[KREF_MAXL];
} kref;

/** Layer geometry: rows, columns, weight columns, bias, embedding. */
void kref_dims(const pspace_layer *L, size_t *nr, size_t *nc, size_t *in, int *emb);
/** Sizes of A and G of layer L (entries). */
size_t kref_asize(const pspace_layer *L);
size_t kref_gsize(const pspace_layer *L);
/** Canonical index (relative to the layer) of parameter (row o, column c). */
size_t kref_canon(const pspace_layer *L, size_t o, size_t c);

/** Parses the test layout and fills random SPD factors from @p seed (shift on the diagonal). */
void kref_init(kref *k, uint64_t seed, double shift);
void kref_free(kref *k);
/** M = J^T J / m + shift I (n x n, m = n + 2) from @p seed. */
void kref_spd(size_t n, uint64_t seed, double shift, double *M);

/**
 * F (d x d) in canonical order from the factors A, G of each layer (as in
 * kref), block-diagonal across layers; @p plain: in the (row, column) order
 * of each layer (= NNGeometry's interleaved order) instead.
 */
void kref_dense(const pspace_layout *layout, double *const *A, double *const *G, int plain,
                double *F);

/**
 * F (d x d, canonical) of an EKFAC: per layer bases UR (nr x nr row-major,
 * columns = eigenvectors; NULL = identity), UC (nc x nc) and S (nr x nc):
 * block = (UR (x) UC) diag(S) (UR (x) UC)^T.
 */
void kref_ekfac_dense(const pspace_layout *layout, double *const *UR, double *const *UC,
                      double *const *S, double *F);

/** Eigendecomposition by LAPACKE_dsyev: U (columns = eigenvectors, row-major), s ascending. */
void kref_eigh(size_t n, const double *M, double *U, double *s);

/**
 * Damped factors for pi (or sqrt: @p pi_on = 0) damping with @p l:
 * A + pi sqrt(l) I, G + sqrt(l)/pi I (new arrays in Ad, Gd; caller frees).
 */
void kref_damp(const pspace_layout *layout, double *const *A, double *const *G, double l, int pi_on,
               double **Ad, double **Gd);

/** C = A B, n x n. */
void kref_matmul(size_t n, const double *A, const double *B, double *C);

#endif
