/*
 * Tests of src/layout/layout.c: the layout text format (README, Layout files), its errors
 * (each naming the file and the exact line), the canonical text, lookups by
 * name and by parameter index, and loading from a file. Expected offsets and
 * sizes are worked out by hand in the tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace.h"

static const char spec_example[] = "# name  kind    weight-shape  bias\n"
                                   "fc1     linear  256x784       bias\n"
                                   "conv1   conv2d  16x3x5x5      bias\n"
                                   "emb     embedding 50304x512   nobias\n"
                                   "fc2     linear  10x256        nobias\n";

static pspace_layout *parse_ok(const char *text)
{
	pspace_layout *l = NULL;
	int rc = pspace_layout_parse(&l, text, "layout.txt");

	if (rc != 0)
		fail_msg("parse failed: %s", pspace_errdetail());
	assert_non_null(l);
	return l;
}

static void check_layer(const pspace_layer *ly, const char *name, pspace_layer_kind kind, int ndim,
                        const uint64_t *shape, int bias, uint64_t offset, uint64_t weight_size,
                        uint64_t bias_size)
{
	assert_non_null(ly);
	assert_string_equal(ly->name, name);
	assert_int_equal(ly->kind, kind);
	assert_int_equal(ly->ndim, ndim);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ly->shape[i], i < ndim ? shape[i] : 0);
	assert_int_equal(ly->bias, bias);
	assert_int_equal(ly->offset, offset);
	assert_int_equal(ly->weight_size, weight_size);
	assert_int_equal(ly->bias_size, bias_size);
	assert_int_equal(ly->size, weight_size + bias_size);
}

/* The README's layout example, with sizes from the shapes computed by hand. */
static void check_spec_example(const pspace_layout *l)
{
	const uint64_t s_fc1[] = {256, 784}, s_conv1[] = {16, 3, 5, 5};
	const uint64_t s_emb[] = {50304, 512}, s_fc2[] = {10, 256};

	assert_int_equal(pspace_layout_nlayers(l), 4);
	/* fc1: 256*784 = 200704 weights + 256 biases = 200960 */
	check_layer(pspace_layout_layer(l, 0), "fc1", PSPACE_LAYER_LINEAR, 2, s_fc1, 1, 0, 200704,
	            256);
	/* conv1: 16*3*5*5 = 1200 weights + 16 biases, at 200960 */
	check_layer(pspace_layout_layer(l, 1), "conv1", PSPACE_LAYER_CONV2D, 4, s_conv1, 1, 200960,
	            1200, 16);
	/* emb: 50304*512 = 25755648 weights, at 200960 + 1216 = 202176 */
	check_layer(pspace_layout_layer(l, 2), "emb", PSPACE_LAYER_EMBEDDING, 2, s_emb, 0, 202176,
	            25755648, 0);
	/* fc2: 10*256 = 2560 weights, at 202176 + 25755648 = 25957824 */
	check_layer(pspace_layout_layer(l, 3), "fc2", PSPACE_LAYER_LINEAR, 2, s_fc2, 0, 25957824,
	            2560, 0);
	assert_int_equal(pspace_layout_dim(l), 25960384);
	assert_null(pspace_layout_layer(l, 4));
}

static void test_layout_spec_example(void **state)
{
	pspace_layout *l;

	(void)state;
	l = parse_ok(spec_example);
	check_spec_example(l);
	pspace_layout_free(l);
}

static void test_layout_comments_blank_lines(void **state)
{
	/* The same layout with comments everywhere, blank lines, tabs, CRLF. */
	static const char text[] = "\n"
	                           "   # leading comment\n"
	                           "\t\n"
	                           "fc1 linear 256x784 bias # trailing comment\r\n"
	                           "\tconv1\tconv2d\t16x3x5x5\tbias\t\n"
	                           "#\n"
	                           "emb embedding 50304x512 nobias#no space before the comment\n"
	                           "\r\n"
	                           "  fc2   linear   10x256   nobias";
	pspace_layout *l, *ref;

	(void)state;
	l = parse_ok(text);
	check_spec_example(l);
	ref = parse_ok(spec_example);
	assert_int_equal(pspace_layout_equal(l, ref), 1);
	pspace_layout_free(ref);
	pspace_layout_free(l);
}

