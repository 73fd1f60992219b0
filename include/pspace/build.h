/*
 * pspace/build.h - building Fisher matrices from gradients: NumPy input,
 * gradient sources, builders for every representation, and the built-in
 * reference networks (SPEC 2, 3 and 7).
 *
 * Data is streamed in batches of examples, never held whole. F is
 * normalized by the total number of examples n, whatever the batch sizes.
 */
#ifndef PSPACE_BUILD_H
#define PSPACE_BUILD_H

#include "pspace/factored.h"
#include "pspace/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- NumPy .npy files ------------------------------------------------------ */

typedef struct pspace_npy pspace_npy;

/** Header of an .npy file, plain data. */
typedef struct pspace_npy_info {
	pspace_dtype dtype; /**< PSPACE_F32, PSPACE_F64 or PSPACE_I64 */
	int ndim;           /**< 0..4 */
	uint64_t shape[4];
	uint64_t count;       /**< product of shape */
	uint64_t data_offset; /**< bytes before the data */
	int version;          /**< format version 1, 2 or 3 */
} pspace_npy_info;

/**
 * Opens an .npy file (versions 1-3, little-endian '<f4', '<f8' or '<i8',
 * C order) and checks that the file holds all the data. Errors name the
 * file and what is wrong: PSPACE_ENOTFOUND, PSPACE_EFORMAT (bad magic,
 * header, Fortran order, big-endian or other dtype, truncated data).
 */
PSPACE_API int pspace_npy_open(pspace_npy **out, const char *path);
/** Closes; NULL is accepted. */
PSPACE_API void pspace_npy_close(pspace_npy *f);
/** @return the header. */
PSPACE_API const pspace_npy_info *pspace_npy_info_of(const pspace_npy *f);
/** @return the path the file was opened with. */
PSPACE_API const char *pspace_npy_path(const pspace_npy *f);
/** Reads @p count elements from flat element index @p first, converted to double. */
PSPACE_API int pspace_npy_read(pspace_npy *f, uint64_t first, uint64_t count, double *out);
/** Reads @p count elements as int64 (I64 files; float files must hold integers). */
PSPACE_API int pspace_npy_read_i64(pspace_npy *f, uint64_t first, uint64_t count, int64_t *out);
/**
 * Writes an .npy file (version 1, C order) of @p dtype (F32, F64 or I64)
 * from doubles (I64: @p data is read as int64_t). Written to a temporary
 * name and renamed, so a failed write leaves no partial file.
 */
PSPACE_API int pspace_npy_write(const char *path, pspace_dtype dtype, int ndim,
                                const uint64_t *shape, const void *data);

/* ---- gradient sources ------------------------------------------------------ */

/**
 * Jacobian rows (SPEC 2): J[k, x, :] is the gradient of output k for
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
 * A source over one or more .npy files of shape (K, n_i, d) or (n_i, d),
 * concatenated along examples (K and d must agree; checked against
 * @p layout when not NULL). Free with pspace_jac_source_npy_close().
 */
PSPACE_API int pspace_jac_source_npy(pspace_jac_source *out, const char *const *paths,
                                     size_t npaths, const pspace_layout *layout);
PSPACE_API void pspace_jac_source_npy_close(pspace_jac_source *src);

/**
 * Layer tensors of one layer for a batch of examples (SPEC 2).
 * Linear / conv: acts (nx, T, a_in) with a_in = in (patches channel-major,
 * matching weight.view(out, -1)), grads (K, nx, T, out); T = 1 for plain
 * linear layers. Embedding: ids (nx, T) int64, grads (K, nx, T, dim).
 * Norm and generic layers have no layer tensors (use Jacobian rows).
 */
