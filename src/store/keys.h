/*
 * Byte-order helpers and key encodings. Keys are big-endian so LMDB's
 * memcmp order is the streaming order (matrix id, block, tile row, tile col);
 * values are little-endian.
 */
#ifndef PSPACE_SRC_STORE_KEYS_H
#define PSPACE_SRC_STORE_KEYS_H

#include <stdint.h>
#include <string.h>

/** tiles key: id (u64 BE) | block (u32 BE) | tile row (u32 BE) | tile col (u32 BE). */
#define PSPACE_TILE_KEY_SIZE 20
/** arrays key: id (u64 BE) | array name bytes. */
#define PSPACE_ARRAY_KEY_PREFIX 8

static inline void pspace_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void pspace_put_be64(uint8_t *p, uint64_t v)
{
	pspace_put_be32(p, (uint32_t)(v >> 32));
	pspace_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t pspace_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t pspace_get_be64(const uint8_t *p)
{
	return (uint64_t)pspace_get_be32(p) << 32 | pspace_get_be32(p + 4);
}

static inline void pspace_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void pspace_put_le64(uint8_t *p, uint64_t v)
{
	pspace_put_le32(p, (uint32_t)v);
	pspace_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t pspace_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t pspace_get_le64(const uint8_t *p)
{
	return (uint64_t)pspace_get_le32(p) | (uint64_t)pspace_get_le32(p + 4) << 32;
}

static inline void pspace_tile_key(uint8_t k[PSPACE_TILE_KEY_SIZE], uint64_t id, uint32_t block,
                                   uint32_t row, uint32_t col)
{
	pspace_put_be64(k, id);
	pspace_put_be32(k + 8, block);
	pspace_put_be32(k + 12, row);
	pspace_put_be32(k + 16, col);
}

static inline void pspace_tile_key_parse(const uint8_t *k, uint64_t *id, uint32_t *block,
                                         uint32_t *row, uint32_t *col)
{
	*id = pspace_get_be64(k);
	*block = pspace_get_be32(k + 8);
	*row = pspace_get_be32(k + 12);
	*col = pspace_get_be32(k + 16);
}

#endif
