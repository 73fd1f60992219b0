/*
 * bench_mpi - what do sharded stores cost per rank? Run under mpirun:
 *
 *   mpirun -n P bench_mpi [--d N] [--tile E] [--reps R] [--dir PATH] [--keep]
 *
 * 1. The collective of an evaluation: the sum of a d-vector over the ranks
 *    as libpspace_mpi does it (agree on errors, MPI_Reduce to rank 0,
 *    MPI_Bcast), beside a plain MPI_Allreduce, at d = 1e5 and 1e6.
 * 2. mv with a sharded Dense of --d (default 8192, f32 tiles of noise,
 *    which zstd stores raw): each rank writes its own tile rows into its
 *    shard, then times its part of the pass alone (pspace_stream_mm on its
 *    tiles) and the whole mv (pspace_mat_mm: the pass and the sum), hot.
 *    Throughput is in GB/s of LOGICAL matrix, d^2 * 4 bytes per mv; per
 *    rank, the rank's own share of the stored tiles (counted as their
 *    logical bytes, mirrored tiles twice).
 * Rank 0 prints the medians (over --reps) of the slowest rank.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernel/stream.h"
#include "mat/mat_impl.h"
#include "pspace.h"
#include "pspace/mpi.h"
#include "store/shard.h"

#define PROG "bench_mpi"

struct config {
	uint64_t d;
	uint32_t tile;
	int reps, keep;
	const char *dir;
};

static int parse_args(int argc, char **argv, struct config *c)
{
	c->d = 8192;
	c->tile = 512;
	c->reps = 10;
	c->keep = 0;
	c->dir = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--d") == 0 && v)
			c->d = strtoull(argv[++i], NULL, 10);
		else if (strcmp(a, "--tile") == 0 && v)
			c->tile = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(a, "--reps") == 0 && v)
			c->reps = atoi(argv[++i]);
		else if (strcmp(a, "--dir") == 0 && v)
			c->dir = argv[++i];
		else if (strcmp(a, "--keep") == 0)
			c->keep = 1;
		else
			return -1;
	}
	return c->d && c->tile && c->reps > 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median over reps of the slowest rank's time. */
