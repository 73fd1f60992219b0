/*
 * Internal: the codec context and its reusable scratch buffers.
 */
#ifndef PSPACE_SRC_CODEC_CODEC_H
#define PSPACE_SRC_CODEC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "codec/crc32c.h"
#include "codec/shuffle.h"
#include "pspace/codec.h"

/** A scratch buffer, grown geometrically and never shrunk. Contents do not survive growth. */
struct pspace_codec_buf {
	unsigned char *p;
	size_t cap;
};

/** Scratch buffers of a context, by role. */
enum {
	PSPACE_CODEC_BUF_OUT,       /**< encode: the encoded tile handed to the caller */
	PSPACE_CODEC_BUF_A,         /**< converted elements / decompressed payload */
	PSPACE_CODEC_BUF_B,         /**< shuffled elements / unshuffled elements */
	PSPACE_CODEC_BUF_VIEW,      /**< pspace_tile_view() output */
	PSPACE_CODEC_BUF_PANEL,     /**< a row panel of pspace_tile_panels_rows(), as stored */
	PSPACE_CODEC_BUF_PANEL_OUT, /**< the same panel converted to the wanted type */
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
/** pspace_tile_encode_ex() flag: every plane zstd or raw (codec 2, pspace 0.3's encoder). */
#define PSPACE_TILE_ENCODE_ZSTD_ONLY 0x2u

/**
 * pspace_tile_encode() with internal @p flags (PSPACE_TILE_ENCODE_*), for
 * tests and benchmarks that need the older layouts (single-frame shuffled
 * tiles, zstd planes only).
 */
int pspace_tile_encode_ex(pspace_codec *c, const pspace_codec_opts *opts, unsigned flags,
                          pspace_dtype src_type, const void *src, uint32_t rows, uint32_t cols,
                          size_t ld, const void **out, size_t *out_len);

/**
 * Decodes the coded planes (zstd, nibble) of a codec 2 or 3 payload of
 * @p plen bytes (@p es planes of @p n bytes) into @p t (plane b at b*n)
 * and points pl[b] at each plane: into @p t, or into @p payload for a
 * plane stored raw. Does not verify the checksum; when @p plane_crc is not
 * NULL, plane_crc[b] is the CRC-32C of the stored bytes of each coded
 * plane, taken right after it was decoded (from the cache), and 0 for a
 * plane stored raw; when @p plane_len is not NULL, plane_len[b] is its
 * stored length, with PSPACE_TILE_PLANE_RAW set for a raw plane.
 * @return 0, PSPACE_ECORRUPT or PSPACE_ENOMEM.
 */
int pspace_tile_planes_decode(pspace_codec *c, const unsigned char *payload, uint32_t plen,
                              pspace_codec_id codec, size_t es, size_t n, unsigned char *t,
                              const void **pl, uint32_t *plane_crc, uint32_t *plane_len);

/**
 * A tile handed out in row panels (pspace_tile_panels_open()), so that a
 * caller works on a few rows at a time while they are in the L1 cache: a
 * raw tile's rows are read in place and checksummed panel by panel after
 * the caller used them (or by the caller as it reads them:
 * pspace_tile_panels_crc_rows()), a codec 2 (byte planes) tile is unshuffled and
 * converted panel by panel from its decoded planes, without the whole
 * tile being written out and read back, and its planes stored raw are
 * checksummed panel by panel as they are read (the checksums of the
 * planes joined at the end). Other tiles are decoded whole.
 */
typedef struct pspace_tile_panels {
	pspace_tile_header h;
	const unsigned char *buf;
	size_t len;
	pspace_dtype want;
	int mode;                                  /* how rows are handed out (panel.c) */
	const void *planes[PSPACE_SHUFFLE_MAX_ES]; /* codecs 2, 3: each byte plane */
	const unsigned char *elems;                /* raw in place or decoded: the rows */
	uint32_t next;                             /* the row the next panel starts at */
	uint32_t crc, crc_rows; /* header (and plane table), then rows checksummed so far */
	uint32_t plane_crc[PSPACE_SHUFFLE_MAX_ES]; /* codecs 2, 3: of each plane's stored bytes */
	uint32_t plane_len[PSPACE_SHUFFLE_MAX_ES]; /* codecs 2, 3: stored length, raw bit */
	int by_rows; /* raw in place: the caller folds the rows into rows_crc */
	pspace_crc32c_rows rows_crc;
} pspace_tile_panels;

/**
 * Opens tile @p buf (@p len bytes, header already parsed into @p h) for
 * reading in row panels of type @p want (F32, F64, or the tile's own type:
 * its values as stored), with buffers of @p c.
 * A tile decoded whole is verified here; raw tiles read in place and codec
 * 2 tiles by pspace_tile_panels_finish(), so nothing computed from their
 * panels may be used before it returned 0. @return 0, PSPACE_ECORRUPT,
 * PSPACE_ENOMEM or PSPACE_EINVAL.
 */
int pspace_tile_panels_open(pspace_tile_panels *p, pspace_codec *c, const void *buf, size_t len,
                            const pspace_tile_header *h, pspace_dtype want);

/**
 * Points *data at rows [@p r0, @p r0 + @p rows) of the tile (type want,
 * ld = cols), valid until the next call on @p p or @p c. Panels must be
 * asked for in order (each r0 the end of the previous panel).
 * @return 0 or PSPACE_EINVAL (out of order or out of the tile).
 */
int pspace_tile_panels_rows(pspace_tile_panels *p, pspace_codec *c, uint32_t r0, uint32_t rows,
                            const void **data);

/**
 * Lets the caller checksum the rows of a raw tile read in place as it reads
 * them (a kernel with crc32c_lanes.h), instead of the panels doing it from
 * L1 after it: when the tile's rows come in fours of whole 64-byte chunks
 * and pspace_crc32c_rows_available(). Call after opening, before the first
 * panel. @return the state every row must then be folded into, in order,
 * before pspace_tile_panels_finish(); NULL: the panels checksum as usual.
 */
pspace_crc32c_rows *pspace_tile_panels_crc_rows(pspace_tile_panels *p);

/**
 * Ends the reading of a tile: checksums what is left of a raw tile read
 * in place (or of the raw planes of a codec 2 tile) and compares.
 * @return 0 or PSPACE_ECORRUPT (checksum mismatch: nothing computed from
 * the panels may be used).
 */
int pspace_tile_panels_finish(pspace_tile_panels *p);

#endif
