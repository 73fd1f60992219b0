/*
 * pspace eval STORE EXPR OP: evaluates an expression over stored matrices
 * (expr_parse.c) with one operation (eval_ops.c); vectors in and out as
 * .npy, scalars on stdout.
 */
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "expr_parse.h"
#include "opt.h"
#include "par.h"

static const tool_cmd_doc eval_doc = {
    "eval",
    "Evaluates OP on the expression EXPR over the matrices of STORE, lazily:\n"
    "each stored matrix is streamed once per evaluation.\n"
    "\n"
    "EXPR: stored matrix names, numbers (C syntax: 2, .5, 1e-3), I (the identity of\n"
    "the operands' dimension), + - * / ^-1 and parentheses, e.g. \"2*F - G + 1e-3*I\"\n"
    "or \"(F + 0.1*I)^-1 * G\". number * M scales, M * N is the product, M / number\n"
    "scales, M^-1 is the inverse (applied by solving); names with other characters\n"
    "than [A-Za-z0-9_.:/] go in double quotes. A name with '/' is the longest stored\n"
    "matrix it starts with (\"F/fc1\", a Mixed part), else a division (F/2). An EXPR\n"
    "starting with '--' goes after '--'. Numbers and results must be finite; at most\n"
    "1000 numbers and names and 100 nested parentheses and signs.\n"
    "\n"
    "OP (vectors are .npy files of float32/float64, C order; d = dimension):\n"
    "  mv      y = A x          --in x of shape (d,), --out y (d,)\n"
    "  mm      Y[j] = A X[j]    --in X of shape (k, d), --out Y (k, d), one pass\n"
    "  vtmv    v^T A v          --in v (d,): one value; (k, d): k values\n"
    "  trace   trace(A)         exact, or a Hutchinson estimate when A has products\n"
    "                           or inverses (its standard error on stderr)\n"
    "  diag    diag(A)          --out (d,)\n"
    "  norm    ||A||            --ord fro (default) | 2 | -2 (Lanczos)\n"
    "  solve   x = (A + L I)^-1 b   --in b (d,) or (k, d), --out x; direct when A\n"
    "                           has one, else conjugate gradient (iterations and\n"
    "                           the relative residual on stderr)\n"
    "  dense   A as a d x d array   --out; refused when above --mem\n"
    "  eig     top-k eigenvalues    --k K (default 1); --out: eigenvectors (k, d)\n"
    "  logdet  log det(A + L I)     exact where A is one matrix c*M + s*I whose kind\n"
    "                           has it (README, Representations), else stochastic\n"
    "                           Lanczos quadrature (--probes P, --steps S; its\n"
    "                           standard error on stderr)\n"
    "  diaginv diag((A + L I)^-1)   --out (d,); exact as logdet, else estimated from\n"
    "                           solves of Rademacher probes (--probes P; the largest\n"
    "                           standard error on stderr)\n"
    "  sample  draws from N(0, (A + L I)^-1)   --count N (default 1), --seed S,\n"
    "                           --out (N, d); --cov: from N(0, A + L I). Exact only:\n"
    "                           A must be one matrix c*M + s*I\n"
    "\n"
    "Results go to stdout, one value a line (vectors without --out too); how a\n"
    "result was computed (exact or estimated, direct or CG) goes to stderr, and\n"
    "with --json into the JSON object as fields.\n",
    "Scalars print with 9 significant digits. Exit status: 0, 1 runtime error,\n"
    "2 usage error (including syntax errors in EXPR, with their column).\n"
    "Under mpirun -n P, STORE is a store sharded over P ranks (pspace build under\n"
    "mpirun): each rank streams its own tiles, rank 0 reads --in, writes --out and\n"
    "prints.\n",
    TOOL_PARSE_DASH_ARGS};

static const tool_choice out_dtypes[] = {{"f64", PSPACE_F64}, {"f32", PSPACE_F32}, {NULL, 0}};
static const tool_choice norm_ords[] = {
    {"fro", PSPACE_NORM_FRO}, {"2", PSPACE_NORM_2}, {"-2", PSPACE_NORM_MINUS2}, {NULL, 0}};
static const tool_choice solve_methods[] = {{"auto", PSPACE_SOLVE_AUTO},
                                            {"direct", PSPACE_SOLVE_DIRECT},
                                            {"cg", PSPACE_SOLVE_CG},
                                            {NULL, 0}};

static const struct {
	const char *name;
	int (*run)(eval_ctx *c);
} eval_ops[] = {
    {"mv", eval_mv},         {"mm", eval_mm},           {"vtmv", eval_vtmv},
    {"trace", eval_trace},   {"diag", eval_diag},       {"norm", eval_norm},
    {"solve", eval_solve},   {"dense", eval_dense},     {"eig", eval_eig},
    {"logdet", eval_logdet}, {"diaginv", eval_diaginv}, {"sample", eval_sample},
};

#define NOPS (sizeof(eval_ops) / sizeof(eval_ops[0]))

