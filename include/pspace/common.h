/*
 * pspace/common.h - error codes, versions, element types and execution
 * settings shared by every layer of pspace.
 *
 * Threads: everything here may be called from any thread. The error
 * detail (pspace_errdetail) is per thread: each thread sees the detail of
 * its own last failed call. pspace_init() is idempotent and thread-safe;
 * pspace_blis_arch_request() must run before it, from one thread.
 * pspace_exec is plain data, read by the calls it is passed to.
 */
#ifndef PSPACE_COMMON_H
#define PSPACE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PSPACE_BUILDING) && defined(__GNUC__)
#define PSPACE_API __attribute__((visibility("default")))
#else
#define PSPACE_API
#endif

#define PSPACE_VERSION_MAJOR  0
#define PSPACE_VERSION_MINOR  4
#define PSPACE_VERSION_PATCH  0
#define PSPACE_VERSION_STRING "0.4.0"

/** On-disk store format version written into every new store. */
#define PSPACE_FORMAT_VERSION 1

/**
 * Error codes. Every fallible call returns 0 or one of these negative
 * values. The values are fixed: they never change meaning between versions.
 */
enum pspace_error {
	PSPACE_OK = 0,
	PSPACE_EINVAL = -1,      /**< invalid argument or option */
	PSPACE_ENOMEM = -2,      /**< out of memory */
	PSPACE_EIO = -3,         /**< operating-system I/O error (see detail) */
	PSPACE_ENOTFOUND = -4,   /**< no such matrix, array, layout or file */
	PSPACE_EEXIST = -5,      /**< a matrix of that name already exists */
	PSPACE_ECORRUPT = -6,    /**< checksum mismatch or malformed record */
	PSPACE_EVERSION = -7,    /**< store written by another format version */
	PSPACE_EFULL = -8,       /**< disk full or store map limit reached */
	PSPACE_EINCOMPLETE = -9, /**< matrix build was never completed */
	PSPACE_EBUSY = -10,      /**< store locked or too many readers */
	PSPACE_ESTORE = -11,     /**< other LMDB error (see detail) */
	PSPACE_ECODEC = -12,     /**< compression library error (see detail) */
	PSPACE_EFORMAT = -13,    /**< malformed input file (npy, layout, ...) */
	PSPACE_ENOTSUP = -14,    /**< operation not supported for this kind */
	PSPACE_EDIM = -15,       /**< dimensions do not match */
	PSPACE_ENOCONV = -16,    /**< iterative method did not converge */
	PSPACE_ENUMERIC = -17,   /**< numerical failure (not positive definite, ...) */
	PSPACE_EBLIS = -18,      /**< BLIS kernel configuration cannot be used */
};

/** @return a static, human-readable name for @p code ("corrupt tile", ...); never NULL. */
PSPACE_API const char *pspace_strerror(int code);

/**
 * @return the calling thread's detail message for the last error a pspace
 * call reported on this thread: where it happened (file, matrix, tile) and
 * the underlying LMDB, zstd or errno text. Empty string if none. Valid until
 * the next pspace call on the same thread.
 */
PSPACE_API const char *pspace_errdetail(void);

/** Clears the calling thread's detail message. */
PSPACE_API void pspace_errclear(void);

/**
 * Sets the calling thread's detail message, printf-style, for libraries
 * built on pspace (libpspace_mpi) that report their errors as pspace does.
 * @return @p code.
 */
