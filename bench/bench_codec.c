/*
 * bench_codec - which tile edge and codec setting should be the default?
 *
 * Part 1 (codec): tiles cut from one Fisher-like master block are encoded
 * and decoded with every codec setting at tile edges 128..1024; reported
 * are MB/s of logical f32 bytes, the ratio to a memcpy of the same bytes
 * measured in the same run (the claim: absolute numbers vary 1.5-3x between
 * runs on a shared machine), compression ratios and the error of lossy
 * settings.
 * Part 2 (store): a symmetric dense d x d matrix is written into a fresh
 * store with a few settings and tile edges, then streamed back hot with
 * pspace_reader_next() + pspace_reader_view() into a trivial sum.
 * The recommendation at the end is computed from the numbers.
 * --checksum instead times each CRC-32C path on one thread, on a 1 MiB
 * buffer (cache-resident) and on a 1 GiB one (from memory).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/crc32c.h"
#include "common/error.h"
#include "harness.h"
#include "pspace.h"

#define PROG        "bench_codec"
#define MAX_THREADS 64
#define NEDGES      4
#define MAX_STORE   3

static const uint32_t edges[NEDGES] = {128, 256, 512, 1024};
static const uint32_t store_edges[] = {256, 512};
#define NSTORE_EDGES (sizeof(store_edges) / sizeof(store_edges[0]))

/* Lossy settings qualify for the recommendation below this elementwise error. */
#define LOSSY_MAX_REL 1e-2
/* Settings whose ratio is within this factor of the best count as equally small, */
#define RATIO_SLACK 0.95
/* and those decoding within this factor of the fastest as equally fast. */
#define SPEED_SLACK 0.90

struct config {
	int quick, threads, keep, sync, skip_store, checksum;
	uint64_t d;      /* store section: matrix dimension */
	size_t master;   /* dimension of the generated master block */
	double sample;   /* codec section: MiB of f32 tiles per tile edge */
	const char *dir; /* parent of the temporary stores */
	const char *json;
};

struct setting {
	pspace_dtype dtype;
	int level; /* 0 = raw */
	int shuffle;
	/* internal encode flags, references for the same run not selectable through
	 * pspace_codec_opts: PSPACE_TILE_ENCODE_ONE_FRAME, shuffle + zstd as one frame
	 * (codec 1, the layout before zstd planes); _ZSTD_ONLY, planes in zstd or raw
	 * (codec 2, the default before nibble planes) */
	unsigned eflags;
	char name[40];
};

#define FRAME   PSPACE_TILE_ENCODE_ONE_FRAME
#define ZPLANES PSPACE_TILE_ENCODE_ZSTD_ONLY
static struct setting settings[] = {
    {PSPACE_F32, 0, 0, 0, ""},       {PSPACE_F32, -1, 0, 0, ""},
    {PSPACE_F32, -1, 1, 0, ""},      {PSPACE_F32, 1, 0, 0, ""},
    {PSPACE_F32, 1, 1, 0, ""},       {PSPACE_F32, 1, 1, FRAME, ""},
    {PSPACE_F32, 1, 1, ZPLANES, ""}, {PSPACE_F32, 3, 0, 0, ""},
    {PSPACE_F32, 3, 1, 0, ""},       {PSPACE_F32, 5, 1, 0, ""},
    {PSPACE_BF16, 0, 0, 0, ""},      {PSPACE_BF16, 1, 1, 0, ""},
    {PSPACE_BF16, 1, 1, FRAME, ""},  {PSPACE_BF16, 1, 1, ZPLANES, ""},
    {PSPACE_BF16, 3, 1, 0, ""},      {PSPACE_F16, 1, 1, 0, ""},
    {PSPACE_F64, 0, 0, 0, ""},
};
#define NSET ((int)(sizeof(settings) / sizeof(settings[0])))

struct codec_result {
	double memcpy_s;                       /* the baseline, measured just before */
	double enc_s, enc_min, dec_s, dec_min; /* seconds per pass over the sample */
	uint64_t enc_bytes;                    /* encoded, headers included */
	uint64_t stored_bytes;                 /* logical, at stored precision */
	size_t raw_tiles;                      /* tiles the codec kept raw */
	double max_rel, max_fro;               /* elementwise and per-tile Frobenius */
};

struct edge_result {
	uint32_t edge;
	size_t ntiles;
	uint64_t f32_bytes;
	double memcpy_s; /* median of the settings' baselines */
	struct codec_result r[NSET];
};

struct store_result {
	int set;
	uint32_t edge;
	double write_s, write_min, read_s, read_min;
	uint64_t f32_bytes, tiles, raw_tiles, zero_copy, tile_bytes, file_bytes;
};

/* Work shared by the threads of one codec measurement. */
struct codec_work {
	pspace_codec_opts opts;
	unsigned eflags; /* pspace_tile_encode_ex() flags */
	pspace_dtype src_type;
	const float *m32;
	const double *m64;
	size_t ld;
	uint32_t edge;
	size_t n;
	const size_t *off; /* element offset of each sample tile in the master */
	unsigned char *enc;
	size_t *enc_off, *enc_len;
	int threads;
	pspace_codec *codec[MAX_THREADS];
	float *scratch[MAX_THREADS];
	char err[MAX_THREADS][256];
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [--quick] [--d N] [--dir PATH] [--threads N] [--json FILE]\n"
	        "                   [--master M] [--sample MIB] [--skip-store] [--keep] [--sync]\n"
	        "       " PROG " --checksum [--quick] [--json FILE]\n"
	        "  --quick       small sizes, a smoke run of a few seconds\n"
	        "  --d N         store section: dimension of the dense matrix (16384)\n"
	        "  --dir PATH    where to create the temporary stores ($TMPDIR or /tmp)\n"
	        "  --threads N   codec section threads (1); the store section is serial\n"
	        "  --json FILE   also write the results as JSON\n"
	        "  --master M    dimension of the generated Fisher block (4096)\n"
	        "  --sample MIB  codec section: MiB of f32 tiles per tile edge (32)\n"
	        "  --skip-store  codec section only\n"
	        "  --keep        keep the stores\n"
	        "  --sync        fsync at commit (default: nosync, measures software, not disk)\n"
	        "  --checksum    only: GB/s of each CRC-32C path (1 MiB and 1 GiB buffers;\n"
	        "                --quick: 256 MiB)\n");
}

