/*
 * Dense float64 references for the resident representations' tests.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lapacke.h>

#include "fixture.h"
#include "fref.h"
#include "pspace/factored.h"
#include "pspace/op.h"
#include "pspace/store.h"

/* ---- dense references ----------------------------------------------------------- */

double *fref_gram(size_t d, size_t n, double shift, uint64_t seed)
{
	double *J = fx_randv(n * d, seed), *F = calloc(d * d, sizeof(*F));

	assert_non_null(F);
	for (size_t x = 0; x < n; x++)
		for (size_t i = 0; i < d; i++) {
			double a = J[x * d + i] / (double)n;

			for (size_t j = i; j < d; j++)
				F[i * d + j] += a * J[x * d + j];
		}
	for (size_t i = 0; i < d; i++) {
		F[i * d + i] += shift;
		for (size_t j = 0; j < i; j++)
			F[i * d + j] = F[j * d + i];
	}
	free(J);
	return F;
}

double *fref_rows_gram(const double *R, size_t m, size_t d, double n)
{
	double *F = calloc(d * d, sizeof(*F));

	assert_non_null(F);
	for (size_t r = 0; r < m; r++)
		for (size_t i = 0; i < d; i++) {
			double a = R[r * d + i] / n;

			if (a != 0)
				for (size_t j = 0; j < d; j++)
					F[i * d + j] += a * R[r * d + j];
		}
	return F;
}

double fref_norm(const double *a, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += a[i] * a[i];
	return sqrt(s);
}

double fref_dist(const double *a, const double *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += (a[i] - b[i]) * (a[i] - b[i]);
	return sqrt(s);
}

double *fref_stored_dense(pspace_store *s, const char *name, size_t d)
{
	pspace_mat *m = NULL;
	double *D = malloc(d * d * sizeof(*D));

	assert_non_null(D);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_dim(m), d);
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	pspace_mat_free(m);
	return D;
}

double fref_stored_relerr(pspace_store *s, const char *name, const double *F, size_t d)
{
	double *D = fref_stored_dense(s, name, d), e = fref_dist(D, F, d * d) / fref_norm(F, d * d);

	free(D);
	return e;
}

void fref_mm(const double *F, size_t d, size_t k, const double *X, double *Y)
{
	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < d; i++) {
			double s = 0;

			for (size_t l = 0; l < d; l++)
				s += F[i * d + l] * X[j * d + l];
			Y[j * d + i] = s;
		}
}

void fref_solve(const double *F, size_t d, double l, size_t k, const double *B, double *X)
{
	double *A = malloc(d * d * sizeof(*A));
	lapack_int *ipiv = malloc(d * sizeof(*ipiv));

	assert_non_null(A);
	assert_non_null(ipiv);
	memcpy(A, F, d * d * sizeof(*A));
	for (size_t i = 0; i < d; i++)
		A[i * d + i] += l;
	memcpy(X, B, k * d * sizeof(*X));
	/* Row-major B (k x d) is column-major d x k; A is symmetric. */
	assert_int_equal(LAPACKE_dgesv(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)k, A,
	                               (lapack_int)d, ipiv, X, (lapack_int)d),
	                 0);
	free(ipiv);
	free(A);
}

void fref_eigh(const double *F, size_t d, double *w, double *V)
{
	double *A = malloc(d * d * sizeof(*A)), *wa = malloc(d * sizeof(*wa));

	assert_non_null(A);
	assert_non_null(wa);
	memcpy(A, F, d * d * sizeof(*A));
	assert_int_equal(
	    LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)d, A, (lapack_int)d, wa), 0);
	/* Ascending, eigenvectors in the columns (column-major): reverse. */
	for (size_t i = 0; i < d; i++) {
		w[i] = wa[d - 1 - i];
		if (V)
			memcpy(V + i * d, A + (d - 1 - i) * d, d * sizeof(*V));
	}
	free(wa);
	free(A);
}

static void from_eig(const double *w, const double *V, size_t d, double *P)
{
	memset(P, 0, d * d * sizeof(*P));
	for (size_t t = 0; t < d; t++)
		if (w[t] != 0)
			for (size_t i = 0; i < d; i++)
				for (size_t j = 0; j < d; j++)
					P[i * d + j] += w[t] * V[t * d + i] * V[t * d + j];
}

