/*
 * pspace info: everything the catalog knows about one matrix, its layout,
 * its arrays and per-block tile statistics.
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc info_doc = {
    "info",
    "Shows matrix NAME of STORE: catalog record (id, kind, state, d, blocks,\n"
    "tile edge, codec, created/completed times in UTC), tile statistics\n"
    "(tiles, raw tiles, encoded and logical bytes, ratio), the stored arrays\n"
    "(name, dtype, shape), the layout per layer (kind, weight shape, bias,\n"
    "offset, size), per-block statistics of tiled kinds (Dense, BlockDiag:\n"
    "dimension, tiles, bytes, read from the tile headers) and for EKFAC\n"
    "whether its diagonal was updated.\n",
    NULL, 0};

typedef struct info_array {
	char name[PSPACE_NAME_MAX + 1];
	pspace_array_info ai;
} info_array;

typedef struct info_block {
	uint64_t dim, tiles, raw, bytes, logical;
} info_block;

/* One shard's part of a sharded matrix. */
typedef struct info_shard {
	pspace_matrix_info mi;
	pspace_shard_info si;
	int present, manifest;
} info_shard;

typedef struct info_data {
	const char *path;   /* the store as given */
	info_shard *shards; /* a sharded store: P of them, else NULL */
	uint32_t P;
	pspace_matrix_info mi;
	info_array *arrays;
	size_t narrays, cap;
	info_block *blocks;
	pspace_layout *layout;
	int updated; /* EKFAC: 1/0; -1 unknown or other kinds */
} info_data;

static int collect_array(const char *name, const pspace_array_info *ai, void *ud)
{
	info_data *d = ud;

	if (tool_grow(&d->arrays, &d->cap, d->narrays, sizeof(*d->arrays)) != 0)
		return PSPACE_ENOMEM;
	snprintf(d->arrays[d->narrays].name, sizeof(d->arrays[0].name), "%s", name);
	d->arrays[d->narrays++].ai = *ai;
	return 0;
}

/* Per-block statistics from the tile headers (no decoding). */
static int walk_blocks(pspace_reader *r, info_data *d)
{
	pspace_tile_ref t;
	pspace_tile_header h;
	int done = 0, rc;

	d->blocks = calloc(d->mi.nblocks ? d->mi.nblocks : 1, sizeof(*d->blocks));
	if (!d->blocks)
		return PSPACE_ENOMEM;
	for (uint32_t b = 0; b < d->mi.nblocks; b++)
		d->blocks[b].dim = pspace_reader_block_dim(r, b);
	for (;;) {
		rc = pspace_reader_next(&t, &done, r);
		if (rc || done)
			return rc;
		if (t.block >= d->mi.nblocks)
			continue;
		rc = pspace_tile_parse(&h, t.data, t.len);
		if (rc)
			return rc;
		d->blocks[t.block].tiles++;
		d->blocks[t.block].raw += h.codec == PSPACE_CODEC_RAW;
		d->blocks[t.block].bytes += t.len;
		d->blocks[t.block].logical +=
		    (uint64_t)h.rows * h.cols * pspace_dtype_size(h.dtype);
	}
}

static int gather(pspace_store *s, const char *name, info_data *d)
{
	pspace_reader *r = NULL;
	char *text = NULL;
	char src[PSPACE_NAME_MAX + 64];
	int rc;

	rc = pspace_reader_open(&r, s, name, PSPACE_READ_INCOMPLETE);
	if (rc == 0)
		rc = pspace_reader_foreach_array(r, collect_array, d);
	if (rc == 0 && d->mi.nblocks)
		rc = walk_blocks(r, d);
	if (rc == 0 && d->mi.layout_id) {
		rc = pspace_store_layout(&text, s, d->mi.layout_id);
		snprintf(src, sizeof(src), "layout of %s", name);
		if (rc == 0)
			rc = pspace_layout_parse(&d->layout, text, src);
	}
	d->updated = -1;
	if (rc == 0 && d->mi.kind == PSPACE_KIND_EKFAC && d->mi.state == PSPACE_STATE_COMPLETE) {
		pspace_mat *m = NULL;

		rc = pspace_mat_open(&m, s, name);
		if (rc == 0) {
			d->updated = pspace_ekfac_is_updated(m);
			if (d->updated < 0)
				rc = d->updated;
		}
		pspace_mat_free(m);
	}
	free(text);
	pspace_reader_close(r);
	return rc;
}

static void shape_str(int ndim, const uint64_t *shape, char *buf, size_t cap, const char *sep)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < ndim && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? sep : "",
		                      (unsigned long long)shape[i]);
	if (ndim == 0)
		snprintf(buf, cap, "scalar");
}

