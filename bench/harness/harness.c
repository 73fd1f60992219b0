/*
 * The benchmark harness: timing, threads, output, files and test data.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "harness.h"

#include <blis.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "pspace/common.h"
#include "pspace/store.h"

/* ---- clock and repeated timing ------------------------------------------ */

double bench_clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bench_opts_default(bench_opts *o)
{
	o->min_time = 0.2;
	o->min_reps = 3;
	o->max_reps = 1000;
	o->warmup = 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int bench_run_timed(bench_timed_fn fn, void *ctx, const bench_opts *opts, bench_stats *out)
{
	bench_opts def;
	double *t = NULL, spent = 0, dt;
	int cap = 64, n = 0, rc = 0;

	memset(out, 0, sizeof(*out));
	if (opts == NULL) {
		bench_opts_default(&def);
		opts = &def;
	}
	t = malloc((size_t)cap * sizeof(*t));
	if (t == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "bench_run: no memory for timings");
		goto out;
	}
	for (int i = 0; i < opts->warmup; i++) {
		rc = fn(ctx, &dt);
		if (rc != 0)
			goto out;
	}
	while ((n < opts->min_reps || spent < opts->min_time) && n < opts->max_reps) {
		if (n == cap) {
			double *nt = realloc(t, 2 * (size_t)cap * sizeof(*t));

			if (nt == NULL) {
				rc = pspace_err_set(PSPACE_ENOMEM,
				                    "bench_run: no memory for timings");
				goto out;
			}
			t = nt;
			cap *= 2;
		}
		dt = 0;
		rc = fn(ctx, &dt);
		if (rc != 0)
			goto out;
		t[n++] = dt;
		spent += dt;
	}
	if (n == 0)
		goto out;
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	out->reps = n;
	out->min = t[0];
	out->max = t[n - 1];
	out->median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
	out->total = spent;
out:
	free(t);
	return rc;
}

struct plain_call {
	bench_fn fn;
	void *ctx;
};

static int time_plain(void *ctx, double *seconds)
{
	struct plain_call *p = ctx;
	double t0 = bench_clock_now();
	int rc = p->fn(p->ctx);

	*seconds = bench_clock_now() - t0;
	return rc;
}

int bench_run(bench_fn fn, void *ctx, const bench_opts *opts, bench_stats *out)
{
	struct plain_call p = {fn, ctx};

	return bench_run_timed(time_plain, &p, opts, out);
}

double bench_mbps(double bytes, double seconds)
{
	return seconds > 0 ? bytes / seconds / 1e6 : 0;
}

struct par_slot {
	bench_par_fn fn;
	void *ctx;
	int tid, nthreads, rc;
};

static void *par_main(void *arg)
{
	struct par_slot *s = arg;

	s->rc = s->fn(s->ctx, s->tid, s->nthreads);
	return NULL;
}

int bench_parallel(int nthreads, bench_par_fn fn, void *ctx)
{
	struct par_slot *slot = NULL;
	pthread_t *th = NULL;
	int started = 1, rc = 0;

	if (nthreads <= 1)
		return fn(ctx, 0, 1);
	slot = calloc((size_t)nthreads, sizeof(*slot));
	th = calloc((size_t)nthreads, sizeof(*th));
	if (slot == NULL || th == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "bench_parallel: no memory");
		goto out;
	}
	for (int i = 0; i < nthreads; i++)
		slot[i] = (struct par_slot){fn, ctx, i, nthreads, 0};
	for (; started < nthreads; started++)
		if (pthread_create(&th[started], NULL, par_main, &slot[started]) != 0) {
			rc = pspace_err_set(PSPACE_ENOMEM, "bench_parallel: cannot start thread %d",
			                    started);
			break;
		}
	/* With a failed start, thread 0 still runs so the others can finish. */
	par_main(&slot[0]);
	for (int i = 1; i < started; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < started && rc == 0; i++)
		rc = slot[i].rc;
out:
	free(th);
	free(slot);
	return rc;
}

int bench_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

/* ---- output ------------------------------------------------------------- */

#define TABLE_COLS 32

/* The table begun last, for the JSON mirror. */
static struct {
	FILE *json;
	int records;
	char name[128];
	char col[TABLE_COLS][64];
	int ncols;
} tbl;

