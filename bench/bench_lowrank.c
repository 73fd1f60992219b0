/*
 * bench_lowrank - how fast does a LowRank whose rows do not fit in memory
 * multiply a vector, against the disk it is read from?
 *
 * A LowRank F = D^T D of r rows of d parameters (default r = 4096, d =
 * 2^20: 16 GiB of f32 rows; --quick: r = 1024, d = 65536, 256 MiB) is
 * written tile by tile with pspace_lowrank_write (f32 tiles of 512, the
 * default codec: byte shuffle + zstd level 1, as `pspace build --kind
 * lowrank` stores them) from Gaussian rows with log-normal column scales
 * (copies of a 4 MiB block of deviates, each tile from its own offset).
 * Then, in the same run:
 *   disk     a sequential read of the store's data file (at most 4 GiB),
 *            the page cache dropped first: the ceiling of any pass
 *   mv cold  the page cache dropped before each mv
 *   mv       repeated mv without dropping it (under bench/run.sh's memory
 *            cap the page cache holds at most the cap, so the rows come
 *            from the disk again; uncapped they may come from memory)
 * An mv is two passes over the stored rows (U = D x, then D^T U), so it
 * reads 2 x the stored bytes: the table gives them per second (GB/s of
 * stored rows) and as a fraction of the disk's read bandwidth. Dropping the
 * page cache needs root (--cold); without it the "cold" rows say warm.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "harness.h"
#include "pspace.h"

#define PROG   "bench_lowrank"
#define MIB    ((uint64_t)1 << 20)
#define MASTER ((size_t)1 << 20) /* deviates in the block the tiles copy */

struct config {
	int quick, cold, keep, threads, reps;
	uint64_t rows, d, mem, disk_max;
	uint32_t tile;
	const char *dir, *json;
};

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s (%s)\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--quick] [--rows R] [--d N] [--tile E] [--mem MIB] "
	           "[--threads T] [--reps N] [--cold] [--keep] [--dir DIR] [--json FILE]\n"
	           "  --quick      r = 1024, d = 65536 (256 MiB of f32 rows), 2 repetitions\n"
	           "  --rows R     rows of D (4096)\n"
	           "  --d N        parameters (1048576: 16 GiB of f32 rows at r = 4096)\n"
	           "  --tile E     tile edge (512)\n"
	           "  --mem MIB    the products' memory budget (256)\n"
	           "  --threads T  threads of the products (2)\n"
	           "  --reps N     timed repetitions of each mv row (3)\n"
	           "  --cold       drop the page cache before the disk read and each cold mv "
	           "(root)\n"
	           "  --keep       keep the store (its path is printed)\n"
	           "  --dir DIR    where the store goes ($TMPDIR or /tmp)\n"
	           "  --json FILE  also write the tables as JSON\n");
}

static int parse_args(int argc, char **argv, struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->rows = 4096;
	c->d = (uint64_t)1 << 20;
	c->tile = 512;
	c->mem = 256;
	c->threads = 2;
	c->reps = 3;
	c->disk_max = (uint64_t)4 << 30;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->rows = 1024;
			c->d = 65536;
			c->reps = 2;
		} else if (strcmp(a, "--cold") == 0) {
			c->cold = 1;
		} else if (strcmp(a, "--keep") == 0) {
			c->keep = 1;
		} else if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (v && strcmp(a, "--rows") == 0) {
			c->rows = strtoull(v, NULL, 10), i++;
		} else if (v && strcmp(a, "--d") == 0) {
			c->d = strtoull(v, NULL, 10), i++;
		} else if (v && strcmp(a, "--tile") == 0) {
			c->tile = (uint32_t)strtoul(v, NULL, 10), i++;
		} else if (v && strcmp(a, "--mem") == 0) {
			c->mem = strtoull(v, NULL, 10), i++;
		} else if (v && strcmp(a, "--threads") == 0) {
			c->threads = atoi(v), i++;
		} else if (v && strcmp(a, "--reps") == 0) {
			c->reps = atoi(v), i++;
		} else if (v && strcmp(a, "--dir") == 0) {
			c->dir = v, i++;
		} else if (v && strcmp(a, "--json") == 0) {
			c->json = v, i++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (c->rows == 0 || c->rows > c->d || c->tile == 0 || c->threads < 1 || c->reps < 1) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* ---- the rows ------------------------------------------------------------------------ */

struct rows {
	float *master;  /* MASTER deviates */
	double *scale;  /* d column scales */
	uint64_t tiles; /* written so far */
	uint64_t ntiles;
	double t0;
};

static int rows_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t nr, uint32_t nc, double *tile)
{
	struct rows *w = ud;
	/* each tile its own stretch of the block: odd multiplier, so offsets spread */
	size_t off = (size_t)((r0 * 2654435761u + c0 * 40503u) % MASTER);

	for (uint32_t i = 0; i < nr; i++)
		for (uint32_t p = 0; p < nc; p++)
			tile[(size_t)i * nc + p] =
			    w->master[(off + (size_t)i * nc + p) % MASTER] * w->scale[c0 + p];
	if (++w->tiles % 64 == 0)
		bench_progress("writing D: %llu / %llu tiles, %.0f s", (unsigned long long)w->tiles,
		               (unsigned long long)w->ntiles, bench_clock_now() - w->t0);
	return 0;
}

