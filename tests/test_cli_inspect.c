/*
 * CLI tests of the inspection commands (ls, info, stat, verify, rm,
 * compact): the built tool ($PSPACE_TOOL) runs on a store this test writes
 * with the library (tests/helpers/clistore); JSON is validity-checked,
 * corruption and interrupted builds are made by hand. Data goes to stdout,
 * errors to stderr.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clistore.h"
#include "fixture.h"
#include "pspace.h"

#define OUT_CAP 65536
#define D       CLISTORE_D
#define TILE    CLISTORE_TILE

static char root[64];
static char store[128];
static char out[OUT_CAP], err[OUT_CAP];
static clistore_refs refs;
static uint64_t rng = 0x1234567;

/* Runs the tool (printf-style arguments): stdout into out[], stderr into
 * err[]; @return the exit status. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char args[1536];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return fx_run_tool(out, sizeof(out), err, sizeof(err), "%s", args);
}

static void has_in(const char *what, const char *buf, const char *needle)
{
	if (!strstr(buf, needle))
		fail_msg("missing '%s' in %s:\n%s", needle, what, buf);
}

/* on stdout */
static void has(const char *needle)
{
	has_in("stdout", out, needle);
}

/* on stderr */
static void has_err(const char *needle)
{
	has_in("stderr", err, needle);
}

/* ---- a minimal JSON validity check ------------------------------------------ */

static const char *js_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *js_value(const char *p, int depth);

