/*
 * Helpers of the inspection commands: opening stores, catalog formatting.
 */
#include <string.h>
#include <time.h>

#include "inspect.h"

int insp_open_store(const char *path, int readonly, pspace_store **out)
{
	pspace_store_opts o;
	int rc;

	pspace_store_opts_default(&o);
	o.create = 0;
	o.readonly = readonly;
	rc = pspace_store_open(out, path, &o);
	if (rc)
		return tool_fail(rc, "cannot open store '%s'", path);
	return EXIT_OK;
}

int insp_matrix_info(pspace_store *s, const char *name, pspace_matrix_info *out)
{
	int rc = pspace_matrix_info_get(out, s, name);

	if (rc == PSPACE_ENOTFOUND) {
		fprintf(stderr, "pspace: store %s: no matrix '%s'\n", pspace_store_path(s), name);
		return EXIT_RUNTIME;
	}
	if (rc)
		return tool_fail(rc, "store %s: matrix %s", pspace_store_path(s), name);
	return EXIT_OK;
}

int insp_is_tiled(pspace_kind k)
{
	return k == PSPACE_KIND_DENSE || k == PSPACE_KIND_BLOCKDIAG;
}

const char *insp_time_iso(uint64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || !gmtime_r(&tt, &tm))
		snprintf(buf, cap, "-");
	else
		strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

uint64_t insp_stored_bytes(const pspace_matrix_info *mi)
{
	return mi->tile_bytes + mi->array_bytes;
}

double insp_ratio(const pspace_matrix_info *mi)
{
	return mi->tile_bytes ? (double)mi->logical_bytes / (double)mi->tile_bytes : 0.0;
}

const char *insp_state_name(pspace_state st)
{
	return st == PSPACE_STATE_COMPLETE ? "complete" : "building";
}
