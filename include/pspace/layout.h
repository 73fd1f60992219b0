/*
 * pspace/layout.h - parameter layouts: the ordered layers of a network and
 * where each layer's weight and bias sit in the flat parameter vector.
 *
 * The flat vector is, layer by layer in order: the weight in row-major order
 * of its shape, then the bias (NNGeometry's and PyTorch's weight.view(-1)
 * order). Layout file format: README, "Layout files".
 *
 * Threads: a pspace_layout is never changed once made, so any number of
 * threads may use one at once; free it only when none does.
 */
#ifndef PSPACE_LAYOUT_H
#define PSPACE_LAYOUT_H

#include "pspace/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PSPACE_LAYER_NAME_MAX 63

/** Layer kinds. Ids are written to disk and never reused. */
typedef enum pspace_layer_kind {
	PSPACE_LAYER_LINEAR = 1,    /**< weight (out, in) */
	PSPACE_LAYER_CONV1D = 2,    /**< weight (out, in, k) */
	PSPACE_LAYER_CONV2D = 3,    /**< weight (out, in, kh, kw) */
	PSPACE_LAYER_EMBEDDING = 4, /**< weight (num, dim) */
	PSPACE_LAYER_NORM = 5,      /**< scale (C) [+ shift (C)]: BatchNorm, LayerNorm, GroupNorm */
	PSPACE_LAYER_GENERIC = 6,   /**< any shape, 1 to 4 dims */
} pspace_layer_kind;

/** One layer, plain data. Offsets are into the flat parameter vector. */
typedef struct pspace_layer {
	char name[PSPACE_LAYER_NAME_MAX + 1];
	pspace_layer_kind kind;
	int ndim;             /**< dims of the weight shape, 1..4 */
	uint64_t shape[4];    /**< weight shape; unused entries 0 */
	int bias;             /**< 1 if the layer has a bias */
	uint64_t offset;      /**< first parameter of the layer */
	uint64_t weight_size; /**< product of shape */
	uint64_t bias_size;   /**< shape[0] if bias, else 0 */
	uint64_t size;        /**< weight_size + bias_size */
} pspace_layer;

typedef struct pspace_layout pspace_layout;

/**
 * Parses layout text. @p filename names the source in error messages
 * ("layout.txt:3: unknown layer kind 'lineer'"). @return 0 or
 * PSPACE_EFORMAT (detail names the file and line), PSPACE_ENOMEM.
 */
PSPACE_API int pspace_layout_parse(pspace_layout **out, const char *text, const char *filename);

/**
 * Reads and parses a layout file of at most 64 MiB. @return as parse
 * (PSPACE_EFORMAT also for a larger file), or PSPACE_ENOTFOUND/EIO.
 */
PSPACE_API int pspace_layout_load(pspace_layout **out, const char *path);

/** A layout of one generic layer of @p d parameters (no bias), named "params". */
PSPACE_API int pspace_layout_flat(pspace_layout **out, uint64_t d);

/** Frees a layout (layers it handed out become invalid); NULL is accepted. */
PSPACE_API void pspace_layout_free(pspace_layout *l);

/**
 * Copies @p l into a new layout *out (the caller frees it with
 * pspace_layout_free()). @return 0, PSPACE_EINVAL (NULL argument) or
 * PSPACE_ENOMEM; *out is NULL on failure.
 */
PSPACE_API int pspace_layout_copy(pspace_layout **out, const pspace_layout *l);

/** @return the number of parameters d. */
PSPACE_API uint64_t pspace_layout_dim(const pspace_layout *l);
/** @return the number of layers. */
PSPACE_API size_t pspace_layout_nlayers(const pspace_layout *l);
/** @return layer @p i (0-based), or NULL if out of range. Valid while @p l lives. */
PSPACE_API const pspace_layer *pspace_layout_layer(const pspace_layout *l, size_t i);
/** Finds a layer by name: *out = its index. @return 0 or PSPACE_ENOTFOUND. */
PSPACE_API int pspace_layout_find(size_t *out, const pspace_layout *l, const char *name);
/** @return the index of the layer holding parameter @p p (p < d). */
PSPACE_API size_t pspace_layout_layer_of(const pspace_layout *l, uint64_t p);

/**
 * Canonical text of @p l (parseable by pspace_layout_parse; equal layouts
 * give equal text) in *out, malloc'd: the caller frees it with free().
 * @return 0, PSPACE_EINVAL (NULL argument) or PSPACE_ENOMEM; *out is NULL
 * on failure.
 */
PSPACE_API int pspace_layout_text(char **out, const pspace_layout *l);

/** @return 1 if both layouts have the same layers, 0 otherwise. */
PSPACE_API int pspace_layout_equal(const pspace_layout *a, const pspace_layout *b);

/**
 * A layout of layer @p i of @p l alone, at offset 0 (the layout of that
 * layer's block of a block-diagonal or Mixed matrix). Free with
 * pspace_layout_free(). @return 0, PSPACE_EINVAL (no such layer) or
 * PSPACE_ENOMEM.
 */
PSPACE_API int pspace_layout_sub(pspace_layout **out, const pspace_layout *l, size_t i);

/**
 * The permutation from NNGeometry's split_weight_bias=False order (per
 * linear/conv layer with a bias: row o holds weights (o, 0..in) then bias o)
 * to the canonical order (weights, then bias): perm[i] = canonical index of
 * interleaved index i. Identity on layers without a bias. @p perm holds d
 * values. @return 0 or PSPACE_EINVAL (NULL argument).
 */
PSPACE_API int pspace_layout_interleave_perm(const pspace_layout *layout, uint64_t *perm);

/** @return "linear", "conv1d", ... or "?" (static strings). */
PSPACE_API const char *pspace_layer_kind_name(pspace_layer_kind k);

#ifdef __cplusplus
}
#endif
#endif
