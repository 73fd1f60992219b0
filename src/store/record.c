/*
 * Catalog record and array header encoding.
 */
#include "store/record.h"

#include <stdlib.h>
#include <string.h>

#include "pspace/codec.h"
#include "store/keys.h"

/* Offsets of the catalog record fields (see README.md, "Store format"). */
enum {
	REC_VERSION = 0,
	REC_KIND = 4,
	REC_ID = 8,
	REC_STATE = 16,
	REC_NBLOCKS = 20,
	REC_D = 24,
	REC_TILE = 32,
	REC_FLAGS = 36,
	REC_DTYPE = 40,
	REC_LEVEL = 44,
	REC_SHUFFLE = 48,
	REC_DIGEST = 52,
	REC_MIN_RATIO = 56,
	REC_LAYOUT = 64,
	REC_CREATED = 72,
	REC_COMPLETED = 80,
	REC_TILES = 88,
	REC_RAW_TILES = 96,
	REC_TILE_BYTES = 104,
	REC_LOGICAL_BYTES = 112,
	REC_ARRAYS = 120,
	REC_ARRAY_BYTES = 128,
	REC_END = 136,
};

_Static_assert(REC_END == PSPACE_RECORD_FIXED, "catalog record fixed part is 136 bytes");

static uint64_t f64_bits(double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return u;
}