static void json_string(const char *p, size_t len)
{
	fputc('"', tbl.json);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '"' || c == '\\')
			fprintf(tbl.json, "\\%c", c);
		else if (c < 0x20)
			fprintf(tbl.json, "\\u%04x", c);
		else
			fputc(c, tbl.json);
	}
	fputc('"', tbl.json);
}

/* Writes a cell as a JSON number when it is one, else as a string. */
static void json_value(const char *p, size_t len)
{
	char tmp[64], *end;
	double v;

	if (len > 0 && len < sizeof(tmp) && (isdigit((unsigned char)*p) || *p == '-')) {
		memcpy(tmp, p, len);
		tmp[len] = '\0';
		v = strtod(tmp, &end);
		if (*end == '\0' && isfinite(v) && strchr(tmp, 'x') == NULL) {
			fputs(tmp, tbl.json);
			return;
		}
	}
	json_string(p, len);
}

static void json_record_begin(const char *table)
{
	fputs(tbl.records++ ? ",\n {" : "\n {", tbl.json);
	json_string("table", 5);
	fputs(": ", tbl.json);
	json_string(table, strlen(table));
}

static void json_field(const char *key, const char *val, size_t len)
{
	fputs(", ", tbl.json);
	json_string(key, strlen(key));
	fputs(": ", tbl.json);
	json_value(val, len);
}

int bench_json_open(const char *path)
{
	tbl.json = fopen(path, "w");
	if (tbl.json == NULL)
		return pspace_err_set(PSPACE_EIO, "%s: %s", path, strerror(errno));
	tbl.records = 0;
	fputc('[', tbl.json);
	return 0;
}

int bench_json_close(void)
{
	int bad;

	if (tbl.json == NULL)
		return 0;
	fputs("\n]\n", tbl.json);
	bad = ferror(tbl.json) | fclose(tbl.json);
	tbl.json = NULL;
	return bad ? pspace_err_set(PSPACE_EIO, "writing the JSON file failed") : 0;
}

void bench_table_header(FILE *f, const char *name, const char *cols)
{
	const char *p = cols;

	snprintf(tbl.name, sizeof(tbl.name), "%s", name);
	tbl.ncols = 0;
	fputc('|', f);
	while (1) {
		size_t len = strcspn(p, "|");
		int right = len > 0 && *p == '>';

		fprintf(f, " %.*s |", (int)(len - (size_t)right), p + right);
		if (tbl.ncols < TABLE_COLS)
			snprintf(tbl.col[tbl.ncols++], sizeof(tbl.col[0]), "%.*s",
			         (int)(len - (size_t)right), p + right);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	fputs("\n|", f);
	p = cols;
	for (int i = 0; i < tbl.ncols; i++) {
		fputs(*p == '>' ? "---:|" : "---|", f);
		p += strcspn(p, "|") + (p[strcspn(p, "|")] != '\0');
	}
	fputc('\n', f);
}

void bench_table_row(FILE *f, const char *fmt, ...)
{
	char buf[2048];
	const char *p = buf;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fputs("| ", f);
	for (const char *q = buf; *q; q++)
		if (*q == '|')
			fputs(" | ", f);
		else
			fputc(*q, f);
	fputs(" |\n", f);

	if (tbl.json == NULL)
		return;
	json_record_begin(tbl.name);
	for (int i = 0; i < tbl.ncols; i++) {
		size_t len = strcspn(p, "|");

		json_field(tbl.col[i], p, len);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	fputc('}', tbl.json);
}

static int progress_shown;

void bench_progress(const char *fmt, ...)
{
	va_list ap;

	if (!isatty(STDERR_FILENO))
		return;
	fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
	progress_shown = 1;
}

void bench_progress_end(void)
{
	if (!progress_shown)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	progress_shown = 0;
}

const char *bench_fmt_bytes(char *buf, size_t cap, double bytes)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	if (u == 0 || bytes == floor(bytes))
		snprintf(buf, cap, "%.0f %s", bytes, unit[u]);
	else
		snprintf(buf, cap, "%.2f %s", bytes, unit[u]);
	return buf;
}

/* Copies the value of the first "key<spaces>: value" line of @p path. */
static int proc_field(const char *path, const char *key, char *out, size_t cap)
{
	char line[512];
	size_t kl = strlen(key);
	FILE *f = fopen(path, "r");
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *v;

		if (strncmp(line, key, kl) != 0 || (v = strchr(line + kl, ':')) == NULL)
			continue;
		v += 1 + strspn(v + 1, " \t");
		v[strcspn(v, "\n")] = '\0';
		snprintf(out, cap, "%s", v);
		found = 1;
	}
	fclose(f);
	return found;
}

