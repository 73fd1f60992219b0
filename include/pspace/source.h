/*
 * pspace/source.h - gradient sources: how the builders read a network's
 * gradients, as Jacobian rows or as layer tensors, batch by batch, and the
 * sources over .npy files.
 *
 * A source is plain data: a read callback and its user data. Any code can
 * make one (the reference networks of pspace/refnet.h do); a source can be
 * read any number of times, in batches of any size.
 *
 * Threads: the builders call a source's read from the thread that called
 * them, one call at a time, so a source need not be thread-safe. The .npy
 * Jacobian source holds no buffers and may be read from several threads
 * at once; the layer-directory source may not (its batches share buffers).
 */
#ifndef PSPACE_SOURCE_H
#define PSPACE_SOURCE_H

#include "pspace/common.h"
#include "pspace/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Jacobian rows (README, Input formats): J[k, x, :] is the gradient of output k for
 * example x, as a d-vector. A source can be read any number of times (the
 * out-of-core dense build makes several passes).
 */
typedef struct pspace_jac_source {
	uint64_t examples; /**< n */
	uint32_t outputs;  /**< K */
	uint64_t d;
	/**
	 * Reads examples [x0, x0 + nx): out[(k * nx + x) * ld + p] = J[k, x0 + x, p].
	 * @return 0 or an error (with detail naming the file).
	 */
	int (*read)(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld);
	void *ud;
} pspace_jac_source;

/**
 * Fills @p out with a source over one or more .npy files of shape
 * (K, n_i, d) or (n_i, d), concatenated along examples (K and d must agree;
 * checked against @p layout when not NULL). Close it with
 * pspace_jac_source_npy_close().
 */
PSPACE_API int pspace_jac_source_npy(pspace_jac_source *out, const char *const *paths,
                                     size_t npaths, const pspace_layout *layout);
/** Closes the files of a source made by pspace_jac_source_npy(); NULL is accepted. */
PSPACE_API void pspace_jac_source_npy_close(pspace_jac_source *src);

/**
 * Layer tensors of one layer for a batch of examples (README, Input formats).
 * Linear / conv: acts (nx, T, a_in) with a_in = in (patches channel-major,
 * matching weight.view(out, -1)), grads (K, nx, T, out); T = 1 for plain
 * linear layers. Embedding: ids (nx, T) int64, grads (K, nx, T, dim).
 * Norm and generic layers (and an embedding with a bias) have no layer
 * tensors: the source gives their Jacobian rows instead (@c rows), which
 * every kind but KFAC and EKFAC builds from (in a Mixed: their parts).
 * The builders allocate the array of batches zeroed and never clear it, so
 * a source sets only the fields of its layers.
 */
typedef struct pspace_layer_batch {
	uint64_t T;          /**< output locations (layers with layer tensors) */
	const double *acts;  /**< linear/conv: nx * T * in values, else NULL */
	const int64_t *ids;  /**< embedding: nx * T ids, else NULL */
	const double *grads; /**< K * nx * T * out values */
	/**
	 * Layers without layer tensors: their K * nx per-example gradient rows,
	 * row (k, x) the layer's size values at (k * nx + x) * size, in the
	 * layer's parameter order; NULL for the others. New in 0.3 (sources
	 * written for 0.2 compile unchanged but must be recompiled: this
	 * struct is the element of an array the builder allocates).
	 */
	const double *rows;
} pspace_layer_batch;

/**
 * Layer tensors of all layers of a layout.
 */
typedef struct pspace_layer_source {
	uint64_t examples; /**< n */
	uint32_t outputs;  /**< K */
	/**
	 * Fills batch[L] for every layer L for examples [x0, x0 + nx); the
	 * pointed-to data stays valid until the next read or close.
	 */
	int (*read)(void *ud, uint64_t x0, uint64_t nx, pspace_layer_batch *batch);
	void *ud;
} pspace_layer_source;

/**
 * Fills @p out with a source over directories holding <layer>.acts.npy and
 * <layer>.grads.npy for every layer of @p layout, concatenated along
 * examples. Close it with pspace_layer_source_dirs_close().
 */
PSPACE_API int pspace_layer_source_dirs(pspace_layer_source *out, const pspace_layout *layout,
                                        const char *const *dirs, size_t ndirs);
/** Closes the files of a source made by pspace_layer_source_dirs(); NULL is accepted. */
PSPACE_API void pspace_layer_source_dirs_close(pspace_layer_source *src);

#ifdef __cplusplus
}
#endif
#endif
