/*
 * Lazy operators: norms. The 2- and -2-norms come from Lanczos. The
 * Frobenius norm of a linear combination A = C + N + D, where C is the
 * combination of the stored matrices of one tiling, N one other matrix and
 * D the diagonal part (the shift s I and resident matrices whose
 * representation is diagonal, pspace_mat_is_diagonal), is exact without
 * the dense matrix:
 *
 *     ||A||^2 = ||C||^2 + ||N||^2 + ||D||^2 + 2 <diag C + diag N, diag D>
 *
 * (C and N are not both present: their inner product would need both at
 * once). ||C||^2 and diag C come from one pass reading each stored tile
 * of the group once (pspace_stream_frob2_multi), at any d. With a uniform
 * D = s I the cross term is 2 s tr(C + N). Anything else (products,
 * inverses, stored matrices of different tilings, two non-diagonal
 * resident matrices) goes through the dense matrix when it fits the
 * memory budget, and is refused otherwise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/shard.h"
#include "kernel/stream.h"
#include "mat/mat_impl.h"
#include "op/op_impl.h"
#include "pspace/vec.h"

/* ||A||_F from the dense matrix, if it fits the budget; @p why says why it is needed. */
static int frobenius_dense(const op_fold *f, const pspace_exec *ex, const char *why, double *out)
{
	double *D = NULL;
	size_t n2;
	int rc;

	if (f->d > 0 && f->d > (uint64_t)(op_budget(ex) / sizeof(double) / f->d))
		return pspace_err_set(PSPACE_ENOTSUP,
		                      "op: the Frobenius norm of %s needs the dense %llu x %llu "
		                      "matrix, above the memory budget of %zu bytes",
		                      why, (unsigned long long)f->d, (unsigned long long)f->d,
		                      op_budget(ex));
	n2 = (size_t)f->d * f->d;
	D = malloc(n2 * sizeof(double));
	if (!D)
		return pspace_err_set(PSPACE_ENOMEM, "op: out of memory for a dense matrix");
	rc = op_fold_dense(f, ex, D, f->d);
	if (rc == 0)
		*out = pspace_vec_nrm2(n2, D);
	free(D);
	return rc;
}

/* The terms of a linear fold sorted for the sum above. */
typedef struct fro_parts {
	op_leaves l;
	double *dv;  /* diag D when D is not uniform, else NULL (D = s I) */
	double *tmp; /* d scratch */
	size_t *big; /* resident leaves that are not diagonal */
	size_t nbig;
} fro_parts;

/*
 * Moves the resident leaves that are diagonal by their representation
 * (pspace_mat_is_diagonal) into dv; the others stay in big.
 */
static int split_diagonal(fro_parts *p, const op_fold *f, const pspace_exec *ex)
{
	for (size_t i = op_leaves_resident(&p->l); i < p->l.n; i++) {
		int rc;

		if (!pspace_mat_is_diagonal(p->l.m[i])) {
			p->big[p->nbig++] = i;
			continue;
		}
		rc = pspace_mat_diag(p->l.m[i], ex, p->tmp);
		if (rc != 0)
			return rc;
		if (!p->dv) {
			p->dv = malloc(f->d * sizeof(double));
			if (!p->dv)
				return pspace_err_set(PSPACE_ENOMEM,
				                      "op: out of memory for a diagonal");
			for (uint64_t q = 0; q < f->d; q++)
				p->dv[q] = f->s;
		}
		pspace_vec_axpy(f->d, p->l.c[i], p->tmp, p->dv);
	}
	return 0;
}

/* ||N||^2 + 2 <diag N, diag D> for the one non-diagonal resident leaf i. */
static int resident_part(fro_parts *p, const op_fold *f, const pspace_exec *ex, size_t i,
                         double *sum)
{
	double c = p->l.c[i], fro, tr;
	int rc = pspace_mat_frobenius(p->l.m[i], ex, &fro);

	if (rc)
		return rc;
	*sum = c * c * fro * fro;
	if (p->dv) {
		rc = pspace_mat_diag(p->l.m[i], ex, p->tmp);
		if (rc == 0)
			*sum += 2 * c * pspace_vec_dot(f->d, p->tmp, p->dv);
	} else if (f->s != 0.0) {
		rc = pspace_mat_trace(p->l.m[i], ex, &tr);
		if (rc == 0)
			*sum += 2 * c * f->s * tr;
	}
	return rc;
}