static int fail(int rc, const char *what)
{
	bench_progress_end();
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0)
		return -1;
	*out = v;
	return 0;
}

/* @return 0, or 2 for a usage error (message printed). */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	uint64_t v = 0;
	int quick_d = 1, quick_m = 1, quick_s = 1;

	*cfg = (struct config){0, 1, 0, 0, 0, 0, 16384, 4096, 32, NULL, NULL};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = strcmp(a, "--d") == 0 || strcmp(a, "--dir") == 0 ||
		            strcmp(a, "--threads") == 0 || strcmp(a, "--json") == 0 ||
		            strcmp(a, "--master") == 0 || strcmp(a, "--sample") == 0;

		if (takes && val == NULL) {
			fprintf(stderr, PROG ": %s needs a value\n", a);
			return 2;
		}
		if (strcmp(a, "--quick") == 0) {
			cfg->quick = 1;
		} else if (strcmp(a, "--keep") == 0) {
			cfg->keep = 1;
		} else if (strcmp(a, "--sync") == 0) {
			cfg->sync = 1;
		} else if (strcmp(a, "--skip-store") == 0) {
			cfg->skip_store = 1;
		} else if (strcmp(a, "--checksum") == 0) {
			cfg->checksum = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--dir") == 0) {
			cfg->dir = val;
		} else if (strcmp(a, "--json") == 0) {
			cfg->json = val;
		} else if (takes && parse_u64(val, &v) != 0) {
			fprintf(stderr, PROG ": %s: not a positive integer: %s\n", a, val);
			return 2;
		} else if (strcmp(a, "--d") == 0) {
			cfg->d = v;
			quick_d = 0;
		} else if (strcmp(a, "--threads") == 0) {
			cfg->threads = v > MAX_THREADS ? MAX_THREADS : (int)v;
		} else if (strcmp(a, "--master") == 0) {
			cfg->master = (size_t)v;
			quick_m = 0;
		} else if (strcmp(a, "--sample") == 0) {
			cfg->sample = (double)v;
			quick_s = 0;
		} else {
			fprintf(stderr, PROG ": unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		i += takes;
	}
	if (cfg->quick) {
		cfg->d = quick_d ? 2048 : cfg->d;
		cfg->master = quick_m ? 1024 : cfg->master;
		cfg->sample = quick_s ? 4 : cfg->sample;
	}
	if (cfg->master < edges[NEDGES - 1] || cfg->master % edges[NEDGES - 1] != 0) {
		fprintf(stderr, PROG ": --master must be a multiple of %u\n", edges[NEDGES - 1]);
		return 2;
	}
	return 0;
}

static void setting_opts(const struct setting *s, pspace_codec_opts *o)
{
	pspace_codec_opts_default(o);
	o->dtype = s->dtype;
	o->level = s->level;
	o->shuffle = s->shuffle;
}

static void name_settings(void)
{
	for (int i = 0; i < NSET; i++) {
		struct setting *s = &settings[i];

		if (s->level == 0)
			snprintf(s->name, sizeof(s->name), "%s raw", pspace_dtype_name(s->dtype));
		else
			snprintf(s->name, sizeof(s->name), "%s %szstd%d%s",
			         pspace_dtype_name(s->dtype), s->shuffle ? "shuf " : "", s->level,
			         s->eflags == PSPACE_TILE_ENCODE_ONE_FRAME   ? " 1frame"
			         : s->eflags == PSPACE_TILE_ENCODE_ZSTD_ONLY ? " zstd-planes"
			                                                     : "");
	}
}

/* ---- codec section: per-thread work ------------------------------------- */

static void thread_range(size_t n, int tid, int nth, size_t *lo, size_t *hi)
{
	*lo = n * (size_t)tid / (size_t)nth;
	*hi = n * (size_t)(tid + 1) / (size_t)nth;
}

static int work_fail(struct codec_work *w, int tid, int rc)
{
	snprintf(w->err[tid], sizeof(w->err[tid]), "%s", pspace_errdetail());
	return rc;
}

/* The source of sample tile @p i, in the master of the setting's source type. */
static const void *tile_src(const struct codec_work *w, size_t i)
{
	if (w->src_type == PSPACE_F64)
		return w->m64 + w->off[i];
	return w->m32 + w->off[i];
}

static int par_encode(void *ctx, int tid, int nth)
{
	struct codec_work *w = ctx;
	size_t lo, hi;

	thread_range(w->n, tid, nth, &lo, &hi);
	for (size_t i = lo; i < hi; i++) {
		const void *out;
		size_t len;
		int rc = pspace_tile_encode_ex(w->codec[tid], &w->opts, w->eflags, w->src_type,
		                               tile_src(w, i), w->edge, w->edge, w->ld, &out, &len);

		if (rc != 0)
			return work_fail(w, tid, rc);
	}
	return 0;
}

static int par_decode(void *ctx, int tid, int nth)
{
	struct codec_work *w = ctx;
	size_t lo, hi;

	thread_range(w->n, tid, nth, &lo, &hi);
	for (size_t i = lo; i < hi; i++) {
		int rc = pspace_tile_decode(w->codec[tid], w->enc + w->enc_off[i], w->enc_len[i],
		                            PSPACE_F32, w->scratch[tid], w->edge);

		if (rc != 0)
			return work_fail(w, tid, rc);
	}
	return 0;
}

