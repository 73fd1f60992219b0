/*
 * report_mv - the C measurements behind bench/run.sh's report: one
 * measurement per call, its result as one JSON line on stdout (the last
 * line), so the driver (bench/report/report.py) can run each one in its own
 * process, under a cgroup memory cap, after dropping the page cache.
 *
 *   write   a symmetric dense d x d matrix (tiles cut from a Fisher-like
 *           master block, as bench_mv) into a store as "f32" (default codec),
 *           "bf16" (bf16 + default codec) and "raw" (level 0), and the same
 *           matrix as a row-major f32 file (for numpy.memmap, h5py, pread)
 *   mm      pspace_stream_mm (k = 1: mv) on one stored matrix
 *   pread   the plain C baseline: pread row panels of the raw file, BLIS
 *           sgemv (k = 1) or sgemm per panel
 *   readbw  sequential pread of a file: the disk's (or page cache's) read
 *           bandwidth
 *   membw   a STREAM-like read (sum) of a buffer in RAM
 *   gemm    BLIS sgemm GFLOP/s (square n = 2048, the same threads): the
 *           peak that bounds mm with many right-hand sides
 *   decode  a pass of the streaming engine whose kernel only reads each
 *           decoded tile, in row panels as mm takes f32 tiles: the decode
 *           throughput with the same threads
 *   machine the harness's description of the machine (markdown, not JSON)
 *
 * Cold passes close everything mapped, drop the page cache (as root
 * `sync; echo 3 > /proc/sys/vm/drop_caches`, else posix_fadvise DONTNEED on
 * the file) and reopen, untimed. Every product uses the same vector
 * x_i = ((i * 7919) mod 1000) / 1000 - 0.5 in each column, and reports the
 * sum of the first column of the result as a checksum, so the driver can
 * check that all methods multiply the same matrix.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <blis.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "harness.h"
#include "kernel/stream.h"
#include "pspace.h"

#define PROG "report_mv"

struct config {
	const char *cmd, *dir, *store, *matrix, *file;
	uint64_t d;
	uint32_t tile, k;
	int threads, reps, warmup, cold;
	size_t budget_mib, panel_mib, mib, direct_kib;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " COMMAND [options]   (prints one JSON line)\n"
	           "  write  --dir DIR --d N [--tile E]     store DIR/store + DIR/matrix.f32\n"
	           "  mm     --store DIR --matrix NAME --d N [--k K]\n"
	           "  pread  --file F --d N [--k K] [--panel-mib P]\n"
	           "  readbw --file F [--direct-kib K]     read(), 8 MiB; or O_DIRECT, K KiB a\n"
	           "                                       request, --threads readers\n"
	           "  membw  [--mib M]\n"
	           "  gemm                                 sgemm peak, n = 2048\n"
	           "  decode --store DIR --matrix NAME --d N\n"
	           "  machine                              (markdown lines, not JSON)\n"
	           "options: --threads T (2) --reps R (3) --warmup W (1) --cold\n"
	           "         --budget-mib B (256, pspace's working memory) --panel-mib P (32)\n"
	           "         --mib M (512) --tile E (512)\n");
}

static int parse_args(int argc, char **argv, struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->tile = 512;
	c->k = 1;
	c->threads = 2;
	c->reps = 3;
	c->warmup = 1;
	c->budget_mib = 256;
	c->panel_mib = 32;
	c->mib = 512;
	if (argc < 2)
		return usage(stderr), 2;
	c->cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--cold") == 0) {
			c->cold = 1;
			continue;
		}
		if (!v)
			return usage(stderr), 2;
		i++;
		if (strcmp(a, "--dir") == 0)
			c->dir = v;
		else if (strcmp(a, "--store") == 0)
			c->store = v;
		else if (strcmp(a, "--matrix") == 0)
			c->matrix = v;
		else if (strcmp(a, "--file") == 0)
			c->file = v;
		else if (strcmp(a, "--d") == 0)
			c->d = strtoull(v, NULL, 10);
		else if (strcmp(a, "--tile") == 0)
			c->tile = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--k") == 0)
			c->k = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--threads") == 0)
			c->threads = atoi(v);
		else if (strcmp(a, "--reps") == 0)
			c->reps = atoi(v);
		else if (strcmp(a, "--warmup") == 0)
			c->warmup = atoi(v);
		else if (strcmp(a, "--budget-mib") == 0)
			c->budget_mib = strtoull(v, NULL, 10);
		else if (strcmp(a, "--panel-mib") == 0)
			c->panel_mib = strtoull(v, NULL, 10);
		else if (strcmp(a, "--mib") == 0)
			c->mib = strtoull(v, NULL, 10);
		else if (strcmp(a, "--direct-kib") == 0)
			c->direct_kib = strtoull(v, NULL, 10);
		else
			return usage(stderr), 2;
	}
	if (c->k < 1 || c->threads < 1 || c->reps < 1 || c->warmup < 0 || c->panel_mib < 1 ||
	    c->mib < 1) {
		fprintf(stderr, PROG ": bad option value\n");
		return 2;
	}
	return 0;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

/* ---- the page cache ---------------------------------------------------------- */

