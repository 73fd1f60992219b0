/*
 * CLI tests of the inspection commands (ls, info, stat, verify, rm, compact,
 * export): the built tool ($PSPACE_TOOL) runs on stores this test writes
 * with the library; outputs are checked against float64 references
 * computed here, JSON is validity-checked, PNGs are decoded with libpng.
 */
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace.h"

#define OUT_CAP 65536

static char tmpdir[256];
static char store[320];
static char out[OUT_CAP];

/* layout: fc1 linear 4x3 + bias (16 parameters), fc2 linear 2x4 (8) */
static const char layout_text[] = "fc1 linear 4x3 bias\nfc2 linear 2x4 nobias\n";
#define D    24
#define TILE 8

/* float64 references of the matrices written */
static double Fdense[D * D], Fbd[D * D], Fkfac[D * D], Fdiag[D];
static double A1[16], G1[16], A2[16], G2[4];

static int run_tool(const char *args, char *buf, size_t cap)
{
	const char *tool = getenv("PSPACE_TOOL");
	char cmd[2048];
	FILE *p;
	size_t n;
	int st;

	assert_non_null(tool);
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", tool, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(buf, 1, cap - 1, p);
	buf[n] = '\0';
	st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* run_tool with printf-style arguments into the global buffer */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char args[1536];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return run_tool(args, out, sizeof(out));
}

static void has(const char *needle)
{
	if (!strstr(out, needle)) {
		fprintf(stderr, "missing '%s' in output:\n%s\n", needle, out);
		fail();
	}
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

static uint64_t rng = 0x1234567;

static double urand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / 9007199254740992.0;
}

/* S = B B^T / m + small ridge, B random n x m */
static void random_spd(double *S, size_t n)
{
	double B[24 * 30];
	size_t m = 30;

	for (size_t i = 0; i < n * m; i++)
		B[i] = urand() * 2 - 1;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			double v = 0;
			for (size_t k = 0; k < m; k++)
				v += B[i * m + k] * B[j * m + k];
			S[i * n + j] = v / (double)m + (i == j ? 0.05 : 0.0);
		}
}

/* KFAC reference: per linear layer, G (x) A in the (o, j) order (bias column
 * last), mapped to the canonical order (weights row-major, then bias). */
static void kfac_block(double *F, size_t off, size_t out_, size_t in, int bias, const double *A,
                       const double *G)
{
	size_t a = in + (bias ? 1 : 0);

	for (size_t o = 0; o < out_; o++)
		for (size_t j = 0; j < a; j++)
			for (size_t o2 = 0; o2 < out_; o2++)
				for (size_t j2 = 0; j2 < a; j2++) {
					size_t p = j < in ? off + o * in + j : off + out_ * in + o;
					size_t q =
					    j2 < in ? off + o2 * in + j2 : off + out_ * in + o2;
					F[p * D + q] = G[o * out_ + o2] * A[j * a + j2];
				}
}