typedef struct pspace_layer_batch {
	uint64_t T;          /**< output locations */
	const double *acts;  /**< linear/conv: nx * T * in values, else NULL */
	const int64_t *ids;  /**< embedding: nx * T ids, else NULL */
	const double *grads; /**< K * nx * T * out values */
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
 * A source over directories holding <layer>.acts.npy and <layer>.grads.npy
 * for every layer of @p layout, concatenated along examples.
 */
PSPACE_API int pspace_layer_source_dirs(pspace_layer_source *out, const pspace_layout *layout,
                                        const char *const *dirs, size_t ndirs);
PSPACE_API void pspace_layer_source_dirs_close(pspace_layer_source *src);

/* ---- builders ---------------------------------------------------------------- */

/** What to build and how. */
typedef struct pspace_build_opts {
	pspace_kind kind;  /**< dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac, mixed */
	const char *mixed; /**< for PSPACE_KIND_MIXED: the per-layer choice, e.g.
	                        "linear,conv1d,conv2d=ekfac;*=blockdiag" (README) */
	pspace_write_opts write; /**< tiles of Dense/BlockDiag: codec, tile edge */
	pspace_exec exec;        /**< threads and memory budget */
	uint64_t batch;          /**< examples per batch read from the source; 0 = auto */
	int resume;              /**< resume an interrupted Dense/BlockDiag build */
	/** Progress, if not NULL: (done, total) in units of work the builder chooses. */
	void (*progress)(void *ud, const char *stage, uint64_t done, uint64_t total);
	void *progress_ud;
} pspace_build_opts;

/** Fills @p o with the defaults (dense, store tile defaults, all cores, 1 GiB). */
PSPACE_API void pspace_build_opts_default(pspace_build_opts *o);

/**
 * Builds matrix @p name of kind o->kind in @p s from Jacobian rows.
 * Dense and BlockDiag are built out of core when they exceed
 * o->exec.mem_budget: the source is read once per band of tile rows that
 * fits the budget and every tile is written once (a symmetric rank-k update
 * on BLIS kernels). The whole build is transactional: until it completes,
 * the matrix is reported incomplete. KFAC needs layer tensors
 * (PSPACE_ENOTSUP here). EKFAC: the diagonal update of the existing EKFAC
 * matrix @p name (built from layer tensors) from the exact per-example
 * gradients the rows are; the updated matrix replaces it.
 */
PSPACE_API int pspace_build_jacobian(pspace_store *s, const char *name, const pspace_layout *layout,
                                     const pspace_jac_source *src, const pspace_build_opts *o);

/**
 * Builds matrix @p name from layer tensors: KFAC, EKFAC (factors, their
 * eigendecomposition, then the diagonal update in a second pass over the
 * source), and Diag, QuasiDiag, BlockDiag from the per-example gradients
 * the tensors define (sum_t g_t [a_t; 1]^T).
 */
PSPACE_API int pspace_build_layers(pspace_store *s, const char *name, const pspace_layout *layout,
                                   const pspace_layer_source *src, const pspace_build_opts *o);

/* ---- reference networks ------------------------------------------------------ */

/** Fisher variants (SPEC 7). */
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
	int same_input;      /**< every example has the same input (tests: KFAC = BlockDiag) */
} pspace_refnet_opts;

/** Creates a reference network with random weights and synthetic data. */
PSPACE_API int pspace_refnet_create(pspace_refnet **out, const pspace_refnet_opts *opts);
PSPACE_API void pspace_refnet_free(pspace_refnet *net);
/** @return its layout (layers named fc1, fc2, ... / conv1, ..., fc). */
PSPACE_API const pspace_layout *pspace_refnet_layout(const pspace_refnet *net);
/**
 * A Jacobian-row source over the network's examples (valid while @p net
 * lives). Rows are computed on each read (one forward and K backward passes
 * per example) and do not depend on how the examples are batched. The
 * sources of one network share its scratch: read them from one thread at a
 * time.
 */
PSPACE_API int pspace_refnet_jacobian(pspace_refnet *net, pspace_jac_source *out);
/** A layer-tensor source over the network's examples (as the Jacobian source). */
PSPACE_API int pspace_refnet_layers(pspace_refnet *net, pspace_layer_source *out);
/** The network's outputs (C values) for example @p x with parameters @p theta (d). */
PSPACE_API int pspace_refnet_forward(pspace_refnet *net, const double *theta, uint64_t x,
                                     double *out);
/** The current parameters (d values, layout order); writable (tests perturb them). */
PSPACE_API double *pspace_refnet_params(pspace_refnet *net);
/** The true label (0..C-1) of example @p x, as the empirical variant uses it. */
PSPACE_API int pspace_refnet_label(const pspace_refnet *net, uint64_t x, uint32_t *out);

#ifdef __cplusplus
}
#endif
#endif
