/*
 * Reference networks for the refnet tests (see rref.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "rref.h"

pspace_refnet *rref_make(const char *spec, const char *act, uint64_t n, pspace_variant v,
                         uint32_t mc, uint64_t seed, int same)
{
	pspace_refnet_opts o = {.spec = spec,
	                        .activation = act,
	                        .examples = n,
	                        .variant = v,
	                        .mc_samples = mc,
	                        .seed = seed,
	                        .same_input = same};
	pspace_refnet *net = NULL;
	int rc = pspace_refnet_create(&net, &o);

	if (rc != 0)
		fail_msg("refnet_create %s: %s: %s", spec, pspace_strerror(rc), pspace_errdetail());
	return net;
}

uint64_t rref_dim(const pspace_refnet *net)
{
	return pspace_layout_dim(pspace_refnet_layout(net));
}

uint32_t rref_nclasses(const pspace_refnet *net)
{
	const pspace_layout *l = pspace_refnet_layout(net);

	return (uint32_t)pspace_layout_layer(l, pspace_layout_nlayers(l) - 1)->shape[0];
}

double *rref_rows(pspace_refnet *net, uint64_t x0, uint64_t nx, uint32_t *K)
{
	pspace_jac_source src;
	uint64_t d = rref_dim(net);
	double *R;
	int rc;

	assert_int_equal(pspace_refnet_jacobian(&src, net), 0);
	assert_int_equal(src.d, d);
	*K = src.outputs;
	R = malloc((size_t)src.outputs * nx * d * sizeof(*R));
	assert_non_null(R);
	rc = src.read(src.ud, x0, nx, R, d);
	if (rc != 0)
		fail_msg("read: %s", pspace_errdetail());
	return R;
}

void rref_fd_logits(pspace_refnet *net, double *theta, uint64_t x, uint64_t p, double *fp,
                    double *fm)
{
	double t0 = theta[p];

	theta[p] = t0 + RREF_FD_H;
	assert_int_equal(pspace_refnet_forward(net, theta, x, fp), 0);
	theta[p] = t0 - RREF_FD_H;
	assert_int_equal(pspace_refnet_forward(net, theta, x, fm), 0);
	theta[p] = t0;
}
