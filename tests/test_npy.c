/*
 * Tests of src/build/npy.c: .npy round trips through the library writer;
 * headers built byte by byte here the way numpy writes them (versions 1.0,
 * 2.0, 3.0, any key order and spacing); every malformed file giving
 * PSPACE_EFORMAT with the path in the detail. The sources over .npy files
 * are in test_npy_source.c.
 */
#include <dirent.h>
#include <fcntl.h>
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

#include "fixture.h"
#include "pspace.h"

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
	fx_write_file(path, b, pre + hl + ndata);
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

static void roundtrip(pspace_dtype dt, int ndim, const uint64_t *shape)
{
	const char *path = fx_path(fx_group_dir(), "rt_%s_%d.npy", pspace_dtype_name(dt), ndim);
	uint64_t count = 1;
	double *x, *got;
	int64_t *xi, *goti;
	pspace_npy *f;
	pspace_npy_info in;
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
	assert_int_equal(pspace_npy_info_get(&in, f), 0);
	assert_int_equal(in.dtype, dt);
	assert_int_equal(in.ndim, ndim);
	assert_int_equal(in.count, count);
	assert_int_equal(in.version, 1);
	assert_int_equal(in.data_offset, 10 + hlen);
	for (int i = 0; i < 4; i++)
		assert_int_equal(in.shape[i], i < ndim ? shape[i] : 0);
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
		const char *path = fx_path(fx_group_dir(), "hdr.npy");
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
	dir = opendir(fx_group_dir());
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL)
		assert_null(strstr(e->d_name, ".tmp-"));
	closedir(dir);

	/* Writer errors. */
	assert_int_equal(
	    pspace_npy_write(fx_path(fx_group_dir(), "x.npy"), PSPACE_BF16, 1, s1, NULL),
	    PSPACE_EINVAL);
	assert_int_equal(
	    pspace_npy_write(fx_path(fx_group_dir(), "nodir/x.npy"), PSPACE_F64, 0, s1, s1),
	    PSPACE_ENOTFOUND);
	assert_non_null(strstr(pspace_errdetail(), "nodir/x.npy"));
}

/* Headers written by hand as numpy (and older numpy) would. */
/*
 * An existing FIFO (as /dev/null, a device) is written in place, not
 * replaced by a renamed temporary file: it stays a FIFO and its reader
 * gets the whole .npy.
 */
static void test_npy_write_fifo(void **state)
{
	const char *path = fx_path(fx_group_dir(), "out.fifo");
	const uint64_t shape[1] = {5};
	const double x[5] = {1, 2, 3, 4, 5};
	unsigned char buf[256];
	struct stat sb;
	ssize_t n;
	float v;
	int rfd;

	(void)state;
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	/* a reader first, so that the writer's open does not block */
	rfd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rfd >= 0);
	assert_int_equal(pspace_npy_write(path, PSPACE_F32, 1, shape, x), 0);
	n = read(rfd, buf, sizeof(buf));
	close(rfd);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	assert_int_equal(n, 128 + 5 * 4);
	assert_memory_equal(buf, "\x93NUMPY", 6);
	memcpy(&v, buf + 128 + 4 * 4, 4);
	assert_true(v == 5.0f);
	unlink(path);
}

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
		const char *path = fx_path(fx_group_dir(), "hand%zu.npy", c);
		uint64_t count = 1;
		size_t isz = cases[c].dt == PSPACE_F32 ? 4 : 8;
		pspace_npy *f;
		pspace_npy_info in;

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
		assert_int_equal(pspace_npy_info_get(&in, f), 0);
		assert_int_equal(in.dtype, cases[c].dt);
		assert_int_equal(in.ndim, cases[c].ndim);
		assert_int_equal(in.version, cases[c].major);
		assert_int_equal(in.count, count);
		for (int i = 0; i < 4; i++)
			assert_int_equal(in.shape[i], cases[c].shape[i]);
		if (cases[c].pad)
			assert_int_equal(in.data_offset % 64, 0);
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
				fx_expect_err(rc, PSPACE_EFORMAT, path, "not an integer");
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
		const char *path = fx_path(fx_group_dir(), "bad%zu.npy", c);

		write_raw(path, cases[c].major, cases[c].dict, 1, data, cases[c].ndata);
		f = (pspace_npy *)data;
		fx_expect_err(pspace_npy_open(&f, path), PSPACE_EFORMAT, path, cases[c].msg);
		assert_null(f);
	}

	/* Bytes that are not an .npy preamble. */
	{
		const char *p = fx_path(fx_group_dir(), "magic.npy");
		unsigned char b[80];

		memset(b, ' ', sizeof(b));
		memcpy(b, "\x93NUMPZ\x01\x00\x46\x00", 10);
		fx_write_file(p, b, sizeof(b));
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "bad magic");
		memcpy(b, "\x93NUMPY\x01\x01\x46\x00", 10);
		fx_write_file(p, b, sizeof(b));
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "version 1.1");

		p = fx_path(fx_group_dir(), "empty.npy");
		fx_write_file(p, b, 0);
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "empty");
		p = fx_path(fx_group_dir(), "short.npy");
		fx_write_file(p, "\x93NUMPY\x01", 7);
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "too short");
		p = fx_path(fx_group_dir(), "short2.npy");
		fx_write_file(p, "\x93NUMPY\x02\x00\x10\x00", 10);
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "preamble");

		/* Header length beyond EOF: v1 (u16) and v3 (u32). */
		p = fx_path(fx_group_dir(), "hlen1.npy");
		memcpy(b, "\x93NUMPY\x01\x00\xff\x7f", 10);
		fx_write_file(p, b, sizeof(b));
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "beyond the end");
		p = fx_path(fx_group_dir(), "hlen3.npy");
		memcpy(b, "\x93NUMPY\x03\x00\x00\x00\x00\x80", 12);
		fx_write_file(p, b, sizeof(b));
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, p, "beyond the end");

		p = fx_path(fx_group_dir(), "missing.npy");
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_ENOTFOUND, p, NULL);
		p = fx_path(fx_group_dir(), "%s", ""); /* the directory itself */
		fx_expect_err(pspace_npy_open(&f, p), PSPACE_EFORMAT, NULL, "not a regular file");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_npy_roundtrip),
	    cmocka_unit_test(test_npy_write_fifo),
	    cmocka_unit_test(test_npy_handmade_headers),
	    cmocka_unit_test(test_npy_malformed),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
