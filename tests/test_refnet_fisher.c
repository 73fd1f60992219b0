/*
 * Tests of the reference networks' Fisher variants (src/build/refnet*.c,
 * README, build), each against its definition computed here with the logit
 * Jacobian J_f by central finite differences of pspace_refnet_forward and
 * p = softmax: classif_logits (1/n) sum J^T (diag p - p p^T) J, regression
 * (1/n) sum J^T J, empirical (1/n) sum g g^T with g the finite difference
 * of log softmax at the true label, and the Monte-Carlo estimate against
 * classif_logits within a multiple of its exact standard deviation.
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

#include "fixture.h"
#include "fref.h"
#include "pspace.h"
#include "rref.h"

/* J (C x d) of example x by central differences of pspace_refnet_forward. */
static void fd_jacobian(pspace_refnet *net, uint64_t x, double *J)
{
	uint64_t d = rref_dim(net);
	uint32_t C = rref_nclasses(net);
	double *t = malloc(d * sizeof(*t)), *fp = malloc(C * sizeof(*fp)),
	       *fm = malloc(C * sizeof(*fm));

	assert_true(t && fp && fm);
	memcpy(t, pspace_refnet_params(net), d * sizeof(*t));
	for (uint64_t p = 0; p < d; p++) {
		rref_fd_logits(net, t, x, p, fp, fm);
		for (uint32_t c = 0; c < C; c++)
			J[c * d + p] = (fp[c] - fm[c]) / (2 * RREF_FD_H);
	}
	free(t);
	free(fp);
	free(fm);
}

static void softmax(const double *z, uint32_t C, double *p)
{
	double mx = z[0], s = 0;

	for (uint32_t c = 1; c < C; c++)
		mx = fmax(mx, z[c]);
	for (uint32_t c = 0; c < C; c++)
		s += p[c] = exp(z[c] - mx);
	for (uint32_t c = 0; c < C; c++)
		p[c] /= s;
}

/* The finite-difference J_f and p of examples 0..n-1: J (n, C, d), P (n, C). */
static void fd_all(pspace_refnet *net, uint64_t n, double **J, double **P)
{
	uint64_t d = rref_dim(net);
	uint32_t C = rref_nclasses(net);
	double z[16];

	*J = malloc(n * C * d * sizeof(**J));
	*P = malloc(n * C * sizeof(**P));
	assert_true(*J && *P);
	for (uint64_t x = 0; x < n; x++) {
		fd_jacobian(net, x, *J + x * C * d);
		assert_int_equal(pspace_refnet_forward(net, NULL, x, z), 0);
		softmax(z, C, *P + x * C);
	}
}

/* (1/n) sum_x J_x^T M_x J_x with M_x (C x C). */
static void add_jmj(const double *Jx, const double *M, uint32_t C, uint64_t d, double n, double *F)
{
	for (uint32_t a = 0; a < C; a++)
		for (uint32_t b = 0; b < C; b++) {
			double m = M[a * C + b] / n;

			if (m == 0)
				continue;
			for (uint64_t i = 0; i < d; i++)
				for (uint64_t j = 0; j < d; j++)
					F[i * d + j] += m * Jx[a * d + i] * Jx[b * d + j];
		}
}

static double *classif_ref(const double *J, const double *P, uint64_t n, uint32_t C, uint64_t d)
{
	double *F = calloc(d * d, sizeof(*F)), M[256];

	assert_non_null(F);
	for (uint64_t x = 0; x < n; x++) {
		const double *p = P + x * C;

		for (uint32_t a = 0; a < C; a++)
			for (uint32_t b = 0; b < C; b++)
				M[a * C + b] = (a == b ? p[a] : 0) - p[a] * p[b];
		add_jmj(J + x * C * d, M, C, d, (double)n, F);
	}
	return F;
}

static const char *const vspecs[][2] = {
    {"mlp:5,8,4", "tanh"},
    {"mlp:4,6,5,3", "relu"},
    {"cnn:2x5x5,3,4", "tanh"},
};

