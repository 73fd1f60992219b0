/*
 * pspace verify: decodes every tile and reads every array of one matrix or
 * all, checking every checksum; reports each bad tile or array.
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc verify_doc = {
    "verify",
    "Walks every LMDB page of the store (meta pages, B-trees, overflow pages,\n"
    "free list) without trusting LMDB, then decodes every tile and reads every\n"
    "array of matrix NAME (default: all matrices), verifying their CRC-32C\n"
    "checksums and headers, and that each matrix holds the tiles its catalog\n"
    "record counts (tile count and digest). Each bad tile or array is\n"
    "reported with the store, matrix and tile (block,row,col).\n"
    "Matrices whose build never finished are checked too and reported as\n"
    "incomplete (not an error of the data).\n",
    "Exit status: 0 if all is well, 1 if anything is corrupt, 2 usage error.\n", 0};

typedef struct vfy {
	pspace_store *s;
	pspace_codec *codec;
	json_writer w;
	int json;
	tool_progress prog;
	uint64_t progress_done;
	float *scratch;
	size_t scratch_cap; /* floats */
	/* totals */
	uint64_t tiles, arrays, bad, incomplete, matrices;
	/* per matrix */
	uint64_t m_tiles, m_arrays, m_bad;
	pspace_page_check pages;
	char **names;
	size_t nnames, cap;
} vfy;

static int grow(vfy *v, size_t floats)
{
	if (floats <= v->scratch_cap)
		return 0;
	free(v->scratch);
	v->scratch = malloc(floats * sizeof(float));
	v->scratch_cap = v->scratch ? floats : 0;
	return v->scratch ? 0 : PSPACE_ENOMEM;
}

/* One bad item: text line or JSON object in the matrix's "bad" array. */
static void report_bad(vfy *v, const char *matrix, const char *what, const pspace_tile_ref *t,
                       const char *array, int rc)
{
	const char *detail = pspace_errdetail();

	v->m_bad++;
	v->bad++;
	if (v->json) {
		json_begin_object(&v->w);
		json_kv_string(&v->w, "what", what);
		if (t) {
			json_kv_uint(&v->w, "block", t->block);
			json_kv_uint(&v->w, "row", t->row);
			json_kv_uint(&v->w, "col", t->col);
		}
		if (array)
			json_kv_string(&v->w, "array", array);
		json_kv_string(&v->w, "error", pspace_strerror(rc));
		json_kv_string(&v->w, "detail", detail);
		json_end_object(&v->w);
		return;
	}
	if (t)
		printf("BAD  store %s: matrix %s: tile (%u,%u,%u): %s: %s\n",
		       pspace_store_path(v->s), matrix, t->block, t->row, t->col,
		       pspace_strerror(rc), detail);
	else if (array)
		printf("BAD  store %s: matrix %s: array %s: %s: %s\n", pspace_store_path(v->s),
		       matrix, array, pspace_strerror(rc), detail);
	else
		printf("BAD  store %s: matrix %s: %s: %s: %s\n", pspace_store_path(v->s), matrix,
		       what, pspace_strerror(rc), detail);
}

static int add_name(const char *name, const pspace_array_info *ai, void *ud)
{
	vfy *v = ud;
	(void)ai;

	if (tool_grow(&v->names, &v->cap, v->nnames, sizeof(*v->names)) != 0)
		return PSPACE_ENOMEM;
	v->names[v->nnames] = strdup(name);
	if (!v->names[v->nnames])
		return PSPACE_ENOMEM;
	v->nnames++;
	return 0;
}

static void free_names(vfy *v)
{
	for (size_t i = 0; i < v->nnames; i++)
		free(v->names[i]);
	v->nnames = 0;
}

