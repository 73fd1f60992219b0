/*
 * Internal: reader entry points for the streaming engine that take the
 * codec's internal types.
 */
#ifndef PSPACE_SRC_STORE_READER_H
#define PSPACE_SRC_STORE_READER_H

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

#endif
