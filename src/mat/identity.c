/*
 * Identity: s I, resident, with every operation in closed form.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"

typedef struct identity {
	pspace_mat base;
	double s;
} identity;

static double scale_of(const pspace_mat *m)
{
	return ((const identity *)m)->s;
}

static int identity_mm(pspace_mat *m, const pspace_exec *ex, uint32_t k, double alpha,
                       const double *X, size_t ldx, double *Y, size_t ldy)
{
	double a = alpha * scale_of(m);

	(void)ex;
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < m->d; i++)
			Y[j * ldy + i] += a * X[j * ldx + i];
	return 0;
}

static int identity_vtmv_batch(pspace_mat *m, const pspace_exec *ex, uint32_t k, const double *V,
                               size_t ldv, double *out)
{
	(void)ex;
	for (uint32_t j = 0; j < k; j++) {
		double s = 0;

		for (uint64_t i = 0; i < m->d; i++)
			s += V[j * ldv + i] * V[j * ldv + i];
		out[j] = scale_of(m) * s;
	}
	return 0;
}

static int identity_trace(pspace_mat *m, const pspace_exec *ex, double *out)
{
	(void)ex;
	*out = scale_of(m) * (double)m->d;
	return 0;
}

static int identity_diag(pspace_mat *m, const pspace_exec *ex, double *out)
{
	(void)ex;
	for (uint64_t i = 0; i < m->d; i++)
		out[i] = scale_of(m);
	return 0;
}

static int identity_frob2(pspace_mat *m, const pspace_exec *ex, double *out)
{
	(void)ex;
	*out = scale_of(m) * scale_of(m) * (double)m->d;
	return 0;
}

static int identity_dense(pspace_mat *m, const pspace_exec *ex, double *out, size_t ld)
{
	(void)ex;
	for (uint64_t i = 0; i < m->d; i++) {
		memset(out + i * ld, 0, m->d * sizeof(*out));
		out[i * ld + i] = scale_of(m);
	}
	return 0;
}

static int identity_solve(pspace_mat *m, const pspace_exec *ex, double damping, uint32_t k,
                          const double *B, size_t ldb, double *X, size_t ldx)
{
	double c = scale_of(m) + damping;

	(void)ex;
	if (c == 0)
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "solve with %g I and damping %g: the matrix is zero",
		                      scale_of(m), damping);
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < m->d; i++)
			X[j * ldx + i] = B[j * ldb + i] / c;
	return 0;
}

/* s + damping, or ENUMERIC when it is not positive. */
static int damped_scale(const pspace_mat *m, double damping, double *c)
{
	*c = scale_of(m) + damping;
	if (!(*c > 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "%g I + %g I is not positive definite; add damping",
		                      scale_of(m), damping);
	return 0;
}

static int identity_logdet(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	double c;
	int rc = damped_scale(m, damping, &c);

	(void)ex;
	if (rc == 0)
		*out = (double)m->d * log(c);
	return rc;
}

static int identity_diaginv(pspace_mat *m, const pspace_exec *ex, double damping, double *out)
{
	double c;
	int rc = damped_scale(m, damping, &c);

	(void)ex;
	for (uint64_t i = 0; rc == 0 && i < m->d; i++)
		out[i] = 1.0 / c;
	return rc;
}

static int identity_sqrt_mm(pspace_mat *m, const pspace_exec *ex, double damping, int cov,
                            uint32_t k, const double *Z, size_t ldz, double *X, size_t ldx)
{
	double c;
	int rc = damped_scale(m, damping, &c);

	(void)ex;
	c = cov ? sqrt(c) : 1.0 / sqrt(c);
	for (uint32_t j = 0; rc == 0 && j < k; j++)
		for (uint64_t i = 0; i < m->d; i++)
			X[j * ldx + i] = c * Z[j * ldz + i];
	return rc;
}

/* Stored as a tileless matrix with its layout and a one-element array. */
#define SCALE_ARRAY "scale"

static int identity_save(pspace_mat *m, pspace_store *s, const char *name)
{
	pspace_writer *w = NULL;
	uint64_t shape[1] = {1};
	double v = scale_of(m);
	int rc = pspace_resident_save_begin(m, PSPACE_KIND_IDENTITY, s, name, &w);

	if (rc == 0)
		rc = pspace_writer_put_array(w, SCALE_ARRAY, PSPACE_F64, 1, shape, &v);
	return pspace_resident_save_end(w, rc);
}

static const pspace_mat_vtable identity_vt = {
    .kind = PSPACE_KIND_IDENTITY,
    .mm = identity_mm,
    .vtmv_batch = identity_vtmv_batch,
    .trace = identity_trace,
    .diag = identity_diag,
    .is_diagonal = pspace_mat_always_diagonal,
    .frob2 = identity_frob2,
    .dense = identity_dense,
    .solve = identity_solve,
    .logdet = identity_logdet,
    .diaginv = identity_diaginv,
    .sqrt_mm = identity_sqrt_mm,
    .save = identity_save,
};

static int identity_new(pspace_mat **out, uint64_t d, double s, const pspace_layout *layout,
                        pspace_store *st, const char *name)
{
	int rc = pspace_mat_alloc(out, sizeof(identity), &identity_vt, d, layout, st, name);

	if (rc == 0)
		((identity *)*out)->s = s;
	return rc;
}

int pspace_identity_open(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	pspace_reader *r = NULL;
	pspace_layout *layout = NULL;
	double v = 0;
	int rc;

	*out = NULL;
	rc = pspace_resident_open_begin(s, info, PSPACE_KIND_IDENTITY, &r, &layout);
	if (rc == 0)
		rc = pspace_reader_array(r, SCALE_ARRAY, PSPACE_F64, &v, 1);
	if (rc == 0)
		rc = identity_new(out, info->d, v, layout, s, info->name);
	if (rc == PSPACE_EDIM)
		rc = PSPACE_ECORRUPT;
	pspace_layout_free(layout);
	pspace_reader_close(r);
	return rc;
}

int pspace_identity_create(pspace_mat **out, uint64_t d, double s)
{
	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_identity_create: out is NULL");
	*out = NULL;
	if (d == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_identity_create: d = 0");
	return identity_new(out, d, s, NULL, NULL, NULL);
}