static void loadavg(char *out, size_t cap)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double a = 0, b = 0, c = 0;

	if (f != NULL && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
		snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
	else
		snprintf(out, cap, "?");
	if (f != NULL)
		fclose(f);
}

#if !defined(__OPTIMIZE__)
#define BUILD_KIND "NOT optimized (use a Release build)"
#elif defined(NDEBUG)
#define BUILD_KIND "optimized, NDEBUG"
#else
#define BUILD_KIND "optimized, assertions on"
#endif
#if defined(__VERSION__)
#define COMPILER __VERSION__
#else
#define COMPILER "?"
#endif

void bench_info(FILE *f, const char *key, const char *fmt, ...)
{
	char val[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	fprintf(f, "- %s: %s\n", key, val);
	if (tbl.json == NULL)
		return;
	json_record_begin("info");
	json_field("key", key, strlen(key));
	json_field("value", val, strlen(val));
	fputc('}', tbl.json);
}

void bench_machine_print(FILE *f)
{
	char when[64], model[256] = "?", mem[64] = "?", load[64];
	pspace_blis_info bi;
	struct utsname un;
	time_t now = time(NULL);
	int brc;

	proc_field("/proc/cpuinfo", "model name", model, sizeof(model));
	proc_field("/proc/meminfo", "MemTotal", mem, sizeof(mem));
	loadavg(load, sizeof(load));
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	brc = pspace_blis_info_get(&bi);
	if (uname(&un) != 0)
		memset(&un, 0, sizeof(un));

	bench_info(f, "date", "%s", when);
	bench_info(f, "cpu", "%s, %d online cpus", model, bench_ncpus());
	bench_info(f, "memory", "%s", mem);
	bench_info(f, "system", "%s %s %s", un.sysname, un.release, un.machine);
	bench_info(f, "compiler", "%s, %s", COMPILER, BUILD_KIND);
	bench_info(f, "pspace", "%s (store format %d)", pspace_version(), PSPACE_FORMAT_VERSION);
	if (brc == 0)
		bench_info(f, "BLIS", "%s, kernel set %s (%s); cpu %s", bi.version, bi.arch,
		           bi.reason, bi.cpu);
	else
		bench_info(f, "BLIS", "not initialized: %s: %s", pspace_strerror(brc),
		           pspace_errdetail());
	bench_info(f, "load average at start", "%s", load);
}

/* ---- files -------------------------------------------------------------- */

int bench_tmpdir_create(const char *base, const char *prefix, char *out, size_t cap)
{
	int n;

	if (base == NULL)
		base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	n = snprintf(out, cap, "%s/%s-XXXXXX", base, prefix);
	if (n < 0 || (size_t)n >= cap)
		return pspace_err_set(PSPACE_EINVAL, "temporary directory path too long: %s/%s",
		                      base, prefix);
	if (mkdtemp(out) == NULL)
		return pspace_err_set(PSPACE_EIO, "mkdtemp %s: %s", out, strerror(errno));
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) == 0 ? 0 : errno;
}

