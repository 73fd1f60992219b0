/*
 * The on-disk tile format. An encoded tile is a 32-byte header followed by
 * the payload. All header fields are little-endian and fixed width:
 *
 *   off  size  field
 *   0    4     magic "PSTL" (bytes 'P','S','T','L')
 *   4    1     header version = 1
 *   5    1     dtype (pspace_dtype id: 1 f64, 2 f32, 3 bf16, 4 f16)
 *   6    1     codec (0 raw, 1 zstd, 2 zstd planes, 3 planes)
 *   7    1     flags (bit 0: byte shuffle; set for codecs 2 and 3, optional for
 *                     codec 1, clear for codec 0; other bits 0)
 *   8    4     rows (u32, > 0)
 *   12   4     cols (u32, > 0)
 *   16   4     payload length in bytes (u32) = tile length - 32
 *   20   4     scale exponent (i32; f16 only: stored = value * 2^e; else 0)
 *   24   4     CRC-32C over header bytes 0..23 followed by the payload
 *   28   4     reserved, 0
 *
 * The elements: rows*cols values, row-major, at the stored precision
 * (little-endian), es = 8, 4, 2, 2 bytes for f64, f32, bf16, f16;
 * n = rows*cols, and n*es fits in a u32. Byte shuffle splits them into es
 * planes of n bytes: plane b, byte i = byte b of element i
 * (shuffled[b*n + i] = elements[i*es + b]).
 *
 * Codec 0, raw: the payload is the n*es element bytes, flags 0.
 *
 * Codec 1, zstd: the payload is exactly one zstd frame that decompresses to
 * exactly n*es bytes: the elements, or with flag bit 0 the shuffled
 * elements. Written for zstd without shuffle; tiles with shuffle written
 * before codec 2 existed stay readable.
 *
 * Codec 2, zstd planes (shuffle + zstd): each byte plane on its own, so a
 * plane of noise (low mantissa bytes) is stored as it is and decodes as a
 * copy, and the others decompress as small independent frames.
 *
 *   off          size   field
 *   0            4*es   plane length table: es u32 LE, one per plane b
 *                       in order; bit 31 set: plane b is raw and the low
 *                       31 bits are n; bit 31 clear: plane b is one zstd
 *                       frame of that many bytes (1 .. n-1) decompressing
 *                       to exactly n bytes
 *   4*es         L_0    plane 0 (raw bytes or zstd frame)
 *   4*es+L_0     L_1    plane 1
 *   ...                 up to plane es-1
 *
 * The lengths L_b (low 31 bits) sum to exactly payload length - 4*es.
 * Flags bit 0 is set. The encoder stores a plane raw when its frame is
 * not below 97% of n, and the whole tile raw (codec 0) when the payload
 * misses the tile's min_ratio.
 *
 * Codec 3, planes (written since pspace 0.4 when a plane is nibble-coded,
 * else codec 2): codec 2's layout with a third kind of plane. A table
 * entry with bit 31 set is a raw plane as before; with bit 31 clear and
 * bit 30 set, the low 30 bits are the length of a nibble plane
 * (16 + ceil(n/2) .. n-1 bytes); both clear, a zstd frame as before (1 ..
 * n-1 bytes). Written only for n < 2^30. A nibble plane (nibble.h):
 *
 *   off            size         field
 *   0              16           dictionary: byte of codes 0..14; byte 15 is 0
 *   16             ceil(n/2)    codes: byte j holds the codes of bytes 2j
 *                               (low nibble) and 2j+1 (high nibble; 0 past
 *                               the plane's end)
 *   16+ceil(n/2)   e            escapes: for each code 15 in plane order,
 *                               the byte itself (e = the number of code 15s)
 *
 * The encoder codes a plane as nibbles at zstd levels up to 9 when a
 * sample of it says the nibble plane is kept (below 97% of n) and within
 * 4/3 of the sample's order-0 entropy; a sample above 7.75 bits a byte is
 * stored raw without trying zstd.
 */
#ifndef PSPACE_SRC_CODEC_TILE_FORMAT_H
#define PSPACE_SRC_CODEC_TILE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/codec.h"

#define PSPACE_TILE_MAGIC0       'P'
#define PSPACE_TILE_MAGIC1       'S'
#define PSPACE_TILE_MAGIC2       'T'
#define PSPACE_TILE_MAGIC3       'L'
#define PSPACE_TILE_VERSION      1
#define PSPACE_TILE_FLAG_SHUFFLE 0x01u
#define PSPACE_TILE_FLAGS_KNOWN  PSPACE_TILE_FLAG_SHUFFLE
#define PSPACE_TILE_CRC_SPAN     24          /* header bytes covered by the checksum */
#define PSPACE_TILE_PLANE_RAW    0x80000000u /* codec 2 plane length: plane stored raw */
#define PSPACE_TILE_PLANE_LEN    0x7fffffffu /* codec 2 plane length: the byte count */
#define PSPACE_TILE_PLANE_NIBBLE 0x40000000u /* codec 3 plane length: a nibble plane */
#define PSPACE_TILE_PLANE_LEN3   0x3fffffffu /* codec 3 coded plane length: the byte count */

/*
 * The layout as a struct, for the offsets below and the size check only:
 * tiles are read and written field by field, in little-endian order,
 * never by copying this struct.
 */
struct pspace_tile_disk {
	uint8_t magic[4];
	uint8_t version;
	uint8_t dtype;
	uint8_t codec;
	uint8_t flags;
	uint32_t rows;
	uint32_t cols;
	uint32_t payload_len;
	int32_t scale_exp;
	uint32_t crc;
	uint32_t reserved;
};

_Static_assert(sizeof(struct pspace_tile_disk) == PSPACE_TILE_HEADER_SIZE,
               "tile header must be 32 bytes");
_Static_assert(offsetof(struct pspace_tile_disk, rows) == 8, "rows at offset 8");
_Static_assert(offsetof(struct pspace_tile_disk, payload_len) == 16, "payload_len at offset 16");
_Static_assert(offsetof(struct pspace_tile_disk, scale_exp) == 20, "scale_exp at offset 20");
_Static_assert(offsetof(struct pspace_tile_disk, crc) == PSPACE_TILE_CRC_SPAN, "crc at offset 24");
_Static_assert(offsetof(struct pspace_tile_disk, reserved) == 28, "reserved at offset 28");

#endif
