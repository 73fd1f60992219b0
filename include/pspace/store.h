/*
 * pspace/store.h - the store: one LMDB environment (a directory) holding
 * many named matrices, their layouts, tiles and small arrays.
 *
 * Concurrency: one pspace_store per path per process (an LMDB rule). Any
 * number of readers, in this or other processes, run alongside one writer;
 * each reader sees the snapshot it opened. A matrix appears complete
 * atomically, when its writer finishes.
 *
 * Threads: a pspace_store may be used by several threads at once (opening
 * readers and writers, catalog lookups, statistics, removal); close it only
 * when no thread uses it any more. A pspace_writer is used only by the
 * thread that began it (it holds that thread's LMDB write transaction). A
 * pspace_reader is used by one thread at a time for its cursor and lookups
 * (seek, next, tile, arrays), except pspace_reader_decode() and
 * pspace_reader_view(), which may run on its tiles from several threads at
 * once, each with its own pspace_codec (the streaming engine does so).
 */
#ifndef PSPACE_STORE_H
#define PSPACE_STORE_H

#include "pspace/codec.h"
#include "pspace/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Tile edge used when a matrix descriptor leaves it 0: chosen by
 * bench_codec (README, "Benchmarks"): with byte shuffle, a 512 x 512 f32
 * tile gives zstd whole byte planes, so noisy low planes stay raw and decode
 * fast.
 */
#define PSPACE_DEFAULT_TILE 512

/** Longest matrix or array name, in bytes, without the terminator. */
#define PSPACE_NAME_MAX 255

typedef struct pspace_store pspace_store;
typedef struct pspace_writer pspace_writer;
typedef struct pspace_reader pspace_reader;

/** Options for pspace_store_open(). */
typedef struct pspace_store_opts {
	int readonly;         /**< open read-only (no lock-free writes, no create) */
	int create;           /**< create the store directory if missing */
	size_t map_max;       /**< upper limit on the map (and so the file) size, bytes; 0 = none */
	unsigned max_readers; /**< concurrent read transactions; 0 = 126 */
	int nosync;           /**< skip fsync at commit (tests, scratch stores) */
} pspace_store_opts;

/** Fills @p o with the defaults: read-write, create, no map limit. */
PSPACE_API void pspace_store_opts_default(pspace_store_opts *o);

/**
 * Opens (or creates) the store in directory @p path.
 * @param opts  NULL for the defaults.
 * @return 0; PSPACE_ENOTFOUND (no store there and create is off),
 * PSPACE_EVERSION (other format version), PSPACE_ECORRUPT (not a pspace
 * store, or truncated), PSPACE_EIO, PSPACE_EBUSY, PSPACE_ESTORE. *out is
 * NULL on failure.
 */
PSPACE_API int pspace_store_open(pspace_store **out, const char *path,
                                 const pspace_store_opts *opts);

/**
 * Closes the store; NULL is accepted. Readers, writers and matrices opened
 * on it must be closed or freed first.
 */
PSPACE_API void pspace_store_close(pspace_store *s);

/** @return the path the store was opened with (valid while @p s is open). */
PSPACE_API const char *pspace_store_path(const pspace_store *s);

/** Build state of a matrix, as recorded in the catalog. Ids are on disk. */
typedef enum pspace_state {
	PSPACE_STATE_BUILDING = 1, /**< a writer began it and has not finished */
	PSPACE_STATE_COMPLETE = 2, /**< finished; immutable from now on */
} pspace_state;

/** What a writer declares about a new matrix. */
typedef struct pspace_matrix_desc {
	pspace_kind kind;
	uint64_t d;       /**< total dimension (sum of block dims) */
	uint32_t nblocks; /**< diagonal blocks holding tiles (1 for dense; 0 = tileless) */
	const uint64_t *block_dims; /**< nblocks dimensions; NULL with nblocks == 1 means d */
	uint32_t tile;              /**< tile edge in elements; 0 = default */
	int symmetric;              /**< store only tiles with row <= col in each block */
	pspace_codec_opts codec;    /**< tile encoding */
	const char *layout_text;    /**< optional layout file text, stored once and shared */
} pspace_matrix_desc;

