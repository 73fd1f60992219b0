/*
 * pspace/mpi.h - libpspace_mpi: sharded stores over MPI ranks (built when
 * CMake finds MPI; link pspace::pspace_mpi). A sharded store is a
 * directory STORE holding one ordinary store per rank, STORE/shard-R-of-P
 * (pspace/shard.h). Each rank opens its own shard with
 * pspace_store_open_mpi(); from then on the matrices, operators and
 * builds of the core library work on it as on a whole store, with vectors
 * replicated on every rank: Dense and BlockDiag products, traces,
 * diagonals and norms are summed over the ranks (MPI_Reduce to rank 0 and
 * MPI_Bcast, so every rank gets the same bits), so Lanczos, CG and the
 * estimators take the same steps on every rank.
 *
 * Every rank must make the same calls in the same order (they are
 * collective over the communicator); a failure on one rank is passed to
 * all at the next collective, so that every rank returns the same error,
 * whose detail names the rank ("rank 2: ...").
 */
#ifndef PSPACE_MPI_H
#define PSPACE_MPI_H

#include <mpi.h>

#include "pspace/build.h"
#include "pspace/shard.h"
#include "pspace/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Opens this rank's shard of sharded store @p path over the ranks of
 * @p comm (collective): STORE/shard-R-of-P with R the rank and P the size
 * of @p comm. With opts->create (the default) and no shards in @p path,
 * the shards are created. The communicator is duplicated; its errors are
 * returned, not fatal.
 * @param opts  NULL for the defaults (pspace_store_opts_default).
 * @return 0, or on every rank the same error: PSPACE_EINVAL when @p path
 * holds the shards of another number of ranks (the detail says how many
 * to run), PSPACE_ENOTFOUND (no shards and create off), a store's error
 * (naming the rank), PSPACE_EIO (MPI). *out is NULL on failure. Close with
 * pspace_store_close_mpi().
 */
PSPACE_API int pspace_store_open_mpi(pspace_store **out, const char *path, MPI_Comm comm,
                                     const pspace_store_opts *opts);

/** Closes a store opened by pspace_store_open_mpi() (not collective); NULL is accepted. */
PSPACE_API void pspace_store_close_mpi(pspace_store *s);

/**
 * Agrees on a result over the ranks of @p s (collective): @return 0 when
 * every rank passed 0 as @p rc, else on every rank the error of the lowest
 * failed rank with its detail. For a program's own steps that may fail on
 * one rank (opening a matrix whose shard is incomplete, reading a file)
 * before the next collective.
 */
PSPACE_API int pspace_mpi_agree(pspace_store *s, int rc);

/** @return this rank and (in *nranks, if not NULL) the number of ranks of @p s; 0 without hooks. */
PSPACE_API uint32_t pspace_mpi_rank(const pspace_store *s, uint32_t *nranks);

/**
 * Builds matrix @p name on every rank of @p s (collective), as
 * pspace_build_jacobian(): Dense and BlockDiag sharded, each rank writing
 * the tiles of its tile rows (o->shard_rank and o->shard_count are set
 * here) and reading only the columns they need; the other kinds but Mixed
 * built on rank 0 and copied to every shard. Each rank reads @p src itself
 * (the same rows on every rank); o->progress is called on every rank, for
 * its own part. With o->resume, a rank whose shard is
 * complete already keeps it. @return 0 or, on every rank, the error of the
 * lowest failed rank; a Mixed build is PSPACE_ENOTSUP.
 */
PSPACE_API int pspace_build_jacobian_mpi(pspace_store *s, const char *name,
                                         const pspace_layout *layout, const pspace_jac_source *src,
                                         const pspace_build_opts *o);

/** As pspace_build_jacobian_mpi() from layer tensors (pspace_build_layers()). */
PSPACE_API int pspace_build_layers_mpi(pspace_store *s, const char *name,
                                       const pspace_layout *layout, const pspace_layer_source *src,
                                       const pspace_build_opts *o);

/**
 * Broadcasts @p n bytes of @p buf from rank 0 of @p s to every rank
 * (collective), e.g. an input vector that rank 0 alone read.
 * @return 0 or PSPACE_EIO.
 */
PSPACE_API int pspace_mpi_bcast(pspace_store *s, void *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
