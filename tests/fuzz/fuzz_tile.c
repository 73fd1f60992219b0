/*
 * fuzz_tile: any bytes as an encoded tile, as given and with a correct
 * checksum written into it (so the payload decoders see inputs the
 * checksum would otherwise stop). Parse, verify, view and decode either
 * fail with an error or succeed; a tile that decodes as f64 decodes as f32
 * to the same values rounded, and one that verifies also views.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "pspace/codec.h"

/* Larger tiles are parsed and verified but not decoded (memory per run). */
#define MAX_ELEMS (1u << 20)

static pspace_codec *codec;

static void put_u32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void check(const uint8_t *buf, size_t len)
{
	pspace_tile_header h, vh;
	const void *view = NULL;
	double *d64 = NULL;
	float *d32 = NULL;
	int verified = -1, rc64, rc32;
	size_t n;

	if (pspace_tile_parse(&h, buf, len) != 0)
		return;
	if (h.rows == 0 || h.cols == 0 || (size_t)h.payload_len + PSPACE_TILE_HEADER_SIZE != len)
		abort();
	n = (size_t)h.rows * h.cols;
	if (n > MAX_ELEMS) {
		(void)pspace_tile_verify(buf, len);
		return;
	}
	d64 = malloc(n * sizeof(double));
	d32 = malloc(n * sizeof(float));
	if (!d64 || !d32)
		abort();
	rc64 = pspace_tile_decode(codec, buf, len, PSPACE_F64, d64, h.cols);
	rc32 = pspace_tile_decode(codec, buf, len, PSPACE_F32, d32, h.cols);
	if ((rc64 == 0) != (rc32 == 0))
		abort();
	for (size_t i = 0; rc64 == 0 && i < n; i++) {
		float want = (float)d64[i];

		if (memcmp(&want, &d32[i], sizeof(float)) != 0 && !(isnan(want) && isnan(d32[i])))
			abort();
	}
	if (pspace_tile_view(codec, buf, len, PSPACE_F64, &view, &vh) != rc64)
		abort();
	if (rc64 == 0 && memcmp(&vh, &h, sizeof(h)) != 0)
		abort();
	if (pspace_tile_view_unverified(codec, buf, len, PSPACE_F32, &view, NULL, &verified) == 0 &&
	    !verified && (pspace_tile_verify(buf, len) == 0) != (rc32 == 0))
		abort();
	free(d32);
	free(d64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	if (!codec && pspace_codec_create(&codec) != 0)
		abort();
	check(data, size);
	if (size < PSPACE_TILE_HEADER_SIZE)
		return 0;
	fixed = malloc(size);
	if (!fixed)
		abort();
	memcpy(fixed, data, size);
	put_u32le(fixed + 24, pspace_crc32c(pspace_crc32c(0, fixed, 24), fixed + 32, size - 32));
	check(fixed, size);
	free(fixed);
	return 0;
}