void fref_pow(const double *F, size_t d, double p, double l, double *P)
{
	double *w = malloc(d * sizeof(*w)), *V = malloc(d * d * sizeof(*V));

	assert_non_null(w);
	assert_non_null(V);
	fref_eigh(F, d, w, V);
	for (size_t i = 0; i < d; i++) {
		double lam = w[i] + l;

		if (p > 0 && lam <= 1e-12 * (fabs(w[0]) + fabs(l)))
			w[i] = 0;
		else
			w[i] = pow(lam, p);
	}
	from_eig(w, V, d, P);
	free(V);
	free(w);
}

void fref_pinv(const double *F, size_t d, double thr, double *P)
{
	double *w = malloc(d * sizeof(*w)), *V = malloc(d * d * sizeof(*V));
	double tiny;

	assert_non_null(w);
	assert_non_null(V);
	fref_eigh(F, d, w, V);
	tiny = 1e-10 * fabs(w[0]);
	for (size_t i = 0; i < d; i++)
		w[i] = w[i] > thr && w[i] > tiny ? 1.0 / w[i] : 0.0;
	from_eig(w, V, d, P);
	free(V);
	free(w);
}

/* ---- checks -------------------------------------------------------------------------- */

void fref_check_gemm(pspace_mat *m, const double *F, size_t d, double tol)
{
	static const double ab[][2] = {{0.5, 0.0}, {-1.5, 0.25}, {2.0, 1.0}, {0.0, -2.0}};
	const size_t ld = d + 2, k = 3;
	double *X = fx_randv(k * ld, 111), *Y0 = fx_randv(k * ld, 112);
	double *Y = malloc(k * ld * sizeof(*Y)), *Xc = malloc(k * d * sizeof(*Xc));
	double *R = malloc(k * d * sizeof(*R)), *got = malloc(k * d * sizeof(*got));
	double *want = malloc(k * d * sizeof(*want));

	assert_non_null(Y);
	assert_non_null(Xc);
	assert_non_null(R);
	assert_non_null(got);
	assert_non_null(want);
	for (size_t j = 0; j < k; j++)
		memcpy(Xc + j * d, X + j * ld, d * sizeof(*Xc));
	fref_mm(F, d, k, Xc, R);
	for (size_t t = 0; t < sizeof(ab) / sizeof(ab[0]); t++) {
		double alpha = ab[t][0], beta = ab[t][1];

		/* beta = 0: Y holds NaN, which must not reach the result. */
		for (size_t i = 0; i < k * ld; i++)
			Y[i] = beta == 0.0 ? NAN : Y0[i];
		assert_int_equal(pspace_mat_mm(m, NULL, (uint32_t)k, alpha, X, ld, beta, Y, ld), 0);
		for (size_t j = 0; j < k; j++) {
			for (size_t i = 0; i < d; i++) {
				double y0 = beta == 0.0 ? 0.0 : Y0[j * ld + i];

				got[j * d + i] = Y[j * ld + i];
				want[j * d + i] = alpha * R[j * d + i] + beta * y0;
			}
			for (size_t i = d; i < ld; i++) /* padding untouched */
				assert_true(beta == 0.0 ? isnan(Y[j * ld + i])
				                        : Y[j * ld + i] == Y0[j * ld + i]);
		}
		if (alpha == 0.0) /* M not applied: exactly beta Y */
			for (size_t i = 0; i < k * d; i++)
				assert_true(got[i] == want[i]);
		else
			assert_true(fx_relerr(got, want, k * d) < tol);
	}
	free(want);
	free(got);
	free(R);
	free(Xc);
	free(Y);
	free(Y0);
	free(X);
}

