/*
 * fuzz_layout: any text as a layout file. Parsing either fails with an
 * error or gives a layout whose canonical text parses back to an equal
 * layout, whose layers tile [0, d) in order and are found by name.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "pspace/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pspace_layout *l = NULL, *again = NULL;
	char *text = malloc(size + 1), *canon = NULL;
	uint64_t next = 0;
	size_t n, at;

	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (pspace_layout_parse(&l, text, "fuzz.txt") != 0)
		goto out;
	n = pspace_layout_nlayers(l);
	if (n == 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		const pspace_layer *y = pspace_layout_layer(l, i);

		if (y->offset != next || y->size != y->weight_size + y->bias_size || y->size == 0)
			abort();
		if (pspace_layout_find(&at, l, y->name) != 0 || at != i)
			abort();
		if (pspace_layout_layer_of(l, y->offset) != i ||
		    pspace_layout_layer_of(l, y->offset + y->size - 1) != i)
			abort();
		next += y->size;
	}
	if (next != pspace_layout_dim(l))
		abort();
	if (pspace_layout_text(&canon, l) != 0)
		abort();
	if (pspace_layout_parse(&again, canon, "canonical") != 0 || !pspace_layout_equal(l, again))
		abort();
out:
	pspace_layout_free(again);
	free(canon);
	pspace_layout_free(l);
	free(text);
	return 0;
}
