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

#define D    CLISTORE_D
#define TILE CLISTORE_TILE

static char root[64];
static char store[128];
static clistore_refs refs;
static uint64_t rng = 0x1234567;

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
	assert_int_equal(fx_cli("ls '%s'", store), 0);
	fx_expect_stdout("NAME");
	fx_expect_stdout("dense");
	fx_expect_stdout("blockdiag");
	fx_expect_stdout("kfac");
	fx_expect_stdout("ekfac");
	fx_expect_stdout("complete");
	assert_int_equal(fx_cli("ls '%s' --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"name\": \"bd\"");
	fx_expect_stdout("\"kind\": \"blockdiag\"");
	fx_expect_stdout("\"d\": 24");
	fx_expect_stdout("\"precision\": \"f32\"");
	fx_expect_stdout("\"stored_bytes\"");
	fx_expect_stdout("\"ratio\"");
	fx_expect_stdout("\"state\": \"complete\"");
	assert_int_equal(fx_cli("ls --help"), 0);
	fx_expect_stdout("usage: pspace ls");
}

static void test_cli_inspect_info(void **state)
{
	(void)state;
	assert_int_equal(fx_cli("info '%s' bd", store), 0);
	fx_expect_stdout("kind       blockdiag");
	fx_expect_stdout("fc1");
	fx_expect_stdout("fc2");
	fx_expect_stdout("BLOCK");
	assert_int_equal(fx_cli("info '%s' bd --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"kind\": \"blockdiag\"");
	fx_expect_stdout("\"nblocks\": 2");
	fx_expect_stdout("\"tile\": 8");
	fx_expect_stdout("\"dtype\": \"f32\"");
	fx_expect_stdout("\"created\": \"20");
	fx_expect_stdout("\"completed\": \"20");
	fx_expect_stdout("\"layout\": [");
	fx_expect_stdout("\"name\": \"fc1\"");
	fx_expect_stdout("\"offset\": 16");
	fx_expect_stdout("\"blocks\": [");
	/* block 0: 16 = 2 x 2 tiles, 3 stored (symmetric); block 1: one tile */
	fx_expect_stdout("\"dim\": 16,\n      \"tiles\": 3");
	fx_expect_stdout("\"dim\": 8,\n      \"tiles\": 1");
	assert_int_equal(fx_cli("info '%s' kfac --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"name\": \"A.fc1\"");
	fx_expect_stdout("\"name\": \"G.fc2\"");
	assert_int_equal(fx_cli("info '%s' ekfac --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"ekfac_updated\": false");
	assert_int_equal(fx_cli("info '%s' ekfac", store), 0);
	fx_expect_stdout("not updated");
}

static void test_cli_inspect_stat(void **state)
{
	(void)state;
	assert_int_equal(fx_cli("stat '%s'", store), 0);
	fx_expect_stdout("total");
	fx_expect_stdout("page size");
	fx_expect_stdout("overflow");
	assert_int_equal(fx_cli("stat '%s' --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"lmdb\"");
	fx_expect_stdout("\"page_size\"");
	fx_expect_stdout("\"tree_depth\"");
	fx_expect_stdout("\"matrices\": 5");
	/* dense: 3 x 3 tile grid, 6 stored */
	assert_int_equal(fx_cli("stat '%s' dense --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"tiles\": 6");
	assert_int_equal(fx_cli("stat '%s' nosuch", store), 1);
	fx_expect_stderr("nosuch");
}

static void test_cli_inspect_verify(void **state)
{
	(void)state;
	assert_int_equal(fx_cli("verify '%s'", store), 0);
	fx_expect_stdout("0 bad");
	assert_int_equal(fx_cli("verify '%s' kfac --json", store), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"ok\": true");
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

	assert_int_equal(fx_cli("verify '%s'", path), 1);
	fx_expect_stdout("matrix dense");
	fx_expect_stdout("(0,0,1)");
	fx_expect_stdout(path);
	fx_expect_stdout("CORRUPT");
	fx_expect_stdout("1 bad");
	fx_expect_stderr("1 corrupt tile(s)/array(s) found");
	assert_int_equal(fx_cli("verify '%s' dense --json", path), 1);
	fx_expect_stdout("\"row\": 0,\n          \"col\": 1");
	fx_expect_stdout("\"ok\": false");
	/* the other matrices are fine */
	assert_int_equal(fx_cli("verify '%s' bd", path), 0);
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

	assert_int_equal(fx_cli("ls '%s'", path), 0);
	fx_expect_stdout("building");
	assert_int_equal(fx_cli("verify '%s'", path), 0);
	fx_expect_stdout("half: 1 tiles");
	fx_expect_stdout("incomplete");
	fx_expect_stdout("1 incomplete");
	assert_int_equal(fx_cli("verify '%s' half --json", path), 0);
	assert_json(fx_out);
	fx_expect_stdout("\"status\": \"incomplete\"");
	/* an incomplete matrix is not exported */
	assert_int_equal(fx_cli("export '%s' half --npy '%s/half.npy'", path, root), 1);
	fx_expect_stderr("half");
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
	assert_int_equal(fx_cli("rm '%s' diag", path), 0);
	fx_expect_stdout("removed diag");
	assert_int_equal(fx_cli("ls '%s'", path), 0);
	assert_null(strstr(fx_out, "\ndiag "));
	fx_expect_stdout("\nbd ");
	assert_int_equal(fx_cli("rm '%s' diag", path), 1);
	fx_expect_stderr("no matrix 'diag'");
	assert_int_equal(fx_cli("compact '%s' '%s'", path, comp), 0);
	fx_expect_stdout(" -> ");
	assert_int_equal(fx_cli("verify '%s'", comp), 0);
	fx_expect_stdout("4 matrices");
	assert_int_equal(fx_cli("compact '%s' '%s'", path, comp), 1);
	fx_expect_stderr(comp);

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
	assert_int_equal(fx_cli("ls '%s/nostore'", root), 1);
	fx_expect_stderr("nostore");
	assert_string_equal(fx_out, "");
	assert_int_equal(fx_cli("info '%s/nostore' dense", root), 1);
	fx_expect_stderr("nostore");
	/* missing matrix */
	assert_int_equal(fx_cli("info '%s' nosuch", store), 1);
	fx_expect_stderr("no matrix 'nosuch'");
	assert_int_equal(fx_cli("verify '%s' nosuch", store), 1);
	fx_expect_stderr("nosuch");
	/* bad options and arguments */
	assert_int_equal(fx_cli("ls '%s' --frobnicate", store), 2);
	fx_expect_stderr("pspace: ls: unknown option '--frobnicate'");
	fx_expect_stderr("Try 'pspace ls --help'");
	assert_int_equal(fx_cli("ls '%s' --json=yes", store), 2);
	fx_expect_stderr("--json takes no value");
	assert_int_equal(fx_cli("info '%s'", store), 2);
	fx_expect_stderr("missing NAME");
	assert_int_equal(fx_cli("stat '%s' a b", store), 2);
	fx_expect_stderr("unexpected argument 'b'");
	assert_int_equal(fx_cli("rm '%s'", store), 2);
	fx_expect_stderr("pspace: rm: missing NAME");
	assert_int_equal(fx_cli("compact"), 2);
	fx_expect_stderr("pspace: compact: missing STORE");
	/* help, generated from each command's table, on stdout */
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_int_equal(fx_cli("%s --help", cmds[i]), 0);
		fx_expect_stdout("usage: pspace ");
		fx_expect_stdout(cmds[i]);
		fx_expect_stdout("  -h, --help");
		assert_string_equal(fx_err, "");
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
