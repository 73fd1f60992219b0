/*
 * bench_build_io - is an I/O-bound Dense build as fast as encoding and
 * writing its tiles allow?
 *
 * A Dense build from few Jacobian rows (default d = 32768, m = 64 rows) does
 * little arithmetic (m d (d + 1) flops) and much encoding and writing (the
 * d (d + 1) / 2 entries of the upper tiles). Three measurements, in one run
 * on the same tiles and the same store:
 *
 *   build   pspace_build_jacobian of matrix F (kind dense, default codec,
 *           tile 512, all threads, --mem budget), removed between builds;
 *   encode  every tile of F (read back and held in memory as the builder
 *           hands it to the encoder: f32 from one block of f32 products,
 *           m <= 1024, else float64) encoded with
 *           pspace_writer_encode_tile on the same threads, nothing stored;
 *   write   the tiles, encoded beforehand, stored by one thread with
 *           pspace_writer_put_encoded into a new matrix (begin to finish,
 *           with the checkpoints and commits a build makes).
 *
 * The build overlaps its encoding (on the workers) with writing (on the
 * writer thread), so its time can approach the larger of the other two;
 * the claim is max(encode, write) / build, target >= 0.8. The store is
 * opened with the defaults (commits are durable), as the tool opens it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pspace.h"

#define PROG "bench_build_io"
#define MIB  ((uint64_t)1 << 20)

struct config {
	int quick, reps;
	uint64_t d, m, mem;
	uint32_t tile;
	const char *dir;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--quick] [--d N] [--rows M] [--mem MIB] [--tile E] "
	           "[--reps R] [--dir DIR]\n"
	           "  --quick      d = 4096, m = 32 (a few seconds)\n"
	           "  --d N        dimension (32768)\n"
	           "  --rows M     Jacobian rows (64): few rows make the build I/O-bound\n"
	           "  --mem MIB    the build's memory budget in MiB (2048)\n"
	           "  --tile E     tile edge (512)\n"
	           "  --reps R     timed repetitions of each measurement (3; median)\n"
	           "  --dir DIR    where the temporary store goes ($TMPDIR or /tmp)\n");
}

static int parse_args(int argc, char **argv, struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->d = 32768;
	c->m = 64;
	c->mem = 2048;
	c->tile = 512;
	c->reps = 3;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long long x = 0;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->d = 4096;
			c->m = 32;
			c->mem = 256;
			continue;
		}
		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--dir") == 0) {
			c->dir = v;
		} else if (sscanf(v, "%llu", &x) != 1 || x == 0) {
			usage(stderr);
			return 2;
		} else if (strcmp(a, "--d") == 0) {
			c->d = x;
		} else if (strcmp(a, "--rows") == 0) {
			c->m = x;
		} else if (strcmp(a, "--mem") == 0) {
			c->mem = x;
		} else if (strcmp(a, "--tile") == 0 && x <= 65536) {
			c->tile = (uint32_t)x;
		} else if (strcmp(a, "--reps") == 0 && x <= 100) {
			c->reps = (int)x;
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	return 0;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

/* The Jacobian, m x d row-major (one output per example). */
struct jac {
	uint64_t m, d;
	double *j;
};

static int jac_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	const struct jac *J = ud;

	for (uint64_t x = 0; x < nx; x++)
		memcpy(out + x * ld, J->j + (x0 + x) * J->d, J->d * sizeof(double));
	return 0;
}

/*
 * F's upper tiles in streaming order, as the builder hands them to the
 * encoder (f32 when the m rows make one block of its f32 products, at most
 * 1024, else float64), and their encodings.
 */
#define F32_BLOCK_ROWS 1024
struct tiles {
	uint64_t n;
	uint32_t *row, *col, *rows, *cols;
	pspace_dtype type;
	void **data;
	void **enc;
	size_t *len;
	uint64_t enc_bytes;
};

static void tiles_free(struct tiles *t)
{
	for (uint64_t i = 0; i < t->n; i++) {
		free(t->data ? t->data[i] : NULL);
		free(t->enc ? t->enc[i] : NULL);
	}
	free(t->row);
	free(t->col);
	free(t->rows);
	free(t->cols);
	free(t->data);
	free(t->enc);
	free(t->len);
	memset(t, 0, sizeof(*t));
}

