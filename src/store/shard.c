/*
 * Sharded stores (pspace/shard.h): a store's shard hooks, the balance of
 * tile rows over ranks (their directories: shard_dir.c), and the manifest every shard keeps with a
 * sharded matrix, an I64 array PSPACE_SHARD_ARRAY of the matrix:
 *
 *   [0] version  [1] nranks P  [2] rank R  [3] tile edge
 *   [4] tile rows of the whole matrix  [5] stored tiles of the whole matrix
 *   [6 .. 6 + P] the bounds of the ranks' tile-row ranges (P + 1 entries)
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/shard.h"

#define HEAD 6

int pspace_store_set_shard(pspace_store *s, const pspace_shard_hooks *h)
{
	if (!s)
		return pspace_err_set(PSPACE_EINVAL, "pspace_store_set_shard: no store");
	if (!h) {
		s->has_shard = 0;
		memset(&s->shard, 0, sizeof(s->shard));
		return 0;
	}
	if (h->nranks == 0 || h->nranks > PSPACE_SHARD_MAX || h->rank >= h->nranks || !h->sum)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_store_set_shard: rank %u of %u ranks, sum %s",
		                      h->rank, h->nranks, h->sum ? "set" : "missing");
	s->shard = *h;
	s->has_shard = 1;
	return 0;
}

const pspace_shard_hooks *pspace_store_shard(const pspace_store *s)
{
	return s && s->has_shard ? &s->shard : NULL;
}

/* Tiles per row of a block of @p dim at edge @p tile. */
static uint64_t ntr(uint64_t dim, uint32_t tile)
{
	return (dim + tile - 1) / tile;
}

int pspace_shard_bounds(uint64_t *bounds, uint32_t nranks, const uint64_t *dims, uint32_t nblocks,
                        uint32_t tile)
{
	uint64_t rows = 0, total = 0, cum = 0, i = 0;
	uint32_t r = 1;

	if (!bounds || nranks == 0 || nranks > PSPACE_SHARD_MAX || !dims || nblocks == 0 ||
	    tile == 0)
		return pspace_err_set(PSPACE_EINVAL,
		                      "pspace_shard_bounds: %u ranks, %u blocks, tile %u", nranks,
		                      nblocks, tile);
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t n = ntr(dims[b], tile);

		rows += n;
		total += n * (n + 1) / 2;
	}
	bounds[0] = 0;
	/*
	 * Walk the tile rows in order; rank r's range ends at the row where the
	 * running count of tiles comes closest to r/P of them.
	 */
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t n = ntr(dims[b], tile);

		for (uint64_t t = 0; t < n; t++, i++) {
			uint64_t w = n - t;

			while (r < nranks) {
				/* the target r * total / P, compared without overflow as r * total
				 */
				long double target = (long double)total * r / nranks;

				if ((long double)(cum + w) < target)
					break;
				/* row i goes to the side where the count is nearer the target */
				bounds[r++] =
				    (long double)(cum + w) - target < target - (long double)cum
				        ? i + 1
				        : i;
			}
			cum += w;
		}
	}
	while (r < nranks)
		bounds[r++] = rows;
	bounds[nranks] = rows;
	for (r = 1; r <= nranks; r++)
		if (bounds[r] < bounds[r - 1])
			bounds[r] = bounds[r - 1];
	return 0;
}

int pspace_shard_manifest_put(pspace_writer *w, uint32_t rank, uint32_t nranks,
                              const uint64_t *dims, uint32_t nblocks, uint32_t tile)
{
	uint64_t shape[1] = {HEAD + (uint64_t)nranks + 1};
	int64_t *v;
	uint64_t rows = 0, tiles = 0;
	int rc;

	v = malloc((size_t)shape[0] * sizeof(*v));
	if (!v)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for a shard manifest");
	rc = pspace_shard_bounds((uint64_t *)(v + HEAD), nranks, dims, nblocks, tile);
	if (rc == 0) {
		for (uint32_t b = 0; b < nblocks; b++) {
			uint64_t n = ntr(dims[b], tile);

			rows += n;
			tiles += n * (n + 1) / 2;
		}
		v[0] = PSPACE_SHARD_VERSION;
		v[1] = nranks;
		v[2] = rank;
		v[3] = tile;
		v[4] = (int64_t)rows;
		v[5] = (int64_t)tiles;
		rc = pspace_writer_put_array(w, PSPACE_SHARD_ARRAY, PSPACE_I64, 1, shape, v);
	}
	free(v);
	return rc;
}