/** Catalog record of a matrix, plain data. */
typedef struct pspace_matrix_info {
	char name[PSPACE_NAME_MAX + 1];
	uint64_t id; /**< internal id, unique in the store's lifetime */
	pspace_kind kind;
	pspace_state state;
	uint64_t d;
	uint32_t nblocks;
	uint32_t tile;
	int symmetric;
	pspace_codec_opts codec;
	uint64_t layout_id; /**< 0 = no layout */
	uint64_t created;   /**< unix time, seconds */
	uint64_t completed; /**< unix time, 0 while building */
	/* statistics, final once complete */
	uint64_t tiles;         /**< tiles stored */
	uint64_t raw_tiles;     /**< of which stored raw (uncompressed) */
	uint64_t tile_bytes;    /**< encoded bytes of all tiles, headers included */
	uint64_t logical_bytes; /**< bytes of those tiles' elements at stored precision */
	uint64_t arrays;        /**< small arrays stored */
	uint64_t array_bytes;   /**< their bytes */
	/**
	 * 1 if the record holds tile_digest (records written by pspace 0.3.0
	 * and earlier do not; their tile count is still checked).
	 */
	int has_digest;
	/**
	 * Sum (mod 2^32) over the stored tiles of a hash of each tile's key and
	 * CRC-32C: a reader that walks all tiles of the matrix checks it and
	 * the tile count at the end of the walk (README, "Store format").
	 */
	uint32_t tile_digest;
} pspace_matrix_info;

/**
 * Fills @p out with the catalog record of matrix @p name, as of now (a
 * copy: it does not change when the matrix does).
 * @return 0 or PSPACE_ENOTFOUND.
 */
PSPACE_API int pspace_matrix_info_get(pspace_matrix_info *out, pspace_store *s, const char *name);

/**
 * Copies up to @p cap block dimensions of matrix @p name into @p dims.
 * @return 0, PSPACE_ENOTFOUND, or PSPACE_EINVAL if cap < nblocks.
 */
PSPACE_API int pspace_store_blocks(pspace_store *s, const char *name, uint64_t *dims, uint32_t cap);

/**
 * Calls @p fn for every matrix in name order, from one snapshot. Stops
 * early and returns @p fn's value when it is nonzero.
 */
PSPACE_API int pspace_store_foreach(pspace_store *s,
                                    int (*fn)(const pspace_matrix_info *info, void *ud), void *ud);

/** Removes matrix @p name (complete or not) with its tiles and arrays. */
PSPACE_API int pspace_store_remove(pspace_store *s, const char *name);

/**
 * Returns the text of layout @p layout_id in *out (malloc'd: the caller
 * frees it with free(); NULL on failure).
 * @return 0 or PSPACE_ENOTFOUND.
 */
PSPACE_API int pspace_store_layout(char **out, pspace_store *s, uint64_t layout_id);

/** Store-wide statistics: file and map sizes, LMDB page statistics. */
typedef struct pspace_store_stat {
	uint32_t format_version;
	uint64_t file_bytes; /**< size of the data file */
	uint64_t map_bytes;  /**< current map size */
	uint64_t used_bytes; /**< pages in use x page size */
	uint32_t page_size;
	uint64_t tile_entries, tile_branch_pages, tile_leaf_pages, tile_overflow_pages;
	uint32_t tree_depth;
	uint32_t readers_max, readers_used;
	uint64_t matrices;
} pspace_store_stat;

/** Fills @p out with the statistics of @p s as of now. @return 0 or error. */
PSPACE_API int pspace_store_stat_get(pspace_store_stat *out, pspace_store *s);

