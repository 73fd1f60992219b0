/*
 * The writer: builds one matrix in a chain of write transactions.
 *
 * begin commits a BUILDING catalog record on its own, then keeps one write
 * transaction open for the tiles, committed (checkpointed) whenever it holds
 * s->txn_bytes of tile data; each checkpoint also rewrites the record with
 * the running statistics. finish writes the COMPLETE record in the same
 * transaction as the last tiles. A failed LMDB call aborts the open
 * transaction and leaves the writer failed: later calls return the same
 * error, and what was committed before stays as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/keys.h"
#include "store/record.h"

struct pspace_writer {
	pspace_store *s;
	MDB_txn *txn;
	pspace_codec *codec;
	pspace_matrix_info info; /* running statistics: committed + pending */
	uint64_t *dims;
	size_t pending;   /* tile and array bytes in the open transaction */
	size_t need;      /* map space a transaction may take */
	int digest_stale; /* a replaced tile's CRC was unreadable: recount at finish */
	int err;          /* sticky error, 0 while healthy */
	char errmsg[512];
};

static int fail(pspace_writer *w, int rc)
{
	if (rc == 0)
		return 0;
	if (w->txn) {
		pspace_store_txn_abort(w->s, w->txn);
		w->txn = NULL;
	}
	w->err = rc;
	snprintf(w->errmsg, sizeof(w->errmsg), "%s", pspace_errdetail());
	return rc;
}

/* A failed writer repeats its error (and its detail message). */
static int failed(const pspace_writer *w)
{
	return pspace_err_set(w->err, "%s", w->errmsg);
}

static void writer_free(pspace_writer *w)
{
	if (!w)
		return;
	pspace_store_txn_abort(w->s, w->txn);
	pspace_codec_free(w->codec);
	free(w->dims);
	free(w);
}

static int writer_alloc(pspace_writer **out, pspace_store *s)
{
	pspace_writer *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w || pspace_codec_create(&w->codec) != 0) {
		free(w);
		return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
	}
	w->s = s;
	*out = w;
	return 0;
}

static void set_need(pspace_writer *w)
{
	size_t tile = 0;

	if (w->info.nblocks)
		tile = pspace_tile_bound(&w->info.codec, w->info.tile, w->info.tile);
	/* Copy-on-write B-tree pages and freed overflow pages can double a
	 * transaction's footprint. */
	w->need = 2 * (w->s->txn_bytes + tile) + PSPACE_STORE_SMALL_TXN;
}

static int check_desc(pspace_store *s, const char *name, const pspace_matrix_desc *d)
{
	uint64_t sum = 0;

	if ((d->kind < PSPACE_KIND_DENSE || d->kind > PSPACE_KIND_MIXED) &&
	    d->kind != PSPACE_KIND_CHOLESKY)
		return pspace_err_set(PSPACE_EINVAL, "store %s: matrix %s: invalid kind %d",
		                      s->path, name, (int)d->kind);
	if (d->codec.dtype != PSPACE_F64 && d->codec.dtype != PSPACE_F32 &&
	    d->codec.dtype != PSPACE_BF16 && d->codec.dtype != PSPACE_F16)
		return pspace_err_set(PSPACE_EINVAL, "store %s: matrix %s: invalid tile dtype %d",
		                      s->path, name, (int)d->codec.dtype);
	if (d->nblocks > 1 && !d->block_dims)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s: %u blocks but no block dims", s->path,
		                      name, d->nblocks);
	if (d->nblocks == 0)
		return 0;
	for (uint32_t i = 0; i < d->nblocks; i++) {
		uint64_t bd = d->block_dims ? d->block_dims[i] : d->d;

		if (bd == 0)
			return pspace_err_set(PSPACE_EINVAL,
			                      "store %s: matrix %s: block %u has dimension 0",
			                      s->path, name, i);
		sum += bd;
	}
	if (sum != d->d)
		return pspace_err_set(
		    PSPACE_EINVAL, "store %s: matrix %s: block dims sum to %llu, not d = %llu",
		    s->path, name, (unsigned long long)sum, (unsigned long long)d->d);
	return 0;
}