static void check_tiles(vfy *v, pspace_reader *r, const pspace_matrix_info *mi)
{
	pspace_tile_ref t;
	pspace_tile_header h;
	int done = 0, rc;

	if (grow(v, (size_t)mi->tile * mi->tile) != 0) {
		report_bad(v, mi->name, "scratch", NULL, NULL, PSPACE_ENOMEM);
		return;
	}
	for (;;) {
		rc = pspace_reader_next(&t, &done, r);
		if (rc) {
			report_bad(v, mi->name, "tile walk", NULL, NULL, rc);
			return;
		}
		if (done)
			return;
		v->m_tiles++;
		v->tiles++;
		tool_progress_update(&v->prog, ++v->progress_done);
		rc = pspace_tile_parse(&h, t.data, t.len);
		if (rc == 0 && (h.rows > mi->tile || h.cols > mi->tile))
			rc = PSPACE_ECORRUPT;
		if (rc == 0)
			rc = pspace_reader_decode(r, v->codec, &t, PSPACE_F32, v->scratch, h.cols);
		if (rc)
			report_bad(v, mi->name, "tile", &t, NULL, rc);
	}
}

static void check_arrays(vfy *v, pspace_reader *r, const pspace_matrix_info *mi)
{
	pspace_array_info ai;
	int rc = pspace_reader_foreach_array(r, add_name, v);

	if (rc) {
		report_bad(v, mi->name, "array list", NULL, NULL, rc);
		goto out;
	}
	for (size_t i = 0; i < v->nnames; i++) {
		pspace_dtype want;

		v->m_arrays++;
		v->arrays++;
		rc = pspace_array_info_get(&ai, r, v->names[i]);
		want = ai.dtype == PSPACE_I64 ? PSPACE_I64 : PSPACE_F64;
		if (rc == 0)
			rc = grow(v, 2 * (size_t)(ai.count ? ai.count : 1));
		if (rc == 0)
			rc = pspace_reader_array(r, v->names[i], want, v->scratch, ai.count);
		if (rc)
			report_bad(v, mi->name, "array", NULL, v->names[i], rc);
	}
out:
	free_names(v);
}

static int check_matrix(const pspace_matrix_info *mi, void *ud)
{
	vfy *v = ud;
	pspace_reader *r = NULL;
	int incomplete = mi->state != PSPACE_STATE_COMPLETE;
	int rc;

	v->m_tiles = v->m_arrays = v->m_bad = 0;
	v->matrices++;
	v->incomplete += incomplete;
	if (v->json) {
		json_begin_object(&v->w);
		json_kv_string(&v->w, "name", mi->name);
		json_kv_string(&v->w, "kind", pspace_kind_name(mi->kind));
		json_key(&v->w, "bad");
		json_begin_array(&v->w);
	}
	rc = pspace_reader_open(&r, v->s, mi->name, PSPACE_READ_INCOMPLETE);
	if (rc) {
		report_bad(v, mi->name, "open", NULL, NULL, rc);
	} else {
		check_tiles(v, r, mi);
		check_arrays(v, r, mi);
	}
	pspace_reader_close(r);
	if (v->json) {
		json_end_array(&v->w);
		json_kv_uint(&v->w, "tiles_checked", v->m_tiles);
		json_kv_uint(&v->w, "arrays_checked", v->m_arrays);
		json_kv_bool(&v->w, "incomplete", incomplete);
		json_kv_string(&v->w, "status",
		               v->m_bad     ? "corrupt"
		               : incomplete ? "incomplete"
		                            : "ok");
		json_end_object(&v->w);
	} else {
		printf("%-8s %s: %llu tiles, %llu arrays%s\n",
		       v->m_bad     ? "CORRUPT"
		       : incomplete ? "INCOMPL"
		                    : "ok",
		       mi->name, (unsigned long long)v->m_tiles, (unsigned long long)v->m_arrays,
		       incomplete ? " (incomplete: its build never finished)" : "");
	}
	return 0;
}

