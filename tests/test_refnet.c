/*
 * Tests of the reference networks (src/build/refnet*.c; README, build): layouts,
 * errors, the forward pass, the Jacobian rows, layer tensors and
 * batchings. The Fisher variants are in test_refnet_fisher.c.
 *
 * References computed here, independently of the code under test:
 * - a naive float64 forward pass written from the layout alone (PyTorch
 *   conventions: conv2d weight (out, in, 3, 3), no padding, flatten (C, H, W));
 * - the rows against central finite differences of pspace_refnet_forward.
 * Layer tensors are checked against the Jacobian rows, batchings against
 * each other byte for byte.
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

/*
 * Logits of a network from its layout, parameters and input (C0, H, W) or
 * (IN), in plain loops. *margin gets min |pre-activation| over the
 * activated units (how far relu is from a kink).
 */
static void ref_forward(const pspace_layout *lay, const double *theta, const double *input,
                        uint64_t c0, uint64_t h, uint64_t w, int relu, double *logits,
                        double *margin)
{
	size_t nl = pspace_layout_nlayers(lay);
	size_t cap = c0 * h * w;
	double *cur, *nxt;

	/* every output has at most shape[0] * H * W values */
	for (size_t l = 0; l < nl; l++)
		if (pspace_layout_layer(lay, l)->shape[0] * h * w > cap)
			cap = pspace_layout_layer(lay, l)->shape[0] * h * w;
	cur = malloc(cap * sizeof(*cur));
	nxt = malloc(cap * sizeof(*nxt));
	assert_true(cur && nxt);
	memcpy(cur, input, c0 * h * w * sizeof(*cur));
	*margin = INFINITY;
	for (size_t l = 0; l < nl; l++) {
		const pspace_layer *y = pspace_layout_layer(lay, l);
		const double *W = theta + y->offset, *b = W + y->weight_size;
		uint64_t out = y->shape[0], m;

		if (y->kind == PSPACE_LAYER_CONV2D) {
			uint64_t cin = y->shape[1], oh = h - 2, ow = w - 2;

			assert_int_equal(cin, c0);
			for (uint64_t o = 0; o < out; o++)
				for (uint64_t r = 0; r < oh; r++)
					for (uint64_t s = 0; s < ow; s++) {
						double z = b[o];

						for (uint64_t c = 0; c < cin; c++)
							for (uint64_t ky = 0; ky < 3; ky++)
								for (uint64_t kx = 0; kx < 3; kx++)
									z += W[((o * cin + c) * 3 +
									        ky) *
									           3 +
									       kx] *
									     cur[(c * h + r + ky) *
									             w +
									         s + kx];
						nxt[(o * oh + r) * ow + s] = z;
					}
			c0 = out;
			h = oh;
			w = ow;
			m = out * oh * ow;
		} else {
			uint64_t in = y->shape[1];

			assert_int_equal(in, c0 * h * w);
			for (uint64_t o = 0; o < out; o++) {
				double z = b[o];

				for (uint64_t j = 0; j < in; j++)
					z += W[o * in + j] * cur[j];
				nxt[o] = z;
			}
			c0 = out;
			h = w = 1;
			m = out;
		}
		if (l + 1 < nl)
			for (uint64_t i = 0; i < m; i++) {
				*margin = fmin(*margin, fabs(nxt[i]));
				nxt[i] = relu ? fmax(nxt[i], 0) : tanh(nxt[i]);
			}
		{
			double *t = cur;

			cur = nxt;
			nxt = t;
		}
	}
	memcpy(logits, cur, c0 * sizeof(*logits));
	free(cur);
	free(nxt);
}

