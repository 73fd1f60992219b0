/*
 * What every builder shares: the options with their defaults, progress
 * reports, and reading the gradient row stream in batches that fit the
 * memory budget. The builders of each kind (build_dense.c,
 * build_factored.c, build_layers.c, mixed_spec.c) and the entry points
 * (builder.c) sit above this file.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "common/exec.h"
#include "common/mem.h"

void pspace_build_opts_default(pspace_build_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = PSPACE_KIND_DENSE;
	pspace_write_opts_default(&o->write);
	o->exec.threads = 0;
	o->exec.mem_budget = 0;
}

void pspace_build_opts_resolve(const pspace_build_opts *in, pspace_build_opts *out)
{
	if (in)
		*out = *in;
	else
		pspace_build_opts_default(out);
	pspace_exec_resolve(&out->exec, &out->exec);
}

void pspace_build_progress(const pspace_build_opts *o, const char *stage, uint64_t done,
                           uint64_t total)
{
	if (o->progress)
		o->progress(o->progress_ud, stage, done, total);
}

int pspace_rows_read(pspace_rows *r, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1,
                     double *out)
{
	int rc = r->read(r->ud, x0, nx, c0, c1, out, (size_t)r->d);

	r->reads++;
	if (rc > 0 || rc < PSPACE_EBLIS)
		rc = pspace_err_set(PSPACE_EINVAL, "gradient source returned %d", rc);
	return pspace_err_prefix(rc, "reading examples [%llu, %llu)", (unsigned long long)x0,
	                         (unsigned long long)(x0 + nx));
}

int pspace_rows_batch(const pspace_rows *r, const pspace_build_opts *o, uint64_t avail,
                      uint64_t also, const char *what, uint64_t *nx, double **X)
{
	uint64_t per = (uint64_t)r->K * r->d * sizeof(double) + r->extra_per_example + also;

	*nx = 0;
	*X = NULL;
	if (o->batch > 0) {
		*nx = o->batch < r->n ? o->batch : r->n;
	} else if (per == 0 || avail < per) {
		return pspace_err_set(PSPACE_ENOMEM,
		                      "%s: one example's %u gradient rows of %llu parameters take "
		                      "%llu bytes, more than the %llu bytes of the memory budget "
		                      "left for a batch",
		                      what, r->K, (unsigned long long)r->d, (unsigned long long)per,
		                      (unsigned long long)avail);
	} else {
		*nx = avail / per < r->n ? avail / per : r->n;
	}
	*X = pspace_alloc_big((size_t)*nx * r->K * r->d * sizeof(double));
	if (!*X)
		return pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory for a batch of %llu",
		                      what, (unsigned long long)*nx);
	return 0;
}

size_t pspace_values_bad(const double *v, size_t n)
{
	for (size_t i0 = 0; i0 < n; i0 += 512) {
		size_t m = n - i0 < 512 ? n - i0 : 512;
		int ok = 1;

		/* NaN compares false: one test catches NaN, infinities and overflow */
		for (size_t i = 0; i < m; i++)
			ok &= fabs(v[i0 + i]) <= PSPACE_INPUT_MAX;
		if (ok)
			continue;
		for (size_t i = 0; i < m; i++)
			if (!(fabs(v[i0 + i]) <= PSPACE_INPUT_MAX))
				return i0 + i;
	}
	return n;
}

int pspace_value_err(double v, const char *fmt, ...)
{
	char where[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(where, sizeof(where), fmt, ap);
	va_end(ap);
	if (!isfinite(v))
		return pspace_err_set(PSPACE_ENUMERIC, "%s is %s (inputs must be finite)", where,
		                      isnan(v) ? "nan"
		                      : v > 0  ? "inf"
		                               : "-inf");
	return pspace_err_set(PSPACE_ENUMERIC,
	                      "%s is %g, beyond 2^511 = %.3g in magnitude (sums of "
	                      "squares would overflow: scale the inputs)",
	                      where, v, PSPACE_INPUT_MAX);
}