static int setup(void **state)
{
	pspace_store *s;
	pspace_layout *L;
	pspace_mat *k, *e, *dg;
	pspace_write_opts wo;
	double B1[16 * 16], B2[8 * 8];
	const double *blocks[2] = {B1, B2};
	const double *As[2] = {A1, A2}, *Gs[2] = {G1, G2};

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pspace-test-cli-inspect-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(store, sizeof(store), "%s/s.store", tmpdir);
	if (pspace_store_open(&s, store, NULL) != 0)
		return -1;
	if (pspace_layout_parse(&L, layout_text, "test layout") != 0)
		return -1;
	pspace_write_opts_default(&wo);
	wo.tile = TILE;

	random_spd(Fdense, D);
	random_spd(B1, 16);
	random_spd(B2, 8);
	memset(Fbd, 0, sizeof(Fbd));
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++)
			Fbd[i * D + j] = B1[i * 16 + j];
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 8; j++)
			Fbd[(16 + i) * D + 16 + j] = B2[i * 8 + j];
	random_spd(A1, 4);
	random_spd(G1, 4);
	random_spd(A2, 4);
	random_spd(G2, 2);
	memset(Fkfac, 0, sizeof(Fkfac));
	kfac_block(Fkfac, 0, 4, 3, 1, A1, G1);
	kfac_block(Fkfac, 16, 2, 4, 0, A2, G2);
	for (int i = 0; i < D; i++)
		Fdiag[i] = 0.5 + urand();

	if (pspace_dense_write(s, "dense", L, D, Fdense, D, &wo) != 0 ||
	    pspace_blockdiag_write(s, "bd", L, blocks, &wo) != 0 ||
	    pspace_kfac_create(&k, L, As, Gs) != 0 || pspace_mat_save(k, s, "kfac") != 0 ||
	    pspace_ekfac_from_kfac(&e, k) != 0 || pspace_mat_save(e, s, "ekfac") != 0 ||
	    pspace_diag_create(&dg, L, Fdiag) != 0 || pspace_mat_save(dg, s, "diag") != 0) {
		fprintf(stderr, "setup: %s\n", pspace_errdetail());
		return -1;
	}
	pspace_mat_free(k);
	pspace_mat_free(e);
	pspace_mat_free(dg);
	pspace_layout_free(L);
	pspace_store_close(s);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

/* ---- helpers: npy and png files ------------------------------------------------- */

static double *read_npy(const char *path, int ndim, const uint64_t *shape)
{
	pspace_npy *f;
	const pspace_npy_info *in;
	double *v;

	assert_int_equal(pspace_npy_open(&f, path), 0);
	in = pspace_npy_info_of(f);
	assert_int_equal(in->ndim, ndim);
	for (int i = 0; i < ndim; i++)
		assert_int_equal(in->shape[i], shape[i]);
	v = malloc(in->count * sizeof(double));
	assert_non_null(v);
	assert_int_equal(pspace_npy_read(f, 0, in->count, v), 0);
	pspace_npy_close(f);
	return v;
}

/* |got - ref| within float32 rounding of ref */
static void assert_close32(const double *got, const double *ref, size_t n)
{
	double scale = 0;

	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(ref[i]));
	for (size_t i = 0; i < n; i++)
		if (fabs(got[i] - ref[i]) > 1e-6 * scale + 1e-6 * fabs(ref[i])) {
			fprintf(stderr, "entry %zu: %.9g vs %.9g\n", i, got[i], ref[i]);
			fail();
		}
}

/* the library's own dense form, for a second comparison */
static void lib_dense(const char *name, double *Fout)
{
	pspace_store *s;
	pspace_mat *m;

	assert_int_equal(pspace_store_open(&s, store, NULL), 0);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_dense(m, NULL, Fout, D), 0);
	pspace_mat_free(m);
	pspace_store_close(s);
}

typedef struct image {
	uint32_t w, h;
	unsigned char *rgb;
} image;

