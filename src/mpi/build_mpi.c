/*
 * libpspace_mpi: builds into a sharded store (pspace/mpi.h). Dense and
 * BlockDiag are built by every rank, each its own tile rows (the core's
 * sharded build, pspace_build_opts.shard_*); the other kinds are built on
 * rank 0 and copied to every shard: its catalog entry, layout and arrays
 * are broadcast and written again by each rank.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/mpi_impl.h"

/* One array of a matrix being copied. */
typedef struct arr {
	char name[PSPACE_NAME_MAX + 1];
	int32_t dtype, ndim;
	uint64_t shape[4], count;
	void *data;
} arr;

/* What rank 0 sends first. */
typedef struct copy_head {
	int32_t kind;
	uint32_t nblocks, narrays;
	uint64_t d, layout_len;
} copy_head;

typedef struct copy_src {
	arr *a;
	size_t n;
	pspace_reader *r;
	int rc;
} copy_src;

static int collect(const char *name, const pspace_array_info *info, void *ud)
{
	copy_src *cs = ud;
	arr *a, *grown = realloc(cs->a, (cs->n + 1) * sizeof(*cs->a));

	if (!grown)
		return cs->rc = pspace_errdetail_set(PSPACE_ENOMEM, "out of memory");
	cs->a = grown;
	a = &cs->a[cs->n++];
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->dtype = info->dtype;
	a->ndim = info->ndim;
	memcpy(a->shape, info->shape, sizeof(a->shape));
	a->count = info->count;
	return 0;
}

static void arrays_free(arr *a, size_t n)
{
	for (size_t i = 0; a && i < n; i++)
		free(a[i].data);
	free(a);
}

/* Rank 0: reads matrix @p name's record, layout and arrays into memory. */
static int copy_read(pspace_store *s, const char *name, copy_head *h, char **layout, copy_src *cs)
{
	pspace_matrix_info info;
	int rc;

	rc = pspace_matrix_info_get(&info, s, name);
	if (rc == 0 && info.nblocks != 0)
		rc = pspace_errdetail_set(
		    PSPACE_ENOTSUP,
		    "matrix %s (%s) holds tiles: only tileless kinds are copied "
		    "to every shard",
		    name, pspace_kind_name(info.kind));
	if (rc == 0 && info.layout_id)
		rc = pspace_store_layout(layout, s, info.layout_id);
	if (rc == 0)
		rc = pspace_reader_open(&cs->r, s, name, 0);
	if (rc == 0)
		rc = pspace_reader_foreach_array(cs->r, collect, cs);
	if (rc == 0)
		rc = cs->rc;
	for (size_t i = 0; rc == 0 && i < cs->n; i++) {
		arr *a = &cs->a[i];

		a->data = malloc((size_t)a->count * pspace_dtype_size(a->dtype) + 1);
		rc = a->data ? pspace_reader_array(cs->r, a->name, a->dtype, a->data, a->count)
		             : pspace_errdetail_set(PSPACE_ENOMEM, "out of memory");
	}
	if (rc == 0) {
		h->kind = info.kind;
		h->nblocks = info.nblocks;
		h->narrays = (uint32_t)cs->n;
		h->d = info.d;
		h->layout_len = *layout ? strlen(*layout) + 1 : 0;
	}
	return rc;
}

/* Ranks but 0: writes the copy received. */
static int copy_write(pspace_store *s, const char *name, const copy_head *h, const char *layout,
                      const arr *a)
{
	pspace_matrix_desc desc;
	pspace_writer *w = NULL;
	int rc;

	rc = pspace_store_remove(s, name);
	if (rc == PSPACE_ENOTFOUND)
		rc = 0;
	memset(&desc, 0, sizeof(desc));
	desc.kind = (pspace_kind)h->kind;
	desc.d = h->d;
	pspace_codec_opts_default(&desc.codec);
	desc.layout_text = layout;
	if (rc == 0)
		rc = pspace_writer_begin(&w, s, name, &desc);
	for (uint32_t i = 0; rc == 0 && i < h->narrays; i++)
		rc = pspace_writer_put_array(w, a[i].name, (pspace_dtype)a[i].dtype, a[i].ndim,
		                             a[i].shape, a[i].data);
	if (w && rc != 0)
		pspace_writer_abort(w, 1);
	else if (w)
		rc = pspace_writer_finish(w);
	return rc;
}

