/*
 * Opening a stored matrix of any kind: the catalog record says the kind,
 * and the table below maps it to that kind's opener. This file sits above
 * every kind (it names them all); no kind calls it, Mixed reaches it for
 * its parts through the function it is handed.
 */
#include "common/error.h"
#include "mat/mat_impl.h"

/* Mixed opens its parts, of any kind, through pspace_mat_open. */
static int open_mixed(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info)
{
	return pspace_mixed_open(out, s, info, pspace_mat_open);
}

/* The one place that maps a stored kind id to code. */
static const struct {
	pspace_kind kind;
	int (*open)(pspace_mat **out, pspace_store *s, const pspace_matrix_info *info);
} openers[] = {
    {PSPACE_KIND_DENSE, pspace_dense_open},
    {PSPACE_KIND_BLOCKDIAG, pspace_blockdiag_open},
    {PSPACE_KIND_IDENTITY, pspace_identity_open},
    {PSPACE_KIND_DIAG, pspace_diag_open},
    {PSPACE_KIND_QUASIDIAG, pspace_quasidiag_open},
    {PSPACE_KIND_LOWRANK, pspace_lowrank_open},
    {PSPACE_KIND_MIXED, open_mixed},
    {PSPACE_KIND_KFAC, pspace_kfac_open},
    {PSPACE_KIND_EKFAC, pspace_ekfac_open},
};

int pspace_mat_open(pspace_mat **out, pspace_store *s, const char *name)
{
	pspace_matrix_info info;
	int rc;

	if (!out)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_open: out is NULL");
	*out = NULL;
	if (!s || !name)
		return pspace_err_set(PSPACE_EINVAL, "pspace_mat_open: store or name is NULL");
	rc = pspace_matrix_info_get(&info, s, name);
	if (rc != 0)
		return rc;
	if (info.state != PSPACE_STATE_COMPLETE)
		return pspace_err_set(
		    PSPACE_EINCOMPLETE,
		    "store %s: matrix %s: build never completed (resume or remove it)",
		    pspace_store_path(s), name);
	for (size_t i = 0; i < sizeof(openers) / sizeof(openers[0]); i++)
		if (openers[i].kind == info.kind)
			return pspace_err_prefix(openers[i].open(out, s, &info),
			                         "store %s: matrix %s", pspace_store_path(s), name);
	return pspace_err_set(
	    PSPACE_ENOTSUP, "store %s: matrix %s: kind %s (%d) not supported by this version",
	    pspace_store_path(s), name, pspace_kind_name(info.kind), (int)info.kind);
}
