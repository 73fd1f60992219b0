/*
 * pspace eval STORE EXPR OP: evaluates an expression over stored matrices
 * (expr_parse.c) with one operation (eval_ops.c); vectors in and out as
 * .npy, scalars on stdout.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "expr_parse.h"

static const char eval_help[] =
    "usage: pspace eval STORE EXPR OP [--in X.npy] [--out Y.npy] [options]\n"
    "\n"
    "Evaluates OP on the expression EXPR over the matrices of STORE, lazily:\n"
    "each stored matrix is streamed once per evaluation.\n"
    "\n"
    "EXPR: stored matrix names, numbers (C syntax: 2, .5, 1e-3), I (the identity of\n"
    "the operands' dimension), + - * / and parentheses, e.g. \"2*F - G + 1e-3*I\".\n"
    "number * M scales, M * N is the product, M / number scales; names with other\n"
    "characters than [A-Za-z0-9_.:/] go in double quotes.\n"
    "\n"
    "OP (vectors are .npy files of float32/float64, C order; d = dimension):\n"
    "  mv      y = A x          --in x of shape (d,), --out y (d,)\n"
    "  mm      Y[j] = A X[j]    --in X of shape (k, d), --out Y (k, d), one pass\n"
    "  vtmv    v^T A v          --in v (d,): one value; (k, d): k values\n"
    "  trace   trace(A)         exact, or a Hutchinson estimate (with its standard\n"
    "                           error) when A has products or inverses\n"
    "  diag    diag(A)          --out (d,)\n"
    "  norm    ||A||            --ord fro (default) | 2 | -2 (Lanczos)\n"
    "  solve   x = (A + L I)^-1 b   --in b (d,) or (k, d), --out x; direct when A\n"
    "                           has one, else conjugate gradient (prints iterations\n"
    "                           and the relative residual)\n"
    "  dense   A as a d x d array   --out; refused when above --mem\n"
    "  eig     top-k eigenvalues    --k K (default 1); --out: eigenvectors (k, d)\n"
    "\n"
    "Without --out a vector result is printed, one value a line.\n"
    "\n"
    "Options:\n"
    "  --in FILE          input vector(s), .npy\n"
    "  --out FILE         output .npy (f64; --out-dtype f32 for float32)\n"
    "  --out-dtype T      f64 (default) or f32\n"
    "  --damping L        solve: damping L >= 0 (default 0)\n"
    "  --ord O            norm: fro, 2 or -2\n"
    "  --k K              eig: number of eigenpairs\n"
    "  --probes P         trace: Hutchinson probes (default 64)\n"
    "  --seed S           trace, eig, norm: random seed (default 1)\n"
    "  --tol T            solve: CG relative residual (default 1e-6); eig, norm:\n"
    "                     Lanczos tolerance (default 1e-8)\n"
    "  --maxiter N        solve: CG iterations (default 1000); eig, norm: Lanczos steps\n"
    "  --precond EXPR     solve: CG preconditioner P, applied as (P + L I)^-1 by P's\n"
    "                     direct solve (e.g. a stored KFAC: --precond K)\n"
    "  --method M         solve: auto (default), direct or cg\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --mem SIZE         memory budget, e.g. 512M, 4G (default 1G)\n"
    "  --json             results as one JSON object on stdout\n"
    "\n"
    "Scalars print with 9 significant digits. Exit status: 0, 1 runtime error,\n"
    "2 usage error (including syntax errors in EXPR, with their column).\n";

static const struct {
	const char *name;
	int (*run)(eval_ctx *c);
} eval_ops[] = {
    {"mv", eval_mv},       {"mm", eval_mm},       {"vtmv", eval_vtmv},
    {"trace", eval_trace}, {"diag", eval_diag},   {"norm", eval_norm},
    {"solve", eval_solve}, {"dense", eval_dense}, {"eig", eval_eig},
};

#define NOPS (sizeof(eval_ops) / sizeof(eval_ops[0]))

static int parse_double(const char *opt, const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(*out))
		return tool_usage_error("eval", "eval: %s needs a number, not '%s'", opt, s);
	return EXIT_OK;
}

static int parse_u32(const char *opt, const char *s, uint32_t min, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || s[0] == '-' || v < min || v > UINT32_MAX)
		return tool_usage_error("eval", "eval: %s needs an integer >= %u, not '%s'", opt,
		                        (unsigned)min, s);
	*out = (uint32_t)v;
	return EXIT_OK;
}

/* Options that take a value; @return EXIT_OK, EXIT_USAGE, or -1 if unknown. */
static int parse_valued(eval_opts *o, const char *a, const char *v)
{
	uint32_t u = 0;
	uint64_t z = 0;
	double x;
	int rc;

	if (strcmp(a, "--in") == 0) {
		o->in = v;
	} else if (strcmp(a, "--out") == 0) {
		o->out = v;
	} else if (strcmp(a, "--out-dtype") == 0) {
		if (strcmp(v, "f64") && strcmp(v, "f32"))
			return tool_usage_error("eval", "eval: --out-dtype is f64 or f32, not '%s'",
			                        v);
		o->out_dtype = strcmp(v, "f32") == 0 ? PSPACE_F32 : PSPACE_F64;
	} else if (strcmp(a, "--damping") == 0) {
		if ((rc = parse_double(a, v, &o->damping)))
			return rc;
		if (o->damping < 0)
			return tool_usage_error("eval", "eval: --damping must be >= 0");
	} else if (strcmp(a, "--ord") == 0) {
		if (strcmp(v, "fro") == 0)
			o->ord = PSPACE_NORM_FRO;
		else if (strcmp(v, "2") == 0)
			o->ord = PSPACE_NORM_2;
		else if (strcmp(v, "-2") == 0)
			o->ord = PSPACE_NORM_MINUS2;
		else
			return tool_usage_error("eval", "eval: --ord is fro, 2 or -2, not '%s'", v);
	} else if (strcmp(a, "--k") == 0) {
		return parse_u32(a, v, 1, &o->k);
	} else if (strcmp(a, "--probes") == 0) {
		return parse_u32(a, v, 2, &o->probes);
	} else if (strcmp(a, "--maxiter") == 0) {
		return parse_u32(a, v, 1, &o->max_iter);
	} else if (strcmp(a, "--seed") == 0) {
		if ((rc = parse_u32(a, v, 0, &u)))
			return rc;
		o->seed = u;
	} else if (strcmp(a, "--tol") == 0) {
		if ((rc = parse_double(a, v, &x)))
			return rc;
		if (x <= 0)
			return tool_usage_error("eval", "eval: --tol must be > 0");
		o->tol = x;
	} else if (strcmp(a, "--precond") == 0) {
		o->precond = v;
	} else if (strcmp(a, "--method") == 0) {
		if (strcmp(v, "auto") == 0)
			o->method = PSPACE_SOLVE_AUTO;
		else if (strcmp(v, "direct") == 0)
			o->method = PSPACE_SOLVE_DIRECT;
		else if (strcmp(v, "cg") == 0)
			o->method = PSPACE_SOLVE_CG;
		else
			return tool_usage_error(
			    "eval", "eval: --method is auto, direct or cg, not '%s'", v);
	} else if (strcmp(a, "--threads") == 0) {
		if ((rc = parse_u32(a, v, 0, &u)))
			return rc;
		o->ex.threads = (int)u;
	} else if (strcmp(a, "--mem") == 0) {
		if (tool_parse_size(v, &z) != 0 || z == 0)
			return tool_usage_error("eval",
			                        "eval: --mem needs a size like 512M or 4G, not "
			                        "'%s'",
			                        v);
		o->ex.mem_budget = (size_t)z;
	} else {
		return -1;
	}
	return EXIT_OK;
}

