/*
 * bench_factor - how fast is the out-of-core Cholesky factorization against
 * the machine's dgemm, how much does it read and write per flop, and how
 * accurate are stochastic Lanczos quadrature log-determinants as the probes
 * grow?
 *
 * (a) pspace_factor_write of a stored Dense matrix F + l I (default d =
 *     32768, tile 512, f32 source tiles as builds write them, f64 factor
 *     tiles, the default) within a --mem budget, in GFLOP/s of the d^3 / 3
 *     flops of a Cholesky factorization against BLIS dgemm measured in the
 *     same run on as many threads. F = G G^T / m from a d x m Gaussian G
 *     whose rows have log-normal scales (m = 256: a Fisher of few examples),
 *     written tile by tile. The bytes it moves are counted from the panels
 *     it committed (its progress callback) and the stored size of every
 *     tile: each source tile read once, for a panel starting at tile column
 *     J every factor tile (i, K), K < J <= i read back, each factor tile
 *     written once. With --cold (root) the page cache is dropped before the
 *     factorization; bench/run.sh's report runs it so, under its memory cap.
 * (b) SLQ log det of a stored Dense Fisher (d = 2000, F = G^T G / n, n =
 *     d / 4, f32 tiles) plus damping, made to estimate by a budget below its
 *     in-memory Cholesky factor, for growing probe counts at fixed steps and
 *     several seeds, against the exact value by LAPACK dpotrf of the stored
 *     (f32-rounded) values in this program: |error| beside the standard
 *     error the estimator reports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "harness.h"
#include "pspace.h"

#define PROG       "bench_factor"
#define MIB        ((uint64_t)1 << 20)
#define MAX_PROBES 8

struct config {
	int quick, cold, seeds;
	uint64_t d, rank, mem, slq_d;
	uint32_t tile, steps, nprobes, probes[MAX_PROBES];
	double damping;
	const char *dir, *json;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--quick] [--d N] [--mem MIB] [--tile E] [--rank M] "
	           "[--damping L] [--cold]\n"
	           "       [--slq-d N] [--probes P,P,..] [--steps S] [--seeds K] [--dir DIR] "
	           "[--json FILE]\n"
	           "  --quick        d = 4096, tile 256, 48 MiB; SLQ at d = 1000, probes 4,16,64, "
	           "3 seeds\n"
	           "  --d N          dimension of the factored matrix (32768)\n"
	           "  --mem MIB      the factorization's memory budget in MiB (384)\n"
	           "  --tile E       tile edge (512)\n"
	           "  --rank M       F = G G^T / M, G d x M (256)\n"
	           "  --damping L    factor F + L I (0.01; F's mean diagonal is about 7)\n"
	           "  --cold         drop the page cache before the factorization (root)\n"
	           "  --slq-d N      dimension of the SLQ matrix (2000)\n"
	           "  --probes LIST  SLQ probe counts (4,16,64,256)\n"
	           "  --steps S      SLQ Lanczos steps per probe (40)\n"
	           "  --seeds K      SLQ runs (seeds) per probe count (5)\n"
	           "  --dir DIR      where the temporary store goes ($TMPDIR or /tmp)\n"
	           "  --json FILE    also write the tables as JSON\n");
}

static int parse_probes(struct config *c, const char *v)
{
	char *end;

	c->nprobes = 0;
	while (*v) {
		unsigned long p = strtoul(v, &end, 10);

		if (end == v || p == 0 || p > 4096 || c->nprobes == MAX_PROBES)
			return -1;
		c->probes[c->nprobes++] = (uint32_t)p;
		v = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return c->nprobes ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct config *c)
{
	static const uint32_t probes[] = {4, 16, 64, 256};

	memset(c, 0, sizeof(*c));
	c->d = 32768;
	c->rank = 256;
	c->mem = 384;
	c->tile = 512;
	c->damping = 0.01;
	c->slq_d = 2000;
	c->steps = 40;
	c->seeds = 5;
	c->nprobes = 4;
	memcpy(c->probes, probes, sizeof(probes));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long long x = 0;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->d = 4096;
			c->tile = 256;
			c->mem = 48;
			c->slq_d = 1000;
			c->seeds = 3;
			c->nprobes =
			    3; /* 4, 16, 64: the Lanczos bases of 256 probes fill a small cap */
			continue;
		}
		if (strcmp(a, "--cold") == 0) {
			c->cold = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!v)
			goto bad;
		i++;
		if (strcmp(a, "--dir") == 0) {
			c->dir = v;
		} else if (strcmp(a, "--json") == 0) {
			c->json = v;
		} else if (strcmp(a, "--probes") == 0) {
			if (parse_probes(c, v) != 0)
				goto bad;
		} else if (strcmp(a, "--damping") == 0) {
			c->damping = strtod(v, NULL);
			if (!(c->damping > 0))
				goto bad;
		} else if (sscanf(v, "%llu", &x) != 1 || x == 0) {
			goto bad;
		} else if (strcmp(a, "--d") == 0) {
			c->d = x;
		} else if (strcmp(a, "--mem") == 0) {
			c->mem = x;
		} else if (strcmp(a, "--tile") == 0 && x <= 4096) {
			c->tile = (uint32_t)x;
		} else if (strcmp(a, "--rank") == 0 && x <= 4096) {
			c->rank = x;
		} else if (strcmp(a, "--slq-d") == 0 && x <= 20000) {
			c->slq_d = x;
		} else if (strcmp(a, "--steps") == 0 && x <= 1000) {
			c->steps = (uint32_t)x;
		} else if (strcmp(a, "--seeds") == 0 && x <= 100) {
			c->seeds = (int)x;
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	usage(stderr);
	return 2;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

/* ---- (a) the out-of-core factorization ----------------------------------- */

/* F = G G^T / m, G d x m row-major. */
struct lowrank {
	uint64_t d, m;
	double *g;
};

static int lowrank_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols,
                        double *tile)
{
	const struct lowrank *lr = ud;
	double alpha = 1.0 / (double)lr->m, beta = 0.0;

	bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, rows, cols, (dim_t)lr->m, &alpha,
	          lr->g + r0 * lr->m, (inc_t)lr->m, 1, lr->g + c0 * lr->m, (inc_t)lr->m, 1, &beta,
	          tile, cols, 1);
	return 0;
}