/**
 * @return how many tiles this handle has decoded or viewed since it was
 * opened (pspace_reader_decode / pspace_reader_view), over all threads.
 * Tells how many passes an evaluation made over the data.
 */
PSPACE_API uint64_t pspace_store_tiles_read(const pspace_store *s);

/**
 * Writes a compacted copy of the store to directory @p out_path (which must
 * not hold a store). @return 0 or error.
 */
PSPACE_API int pspace_store_compact(pspace_store *s, const char *out_path);

/* ---- writing ----------------------------------------------------------- */

/**
 * Begins a new matrix @p name: records it in the catalog as BUILDING (in a
 * committed transaction) and returns a writer. Only one writer per store at
 * a time; a second waits for the first (LMDB's writer lock).
 * @return 0, PSPACE_EEXIST (a matrix of that name exists), PSPACE_EINVAL.
 */
PSPACE_API int pspace_writer_begin(pspace_writer **out, pspace_store *s, const char *name,
                                   const pspace_matrix_desc *desc);

/**
 * Reopens an incomplete (BUILDING) matrix to finish it. Tiles checkpointed
 * before the interruption are kept; pspace_writer_has_tile() tells which.
 * @return 0, PSPACE_ENOTFOUND, PSPACE_EINVAL if the matrix is complete.
 */
PSPACE_API int pspace_writer_resume(pspace_writer **out, pspace_store *s, const char *name);

/**
 * Encodes and stores tile (@p tile_row, @p tile_col) of block @p block.
 * Its shape follows from the block dimension and the tile edge (edge tiles
 * are smaller); @p src holds it row-major with leading dimension @p ld.
 * Replaces a tile already written. Checkpoints automatically when the
 * transaction grows large.
 * @return 0, PSPACE_EINVAL (out of range, or below the diagonal of a
 * symmetric matrix), PSPACE_EFULL, PSPACE_EIO, PSPACE_ESTORE.
 */
PSPACE_API int pspace_writer_put_tile(pspace_writer *w, uint32_t block, uint32_t tile_row,
                                      uint32_t tile_col, pspace_dtype src_type, const void *src,
                                      size_t ld);

/**
 * Encodes tile (@p tile_row, @p tile_col) of block @p block as
 * pspace_writer_put_tile() would, with the caller's codec @p c: *enc points
 * into @p c's buffer, valid until its next use. Reads only what a writer
 * never changes, so several threads (one codec each) may encode for one
 * writer while its own thread stores with pspace_writer_put_encoded().
 * @return 0, PSPACE_EINVAL (address, data or leading dimension).
 */
PSPACE_API int pspace_writer_encode_tile(const void **enc, size_t *len, const pspace_writer *w,
                                         pspace_codec *c, uint32_t block, uint32_t tile_row,
                                         uint32_t tile_col, pspace_dtype src_type, const void *src,
                                         size_t ld);

/**
 * Stores a tile encoded by pspace_writer_encode_tile() (a copy is taken),
 * as pspace_writer_put_tile() does. From the writer's thread only.
 * @return 0, PSPACE_EINVAL (not such a tile of this matrix), PSPACE_EFULL,
 * PSPACE_EIO, PSPACE_ESTORE.
 */
PSPACE_API int pspace_writer_put_encoded(pspace_writer *w, uint32_t block, uint32_t tile_row,
                                         uint32_t tile_col, const void *enc, size_t len);

/** @return 1 if that tile is stored (committed or pending), 0 if not, or an error. */
PSPACE_API int pspace_writer_has_tile(pspace_writer *w, uint32_t block, uint32_t tile_row,
                                      uint32_t tile_col);

/**
 * Stores a small array (a diagonal, a factor, eigenvectors, ...) under the
 * matrix. Stored exactly as given (type @p t, C order), with a checksum.
 * @param ndim  0..4; @p shape has ndim entries.
 */
PSPACE_API int pspace_writer_put_array(pspace_writer *w, const char *name, pspace_dtype t, int ndim,
                                       const uint64_t *shape, const void *data);

