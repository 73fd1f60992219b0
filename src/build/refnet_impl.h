/*
 * Internal: the reference networks (README, build). refnet_data.c draws
 * the synthetic data, refnet_pass.c runs the per-example forward and
 * backward passes over it, and refnet.c (above both) owns creation and the
 * sources.
 *
 * Every network is a chain of layers z_l = W_l a_l + b_l, where a_l holds
 * the layer's input as T_l rows of in_l values (T_l = 1 for linear layers,
 * the output locations for 3x3 convolutions, whose rows are the unfolded
 * patches, channel-major). Each input value is an element of the previous
 * layer's per-example output (T_{l-1} x out_{l-1}, location-major) passed
 * through the activation, or of the raw input for the first layer; a
 * per-layer index map says which, so the forward pass gathers and the
 * backward pass scatters (im2col / col2im, flatten, identity) with one
 * piece of code.
 */
#ifndef PSPACE_SRC_BUILD_REFNET_IMPL_H
#define PSPACE_SRC_BUILD_REFNET_IMPL_H

#include <stdint.h>

#include "pspace/refnet.h"

/** Activations applied to a layer's output before the next layer. */
typedef enum rn_act {
	RN_ACT_NONE = 0,
	RN_ACT_TANH = 1,
	RN_ACT_RELU = 2,
} rn_act;

/** Random streams: each (seed, stream, example) draws independent numbers. */
enum rn_stream {
	RN_STREAM_WEIGHTS = 1,
	RN_STREAM_INPUT = 2,
	RN_STREAM_LABEL = 3,
	RN_STREAM_MC = 4,
};

typedef struct rn_layer {
	uint32_t T;       /**< rows of the layer input (output locations) */
	uint32_t in;      /**< values per row (linear: in; conv: CIN * 9) */
	uint32_t out;     /**< outputs per location */
	rn_act act;       /**< applied to this layer's output */
	uint64_t offset;  /**< first parameter (weight (out, in) then bias) */
	uint32_t *map;    /**< T * in indices into the previous output / the input */
	uint32_t prev_sz; /**< size of what map indexes: T_{l-1} * out_{l-1}, or the input */
} rn_layer;

/** Per-example scratch of one pass (sized for the network's K). */
typedef struct rn_work {
	double **a;  /**< per layer: T * in inputs */
	double **z;  /**< per layer: T * out pre-activations */
	double **g;  /**< per layer: K * T * out output gradients (row k at k * T * out) */
	double *D;   /**< K * max(T * in): gradient w.r.t. a layer's input */
	double *u;   /**< the raw input */
	double *v;   /**< K * C seeds at the logits */
	double *p;   /**< C probabilities */
	double *fd;  /**< max(T * out): activation derivatives of one layer */
	double *s;   /**< C + 1: suffix sums (classif_logits) */
	uint32_t *q; /**< C: class order (classif_logits) */
} rn_work;

struct pspace_refnet {
	pspace_refnet_opts o;
	char *spec;
	pspace_layout *layout;
	size_t nl;
	rn_layer *L;
	uint32_t in0; /**< input size (C0 * H * W for the CNN) */
	uint32_t C;   /**< classes (outputs) */
	uint32_t K;   /**< rows per example for the variant */
	uint64_t d;
	double *theta;
	rn_work w; /**< scratch of the sources */
	/* layer-source buffers for cap examples */
	uint64_t cap;
	double **acts;
	double **grads;
};

/** @return a generator state for (seed, stream, x). */
uint64_t pspace_rn_rng(uint64_t seed, int stream, uint64_t x);
/** @return a uniform double in [0, 1), advancing @p s. */
double pspace_rn_uniform(uint64_t *s);
/** @return a standard normal, advancing @p s. */
double pspace_rn_normal(uint64_t *s);

/** Allocates @p w for @p net (K rows). @return 0 or PSPACE_ENOMEM. */
int pspace_rn_work_alloc(const pspace_refnet *net, uint32_t K, rn_work *w);
void pspace_rn_work_free(const pspace_refnet *net, rn_work *w);

/** @return the true label of example @p x (uniform in 0..C-1). */
uint32_t pspace_rn_label(const pspace_refnet *net, uint64_t x);

/** Fills w->u with the input of example @p x. */
void pspace_rn_input(const pspace_refnet *net, uint64_t x, double *u);

/** Forward pass of example @p x with parameters @p theta; logits in w->z[nl - 1]. */
void pspace_rn_forward(const pspace_refnet *net, const double *theta, uint64_t x, rn_work *w);

/**
 * The K seed vectors of the variant at the logits of example @p x (after
 * pspace_rn_forward): w->v (K x C), with w->p the softmax.
 */
void pspace_rn_seeds(const pspace_refnet *net, uint64_t x, rn_work *w);

/** Backward passes of the K seeds (after forward and seeds): fills w->g. */
void pspace_rn_backward(const pspace_refnet *net, rn_work *w);

/**
 * Writes the K Jacobian rows of the example in @p w (after backward): row
 * k at out + k * ldk, d values in layout order.
 */
void pspace_rn_rows(const pspace_refnet *net, const rn_work *w, double *out, size_t ldk);

#endif
