/*
 * `pspace eval`: shared between cmd_eval.c (options, inputs, outputs) and
 * eval_ops.c (one function per operation).
 */
#ifndef PSPACE_TOOLS_EVAL_H
#define PSPACE_TOOLS_EVAL_H

#include "cmd.h"
#include "json.h"

typedef struct eval_opts {
	const char *store, *expr, *op;
	const char *in, *out;
	int out_dtype; /* pspace_dtype */
	double damping;
	int ord; /* pspace_norm_ord */
	uint32_t k;
	uint32_t probes;
	uint32_t steps; /* logdet: SLQ Lanczos steps; 0: the library default */
	uint32_t count; /* sample: draws */
	int cov;        /* sample: from N(0, A + L I) instead of its inverse */
	uint64_t seed;
	double tol;        /* 0: the library default */
	uint32_t max_iter; /* 0: the library default */
	const char *precond;
	int method; /* pspace_solve_method */
	pspace_exec ex;
	int json;
} eval_opts;

typedef struct eval_ctx {
	const eval_opts *o;
	pspace_store *s;
	pspace_op *a;
	uint64_t d;
	json_writer w; /* with --json: the result object is open */
} eval_ctx;

/** What shapes an --in file may have. */
typedef enum eval_shape {
	EVAL_VEC = 1, /* (d,) */
	EVAL_MAT = 2, /* (k, d) */
	EVAL_VEC_OR_MAT = 3,
} eval_shape;

/** An input batch: k vectors of d values (a (k, d) array, or (d,) with k = 1). */
typedef struct eval_input {
	double *x;
	uint32_t k;
	int ndim;
} eval_input;

/**
 * Reads --in (required by @p op) into @p in, checking its shape against d.
 * @return EXIT_OK, EXIT_USAGE (missing --in) or EXIT_RUNTIME (message printed).
 */
int eval_read_input(const eval_ctx *c, eval_shape want, eval_input *in);

/**
 * Puts a result of @p k rows of d values (@p ndim 1: one vector of shape
 * (d,)): into --out as .npy when given, else as JSON member @p key or as
 * text on stdout. @return EXIT_OK or EXIT_RUNTIME.
 */
int eval_put_vectors(eval_ctx *c, const char *key, uint32_t k, int ndim, const double *y);

/** Prints @p n scalars, %.9g one per line, or as JSON member @p key (an array). */
void eval_put_scalars(eval_ctx *c, const char *key, size_t n, const double *v);

/** A library failure during @p what: "pspace: eval: <op> of '<expr>' on store S: ...". */
int eval_fail(const eval_ctx *c, int rc, const char *what);

int eval_mv(eval_ctx *c);
int eval_mm(eval_ctx *c);
int eval_vtmv(eval_ctx *c);
int eval_trace(eval_ctx *c);
int eval_diag(eval_ctx *c);
int eval_norm(eval_ctx *c);
int eval_solve(eval_ctx *c);
int eval_dense(eval_ctx *c);
int eval_eig(eval_ctx *c);
int eval_logdet(eval_ctx *c);
int eval_diaginv(eval_ctx *c);
int eval_sample(eval_ctx *c);

#endif