/* Reads every tile of F back, decoded to @p type. */
static int tiles_load(struct tiles *t, pspace_store *s, uint64_t d, uint32_t T, pspace_dtype type)
{
	uint64_t nt = (d + T - 1) / T;
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	int rc;

	memset(t, 0, sizeof(*t));
	t->n = nt * (nt + 1) / 2;
	t->type = type;
	t->row = calloc(t->n, sizeof(*t->row));
	t->col = calloc(t->n, sizeof(*t->col));
	t->rows = calloc(t->n, sizeof(*t->rows));
	t->cols = calloc(t->n, sizeof(*t->cols));
	t->data = calloc(t->n, sizeof(*t->data));
	t->enc = calloc(t->n, sizeof(*t->enc));
	t->len = calloc(t->n, sizeof(*t->len));
	if (!t->row || !t->col || !t->rows || !t->cols || !t->data || !t->enc || !t->len)
		return PSPACE_ENOMEM;
	rc = pspace_codec_create(&c);
	if (rc == 0)
		rc = pspace_reader_open(&r, s, "F", 0);
	for (uint64_t i = 0; rc == 0 && i < t->n; i++) {
		pspace_tile_ref ref;
		int done = 0;

		rc = pspace_reader_next(&ref, &done, r);
		if (rc != 0)
			break;
		if (done) {
			fprintf(stderr, PROG ": F has fewer tiles than expected\n");
			rc = PSPACE_ECORRUPT;
			break;
		}
		t->row[i] = ref.row;
		t->col[i] = ref.col;
		t->rows[i] =
		    (uint32_t)(d - (uint64_t)ref.row * T < T ? d - (uint64_t)ref.row * T : T);
		t->cols[i] =
		    (uint32_t)(d - (uint64_t)ref.col * T < T ? d - (uint64_t)ref.col * T : T);
		t->data[i] = malloc((size_t)t->rows[i] * t->cols[i] * pspace_dtype_size(type));
		if (!t->data[i])
			rc = PSPACE_ENOMEM;
		else
			rc = pspace_reader_decode(r, c, &ref, type, t->data[i], t->cols[i]);
		if (i % 64 == 0)
			bench_progress("reading F's tiles back: %llu / %llu", (unsigned long long)i,
			               (unsigned long long)t->n);
	}
	pspace_reader_close(r);
	pspace_codec_free(c);
	return rc;
}

/* The encode measurement: each thread encodes every nthreads-th tile. */
struct enc_work {
	struct tiles *t;
	const pspace_writer *w;
	int keep; /* keep copies of the encodings (for the write measurement) */
};

static int encode_part(void *ctx, int tid, int nthreads)
{
	struct enc_work *e = ctx;
	struct tiles *t = e->t;
	pspace_codec *c = NULL;
	int rc = pspace_codec_create(&c);

	for (uint64_t i = (uint64_t)tid; rc == 0 && i < t->n; i += (uint64_t)nthreads) {
		const void *enc;
		size_t len;

		rc = pspace_writer_encode_tile(&enc, &len, e->w, c, 0, t->row[i], t->col[i],
		                               t->type, t->data[i], t->cols[i]);
		if (rc == 0 && e->keep) {
			t->enc[i] = malloc(len);
			if (!t->enc[i]) {
				rc = PSPACE_ENOMEM;
				break;
			}
			memcpy(t->enc[i], enc, len);
			t->len[i] = len;
		}
	}
	pspace_codec_free(c);
	return rc;
}

struct run {
	const struct config *c;
	pspace_store *s;
	pspace_matrix_desc desc;
	struct jac J;
	pspace_layout *layout;
	struct tiles t;
	int threads;
};

static int drop(pspace_store *s, const char *name)
{
	pspace_matrix_info info;

	return pspace_matrix_info_get(&info, s, name) == 0 ? pspace_store_remove(s, name) : 0;
}

