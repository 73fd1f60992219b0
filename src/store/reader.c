/*
 * The reader: a read snapshot of one matrix and a cursor over its tiles,
 * which lie in the tiles database in streaming order (block, tile row,
 * tile col) because the keys are big-endian.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/keys.h"
#include "store/reader.h"
#include "store/record.h"

/* Tiles per row of block @p block. */
static uint64_t tiles_per_row(const pspace_reader *r, uint32_t block)
{
	return (r->dims[block] + r->info.tile - 1) / r->info.tile;
}

/* Does the record count every tile address of a complete matrix? */
static int counts_all(const pspace_reader *r)
{
	uint64_t all = 0;

	if (r->info.state != PSPACE_STATE_COMPLETE || r->info.tile == 0)
		return 0;
	for (uint32_t b = 0; b < r->info.nblocks; b++) {
		uint64_t nt = tiles_per_row(r, b);

		all += r->info.symmetric ? nt * (nt + 1) / 2 : nt * nt;
	}
	return all == r->info.tiles;
}

int pspace_reader_open(pspace_reader **out, pspace_store *s, const char *name, int flags)
{
	pspace_reader *r = NULL;
	int rc;

	*out = NULL;
	rc = pspace_store_check_name(s, "matrix", name);
	if (rc != 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
	r->s = s;
	r->pos = PSPACE_POS_FRESH;
	for (int attempt = 0;; attempt++) {
		rc = pspace_store_txn_begin(s, 0, 0, &r->txn);
		if (rc == 0)
			rc = pspace_catalog_get(s, r->txn, name, &r->info, &r->dims);
		if (rc == 0)
			rc = pspace_store_check_matrix(s, r->txn, 0, r->info.id);
		/* Writers committed twice meanwhile: their pages are LMDB's own;
		 * after three tries the snapshot is read unchecked. */
		if (rc != PSPACE_EBUSY)
			break;
		rc = 0;
		if (attempt == 2)
			break;
		pspace_store_txn_abort(s, r->txn);
		r->txn = NULL;
		free(r->dims);
		r->dims = NULL;
	}
	if (rc == 0 && r->info.state != PSPACE_STATE_COMPLETE && !(flags & PSPACE_READ_INCOMPLETE))
		rc = pspace_err_set(
		    PSPACE_EINCOMPLETE,
		    "matrix %s in store %s is incomplete (build interrupted or still "
		    "running)",
		    name, s->path);
	if (rc == 0) {
		r->all_stored = counts_all(r);
		rc = mdb_cursor_open(r->txn, s->tiles, &r->cur);
		if (rc != 0)
			rc = pspace_store_err(s, rc, "matrix %s: opening a cursor", name);
	}
	if (rc == 0) {
		*out = r;
		r = NULL;
	}
	pspace_reader_close(r);
	return rc;
}

void pspace_reader_close(pspace_reader *r)
{
	if (!r)
		return;
	if (r->cur)
		mdb_cursor_close(r->cur);
	pspace_store_txn_abort(r->s, r->txn);
	free(r->dims);
	free(r);
}

const pspace_matrix_info *pspace_reader_info(const pspace_reader *r)
{
	return &r->info;
}

uint64_t pspace_reader_block_dim(const pspace_reader *r, uint32_t block)
{
	return block < r->info.nblocks ? r->dims[block] : 0;
}

/* Is (block, row, col) a tile address this matrix can hold? */
static int valid_address(const pspace_reader *r, uint32_t block, uint32_t row, uint32_t col)
{
	uint64_t nt;

	if (block >= r->info.nblocks)
		return 0;
	nt = tiles_per_row(r, block);
	return row < nt && col < nt && !(r->info.symmetric && row > col);
}

static uint32_t edge(const pspace_reader *r, uint32_t block, uint32_t idx)
{
	uint64_t left = r->dims[block] - (uint64_t)idx * r->info.tile;

	return (uint32_t)(left < r->info.tile ? left : r->info.tile);
}

/* Fills @p out with tile (block, row, col) whose stored value is @p v. */
static void tile_ref(pspace_tile_ref *out, uint32_t block, uint32_t row, uint32_t col,
                     const MDB_val *v)
{
	*out = (pspace_tile_ref){block, row, col, v->mv_data, v->mv_size};
}

int pspace_reader_tile(pspace_tile_ref *out, pspace_reader *r, uint32_t block, uint32_t tile_row,
                       uint32_t tile_col)
{
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	MDB_val k = {sizeof(key), key}, v;
	int rc;

	if (!valid_address(r, block, tile_row, tile_col))
		return pspace_err_set(PSPACE_ENOTFOUND,
		                      "store %s: matrix %s has no tile (%u,%u,%u) (outside the "
		                      "matrix or below the diagonal)",
		                      r->s->path, r->info.name, block, tile_row, tile_col);
	pspace_tile_key(key, r->info.id, block, tile_row, tile_col);
	rc = mdb_get(r->txn, r->s->tiles, &k, &v);
	if (rc == MDB_NOTFOUND && r->all_stored)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s, tile (%u,%u,%u) is missing, though the "
		                      "catalog records all %llu tiles: the store is corrupt",
		                      r->s->path, r->info.name, block, tile_row, tile_col,
		                      (unsigned long long)r->info.tiles);
	if (rc == MDB_NOTFOUND)
		return pspace_err_set(PSPACE_ENOTFOUND,
		                      "store %s: matrix %s, tile (%u,%u,%u) is not stored",
		                      r->s->path, r->info.name, block, tile_row, tile_col);
	if (rc != 0)
		return pspace_store_err(r->s, rc, "matrix %s, tile (%u,%u,%u): reading",
		                        r->info.name, block, tile_row, tile_col);
	tile_ref(out, block, tile_row, tile_col, &v);
	return 0;
}