/* Drops the page cache: all of it as root, else @p file's pages. */
static int drop_cache(const char *file)
{
	int fd, rc;

	if (geteuid() == 0 && bench_drop_caches() == 0)
		return 0;
	fd = open(file, O_RDONLY);
	if (fd < 0)
		return pspace_err_set(PSPACE_EIO, "open %s: %s", file, strerror(errno));
	rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return rc == 0 ? 0 : pspace_err_set(PSPACE_EIO, "posix_fadvise %s", file);
}

static const char *drop_kind(void)
{
	return geteuid() == 0 ? "drop_caches" : "fadvise";
}

static void print_result(const bench_stats *st, double bytes, double checksum,
                         const struct config *c)
{
	printf("{\"median\": %.6g, \"min\": %.6g, \"reps\": %d, \"bytes\": %.17g, "
	       "\"checksum\": %.17g, \"cold\": %d, \"drop\": \"%s\", \"threads\": %d, \"k\": %u}\n",
	       st->median, st->min, st->reps, bytes, checksum, c->cold, c->cold ? drop_kind() : "",
	       c->threads, c->k);
}

static void fill_x(double *X, float *xf, uint64_t d, uint32_t k)
{
	for (uint64_t i = 0; i < d; i++) {
		double v = (double)((i * 7919) % 1000) / 1000.0 - 0.5;

		for (uint32_t j = 0; j < k; j++) {
			if (X)
				X[j * d + i] = v;
			if (xf)
				xf[i * k + j] = (float)v;
		}
	}
}

static void timing_opts(const struct config *c, bench_opts *o)
{
	bench_opts_default(o);
	o->min_time = 0;
	o->min_reps = c->reps;
	o->max_reps = c->reps;
	o->warmup = c->cold ? 0 : c->warmup;
}

/* ---- write ------------------------------------------------------------------- */

static int write_matrix(pspace_store *s, const char *name, const struct config *c,
                        const float *master, size_t m)
{
	pspace_matrix_desc desc = {
	    .kind = PSPACE_KIND_DENSE, .d = c->d, .nblocks = 1, .tile = c->tile, .symmetric = 1};
	pspace_writer *w = NULL;
	uint64_t bytes;
	int rc;

	pspace_codec_opts_default(&desc.codec);
	if (strcmp(name, "raw") == 0)
		desc.codec.level = 0;
	else if (strcmp(name, "bf16") == 0)
		desc.codec.dtype = PSPACE_BF16;
	rc = pspace_writer_begin(&w, s, name, &desc);
	if (rc != 0)
		return rc;
	rc = bench_dense_put_tiles(w, c->d, c->tile, 1, master, m, &bytes);
	if (rc != 0) {
		pspace_writer_abort(w, 1);
		return rc;
	}
	return pspace_writer_finish(w);
}

/* Row r of the matrix bench_dense_put_tiles() stores is row r mod m of the master. */
static int write_raw_file(const char *path, const struct config *c, const float *master, size_t m)
{
	float *row = malloc(c->d * sizeof(float));
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!row || !f) {
		rc = pspace_err_set(row ? PSPACE_EIO : PSPACE_ENOMEM, "%s: %s", path,
		                    strerror(errno));
		goto out;
	}
	for (uint64_t r = 0; r < c->d && rc == 0; r++) {
		const float *src = master + (r % m) * m;

		for (uint64_t j = 0; j < c->d; j += m)
			memcpy(row + j, src, (c->d - j < m ? c->d - j : m) * sizeof(float));
		if (fwrite(row, sizeof(float), c->d, f) != c->d)
			rc = pspace_err_set(PSPACE_EIO, "write %s: %s", path, strerror(errno));
	}
