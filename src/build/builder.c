/*
 * The builders' entry points: options, the Jacobian row source, and the
 * dispatch of pspace_build_jacobian() / pspace_build_layers() to the
 * builder of each kind (build_dense.c, build_factored.c, build_layers.c,
 * mixed_spec.c).
 */
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "common/exec.h"
#include "mat/kron/ekfac_build.h"
#include "pspace/factored.h"

/* ---- the Jacobian source as rows ------------------------------------------------------ */

static int jac_read(void *ud, uint64_t x0, uint64_t nx, uint64_t c0, uint64_t c1, double *out,
                    size_t ld)
{
	const pspace_jac_source *src = ud;
	int rc = src->read(src->ud, x0, nx, out, ld);

	(void)c0;
	(void)c1;
	/* the .npy source checks its values itself, naming the file */
	if (rc != 0 || pspace_jac_source_is_npy(src))
		return rc;
	for (uint64_t r = 0; r < (uint64_t)src->outputs * nx; r++) {
		size_t bad = pspace_values_bad(out + r * ld, (size_t)src->d);

		if (bad < src->d)
			return pspace_value_err(out[r * ld + bad],
			                        "Jacobian source: output %llu, example %llu, "
			                        "parameter %zu",
			                        (unsigned long long)(r / nx),
			                        (unsigned long long)(x0 + r % nx), bad);
	}
	return 0;
}

/*
 * Arguments of builder @p fn: store, name, a non-empty layout and a source
 * of @p what kind ("Jacobian", "layer-tensor"), @p readable when it has a
 * read function, with examples and outputs.
 */
static int check_args(pspace_store *s, const char *name, const pspace_layout *layout,
                      const char *fn, const char *what, int readable, uint64_t examples,
                      uint64_t outputs)
{
	if (!s || !name || !layout)
		return pspace_err_set(PSPACE_EINVAL, "%s: store, name or layout is NULL", fn);
	if (pspace_layout_dim(layout) == 0)
		return pspace_err_set(PSPACE_EINVAL, "%s: matrix %s: empty layout", fn, name);
	if (!readable)
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: no %s source", name, what);
	if (examples == 0 || outputs == 0)
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: the %s source has no examples",
		                      name, what);
	return 0;
}

/*
 * EEXIST before any work, for the kinds that create @p name. Only Dense
 * and BlockDiag resume, so an interrupted build of another kind must be
 * removed, even with o->resume (the message says so).
 */
static int check_absent(pspace_store *s, const char *name, const pspace_build_opts *o)
{
	pspace_matrix_info info;
	int tiled = o->kind == PSPACE_KIND_DENSE || o->kind == PSPACE_KIND_BLOCKDIAG;

	if (pspace_matrix_info_get(&info, s, name) != 0 || (tiled && o->resume))
		return 0;
	if (info.state != PSPACE_STATE_BUILDING)
		return pspace_err_set(PSPACE_EEXIST, "matrix %s already exists", name);
	if (tiled)
		return pspace_err_set(PSPACE_EEXIST,
		                      "matrix %s already exists (an interrupted build: resume "
		                      "or remove it)",
		                      name);
	return pspace_err_set(PSPACE_EEXIST,
	                      "matrix %s already exists (an interrupted %s build, which "
	                      "cannot resume: remove it and build again)",
	                      name, pspace_kind_name(info.kind));
}

/* Builds one of the kinds every row source can give: Dense, BlockDiag, Diag, QuasiDiag, LowRank. */
static int build_rows(pspace_store *s, const char *name, const pspace_layout *layout,
                      pspace_rows *r, const pspace_build_opts *o)
{
	pspace_build_target t = {s, name, layout, 0};
	pspace_mat *m = NULL;
	int rc;

	switch (o->kind) {
	case PSPACE_KIND_DENSE:
	case PSPACE_KIND_BLOCKDIAG: return pspace_build_tiled(&t, o->kind, r, o);
	case PSPACE_KIND_LOWRANK: return pspace_build_lowrank(&t, r, o);
	case PSPACE_KIND_DIAG:
	case PSPACE_KIND_QUASIDIAG:
		rc = pspace_build_factored(&t, o->kind, r, o, &m);
		if (rc == 0)
			rc = pspace_mat_save(m, s, name);
		pspace_mat_free(m);
		return pspace_err_prefix(rc, "matrix %s", name);
	default:
		return pspace_err_set(PSPACE_EINVAL, "matrix %s: cannot build kind %s", name,
		                      pspace_kind_name(o->kind));
	}
}