/*
 * End of a walk: one that began at the first tile (or backwards at the
 * last) must have met as many tiles, with the same digest, as the catalog
 * record says; otherwise tiles vanished (a damaged key or B-tree) and the
 * result would be wrong.
 */
static int walk_end(pspace_reader *r, int *done)
{
	const pspace_matrix_info *in = &r->info;
	int whole = r->whole;

	r->pos = PSPACE_POS_DONE;
	r->whole = 0;
	*done = 1;
	if (!whole || (r->seen == in->tiles && (!in->has_digest || r->digest == in->tile_digest)))
		return 0;
	*done = 0;
	return pspace_err_set(PSPACE_ECORRUPT,
	                      "store %s: matrix %s: a walk over its tiles met %llu tiles (digest "
	                      "%08x), but the catalog records %llu (digest %08x): tiles are "
	                      "missing or damaged, the store is corrupt",
	                      r->s->path, in->name, (unsigned long long)r->seen, r->digest,
	                      (unsigned long long)in->tiles, in->has_digest ? in->tile_digest : 0);
}

int pspace_reader_seek(pspace_reader *r, uint32_t block, uint32_t tile_row, uint32_t tile_col)
{
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	MDB_val k = {sizeof(key), key}, v;
	int rc, done;

	pspace_tile_key(key, r->info.id, block, tile_row, tile_col);
	r->whole = block == 0 && tile_row == 0 && tile_col == 0;
	r->back = 0;
	r->seen = 0;
	r->digest = 0;
	rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return walk_end(r, &done);
	if (rc != 0)
		return pspace_store_err(r->s, rc, "matrix %s: seeking tile (%u,%u,%u)",
		                        r->info.name, block, tile_row, tile_col);
	r->pos = PSPACE_POS_POSITIONED;
	return 0;
}

int pspace_reader_seek_back(pspace_reader *r, uint32_t block)
{
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	MDB_val k = {sizeof(key), key}, v;
	int rc, done;

	/* the first key past the blocks wanted, then the one before it */
	if (block < r->info.nblocks)
		pspace_tile_key(key, r->info.id, block, 0, 0);
	else
		pspace_tile_key(key, r->info.id + 1, 0, 0, 0);
	r->whole = block >= r->info.nblocks;
	r->back = 1;
	r->seen = 0;
	r->digest = 0;
	rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 || rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(r->cur, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
	if (rc == MDB_NOTFOUND)
		return walk_end(r, &done);
	if (rc != 0)
		return pspace_store_err(r->s, rc, "matrix %s: seeking the end of block %u",
		                        r->info.name, block);
	r->pos = PSPACE_POS_POSITIONED;
	return 0;
}

int pspace_reader_next(pspace_tile_ref *out, int *done, pspace_reader *r)
{
	return pspace_reader_next_with(out, done, r, NULL, NULL);
}

int pspace_reader_next_with(pspace_tile_ref *out, int *done, pspace_reader *r,
                            void (*before)(void *ud, const pspace_tile_ref *t), void *ud)
{
	pspace_tile_ref t;
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	MDB_val k, v;
	uint64_t id;
	uint32_t b, row, col;
	int rc;

	*done = 0;
	switch (r->pos) {
	case PSPACE_POS_DONE: *done = 1; return 0;
	case PSPACE_POS_FRESH:
		r->whole = 1;
		r->back = 0;
		r->seen = 0;
		r->digest = 0;
		pspace_tile_key(key, r->info.id, 0, 0, 0);
		k = (MDB_val){sizeof(key), key};
		rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_RANGE);
		break;
	case PSPACE_POS_POSITIONED: rc = mdb_cursor_get(r->cur, &k, &v, MDB_GET_CURRENT); break;
	default: rc = mdb_cursor_get(r->cur, &k, &v, r->back ? MDB_PREV : MDB_NEXT); break;
	}
	if (rc == MDB_NOTFOUND)
		return walk_end(r, done);
	if (rc != 0)
		return pspace_store_err(r->s, rc, "matrix %s: stepping through tiles",
		                        r->info.name);
	r->pos = PSPACE_POS_ITER;
	if (k.mv_size < 8 || pspace_get_be64(k.mv_data) != r->info.id)
		return walk_end(r, done);
	if (k.mv_size != PSPACE_TILE_KEY_SIZE)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s: tile key of %zu bytes (expected %d)",
		                      r->s->path, r->info.name, k.mv_size, PSPACE_TILE_KEY_SIZE);
	pspace_tile_key_parse(k.mv_data, &id, &b, &row, &col);
	if (!valid_address(r, b, row, col))
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s: stray tile (%u,%u,%u) outside the "
		                      "matrix",
		                      r->s->path, r->info.name, b, row, col);
	tile_ref(&t, b, row, col, &v);
	if (before)
		before(ud, &t);
	r->seen++;
	r->digest +=
	    pspace_tile_digest_term(k.mv_data, pspace_tile_crc_field(v.mv_data, v.mv_size));
	*out = t;
	return 0;
}

