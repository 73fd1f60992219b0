/*
 * bench/harness/harness.h - the timing harness shared by the pspace
 * benchmark programs: a monotonic clock, repeated timing of a function with
 * median and minimum, a thread fan-out, markdown tables (mirrored to JSON on
 * request), a progress line, a description of the machine, temporary
 * directories, a generator of Fisher-like test matrices, and writing and
 * streaming a dense matrix through a store.
 *
 * Functions that can fail return 0 or a negative PSPACE_E* code and set the
 * pspace detail message, so a benchmark reports every error the same way.
 */
#ifndef PSPACE_BENCH_HARNESS_H
#define PSPACE_BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pspace/store.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BENCH_PRINTF(a, b)
#endif

/* ---- clock and repeated timing ------------------------------------------ */

/** @return seconds on the monotonic clock (arbitrary origin). */
double bench_clock_now(void);

/** A unit of work to time. @return 0, or nonzero to stop the run with that value. */
typedef int (*bench_fn)(void *ctx);

/** How long to repeat a measurement. */
typedef struct bench_opts {
	double min_time; /**< repeat until this many seconds were timed (default 0.2) */
	int min_reps;    /**< and at least this many repetitions (default 3) */
	int max_reps;    /**< but never more than this (default 1000) */
	int warmup;      /**< untimed calls before the first timed one (default 1) */
} bench_opts;

/** Fills @p o with the defaults above. */
void bench_opts_default(bench_opts *o);

/** Result of bench_run(): seconds per call. */
typedef struct bench_stats {
	int reps;      /**< timed repetitions */
	double median; /**< median seconds per call: the number to report */
	double min;    /**< fastest call: the least disturbed by other load */
	double max;    /**< slowest call */
	double total;  /**< sum of all timed calls */
} bench_stats;

/**
 * Calls @p fn(@p ctx) @p opts->warmup times untimed, then repeatedly, timing
 * each call, until both opts->min_time seconds and opts->min_reps calls are
 * reached (or opts->max_reps). @p opts NULL means the defaults.
 * @return 0, PSPACE_ENOMEM, or the first nonzero value @p fn returned.
 */
int bench_run(bench_fn fn, void *ctx, const bench_opts *opts, bench_stats *out);

/**
 * A unit of work that times itself, for work with per-call setup that must
 * not count (a fresh store, a cold cache): stores the seconds of the part
 * that counts in *@p seconds. @return 0, or nonzero to stop the run.
 */
typedef int (*bench_timed_fn)(void *ctx, double *seconds);

/** As bench_run(), for a function that reports its own time. */
int bench_run_timed(bench_timed_fn fn, void *ctx, const bench_opts *opts, bench_stats *out);

/** @return @p bytes / @p seconds / 1e6 (MB/s), 0 when @p seconds is not positive. */
double bench_mbps(double bytes, double seconds);

/** Work for one of @p nthreads threads; @p tid is 0..nthreads-1. @return 0 or nonzero. */
typedef int (*bench_par_fn)(void *ctx, int tid, int nthreads);

/**
 * Runs @p fn on @p nthreads threads (thread 0 is the caller) and waits for
 * all. With nthreads <= 1 it is a plain call.
 * @return 0, PSPACE_ENOMEM when a thread cannot start, or the first nonzero
 * value (lowest tid) that @p fn returned.
 */
int bench_parallel(int nthreads, bench_par_fn fn, void *ctx);

/** @return the number of online CPUs (at least 1). */
int bench_ncpus(void);

/* ---- output ------------------------------------------------------------- */

/**
 * Prints the header and separator of a markdown table. @p cols names the
 * columns separated by '|'; a name starting with '>' is right-aligned (the
 * '>' is not printed), as numbers should be. @p name identifies the table in
 * the JSON output (see bench_json_open()). Not thread-safe, as all output.
 */
void bench_table_header(FILE *f, const char *name, const char *cols);

/**
 * Prints one row of the table begun last; @p fmt is printf-style with cells
 * separated by '|'. With a JSON file open, the row is also written there.
 */
void bench_table_row(FILE *f, const char *fmt, ...) BENCH_PRINTF(2, 3);

/**
 * Mirrors every table row from now on into @p path as JSON: an array of
 * objects {"table": name, column: cell, ...}, cells that are numbers written
 * as numbers; bench_info() lines are written too.
 * @return 0 or PSPACE_EIO.
 */
int bench_json_open(const char *path);

/** Finishes and closes the JSON file, if open. @return 0 or PSPACE_EIO. */
int bench_json_close(void);

/**
 * Shows a progress line on stderr, overwriting the previous one, when stderr
 * is a terminal; does nothing otherwise (so logs and pipes stay clean).
 */
void bench_progress(const char *fmt, ...) BENCH_PRINTF(1, 2);

/** Erases the progress line, if one is shown. */
void bench_progress_end(void);

/** Formats @p bytes as "512 KiB", "1.50 GiB", ... into @p buf. @return @p buf. */
const char *bench_fmt_bytes(char *buf, size_t cap, double bytes);

/**
 * Prints "- @p key: value" (a markdown list item), the value printf-style;
 * with a JSON file open, also writes {"table": "info", "key": .., "value": ..}.
 */
void bench_info(FILE *f, const char *key, const char *fmt, ...) BENCH_PRINTF(3, 4);