/* ||C||^2 + 2 <diag C, diag D> for the one group, in one pass. */
static int group_part(fro_parts *p, const op_fold *f, const pspace_exec *ex, double *sum)
{
	double c2, tr;
	int rc = pspace_shard_frob2_multi(p->l.t, op_group_size(&p->l, 0), p->l.c, ex, &c2, &tr,
	                                  p->dv ? p->tmp : NULL);

	if (rc)
		return rc;
	*sum = c2 + 2 * (p->dv ? pspace_vec_dot(f->d, p->tmp, p->dv) : f->s * tr);
	return 0;
}

static int frobenius(const op_fold *f, const pspace_exec *ex, double *out)
{
	fro_parts p;
	double sum = 0;
	size_t nres;
	int rc;

	memset(&p, 0, sizeof(p));
	if (!op_fold_is_linear(f))
		return frobenius_dense(f, ex, "a product or an inverse", out);
	rc = op_fold_leaves(f, &p.l);
	if (rc)
		return rc;
	nres = p.l.n - op_leaves_resident(&p.l);
	p.tmp = malloc((f->d ? f->d : 1) * sizeof(double));
	p.big = malloc((nres ? nres : 1) * sizeof(size_t));
	if (!p.tmp || !p.big) {
		rc = pspace_err_set(PSPACE_ENOMEM, "op: out of memory for the Frobenius norm");
		goto out;
	}
	if (p.l.ngroups + nres > 1) {
		rc = split_diagonal(&p, f, ex);
	} else {
		for (size_t i = op_leaves_resident(&p.l); i < p.l.n; i++)
			p.big[p.nbig++] = i;
	}
	if (rc)
		goto out;
	if (p.l.ngroups > 1) {
		rc = frobenius_dense(f, ex, "stored matrices of different tilings", out);
		goto out;
	}
	if (p.l.ngroups + p.nbig > 1) {
		rc =
		    frobenius_dense(f, ex,
		                    p.l.ngroups ? "stored matrices with a resident matrix that "
		                                  "is not diagonal"
		                                : "several resident matrices that are not diagonal",
		                    out);
		goto out;
	}
	if (p.l.ngroups)
		rc = group_part(&p, f, ex, &sum);
	else if (p.nbig)
		rc = resident_part(&p, f, ex, p.big[0], &sum);
	if (rc == PSPACE_ENOTSUP && !p.l.ngroups) {
		pspace_errclear();
		rc = frobenius_dense(f, ex, "a matrix without a Frobenius norm of its own", out);
		goto out;
	}
	if (rc)
		goto out;
	sum += p.dv ? pspace_vec_dot(f->d, p.dv, p.dv) : f->s * f->s * (double)f->d;
	*out = sqrt(sum > 0 ? sum : 0);
out:
	free(p.big);
	free(p.tmp);
	free(p.dv);
	op_leaves_free(&p.l);
	return rc;
}

int pspace_op_norm(pspace_op *a, const pspace_exec *ex, pspace_norm_ord ord, pspace_eig_opts *opts,
                   double *out)
{
	op_fold *f = NULL;
	int rc;

	if (!a || !out)
		return pspace_err_set(PSPACE_EINVAL, "op: NULL argument to norm");
	if (ord != PSPACE_NORM_FRO && ord != PSPACE_NORM_2 && ord != PSPACE_NORM_MINUS2)
		return pspace_err_set(PSPACE_EINVAL, "op: unknown norm order %d", (int)ord);
	rc = op_fold_build(a, &f);
	if (rc)
		return rc;
	if (ord == PSPACE_NORM_FRO)
		rc = frobenius(f, ex, out);
	else
		rc = op_lanczos(f, ex, ord == PSPACE_NORM_2 ? LANCZOS_MAXABS : LANCZOS_MINABS, 1,
		                out, NULL, 0, opts);
	if (rc == 0)
		rc = op_check_finite(out, 1, "norm");
	op_fold_free(f);
	return rc;
}
