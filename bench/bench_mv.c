/*
 * bench_mv - how fast are out-of-core products with a stored Dense matrix?
 *
 * A symmetric dense d x d matrix (default d = 16384: 1 GiB of logical f32,
 * 0.5 GiB stored upper triangle) is written twice into a temporary store,
 * with the default codec (zstd + shuffle) and raw f32. Then
 * pspace_stream_mm (mv for k = 1, mm for k = 4 and 16) is timed with 1 and
 * 2 threads, hot (the store in the page cache) and cold (the data file
 * dropped from the page cache with posix_fadvise(POSIX_FADV_DONTNEED) after
 * the store is closed, so no mapping keeps the pages; the resident fraction
 * is checked with mincore and reported). Throughput is in GB/s of the
 * LOGICAL matrix, d * d * 4 bytes per pass, beside the baseline measured in
 * the same run: BLIS sgemv (one thread) on one hot tile, repeated.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <blis.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kernel/stream.h"
#include "pspace.h"

#define PROG "bench_mv"

struct config {
	int quick, keep;
	uint64_t d;
	uint32_t tile;
	size_t master;
	const char *dir, *json;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [--quick] [--d N] [--tile E] [--dir PATH] [--json FILE] [--keep]\n"
	        "  --quick      a smoke run (d = 2048)\n"
	        "  --d N        dimension of the stored dense matrix (16384)\n"
	        "  --tile E     tile edge (256)\n"
	        "  --dir PATH   where to create the temporary store ($TMPDIR or /tmp)\n"
	        "  --json FILE  also write the results as JSON\n"
	        "  --keep       keep the store\n");
}

static int parse_args(int argc, char **argv, struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->d = 16384;
	c->tile = 256;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->d = 2048;
		} else if (strcmp(a, "--keep") == 0) {
			c->keep = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (v && strcmp(a, "--d") == 0) {
			c->d = strtoull(v, NULL, 10);
			i++;
		} else if (v && strcmp(a, "--tile") == 0) {
			c->tile = (uint32_t)strtoul(v, NULL, 10);
			i++;
		} else if (v && strcmp(a, "--dir") == 0) {
			c->dir = v;
			i++;
		} else if (v && strcmp(a, "--json") == 0) {
			c->json = v;
			i++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (c->d < 2 || c->tile < 16) {
		fprintf(stderr, PROG ": --d must be >= 2 and --tile >= 16\n");
		return 2;
	}
	c->master = c->tile * (c->d >= 4 * (uint64_t)c->tile ? 4 : 1);
	return 0;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

/* ---- the store ------------------------------------------------------------- */

static int write_dense(pspace_store *s, const char *name, const struct config *c, int raw,
                       const float *master)
{
	pspace_matrix_desc desc = {
	    .kind = PSPACE_KIND_DENSE, .d = c->d, .nblocks = 1, .tile = c->tile, .symmetric = 1};
	pspace_writer *w = NULL;
	uint64_t bytes;
	int rc;

	pspace_codec_opts_default(&desc.codec);
	if (raw)
		desc.codec.level = 0;
	rc = pspace_writer_begin(&w, s, name, &desc);
	if (rc != 0)
		return rc;
	rc = bench_dense_put_tiles(w, c->d, c->tile, 1, master, c->master, &bytes);
	if (rc != 0) {
		pspace_writer_abort(w, 1);
		return rc;
	}
	return pspace_writer_finish(w);
}