static void json_shape(json_writer *w, const char *key, int ndim, const uint64_t *shape)
{
	json_key(w, key);
	json_begin_array(w);
	for (int i = 0; i < ndim; i++)
		json_uint(w, shape[i]);
	json_end_array(w);
}

static void info_json(pspace_store *s, const info_data *d)
{
	const pspace_matrix_info *mi = &d->mi;
	json_writer w;
	char t[40];

	json_init(&w, stdout, 1);
	json_begin_object(&w);
	(void)s;
	json_kv_string(&w, "store", d->path);
	json_kv_string(&w, "name", mi->name);
	json_kv_uint(&w, "id", mi->id);
	json_kv_string(&w, "kind", pspace_kind_name(mi->kind));
	json_kv_string(&w, "state", insp_state_name(mi->state));
	json_kv_uint(&w, "d", mi->d);
	json_kv_uint(&w, "nblocks", mi->nblocks);
	json_kv_uint(&w, "tile", mi->tile);
	json_kv_bool(&w, "symmetric", mi->symmetric);
	json_key(&w, "codec");
	json_begin_object(&w);
	json_kv_string(&w, "dtype", pspace_dtype_name(mi->codec.dtype));
	json_kv_int(&w, "level", mi->codec.level);
	json_kv_bool(&w, "shuffle", mi->codec.shuffle);
	json_kv_number(&w, "min_ratio", mi->codec.min_ratio);
	json_end_object(&w);
	json_kv_string(&w, "created", insp_time_iso(mi->created, t, sizeof(t)));
	json_key(&w, "completed");
	json_string(&w, mi->completed ? insp_time_iso(mi->completed, t, sizeof(t)) : NULL);
	json_kv_uint(&w, "tiles", mi->tiles);
	json_kv_uint(&w, "raw_tiles", mi->raw_tiles);
	json_kv_uint(&w, "tile_bytes", mi->tile_bytes);
	json_kv_uint(&w, "logical_bytes", mi->logical_bytes);
	json_key(&w, "ratio");
	if (mi->tile_bytes)
		json_number(&w, insp_ratio(mi));
	else
		json_null(&w);
	json_kv_uint(&w, "array_bytes", mi->array_bytes);
	json_key(&w, "arrays");
	json_begin_array(&w);
	for (size_t i = 0; i < d->narrays; i++) {
		json_begin_object(&w);
		json_kv_string(&w, "name", d->arrays[i].name);
		json_kv_string(&w, "dtype", pspace_dtype_name(d->arrays[i].ai.dtype));
		json_shape(&w, "shape", d->arrays[i].ai.ndim, d->arrays[i].ai.shape);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "layout");
	if (d->layout) {
		json_begin_array(&w);
		for (size_t i = 0; i < pspace_layout_nlayers(d->layout); i++) {
			const pspace_layer *L = pspace_layout_layer(d->layout, i);

			json_begin_object(&w);
			json_kv_string(&w, "name", L->name);
			json_kv_string(&w, "kind", pspace_layer_kind_name(L->kind));
			json_shape(&w, "shape", L->ndim, L->shape);
			json_kv_bool(&w, "bias", L->bias);
			json_kv_uint(&w, "offset", L->offset);
			json_kv_uint(&w, "size", L->size);
			json_end_object(&w);
		}
		json_end_array(&w);
	} else {
		json_null(&w);
	}
	if (d->blocks) {
		json_key(&w, "blocks");
		json_begin_array(&w);
		for (uint32_t b = 0; b < mi->nblocks; b++) {
			const info_block *B = &d->blocks[b];

			json_begin_object(&w);
			json_kv_uint(&w, "block", b);
			json_kv_uint(&w, "dim", B->dim);
			json_kv_uint(&w, "tiles", B->tiles);
			json_kv_uint(&w, "raw_tiles", B->raw);
			json_kv_uint(&w, "bytes", B->bytes);
			json_kv_uint(&w, "logical_bytes", B->logical);
			json_end_object(&w);
		}
		json_end_array(&w);
	}
	if (d->updated >= 0)
		json_kv_bool(&w, "ekfac_updated", d->updated);
	if (d->shards) {
		json_key(&w, "shards");
		json_begin_array(&w);
		for (uint32_t r = 0; r < d->P; r++) {
			const info_shard *S = &d->shards[r];

			json_begin_object(&w);
			json_kv_uint(&w, "rank", r);
			json_kv_string(&w, "state",
			               S->present ? insp_state_name(S->mi.state) : "missing");
			if (S->manifest) {
				json_kv_uint(&w, "tile_row_first", S->si.first);
				json_kv_uint(&w, "tile_row_end", S->si.end);
			}
			json_kv_uint(&w, "tiles", S->mi.tiles);
			json_kv_uint(&w, "stored_bytes", insp_stored_bytes(&S->mi));
			json_end_object(&w);
		}
		json_end_array(&w);
	}
	json_end_object(&w);
	json_finish(&w);
}

