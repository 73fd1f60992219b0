/*
 * Internal: reader entry points for the streaming engine that take the
 * codec's internal types.
 */
#ifndef PSPACE_SRC_STORE_READER_H
#define PSPACE_SRC_STORE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "pspace/store.h"

/**
 * As pspace_reader_view_unverified(), for a caller that reads tile @p t in
 * row panels: checks the tile's header against its address, counts it as
 * read and opens it with pspace_tile_panels_open() into @p p (buffers of
 * @p c). A raw tile read in place is verified by
 * pspace_tile_panels_finish(), every other tile here.
 * @return 0, or an error whose detail names the tile.
 */
int pspace_reader_panels_open(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                              pspace_dtype want, pspace_tile_panels *p);

/**
 * 1 when the store's map is advised for huge pages (see "Streaming engine"
 * in the README): page faults then read the file ahead in 2 MiB folios,
 * and read-ahead requests of the caller's own (MADV_WILLNEED, which reads
 * 4 KiB pages) would only spoil them.
 */
int pspace_store_map_huge(const pspace_store *s);

/**
 * Where this process maps the data file of @p s: *@p base and *@p size
 * bytes from it (the whole map, past the file's end too). @return 1, or 0
 * when unknown (*@p size is then 0).
 */
int pspace_store_map_range(const pspace_store *s, uintptr_t *base, size_t *size);

/**
 * Positions the cursor for a walk backwards, against streaming order: the
 * next pspace_reader_next_with() returns the last stored tile of the
 * blocks before @p block (every block when @p block is the matrix's block
 * count), and each one after it the tile before, down to the matrix's
 * first tile. A walk from the end that meets fewer tiles than the catalog
 * records fails as a forward walk from the first does.
 */
int pspace_reader_seek_back(pspace_reader *r, uint32_t block);

/**
 * The direction of an out-of-core walk over matrix @p id of this store:
 * its walks alternate, forwards, backwards, forwards, ..., so that a walk
 * begins where the last one ended, in the part of the file the page cache
 * still holds (a cyclic scan of a file larger than the cache evicts each
 * page just before it is wanted again). Counted per matrix (ids apart by a
 * multiple of 64 share a count), so passes over two matrices in turn each
 * alternate. @return 1 for backwards (and counts the walk).
 */
int pspace_store_walk_back(pspace_store *s, uint64_t id);

/**
 * pspace_reader_next(), calling @p before(@p ud, t) with the tile's address
 * and extent before anything of it is read from the map (stepping reads
 * the tile's checksum from its header): a caller reading out of core can
 * ask for the tile's pages first, so that the header is not read alone
 * with the operating system's read-around of a page fault.
 */
int pspace_reader_next_with(pspace_tile_ref *out, int *done, pspace_reader *r,
                            void (*before)(void *ud, const pspace_tile_ref *t), void *ud);

#endif
