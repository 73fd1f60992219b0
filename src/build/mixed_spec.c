/*
 * Mixed builds: the per-layer choice of representation, written as
 *
 *     linear,conv1d,conv2d=ekfac;*=blockdiag
 *
 * clauses separated by ';', each a comma-separated list of selectors, '=',
 * and a kind (dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac). A
 * selector is a layer name, a layer kind or '*'. A layer takes the kind of
 * the clause that names it, else of the clause naming its layer kind, else
 * of '*'; within one precedence the last clause wins. Spaces are ignored.
 *
 * Each layer's part is built over that layer's slice of the gradients,
 * with its own layout (that one layer): Dense/BlockDiag parts are stored
 * matrices "<name>/<layer>"; factored parts are saved with the Mixed (as
 * "<name>/<layer>" too, by pspace_mat_save). KFAC/EKFAC parts need layer
 * tensors (a linear, conv or embedding layer, built from layer tensors);
 * the parts of the other layers of such a build (norm, generic) come from
 * the Jacobian rows the layer-tensor source gives for them. KFAC/EKFAC
 * factors come from one shared pass, each EKFAC part's
 * diagonal update from one more pass. Other parts take one pass each
 * (Dense/BlockDiag parts: one per band). A failed build removes the parts
 * it wrote; Mixed builds do not resume.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"
#include "mat/kron/ekfac_build.h"
#include "pspace/factored.h"

/* Precedence of a match: 3 layer name, 2 layer kind, 1 '*'. */
static int match(const pspace_layer *L, const char *sel)
{
	if (strcmp(sel, L->name) == 0)
		return 3;
	if (strcmp(sel, pspace_layer_kind_name(L->kind)) == 0)
		return 2;
	return strcmp(sel, "*") == 0 ? 1 : 0;
}

static int known_selector(const pspace_layout *l, const char *sel)
{
	size_t i;

	if (strcmp(sel, "*") == 0 || pspace_layout_find(&i, l, sel) == 0)
		return 1;
	for (int k = PSPACE_LAYER_LINEAR; k <= PSPACE_LAYER_GENERIC; k++)
		if (strcmp(sel, pspace_layer_kind_name((pspace_layer_kind)k)) == 0)
			return 1;
	return 0;
}

static int part_kind(const char *s, pspace_kind *k)
{
	if (pspace_kind_parse(k, s) != 0)
		return -1;
	switch (*k) {
	case PSPACE_KIND_DENSE:
	case PSPACE_KIND_BLOCKDIAG:
	case PSPACE_KIND_DIAG:
	case PSPACE_KIND_QUASIDIAG:
	case PSPACE_KIND_LOWRANK:
	case PSPACE_KIND_KFAC:
	case PSPACE_KIND_EKFAC: return 0;
	default: return -1;
	}
}

int pspace_mixed_spec_parse(const char *spec, const pspace_layout *layout, pspace_kind *kinds)
{
	size_t nl = pspace_layout_nlayers(layout), len;
	int *prec = calloc(nl ? nl : 1, sizeof(*prec));
	char *text = NULL, *clause, *save = NULL;
	int rc = 0;

	if (!spec)
		spec = "";
	len = strlen(spec);
	text = malloc(len + 1);
	if (!prec || !text) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
		goto out;
	}
	/* without spaces */
	len = 0;
	for (const char *c = spec; *c; c++)
		if (!isspace((unsigned char)*c))
			text[len++] = *c;
	text[len] = 0;
	for (clause = strtok_r(text, ";", &save); rc == 0 && clause;
	     clause = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(clause, '='), *sel, *save2 = NULL;
		pspace_kind k;

		if (!eq || eq == clause || part_kind(eq + 1, &k) != 0) {
			rc = pspace_err_set(PSPACE_EINVAL,
			                    "mixed specification '%s': clause '%s' is not "
			                    "'selectors=kind' with a kind among dense, blockdiag, "
			                    "diag, quasidiag, lowrank, kfac, ekfac",
			                    spec, clause);
			break;
		}
		*eq = 0;
		for (sel = strtok_r(clause, ",", &save2); rc == 0 && sel;
		     sel = strtok_r(NULL, ",", &save2)) {
			if (!known_selector(layout, sel)) {
				rc = pspace_err_set(PSPACE_EINVAL,
				                    "mixed specification '%s': '%s' is neither a "
				                    "layer, a layer kind nor '*'",
				                    spec, sel);
				break;
			}
			for (size_t i = 0; i < nl; i++) {
				int p = match(pspace_layout_layer(layout, i), sel);

				if (p && p >= prec[i]) {
					prec[i] = p;
					kinds[i] = k;
				}
			}
		}
	}
	for (size_t i = 0; rc == 0 && i < nl; i++)
		if (!prec[i])
			rc = pspace_err_set(PSPACE_EINVAL,
			                    "mixed specification '%s' gives layer %s no kind (add "
			                    "'*=kind')",
			                    spec, pspace_layout_layer(layout, i)->name);