static int run_build(void *ctx, double *seconds)
{
	struct run *r = ctx;
	pspace_jac_source src = {r->J.m, 1, r->J.d, jac_read, &r->J};
	pspace_build_opts o;
	double t0;
	int rc = drop(r->s, "F");

	pspace_build_opts_default(&o);
	o.kind = PSPACE_KIND_DENSE;
	o.write.tile = r->c->tile;
	o.exec.threads = r->threads;
	o.exec.mem_budget = r->c->mem * MIB;
	if (rc != 0)
		return rc;
	t0 = bench_clock_now();
	rc = pspace_build_jacobian(r->s, "F", r->layout, &src, &o);
	*seconds = bench_clock_now() - t0;
	return rc;
}

static int run_encode(void *ctx, double *seconds)
{
	struct run *r = ctx;
	pspace_writer *w = NULL;
	struct enc_work e;
	double t0;
	int rc = drop(r->s, "E");

	/* a writer only for its matrix's shape and codec: nothing is stored */
	if (rc == 0)
		rc = pspace_writer_begin(&w, r->s, "E", &r->desc);
	if (rc != 0)
		return rc;
	e = (struct enc_work){&r->t, w, 0};
	t0 = bench_clock_now();
	rc = bench_parallel(r->threads, encode_part, &e);
	*seconds = bench_clock_now() - t0;
	pspace_writer_abort(w, 1);
	return rc;
}

static int run_write(void *ctx, double *seconds)
{
	struct run *r = ctx;
	pspace_writer *w = NULL;
	double t0;
	int rc = drop(r->s, "W");

	if (rc != 0)
		return rc;
	t0 = bench_clock_now();
	rc = pspace_writer_begin(&w, r->s, "W", &r->desc);
	for (uint64_t i = 0; rc == 0 && i < r->t.n; i++)
		rc = pspace_writer_put_encoded(w, 0, r->t.row[i], r->t.col[i], r->t.enc[i],
		                               r->t.len[i]);
	if (rc == 0) {
		rc = pspace_writer_finish(w);
		w = NULL;
	}
	*seconds = bench_clock_now() - t0;
	pspace_writer_abort(w, 1);
	return rc;
}

static int timed(struct run *r, bench_timed_fn fn, const char *what, double *median)
{
	bench_opts o;
	bench_stats st;
	int rc;

	bench_progress("%s", what);
	bench_opts_default(&o);
	o.min_time = 0;
	o.min_reps = r->c->reps;
	o.max_reps = r->c->reps;
	o.warmup = 0;
	rc = bench_run_timed(fn, r, &o, &st);
	*median = st.median;
	return rc == 0 ? 0 : fail(rc, what);
}

