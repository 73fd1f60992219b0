/*
 * Internal: the codec context and its reusable scratch buffers.
 */
#ifndef PSPACE_SRC_CODEC_CODEC_H
#define PSPACE_SRC_CODEC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "pspace/codec.h"

/** A scratch buffer, grown geometrically and never shrunk. Contents do not survive growth. */
struct pspace_codec_buf {
	unsigned char *p;
	size_t cap;
};

/** Scratch buffers of a context, by role. */
enum {
	PSPACE_CODEC_BUF_OUT,  /**< encode: the encoded tile handed to the caller */
	PSPACE_CODEC_BUF_A,    /**< converted elements / decompressed payload */
	PSPACE_CODEC_BUF_B,    /**< shuffled elements / unshuffled elements */
	PSPACE_CODEC_BUF_VIEW, /**< pspace_tile_view() output */
	PSPACE_CODEC_NBUF
};

struct pspace_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	struct pspace_codec_buf buf[PSPACE_CODEC_NBUF];
};

/**
 * Makes buffer @p which of @p c at least @p need bytes (64-byte aligned).
 * @return its storage, or NULL with PSPACE_ENOMEM in the detail message.
 */
unsigned char *pspace_codec_scratch(pspace_codec *c, int which, size_t need);

/** pspace_tile_encode_ex() flag: shuffle + zstd as one frame (codec 1), not planes (codec 2). */
#define PSPACE_TILE_ENCODE_ONE_FRAME 0x1u

/**
 * pspace_tile_encode() with internal @p flags (PSPACE_TILE_ENCODE_*), for
 * tests and benchmarks that need the older single-frame shuffled tiles.
 */
int pspace_tile_encode_ex(pspace_codec *c, const pspace_codec_opts *opts, unsigned flags,
                          pspace_dtype src_type, const void *src, uint32_t rows, uint32_t cols,
                          size_t ld, const void **out, size_t *out_len);

#endif