/** Commits everything written so far (durable; the matrix stays BUILDING). */
PSPACE_API int pspace_writer_checkpoint(pspace_writer *w);

/**
 * Finishes the matrix: records statistics, marks it COMPLETE and commits,
 * atomically. Frees @p w whatever the result.
 */
PSPACE_API int pspace_writer_finish(pspace_writer *w);

/**
 * Abandons the writer: drops what was not checkpointed; the matrix stays
 * BUILDING (resumable) unless @p remove is nonzero. Frees @p w; NULL accepted.
 */
PSPACE_API void pspace_writer_abort(pspace_writer *w, int remove);

/* ---- reading ----------------------------------------------------------- */

/** Flags for pspace_reader_open(). */
enum {
	PSPACE_READ_INCOMPLETE = 1, /**< allow reading a matrix still BUILDING */
};

/**
 * Opens a read snapshot of matrix @p name. Data pointers handed out stay
 * valid until pspace_reader_close().
 * @return 0, PSPACE_ENOTFOUND, PSPACE_EINCOMPLETE (matrix not complete and
 * flag not given), PSPACE_EBUSY (reader slots exhausted).
 */
PSPACE_API int pspace_reader_open(pspace_reader **out, pspace_store *s, const char *name,
                                  int flags);

/**
 * Closes a reader and ends its snapshot: tile data it handed out becomes
 * invalid. NULL is accepted.
 */
PSPACE_API void pspace_reader_close(pspace_reader *r);

/**
 * @return the catalog record as of the reader's snapshot (borrowed: valid
 * until pspace_reader_close()).
 */
PSPACE_API const pspace_matrix_info *pspace_reader_info(const pspace_reader *r);

/** @return the dimension of block @p block (0 if out of range). */
PSPACE_API uint64_t pspace_reader_block_dim(const pspace_reader *r, uint32_t block);

/** An encoded tile inside the memory map. */
typedef struct pspace_tile_ref {
	uint32_t block, row, col; /**< tile address */
	const void *data;         /**< encoded tile (header + payload), in the map */
	size_t len;
} pspace_tile_ref;

/**
 * Looks up one tile into @p out (its data lives in the map: valid until
 * pspace_reader_close()). @return 0, or PSPACE_ENOTFOUND if it is not
 * stored (below the diagonal of a symmetric matrix, or never written).
 */
PSPACE_API int pspace_reader_tile(pspace_tile_ref *out, pspace_reader *r, uint32_t block,
                                  uint32_t tile_row, uint32_t tile_col);

/**
 * Positions the cursor at the first stored tile at or after (block, row,
 * col) in streaming order (block, then tile row, then tile col). A walk
 * from (0, 0, 0) is checked at its end against the catalog's tile count
 * and digest (PSPACE_ECORRUPT), also when this seek finds no tile at all.
 */
PSPACE_API int pspace_reader_seek(pspace_reader *r, uint32_t block, uint32_t tile_row,
                                  uint32_t tile_col);

/**
 * Steps through the matrix's tiles in streaming order, which is also the
 * order they lie in the file's B-tree, filling @p out (valid until
 * pspace_reader_close()). A fresh reader starts at the first.
 * @param done  set to 1 (and *out untouched) after the last tile.
 */
PSPACE_API int pspace_reader_next(pspace_tile_ref *out, int *done, pspace_reader *r);

/**
 * Decodes tile @p t (from this reader) into @p dst, as pspace_tile_decode(),
 * adding the store, matrix and tile to the error detail.
 */
PSPACE_API int pspace_reader_decode(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                                    pspace_dtype want, void *dst, size_t ld);

/** As pspace_tile_view(), adding the store, matrix and tile to the error detail. */
PSPACE_API int pspace_reader_view(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                                  pspace_dtype want, const void **data, pspace_tile_header *hdr);

/**
 * As pspace_tile_view_unverified(): a raw tile viewed without a copy is
 * checksummed later, by pspace_reader_verify() once the caller is done
 * with its data (*verified = 0), so its bytes are read from memory once.
 */