static const char *js_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
						return NULL;
				p += 4;
			} else if (!*p || !strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *js_number(const char *p)
{
	char *end;

	if (*p != '-' && (*p < '0' || *p > '9'))
		return NULL;
	strtod(p, &end);
	return end > p ? end : NULL;
}

static const char *js_value(const char *p, int depth)
{
	p = js_ws(p);
	if (depth > 64 || !p)
		return NULL;
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		int obj = *p == '{';

		p = js_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (obj) {
				p = js_string(js_ws(p));
				if (!p)
					return NULL;
				p = js_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			p = js_value(p, depth + 1);
			if (!p)
				return NULL;
			p = js_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return js_string(p);
	if (strncmp(p, "true", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	if (strncmp(p, "null", 4) == 0)
		return p + 4;
	return js_number(p);
}

static void assert_json(const char *s)
{
	const char *e = js_value(s, 0);

	if (!e || *js_ws(e) != '\0') {
		fprintf(stderr, "not valid JSON:\n%s\n", s);
		fail();
	}
}

/* ---- the store ------------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	fx_dir_make(root, sizeof(root), "cli-inspect");
	snprintf(store, sizeof(store), "%s/s.store", root);
	return clistore_make(store, &refs);
}

static int teardown(void **state)
{
	(void)state;
	return fx_dir_remove(root);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_cli_inspect_ls(void **state)
{
	(void)state;
	assert_int_equal(run("ls '%s'", store), 0);
	has("NAME");
	has("dense");
	has("blockdiag");
	has("kfac");
	has("ekfac");
	has("complete");
	assert_int_equal(run("ls '%s' --json", store), 0);
	assert_json(out);
	has("\"name\": \"bd\"");
	has("\"kind\": \"blockdiag\"");
	has("\"d\": 24");
	has("\"precision\": \"f32\"");
	has("\"stored_bytes\"");
	has("\"ratio\"");
	has("\"state\": \"complete\"");
	assert_int_equal(run("ls --help"), 0);
	has("usage: pspace ls");
}

static void test_cli_inspect_info(void **state)
{
	(void)state;
	assert_int_equal(run("info '%s' bd", store), 0);
	has("kind       blockdiag");
	has("fc1");
	has("fc2");
	has("BLOCK");
	assert_int_equal(run("info '%s' bd --json", store), 0);
	assert_json(out);
	has("\"kind\": \"blockdiag\"");
	has("\"nblocks\": 2");
	has("\"tile\": 8");
	has("\"dtype\": \"f32\"");
	has("\"created\": \"20");
	has("\"completed\": \"20");
	has("\"layout\": [");
	has("\"name\": \"fc1\"");
	has("\"offset\": 16");
	has("\"blocks\": [");
	/* block 0: 16 = 2 x 2 tiles, 3 stored (symmetric); block 1: one tile */
	has("\"dim\": 16,\n      \"tiles\": 3");
	has("\"dim\": 8,\n      \"tiles\": 1");
	assert_int_equal(run("info '%s' kfac --json", store), 0);
	assert_json(out);
	has("\"name\": \"A.fc1\"");
	has("\"name\": \"G.fc2\"");
	assert_int_equal(run("info '%s' ekfac --json", store), 0);
	assert_json(out);
	has("\"ekfac_updated\": false");
	assert_int_equal(run("info '%s' ekfac", store), 0);
	has("not updated");
}

static void test_cli_inspect_stat(void **state)
{
	(void)state;
	assert_int_equal(run("stat '%s'", store), 0);
	has("total");
	has("page size");
	has("overflow");
	assert_int_equal(run("stat '%s' --json", store), 0);
	assert_json(out);
	has("\"lmdb\"");
	has("\"page_size\"");
	has("\"tree_depth\"");
	has("\"matrices\": 5");
	/* dense: 3 x 3 tile grid, 6 stored */
	assert_int_equal(run("stat '%s' dense --json", store), 0);
	assert_json(out);
	has("\"tiles\": 6");
	assert_int_equal(run("stat '%s' nosuch", store), 1);
	has_err("nosuch");
}

static void test_cli_inspect_verify(void **state)
{
	(void)state;
	assert_int_equal(run("verify '%s'", store), 0);
	has("0 bad");
	assert_int_equal(run("verify '%s' kfac --json", store), 0);
	assert_json(out);
	has("\"ok\": true");
}

static void copy_store(const char *to)
{
	char cmd[1400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, store, to);
	assert_int_equal(system(cmd), 0);
}

static void test_cli_inspect_verify_corrupt(void **state)
{
	char path[400], data[420];
	uint8_t needle[64];
	pspace_store *s;
	pspace_reader *r;
	pspace_tile_ref t;

	(void)state;
	snprintf(path, sizeof(path), "%s/corrupt.store", root);
	copy_store(path);
	assert_int_equal(pspace_store_open(&s, path, NULL), 0);
	assert_int_equal(pspace_reader_open(&r, s, "dense", 0), 0);
	assert_int_equal(pspace_reader_tile(&t, r, 0, 0, 1), 0);
	assert_true(t.len > PSPACE_TILE_HEADER_SIZE + 100);
	memcpy(needle, (const uint8_t *)t.data + PSPACE_TILE_HEADER_SIZE + 20, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(s);

	/* every copy (LMDB may keep a stale one in a free page): each flip hides one */
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	while (fx_flip_in_file(data, needle, sizeof(needle)) > 1)
		;

	assert_int_equal(run("verify '%s'", path), 1);
	has("matrix dense");
	has("(0,0,1)");
	has(path);
	has("CORRUPT");
	has("1 bad");
	has_err("1 corrupt tile(s)/array(s) found");
	assert_int_equal(run("verify '%s' dense --json", path), 1);
	has("\"row\": 0,\n          \"col\": 1");
	has("\"ok\": false");
	/* the other matrices are fine */
	assert_int_equal(run("verify '%s' bd", path), 0);
}

static void test_cli_inspect_verify_incomplete(void **state)
{
	char path[400];
	pspace_store *s;
	pspace_writer *w;
	pspace_matrix_desc desc;
	double tile[TILE * TILE];

	(void)state;
	snprintf(path, sizeof(path), "%s/incomplete.store", root);
	copy_store(path);
	assert_int_equal(pspace_store_open(&s, path, NULL), 0);
	memset(&desc, 0, sizeof(desc));
	desc.kind = PSPACE_KIND_DENSE;
	desc.d = 2 * TILE;
	desc.nblocks = 1;
	desc.tile = TILE;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	for (int i = 0; i < TILE * TILE; i++)
		tile[i] = fx_rng_unif(&rng);
	assert_int_equal(pspace_writer_begin(&w, s, "half", &desc), 0);
	assert_int_equal(pspace_writer_put_tile(w, 0, 0, 0, PSPACE_F64, tile, TILE), 0);
	assert_int_equal(pspace_writer_checkpoint(w), 0);
	pspace_writer_abort(w, 0);
	pspace_store_close(s);

	assert_int_equal(run("ls '%s'", path), 0);
	has("building");
	assert_int_equal(run("verify '%s'", path), 0);
	has("half: 1 tiles");
	has("incomplete");
	has("1 incomplete");
	assert_int_equal(run("verify '%s' half --json", path), 0);
	assert_json(out);
	has("\"status\": \"incomplete\"");
	/* an incomplete matrix is not exported */
	assert_int_equal(run("export '%s' half --npy '%s/half.npy'", path, root), 1);
	has_err("half");
}

static void test_cli_inspect_rm_compact(void **state)
{
	char path[400], comp[400];
	pspace_store *s1, *s2;
	pspace_mat *m1, *m2;
	double x[D], y1[D], y2[D];
	const char *names[] = {"dense", "bd", "kfac", "ekfac"};

	(void)state;
	snprintf(path, sizeof(path), "%s/rm.store", root);
	snprintf(comp, sizeof(comp), "%s/compact.store", root);
	copy_store(path);
	assert_int_equal(run("rm '%s' diag", path), 0);
	has("removed diag");
	assert_int_equal(run("ls '%s'", path), 0);
	assert_null(strstr(out, "\ndiag "));
	has("\nbd ");
	assert_int_equal(run("rm '%s' diag", path), 1);
	has_err("no matrix 'diag'");
	assert_int_equal(run("compact '%s' '%s'", path, comp), 0);
	has(" -> ");
	assert_int_equal(run("verify '%s'", comp), 0);
	has("4 matrices");
	assert_int_equal(run("compact '%s' '%s'", path, comp), 1);
	has_err(comp);

	/* same products from both stores */
	assert_int_equal(pspace_store_open(&s1, path, NULL), 0);
	assert_int_equal(pspace_store_open(&s2, comp, NULL), 0);
	for (int i = 0; i < D; i++)
		x[i] = fx_rng_unif(&rng) - 0.5;
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(pspace_mat_open(&m1, s1, names[i]), 0);
		assert_int_equal(pspace_mat_open(&m2, s2, names[i]), 0);
		assert_int_equal(pspace_mat_mv(m1, NULL, x, y1), 0);
		assert_int_equal(pspace_mat_mv(m2, NULL, x, y2), 0);
		assert_memory_equal(y1, y2, sizeof(y1));
		pspace_mat_free(m1);
		pspace_mat_free(m2);
	}
	pspace_store_close(s1);
	pspace_store_close(s2);
}

static void test_cli_inspect_errors(void **state)
{
	static const char *cmds[] = {"ls", "info", "stat", "verify", "rm", "compact"};

	(void)state;
	/* missing store */
	assert_int_equal(run("ls '%s/nostore'", root), 1);
	has_err("nostore");
	assert_string_equal(out, "");
	assert_int_equal(run("info '%s/nostore' dense", root), 1);
	has_err("nostore");
	/* missing matrix */
	assert_int_equal(run("info '%s' nosuch", store), 1);
	has_err("no matrix 'nosuch'");
	assert_int_equal(run("verify '%s' nosuch", store), 1);
	has_err("nosuch");
	/* bad options and arguments */
	assert_int_equal(run("ls '%s' --frobnicate", store), 2);
	has_err("pspace: ls: unknown option '--frobnicate'");
	has_err("Try 'pspace ls --help'");
	assert_int_equal(run("ls '%s' --json=yes", store), 2);
	has_err("--json takes no value");
	assert_int_equal(run("info '%s'", store), 2);
	has_err("missing NAME");
	assert_int_equal(run("stat '%s' a b", store), 2);
	has_err("unexpected argument 'b'");
	assert_int_equal(run("rm '%s'", store), 2);
	has_err("pspace: rm: missing NAME");
	assert_int_equal(run("compact"), 2);
	has_err("pspace: compact: missing STORE");
	/* help, generated from each command's table, on stdout */
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_int_equal(run("%s --help", cmds[i]), 0);
		has("usage: pspace ");
		has(cmds[i]);
		has("  -h, --help");
		assert_string_equal(err, "");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_inspect_ls),
	    cmocka_unit_test(test_cli_inspect_info),
	    cmocka_unit_test(test_cli_inspect_stat),
	    cmocka_unit_test(test_cli_inspect_verify),
	    cmocka_unit_test(test_cli_inspect_verify_corrupt),
	    cmocka_unit_test(test_cli_inspect_verify_incomplete),
	    cmocka_unit_test(test_cli_inspect_rm_compact),
	    cmocka_unit_test(test_cli_inspect_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
