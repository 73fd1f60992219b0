/*
 * Internal: choosing the BLIS kernel set by measurement, and the per-CPU
 * cache of the result.
 *
 * BLIS fixes its kernel set at its first initialization in a process, so
 * each candidate is timed in a short-lived forked child that sets
 * $BLIS_ARCH_TYPE, initializes BLIS single-threaded, times sgemm and dgemm
 * and writes the times to a pipe. The caller must not have initialized
 * BLIS yet.
 */
#ifndef PSPACE_SRC_COMMON_BLIS_CALIB_H
#define PSPACE_SRC_COMMON_BLIS_CALIB_H

#include <stddef.h>

#include "common/blis_arch.h"

/** The times of each candidate kernel set and the winner. */
typedef struct pspace_blis_calib {
	int n;                                        /* candidates */
	const char *name[PSPACE_BLIS_MAX_CANDIDATES]; /* static names */
	double ts[PSPACE_BLIS_MAX_CANDIDATES];        /* best sgemm seconds, <= 0 = failed */
	double td[PSPACE_BLIS_MAX_CANDIDATES];        /* best dgemm seconds, <= 0 = failed */
	int best;                                     /* index of the winner, -1 = none */
	double seconds;                               /* wall time of the whole calibration */
} pspace_blis_calib;

/**
 * Times each of the @p n kernel sets @p names (n <= PSPACE_BLIS_MAX_CANDIDATES)
 * in forked children (one at a time, a few interleaved rounds, the best
 * time of each counting) and sets c->best to the one with the smallest
 * geometric mean of its sgemm and dgemm times. A candidate whose child
 * fails, crashes or hangs (killed after a timeout) is left out.
 * @return 0, or a negative PSPACE_E* code with a one-line reason in @p why
 * (fork or pipe failed, BLIS already initialized, no candidate measured).
 */
int pspace_blis_calibrate(pspace_blis_calib *c, const char *const *names, int n, char *why,
                          size_t whycap);

/**
 * Writes into @p out the cache file of this CPU and BLIS version:
 * "$PSPACE_CACHE_DIR/", "$XDG_CACHE_HOME/pspace/" or "$HOME/.cache/pspace/"
 * followed by "blis-<version>-<vendor>-<family>-<model>-<features>" (hex).
 * @return 0, or -1 when no directory is known or the path does not fit.
 */
int pspace_blis_cache_path(char *out, size_t cap, const pspace_cpu *cpu, const char *version);

/**
 * Reads the cache file @p path into @p c, accepting it only if it was
 * written for @p cpu and @p version, every name in it is one of the @p n
 * @p names and its choice is the fastest of its times.
 * @return 0, or -1 (absent, unreadable or garbled: calibrate again).
 */
int pspace_blis_cache_read(pspace_blis_calib *c, const char *path, const pspace_cpu *cpu,
                           const char *version, const char *const *names, int n);

/**
 * Writes @p c to @p path atomically (a temporary file in the same
 * directory, then rename), creating the directory (and its parent) if
 * needed. @return 0, or -1 with a reason in @p why.
 */
int pspace_blis_cache_write(const pspace_blis_calib *c, const char *path, const pspace_cpu *cpu,
                            const char *version, char *why, size_t whycap);

/**
 * Describes the outcome as "skx 1.00, haswell 1.58x slower, ..." (the
 * winner first, then by speed) into @p out.
 */
void pspace_blis_calib_describe(char *out, size_t cap, const pspace_blis_calib *c);

#endif