static int bench(struct run *r)
{
	const struct config *c = r->c;
	pspace_matrix_info info;
	double t_build[2], t_enc, t_wr, useful = (double)c->m * (double)c->d * (double)(c->d + 1);
	double worst, share, logical = 4.0 * (double)c->d * (double)c->d;
	char b1[32], b2[32];
	struct enc_work keep;
	pspace_writer *w = NULL;
	int rc;

	/* the build first, so its tiles are there to read back */
	rc = timed(r, run_build, "build", &t_build[0]);
	if (rc == 0)
		rc = pspace_matrix_info_get(&info, r->s, "F");
	if (rc == 0)
		rc = tiles_load(&r->t, r->s, c->d, c->tile,
		                c->m <= F32_BLOCK_ROWS ? PSPACE_F32 : PSPACE_F64);
	if (rc != 0)
		return fail(rc, "reading F back");
	r->desc =
	    (pspace_matrix_desc){PSPACE_KIND_DENSE, c->d, 1, NULL, info.tile, 1, info.codec, NULL};
	bench_progress("encoding the tiles for the write measurement");
	rc = drop(r->s, "E");
	if (rc == 0)
		rc = pspace_writer_begin(&w, r->s, "E", &r->desc);
	keep = (struct enc_work){&r->t, w, 1};
	if (rc == 0)
		rc = bench_parallel(r->threads, encode_part, &keep);
	pspace_writer_abort(w, 1);
	for (uint64_t i = 0; rc == 0 && i < r->t.n; i++)
		r->t.enc_bytes += r->t.len[i];
	if (rc != 0)
		return fail(rc, "encoding");
	/* alternate, so a drift of the machine shows as a spread of the builds */
	rc = timed(r, run_encode, "encode", &t_enc);
	if (rc == 0)
		rc = timed(r, run_write, "write", &t_wr);
	if (rc == 0)
		rc = timed(r, run_build, "build again", &t_build[1]);
	bench_progress_end();
	if (rc != 0)
		return rc;
	worst = t_enc > t_wr ? t_enc : t_wr;
	printf("## I/O-bound Dense build\n\n");
	bench_info(stdout, "matrix",
	           "d = %llu from m = %llu Jacobian rows (standard normal): %llu upper tiles of "
	           "%u, default codec, %s stored (%s logical f32)",
	           (unsigned long long)c->d, (unsigned long long)c->m, (unsigned long long)r->t.n,
	           c->tile, bench_fmt_bytes(b1, sizeof(b1), (double)r->t.enc_bytes),
	           bench_fmt_bytes(b2, sizeof(b2), logical));
	bench_info(stdout, "threads", "%d (build workers, encode); the write is one thread",
	           r->threads);
	bench_info(stdout, "budget", "%llu MiB; seconds = median of %d", (unsigned long long)c->mem,
	           c->reps);
	printf("\n");
	bench_table_header(stdout, "build_io", "step|>s|>stored MB/s|>logical GB/s");
	bench_table_row(stdout, "encode (tiles from %s, %d threads)|%.2f|%.0f|%.2f",
	                pspace_dtype_name(r->t.type), r->threads, t_enc,
	                bench_mbps((double)r->t.enc_bytes, t_enc), logical / t_enc / 1e9);
	bench_table_row(stdout, "write (encoded tiles, begin to finish)|%.2f|%.0f|%.2f", t_wr,
	                bench_mbps((double)r->t.enc_bytes, t_wr), logical / t_wr / 1e9);
	for (int i = 0; i < 2; i++)
		bench_table_row(stdout, "build %s (%.1f useful GFLOP/s)|%.2f|%.0f|%.2f",
		                i ? "(after)" : "(before)", useful / t_build[i] / 1e9, t_build[i],
		                bench_mbps((double)r->t.enc_bytes, t_build[i]),
		                logical / t_build[i] / 1e9);
	/* Encoding and writing are both CPU work here (the page cache takes the
	 * writes): on this many cores, the build cannot beat their CPU time
	 * shared out. */
	share = ((double)r->threads * t_enc + t_wr) / (double)r->threads;
	share = share > worst ? share : worst;
	printf("\nmax(encode, write) / build = %.2f and %.2f (target >= 0.8): the build runs at "
	       "that fraction of the slower of encoding and writing its tiles.\n"
	       "Both are CPU work when the page cache takes the writes: on %d cores the "
	       "build needs at least (%d x encode + write) / %d = %.2f s, and reaches "
	       "%.2f and %.2f of that bound.\n",
	       worst / t_build[0], worst / t_build[1], r->threads, r->threads, r->threads, share,
	       share / t_build[0], share / t_build[1]);
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct run r;
	char root[4096], path[4200];
	uint64_t state = 17;
	int rc;

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	memset(&r, 0, sizeof(r));
	r.c = &cfg;
	r.threads = bench_ncpus();
	rc = bench_tmpdir_create(cfg.dir, "bench-build-io", root, sizeof(root));
	if (rc != 0)
		return fail(rc, "tmpdir"), 1;
	snprintf(path, sizeof(path), "%s/s", root);
	printf("# " PROG ": an I/O-bound Dense build against encoding and writing alone\n\n");
	bench_machine_print(stdout);
	printf("\n");
	r.J = (struct jac){cfg.m, cfg.d, malloc(cfg.m * cfg.d * sizeof(double))};
	if (!r.J.j) {
		rc = fail(PSPACE_ENOMEM, "the Jacobian");
		goto out;
	}
	for (uint64_t i = 0; i < cfg.m * cfg.d; i++)
		r.J.j[i] = bench_rng_normal(&state);
	rc = pspace_layout_flat(&r.layout, cfg.d);
	if (rc == 0)
		rc = pspace_store_open(&r.s, path, NULL);
	if (rc != 0) {
		fail(rc, "setup");
		goto out;
	}
	rc = bench(&r);
out:
	bench_progress_end();
	tiles_free(&r.t);
	pspace_store_close(r.s);
	pspace_layout_free(r.layout);
	free(r.J.j);
	bench_path_remove(root);
	return rc != 0 ? 1 : 0;
}