static int sum_tiles(const pspace_matrix_info *mi, void *ud)
{
	*(uint64_t *)ud += mi->tiles;
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	const char *path = NULL, *only = NULL;
	pspace_matrix_info mi;
	uint64_t total = 0;
	uint32_t P = 0;
	vfy v;
	int ret, rc = 0;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &only, 0),
	    TOOL_JSON(&v.json, "the report as one JSON object"),
	    TOOL_END,
	};

	memset(&v, 0, sizeof(v));
	ret = insp_begin_any(&verify_doc, opts, argc, argv, &path, 1, &v.s, &P);
	if (P && ret == EXIT_OK) {
		/* every shard as a store of its own, then their manifests together */
		insp_shards sh;

		ret = insp_shards_open(&sh, path, P);
		insp_shards_close(&sh);
		if (ret == EXIT_OK)
			ret = insp_each_shard(cmd_verify, argc, argv, path, P, v.json);
		if (ret == EXIT_OK || ret == EXIT_RUNTIME) {
			int mret = insp_shards_open(&sh, path, P);

			if (mret == EXIT_OK)
				mret = insp_shards_check(&sh, v.json);
			insp_shards_close(&sh);
			ret = mret > ret ? mret : ret;
		}
		return ret;
	}
	if (!v.s)
		return ret;
	if (only) {
		ret = insp_matrix_info(v.s, only, &mi);
		if (ret)
			goto out;
		total = mi.tiles;
	} else {
		rc = pspace_store_foreach(v.s, sum_tiles, &total);
	}
	if (rc == 0)
		rc = pspace_codec_create(&v.codec);
	if (rc) {
		ret = tool_fail(rc, "store %s", path);
		goto out;
	}
	rc = pspace_store_check_pages(&v.pages, v.s);
	if (rc) {
		ret = tool_fail(rc,
		                "store %s: LMDB pages (matrices not checked: LMDB cannot read "
		                "damaged pages safely)",
		                path);
		goto out;
	}
	if (v.json) {
		json_init(&v.w, stdout, 1);
		json_begin_object(&v.w);
		json_kv_string(&v.w, "store", path);
		json_key(&v.w, "matrices");
		json_begin_array(&v.w);
	}
	tool_progress_start(&v.prog, "verify", total);
	if (only)
		rc = check_matrix(&mi, &v);
	else
		rc = pspace_store_foreach(v.s, check_matrix, &v);
	tool_progress_end(&v.prog);
	if (rc && !v.json) {
		ret = tool_fail(rc, "store %s: listing matrices", path);
		goto out;
	}
	if (v.json) {
		json_end_array(&v.w);
		json_kv_uint(&v.w, "matrices_checked", v.matrices);
		json_kv_uint(&v.w, "tiles_checked", v.tiles);
		json_kv_uint(&v.w, "arrays_checked", v.arrays);
		json_kv_uint(&v.w, "bad", v.bad);
		json_kv_uint(&v.w, "incomplete", v.incomplete);
		json_kv_uint(&v.w, "pages_checked", v.pages.pages);
		json_kv_bool(&v.w, "ok", v.bad == 0 && rc == 0);
		json_end_object(&v.w);
		json_finish(&v.w);
	} else {
		printf("LMDB pages: %llu checked (%llu in trees, %llu free)\n",
		       (unsigned long long)v.pages.pages, (unsigned long long)v.pages.reachable,
		       (unsigned long long)v.pages.free);
		printf("%llu matrices, %llu tiles, %llu arrays checked: %llu bad, %llu "
		       "incomplete\n",
		       (unsigned long long)v.matrices, (unsigned long long)v.tiles,
		       (unsigned long long)v.arrays, (unsigned long long)v.bad,
		       (unsigned long long)v.incomplete);
	}
	if (rc)
		ret = tool_fail(rc, "store %s: listing matrices", path);
	else if (v.bad) {
		fprintf(stderr, "pspace: store %s: %llu corrupt tile(s)/array(s) found\n", path,
		        (unsigned long long)v.bad);
		ret = EXIT_RUNTIME;
	}
out:
	free(v.names);
	free(v.scratch);
	pspace_codec_free(v.codec);
	pspace_store_close(v.s);
	return ret;
}
