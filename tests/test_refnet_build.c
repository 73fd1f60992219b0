/*
 * End to end with the reference networks (README, build): representations built
 * from the networks' own layer tensors and Jacobian rows, checked against
 * the properties the README's Formulas state. References are dense float64 matrices
 * computed here from the Jacobian rows the network emits (F = (1/n) sum
 * r r^T and its layer blocks); the builders under test never see them.
 */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "pspace.h"

typedef struct fixture {
	char root[64], path[128];
	pspace_store *s;
} fixture;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	fixture *x = calloc(1, sizeof(*x));

	snprintf(x->root, sizeof(x->root), "/tmp/pspace-test-refbuild-XXXXXX");
	if (!x || !mkdtemp(x->root))
		return -1;
	snprintf(x->path, sizeof(x->path), "%s/s", x->root);
	if (pspace_store_open(&x->s, x->path, NULL) != 0)
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	fixture *x = *state;

	pspace_store_close(x->s);
	nftw(x->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(x);
	return 0;
}

static pspace_refnet *make_net(const char *spec, uint64_t n, int same_input, uint64_t seed)
{
	pspace_refnet_opts o;
	pspace_refnet *net = NULL;

	memset(&o, 0, sizeof(o));
	o.spec = spec;
	o.examples = n;
	o.variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	o.seed = seed;
	o.same_input = same_input;
	assert_int_equal(pspace_refnet_create(&net, &o), 0);
	return net;
}

/* The block-diagonal part (per layer) of F = (1/n) sum r r^T, from the rows. */
static double *reference_blockdiag(pspace_refnet *net)
{
	const pspace_layout *l = pspace_refnet_layout(net);
	pspace_jac_source src;
	uint64_t d = pspace_layout_dim(l);
	double *F = calloc(d * d, sizeof(double));
	double *rows;

	assert_int_equal(pspace_refnet_jacobian(&src, net), 0);
	rows = malloc(sizeof(double) * src.outputs * d);
	assert_non_null(F);
	assert_non_null(rows);
	for (uint64_t x = 0; x < src.examples; x++) {
		assert_int_equal(src.read(src.ud, x, 1, rows, d), 0);
		for (uint32_t k = 0; k < src.outputs; k++) {
			const double *r = rows + (uint64_t)k * d;
			for (size_t L = 0; L < pspace_layout_nlayers(l); L++) {
				const pspace_layer *ly = pspace_layout_layer(l, L);
				for (uint64_t i = ly->offset; i < ly->offset + ly->size; i++)
					for (uint64_t j = ly->offset; j < ly->offset + ly->size;
					     j++)
						F[i * d + j] += r[i] * r[j] / (double)src.examples;
			}
		}
	}
	free(rows);
	return F;
}

static double rel_fro(uint64_t n, const double *a, const double *b)
{
	double e = 0, w = 0;

	for (uint64_t i = 0; i < n; i++) {
		e += (a[i] - b[i]) * (a[i] - b[i]);
		w += b[i] * b[i];
	}
	return sqrt(e / w);
}

static double *built_dense(fixture *x, pspace_refnet *net, const char *name, pspace_kind kind,
                           uint64_t batch)
{
	const pspace_layout *l = pspace_refnet_layout(net);
	uint64_t d = pspace_layout_dim(l);
	pspace_build_opts o;
	pspace_layer_source ls;
	pspace_mat *m = NULL;
	double *D = malloc(sizeof(double) * d * d);

	assert_non_null(D);
	pspace_build_opts_default(&o);
	o.kind = kind;
	o.batch = batch;
	o.write.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_refnet_layers(&ls, net), 0);
	assert_int_equal(pspace_build_layers(x->s, name, l, &ls, &o), 0);
	assert_int_equal(pspace_mat_open(&m, x->s, name), 0);
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	pspace_mat_free(m);
	return D;
}

/* README, Formulas: KFAC equals BlockDiag when every example has the same single
 * input (linear layers, T = 1). */
static void test_refnet_build_kfac_equals_blockdiag_mlp(void **state)
{
	fixture *x = *state;
	pspace_refnet *net = make_net("mlp:5,6,4", 40, 1, 3);
	uint64_t d = pspace_layout_dim(pspace_refnet_layout(net));
	double *ref = reference_blockdiag(net);
	double *kfac = built_dense(x, net, "kfac", PSPACE_KIND_KFAC, 0);
	double *bd = built_dense(x, net, "bd", PSPACE_KIND_BLOCKDIAG, 0);

	assert_true(rel_fro(d * d, bd, ref) < 1e-12);
	assert_true(rel_fro(d * d, kfac, ref) < 1e-10);
	free(ref);
	free(kfac);
	free(bd);
	pspace_refnet_free(net);
}

