/*
 * pspace demo, shared between its two files: cmd_demo.c (options, output)
 * and demo_run.c (the builds, the comparison against Dense, the images).
 */
#ifndef PSPACE_TOOLS_DEMO_H
#define PSPACE_TOOLS_DEMO_H

#include "opt.h"

/** The representations the demo builds, in table order. */
enum { DEMO_NREPS = 8 };

typedef struct demo_opts {
	const char *store;
	const char *out_dir; /* PNG directory */
	const char *model;   /* reference network spec */
	const char *mixed;   /* the Mixed representation's per-layer choice */
	tool_variant variant;
	uint64_t params, examples, seed;
	uint32_t vectors; /* random vectors of the comparison */
	uint32_t px;      /* image edge */
	int png, json;
	pspace_exec ex;
	char model_buf[96];
	char out_buf[4096];
} demo_opts;

/** One row of the table. */
typedef struct demo_rep {
	const char *label; /* "Dense", "KFAC", ... */
	const char *name;  /* matrix name in the store */
	const char *file;  /* image base name */
	pspace_kind kind;
	int from_layers; /* built from layer tensors (else from Jacobian rows) */
	/* results */
	int built;
	char note[160]; /* why it was skipped */
	uint64_t bytes;
	double build_s;
	double mv_err, vtmv_err, trace_err, trace;
	char png[4200];
} demo_rep;

/** What the run found, for the output. */
typedef struct demo_result {
	uint64_t d, n;
	uint32_t K;
	size_t nlayers;
	int out_of_core; /* d x d doubles exceed the budget */
	demo_rep reps[DEMO_NREPS];
} demo_result;

/**
 * Builds every representation into the store, compares each with Dense
 * on random vectors and writes the images. Prints its own errors naming
 * the store. @return EXIT_OK, EXIT_USAGE or EXIT_RUNTIME.
 */
int demo_run(const demo_opts *o, demo_result *res);

#endif
