/*
 * pspace stat: tile and byte counts and compression ratios per matrix and in
 * total, and the LMDB page statistics of the store.
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc stat_doc = {
    "stat",
    "Per matrix (all, or NAME only) and in total: tiles, raw (uncompressed)\n"
    "tiles, encoded tile bytes, logical bytes (elements at stored precision),\n"
    "compression ratio (logical / encoded), array bytes. Then the store file:\n"
    "file and map size, bytes in use, page size, B-tree depth, branch, leaf\n"
    "and overflow pages, entries, reader slots.\n",
    NULL, 0};

static void totals(const insp_list *l, pspace_matrix_info *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "total");
	for (size_t i = 0; i < l->n; i++) {
		t->tiles += l->v[i].tiles;
		t->raw_tiles += l->v[i].raw_tiles;
		t->tile_bytes += l->v[i].tile_bytes;
		t->logical_bytes += l->v[i].logical_bytes;
		t->array_bytes += l->v[i].array_bytes;
	}
}

static void json_counts(json_writer *w, const pspace_matrix_info *mi)
{
	json_kv_uint(w, "tiles", mi->tiles);
	json_kv_uint(w, "raw_tiles", mi->raw_tiles);
	json_kv_uint(w, "tile_bytes", mi->tile_bytes);
	json_kv_uint(w, "logical_bytes", mi->logical_bytes);
	json_key(w, "ratio");
	if (mi->tile_bytes)
		json_number(w, insp_ratio(mi));
	else
		json_null(w);
	json_kv_uint(w, "array_bytes", mi->array_bytes);
}

static void stat_json(pspace_store *s, const insp_list *l, const pspace_matrix_info *tot,
                      const pspace_store_stat *st)
{
	json_writer w;

	json_init(&w, stdout, 1);
	json_begin_object(&w);
	json_kv_string(&w, "store", pspace_store_path(s));
	json_key(&w, "matrices");
	json_begin_array(&w);
	for (size_t i = 0; i < l->n; i++) {
		json_begin_object(&w);
		json_kv_string(&w, "name", l->v[i].name);
		json_kv_string(&w, "kind", pspace_kind_name(l->v[i].kind));
		json_kv_string(&w, "state", insp_state_name(l->v[i].state));
		json_counts(&w, &l->v[i]);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "total");
	json_begin_object(&w);
	json_kv_uint(&w, "matrices", l->n);
	json_counts(&w, tot);
	json_end_object(&w);
	json_key(&w, "lmdb");
	json_begin_object(&w);
	json_kv_uint(&w, "format_version", st->format_version);
	json_kv_uint(&w, "file_bytes", st->file_bytes);
	json_kv_uint(&w, "map_bytes", st->map_bytes);
	json_kv_uint(&w, "used_bytes", st->used_bytes);
	json_kv_uint(&w, "page_size", st->page_size);
	json_kv_uint(&w, "tree_depth", st->tree_depth);
	json_kv_uint(&w, "branch_pages", st->tile_branch_pages);
	json_kv_uint(&w, "leaf_pages", st->tile_leaf_pages);
	json_kv_uint(&w, "overflow_pages", st->tile_overflow_pages);
	json_kv_uint(&w, "entries", st->tile_entries);
	json_kv_uint(&w, "readers_used", st->readers_used);
	json_kv_uint(&w, "readers_max", st->readers_max);
	json_kv_uint(&w, "matrices", st->matrices);
	json_end_object(&w);
	json_end_object(&w);
	json_finish(&w);
}

static void row(int wn, const pspace_matrix_info *mi, const char *kind)
{
	char b1[32], b2[32], b3[32], r[32];

	if (mi->tile_bytes)
		snprintf(r, sizeof(r), "%.2f", insp_ratio(mi));
	else
		snprintf(r, sizeof(r), "-");
	printf("%-*s  %-9s  %8llu  %6llu  %11s  %11s  %6s  %11s\n", wn, mi->name, kind,
	       (unsigned long long)mi->tiles, (unsigned long long)mi->raw_tiles,
	       tool_fmt_bytes(mi->tile_bytes, b1, sizeof(b1)),
	       tool_fmt_bytes(mi->logical_bytes, b2, sizeof(b2)), r,
	       tool_fmt_bytes(mi->array_bytes, b3, sizeof(b3)));
}

static void stat_text(pspace_store *s, const insp_list *l, const pspace_matrix_info *tot,
                      const pspace_store_stat *st)
{
	char b1[32], b2[32], b3[32];
	int wn = 5;

	for (size_t i = 0; i < l->n; i++) {
		int n = (int)strlen(l->v[i].name);
		wn = n > wn ? n : wn;
	}
	printf("%-*s  %-9s  %8s  %6s  %11s  %11s  %6s  %11s\n", wn, "NAME", "KIND", "TILES", "RAW",
	       "BYTES", "LOGICAL", "RATIO", "ARRAYS");
	for (size_t i = 0; i < l->n; i++)
		row(wn, &l->v[i], pspace_kind_name(l->v[i].kind));
	if (!l->only)
		row(wn, tot, "");
	printf("\nstore %s (format %u)\n", pspace_store_path(s), st->format_version);
	printf("  file %s, map %s, in use %s, page size %u\n",
	       tool_fmt_bytes(st->file_bytes, b1, sizeof(b1)),
	       tool_fmt_bytes(st->map_bytes, b2, sizeof(b2)),
	       tool_fmt_bytes(st->used_bytes, b3, sizeof(b3)), st->page_size);
	printf("  tiles tree: depth %u, %llu branch + %llu leaf + %llu overflow pages, %llu "
	       "entries\n",
	       st->tree_depth, (unsigned long long)st->tile_branch_pages,
	       (unsigned long long)st->tile_leaf_pages, (unsigned long long)st->tile_overflow_pages,
	       (unsigned long long)st->tile_entries);
	printf("  readers %u of %u, %llu matrices\n", st->readers_used, st->readers_max,
	       (unsigned long long)st->matrices);
}

int cmd_stat(int argc, char **argv)
{
	const char *path = NULL;
	pspace_store *s = NULL;
	insp_list l = {NULL, 0, 0, NULL};
	pspace_matrix_info tot, one;
	pspace_store_stat st;
	uint32_t P = 0;
	int json = 0, ret, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &l.only, 0),
	    TOOL_JSON(&json, "the same as one JSON object"),
	    TOOL_END,
	};

	ret = insp_begin_any(&stat_doc, opts, argc, argv, &path, 1, &s, &P);
	if (P && ret == EXIT_OK) {
		insp_shards sh;

		ret = insp_shards_open(&sh, path, P);
		insp_shards_close(&sh);
		return ret ? ret : insp_each_shard(cmd_stat, argc, argv, path, P, json);
	}
	if (!s)
		return ret;
	if (l.only) {
		ret = insp_matrix_info(s, l.only, &one);
		if (ret)
			goto out;
	}
	rc = insp_list_matrices(s, &l);
	if (rc == 0)
		rc = pspace_store_stat_get(&st, s);
	if (rc) {
		ret = tool_fail(rc, "store %s: statistics", path);
		goto out;
	}
	totals(&l, &tot);
	if (json)
		stat_json(s, &l, &tot, &st);
	else
		stat_text(s, &l, &tot, &st);
out:
	free(l.v);
	pspace_store_close(s);
	return ret;
}
