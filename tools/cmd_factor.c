/*
 * pspace factor STORE NAME: the Cholesky factor of a stored Dense or
 * BlockDiag matrix plus damping, written out of core as a new matrix.
 */
#include <stdio.h>
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc factor_doc = {
    "factor",
    "Writes the lower Cholesky factor L of NAME + L I (NAME a Dense or BlockDiag\n"
    "matrix of STORE; BlockDiag block by block) as matrix FNAME of kind cholesky:\n"
    "the tiles on and below the diagonal, in f64 unless --precision says otherwise,\n"
    "with NAME's tile edge and codec. Panels of as many tile columns as fit --mem\n"
    "are factored in memory and committed; a killed run continues with --resume.\n"
    "'pspace eval STORE solve NAME --damping L' (direct or auto) then solves\n"
    "through FNAME, at any size, and logdet and sample use it beyond --mem.\n",
    "FNAME defaults to NAME.chol (damping 0) or NAME.chol.L. A matrix that is not\n"
    "positive definite fails naming the pivot and leaves nothing behind. Exit\n"
    "status: 0, 1 runtime error, 2 usage.\n",
    0};

typedef struct factor_progress {
	tool_progress bar;
	int started;
} factor_progress;

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	factor_progress *p = ud;

	if (!p->started) {
		tool_progress_start(&p->bar, "factor", total);
		p->started = 1;
	}
	tool_progress_update(&p->bar, done);
}

int cmd_factor(int argc, char **argv)
{
	const char *path = NULL, *name = NULL, *out = NULL;
	char fname[PSPACE_NAME_MAX + 1], b[32];
	pspace_factor_opts fo;
	pspace_exec ex = {0};
	pspace_matrix_info mi;
	factor_progress prog = {0};
	pspace_store *s = NULL;
	int precision = -1, ret, rc;
	double t0;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &name, TOOL_OPT_REQUIRED),
	    TOOL_NUM("damping", "L", &fo.damping, tool_opt_double, 0, 0,
	             "factor NAME + L I (default 0)"),
	    TOOL_STR("out", "FNAME", &out, "name of the factor (default NAME.chol[.L])"),
	    TOOL_CHOICE("precision", "P", &precision, tool_precisions,
	                "stored precision of the factor's tiles (default f64)"),
	    TOOL_SWITCH("resume", &fo.resume, 1, "finish an interrupted factorization"),
	    TOOL_THREADS(&ex.threads),
	    TOOL_MEM(&ex.mem_budget, "memory budget, e.g. 512M, 4G (default 1G)"),
	    TOOL_END,
	};

	pspace_factor_opts_default(&fo);
	ret = insp_begin(&factor_doc, opts, argc, argv, &path, 0, &s);
	if (!s)
		return ret;
	if (precision >= 0)
		fo.dtype = (pspace_dtype)precision;
	if (!out) {
		if (fo.damping == 0)
			snprintf(fname, sizeof(fname), "%s.chol", name);
		else
			snprintf(fname, sizeof(fname), "%s.chol.%g", name, fo.damping);
		out = fname;
	}
	fo.progress = on_progress;
	fo.progress_ud = &prog;
	t0 = tool_now();
	rc = pspace_factor_write(s, out, name, &ex, &fo);
	if (prog.started)
		tool_progress_end(&prog.bar);
	if (rc == PSPACE_EEXIST) {
		ret = tool_fail(rc,
		                "store %s: matrix %s exists (--out FNAME, 'pspace rm', or "
		                "--resume if it was interrupted)",
		                path, out);
		goto out;
	}
	if (rc) {
		ret = tool_fail(rc, "store %s: factor of %s", path, name);
		goto out;
	}
	rc = pspace_matrix_info_get(&mi, s, out);
	if (rc) {
		ret = tool_fail(rc, "store %s: matrix %s", path, out);
		goto out;
	}
	printf("factored %s + %g I into %s (cholesky, d = %llu, %s tiles, %s) in %.1f s\n", name,
	       fo.damping, out, (unsigned long long)mi.d, pspace_dtype_name(mi.codec.dtype),
	       tool_fmt_bytes(insp_stored_bytes(&mi), b, sizeof(b)), tool_now() - t0);
out:
	pspace_store_close(s);
	return ret;
}
