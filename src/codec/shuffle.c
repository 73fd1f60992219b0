/*
 * Byte shuffle and unshuffle. The fixed-size versions are plain loops with
 * a constant element size so the compiler turns them into vector
 * permutations.
 */
#include "codec/shuffle.h"

#include <stdint.h>

static void shuffle2(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	uint8_t *restrict o0 = o, *restrict o1 = o + n;

	for (size_t i = 0; i < n; i++) {
		o0[i] = in[2 * i];
		o1[i] = in[2 * i + 1];
	}
}

static void shuffle4(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	uint8_t *restrict o0 = o, *restrict o1 = o + n, *restrict o2 = o + 2 * n;
	uint8_t *restrict o3 = o + 3 * n;

	for (size_t i = 0; i < n; i++) {
		o0[i] = in[4 * i];
		o1[i] = in[4 * i + 1];
		o2[i] = in[4 * i + 2];
		o3[i] = in[4 * i + 3];
	}
}

static void shuffle8(uint8_t *restrict o, const uint8_t *restrict in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *restrict e = in + 8 * i;

		o[i] = e[0];
		o[n + i] = e[1];
		o[2 * n + i] = e[2];
		o[3 * n + i] = e[3];
		o[4 * n + i] = e[4];
		o[5 * n + i] = e[5];
		o[6 * n + i] = e[6];
		o[7 * n + i] = e[7];
	}
}

/*
 * The unshuffles read each plane through its own pointer, so that planes
 * stored raw in a tile are read where they lie and only the decompressed
 * ones pass through a scratch buffer.
 */
static void unshuffle2(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1];

	for (size_t i = 0; i < n; i++) {
		o[2 * i] = i0[i];
		o[2 * i + 1] = i1[i];
	}
}

static void unshuffle4(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1], *restrict i2 = pl[2];
	const uint8_t *restrict i3 = pl[3];

	for (size_t i = 0; i < n; i++) {
		o[4 * i] = i0[i];
		o[4 * i + 1] = i1[i];
		o[4 * i + 2] = i2[i];
		o[4 * i + 3] = i3[i];
	}
}

static void unshuffle8(uint8_t *restrict o, const uint8_t *const *pl, size_t n)
{
	const uint8_t *restrict i0 = pl[0], *restrict i1 = pl[1], *restrict i2 = pl[2];
	const uint8_t *restrict i3 = pl[3], *restrict i4 = pl[4], *restrict i5 = pl[5];
	const uint8_t *restrict i6 = pl[6], *restrict i7 = pl[7];

	for (size_t i = 0; i < n; i++) {
		uint8_t *restrict e = o + 8 * i;

		e[0] = i0[i];
		e[1] = i1[i];
		e[2] = i2[i];
		e[3] = i3[i];
		e[4] = i4[i];
		e[5] = i5[i];
		e[6] = i6[i];
		e[7] = i7[i];
	}
}

void pspace_shuffle(void *restrict out, const void *restrict in, size_t n, size_t es)
{
	uint8_t *restrict o = out;
	const uint8_t *restrict s = in;

	switch (es) {
	case 2: shuffle2(o, s, n); break;
	case 4: shuffle4(o, s, n); break;
	case 8: shuffle8(o, s, n); break;
	default:
		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[b * n + i] = s[i * es + b];
		break;
	}
}

void pspace_unshuffle_planes(void *restrict out, const void *const *planes, size_t n, size_t es)
{
	uint8_t *restrict o = out;
	const uint8_t *const *pl = (const uint8_t *const *)planes;

	switch (es) {
	case 2: unshuffle2(o, pl, n); break;
	case 4: unshuffle4(o, pl, n); break;
	case 8: unshuffle8(o, pl, n); break;
	default:
		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[i * es + b] = pl[b][i];
		break;
	}
}

void pspace_unshuffle(void *restrict out, const void *restrict in, size_t n, size_t es)
{
	const uint8_t *s = in;
	const void *planes[PSPACE_SHUFFLE_MAX_ES];

	if (es > PSPACE_SHUFFLE_MAX_ES) {
		uint8_t *restrict o = out;

		for (size_t b = 0; b < es; b++)
			for (size_t i = 0; i < n; i++)
				o[i * es + b] = s[b * n + i];
		return;
	}
	for (size_t b = 0; b < es; b++)
		planes[b] = s + b * n;
	pspace_unshuffle_planes(out, planes, n, es);
}