/* Checks and decodes manifest @p v of @p n entries into @p out. */
static int manifest_decode(pspace_shard_info *out, const int64_t *v, uint64_t n, const char *path,
                           const char *name)
{
	if (n < HEAD + 2 || v[0] < 1)
		goto bad;
	if (v[0] != PSPACE_SHARD_VERSION)
		return pspace_err_set(
		    PSPACE_EVERSION,
		    "store %s: matrix %s: shard manifest version %lld, this pspace "
		    "reads %d",
		    path, name, (long long)v[0], PSPACE_SHARD_VERSION);
	if (v[1] < 1 || v[1] > PSPACE_SHARD_MAX || (uint64_t)v[1] + HEAD + 1 != n || v[2] < 0 ||
	    v[2] >= v[1] || v[3] < 1 || v[3] > UINT32_MAX || v[4] < 0 || v[5] < 0 || v[HEAD] != 0 ||
	    v[HEAD + v[1]] != v[4])
		goto bad;
	for (int64_t r = 1; r <= v[1]; r++)
		if (v[HEAD + r] < v[HEAD + r - 1])
			goto bad;
	out->version = (uint32_t)v[0];
	out->nranks = (uint32_t)v[1];
	out->rank = (uint32_t)v[2];
	out->tile = (uint32_t)v[3];
	out->tile_rows = (uint64_t)v[4];
	out->tiles = (uint64_t)v[5];
	out->first = (uint64_t)v[HEAD + v[2]];
	out->end = (uint64_t)v[HEAD + v[2] + 1];
	return 0;
bad:
	return pspace_err_set(PSPACE_ECORRUPT, "store %s: matrix %s: malformed shard manifest",
	                      path, name);
}

int pspace_shard_info_get(pspace_shard_info *out, uint64_t *bounds, size_t cap, pspace_store *s,
                          const char *name)
{
	pspace_reader *r = NULL;
	pspace_array_info ai;
	int64_t *v = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = pspace_reader_open(&r, s, name, PSPACE_READ_INCOMPLETE);
	if (rc == 0)
		rc = pspace_array_info_get(&ai, r, PSPACE_SHARD_ARRAY);
	if (rc == PSPACE_ENOTFOUND) {
		rc = pspace_err_set(PSPACE_ENOTFOUND, "store %s: matrix %s is not sharded",
		                    pspace_store_path(s), name);
		goto out;
	}
	if (rc == 0 &&
	    (ai.dtype != PSPACE_I64 || ai.ndim != 1 || ai.count > HEAD + 1 + PSPACE_SHARD_MAX))
		rc =
		    pspace_err_set(PSPACE_ECORRUPT, "store %s: matrix %s: malformed shard manifest",
		                   pspace_store_path(s), name);
	if (rc == 0 && !(v = malloc((size_t)ai.count * sizeof(*v))))
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
	if (rc == 0)
		rc = pspace_reader_array(r, PSPACE_SHARD_ARRAY, PSPACE_I64, v, ai.count);
	if (rc == 0)
		rc = manifest_decode(out, v, ai.count, pspace_store_path(s), name);
	if (rc == 0 && bounds) {
		if (cap < (size_t)out->nranks + 1)
			rc = pspace_err_set(PSPACE_EINVAL,
			                    "pspace_shard_info_get: room for %zu bounds, "
			                    "%u ranks",
			                    cap, out->nranks);
		for (uint32_t i = 0; rc == 0 && i <= out->nranks; i++)
			bounds[i] = (uint64_t)v[HEAD + i];
	}
out:
	free(v);
	pspace_reader_close(r);
	return rc;
}
