/*
 * Reference networks: the synthetic data. Randomness is counter-based:
 * every draw depends only on (seed, stream, example), so any example can
 * be recomputed alone, in any batch. The passes (refnet_pass.c) and the
 * sources (refnet.c) both draw from here.
 */
#include <math.h>
#include <stdint.h>

#include "build/refnet_impl.h"

/* ---- random numbers --------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

uint64_t pspace_rn_rng(uint64_t seed, int stream, uint64_t x)
{
	return mix64(mix64(seed + 0x9E3779B97F4A7C15ULL * (uint64_t)stream) ^
	             mix64(x ^ 0xD1B54A32D192ED03ULL));
}

static uint64_t next64(uint64_t *s)
{
	*s += 0x9E3779B97F4A7C15ULL;
	return mix64(*s);
}

double pspace_rn_uniform(uint64_t *s)
{
	return (double)(next64(s) >> 11) * 0x1.0p-53;
}

double pspace_rn_normal(uint64_t *s)
{
	double u1 = ((double)(next64(s) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
	double u2 = pspace_rn_uniform(s);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint32_t pspace_rn_label(const pspace_refnet *net, uint64_t x)
{
	uint64_t r = pspace_rn_rng(net->o.seed, RN_STREAM_LABEL, x);
	uint32_t y = (uint32_t)(pspace_rn_uniform(&r) * net->C);

	return y < net->C ? y : net->C - 1;
}

void pspace_rn_input(const pspace_refnet *net, uint64_t x, double *u)
{
	uint64_t r = pspace_rn_rng(net->o.seed, RN_STREAM_INPUT, net->o.same_input ? 0 : x);

	for (uint32_t i = 0; i < net->in0; i++)
		u[i] = pspace_rn_normal(&r);
}