static void test_layout_kinds(void **state)
{
	static const char text[] = "a conv1d 8x4x3 bias\n"
	                           "bn norm 8 bias\n"
	                           "ln norm 5 nobias\n"
	                           "g1 generic 7 nobias\n"
	                           "g4 generic 2x3x4x5 bias\n"
	                           "x.y:z/w-v_1 generic 1 nobias\n";
	const uint64_t s_a[] = {8, 4, 3}, s_bn[] = {8}, s_ln[] = {5}, s_g1[] = {7};
	const uint64_t s_g4[] = {2, 3, 4, 5}, s_x[] = {1};
	pspace_layout *l;

	(void)state;
	l = parse_ok(text);
	assert_int_equal(pspace_layout_nlayers(l), 6);
	check_layer(pspace_layout_layer(l, 0), "a", PSPACE_LAYER_CONV1D, 3, s_a, 1, 0, 96, 8);
	/* norm "bias" means scale + shift: C + C */
	check_layer(pspace_layout_layer(l, 1), "bn", PSPACE_LAYER_NORM, 1, s_bn, 1, 104, 8, 8);
	check_layer(pspace_layout_layer(l, 2), "ln", PSPACE_LAYER_NORM, 1, s_ln, 0, 120, 5, 0);
	check_layer(pspace_layout_layer(l, 3), "g1", PSPACE_LAYER_GENERIC, 1, s_g1, 0, 125, 7, 0);
	check_layer(pspace_layout_layer(l, 4), "g4", PSPACE_LAYER_GENERIC, 4, s_g4, 1, 132, 120, 2);
	check_layer(pspace_layout_layer(l, 5), "x.y:z/w-v_1", PSPACE_LAYER_GENERIC, 1, s_x, 0, 254,
	            1, 0);
	assert_int_equal(pspace_layout_dim(l), 255);
	pspace_layout_free(l);

	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_LINEAR), "linear");
	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_CONV1D), "conv1d");
	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_CONV2D), "conv2d");
	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_EMBEDDING), "embedding");
	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_NORM), "norm");
	assert_string_equal(pspace_layer_kind_name(PSPACE_LAYER_GENERIC), "generic");
	assert_string_equal(pspace_layer_kind_name((pspace_layer_kind)0), "?");
	assert_string_equal(pspace_layer_kind_name((pspace_layer_kind)7), "?");
}

/* Parses @p text expecting EFORMAT and the detail @p detail exactly. */
static void expect_error(const char *text, const char *detail)
{
	pspace_layout *l = (pspace_layout *)&l; /* must be reset to NULL */
	int rc;

	pspace_errclear();
	rc = pspace_layout_parse(&l, text, "layout.txt");
	if (rc != PSPACE_EFORMAT)
		fail_msg("expected EFORMAT for %s, got %d", text, rc);
	assert_null(l);
	if (strcmp(pspace_errdetail(), detail) != 0)
		fail_msg("detail\n  got:      %s\n  expected: %s", pspace_errdetail(), detail);
}

static void test_layout_error_kind(void **state)
{
	(void)state;
	expect_error("# header\nfc1 linear 2x3 bias\nfc2 lineer 3x4 bias\n",
	             "layout.txt:3: unknown layer kind 'lineer' (expected linear, conv1d, conv2d, "
	             "embedding, norm or generic)");
	expect_error("a Linear 2x3 bias\n", "layout.txt:1: unknown layer kind 'Linear' (expected "
	                                    "linear, conv1d, conv2d, embedding, norm or generic)");
}

