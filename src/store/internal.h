/*
 * Internal declarations shared by the store files: the store handle,
 * transaction helpers (map growth, active-transaction count), LMDB error
 * mapping and the catalog operations the writer and reader build on.
 */
#ifndef PSPACE_SRC_STORE_INTERNAL_H
#define PSPACE_SRC_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pspace/shard.h"
#include "pspace/store.h"

/** Tile edge used when a matrix descriptor leaves it 0. */
#define PSPACE_STORE_DEFAULT_TILE PSPACE_DEFAULT_TILE

/** A writer checkpoints (commits) when its transaction holds this many tile bytes. */
#define PSPACE_WRITER_TXN_BYTES ((size_t)64 << 20)

/**
 * Initial map of a writable handle beyond the file, and the headroom kept
 * free before each write transaction. The map is only address space (the
 * file grows as pages are written), so a writable handle reserves much:
 * growing it needs a moment when this process has no transaction open,
 * which a build that reads other matrices while it writes may never have.
 * Under an address-space limit (RLIMIT_AS, ulimit -v) it takes at most half
 * of what is left; a read-only handle maps only the file.
 */
#define PSPACE_STORE_MIN_MAP      ((size_t)64 << 30)
#define PSPACE_STORE_MAP_HEADROOM ((size_t)64 << 20)
/** Maps are sized in steps of this many bytes. */
#define PSPACE_STORE_MAP_STEP ((size_t)1 << 20)

/** Bytes a small (catalog-only) write transaction may need. */
#define PSPACE_STORE_SMALL_TXN ((size_t)1 << 20)

/** Matrices whose out-of-core walks alternate apart (pspace_store_walk_back()). */
#define PSPACE_WALK_SLOTS 64

struct pspace_store {
	MDB_env *env;
	MDB_dbi meta, catalog, layouts, tiles, arrays;
	char *path;      /* as given by the caller */
	char *data_path; /* path/data.mdb */
	int readonly;
	int nolock;       /* opened without lock.mdb (read-only files): no writer may run */
	int as_capped;    /* the address-space limit kept the map from growing */
	size_t map_max;   /* 0 = unlimited */
	size_t headroom;  /* base free space kept before write transactions */
	size_t txn_bytes; /* writer checkpoint size */
	_Atomic uint64_t tiles_read; /* tiles decoded or viewed through readers */
	/* out-of-core walks so far of matrix id i mod PSPACE_WALK_SLOTS (odd: the next goes
	 * backwards) */
	_Atomic unsigned walks[PSPACE_WALK_SLOTS];
	int has_shard;      /* shard hooks set (pspace_store_set_shard) */
	int map_huge;       /* the map is advised MADV_HUGEPAGE (pspace_store_map_track) */
	uintptr_t map_base; /* where this process maps the data file, 0 when unknown */
	size_t map_size;    /* ... and how much of it (pspace_store_map_track) */
	pspace_shard_hooks shard;

	pthread_mutex_t lock;  /* guards the fields below */
	size_t mapsize;        /* current map size of this process */
	unsigned active;       /* transactions of this process, open or being opened */
	MDB_txn *write_txn;    /* this process's write transaction, if any ... */
	pthread_t write_owner; /* ... and the thread that holds it */
};

/** Cursor state of a reader. */
enum pspace_reader_pos {
	PSPACE_POS_FRESH,      /* next starts at the matrix's first tile */
	PSPACE_POS_POSITIONED, /* next returns the cursor's entry (after a seek) */
	PSPACE_POS_ITER,       /* next steps past the cursor's entry */
	PSPACE_POS_DONE,       /* past the last tile */
};

struct pspace_reader {
	pspace_store *s;
	MDB_txn *txn; /* read snapshot, held until close */
	MDB_cursor *cur;
	pspace_matrix_info info;
	uint64_t *dims;
	int pos;
	int all_stored;  /* complete, and the record counts every tile address */
	int whole;       /* the walk began at the matrix's first tile (back: its last) */
	int back;        /* the walk steps backwards (pspace_reader_seek_back()) */
	uint64_t seen;   /* tiles of the walk so far ... */
	uint32_t digest; /* ... and their digest terms summed */
};

/* ---- txn.c ---------------------------------------------------------------- */

/**
 * Maps an LMDB (or errno) code to a PSPACE_E* code and sets the detail
 * message "store PATH: <what>: <mdb_strerror>". @return the pspace code.
 */
