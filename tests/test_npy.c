/*
 * Tests of src/build/npy.c and src/build/source_npy.c: .npy round trips
 * through the library writer; headers built byte by byte here the way
 * numpy writes them (versions 1.0, 2.0, 3.0, any key order and spacing);
 * every malformed file giving PSPACE_EFORMAT with the path in the detail;
 * the Jacobian source over uneven files against the concatenation built
 * here; the layer source over two directories against the arrays built
 * here, and its shape errors naming the file and the axis.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static char tmp_root[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	strcpy(tmp_root, "/tmp/pspace_npy_XXXXXX");
	return mkdtemp(tmp_root) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path under the temporary root (static buffers, rotating). */
static const char *tpath(const char *fmt, ...)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ % 8];
	size_t n = (size_t)snprintf(b, 256, "%s/", tmp_root);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, 256 - n, fmt, ap);
	va_end(ap);
	return b;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	if (len > 0)
		assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/*
 * Writes a file with format version @p major and header @p dict, padded with
 * spaces and '\n' to a multiple of 64 when @p pad (as numpy does), then
 * @p ndata bytes of @p data.
 */
static void write_raw(const char *path, int major, const char *dict, int pad, const void *data,
                      size_t ndata)
{
	size_t pre = major == 1 ? 10 : 12, hl = strlen(dict);
	unsigned char *b = calloc(1, pre + hl + 128 + ndata);

	assert_non_null(b);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	b[7] = 0;
	memcpy(b + pre, dict, hl);
	if (pad) {
		while ((pre + hl + 1) % 64 != 0)
			b[pre + hl++] = ' ';
		b[pre + hl++] = '\n';
	}
	b[8] = (unsigned char)(hl & 0xff);
	b[9] = (unsigned char)(hl >> 8);
	if (major > 1) {
		b[10] = (unsigned char)(hl >> 16);
		b[11] = (unsigned char)(hl >> 24);
	}
	if (ndata > 0)
		memcpy(b + pre + hl, data, ndata);
	write_bytes(path, b, pre + hl + ndata);
	free(b);
}

/* Deterministic values with few significant bits, exact in float32. */
static double val(uint64_t i, uint64_t salt)
{
	return (double)((int64_t)((i * 2654435761u + salt * 40503u) % 2001) - 1000) / 64.0;
}

static pspace_npy *open_ok(const char *path)
{
	pspace_npy *f = NULL;
	int rc = pspace_npy_open(&f, path);

	if (rc != 0)
		fail_msg("open %s: %s", path, pspace_errdetail());
	return f;
}

static void expect_err(int rc, int code, const char *path, const char *substr)
{
	if (rc != code)
		fail_msg("expected %s, got %d (%s); detail: %s", pspace_strerror(code), rc,
		         pspace_strerror(rc), pspace_errdetail());
	if (path != NULL && strstr(pspace_errdetail(), path) == NULL)
		fail_msg("detail does not name %s: %s", path, pspace_errdetail());
	if (substr != NULL && strstr(pspace_errdetail(), substr) == NULL)
		fail_msg("detail lacks '%s': %s", substr, pspace_errdetail());
}

/* ---- npy files ------------------------------------------------------------------------ */

