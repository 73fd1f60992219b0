/*
 * The tool under mpirun (tools/par.c): MPI is initialised only when the
 * environment says the tool runs under mpirun, and only in a tool built
 * with MPI (libpspace_mpi). Rank 0 alone prints and writes files; the
 * other ranks' stdout and stderr go to /dev/null (PSPACE_MPI_OUTPUT=all
 * keeps them).
 */
#ifndef PSPACE_TOOLS_PAR_H
#define PSPACE_TOOLS_PAR_H

#include "cmd.h"

/**
 * Initialises MPI when running under mpirun. @return EXIT_OK, or
 * EXIT_USAGE (message printed) under mpirun in a tool built without MPI.
 */
int tool_par_init(int *argc, char ***argv);

/** Finalises MPI if tool_par_init() initialised it. */
void tool_par_finish(void);

/** @return 1 when running under mpirun (MPI initialised), else 0. */
int tool_par_active(void);

/** @return this rank (0 without mpirun). */
int tool_par_rank(void);

/** @return the number of ranks (1 without mpirun). */
int tool_par_size(void);

/**
 * Opens this rank's shard of sharded store @p path (collective; created
 * unless @p readonly). @return 0 or a library error, the same on every rank.
 */
int tool_par_open(pspace_store **s, const char *path, int readonly);

/** Closes a store from tool_par_open(); NULL is accepted. */
void tool_par_close(pspace_store *s);

/** pspace_mpi_agree(): the same result on every rank. */
int tool_par_agree(pspace_store *s, int rc);

/** Broadcasts @p n bytes from rank 0. @return 0 or a library error. */
int tool_par_bcast(pspace_store *s, void *buf, size_t n);

/** pspace_build_jacobian_mpi() / pspace_build_layers_mpi(). */
int tool_par_build_jacobian(pspace_store *s, const char *name, const pspace_layout *l,
                            const pspace_jac_source *src, const pspace_build_opts *o);
int tool_par_build_layers(pspace_store *s, const char *name, const pspace_layout *l,
                          const pspace_layer_source *src, const pspace_build_opts *o);

#endif
