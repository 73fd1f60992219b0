/*
 * NNGeometry's split_weight_bias=False parameter order: per layer with a
 * bias, row o holds the weights (o, 0..in) followed by bias o.
 */
#include "common/error.h"
#include "pspace/layout.h"

int pspace_layout_interleave_perm(const pspace_layout *layout, uint64_t *perm)
{
	size_t n;

	if (!layout || !perm)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_layout_interleave_perm: NULL argument");
	n = pspace_layout_nlayers(layout);
	for (size_t i = 0; i < n; i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);
		uint64_t out = L->shape[0], in;

		if (!L->bias) {
			for (uint64_t p = 0; p < L->size; p++)
				perm[L->offset + p] = L->offset + p;
			continue;
		}
		in = L->weight_size / out;
		for (uint64_t o = 0; o < out; o++) {
			uint64_t row = L->offset + o * (in + 1);

			for (uint64_t j = 0; j < in; j++)
				perm[row + j] = L->offset + o * in + j;
			perm[row + in] = L->offset + L->weight_size + o;
		}
	}
	return 0;
}