static double median_max(double *t, int reps)
{
	for (int i = 0; i < reps; i++)
		MPI_Allreduce(MPI_IN_PLACE, &t[i], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
	qsort(t, (size_t)reps, sizeof(*t), cmp_double);
	return t[reps / 2];
}

static void collectives(pspace_store *s, int rank, int reps)
{
	const pspace_shard_hooks *h = pspace_store_shard(s);
	const uint64_t sizes[2] = {100000, 1000000};
	double *t = malloc((size_t)reps * sizeof(*t));

	for (int j = 0; j < 2; j++) {
		size_t n = sizes[j];
		double *v = malloc(n * sizeof(*v)), ours, all;

		for (size_t i = 0; i < n; i++)
			v[i] = (double)(i % 7) + rank;
		for (int r = 0; r < reps; r++) {
			MPI_Barrier(MPI_COMM_WORLD);
			t[r] = bench_clock_now();
			h->sum(h->ud, v, n, 0);
			t[r] = bench_clock_now() - t[r];
		}
		ours = median_max(t, reps);
		for (int r = 0; r < reps; r++) {
			MPI_Barrier(MPI_COMM_WORLD);
			t[r] = bench_clock_now();
			MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
			t[r] = bench_clock_now() - t[r];
		}
		all = median_max(t, reps);
		if (rank == 0)
			printf(
			    "sum of a d-vector, d = %-8zu  pspace sum %8.3f ms"
			    "   MPI_Allreduce %8.3f ms   (%.2f GB/s of vector per rank)\n",
			    n, ours * 1e3, all * 1e3, (double)n * 8 / ours / 1e9);
		free(v);
	}
	free(t);
}

/* Writes this rank's tile rows of a d x d symmetric noise matrix. */
static int write_shard(pspace_store *s, const struct config *c, int rank, int P)
{
	pspace_matrix_desc desc;
	pspace_writer *w = NULL;
	uint64_t nt = (c->d + c->tile - 1) / c->tile, *bounds = malloc((P + 1) * sizeof(*bounds));
	float *tile = malloc((size_t)c->tile * c->tile * sizeof(*tile));
	uint64_t seed = 12345 + (uint64_t)rank;
	int rc;

	memset(&desc, 0, sizeof(desc));
	desc.kind = PSPACE_KIND_DENSE;
	desc.d = c->d;
	desc.nblocks = 1;
	desc.tile = c->tile;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	rc = pspace_shard_bounds(bounds, (uint32_t)P, &c->d, 1, c->tile);
	if (rc == 0)
		rc = pspace_writer_begin(&w, s, "F", &desc);
	if (rc == 0)
		rc = pspace_shard_manifest_put(w, (uint32_t)rank, (uint32_t)P, &c->d, 1, c->tile);
	for (uint64_t r = bounds[rank]; rc == 0 && r < bounds[rank + 1]; r++)
		for (uint64_t col = r; rc == 0 && col < nt; col++) {
			for (size_t i = 0; i < (size_t)c->tile * c->tile; i++)
				tile[i] = (float)(bench_rng_u64(&seed) >> 40) * 0x1p-24f - 0.5f;
			rc = pspace_writer_put_tile(w, 0, (uint32_t)r, (uint32_t)col, PSPACE_F32,
			                            tile, c->tile);
		}
	if (rc == 0)
		rc = pspace_writer_finish(w);
	else if (w)
		pspace_writer_abort(w, 1);
	free(tile);
	free(bounds);
	return rc;
}

static void mv(pspace_store *s, const struct config *c, int rank, int P)
{
	pspace_exec ex = {1, 0};
	pspace_mat *m = NULL;
	double *x = malloc(c->d * sizeof(double)), *y = malloc(c->d * sizeof(double));
	double *t = malloc((size_t)c->reps * sizeof(*t)), pass, whole, mine, logical;
	const pspace_tiled *tl;
	pspace_matrix_info info;
	pspace_shard_info si;
	int rc;

	for (uint64_t i = 0; i < c->d; i++)
		x[i] = 1.0 / (double)(i + 1);
	rc = pspace_mat_open(&m, s, "F");
	rc = pspace_mpi_agree(s, rc);
	if (rc) {
		if (rank == 0)
			fprintf(stderr, PROG ": %s: %s\n", pspace_strerror(rc), pspace_errdetail());
		return;
	}
	tl = pspace_mat_tiled(m);
	pspace_matrix_info_get(&info, s, "F");
	/* this rank's logical bytes: mirrored tiles serve two products, diagonal ones one */
	mine = 2.0 * (double)info.logical_bytes;
	if (pspace_shard_info_get(&si, NULL, 0, s, "F") == 0)
		mine -= (double)(si.end - si.first) * c->tile * c->tile * 4.0;
	logical = (double)c->d * (double)c->d * 4.0;
	pspace_stream_mm(tl, &ex, 1, 1.0, x, c->d, y, c->d); /* warm the page cache */
	for (int r = 0; r < c->reps; r++) {
		memset(y, 0, c->d * sizeof(double));
		MPI_Barrier(MPI_COMM_WORLD);
		t[r] = bench_clock_now();
		pspace_stream_mm(tl, &ex, 1, 1.0, x, c->d, y, c->d);
		t[r] = bench_clock_now() - t[r];
	}
	pass = median_max(t, c->reps);
	for (int r = 0; r < c->reps; r++) {
		MPI_Barrier(MPI_COMM_WORLD);
		t[r] = bench_clock_now();
		pspace_mat_mm(m, &ex, 1, 1.0, x, c->d, 0.0, y, c->d);
		t[r] = bench_clock_now() - t[r];
	}
	whole = median_max(t, c->reps);
	MPI_Allreduce(MPI_IN_PLACE, &mine, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
	if (rank == 0) {
		printf("mv, d = %llu, P = %d, 1 thread a rank (hot): slowest rank's pass %.3f ms "
		       "(%.2f GB/s of its logical share), whole mv with the sum %.3f ms: "
		       "%.2f GB/s of logical matrix, %.2f GB/s per rank\n",
		       (unsigned long long)c->d, P, pass * 1e3, mine / pass / 1e9, whole * 1e3,
		       logical / whole / 1e9, logical / whole / 1e9 / P);
	}
	pspace_mat_free(m);
	free(t);
	free(y);
	free(x);
}

int main(int argc, char **argv)
{
	struct config c;
	pspace_store *s = NULL;
	pspace_store_opts so;
	char dir[512];
	int rank, P, rc;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &P);
	if (parse_args(argc, argv, &c) != 0) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -n P " PROG
			                " [--d N] [--tile E] [--reps R] [--dir PATH] [--keep]\n");
		MPI_Finalize();
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/bench_mpi.store", c.dir ? c.dir : "/tmp");
	if (rank == 0) {
		bench_path_remove(dir);
		bench_machine_print(stdout);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	pspace_store_opts_default(&so);
	so.nosync = 1;
	rc = pspace_store_open_mpi(&s, dir, MPI_COMM_WORLD, &so);
	if (rc == 0)
		collectives(s, rank, c.reps);
	if (rc == 0)
		rc = pspace_mpi_agree(s, write_shard(s, &c, rank, P));
	if (rc == 0)
		mv(s, &c, rank, P);
	if (rc && rank == 0)
		fprintf(stderr, PROG ": %s: %s\n", pspace_strerror(rc), pspace_errdetail());
	pspace_store_close_mpi(s);
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0 && !c.keep)
		bench_path_remove(dir);
	MPI_Finalize();
	return rc ? 1 : 0;
}