static void roundtrip(pspace_dtype dt, int ndim, const uint64_t *shape)
{
	const char *path = tpath("rt_%s_%d.npy", pspace_dtype_name(dt), ndim);
	uint64_t count = 1;
	double *x, *got;
	int64_t *xi, *goti;
	pspace_npy *f;
	const pspace_npy_info *in;
	unsigned char head[128];
	size_t got_bytes, hlen;
	FILE *fp;

	for (int i = 0; i < ndim; i++)
		count *= shape[i];
	x = malloc((count + 1) * sizeof(double));
	xi = malloc((count + 1) * sizeof(int64_t));
	got = malloc((count + 1) * sizeof(double));
	goti = malloc((count + 1) * sizeof(int64_t));
	assert_true(x && xi && got && goti);
	for (uint64_t i = 0; i < count; i++) {
		x[i] = val(i, 1) + 1.0 / 3.0; /* not exact in f32: checks the rounding */
		xi[i] = (int64_t)(i * 1000003u) - 7000000 + (i == 1 ? INT64_MAX - 5000000 : 0);
	}
	assert_int_equal(pspace_npy_write(path, dt, ndim, shape, dt == PSPACE_I64 ? (void *)xi : x),
	                 0);

	/* The header bytes, as numpy writes them. */
	fp = fopen(path, "rb");
	assert_non_null(fp);
	got_bytes = fread(head, 1, sizeof(head), fp);
	fclose(fp);
	assert_memory_equal(head, "\x93NUMPY\x01\x00", 8);
	hlen = (size_t)(head[8] | head[9] << 8);
	assert_int_equal((10 + hlen) % 64, 0); /* data aligned as numpy aligns it */
	assert_true(got_bytes >= 10 + hlen);
	assert_int_equal(head[10 + hlen - 1], '\n');
	assert_memory_equal(head + 10, "{'descr': '<", 12);

	f = open_ok(path);
	in = pspace_npy_info_of(f);
	assert_int_equal(in->dtype, dt);
	assert_int_equal(in->ndim, ndim);
	assert_int_equal(in->count, count);
	assert_int_equal(in->version, 1);
	assert_int_equal(in->data_offset, 10 + hlen);
	for (int i = 0; i < 4; i++)
		assert_int_equal(in->shape[i], i < ndim ? shape[i] : 0);
	assert_string_equal(pspace_npy_path(f), path);

	/* All, then an inner range. */
	assert_int_equal(pspace_npy_read(f, 0, count, got), 0);
	for (uint64_t i = 0; i < count; i++) {
		double want = dt == PSPACE_F32   ? (double)(float)x[i]
		              : dt == PSPACE_F64 ? x[i]
		                                 : (double)xi[i];
		assert_true(got[i] == want);
	}
	if (count > 3) {
		assert_int_equal(pspace_npy_read(f, 1, count - 2, got), 0);
		for (uint64_t i = 1; i + 1 < count; i++)
			assert_true(got[i - 1] == (dt == PSPACE_F32   ? (double)(float)x[i]
			                           : dt == PSPACE_F64 ? x[i]
			                                              : (double)xi[i]));
	}
	if (dt == PSPACE_I64) {
		assert_int_equal(pspace_npy_read_i64(f, 0, count, goti), 0);
		assert_memory_equal(goti, xi, count * sizeof(int64_t));
	}
	/* Out of range. */
	assert_int_equal(pspace_npy_read(f, count, 1, got), PSPACE_EINVAL);
	assert_int_equal(pspace_npy_read(f, 0, count + 1, got), PSPACE_EINVAL);
	pspace_npy_close(f);
	free(x);
	free(xi);
	free(got);
	free(goti);
}

static void test_npy_roundtrip(void **state)
{
	const uint64_t s0[1] = {0}, s1[] = {7}, s2[] = {3, 4}, s3[] = {2, 3, 5},
	               s4[] = {2, 1, 3, 4}, big[] = {3000, 7};
	const pspace_dtype dts[] = {PSPACE_F32, PSPACE_F64, PSPACE_I64};
	DIR *dir;
	struct dirent *e;

	(void)state;
	for (int t = 0; t < 3; t++) {
		roundtrip(dts[t], 0, s0);
		roundtrip(dts[t], 1, s1);
		roundtrip(dts[t], 2, s2);
		roundtrip(dts[t], 3, s3);
		roundtrip(dts[t], 4, s4);
	}
	/* More than the writer's 64 KiB conversion buffer. */
	roundtrip(PSPACE_F32, 2, big);

	/* Header text of a 2-d f4 file is exactly numpy's. */
	{
		const char *path = tpath("hdr.npy");
		const double x[12] = {0};
		char head[128];
		const char want[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
		FILE *fp;

		assert_int_equal(pspace_npy_write(path, PSPACE_F32, 2, s2, x), 0);
		fp = fopen(path, "rb");
		assert_non_null(fp);
		assert_int_equal(fread(head, 1, 128, fp), 128);
		fclose(fp);
		assert_memory_equal(head + 10, want, strlen(want));
		for (size_t i = 10 + strlen(want); i < 127; i++)
			assert_int_equal(head[i], ' ');
		assert_int_equal(head[127], '\n');
		assert_int_equal(head[8], 118);
	}

	/* No temporary file left behind. */
	dir = opendir(tmp_root);
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL)
		assert_null(strstr(e->d_name, ".tmp-"));
	closedir(dir);

	/* Writer errors. */
	assert_int_equal(pspace_npy_write(tpath("x.npy"), PSPACE_BF16, 1, s1, NULL), PSPACE_EINVAL);
	assert_int_equal(pspace_npy_write(tpath("nodir/x.npy"), PSPACE_F64, 0, s1, s1),
	                 PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "nodir/x.npy"));
}