static void info_text(pspace_store *s, const info_data *d)
{
	const pspace_matrix_info *mi = &d->mi;
	char t[40], b1[32], b2[32], sh[96];

	printf("matrix     %s\n", mi->name);
	(void)s;
	printf("store      %s\n", d->path);
	printf("id         %llu\n", (unsigned long long)mi->id);
	printf("kind       %s\n", pspace_kind_name(mi->kind));
	printf("state      %s\n", insp_state_name(mi->state));
	printf("d          %llu\n", (unsigned long long)mi->d);
	if (mi->nblocks) {
		printf("blocks     %u\n", mi->nblocks);
		printf("tile       %u x %u%s\n", mi->tile, mi->tile,
		       mi->symmetric ? ", symmetric (upper tiles stored)" : "");
		printf("codec      %s, zstd level %d, %s, min ratio %.3g\n",
		       pspace_dtype_name(mi->codec.dtype), mi->codec.level,
		       mi->codec.shuffle ? "byte shuffle" : "no shuffle", mi->codec.min_ratio);
	}
	printf("created    %s\n", insp_time_iso(mi->created, t, sizeof(t)));
	printf("completed  %s\n", insp_time_iso(mi->completed, t, sizeof(t)));
	if (mi->nblocks) {
		printf("tiles      %llu (%llu raw)\n", (unsigned long long)mi->tiles,
		       (unsigned long long)mi->raw_tiles);
		printf("bytes      %s encoded, %s logical, ratio %.2f\n",
		       tool_fmt_bytes(mi->tile_bytes, b1, sizeof(b1)),
		       tool_fmt_bytes(mi->logical_bytes, b2, sizeof(b2)), insp_ratio(mi));
	}
	if (d->updated >= 0)
		printf("diagonal   %s\n",
		       d->updated ? "updated (update_diag ran)" : "not updated (equals KFAC)");
	printf("arrays     %zu (%s)\n", d->narrays,
	       tool_fmt_bytes(mi->array_bytes, b1, sizeof(b1)));
	for (size_t i = 0; i < d->narrays; i++) {
		shape_str(d->arrays[i].ai.ndim, d->arrays[i].ai.shape, sh, sizeof(sh), " x ");
		printf("  %-24s %-4s %s\n", d->arrays[i].name,
		       pspace_dtype_name(d->arrays[i].ai.dtype), sh);
	}
	if (d->layout) {
		printf("layout     %zu layers\n", pspace_layout_nlayers(d->layout));
		printf("  %-16s %-9s %-16s %-6s %10s %10s\n", "LAYER", "KIND", "SHAPE", "BIAS",
		       "OFFSET", "SIZE");
		for (size_t i = 0; i < pspace_layout_nlayers(d->layout); i++) {
			const pspace_layer *L = pspace_layout_layer(d->layout, i);

			shape_str(L->ndim, L->shape, sh, sizeof(sh), "x");
			printf("  %-16s %-9s %-16s %-6s %10llu %10llu\n", L->name,
			       pspace_layer_kind_name(L->kind), sh, L->bias ? "bias" : "nobias",
			       (unsigned long long)L->offset, (unsigned long long)L->size);
		}
	} else {
		printf("layout     none\n");
	}
	if (d->blocks) {
		printf("per block  (from the tile headers)\n");
		printf("  %-6s %10s %8s %6s %12s %12s %6s\n", "BLOCK", "DIM", "TILES", "RAW",
		       "BYTES", "LOGICAL", "RATIO");
		for (uint32_t b = 0; b < mi->nblocks; b++) {
			const info_block *B = &d->blocks[b];

			printf("  %-6u %10llu %8llu %6llu %12s %12s %6.2f\n", b,
			       (unsigned long long)B->dim, (unsigned long long)B->tiles,
			       (unsigned long long)B->raw, tool_fmt_bytes(B->bytes, b1, sizeof(b1)),
			       tool_fmt_bytes(B->logical, b2, sizeof(b2)),
			       B->bytes ? (double)B->logical / (double)B->bytes : 0.0);
		}
	}
	if (!d->shards)
		return;
	printf("shards     %u (tile rows [first, end) of each rank)\n", d->P);
	printf("  %-6s %-9s %10s %10s %8s %12s\n", "RANK", "STATE", "FIRST", "END", "TILES",
	       "BYTES");
	for (uint32_t r = 0; r < d->P; r++) {
		const info_shard *S = &d->shards[r];

		if (S->manifest)
			printf("  %-6u %-9s %10llu %10llu", r, insp_state_name(S->mi.state),
			       (unsigned long long)S->si.first, (unsigned long long)S->si.end);
		else
			printf("  %-6u %-9s %10s %10s", r,
			       S->present ? insp_state_name(S->mi.state) : "missing", "-", "-");
		printf(" %8llu %12s\n", (unsigned long long)S->mi.tiles,
		       tool_fmt_bytes(insp_stored_bytes(&S->mi), b1, sizeof(b1)));
	}
}