void fref_check_ops(pspace_mat *m, const double *F, size_t d, double tol)
{
	const size_t ld = d + 3, k = 3;
	double *X = fx_randv(k * ld, 101), *Y0 = fx_randv(k * ld, 102);
	double *Y = malloc(k * ld * sizeof(*Y)), *Xc = malloc(k * d * sizeof(*Xc));
	double *R = malloc(k * d * sizeof(*R)), *got = malloc(k * d * sizeof(*got));
	double *G = malloc(d * (d + 2) * sizeof(*G)), *dg = malloc(d * sizeof(*dg));
	double vt[3], want, s, fro = 0;

	assert_non_null(Y);
	assert_non_null(Xc);
	assert_non_null(R);
	assert_non_null(got);
	assert_non_null(G);
	assert_non_null(dg);
	for (size_t j = 0; j < k; j++)
		memcpy(Xc + j * d, X + j * ld, d * sizeof(*Xc));
	fref_mm(F, d, k, Xc, R);

	/* mm accumulates: Y = Y0 + 0.5 M X. */
	memcpy(Y, Y0, k * ld * sizeof(*Y));
	assert_int_equal(pspace_mat_mm(m, NULL, (uint32_t)k, 0.5, X, ld, 1.0, Y, ld), 0);
	for (size_t j = 0; j < k; j++)
		for (size_t i = 0; i < d; i++) {
			got[j * d + i] = Y[j * ld + i] - Y0[j * ld + i];
			R[j * d + i] *= 0.5;
		}
	assert_true(fx_relerr(got, R, k * d) < tol);
	for (size_t j = 0; j < k; j++) /* padding untouched */
		for (size_t i = d; i < ld; i++)
			assert_true(Y[j * ld + i] == Y0[j * ld + i]);
	fref_check_gemm(m, F, d, tol);
	/* mv */
	fref_mm(F, d, 1, Xc, R);
	assert_int_equal(pspace_mat_mv(m, NULL, Xc, got), 0);
	assert_true(fx_relerr(got, R, d) < tol);
	/* vTMv and batched vTMv */
	fref_mm(F, d, k, Xc, R);
	assert_int_equal(pspace_mat_vtmv_batch(m, NULL, (uint32_t)k, X, ld, vt), 0);
	for (size_t j = 0; j < k; j++) {
		want = 0;
		for (size_t i = 0; i < d; i++)
			want += Xc[j * d + i] * R[j * d + i];
		assert_true(fabs(vt[j] - want) <= tol * (fabs(want) + 1e-300) + 1e-14);
	}
	assert_int_equal(pspace_mat_vtmv(m, NULL, Xc, &s), 0);
	assert_true(fabs(s - vt[0]) <= tol * fabs(vt[0]) + 1e-14);
	/* trace, diag, Frobenius */
	want = 0;
	for (size_t i = 0; i < d; i++) {
		want += F[i * d + i];
		for (size_t j = 0; j < d; j++)
			fro += F[i * d + j] * F[i * d + j];
	}
	assert_int_equal(pspace_mat_trace(m, NULL, &s), 0);
	assert_true(fabs(s - want) <= tol * fabs(want) + 1e-14);
	assert_int_equal(pspace_mat_diag(m, NULL, dg), 0);
	for (size_t i = 0; i < d; i++)
		R[i] = F[i * d + i];
	assert_true(fx_relerr(dg, R, d) < tol);
	assert_int_equal(pspace_mat_frobenius(m, NULL, &s), 0);
	assert_true(fabs(s - sqrt(fro)) <= tol * sqrt(fro) + 1e-14);
	/* dense with ld = d + 2 */
	for (size_t i = 0; i < d * (d + 2); i++)
		G[i] = NAN;
	assert_int_equal(pspace_mat_dense(m, NULL, G, d + 2), 0);
	for (size_t i = 0; i < d; i++)
		memmove(G + i * d, G + i * (d + 2), d * sizeof(*G));
	assert_true(fx_relerr(G, F, d * d) < tol);

	free(dg);
	free(G);
	free(got);
	free(R);
	free(Xc);
	free(Y);
	free(Y0);
	free(X);
}

void fref_check_dense(pspace_mat *m, const double *F, size_t d, double tol)
{
	double *G = malloc(d * d * sizeof(*G));

	assert_non_null(G);
	assert_int_equal(pspace_mat_dense(m, NULL, G, d), 0);
	assert_true(fx_relerr(G, F, d * d) <= tol);
	free(G);
}