static void test_layout_error_shape(void **state)
{
	static const char *const bad[] = {"256x", "x784", "256xx784", "0x5", "5x0", "256X784",
	                                  "-3x4", "+3x4", "3x4.0",    "abc", "3,4", "x"};
	char text[256], detail[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* four fine lines first, so the bad one is line 5 */
		snprintf(text, sizeof(text),
		         "a linear 1x1 bias\n#\n\nb generic 3 nobias\nc generic %s nobias\n",
		         bad[i]);
		snprintf(detail, sizeof(detail),
		         "layout.txt:5: shape '%s' is not NxMx... with positive integers", bad[i]);
		expect_error(text, detail);
	}
	expect_error("a generic 1x2x3x4x5 nobias\n",
	             "layout.txt:1: shape '1x2x3x4x5' has more than 4 dims");
	expect_error("a generic 18446744073709551616 nobias\n",
	             "layout.txt:1: shape '18446744073709551616' has a dim that overflows 64 bits");
	/* kind and number of dims */
	expect_error("\na linear 2x3x4 bias\n",
	             "layout.txt:2: linear layer needs a 2-dim shape (OUTxIN), got '2x3x4'");
	expect_error("a conv1d 2x3 bias\n",
	             "layout.txt:1: conv1d layer needs a 3-dim shape (OUTxINxK), got '2x3'");
	expect_error("a conv2d 2x3x4 bias\n",
	             "layout.txt:1: conv2d layer needs a 4-dim shape (OUTxINxKHxKW), got '2x3x4'");
	expect_error("a embedding 7 nobias\n",
	             "layout.txt:1: embedding layer needs a 2-dim shape (NUMxDIM), got '7'");
	expect_error("a norm 2x2 bias\n",
	             "layout.txt:1: norm layer needs a 1-dim shape (C), got '2x2'");
}

static void test_layout_error_fields(void **state)
{
	(void)state;
	expect_error("a linear 2x3 bias\nb linear 2x3\n",
	             "layout.txt:2: missing bias flag (a layer line is NAME KIND SHAPE BIAS)");
	expect_error("a linear # 2x3 bias\n",
	             "layout.txt:1: missing weight shape (a layer line is NAME KIND SHAPE BIAS)");
	expect_error("\n\n\na\n",
	             "layout.txt:4: missing kind (a layer line is NAME KIND SHAPE BIAS)");
	expect_error("a linear 2x3 bias extra\n",
	             "layout.txt:1: extra field 'extra' (a layer line is NAME KIND SHAPE BIAS)");
	expect_error("a linear 2x3 bias\n\nb linear 2x3 bias x y z\n",
	             "layout.txt:3: extra field 'x' (a layer line is NAME KIND SHAPE BIAS)");
	expect_error("a linear 2x3 yes\n",
	             "layout.txt:1: bias flag 'yes' is neither 'bias' nor 'nobias'");
	expect_error("e embedding 10x4 bias\n",
	             "layout.txt:1: an embedding layer has no bias (use 'nobias')");
}

static void test_layout_error_names(void **state)
{
	char text[256], detail[256], name[80];

	(void)state;
	expect_error("# c\nfc1 linear 2x3 bias\nfc2 linear 3x3 bias\nfc1 linear 4x3 bias\n",
	             "layout.txt:4: duplicate layer name 'fc1' (first defined on line 2)");
	/* the duplicate reported is the first one met when reading the file */
	expect_error("b generic 1 nobias\na generic 1 nobias\na generic 1 nobias\n"
	             "b generic 1 nobias\na generic 1 nobias\n",
	             "layout.txt:3: duplicate layer name 'a' (first defined on line 2)");
	expect_error("fc$1 linear 2x3 bias\n", "layout.txt:1: layer name 'fc$1' has a character "
	                                       "outside [A-Za-z0-9_.:/-]");
	/* 63 characters are fine, 64 are not */
	memset(name, 'n', 63);
	name[63] = '\0';
	snprintf(text, sizeof(text), "%s generic 1 nobias\n", name);
	{
		pspace_layout *l = parse_ok(text);

		assert_string_equal(pspace_layout_layer(l, 0)->name, name);
		pspace_layout_free(l);
	}
	name[63] = 'n';
	name[64] = '\0';
	snprintf(text, sizeof(text), "ok generic 1 nobias\n%s generic 1 nobias\n", name);
	snprintf(detail, sizeof(detail),
	         "layout.txt:2: layer name '%s...' is longer than 63 characters", name);
	expect_error(text, detail);
}

