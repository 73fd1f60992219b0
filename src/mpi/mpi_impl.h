/*
 * Internal to libpspace_mpi: the communicator behind a sharded store's
 * hooks, and the collectives its files share.
 */
#ifndef PSPACE_SRC_MPI_MPI_IMPL_H
#define PSPACE_SRC_MPI_MPI_IMPL_H

#include "pspace/mpi.h"

/** What a rank's store keeps as its hooks' user data. */
typedef struct pspace_mpi_ctx {
	MPI_Comm comm; /* a duplicate of the caller's, errors returned */
	int rank, size;
} pspace_mpi_ctx;

/** @return the context of a store opened by pspace_store_open_mpi(), or NULL. */
pspace_mpi_ctx *pspace_mpi_ctx_of(const pspace_store *s);

/** pspace_mpi_agree() on a context. */
int pspace_mpi_ctx_agree(pspace_mpi_ctx *c, int rc);

/** Broadcasts @p n bytes from rank @p root. @return 0 or PSPACE_EIO. */
int pspace_mpi_ctx_bcast(pspace_mpi_ctx *c, void *buf, size_t n, int root);

/** PSPACE_EIO with MPI's text for @p mrc, during @p what. */
int pspace_mpi_err(int mrc, const char *what);

#endif