/* Headers written by hand as numpy (and older numpy) would. */
static void test_npy_handmade_headers(void **state)
{
	static const struct {
		int major, pad;
		const char *dict;
		pspace_dtype dt;
		int ndim;
		uint64_t shape[4];
	} cases[] = {
	    {1,
	     1,
	     "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
	     PSPACE_F32,
	     2,
	     {3, 4}},
	    {1, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }", PSPACE_F64, 1, {5}},
	    {1, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", PSPACE_I64, 0, {0}},
	    {1,
	     1,
	     "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}",
	     PSPACE_F64,
	     2,
	     {2, 3}},
	    {1, 0, "{'fortran_order':False,'descr':'<f4','shape':(2,3,)}\n", PSPACE_F32, 2, {2, 3}},
	    {1,
	     1,
	     "{ \"descr\" : \"<f8\" ,\t'fortran_order' : False , 'shape' : ( 6 , ) , }",
	     PSPACE_F64,
	     1,
	     {6}},
	    {1,
	     1,
	     "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }",
	     PSPACE_F64,
	     2,
	     {2, 3}},
	    {1,
	     1,
	     "{'descr': '=f8', 'fortran_order': False, 'shape': (1, 2, 1, 3), }",
	     PSPACE_F64,
	     4,
	     {1, 2, 1, 3}},
	    {1, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (6,), }", PSPACE_F64, 1, {6}},
	    {2,
	     1,
	     "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
	     PSPACE_F32,
	     2,
	     {2, 3}},
	    {3, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }", PSPACE_I64, 1, {6}},
	    {1,
	     1,
	     "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }",
	     PSPACE_F64,
	     2,
	     {0, 3}},
	};
	unsigned char data[8 * 16];
	double got[16];
	int64_t goti[16];

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *path = tpath("hand%zu.npy", c);
		uint64_t count = 1;
		size_t isz = cases[c].dt == PSPACE_F32 ? 4 : 8;
		pspace_npy *f;
		const pspace_npy_info *in;

		for (int i = 0; i < cases[c].ndim; i++)
			count *= cases[c].shape[i];
		for (uint64_t i = 0; i < count; i++) {
			float v32 = (float)val(i, c);
			double v64 = val(i, c);
			int64_t vi = (int64_t)i * 3 - 5;

			if (cases[c].dt == PSPACE_F32)
				memcpy(data + 4 * i, &v32, 4);
			else if (cases[c].dt == PSPACE_F64)
				memcpy(data + 8 * i, &v64, 8);
			else
				memcpy(data + 8 * i, &vi, 8);
		}
		write_raw(path, cases[c].major, cases[c].dict, cases[c].pad, data, count * isz);
		f = open_ok(path);
		in = pspace_npy_info_of(f);
		assert_int_equal(in->dtype, cases[c].dt);
		assert_int_equal(in->ndim, cases[c].ndim);
		assert_int_equal(in->version, cases[c].major);
		assert_int_equal(in->count, count);
		for (int i = 0; i < 4; i++)
			assert_int_equal(in->shape[i], cases[c].shape[i]);
		if (cases[c].pad)
			assert_int_equal(in->data_offset % 64, 0);
		assert_int_equal(pspace_npy_read(f, 0, count, got), 0);
		for (uint64_t i = 0; i < count; i++)
			assert_true(
			    got[i] ==
			    (cases[c].dt == PSPACE_I64 ? (double)((int64_t)i * 3 - 5) : val(i, c)));
		/* Float files holding integers read as ids; others do not. */
		if (cases[c].dt == PSPACE_I64) {
			assert_int_equal(pspace_npy_read_i64(f, 0, count, goti), 0);
			for (uint64_t i = 0; i < count; i++)
				assert_int_equal(goti[i], (int64_t)i * 3 - 5);
		} else if (count > 0) {
			int rc = pspace_npy_read_i64(f, 0, count, goti);
			int all_int = 1;

			for (uint64_t i = 0; i < count; i++)
				all_int &= val(i, c) == (double)(int64_t)val(i, c);
			if (all_int)
				assert_int_equal(rc, 0);
			else
				expect_err(rc, PSPACE_EFORMAT, path, "not an integer");
		}
		pspace_npy_close(f);
	}
	pspace_npy_close(NULL);
}