int pspace_writer_begin(pspace_writer **out, pspace_store *s, const char *name,
                        const pspace_matrix_desc *desc)
{
	pspace_writer *w = NULL;
	pspace_matrix_info *in;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int rc;

	*out = NULL;
	rc = pspace_store_check_name(s, "matrix", name);
	if (rc == 0 && s->readonly)
		rc = pspace_err_set(PSPACE_EINVAL, "store %s: opened read-only", s->path);
	if (rc == 0)
		rc = check_desc(s, name, desc);
	if (rc == 0)
		rc = writer_alloc(&w, s);
	if (rc != 0)
		return rc;

	in = &w->info;
	snprintf(in->name, sizeof(in->name), "%s", name);
	in->kind = desc->kind;
	in->state = PSPACE_STATE_BUILDING;
	in->d = desc->d;
	in->nblocks = desc->nblocks;
	in->tile = desc->nblocks ? (desc->tile ? desc->tile : PSPACE_STORE_DEFAULT_TILE) : 0;
	in->symmetric = desc->symmetric != 0;
	in->codec = desc->codec;
	in->created = (uint64_t)time(NULL);
	in->has_digest = 1;
	w->dims = malloc((desc->nblocks ? desc->nblocks : 1) * sizeof(*w->dims));
	if (!w->dims) {
		rc = pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
		goto out;
	}
	for (uint32_t i = 0; i < desc->nblocks; i++)
		w->dims[i] = desc->block_dims ? desc->block_dims[i] : desc->d;
	set_need(w);

	rc = pspace_store_txn_begin(s, 1, PSPACE_STORE_SMALL_TXN, &txn);
	if (rc != 0)
		goto out;
	k = (MDB_val){strlen(name), (void *)name};
	rc = mdb_get(txn, s->catalog, &k, &v);
	if (rc == 0) {
		pspace_matrix_info old;
		int building = pspace_record_decode(v.mv_data, v.mv_size, &old, NULL) == 0 &&
		               old.state == PSPACE_STATE_BUILDING;

		rc = pspace_err_set(PSPACE_EEXIST, "store %s: matrix %s already exists%s", s->path,
		                    name, building ? " (still building: resume or remove it)" : "");
		goto out;
	}
	if (rc != MDB_NOTFOUND) {
		rc = pspace_store_err(s, rc, "matrix %s: reading the catalog", name);
		goto out;
	}
	rc = pspace_catalog_next_id(s, txn, &in->id);
	if (rc == 0 && desc->layout_text)
		rc = pspace_layout_ref(s, txn, desc->layout_text, &in->layout_id);
	if (rc == 0)
		rc = pspace_catalog_put(s, txn, in, w->dims);
	if (rc != 0)
		goto out;
	rc = pspace_store_txn_commit(s, txn, "begin matrix");
	txn = NULL;
	if (rc == 0)
		rc = pspace_store_txn_begin(s, 1, w->need, &w->txn);
	/* the path to where its tiles go */
	if (rc == 0)
		rc = pspace_store_check_matrix(s, w->txn, 1, in->id);
	if (rc == 0) {
		*out = w;
		w = NULL;
	}
out:
	pspace_store_txn_abort(s, txn);
	writer_free(w);
	return rc;
}

/* Recounts the statistics of a resumed matrix from its stored tiles and arrays. */
static int recount(pspace_writer *w)
{
	pspace_matrix_info *in = &w->info;
	pspace_store *s = w->s;
	size_t esz = pspace_dtype_size(in->codec.dtype);
	MDB_dbi dbis[2] = {s->tiles, s->arrays};
	MDB_cursor *cur = NULL;
	pspace_tile_header h;
	uint8_t key[8];
	MDB_val k, v;
	int rc = 0;

	in->tiles = in->raw_tiles = in->tile_bytes = in->logical_bytes = 0;
	in->arrays = in->array_bytes = 0;
	in->has_digest = 1;
	in->tile_digest = 0;
	w->digest_stale = 0;
	pspace_put_be64(key, in->id);
	for (int d = 0; d < 2 && rc == 0; d++) {
		rc = mdb_cursor_open(w->txn, dbis[d], &cur);
		if (rc != 0)
			return pspace_store_err(s, rc, "matrix %s: cursor", in->name);
		k = (MDB_val){8, key};
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size < 8 || pspace_get_be64(k.mv_data) != in->id)
				break;
			if (d == 1) {
				in->arrays++;
				in->array_bytes += v.mv_size;
				continue;
			}
			if (k.mv_size != PSPACE_TILE_KEY_SIZE ||
			    pspace_tile_parse(&h, v.mv_data, v.mv_size) != 0) {
				uint64_t id;
				uint32_t b = 0, r = 0, c = 0;

				if (k.mv_size == PSPACE_TILE_KEY_SIZE)
					pspace_tile_key_parse(k.mv_data, &id, &b, &r, &c);
				mdb_cursor_close(cur);
				return pspace_err_set(PSPACE_ECORRUPT,
				                      "store %s: matrix %s, tile (%u,%u,%u): "
				                      "corrupt tile key or header",
				                      s->path, in->name, b, r, c);
			}
			in->tiles++;
			in->raw_tiles += h.codec == PSPACE_CODEC_RAW;
			in->tile_bytes += v.mv_size;
			in->logical_bytes += (uint64_t)h.rows * h.cols * esz;
			in->tile_digest += pspace_tile_digest_term(k.mv_data, h.checksum);
		}
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		else if (rc != 0)
			rc = pspace_store_err(s, rc, "matrix %s: reading tiles", in->name);
	}
	return rc;
}