out:
	if (f && fclose(f) != 0 && rc == 0)
		rc = pspace_err_set(PSPACE_EIO, "close %s: %s", path, strerror(errno));
	free(row);
	return rc;
}

static int cmd_write(const struct config *c)
{
	static const char *names[] = {"f32", "bf16", "raw"};
	bench_fisher_opts fo;
	pspace_store_opts so;
	pspace_store *s = NULL;
	size_t m = (size_t)c->tile * (c->d >= 4 * (uint64_t)c->tile ? 4 : 1);
	double *m64 = malloc(m * m * sizeof(double));
	float *m32 = malloc(m * m * sizeof(float));
	char path[4200];
	int rc;

	if (!c->dir || c->d < c->tile) {
		fprintf(stderr, PROG ": write needs --dir and --d >= --tile\n");
		rc = 2;
		goto out;
	}
	if (!m64 || !m32) {
		rc = fail(PSPACE_ENOMEM, "master block");
		goto out;
	}
	bench_fisher_opts_default(&fo, m);
	rc = bench_fisher_generate(&fo, m64, m32);
	if (rc != 0) {
		fail(rc, "generate");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/store", c->dir);
	pspace_store_opts_default(&so);
	so.nosync = 1;
	rc = pspace_store_open(&s, path, &so);
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = write_matrix(s, names[i], c, m32, m);
	if (rc != 0) {
		fail(rc, "writing the store");
		goto out;
	}
	printf("{\"d\": %llu, \"tile\": %u", (unsigned long long)c->d, c->tile);
	for (int i = 0; i < 3; i++) {
		pspace_matrix_info in;

		rc = pspace_matrix_info_get(&in, s, names[i]);
		if (rc != 0) {
			fail(rc, "info");
			goto out;
		}
		printf(", \"%s\": %llu", names[i], (unsigned long long)in.tile_bytes);
	}
	pspace_store_close(s);
	s = NULL;
	snprintf(path, sizeof(path), "%s/matrix.f32", c->dir);
	rc = write_raw_file(path, c, m32, m);
	if (rc != 0) {
		fail(rc, "raw file");
		goto out;
	}
	printf(", \"file\": %.17g}\n", (double)c->d * (double)c->d * 4.0);
out:
	pspace_store_close(s);
	free(m32);
	free(m64);
	return rc;
}

/* ---- mm and decode: passes of the streaming engine ---------------------------- */

struct mm_work {
	const struct config *c;
	char data[4300];
	pspace_store *s;
	pspace_tiled t;
	pspace_exec ex;
	double *X, *Y;
	int decode_only;
	double sum;
};

static int work_open(struct mm_work *w)
{
	pspace_store_opts o;
	int rc;

	pspace_store_opts_default(&o);
	o.readonly = 1;
	o.create = 0;
	rc = pspace_store_open(&w->s, w->c->store, &o);
	if (rc == 0)
		rc = pspace_tiled_open(&w->t, w->s, w->c->matrix);
	return rc;
}

static void work_close(struct mm_work *w)
{
	pspace_tiled_close(&w->t);
	pspace_store_close(w->s);
	w->s = NULL;
}

struct touch_ws {
	double sum;
};

static int touch_tile(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	struct touch_ws *t = ws;

	(void)ud;
	if (tiles[0].data)
		t->sum += bench_sum_f32(tiles[0].data, (size_t)tiles[0].rows * tiles[0].cols);
	return 0;
}

static int touch_finish(void *ws, void *ud)
{
	((struct mm_work *)ud)->sum += ((struct touch_ws *)ws)->sum;
	return 0;
}

static int run_pass(void *ctx, double *seconds)
{
	struct mm_work *w = ctx;
	const struct config *c = w->c;
	/* in row panels, as mm reads f32 tiles: the decode path of the products */
	pspace_stream_kernel kern = {.worker_size = sizeof(struct touch_ws),
	                             .tile = touch_tile,
	                             .finish = touch_finish,
	                             .want = PSPACE_F32,
	                             .panels = 1};
	double t0;
	int rc;

	if (c->cold) {
		/* Closing the store unmaps the file, so the drop reaches every page. */
		work_close(w);
		rc = drop_cache(w->data);
		if (rc == 0)
			rc = work_open(w);
		if (rc != 0)
			return rc;
	}
	if (!w->decode_only)
		memset(w->Y, 0, (size_t)c->d * c->k * sizeof(double));
	t0 = bench_clock_now();
	if (w->decode_only)
		rc = pspace_stream_run(&w->t, &w->ex, &kern, w);
	else
		rc = pspace_stream_mm(&w->t, &w->ex, c->k, 1.0, w->X, c->d, w->Y, c->d);
	*seconds = bench_clock_now() - t0;
	return rc;
}

static int cmd_mm(const struct config *c, int decode_only)
{
	struct mm_work w = {0};
	bench_opts o;
	bench_stats st;
	double sum = 0;
	int rc;

	if (!c->store || !c->matrix || c->d < 1) {
		fprintf(stderr, PROG ": %s needs --store, --matrix and --d\n", c->cmd);
		return 2;
	}
	w.c = c;
	w.decode_only = decode_only;
	w.ex.threads = c->threads;
	w.ex.mem_budget = c->budget_mib << 20;
	snprintf(w.data, sizeof(w.data), "%s/data.mdb", c->store);
	w.X = malloc((size_t)c->d * c->k * sizeof(double));
	w.Y = malloc((size_t)c->d * c->k * sizeof(double));
	if (!w.X || !w.Y) {
		rc = fail(PSPACE_ENOMEM, "vectors");
		goto out;
	}
	fill_x(w.X, NULL, c->d, c->k);
	rc = work_open(&w);
	if (rc != 0) {
		fail(rc, "open");
		goto out;
	}
	if (w.t.info.d != c->d) {
		fprintf(stderr, PROG ": %s has d = %llu, not %llu\n", c->matrix,
		        (unsigned long long)w.t.info.d, (unsigned long long)c->d);
		rc = 2;
		goto out;
	}
	timing_opts(c, &o);
	rc = bench_run_timed(run_pass, &w, &o, &st);
	if (rc != 0) {
		fail(rc, c->cmd);
		goto out;
	}
	for (uint64_t i = 0; !decode_only && i < c->d; i++)
		sum += w.Y[i];
	print_result(&st, (double)c->d * (double)c->d * 4.0, decode_only ? w.sum : sum, c);
out:
	work_close(&w);
	free(w.Y);
	free(w.X);
	return rc;
}

/* ---- pread + BLIS ------------------------------------------------------------- */

struct pread_work {
	const struct config *c;
	int fd;
	float *panel, *x, *y, *yp;
	uint64_t rows;
	rntm_t rntm;
};

static int read_full(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t got = pread(fd, p, n, off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return pspace_err_set(PSPACE_EIO, "pread: %s",
			                      got < 0 ? strerror(errno) : "short file");
		p += got;
		off += got;
		n -= (size_t)got;
	}
	return 0;
}

static int run_pread(void *ctx, double *seconds)
{
	struct pread_work *p = ctx;
	const struct config *c = p->c;
	uint64_t d = c->d, k = c->k;
	float one = 1.0f, zero = 0.0f;
	double t0;
	int rc = 0;

	if (c->cold) {
		rc = drop_cache(c->file);
		if (rc != 0)
			return rc;
	}
	t0 = bench_clock_now();
	for (uint64_t r0 = 0; r0 < d && rc == 0; r0 += p->rows) {
		uint64_t n = d - r0 < p->rows ? d - r0 : p->rows;

		rc = read_full(p->fd, p->panel, n * d * sizeof(float), (off_t)(r0 * d * 4));
		if (rc != 0)
			break;
		if (k == 1)
			bli_sgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)n, (dim_t)d, &one,
			             p->panel, (inc_t)d, 1, p->x, 1, &zero, p->y + r0, 1, NULL,
			             &p->rntm);
		else
			bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)n, (dim_t)k,
			             (dim_t)d, &one, p->panel, (inc_t)d, 1, p->x, (inc_t)k, 1,
			             &zero, p->y + r0 * k, (inc_t)k, 1, NULL, &p->rntm);
	}
	*seconds = bench_clock_now() - t0;
	return rc;
}