/* The baseline: the same tiles, row by row, into the same scratch buffer. */
static int par_memcpy(void *ctx, int tid, int nth)
{
	struct codec_work *w = ctx;
	size_t lo, hi, row = (size_t)w->edge * sizeof(float);

	thread_range(w->n, tid, nth, &lo, &hi);
	for (size_t i = lo; i < hi; i++)
		for (uint32_t r = 0; r < w->edge; r++)
			memcpy(w->scratch[tid] + (size_t)r * w->edge,
			       w->m32 + w->off[i] + r * w->ld, row);
	return 0;
}

static int run_parallel(struct codec_work *w, bench_par_fn fn)
{
	int rc = bench_parallel(w->threads, fn, w);

	/* A worker's detail message lives in its thread; bring it here. */
	for (int t = 1; rc != 0 && t < w->threads; t++)
		if (w->err[t][0] != '\0')
			return pspace_err_set(rc, "%s", w->err[t]);
	return rc;
}

static int run_encode(void *ctx)
{
	return run_parallel(ctx, par_encode);
}

static int run_decode(void *ctx)
{
	return run_parallel(ctx, par_decode);
}

static int run_memcpy(void *ctx)
{
	return run_parallel(ctx, par_memcpy);
}

/* ---- codec section ------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Picks up to budget/tile-size upper-triangle tiles of the master, spread at random. */
static int pick_tiles(size_t m, uint32_t edge, double budget, size_t **off, size_t *n)
{
	size_t k = m / edge, count = k * (k + 1) / 2, want, c = 0;
	size_t *all = malloc(count * sizeof(*all));
	uint64_t st = 0x7117e5 + edge;

	if (all == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "tile sample");
	for (size_t i = 0; i < k; i++)
		for (size_t j = i; j < k; j++)
			all[c++] = i * edge * m + j * edge;
	for (size_t i = count - 1; i > 0; i--) {
		size_t j = bench_rng_u64(&st) % (i + 1), t = all[i];

		all[i] = all[j];
		all[j] = t;
	}
	want = (size_t)(budget / ((double)edge * edge * sizeof(float)));
	*n = want < 1 ? 1 : want > count ? count : want;
	*off = all;
	return 0;
}

/* Encodes every sample tile once, keeps the encodings, and measures the error. */
static int codec_prepare(struct codec_work *w, struct codec_result *res)
{
	size_t pos = 0, esz = pspace_dtype_size(w->opts.dtype), cnt = (size_t)w->edge * w->edge;
	float *dec = w->scratch[0];

	for (size_t i = 0; i < w->n; i++) {
		const void *out;
		size_t len;
		pspace_tile_header h;
		const float *ref = w->m32 + w->off[i];
		double num = 0, den = 0;
		int rc = pspace_tile_encode_ex(w->codec[0], &w->opts, w->eflags, w->src_type,
		                               tile_src(w, i), w->edge, w->edge, w->ld, &out, &len);

		if (rc == 0)
			rc = pspace_tile_parse(&h, out, len);
		if (rc != 0)
			return rc;
		memcpy(w->enc + pos, out, len);
		w->enc_off[i] = pos;
		w->enc_len[i] = len;
		pos += (len + 63) & ~(size_t)63;
		res->enc_bytes += len;
		res->stored_bytes += cnt * esz;
		res->raw_tiles += h.codec == PSPACE_CODEC_RAW;

		rc = pspace_tile_decode(w->codec[0], w->enc + w->enc_off[i], len, PSPACE_F32, dec,
		                        w->edge);
		if (rc != 0)
			return rc;
		for (uint32_t r = 0; r < w->edge; r++)
			for (uint32_t c = 0; c < w->edge; c++) {
				double x = ref[(size_t)r * w->ld + c],
				       y = dec[(size_t)r * w->edge + c];
				double e = fabs(y - x);

				if (x != 0 && e / fabs(x) > res->max_rel)
					res->max_rel = e / fabs(x);
				if (x == 0 && e > 0)
					res->max_rel = INFINITY;
				num += e * e;
				den += x * x;
			}
		if (den > 0 && sqrt(num / den) > res->max_fro)
			res->max_fro = sqrt(num / den);
	}
	return 0;
}

static void work_free(struct codec_work *w)
{
	for (int t = 0; t < MAX_THREADS; t++) {
		pspace_codec_free(w->codec[t]);
		free(w->scratch[t]);
	}
	free(w->enc);
	free(w->enc_off);
	free(w->enc_len);
}

static int codec_edge(const struct config *cfg, const float *m32, const double *m64,
                      struct edge_result *er)
{
	struct codec_work *w = calloc(1, sizeof(*w));
	size_t *off = NULL, n = 0, encmax = 0;
	const char *what = "setup";
	double mc[NSET];
	bench_opts bo;
	bench_stats st;
	int rc;