/* The input image of example x, recovered from the first layer's acts. */
static void input_of(pspace_refnet *net, uint64_t x, int cnn, uint64_t c0, uint64_t h, uint64_t w,
                     double *u)
{
	pspace_layer_source src;
	const pspace_layout *lay = pspace_refnet_layout(net);
	size_t nl = pspace_layout_nlayers(lay);
	pspace_layer_batch *b = calloc(nl, sizeof(*b));
	uint64_t oh = h - 2, ow = w - 2, in = c0 * 9;

	assert_non_null(b);
	assert_int_equal(pspace_refnet_layers(&src, net), 0);
	assert_int_equal(src.read(src.ud, x, 1, b), 0);
	if (!cnn) {
		assert_int_equal(b[0].T, 1);
		memcpy(u, b[0].acts, c0 * sizeof(*u));
		free(b);
		return;
	}
	assert_int_equal(b[0].T, oh * ow);
	for (uint64_t c = 0; c < c0; c++)
		for (uint64_t r = 0; r < h; r++)
			for (uint64_t s = 0; s < w; s++) {
				uint64_t orow = r < oh ? r : oh - 1, ocol = s < ow ? s : ow - 1;
				uint64_t t = orow * ow + ocol, k = (r - orow) * 3 + (s - ocol);

				u[(c * h + r) * w + s] = b[0].acts[t * in + c * 9 + k];
			}
	/* every patch must be the im2col of that image, channel-major */
	for (uint64_t t = 0; t < oh * ow; t++)
		for (uint64_t c = 0; c < c0; c++)
			for (uint64_t k = 0; k < 9; k++) {
				uint64_t r = t / ow + k / 3, s = t % ow + k % 3;

				assert_true(b[0].acts[t * in + c * 9 + k] ==
				            u[(c * h + r) * w + s]);
			}
	free(b);
}

static void check_layer(const pspace_layer *y, const char *name, pspace_layer_kind kind,
                        const char *shape, uint64_t offset)
{
	char s[64] = "";

	assert_non_null(y);
	assert_string_equal(y->name, name);
	assert_int_equal(y->kind, kind);
	for (int i = 0; i < y->ndim; i++)
		snprintf(s + strlen(s), sizeof(s) - strlen(s), "%s%llu", i ? "x" : "",
		         (unsigned long long)y->shape[i]);
	assert_string_equal(s, shape);
	assert_int_equal(y->bias, 1);
	assert_int_equal(y->offset, offset);
}

static void expect_einval(const char *spec, const char *act, uint64_t n, pspace_variant v,
                          uint32_t mc, const char *detail)
{
	pspace_refnet_opts o = {
	    .spec = spec, .activation = act, .examples = n, .variant = v, .mc_samples = mc};
	pspace_refnet *net = (pspace_refnet *)&o;

	assert_int_equal(pspace_refnet_create(&net, &o), PSPACE_EINVAL);
	assert_null(net);
	if (!strstr(pspace_errdetail(), detail))
		fail_msg("'%s': detail '%s' lacks '%s'", spec, pspace_errdetail(), detail);
}

typedef struct netcase {
	const char *spec;
	const char *act;
	int cnn;
	uint64_t c0, h, w; /* input (IN, 1, 1) for the MLP */
} netcase;

static const netcase cases[] = {
    {"mlp:6,9,5,4", "tanh", 0, 6, 1, 1},
    {"mlp:6,9,5,4", "relu", 0, 6, 1, 1},
    {"cnn:2x6x5,3,4,3", "tanh", 1, 2, 6, 5},
    {"cnn:2x7x6,3,4", "relu", 1, 2, 7, 6},
    /* large enough that every product takes the BLIS path */
    {"mlp:200,180,5", "tanh", 0, 200, 1, 1},
    {"cnn:3x14x14,12,8,4", "relu", 1, 3, 14, 14},
};

/* Logits against the independent forward pass; @return the relu margin. */
static double check_forward(pspace_refnet *net, const netcase *c, uint64_t x)
{
	uint32_t C = rref_nclasses(net);
	double *u = malloc(c->c0 * c->h * c->w * sizeof(*u)), got[16], want[16], margin;

	assert_non_null(u);
	input_of(net, x, c->cnn, c->c0, c->h, c->w, u);
	ref_forward(pspace_refnet_layout(net), pspace_refnet_params(net), u, c->c0, c->h, c->w,
	            strcmp(c->act, "relu") == 0, want, &margin);
	assert_int_equal(pspace_refnet_forward(net, NULL, x, got), 0);
	if (fx_relerr(got, want, C) > 1e-12)
		fail_msg("%s: logits differ from the reference forward pass (%g)", c->spec,
		         fx_relerr(got, want, C));
	free(u);
	return margin;
}

