/*
 * Nibble planes: a byte plane coded as 4-bit codes into a 15-entry
 * dictionary, with an escape code for the other bytes.
 *
 * The sign-and-exponent plane of Fisher-like f32 and bf16 tiles holds a few
 * dozen distinct bytes of about 3.8 bits of entropy; the 15 most frequent
 * cover ~96% of them. Coded as nibbles plus escape bytes it takes ~4.3
 * bits a byte, no more than zstd's Huffman literals (4.4), and decodes
 * with one table lookup per 64 bytes (pshufb) instead of an entropy
 * decoder: about 10x faster. The layout (tile_format.h):
 *
 *   dict[16]            codes 0..14 -> byte; dict[15] is 0 (reserved)
 *   codes[ceil(n/2)]    byte i/2 holds code i: low nibble for even i,
 *                       high nibble for odd i; for odd n the last high
 *                       nibble is 0
 *   escapes[e]          one byte per code 15, in plane order
 */
#ifndef PSPACE_SRC_CODEC_NIBBLE_H
#define PSPACE_SRC_CODEC_NIBBLE_H

#include <stddef.h>
#include <stdint.h>

/** Bytes of a nibble plane's dictionary. */
#define PSPACE_NIBBLE_DICT 16
/** The escape code: the byte follows among the escapes. */
#define PSPACE_NIBBLE_ESC 15

/** What a sample of a byte plane says about coding it. */
typedef struct pspace_plane_stats {
	uint32_t count[256]; /**< the sample's histogram */
	uint32_t total;      /**< bytes in the sample */
	double bits;         /**< its order-0 entropy, bits per byte (to 1e-3) */
	/* pspace_plane_dict(): */
	double escapes;   /**< fraction of the sample outside the dictionary */
	uint8_t dict[16]; /**< the 15 most frequent bytes of the sample (dict[15] = 0) */
	unsigned ncodes;  /**< distinct bytes in dict (<= 15) */
} pspace_plane_stats;

/**
 * Fills the histogram and entropy of @p s from a sample of the @p n bytes
 * at @p p: all of them up to 64 KiB, else every 8th run of 256 bytes (an
 * eighth of the plane).
 */
void pspace_plane_sample(pspace_plane_stats *s, const uint8_t *p, size_t n);

/** Fills the dictionary of @p s (sampled): its 15 most frequent bytes, ties to the smaller. */
void pspace_plane_dict(pspace_plane_stats *s);

/** The size of the nibble plane of @p n bytes with @p escapes escape bytes. */
static inline size_t pspace_nibble_size(size_t n, size_t escapes)
{
	return PSPACE_NIBBLE_DICT + (n + 1) / 2 + escapes;
}

/**
 * Codes the @p n bytes at @p p with dictionary @p dict (its first
 * @p ncodes entries) into @p dst. @return the plane's length, or 0 when it
 * would not fit @p cap bytes (dst is then undefined).
 */
size_t pspace_nibble_encode(uint8_t *dst, size_t cap, const uint8_t *p, size_t n,
                            const uint8_t *dict, unsigned ncodes);

/** pspace_nibble_encode() without vector instructions, for tests. */
size_t pspace_nibble_encode_portable(uint8_t *dst, size_t cap, const uint8_t *p, size_t n,
                                     const uint8_t *dict, unsigned ncodes);

/**
 * Decodes the nibble plane of @p len bytes at @p src into the @p n bytes at
 * @p dst. @return 0, or -1 when it is malformed (too short, dict[15] not
 * 0, a padding nibble set, or escape codes not matching its escape
 * bytes); @p dst is then undefined.
 */
int pspace_nibble_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t len);

/** pspace_nibble_decode() without vector instructions, for tests. */
int pspace_nibble_decode_portable(uint8_t *dst, size_t n, const uint8_t *src, size_t len);

#endif