/* Prefixes tile @p t's address to error @p rc (0 stays 0). */
static int in_tile(const pspace_reader *r, const pspace_tile_ref *t, int rc)
{
	return pspace_err_prefix(rc, "store %s: matrix %s, tile (%u,%u,%u)", r->s->path,
	                         r->info.name, t->block, t->row, t->col);
}

/*
 * Checks that tile @p t's header matches what its address implies and
 * counts it as read: what decode and view do before decoding.
 */
static int check_tile(pspace_reader *r, const pspace_tile_ref *t)
{
	pspace_tile_header h;
	uint32_t rows, cols;
	int rc;

	if (!valid_address(r, t->block, t->row, t->col))
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s: no tile (%u,%u,%u) in this matrix",
		                      r->s->path, r->info.name, t->block, t->row, t->col);
	rc = pspace_tile_parse(&h, t->data, t->len);
	if (rc != 0)
		return in_tile(r, t, rc);
	rows = edge(r, t->block, t->row);
	cols = edge(r, t->block, t->col);
	if (h.rows != rows || h.cols != cols || h.dtype != r->info.codec.dtype)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s, tile (%u,%u,%u): header says %ux%u %s, "
		                      "the matrix implies %ux%u %s",
		                      r->s->path, r->info.name, t->block, t->row, t->col, h.rows,
		                      h.cols, pspace_dtype_name(h.dtype), rows, cols,
		                      pspace_dtype_name(r->info.codec.dtype));
	atomic_fetch_add_explicit(&r->s->tiles_read, 1, memory_order_relaxed);
	return 0;
}

int pspace_reader_decode(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                         pspace_dtype want, void *dst, size_t ld)
{
	int rc = check_tile(r, t);

	if (rc != 0)
		return rc;
	return in_tile(r, t, pspace_tile_decode(c, t->data, t->len, want, dst, ld));
}

int pspace_reader_view(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                       pspace_dtype want, const void **data, pspace_tile_header *hdr)
{
	int rc = check_tile(r, t);

	if (rc != 0)
		return rc;
	return in_tile(r, t, pspace_tile_view(c, t->data, t->len, want, data, hdr));
}

int pspace_reader_view_unverified(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                                  pspace_dtype want, const void **data, pspace_tile_header *hdr,
                                  int *verified)
{
	int rc = check_tile(r, t);

	if (rc != 0)
		return rc;
	return in_tile(r, t,
	               pspace_tile_view_unverified(c, t->data, t->len, want, data, hdr, verified));
}

int pspace_reader_panels_open(pspace_reader *r, pspace_codec *c, const pspace_tile_ref *t,
                              pspace_dtype want, pspace_tile_panels *p)
{
	pspace_tile_header h;
	int rc = check_tile(r, t);

	if (rc != 0)
		return rc;
	rc = pspace_tile_parse(&h, t->data, t->len);
	if (rc == 0)
		rc = pspace_tile_panels_open(p, c, t->data, t->len, &h, want);
	return in_tile(r, t, rc);
}

int pspace_reader_verify(pspace_reader *r, const pspace_tile_ref *t)
{
	return in_tile(r, t, pspace_tile_verify(t->data, t->len));
}

int pspace_store_walk_back(pspace_store *s, uint64_t id)
{
	_Atomic unsigned *n = &s->walks[id % PSPACE_WALK_SLOTS];

	return (int)(atomic_fetch_add_explicit(n, 1, memory_order_relaxed) & 1);
}

uint64_t pspace_store_tiles_read(const pspace_store *s)
{
	return atomic_load_explicit(&((pspace_store *)s)->tiles_read, memory_order_relaxed);
}