PSPACE_API int pspace_reader_view_unverified(pspace_reader *r, pspace_codec *c,
                                             const pspace_tile_ref *t, pspace_dtype want,
                                             const void **data, pspace_tile_header *hdr,
                                             int *verified);

/** pspace_tile_verify() of tile @p t, naming the store, matrix and tile on a mismatch. */
PSPACE_API int pspace_reader_verify(pspace_reader *r, const pspace_tile_ref *t);

/** Shape and type of a stored small array. */
typedef struct pspace_array_info {
	pspace_dtype dtype;
	int ndim;
	uint64_t shape[4];
	uint64_t count; /**< product of shape */
} pspace_array_info;

/**
 * Fills @p out with the shape and type of array @p name of the reader's
 * matrix. @return 0 or PSPACE_ENOTFOUND.
 */
PSPACE_API int pspace_array_info_get(pspace_array_info *out, pspace_reader *r, const char *name);

/**
 * Copies array @p name into @p dst converted to @p want (F32, F64, or its
 * own type), verifying its checksum. @p cap is dst's capacity in elements.
 * @return 0, PSPACE_ENOTFOUND, PSPACE_ECORRUPT, PSPACE_EINVAL (too small).
 */
PSPACE_API int pspace_reader_array(pspace_reader *r, const char *name, pspace_dtype want, void *dst,
                                   uint64_t cap);

/**
 * Calls @p fn with every array name of this matrix, in name order.
 */
PSPACE_API int pspace_reader_foreach_array(pspace_reader *r,
                                           int (*fn)(const char *name,
                                                     const pspace_array_info *info, void *ud),
                                           void *ud);

/* ---- damage ------------------------------------------------------------- */

/** What pspace_store_check_pages() counted. */
typedef struct pspace_page_check {
	uint32_t page_size;      /**< LMDB's page size */
	uint64_t pages;          /**< pages of the checked snapshot (last page + 1) */
	uint64_t reachable;      /**< pages reached from the roots (meta pages not counted) */
	uint64_t overflow_pages; /**< of which overflow pages (large values, tiles) */
	uint64_t free;           /**< pages on LMDB's free list */
} pspace_page_check;

/**
 * Walks every LMDB page of the store's current snapshot by itself, with
 * pread() rather than through the map, so it finds what would make LMDB
 * crash: both meta pages, then every page reachable from the roots of every
 * database once (page numbers within the file, page types, key counts,
 * node bounds, key order, overflow runs, the page and entry counts of each
 * database record), the free list, and that every page is used or free.
 * A read transaction holds the snapshot meanwhile.
 * @return 0, or PSPACE_ECORRUPT with the detail naming the first damaged
 * page; PSPACE_EIO, PSPACE_ENOMEM. @p out holds the counts so far.
 */
PSPACE_API int pspace_store_check_pages(pspace_page_check *out, pspace_store *s);

/**
 * For a program's own SIGSEGV, SIGBUS and SIGABRT handler (the library
 * installs none, and LMDB reads damaged pages through the map without
 * checks): tells whether signal @p sig, at data address @p addr (si_addr)
 * and instruction @p pc (NULL if unknown), was raised by a read of an open
 * store: @p addr inside a store's map, any SIGBUS while a store is open (a
 * read past the end of the data file), @p pc inside LMDB's code (a damaged
 * B-tree page), or SIGABRT after a failed LMDB assertion. Async-signal-safe.
 * The pspace tool's handler prints `pspace: store S is corrupt (...)` and
 * exits with status 1.
 * @return 1, with *path the store's path and *why a short text (both
 * borrowed, valid while the store is open), or 0 (both NULL).
 */
PSPACE_API int pspace_store_fault(const char **path, const char **why, int sig, const void *addr,
                                  const void *pc);

#ifdef __cplusplus
}
#endif
#endif