int pspace_writer_resume(pspace_writer **out, pspace_store *s, const char *name)
{
	pspace_writer *w = NULL;
	int rc;

	*out = NULL;
	rc = pspace_store_check_name(s, "matrix", name);
	if (rc == 0 && s->readonly)
		rc = pspace_err_set(PSPACE_EINVAL, "store %s: opened read-only", s->path);
	if (rc == 0)
		rc = writer_alloc(&w, s);
	if (rc != 0)
		return rc;
	/* Begin with the largest need we may have; the record tells the real one. */
	w->need = 2 * s->txn_bytes + PSPACE_STORE_SMALL_TXN;
	rc = pspace_store_txn_begin(s, 1, w->need, &w->txn);
	if (rc == 0)
		rc = pspace_catalog_get(s, w->txn, name, &w->info, &w->dims);
	if (rc == 0 && w->info.state != PSPACE_STATE_BUILDING)
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "store %s: matrix %s is complete; it cannot be resumed",
		                    s->path, name);
	if (rc == 0)
		rc = pspace_store_check_matrix(s, w->txn, 1, w->info.id);
	if (rc == 0)
		rc = recount(w);
	if (rc == 0) {
		set_need(w);
		*out = w;
		w = NULL;
	}
	writer_free(w);
	return rc;
}

/* Commits the open transaction (with the record) and begins the next one. */
static int checkpoint(pspace_writer *w)
{
	char what[PSPACE_NAME_MAX + 32];
	int rc;

	snprintf(what, sizeof(what), "matrix %s checkpoint", w->info.name);
	rc = pspace_catalog_put(w->s, w->txn, &w->info, w->dims);
	if (rc == 0) {
		rc = pspace_store_txn_commit(w->s, w->txn, what);
		w->txn = NULL;
	}
	if (rc == 0)
		rc = pspace_store_txn_begin(w->s, 1, w->need, &w->txn);
	if (rc != 0)
		return fail(w, rc);
	w->pending = 0;
	return 0;
}

int pspace_writer_checkpoint(pspace_writer *w)
{
	if (w->err)
		return failed(w);
	return checkpoint(w);
}

/* Counts @p bytes more in the open transaction; commits it once it holds txn_bytes. */
static int written(pspace_writer *w, size_t bytes)
{
	w->pending += bytes;
	if (w->pending >= w->s->txn_bytes)
		return checkpoint(w);
	return 0;
}

/* A tile address in range (else EINVAL) and its shape; reads only what never changes. */
static int tile_shape(const pspace_writer *w, uint32_t block, uint32_t row, uint32_t col,
                      uint32_t *rows, uint32_t *cols)
{
	const pspace_matrix_info *in = &w->info;
	uint64_t dim, nt;

	if (block >= in->nblocks)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, tile (%u,%u,%u): block out of range "
		                      "(%u blocks)",
		                      w->s->path, in->name, block, row, col, in->nblocks);
	dim = w->dims[block];
	nt = (dim + in->tile - 1) / in->tile;
	if (row >= nt || col >= nt)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, tile (%u,%u,%u): out of range "
		                      "(block of dimension %llu has %llu x %llu tiles)",
		                      w->s->path, in->name, block, row, col,
		                      (unsigned long long)dim, (unsigned long long)nt,
		                      (unsigned long long)nt);
	if (in->symmetric && row > col)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, tile (%u,%u,%u): below the diagonal "
		                      "of a symmetric matrix",
		                      w->s->path, in->name, block, row, col);
	*rows =
	    (uint32_t)(dim - (uint64_t)row * in->tile < in->tile ? dim - (uint64_t)row * in->tile
	                                                         : in->tile);
	*cols =
	    (uint32_t)(dim - (uint64_t)col * in->tile < in->tile ? dim - (uint64_t)col * in->tile
	                                                         : in->tile);
	return 0;
}