/**
 * Prints a markdown list (bench_info()) describing the machine and the build: CPU model,
 * online CPUs, memory, kernel, compiler, pspace version, the BLIS kernel set
 * (through pspace_blis_info_get(), which initializes pspace), load average.
 */
void bench_machine_print(FILE *f);

/* ---- files -------------------------------------------------------------- */

/**
 * Creates a fresh directory @p base/@p prefix-XXXXXX; @p base NULL means
 * $TMPDIR or /tmp. Writes its path into @p out (capacity @p cap).
 * @return 0, PSPACE_EINVAL (path too long) or PSPACE_EIO.
 */
int bench_tmpdir_create(const char *base, const char *prefix, char *out, size_t cap);

/** Removes @p path and everything below it. @return 0 or PSPACE_EIO. */
int bench_path_remove(const char *path);

/** sync, then drops the whole page cache (needs root). @return 0 or -1. */
int bench_drop_caches(void);

/* ---- streaming a stored matrix ---------------------------------------- */

/** @return the sum of @p n floats, with partial sums the compiler can vectorize. */
double bench_sum_f32(const float *x, size_t n);

/** What bench_stream_sum() saw. */
typedef struct bench_stream {
	uint64_t tiles;     /**< tiles read */
	uint64_t zero_copy; /**< of which the view pointed into the map (no decode) */
	uint64_t elements;  /**< elements summed */
	double sum;         /**< accumulates the sum, so no work can be optimized away */
} bench_stream;

/**
 * Streams every tile of matrix @p name in storage order with
 * pspace_reader_next() + pspace_reader_view() as f32 into bench_sum_f32():
 * the least work a consumer of the whole matrix does, so the ceiling for
 * any streaming operation. Resets the counters of @p st but adds to st->sum.
 * @return 0 or what the reader calls return.
 */
int bench_stream_sum(pspace_store *s, const char *name, pspace_codec *c, bench_stream *st);

/* ---- test data ---------------------------------------------------------- */

/** @return the next 64 random bits of the splitmix64 stream @p state. */
uint64_t bench_rng_u64(uint64_t *state);

/** @return a standard normal deviate from the stream @p state. */
double bench_rng_normal(uint64_t *state);

/** Shape of a Fisher-like matrix F = G^T G / n. */
typedef struct bench_fisher_opts {
	size_t m;      /**< dimension of F */
	size_t n;      /**< rows of G, the samples (0 = m) */
	double sigma;  /**< column j of G is scaled by exp(N(0, sigma)) (default 1.5) */
	uint64_t seed; /**< random seed */
	int threads;   /**< BLIS threads for the product (0 = all online CPUs) */
} bench_fisher_opts;

/** Fills @p o with the defaults for an @p m x @p m matrix. */
void bench_fisher_opts_default(bench_fisher_opts *o, size_t m);

/**
 * Generates F = G^T G / n, where G is n x m with independent Gaussian rows
 * whose columns have log-normally varied scales, so entries span many
 * orders of magnitude as in real Fisher blocks. F is exactly symmetric,
 * row-major with leading dimension m, computed in float64 with bli_dgemm.
 * @param f64  m*m doubles, receives F.
 * @param f32  optional (NULL): m*m floats, receives F rounded to float32.
 * @return 0, PSPACE_EINVAL or PSPACE_ENOMEM.
 */
int bench_fisher_generate(const bench_fisher_opts *o, double *f64, float *f32);

/**
 * Puts every tile of a d x d dense matrix (only those with row <= col when
 * @p symmetric) through writer @p w, in streaming order. Tile (i, j) holds
 * tile (i mod k, j mod k) of the m x m float @p master, k = m / @p edge, so a
 * matrix of any size is built from one generated block; diagonal tiles stay
 * symmetric when the master is. Edge tiles are cut smaller.
 * @param f32_bytes  receives the logical f32 bytes of the tiles put.
 * @return 0, PSPACE_EINVAL (@p edge > m), or what pspace_writer_put_tile() returns.
 */
int bench_dense_put_tiles(pspace_writer *w, uint64_t d, uint32_t edge, int symmetric,
                          const float *master, size_t m, uint64_t *f32_bytes);

/**
 * Prints bench_info() lines describing a matrix made by
 * bench_fisher_generate() from @p o: how it was made and how many decades
 * its magnitudes span, overall and within 256 x 256 tiles.
 */
void bench_fisher_describe(FILE *f, const bench_fisher_opts *o, const float *f32);

/** Magnitude range of a rows x cols block (leading dimension @p ld). */
typedef struct bench_range {
	double absmin; /**< smallest nonzero |x| */
	double absmax; /**< largest |x| */
	size_t zeros;  /**< exact zeros */
} bench_range;

/** Scans a float block for its magnitude range. */
void bench_range_f32(const float *a, size_t rows, size_t cols, size_t ld, bench_range *out);

/**
 * GFLOP/s of BLIS sgemm (@p single) or dgemm on square n x n matrices with
 * @p threads threads (through an rntm_t passed to bli_?gemm_ex; BLIS's
 * global setting is not changed), median over at least 3 runs and
 * @p min_time seconds. @return 0 or PSPACE_ENOMEM.
 */
int bench_gemm_peak(int single, int threads, int n, double min_time, double *gflops);

#endif