	if (w == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "codec work");
	bench_opts_default(&bo);
	if (cfg->quick)
		bo.min_time = 0.05;
	rc = pick_tiles(cfg->master, er->edge, cfg->sample * 1048576.0, &off, &n);
	if (rc != 0)
		goto out;
	er->ntiles = n;
	er->f32_bytes = (uint64_t)n * er->edge * er->edge * sizeof(float);
	for (int s = 0; s < NSET; s++) {
		pspace_codec_opts o;
		size_t b;

		setting_opts(&settings[s], &o);
		b = pspace_tile_bound(&o, er->edge, er->edge);
		encmax = b > encmax ? b : encmax;
	}
	*w = (struct codec_work){.m32 = m32,
	                         .m64 = m64,
	                         .ld = cfg->master,
	                         .edge = er->edge,
	                         .n = n,
	                         .off = off,
	                         .threads = cfg->threads};
	w->enc = malloc(n * (encmax + 64));
	w->enc_off = malloc(n * sizeof(size_t));
	w->enc_len = malloc(n * sizeof(size_t));
	if (w->enc == NULL || w->enc_off == NULL || w->enc_len == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "encoded sample, %zu tiles", n);
		goto out;
	}
	for (int t = 0; t < cfg->threads; t++) {
		rc = pspace_codec_create(&w->codec[t]);
		if (rc != 0)
			goto out;
		w->scratch[t] = malloc((size_t)er->edge * er->edge * sizeof(float));
		if (w->scratch[t] == NULL) {
			rc = pspace_err_set(PSPACE_ENOMEM, "decode buffer");
			goto out;
		}
	}

	for (int s = 0; s < NSET; s++) {
		struct codec_result *res = &er->r[s];

		what = settings[s].name;
		setting_opts(&settings[s], &w->opts);
		w->eflags = settings[s].eflags;
		w->src_type = settings[s].dtype == PSPACE_F64 ? PSPACE_F64 : PSPACE_F32;
		memset(res, 0, sizeof(*res));
		/* The baseline next to each measurement, so that load drifting over the
		 * run cancels in the ratios. */
		bench_progress("codec: tile %u: %s: memcpy", er->edge, settings[s].name);
		rc = bench_run(run_memcpy, w, &bo, &st);
		if (rc != 0)
			goto out;
		res->memcpy_s = mc[s] = st.median;
		bench_progress("codec: tile %u: %s: prepare", er->edge, settings[s].name);
		rc = codec_prepare(w, res);
		if (rc != 0)
			goto out;
		bench_progress("codec: tile %u: %s: encode", er->edge, settings[s].name);
		rc = bench_run(run_encode, w, &bo, &st);
		if (rc != 0)
			goto out;
		res->enc_s = st.median;
		res->enc_min = st.min;
		bench_progress("codec: tile %u: %s: decode", er->edge, settings[s].name);
		rc = bench_run(run_decode, w, &bo, &st);
		if (rc != 0)
			goto out;
		res->dec_s = st.median;
		res->dec_min = st.min;
	}
	qsort(mc, NSET, sizeof(mc[0]), cmp_double);
	er->memcpy_s = mc[NSET / 2];
out:
	if (rc != 0)
		pspace_err_prefix(rc, "tile edge %u: %s: ", er->edge, what);
	work_free(w);
	free(w);
	free(off);
	return rc;
}

static double geomean_ratio(const struct edge_result *er, int s, int dec)
{
	double acc = 0;

	for (int e = 0; e < NEDGES; e++) {
		double t = dec ? er[e].r[s].dec_s : er[e].r[s].enc_s;

		acc += log(er[e].r[s].memcpy_s / t);
	}
	return exp(acc / NEDGES);
}

static double total_ratio_f32(const struct edge_result *er, int s)
{
	double f = 0, enc = 0;

	for (int e = 0; e < NEDGES; e++) {
		f += (double)er[e].f32_bytes;
		enc += (double)er[e].r[s].enc_bytes;
	}
	return f / enc;
}

static double worst_rel(const struct edge_result *er, int s)
{
	double m = 0;

	for (int e = 0; e < NEDGES; e++)
		m = er[e].r[s].max_rel > m ? er[e].r[s].max_rel : m;
	return m;
}

static const char *fmt_err(char *buf, size_t cap, double e)
{
	if (e == 0)
		snprintf(buf, cap, "0");
	else
		snprintf(buf, cap, "%.2e", e);
	return buf;
}

static void codec_print(const struct edge_result *er)
{
	char b1[32], b2[32];

	for (int e = 0; e < NEDGES; e++) {
		const struct edge_result *x = &er[e];
		double mc = bench_mbps((double)x->f32_bytes, x->memcpy_s);

		printf("\n### tile edge %u: %zu tiles, %s as f32; memcpy %.2f GB/s (median of the "
		       "baselines)\n\n",
		       x->edge, x->ntiles, bench_fmt_bytes(b1, sizeof(b1), (double)x->f32_bytes),
		       mc / 1e3);
		bench_table_header(stdout, "codec",
		                   "setting|>tile|>enc MB/s|>enc/memcpy|>dec MB/s|>dec/memcpy|"
		                   ">ratio stored|>ratio f32|>raw tiles|>max rel err|"
		                   ">max tile rel F-err");
		for (int s = 0; s < NSET; s++) {
			const struct codec_result *r = &x->r[s];

			bench_table_row(
			    stdout, "%s|%u|%.0f|%.3f|%.0f|%.3f|%.3f|%.3f|%zu/%zu|%s|%s",
			    settings[s].name, x->edge, bench_mbps((double)x->f32_bytes, r->enc_s),
			    r->memcpy_s / r->enc_s, bench_mbps((double)x->f32_bytes, r->dec_s),
			    r->memcpy_s / r->dec_s, (double)r->stored_bytes / (double)r->enc_bytes,
			    (double)x->f32_bytes / (double)r->enc_bytes, r->raw_tiles, x->ntiles,
			    fmt_err(b1, sizeof(b1), r->max_rel),
			    fmt_err(b2, sizeof(b2), r->max_fro));
		}
	}
	printf("\n### codec summary over tile edges (geometric means of the x-memcpy ratios)\n\n");
	bench_table_header(stdout, "codec summary",
	                   "setting|>ratio f32|>enc/memcpy|>dec/memcpy|>dec/memcpy 128|"
	                   ">256|>512|>1024|>max rel err");
	for (int s = 0; s < NSET; s++)
		bench_table_row(
		    stdout, "%s|%.3f|%.3f|%.3f|%.3f|%.3f|%.3f|%.3f|%s", settings[s].name,
		    total_ratio_f32(er, s), geomean_ratio(er, s, 0), geomean_ratio(er, s, 1),
		    er[0].r[s].memcpy_s / er[0].r[s].dec_s, er[1].r[s].memcpy_s / er[1].r[s].dec_s,
		    er[2].r[s].memcpy_s / er[2].r[s].dec_s, er[3].r[s].memcpy_s / er[3].r[s].dec_s,
		    fmt_err(b1, sizeof(b1), worst_rel(er, s)));
}