static void write_progress(void *ud, uint64_t done, uint64_t total)
{
	(void)ud;
	if (done % 64 == 0)
		bench_progress("writing F: tile %llu / %llu", (unsigned long long)done,
		               (unsigned long long)total);
}

/* The panels the factorization committed: the columns done after each. */
struct panels {
	uint64_t n, cap, *done;
	double t0, *at;
};

static void factor_progress(void *ud, uint64_t done, uint64_t total)
{
	struct panels *p = ud;

	if (p->n < p->cap) {
		p->done[p->n] = done;
		p->at[p->n] = bench_clock_now() - p->t0;
		p->n++;
	}
	bench_progress("factor: %llu / %llu columns, %llu panels, %.0f s", (unsigned long long)done,
	               (unsigned long long)total, (unsigned long long)p->n,
	               bench_clock_now() - p->t0);
}

/* Stored bytes of every tile (i, j) of matrix @p name into @p len (nt x nt, 0 where absent). */
static int tile_sizes(pspace_store *s, const char *name, uint64_t nt, uint64_t *len)
{
	pspace_reader *r = NULL;
	int rc = pspace_reader_open(&r, s, name, 0);

	memset(len, 0, nt * nt * sizeof(*len));
	while (rc == 0) {
		pspace_tile_ref t;
		int done = 0;

		rc = pspace_reader_next(&t, &done, r);
		if (rc != 0 || done)
			break;
		len[(uint64_t)t.row * nt + t.col] = t.len;
	}
	pspace_reader_close(r);
	return rc;
}