PSPACE_API int pspace_errdetail_set(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/**
 * Element types, as stored and as computed. The ids are written to disk:
 * they are never reused or renumbered.
 */
typedef enum pspace_dtype {
	PSPACE_F64 = 1,  /**< IEEE binary64 */
	PSPACE_F32 = 2,  /**< IEEE binary32 (default storage, lossless) */
	PSPACE_BF16 = 3, /**< bfloat16, round to nearest even */
	PSPACE_F16 = 4,  /**< IEEE binary16 with a per-tile power-of-two scale */
	PSPACE_I64 = 5,  /**< signed 64-bit integers (small arrays only) */
} pspace_dtype;

/** @return the size in bytes of one element of @p t, 0 if unknown. */
PSPACE_API size_t pspace_dtype_size(pspace_dtype t);
/** @return "f64", "f32", "bf16", "f16", "i64", or "?" (static strings). */
PSPACE_API const char *pspace_dtype_name(pspace_dtype t);
/** Parses "f64" / "f32" / "bf16" / "f16" into *out; @return 0 or PSPACE_EINVAL. */
PSPACE_API int pspace_dtype_parse(pspace_dtype *out, const char *s);

/**
 * Representation kinds. Written to disk: ids are never reused.
 */
typedef enum pspace_kind {
	PSPACE_KIND_DENSE = 1,
	PSPACE_KIND_BLOCKDIAG = 2,
	PSPACE_KIND_DIAG = 3,
	PSPACE_KIND_QUASIDIAG = 4,
	PSPACE_KIND_KFAC = 5,
	PSPACE_KIND_EKFAC = 6,
	PSPACE_KIND_LOWRANK = 7,
	PSPACE_KIND_IDENTITY = 8,
	PSPACE_KIND_MIXED = 9,
	PSPACE_KIND_IMPLICIT = 10, /**< never stored: a user callback */
	PSPACE_KIND_CHOLESKY = 11, /**< lower Cholesky factor of a Dense/BlockDiag + damping */
} pspace_kind;

/** @return "dense", "blockdiag", ... or "?" (static strings). */
PSPACE_API const char *pspace_kind_name(pspace_kind k);
/** Parses a kind name into *out; @return 0 or PSPACE_EINVAL. */
PSPACE_API int pspace_kind_parse(pspace_kind *out, const char *s);

/**
 * Execution settings, passed to every call that does heavy work. A NULL
 * pointer means the defaults (all cores, 1 GiB budget).
 */
typedef struct pspace_exec {
	int threads;       /**< worker threads; 0 = number of online cores */
	size_t mem_budget; /**< bytes of working memory; 0 = default (1 GiB) */
} pspace_exec;

/**
 * Initializes the library: chooses the BLIS kernel set (see README,
 * "BLIS kernels"). Idempotent and thread-safe; called implicitly by
 * pspace_store_open(). Must run before anything else in the process calls
 * BLIS for the choice to take effect. Unless overridden, the first call on
 * a CPU times the candidate kernel sets in short-lived forked children
 * (about 0.2 s) and caches the result in $PSPACE_CACHE_DIR,
 * $XDG_CACHE_HOME/pspace or $HOME/.cache/pspace.
 * @return 0, or PSPACE_EBLIS when the requested kernel set is invalid.
 */
PSPACE_API int pspace_init(void);

/**
 * Requests a BLIS kernel set by name ("zen3", "skx", "haswell", "generic",
 * "auto", "calibrate" = measure again, ignoring the cache, ...) before
 * pspace_init() runs. Overrides $PSPACE_BLIS_ARCH.
 * @return 0, PSPACE_EINVAL for an unknown name, PSPACE_EBUSY if BLIS was
 * already initialized.
 */
PSPACE_API int pspace_blis_arch_request(const char *name);

/** Information on the BLIS kernel set in use (after pspace_init()). */
typedef struct pspace_blis_info {
	const char *arch;    /**< kernel set in use, e.g. "zen3" */
	const char *reason;  /**< why: "measured on this CPU: ...", "set by BLIS_ARCH_TYPE=..." */
	const char *version; /**< BLIS version string */
	const char *cpu;     /**< CPU vendor/family/model as pspace saw it */
} pspace_blis_info;

/**
 * Fills @p out (its strings are static: valid for the life of the process);
 * calls pspace_init() first. @return 0 or error.
 */
PSPACE_API int pspace_blis_info_get(pspace_blis_info *out);

/** @return the library version string, "0.2.0" (static). */
PSPACE_API const char *pspace_version(void);

#ifdef __cplusplus
}
#endif
#endif