void fref_check_solve(pspace_mat *m, const double *F, size_t d, double damping, double tol)
{
	const size_t k = 4, ld = d + 1;
	double *B = fx_randv(k * d, 201), *X = malloc(k * ld * sizeof(*X));
	double *R = malloc(k * d * sizeof(*R)), *got = malloc(k * d * sizeof(*got));

	assert_non_null(X);
	assert_non_null(R);
	assert_non_null(got);
	fref_solve(F, d, damping, k, B, R);
	for (uint32_t kk = 1; kk <= k; kk += (uint32_t)k - 1) {
		assert_int_equal(pspace_mat_solve(m, NULL, damping, kk, B, d, X, ld), 0);
		for (size_t j = 0; j < kk; j++)
			memcpy(got + j * d, X + j * ld, d * sizeof(*got));
		assert_true(fx_relerr(got, R, kk * d) < tol);
	}
	free(got);
	free(R);
	free(X);
	free(B);
}

void fref_check_eig(pspace_mat *m, const double *F, size_t d, uint32_t kmax, double tol)
{
	double *w = malloc(d * sizeof(*w)), *got = malloc(d * sizeof(*got));
	double *V = malloc((size_t)kmax * (d + 1) * sizeof(*V)), *FV = malloc(d * sizeof(*FV));
	double scale;
	uint32_t ks[2] = {1, kmax};

	assert_non_null(w);
	assert_non_null(got);
	assert_non_null(V);
	assert_non_null(FV);
	fref_eigh(F, d, w, NULL);
	scale = fabs(w[0]) > fabs(w[d - 1]) ? fabs(w[0]) : fabs(w[d - 1]);
	assert_int_equal(pspace_mat_eigvals(m, NULL, got), 0);
	for (size_t i = 0; i < d; i++)
		assert_true(fabs(got[i] - w[i]) <= tol * scale);
	for (int c = 0; c < 2; c++) {
		uint32_t k = ks[c];

		assert_int_equal(pspace_mat_eig(m, NULL, k, got, NULL, 0), 0);
		for (uint32_t i = 0; i < k; i++)
			assert_true(fabs(got[i] - w[i]) <= tol * scale);
		assert_int_equal(pspace_mat_eig(m, NULL, k, got, V, d + 1), 0);
		for (uint32_t i = 0; i < k; i++) {
			const double *v = V + (size_t)i * (d + 1);
			double r = 0;

			assert_true(fabs(got[i] - w[i]) <= tol * scale);
			fref_mm(F, d, 1, v, FV);
			for (size_t j = 0; j < d; j++)
				r += (FV[j] - got[i] * v[j]) * (FV[j] - got[i] * v[j]);
			assert_true(sqrt(r) <= tol * scale);
			for (uint32_t i2 = 0; i2 <= i; i2++) {
				double dot = 0;

				for (size_t j = 0; j < d; j++)
					dot += v[j] * V[(size_t)i2 * (d + 1) + j];
				assert_true(fabs(dot - (i2 == i)) < 1e-10);
			}
		}
	}
	free(FV);
	free(V);
	free(got);
	free(w);
}