static void test_npy_malformed(void **state)
{
	static const struct {
		int major;
		const char *dict;
		size_t ndata;
		const char *msg;
	} cases[] = {
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), ", 48,
	     "unterminated dict"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)", 48, "unterminated"},
	    {1, "{'descr': '<f4', 'shape': (3, 4), }", 48, "missing key 'fortran_order'"},
	    {1, "{'descr': '<f4', 'fortran_order': False, }", 48, "missing key 'shape'"},
	    {1, "{'fortran_order': False, 'shape': (3, 4), }", 48, "missing key 'descr'"},
	    {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 48,
	     "Fortran order not supported: save with numpy.ascontiguousarray"},
	    {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }", 48, "big-endian"},
	    {1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4), }", 48, "'<f2'"},
	    {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3, 4), }", 48, "'<c8'"},
	    {1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }", 48, "'<i4'"},
	    {1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", 48, "'|u1'"},
	    {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 48,
	     "structured"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 48,
	     "at most 4"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 40,
	     "truncated: 40 bytes of data, expected 48"},
	    {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 95,
	     "truncated: 95 bytes of data, expected 96"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }",
	     48, "overflows"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 48,
	     "overflows"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 48, "not a tuple"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': [3, 4], }", 48, "not a tuple"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4), }", 48, "non-negative"},
	    {1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4), }", 48, "True or False"},
	    {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48,
	     "twice"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1, }", 48,
	     "unexpected key 'x'"},
	    {1, "{'descr': '<f4' 'fortran_order': False, 'shape': (3, 4), }", 48, "expected"},
	    {1, "{'descr': '<f4, 'fortran_order': False, 'shape': (3, 4), }", 48, NULL},
	    {1, "['descr', '<f4']", 48, "not a dict"},
	    {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } x", 48, "text after"},
	    {1, "{,}", 48, NULL},
	    {1, "", 48, "not a dict"},
	    {4, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48, "version 4.0"},
	    {0, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48, "version 0.0"},
	};
	unsigned char data[128] = {0};
	pspace_npy *f = (pspace_npy *)data; /* checked to be set to NULL on failure */

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *path = tpath("bad%zu.npy", c);

		write_raw(path, cases[c].major, cases[c].dict, 1, data, cases[c].ndata);
		f = (pspace_npy *)data;
		expect_err(pspace_npy_open(&f, path), PSPACE_EFORMAT, path, cases[c].msg);
		assert_null(f);
	}

	/* Bytes that are not an .npy preamble. */
	{
		const char *p = tpath("magic.npy");
		unsigned char b[80];

		memset(b, ' ', sizeof(b));
		memcpy(b, "\x93NUMPZ\x01\x00\x46\x00", 10);
		write_bytes(p, b, sizeof(b));
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "bad magic");
		memcpy(b, "\x93NUMPY\x01\x01\x46\x00", 10);
		write_bytes(p, b, sizeof(b));
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "version 1.1");

		p = tpath("empty.npy");
		write_bytes(p, b, 0);
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "empty");
		p = tpath("short.npy");
		write_bytes(p, "\x93NUMPY\x01", 7);
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "too short");
		p = tpath("short2.npy");
		write_bytes(p, "\x93NUMPY\x02\x00\x10\x00", 10);
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "preamble");

		/* Header length beyond EOF: v1 (u16) and v3 (u32). */
		p = tpath("hlen1.npy");
		memcpy(b, "\x93NUMPY\x01\x00\xff\x7f", 10);
		write_bytes(p, b, sizeof(b));
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "beyond the end");
		p = tpath("hlen3.npy");
		memcpy(b, "\x93NUMPY\x03\x00\x00\x00\x00\x80", 12);
		write_bytes(p, b, sizeof(b));
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "beyond the end");

		p = tpath("missing.npy");
		expect_err(pspace_npy_open(&f, p), PSPACE_ENOTFOUND, p, NULL);
		p = tpath("");
		expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, NULL, "not a regular file");
	}
}

