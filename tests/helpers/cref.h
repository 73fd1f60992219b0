/*
 * Test helper for the codec tests: the tile format read and written by
 * hand (little-endian fields, a bitwise CRC-32C, headers, the zstd-planes
 * table), the value each stored precision must give back computed in
 * double, test data, and the round-trip and corruption checks built on
 * them, all independent of src/codec. Everything asserts (cmocka) on
 * mismatch.
 */
#ifndef PSPACE_TESTS_CREF_H
#define PSPACE_TESTS_CREF_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/codec.h"

/* ---- the format by hand ------------------------------------------------------------- */

/** The little-endian 32-bit field at @p p. */
uint32_t cref_rd_le32(const unsigned char *p);
/** Writes @p v little-endian at @p p. */
void cref_wr_le32(unsigned char *p, uint32_t v);
/** Bit-at-a-time CRC-32C of @p len bytes, continuing @p crc: the reference for both library paths.
 */
uint32_t cref_crc32c(uint32_t crc, const void *buf, size_t len);
/** Recomputes the checksum of a (possibly doctored) tile of @p len bytes, as the format says. */
void cref_fix_crc(unsigned char *tile, size_t len);
/** Writes a tile header by hand (checksum 0: cref_fix_crc afterwards). */
void cref_make_header(unsigned char *t, unsigned dtype, unsigned codec, unsigned flags,
                      uint32_t rows, uint32_t cols, uint32_t plen, int32_t e);

/** Plane table of a codec 2 tile as documented in tile_format.h: bit 31 = raw. */
struct cref_planes {
	size_t es, n;
	uint32_t len[8];
	int raw[8], nibble[8];
};

/**
 * Reads a planes tile (codec 2 or 3) without the library: the table into
 * @p pi, each plane (ZSTD_decompress, its own nibble decoder or a copy),
 * the unshuffle, and (if @p vals)
 * the stored values as double (f16 scaled back by 2^-e). Checks the
 * table's consistency on the way.
 */
void cref_planes_read(const unsigned char *t, size_t len, struct cref_planes *pi, double *vals);

/* ---- stored values ------------------------------------------------------------------ */

/** @p v rounded to @p p significant bits, to nearest even (v normal, no overflow). */
double cref_round_sig(double v, int p);
/** Largest e with maxabs * 2^e < 2^15, found by walking, independent of the library. */
int cref_scale_exp(double maxabs);
/**
 * The value a source element @p x (exactly representable in @p src_type)
 * must come back as when stored at precision @p stored (f16: with scale
 * exponent @p e), computed in double.
 */
double cref_stored(pspace_dtype stored, pspace_dtype src_type, double x, int e);

/* ---- data and checks ---------------------------------------------------------------- */

/** @p size bytes aligned to @p align (rounded up to a multiple of it; free()). */
void *cref_aligned(size_t align, size_t size);

/** A tile shape: rows x cols, leading dimensions of the source and of the decode target. */
struct cref_shape {
	uint32_t rows, cols;
	size_t src_ld, dst_ld;
};

/** The round-trip shapes, 1x1 to 256x256, one with ld > cols on both sides. */
extern const struct cref_shape cref_shapes[];
#define CREF_NSHAPES 5

enum cref_data { CREF_UNIFORM, CREF_FISHER };

/**
 * Fills a rows x cols block (leading dimension src_ld, padding set to a
 * huge value that must never be read) with uniform [-1, 1) values or a
 * block of a Fisher-like matrix F = G^T G / n, G an n x m Gaussian,
 * m = max(rows, cols), computed in double from the generator @p rng.
 * Values go into @p x (double, exactly what the source holds) and into
 * @p src as @p src_type.
 */
void cref_make_data(uint64_t *rng, enum cref_data kind, pspace_dtype src_type,
                    const struct cref_shape *sh, double *x, void *src);

/**
 * Encodes @p src (values @p x) with @p o and @p eflags and checks the
 * header, the planes read without the library, decode and view into f32
 * and f64 (padding untouched) element by element against cref_stored,
 * with the error bounds of bf16 and scaled f16.
 */
void cref_check_roundtrip(pspace_codec *c, const pspace_codec_opts *o, unsigned eflags,
                          pspace_dtype src_type, const struct cref_shape *sh, const double *x,
                          const void *src);

/**
 * Every one-bit and one-byte flip and every truncation of @p tile (up to
 * 64 columns) is rejected by decode, view and verify (a deferred view
 * fails or leaves the check to its caller); the intact tile
 * decodes.
 */
void cref_flip_all(pspace_codec *c, const void *tile, size_t len);

#endif