static void test_refnet_classif_logits(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint64_t n = 4;
		pspace_refnet *net = rref_make(vspecs[i][0], vspecs[i][1], n,
		                               PSPACE_VARIANT_CLASSIF_LOGITS, 0, 21 + i, 0);
		uint64_t d = rref_dim(net);
		uint32_t C = rref_nclasses(net), K;
		double *R = rref_rows(net, 0, n, &K), *J, *P, *F, *Fr;

		assert_int_equal(K, C - 1);
		fd_all(net, n, &J, &P);
		F = fref_rows_gram(R, (size_t)K * n, d, (double)n);
		Fr = classif_ref(J, P, n, C, d);
		if (!(fx_relerr(F, Fr, d * d) < 1e-6))
			fail_msg("%s: classif_logits F relative error %g", vspecs[i][0],
			         fx_relerr(F, Fr, d * d));
		free(R);
		free(J);
		free(P);
		free(F);
		free(Fr);
		pspace_refnet_free(net);
	}
}

/* Peaked probabilities (large logits): the factor stays exact. */
static void test_refnet_classif_peaked(void **state)
{
	uint64_t n = 3;
	pspace_refnet *net =
	    rref_make("mlp:4,5,6", "tanh", n, PSPACE_VARIANT_CLASSIF_LOGITS, 0, 5, 0);
	const pspace_layout *l = pspace_refnet_layout(net);
	const pspace_layer *y = pspace_layout_layer(l, 1);
	uint64_t d = rref_dim(net);
	uint32_t C = 6, K;
	double *th = pspace_refnet_params(net), *R, *J, *P, *F, *Fr, pmax = 0;

	(void)state;
	for (uint64_t i = 0; i < y->size; i++)
		th[y->offset + i] *= 40; /* logits spread over ~ +-30 */
	R = rref_rows(net, 0, n, &K);
	fd_all(net, n, &J, &P);
	for (uint64_t i = 0; i < n * C; i++)
		pmax = fmax(pmax, P[i]);
	assert_true(pmax > 0.999);
	F = fref_rows_gram(R, (size_t)K * n, d, (double)n);
	Fr = classif_ref(J, P, n, C, d);
	if (!(fx_relerr(F, Fr, d * d) < 1e-5))
		fail_msg("peaked classif_logits F relative error %g", fx_relerr(F, Fr, d * d));
	free(R);
	free(J);
	free(P);
	free(F);
	free(Fr);
	pspace_refnet_free(net);
}

static void test_refnet_regression(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint64_t n = 3;
		pspace_refnet *net = rref_make(vspecs[i][0], vspecs[i][1], n,
		                               PSPACE_VARIANT_REGRESSION, 0, 31 + i, 0);
		uint64_t d = rref_dim(net);
		uint32_t C = rref_nclasses(net), K;
		double *R = rref_rows(net, 0, n, &K), *J, *P, *F, *Fr = calloc(d * d, sizeof(*Fr));
		double I[256] = {0};

		assert_non_null(Fr);
		assert_int_equal(K, C);
		for (uint32_t c = 0; c < C; c++)
			I[c * C + c] = 1;
		fd_all(net, n, &J, &P);
		for (uint64_t x = 0; x < n; x++)
			add_jmj(J + x * C * d, I, C, d, (double)n, Fr);
		F = fref_rows_gram(R, (size_t)K * n, d, (double)n);
		if (!(fx_relerr(F, Fr, d * d) < 1e-6))
			fail_msg("%s: regression F relative error %g", vspecs[i][0],
			         fx_relerr(F, Fr, d * d));
		free(R);
		free(J);
		free(P);
		free(F);
		free(Fr);
		pspace_refnet_free(net);
	}
}