/*
 * Among settings whose worst elementwise error lies in [@p min_err,
 * @p max_err]: those with a ratio within RATIO_SLACK of the best; of them,
 * those that decode within SPEED_SLACK of the fastest (closer is noise on
 * this machine); of them, the fastest to encode. @return the index or -1.
 */
static int pick_setting(const struct edge_result *er, double min_err, double max_err)
{
	double best_ratio = 0, best_dec = 0, best_enc = 0;
	int ok[NSET], pick = -1;

	for (int s = 0; s < NSET; s++) {
		double e = worst_rel(er, s);

		ok[s] = e >= min_err && e <= max_err && !settings[s].eflags;
		if (ok[s] && total_ratio_f32(er, s) > best_ratio)
			best_ratio = total_ratio_f32(er, s);
	}
	for (int s = 0; s < NSET; s++) {
		ok[s] = ok[s] && total_ratio_f32(er, s) >= RATIO_SLACK * best_ratio;
		if (ok[s] && geomean_ratio(er, s, 1) > best_dec)
			best_dec = geomean_ratio(er, s, 1);
	}
	for (int s = 0; s < NSET; s++)
		if (ok[s] && geomean_ratio(er, s, 1) >= SPEED_SLACK * best_dec &&
		    geomean_ratio(er, s, 0) > best_enc) {
			best_enc = geomean_ratio(er, s, 0);
			pick = s;
		}
	return pick;
}

/* ---- store section ------------------------------------------------------ */

/* Streaming reads of one store, and the in-memory baseline. */
struct read_work {
	pspace_store *store;
	pspace_codec *codec;
	const float *base; /* the baseline's buffer */
	size_t base_n;
	bench_stream st;
};

static int run_read(void *ctx)
{
	struct read_work *w = ctx;

	return bench_stream_sum(w->store, "F", w->codec, &w->st);
}

static int run_sum(void *ctx)
{
	struct read_work *w = ctx;

	w->st.sum += bench_sum_f32(w->base, w->base_n);
	return 0;
}

/* One timed write: a fresh store, the whole upper triangle, finish. */
struct write_work {
	const struct config *cfg;
	const float *m32;
	const struct setting *set;
	int set_id;
	uint32_t edge;
	const char *root;
	int rep;
	char path[4300];
	pspace_store *store; /* the store last written, still open */
	uint64_t f32_bytes;
};

static int write_matrix(void *ctx, double *seconds)
{
	struct write_work *w = ctx;
	const struct config *cfg = w->cfg;
	uint32_t edge = w->edge;
	pspace_store_opts so;
	pspace_matrix_desc desc = {
	    .kind = PSPACE_KIND_DENSE, .d = cfg->d, .nblocks = 1, .tile = edge, .symmetric = 1};
	pspace_writer *wr = NULL;
	double t0;
	int rc;

	/* Only the last repetition's store is kept, for reading. */
	if (w->store != NULL) {
		pspace_store_close(w->store);
		w->store = NULL;
		bench_path_remove(w->path);
	}
	snprintf(w->path, sizeof(w->path), "%s/s%d-t%u-%d", w->root, w->set_id, edge, w->rep++);
	pspace_store_opts_default(&so);
	so.create = 1;
	so.nosync = !cfg->sync;
	setting_opts(w->set, &desc.codec);
	rc = pspace_store_open(&w->store, w->path, &so);
	if (rc != 0)
		return rc;

	t0 = bench_clock_now();
	rc = pspace_writer_begin(&wr, w->store, "F", &desc);
	if (rc == 0)
		rc = bench_dense_put_tiles(wr, cfg->d, edge, 1, w->m32, cfg->master, &w->f32_bytes);
	if (rc != 0)
		pspace_writer_abort(wr, 1);
	else
		rc = pspace_writer_finish(wr);
	*seconds = bench_clock_now() - t0;
	return rc;
}

static int store_one(const struct config *cfg, const char *root, const float *m32,
                     struct read_work *rw, struct store_result *out)
{
	const struct setting *set = &settings[out->set];
	struct write_work ww = {.cfg = cfg,
	                        .m32 = m32,
	                        .set = set,
	                        .set_id = out->set,
	                        .edge = out->edge,
	                        .root = root};
	pspace_matrix_info info;
	pspace_store_stat stat;
	bench_opts bo;
	bench_stats st;
	int rc;

	/* A fresh store per write; the untimed first write takes the VM's cold-memory
	 * cost (seen: 1-2 s for the first 0.5 GiB after a pause, even on tmpfs). */
	bench_opts_default(&bo);
	bo.min_time = 0;
	bench_progress("store: %s tile %u: write", set->name, out->edge);
	rc = bench_run_timed(write_matrix, &ww, &bo, &st);
	if (rc != 0)
		goto out;
	out->write_s = st.median;
	out->write_min = st.min;
	out->f32_bytes = ww.f32_bytes;
	rc = pspace_matrix_info_get(&info, ww.store, "F");
	if (rc == 0)
		rc = pspace_store_stat_get(&stat, ww.store);
	if (rc != 0)
		goto out;
	out->tiles = info.tiles;
	out->raw_tiles = info.raw_tiles;
	out->tile_bytes = info.tile_bytes;
	out->file_bytes = stat.file_bytes;

