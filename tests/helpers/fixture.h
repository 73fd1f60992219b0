/*
 * Test fixtures shared by the test programs: temporary directories and
 * stores (each test makes its own), one seeded generator (splitmix64),
 * running the pspace tool, and small file helpers. Every function asserts
 * (cmocka) on failure unless it says it returns an error.
 */
#ifndef PSPACE_TESTS_FIXTURE_H
#define PSPACE_TESTS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/store.h"

/* ---- temporary directories and stores ------------------------------------------- */

/**
 * Creates a fresh directory "/tmp/pspace-test-<tag>-XXXXXX" and writes its
 * name into @p root (@p cap bytes, at least 64).
 */
void fx_dir_make(char *root, size_t cap, const char *tag);

/** Removes @p root and everything below it. @return 0, or -1 if something stayed. */
int fx_dir_remove(const char *root);

/**
 * "@p root/<@p fmt, ...>" in one of 8 static buffers used in turn: the
 * result stays valid until the 8th call after this one.
 */
const char *fx_path(const char *root, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * cmocka group setup for a temporary directory shared by a program's
 * tests: makes it (tagged with the program's name); fx_group_dir() names
 * it until fx_group_teardown removes it. @return 0, or -1 (nothing made).
 */
int fx_group_setup(void **state);
/** cmocka group teardown: removes the fx_group_setup() directory. @return 0 or -1. */
int fx_group_teardown(void **state);
/** The directory of fx_group_setup(). */
const char *fx_group_dir(void);

/** A store "<root>/s" in its own temporary directory. */
typedef struct fx_store {
	char root[64];   /**< the temporary directory */
	char path[128];  /**< the store: root/s */
	pspace_store *s; /**< the open handle, NULL while closed */
} fx_store;

/** Makes the temporary directory (tagged @p tag) and path of @p t; opens nothing (s = NULL). */
void fx_store_dir(fx_store *t, const char *tag);

/** fx_store_dir() and opens the store (nosync: tests need no durability). */
void fx_store_open(fx_store *t, const char *tag);

/**
 * Closes the handle if open and opens the store at t->path again (a fresh
 * handle, as another process would see it).
 */
void fx_store_reopen(fx_store *t);

/** Closes the handle if open and removes the temporary directory. */
void fx_store_close(fx_store *t);

/* ---- seeded data -------------------------------------------------------------------- */

/** The next number of the splitmix64 stream whose state is @p *state. */
uint64_t fx_rng_u64(uint64_t *state);

/** Uniform in [-1, 1) from the top 53 bits of fx_rng_u64(). */
double fx_rng_unif(uint64_t *state);

/** Uniform in (0, 1) (never 0, never 1) from the top 53 bits of fx_rng_u64(). */
double fx_rng_open01(uint64_t *state);

/** Standard normal by Box-Muller from two fx_rng_open01() draws (in that order). */
double fx_rng_normal(uint64_t *state);

/** @p n numbers fx_rng_unif() from state @p seed (malloc'd, at least one slot; caller frees). */
double *fx_randv(size_t n, uint64_t seed);

/** Relative Frobenius error ||got - want|| / ||want|| (the absolute one when want = 0). */
double fx_relerr(const double *got, const double *want, size_t n);

/** Relative error of a scalar |got - want| / |want| (the absolute one when want = 0). */
double fx_relerr1(double got, double want);

/**
 * Asserts that @p rc is the error @p code and that the detail message
 * (pspace_errdetail) names @p path and contains @p substr (each when not
 * NULL), failing with the three of them otherwise.
 */
void fx_expect_err(int rc, int code, const char *path, const char *substr);

/* ---- the tool ----------------------------------------------------------------------- */

/**
 * Runs the pspace tool ($PSPACE_TOOL, set by ctest) with the arguments
 * @p fmt, ... (printf-style; a shell fragment appended to the quoted tool
 * path, so it may quote, redirect or pipe). Its stdout goes into @p out
 * (NUL-terminated, at most @p outcap - 1 bytes kept); its stderr into
 * @p err likewise, or, when @p err is NULL, into @p out together with
 * stdout (2>&1). Asserts that the command exited normally.
 * @return its exit status.
 */
int fx_run_tool(char *out, size_t outcap, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** Capacity of fx_out and fx_err. */
#define FX_OUT_CAP 65536

/** stdout and stderr of the last fx_cli() call, NUL-terminated. */
extern char fx_out[FX_OUT_CAP], fx_err[FX_OUT_CAP];

/**
 * fx_run_tool() with stdout into fx_out and stderr into fx_err (each
 * command a printf-style shell fragment, at most 2 KiB).
 * @return the exit status.
 */
int fx_cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Fails the test unless @p needle is in fx_out (the last stdout). */
void fx_expect_stdout(const char *needle);

/** Fails the test unless @p needle is in fx_err (the last stderr). */
void fx_expect_stderr(const char *needle);

/* ---- files -------------------------------------------------------------------------- */

/** Writes @p len bytes of @p buf to @p path (created or truncated). */
void fx_write_file(const char *path, const void *buf, size_t len);

/**
 * Flips a bit (0x40) of the middle byte of the first occurrence of the
 * @p n bytes @p needle in @p file, in place. Asserts there is one.
 * @return how many times @p needle occurs in the file (before the flip).
 */
unsigned fx_flip_in_file(const char *file, const void *needle, size_t n);

#endif
