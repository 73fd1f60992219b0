/*
 * Implicit: a matrix known only through a user callback y = F x (and
 * optionally x^T F x). Only mv-based operations are offered; the generic
 * fallbacks of mat.c give vTMv and dense from them.
 */
#include <stdlib.h>

#include "common/error.h"
#include "mat/mat_impl.h"

typedef struct implicit {
	pspace_mat base;
	pspace_implicit_mv mv;
	pspace_implicit_vtmv vtmv;
	void *ud;
} implicit;

/* A callback's failure as a pspace code (its own detail message is kept
 * when it returned one of ours). */
static int callback_failed(int rc, const char *what)
{
	if (rc < 0 && rc >= PSPACE_EBLIS)
		return pspace_err_prefix(rc, "implicit matrix: %s callback", what);
	return pspace_err_set(PSPACE_EINVAL, "implicit matrix: %s callback returned %d", what, rc);
}

static int implicit_mm(pspace_mat *mat, const pspace_exec *ex, uint32_t k, double alpha,
                       const double *X, size_t ldx, double *Y, size_t ldy)
{
	implicit *m = (implicit *)mat;
	double *y = malloc(mat->d * sizeof(*y));
	int rc = 0;

	(void)ex;
	if (!y)
		return pspace_err_set(PSPACE_ENOMEM, "implicit matrix: out of memory");
	for (uint32_t j = 0; j < k; j++) {
		rc = m->mv(m->ud, X + j * ldx, y);
		if (rc != 0) {
			rc = callback_failed(rc, "mv");
			break;
		}
		for (uint64_t i = 0; i < mat->d; i++)
			Y[j * ldy + i] += alpha * y[i];
	}
	free(y);
	return rc;
}

static int implicit_vtmv_batch(pspace_mat *mat, const pspace_exec *ex, uint32_t k, const double *V,
                               size_t ldv, double *out)
{
	implicit *m = (implicit *)mat;
	double *y = NULL;
	int rc = 0;

	(void)ex;
	if (!m->vtmv) {
		y = malloc(mat->d * sizeof(*y));
		if (!y)
			return pspace_err_set(PSPACE_ENOMEM, "implicit matrix: out of memory");
	}
	for (uint32_t j = 0; j < k && rc == 0; j++) {
		const double *v = V + j * ldv;
		double s = 0;

		if (m->vtmv) {
			rc = m->vtmv(m->ud, v, &out[j]);
			if (rc != 0)
				rc = callback_failed(rc, "vtmv");
			continue;
		}
		rc = m->mv(m->ud, v, y);
		if (rc != 0) {
			rc = callback_failed(rc, "mv");
			break;
		}
		for (uint64_t i = 0; i < mat->d; i++)
			s += v[i] * y[i];
		out[j] = s;
	}
	free(y);
	return rc;
}

static const pspace_mat_vtable implicit_vt = {
    .kind = PSPACE_KIND_IMPLICIT,
    .mm = implicit_mm,
    .vtmv_batch = implicit_vtmv_batch,
};

int pspace_implicit_create(pspace_mat **out, uint64_t d, pspace_implicit_mv mv,
                           pspace_implicit_vtmv vtmv, void *ud)
{
	implicit *m;
	int rc;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_implicit_create: out is NULL");
	*out = NULL;
	if (d == 0 || !mv)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_implicit_create: d = 0 or no mv callback");
	rc = pspace_mat_alloc(out, sizeof(*m), &implicit_vt, d, NULL, NULL, NULL);
	if (rc != 0)
		return rc;
	m = (implicit *)*out;
	m->mv = mv;
	m->vtmv = vtmv;
	m->ud = ud;
	return 0;
}
