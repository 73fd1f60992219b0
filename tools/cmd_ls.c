/*
 * pspace ls: the matrices of a store, one a line (or as JSON).
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc ls_doc = {
    "ls",
    "Lists the matrices of STORE: name, kind, dimension d, stored precision,\n"
    "stored bytes (tiles and arrays), compression ratio of the tiles\n"
    "(logical / encoded bytes; '-' for resident kinds, which store f64 arrays)\n"
    "and build state (complete, or building: an interrupted or running build).\n",
    NULL, 0};

static const char *precision(const pspace_matrix_info *mi)
{
	return mi->nblocks ? pspace_dtype_name(mi->codec.dtype) : "f64";
}

/* @p bytes (sharded stores, else NULL): matrix i's stored bytes in shard r at [i * P + r]. */
static void ls_json(const insp_list *l, const uint64_t *bytes, uint32_t P)
{
	json_writer w;

	json_init(&w, stdout, 1);
	json_begin_array(&w);
	for (size_t i = 0; i < l->n; i++) {
		const pspace_matrix_info *mi = &l->v[i];

		json_begin_object(&w);
		json_kv_string(&w, "name", mi->name);
		json_kv_string(&w, "kind", pspace_kind_name(mi->kind));
		json_kv_uint(&w, "d", mi->d);
		json_kv_string(&w, "precision", precision(mi));
		json_kv_uint(&w, "stored_bytes", insp_stored_bytes(mi));
		json_key(&w, "ratio");
		if (mi->tile_bytes)
			json_number(&w, insp_ratio(mi));
		else
			json_null(&w);
		json_kv_string(&w, "state", insp_state_name(mi->state));
		if (bytes) {
			json_key(&w, "shard_bytes");
			json_begin_array(&w);
			for (uint32_t r = 0; r < P; r++)
				json_uint(&w, bytes[i * P + r]);
			json_end_array(&w);
		}
		json_end_object(&w);
	}
	json_end_array(&w);
	json_finish(&w);
}

static void ls_text(const insp_list *l, const uint64_t *bytes, uint32_t P)
{
	int wn = 4;
	char b[32], r[32];

	for (size_t i = 0; i < l->n; i++) {
		int n = (int)strlen(l->v[i].name);
		wn = n > wn ? n : wn;
	}
	printf("%-*s  %-9s  %10s  %-4s  %10s  %6s  %s\n", wn, "NAME", "KIND", "D", "PREC", "STORED",
	       "RATIO", "STATE");
	for (size_t i = 0; i < l->n; i++) {
		const pspace_matrix_info *mi = &l->v[i];

		if (mi->tile_bytes)
			snprintf(r, sizeof(r), "%.2f", insp_ratio(mi));
		else
			snprintf(r, sizeof(r), "-");
		printf("%-*s  %-9s  %10llu  %-4s  %10s  %6s  %s\n", wn, mi->name,
		       pspace_kind_name(mi->kind), (unsigned long long)mi->d, precision(mi),
		       tool_fmt_bytes(insp_stored_bytes(mi), b, sizeof(b)), r,
		       insp_state_name(mi->state));
	}
	if (!bytes)
		return;
	printf("\nsharded over %u ranks; stored bytes per shard (0 .. %u):\n", P, P - 1);
	for (size_t i = 0; i < l->n; i++) {
		printf("%-*s ", wn, l->v[i].name);
		for (uint32_t k = 0; k < P; k++)
			printf(" %s", tool_fmt_bytes(bytes[i * P + k], b, sizeof(b)));
		putchar('\n');
	}
}

int cmd_ls(int argc, char **argv)
{
	const char *path = NULL;
	pspace_store *s = NULL;
	insp_list l = {NULL, 0, 0, NULL};
	insp_shards sh = {NULL, 0, NULL};
	uint64_t *bytes = NULL;
	uint32_t P = 0;
	int json = 0, ret, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_JSON(&json, "the same as a JSON array of objects"),
	    TOOL_END,
	};

	ret = insp_begin_any(&ls_doc, opts, argc, argv, &path, 1, &s, &P);
	if (P && ret == EXIT_OK) {
		ret = insp_shards_open(&sh, path, P);
		rc = ret ? 0 : insp_shards_list(&sh, &l, &bytes);
		if (rc)
			ret = tool_fail(rc, "store %s: listing matrices", path);
		goto print;
	}
	if (!s)
		return ret;
	rc = insp_list_matrices(s, &l);
	if (rc) {
		ret = tool_fail(rc, "store %s: listing matrices", path);
		goto out;
	}
print:
	if (ret == EXIT_OK && json)
		ls_json(&l, bytes, P);
	else if (ret == EXIT_OK)
		ls_text(&l, bytes, P);
out:
	free(bytes);
	free(l.v);
	insp_shards_close(&sh);
	pspace_store_close(s);
	return ret;
}