/* EKFAC from rows: the diagonal update of the stored EKFAC @p name, which it replaces. */
static int update_ekfac(pspace_store *s, const char *name, const pspace_layout *layout,
                        pspace_rows *r, const pspace_build_opts *o)
{
	pspace_build_target t = {s, name, layout, 0};
	pspace_mat *m = NULL;
	int rc = pspace_mat_open(&m, s, name);

	if (rc != 0) {
		rc = pspace_err_prefix(rc,
		                       "EKFAC update of %s (build the EKFAC from layer "
		                       "tensors first)",
		                       name);
		goto out;
	}
	if (pspace_mat_kind(m) != PSPACE_KIND_EKFAC) {
		rc = pspace_err_set(PSPACE_EINVAL, "EKFAC update: matrix %s is %s, not ekfac", name,
		                    pspace_kind_name(pspace_mat_kind(m)));
		goto out;
	}
	if (!pspace_layout_equal(pspace_mat_layout(m), layout)) {
		rc = pspace_err_set(PSPACE_EDIM,
		                    "EKFAC update: matrix %s has another layout than the "
		                    "gradients",
		                    name);
		goto out;
	}
	rc = pspace_build_ekfac_update(&t, m, r, o);
	if (rc == 0)
		rc = pspace_build_replace(s, name, m);
out:
	pspace_mat_free(m);
	return rc;
}

int pspace_build_jacobian(pspace_store *s, const char *name, const pspace_layout *layout,
                          const pspace_jac_source *src, const pspace_build_opts *opts)
{
	pspace_build_opts o;
	pspace_rows r;
	int rc = check_args(s, name, layout, "pspace_build_jacobian", "Jacobian", src && src->read,
	                    src ? src->examples : 0, src ? src->outputs : 0);

	if (rc != 0)
		return rc;
	if (src->d != pspace_layout_dim(layout))
		return pspace_err_set(PSPACE_EDIM,
		                      "matrix %s: Jacobian rows of %llu parameters for a layout of "
		                      "%llu",
		                      name, (unsigned long long)src->d,
		                      (unsigned long long)pspace_layout_dim(layout));
	pspace_build_opts_resolve(opts, &o);
	memset(&r, 0, sizeof(r));
	r.n = src->examples;
	r.K = src->outputs;
	r.d = src->d;
	r.read = jac_read;
	r.ud = (void *)src;
	if (o.kind == PSPACE_KIND_KFAC)
		return pspace_err_set(
		    PSPACE_ENOTSUP, "matrix %s: KFAC needs layer tensors, not Jacobian rows", name);
	if (o.kind == PSPACE_KIND_EKFAC)
		return update_ekfac(s, name, layout, &r, &o);
	rc = check_absent(s, name, &o);
	if (rc != 0)
		return rc;
	if (o.kind == PSPACE_KIND_MIXED)
		return pspace_build_mixed(s, name, layout, &r, NULL, &o);
	return build_rows(s, name, layout, &r, &o);
}

/*
 * KFAC, or EKFAC (KFAC, its eigenbases, then the diagonal update in a second
 * pass over the layer tensors).
 */
static int build_kfac(pspace_store *s, const char *name, const pspace_layout *layout,
                      const pspace_layer_source *src, const pspace_build_opts *o)
{
	size_t nl = pspace_layout_nlayers(layout);
	double **A = calloc(nl, sizeof(*A)), **G = calloc(nl, sizeof(*G));
	unsigned char *want = malloc(nl);
	pspace_mat *k = NULL, *e = NULL;
	pspace_build_target t = {s, name, layout, 0};
	int rc;

	if (!A || !G || !want) {
		rc = pspace_err_set(PSPACE_ENOMEM, "matrix %s: out of memory", name);
		goto out;
	}
	memset(want, 1, nl);
	rc = pspace_build_kfac_factors(layout, src, want, o, A, G);
	if (rc == 0)
		rc = pspace_kfac_adopt(&k, layout, A, G);
	if (rc == 0 && o->kind == PSPACE_KIND_EKFAC) {
		rc = pspace_ekfac_from_kfac_ex(&e, k, &o->exec);
		if (rc == 0)
			rc = pspace_build_ekfac_update_layers(&t, e, layout, 0, src, o);
		if (rc == 0)
			rc = pspace_mat_save(e, s, name);
	} else if (rc == 0) {
		rc = pspace_mat_save(k, s, name);
	}
	rc = pspace_err_prefix(rc, "matrix %s", name);
out:
	pspace_mat_free(e);
	pspace_mat_free(k);
	for (size_t i = 0; i < nl && A && G; i++) {
		free(A[i]);
		free(G[i]);
	}
	free(want);
	free(G);
	free(A);
	return rc;
}

int pspace_build_layers(pspace_store *s, const char *name, const pspace_layout *layout,
                        const pspace_layer_source *src, const pspace_build_opts *opts)
{
	pspace_build_opts o;
	pspace_rows r;
	int rc = check_args(s, name, layout, "pspace_build_layers", "layer-tensor",
	                    src && src->read, src ? src->examples : 0, src ? src->outputs : 0);

	if (rc != 0)
		return rc;
	pspace_build_opts_resolve(opts, &o);
	rc = check_absent(s, name, &o);
	if (rc != 0)
		return rc;
	rc = pspace_rows_from_layers(&r, layout, src);
	if (rc != 0)
		return pspace_err_prefix(rc, "matrix %s", name);
	if (o.kind == PSPACE_KIND_KFAC || o.kind == PSPACE_KIND_EKFAC)
		rc = build_kfac(s, name, layout, src, &o);
	else if (o.kind == PSPACE_KIND_MIXED)
		rc = pspace_build_mixed(s, name, layout, &r, src, &o);
	else
		rc = build_rows(s, name, layout, &r, &o);
	pspace_rows_from_layers_close(&r);
	return rc;
}
