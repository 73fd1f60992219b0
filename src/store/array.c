/*
 * Small arrays stored under a matrix (diagonals, factors, eigenvectors):
 * key = matrix id (u64 BE) | name, value = a 48-byte header and the raw
 * elements, little-endian, uncompressed, with a CRC-32C.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/keys.h"
#include "store/record.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pspace stores array elements in host order, which must be little-endian"
#endif

static void array_key(uint8_t *key, uint64_t id, const char *name, size_t n)
{
	pspace_put_be64(key, id);
	memcpy(key + PSPACE_ARRAY_KEY_PREFIX, name, n);
}

int pspace_array_put(pspace_store *s, MDB_txn *txn, const char *matrix, uint64_t id,
                     const char *name, pspace_dtype t, int ndim, const uint64_t *shape,
                     const void *data, size_t *new_bytes, size_t *old_bytes)
{
	uint8_t key[PSPACE_ARRAY_KEY_PREFIX + PSPACE_NAME_MAX];
	pspace_array_header h = {0};
	uint64_t count = 1;
	size_t esz, n, dlen;
	MDB_val k, v;
	int rc;

	*new_bytes = *old_bytes = 0;
	rc = pspace_store_check_name(s, "array", name);
	if (rc != 0)
		return rc;
	if (t != PSPACE_F64 && t != PSPACE_F32 && t != PSPACE_I64)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, array \"%s\": type must be f64, f32 "
		                      "or i64",
		                      s->path, matrix, name);
	if (ndim < 0 || ndim > 4 || (ndim > 0 && !shape))
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, array \"%s\": ndim %d (0..4)", s->path,
		                      matrix, name, ndim);
	esz = pspace_dtype_size(t);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] != 0 && count > (SIZE_MAX / 2) / esz / shape[i])
			return pspace_err_set(PSPACE_EINVAL,
			                      "store %s: matrix %s, array \"%s\": too large",
			                      s->path, matrix, name);
		count *= shape[i];
		h.shape[i] = shape[i];
	}
	if (count > 0 && !data)
		return pspace_err_set(PSPACE_EINVAL, "store %s: matrix %s, array \"%s\": no data",
		                      s->path, matrix, name);
	h.dtype = t;
	h.ndim = ndim;
	dlen = (size_t)count * esz;

	n = strlen(name);
	array_key(key, id, name, n);
	k = (MDB_val){PSPACE_ARRAY_KEY_PREFIX + n, key};
	rc = mdb_get(txn, s->arrays, &k, &v);
	if (rc == 0)
		*old_bytes = v.mv_size;
	else if (rc != MDB_NOTFOUND)
		goto out;
	v = (MDB_val){PSPACE_ARRAY_HEADER + dlen, NULL};
	rc = mdb_put(txn, s->arrays, &k, &v, MDB_RESERVE);
	if (rc != 0)
		goto out;
	if (dlen)
		memcpy((uint8_t *)v.mv_data + PSPACE_ARRAY_HEADER, data, dlen);
	pspace_array_header_encode(v.mv_data, &h, data, dlen);
	*new_bytes = v.mv_size;
out:
	if (rc != 0)
		return pspace_store_err(s, rc, "matrix %s, array \"%s\": writing", matrix, name);
	return 0;
}

/* Finds array @p name of the reader's matrix and decodes its header. */
static int array_get(pspace_reader *r, const char *name, int verify, pspace_array_header *h,
                     uint64_t *count, const uint8_t **data)
{
	uint8_t key[PSPACE_ARRAY_KEY_PREFIX + PSPACE_NAME_MAX];
	pspace_store *s = r->s;
	MDB_val k, v;
	size_t n;
	int rc;

	rc = pspace_store_check_name(s, "array", name);
	if (rc != 0)
		return rc;
	n = strlen(name);
	array_key(key, r->info.id, name, n);
	k = (MDB_val){PSPACE_ARRAY_KEY_PREFIX + n, key};
	rc = mdb_get(r->txn, s->arrays, &k, &v);
	if (rc == MDB_NOTFOUND)
		return pspace_err_set(PSPACE_ENOTFOUND, "store %s: matrix %s has no array \"%s\"",
		                      s->path, r->info.name, name);
	if (rc != 0)
		return pspace_store_err(s, rc, "matrix %s, array \"%s\": reading", r->info.name,
		                        name);
	rc = pspace_array_header_decode(v.mv_data, v.mv_size, verify, h, count);
	if (rc != 0)
		return pspace_err_set(rc,
		                      "store %s: matrix %s, array \"%s\": corrupt (%zu bytes, bad "
		                      "header or checksum)",
		                      s->path, r->info.name, name, v.mv_size);
	*data = (const uint8_t *)v.mv_data + PSPACE_ARRAY_HEADER;
	return 0;
}