out:
	free(text);
	free(prec);
	return rc;
}

/* ---- the build ---------------------------------------------------------------------- */

typedef struct mixed_build {
	size_t nl;
	pspace_kind *kinds;
	pspace_layout **subs;
	pspace_mat **parts;
	char **names;          /* "<name>/<layer>" */
	unsigned char *stored; /* stored parts this build began */
	unsigned char *want;   /* KFAC factors needed */
	double **A, **G;
} mixed_build;

static void mb_free(mixed_build *b)
{
	for (size_t i = 0; i < b->nl; i++) {
		if (b->subs)
			pspace_layout_free(b->subs[i]);
		if (b->parts)
			pspace_mat_free(b->parts[i]);
		if (b->names)
			free(b->names[i]);
		if (b->A)
			free(b->A[i]);
		if (b->G)
			free(b->G[i]);
	}
	free(b->kinds);
	free(b->subs);
	free(b->parts);
	free(b->names);
	free(b->stored);
	free(b->want);
	free(b->A);
	free(b->G);
}

static int mb_alloc(mixed_build *b, const pspace_layout *layout, const char *name)
{
	size_t n = pspace_layout_nlayers(layout), c = n ? n : 1;

	b->nl = n;
	b->kinds = calloc(c, sizeof(*b->kinds));
	b->subs = calloc(c, sizeof(*b->subs));
	b->parts = calloc(c, sizeof(*b->parts));
	b->names = calloc(c, sizeof(*b->names));
	b->stored = calloc(c, 1);
	b->want = calloc(c, 1);
	b->A = calloc(c, sizeof(*b->A));
	b->G = calloc(c, sizeof(*b->G));
	if (!b->kinds || !b->subs || !b->parts || !b->names || !b->stored || !b->want || !b->A ||
	    !b->G)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = pspace_layout_sub(&b->subs[i], layout, i);

		if (rc != 0)
			return rc;
		if (asprintf(&b->names[i], "%s/%s", name, pspace_layout_layer(layout, i)->name) <
		    0) {
			b->names[i] = NULL;
			return pspace_err_set(PSPACE_ENOMEM, "out of memory");
		}
	}
	return 0;
}