static void test_layout_error_overflow(void **state)
{
	(void)state;
	/* 2^32 * 2^32 = 2^64 weights */
	expect_error("a generic 1 nobias\nb linear 4294967296x4294967296 nobias\n",
	             "layout.txt:2: layer 'b' has more than 2^64-1 parameters");
	/* (2^64 - 1) weights + bias overflows in the layer */
	expect_error("c generic 18446744073709551615 bias\n",
	             "layout.txt:1: layer 'c' has more than 2^64-1 parameters");
	/* 2^63 + 2^63 overflows the parameter count */
	expect_error(
	    "a generic 9223372036854775808 nobias\n#\nb generic 9223372036854775808 nobias\n",
	    "layout.txt:3: parameter count overflows 64 bits at layer 'b'");
}

static void test_layout_error_empty(void **state)
{
	pspace_layout *l = NULL;

	(void)state;
	expect_error("", "layout.txt: no layers");
	expect_error("# only a comment\n\n   \n\t# another\n", "layout.txt: no layers");
	/* without a file name the source is called <layout> */
	assert_int_equal(pspace_layout_parse(&l, "\n", NULL), PSPACE_EFORMAT);
	assert_string_equal(pspace_errdetail(), "<layout>: no layers");
	assert_int_equal(pspace_layout_parse(&l, NULL, "x"), PSPACE_EINVAL);
	assert_null(l);
}

static void test_layout_canonical_text(void **state)
{
	/* Columns: name width max(6, 15) = 15, kind 9, shape 12 ("weight-shape"). */
	static const char expected[] = "# name           kind       weight-shape  bias\n"
	                               "a                linear     2x3           bias\n"
	                               "embedding_layer  embedding  10x4          nobias\n"
	                               "c                conv2d     16x3x5x5      bias\n";
	pspace_layout *l, *l2;
	char *t, *t2;

	(void)state;
	l = parse_ok("a linear 2x3 bias\n# x\nembedding_layer   embedding 10x4 nobias\n"
	             "c conv2d 16x3x5x5 bias");
	assert_int_equal(pspace_layout_text(&t, l), 0);
	assert_non_null(t);
	assert_string_equal(t, expected);
	l2 = parse_ok(t);
	assert_int_equal(pspace_layout_equal(l, l2), 1);
	free(t);
	pspace_layout_free(l2);
	pspace_layout_free(l);

	/* the README's layout example round trips, and the text is a fixed point */
	l = parse_ok(spec_example);
	assert_int_equal(pspace_layout_text(&t, l), 0);
	assert_non_null(t);
	assert_memory_equal(t, "# name", 6);
	l2 = parse_ok(t);
	check_spec_example(l2);
	assert_int_equal(pspace_layout_equal(l, l2), 1);
	assert_int_equal(pspace_layout_text(&t2, l2), 0);
	assert_string_equal(t, t2);
	free(t2);
	free(t);
	pspace_layout_free(l2);
	pspace_layout_free(l);
}

