/*
 * pspace/npy.h - NumPy .npy files: reading the header and elements of an
 * existing file, and writing a whole array to a new one.
 *
 * Reads go through pread, so a file larger than RAM is never loaded whole.
 *
 * Threads: an open pspace_npy holds no buffers, so several threads may
 * read it at once; close it only when none does. pspace_npy_write() may
 * run from any thread (on distinct paths).
 */
#ifndef PSPACE_NPY_H
#define PSPACE_NPY_H

#include "pspace/common.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * C order) and checks that the file holds exactly the data of its header.
 * Errors name the file and what is wrong: PSPACE_ENOTFOUND, PSPACE_EFORMAT
 * (bad magic, header, Fortran order, big-endian or other dtype, truncated
 * data or bytes after the data).
 */
PSPACE_API int pspace_npy_open(pspace_npy **out, const char *path);
/** Closes the file; NULL is accepted. */
PSPACE_API void pspace_npy_close(pspace_npy *f);
/** Copies the header of @p f into @p out. @return 0 or PSPACE_EINVAL (NULL argument). */
PSPACE_API int pspace_npy_info_get(pspace_npy_info *out, const pspace_npy *f);
/** @return the path the file was opened with (valid until pspace_npy_close()). */
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

#ifdef __cplusplus
}
#endif
#endif
