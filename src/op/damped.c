/*
 * Lazy operators: log det(A + l I), diag((A + l I)^-1) and Gaussian
 * samples. Exact when A folds to c M + s I with c > 0 and M one matrix
 * whose kind has the exact form (then A + l I = c (M + (s + l) / c I)),
 * or to s I; otherwise log det by stochastic Lanczos quadrature (slq.c)
 * and the inverse's diagonal by a Hutchinson-style estimate over solves.
 * Samples are exact or refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

/* The exact form of a fold: A = c M + s I (m NULL: s I alone). */
typedef struct exact_form {
	pspace_mat *m; /* borrowed from the fold's leaves */
	double c;
} exact_form;

/*
 * 1 and *x when @p f is c M + s I with c > 0 or s I, else 0. @p l gets
 * the fold's leaves (free with op_leaves_free, also on failure).
 */
static int exact_of(const op_fold *f, op_leaves *l, exact_form *x, int *rc)
{
	memset(l, 0, sizeof(*l));
	*rc = 0;
	x->m = NULL;
	x->c = 1.0;
	if (f->n == 0)
		return 1;
	if (!op_fold_is_linear(f))
		return 0;
	*rc = op_fold_leaves(f, l);
	if (*rc || l->n > 1 || (l->n == 1 && !(l->c[0] > 0)))
		return 0;
	if (l->n == 1) {
		x->m = l->m[0];
		x->c = l->c[0];
	}
	return 1;
}

/* s + l > 0 for the s I case, else ENUMERIC. */
static int shift_pd(double v)
{
	if (!(v > 0))
		return pspace_err_set(PSPACE_ENUMERIC,
		                      "op: %g I (the expression plus damping) is not positive "
		                      "definite; add damping",
		                      v);
	return 0;
}

/* An exact call that could not be made (no form, or the budget): estimate instead. */
static int fall_back(int rc)
{
	if (rc == PSPACE_ENOTSUP || rc == PSPACE_ENOMEM) {
		pspace_errclear();
		return 1;
	}
	return 0;
}

/* The checks and the fold every operation here begins with. */
static int fold_damped(op_fold **f, const char *what, const void *out, pspace_op *a, double damping)
{
	*f = NULL;
	if (!out || !a)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to %s", what);
	if (!isfinite(damping))
		return pspace_err_set(PSPACE_EINVAL, "op: %s: damping is not finite", what);
	return op_fold_build(a, f);
}

static void est_defaults(const pspace_est_opts *opts, uint64_t d, pspace_est_opts *o)
{
	if (opts)
		*o = *opts;
	else {
		memset(o, 0, sizeof(*o));
		o->seed = 1;
	}
	if (o->probes == 0)
		o->probes = 64;
	if (o->steps == 0)
		o->steps = d < 40 ? (uint32_t)d : 40;
	if (!(o->tol > 0))
		o->tol = 1e-10;
	o->exact = 1;
	o->stderr_ = 0;
}

int pspace_op_logdet(double *out, pspace_op *a, const pspace_exec *ex, double damping,
                     pspace_est_opts *opts)
{
	pspace_est_opts o;
	op_fold *f = NULL;
	op_leaves l;
	exact_form x;
	double v = 0, se = 0;
	int rc;

	memset(&l, 0, sizeof(l));
	rc = fold_damped(&f, "logdet", out, a, damping);
	if (rc)
		return rc;
	est_defaults(opts, a->d, &o);
	if (exact_of(f, &l, &x, &rc)) {
		if (!x.m) {
			rc = shift_pd(f->s + damping);
			v = (double)f->d * log(f->s + damping);
			goto out;
		}
		rc = pspace_mat_logdet(&v, x.m, ex, (f->s + damping) / x.c);
		v += (double)f->d * log(x.c);
		if (!fall_back(rc))
			goto out;
		rc = 0;
	}
	if (rc)
		goto out;
	o.exact = 0;
	rc = op_slq_logdet(f, ex, damping, o.probes, o.steps, o.seed, &v, &se);
	o.stderr_ = se;
out:
	if (rc == 0)
		rc = op_check_finite(&v, 1, "log-determinant");
	if (rc == 0) {
		*out = v;
		if (opts) {
			opts->exact = o.exact;
			opts->stderr_ = o.stderr_;
		}
	}
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}