static void test_layout_equal_copy_flat(void **state)
{
	pspace_layout *a, *b, *c;
	char *t;
	const uint64_t s[] = {1000};

	(void)state;
	a = parse_ok(spec_example);
	assert_int_equal(pspace_layout_copy(&c, a), 0);
	assert_non_null(c);
	check_spec_example(c);
	assert_int_equal(pspace_layout_equal(a, c), 1);
	pspace_layout_free(a);
	pspace_layout_free(c);

	a = parse_ok("a linear 2x3 bias\nb linear 2x3 bias\n");
	b = parse_ok("a linear 2x3 bias\nb linear 2x3 nobias\n");
	assert_int_equal(pspace_layout_equal(a, b), 0);
	pspace_layout_free(b);
	b = parse_ok("a linear 2x3 bias\nB linear 2x3 bias\n");
	assert_int_equal(pspace_layout_equal(a, b), 0);
	pspace_layout_free(b);
	b = parse_ok("a linear 3x2 bias\nb linear 2x3 bias\n");
	assert_int_equal(pspace_layout_equal(a, b), 0);
	pspace_layout_free(b);
	b = parse_ok("a generic 2x3 bias\nb linear 2x3 bias\n");
	assert_int_equal(pspace_layout_equal(a, b), 0);
	pspace_layout_free(b);
	b = parse_ok("a linear 2x3 bias\n");
	assert_int_equal(pspace_layout_equal(a, b), 0);
	pspace_layout_free(b);
	pspace_layout_free(a);

	assert_int_equal(pspace_layout_flat(&a, 1000), 0);
	assert_int_equal(pspace_layout_nlayers(a), 1);
	assert_int_equal(pspace_layout_dim(a), 1000);
	check_layer(pspace_layout_layer(a, 0), "params", PSPACE_LAYER_GENERIC, 1, s, 0, 0, 1000, 0);
	b = parse_ok("params generic 1000 nobias\n");
	assert_int_equal(pspace_layout_equal(a, b), 1);
	pspace_layout_free(b);
	pspace_layout_free(a);
	assert_int_equal(pspace_layout_flat(&a, 0), PSPACE_EINVAL);
	assert_null(a);
	pspace_layout_free(NULL);
	/* NULL in: an error, and *out is NULL */
	b = parse_ok("a linear 2x3 bias\n");
	c = b;
	assert_int_equal(pspace_layout_copy(&c, NULL), PSPACE_EINVAL);
	assert_null(c);
	t = (char *)pspace_layout_layer(b, 0)->name;
	assert_int_equal(pspace_layout_text(&t, NULL), PSPACE_EINVAL);
	assert_null(t);
	pspace_layout_free(b);
}

static void test_layout_layer_of(void **state)
{
	pspace_layout *l;
	char *text;
	size_t len = 0, nl = 300;
	unsigned seed = 12345;

	(void)state;
	/* every boundary of the README's layout example */
	l = parse_ok(spec_example);
	assert_int_equal(pspace_layout_layer_of(l, 0), 0);
	assert_int_equal(pspace_layout_layer_of(l, 200703), 0); /* last fc1 weight */
	assert_int_equal(pspace_layout_layer_of(l, 200704), 0); /* first fc1 bias */
	assert_int_equal(pspace_layout_layer_of(l, 200959), 0); /* last fc1 bias */
	assert_int_equal(pspace_layout_layer_of(l, 200960), 1);
	assert_int_equal(pspace_layout_layer_of(l, 202175), 1);
	assert_int_equal(pspace_layout_layer_of(l, 202176), 2);
	assert_int_equal(pspace_layout_layer_of(l, 25957823), 2);
	assert_int_equal(pspace_layout_layer_of(l, 25957824), 3);
	assert_int_equal(pspace_layout_layer_of(l, 25960383), 3);
	/* past the end: the number of layers, never a valid index */
	assert_int_equal(pspace_layout_layer_of(l, 25960384), 4);
	pspace_layout_free(l);

	/* many layers of random sizes, 1 included, against a running count */
	text = malloc(nl * 64);
	assert_non_null(text);
	for (size_t i = 0; i < nl; i++) {
		seed = seed * 1103515245u + 12345u;
		len += (size_t)sprintf(text + len, "l%zu generic %u %s\n", i, (seed >> 16) % 5 + 1,
		                       (seed >> 8) & 1 ? "bias" : "nobias");
	}
	l = parse_ok(text);
	assert_int_equal(pspace_layout_nlayers(l), nl);
	{
		uint64_t off = 0;

		seed = 12345;
		for (size_t i = 0; i < nl; i++) {
			unsigned w, b;

			seed = seed * 1103515245u + 12345u;
			w = (seed >> 16) % 5 + 1;
			b = (seed >> 8) & 1 ? w : 0;
			assert_int_equal(pspace_layout_layer(l, i)->offset, off);
			for (uint64_t p = off; p < off + w + b; p++)
				assert_int_equal(pspace_layout_layer_of(l, p), i);
			off += w + b;
		}
		assert_int_equal(pspace_layout_dim(l), off);
	}
	pspace_layout_free(l);
	free(text);
}