int bench_drop_caches(void)
{
	FILE *f;

	sync();
	f = fopen("/proc/sys/vm/drop_caches", "w");
	if (!f)
		return -1;
	if (fputs("3\n", f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

int bench_path_remove(const char *path)
{
	int e = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	if (e != 0)
		return pspace_err_set(PSPACE_EIO, "removing %s: %s", path,
		                      strerror(e > 0 ? e : errno));
	return 0;
}

/* ---- streaming a stored matrix ---------------------------------------- */

double bench_sum_f32(const float *x, size_t n)
{
	float acc[16] = {0};
	double s = 0;
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		for (int k = 0; k < 16; k++)
			acc[k] += x[i + k];
	for (; i < n; i++)
		s += x[i];
	for (int k = 0; k < 16; k++)
		s += acc[k];
	return s;
}

int bench_stream_sum(pspace_store *s, const char *name, pspace_codec *c, bench_stream *st)
{
	pspace_reader *r = NULL;
	pspace_tile_ref t;
	pspace_tile_header h;
	const void *data;
	int done = 0, rc;

	st->tiles = st->zero_copy = st->elements = 0;
	rc = pspace_reader_open(&r, s, name, 0);
	while (rc == 0) {
		rc = pspace_reader_next(&t, &done, r);
		if (rc != 0 || done)
			break;
		rc = pspace_reader_view(r, c, &t, PSPACE_F32, &data, &h);
		if (rc != 0)
			break;
		st->sum += bench_sum_f32(data, (size_t)h.rows * h.cols);
		st->elements += (uint64_t)h.rows * h.cols;
		st->tiles++;
		st->zero_copy += (const char *)data >= (const char *)t.data &&
		                 (const char *)data < (const char *)t.data + t.len;
	}
	pspace_reader_close(r);
	return rc;
}

/* ---- test data ---------------------------------------------------------- */

uint64_t bench_rng_u64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double bench_rng_normal(uint64_t *state)
{
	/* Box-Muller; u1 in (0, 1] so the log is finite. */
	double u1 = ((double)(bench_rng_u64(state) >> 11) + 1.0) * 0x1.0p-53;
	double u2 = (double)(bench_rng_u64(state) >> 11) * 0x1.0p-53;

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void bench_fisher_opts_default(bench_fisher_opts *o, size_t m)
{
	o->m = m;
	o->n = 0;
	o->sigma = 1.5;
	o->seed = 0x5eed;
	o->threads = 0;
}

int bench_fisher_generate(const bench_fisher_opts *o, double *f64, float *f32)
{
	/* G is produced a slab of rows at a time and accumulated into F. */
	const size_t slab = 256;
	size_t m = o->m, n = o->n ? o->n : o->m;
	double *scale = NULL, *g = NULL, alpha = 1.0 / (double)n, beta = 0.0;
	uint64_t st = o->seed;
	rntm_t rntm;
	int rc = 0;

	if (m == 0)
		return pspace_err_set(PSPACE_EINVAL, "bench_fisher_generate: m = 0");
	scale = malloc(m * sizeof(*scale));
	g = malloc(slab * m * sizeof(*g));
	if (scale == NULL || g == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "bench_fisher_generate: %zu x %zu", slab, m);
		goto out;
	}
	for (size_t j = 0; j < m; j++)
		scale[j] = exp(o->sigma * bench_rng_normal(&st));

	bli_rntm_init(&rntm);
	bli_rntm_set_num_threads(o->threads > 0 ? o->threads : bench_ncpus(), &rntm);
	for (size_t r0 = 0; r0 < n; r0 += slab) {
		size_t k = n - r0 < slab ? n - r0 : slab;

		for (size_t i = 0; i < k; i++)
			for (size_t j = 0; j < m; j++)
				g[i * m + j] = scale[j] * bench_rng_normal(&st);
		/* F += alpha * G_slab^T G_slab: G_slab is k x m, row-major. */
		bli_dgemm_ex(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)m, (dim_t)k,
		             &alpha, g, (inc_t)m, 1, g, (inc_t)m, 1, &beta, f64, (inc_t)m, 1, NULL,
		             &rntm);
		beta = 1.0;
	}
	/* gemm does not promise a bitwise symmetric result; mirror the upper part. */
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < i; j++)
			f64[i * m + j] = f64[j * m + i];
	if (f32 != NULL)
		for (size_t i = 0; i < m * m; i++)
			f32[i] = (float)f64[i];
out:
	free(g);
	free(scale);
	return rc;
}

int bench_dense_put_tiles(pspace_writer *w, uint64_t d, uint32_t edge, int symmetric,
                          const float *master, size_t m, uint64_t *f32_bytes)
{
	uint32_t nt = (uint32_t)((d + edge - 1) / edge);
	size_t k = edge ? m / edge : 0;
	int rc = 0;

	*f32_bytes = 0;
	if (k == 0)
		return pspace_err_set(PSPACE_EINVAL, "tile edge %u larger than the %zu master",
		                      edge, m);
	for (uint32_t i = 0; rc == 0 && i < nt; i++)
		for (uint32_t j = symmetric ? i : 0; rc == 0 && j < nt; j++) {
			const float *src = master + (i % k) * edge * m + (j % k) * edge;
			uint64_t rows = d - (uint64_t)i * edge, cols = d - (uint64_t)j * edge;

			rows = rows < edge ? rows : edge;
			cols = cols < edge ? cols : edge;
			*f32_bytes += rows * cols * sizeof(float);
			rc = pspace_writer_put_tile(w, 0, i, j, PSPACE_F32, src, m);
		}
	return rc;
}

void bench_fisher_describe(FILE *f, const bench_fisher_opts *o, const float *f32)
{
	const size_t e = 256, m = o->m, k = m / e;
	bench_range all, t;
	double lo = INFINITY, hi = 0, spread = 0;
	size_t n = 0;

	bench_range_f32(f32, m, m, m, &all);
	for (size_t i = 0; i < k; i++)
		for (size_t j = i; j < k; j++, n++) {
			double s;

			bench_range_f32(f32 + i * e * m + j * e, e, e, m, &t);
			s = log10(t.absmax / t.absmin);
			lo = s < lo ? s : lo;
			hi = s > hi ? s : hi;
			spread += s;
		}
	bench_info(f, "data",
	           "F = G^T G / n, %zu x %zu, G %zu x %zu Gaussian rows, column scales "
	           "exp(N(0, %.2f)), seed %#llx",
	           m, m, o->n ? o->n : m, m, o->sigma, (unsigned long long)o->seed);
	if (n > 0)
		bench_info(f, "|F|",
		           "%.1e .. %.1e (%.1f decades, %zu zeros); within a 256-tile %.1f..%.1f "
		           "decades, mean %.1f",
		           all.absmin, all.absmax, log10(all.absmax / all.absmin), all.zeros, lo,
		           hi, spread / (double)n);
}

void bench_range_f32(const float *a, size_t rows, size_t cols, size_t ld, bench_range *out)
{
	double lo = INFINITY, hi = 0;
	size_t zeros = 0;

	for (size_t i = 0; i < rows; i++)
		for (size_t j = 0; j < cols; j++) {
			double x = fabs((double)a[i * ld + j]);

			if (x == 0) {
				zeros++;
				continue;
			}
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
	out->absmin = lo == INFINITY ? 0 : lo;
	out->absmax = hi;
	out->zeros = zeros;
}

/* ---- baselines: BLIS gemm peak ---------------------------------------------------- */

struct gemm_work {
	int single; /* sgemm, else dgemm */
	dim_t n;
	void *a, *b, *c;
	rntm_t rntm;
};

static int run_gemm(void *ctx)
{
	struct gemm_work *g = ctx;

	if (g->single) {
		float one = 1.0f, zero = 0.0f;

		bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, g->n, g->n, g->n, &one, g->a,
		             g->n, 1, g->b, g->n, 1, &zero, g->c, g->n, 1, NULL, &g->rntm);
	} else {
		double one = 1.0, zero = 0.0;

		bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, g->n, g->n, g->n, &one, g->a,
		             g->n, 1, g->b, g->n, 1, &zero, g->c, g->n, 1, NULL, &g->rntm);
	}
	return 0;
}

