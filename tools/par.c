/*
 * The tool under mpirun (tools/par.h): a thin layer over libpspace_mpi,
 * with stand-ins that refuse mpirun in a tool built without MPI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"

#ifdef PSPACE_HAVE_MPI
#include "pspace/mpi.h"
#endif

static int active, rank, size = 1;

/* Open MPI (OMPI_COMM_WORLD_SIZE) or any PMIx/PMI launcher sets these. */
static int under_mpirun(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

#ifdef PSPACE_HAVE_MPI

int tool_par_init(int *argc, char ***argv)
{
	const char *all = getenv("PSPACE_MPI_OUTPUT");
	int provided;

	if (!under_mpirun())
		return EXIT_OK;
	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		fprintf(stderr, "pspace: MPI_Init failed\n");
		return EXIT_RUNTIME;
	}
	active = 1;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (rank != 0 && !(all && strcmp(all, "all") == 0)) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

void tool_par_finish(void)
{
	if (active)
		MPI_Finalize();
	active = 0;
}

int tool_par_open(pspace_store **s, const char *path, int readonly)
{
	pspace_store_opts so;

	pspace_store_opts_default(&so);
	so.readonly = readonly;
	so.create = !readonly;
	return pspace_store_open_mpi(s, path, MPI_COMM_WORLD, &so);
}

void tool_par_close(pspace_store *s)
{
	pspace_store_close_mpi(s);
}

int tool_par_agree(pspace_store *s, int rc)
{
	return pspace_mpi_agree(s, rc);
}

int tool_par_bcast(pspace_store *s, void *buf, size_t n)
{
	return pspace_mpi_bcast(s, buf, n);
}

int tool_par_build_jacobian(pspace_store *s, const char *name, const pspace_layout *l,
                            const pspace_jac_source *src, const pspace_build_opts *o)
{
	return pspace_build_jacobian_mpi(s, name, l, src, o);
}

int tool_par_build_layers(pspace_store *s, const char *name, const pspace_layout *l,
                          const pspace_layer_source *src, const pspace_build_opts *o)
{
	return pspace_build_layers_mpi(s, name, l, src, o);
}

#else /* no MPI */

int tool_par_init(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!under_mpirun())
		return EXIT_OK;
	fprintf(stderr, "pspace: this pspace was built without MPI (libopenmpi-dev): run it "
	                "without mpirun\n");
	return EXIT_USAGE;
}

void tool_par_finish(void)
{
}

static int no_mpi(void)
{
	return PSPACE_ENOTSUP;
}

int tool_par_open(pspace_store **s, const char *path, int readonly)
{
	(void)path;
	(void)readonly;
	*s = NULL;
	return no_mpi();
}

void tool_par_close(pspace_store *s)
{
	pspace_store_close(s);
}

int tool_par_agree(pspace_store *s, int rc)
{
	(void)s;
	return rc;
}

int tool_par_bcast(pspace_store *s, void *buf, size_t n)
{
	(void)s;
	(void)buf;
	(void)n;
	return 0;
}

int tool_par_build_jacobian(pspace_store *s, const char *name, const pspace_layout *l,
                            const pspace_jac_source *src, const pspace_build_opts *o)
{
	(void)s, (void)name, (void)l, (void)src, (void)o;
	return no_mpi();
}

int tool_par_build_layers(pspace_store *s, const char *name, const pspace_layout *l,
                          const pspace_layer_source *src, const pspace_build_opts *o)
{
	(void)s, (void)name, (void)l, (void)src, (void)o;
	return no_mpi();
}

#endif

int tool_par_active(void)
{
	return active;
}

int tool_par_rank(void)
{
	return rank;
}

int tool_par_size(void)
{
	return size;
}