/* @return EXIT_OK, EXIT_USAGE, or -1 after --help. */
static int parse(int argc, char **argv, eval_opts *o)
{
	const char **pos[3] = {&o->store, &o->expr, &o->op};
	int npos = 0, rc, only_pos = 0;

	memset(o, 0, sizeof(*o));
	o->out_dtype = PSPACE_F64;
	o->k = 1;
	o->seed = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		/* An EXPR may start with '-' ("-F + G"): options are "--x" and -h. */
		if (only_pos || !(strncmp(a, "--", 2) == 0 || strcmp(a, "-h") == 0)) {
			if (npos == 3)
				return tool_usage_error("eval", "eval: unexpected argument '%s'",
				                        a);
			*pos[npos++] = a;
			continue;
		}
		if (tool_is_help(a)) {
			fputs(eval_help, stdout);
			return -1;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = 1;
		} else if (strcmp(a, "--json") == 0) {
			o->json = 1;
		} else if (i + 1 >= argc) {
			if (parse_valued(o, a, "") < 0)
				return tool_usage_error("eval", "eval: unknown option '%s'", a);
			return tool_usage_error("eval", "eval: %s needs a value", a);
		} else {
			rc = parse_valued(o, a, argv[i + 1]);
			if (rc < 0)
				return tool_usage_error("eval", "eval: unknown option '%s'", a);
			if (rc)
				return rc;
			i++;
		}
	}
	if (npos < 3)
		return tool_usage_error("eval",
		                        "eval: missing %s (usage: pspace eval STORE EXPR OP)",
		                        npos == 0   ? "STORE"
		                        : npos == 1 ? "EXPR"
		                                    : "OP");
	return EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
	pspace_store_opts so;
	eval_opts o;
	eval_ctx c;
	size_t op;
	char desc[512];
	char *jbuf = NULL;
	size_t jlen = 0;
	FILE *jf = NULL;
	int rc;

	rc = parse(argc, argv, &o);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	for (op = 0; op < NOPS; op++)
		if (strcmp(o.op, eval_ops[op].name) == 0)
			break;
	if (op == NOPS)
		return tool_usage_error("eval",
		                        "eval: unknown operation '%s' (mv, mm, vtmv, trace, diag, "
		                        "norm, solve, dense, eig)",
		                        o.op);
	memset(&c, 0, sizeof(c));
	c.o = &o;
	pspace_store_opts_default(&so);
	so.readonly = 1;
	so.create = 0;
	rc = pspace_store_open(&c.s, o.store, &so);
	if (rc)
		return tool_fail(rc, "eval: cannot open store %s", o.store);
	rc = expr_build("eval", o.expr, c.s, &c.a);
	if (rc)
		goto out;
	c.d = pspace_op_dim(c.a);
	if (o.json) {
		/* kept in memory, so that a failure leaves no partial JSON on stdout */
		jf = open_memstream(&jbuf, &jlen);
		if (!jf) {
			rc = tool_fail(PSPACE_ENOMEM, "eval: JSON output");
			goto out;
		}
		pspace_op_describe(c.a, desc, sizeof(desc));
		json_init(&c.w, jf, 0);
		json_begin_object(&c.w);
		json_kv_string(&c.w, "store", o.store);
		json_kv_string(&c.w, "expression", o.expr);
		json_kv_string(&c.w, "folded", desc);
		json_kv_string(&c.w, "op", o.op);
		json_kv_uint(&c.w, "d", c.d);
	}
	rc = eval_ops[op].run(&c);
	if (o.json && rc == EXIT_OK) {
		json_end_object(&c.w);
		if (json_finish(&c.w) != 0 || fflush(jf) != 0 ||
		    fwrite(jbuf, 1, jlen, stdout) != jlen || fflush(stdout) != 0)
			rc = tool_fail(PSPACE_EIO, "eval: writing the JSON output");
	}
out:
	if (jf)
		fclose(jf);
	free(jbuf);
	pspace_op_free(c.a);
	pspace_store_close(c.s);
	return rc;
}