	bench_progress("store: %s tile %u: read", set->name, out->edge);
	rw->store = ww.store;
	bench_opts_default(&bo);
	if (cfg->quick)
		bo.min_time = 0.05;
	rc = bench_run(run_read, rw, &bo, &st);
	if (rc != 0)
		goto out;
	out->read_s = st.median;
	out->read_min = st.min;
	out->zero_copy = rw->st.zero_copy;
	if (rw->st.tiles != out->tiles)
		rc = pspace_err_set(PSPACE_ECORRUPT, "read %llu tiles, the catalog says %llu",
		                    (unsigned long long)rw->st.tiles,
		                    (unsigned long long)out->tiles);
out:
	pspace_store_close(ww.store);
	if (ww.rep > 0 && !cfg->keep)
		bench_path_remove(ww.path);
	if (rc != 0)
		pspace_err_prefix(rc, "%s, %s, tile %u: ", ww.path, set->name, out->edge);
	return rc;
}

static int store_section(const struct config *cfg, const float *m32, const int *sets, int nsets,
                         struct store_result *res, int *nres, double *sum_gbs)
{
	struct read_work rw = {0};
	bench_stats st;
	char root[4096];
	int rc;

	*nres = 0;
	/* The read baseline: the same sum over as many in-memory bytes as the store holds. */
	rw.base_n = (size_t)(cfg->d * (cfg->d + 1) / 2);
	rw.base = malloc(rw.base_n * sizeof(float));
	if (rw.base == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "sum baseline, %zu floats", rw.base_n);
	for (size_t i = 0; i < rw.base_n; i += cfg->master * cfg->master) {
		size_t n = rw.base_n - i;

		n = n < cfg->master * cfg->master ? n : cfg->master * cfg->master;
		memcpy((float *)rw.base + i, m32, n * sizeof(float));
	}
	bench_progress("store: sum baseline");
	rc = bench_run(run_sum, &rw, NULL, &st);
	free((float *)rw.base);
	if (rc != 0)
		return rc;
	*sum_gbs = bench_mbps((double)rw.base_n * sizeof(float), st.median) / 1e3;

	rc = pspace_codec_create(&rw.codec);
	if (rc == 0)
		rc = bench_tmpdir_create(cfg->dir, "pspace-bench", root, sizeof(root));
	if (rc != 0) {
		pspace_codec_free(rw.codec);
		return rc;
	}
	for (int i = 0; i < nsets && rc == 0; i++)
		for (size_t e = 0; e < NSTORE_EDGES && rc == 0; e++) {
			struct store_result *r = &res[*nres];

			if (store_edges[e] > cfg->master)
				continue;
			memset(r, 0, sizeof(*r));
			r->set = sets[i];
			r->edge = store_edges[e];
			rc = store_one(cfg, root, m32, &rw, r);
			if (rc == 0)
				(*nres)++;
		}
	pspace_codec_free(rw.codec);
	if (!cfg->keep)
		bench_path_remove(root);
	else
		printf("\nstores kept in %s\n", root);
	return rc;
}

static void store_print(const struct config *cfg, const struct edge_result *er,
                        const struct store_result *res, int nres, double sum_gbs)
{
	char b1[32], b2[32];

	printf("\n## store: symmetric dense d = %llu, upper triangle\n\n",
	       (unsigned long long)cfg->d);
	printf("Single-threaded writer and reader; %s. write = pspace_writer_begin + put_tile "
	       "of every tile + finish into a fresh store, median of 3 after one untimed write; "
	       "read = hot (page cache) stream of all tiles with pspace_reader_next + "
	       "pspace_reader_view into f32 + a sum, median of >= 3. GB/s count logical f32 "
	       "bytes. Baselines: for read, the same sum over an in-memory f32 buffer of the "
	       "same size, %.2f GB/s; for write, the memcpy of that tile edge in the codec "
	       "section. zero-copy tiles = views that point into the map.\n\n",
	       cfg->sync ? "fsync at commit" : "nosync (no fsync at commit)", sum_gbs);
	bench_table_header(stdout, "store",
	                   "setting|>tile|>tiles|>raw tiles|>write GB/s|>write/memcpy|"
	                   ">read GB/s|>read/sum|>zero-copy tiles|>tile bytes|>file|"
	                   ">f32/file");
	for (int i = 0; i < nres; i++) {
		const struct store_result *r = &res[i];
		double mc = 0;

		for (int e = 0; e < NEDGES; e++)
			if (er[e].edge == r->edge)
				mc = bench_mbps((double)er[e].f32_bytes, er[e].memcpy_s) / 1e3;
		bench_table_row(stdout, "%s|%u|%llu|%llu|%.2f|%.3f|%.2f|%.3f|%llu|%s|%s|%.3f",
		                settings[r->set].name, r->edge, (unsigned long long)r->tiles,
		                (unsigned long long)r->raw_tiles,
		                bench_mbps((double)r->f32_bytes, r->write_s) / 1e3,
		                bench_mbps((double)r->f32_bytes, r->write_s) / 1e3 / mc,
		                bench_mbps((double)r->f32_bytes, r->read_s) / 1e3,
		                bench_mbps((double)r->f32_bytes, r->read_s) / 1e3 / sum_gbs,
		                (unsigned long long)r->zero_copy,
		                bench_fmt_bytes(b1, sizeof(b1), (double)r->tile_bytes),
		                bench_fmt_bytes(b2, sizeof(b2), (double)r->file_bytes),
		                (double)r->f32_bytes / (double)r->file_bytes);
	}
}

/* ---- report ------------------------------------------------------------- */

/*
 * The tile edge with the best read GB/s for setting @p set in the store
 * section, or without one, the best decode MB/s in the codec section.
 * *@p margin receives how far it is ahead of the runner-up (0.1 = 10%).
 */
