/*
 * pspace eval: the operations (mv, mm, vtmv, trace, diag, norm, solve,
 * dense, eig, logdet, diaginv, sample) and their .npy inputs and outputs.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "expr_parse.h"
#include "par.h"

/* ---- inputs and outputs ------------------------------------------------------------ */

static const char *shape_str(const pspace_npy_info *in, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "(");

	for (int i = 0; i < in->ndim && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "",
		                      (unsigned long long)in->shape[i]);
	if (n < cap)
		snprintf(buf + n, cap - n, "%s)", in->ndim == 1 ? "," : "");
	return buf;
}

static int read_local(const eval_ctx *c, eval_shape want, eval_input *in)
{
	const char *path = c->o->in;
	pspace_npy_info info;
	pspace_npy *f = NULL;
	unsigned long long d = (unsigned long long)c->d;
	char shape[128], expect[96];
	int rc = EXIT_OK, lrc;

	memset(in, 0, sizeof(*in));
	if (!path)
		return tool_usage_error("eval", "eval: %s needs --in FILE.npy", c->o->op);
	lrc = pspace_npy_open(&f, path);
	if (lrc)
		return tool_fail(lrc, "eval: cannot read --in %s", path);
	pspace_npy_info_get(&info, f);
	if (info.ndim == 1 && info.shape[0] == c->d && (want & EVAL_VEC)) {
		in->k = 1;
	} else if (info.ndim == 2 && info.shape[1] == c->d && info.shape[0] >= 1 &&
	           info.shape[0] <= UINT32_MAX && (want & EVAL_MAT)) {
		in->k = (uint32_t)info.shape[0];
	} else {
		if (want == EVAL_VEC)
			snprintf(expect, sizeof(expect), "(%llu,)", d);
		else if (want == EVAL_MAT)
			snprintf(expect, sizeof(expect), "(k, %llu)", d);
		else
			snprintf(expect, sizeof(expect), "(%llu,) or (k, %llu)", d, d);
		fprintf(stderr, "pspace: eval: %s has shape %s, expected %s for d = %llu\n", path,
		        shape_str(&info, shape, sizeof(shape)), expect, d);
		rc = EXIT_RUNTIME;
		goto out;
	}
	in->ndim = info.ndim;
	in->x = malloc((size_t)in->k * (size_t)c->d * sizeof(double));
	if (!in->x) {
		rc = tool_fail(PSPACE_ENOMEM, "eval: reading %s", path);
		goto out;
	}
	lrc = pspace_npy_read(f, 0, info.count, in->x);
	if (lrc) {
		rc = tool_fail(lrc, "eval: cannot read --in %s", path);
		goto out;
	}
	for (uint64_t i = 0; i < info.count; i++)
		if (!isfinite(in->x[i])) {
			fprintf(
			    stderr,
			    "pspace: eval: --in %s: element %llu is %g (inputs must be finite)\n",
			    path, (unsigned long long)i, in->x[i]);
			rc = EXIT_RUNTIME;
			break;
		}
out:
	if (rc) {
		free(in->x);
		in->x = NULL;
	}
	pspace_npy_close(f);
	return rc;
}

/* Under mpirun, rank 0 reads --in and broadcasts it. */
int eval_read_input(const eval_ctx *c, eval_shape want, eval_input *in)
{
	int32_t head[3] = {0, 0, 0};
	int rc = EXIT_OK, lrc;

	if (!tool_par_active())
		return read_local(c, want, in);
	memset(in, 0, sizeof(*in));
	if (!c->o->in)
		return tool_usage_error("eval", "eval: %s needs --in FILE.npy", c->o->op);
	if (tool_par_rank() == 0)
		rc = read_local(c, want, in);
	head[0] = rc;
	head[1] = (int32_t)in->k;
	head[2] = in->ndim;
	lrc = tool_par_bcast(c->s, head, sizeof(head));
	if (lrc == 0 && head[0] != EXIT_OK)
		return head[0];
	if (lrc == 0 && tool_par_rank() != 0) {
		in->k = (uint32_t)head[1];
		in->ndim = head[2];
		in->x = malloc((size_t)in->k * (size_t)c->d * sizeof(double) + 1);
	}
	lrc = tool_par_agree(c->s, lrc == 0 && !in->x ? PSPACE_ENOMEM : lrc);
	if (lrc == 0)
		lrc = tool_par_bcast(c->s, in->x, (size_t)in->k * (size_t)c->d * sizeof(double));
	if (lrc) {
		free(in->x);
		in->x = NULL;
		return tool_fail(lrc, "eval: --in %s", c->o->in);
	}
	return EXIT_OK;
}