static int cmd_pread(const struct config *c)
{
	struct pread_work p = {.c = c, .fd = -1};
	bench_opts o;
	bench_stats st;
	double sum = 0;
	int rc = 0;

	if (!c->file || c->d < 1) {
		fprintf(stderr, PROG ": pread needs --file and --d\n");
		return 2;
	}
	p.rows = (c->panel_mib << 20) / (c->d * sizeof(float));
	p.rows = p.rows < 1 ? 1 : p.rows;
	p.fd = open(c->file, O_RDONLY);
	p.panel = malloc(p.rows * c->d * sizeof(float));
	p.x = malloc(c->d * c->k * sizeof(float));
	p.y = malloc(c->d * c->k * sizeof(float));
	if (p.fd < 0 || !p.panel || !p.x || !p.y) {
		rc = fail(p.fd < 0 ? PSPACE_EIO : PSPACE_ENOMEM, c->file);
		goto out;
	}
	fill_x(NULL, p.x, c->d, c->k);
	bli_rntm_init(&p.rntm);
	bli_rntm_set_num_threads(c->threads, &p.rntm);
	timing_opts(c, &o);
	rc = bench_run_timed(run_pread, &p, &o, &st);
	if (rc != 0) {
		fail(rc, "pread");
		goto out;
	}
	for (uint64_t i = 0; i < c->d; i++)
		sum += p.y[i * c->k];
	print_result(&st, (double)c->d * (double)c->d * 4.0, sum, c);
out:
	if (p.fd >= 0)
		close(p.fd);
	free(p.y);
	free(p.x);
	free(p.panel);
	return rc;
}

