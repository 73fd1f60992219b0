/*
 * pspace/codec.h - the tile codec: precision conversion, byte shuffle,
 * zstd compression and a CRC-32C checksum per tile.
 *
 * An encoded tile is a 32-byte header followed by the payload; the layout
 * is documented in README.md ("Tile format"). Tiles hold rows x cols
 * elements in row-major order.
 *
 * Threads: a pspace_codec is used by one thread at a time (make one per
 * thread); every other call here is a pure function of its arguments and
 * may run from any number of threads.
 */
#ifndef PSPACE_CODEC_H
#define PSPACE_CODEC_H

#include "pspace/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Size of the tile header in bytes. */
#define PSPACE_TILE_HEADER_SIZE 32

/** Payload codecs. Written to disk: ids are never reused. */
typedef enum pspace_codec_id {
	PSPACE_CODEC_RAW = 0,  /**< payload is the elements as stored, unencoded */
	PSPACE_CODEC_ZSTD = 1, /**< payload is one zstd frame (of shuffled or plain elements) */
	PSPACE_CODEC_ZSTD_PLANES = 2, /**< payload is the shuffled byte planes, each a zstd
	                                  frame or raw */
	PSPACE_CODEC_PLANES = 3, /**< codec 2 with nibble-coded planes as well (the default
	                             with shuffle and zstd when a plane is nibble-coded) */
} pspace_codec_id;

/** How to encode tiles. */
typedef struct pspace_codec_opts {
	pspace_dtype dtype; /**< stored precision: F64, F32 (default), BF16, F16 */
	int level;          /**< zstd level (1..19, negative = fast); 0 = always raw */
	int shuffle;        /**< nonzero: byte-shuffle; with zstd each byte plane is
	                         coded on its own (PSPACE_CODEC_ZSTD_PLANES, _PLANES) */
	double min_ratio;   /**< keep zstd output only if raw/encoded >= this (default 1.03) */
} pspace_codec_opts;

/** Fills @p o with the defaults: f32, byte shuffle, zstd level 1, min_ratio 1.03 (chosen by
 * bench_codec; README, "Benchmarks"). */
PSPACE_API void pspace_codec_opts_default(pspace_codec_opts *o);

/** Decoded tile header, plain data. */
typedef struct pspace_tile_header {
	pspace_dtype dtype;    /**< stored precision */
	pspace_codec_id codec; /**< payload codec */
	int shuffle;           /**< payload was byte-shuffled before zstd */
	uint32_t rows, cols;   /**< tile shape */
	uint32_t payload_len;  /**< bytes after the header */
	int32_t scale_exp;     /**< F16 only: stored = value * 2^scale_exp */
	uint32_t checksum;     /**< CRC-32C of header bytes 0..23 and payload */
} pspace_tile_header;

/**
 * A codec context: zstd contexts and scratch buffers, created once and
 * reused. One context per thread; a context is not thread-safe.
 */
typedef struct pspace_codec pspace_codec;

/** Creates a context; *out is NULL on failure. @return 0 or PSPACE_ENOMEM. */
PSPACE_API int pspace_codec_create(pspace_codec **out);
/** Frees a context (buffers it handed out become invalid); NULL is accepted. */
PSPACE_API void pspace_codec_free(pspace_codec *c);

/**
 * Encodes a rows x cols block of @p src (type @p src_type, F32 or F64,
 * leading dimension @p ld elements, row-major) as a tile.
 * Falls back to a raw payload when compression does not pay (opts->min_ratio).
 * @param out      receives a pointer to the encoded tile inside @p c; valid
 *                 until the next call on @p c.
 * @param out_len  receives its length in bytes.
 * @return 0, PSPACE_EINVAL, PSPACE_ENOMEM or PSPACE_ECODEC.
 */
PSPACE_API int pspace_tile_encode(pspace_codec *c, const pspace_codec_opts *opts,
                                  pspace_dtype src_type, const void *src, uint32_t rows,
                                  uint32_t cols, size_t ld, const void **out, size_t *out_len);

/**
 * Parses and sanity-checks the header of an encoded tile (magic, version,
 * ids, payload length against @p len) into @p out. Does not verify the
 * checksum.
 * @return 0 or PSPACE_ECORRUPT.
 */
PSPACE_API int pspace_tile_parse(pspace_tile_header *out, const void *buf, size_t len);

/** Verifies the checksum of an encoded tile. @return 0 or PSPACE_ECORRUPT. */
PSPACE_API int pspace_tile_verify(const void *buf, size_t len);

/**
 * Decodes a tile into @p dst as type @p want (F32 or F64), leading
 * dimension @p ld elements. Verifies the checksum first.
 * @return 0, PSPACE_ECORRUPT, PSPACE_ECODEC, PSPACE_EINVAL or PSPACE_ENOMEM.
 */
PSPACE_API int pspace_tile_decode(pspace_codec *c, const void *buf, size_t len, pspace_dtype want,
                                  void *dst, size_t ld);

/**
 * Gives read access to a tile's elements as type @p want (F32 or F64),
 * contiguous row-major (ld = cols). When the tile is stored raw in that
 * type and suitably aligned, *data points into @p buf itself (no copy, no
 * decode); otherwise the tile is decoded into a buffer of @p c, valid until
 * the next call on @p c. Verifies the checksum.
 * @param hdr  optional; receives the parsed header.
 * @return as pspace_tile_decode().
 */
PSPACE_API int pspace_tile_view(pspace_codec *c, const void *buf, size_t len, pspace_dtype want,
                                const void **data, pspace_tile_header *hdr);

/**
 * pspace_tile_view() for a caller that checks later: a tile stored raw in
 * type @p want (returned without a copy) is parsed but not checksummed yet,
 * so its bytes are read once, by the caller's own work, and then verified
 * from the cache; *verified is 0 then, and the caller must call
 * pspace_tile_verify() on @p buf before trusting anything computed from
 * the data. Every other tile is verified before it is returned
 * (*verified = 1), and so is every tile when @p verified is NULL.
 */
PSPACE_API int pspace_tile_view_unverified(pspace_codec *c, const void *buf, size_t len,
                                           pspace_dtype want, const void **data,
                                           pspace_tile_header *hdr, int *verified);

/** @return the largest encoded size of a rows x cols tile under @p opts. */
PSPACE_API size_t pspace_tile_bound(const pspace_codec_opts *opts, uint32_t rows, uint32_t cols);

/** CRC-32C (Castagnoli) of @p len bytes, continuing from @p crc (0 to start). */
PSPACE_API uint32_t pspace_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