/* Per-example gradients from the layer tensors reproduce the Jacobian rows. */
static void check_layers_rows(pspace_refnet *net, uint64_t n)
{
	const pspace_layout *lay = pspace_refnet_layout(net);
	size_t nl = pspace_layout_nlayers(lay);
	uint64_t d = rref_dim(net);
	pspace_layer_source src;
	pspace_layer_batch *b = calloc(nl, sizeof(*b));
	uint32_t K;
	double *R = rref_rows(net, 0, n, &K), e2 = 0, w2 = 0;

	assert_non_null(b);
	assert_int_equal(pspace_refnet_layers(&src, net), 0);
	assert_int_equal(src.outputs, K);
	assert_int_equal(src.examples, n);
	assert_int_equal(src.read(src.ud, 0, n, b), 0);
	for (size_t l = 0; l < nl; l++) {
		const pspace_layer *y = pspace_layout_layer(lay, l);
		uint64_t out = y->shape[0], in = y->weight_size / out, T = b[l].T;

		assert_null(b[l].ids);
		assert_int_equal(T, y->kind == PSPACE_LAYER_LINEAR ? 1 : T);
		for (uint32_t k = 0; k < K; k++)
			for (uint64_t x = 0; x < n; x++)
				for (uint64_t o = 0; o < out; o++)
					for (uint64_t j = 0; j <= in; j++) {
						double s = 0, r;

						for (uint64_t t = 0; t < T; t++)
							s +=
							    b[l].grads[((k * n + x) * T + t) * out +
							               o] *
							    (j < in
							         ? b[l].acts[(x * T + t) * in + j]
							         : 1.0);
						/* (o, j) with the bias column last -> canonical */
						r = R[(k * n + x) * d + y->offset +
						      (j < in ? o * in + j : out * in + o)];
						e2 += (s - r) * (s - r);
						w2 += r * r;
					}
	}
	if (!(sqrt(e2 / w2) < 1e-12))
		fail_msg("layer tensors vs rows: relative error %g", sqrt(e2 / w2));
	free(R);
	free(b);
}

static void test_refnet_layout_mlp(void **state)
{
	pspace_refnet *net = rref_make("mlp:5,7,4,3", NULL, 2, PSPACE_VARIANT_REGRESSION, 0, 1, 0);
	const pspace_layout *l = pspace_refnet_layout(net);

	(void)state;
	assert_int_equal(pspace_layout_nlayers(l), 3);
	/* fc1 7*5 + 7 = 42; fc2 4*7 + 4 = 32; fc3 3*4 + 3 = 15 */
	check_layer(pspace_layout_layer(l, 0), "fc1", PSPACE_LAYER_LINEAR, "7x5", 0);
	check_layer(pspace_layout_layer(l, 1), "fc2", PSPACE_LAYER_LINEAR, "4x7", 42);
	check_layer(pspace_layout_layer(l, 2), "fc3", PSPACE_LAYER_LINEAR, "3x4", 74);
	assert_int_equal(pspace_layout_dim(l), 89);
	pspace_refnet_free(net);
}

static void test_refnet_layout_cnn(void **state)
{
	pspace_refnet *net =
	    rref_make("cnn:2x6x5,3,4,3", NULL, 2, PSPACE_VARIANT_REGRESSION, 0, 1, 0);
	const pspace_layout *l = pspace_refnet_layout(net);

	(void)state;
	assert_int_equal(pspace_layout_nlayers(l), 3);
	/* conv1 3*2*9 + 3 = 57 (6x5 -> 4x3); conv2 4*3*9 + 4 = 112 (-> 2x1);
	 * fc 3 x (4*2*1) + 3 = 27 */
	check_layer(pspace_layout_layer(l, 0), "conv1", PSPACE_LAYER_CONV2D, "3x2x3x3", 0);
	check_layer(pspace_layout_layer(l, 1), "conv2", PSPACE_LAYER_CONV2D, "4x3x3x3", 57);
	check_layer(pspace_layout_layer(l, 2), "fc", PSPACE_LAYER_LINEAR, "3x8", 169);
	assert_int_equal(pspace_layout_dim(l), 196);
	pspace_refnet_free(net);
}