int eval_put_vectors(eval_ctx *c, const char *key, uint32_t k, int ndim, const double *y)
{
	const eval_opts *o = c->o;
	uint64_t shape[2] = {k, c->d};
	int rc;

	/* every rank has the result: rank 0 alone writes it */
	if (tool_par_rank() != 0)
		return EXIT_OK;

	for (size_t i = 0; i < (size_t)k * c->d; i++)
		if (!isfinite(y[i])) {
			fprintf(
			    stderr,
			    "pspace: eval: %s: result element %zu is %g (the matrices or inputs "
			    "exceed double range)\n",
			    o->op, i, y[i]);
			return EXIT_RUNTIME;
		}
	if (o->out) {
		rc = ndim == 1 ? pspace_npy_write(o->out, o->out_dtype, 1, shape + 1, y)
		               : pspace_npy_write(o->out, o->out_dtype, 2, shape, y);
		if (rc)
			return tool_fail(rc, "eval: cannot write --out %s", o->out);
		if (o->json)
			json_kv_string(&c->w, "out", o->out);
		return EXIT_OK;
	}
	if (o->json) {
		json_key(&c->w, key);
		if (ndim == 2)
			json_begin_array(&c->w);
		for (uint32_t j = 0; j < k; j++) {
			json_begin_array(&c->w);
			for (uint64_t i = 0; i < c->d; i++)
				json_number(&c->w, y[(size_t)j * c->d + i]);
			json_end_array(&c->w);
		}
		if (ndim == 2)
			json_end_array(&c->w);
		return EXIT_OK;
	}
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < c->d; i++)
			printf("%.9g%c", y[(size_t)j * c->d + i],
			       ndim == 1 || i + 1 == c->d ? '\n' : ' ');
	return EXIT_OK;
}

void eval_put_scalars(eval_ctx *c, const char *key, size_t n, const double *v)
{
	if (!c->o->json) {
		for (size_t i = 0; i < n; i++)
			printf("%.9g\n", v[i]);
		return;
	}
	json_key(&c->w, key);
	json_begin_array(&c->w);
	for (size_t i = 0; i < n; i++)
		json_number(&c->w, v[i]);
	json_end_array(&c->w);
}

/* How a result was computed, on stderr: "pspace: eval: <op>: <how>" (text output only; with
 * --json it is in the object). */
