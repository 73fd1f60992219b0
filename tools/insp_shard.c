/*
 * The inspection commands on a sharded store (STORE/shard-R-of-P): opening
 * every shard, the matrices as wholes, running a command shard by shard,
 * and checking that the shards' manifests agree (inspect.h).
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

int insp_shards_open(insp_shards *sh, const char *path, uint32_t P)
{
	uint32_t found = 0, present = 0;
	char dir[4096];
	int rc;

	memset(sh, 0, sizeof(*sh));
	sh->path = path;
	rc = pspace_shard_scan(&found, &present, path);
	if (rc == 0 && present != P)
		rc =
		    pspace_errdetail_set(PSPACE_ECORRUPT,
		                         "it holds %u of its %u shards (on a cluster, inspect each "
		                         "node's shards by their directories)",
		                         present, P);
	if (rc)
		return tool_fail(rc, "store %s", path);
	sh->s = calloc(P, sizeof(*sh->s));
	if (!sh->s)
		return tool_fail(PSPACE_ENOMEM, "store %s", path);
	sh->P = P;
	for (uint32_t r = 0; r < P; r++) {
		rc = pspace_shard_path(dir, sizeof(dir), path, r, P);
		if (rc)
			return tool_fail(rc, "store %s", path);
		if (insp_open_store(dir, 1, &sh->s[r]) != EXIT_OK)
			return EXIT_RUNTIME;
	}
	return EXIT_OK;
}

void insp_shards_close(insp_shards *sh)
{
	for (uint32_t r = sh->P; sh->s && r-- > 0;)
		pspace_store_close(sh->s[r]);
	free(sh->s);
	memset(sh, 0, sizeof(*sh));
}

/* Adds shard @p r's record @p mi of a matrix to its whole @p w. */
static void merge(pspace_matrix_info *w, const pspace_matrix_info *mi)
{
	if (mi->state != PSPACE_STATE_COMPLETE)
		w->state = mi->state;
	w->completed = mi->completed > w->completed ? mi->completed : w->completed;
	if (mi->nblocks == 0)
		return; /* a copy in every shard: counted once */
	w->tiles += mi->tiles;
	w->raw_tiles += mi->raw_tiles;
	w->tile_bytes += mi->tile_bytes;
	w->logical_bytes += mi->logical_bytes;
	w->arrays += mi->arrays;
	w->array_bytes += mi->array_bytes;
}

int insp_shards_list(insp_shards *sh, insp_list *whole, uint64_t **bytes)
{
	insp_list *l;
	uint64_t *b = NULL;
	size_t n = 0;
	int rc = 0;

	*bytes = NULL;
	whole->v = NULL;
	whole->n = whole->cap = 0;
	l = calloc(sh->P, sizeof(*l));
	if (!l)
		return PSPACE_ENOMEM;
	for (uint32_t r = 0; rc == 0 && r < sh->P; r++) {
		l[r].only = whole->only;
		rc = insp_list_matrices(sh->s[r], &l[r]);
		n += l[r].n;
	}
	/* every name once, in shard order; n bounds their number */
	if (rc == 0 && !(b = calloc(n * sh->P + 1, sizeof(*b))))
		rc = PSPACE_ENOMEM;
	for (uint32_t r = 0; rc == 0 && r < sh->P; r++)
		for (size_t i = 0; rc == 0 && i < l[r].n; i++) {
			const pspace_matrix_info *mi = &l[r].v[i];
			size_t j = 0;

			while (j < whole->n && strcmp(whole->v[j].name, mi->name) != 0)
				j++;
			if (j == whole->n) {
				if (tool_grow(&whole->v, &whole->cap, whole->n,
				              sizeof(*whole->v))) {
					rc = PSPACE_ENOMEM;
					break;
				}
				whole->v[whole->n++] = *mi;
				/* missing in an earlier shard: incomplete */
				if (r > 0)
					whole->v[j].state = PSPACE_STATE_BUILDING;
			} else {
				merge(&whole->v[j], mi);
			}
			b[j * sh->P + r] = insp_stored_bytes(mi);
		}
	/* missing in a later shard: incomplete */
	for (size_t j = 0; rc == 0 && j < whole->n; j++)
		for (uint32_t r = 0; r < sh->P; r++) {
			size_t i = 0;

			while (i < l[r].n && strcmp(l[r].v[i].name, whole->v[j].name) != 0)
				i++;
			if (i == l[r].n)
				whole->v[j].state = PSPACE_STATE_BUILDING;
		}
	for (uint32_t r = 0; r < sh->P; r++)
		free(l[r].v);
	free(l);
	if (rc) {
		free(b);
		free(whole->v);
		whole->v = NULL;
		whole->n = 0;
		return rc;
	}
	*bytes = b;
	return 0;
}