/*
 * What writing or looking up a tile needs first: a writer that has not
 * failed (else its error again) and a tile address in range.
 */
static int check_tile(pspace_writer *w, uint32_t block, uint32_t row, uint32_t col, uint32_t *rows,
                      uint32_t *cols)
{
	if (w->err)
		return failed(w);
	return tile_shape(w, block, row, col, rows, cols);
}

int pspace_writer_encode_tile(const void **enc, size_t *len, const pspace_writer *w,
                              pspace_codec *c, uint32_t block, uint32_t tile_row, uint32_t tile_col,
                              pspace_dtype src_type, const void *src, size_t ld)
{
	const pspace_matrix_info *in = &w->info;
	uint32_t rows = 0, cols = 0;
	int rc = tile_shape(w, block, tile_row, tile_col, &rows, &cols);

	if (rc != 0)
		return rc;
	if (!src || ld < cols)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, tile (%u,%u,%u): no data or leading "
		                      "dimension %zu < %u columns",
		                      w->s->path, in->name, block, tile_row, tile_col, ld, cols);
	rc = pspace_tile_encode(c, &in->codec, src_type, src, rows, cols, ld, enc, len);
	return pspace_err_prefix(rc, "store %s: matrix %s, tile (%u,%u,%u)", w->s->path, in->name,
	                         block, tile_row, tile_col);
}

int pspace_writer_put_tile(pspace_writer *w, uint32_t block, uint32_t tile_row, uint32_t tile_col,
                           pspace_dtype src_type, const void *src, size_t ld)
{
	const void *enc;
	size_t len;
	int rc = w->err ? failed(w) : 0;

	if (rc == 0)
		rc = pspace_writer_encode_tile(&enc, &len, w, w->codec, block, tile_row, tile_col,
		                               src_type, src, ld);
	return rc != 0 ? rc : pspace_writer_put_encoded(w, block, tile_row, tile_col, enc, len);
}

int pspace_writer_put_encoded(pspace_writer *w, uint32_t block, uint32_t tile_row,
                              uint32_t tile_col, const void *enc, size_t len)
{
	pspace_matrix_info *in = &w->info;
	size_t esz = pspace_dtype_size(in->codec.dtype);
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	pspace_tile_header h, old;
	uint32_t rows = 0, cols = 0;
	MDB_val k = {sizeof(key), key}, v;
	int rc;

	rc = check_tile(w, block, tile_row, tile_col, &rows, &cols);
	if (rc != 0)
		return rc;
	if (!enc || pspace_tile_parse(&h, enc, len) != 0 || h.rows != rows || h.cols != cols ||
	    h.dtype != in->codec.dtype)
		return pspace_err_set(
		    PSPACE_EINVAL,
		    "store %s: matrix %s, tile (%u,%u,%u): not an encoded %u x %u "
		    "tile of the matrix's precision",
		    w->s->path, in->name, block, tile_row, tile_col, rows, cols);

	pspace_tile_key(key, in->id, block, tile_row, tile_col);
	rc = mdb_get(w->txn, w->s->tiles, &k, &v);
	if (rc == 0) {
		/* Replacing: take the old tile out of the statistics. */
		in->tiles--;
		in->tile_bytes -= v.mv_size;
		if (pspace_tile_parse(&old, v.mv_data, v.mv_size) == 0) {
			in->raw_tiles -= old.codec == PSPACE_CODEC_RAW;
			in->logical_bytes -= (uint64_t)old.rows * old.cols * esz;
			in->tile_digest -= pspace_tile_digest_term(key, old.checksum);
		} else {
			in->logical_bytes -= (uint64_t)rows * cols * esz;
			w->digest_stale = 1;
		}
	} else if (rc != MDB_NOTFOUND) {
		goto lmdb_fail;
	}
	v = (MDB_val){len, NULL};
	rc = mdb_put(w->txn, w->s->tiles, &k, &v, MDB_RESERVE);
	if (rc != 0)
		goto lmdb_fail;
	memcpy(v.mv_data, enc, len);
	in->tiles++;
	in->raw_tiles += h.codec == PSPACE_CODEC_RAW;
	in->tile_bytes += len;
	in->logical_bytes += (uint64_t)rows * cols * esz;
	in->tile_digest += pspace_tile_digest_term(key, h.checksum);
	return written(w, len);

lmdb_fail:
	return fail(w, pspace_store_err(w->s, rc, "matrix %s, tile (%u,%u,%u): writing", in->name,
	                                block, tile_row, tile_col));
}