/* The same for a convolution with one output location (T = 1: a 3x3
 * kernel on a 3x3 image) and the linear layer after it. */
static void test_refnet_build_kfac_equals_blockdiag_conv(void **state)
{
	fixture *x = *state;
	pspace_refnet *net = make_net("cnn:2x3x3,4,3", 30, 1, 5);
	uint64_t d = pspace_layout_dim(pspace_refnet_layout(net));
	double *ref = reference_blockdiag(net);
	double *kfac = built_dense(x, net, "kfac", PSPACE_KIND_KFAC, 0);

	assert_int_equal(pspace_layout_layer(pspace_refnet_layout(net), 0)->kind,
	                 PSPACE_LAYER_CONV2D);
	assert_true(rel_fro(d * d, kfac, ref) < 1e-10);
	free(ref);
	free(kfac);
	pspace_refnet_free(net);
}

/* README, Formulas: EKFAC after the diagonal update is at least as close to BlockDiag
 * as KFAC is (varied inputs, where KFAC is only an approximation). */
static void test_refnet_build_ekfac_closer_than_kfac(void **state)
{
	fixture *x = *state;
	const char *specs[] = {"mlp:6,8,5", "cnn:2x5x5,3,4"};

	for (size_t i = 0; i < 2; i++) {
		pspace_refnet *net = make_net(specs[i], 60, 0, 11 + i);
		uint64_t d = pspace_layout_dim(pspace_refnet_layout(net));
		double *ref = reference_blockdiag(net);
		char kn[16], en[16];
		snprintf(kn, sizeof(kn), "k%zu", i);
		snprintf(en, sizeof(en), "e%zu", i);
		double *kfac = built_dense(x, net, kn, PSPACE_KIND_KFAC, 0);
		double *ekfac = built_dense(x, net, en, PSPACE_KIND_EKFAC, 0);
		double ek = rel_fro(d * d, kfac, ref), ee = rel_fro(d * d, ekfac, ref);

		printf("%s: KFAC %.3g, EKFAC %.3g relative Frobenius distance to BlockDiag\n",
		       specs[i], ek, ee);
		assert_true(ek > 1e-6); /* KFAC is an approximation here */
		assert_true(ee <= ek * (1 + 1e-9));
		free(ref);
		free(kfac);
		free(ekfac);
		pspace_refnet_free(net);
	}
}

/* Building from minibatches of uneven sizes equals building from all at once. */
static void test_refnet_build_uneven_batches(void **state)
{
	fixture *x = *state;
	pspace_refnet *net = make_net("mlp:4,5,3", 37, 0, 17);
	const pspace_layout *l = pspace_refnet_layout(net);
	uint64_t d = pspace_layout_dim(l);
	const uint64_t batches[] = {37, 1, 7, 10};
	double *first = NULL;

	for (size_t b = 0; b < 4; b++) {
		pspace_build_opts o;
		pspace_jac_source src;
		pspace_mat *m = NULL;
		double *D = malloc(sizeof(double) * d * d);
		char name[16];

		snprintf(name, sizeof(name), "dense%zu", b);
		pspace_build_opts_default(&o);
		o.kind = PSPACE_KIND_DENSE;
		o.batch = batches[b];
		o.write.codec.dtype = PSPACE_F64;
		assert_int_equal(pspace_refnet_jacobian(&src, net), 0);
		assert_int_equal(pspace_build_jacobian(x->s, name, l, &src, &o), 0);
		assert_int_equal(pspace_mat_open(&m, x->s, name), 0);
		assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
		pspace_mat_free(m);
		if (!first)
			first = D;
		else {
			assert_true(rel_fro(d * d, D, first) < 1e-13);
			free(D);
		}
	}
	free(first);
	pspace_refnet_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_refnet_build_kfac_equals_blockdiag_mlp, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_refnet_build_kfac_equals_blockdiag_conv, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_refnet_build_ekfac_closer_than_kfac, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_refnet_build_uneven_batches, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
