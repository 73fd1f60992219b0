/*
 * The codec context (zstd contexts and scratch buffers) and the default
 * encoding options.
 */
#include "codec/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* Defaults for pspace_codec_opts_default(); retuned from the benchmark. */
#define PSPACE_CODEC_DEFAULT_DTYPE     PSPACE_F32
#define PSPACE_CODEC_DEFAULT_LEVEL     1
#define PSPACE_CODEC_DEFAULT_SHUFFLE   1
#define PSPACE_CODEC_DEFAULT_MIN_RATIO 1.03

#define SCRATCH_ALIGN 64
#define SCRATCH_MIN   4096

void pspace_codec_opts_default(pspace_codec_opts *o)
{
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->dtype = PSPACE_CODEC_DEFAULT_DTYPE;
	o->level = PSPACE_CODEC_DEFAULT_LEVEL;
	o->shuffle = PSPACE_CODEC_DEFAULT_SHUFFLE;
	o->min_ratio = PSPACE_CODEC_DEFAULT_MIN_RATIO;
}

int pspace_codec_create(pspace_codec **out)
{
	pspace_codec *c = NULL;
	int rc = 0;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_codec_create: out is NULL");
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "codec context: out of memory");
		goto out;
	}
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (c->cctx == NULL || c->dctx == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "codec context: cannot create zstd contexts");
		goto out;
	}
	*out = c;
	c = NULL;
out:
	pspace_codec_free(c);
	return rc;
}

void pspace_codec_free(pspace_codec *c)
{
	if (c == NULL)
		return;
	for (int i = PSPACE_CODEC_NBUF - 1; i >= 0; i--)
		free(c->buf[i].p);
	ZSTD_freeDCtx(c->dctx);
	ZSTD_freeCCtx(c->cctx);
	free(c);
}

unsigned char *pspace_codec_scratch(pspace_codec *c, int which, size_t need)
{
	struct pspace_codec_buf *b = &c->buf[which];
	size_t cap = b->cap > 0 ? b->cap : SCRATCH_MIN;
	unsigned char *p = NULL;

	if (need <= b->cap)
		return b->p;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	if (cap > SIZE_MAX - SCRATCH_ALIGN)
		goto fail;
	cap = (cap + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
	p = aligned_alloc(SCRATCH_ALIGN, cap);
	if (p == NULL)
		goto fail;
	free(b->p);
	b->p = p;
	b->cap = cap;
	return p;
fail:
	pspace_err_set(PSPACE_ENOMEM, "codec scratch buffer: cannot allocate %zu bytes", need);
	return NULL;
}
