/*
 * The catalog: matrix records (name -> record), matrix ids, shared layouts,
 * and the operations on whole matrices (info, foreach, remove).
 *
 * Layouts are stored once: key = FNV-1a 64 hash of the text (probing
 * hash+1, ... on a collision; 0 is never used), value = u32 LE reference
 * count followed by the text. A matrix record holds the key as layout_id.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/keys.h"
#include "store/record.h"

#define LAYOUT_REFS 4 /* bytes of the reference count before the text */

int pspace_store_check_name(const pspace_store *s, const char *what, const char *name)
{
	size_t n;

	if (!name || !*name)
		return pspace_err_set(PSPACE_EINVAL, "store %s: empty %s name", s->path, what);
	n = strlen(name);
	if (n > PSPACE_NAME_MAX)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: %s name of %zu bytes is longer than %d", s->path,
		                      what, n, PSPACE_NAME_MAX);
	return 0;
}

int pspace_catalog_get(pspace_store *s, MDB_txn *txn, const char *name, pspace_matrix_info *info,
                       uint64_t **dims)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc;

	if (dims)
		*dims = NULL;
	rc = mdb_get(txn, s->catalog, &k, &v);
	if (rc == MDB_NOTFOUND)
		return pspace_err_set(PSPACE_ENOTFOUND, "store %s: no matrix %s", s->path, name);
	if (rc != 0)
		return pspace_store_err(s, rc, "matrix %s: reading the catalog", name);
	memset(info, 0, sizeof(*info));
	rc = pspace_record_decode(v.mv_data, v.mv_size, info, dims);
	if (rc == PSPACE_ECORRUPT)
		return pspace_err_set(rc,
		                      "store %s: matrix %s: catalog record is corrupt (%zu bytes, "
		                      "bad length, version, field or checksum)",
		                      s->path, name, v.mv_size);
	if (rc != 0)
		return pspace_err_set(rc, "store %s: matrix %s: out of memory", s->path, name);
	memcpy(info->name, name, k.mv_size + 1);
	return 0;
}

int pspace_catalog_put(pspace_store *s, MDB_txn *txn, const pspace_matrix_info *info,
                       const uint64_t *dims)
{
	MDB_val k = {strlen(info->name), (void *)info->name}, v;
	int rc;

	v.mv_size = pspace_record_size(info->nblocks);
	rc = mdb_put(txn, s->catalog, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return pspace_store_err(s, rc, "matrix %s: writing the catalog record", info->name);
	pspace_record_encode(v.mv_data, info, dims);
	return 0;
}

int pspace_catalog_next_id(pspace_store *s, MDB_txn *txn, uint64_t *id)
{
	MDB_val k = {7, "next_id"}, v;
	uint8_t buf[8];
	int rc;

	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0 && v.mv_size != 8)
		return pspace_err_set(PSPACE_ECORRUPT, "store %s: meta \"next_id\" is corrupt",
		                      s->path);
	if (rc != 0)
		return pspace_store_err(s, rc, "reading meta \"next_id\"");
	*id = pspace_get_le64(v.mv_data);
	pspace_put_le64(buf, *id + 1);
	v = (MDB_val){8, buf};
	rc = mdb_put(txn, s->meta, &k, &v, 0);
	return rc ? pspace_store_err(s, rc, "writing meta \"next_id\"") : 0;
}

static uint64_t fnv1a64(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

int pspace_layout_ref(pspace_store *s, MDB_txn *txn, const char *text, uint64_t *id)
{
	size_t n = strlen(text);
	uint64_t h = fnv1a64(text, n);
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	int rc;

	for (;; h++) {
		if (h == 0)
			continue;
		pspace_put_be64(key, h);
		rc = mdb_get(txn, s->layouts, &k, &v);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc != 0)
			return pspace_store_err(s, rc, "reading layout %016llx",
			                        (unsigned long long)h);
		if (v.mv_size < LAYOUT_REFS)
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "store %s: layout %016llx is corrupt", s->path,
			                      (unsigned long long)h);
		if (v.mv_size - LAYOUT_REFS == n &&
		    memcmp((const char *)v.mv_data + LAYOUT_REFS, text, n) == 0) {
			uint32_t refs = pspace_get_le32(v.mv_data) + 1;

			v.mv_size = LAYOUT_REFS + n;
			rc = mdb_put(txn, s->layouts, &k, &v, MDB_RESERVE);
			if (rc != 0)
				return pspace_store_err(s, rc, "writing layout %016llx",
				                        (unsigned long long)h);
			pspace_put_le32(v.mv_data, refs);
			memcpy((char *)v.mv_data + LAYOUT_REFS, text, n);
			*id = h;
			return 0;
		}
	}
	v.mv_size = LAYOUT_REFS + n;
	rc = mdb_put(txn, s->layouts, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return pspace_store_err(s, rc, "writing layout %016llx", (unsigned long long)h);
	pspace_put_le32(v.mv_data, 1);
	memcpy((char *)v.mv_data + LAYOUT_REFS, text, n);
	*id = h;
	return 0;
}