static uint32_t pick_edge(const struct edge_result *er, const struct store_result *res, int nres,
                          int set, double *margin, const char **basis)
{
	double best = 0, second = 0;
	uint32_t edge = 0;
	int from_store = 0;

	for (int i = 0; i < nres; i++)
		from_store |= res[i].set == set;
	*basis = from_store ? "read GB/s in the store section" : "decode MB/s in the codec section";
	for (int i = 0; i < (from_store ? nres : NEDGES); i++) {
		double g;
		uint32_t e;

		if (from_store && res[i].set != set)
			continue;
		g = from_store ? (double)res[i].f32_bytes / res[i].read_s
		               : (double)er[i].f32_bytes / er[i].r[set].dec_s;
		e = from_store ? res[i].edge : er[i].edge;
		if (g > best) {
			second = best;
			best = g;
			edge = e;
		} else if (g > second) {
			second = g;
		}
	}
	*margin = second > 0 ? best / second - 1 : 0;
	return edge;
}

static void recommend(const struct edge_result *er, const struct store_result *res, int nres)
{
	int lossless = pick_setting(er, 0, 0), lossy = pick_setting(er, 1e-300, LOSSY_MAX_REL);
	double margin = 0;
	const char *basis = "";
	uint32_t edge = lossless >= 0 ? pick_edge(er, res, nres, lossless, &margin, &basis) : 0;

	printf("\n## recommendation\n\n");
	printf("Rule: in each class (lossless; lossy with max rel err <= %.0e), the settings "
	       "with ratio f32 within %.0f%% of the best; of those, the ones decoding within "
	       "%.0f%% of the fastest (decode/memcpy, geometric mean over tile edges); of those, "
	       "the fastest encoder. Tile edge: the best %s for the lossless pick.\n\n",
	       LOSSY_MAX_REL, 100 * (1 - RATIO_SLACK), 100 * (1 - SPEED_SLACK), basis);
	bench_table_header(stdout, "recommendation", "choice|value|why");
	if (lossless >= 0)
		bench_table_row(stdout,
		                "lossless codec|%s|ratio f32 %.3f, decode %.3f x memcpy, encode "
		                "%.3f x memcpy",
		                settings[lossless].name, total_ratio_f32(er, lossless),
		                geomean_ratio(er, lossless, 1), geomean_ratio(er, lossless, 0));
	if (lossy >= 0)
		bench_table_row(stdout,
		                "lossy codec|%s|ratio f32 %.3f, decode %.3f x memcpy, encode %.3f "
		                "x memcpy, max rel err %.2e",
		                settings[lossy].name, total_ratio_f32(er, lossy),
		                geomean_ratio(er, lossy, 1), geomean_ratio(er, lossy, 0),
		                worst_rel(er, lossy));
	for (int i = 0; i < NSET; i++) {
		pspace_codec_opts d;

		/* For comparison: the library's current default, if it was measured. */
		pspace_codec_opts_default(&d);
		if (d.dtype == settings[i].dtype && d.level == settings[i].level &&
		    !d.shuffle == !settings[i].shuffle && !settings[i].eflags)
			bench_table_row(stdout,
			                "(library default now)|%s|ratio f32 %.3f, decode %.3f x "
			                "memcpy, encode %.3f x memcpy",
			                settings[i].name, total_ratio_f32(er, i),
			                geomean_ratio(er, i, 1), geomean_ratio(er, i, 0));
	}
	if (edge != 0)
		bench_table_row(stdout, "tile edge|%u|%s %.0f%% ahead of the next edge%s", edge,
		                basis, 100 * margin, margin < 0.05 ? " (within noise: a tie)" : "");
	printf("\nrecommendation: codec %s, tile edge %u\n",
	       lossless >= 0 ? settings[lossless].name : "?", edge);
}

/* ---- checksum: the CRC-32C paths ------------------------------------------ */

struct crc_path {
	const char *name;
	uint32_t (*fn)(uint32_t crc, const void *buf, size_t len);
	int (*available)(void); /* NULL: always */
};

static const struct crc_path crc_paths[] = {
    {"slicing-by-8 (pspace_crc32c_sw)", pspace_crc32c_sw, NULL},
    {"crc32 x 3 streams (pspace_crc32c_hw)", pspace_crc32c_hw, pspace_crc32c_hw_available},
    {"pclmulqdq 4 x 128 bit (pspace_crc32c_clmul)", pspace_crc32c_clmul,
     pspace_crc32c_clmul_available},
    {"vpclmulqdq 4 x 512 bit (pspace_crc32c_vclmul)", pspace_crc32c_vclmul,
     pspace_crc32c_vclmul_available},
    {"pspace_crc32c (the library's choice)", pspace_crc32c, NULL},
};
#define NCRC ((int)(sizeof(crc_paths) / sizeof(crc_paths[0])))

struct crc_work {
	const struct crc_path *path;
	const unsigned char *buf;
	size_t len;
	uint32_t crc;
};

static int run_crc(void *ctx)
{
	struct crc_work *w = ctx;

	w->crc = w->path->fn(0, w->buf, w->len);
	return 0;
}

