/*
 * Shared helpers of the inspection commands (ls, info, stat, verify, rm,
 * compact, export): opening stores, formatting catalog records, and the
 * streaming sources of matrix entries that export uses.
 */
#ifndef PSPACE_TOOLS_INSPECT_H
#define PSPACE_TOOLS_INSPECT_H

#include "cmd.h"
#include "json.h"
#include "opt.h"

typedef struct insp_list insp_list;

/**
 * Opens the existing store at @p path (never creates one); prints the error
 * naming the path. @return EXIT_OK or EXIT_RUNTIME.
 */
int insp_open_store(const char *path, int readonly, pspace_store **out);

/**
 * The start of an inspection command: parses @p argv against @p opts
 * (tool_opt_parse), then opens the existing store at *path, which parsing
 * filled in (read-only unless @p readonly is 0). *s is set only when the
 * command goes on; otherwise it stays NULL and the return value is the
 * command's exit code (EXIT_OK after --help, EXIT_USAGE, EXIT_RUNTIME).
 */
int insp_begin(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv,
               const char *const *path, int readonly, pspace_store **s);

/**
 * As insp_begin(), for the commands that also read a sharded store
 * (STORE/shard-R-of-P, pspace/shard.h): when *path is one, *s stays NULL,
 * *nranks is its P and the return value is EXIT_OK (insp_begin() refuses
 * it with a hint).
 */
int insp_begin_any(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv,
                   const char *const *path, int readonly, pspace_store **s, uint32_t *nranks);

/** The shards of a sharded store, each opened read-only (insp_shard.c). */
typedef struct insp_shards {
	const char *path;
	uint32_t P;
	pspace_store **s; /* P stores */
} insp_shards;

/** Opens every shard of @p path (P of them); prints the error. @return EXIT_OK or EXIT_RUNTIME. */
int insp_shards_open(insp_shards *sh, const char *path, uint32_t P);
void insp_shards_close(insp_shards *sh);

/**
 * The matrices of a sharded store as wholes: tile counts and bytes summed
 * over the shards (a matrix copied to every shard, tileless, counted once),
 * building when it is building or missing in any shard. *bytes (malloc'd,
 * the caller frees it): the stored bytes of matrix i in shard r at
 * [i * P + r]. @return 0 or a library error.
 */
int insp_shards_list(insp_shards *sh, insp_list *whole, uint64_t **bytes);

/**
 * Runs @p cmd on every shard, with STORE (the argument @p path) replaced by
 * the shard's directory, under a header line per shard (with @p json: the
 * outputs as one JSON array). @return the worst exit code.
 */
int insp_each_shard(int (*cmd)(int argc, char **argv), int argc, char **argv, const char *path,
                    uint32_t P, int json);

/**
 * Checks that the shards' manifests agree (ranks, P, ranges, tile rows)
 * and that each complete sharded matrix holds its tiles; prints what it
 * finds. @return EXIT_OK or EXIT_RUNTIME.
 */
int insp_shards_check(insp_shards *sh, int json);

/** The catalog records of a store, in catalog order. */
struct insp_list {
	pspace_matrix_info *v;
	size_t n, cap;
	const char *only; /* NULL, or the one name to collect */
};

/**
 * Collects the records of @p s into @p l (zeroed first but for l->only;
 * the caller frees l->v). @return 0 or a library error.
 */
int insp_list_matrices(pspace_store *s, insp_list *l);

/** Looks up matrix @p name; prints "store S: no matrix 'N'" on failure. */
int insp_matrix_info(pspace_store *s, const char *name, pspace_matrix_info *out);

/** @return 1 for the kinds stored as tiles (Dense, BlockDiag). */
int insp_is_tiled(pspace_kind k);

/** "2024-05-01T12:00:00Z" for unix time @p t ("-" for 0). */
const char *insp_time_iso(uint64_t t, char *buf, size_t cap);

/** Stored bytes of a matrix: its tiles plus its arrays. */
uint64_t insp_stored_bytes(const pspace_matrix_info *mi);
/** Compression ratio logical / encoded tile bytes; 0 when there are no tiles. */
double insp_ratio(const pspace_matrix_info *mi);
/** "complete" or "building". */
const char *insp_state_name(pspace_state st);

/* ---- sources of matrix entries (export) ------------------------------------ */

/**
 * Rows of a matrix, band by band, within a memory budget: stored kinds
 * decode the tiles crossing the band (symmetric halves transposed),
 * resident kinds multiply blocks of unit vectors (pspace_mat_mm).
 */
typedef struct insp_band insp_band;

/**
 * Opens a band source of matrix @p m (opened from @p s under @p name) for
 * columns [c0, c0 + nc). @p mem: bytes the source may use for bands of up
 * to *rows rows; *rows is set to the band height that fits (>= 1), or
 * PSPACE_ENOMEM is returned when not even one row fits.
 */
int insp_band_open(insp_band **out, pspace_store *s, pspace_mat *m, uint64_t c0, uint64_t nc,
                   uint64_t mem, uint64_t *rows);
/** Fills @p out (h x nc, ld nc) with rows [r0, r0 + h) of the source's columns. */
int insp_band_get(insp_band *b, uint64_t r0, uint64_t h, double *out);
/** @return the smallest memory with which a band source of @p m works. */
uint64_t insp_band_min_mem(pspace_store *s, pspace_mat *m, uint64_t nc);
void insp_band_close(insp_band *b);

/**
 * Writes the PNG image of a matrix (README, export): correlation magnitudes
 * |F_ij| / sqrt(F_ii F_jj), block-averaged to at most @p px pixels, viridis,
 * layer boundaries as red lines (unless @p lines is 0). @p layer: NULL or
 * the one layer to draw.
 */
int insp_png_export(pspace_store *s, pspace_mat *m, const char *name, const char *layer,
                    uint32_t px, int lines, uint64_t mem, const char *out);
/** As insp_png_export(), reporting the written image on @p report (NULL: silent). */
int insp_png_write(pspace_store *s, pspace_mat *m, const char *name, const char *layer, uint32_t px,
                   int lines, uint64_t mem, const char *out, FILE *report);

#endif