static int write_rows(pspace_store *s, const struct config *c, double *seconds)
{
	struct rows w = {malloc(MASTER * sizeof(float)), malloc(c->d * sizeof(double)), 0, 0, 0};
	pspace_layout *layout = NULL;
	pspace_write_opts wo;
	uint64_t st = 11;
	int rc;

	if (!w.master || !w.scale) {
		rc = pspace_err_set(PSPACE_ENOMEM, "the rows' generator");
		goto out;
	}
	for (size_t i = 0; i < MASTER; i++)
		w.master[i] = (float)bench_rng_normal(&st);
	for (uint64_t p = 0; p < c->d; p++)
		w.scale[p] = exp(bench_rng_normal(&st));
	w.ntiles = ((c->rows + c->tile - 1) / c->tile) * ((c->d + c->tile - 1) / c->tile);
	w.t0 = bench_clock_now();
	pspace_write_opts_default(&wo);
	wo.tile = c->tile;
	rc = pspace_layout_flat(&layout, c->d);
	if (rc == 0)
		rc = pspace_lowrank_write(s, "L", layout, c->rows, rows_tile, &w, &wo);
	*seconds = bench_clock_now() - w.t0;
	bench_progress_end();
out:
	pspace_layout_free(layout);
	free(w.scale);
	free(w.master);
	return rc;
}

/* ---- measurements -------------------------------------------------------------------- */