/* Adds shard @p s's per-block statistics of @p name to d->blocks. */
static int add_blocks(pspace_store *s, const char *name, const pspace_matrix_info *mi, info_data *d)
{
	info_data t;
	pspace_reader *r = NULL;
	int rc;

	memset(&t, 0, sizeof(t));
	t.mi = *mi;
	rc = pspace_reader_open(&r, s, name, PSPACE_READ_INCOMPLETE);
	if (rc == 0)
		rc = walk_blocks(r, &t);
	for (uint32_t b = 0; rc == 0 && b < mi->nblocks && b < d->mi.nblocks; b++) {
		d->blocks[b].tiles += t.blocks[b].tiles;
		d->blocks[b].raw += t.blocks[b].raw;
		d->blocks[b].bytes += t.blocks[b].bytes;
		d->blocks[b].logical += t.blocks[b].logical;
	}
	free(t.blocks);
	pspace_reader_close(r);
	return rc;
}

/*
 * A sharded store: the matrix as a whole (its record merged over the
 * shards, the blocks' statistics summed), then each shard's part.
 */
static int info_sharded(const char *path, const char *name, int json, uint32_t P)
{
	insp_shards sh;
	insp_list l = {NULL, 0, 0, name};
	uint64_t *bytes = NULL;
	uint32_t first = P;
	info_data d;
	int ret, rc = 0;

	memset(&d, 0, sizeof(d));
	d.path = path;
	d.P = P;
	ret = insp_shards_open(&sh, path, P);
	if (ret == EXIT_OK && !(d.shards = calloc(P, sizeof(*d.shards))))
		rc = PSPACE_ENOMEM;
	for (uint32_t r = 0; ret == EXIT_OK && rc == 0 && r < P; r++) {
		info_shard *S = &d.shards[r];
		int lrc = pspace_matrix_info_get(&S->mi, sh.s[r], name);

		S->present = lrc == 0;
		first = S->present && first == P ? r : first;
		if (S->present && pspace_shard_info_get(&S->si, NULL, 0, sh.s[r], name) == 0)
			S->manifest = 1;
		pspace_errclear();
	}
	if (ret == EXIT_OK && rc == 0 && first == P) {
		fprintf(stderr, "pspace: store %s: no matrix '%s'\n", path, name);
		ret = EXIT_RUNTIME;
	}
	if (ret == EXIT_OK && rc == 0) {
		d.mi = d.shards[first].mi;
		rc = gather(sh.s[first], name, &d);
	}
	for (uint32_t r = first + 1; ret == EXIT_OK && rc == 0 && r < P; r++)
		if (d.shards[r].present && d.blocks)
			rc = add_blocks(sh.s[r], name, &d.shards[r].mi, &d);
	if (ret == EXIT_OK && rc == 0)
		rc = insp_shards_list(&sh, &l, &bytes);
	if (ret == EXIT_OK && rc == 0 && l.n == 1)
		d.mi = l.v[0];
	if (rc)
		ret = tool_fail(rc, "store %s: matrix %s", path, name);
	else if (ret == EXIT_OK && json)
		info_json(NULL, &d);
	else if (ret == EXIT_OK)
		info_text(NULL, &d);
	free(bytes);
	free(l.v);
	pspace_layout_free(d.layout);
	free(d.blocks);
	free(d.arrays);
	free(d.shards);
	insp_shards_close(&sh);
	return ret;
}

int cmd_info(int argc, char **argv)
{
	const char *path = NULL, *name = NULL;
	pspace_store *s = NULL;
	info_data d;
	uint32_t P = 0;
	int json = 0, ret, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &name, TOOL_OPT_REQUIRED),
	    TOOL_JSON(&json, "the same as one JSON object"),
	    TOOL_END,
	};

	memset(&d, 0, sizeof(d));
	ret = insp_begin_any(&info_doc, opts, argc, argv, &path, 1, &s, &P);
	if (P && ret == EXIT_OK)
		return info_sharded(path, name, json, P);
	if (!s)
		return ret;
	d.path = path;
	ret = insp_matrix_info(s, name, &d.mi);
	if (ret)
		goto out;
	rc = gather(s, name, &d);
	if (rc) {
		ret = tool_fail(rc, "store %s: matrix %s", path, name);
		goto out;
	}
	if (json)
		info_json(s, &d);
	else
		info_text(s, &d);
out:
	pspace_layout_free(d.layout);
	free(d.blocks);
	free(d.arrays);
	pspace_store_close(s);
	return ret;
}