static void note(const eval_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const eval_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->o->json)
		return;
	fflush(stdout); /* after the result, when both streams go to one place */
	fprintf(stderr, "pspace: eval: %s: ", c->o->op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int eval_fail(const eval_ctx *c, int rc, const char *what)
{
	return tool_fail(rc, "eval: %s of '%s' on store %s", what, c->o->expr, c->o->store);
}

static double *alloc_vectors(uint64_t k, uint64_t d)
{
	return malloc((size_t)(k * d) * sizeof(double));
}

/* ---- the operations ------------------------------------------------------------------ */

/* mv and mm: one pass with k right-hand sides. */
static int products(eval_ctx *c, eval_shape want)
{
	eval_input in;
	double *y = NULL;
	int rc = eval_read_input(c, want, &in), lrc;

	if (rc)
		return rc;
	y = alloc_vectors(in.k, c->d);
	if (!y) {
		rc = tool_fail(PSPACE_ENOMEM, "eval: %s", c->o->op);
		goto out;
	}
	lrc = pspace_op_mm(c->a, &c->o->ex, in.k, 1.0, in.x, c->d, 0.0, y, c->d);
	rc = lrc ? eval_fail(c, lrc, c->o->op) : eval_put_vectors(c, "y", in.k, in.ndim, y);
out:
	free(y);
	free(in.x);
	return rc;
}

int eval_mv(eval_ctx *c)
{
	return products(c, EVAL_VEC);
}

int eval_mm(eval_ctx *c)
{
	return products(c, EVAL_MAT);
}

int eval_vtmv(eval_ctx *c)
{
	eval_input in;
	double *v = NULL;
	int rc = eval_read_input(c, EVAL_VEC_OR_MAT, &in), lrc;

	if (rc)
		return rc;
	v = malloc(in.k * sizeof(double));
	if (!v) {
		rc = tool_fail(PSPACE_ENOMEM, "eval: vtmv");
		goto out;
	}
	lrc = pspace_op_vtmv_batch(c->a, &c->o->ex, in.k, in.x, c->d, v);
	if (lrc)
		rc = eval_fail(c, lrc, "vtmv");
	else
		eval_put_scalars(c, "values", in.k, v);
out:
	free(v);
	free(in.x);
	return rc;
}

/*
 * How an exact-or-estimated result was had: the JSON fields, or a note on
 * stderr ("exact", or the estimator @p how, its probes and @p se_what).
 */
static void how_had(eval_ctx *c, int exact, const char *method, const char *how, uint32_t probes,
                    const char *se_what, double se)
{
	if (c->o->json) {
		json_kv_string(&c->w, "method", exact ? "exact" : method);
		json_kv_bool(&c->w, "exact", exact);
		json_kv_number(&c->w, "stderr", exact ? 0.0 : se);
		json_kv_uint(&c->w, "probes", exact ? 0 : probes);
	} else if (exact) {
		note(c, "exact");
	} else {
		note(c, "estimated (%s, %u probes), %s %.9g", how, (unsigned)probes, se_what, se);
	}
}

int eval_trace(eval_ctx *c)
{
	pspace_trace_opts t;
	double v;
	int lrc;

	memset(&t, 0, sizeof(t));
	t.probes = c->o->probes ? c->o->probes : 64;
	t.seed = c->o->seed;
	lrc = pspace_op_trace(c->a, &c->o->ex, &t, &v);
	if (lrc)
		return eval_fail(c, lrc, "trace");
	if (c->o->json)
		json_kv_number(&c->w, "trace", v);
	else
		printf("%.9g\n", v);
	how_had(c, t.exact, "hutchinson", "Hutchinson", t.probes, "standard error", t.stderr_);
	return EXIT_OK;
}

int eval_diag(eval_ctx *c)
{
	double *y = alloc_vectors(1, c->d);
	int rc, lrc;

	if (!y)
		return tool_fail(PSPACE_ENOMEM, "eval: diag");
	lrc = pspace_op_diag(c->a, &c->o->ex, y);
	rc = lrc ? eval_fail(c, lrc, "diag") : eval_put_vectors(c, "diag", 1, 1, y);
	free(y);
	return rc;
}

static void eig_opts(const eval_ctx *c, pspace_eig_opts *e)
{
	memset(e, 0, sizeof(*e));
	e->max_iter = c->o->max_iter;
	e->tol = c->o->tol;
	e->seed = c->o->seed;
}

int eval_norm(eval_ctx *c)
{
	static const char *names[] = {"fro", "2", "-2"};
	pspace_eig_opts e;
	double v;
	int lrc;

	eig_opts(c, &e);
	lrc = pspace_op_norm(c->a, &c->o->ex, c->o->ord, &e, &v);
	if (lrc)
		return eval_fail(c, lrc, "norm");
	if (c->o->json) {
		json_kv_string(&c->w, "ord",
		               names[c->o->ord == PSPACE_NORM_FRO ? 0
		                     : c->o->ord == PSPACE_NORM_2 ? 1
		                                                  : 2]);
		json_kv_number(&c->w, "norm", v);
		json_kv_string(&c->w, "method", c->o->ord == PSPACE_NORM_FRO ? "exact" : "lanczos");
		if (c->o->ord != PSPACE_NORM_FRO)
			json_kv_uint(&c->w, "iterations", e.iterations);
		return EXIT_OK;
	}
	printf("%.9g\n", v);
	if (c->o->ord == PSPACE_NORM_FRO)
		note(c, "exact");
	else
		note(c, "Lanczos, %u steps", (unsigned)e.iterations);
	return EXIT_OK;
}

int eval_solve(eval_ctx *c)
{
	const eval_opts *o = c->o;
	pspace_solve_opts so;
	eval_input in;
	double *x = NULL;
	int rc, lrc, cg;

	pspace_solve_opts_default(&so);
	so.method = o->method;
	if (o->tol > 0)
		so.tol = o->tol;
	if (o->max_iter)
		so.max_iter = o->max_iter;
	if (o->precond) {
		rc = expr_build("eval", o->precond, c->s, &so.precond);
		if (rc)
			return rc;
	}
	rc = eval_read_input(c, EVAL_VEC_OR_MAT, &in);
	if (rc)
		goto out;
	x = alloc_vectors(in.k, c->d);
	if (!x) {
		rc = tool_fail(PSPACE_ENOMEM, "eval: solve");
		goto out;
	}
	lrc = pspace_op_solve(c->a, &o->ex, o->damping, in.k, in.x, c->d, &so, x, c->d);
	if (lrc) {
		rc = eval_fail(c, lrc, "solve");
		goto out;
	}
	cg = so.iterations > 0 || o->method == PSPACE_SOLVE_CG;
	rc = eval_put_vectors(c, "x", in.k, in.ndim, x);
	if (rc)
		goto out;
	if (o->json) {
		json_kv_string(&c->w, "method", cg ? "cg" : "direct");
		json_kv_number(&c->w, "damping", o->damping);
		if (cg) {
			json_kv_uint(&c->w, "iterations", so.iterations);
			json_kv_number(&c->w, "residual", so.residual);
		}
	} else if (cg) {
		note(c, "cg, %u iterations, relative residual %.3g", (unsigned)so.iterations,
		     so.residual);
	} else {
		note(c, "direct");
	}
out:
	free(x);
	free(in.x);
	pspace_op_free(so.precond);
	return rc;
}

int eval_dense(eval_ctx *c)
{
	uint64_t budget = c->o->ex.mem_budget ? c->o->ex.mem_budget : (uint64_t)1 << 30;
	double need = (double)c->d * (double)c->d * sizeof(double);
	double *y;
	char b1[32], b2[32];
	int rc, lrc;

	if (!c->o->out)
		return tool_usage_error("eval", "eval: dense needs --out FILE.npy");
	if (need > (double)budget) {
		fprintf(stderr,
		        "pspace: eval: dense: the %llu x %llu matrix '%s' takes %s, more than the "
		        "memory budget of %s (--mem)\n",
		        (unsigned long long)c->d, (unsigned long long)c->d, c->o->expr,
		        tool_fmt_bytes((uint64_t)need, b1, sizeof(b1)),
		        tool_fmt_bytes(budget, b2, sizeof(b2)));
		return EXIT_RUNTIME;
	}
	y = alloc_vectors(c->d, c->d);
	if (!y)
		return tool_fail(PSPACE_ENOMEM, "eval: dense");
	lrc = pspace_op_dense(c->a, &c->o->ex, y, c->d);
	rc = lrc ? eval_fail(c, lrc, "dense") : eval_put_vectors(c, "dense", (uint32_t)c->d, 2, y);
	free(y);
	return rc;
}

int eval_eig(eval_ctx *c)
{
	uint32_t k = c->o->k;
	pspace_eig_opts e;
	double *ev = NULL, *vecs = NULL;
	int rc = EXIT_OK, lrc;

	if (k > c->d)
		return tool_usage_error("eval", "eval: --k %u is above d = %llu", (unsigned)k,
		                        (unsigned long long)c->d);
	eig_opts(c, &e);
	ev = malloc(k * sizeof(double));
	if (c->o->out)
		vecs = alloc_vectors(k, c->d);
	if (!ev || (c->o->out && !vecs)) {
		rc = tool_fail(PSPACE_ENOMEM, "eval: eig");
		goto out;
	}
	lrc = pspace_op_eig(c->a, &c->o->ex, k, &e, ev, vecs, c->d);
	if (lrc) {
		rc = eval_fail(c, lrc, "eig");
		goto out;
	}
	eval_put_scalars(c, "eigenvalues", k, ev);
	if (c->o->json) {
		json_kv_string(&c->w, "method", "lanczos");
		json_kv_uint(&c->w, "iterations", e.iterations);
	}
	note(c, "Lanczos, %u steps", (unsigned)e.iterations);
	if (vecs)
		rc = eval_put_vectors(c, "eigenvectors", k, 2, vecs);
out:
	free(vecs);
	free(ev);
	return rc;
}

/* ---- log det, diagonal of the inverse, samples ------------------------------------------ */

static void est_opts(const eval_ctx *c, pspace_est_opts *e)
{
	memset(e, 0, sizeof(*e));
	e->probes = c->o->probes ? c->o->probes : 64;
	e->steps = c->o->steps;
	e->seed = c->o->seed;
	if (c->o->tol > 0)
		e->tol = c->o->tol;
}

int eval_logdet(eval_ctx *c)
{
	pspace_est_opts e;
	double v;
	int lrc;

	est_opts(c, &e);
	lrc = pspace_op_logdet(&v, c->a, &c->o->ex, c->o->damping, &e);
	if (lrc)
		return eval_fail(c, lrc, "logdet");
	if (c->o->json) {
		json_kv_number(&c->w, "logdet", v);
		json_kv_number(&c->w, "damping", c->o->damping);
	} else {
		printf("%.9g\n", v);
	}
	how_had(c, e.exact, "slq", "stochastic Lanczos quadrature", e.probes, "standard error",
	        e.stderr_);
	return EXIT_OK;
}

int eval_diaginv(eval_ctx *c)
{
	pspace_est_opts e;
	double *y = alloc_vectors(1, c->d);
	int rc, lrc;

	if (!y)
		return tool_fail(PSPACE_ENOMEM, "eval: diaginv");
	est_opts(c, &e);
	lrc = pspace_op_diaginv(y, NULL, c->a, &c->o->ex, c->o->damping, &e);
	rc = lrc ? eval_fail(c, lrc, "diaginv") : eval_put_vectors(c, "diaginv", 1, 1, y);
	free(y);
	if (rc)
		return rc;
	if (c->o->json)
		json_kv_number(&c->w, "damping", c->o->damping);
	how_had(c, e.exact, "hutchinson", "Hutchinson diagonal over solves", e.probes,
	        "largest standard error", e.stderr_);
	return EXIT_OK;
}

int eval_sample(eval_ctx *c)
{
	pspace_sample_opts so = {c->o->seed, c->o->cov};
	uint32_t n = c->o->count;
	double *x = alloc_vectors(n, c->d);
	int rc, lrc;

	if (!x)
		return tool_fail(PSPACE_ENOMEM, "eval: sample: %u draws of %llu", (unsigned)n,
		                 (unsigned long long)c->d);
	lrc = pspace_op_sample(x, c->d, c->a, &c->o->ex, c->o->damping, n, &so);
	rc = lrc ? eval_fail(c, lrc, "sample") : eval_put_vectors(c, "samples", n, 2, x);
	free(x);
	if (rc)
		return rc;
	if (c->o->json) {
		json_kv_number(&c->w, "damping", c->o->damping);
		json_kv_string(&c->w, "distribution",
		               c->o->cov ? "N(0, A + L I)" : "N(0, (A + L I)^-1)");
		json_kv_uint(&c->w, "count", n);
	} else {
		note(c, "exact, %u draws from %s", (unsigned)n,
		     c->o->cov ? "N(0, A + L I)" : "N(0, (A + L I)^-1)");
	}
	return EXIT_OK;
}