int pspace_store_err(const pspace_store *s, int mdb_rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @return the pspace code for an LMDB or errno code (no detail message). */
int pspace_store_code(int mdb_rc);

/**
 * Begins a transaction. For a write transaction, first grows the map when
 * its free space is below the headroom plus @p need bytes (only while this
 * process has no other transaction). Handles MDB_MAP_RESIZED. Refuses
 * (PSPACE_EBUSY) a write transaction on a thread that already holds one.
 * @return 0 or a pspace code with the detail set.
 */
int pspace_store_txn_begin(pspace_store *s, int write, size_t need, MDB_txn **out);

/** Commits @p txn (freed whatever the result). @return 0 or a pspace code. */
int pspace_store_txn_commit(pspace_store *s, MDB_txn *txn, const char *what);

/** Aborts @p txn; NULL accepted. */
void pspace_store_txn_abort(pspace_store *s, MDB_txn *txn);

/**
 * Checks that the data file holds every page the last committed meta page
 * refers to, so touching the map cannot raise SIGBUS. @return 0 or
 * PSPACE_ECORRUPT / PSPACE_EIO.
 */
int pspace_store_check_size(pspace_store *s);

/** @return the size of the data file in bytes, or a negative pspace code. */
int pspace_store_file_size(pspace_store *s, uint64_t *out);

/**
 * @return the address space this process may still map under its
 * RLIMIT_AS (ulimit -v), or SIZE_MAX without a limit.
 */
size_t pspace_store_as_room(void);

/** @return @p n rounded up to PSPACE_STORE_MAP_STEP. */
static inline size_t pspace_store_map_round(uint64_t n)
{
	return (size_t)((n + PSPACE_STORE_MAP_STEP - 1) & ~(uint64_t)(PSPACE_STORE_MAP_STEP - 1));
}

/* ---- pages.c -------------------------------------------------------------- */

/**
 * Checks, with pread() and before LMDB maps the file, both meta pages
 * (magic, version, page size, last page within the file, roots within the
 * last page), the main database's pages and records of the named
 * databases, and the pages of every named database but the tiles (all
 * small: one record per matrix, layout or array; overflow runs only by
 * their place). @return 0, PSPACE_ECORRUPT naming the damage, or an I/O
 * error.
 */
int pspace_store_check_open(pspace_store *s, uint64_t file_size);

/**
 * Checks, with pread(), the pages LMDB reads when @p txn (a write
 * transaction if @p write) looks up or walks keys lo..hi (inclusive, in
 * LMDB's order) of the named database @p db: the pages on the paths to
 * them, the leaves holding them, the path to the next leaf, and the
 * places of their overflow runs. What pspace_store_check_open() does not
 * cover because it grows with the store: the tiles.
 * @return 0, PSPACE_ECORRUPT naming the damage, PSPACE_EBUSY when newer
 * commits overwrote both meta pages since @p txn began (renew it and
 * retry), or an I/O error.
 */
int pspace_store_check_range(pspace_store *s, MDB_txn *txn, int write, const char *db,
                             const void *lo, size_t lo_n, const void *hi, size_t hi_n);

/**
 * pspace_store_check_range() over the tiles of matrix @p id: call before
 * reading (or, @p write, storing or deleting) them in @p txn. A writer
 * also has the overflow headers read, by which LMDB frees pages.
 */
int pspace_store_check_matrix(pspace_store *s, MDB_txn *txn, int write, uint64_t id);

/* ---- fault.c -------------------------------------------------------------- */

/** Sets up @p env for pspace_store_fault(): LMDB's assertion text is kept. */
void pspace_store_fault_env(MDB_env *env);

/**
 * After every (re)mapping of @p s (@p on), or before closing it (!@p on):
 * records where the map lies for pspace_store_fault() (or forgets it), and
 * asks the kernel to back the map's file pages with huge pages
 * (MADV_HUGEPAGE): a page fault then reads the file ahead in 2 MiB folios
 * mapped whole, where pages read one by one (also those of MADV_WILLNEED)
 * are mapped 4 KiB at a time. Not advised when the system's transparent
 * huge pages are "never" or PSPACE_MAP_HUGE=0. Sets s->map_huge. Not
 * thread-safe for one @p s (its lock or open and close serialise the calls).
 */
void pspace_store_map_track(pspace_store *s, int on);

/* ---- catalog.c ------------------------------------------------------------ */

/** Validates a matrix or array name (1..PSPACE_NAME_MAX bytes). @return 0 or PSPACE_EINVAL. */
int pspace_store_check_name(const pspace_store *s, const char *what, const char *name);

/**
 * Reads and decodes the catalog record of @p name in @p txn.
 * @param dims  if not NULL, receives a malloc'd array of info->nblocks dims.
 * @return 0, PSPACE_ENOTFOUND, PSPACE_ECORRUPT, PSPACE_ENOMEM.
 */
int pspace_catalog_get(pspace_store *s, MDB_txn *txn, const char *name, pspace_matrix_info *info,
                       uint64_t **dims);

/** Encodes and writes the catalog record of @p info in @p txn. */
int pspace_catalog_put(pspace_store *s, MDB_txn *txn, const pspace_matrix_info *info,
                       const uint64_t *dims);

/** Takes a reference on layout @p text (inserting it if new); *id receives its id. */
int pspace_layout_ref(pspace_store *s, MDB_txn *txn, const char *text, uint64_t *id);

/** Deletes the record, tiles, arrays and layout reference of matrix @p info in @p txn. */
int pspace_catalog_delete(pspace_store *s, MDB_txn *txn, const pspace_matrix_info *info);

/** Allocates a fresh matrix id (meta "next_id") in @p txn. */
int pspace_catalog_next_id(pspace_store *s, MDB_txn *txn, uint64_t *id);

/* ---- array.c -------------------------------------------------------------- */

/** Stores array @p name of matrix @p id in @p txn; *old_bytes gets the replaced value size or 0. */
int pspace_array_put(pspace_store *s, MDB_txn *txn, const char *matrix, uint64_t id,
                     const char *name, pspace_dtype t, int ndim, const uint64_t *shape,
                     const void *data, size_t *new_bytes, size_t *old_bytes);

#endif