/* This process's memory cgroup (v1) file @p file, as a number; 0 when there is none. */
static uint64_t cgroup_value(const char *file)
{
	char ln[1024], path[1200];
	unsigned long long v = 0;
	FILE *f = fopen("/proc/self/cgroup", "r");

	path[0] = 0;
	while (f && fgets(ln, sizeof(ln), f)) {
		char *p = strstr(ln, ":memory:");

		if (p) {
			p[strcspn(p, "\n")] = 0;
			snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/%s",
			         strcmp(p + 8, "/") == 0 ? "" : p + 8, file);
		}
	}
	if (f)
		fclose(f);
	f = path[0] ? fopen(path, "r") : NULL;
	if (f && fscanf(f, "%llu", &v) != 1)
		v = 0;
	if (f)
		fclose(f);
	return v;
}

/* The peak resident memory (VmHWM) in bytes; reset by writing 5 to clear_refs. */
static uint64_t vm_hwm(void)
{
	char ln[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(ln, sizeof(ln), f))
		if (sscanf(ln, "VmHWM: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

static void vm_hwm_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");

	if (f) {
		fputs("5\n", f);
		fclose(f);
	}
}

static int write_source(pspace_store *s, const struct config *c, double *seconds)
{
	struct lowrank lr = {c->d, c->rank, malloc(c->d * c->rank * sizeof(double))};
	pspace_layout *layout = NULL;
	pspace_write_opts wo;
	uint64_t st = 5;
	double t0 = bench_clock_now();
	int rc;

	if (!lr.g)
		return pspace_err_set(PSPACE_ENOMEM, "G: %llu x %llu", (unsigned long long)c->d,
		                      (unsigned long long)c->rank);
	for (uint64_t p = 0; p < c->d; p++) {
		double scale = exp(bench_rng_normal(&st));

		for (uint64_t k = 0; k < c->rank; k++)
			lr.g[p * c->rank + k] = scale * bench_rng_normal(&st);
	}
	pspace_write_opts_default(&wo);
	wo.tile = c->tile;
	rc = pspace_layout_flat(&layout, c->d);
	if (rc == 0)
		rc = pspace_tiled_write(s, "F", PSPACE_KIND_DENSE, layout, lowrank_tile, &lr, &wo,
		                        write_progress);
	*seconds = bench_clock_now() - t0;
	pspace_layout_free(layout);
	free(lr.g);
	return rc;
}

static int bench_cholesky(const struct config *c, pspace_store *s, int threads)
{
	uint64_t d = c->d, T = c->tile, nt = (d + T - 1) / T;
	uint64_t *slen = malloc(nt * nt * sizeof(uint64_t)),
	         *flen = malloc(nt * nt * sizeof(uint64_t));
	struct panels p = {0, nt, calloc(nt, sizeof(uint64_t)), 0, calloc(nt, sizeof(double))};
	double flops = (double)d * (double)d * (double)d / 3.0, peak = 0, t_write = 0, t_fac;
	double src_rd = 0, fac_rd = 0, fac_wr = 0, logical_rd = 0;
	pspace_exec ex = {threads, c->mem * MIB};
	pspace_factor_opts fo;
	pspace_matrix_info fi, li;
	uint64_t wmin = nt, wmax = 0, hwm, cap = cgroup_value("memory.limit_in_bytes");
	const char *cold = "warm: F was just written, the page cache holds what the cap allows";
	char b1[32], b2[32], b3[32];
	int rc;

	if (!slen || !flen || !p.done || !p.at) {
		rc = fail(PSPACE_ENOMEM, "tile tables");
		goto out;
	}
	bench_progress("dgemm peak");
	rc = bench_gemm_peak(0, threads, c->quick ? 1024 : 2048, c->quick ? 0.3 : 1.0, &peak);
	if (rc != 0) {
		fail(rc, "dgemm peak");
		goto out;
	}
	rc = write_source(s, c, &t_write);
	if (rc == 0)
		rc = pspace_matrix_info_get(&fi, s, "F");
	if (rc != 0) {
		fail(rc, "writing F");
		goto out;
	}
	if (c->cold)
		cold = bench_drop_caches() == 0
		           ? "cold: page cache dropped before the factorization"
		           : "warm: could not drop the page cache (needs root)";
	vm_hwm_reset();
	pspace_factor_opts_default(&fo);
	fo.damping = c->damping;
	fo.progress = factor_progress;
	fo.progress_ud = &p;
	p.t0 = bench_clock_now();
	rc = pspace_factor_write(s, "L", "F", &ex, &fo);
	t_fac = bench_clock_now() - p.t0;
	hwm = vm_hwm();
	bench_progress_end();
	if (rc == 0)
		rc = pspace_matrix_info_get(&li, s, "L");
	if (rc == 0)
		rc = tile_sizes(s, "F", nt, slen);
	if (rc == 0)
		rc = tile_sizes(s, "L", nt, flen);
	if (rc != 0) {
		fail(rc, "factor");
		goto out;
	}
	/* Each source tile once; per panel [J, J1): factor tiles (i, K), K < J <= i. */
	for (uint64_t i = 0; i < nt * nt; i++) {
		src_rd += (double)slen[i];
		fac_wr += (double)flen[i];
	}
	for (uint64_t k = 0, c0 = 0; k < p.n; c0 = p.done[k++]) {
		uint64_t J = c0 / T, w = (p.done[k] - c0 + T - 1) / T;

		wmin = w < wmin ? w : wmin;
		wmax = w > wmax ? w : wmax;
		for (uint64_t K = 0; K < J; K++)
			for (uint64_t i = J; i < nt; i++) {
				uint64_t rows = i + 1 < nt ? T : d - i * T;

				fac_rd += (double)flen[i * nt + K];
				logical_rd += 8.0 * (double)rows * (double)T;
			}
	}

	printf("## (a) Out-of-core Cholesky of a stored Dense matrix\n\n");
	bench_info(
	    stdout, "matrix",
	    "F + %g I, d = %llu, F = G G^T / %llu (G Gaussian, rows scaled by exp(N(0, 1))), "
	    "tiles of %llu: source %s stored (%s), factor %s stored (f64)",
	    c->damping, (unsigned long long)d, (unsigned long long)c->rank, (unsigned long long)T,
	    bench_fmt_bytes(b1, sizeof(b1), (double)fi.tile_bytes),
	    pspace_dtype_name(fi.codec.dtype),
	    bench_fmt_bytes(b2, sizeof(b2), (double)li.tile_bytes));
	bench_info(stdout, "budget", "--mem %llu MiB, %d threads; source written in %.1f s",
	           (unsigned long long)c->mem, threads, t_write);
	bench_info(stdout, "memory cap",
	           cap && cap < ((uint64_t)1 << 60) ? "%s (cgroup of this process)" : "%s",
	           cap && cap < ((uint64_t)1 << 60) ? bench_fmt_bytes(b3, sizeof(b3), (double)cap)
	                                            : "none");
	bench_info(stdout, "page cache", "%s", cold);
	bench_info(
	    stdout, "peak resident memory",
	    "%s during the factorization (VmHWM, reset before it; it counts the store's pages "
	    "mapped while read)%s%s",
	    bench_fmt_bytes(b1, sizeof(b1), (double)hwm),
	    cap && cap < ((uint64_t)1 << 60) ? "; group peak incl. page cache " : "",
	    cap && cap < ((uint64_t)1 << 60)
	        ? bench_fmt_bytes(b2, sizeof(b2), (double)cgroup_value("memory.max_usage_in_bytes"))
	        : "");
	printf("\n");
	bench_table_header(stdout, "factor", "what|>value");
	bench_table_row(stdout, "factorization (s)|%.2f", t_fac);
	bench_table_row(stdout, "GFLOP/s (d^3/3 flops)|%.1f", flops / t_fac / 1e9);
	bench_table_row(stdout, "dgemm peak, %d threads, same run (GFLOP/s)|%.1f", threads, peak);
	bench_table_row(stdout, "fraction of the dgemm peak|%.2f", flops / t_fac / 1e9 / peak);
	bench_table_row(stdout, "panels (tile columns each: %llu to %llu)|%llu",
	                (unsigned long long)wmin, (unsigned long long)wmax,
	                (unsigned long long)p.n);
	bench_table_row(stdout, "source tiles read, stored (GiB)|%.3f", src_rd / (1 << 30));
	bench_table_row(stdout, "factor tiles read back, stored (GiB)|%.3f", fac_rd / (1 << 30));
	bench_table_row(stdout, "factor tiles read back, decoded f64 (GiB)|%.3f",
	                logical_rd / (1 << 30));
	bench_table_row(stdout, "factor tiles written, stored (GiB)|%.3f", fac_wr / (1 << 30));
	bench_table_row(stdout, "bytes read per flop (stored)|%.4f", (src_rd + fac_rd) / flops);
	bench_table_row(stdout, "bytes written per flop (stored)|%.4f", fac_wr / flops);
	bench_table_row(stdout, "I/O rate over the factorization (MB/s)|%.0f",
	                bench_mbps(src_rd + fac_rd + fac_wr, t_fac));
	printf("\n");
out:
	free(p.at);
	free(p.done);
	free(flen);
	free(slen);
	return rc;
}

/* ---- (b) SLQ log-determinants against the exact value ------------------------- */

static int bench_slq(const struct config *c, pspace_store *s, int threads)
{
	size_t n = c->slq_d;
	bench_fisher_opts fo;
	double *F = malloc(n * n * sizeof(double)), exact = 0, l = 0, t0;
	float *F32 = malloc(n * n * sizeof(float));
	pspace_exec big = {threads, 4 * n * n * sizeof(double) + 64 * MIB};
	pspace_exec small = {threads, n * n * sizeof(double) / 4};
	pspace_mat *m = NULL;
	pspace_op *op = NULL;
	double lib = 0;
	char b1[32];
	int rc;

	if (!F || !F32) {
		rc = fail(PSPACE_ENOMEM, "SLQ matrix");
		goto out;
	}
	bench_progress("SLQ: the matrix");
	bench_fisher_opts_default(&fo, n);
	fo.n = n / 4;
	fo.sigma = 1.0;
	fo.threads = threads;
	rc = bench_fisher_generate(&fo, F, F32);
	if (rc != 0) {
		fail(rc, "SLQ matrix");
		goto out;
	}
	for (size_t i = 0; i < n * n; i++)
		F[i] = (double)F32[i];
	rc = pspace_dense_write(s, "S", NULL, n, F, n, NULL);
	if (rc == 0)
		rc = pspace_mat_open(&m, s, "S");
	if (rc == 0)
		rc = pspace_op_mat(&op, m);
	if (rc != 0) {
		fail(rc, "SLQ matrix");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		l += F[i * n + i];
	l = 1e-3 * l / (double)n;
	/* the exact value: LAPACK on the stored values (row-major symmetric = column-major) */
	for (size_t i = 0; i < n; i++)
		F[i * n + i] += l;
	if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, F, (lapack_int)n) != 0) {
		rc = fail(pspace_err_set(PSPACE_ENUMERIC, "dpotrf"), "SLQ reference");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		exact += 2 * log(F[i * n + i]);
	t0 = bench_clock_now();
	rc = pspace_mat_logdet(&lib, m, &big, l);
	t0 = bench_clock_now() - t0;
	if (rc != 0) {
		fail(rc, "exact logdet");
		goto out;
	}

	printf("## (b) SLQ log-determinant against the exact value\n\n");
	bench_info(stdout, "matrix",
	           "stored Dense F + %.3g I (damping 1e-3 x mean diagonal), d = %zu, F = G^T G / "
	           "%zu (Fisher-like, bench_fisher_generate, sigma 1), f32 tiles",
	           l, n, n / 4);
	bench_info(stdout, "exact",
	           "log det = %.10g by LAPACK dpotrf of the stored values; pspace_mat_logdet "
	           "(in-memory Cholesky) %.10g, relative difference %.2g, %.2f s",
	           exact, lib, fabs(lib - exact) / fabs(exact), t0);
	bench_info(stdout, "estimate",
	           "pspace_op_logdet with a budget of %s (below the d^2 doubles of the "
	           "factor): SLQ, %u Lanczos steps, %d seeds per probe count, %d threads",
	           bench_fmt_bytes(b1, sizeof(b1), (double)small.mem_budget), c->steps, c->seeds,
	           threads);
	printf("\n");
	bench_table_header(stdout, "slq",
	                   "probes|>steps|>rms error|>relative|>mean std err|>rms error / std "
	                   "err|>s per run");
	for (uint32_t k = 0; rc == 0 && k < c->nprobes; k++) {
		double se2 = 0, se = 0, secs = 0;

		for (int sd = 0; sd < c->seeds; sd++) {
			pspace_est_opts eo;
			double est = 0;

			bench_progress("SLQ: %u probes, seed %d", c->probes[k], sd + 1);
			memset(&eo, 0, sizeof(eo));
			eo.probes = c->probes[k];
			eo.steps = c->steps;
			eo.seed = 1000 + (uint64_t)sd;
			t0 = bench_clock_now();
			rc = pspace_op_logdet(&est, op, &small, l, &eo);
			secs += bench_clock_now() - t0;
			if (rc != 0) {
				fail(rc, "SLQ");
				break;
			}
			if (eo.exact) {
				rc = fail(pspace_err_set(PSPACE_EINVAL, "exact, not estimated"),
				          "SLQ");
				break;
			}
			se2 += (est - exact) * (est - exact);
			se += eo.stderr_;
		}
		bench_progress_end();
		if (rc == 0) {
			double rms = sqrt(se2 / c->seeds);

			se /= c->seeds;
			bench_table_row(stdout, "%u|%u|%.4g|%.2e|%.4g|%.2f|%.2f", c->probes[k],
			                c->steps, rms, rms / fabs(exact), se, se > 0 ? rms / se : 0,
			                secs / c->seeds);
		}
	}
	printf("\n");
out:
	bench_progress_end();
	pspace_op_free(op);
	pspace_mat_free(m);
	free(F32);
	free(F);
	return rc;
}

int main(int argc, char **argv)
{
	struct config cfg;
	char root[4096], path[4200];
	pspace_store *s = NULL;
	int rc, threads;

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (cfg.json && bench_json_open(cfg.json) != 0)
		return fail(PSPACE_EIO, "--json"), 1;
	threads = bench_ncpus();
	rc = bench_tmpdir_create(cfg.dir, "bench-factor", root, sizeof(root));
	if (rc != 0)
		return fail(rc, "tmpdir"), 1;
	snprintf(path, sizeof(path), "%s/s", root);
	printf("# " PROG ": out-of-core Cholesky against the dgemm peak, SLQ log det against the "
	       "exact value\n\n");
	bench_machine_print(stdout);
	printf("\n");
	rc = pspace_store_open(&s, path, NULL);
	if (rc != 0)
		fail(rc, "store");
	if (rc == 0)
		rc = bench_cholesky(&cfg, s, threads);
	if (rc == 0)
		rc = bench_slq(&cfg, s, threads);
	pspace_store_close(s);
	bench_path_remove(root);
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	return rc != 0 ? 1 : 0;
}