pspace_mat *fref_check_roundtrip(pspace_mat *m, fx_store *t, const char *name, double damping,
                                 int reopen)
{
	size_t d = pspace_mat_dim(m), k = 3;
	double *X = fx_randv(k * d, 301);
	double *Y1 = calloc(k * d, sizeof(double)), *Y2 = calloc(k * d, sizeof(double));
	double *G1 = malloc(d * d * sizeof(double)), *G2 = malloc(d * d * sizeof(double));
	double a[8], b[8];
	pspace_mat *o = NULL;

	assert_non_null(Y1);
	assert_non_null(Y2);
	assert_non_null(G1);
	assert_non_null(G2);
	assert_int_equal(pspace_mat_save(m, t->s, name), 0);
	assert_int_equal(pspace_mat_save(m, t->s, name), PSPACE_EEXIST);
	if (reopen)
		fx_store_reopen(t);
	assert_int_equal(pspace_mat_open(&o, t->s, name), 0);
	assert_int_equal(pspace_mat_kind(o), pspace_mat_kind(m));
	assert_int_equal(pspace_mat_dim(o), d);
	assert_true(pspace_layout_equal(pspace_mat_layout(o), pspace_mat_layout(m)));
	assert_string_equal(pspace_mat_name(o), name);

	assert_int_equal(pspace_mat_mm(m, NULL, (uint32_t)k, 1.0, X, d, 0.0, Y1, d), 0);
	assert_int_equal(pspace_mat_mm(o, NULL, (uint32_t)k, 1.0, X, d, 0.0, Y2, d), 0);
	assert_memory_equal(Y1, Y2, k * d * sizeof(double));
	assert_int_equal(pspace_mat_vtmv_batch(m, NULL, (uint32_t)k, X, d, a), 0);
	assert_int_equal(pspace_mat_vtmv_batch(o, NULL, (uint32_t)k, X, d, b), 0);
	assert_memory_equal(a, b, k * sizeof(double));
	assert_int_equal(pspace_mat_trace(m, NULL, a), 0);
	assert_int_equal(pspace_mat_trace(o, NULL, b), 0);
	assert_int_equal(pspace_mat_frobenius(m, NULL, a + 1), 0);
	assert_int_equal(pspace_mat_frobenius(o, NULL, b + 1), 0);
	assert_memory_equal(a, b, 2 * sizeof(double));
	assert_int_equal(pspace_mat_diag(m, NULL, Y1), 0);
	assert_int_equal(pspace_mat_diag(o, NULL, Y2), 0);
	assert_memory_equal(Y1, Y2, d * sizeof(double));
	assert_int_equal(pspace_mat_dense(m, NULL, G1, d), 0);
	assert_int_equal(pspace_mat_dense(o, NULL, G2, d), 0);
	assert_memory_equal(G1, G2, d * d * sizeof(double));
	if (damping >= 0) {
		assert_int_equal(pspace_mat_solve(m, NULL, damping, (uint32_t)k, X, d, Y1, d), 0);
		assert_int_equal(pspace_mat_solve(o, NULL, damping, (uint32_t)k, X, d, Y2, d), 0);
		assert_memory_equal(Y1, Y2, k * d * sizeof(double));
	}
	free(G2);
	free(G1);
	free(Y2);
	free(Y1);
	free(X);
	return o;
}

uint32_t fref_check_precond(pspace_mat *m, fx_store *t, const char *name, const double *F, size_t d,
                            double damping)
{
	const size_t k = 2;
	pspace_write_opts wo;
	pspace_solve_opts so;
	pspace_mat *dense = NULL;
	pspace_op *od, *op;
	double *B = fx_randv(k * d, 401), *X = malloc(k * d * sizeof(double));
	double *R = malloc(k * d * sizeof(double));
	uint32_t it;

	assert_non_null(X);
	assert_non_null(R);
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	wo.tile = 16;
	if (pspace_matrix_info_get(&(pspace_matrix_info){0}, t->s, name) != 0)
		assert_int_equal(pspace_dense_write(t->s, name, pspace_mat_layout(m), d, F, d, &wo),
		                 0);
	assert_int_equal(pspace_mat_open(&dense, t->s, name), 0);
	assert_int_equal(pspace_mat_solve(dense, NULL, damping, (uint32_t)k, B, d, R, d), 0);
	assert_int_equal(pspace_op_mat(&od, dense), 0);
	assert_int_equal(pspace_op_mat(&op, m), 0);
	pspace_solve_opts_default(&so);
	so.method = PSPACE_SOLVE_CG;
	so.tol = 1e-11;
	so.max_iter = 10 * (uint32_t)d;
	so.precond = op;
	assert_int_equal(pspace_op_solve(od, NULL, damping, (uint32_t)k, B, d, &so, X, d), 0);
	assert_true(so.residual <= 1e-11);
	assert_true(fx_relerr(X, R, k * d) < 1e-8);
	it = so.iterations;
	pspace_op_free(op);
	pspace_op_free(od);
	pspace_mat_free(dense);
	free(R);
	free(X);
	free(B);
	return it;
}