/* Copies tileless matrix @p name from rank 0's shard to every other (collective). */
static int replicate(pspace_mpi_ctx *c, pspace_store *s, const char *name)
{
	copy_head h;
	copy_src cs = {NULL, 0, NULL, 0};
	char *layout = NULL;
	int rc = 0;

	memset(&h, 0, sizeof(h));
	if (c->rank == 0)
		rc = copy_read(s, name, &h, &layout, &cs);
	rc = pspace_mpi_ctx_agree(c, rc);
	if (rc == 0)
		rc = pspace_mpi_ctx_bcast(c, &h, sizeof(h), 0);
	if (rc == 0 && c->rank != 0) {
		cs.a = calloc(h.narrays + 1, sizeof(*cs.a));
		layout = h.layout_len ? malloc(h.layout_len) : NULL;
		if (!cs.a || (h.layout_len && !layout))
			rc = pspace_errdetail_set(PSPACE_ENOMEM, "out of memory");
		cs.n = cs.a ? h.narrays : 0;
	}
	/* sizes are known everywhere now: a failure here fails all alike */
	rc = pspace_mpi_ctx_agree(c, rc);
	if (rc == 0 && h.layout_len)
		rc = pspace_mpi_ctx_bcast(c, layout, h.layout_len, 0);
	for (uint32_t i = 0; rc == 0 && i < h.narrays; i++) {
		arr *a = &cs.a[i];
		size_t bytes;

		/* the array's header (its data pointer is only meaningful on rank 0) */
		rc = pspace_mpi_ctx_bcast(c, a, offsetof(arr, data), 0);
		bytes = (size_t)a->count * pspace_dtype_size(a->dtype);
		if (rc == 0 && c->rank != 0 && !(a->data = malloc(bytes + 1)))
			rc = pspace_errdetail_set(PSPACE_ENOMEM, "out of memory");
		rc = pspace_mpi_ctx_agree(c, rc);
		if (rc == 0)
			rc = pspace_mpi_ctx_bcast(c, a->data, bytes, 0);
	}
	if (rc == 0 && c->rank != 0)
		rc = copy_write(s, name, &h, layout, cs.a);
	rc = pspace_mpi_ctx_agree(c, rc);
	pspace_reader_close(cs.r);
	arrays_free(cs.a, cs.n);
	free(layout);
	return rc;
}

/* 1 when this rank's shard of @p name is complete and of this many ranks (resume: kept). */
static int shard_complete(pspace_store *s, const char *name, const pspace_mpi_ctx *c)
{
	pspace_matrix_info info;
	pspace_shard_info si;

	if (pspace_matrix_info_get(&info, s, name) != 0 || info.state != PSPACE_STATE_COMPLETE ||
	    pspace_shard_info_get(&si, NULL, 0, s, name) != 0) {
		pspace_errclear();
		return 0;
	}
	return si.nranks == (uint32_t)c->size && si.rank == (uint32_t)c->rank;
}

static int build_mpi(pspace_store *s, const char *name, const pspace_layout *layout,
                     const pspace_jac_source *js, const pspace_layer_source *ls,
                     const pspace_build_opts *o)
{
	pspace_mpi_ctx *c = pspace_mpi_ctx_of(s);
	pspace_build_opts co;
	int rc = 0;

	if (!c)
		return pspace_errdetail_set(PSPACE_EINVAL, "store %s: not opened over MPI",
		                            s ? pspace_store_path(s) : "(null)");
	if (o)
		co = *o;
	else
		pspace_build_opts_default(&co);
	if (co.kind == PSPACE_KIND_MIXED)
		return pspace_errdetail_set(PSPACE_ENOTSUP,
		                            "matrix %s: a Mixed matrix is not built sharded", name);
	/* Its rows are tiles, as large as the examples make them: not copied to
	 * every shard, and not (yet) split over the ranks. */
	if (co.kind == PSPACE_KIND_LOWRANK)
		return pspace_errdetail_set(PSPACE_ENOTSUP,
		                            "matrix %s: a LowRank matrix is not built sharded (build "
		                            "it without mpirun, in a store of its own)",
		                            name);
	if (co.kind == PSPACE_KIND_DENSE || co.kind == PSPACE_KIND_BLOCKDIAG) {
		co.shard_rank = (uint32_t)c->rank;
		co.shard_count = (uint32_t)c->size;
		if (!(co.resume && shard_complete(s, name, c)))
			rc = js ? pspace_build_jacobian(s, name, layout, js, &co)
			        : pspace_build_layers(s, name, layout, ls, &co);
		return pspace_mpi_ctx_agree(c, rc);
	}
	if (c->rank == 0)
		rc = js ? pspace_build_jacobian(s, name, layout, js, &co)
		        : pspace_build_layers(s, name, layout, ls, &co);
	rc = pspace_mpi_ctx_agree(c, rc);
	if (rc == 0)
		rc = replicate(c, s, name);
	return rc;
}

int pspace_build_jacobian_mpi(pspace_store *s, const char *name, const pspace_layout *layout,
                              const pspace_jac_source *src, const pspace_build_opts *o)
{
	if (!src)
		return pspace_errdetail_set(PSPACE_EINVAL, "pspace_build_jacobian_mpi: no source");
	return build_mpi(s, name, layout, src, NULL, o);
}

int pspace_build_layers_mpi(pspace_store *s, const char *name, const pspace_layout *layout,
                            const pspace_layer_source *src, const pspace_build_opts *o)
{
	if (!src)
		return pspace_errdetail_set(PSPACE_EINVAL, "pspace_build_layers_mpi: no source");
	return build_mpi(s, name, layout, NULL, src, o);
}
