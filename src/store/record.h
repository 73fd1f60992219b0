/*
 * On-disk records: the catalog record of a matrix and the header of a
 * small array. Fixed-width little-endian fields, encoded and decoded byte
 * by byte; the layouts are tabulated in README.md ("Store format").
 */
#ifndef PSPACE_SRC_STORE_RECORD_H
#define PSPACE_SRC_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/store.h"

/** Catalog record version written by this pspace. */
#define PSPACE_RECORD_VERSION 1
/** Fixed part of a catalog record; block dims (u64 each) and a CRC-32C follow. */
#define PSPACE_RECORD_FIXED 136
/** Symmetric flag in the record's flags field. */
#define PSPACE_RECORD_SYMMETRIC 1u
/** Flag: the record holds a tile digest (pspace 0.3.0 and earlier wrote none). */
#define PSPACE_RECORD_DIGEST 2u

/** @return the encoded size of a record with @p nblocks blocks. */
static inline size_t pspace_record_size(uint32_t nblocks)
{
	return PSPACE_RECORD_FIXED + (size_t)nblocks * 8 + 4;
}

/** Encodes @p info (name excluded) and @p dims into @p buf of pspace_record_size() bytes. */
void pspace_record_encode(uint8_t *buf, const pspace_matrix_info *info, const uint64_t *dims);

/**
 * Decodes a record of @p len bytes into @p info (name untouched) and, if
 * @p dims is not NULL, a malloc'd array of block dims.
 * @return 0, PSPACE_ECORRUPT (bad length, version, checksum or field) or
 * PSPACE_ENOMEM; the caller adds the context.
 */
int pspace_record_decode(const uint8_t *buf, size_t len, pspace_matrix_info *info, uint64_t **dims);

/**
 * One tile's term of a matrix's tile digest: a 32-bit hash of its 20-byte
 * key and the CRC-32C in its header. The digest is the sum (mod 2^32) of the
 * terms of all tiles, so a writer keeps it as tiles come and go in any order.
 */
uint32_t pspace_tile_digest_term(const uint8_t *key, uint32_t crc);

/** @return the CRC-32C field of encoded tile @p data of @p len bytes (0 if too short). */
uint32_t pspace_tile_crc_field(const void *data, size_t len);

/** Array value: header, then the elements little-endian. */
#define PSPACE_ARRAY_MAGIC  0x52415350u /* "PSAR" */
#define PSPACE_ARRAY_HEADER 48

typedef struct pspace_array_header {
	pspace_dtype dtype;
	int ndim;
	uint64_t shape[4];
	uint32_t crc; /* CRC-32C of header bytes 0..39 and the data */
} pspace_array_header;

/** Encodes the header (crc included) of an array with @p data_len data bytes. */
void pspace_array_header_encode(uint8_t *buf, const pspace_array_header *h, const void *data,
                                size_t data_len);

/**
 * Decodes and checks an array value of @p len bytes: magic, type, shape
 * against the length, and (if @p verify) the checksum.
 * @return 0 or PSPACE_ECORRUPT.
 */
int pspace_array_header_decode(const uint8_t *buf, size_t len, int verify, pspace_array_header *h,
                               uint64_t *count);

#endif
