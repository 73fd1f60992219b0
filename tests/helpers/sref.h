/*
 * Test helper for the store tests: matrices described by a small spec and
 * written tile by tile (f32 tiles) whose every element is a hash of
 * (seed, block, row, col), so a reader's tiles are checked against values
 * recomputed here, independently of what was written.
 */
#ifndef PSPACE_TESTS_SREF_H
#define PSPACE_TESTS_SREF_H

#include <stddef.h>
#include <stdint.h>

#include "pspace/store.h"

/** A matrix to write: its name, kind, blocks of dims[0..nblocks), tile edge, symmetry, seed. */
typedef struct sref_spec {
	const char *name;
	pspace_kind kind;
	uint32_t nblocks;
	uint64_t dims[4];
	uint32_t tile;
	int sym;
	uint64_t seed;
	const char *layout; /**< layout text, or NULL */
} sref_spec;

/** Element (i, j) of block @p b (symmetric if @p sym); odd seeds give compressible values. */
float sref_value(uint64_t seed, int sym, uint32_t b, uint64_t i, uint64_t j);
/** The dimension of @p m: the sum of its block dims. */
uint64_t sref_dim(const sref_spec *m);
/** Tiles per side of block @p b. */
uint32_t sref_ntiles(const sref_spec *m, uint32_t b);
/** Rows (or columns) of tile row (or column) @p idx of block @p b. */
uint32_t sref_edge(const sref_spec *m, uint32_t b, uint32_t idx);
/** Fills @p buf (leading dimension @p ld) with tile (@p r, @p c) of block @p b. */
void sref_fill(const sref_spec *m, uint32_t b, uint32_t r, uint32_t c, float *buf, size_t ld);
/** Expected tile count and logical (f32) bytes of @p m, counted from the spec. */
void sref_stats(const sref_spec *m, uint64_t *tiles, uint64_t *logical);
/** The writer's description of @p m (f32 tiles, default codec). */
void sref_desc(const sref_spec *m, pspace_matrix_desc *d);
/**
 * Puts the tiles of @p m (all if @p limit < 0, else the first @p limit)
 * in streaming order; @p done (optional) gets how many went in.
 * @return 0 or the first error.
 */
int sref_put_tiles(pspace_writer *w, const sref_spec *m, long limit, long *done);
/** Writes @p m whole (aborting the writer on error). @return 0 or the error. */
int sref_write(pspace_store *s, const sref_spec *m);
/**
 * Reads @p m back through reader_next and reader_tile (reader @p flags),
 * compares every element exactly and the statistics with the spec.
 * @return 0, or -1 with a message in @p why.
 */
int sref_check(pspace_store *s, const sref_spec *m, int flags, char *why, size_t whylen);

/** Asserts sref_check(@p s, @p m, @p flags) (printing its message on failure). */
#define SREF_CHECK(s, m, flags)                                                                    \
	do {                                                                                       \
		char why_[512] = "";                                                               \
		int rc_ = sref_check((s), (m), (flags), why_, sizeof(why_));                       \
		if (rc_ != 0)                                                                      \
			print_error("%s\n", why_);                                                 \
		assert_int_equal(rc_, 0);                                                          \
	} while (0)

/** Opens the store at @p path (nosync, map_max @p map_max; asserts). */
pspace_store *sref_open(const char *path, size_t map_max);

#endif