int bench_gemm_peak(int single, int threads, int n, double min_time, double *gflops)
{
	struct gemm_work g = {0};
	size_t cnt = (size_t)n * (size_t)n, es = single ? sizeof(float) : sizeof(double);
	uint64_t seed = 3;
	bench_opts o;
	bench_stats st;
	int rc = PSPACE_ENOMEM;

	g.single = single;
	g.n = n;
	g.a = malloc(cnt * es);
	g.b = malloc(cnt * es);
	g.c = malloc(cnt * es);
	if (g.a && g.b && g.c) {
		for (size_t i = 0; i < cnt; i++) {
			double x = bench_rng_normal(&seed), y = bench_rng_normal(&seed);

			if (single) {
				((float *)g.a)[i] = (float)x;
				((float *)g.b)[i] = (float)y;
			} else {
				((double *)g.a)[i] = x;
				((double *)g.b)[i] = y;
			}
		}
		bli_rntm_init(&g.rntm);
		bli_rntm_set_num_threads(threads, &g.rntm);
		bench_opts_default(&o);
		o.min_time = min_time;
		o.min_reps = 3;
		rc = bench_run(run_gemm, &g, &o, &st);
		*gflops = 2.0 * n * (double)n * (double)n / st.median / 1e9;
	}
	free(g.c);
	free(g.b);
	free(g.a);
	return rc;
}