/* Hutchinson-style: out = mean_j z_j .* X_j with X = (A + l I)^-1 Z, per-entry standard errors. */
static int diaginv_estimate(pspace_op *a, const pspace_exec *ex, double damping, pspace_est_opts *o,
                            double *out, double *se)
{
	uint64_t d = a->d;
	size_t per = 8 * d * sizeof(double); /* probes, solutions and CG's vectors */
	uint32_t batch =
	    op_budget(ex) / per > o->probes ? o->probes : (uint32_t)(op_budget(ex) / per);
	double *Z = NULL, *X = NULL, *m2 = NULL;
	pspace_solve_opts so;
	uint32_t done = 0, b;
	int rc = 0;

	batch = batch ? batch : 1;
	Z = malloc((size_t)batch * d * sizeof(double));
	X = malloc((size_t)batch * d * sizeof(double));
	m2 = calloc(d, sizeof(double));
	if (!Z || !X || !m2) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: diaginv: out of memory for %u probes",
		                    (unsigned)batch);
		goto out;
	}
	memset(out, 0, d * sizeof(double));
	pspace_solve_opts_default(&so);
	so.tol = o->tol;
	while (done < o->probes) {
		b = o->probes - done < batch ? o->probes - done : batch;
		for (uint32_t j = 0; j < b; j++)
			pspace_vec_rademacher(d, op_probe_seed(o->seed, done + j),
			                      Z + (size_t)j * d);
		rc = op_solve(a, ex, damping, b, Z, d, X, d, &so);
		if (rc)
			goto out;
		for (uint32_t j = 0; j < b; j++) {
			double n = (double)(done + j + 1);

			for (uint64_t i = 0; i < d; i++) {
				double v = Z[(size_t)j * d + i] * X[(size_t)j * d + i];
				double delta = v - out[i];

				out[i] += delta / n;
				m2[i] += delta * (v - out[i]);
			}
		}
		done += b;
	}
	o->stderr_ = 0;
	for (uint64_t i = 0; i < d; i++) {
		double s = o->probes > 1 ? sqrt(m2[i] / (double)(o->probes - 1) / (double)o->probes)
		                         : INFINITY;

		if (se)
			se[i] = s;
		o->stderr_ = s > o->stderr_ ? s : o->stderr_;
	}
out:
	free(m2);
	free(X);
	free(Z);
	return rc;
}

int pspace_op_diaginv(double *out, double *se, pspace_op *a, const pspace_exec *ex, double damping,
                      pspace_est_opts *opts)
{
	pspace_est_opts o;
	op_fold *f = NULL;
	op_leaves l;
	exact_form x;
	int rc;

	memset(&l, 0, sizeof(l));
	rc = fold_damped(&f, "diaginv", out, a, damping);
	if (rc)
		return rc;
	est_defaults(opts, a->d, &o);
	if (exact_of(f, &l, &x, &rc)) {
		if (!x.m) {
			rc = shift_pd(f->s + damping);
			for (uint64_t i = 0; rc == 0 && i < f->d; i++)
				out[i] = 1.0 / (f->s + damping);
		} else {
			rc = pspace_mat_diaginv(out, x.m, ex, (f->s + damping) / x.c);
			for (uint64_t i = 0; rc == 0 && i < f->d; i++)
				out[i] /= x.c;
		}
		if (rc == 0 && se)
			memset(se, 0, f->d * sizeof(double));
		if (!fall_back(rc))
			goto out;
		rc = 0;
	}
	if (rc)
		goto out;
	o.exact = 0;
	rc = diaginv_estimate(a, ex, damping, &o, out, se);
out:
	if (rc == 0)
		rc = op_check_finite(out, a->d, "diagonal of the inverse");
	if (rc == 0 && opts) {
		opts->exact = o.exact;
		opts->stderr_ = o.stderr_;
	}
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}

int pspace_op_sample(double *X, size_t ldx, pspace_op *a, const pspace_exec *ex, double damping,
                     uint32_t n, const pspace_sample_opts *opts)
{
	pspace_mat *id = NULL;
	op_fold *f = NULL;
	op_leaves l;
	exact_form x;
	char what[256];
	int cov = opts && opts->cov;
	int rc;

	memset(&l, 0, sizeof(l));
	rc = fold_damped(&f, "sample", X, a, damping);
	if (rc)
		return rc;
	if (ldx < a->d) {
		rc = pspace_err_set(PSPACE_EDIM, "op: sample: leading dimension below d = %llu",
		                    (unsigned long long)a->d);
		goto out;
	}
	if (!exact_of(f, &l, &x, &rc)) {
		if (rc == 0) {
			pspace_op_describe(a, what, sizeof(what));
			rc = pspace_err_set(PSPACE_ENOTSUP,
			                    "op: no exact sampling for %s: it needs the form c*M + "
			                    "s*I (one matrix, c > 0) whose square root is known",
			                    what);
		}
		goto out;
	}
	if (!x.m) {
		/* s I: samples of the identity with damping s + l */
		rc = pspace_identity_create(&id, f->d, 1.0);
		x.m = id;
	}
	if (rc == 0)
		rc = pspace_mat_sample(X, ldx, x.m, ex, (f->s + damping) / x.c, n, opts);
	for (uint32_t j = 0; rc == 0 && x.c != 1.0 && j < n; j++)
		pspace_vec_scale(f->d, cov ? sqrt(x.c) : 1.0 / sqrt(x.c), X + (size_t)j * ldx);
out:
	pspace_mat_free(id);
	op_leaves_free(&l);
	op_fold_free(f);
	return rc;
}