/* ---- Jacobian source ---------------------------------------------------------------- */

/* J[k][x][p] of the whole concatenation. */
static double jval(uint64_t k, uint64_t x, uint64_t p)
{
	return val(k * 100003 + x * 1009 + p, 7);
}

static void write_jac(const char *path, pspace_dtype dt, int ndim, uint32_t K, uint64_t x0,
                      uint64_t n, uint64_t d)
{
	double *buf = malloc((K * n * d + 1) * sizeof(double));
	uint64_t shape[3] = {K, n, d};

	assert_non_null(buf);
	for (uint64_t k = 0; k < K; k++)
		for (uint64_t x = 0; x < n; x++)
			for (uint64_t p = 0; p < d; p++)
				buf[(k * n + x) * d + p] = jval(k, x0 + x, p);
	assert_int_equal(pspace_npy_write(path, dt, ndim, ndim == 3 ? shape : shape + 1, buf), 0);
	free(buf);
}

static void check_jac_reads(const pspace_jac_source *src)
{
	const uint64_t n = src->examples, d = src->d;
	const uint32_t K = src->outputs;

	for (size_t extra = 0; extra <= 3; extra += 3) {
		size_t ld = (size_t)d + extra;
		double *out = malloc((K * n * ld + 1) * sizeof(double));

		assert_non_null(out);
		for (uint64_t x0 = 0; x0 <= n; x0++) {
			for (uint64_t nx = 0; x0 + nx <= n; nx++) {
				for (uint64_t i = 0; i < K * nx * ld; i++)
					out[i] = -12345.0;
				if (src->read(src->ud, x0, nx, out, ld) != 0)
					fail_msg("read %llu+%llu: %s", (unsigned long long)x0,
					         (unsigned long long)nx, pspace_errdetail());
				for (uint64_t k = 0; k < K; k++)
					for (uint64_t x = 0; x < nx; x++)
						for (uint64_t p = 0; p < ld; p++)
							assert_true(out[(k * nx + x) * ld + p] ==
							            (p < d ? jval(k, x0 + x, p)
							                   : -12345.0));
			}
		}
		assert_int_equal(src->read(src->ud, n, 1, out, ld), PSPACE_EINVAL);
		free(out);
	}
}

static void test_npy_jac_source(void **state)
{
	const uint64_t d = 7, ns[3] = {3, 1, 4};
	const char *paths[3];
	pspace_jac_source src;
	pspace_layout *lay = NULL, *lay_bad = NULL;
	uint64_t x0 = 0;

	(void)state;
	/* K = 2 over three uneven files, one of them float32 (values exact in f32). */
	for (int i = 0; i < 3; i++) {
		paths[i] = tpath("J%d.npy", i);
		write_jac(paths[i], i == 1 ? PSPACE_F32 : PSPACE_F64, 3, 2, x0, ns[i], d);
		x0 += ns[i];
	}
	assert_int_equal(pspace_layout_parse(&lay, "a linear 1x6 bias\n", "layout.txt"), 0);
	assert_int_equal(pspace_jac_source_npy(&src, paths, 3, lay), 0);
	assert_int_equal(src.examples, 8);
	assert_int_equal(src.outputs, 2);
	assert_int_equal(src.d, 7);
	check_jac_reads(&src);
	pspace_jac_source_npy_close(&src);
	pspace_jac_source_npy_close(&src); /* zeroed: harmless */

	/* K = 1: (n, d) files, with a (1, n, d) file among them. */
	x0 = 0;
	for (int i = 0; i < 3; i++) {
		paths[i] = tpath("J1_%d.npy", i);
		write_jac(paths[i], PSPACE_F64, i == 2 ? 3 : 2, 1, x0, ns[i], d);
		x0 += ns[i];
	}
	assert_int_equal(pspace_jac_source_npy(&src, paths, 3, NULL), 0);
	assert_int_equal(src.outputs, 1);
	assert_int_equal(src.examples, 8);
	check_jac_reads(&src);
	pspace_jac_source_npy_close(&src);

	/* Mismatches name the file and what differs. */
	paths[0] = tpath("J0.npy");
	paths[1] = tpath("J1_1.npy"); /* K = 1 */
	expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT, "J1_1.npy",
	           "K = 1 outputs, but");
	assert_null(src.ud);
	paths[1] = tpath("Jd.npy");
	write_jac(paths[1], PSPACE_F64, 3, 2, 0, 2, d + 1);
	expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT, "Jd.npy",
	           "8 columns, but");
	assert_int_equal(pspace_layout_parse(&lay_bad, "a linear 2x4 bias\n", "layout.txt"), 0);
	expect_err(pspace_jac_source_npy(&src, paths, 1, lay_bad), PSPACE_EFORMAT, "J0.npy",
	           "7 columns, but the layout has d = 10");
	{
		const uint64_t s1[] = {7};
		double z[7] = {0};

		paths[1] = tpath("J1d.npy");
		assert_int_equal(pspace_npy_write(paths[1], PSPACE_F64, 1, s1, z), 0);
		expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_EFORMAT, "J1d.npy",
		           "is not (K, n, d) or (n, d)");
	}
	paths[1] = tpath("Jnone.npy");
	expect_err(pspace_jac_source_npy(&src, paths, 2, NULL), PSPACE_ENOTFOUND, "Jnone.npy",
	           NULL);
	assert_int_equal(pspace_jac_source_npy(&src, paths, 0, NULL), PSPACE_EINVAL);
	pspace_layout_free(lay);
	pspace_layout_free(lay_bad);
}

