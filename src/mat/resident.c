/*
 * Persisting resident (factored) kinds: a catalog entry without tiles,
 * holding the layout and the factors as small arrays.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/mat_impl.h"

int pspace_resident_save_begin(pspace_mat *m, pspace_kind kind, pspace_store *s, const char *name,
                               pspace_writer **w)
{
	pspace_matrix_desc desc;
	char *text = NULL;
	int rc;

	*w = NULL;
	rc = pspace_layout_text(&text, m->layout);
	if (rc != 0)
		return rc;
	memset(&desc, 0, sizeof(desc));
	desc.kind = kind;
	desc.d = m->d;
	pspace_codec_opts_default(&desc.codec);
	desc.layout_text = text;
	rc = pspace_writer_begin(w, s, name, &desc);
	free(text);
	return rc;
}

int pspace_resident_save_end(pspace_writer *w, int rc)
{
	if (!w)
		return rc;
	if (rc != 0) {
		pspace_writer_abort(w, 1);
		return rc;
	}
	return pspace_writer_finish(w);
}

int pspace_resident_open_begin(pspace_store *s, const pspace_matrix_info *info, pspace_kind kind,
                               pspace_reader **r, pspace_layout **layout)
{
	char *text = NULL;
	int rc;

	*r = NULL;
	*layout = NULL;
	if (info->kind != kind)
		return pspace_err_set(PSPACE_ENOTSUP, "kind %s is not %s",
		                      pspace_kind_name(info->kind), pspace_kind_name(kind));
	rc = pspace_reader_open(r, s, info->name, 0);
	if (rc == 0 && info->layout_id) {
		rc = pspace_store_layout(&text, s, info->layout_id);
		if (rc == 0)
			rc = pspace_layout_parse(layout, text, "stored layout");
		if (rc == PSPACE_EFORMAT)
			rc = PSPACE_ECORRUPT;
	} else if (rc == 0) {
		rc = pspace_layout_flat(layout, info->d);
	}
	if (rc == 0 && pspace_layout_dim(*layout) != info->d)
		rc = pspace_err_set(
		    PSPACE_ECORRUPT, "stored layout has %llu parameters, not d = %llu",
		    (unsigned long long)pspace_layout_dim(*layout), (unsigned long long)info->d);
	free(text);
	if (rc != 0) {
		pspace_layout_free(*layout);
		*layout = NULL;
		pspace_reader_close(*r);
		*r = NULL;
	}
	return rc;
}

int pspace_resident_read(pspace_reader *r, const char *name, uint64_t count, double **out)
{
	pspace_array_info ai;
	double *buf;
	int rc;

	*out = NULL;
	rc = pspace_array_info_get(&ai, r, name);
	if (rc != 0)
		return rc;
	if (ai.count != count)
		return pspace_err_set(PSPACE_ECORRUPT, "array %s has %llu entries, expected %llu",
		                      name, (unsigned long long)ai.count,
		                      (unsigned long long)count);
	buf = malloc(sizeof(double) * (count ? count : 1));
	if (!buf)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory reading array %s", name);
	rc = pspace_reader_array(r, name, PSPACE_F64, buf, count);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}