int pspace_writer_has_tile(pspace_writer *w, uint32_t block, uint32_t tile_row, uint32_t tile_col)
{
	uint8_t key[PSPACE_TILE_KEY_SIZE];
	MDB_val k = {sizeof(key), key}, v;
	uint32_t rows = 0, cols = 0;
	int rc;

	rc = check_tile(w, block, tile_row, tile_col, &rows, &cols);
	if (rc != 0)
		return rc;
	pspace_tile_key(key, w->info.id, block, tile_row, tile_col);
	rc = mdb_get(w->txn, w->s->tiles, &k, &v);
	if (rc == 0)
		return 1;
	if (rc == MDB_NOTFOUND)
		return 0;
	return pspace_store_err(w->s, rc, "matrix %s, tile (%u,%u,%u): lookup", w->info.name, block,
	                        tile_row, tile_col);
}

int pspace_writer_put_array(pspace_writer *w, const char *name, pspace_dtype t, int ndim,
                            const uint64_t *shape, const void *data)
{
	size_t nb = 0, ob = 0;
	int rc;

	if (w->err)
		return failed(w);
	rc = pspace_array_put(w->s, w->txn, w->info.name, w->info.id, name, t, ndim, shape, data,
	                      &nb, &ob);
	if (rc == PSPACE_EINVAL)
		return rc; /* bad arguments: the transaction is still fine */
	if (rc != 0)
		return fail(w, rc);
	if (ob) {
		w->info.arrays--;
		w->info.array_bytes -= ob;
	}
	w->info.arrays++;
	w->info.array_bytes += nb;
	return written(w, nb);
}

int pspace_writer_finish(pspace_writer *w)
{
	char what[PSPACE_NAME_MAX + 32];
	int rc;

	if (w->err) {
		rc = failed(w);
		goto out;
	}
	rc = w->digest_stale ? recount(w) : 0;
	if (rc != 0) {
		rc = fail(w, rc);
		goto out;
	}
	w->info.state = PSPACE_STATE_COMPLETE;
	w->info.completed = (uint64_t)time(NULL);
	snprintf(what, sizeof(what), "matrix %s finish", w->info.name);
	rc = pspace_catalog_put(w->s, w->txn, &w->info, w->dims);
	if (rc == 0) {
		rc = pspace_store_txn_commit(w->s, w->txn, what);
		w->txn = NULL;
	}
out:
	writer_free(w);
	return rc;
}

void pspace_writer_abort(pspace_writer *w, int remove)
{
	pspace_matrix_info info;
	MDB_txn *txn = NULL;
	int rc;

	if (!w)
		return;
	pspace_store_txn_abort(w->s, w->txn);
	w->txn = NULL;
	if (remove) {
		/* Best effort: a failure leaves the matrix BUILDING, removable later. */
		rc = pspace_store_txn_begin(w->s, 1, PSPACE_STORE_SMALL_TXN, &txn);
		if (rc == 0)
			rc = pspace_catalog_get(w->s, txn, w->info.name, &info, NULL);
		if (rc == 0 && info.id == w->info.id)
			rc = pspace_catalog_delete(w->s, txn, &info);
		if (rc == 0) {
			rc = pspace_store_txn_commit(w->s, txn, "abort");
			txn = NULL;
		}
		pspace_store_txn_abort(w->s, txn);
	}
	writer_free(w);
}