/* ---- limits: sequential file read, memory read ------------------------------------ */

struct readbw_work {
	const struct config *c;
	char *buf;
	size_t chunk;
	double bytes, sum;
};

/* Drops the file's pages when cold, then starts the clock (*t0). */
static int read_start(const struct readbw_work *r, double *t0)
{
	int rc = r->c->cold ? drop_cache(r->c->file) : 0;

	*t0 = bench_clock_now();
	return rc;
}

static int run_readbw(void *ctx, double *seconds)
{
	struct readbw_work *r = ctx;
	int fd, rc;
	double t0;

	rc = read_start(r, &t0);
	if (rc != 0)
		return rc;
	fd = open(r->c->file, O_RDONLY);
	if (fd < 0)
		return pspace_err_set(PSPACE_EIO, "open %s: %s", r->c->file, strerror(errno));
	r->bytes = 0;
	for (;;) {
		ssize_t got = read(fd, r->buf, r->chunk);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			rc = pspace_err_set(PSPACE_EIO, "read %s: %s", r->c->file, strerror(errno));
		if (got <= 0)
			break;
		r->sum += (double)r->buf[got - 1]; /* the bytes were delivered */
		r->bytes += (double)got;
	}
	close(fd);
	*seconds = bench_clock_now() - t0;
	return rc;
}

/*
 * The same file read with O_DIRECT (no page cache, no read-ahead) by
 * --threads readers, each taking every threads-th request of --direct-kib
 * KiB in file order: as many requests in flight as readers. Here (virtio
 * disk) 8 readers of 512 KiB read faster than one read() loop of 8 MiB
 * requests, and 8 MiB requests in any number slower.
 */
struct direct_work {
	struct readbw_work *r;
	int fd;
	uint64_t size;
};

static int direct_part(void *ctx, int tid, int nthreads)
{
	struct direct_work *w = ctx;
	size_t chunk = w->r->chunk;
	void *buf = NULL;

	if (posix_memalign(&buf, 4096, chunk) != 0)
		return pspace_err_set(PSPACE_ENOMEM, "readbw: buffer");
	for (uint64_t off = (uint64_t)tid * chunk; off < w->size;
	     off += (uint64_t)nthreads * chunk) {
		ssize_t got;

		do
			got = pread(w->fd, buf, chunk, (off_t)off);
		while (got < 0 && errno == EINTR);
		if (got <= 0) {
			free(buf);
			return pspace_err_set(PSPACE_EIO, "read %s at %llu: %s", w->r->c->file,
			                      (unsigned long long)off,
			                      got < 0 ? strerror(errno) : "end of file");
		}
	}
	free(buf);
	return 0;
}

static int run_direct(void *ctx, double *seconds)
{
	struct readbw_work *r = ctx;
	struct direct_work w = {.r = r};
	struct stat sb;
	int rc;
	double t0;

	rc = read_start(r, &t0);
	if (rc != 0)
		return rc;
	w.fd = open(r->c->file, O_RDONLY | O_DIRECT);
	if (w.fd < 0 || fstat(w.fd, &sb) != 0)
		rc = pspace_err_set(PSPACE_EIO, "open %s (O_DIRECT): %s", r->c->file,
		                    strerror(errno));
	if (rc == 0) {
		w.size = (uint64_t)sb.st_size / 4096 * 4096; /* whole blocks: O_DIRECT's unit */
		rc = bench_parallel(r->c->threads, direct_part, &w);
	}
	if (w.fd >= 0)
		close(w.fd);
	*seconds = bench_clock_now() - t0;
	r->bytes = (double)w.size;
	return rc;
}