/* GB/s of each CRC-32C path on one thread over a cache-resident and a large buffer. */
static int checksum_section(const struct config *cfg)
{
	const size_t sizes[2] = {(size_t)1 << 20, cfg->quick ? (size_t)256 << 20 : (size_t)1 << 30};
	double gbs[NCRC][2] = {{0}};
	unsigned char *buf = NULL;
	uint64_t seed = 1;
	uint32_t ref[2];
	char b0[32], b1[32];
	bench_opts bo;
	bench_stats st;
	int rc = 0;

	buf = malloc(sizes[1]);
	if (buf == NULL) {
		rc = fail(PSPACE_ENOMEM, "checksum buffer");
		goto out;
	}
	for (size_t i = 0; i + 8 <= sizes[1]; i += 8) {
		uint64_t v = bench_rng_u64(&seed);

		memcpy(buf + i, &v, 8);
	}
	bench_opts_default(&bo);
	bo.min_time = cfg->quick ? 0.05 : 0.3;
	for (int s = 0; s < 2; s++) {
		ref[s] = pspace_crc32c_sw(0, buf, sizes[s]);
		for (int i = 0; i < NCRC; i++) {
			struct crc_work w = {&crc_paths[i], buf, sizes[s], 0};

			if (crc_paths[i].available != NULL && !crc_paths[i].available())
				continue;
			bench_progress("checksum: %s: %s",
			               bench_fmt_bytes(b0, sizeof(b0), sizes[s]),
			               crc_paths[i].name);
			rc = bench_run(run_crc, &w, &bo, &st);
			if (rc == 0 && w.crc != ref[s])
				rc = pspace_err_set(PSPACE_ECORRUPT,
				                    "%s disagrees with the slicing-by-8 CRC",
				                    crc_paths[i].name);
			if (rc != 0) {
				fail(rc, "checksum");
				goto out;
			}
			gbs[i][s] = bench_mbps((double)sizes[s], st.median) / 1e3;
		}
	}
	bench_progress_end();
	printf("\n## checksum: CRC-32C paths, one thread\n\n"
	       "GB/s (1e9 bytes) of one pspace_crc32c* call over a %s buffer (the same buffer "
	       "every call: cache-resident) and a %s one (from memory); median of >= 3 calls.\n\n",
	       bench_fmt_bytes(b0, sizeof(b0), sizes[0]),
	       bench_fmt_bytes(b1, sizeof(b1), sizes[1]));
	bench_table_header(stdout, "checksum", "path|>GB/s cached|>GB/s memory|>cached vs sw");
	for (int i = 0; i < NCRC; i++) {
		if (gbs[i][0] == 0)
			bench_table_row(stdout, "%s|not on this CPU||", crc_paths[i].name);
		else
			bench_table_row(stdout, "%s|%.1f|%.1f|%.1f", crc_paths[i].name, gbs[i][0],
			                gbs[i][1], gbs[i][0] / gbs[0][0]);
	}
out:
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	struct config cfg;
	bench_fisher_opts fo;
	struct edge_result er[NEDGES];
	struct store_result sres[MAX_STORE * NSTORE_EDGES];
	double *m64 = NULL, t0, sum_gbs = 0;
	float *m32 = NULL;
	char buf[32];
	int sets[MAX_STORE], nsets = 0, nres = 0, rc;

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0) {
		fail(rc, "init");
		return 1;
	}
	name_settings();
	if (cfg.json != NULL && (rc = bench_json_open(cfg.json)) != 0) {
		fail(rc, "--json");
		return 1;
	}

	printf("# bench_codec: which tile edge and codec setting should be the default?\n\n");
	bench_machine_print(stdout);
	if (cfg.checksum) {
		rc = checksum_section(&cfg);
		goto out;
	}
	bench_info(stdout, "run",
	           "%s; codec section %d thread%s, store section single-threaded; MB = 1e6 "
	           "bytes, GB = 1e9; throughput counts logical f32 bytes (rows*cols*4) for every "
	           "setting; times are medians of >= 3 runs of >= %.2f s total",
	           cfg.quick ? "--quick" : "full", cfg.threads, cfg.threads > 1 ? "s" : "",
	           cfg.quick ? 0.05 : 0.2);

	bench_fisher_opts_default(&fo, cfg.master);
	fo.n = cfg.master / 2;
	m64 = malloc(cfg.master * cfg.master * sizeof(*m64));
	m32 = malloc(cfg.master * cfg.master * sizeof(*m32));
	if (m64 == NULL || m32 == NULL) {
		rc = fail(PSPACE_ENOMEM, "master block");
		goto out;
	}
	bench_progress("generating the %zu x %zu master block", cfg.master, cfg.master);
	t0 = bench_clock_now();
	rc = bench_fisher_generate(&fo, m64, m32);
	if (rc != 0) {
		fail(rc, "generating data");
		goto out;
	}
	bench_fisher_describe(stdout, &fo, m32);
	bench_info(stdout, "generation", "%.1f s", bench_clock_now() - t0);

	printf("\n## codec: encode and decode of %s of tiles per tile edge\n\n"
	       "Tiles are drawn at random from the master's upper triangle. "
	       "enc: pspace_tile_encode from the master (ld = %zu) into the codec's buffer; "
	       "dec: pspace_tile_decode (checksum included) into an f32 tile buffer; memcpy: "
	       "the same tiles row by row into that buffer, measured next to each setting and "
	       "used for its x-memcpy ratios. ratio stored = bytes at stored "
	       "precision / encoded bytes (headers included); ratio f32 = f32 bytes / encoded "
	       "bytes. raw tiles = tiles the codec kept raw (min_ratio). Errors are against the "
	       "f32 source; F-err = ||decoded - source||_F / ||source||_F per tile.\n",
	       bench_fmt_bytes(buf, sizeof(buf), cfg.sample * 1048576.0), cfg.master);
	for (int e = 0; e < NEDGES; e++) {
		er[e].edge = edges[e];
		rc = codec_edge(&cfg, m32, m64, &er[e]);
		if (rc != 0) {
			fail(rc, "codec");
			goto out;
		}
	}
	bench_progress_end();
	codec_print(er);

	if (!cfg.skip_store) {
		int lossless = pick_setting(er, 0, 0),
		    lossy = pick_setting(er, 1e-300, LOSSY_MAX_REL);

		sets[nsets++] = 0; /* f32 raw: the reference */
		if (lossless > 0)
			sets[nsets++] = lossless;
		if (lossy >= 0)
			sets[nsets++] = lossy;
		rc = store_section(&cfg, m32, sets, nsets, sres, &nres, &sum_gbs);
		bench_progress_end();
		if (rc != 0) {
			fail(rc, "store");
			goto out;
		}
		store_print(&cfg, er, sres, nres, sum_gbs);
	}
	recommend(er, sres, nres);
out:
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	free(m32);
	free(m64);
	return rc != 0 ? 1 : 0;
}
