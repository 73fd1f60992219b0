/*
 * The representation interface for log det(M + l I), diag((M + l I)^-1)
 * and Gaussian samples: public wrappers (argument checks, then a call
 * through the kind's table). Each kind computes them exactly or not at
 * all; the estimates for the rest are in the operator layer (src/op).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"
#include "pspace/vec.h"

/*
 * The checks every call of pspace_mat_<op> shares; @p entry is the kind's
 * table entry (NULL: ENOTSUP saying there is no exact @p what).
 */
static int check(const pspace_mat *m, const void *out, double damping, const void *entry,
                 const char *op, const char *what)
{
	if (!m || !out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_%s: %s is NULL", op,
		                      m ? "output" : "matrix");
	if (!isfinite(damping))
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_%s: damping is not finite", op);
	if (entry)
		return 0;
	return pspace_err_set(PSPACE_ENOTSUP, "%s%s%sno exact %s for %s matrices",
	                      m->name ? "matrix " : "", m->name ? m->name : "", m->name ? ": " : "",
	                      what, pspace_kind_name(m->vt->kind));
}

int pspace_mat_logdet(double *out, pspace_mat *m, const pspace_exec *ex, double damping)
{
	pspace_exec e;
	int rc = check(m, out, damping, m ? (const void *)m->vt->logdet : NULL, "logdet",
	               "log-determinant");

	if (rc != 0)
		return rc;
	pspace_exec_resolve(ex, &e);
	rc = m->vt->logdet(m, &e, damping, out);
	if (rc == 0 && !isfinite(*out))
		rc = pspace_err_set(PSPACE_ENUMERIC, "log-determinant is %g", *out);
	return rc;
}

int pspace_mat_diaginv(double *out, pspace_mat *m, const pspace_exec *ex, double damping)
{
	pspace_exec e;
	int rc = check(m, out, damping, m ? (const void *)m->vt->diaginv : NULL, "diaginv",
	               "diagonal of the inverse");

	if (rc != 0)
		return rc;
	pspace_exec_resolve(ex, &e);
	return m->vt->diaginv(m, &e, damping, out);
}

int pspace_mat_sqrt_mm(double *X, size_t ldx, pspace_mat *m, const pspace_exec *ex, double damping,
                       int cov, uint32_t k, const double *Z, size_t ldz)
{
	pspace_exec e;
	int rc =
	    check(m, X, damping, m ? (const void *)m->vt->sqrt_mm : NULL, "sqrt_mm", "square root");

	if (rc == 0 && !Z)
		rc = pspace_err_set(PSPACE_EINVAL, "pspace_mat_sqrt_mm: Z is NULL");
	if (rc == 0 && (ldx < m->d || ldz < m->d))
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "pspace_mat_sqrt_mm: leading dimension below d = %llu",
		                    (unsigned long long)m->d);
	if (rc != 0 || k == 0)
		return rc;
	pspace_exec_resolve(ex, &e);
	return m->vt->sqrt_mm(m, &e, damping, cov != 0, k, Z, ldz, X, ldx);
}

/* The seed of draw @p j (splitmix64 of the pair), so draws do not depend on batching. */
static uint64_t draw_seed(uint64_t seed, uint64_t j)
{
	uint64_t x = seed ^ (j + 1) * 0xd1b54a32d192ed03ull;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int pspace_mat_sample(double *X, size_t ldx, pspace_mat *m, const pspace_exec *ex, double damping,
                      uint32_t n, const pspace_sample_opts *opts)
{
	pspace_sample_opts o = {1, 0};
	pspace_exec e;
	double *Z = NULL;
	uint64_t d;
	uint32_t batch, j0, b;
	int rc = check(m, X, damping, m ? (const void *)m->vt->sqrt_mm : NULL, "sample", "samples");

	if (rc == 0 && ldx < m->d)
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "pspace_mat_sample: leading dimension %zu below d = %llu", ldx,
		                    (unsigned long long)m->d);
	if (rc != 0 || n == 0)
		return rc;
	if (opts)
		o = *opts;
	pspace_exec_resolve(ex, &e);
	d = m->d;
	/* Normal vectors in batches of at most a quarter of the budget. */
	batch = (uint32_t)(e.mem_budget / 4 / (d * sizeof(double)));
	batch = batch < 1 ? 1 : batch > n ? n : batch;
	Z = malloc((size_t)batch * d * sizeof(double));
	if (!Z)
		return pspace_err_set(PSPACE_ENOMEM, "sample: out of memory for %u draws",
		                      (unsigned)batch);
	for (j0 = 0; rc == 0 && j0 < n; j0 += b) {
		b = n - j0 < batch ? n - j0 : batch;
		for (uint32_t j = 0; j < b; j++)
			pspace_vec_randn(d, draw_seed(o.seed, (uint64_t)j0 + j), Z + (size_t)j * d);
		rc = m->vt->sqrt_mm(m, &e, damping, o.cov != 0, b, Z, d, X + (size_t)j0 * ldx, ldx);
	}
	free(Z);
	return rc;
}