static void test_refnet_errors(void **state)
{
	pspace_variant r = PSPACE_VARIANT_REGRESSION;
	pspace_refnet *net;
	pspace_jac_source src;
	double buf[64];

	(void)state;
	expect_einval("mlp:", NULL, 1, r, 0, "mlp:");
	expect_einval("mlp:5", NULL, 1, r, 0, "mlp:5");
	expect_einval("mlp:5,0,3", NULL, 1, r, 0, "mlp:5,0,3");
	expect_einval("mlp:5,,3", NULL, 1, r, 0, "mlp:5,,3");
	expect_einval("mlp:5,3,", NULL, 1, r, 0, "mlp:5,3,");
	expect_einval("mlp:5,x", NULL, 1, r, 0, "mlp:5,x");
	expect_einval("cnn:3x8,4,2", NULL, 1, r, 0, "cnn:3x8,4,2");
	expect_einval("cnn:3x8x8,2", NULL, 1, r, 0, "at least one conv");
	expect_einval("cnn:3x4x4,2,2,2", NULL, 1, r, 0, "do not fit");
	expect_einval("rnn:3,4", NULL, 1, r, 0, "unknown network");
	expect_einval("mlp:3,4", "sigmoid", 1, r, 0, "sigmoid");
	expect_einval("mlp:3,4", NULL, 0, r, 0, "no examples");
	expect_einval("mlp:3,4", NULL, 1, PSPACE_VARIANT_MC, 0, "mc_samples");
	expect_einval("mlp:3,1", NULL, 1, PSPACE_VARIANT_CLASSIF_LOGITS, 0, "one class");
	expect_einval("mlp:3,4", NULL, 1, (pspace_variant)9, 0, "variant");

	net = rref_make("cnn:1x5x5,2,3", NULL, 3, r, 0, 1, 0); /* 3 x 3 x 2 -> 3: d = 20 + 57 */
	assert_int_equal(rref_dim(net), 77);
	assert_int_equal(pspace_refnet_forward(net, NULL, 3, buf), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "cnn:1x5x5,2,3"));
	assert_int_equal(pspace_refnet_jacobian(&src, net), 0);
	assert_int_equal(src.read(src.ud, 2, 2, buf, 77), PSPACE_EINVAL);
	assert_int_equal(src.read(src.ud, 0, 0, buf, 77), 0);
	pspace_refnet_free(net);
	pspace_refnet_free(NULL);
}

static void test_refnet_forward(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pspace_refnet *net = rref_make(cases[i].spec, cases[i].act, 3,
		                               PSPACE_VARIANT_REGRESSION, 0, 7 + i, 0);

		for (uint64_t x = 0; x < 3; x++)
			check_forward(net, &cases[i], x);
		pspace_refnet_free(net);
	}
}

/*
 * Regression rows are the rows of J_f: compare with finite differences on
 * every parameter (small nets) or on every 13th parameter plus all biases
 * of the last layer (large nets).
 */
static void test_refnet_rows_fd(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const netcase *c = &cases[i];
		pspace_refnet *net =
		    rref_make(c->spec, c->act, 2, PSPACE_VARIANT_REGRESSION, 0, 11 + i, 0);
		uint64_t d = rref_dim(net), x = 1;
		uint32_t C = rref_nclasses(net), K;
		double *R = rref_rows(net, x, 1, &K), *t = malloc(d * sizeof(*t));
		double fp[16], fm[16], e2 = 0, w2 = 0;
		uint64_t step = d > 2000 ? 13 : 1;

		assert_non_null(t);
		assert_int_equal(K, C);
		/* relu: keep every unit at least 1e3 h from its kink */
		/* relu: every unit far (> 20 h) from its kink, so differences see no kink */
		assert_true(check_forward(net, c, x) > 20 * RREF_FD_H ||
		            strcmp(c->act, "relu") != 0);
		memcpy(t, pspace_refnet_params(net), d * sizeof(*t));
		for (uint64_t p = 0; p < d; p += (p + C >= d ? 1 : step)) {
			rref_fd_logits(net, t, x, p, fp, fm);
			for (uint32_t k = 0; k < C; k++) {
				double fd = (fp[k] - fm[k]) / (2 * RREF_FD_H), r = R[k * d + p];

				e2 += (fd - r) * (fd - r);
				w2 += fd * fd;
			}
		}
		if (!(sqrt(e2 / w2) < 1e-5))
			fail_msg("%s (%s): rows vs finite differences: relative error %g", c->spec,
			         c->act, sqrt(e2 / w2));
		free(t);
		free(R);
		pspace_refnet_free(net);
	}
}

static void test_refnet_layers_rows(void **state)
{
	static const pspace_variant vs[] = {PSPACE_VARIANT_CLASSIF_LOGITS, PSPACE_VARIANT_MC,
	                                    PSPACE_VARIANT_REGRESSION, PSPACE_VARIANT_EMPIRICAL};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t v = 0; v < 4; v++) {
			pspace_refnet *net =
			    rref_make(cases[i].spec, cases[i].act, 3, vs[v], 3, 61 + i, 0);

			check_layers_rows(net, 3);
			pspace_refnet_free(net);
		}
}