int insp_each_shard(int (*cmd)(int argc, char **argv), int argc, char **argv, const char *path,
                    uint32_t P, int json)
{
	char **av = malloc(((size_t)argc + 1) * sizeof(*av));
	char dir[4096];
	int worst = EXIT_OK, at = -1;

	if (!av)
		return tool_fail(PSPACE_ENOMEM, "store %s", path);
	for (int i = 0; i < argc; i++) {
		av[i] = argv[i];
		if (argv[i] == path)
			at = i;
	}
	av[argc] = NULL;
	if (at < 0) {
		free(av);
		return tool_fail(PSPACE_EINVAL, "store %s", path);
	}
	if (json)
		printf("[");
	for (uint32_t r = 0; r < P; r++) {
		int rc = pspace_shard_path(dir, sizeof(dir), path, r, P);

		if (rc) {
			worst = tool_fail(rc, "store %s", path);
			break;
		}
		av[at] = dir;
		if (json)
			printf(r ? "," : "");
		else
			printf("%sshard %u of %u: %s\n", r ? "\n" : "", r, P, dir);
		fflush(stdout);
		rc = cmd(argc, av);
		fflush(stdout);
		worst = rc > worst ? rc : worst;
	}
	if (json)
		printf("]\n");
	free(av);
	return worst;
}

/* The manifests of matrix @p name in every shard: *bad counts disagreements. */
static int check_one(insp_shards *sh, const char *name, uint64_t *bad, uint64_t *sharded)
{
	pspace_shard_info si, s0;
	pspace_matrix_info mi;
	uint64_t *b0 = NULL, *b = NULL, tiles = 0;
	int complete = 1, have0 = 0, rc = 0;

	memset(&s0, 0, sizeof(s0));
	b0 = calloc((size_t)sh->P + 1, sizeof(*b0));
	b = calloc((size_t)sh->P + 1, sizeof(*b));
	if (!b0 || !b) {
		rc = PSPACE_ENOMEM;
		goto out;
	}
	for (uint32_t r = 0; r < sh->P; r++) {
		const char *what = NULL;
		int lrc = pspace_matrix_info_get(&mi, sh->s[r], name);

		if (lrc == PSPACE_ENOTFOUND) {
			complete = 0;
			continue;
		}
		if (lrc == 0)
			lrc = pspace_shard_info_get(&si, b, (size_t)sh->P + 1, sh->s[r], name);
		if (lrc == PSPACE_ENOTFOUND && mi.nblocks == 0) {
			pspace_errclear();
			continue; /* a tileless kind, copied to every shard */
		}
		if (lrc == PSPACE_ENOTFOUND)
			what = "has no shard manifest";
		else if (lrc)
			what = pspace_errdetail();
		else if (si.nranks != sh->P || si.rank != r)
			what = "names another rank or number of ranks";
		else if (have0 && (si.tile_rows != s0.tile_rows || si.tiles != s0.tiles ||
		                   memcmp(b, b0, ((size_t)sh->P + 1) * sizeof(*b)) != 0))
			what = "disagrees with shard 0's";
		if (what) {
			printf("shard %u: matrix %s: its manifest %s\n", r, name, what);
			++*bad;
			continue;
		}
		if (!have0) {
			s0 = si;
			memcpy(b0, b, ((size_t)sh->P + 1) * sizeof(*b));
			have0 = 1;
		}
		complete &= mi.state == PSPACE_STATE_COMPLETE;
		tiles += mi.tiles;
		++*sharded;
	}
	if (complete && *sharded && tiles != s0.tiles) {
		printf("matrix %s: its shards hold %llu tiles, its manifest says %llu\n", name,
		       (unsigned long long)tiles, (unsigned long long)s0.tiles);
		++*bad;
	}
out:
	free(b);
	free(b0);
	return rc;
}

int insp_shards_check(insp_shards *sh, int json)
{
	insp_list whole = {NULL, 0, 0, NULL};
	uint64_t *bytes = NULL, bad = 0, sharded = 0;
	int rc;

	rc = insp_shards_list(sh, &whole, &bytes);
	for (size_t i = 0; rc == 0 && i < whole.n; i++) {
		uint64_t one = 0;

		rc = check_one(sh, whole.v[i].name, &bad, &one);
		sharded += one != 0;
	}
	free(bytes);
	free(whole.v);
	if (rc)
		return tool_fail(rc, "store %s: shard manifests", sh->path);
	if (!json)
		printf("\nsharded store %s: %u shards, %llu sharded matrices, %llu manifest "
		       "problem(s)\n",
		       sh->path, sh->P, (unsigned long long)sharded, (unsigned long long)bad);
	if (bad) {
		fprintf(stderr, "pspace: store %s: %llu shard manifest problem(s)\n", sh->path,
		        (unsigned long long)bad);
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}
