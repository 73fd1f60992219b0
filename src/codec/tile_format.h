/*
 * The on-disk tile format. An encoded tile is a 32-byte header followed by
 * the payload. All header fields are little-endian and fixed width:
 *
 *   off  size  field
 *   0    4     magic "PSTL" (bytes 'P','S','T','L')
 *   4    1     header version = 1
 *   5    1     dtype (pspace_dtype id: 1 f64, 2 f32, 3 bf16, 4 f16)
 *   6    1     codec (0 raw, 1 zstd)
 *   7    1     flags (bit 0: byte shuffle applied before zstd; other bits 0)
 *   8    4     rows (u32, > 0)
 *   12   4     cols (u32, > 0)
 *   16   4     payload length in bytes (u32) = tile length - 32
 *   20   4     scale exponent (i32; f16 only: stored = value * 2^e; else 0)
 *   24   4     CRC-32C over header bytes 0..23 followed by the payload
 *   28   4     reserved, 0
 *
 * Payload: rows*cols elements, row-major, at the stored precision
 * (little-endian), then optionally byte-shuffled (element byte planes:
 * out[b*n + i] = in[i*es + b]), then optionally compressed as one zstd
 * frame. A raw payload has flags 0 and is exactly rows*cols*es bytes; a
 * zstd payload decompresses to exactly that. rows*cols*es fits in a u32.
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
#define PSPACE_TILE_CRC_SPAN     24 /* header bytes covered by the checksum */

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