static double bits_f64(uint64_t u)
{
	double v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

void pspace_record_encode(uint8_t *buf, const pspace_matrix_info *info, const uint64_t *dims)
{
	size_t n = pspace_record_size(info->nblocks);

	memset(buf, 0, n);
	pspace_put_le32(buf + REC_VERSION, PSPACE_RECORD_VERSION);
	pspace_put_le32(buf + REC_KIND, (uint32_t)info->kind);
	pspace_put_le64(buf + REC_ID, info->id);
	pspace_put_le32(buf + REC_STATE, (uint32_t)info->state);
	pspace_put_le32(buf + REC_NBLOCKS, info->nblocks);
	pspace_put_le64(buf + REC_D, info->d);
	pspace_put_le32(buf + REC_TILE, info->tile);
	pspace_put_le32(buf + REC_FLAGS, (info->symmetric ? PSPACE_RECORD_SYMMETRIC : 0) |
	                                     (info->has_digest ? PSPACE_RECORD_DIGEST : 0));
	pspace_put_le32(buf + REC_DIGEST, info->has_digest ? info->tile_digest : 0);
	pspace_put_le32(buf + REC_DTYPE, (uint32_t)info->codec.dtype);
	pspace_put_le32(buf + REC_LEVEL, (uint32_t)info->codec.level);
	pspace_put_le32(buf + REC_SHUFFLE, info->codec.shuffle ? 1 : 0);
	pspace_put_le64(buf + REC_MIN_RATIO, f64_bits(info->codec.min_ratio));
	pspace_put_le64(buf + REC_LAYOUT, info->layout_id);
	pspace_put_le64(buf + REC_CREATED, info->created);
	pspace_put_le64(buf + REC_COMPLETED, info->completed);
	pspace_put_le64(buf + REC_TILES, info->tiles);
	pspace_put_le64(buf + REC_RAW_TILES, info->raw_tiles);
	pspace_put_le64(buf + REC_TILE_BYTES, info->tile_bytes);
	pspace_put_le64(buf + REC_LOGICAL_BYTES, info->logical_bytes);
	pspace_put_le64(buf + REC_ARRAYS, info->arrays);
	pspace_put_le64(buf + REC_ARRAY_BYTES, info->array_bytes);
	for (uint32_t i = 0; i < info->nblocks; i++)
		pspace_put_le64(buf + REC_END + 8 * (size_t)i, dims[i]);
	pspace_put_le32(buf + n - 4, pspace_crc32c(0, buf, n - 4));
}

int pspace_record_decode(const uint8_t *buf, size_t len, pspace_matrix_info *info, uint64_t **dims)
{
	uint32_t nblocks, kind, state, dtype;
	uint64_t *bd = NULL;

	if (len < pspace_record_size(0))
		return PSPACE_ECORRUPT;
	nblocks = pspace_get_le32(buf + REC_NBLOCKS);
	if (len != pspace_record_size(nblocks))
		return PSPACE_ECORRUPT;
	if (pspace_get_le32(buf + len - 4) != pspace_crc32c(0, buf, len - 4))
		return PSPACE_ECORRUPT;
	if (pspace_get_le32(buf + REC_VERSION) != PSPACE_RECORD_VERSION)
		return PSPACE_ECORRUPT;
	kind = pspace_get_le32(buf + REC_KIND);
	state = pspace_get_le32(buf + REC_STATE);
	dtype = pspace_get_le32(buf + REC_DTYPE);
	if ((kind < PSPACE_KIND_DENSE || kind > PSPACE_KIND_MIXED) && kind != PSPACE_KIND_CHOLESKY)
		return PSPACE_ECORRUPT;
	if (state != PSPACE_STATE_BUILDING && state != PSPACE_STATE_COMPLETE)
		return PSPACE_ECORRUPT;
	if (dtype < PSPACE_F64 || dtype > PSPACE_F16)
		return PSPACE_ECORRUPT;
	if (nblocks > 0 && pspace_get_le32(buf + REC_TILE) == 0)
		return PSPACE_ECORRUPT;

	info->id = pspace_get_le64(buf + REC_ID);
	info->kind = (pspace_kind)kind;
	info->state = (pspace_state)state;
	info->d = pspace_get_le64(buf + REC_D);
	info->nblocks = nblocks;
	info->tile = pspace_get_le32(buf + REC_TILE);
	info->symmetric = (pspace_get_le32(buf + REC_FLAGS) & PSPACE_RECORD_SYMMETRIC) != 0;
	info->has_digest = (pspace_get_le32(buf + REC_FLAGS) & PSPACE_RECORD_DIGEST) != 0;
	info->tile_digest = info->has_digest ? pspace_get_le32(buf + REC_DIGEST) : 0;
	info->codec.dtype = (pspace_dtype)dtype;
	info->codec.level = (int)(int32_t)pspace_get_le32(buf + REC_LEVEL);
	info->codec.shuffle = pspace_get_le32(buf + REC_SHUFFLE) != 0;
	info->codec.min_ratio = bits_f64(pspace_get_le64(buf + REC_MIN_RATIO));
	info->layout_id = pspace_get_le64(buf + REC_LAYOUT);
	info->created = pspace_get_le64(buf + REC_CREATED);
	info->completed = pspace_get_le64(buf + REC_COMPLETED);
	info->tiles = pspace_get_le64(buf + REC_TILES);
	info->raw_tiles = pspace_get_le64(buf + REC_RAW_TILES);
	info->tile_bytes = pspace_get_le64(buf + REC_TILE_BYTES);
	info->logical_bytes = pspace_get_le64(buf + REC_LOGICAL_BYTES);
	info->arrays = pspace_get_le64(buf + REC_ARRAYS);
	info->array_bytes = pspace_get_le64(buf + REC_ARRAY_BYTES);

	if (dims) {
		bd = malloc((nblocks ? nblocks : 1) * sizeof(*bd));
		if (!bd)
			return PSPACE_ENOMEM;
		for (uint32_t i = 0; i < nblocks; i++)
			bd[i] = pspace_get_le64(buf + REC_END + 8 * (size_t)i);
		*dims = bd;
	}
	return 0;
}

uint32_t pspace_tile_digest_term(const uint8_t *key, uint32_t crc)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t c[4];

	pspace_put_le32(c, crc);
	for (int i = 0; i < PSPACE_TILE_KEY_SIZE; i++)
		h = (h ^ key[i]) * 0x100000001b3ull;
	for (int i = 0; i < 4; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	/* FNV alone mixes the last bytes weakly: finish with splitmix64's mixer. */
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	h ^= h >> 31;
	return (uint32_t)(h ^ (h >> 32));
}

uint32_t pspace_tile_crc_field(const void *data, size_t len)
{
	return len >= PSPACE_TILE_HEADER_SIZE ? pspace_get_le32((const uint8_t *)data + 24) : 0;
}

/* Offsets of the array header fields. */
enum {
	ARR_MAGIC = 0,
	ARR_DTYPE = 4,
	ARR_NDIM = 5,
	ARR_RESERVED = 6,
	ARR_SHAPE = 8,
	ARR_CRC = 40,
	ARR_RESERVED2 = 44,
	ARR_END = 48,
};

_Static_assert(ARR_END == PSPACE_ARRAY_HEADER, "array header is 48 bytes");

void pspace_array_header_encode(uint8_t *buf, const pspace_array_header *h, const void *data,
                                size_t data_len)
{
	uint32_t crc;

	memset(buf, 0, PSPACE_ARRAY_HEADER);
	pspace_put_le32(buf + ARR_MAGIC, PSPACE_ARRAY_MAGIC);
	buf[ARR_DTYPE] = (uint8_t)h->dtype;
	buf[ARR_NDIM] = (uint8_t)h->ndim;
	for (int i = 0; i < 4; i++)
		pspace_put_le64(buf + ARR_SHAPE + 8 * i, i < h->ndim ? h->shape[i] : 0);
	crc = pspace_crc32c(0, buf, ARR_CRC);
	crc = pspace_crc32c(crc, data, data_len);
	pspace_put_le32(buf + ARR_CRC, crc);
}

int pspace_array_header_decode(const uint8_t *buf, size_t len, int verify, pspace_array_header *h,
                               uint64_t *count)
{
	uint64_t n = 1;
	size_t esz;

	if (len < PSPACE_ARRAY_HEADER || pspace_get_le32(buf + ARR_MAGIC) != PSPACE_ARRAY_MAGIC)
		return PSPACE_ECORRUPT;
	h->dtype = (pspace_dtype)buf[ARR_DTYPE];
	h->ndim = buf[ARR_NDIM];
	if (h->ndim > 4)
		return PSPACE_ECORRUPT;
	esz = pspace_dtype_size(h->dtype);
	if (esz == 0)
		return PSPACE_ECORRUPT;
	for (int i = 0; i < 4; i++) {
		h->shape[i] = pspace_get_le64(buf + ARR_SHAPE + 8 * i);
		if (i < h->ndim) {
			if (h->shape[i] != 0 && n > UINT64_MAX / h->shape[i])
				return PSPACE_ECORRUPT;
			n *= h->shape[i];
		}
	}
	if (n > (len - PSPACE_ARRAY_HEADER) / esz || n * esz != len - PSPACE_ARRAY_HEADER)
		return PSPACE_ECORRUPT;
	h->crc = pspace_get_le32(buf + ARR_CRC);
	if (verify) {
		uint32_t crc = pspace_crc32c(0, buf, ARR_CRC);

		crc = pspace_crc32c(crc, buf + PSPACE_ARRAY_HEADER, len - PSPACE_ARRAY_HEADER);
		if (crc != h->crc)
			return PSPACE_ECORRUPT;
	}
	*count = n;
	return 0;
}
