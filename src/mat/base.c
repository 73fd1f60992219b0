/*
 * The base every representation builds on: allocation, reference counting
 * and properties. Every kind's file calls into this one; it calls none of
 * them (only through a kind's table).
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"

void pspace_write_opts_default(pspace_write_opts *o)
{
	memset(o, 0, sizeof(*o));
	pspace_codec_opts_default(&o->codec);
	o->tile = 0;
}

/* ---- base, references ----------------------------------------------------- */

/* Initializes the base of @p m: refs = 1, a copy of @p layout (flat when NULL), the name. */
static int base_init(pspace_mat *m, const pspace_mat_vtable *vt, uint64_t d,
                     const pspace_layout *layout, pspace_store *s, const char *name)
{
	int rc;

	m->vt = vt;
	m->refs = 1;
	m->d = d;
	m->store = s;
	m->layout = NULL;
	m->name = NULL;
	if (layout) {
		if (pspace_layout_dim(layout) != d)
			return pspace_err_set(
			    PSPACE_EDIM, "layout has %llu parameters, matrix d = %llu",
			    (unsigned long long)pspace_layout_dim(layout), (unsigned long long)d);
		rc = pspace_layout_copy(&m->layout, layout);
		if (rc != 0)
			return rc;
	} else {
		rc = pspace_layout_flat(&m->layout, d);
		if (rc != 0)
			return rc;
	}
	if (name) {
		m->name = strdup(name);
		if (!m->name) {
			pspace_layout_free(m->layout);
			m->layout = NULL;
			return pspace_err_set(PSPACE_ENOMEM, "out of memory");
		}
	}
	return 0;
}

int pspace_mat_alloc(pspace_mat **out, size_t size, const pspace_mat_vtable *vt, uint64_t d,
                     const pspace_layout *layout, pspace_store *s, const char *name)
{
	pspace_mat *m = calloc(1, size);
	int rc;

	*out = NULL;
	if (!m)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for a %s matrix",
		                      pspace_kind_name(vt->kind));
	rc = base_init(m, vt, d, layout, s, name);
	if (rc != 0) {
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

pspace_mat *pspace_mat_ref(pspace_mat *m)
{
	if (m)
		m->refs++;
	return m;
}

void pspace_mat_free(pspace_mat *m)
{
	if (!m || --m->refs > 0)
		return;
	if (m->vt && m->vt->destroy)
		m->vt->destroy(m);
	pspace_layout_free(m->layout);
	free(m->name);
	free(m);
}

pspace_kind pspace_mat_kind(const pspace_mat *m)
{
	return m->vt->kind;
}

uint64_t pspace_mat_dim(const pspace_mat *m)
{
	return m->d;
}

const pspace_layout *pspace_mat_layout(const pspace_mat *m)
{
	return m->layout;
}

const char *pspace_mat_name(const pspace_mat *m)
{
	return m->name;
}

int pspace_mat_always_diagonal(const pspace_mat *m)
{
	(void)m;
	return 1;
}

int pspace_mat_is_diagonal(const pspace_mat *m)
{
	return m && m->vt->is_diagonal ? m->vt->is_diagonal(m) : 0;
}

const struct pspace_tiled *pspace_mat_tiled(const pspace_mat *m)
{
	return m && m->vt->tiled ? m->vt->tiled(m) : NULL;
}