/* ---- layer source ------------------------------------------------------------------- */

/*
 * Layout: fc linear 3x4 bias (in 4, out 3, T = 1);
 *         conv conv2d 2x2x2x2 bias (in_patch 8, out 2, T = 4);
 *         emb embedding 10x3 (ids < 10, dim 3, T = 2).
 * Global examples: dir 0 holds 0..2, dir 1 holds 3..4. K = 2.
 */
#define LK 2
static const char layer_layout[] = "fc   linear    3x4      bias\n"
                                   "conv conv2d    2x2x2x2  bias\n"
                                   "emb  embedding 10x3     nobias\n";

static double aval(int layer, uint64_t x, uint64_t t, uint64_t j)
{
	return val((uint64_t)layer * 7919 + x * 131 + t * 17 + j, 3);
}

static double gval(int layer, uint64_t k, uint64_t x, uint64_t t, uint64_t o)
{
	return val((uint64_t)layer * 7919 + k * 5003 + x * 131 + t * 17 + o, 5);
}

static int64_t idval(uint64_t x, uint64_t t)
{
	return (int64_t)((x * 7 + t * 3) % 10);
}

static void write_layer_dir(const char *dir, uint64_t x0, uint64_t n, int emb_float)
{
	double buf[512];
	int64_t ids[64];
	uint64_t i;

	mkdir(dir, 0700);
	/* fc: acts (n, 4), grads (K, n, 3) */
	{
		const uint64_t sa[] = {n, 4}, sg[] = {LK, n, 3};
		char p[256];

		for (i = 0; i < n * 4; i++)
			buf[i] = aval(0, x0 + i / 4, 0, i % 4);
		snprintf(p, sizeof(p), "%s/fc.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F32, 2, sa, buf), 0);
		for (i = 0; i < LK * n * 3; i++)
			buf[i] = gval(0, i / (n * 3), x0 + i / 3 % n, 0, i % 3);
		snprintf(p, sizeof(p), "%s/fc.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, sg, buf), 0);
	}
	/* conv: acts (n, 4, 8), grads (K, n, 4, 2) */
	{
		const uint64_t sa[] = {n, 4, 8}, sg[] = {LK, n, 4, 2};
		char p[256];

		for (i = 0; i < n * 32; i++)
			buf[i] = aval(1, x0 + i / 32, i / 8 % 4, i % 8);
		snprintf(p, sizeof(p), "%s/conv.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, sa, buf), 0);
		for (i = 0; i < LK * n * 8; i++)
			buf[i] = gval(1, i / (n * 8), x0 + i / 8 % n, i / 2 % 4, i % 2);
		snprintf(p, sizeof(p), "%s/conv.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F32, 4, sg, buf), 0);
	}
	/* emb: ids (n, 2) int64 (or float64 holding integers), grads (K, n, 2, 3) */
	{
		const uint64_t sa[] = {n, 2}, sg[] = {LK, n, 2, 3};
		char p[256];

		for (i = 0; i < n * 2; i++) {
			ids[i] = idval(x0 + i / 2, i % 2);
			buf[i] = (double)ids[i];
		}
		snprintf(p, sizeof(p), "%s/emb.acts.npy", dir);
		assert_int_equal(pspace_npy_write(p, emb_float ? PSPACE_F64 : PSPACE_I64, 2, sa,
		                                  emb_float ? (void *)buf : (void *)ids),
		                 0);
		for (i = 0; i < LK * n * 6; i++)
			buf[i] = gval(2, i / (n * 6), x0 + i / 6 % n, i / 3 % 2, i % 3);
		snprintf(p, sizeof(p), "%s/emb.grads.npy", dir);
		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 4, sg, buf), 0);
	}
}

static void check_batch(const pspace_layer_batch *b, uint64_t x0, uint64_t nx)
{
	/* fc */
	assert_int_equal(b[0].T, 1);
	assert_null(b[0].ids);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t j = 0; j < 4; j++)
			assert_true(b[0].acts[x * 4 + j] == aval(0, x0 + x, 0, j));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t o = 0; o < 3; o++)
				assert_true(b[0].grads[(k * nx + x) * 3 + o] ==
				            gval(0, k, x0 + x, 0, o));
	/* conv */
	assert_int_equal(b[1].T, 4);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t t = 0; t < 4; t++)
			for (uint64_t j = 0; j < 8; j++)
				assert_true(b[1].acts[(x * 4 + t) * 8 + j] ==
				            aval(1, x0 + x, t, j));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t t = 0; t < 4; t++)
				for (uint64_t o = 0; o < 2; o++)
					assert_true(b[1].grads[((k * nx + x) * 4 + t) * 2 + o] ==
					            gval(1, k, x0 + x, t, o));
	/* emb */
	assert_int_equal(b[2].T, 2);
	assert_null(b[2].acts);
	for (uint64_t x = 0; x < nx; x++)
		for (uint64_t t = 0; t < 2; t++)
			assert_int_equal(b[2].ids[x * 2 + t], idval(x0 + x, t));
	for (uint64_t k = 0; k < LK; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t t = 0; t < 2; t++)
				for (uint64_t o = 0; o < 3; o++)
					assert_true(b[2].grads[((k * nx + x) * 2 + t) * 3 + o] ==
					            gval(2, k, x0 + x, t, o));
}

