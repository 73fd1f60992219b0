/*
 * pspace/refnet.h - reference networks: small MLPs and CNNs with seeded
 * random weights and synthetic data whose Jacobian rows and layer tensors
 * are computed on the fly, for building and checking Fisher matrices
 * without an external framework.
 *
 * Threads: a pspace_refnet and the sources made from it share the
 * network's scratch: use them from one thread at a time.
 */
#ifndef PSPACE_REFNET_H
#define PSPACE_REFNET_H

#include "pspace/common.h"
#include "pspace/layout.h"
#include "pspace/source.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Fisher variants (README, Formulas: the reference networks' variants). */
typedef enum pspace_variant {
	PSPACE_VARIANT_CLASSIF_LOGITS = 1, /**< exact: Cholesky of diag(p) - p p^T, K = C - 1 */
	PSPACE_VARIANT_MC = 2,             /**< Monte-Carlo: K = samples drawn from p */
	PSPACE_VARIANT_REGRESSION = 3,     /**< Gauss-Newton: K = outputs, identity noise */
	PSPACE_VARIANT_EMPIRICAL = 4,      /**< gradient of the loss at the true label, K = 1 */
} pspace_variant;

typedef struct pspace_refnet pspace_refnet;

/** What network, data and variant. */
typedef struct pspace_refnet_opts {
	/**
	 * "mlp:IN,H1,...,C" (linear + activation layers, C outputs) or
	 * "cnn:C0xHxW,CH1,...,C" (3x3 conv2d + relu layers with CHi channels,
	 * stride 1, no padding, then a linear layer to C outputs).
	 */
	const char *spec;
	const char *activation; /**< "tanh" or "relu"; NULL: tanh (MLP), relu (CNN) */
	uint64_t examples;      /**< n */
	pspace_variant variant;
	uint32_t mc_samples; /**< for PSPACE_VARIANT_MC */
	uint64_t seed;       /**< weights, data and labels */
	int same_input;      /**< every example has the same input (KFAC then equals BlockDiag on
	                          layers with one output location) */
} pspace_refnet_opts;

/**
 * Creates a reference network with random weights and synthetic data, all
 * drawn from opts->seed. Free with pspace_refnet_free(). @return 0,
 * PSPACE_EINVAL (bad spec, activation or variant, no examples) or
 * PSPACE_ENOMEM.
 */
PSPACE_API int pspace_refnet_create(pspace_refnet **out, const pspace_refnet_opts *opts);
/** Frees a network; its sources, layout and parameters become invalid. NULL is accepted. */
PSPACE_API void pspace_refnet_free(pspace_refnet *net);
/**
 * @return its layout (layers named fc1, fc2, ... / conv1, ..., fc;
 * borrowed, valid while @p net lives).
 */
PSPACE_API const pspace_layout *pspace_refnet_layout(const pspace_refnet *net);
/**
 * Fills @p out with a Jacobian-row source over the network's examples
 * (valid while @p net lives; nothing to close). Rows are computed on each read (one forward and K
 * backward passes per example) and do not depend on how the examples are batched. The sources of
 * one network share its scratch: read them from one thread at a time.
 */
PSPACE_API int pspace_refnet_jacobian(pspace_jac_source *out, pspace_refnet *net);
/** Fills @p out with a layer-tensor source over the network's examples (as the Jacobian source). */
PSPACE_API int pspace_refnet_layers(pspace_layer_source *out, pspace_refnet *net);
/**
 * The network's outputs (C values) for example @p x with parameters
 * @p theta (d values, layout order), or with its own parameters if
 * @p theta is NULL. @return 0, PSPACE_EINVAL (x out of range) or
 * PSPACE_ENOMEM.
 */
PSPACE_API int pspace_refnet_forward(pspace_refnet *net, const double *theta, uint64_t x,
                                     double *out);
/**
 * The network's parameters: d values in layout order, owned by @p net and
 * valid while it lives. They may be changed in place (to evaluate the
 * Fisher at other weights): every later read of the network's sources and
 * pspace_refnet_forward() with theta NULL use the values as they are then.
 * The synthetic inputs and the labels do not depend on them.
 */
PSPACE_API double *pspace_refnet_params(pspace_refnet *net);
/**
 * *out = the true label (0..C-1) of example @p x, as the empirical variant
 * uses it. @return 0 or PSPACE_EINVAL (x out of range).
 */
PSPACE_API int pspace_refnet_label(uint32_t *out, const pspace_refnet *net, uint64_t x);

#ifdef __cplusplus
}
#endif
#endif