static void fill_info(pspace_array_info *out, const pspace_array_header *h, uint64_t count)
{
	memset(out, 0, sizeof(*out));
	out->dtype = h->dtype;
	out->ndim = h->ndim;
	for (int i = 0; i < h->ndim; i++)
		out->shape[i] = h->shape[i];
	out->count = count;
}

int pspace_array_info_get(pspace_array_info *out, pspace_reader *r, const char *name)
{
	pspace_array_header h;
	const uint8_t *data = NULL;
	uint64_t count;
	int rc;

	rc = array_get(r, name, 0, &h, &count, &data);
	if (rc == 0)
		fill_info(out, &h, count);
	return rc;
}

static double load(const uint8_t *p, pspace_dtype t, uint64_t i)
{
	switch (t) {
	case PSPACE_F64: {
		double x = 0;

		memcpy(&x, p + 8 * i, 8);
		return x;
	}
	case PSPACE_F32: {
		float x = 0;

		memcpy(&x, p + 4 * i, 4);
		return x;
	}
	default: {
		int64_t x = 0;

		memcpy(&x, p + 8 * i, 8);
		return (double)x;
	}
	}
}

int pspace_reader_array(pspace_reader *r, const char *name, pspace_dtype want, void *dst,
                        uint64_t cap)
{
	pspace_array_header h;
	const uint8_t *data = NULL;
	uint64_t count;
	int rc;

	rc = array_get(r, name, 1, &h, &count, &data);
	if (rc != 0)
		return rc;
	if (want != h.dtype && want != PSPACE_F32 && want != PSPACE_F64)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, array \"%s\": cannot convert %s to %s",
		                      r->s->path, r->info.name, name, pspace_dtype_name(h.dtype),
		                      pspace_dtype_name(want));
	if (cap < count)
		return pspace_err_set(PSPACE_EINVAL,
		                      "store %s: matrix %s, array \"%s\": %llu elements, room for "
		                      "%llu",
		                      r->s->path, r->info.name, name, (unsigned long long)count,
		                      (unsigned long long)cap);
	if (want == h.dtype) {
		if (count)
			memcpy(dst, data, (size_t)count * pspace_dtype_size(want));
	} else if (want == PSPACE_F64) {
		for (uint64_t i = 0; i < count; i++)
			((double *)dst)[i] = load(data, h.dtype, i);
	} else {
		for (uint64_t i = 0; i < count; i++)
			((float *)dst)[i] = (float)load(data, h.dtype, i);
	}
	return 0;
}

int pspace_reader_foreach_array(pspace_reader *r,
                                int (*fn)(const char *name, const pspace_array_info *info,
                                          void *ud),
                                void *ud)
{
	char name[PSPACE_NAME_MAX + 1];
	pspace_store *s = r->s;
	MDB_cursor *cur = NULL;
	pspace_array_header h;
	pspace_array_info ai;
	uint8_t key[8];
	uint64_t count;
	MDB_val k = {8, key}, v;
	size_t n;
	int rc;

	pspace_put_be64(key, r->info.id);
	rc = mdb_cursor_open(r->txn, s->arrays, &cur);
	if (rc != 0)
		return pspace_store_err(s, rc, "matrix %s: reading arrays", r->info.name);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || pspace_get_be64(k.mv_data) != r->info.id)
			break;
		n = k.mv_size - PSPACE_ARRAY_KEY_PREFIX;
		if (n == 0 || n > PSPACE_NAME_MAX) {
			rc = pspace_err_set(PSPACE_ECORRUPT,
			                    "store %s: matrix %s: corrupt array key", s->path,
			                    r->info.name);
			goto out;
		}
		memcpy(name, (const char *)k.mv_data + PSPACE_ARRAY_KEY_PREFIX, n);
		name[n] = '\0';
		rc = pspace_array_header_decode(v.mv_data, v.mv_size, 0, &h, &count);
		if (rc != 0) {
			rc = pspace_err_set(rc, "store %s: matrix %s, array \"%s\": corrupt header",
			                    s->path, r->info.name, name);
			goto out;
		}
		fill_info(&ai, &h, count);
		rc = fn(name, &ai, ud);
		if (rc != 0)
			goto out;
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	else if (rc != 0)
		rc = pspace_store_err(s, rc, "matrix %s: reading arrays", r->info.name);
out:
	mdb_cursor_close(cur);
	return rc;
}