/* Builds layer @p i's part. */
static int build_part(mixed_build *b, size_t i, pspace_store *s, const pspace_layout *layout,
                      pspace_rows *rows, const pspace_layer_source *layers,
                      const pspace_build_opts *o)
{
	const pspace_layer *L = pspace_layout_layer(layout, i);
	pspace_build_target t = {s, b->names[i], b->subs[i], L->offset};
	pspace_build_opts po = *o;
	pspace_matrix_info info;
	pspace_mat *k = NULL;
	int rc;

	/* LowRank with more rows than parameters stays resident (saved with the Mixed) */
	if (b->kinds[i] == PSPACE_KIND_LOWRANK &&
	    (uint64_t)rows->K * rows->n > pspace_layout_dim(b->subs[i]))
		return pspace_build_factored(&t, b->kinds[i], rows, o, &b->parts[i]);
	switch (b->kinds[i]) {
	case PSPACE_KIND_DENSE:
	case PSPACE_KIND_BLOCKDIAG:
	case PSPACE_KIND_LOWRANK:
		po.resume = 0;
		if (pspace_matrix_info_get(&info, s, b->names[i]) == 0)
			return pspace_err_set(PSPACE_EEXIST, "matrix %s already exists",
			                      b->names[i]);
		b->stored[i] = 1;
		if (b->kinds[i] == PSPACE_KIND_LOWRANK)
			rc = pspace_build_lowrank(&t, rows, &po);
		else
			rc = pspace_build_tiled(&t, b->kinds[i], rows, &po);
		if (rc == 0)
			rc = pspace_mat_open(&b->parts[i], s, b->names[i]);
		return rc;
	case PSPACE_KIND_KFAC:
	case PSPACE_KIND_EKFAC:
		rc = pspace_kfac_adopt(&k, b->subs[i], &b->A[i], &b->G[i]);
		if (rc == 0 && b->kinds[i] == PSPACE_KIND_EKFAC)
			rc = pspace_ekfac_from_kfac_ex(&b->parts[i], k, &o->exec);
		if (rc == 0 && b->kinds[i] == PSPACE_KIND_EKFAC)
			rc =
			    pspace_build_ekfac_update_layers(&t, b->parts[i], layout, i, layers, o);
		if (rc == 0 && b->kinds[i] == PSPACE_KIND_KFAC)
			b->parts[i] = pspace_mat_ref(k);
		pspace_mat_free(k);
		return rc;
	default: return pspace_build_factored(&t, b->kinds[i], rows, o, &b->parts[i]);
	}
}

int pspace_build_mixed(pspace_store *s, const char *name, const pspace_layout *layout,
                       pspace_rows *rows, const pspace_layer_source *layers,
                       const pspace_build_opts *o)
{
	mixed_build b;
	pspace_mat *m = NULL;
	int any = 0, rc;

	memset(&b, 0, sizeof(b));
	rc = mb_alloc(&b, layout, name);
	if (rc == 0)
		rc = pspace_mixed_spec_parse(o->mixed, layout, b.kinds);
	for (size_t i = 0; rc == 0 && i < b.nl; i++) {
		b.want[i] = b.kinds[i] == PSPACE_KIND_KFAC || b.kinds[i] == PSPACE_KIND_EKFAC;
		any |= b.want[i];
		if (b.want[i] && !layers)
			rc = pspace_err_set(PSPACE_ENOTSUP,
			                    "layer %s: a %s part needs layer tensors, not Jacobian "
			                    "rows",
			                    pspace_layout_layer(layout, i)->name,
			                    pspace_kind_name(b.kinds[i]));
		else if (b.want[i] && !pspace_layer_has_tensors(pspace_layout_layer(layout, i)))
			rc = pspace_err_set(
			    PSPACE_ENOTSUP,
			    "layer %s: a %s layer has no layer tensors, so its part cannot be %s "
			    "(KFAC and EKFAC are for linear, conv and embedding layers); give it "
			    "dense, blockdiag, diag, quasidiag or lowrank",
			    pspace_layout_layer(layout, i)->name,
			    pspace_layer_kind_name(pspace_layout_layer(layout, i)->kind),
			    pspace_kind_name(b.kinds[i]));
	}
	if (rc == 0 && any)
		rc = pspace_build_kfac_factors(layout, layers, b.want, o, b.A, b.G);
	for (size_t i = 0; rc == 0 && i < b.nl; i++)
		rc = pspace_err_prefix(build_part(&b, i, s, layout, rows, layers, o), "layer %s",
		                       pspace_layout_layer(layout, i)->name);
	if (rc == 0)
		rc = pspace_mixed_create(&m, layout, b.parts);
	if (rc == 0)
		rc = pspace_mat_save(m, s, name);
	rc = pspace_err_prefix(rc, "mixed matrix %s", name);
	pspace_mat_free(m);
	if (rc != 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", pspace_errdetail());
		for (size_t i = 0; i < b.nl; i++) {
			pspace_mat_free(b.parts[i]);
			b.parts[i] = NULL;
			if (b.stored[i])
				pspace_store_remove(s, b.names[i]);
		}
		pspace_err_set(rc, "%s", msg);
	}
	mb_free(&b);
	return rc;
}
