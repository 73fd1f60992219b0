/*
 * Test helper for the builders: an in-memory layer-tensor source over
 * random tensors, and float64 references computed from the tensors by the
 * definitions of the README's Input formats and Formulas (plain loops, LAPACK dsyev for the factor
 * eigenvectors): per-example gradients, KFAC factors, dense KFAC and EKFAC.
 */
#ifndef PSPACE_TESTS_LREF_H
#define PSPACE_TESTS_LREF_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/build.h"

/** Layer tensors of up to 3 layers, all in memory; batches are copies. */
typedef struct lref_src {
	const pspace_layout *l;
	uint64_t n;
	uint32_t K;
	uint64_t T[3];
	double *acts[3], *grads[3]; /* (n, T, in); (K, n, T, out) */
	int64_t *ids;               /* (n, T) of the embedding layer */
	double *bact[3], *bgrad[3]; /* batch copies */
	int64_t *bids;
} lref_src;

/** Random tensors; @p same_input: every example has the same activations. */
void lref_src_init(lref_src *s, pspace_layer_source *src, const pspace_layout *l, uint64_t n,
                   uint32_t K, const uint64_t *T, int same_input, uint64_t seed);
void lref_src_free(lref_src *s);
/** Per-example gradient rows (K n x d) by the definition (malloc'd). */
double *lref_rows(const lref_src *s);
/** KFAC factors of layer @p i: A (a x a, or the num diagonal of an embedding), G. */
void lref_factors(const lref_src *s, size_t i, double **A, double **G);
/** Dense KFAC (d x d) in the canonical parameter order. */
double *lref_kfac(const lref_src *s);
/** Dense EKFAC with S from the @p rows per-example gradient rows @p R. */
double *lref_ekfac(const lref_src *s, const double *R, uint64_t rows);

/** An in-memory Jacobian source: rows scale * J, J (K, n, d), with a failure and a kill hook. */
typedef struct lref_jsrc {
	uint64_t n, d;
	uint32_t K;
	double *J;        /**< (K, n, d), malloc'd: the caller frees */
	double scale;     /**< rows are scale * J */
	uint64_t reads;   /**< read calls */
	uint64_t passes;  /**< reads at x0 = 0 */
	uint64_t fail_at; /**< fail on the first read of this pass at x0 > 0 (0 = never) */
	int stop_pass;    /**< pass at which to signal @p fd and wait to be killed (0 = never) */
	int fd;
} lref_jsrc;

/**
 * Fills @p j with random rows from @p seed (columns of different scales,
 * scale 1, no hooks) and points @p src at it.
 */
void lref_jsrc_init(lref_jsrc *j, pspace_jac_source *src, uint64_t n, uint32_t K, uint64_t d,
                    uint64_t seed);

/** Layers with and without bias and a norm layer (rows only): LREF_JD parameters. */
extern const char lref_jlayout[];
#define LREF_JD 50

/** Parses layout @p text (asserts). Caller frees. */
pspace_layout *lref_parse(const char *text);
/** Zeroes the entries of F (d x d) between different layers of @p l. */
void lref_keep_blocks(const pspace_layout *l, double *F);
/** Build options for @p kind with f64 tiles of edge 8 and 2 threads. */
void lref_opts_f64(pspace_build_opts *o, pspace_kind kind);

#endif