/* @return EXIT_OK, EXIT_USAGE or TOOL_HELP. */
static int parse(int argc, char **argv, eval_opts *o)
{
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &o->store, TOOL_OPT_REQUIRED),
	    TOOL_ARG("EXPR", &o->expr, TOOL_OPT_REQUIRED),
	    TOOL_ARG("OP", &o->op, TOOL_OPT_REQUIRED),
	    TOOL_STR("in", "FILE", &o->in, "input vector(s), .npy"),
	    TOOL_STR("out", "FILE", &o->out, "output .npy (f64; --out-dtype f32 for float32)"),
	    TOOL_CHOICE("out-dtype", "T", &o->out_dtype, out_dtypes, "f64 (default) or f32"),
	    TOOL_NUM("damping", "L", &o->damping, tool_opt_double, 0, 0,
	             "solve, logdet, diaginv, sample: damping L >= 0 (default 0)"),
	    TOOL_CHOICE("ord", "O", &o->ord, norm_ords, "norm: fro, 2 or -2"),
	    TOOL_NUM("k", "K", &o->k, tool_opt_u32, 1, UINT32_MAX, "eig: number of eigenpairs"),
	    TOOL_NUM("probes", "P", &o->probes, tool_opt_u32, 2, UINT32_MAX,
	             "trace, logdet, diaginv: random probes of the estimates\n"
	             "(default 64)"),
	    TOOL_NUM("steps", "S", &o->steps, tool_opt_u32, 1, UINT32_MAX,
	             "logdet: Lanczos steps per probe (default min(d, 40))"),
	    TOOL_NUM("count", "N", &o->count, tool_opt_u32, 1, UINT32_MAX,
	             "sample: number of draws (default 1)"),
	    TOOL_SWITCH("cov", &o->cov, 1,
	                "sample: from N(0, A + L I) instead of N(0, (A + L I)^-1)"),
	    TOOL_SEED(&o->seed, "trace, eig, norm, logdet, diaginv, sample: random seed\n"
	                        "(default 1)"),
	    {.type = TOOL_OPT_VALUE,
	     .name = "tol",
	     .value = &o->tol,
	     .parse = tool_opt_double,
	     .value_name = "T",
	     .help = "solve: CG relative residual (default 1e-6); eig, norm:\n"
	             "Lanczos tolerance (default 1e-8); diaginv: CG residual of\n"
	             "the probes' solves (default 1e-10)",
	     .flags = TOOL_OPT_ABOVE},
	    TOOL_NUM("maxiter", "N", &o->max_iter, tool_opt_u32, 1, UINT32_MAX,
	             "solve: CG iterations (default 1000); eig, norm: Lanczos steps"),
	    TOOL_STR("precond", "EXPR", &o->precond,
	             "solve: CG preconditioner P, applied as (P + L I)^-1 by P's\n"
	             "direct solve (e.g. a stored KFAC: --precond K)"),
	    TOOL_CHOICE("method", "M", &o->method, solve_methods,
	                "solve: auto (default), direct or cg"),
	    TOOL_THREADS(&o->ex.threads),
	    TOOL_MEM(&o->ex.mem_budget, "memory budget, e.g. 512M, 4G (default 1G)"),
	    TOOL_JSON(&o->json, "results as one JSON object on stdout"),
	    TOOL_END,
	};

	memset(o, 0, sizeof(*o));
	o->out_dtype = PSPACE_F64;
	o->ord = PSPACE_NORM_FRO;
	o->method = PSPACE_SOLVE_AUTO;
	o->k = 1;
	o->count = 1;
	o->seed = 1;
	return tool_opt_parse(&eval_doc, opts, argc, argv, NULL);
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
		return rc == TOOL_HELP ? EXIT_OK : rc;
	for (op = 0; op < NOPS; op++)
		if (strcmp(o.op, eval_ops[op].name) == 0)
			break;
	if (op == NOPS)
		return tool_usage_error("eval",
		                        "eval: unknown operation '%s' (mv, mm, vtmv, trace, diag, "
		                        "norm, solve, dense, eig, logdet, diaginv, sample)",
		                        o.op);
	memset(&c, 0, sizeof(c));
	c.o = &o;
	pspace_store_opts_default(&so);
	so.readonly = 1;
	so.create = 0;
	rc = tool_par_active() ? tool_par_open(&c.s, o.store, 1)
	                       : pspace_store_open(&c.s, o.store, &so);
	if (rc)
		return tool_fail(rc, "eval: cannot open store %s", o.store);
	rc = expr_build("eval", o.expr, c.s, &c.a);
	if (tool_par_active()) {
		/* a rank whose shard fails to open (incomplete, missing) stops them all */
		int lrc = tool_par_agree(c.s, rc ? PSPACE_EINVAL : 0);

		if (lrc && !rc)
			rc = tool_fail(lrc, "eval: %s", o.expr);
	}
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
	if (tool_par_active())
		tool_par_close(c.s);
	else
		pspace_store_close(c.s);
	return rc;
}
