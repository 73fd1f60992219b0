/*
 * A sharded matrix's manifest checked against its store's hooks when the
 * engine opens it (kernel/shard.h; apart from the kernels of shard.c,
 * which call the engine).
 */
#include <stdlib.h>

#include "common/error.h"
#include "kernel/shard.h"

int pspace_tiled_shard_open(pspace_tiled *t)
{
	const pspace_shard_hooks *h = pspace_store_shard(t->s);
	const char *path = pspace_store_path(t->s), *name = t->info.name;
	pspace_shard_info si;
	uint64_t rows = 0;
	int rc;

	/* no arrays, no manifest: not sharded, known without opening a reader */
	rc = t->info.arrays ? pspace_shard_info_get(&si, NULL, 0, t->s, name) : PSPACE_ENOTFOUND;
	if (rc == PSPACE_ENOTFOUND) {
		pspace_errclear();
		if (h && h->nranks > 1)
			return pspace_err_set(
			    PSPACE_EINVAL,
			    "store %s is shard %u of %u ranks, but matrix %s is not "
			    "sharded (it holds the whole matrix)",
			    path, h->rank, h->nranks, name);
		return 0;
	}
	if (rc != 0)
		return rc;
	if (si.nranks == 1 && (!h || h->nranks == 1))
		return 0;
	if (!h)
		return pspace_err_set(
		    PSPACE_ENOTSUP,
		    "it is shard %u of a matrix sharded over %u ranks: evaluate it "
		    "under mpirun -n %u (pspace_store_open_mpi)",
		    si.rank, si.nranks, si.nranks);
	if (h->nranks != si.nranks || h->rank != si.rank)
		return pspace_err_set(
		    PSPACE_EINVAL,
		    "store %s: matrix %s is shard %u of %u ranks, opened as rank %u "
		    "of %u",
		    path, name, si.rank, si.nranks, h->rank, h->nranks);
	t->block_trow = malloc(t->info.nblocks * sizeof(*t->block_trow));
	if (!t->block_trow)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	for (uint32_t b = 0; b < t->info.nblocks; b++) {
		t->block_trow[b] = rows;
		rows += (t->block_dim[b] + t->info.tile - 1) / t->info.tile;
	}
	if (si.tile != t->info.tile || si.tile_rows != rows || si.end > rows)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: matrix %s: its shard manifest (tile %u, %llu tile "
		                      "rows) does not fit the matrix (tile %u, %llu tile rows)",
		                      path, name, si.tile, (unsigned long long)si.tile_rows,
		                      t->info.tile, (unsigned long long)rows);
	t->sharded = 1;
	t->row_first = si.first;
	t->row_end = si.end;
	return 0;
}