static void test_refnet_batching(void **state)
{
	static const uint64_t chunks[][2] = {{0, 3}, {3, 1}, {4, 4}, {8, 2}};
	uint64_t n = 10;

	(void)state;
	for (int cnn = 0; cnn < 2; cnn++) {
		pspace_refnet *net =
		    rref_make(cnn ? "cnn:2x6x6,3,4" : "mlp:5,7,4", NULL, n,
		              cnn ? PSPACE_VARIANT_EMPIRICAL : PSPACE_VARIANT_MC, 3, 71, 0);
		const pspace_layout *lay = pspace_refnet_layout(net);
		size_t nl = pspace_layout_nlayers(lay);
		uint64_t d = rref_dim(net);
		uint32_t K, K2;
		double *full = rref_rows(net, 0, n, &K), *fa[4], *fg[4];
		pspace_layer_source src;
		pspace_layer_batch b[4];
		uint64_t na[4], ng[4];

		assert_true(nl <= 4);
		assert_int_equal(pspace_refnet_layers(&src, net), 0);
		assert_int_equal(src.read(src.ud, 0, n, b), 0);
		for (size_t l = 0; l < nl; l++) {
			const pspace_layer *y = pspace_layout_layer(lay, l);

			na[l] = b[l].T * (y->weight_size / y->shape[0]);
			ng[l] = b[l].T * y->shape[0];
			fa[l] = malloc(n * na[l] * sizeof(double));
			fg[l] = malloc(K * n * ng[l] * sizeof(double));
			assert_true(fa[l] && fg[l]);
			memcpy(fa[l], b[l].acts, n * na[l] * sizeof(double));
			memcpy(fg[l], b[l].grads, K * n * ng[l] * sizeof(double));
		}
		for (size_t c = 0; c < 4; c++) {
			uint64_t x0 = chunks[c][0], nx = chunks[c][1];
			double *part = rref_rows(net, x0, nx, &K2);

			for (uint32_t k = 0; k < K; k++)
				assert_memory_equal(part + k * nx * d, full + (k * n + x0) * d,
				                    nx * d * sizeof(double));
			free(part);
			assert_int_equal(src.read(src.ud, x0, nx, b), 0);
			for (size_t l = 0; l < nl; l++) {
				assert_memory_equal(b[l].acts, fa[l] + x0 * na[l],
				                    nx * na[l] * sizeof(double));
				for (uint32_t k = 0; k < K; k++)
					assert_memory_equal(b[l].grads + k * nx * ng[l],
					                    fg[l] + (k * n + x0) * ng[l],
					                    nx * ng[l] * sizeof(double));
			}
		}
		for (size_t l = 0; l < nl; l++) {
			free(fa[l]);
			free(fg[l]);
		}
		free(full);
		pspace_refnet_free(net);
	}
}

static void test_refnet_same_input(void **state)
{
	uint64_t n = 5;

	(void)state;
	for (int same = 0; same < 2; same++)
		for (int cnn = 0; cnn < 2; cnn++) {
			pspace_refnet *net = rref_make(cnn ? "cnn:2x6x6,3,4" : "mlp:5,7,4", NULL, n,
			                               PSPACE_VARIANT_REGRESSION, 0, 81, same);
			const pspace_layout *lay = pspace_refnet_layout(net);
			size_t nl = pspace_layout_nlayers(lay);
			uint64_t d = rref_dim(net);
			pspace_layer_source src;
			pspace_layer_batch b[4];
			uint32_t K;
			double *R = rref_rows(net, 0, n, &K);

			assert_int_equal(pspace_refnet_layers(&src, net), 0);
			assert_int_equal(src.read(src.ud, 0, n, b), 0);
			for (size_t l = 0; l < nl; l++) {
				const pspace_layer *y = pspace_layout_layer(lay, l);
				uint64_t na = b[l].T * (y->weight_size / y->shape[0]);

				for (uint64_t x = 1; x < n; x++) {
					int eq = memcmp(b[l].acts + x * na, b[l].acts,
					                na * sizeof(double)) == 0;

					assert_int_equal(eq, same);
				}
			}
			for (uint32_t k = 0; k < K; k++)
				for (uint64_t x = 1; x < n; x++)
					assert_int_equal(memcmp(R + (k * n + x) * d, R + k * n * d,
					                        d * sizeof(double)) == 0,
					                 same);
			free(R);
			pspace_refnet_free(net);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refnet_layout_mlp), cmocka_unit_test(test_refnet_layout_cnn),
	    cmocka_unit_test(test_refnet_errors),     cmocka_unit_test(test_refnet_forward),
	    cmocka_unit_test(test_refnet_rows_fd),    cmocka_unit_test(test_refnet_layers_rows),
	    cmocka_unit_test(test_refnet_batching),   cmocka_unit_test(test_refnet_same_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