static void test_layout_find(void **state)
{
	pspace_layout *l;
	size_t i = 99;

	(void)state;
	l = parse_ok(spec_example);
	assert_int_equal(pspace_layout_find(&i, l, "fc1"), 0);
	assert_int_equal(i, 0);
	assert_int_equal(pspace_layout_find(&i, l, "conv1"), 0);
	assert_int_equal(i, 1);
	assert_int_equal(pspace_layout_find(&i, l, "emb"), 0);
	assert_int_equal(i, 2);
	assert_int_equal(pspace_layout_find(&i, l, "fc2"), 0);
	assert_int_equal(i, 3);
	i = 99;
	assert_int_equal(pspace_layout_find(&i, l, "fc"), PSPACE_ENOTFOUND);
	assert_int_equal(pspace_layout_find(&i, l, "FC1"), PSPACE_ENOTFOUND);
	assert_int_equal(i, 99);
	assert_non_null(strstr(pspace_errdetail(), "FC1"));
	pspace_layout_free(l);
}

static void test_layout_load(void **state)
{
	char dir[64], path[128], missing[128];
	pspace_layout *l = NULL;
	FILE *f;

	(void)state;
	fx_dir_make(dir, sizeof(dir), "layout");
	snprintf(path, sizeof(path), "%s/layout.txt", dir);
	snprintf(missing, sizeof(missing), "%s/missing.txt", dir);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs(spec_example, f);
	fclose(f);
	assert_int_equal(pspace_layout_load(&l, path), 0);
	check_spec_example(l);
	pspace_layout_free(l);

	/* errors name the path and the line */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("fc1 linear 2x3 bias\nfc2 linear 2x3 bias\nfc3 lineer 2x3 bias\n", f);
	fclose(f);
	assert_int_equal(pspace_layout_load(&l, path), PSPACE_EFORMAT);
	assert_null(l);
	{
		char want[256];

		snprintf(want, sizeof(want), "%s:3: unknown layer kind 'lineer'", path);
		assert_memory_equal(pspace_errdetail(), want, strlen(want));
	}

	/* a NUL byte is not text */
	f = fopen(path, "wb");
	assert_non_null(f);
	fwrite("a generic 1 nobias\n\0b generic 1 nobias\n", 1, 39, f);
	fclose(f);
	assert_int_equal(pspace_layout_load(&l, path), PSPACE_EFORMAT);
	assert_non_null(strstr(pspace_errdetail(), path));

	assert_int_equal(pspace_layout_load(&l, missing), PSPACE_ENOTFOUND);
	assert_null(l);
	assert_non_null(strstr(pspace_errdetail(), missing));

	assert_int_equal(remove(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_spec_example),
	    cmocka_unit_test(test_layout_comments_blank_lines),
	    cmocka_unit_test(test_layout_kinds),
	    cmocka_unit_test(test_layout_error_kind),
	    cmocka_unit_test(test_layout_error_shape),
	    cmocka_unit_test(test_layout_error_fields),
	    cmocka_unit_test(test_layout_error_names),
	    cmocka_unit_test(test_layout_error_overflow),
	    cmocka_unit_test(test_layout_error_empty),
	    cmocka_unit_test(test_layout_canonical_text),
	    cmocka_unit_test(test_layout_equal_copy_flat),
	    cmocka_unit_test(test_layout_layer_of),
	    cmocka_unit_test(test_layout_find),
	    cmocka_unit_test(test_layout_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