/* Drops one reference to layout @p id, deleting it with the last one. */
static int layout_unref(pspace_store *s, MDB_txn *txn, uint64_t id)
{
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	uint32_t refs;
	void *copy;
	int rc;

	pspace_put_be64(key, id);
	rc = mdb_get(txn, s->layouts, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0; /* already gone: nothing to release */
	if (rc != 0)
		return pspace_store_err(s, rc, "reading layout %016llx", (unsigned long long)id);
	if (v.mv_size < LAYOUT_REFS)
		return pspace_err_set(PSPACE_ECORRUPT, "store %s: layout %016llx is corrupt",
		                      s->path, (unsigned long long)id);
	refs = pspace_get_le32(v.mv_data);
	if (refs <= 1) {
		rc = mdb_del(txn, s->layouts, &k, NULL);
		return rc ? pspace_store_err(s, rc, "deleting layout %016llx",
		                             (unsigned long long)id)
		          : 0;
	}
	/* v points into the map; copy before rewriting the same key. */
	copy = malloc(v.mv_size);
	if (!copy)
		return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
	memcpy(copy, v.mv_data, v.mv_size);
	pspace_put_le32(copy, refs - 1);
	v.mv_data = copy;
	rc = mdb_put(txn, s->layouts, &k, &v, 0);
	free(copy);
	return rc ? pspace_store_err(s, rc, "writing layout %016llx", (unsigned long long)id) : 0;
}

/* Deletes every entry of @p dbi whose key starts with the 8-byte id prefix. */
static int delete_prefix(pspace_store *s, MDB_txn *txn, MDB_dbi dbi, uint64_t id, const char *name,
                         const char *what)
{
	uint8_t key[8];
	MDB_cursor *cur = NULL;
	MDB_val k = {8, key}, v;
	int rc;

	pspace_put_be64(key, id);
	if (dbi == s->tiles) {
		rc = pspace_store_check_matrix(s, txn, 1, id);
		if (rc != 0)
			return rc;
	}
	rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc != 0)
		goto out;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		if (k.mv_size < 8 || pspace_get_be64(k.mv_data) != id)
			break;
		rc = mdb_cursor_del(cur, 0);
		if (rc == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
	}
	if (rc == MDB_NOTFOUND || rc == EINVAL)
		rc = 0; /* end of the database (GET_CURRENT after deleting the last entry) */
out:
	if (cur)
		mdb_cursor_close(cur);
	return rc ? pspace_store_err(s, rc, "matrix %s: deleting %s", name, what) : 0;
}

int pspace_catalog_delete(pspace_store *s, MDB_txn *txn, const pspace_matrix_info *info)
{
	MDB_val k = {strlen(info->name), (void *)info->name};
	int rc;

	rc = delete_prefix(s, txn, s->tiles, info->id, info->name, "tiles");
	if (rc == 0)
		rc = delete_prefix(s, txn, s->arrays, info->id, info->name, "arrays");
	if (rc == 0 && info->layout_id != 0)
		rc = layout_unref(s, txn, info->layout_id);
	if (rc == 0) {
		rc = mdb_del(txn, s->catalog, &k, NULL);
		if (rc != 0)
			rc = pspace_store_err(s, rc, "matrix %s: deleting the catalog record",
			                      info->name);
	}
	return rc;
}

/* pspace_catalog_get() of matrix @p name in a read transaction of its own. */
static int read_record(pspace_store *s, const char *name, pspace_matrix_info *info, uint64_t **dims)
{
	MDB_txn *txn = NULL;
	int rc;

	rc = pspace_store_check_name(s, "matrix", name);
	if (rc == 0)
		rc = pspace_store_txn_begin(s, 0, 0, &txn);
	if (rc == 0)
		rc = pspace_catalog_get(s, txn, name, info, dims);
	pspace_store_txn_abort(s, txn);
	return rc;
}

int pspace_matrix_info_get(pspace_matrix_info *out, pspace_store *s, const char *name)
{
	return read_record(s, name, out, NULL);
}