static void test_npy_layer_source(void **state)
{
	pspace_layout *lay = NULL;
	pspace_layer_source src;
	pspace_layer_batch b[3];
	const char *dirs[2];

	(void)state;
	dirs[0] = tpath("L0");
	dirs[1] = tpath("L1/"); /* a trailing slash is fine */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 3, 2, 1);
	assert_int_equal(pspace_layout_parse(&lay, layer_layout, "layout.txt"), 0);
	if (pspace_layer_source_dirs(&src, lay, dirs, 2) != 0)
		fail_msg("%s", pspace_errdetail());
	pspace_layout_free(lay); /* the source keeps what it needs */
	assert_int_equal(src.examples, 5);
	assert_int_equal(src.outputs, LK);
	/* Every window, growing and shrinking the buffers. */
	for (uint64_t x0 = 0; x0 <= 5; x0++)
		for (uint64_t nx = 1; x0 + nx <= 5; nx++) {
			if (src.read(src.ud, x0, nx, b) != 0)
				fail_msg("read %llu+%llu: %s", (unsigned long long)x0,
				         (unsigned long long)nx, pspace_errdetail());
			check_batch(b, x0, nx);
		}
	assert_int_equal(src.read(src.ud, 4, 2, b), PSPACE_EINVAL);
	pspace_layer_source_dirs_close(&src);
	pspace_layer_source_dirs_close(&src);
}