static void read_png(const char *path, image *im)
{
	FILE *f = fopen(path, "rb");
	png_structp png;
	png_infop info;

	assert_non_null(f);
	png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	info = png_create_info_struct(png);
	assert_true(png && info);
	if (setjmp(png_jmpbuf(png)))
		fail_msg("libpng error reading %s", path);
	png_init_io(png, f);
	png_read_info(png, info);
	im->w = png_get_image_width(png, info);
	im->h = png_get_image_height(png, info);
	assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
	assert_int_equal(png_get_bit_depth(png, info), 8);
	im->rgb = malloc((size_t)im->w * im->h * 3);
	assert_non_null(im->rgb);
	for (uint32_t y = 0; y < im->h; y++)
		png_read_row(png, im->rgb + (size_t)y * im->w * 3, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	fclose(f);
}

static const unsigned char *px(const image *im, uint32_t y, uint32_t x)
{
	return im->rgb + ((size_t)y * im->w + x) * 3;
}

static int is_rgb(const unsigned char *p, int r, int g, int b)
{
	return p[0] == r && p[1] == g && p[2] == b;
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
	has("nosuch");
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
	struct stat st;
	uint8_t *map, *hit;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/corrupt.store", tmpdir);
	copy_store(path);
	assert_int_equal(pspace_store_open(&s, path, NULL), 0);
	assert_int_equal(pspace_reader_open(&r, s, "dense", 0), 0);
	assert_int_equal(pspace_reader_tile(r, 0, 0, 1, &t), 0);
	assert_true(t.len > PSPACE_TILE_HEADER_SIZE + 100);
	memcpy(needle, (const uint8_t *)t.data + PSPACE_TILE_HEADER_SIZE + 20, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(s);

	snprintf(data, sizeof(data), "%s/data.mdb", path);
	fd = open(data, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	/* every copy (LMDB may keep a stale one in a free page) */
	hit = memmem(map, (size_t)st.st_size, needle, sizeof(needle));
	assert_non_null(hit);
	while (hit) {
		hit[sizeof(needle) / 2] ^= 0x40;
		hit = memmem(hit + 1, (size_t)st.st_size - (size_t)(hit + 1 - map), needle,
		             sizeof(needle));
	}
	munmap(map, (size_t)st.st_size);
	close(fd);

	assert_int_equal(run("verify '%s'", path), 1);
	has("matrix dense");
	has("(0,0,1)");
	has(path);
	has("CORRUPT");
	has("1 bad");
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
	snprintf(path, sizeof(path), "%s/incomplete.store", tmpdir);
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
		tile[i] = urand();
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
	assert_int_equal(run("export '%s' half --npy '%s/half.npy'", path, tmpdir), 1);
	has("half");
}

static void test_cli_inspect_rm_compact(void **state)
{
	char path[400], comp[400];
	pspace_store *s1, *s2;
	pspace_mat *m1, *m2;
	double x[D], y1[D], y2[D];
	const char *names[] = {"dense", "bd", "kfac", "ekfac"};

	(void)state;
	snprintf(path, sizeof(path), "%s/rm.store", tmpdir);
	snprintf(comp, sizeof(comp), "%s/compact.store", tmpdir);
	copy_store(path);
	assert_int_equal(run("rm '%s' diag", path), 0);
	has("removed diag");
	assert_int_equal(run("ls '%s'", path), 0);
	assert_null(strstr(out, "\ndiag "));
	has("\nbd ");
	assert_int_equal(run("rm '%s' diag", path), 1);
	has("no matrix 'diag'");
	assert_int_equal(run("compact '%s' '%s'", path, comp), 0);
	has(" -> ");
	assert_int_equal(run("verify '%s'", comp), 0);
	has("4 matrices");
	assert_int_equal(run("compact '%s' '%s'", path, comp), 1);
	has(comp);

	/* same products from both stores */
	assert_int_equal(pspace_store_open(&s1, path, NULL), 0);
	assert_int_equal(pspace_store_open(&s2, comp, NULL), 0);
	for (int i = 0; i < D; i++)
		x[i] = urand() - 0.5;
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

/* export --npy of @p name, in memory and streamed, against @p ref and the library */
static void check_npy_export(const char *name, const double *ref)
{
	static double lib[D * D];
	const uint64_t shape[2] = {D, D};
	const char *mems[] = {"", "--mem 4K"};
	char file[400];

	lib_dense(name, lib);
	assert_close32(lib, ref, D * D);
	for (int i = 0; i < 2; i++) {
		double *got;

		snprintf(file, sizeof(file), "%s/%s%d.npy", tmpdir, name, i);
		assert_int_equal(run("export '%s' %s --npy '%s' %s", store, name, file, mems[i]),
		                 0);
		has(i ? "streamed" : "float32");
		got = read_npy(file, 2, shape);
		assert_close32(got, ref, D * D);
		assert_close32(got, lib, D * D);
		free(got);
	}
}

static void test_cli_inspect_export_npy(void **state)
{
	(void)state;
	check_npy_export("dense", Fdense);
	check_npy_export("bd", Fbd);
	check_npy_export("kfac", Fkfac);
	check_npy_export("ekfac", Fkfac);
	{
		static double Fd[D * D];

		memset(Fd, 0, sizeof(Fd));
		for (int i = 0; i < D; i++)
			Fd[i * D + i] = Fdiag[i];
		check_npy_export("diag", Fd);
	}
}

static void test_cli_inspect_export_diag_block(void **state)
{
	const char *names[] = {"dense", "bd", "kfac"};
	const double *refs[] = {Fdense, Fbd, Fkfac};
	char file[400];

	(void)state;
	for (int k = 0; k < 3; k++) {
		uint64_t d1 = D, b2[2] = {8, 8}, b1[2] = {16, 16};
		double ref[D], blk[16 * 16], *got;

		snprintf(file, sizeof(file), "%s/%s.diag.npy", tmpdir, names[k]);
		assert_int_equal(run("export '%s' %s --npy '%s' --diag", store, names[k], file), 0);
		got = read_npy(file, 1, &d1);
		for (int i = 0; i < D; i++)
			ref[i] = refs[k][i * D + i];
		assert_close32(got, ref, D);
		free(got);

		/* fc2: rows/cols 16..24; fc1 streamed */
		snprintf(file, sizeof(file), "%s/%s.fc2.npy", tmpdir, names[k]);
		assert_int_equal(
		    run("export '%s' %s --npy '%s' --block fc2", store, names[k], file), 0);
		got = read_npy(file, 2, b2);
		for (int i = 0; i < 8; i++)
			for (int j = 0; j < 8; j++)
				blk[i * 8 + j] = refs[k][(16 + i) * D + 16 + j];
		assert_close32(got, blk, 64);
		free(got);
		snprintf(file, sizeof(file), "%s/%s.fc1.npy", tmpdir, names[k]);
		assert_int_equal(
		    run("export '%s' %s --npy '%s' --block fc1 --mem 3K", store, names[k], file),
		    0);
		got = read_npy(file, 2, b1);
		for (int i = 0; i < 16; i++)
			for (int j = 0; j < 16; j++)
				blk[i * 16 + j] = refs[k][i * D + j];
		assert_close32(got, blk, 256);
		free(got);
	}
}

static void test_cli_inspect_export_factors(void **state)
{
	char dir[400], file[480];
	uint64_t s4[2] = {4, 4}, s2[2] = {2, 2};
	double *got;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kfac.factors", tmpdir);
	assert_int_equal(run("export '%s' kfac --npy '%s' --factors", store, dir), 0);
	has("A.fc1.npy");
	snprintf(file, sizeof(file), "%s/A.fc1.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, A1, sizeof(A1));
	free(got);
	snprintf(file, sizeof(file), "%s/G.fc1.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, G1, sizeof(G1));
	free(got);
	snprintf(file, sizeof(file), "%s/A.fc2.npy", dir);
	got = read_npy(file, 2, s4);
	assert_memory_equal(got, A2, sizeof(A2));
	free(got);
	snprintf(file, sizeof(file), "%s/G.fc2.npy", dir);
	got = read_npy(file, 2, s2);
	assert_memory_equal(got, G2, sizeof(G2));
	free(got);
	/* stored kinds have no factors */
	assert_int_equal(run("export '%s' dense --npy '%s' --factors", store, dir), 1);
	has("matrix dense");
	has("--factors");
}

static void check_png(const char *name, const double *ref)
{
	char file[400];
	image im;

	snprintf(file, sizeof(file), "%s/%s.png", tmpdir, name);
	assert_int_equal(run("export '%s' %s --png '%s'", store, name, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, D);
	assert_int_equal(im.h, D);
	for (uint32_t i = 0; i < D; i++) {
		/* correlation 1: viridis' brightest */
		assert_true(is_rgb(px(&im, i, i), 253, 231, 37));
		/* the layer boundary at parameter 16: a red line in row and column 16 */
		if (i != 16) {
			assert_true(is_rgb(px(&im, 16, i), 228, 26, 28));
			assert_true(is_rgb(px(&im, i, 16), 228, 26, 28));
		}
	}
	/* off the lines: |C| < 1 is not the brightest; zero blocks are the darkest */
	for (uint32_t i = 0; i < D; i++)
		for (uint32_t j = 0; j < D; j++) {
			double c;

			if (i == j || i == 16 || j == 16)
				continue;
			c = fabs(ref[i * D + j]) / sqrt(ref[i * D + i] * ref[j * D + j]);
			if (c < 0.95)
				assert_false(is_rgb(px(&im, i, j), 253, 231, 37));
			if (c == 0)
				assert_true(is_rgb(px(&im, i, j), 68, 1, 84));
		}
	free(im.rgb);
}

static void test_cli_inspect_export_png(void **state)
{
	char file[400];
	image im;

	(void)state;
	check_png("dense", Fdense);
	check_png("bd", Fbd);
	check_png("kfac", Fkfac);

	/* one layer: 16 x 16, no lines, diagonal brightest */
	snprintf(file, sizeof(file), "%s/fc1.png", tmpdir);
	assert_int_equal(run("export '%s' dense --png '%s' --layer fc1", store, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, 16);
	assert_int_equal(im.h, 16);
	for (uint32_t i = 0; i < 16; i++)
		assert_true(is_rgb(px(&im, i, i), 253, 231, 37));
	free(im.rgb);

	/* downsampled: 12 x 12 pixels of 2 x 2 entries */
	snprintf(file, sizeof(file), "%s/small.png", tmpdir);
	assert_int_equal(run("export '%s' kfac --png '%s' --size 12 --mem 64K", store, file), 0);
	read_png(file, &im);
	assert_int_equal(im.w, 12);
	assert_int_equal(im.h, 12);
	free(im.rgb);
}

static void test_cli_inspect_errors(void **state)
{
	char file[400];

	(void)state;
	snprintf(file, sizeof(file), "%s/err.npy", tmpdir);
	/* missing store */
	assert_int_equal(run("ls '%s/nostore'", tmpdir), 1);
	has("nostore");
	assert_int_equal(run("info '%s/nostore' dense", tmpdir), 1);
	has("nostore");
	assert_int_equal(run("export '%s/nostore' dense --npy '%s'", tmpdir, file), 1);
	has("nostore");
	/* missing matrix */
	assert_int_equal(run("info '%s' nosuch", store), 1);
	has("no matrix 'nosuch'");
	assert_int_equal(run("verify '%s' nosuch", store), 1);
	has("nosuch");
	assert_int_equal(run("export '%s' nosuch --npy '%s'", store, file), 1);
	has("nosuch");
	/* bad options and arguments */
	assert_int_equal(run("ls '%s' --frobnicate", store), 2);
	has("Try 'pspace ls --help'");
	assert_int_equal(run("info '%s'", store), 2);
	has("missing NAME");
	assert_int_equal(run("export '%s' dense", store), 2);
	has("Try 'pspace export --help'");
	assert_int_equal(run("export '%s' dense --npy a.npy --png b.png", store), 2);
	assert_int_equal(run("export '%s' dense --npy a.npy --diag --factors", store), 2);
	assert_int_equal(run("export '%s' dense --png a.png --size 0", store), 2);
	assert_int_equal(run("export '%s' dense --npy a.npy --mem lots", store), 2);
	assert_int_equal(run("export --help"), 0);
	has("--factors");
	/* too big for --mem: not even one band of rows fits */
	assert_int_equal(run("export '%s' dense --npy '%s' --mem 1K", store, file), 1);
	has("matrix dense");
	has(file);
	has("--mem");
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(run("export '%s' kfac --npy '%s' --mem 100", store, file), 1);
	has("matrix kfac");
	/* PNG of a missing layer; --block of a missing layer */
	assert_int_equal(run("export '%s' dense --png '%s/x.png' --layer fc9", store, tmpdir), 1);
	has("matrix dense");
	has("fc9");
	assert_int_equal(run("export '%s' bd --npy '%s' --block fc9", store, file), 1);
	has("matrix bd");
	has("fc9");
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
	    cmocka_unit_test(test_cli_inspect_export_npy),
	    cmocka_unit_test(test_cli_inspect_export_diag_block),
	    cmocka_unit_test(test_cli_inspect_export_factors),
	    cmocka_unit_test(test_cli_inspect_export_png),
	    cmocka_unit_test(test_cli_inspect_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