/* Sequential read of up to @p max bytes of @p path in 8 MiB chunks: *bytes in *seconds. */
static int disk_read(const char *path, uint64_t max, double *bytes, double *seconds)
{
	size_t chunk = 8u << 20;
	char *buf = malloc(chunk);
	double t0 = bench_clock_now(), sum = 0;
	int fd = open(path, O_RDONLY), rc = 0;

	*bytes = 0;
	if (!buf || fd < 0) {
		rc = pspace_err_set(fd < 0 ? PSPACE_EIO : PSPACE_ENOMEM, "read %s: %s", path,
		                    fd < 0 ? strerror(errno) : "buffer");
		goto out;
	}
	while (*bytes < (double)max) {
		ssize_t got = read(fd, buf, chunk);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			rc = pspace_err_set(PSPACE_EIO, "read %s: %s", path, strerror(errno));
		if (got <= 0)
			break;
		sum += (double)buf[got - 1];
		*bytes += (double)got;
	}
	*seconds = bench_clock_now() - t0;
	if (sum == 0.5) /* keep the reads */
		fputc(' ', stderr);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

struct mv_run {
	const struct config *c;
	const char *path;
	int cold;
	double *x, *y;
	double checksum;
};

/* One mv on a freshly opened store (dropping the page cache first when cold). */
static int run_mv(void *ctx, double *seconds)
{
	struct mv_run *m = ctx;
	pspace_exec ex = {m->c->threads, (size_t)m->c->mem * MIB};
	pspace_store *s = NULL;
	pspace_mat *f = NULL;
	double t0;
	int rc;

	if (m->cold)
		bench_drop_caches();
	rc = pspace_store_open(&s, m->path, NULL);
	if (rc == 0)
		rc = pspace_mat_open(&f, s, "L");
	t0 = bench_clock_now();
	if (rc == 0)
		rc = pspace_mat_mv(f, &ex, m->x, m->y);
	*seconds = bench_clock_now() - t0;
	m->checksum = 0;
	for (uint64_t i = 0; rc == 0 && i < m->c->d; i++)
		m->checksum += m->y[i];
	pspace_mat_free(f);
	pspace_store_close(s);
	return rc;
}

int main(int argc, char **argv)
{
	struct config c;
	char root[4096], path[4200], data[4300], b1[32], b2[32];
	pspace_store *s = NULL;
	pspace_matrix_info info;
	struct mv_run m = {0};
	bench_opts bo;
	bench_stats st;
	double t_write = 0, dbytes = 0, dsec = 0, disk = 0;
	int rc, cold_ok = 0;

	rc = parse_args(argc, argv, &c);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (c.json && bench_json_open(c.json) != 0)
		return fail(PSPACE_EIO, "--json"), 1;
	rc = bench_tmpdir_create(c.dir, "bench-lowrank", root, sizeof(root));
	if (rc != 0)
		return fail(rc, "tmpdir"), 1;
	snprintf(path, sizeof(path), "%s/s", root);
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	printf("# " PROG ": LowRank mv with the rows beyond memory, against the disk\n\n");
	bench_machine_print(stdout);
	printf("\n");

	rc = pspace_store_open(&s, path, NULL);
	if (rc == 0)
		rc = write_rows(s, &c, &t_write);
	if (rc == 0)
		rc = pspace_matrix_info_get(&info, s, "L");
	pspace_store_close(s);
	if (rc != 0) {
		fail(rc, "writing the rows");
		goto out;
	}
	if (c.cold)
		cold_ok = bench_drop_caches() == 0;
	rc = disk_read(data, c.disk_max, &dbytes, &dsec);
	if (rc != 0) {
		fail(rc, "disk read");
		goto out;
	}
	disk = dbytes / dsec / 1e9;

	bench_info(stdout, "rows",
	           "D: %llu x %llu (LowRank F = D^T D), f32 tiles of %u, byte shuffle + zstd 1: "
	           "%s stored (%s of f32 rows), written in %.0f s",
	           (unsigned long long)c.rows, (unsigned long long)c.d, info.tile,
	           bench_fmt_bytes(b1, sizeof(b1), (double)info.tile_bytes),
	           bench_fmt_bytes(b2, sizeof(b2), 4.0 * (double)c.rows * (double)c.d), t_write);
	bench_info(stdout, "disk", "sequential read of %s of the store's file%s: %.2f GB/s",
	           bench_fmt_bytes(b1, sizeof(b1), dbytes),
	           cold_ok ? ", page cache dropped" : " (page cache not dropped)", disk);
	bench_info(stdout, "products",
	           "mv (k = 1), two passes over the rows, %d threads, memory budget %llu MiB",
	           c.threads, (unsigned long long)c.mem);
	printf("\n");
	bench_table_header(stdout, "lowrank_mv",
	                   "regime|>reps|>median s|>min s|>GB/s stored rows|>of the disk");
	m.c = &c;
	m.path = path;
	m.x = malloc(c.d * sizeof(double));
	m.y = malloc(c.d * sizeof(double));
	if (!m.x || !m.y) {
		rc = fail(PSPACE_ENOMEM, "vectors");
		goto out;
	}
	for (uint64_t i = 0; i < c.d; i++)
		m.x[i] = (double)((i * 7919) % 1000) / 1000.0 - 0.5;
	bench_opts_default(&bo);
	bo.min_time = 0;
	bo.min_reps = c.reps;
	bo.max_reps = c.reps;
	bo.warmup = 0;
	for (int cold = 1; cold >= 0 && rc == 0; cold--) {
		double gbs;

		m.cold = cold && c.cold;
		bench_progress("mv %s", cold ? "cold" : "repeated");
		rc = bench_run_timed(run_mv, &m, &bo, &st);
		bench_progress_end();
		if (rc != 0) {
			fail(rc, "mv");
			break;
		}
		gbs = 2.0 * (double)info.tile_bytes / st.median / 1e9;
		bench_table_row(stdout, "%s|%d|%.2f|%.2f|%.2f|%.0f%%",
		                cold ? (m.cold && cold_ok ? "mv cold (page cache dropped)"
		                                          : "mv (first runs, cache not dropped)")
		                     : "mv repeated",
		                st.reps, st.median, st.min, gbs, 100.0 * gbs / disk);
	}
	printf("\nchecksum of F x: %.6g\n", m.checksum);
out:
	free(m.y);
	free(m.x);
	if (c.keep)
		printf("\nstore kept: %s\n", path);
	else
		bench_path_remove(root);
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	return rc != 0 ? 1 : 0;
}