/* Fraction of the file's pages resident in the page cache. */
static double resident_fraction(const char *file)
{
	struct stat st;
	unsigned char *vec = NULL;
	size_t pages, in = 0, page = (size_t)sysconf(_SC_PAGESIZE);
	void *map;
	int fd = open(file, O_RDONLY);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		close(fd);
		return -1;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	pages = ((size_t)st.st_size + page - 1) / page;
	vec = malloc(pages);
	if (map != MAP_FAILED && vec && mincore(map, (size_t)st.st_size, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			in += vec[i] & 1;
	free(vec);
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return (double)in / (double)pages;
}

static int drop_cache(const char *file)
{
	int fd = open(file, O_RDONLY), rc;

	if (fd < 0)
		return PSPACE_EIO;
	rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return rc == 0 ? 0 : PSPACE_EIO;
}

/* ---- timed work ------------------------------------------------------------- */

struct mm_work {
	const struct config *cfg;
	const char *path, *name;
	char data[4300];
	pspace_store *s;
	pspace_tiled t;
	pspace_exec ex;
	uint32_t k;
	int cold;
	double *X, *Y;
	double resident; /* after the last drop */
};

static int work_open(struct mm_work *w)
{
	pspace_store_opts o;
	int rc;

	pspace_store_opts_default(&o);
	o.readonly = 1;
	o.create = 0;
	rc = pspace_store_open(&w->s, w->path, &o);
	if (rc == 0)
		rc = pspace_tiled_open(&w->t, w->s, w->name);
	return rc;
}

static void work_close(struct mm_work *w)
{
	pspace_tiled_close(&w->t);
	pspace_store_close(w->s);
	w->s = NULL;
}

static int run_mm(void *ctx, double *seconds)
{
	struct mm_work *w = ctx;
	uint64_t d = w->cfg->d;
	double t0;
	int rc;

	if (w->cold) {
		/* Closing the store unmaps the file, so the drop reaches every page. */
		work_close(w);
		rc = drop_cache(w->data);
		if (rc != 0)
			return rc;
		w->resident = resident_fraction(w->data);
		rc = work_open(w);
		if (rc != 0)
			return rc;
	}
	t0 = bench_clock_now();
	rc = pspace_stream_mm(&w->t, &w->ex, w->k, 1.0, w->X, d, w->Y, d);
	*seconds = bench_clock_now() - t0;
	return rc;
}

struct gemv_work {
	float *tile, *x, *y;
	uint32_t e;
	int reps;
	rntm_t rntm;
};

static int run_gemv(void *ctx)
{
	struct gemv_work *g = ctx;
	float one = 1.0f, zero = 0.0f;

	for (int r = 0; r < g->reps; r++)
		bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, g->e, g->e, &one, g->tile, g->e,
		             1, g->x, 1, &zero, g->y, 1, NULL, &g->rntm);
	return 0;
}

/* BLIS sgemv, one thread, on one hot tile: GB/s of tile bytes. */
static int baseline(const struct config *c, const float *master, double *gbs)
{
	struct gemv_work g = {0};
	bench_opts o;
	bench_stats st;
	uint64_t seed = 5;
	int rc = PSPACE_ENOMEM;

	g.e = c->tile;
	g.reps = 64;
	g.tile = malloc((size_t)g.e * g.e * sizeof(float));
	g.x = malloc(g.e * sizeof(float));
	g.y = malloc(g.e * sizeof(float));
	if (g.tile && g.x && g.y) {
		for (uint32_t i = 0; i < g.e; i++) {
			memcpy(g.tile + (size_t)i * g.e, master + (size_t)i * c->master,
			       g.e * sizeof(float));
			g.x[i] = (float)bench_rng_normal(&seed);
		}
		bli_rntm_init(&g.rntm);
		bli_rntm_set_num_threads(1, &g.rntm);
		bench_opts_default(&o);
		o.min_reps = 5;
		rc = bench_run(run_gemv, &g, &o, &st);
		*gbs = (double)g.e * g.e * 4 * g.reps / st.median / 1e9;
	}
	free(g.y);
	free(g.x);
	free(g.tile);
	return rc;
}

/* ---- main --------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const uint32_t ks[] = {1, 4, 16};
	static const int threads[] = {1, 2};
	static const char *names[] = {"zstd", "raw"};
	struct config cfg;
	bench_fisher_opts fo;
	char root[4096], path[4200], buf[32];
	double *m64 = NULL, *X = NULL, *Y = NULL, base = 0.0, logical;
	float *m32 = NULL;
	pspace_store *s = NULL;
	pspace_store_opts so;
	int rc;
	uint64_t seed = 11;

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (cfg.json && (rc = bench_json_open(cfg.json)) != 0)
		return fail(rc, "--json"), 1;
	logical = (double)cfg.d * (double)cfg.d * 4.0;

	printf("# bench_mv: products with a stored Dense matrix, in and out of cache\n\n");
	bench_machine_print(stdout);
	printf("- matrix: d = %llu, tile %u, symmetric (upper triangle stored), f32; %s logical\n",
	       (unsigned long long)cfg.d, cfg.tile, bench_fmt_bytes(buf, sizeof(buf), logical));
	printf("- GB/s = d*d*4 bytes (the logical matrix) / seconds per pass, GB = 1e9; "
	       "median of the timed passes\n");
	printf("- cold: store closed, posix_fadvise(POSIX_FADV_DONTNEED) on data.mdb, store "
	       "reopened (untimed), then one timed pass; 'resident' is the file's fraction in "
	       "the page cache after the drop (mincore)\n\n");

	rc = bench_tmpdir_create(cfg.dir, "bench-mv", root, sizeof(root));
	if (rc != 0)
		return fail(rc, "tmpdir"), 1;
	snprintf(path, sizeof(path), "%s/s", root);
	m64 = malloc(cfg.master * cfg.master * sizeof(*m64));
	m32 = malloc(cfg.master * cfg.master * sizeof(*m32));
	X = malloc(16 * cfg.d * sizeof(*X));
	Y = calloc(16 * cfg.d, sizeof(*Y));
	if (!m64 || !m32 || !X || !Y) {
		rc = fail(PSPACE_ENOMEM, "buffers");
		goto out;
	}
	for (uint64_t i = 0; i < 16 * cfg.d; i++)
		X[i] = bench_rng_normal(&seed);
	bench_fisher_opts_default(&fo, cfg.master);
	bench_progress("generating the master block");
	rc = bench_fisher_generate(&fo, m64, m32);
	if (rc != 0) {
		fail(rc, "generate");
		goto out;
	}

	pspace_store_opts_default(&so);
	so.nosync = 1;
	rc = pspace_store_open(&s, path, &so);
	for (int m = 0; m < 2 && rc == 0; m++) {
		bench_progress("writing %s", names[m]);
		rc = write_dense(s, names[m], &cfg, m == 1, m32);
	}
	if (rc != 0) {
		fail(rc, "writing the store");
		goto out;
	}
	bench_progress_end();
	bench_table_header(stdout, "matrices",
	                   "matrix|>tiles|>stored|>ratio (logical f32 / stored)");
	for (int m = 0; m < 2; m++) {
		pspace_matrix_info in;

		rc = pspace_matrix_info_get(&in, s, names[m]);
		if (rc != 0) {
			fail(rc, "info");
			goto out;
		}
		bench_table_row(stdout, "%s|%llu|%s|%.2f", names[m], (unsigned long long)in.tiles,
		                bench_fmt_bytes(buf, sizeof(buf), (double)in.tile_bytes),
		                logical / (double)in.tile_bytes);
	}
	pspace_store_close(s);
	s = NULL;

	rc = baseline(&cfg, m32, &base);
	if (rc != 0) {
		fail(rc, "baseline");
		goto out;
	}
	printf("\nBaseline: BLIS sgemv, 1 thread, one hot %ux%u tile repeated: **%.2f GB/s**\n\n",
	       cfg.tile, cfg.tile, base);

	bench_table_header(stdout, "mm",
	                   "matrix|cache|>threads|>k|>s/pass|>GB/s logical|>x sgemv hot "
	                   "tile|>resident");
	for (int m = 0; m < 2; m++)
		for (int cold = 0; cold < 2; cold++)
			for (int ti = 0; ti < 2; ti++)
				for (int ki = 0; ki < 3; ki++) {
					struct mm_work w = {0};
					bench_opts o;
					bench_stats st;
					double gbs;

					w.cfg = &cfg;
					w.path = path;
					w.name = names[m];
					snprintf(w.data, sizeof(w.data), "%s/data.mdb", path);
					w.ex.threads = threads[ti];
					w.k = ks[ki];
					w.cold = cold;
					w.X = X;
					w.Y = Y;
					w.resident = -1;
					bench_progress("%s %s threads=%d k=%u", names[m],
					               cold ? "cold" : "hot", threads[ti], ks[ki]);
					rc = work_open(&w);
					if (rc != 0) {
						fail(rc, "open");
						goto out;
					}
					bench_opts_default(&o);
					o.min_time = cfg.quick ? 0.05 : 0.5;
					o.min_reps = cold ? 2 : 3;
					o.max_reps = cold ? 3 : 50;
					o.warmup = cold ? 0 : 1;
					rc = bench_run_timed(run_mm, &w, &o, &st);
					work_close(&w);
					if (rc != 0) {
						fail(rc, "mm");
						goto out;
					}
					gbs = logical / st.median / 1e9;
					if (cold)
						snprintf(buf, sizeof(buf), "%.1f%%",
						         100.0 * w.resident);
					else
						snprintf(buf, sizeof(buf), "-");
					bench_table_row(stdout, "%s|%s|%d|%u|%.4f|%.2f|%.2f|%s",
					                names[m], cold ? "cold" : "hot",
					                threads[ti], ks[ki], st.median, gbs,
					                gbs / base, buf);
				}
	bench_progress_end();
out:
	pspace_store_close(s);
	if (!cfg.keep)
		bench_path_remove(root);
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	free(Y);
	free(X);
	free(m32);
	free(m64);
	return rc != 0 ? 1 : 0;
}