static int cmd_readbw(const struct config *c)
{
	struct readbw_work r = {.c = c, .chunk = c->direct_kib ? c->direct_kib << 10 : 8u << 20};
	bench_opts o;
	bench_stats st;
	int rc;

	if (!c->file) {
		fprintf(stderr, PROG ": readbw needs --file\n");
		return 2;
	}
	/* the O_DIRECT readers have aligned buffers of their own */
	r.buf = c->direct_kib ? NULL : malloc(r.chunk);
	if (!c->direct_kib && !r.buf)
		return fail(PSPACE_ENOMEM, "buffer");
	timing_opts(c, &o);
	rc = bench_run_timed(c->direct_kib ? run_direct : run_readbw, &r, &o, &st);
	if (rc != 0)
		fail(rc, "readbw");
	else
		print_result(&st, r.bytes, r.sum, c);
	free(r.buf);
	return rc;
}

struct membw_work {
	const float *a;
	size_t n;
	int threads;
	double part[64];
};

static int membw_part(void *ctx, int tid, int nthreads)
{
	struct membw_work *m = ctx;
	size_t lo = m->n * (size_t)tid / (size_t)nthreads,
	       hi = m->n * (size_t)(tid + 1) / (size_t)nthreads;

	m->part[tid] += bench_sum_f32(m->a + lo, hi - lo);
	return 0;
}

static int run_membw(void *ctx, double *seconds)
{
	struct membw_work *m = ctx;
	double t0 = bench_clock_now();
	int rc = bench_parallel(m->threads, membw_part, m);

	*seconds = bench_clock_now() - t0;
	return rc;
}

static int cmd_membw(const struct config *c)
{
	struct membw_work m = {0};
	bench_opts o;
	bench_stats st;
	float *a;
	double sum = 0;
	int rc;

	m.n = (c->mib << 20) / sizeof(float);
	m.threads = c->threads > 64 ? 64 : c->threads;
	a = malloc(m.n * sizeof(float));
	if (!a)
		return fail(PSPACE_ENOMEM, "buffer");
	for (size_t i = 0; i < m.n; i++)
		a[i] = (float)(i & 1023);
	m.a = a;
	timing_opts(c, &o);
	rc = bench_run_timed(run_membw, &m, &o, &st);
	for (int t = 0; t < m.threads; t++)
		sum += m.part[t];
	if (rc != 0)
		fail(rc, "membw");
	else
		print_result(&st, (double)m.n * sizeof(float), sum, c);
	free(a);
	return rc;
}

static int cmd_gemm(const struct config *c)
{
	double gflops = 0;
	int rc = bench_gemm_peak(1, c->threads, 2048, 0.5, &gflops);

	if (rc != 0)
		return fail(rc, "gemm");
	printf("{\"gflops\": %.6g, \"n\": 2048, \"threads\": %d}\n", gflops, c->threads);
	return 0;
}

int main(int argc, char **argv)
{
	struct config c;
	int rc = parse_args(argc, argv, &c);

	if (rc != 0)
		return rc;
	if (strcmp(c.cmd, "--help") == 0 || strcmp(c.cmd, "-h") == 0)
		return usage(stdout), 0;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (strcmp(c.cmd, "write") == 0)
		rc = cmd_write(&c);
	else if (strcmp(c.cmd, "mm") == 0)
		rc = cmd_mm(&c, 0);
	else if (strcmp(c.cmd, "decode") == 0)
		rc = cmd_mm(&c, 1);
	else if (strcmp(c.cmd, "pread") == 0)
		rc = cmd_pread(&c);
	else if (strcmp(c.cmd, "readbw") == 0)
		rc = cmd_readbw(&c);
	else if (strcmp(c.cmd, "membw") == 0)
		rc = cmd_membw(&c);
	else if (strcmp(c.cmd, "gemm") == 0)
		rc = cmd_gemm(&c);
	else if (strcmp(c.cmd, "machine") == 0)
		bench_machine_print(stdout);
	else
		return usage(stderr), 2;
	return rc == 0 ? 0 : rc == 2 ? 2 : 1;
}
