/*
 * Helpers of the inspection commands: opening stores, catalog formatting.
 */
#include <stdlib.h>
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

int insp_begin_any(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv,
                   const char *const *path, int readonly, pspace_store **s, uint32_t *nranks)
{
	uint32_t present;
	int ret = tool_opt_parse(doc, opts, argc, argv, NULL), rc;

	*s = NULL;
	*nranks = 0;
	if (ret)
		return ret == TOOL_HELP ? EXIT_OK : ret;
	rc = pspace_shard_scan(nranks, &present, *path);
	if (rc)
		return tool_fail(rc, "store %s", *path);
	if (*nranks)
		return EXIT_OK;
	return insp_open_store(*path, readonly, s);
}

int insp_begin(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv,
               const char *const *path, int readonly, pspace_store **s)
{
	uint32_t P = 0;
	int ret = insp_begin_any(doc, opts, argc, argv, path, readonly, s, &P);

	if (ret == EXIT_OK && P) {
		fprintf(stderr,
		        "pspace: %s: store %s is sharded over %u ranks: give one shard "
		        "(%s/shard-R-of-%u)\n",
		        doc->name, *path, P, *path, P);
		return EXIT_RUNTIME;
	}
	return ret;
}

static int list_add(const pspace_matrix_info *info, void *ud)
{
	insp_list *l = ud;

	if (l->only && strcmp(l->only, info->name) != 0)
		return 0;
	if (tool_grow(&l->v, &l->cap, l->n, sizeof(*l->v)) != 0)
		return PSPACE_ENOMEM;
	l->v[l->n++] = *info;
	return 0;
}

int insp_list_matrices(pspace_store *s, insp_list *l)
{
	l->v = NULL;
	l->n = l->cap = 0;
	return pspace_store_foreach(s, list_add, l);
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
	return k == PSPACE_KIND_DENSE || k == PSPACE_KIND_BLOCKDIAG || k == PSPACE_KIND_CHOLESKY;
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