static void test_refnet_empirical(void **state)
{
	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint64_t n = 12;
		pspace_refnet *net = rref_make(vspecs[i][0], vspecs[i][1], n,
		                               PSPACE_VARIANT_EMPIRICAL, 0, 41 + i, 0);
		uint64_t d = rref_dim(net);
		uint32_t C = rref_nclasses(net), K, seen = 0;
		double *R = rref_rows(net, 0, n, &K), *G = malloc(n * d * sizeof(*G));
		double *t = malloc(d * sizeof(*t)), *F, *Fr, zp[16], zm[16], pp[16], pm[16];

		assert_true(G && t);
		assert_int_equal(K, 1);
		memcpy(t, pspace_refnet_params(net), d * sizeof(*t));
		for (uint64_t x = 0; x < n; x++) {
			uint32_t y;

			assert_int_equal(pspace_refnet_label(&y, net, x), 0);
			assert_true(y < C);
			seen |= 1u << y;
			for (uint64_t p = 0; p < d; p++) {
				rref_fd_logits(net, t, x, p, zp, zm);
				softmax(zp, C, pp);
				softmax(zm, C, pm);
				G[x * d + p] = (log(pp[y]) - log(pm[y])) / (2 * RREF_FD_H);
			}
		}
		assert_true((seen & (seen - 1)) != 0); /* labels vary */

		F = fref_rows_gram(R, n, d, (double)n);
		Fr = fref_rows_gram(G, n, d, (double)n);
		if (!(fx_relerr(F, Fr, d * d) < 1e-6))
			fail_msg("%s: empirical F relative error %g", vspecs[i][0],
			         fx_relerr(F, Fr, d * d));
		free(R);
		free(G);
		free(t);
		free(F);
		free(Fr);
		pspace_refnet_free(net);
	}
}

/*
 * MC with K samples: F_mc = (1/n) sum_x (1/K) sum_k g g^T, g = J^T (e_y - p),
 * y ~ p, is unbiased for F = classif_logits, with
 * E ||F_mc - F||^2 = (1/n^2) sum_x (1/K) (sum_y p_y ||g_y||^4 - ||F_x||^2)
 * computed exactly here. The test holds ||F_mc - F|| < 4 sd (Chebyshev:
 * a wrong-free estimator fails with probability < 1/16; the seed is
 * fixed, so the outcome is reproducible) and < 10% relative.
 */
static void test_refnet_mc(void **state)
{
	uint64_t n = 2;
	uint32_t Ks = 3000, K;
	pspace_refnet *net = rref_make("mlp:4,6,4", "tanh", n, PSPACE_VARIANT_MC, Ks, 51, 0);
	uint64_t d = rref_dim(net);
	uint32_t C = rref_nclasses(net);
	double *R = rref_rows(net, 0, n, &K), *J, *P, *F, *Fr, var = 0, err, g[128];

	(void)state;
	assert_int_equal(K, Ks);
	fd_all(net, n, &J, &P);
	F = fref_rows_gram(R, (size_t)K * n, d, (double)n);
	Fr = classif_ref(J, P, n, C, d);
	for (uint64_t x = 0; x < n; x++) {
		double *Fx = classif_ref(J + x * C * d, P + x * C, 1, C, d), e4 = 0, f2 = 0;

		for (uint32_t y = 0; y < C; y++) {
			double g2 = 0;

			for (uint64_t i = 0; i < d; i++) {
				g[i] = 0;
				for (uint32_t c = 0; c < C; c++)
					g[i] += J[(x * C + c) * d + i] * ((c == y) - P[x * C + c]);
				g2 += g[i] * g[i];
			}
			e4 += P[x * C + y] * g2 * g2;
		}
		for (uint64_t i = 0; i < d * d; i++)
			f2 += Fx[i] * Fx[i];
		var += (e4 - f2) / Ks / (double)(n * n);
		free(Fx);
	}
	err = fx_relerr(F, Fr, d * d);
	{
		double nrm = 0;

		for (uint64_t i = 0; i < d * d; i++)
			nrm += Fr[i] * Fr[i];
		if (!(err * sqrt(nrm) < 4 * sqrt(var) && err < 0.1))
			fail_msg("MC F: error %g (relative %g), sd %g", err * sqrt(nrm), err,
			         sqrt(var));
	}
	free(R);
	free(J);
	free(P);
	free(F);
	free(Fr);
	pspace_refnet_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refnet_classif_logits),
	    cmocka_unit_test(test_refnet_classif_peaked),
	    cmocka_unit_test(test_refnet_regression),
	    cmocka_unit_test(test_refnet_empirical),
	    cmocka_unit_test(test_refnet_mc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