int pspace_store_blocks(pspace_store *s, const char *name, uint64_t *dims, uint32_t cap)
{
	pspace_matrix_info info;
	uint64_t *bd = NULL;
	int rc;

	rc = read_record(s, name, &info, &bd);
	if (rc != 0)
		goto out;
	if (cap < info.nblocks) {
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "store %s: matrix %s has %u blocks, room for only %u", s->path,
		                    name, info.nblocks, cap);
		goto out;
	}
	if (info.nblocks)
		memcpy(dims, bd, info.nblocks * sizeof(*dims));
out:
	free(bd);
	return rc;
}

int pspace_store_foreach(pspace_store *s, int (*fn)(const pspace_matrix_info *info, void *ud),
                         void *ud)
{
	pspace_matrix_info *all = NULL, *tmp;
	size_t n = 0, cap = 0;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	/* Collect the snapshot first, so fn may use the store (even write to it). */
	rc = pspace_store_txn_begin(s, 0, 0, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_cursor_open(txn, s->catalog, &cur);
	if (rc != 0) {
		rc = pspace_store_err(s, rc, "reading the catalog");
		goto out;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST)) == 0) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			tmp = realloc(all, cap * sizeof(*all));
			if (!tmp) {
				rc = pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory",
				                    s->path);
				goto out;
			}
			all = tmp;
		}
		if (k.mv_size == 0 || k.mv_size > PSPACE_NAME_MAX ||
		    memchr(k.mv_data, 0, k.mv_size)) {
			rc = pspace_err_set(PSPACE_ECORRUPT, "store %s: corrupt catalog key",
			                    s->path);
			goto out;
		}
		memset(&all[n], 0, sizeof(all[n]));
		memcpy(all[n].name, k.mv_data, k.mv_size);
		rc = pspace_record_decode(v.mv_data, v.mv_size, &all[n], NULL);
		if (rc != 0) {
			rc = pspace_err_set(rc, "store %s: matrix %s: catalog record is corrupt",
			                    s->path, all[n].name);
			goto out;
		}
		n++;
	}
	if (rc != MDB_NOTFOUND) {
		rc = pspace_store_err(s, rc, "reading the catalog");
		goto out;
	}
	rc = 0;
	mdb_cursor_close(cur);
	cur = NULL;
	pspace_store_txn_abort(s, txn);
	txn = NULL;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = fn(&all[i], ud);
out:
	if (cur)
		mdb_cursor_close(cur);
	pspace_store_txn_abort(s, txn);
	free(all);
	return rc;
}

int pspace_store_remove(pspace_store *s, const char *name)
{
	pspace_matrix_info info;
	MDB_txn *txn = NULL;
	int rc;

	rc = pspace_store_check_name(s, "matrix", name);
	if (rc != 0)
		return rc;
	if (s->readonly)
		return pspace_err_set(PSPACE_EINVAL, "store %s: opened read-only", s->path);
	rc = pspace_store_txn_begin(s, 1, PSPACE_STORE_SMALL_TXN, &txn);
	if (rc == 0)
		rc = pspace_catalog_get(s, txn, name, &info, NULL);
	if (rc == 0)
		rc = pspace_catalog_delete(s, txn, &info);
	if (rc == 0) {
		rc = pspace_store_txn_commit(s, txn, "remove");
		txn = NULL;
	}
	pspace_store_txn_abort(s, txn);
	return rc;
}

int pspace_store_layout(char **out, pspace_store *s, uint64_t layout_id)
{
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	MDB_txn *txn = NULL;
	char *text;
	int rc;

	*out = NULL;
	pspace_put_be64(key, layout_id);
	rc = pspace_store_txn_begin(s, 0, 0, &txn);
	if (rc != 0)
		return rc;
	rc = layout_id ? mdb_get(txn, s->layouts, &k, &v) : MDB_NOTFOUND;
	if (rc == MDB_NOTFOUND) {
		rc = pspace_err_set(PSPACE_ENOTFOUND, "store %s: no layout %016llx", s->path,
		                    (unsigned long long)layout_id);
		goto out;
	}
	if (rc != 0) {
		rc = pspace_store_err(s, rc, "reading layout %016llx",
		                      (unsigned long long)layout_id);
		goto out;
	}
	if (v.mv_size < LAYOUT_REFS) {
		rc = pspace_err_set(PSPACE_ECORRUPT, "store %s: layout %016llx is corrupt", s->path,
		                    (unsigned long long)layout_id);
		goto out;
	}
	text = malloc(v.mv_size - LAYOUT_REFS + 1);
	if (!text) {
		rc = pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
		goto out;
	}
	memcpy(text, (const char *)v.mv_data + LAYOUT_REFS, v.mv_size - LAYOUT_REFS);
	text[v.mv_size - LAYOUT_REFS] = '\0';
	*out = text;
out:
	pspace_store_txn_abort(s, txn);
	return rc;
}