static void test_npy_layer_source_errors(void **state)
{
	pspace_layout *lay = NULL, *lay2 = NULL;
	pspace_layer_source src;
	pspace_layer_batch b[3];
	const char *dirs[2];
	char p[256];
	const uint64_t s_fc_bad[] = {3, 5}, s_g_bad[] = {LK, 3, 4}, s_g_n[] = {LK, 2, 3};
	const uint64_t s_conv_T[] = {3, 3, 8}, s_ids[] = {3, 2};
	double z[256] = {0};
	int64_t ids[6] = {0, 1, 2, 3, 10, 5};

	(void)state;
	assert_int_equal(pspace_layout_parse(&lay, layer_layout, "layout.txt"), 0);
	dirs[0] = tpath("E0");
	dirs[1] = tpath("E1");

	/* Missing directory / file. */
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_ENOTFOUND, "E0/fc.acts.npy",
	           NULL);
	assert_null(src.ud);

	/* fc acts with 5 columns instead of in = 4. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/fc.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 2, s_fc_bad, z), 0);
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT, "E0/fc.acts.npy",
	           "axis 1 is 5, expected 4");

	/* grads with K = 3 in one layer, 2 elsewhere. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.grads.npy", dirs[0]);
	{
		const uint64_t s[] = {3, 3, 4, 2};

		assert_int_equal(pspace_npy_write(p, PSPACE_F64, 4, s, z), 0);
	}
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	           "E0/conv.grads.npy", "axis 0 is 3, expected 2");

	/* fc grads with the wrong out. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/fc.grads.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_g_bad, z), 0);
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT, "E0/fc.grads.npy",
	           "axis 2 is 4, expected 3");
	/* ... and the wrong n. */
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_g_n, z), 0);
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT, "E0/fc.grads.npy",
	           "axis 1 is 2, expected 3");

	/* conv acts with T = 3 where the grads have T = 4. */
	write_layer_dir(dirs[0], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_conv_T, z), 0);
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT,
	           "E0/conv.grads.npy", "axis 2 is 4, expected 3");

	/* n differs between layers of one directory. */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 0, 2, 0);
	snprintf(p, sizeof(p), "%s/emb.acts.npy", dirs[0]);
	{
		char q[256];

		snprintf(q, sizeof(q), "%s/emb.acts.npy", dirs[1]);
		assert_int_equal(rename(q, p), 0);
	}
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 1), PSPACE_EFORMAT, "E0/emb.acts.npy",
	           "axis 0 is 2, expected 3");

	/* T of a layer differs between directories. */
	write_layer_dir(dirs[0], 0, 3, 0);
	write_layer_dir(dirs[1], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/conv.acts.npy", dirs[1]);
	assert_int_equal(pspace_npy_write(p, PSPACE_F64, 3, s_conv_T, z), 0);
	expect_err(pspace_layer_source_dirs(&src, lay, dirs, 2), PSPACE_EFORMAT, "E1/conv.acts.npy",
	           "axis 1 is 3, expected 4");

	/* Ids: float that is not an integer, and out of range (found when read). */
	write_layer_dir(dirs[1], 0, 3, 0);
	snprintf(p, sizeof(p), "%s/emb.acts.npy", dirs[0]);
	assert_int_equal(pspace_npy_write(p, PSPACE_I64, 2, s_ids, ids), 0);
	assert_int_equal(pspace_layer_source_dirs(&src, lay, dirs, 2), 0);
	assert_int_equal(src.read(src.ud, 0, 2, b), 0);
	expect_err(src.read(src.ud, 1, 3, b), PSPACE_EFORMAT, "E0/emb.acts.npy", "id 10");
	pspace_layer_source_dirs_close(&src);
	z[3] = 2.5;
	assert_int_equal(pspace_npy_write(p, PSPACE_F32, 2, s_ids, z), 0);
	assert_int_equal(pspace_layer_source_dirs(&src, lay, dirs, 2), 0);
	expect_err(src.read(src.ud, 0, 3, b), PSPACE_EFORMAT, "E0/emb.acts.npy", "not an integer");
	pspace_layer_source_dirs_close(&src);

	/* Norm layers have no layer tensors. */
	assert_int_equal(
	    pspace_layout_parse(&lay2, "fc linear 3x4 bias\nbn1 norm 3 bias\n", "layout.txt"), 0);
	expect_err(pspace_layer_source_dirs(&src, lay2, dirs, 1), PSPACE_ENOTSUP, "bn1",
	           "Jacobian rows");
	pspace_layout_free(lay2);
	pspace_layout_free(lay);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_npy_roundtrip),    cmocka_unit_test(test_npy_handmade_headers),
	    cmocka_unit_test(test_npy_malformed),    cmocka_unit_test(test_npy_jac_source),
	    cmocka_unit_test(test_npy_layer_source), cmocka_unit_test(test_npy_layer_source_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
